//! Key lookup by (issuer, kid) on the hot path: jwtd's whole-snapshot swap
//! (arc-swap load, then plain HashMap reads) against a dashmap keyed by
//! issuer and kid, with one and with two threads hammering the same keys.
//! `snapshot` loads the snapshot for every lookup; `snapshot_batch64` loads it
//! once per 64 lookups, as a Verify call of 64 tokens does. Times are wall
//! time per lookup, all threads together.
//! `cargo bench --bench snapshot`; the numbers are in BENCHMARKS.md.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use base64::Engine as _;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use dashmap::DashMap;
use jwtd::keys::{Key, KeySet, Origin};
use jwtd::policy::{IssuerPolicy, KeyState, Trust, TrustedIssuer};

const ISSUERS: usize = 3;
const KIDS: usize = 4;

fn issuer(i: usize) -> String {
    format!("https://issuer-{i}.example")
}

fn kid(k: usize) -> String {
    format!("key-{k}")
}

fn key_set() -> KeySet {
    let keys: Vec<String> = (0..KIDS)
        .map(|k| {
            let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([k as u8 + 1; 32]);
            format!(r#"{{"kty":"oct","kid":"{}","k":"{secret}"}}"#, kid(k))
        })
        .collect();
    let jwks = format!(r#"{{"keys":[{}]}}"#, keys.join(","));
    KeySet::from_jwks(jwks.as_bytes(), Origin::LocalFile)
        .expect("bench keys")
        .0
}

/// Runs `iters` lookups split over `threads` threads and returns the wall time.
fn parallel(iters: u64, threads: u64, lookup: &(dyn Fn(usize, usize) -> bool + Sync)) -> Duration {
    let per_thread = iters / threads;
    let start = Instant::now();
    std::thread::scope(|scope| {
        for t in 0..threads {
            scope.spawn(move || {
                let mut hits = 0u64;
                for n in 0..per_thread {
                    let n = (n + t) as usize;
                    hits += u64::from(lookup(n % ISSUERS, (n / ISSUERS) % KIDS));
                }
                black_box(hits)
            });
        }
    });
    start.elapsed()
}

/// Runs `iters` lookups in batches of 64 split over `threads` threads.
fn parallel_batched(iters: u64, threads: u64, batch: &(dyn Fn(usize) -> usize + Sync)) -> Duration {
    let batches = (iters / 64 / threads).max(1);
    let start = Instant::now();
    std::thread::scope(|scope| {
        for t in 0..threads {
            scope.spawn(move || {
                let mut hits = 0;
                for n in 0..batches {
                    hits += batch((n + t) as usize * 64);
                }
                black_box(hits)
            });
        }
    });
    start.elapsed()
}

fn lookups(c: &mut Criterion) {
    let issuers: Vec<String> = (0..ISSUERS).map(issuer).collect();
    let kids: Vec<String> = (0..KIDS).map(kid).collect();

    let trust = Trust::new(
        issuers.iter().map(|i| TrustedIssuer {
            policy: Arc::new(
                IssuerPolicy::new(i.clone())
                    .unwrap()
                    .allowing_any_audience(),
            ),
            keys: KeyState::Loaded(Arc::new(key_set())),
        }),
        8192,
    );
    let snapshot = ArcSwap::from_pointee(trust);
    let by_snapshot = |i: usize, k: usize| {
        let trust = snapshot.load();
        match &trust.issuer(&issuers[i]).unwrap().keys {
            KeyState::Loaded(set) => set.by_kid(&kids[k]).is_some(),
            KeyState::Unavailable => false,
        }
    };

    let map: DashMap<String, Arc<Key>> = DashMap::new();
    for i in &issuers {
        let set = key_set();
        for k in &kids {
            map.insert(format!("{i} {k}"), Arc::clone(set.by_kid(k).unwrap()));
        }
    }
    let names: Vec<Vec<String>> = issuers
        .iter()
        .map(|i| kids.iter().map(|k| format!("{i} {k}")).collect())
        .collect();
    let by_dashmap = |i: usize, k: usize| map.get(names[i][k].as_str()).is_some();

    let mut group = c.benchmark_group("key_lookup");
    for threads in [1u64, 2] {
        group.bench_function(BenchmarkId::new("snapshot", threads), |b| {
            b.iter_custom(|iters| parallel(iters, threads, &by_snapshot))
        });
        group.bench_function(BenchmarkId::new("snapshot_batch64", threads), |b| {
            b.iter_custom(|iters| {
                parallel_batched(iters, threads, &|n: usize| {
                    let trust = snapshot.load();
                    let mut hits = 0;
                    for m in n..n + 64 {
                        let (i, k) = (m % ISSUERS, (m / ISSUERS) % KIDS);
                        if let KeyState::Loaded(set) = &trust.issuer(&issuers[i]).unwrap().keys {
                            hits += usize::from(set.by_kid(&kids[k]).is_some());
                        }
                    }
                    hits
                })
            })
        });
        group.bench_function(BenchmarkId::new("dashmap", threads), |b| {
            b.iter_custom(|iters| parallel(iters, threads, &by_dashmap))
        });
    }
    group.finish();
}

criterion_group!(benches, lookups);
criterion_main!(benches);
