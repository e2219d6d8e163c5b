//! Allocations per token on the two hot paths, counted with a wrapping
//! global allocator. One test only: the count is process-wide.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests state their expectations by panicking.

mod support;

use std::alloc::System;
use std::sync::Arc;

use jwtd::clock::FixedClock;
use jwtd::config::Limits;
use jwtd::engine::{CancelToken, Engine, EngineConfig};
use jwtd::grpc::result_of;
use jwtd::policy::Narrowing;
use jwtd::registry::Registry;
use jwtd::verify::verify;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use support::*;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Cold path: the decoded payload (the claims point into it) and the shared
/// result; nothing else (10 before issue 14). The token's header is kept by
/// this thread after the first verification; one it has not seen adds the
/// parsed header's `Rc`.
const COLD_MAX: usize = 2;
/// Memo hit: the wire result's strings and payload copy.
const HIT_MAX: usize = 8;

#[test]
fn allocations_per_token_stay_few() {
    let trust = trust();
    let narrowing = Narrowing::default();
    let token = independent_token("RS256", &claims(ISS));
    verify(&token, &trust, &narrowing, now()).unwrap(); // warm lazy statics

    let region = Region::new(GLOBAL);
    for _ in 0..100 {
        verify(&token, &trust, &narrowing, now()).unwrap();
    }
    let cold = region.change().allocations / 100;
    println!("cold path: {cold} allocations per token");
    assert!(
        cold <= COLD_MAX,
        "cold path allocates {cold} times per token"
    );

    let engine = Arc::new(
        Engine::new(
            Registry::fixed(
                trust.clone(),
                Limits {
                    max_batch: 16,
                    max_token_bytes: 8192,
                    max_pending_tokens: None,
                },
            ),
            Arc::new(FixedClock(now())),
            EngineConfig {
                threads: 1,
                ..EngineConfig::default()
            },
        )
        .unwrap(),
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(engine.verify_batch(
        Arc::new(vec![token.clone()]),
        Arc::new(Narrowing::default()),
        CancelToken::default(),
        result_of,
    ))
    .unwrap();
    let snapshot = engine.registry().snapshot();
    let region = Region::new(GLOBAL);
    for _ in 0..100 {
        let result = engine
            .answer_from_memo(&token, &snapshot.trust, &narrowing, now(), &result_of)
            .unwrap();
        assert!(result.cached);
    }
    let hit = region.change().allocations / 100;
    println!("memo hit: {hit} allocations per token");
    assert!(hit <= HIT_MAX, "memo hit allocates {hit} times per token");
}
