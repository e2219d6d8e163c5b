//! Runs one verification path N times, for instruction counting under
//! callgrind (deterministic where wall-clock benches on a shared machine are
//! not): `valgrind --tool=callgrind target/release/examples/instructions ALG PATH N`
//! with ALG one of RS256, PS256, ES256, EdDSA, HS256 and PATH one of raw,
//! cold, cold_new_headers (16 tokens in turn whose header texts differ,
//! so none is answered from the per-thread header memo), hit (a memo hit
//! rendered as the full wire result), hit_status (a memo hit rendered as
//! VIEW_STATUS_ONLY), jsonwebtoken. Subtract a run with N = 0. The keys,
//! token and peer setup are the benches' own (`benches/common`).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;

use jwtd::policy::Narrowing;
use jwtd::verify::{UnixTime, verify};
use serde_json::Value;

#[path = "../benches/common/mod.rs"]
mod common;
use common::*;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (alg, path, n): (&str, &str, usize) = (&args[1], &args[2], args[3].parse().unwrap());
    let token = signer(alg)
        .sign(Some(kid_for(alg)), &claims(iss_for(alg), 1))
        .unwrap();
    match path {
        "raw" => {
            let (input, sig) = token.rsplit_once('.').unwrap();
            let sig = b64d(sig);
            let key = raw_key(alg);
            for _ in 0..n {
                key.verify(black_box(input.as_bytes()), black_box(&sig));
            }
        }
        "cold" => {
            let trust = trust();
            let narrowing = Narrowing::default();
            for _ in 0..n {
                verify(
                    black_box(&token),
                    &trust,
                    &narrowing,
                    UnixTime(1_700_000_000),
                )
                .unwrap();
            }
        }
        "cold_new_headers" => {
            // Sixteen tokens whose header texts differ (in spacing only),
            // twice what a thread keeps, taken in turn: every verification
            // decodes and parses its header, as for an issuer seen for the
            // first time.
            let signer = signer(alg);
            let payload = serde_json::to_vec(&claims(iss_for(alg), 1)).unwrap();
            let tokens: Vec<String> = (0..16)
                .map(|i| {
                    // One length for all, so the memo compares every slot's
                    // bytes: its worst case.
                    let header = format!(
                        r#"{{{}"alg":{}"{alg}","kid":"{}"}}"#,
                        " ".repeat(i),
                        " ".repeat(15 - i),
                        kid_for(alg)
                    );
                    signer.sign_raw(header.as_bytes(), &payload).unwrap()
                })
                .collect();
            let trust = trust();
            let narrowing = Narrowing::default();
            for i in 0..n {
                verify(
                    black_box(&tokens[i % tokens.len()]),
                    &trust,
                    &narrowing,
                    UnixTime(1_700_000_000),
                )
                .unwrap();
            }
        }
        "hit" | "hit_status" => {
            use jwtd::engine::Engine;
            use jwtd::grpc::{Renderer, View};
            use jwtd::registry::Registry;
            use std::sync::Arc;
            let engine = Arc::new(
                Engine::new(
                    Registry::fixed(trust(), LIMITS),
                    Arc::new(jwtd::clock::SystemClock),
                    engine_config(true),
                )
                .unwrap(),
            );
            memoize(&engine, &token);
            let snapshot = engine.registry().snapshot();
            let narrowing = Narrowing::default();
            let now = jwtd::clock::Clock::now(&jwtd::clock::SystemClock);
            let view = if path == "hit" {
                View::Full
            } else {
                View::StatusOnly
            };
            let renderer = Renderer::new(view, false);
            let render =
                move |outcome: Result<jwtd::verify::Verified<'_>, &jwtd::verify::Rejection>,
                      cached: bool| renderer.render(outcome, cached);
            for _ in 0..n {
                let mut result = engine
                    .answer_from_memo(black_box(&token), &snapshot.trust, &narrowing, now, &render)
                    .unwrap();
                renderer.trim(std::slice::from_mut(&mut result));
                black_box(result);
            }
        }
        _ => {
            let (key, validation) = jsonwebtoken_key(alg);
            for _ in 0..n {
                jsonwebtoken::decode::<Value>(black_box(&token), &key, &validation).unwrap();
            }
        }
    }
}
