//! jwtd against the crypto floor and a peer crate, side by side in one run:
//! `cargo bench --bench verify`. Results and targets are in BENCHMARKS.md.
//!
//! - `verify/raw/<ALG>`: aws-lc-rs verifying the same signing input with a
//!   pre-parsed key (the floor);
//! - `verify/cold/<ALG>`: jwtd's whole per-token path, memo off;
//! - `verify/memo_hit/<ALG>`: the same token again, memo on (keyed hash, lookup,
//!   the cheap checks, and the wire result);
//! - `verify/jsonwebtoken/<ALG>`: the jsonwebtoken crate's decode with the
//!   same key and an equivalent Validation;
//! - `batch/cold/1024`, `batch/hit/1024`: 1024 distinct RS256 tokens through
//!   the engine on every core, memo off and memo warm;
//! - `audit/{off,rejections,all}/hit/1024`: `batch/hit/1024` plus recording
//!   its decisions in the audit trail, JSON-formatted into a sink;
//! - `batch/hit_revocation_100k/1024`: `batch/hit` with 100,000 revocation
//!   entries loaded (every token checked against them, none revoked);
//! - `memo/hit_hot/1`, `memo/hit_hot/2`: wall time per memo hit on a
//!   1024-token hot set with one and two threads;
//! - `memo/insert_evict/1`, `memo/insert_evict/2`: inserts into a full memo
//!   (each one evicts), with one and two threads;
//! - `scaling/raw_rs256/1`, `scaling/raw_rs256/2`: the bare aws-lc-rs check on
//!   one and two threads, the ceiling `batch/cold` can reach in the same run;
//! - `inflight/lead_settle/1`, `/2`: what the in-flight table adds to each
//!   cold token (join as leader, settle, remove), one and two threads, to
//!   set beside `verify/cold/*` of the same run;
//! - `admission/reserve_release/1`, `/2`: one admission reservation and its
//!   release (the engine makes one per chunk of up to 64 cold tokens);
//! - `callers/certificate_identity`: reading the SANs of a client
//!   certificate, which `identity = "mtls"` does per call.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    unreachable_pub
)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use jwtd::audit::{Api, Audit, AuditedCall};
use jwtd::clock::{Clock, SystemClock};
use jwtd::config::{AuditConfig, AuditMode};
use jwtd::engine::{CancelToken, Engine};
use jwtd::grpc::result_of;
use jwtd::policy::Narrowing;
use jwtd::registry::Registry;
use jwtd::runtime::token_key::TokenHasher;
use jwtd::verify::verify;
use serde_json::Value;

mod common;
use common::*;

const ALGS: [&str; 5] = ["RS256", "PS256", "ES256", "EdDSA", "HS256"];

fn engine(memo: bool) -> Arc<Engine> {
    let config = engine_config(memo);
    Arc::new(
        Engine::new(
            Registry::fixed(trust(), LIMITS),
            Arc::new(SystemClock),
            config,
        )
        .unwrap(),
    )
}

/// A memo-on engine whose revocation store holds `n` entries of ISS, half
/// jti and half subject, none matching the bench tokens.
fn engine_with_revocations(n: usize) -> Arc<Engine> {
    use jwtd::revocation::{Entry, Revocations, SourceKind, StoreSettings};
    let store = Revocations::new(
        &[(SourceKind::File, "bench".into())],
        &StoreSettings {
            on_stale: jwtd::config::OnStale::Serve,
            covered: None,
            max_entries: n,
            leeways: std::collections::HashMap::new(),
            subject_ttl_seconds: 90_000,
            wait_for_first_load: false,
        },
    );
    let entries = (0..n).map(|i| {
        if i % 2 == 0 {
            Entry::Jti {
                iss: ISS.into(),
                jti: format!("revoked-{i:08}"),
                exp: 4_000_000_000,
            }
        } else {
            Entry::Subject {
                iss: ISS.into(),
                sub: format!("gone-{i}"),
                revoked_at: 1_800_000_000,
            }
        }
    });
    let source = store.source(SourceKind::File).unwrap();
    assert_eq!(source.replace(entries, SystemClock.now()).kept, n);
    let engine = Engine::new(
        Registry::fixed(trust(), LIMITS),
        Arc::new(SystemClock),
        engine_config(true),
    )
    .unwrap()
    .with_revocations(Arc::new(store));
    Arc::new(engine)
}

fn per_token(c: &mut Criterion) {
    let trust = trust();
    let narrowing = Narrowing::default();
    let warm = engine(true);
    let mut group = c.benchmark_group("verify");
    for alg in ALGS {
        let token = signer(alg)
            .sign(Some(kid_for(alg)), &claims(iss_for(alg), 0))
            .unwrap();
        let (input, sig) = token.rsplit_once('.').unwrap();
        let sig = b64d(sig);
        let raw = raw_key(alg);
        group.bench_function(BenchmarkId::new("raw", alg), |b| {
            b.iter(|| raw.verify(black_box(input.as_bytes()), black_box(&sig)))
        });
        group.bench_function(BenchmarkId::new("cold", alg), |b| {
            b.iter(|| {
                let now = SystemClock.now();
                verify(black_box(&token), &trust, &narrowing, now).unwrap()
            })
        });
        let snapshot = warm.registry().snapshot();
        let now = SystemClock.now();
        memoize(&warm, &token);
        group.bench_function(BenchmarkId::new("memo_hit", alg), |b| {
            b.iter(|| {
                let result = warm
                    .answer_from_memo(
                        black_box(&token),
                        &snapshot.trust,
                        &narrowing,
                        now,
                        &result_of,
                    )
                    .unwrap();
                assert!(result.cached);
                result
            })
        });
        let (key, validation) = jsonwebtoken_key(alg);
        group.bench_function(BenchmarkId::new("jsonwebtoken", alg), |b| {
            b.iter(|| jsonwebtoken::decode::<Value>(black_box(&token), &key, &validation).unwrap())
        });
    }
    group.finish();
}

fn distinct_rs256(n: usize) -> Vec<String> {
    let signer = signer("RS256");
    (0..n)
        .map(|i| signer.sign(Some("rsa2048"), &claims(ISS, i)).unwrap())
        .collect()
}

fn batches(c: &mut Criterion) {
    let tokens = Arc::new(distinct_rs256(1024));
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let run = |engine: &Arc<Engine>| {
        let results = rt
            .block_on(engine.verify_batch(
                Arc::clone(&tokens),
                Arc::new(Narrowing::default()),
                CancelToken::default(),
                result_of,
            ))
            .unwrap();
        assert_eq!(results.len(), 1024);
        results
    };
    let mut group = c.benchmark_group("batch");
    group.sample_size(20);
    let cold = engine(false);
    group.bench_function(BenchmarkId::new("cold", 1024), |b| b.iter(|| run(&cold)));
    let warm = engine(true);
    run(&warm);
    group.bench_function(BenchmarkId::new("hit", 1024), |b| b.iter(|| run(&warm)));
    // The same warm batch with 100,000 revocation entries (none of them
    // these tokens': each token pays both lookups, jti and subject).
    let revoking = engine_with_revocations(100_000);
    run(&revoking);
    group.bench_function(BenchmarkId::new("hit_revocation_100k", 1024), |b| {
        b.iter(|| run(&revoking))
    });
    group.finish();

    // The audit trail on the hot path: the same warm batch, then its
    // decisions recorded, with a JSON log subscriber writing to a sink
    // (formatting included, I/O not). `off` is batch/hit plus the mode test.
    let subscriber = || {
        use tracing_subscriber::layer::SubscriberExt as _;
        tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .json()
                .with_writer(std::io::sink),
        )
    };
    let trust = warm.registry().snapshot().trust.clone();
    let call = AuditedCall {
        api: Api::Verify,
        caller: "bench",
        trace_id: "",
    };
    let mut group = c.benchmark_group("audit");
    group.sample_size(20);
    for (name, mode) in [
        ("off", AuditMode::Off),
        ("rejections", AuditMode::Rejections),
        ("all", AuditMode::All),
    ] {
        let audit = Audit::new(AuditConfig {
            mode,
            ..AuditConfig::default()
        });
        tracing::subscriber::with_default(subscriber(), || {
            group.bench_function(BenchmarkId::new(format!("{name}/hit"), 1024), |b| {
                b.iter(|| {
                    let results = run(&warm);
                    audit.record(&call, &tokens, &results, &trust);
                    results
                })
            });
        });
    }
    group.finish();

    // What two cores give the bare crypto in this run: the ceiling for
    // batch/cold (wall time per verification, all threads together).
    let raw = raw_key("RS256");
    let inputs: Vec<(String, Vec<u8>)> = tokens
        .iter()
        .map(|t| {
            let (input, sig) = t.rsplit_once('.').unwrap();
            (input.to_owned(), b64d(sig))
        })
        .collect();
    let mut group = c.benchmark_group("scaling");
    for threads in [1u64, 2] {
        group.bench_function(BenchmarkId::new("raw_rs256", threads), |b| {
            b.iter_custom(|iters| {
                let per_thread = iters / threads;
                let start = Instant::now();
                std::thread::scope(|s| {
                    for t in 0..threads {
                        let (raw, inputs) = (&raw, &inputs);
                        s.spawn(move || {
                            for n in 0..per_thread {
                                let (input, sig) = &inputs[((n + t * 512) % 1024) as usize];
                                raw.verify(input.as_bytes(), sig);
                            }
                        });
                    }
                });
                start.elapsed()
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("memo");
    // Inserts into a full memo: every insert evicts (CLOCK hand under the
    // queue mutex). Wall time per insert, all threads together.
    for threads in [1u64, 2] {
        group.bench_function(BenchmarkId::new("insert_evict", threads), |b| {
            let full: jwtd::memo::Memo<u64> = jwtd::memo::Memo::new(1024, usize::MAX);
            let now = jwtd::verify::UnixTime(0);
            let hasher = TokenHasher::new();
            for n in 0..1024u64 {
                full.insert(
                    &hasher.key(&n.to_string()).to_owned_key(),
                    n,
                    now,
                    i64::MAX,
                    0,
                );
            }
            let keys: Vec<_> = (0..65_536u64)
                .map(|n| hasher.key(&format!("k{n}")).to_owned_key())
                .collect();
            b.iter_custom(|iters| {
                let per_thread = iters / threads;
                let start = Instant::now();
                std::thread::scope(|s| {
                    for t in 0..threads {
                        let (full, keys) = (&full, &keys);
                        s.spawn(move || {
                            for n in 0..per_thread {
                                let k = &keys[((n * threads + t) % 65_536) as usize];
                                full.insert(k, n, now, i64::MAX, 0);
                            }
                        });
                    }
                });
                assert!(full.len() <= 1024 + threads as usize);
                start.elapsed()
            })
        });
    }
    let snapshot = warm.registry().snapshot();
    let narrowing = Narrowing::default();
    let now = SystemClock.now();
    for threads in [1u64, 2] {
        group.bench_function(BenchmarkId::new("hit_hot", threads), |b| {
            b.iter_custom(|iters| {
                let per_thread = iters / threads;
                let start = Instant::now();
                std::thread::scope(|s| {
                    for t in 0..threads {
                        let (warm, snapshot, narrowing, tokens) =
                            (&warm, &snapshot, &narrowing, &tokens);
                        s.spawn(move || {
                            for n in 0..per_thread {
                                let i = ((n + t * 512) % 1024) as usize;
                                black_box(
                                    warm.answer_from_memo(
                                        black_box(&tokens[i]),
                                        &snapshot.trust,
                                        narrowing,
                                        now,
                                        &result_of,
                                    )
                                    .unwrap(),
                                );
                            }
                        });
                    }
                });
                start.elapsed()
            })
        });
    }
    group.finish();
}

/// Wall time per operation of `op(thread, n)` over `threads` threads.
fn threaded(threads: u64, iters: u64, op: impl Fn(u64, u64) + Sync) -> Duration {
    let per_thread = iters / threads;
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let op = &op;
            s.spawn(move || {
                for n in 0..per_thread {
                    op(t, n);
                }
            });
        }
    });
    start.elapsed()
}

fn overload(c: &mut Criterion) {
    use jwtd::runtime::admission::Admission;
    use jwtd::runtime::inflight::{InFlight, Join};

    let hasher = TokenHasher::new();
    let digests: Vec<_> = (0..65_536u64)
        .map(|n| hasher.key(&format!("t{n}")).to_owned_key())
        .collect();
    let mut group = c.benchmark_group("inflight");
    for threads in [1u64, 2] {
        group.bench_function(BenchmarkId::new("lead_settle", threads), |b| {
            let table: Arc<InFlight<Arc<u64>>> = Arc::new(InFlight::new());
            let value = Arc::new(7u64);
            b.iter_custom(|iters| {
                threaded(threads, iters, |t, n| {
                    let d = &digests[((n * threads + t) % 65_536) as usize];
                    match table.join(black_box(d)) {
                        Join::Lead(lead) => lead.settle(Some(Arc::clone(&value))),
                        Join::Follow(_) => unreachable!("every token is new"),
                    }
                })
            })
        });
    }
    group.finish();
    let mut group = c.benchmark_group("admission");
    for threads in [1u64, 2] {
        group.bench_function(BenchmarkId::new("reserve_release", threads), |b| {
            let admission = Arc::new(Admission::new(2));
            b.iter_custom(|iters| {
                threaded(threads, iters, |_, _| {
                    let r = admission
                        .try_reserve(black_box(64), 4096, None, Instant::now())
                        .unwrap();
                    drop(black_box(r));
                })
            })
        });
    }
    group.finish();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["checkout.shop".to_owned()]).unwrap();
    params.subject_alt_names.push(rcgen::SanType::URI(
        "spiffe://cluster.local/ns/shop/sa/checkout"
            .try_into()
            .unwrap(),
    ));
    let der = params.self_signed(&key).unwrap().der().to_vec();
    let mut group = c.benchmark_group("callers");
    group.bench_function("certificate_identity", |b| {
        b.iter(|| jwtd::transport::callers::certificate_identity(black_box(&der)).unwrap())
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = per_token, batches, overload
}
criterion_main!(benches);
