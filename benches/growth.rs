//! How the cost per token grows (issue 14, target 7): `cargo bench --bench
//! growth`. HS256 throughout, so the signature (~0.5 µs) does not hide the
//! rest of jwtd's work; each row is a time per token.
//!
//! - `growth/batch_hit/<N>`, `growth/batch_cold/<N>`: one `verify_batch` of
//!   N tokens (1, 8, 64, 512, 4096), all memo hits, or all new with the
//!   memo off, divided by N;
//! - `growth/issuers_cold/<N>`, `growth/issuers_hit/<N>`: a trust of N HMAC
//!   issuers (1, 10, 1000), the token from one in the middle: the issuer
//!   dispatch must stay O(1);
//! - `growth/keys_cold/<N>`: one issuer with N keys (1, 16, 256), the token
//!   signed by one in the middle (kid lookup);
//! - `growth/memo_hit/<N>`: memo hits in a scattered order over N memoized
//!   tokens (1k, 100k, 1M), so the larger sets miss the CPU caches as a
//!   real hot set would; bytes per entry are `benches/memory.rs`;
//! - `growth/token_cold/<B>`, `growth/token_hit/<B>`: a token of about B
//!   bytes (300 to 8 KB), padded with a string claim;
//! - `growth/caller_token/<N>`: the bench's own part of `memo_hit/<N>`,
//!   one byte of every word of the caller's token read in the same
//!   scattered order (the `String`, then its bytes);
//! - `growth/memory_miss/<N>`: the floor under `memo_hit/<N>`, one
//!   dependent load at a random cache line of a buffer as large as N memo
//!   entries (2 KiB each, their resident size in `benches/memory.rs`). A
//!   hit in `memo_hit` has at least three such loads in a row, whatever the
//!   table: the token's own bytes (scattered here, as the bench's tokens
//!   are; in a service they have just arrived and are in cache), the table
//!   slot its hash picks, and the entry whose bytes are compared.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    unreachable_pub
)]

use std::hint::black_box;
use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use jwtd::clock::{Clock, SystemClock};
use jwtd::engine::{CancelToken, Engine, EngineConfig};
use jwtd::grpc::result_of;
use jwtd::jose::Algorithm;
use jwtd::keys::{KeySet, Origin};
use jwtd::mint::Signer;
use jwtd::policy::{IssuerPolicy, KeyState, Narrowing, Trust, TrustedIssuer};
use jwtd::registry::Registry;
use jwtd::verify::verify;
use serde_json::{Map, Value, json};

mod common;
use common::LIMITS;

fn secret(n: usize) -> [u8; 32] {
    let mut s = [0x5a; 32];
    s[..8].copy_from_slice(&(n as u64).to_le_bytes());
    s
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// An HMAC issuer `https://issuer-<i>.test` with `keys` keys `k0`…
fn issuer(i: usize, keys: usize) -> TrustedIssuer {
    let jwks = json!({ "keys": (0..keys)
        .map(|k| json!({ "kty": "oct", "kid": format!("k{k}"), "k": b64(&secret(i * 1000 + k)) }))
        .collect::<Vec<_>>() });
    let (set, _) = KeySet::from_jwks(jwks.to_string().as_bytes(), Origin::LocalFile).unwrap();
    let policy = IssuerPolicy::new(format!("https://issuer-{i}.test"))
        .unwrap()
        .allowing_any_audience();
    TrustedIssuer {
        policy: Arc::new(policy),
        keys: KeyState::Loaded(Arc::new(set)),
    }
}

/// A token of issuer `i` signed with its key `k`, `n` its serial, padded
/// with `pad` bytes of claim.
fn token(i: usize, k: usize, n: usize, pad: usize) -> String {
    let signer = Signer::hmac(&secret(i * 1000 + k), Algorithm::HS256).unwrap();
    let mut claims: Map<String, Value> = json!({
        "iss": format!("https://issuer-{i}.test"), "sub": format!("user-{n}"),
        "aud": "api", "exp": 4_000_000_000i64, "iat": 1_700_000_000,
        "jti": format!("{n:016x}"),
    })
    .as_object()
    .unwrap()
    .clone();
    if pad > 0 {
        claims.insert("pad".into(), Value::String("x".repeat(pad)));
    }
    signer.sign(Some(&format!("k{k}")), &claims).unwrap()
}

fn engine(trust: Trust, memo_entries: usize) -> Arc<Engine> {
    let config = EngineConfig {
        memo_entries,
        negative_entries: memo_entries.min(10_000),
        memo_max_bytes: usize::MAX / 4,
        ..EngineConfig::default()
    };
    Arc::new(
        Engine::new(
            Registry::fixed(trust, LIMITS),
            Arc::new(SystemClock),
            config,
        )
        .unwrap(),
    )
}

fn run_batch(rt: &tokio::runtime::Runtime, engine: &Arc<Engine>, tokens: &Arc<Vec<String>>) {
    let results = rt
        .block_on(engine.verify_batch(
            Arc::clone(tokens),
            Arc::new(Narrowing::default()),
            CancelToken::default(),
            result_of,
        ))
        .unwrap();
    assert_eq!(results.len(), tokens.len());
    assert!(
        results
            .iter()
            .all(|r| r.status == jwtd::pb::Status::Valid as i32),
        "every token VALID"
    );
}

fn growth(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("growth");
    group.sample_size(20);

    // Batch size.
    for n in [1usize, 8, 64, 512, 4096] {
        let trust = Trust::new([issuer(0, 1)], 8192);
        let tokens = Arc::new((0..n).map(|s| token(0, 0, s, 0)).collect::<Vec<_>>());
        group.throughput(Throughput::Elements(n as u64));
        let warm = engine(trust.clone(), 100_000);
        run_batch(&rt, &warm, &tokens);
        group.bench_function(BenchmarkId::new("batch_hit", n), |b| {
            b.iter(|| run_batch(&rt, &warm, &tokens))
        });
        let cold = engine(trust, 0);
        group.bench_function(BenchmarkId::new("batch_cold", n), |b| {
            b.iter(|| run_batch(&rt, &cold, &tokens))
        });
    }
    group.throughput(Throughput::Elements(1));

    // Issuers, and memo hits against them.
    let narrowing = Narrowing::default();
    for n in [1usize, 10, 1000] {
        let trust = Trust::new((0..n).map(|i| issuer(i, 1)), 8192);
        let t = token(n / 2, 0, 1, 0);
        group.bench_function(BenchmarkId::new("issuers_cold", n), |b| {
            b.iter(|| verify(black_box(&t), &trust, &narrowing, SystemClock.now()).unwrap())
        });
        let warm = engine(trust.clone(), 1000);
        run_batch(&rt, &warm, &Arc::new(vec![t.clone()]));
        let snapshot = warm.registry().snapshot();
        let now = SystemClock.now();
        group.bench_function(BenchmarkId::new("issuers_hit", n), |b| {
            b.iter(|| {
                warm.answer_from_memo(black_box(&t), &snapshot.trust, &narrowing, now, &result_of)
                    .unwrap()
            })
        });
    }

    // Keys per issuer.
    for n in [1usize, 16, 256] {
        let trust = Trust::new([issuer(0, n)], 8192);
        let t = token(0, n / 2, 1, 0);
        group.bench_function(BenchmarkId::new("keys_cold", n), |b| {
            b.iter(|| verify(black_box(&t), &trust, &narrowing, SystemClock.now()).unwrap())
        });
    }

    // Token size.
    for bytes in [300usize, 1024, 2048, 4096, 8000] {
        let trust = Trust::new([issuer(0, 1)], 8192);
        let base = token(0, 0, 1, 0).len();
        // base64 turns 3 payload bytes into 4 token bytes.
        let t = token(0, 0, 1, bytes.saturating_sub(base + 10) * 3 / 4);
        assert!(t.len() <= 8192);
        let warm = engine(trust.clone(), 1000);
        run_batch(&rt, &warm, &Arc::new(vec![t.clone()]));
        let snapshot = warm.registry().snapshot();
        let now = SystemClock.now();
        let id = t.len();
        group.bench_function(BenchmarkId::new("token_cold", id), |b| {
            b.iter(|| verify(black_box(&t), &trust, &narrowing, SystemClock.now()).unwrap())
        });
        group.bench_function(BenchmarkId::new("token_hit", id), |b| {
            b.iter(|| {
                warm.answer_from_memo(black_box(&t), &snapshot.trust, &narrowing, now, &result_of)
                    .unwrap()
            })
        });
    }

    // Memo entries: hits scattered over the whole set.
    for n in [1_000usize, 100_000, 1_000_000] {
        let trust = Trust::new([issuer(0, 1)], 8192);
        let warm = engine(trust, n);
        let tokens: Vec<String> = (0..n).map(|s| token(0, 0, s, 0)).collect();
        for chunk in tokens.chunks(4096) {
            run_batch(&rt, &warm, &Arc::new(chunk.to_vec()));
        }
        assert_eq!(warm.memo().len(), n, "every token memoized");
        let snapshot = warm.registry().snapshot();
        let now = SystemClock.now();
        // A stride coprime with n visits every entry in a scattered order.
        let stride = 7_919;
        let mut i = 0usize;
        group.bench_function(BenchmarkId::new("memo_hit", n), |b| {
            b.iter(|| {
                i = (i + stride) % n;
                warm.answer_from_memo(
                    black_box(&tokens[i]),
                    &snapshot.trust,
                    &narrowing,
                    now,
                    &result_of,
                )
                .unwrap()
            })
        });
        // The bench's own share of those hits: reading the scattered
        // caller's token (a service's tokens have just arrived, in cache).
        let mut j = 0usize;
        group.bench_function(BenchmarkId::new("caller_token", n), |b| {
            b.iter(|| {
                j = (j + stride) % n;
                black_box(&tokens[j])
                    .as_bytes()
                    .chunks(8)
                    .fold(0u64, |sum, chunk| sum ^ u64::from(chunk[0]))
            })
        });
    }
    // The memory floor under those hits: dependent loads at random lines.
    for n in [1_000usize, 100_000, 1_000_000] {
        let chain = random_cycle(n * 2048 / 64);
        let mut at = 0usize;
        group.bench_function(BenchmarkId::new("memory_miss", n), |b| {
            b.iter(|| {
                at = chain[at] as usize;
                at
            })
        });
    }
    group.finish();
}

/// One cache line per element, each naming the next line of a single cycle
/// through all `lines` in a random order, so each step is a load whose
/// address depends on the one before (no prefetcher can run ahead).
fn random_cycle(lines: usize) -> Vec<u64> {
    const STEP: usize = 64 / std::mem::size_of::<u64>();
    let mut order: Vec<usize> = (0..lines).collect();
    // A fixed xorshift seed: the same cycle every run.
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    for i in (1..lines).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        order.swap(i, (x % (i as u64 + 1)) as usize);
    }
    let mut chain = vec![0u64; lines * STEP];
    for pair in 0..lines {
        let (from, to) = (order[pair], order[(pair + 1) % lines]);
        chain[from * STEP] = (to * STEP) as u64;
    }
    chain
}

criterion_group!(benches, growth);
criterion_main!(benches);
