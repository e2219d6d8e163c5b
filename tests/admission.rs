//! Admission control and coalescing in the engine, and their answers on the
//! wire: cold work over the bound is shed whole while memo hits pass, a
//! deadline that would pass first is shed, a token many calls bring at once
//! is checked once, big batches scanned off the reactor stay correct, and
//! shed Verify and Check calls get RESOURCE_EXHAUSTED with a pushback (or,
//! for Check by default, DENIED 503 with `retry-after`).
//!
//! The pool's backlog is made with [`Admission::reserve`], the call the
//! engine itself makes, so each case is exact rather than a race.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests state their expectations by panicking.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use jwtd::clock::FixedClock;
use jwtd::config::{ExtAuthzConfig, Limits, OnOverload};
use jwtd::engine::{Budget, CancelToken, Engine, EngineConfig, EngineError};
use jwtd::grpc::result_of;
use jwtd::pb::verifier_service_client::VerifierServiceClient;
use jwtd::pb::{Status as S, VerifyRequest, VerifyResult};
use jwtd::policy::Narrowing;
use jwtd::registry::Registry;
use jwtd::runtime::admission::Shed;
use jwtd::server::ServeOptions;
use support::*;

const BOUND: usize = 64;

fn engine(threads: usize, max_pending_tokens: usize) -> Arc<Engine> {
    let limits = Limits {
        max_batch: 64,
        max_token_bytes: 8192,
        max_pending_tokens: Some(max_pending_tokens),
    };
    let config = EngineConfig {
        threads,
        ..EngineConfig::default()
    };
    let registry = Registry::fixed(trust(), limits);
    Arc::new(Engine::new(registry, Arc::new(FixedClock(now())), config).unwrap())
}

async fn verify(
    engine: &Arc<Engine>,
    tokens: &[String],
    budget: impl Into<Budget>,
) -> Result<Vec<VerifyResult>, EngineError> {
    engine
        .verify_batch(
            Arc::new(tokens.to_vec()),
            Arc::new(Narrowing::default()),
            budget,
            result_of,
        )
        .await
}

fn statuses(results: &[VerifyResult]) -> Vec<(S, bool)> {
    results
        .iter()
        .map(|r| (S::try_from(r.status).unwrap(), r.cached))
        .collect()
}

/// A valid token distinct from every other (its `jti` differs).
fn fresh_token(alg: &str, n: u32) -> String {
    let mut c = claims(ISS);
    c["jti"] = serde_json::json!(format!("t-{n}"));
    independent_token(alg, &c)
}

#[tokio::test]
async fn cold_work_over_the_bound_is_shed_whole_while_hits_pass() {
    let engine = engine(2, BOUND);
    let hot: Vec<String> = (0..8).map(|n| fresh_token("EdDSA", n)).collect();
    assert!(
        statuses(&verify(&engine, &hot, CancelToken::default()).await.unwrap())
            .iter()
            .all(|s| *s == (S::Valid, false))
    );
    let checks = engine.authentications();

    // The pool's backlog is at the bound, as under a flood.
    let backlog = engine.admission().reserve(BOUND);
    let cold = fresh_token("EdDSA", 100);
    match verify(&engine, std::slice::from_ref(&cold), CancelToken::default()).await {
        Err(EngineError::Shed(Shed::Overloaded {
            limit: BOUND,
            pending: BOUND,
            wanted: 1,
            pushback,
        })) => assert!(pushback >= Duration::from_millis(10), "{pushback:?}"),
        other => panic!("expected an overload shed, got {other:?}"),
    }
    let hits = verify(&engine, &hot, CancelToken::default())
        .await
        .expect("a batch of memo hits is never shed");
    assert!(statuses(&hits).iter().all(|s| *s == (S::Valid, true)));
    let mut mixed = hot.clone();
    mixed.push(cold.clone());
    assert!(
        matches!(
            verify(&engine, &mixed, CancelToken::default()).await,
            Err(EngineError::Shed(_))
        ),
        "a batch that mixes hits and misses is shed whole"
    );
    assert_eq!(
        engine.authentications(),
        checks,
        "shed calls cost no signature check"
    );

    drop(backlog);
    assert_eq!(engine.admission().pending(), 0);
    let after = verify(&engine, &mixed, CancelToken::default())
        .await
        .unwrap();
    assert_eq!(after.len(), 9);
    assert_eq!(statuses(&after)[8], (S::Valid, false), "the flood is over");
    assert_eq!(engine.admission().pending(), 0, "reservations are released");
}

#[tokio::test]
async fn a_call_whose_deadline_passes_before_its_work_could_start_is_shed() {
    let engine = engine(1, 100_000);
    // 2000 tokens ahead at the initial 25 µs estimate: about 50 ms of work.
    let _backlog = engine.admission().reserve(2000);
    let token = fresh_token("ES256", 1);
    let soon = Budget {
        cancel: CancelToken::default(),
        deadline: Some(Instant::now() + Duration::from_millis(5)),
    };
    match verify(&engine, std::slice::from_ref(&token), soon).await {
        Err(EngineError::Shed(Shed::Deadline {
            pending: 2000,
            left,
            wait,
            ..
        })) => assert!(wait > left, "{wait:?} vs {left:?}"),
        other => panic!("expected a deadline shed, got {other:?}"),
    }
    assert_eq!(engine.authentications(), 0);
    let later = Budget {
        cancel: CancelToken::default(),
        deadline: Some(Instant::now() + Duration::from_secs(30)),
    };
    let results = verify(&engine, &[token], later).await.unwrap();
    assert_eq!(statuses(&results), [(S::Valid, false)]);
}

#[tokio::test]
async fn concurrent_calls_with_one_new_token_cost_one_signature_check() {
    let engine = engine(1, 100_000);
    // Keep the single pool thread busy, so the calls below all arrive while
    // the first one's check of the new token is still queued.
    let busy = expensive_distinct_tokens(256);
    let background = {
        let engine = Arc::clone(&engine);
        tokio::spawn(async move { verify(&engine, &busy, CancelToken::default()).await })
    };
    // Until the pool works on them and all are handed to it: a batch this
    // big is scanned on the blocking pool, beside this task, so counting
    // before the scan ends would count some of its tokens as the calls'.
    let started = Instant::now();
    while engine.tokens_checked() == 0 || engine.authentications() < 256 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the pool never started"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let before = engine.authentications();
    assert_eq!(before, 256);
    let token = fresh_token("ES256", 7);
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let engine = Arc::clone(&engine);
            let token = token.clone();
            tokio::spawn(async move { verify(&engine, &[token], CancelToken::default()).await })
        })
        .collect();
    let mut answers = Vec::new();
    for call in calls {
        answers.push(statuses(&call.await.unwrap().unwrap())[0]);
    }
    background.await.unwrap().unwrap();
    assert!(answers.iter().all(|(s, _)| *s == S::Valid), "{answers:?}");
    assert_eq!(
        engine.authentications() - before,
        1,
        "8 concurrent calls with one new token: one check"
    );
    assert_eq!(
        answers.iter().filter(|(_, cached)| *cached).count(),
        7,
        "the other 7 results say the check was not theirs"
    );
    // Normally all 7 followed the check; one that a loaded machine held up
    // until after it found the memo instead, which is as good.
    assert!(engine.coalesced() >= 1, "{}", engine.coalesced());
    assert_eq!(engine.admission().pending(), 0);
}

/// The thread a result was rendered on, beside the result.
fn rendered_where(
    outcome: Result<jwtd::verify::Verified<'_>, &jwtd::verify::Rejection>,
    cached: bool,
) -> (VerifyResult, Option<String>) {
    let thread = std::thread::current().name().map(str::to_owned);
    (result_of(outcome, cached), thread)
}

#[tokio::test]
async fn a_big_batch_is_scanned_off_the_calling_thread_a_small_one_on_it() {
    let engine = engine(2, 100_000);
    let small: Vec<String> = (0..4).map(|n| fresh_token("EdDSA", n)).collect();
    let mut big = small.clone();
    while big.iter().map(String::len).sum::<usize>() <= jwtd::engine::SCAN_INLINE_BYTES {
        big.extend(small.iter().cloned());
    }
    let here = std::thread::current().name().map(str::to_owned);
    let run = |tokens: Vec<String>| {
        engine.verify_batch(
            Arc::new(tokens),
            Arc::new(Narrowing::default()),
            CancelToken::default(),
            rendered_where,
        )
    };
    run(small.clone()).await.unwrap(); // memoized: hits are rendered by the scan
    let small_hits = run(small).await.unwrap();
    assert!(small_hits.iter().all(|(r, t)| r.cached && *t == here));
    let big_hits = run(big).await.unwrap();
    assert!(
        big_hits.iter().all(|(r, t)| r.cached && *t != here),
        "a batch of over 64 KiB is hashed on the blocking pool"
    );
}

#[tokio::test]
async fn a_big_batch_scanned_off_the_reactor_gets_the_verifiers_answers_in_order() {
    let engine = engine(2, 100_000);
    let mut tokens = Vec::new();
    for n in 0..150u32 {
        tokens.push(fresh_token(if n % 2 == 0 { "ES256" } else { "RS256" }, n));
        tokens.push(format!("garbage-{n}"));
    }
    tokens.extend(expensive_distinct_tokens(100));
    tokens.push(tokens[0].clone());
    let bytes: usize = tokens.iter().map(String::len).sum();
    assert!(bytes > jwtd::engine::SCAN_INLINE_BYTES, "{bytes} bytes");
    let results = verify(&engine, &tokens, CancelToken::default())
        .await
        .unwrap();
    let trust = trust();
    for (token, result) in tokens.iter().zip(&results) {
        let want = match jwtd::verify::verify(token, &trust, &Narrowing::default(), now()) {
            Ok(_) => S::Valid,
            Err(rejection) => jwtd::grpc::status_of(&rejection),
        };
        assert_eq!(S::try_from(result.status).unwrap(), want);
    }
    assert_eq!(results.len(), tokens.len());
}

#[tokio::test]
async fn a_call_shed_for_its_deadline_is_resource_exhausted_on_the_wire() {
    let engine = engine(1, 100_000);
    let server = serve(Arc::clone(&engine), ExtAuthzConfig::default()).await;
    let mut client = VerifierServiceClient::new(server.channel().await);
    // 4000 tokens ahead at the initial 25 µs estimate: 100 ms of work.
    let _backlog = engine.admission().reserve(4000);
    let mut request = tonic::Request::new(VerifyRequest {
        tokens: vec![fresh_token("EdDSA", 9)],
        ..VerifyRequest::default()
    });
    request.set_timeout(Duration::from_millis(40));
    let err = client.verify(request).await.expect_err("shed");
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err:?}");
    assert!(err.message().contains("deadline"), "{}", err.message());
    assert!(pushback_ms(&err) >= 10);
    assert_eq!(engine.authentications(), 0, "no signature work");
}

/// An in-process server over `engine` with `ext_authz`.
async fn serve(engine: Arc<Engine>, ext_authz: ExtAuthzConfig) -> Server {
    let options = ServeOptions {
        server: jwtd::config::ServerConfig {
            drain: Duration::ZERO,
            ..Default::default()
        },
        ext_authz,
        ..Default::default()
    };
    Server::start_with(engine, options).await
}

fn pushback_ms(status: &tonic::Status) -> i64 {
    status
        .metadata()
        .get("grpc-retry-pushback-ms")
        .expect("a pushback trailer")
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn a_shed_verify_is_resource_exhausted_with_a_pushback() {
    let engine = engine(2, BOUND);
    let server = serve(Arc::clone(&engine), ExtAuthzConfig::default()).await;
    let mut client = VerifierServiceClient::new(server.channel().await);
    let hot = fresh_token("EdDSA", 1);
    let call = |tokens: Vec<String>| VerifyRequest {
        tokens,
        ..VerifyRequest::default()
    };
    client.verify(call(vec![hot.clone()])).await.unwrap();
    let _backlog = engine.admission().reserve(BOUND);
    let err = client
        .verify(call(vec![fresh_token("EdDSA", 2)]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted);
    assert!(
        err.message().contains("limits.max_pending_tokens (64)"),
        "{}",
        err.message()
    );
    let ms = pushback_ms(&err);
    assert!((10..=5000).contains(&ms), "{ms}");
    let hits = client
        .verify(call(vec![hot; 3]))
        .await
        .unwrap()
        .into_inner();
    assert!(
        hits.results
            .iter()
            .all(|r| r.status == S::Valid as i32 && r.cached)
    );
}

#[tokio::test]
async fn a_shed_check_is_denied_503_with_retry_after_or_an_error_as_configured() {
    for mode in [OnOverload::Deny, OnOverload::Error] {
        let engine = engine(2, BOUND);
        let config = ExtAuthzConfig {
            on_overload: mode,
            ..ExtAuthzConfig::default()
        };
        let server = serve(Arc::clone(&engine), config).await;
        let mut client = AuthorizationClient::new(server.channel().await);
        let hot = format!("Bearer {}", fresh_token("EdDSA", 1));
        let warm = client
            .check(check_request(&[("authorization", &hot)], &[]))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(warm.status.unwrap().code, 0);

        let backlog = engine.admission().reserve(BOUND);
        let cold = format!("Bearer {}", fresh_token("EdDSA", 2));
        let answer = client
            .check(check_request(&[("authorization", &cold)], &[]))
            .await;
        match mode {
            OnOverload::Deny => {
                let response = answer.expect("deny mode answers").into_inner();
                assert_eq!(
                    response.status.unwrap().code,
                    tonic::Code::Unavailable as i32
                );
                let Some(HttpResponse::DeniedResponse(denied)) = response.http_response else {
                    panic!("expected a denied response");
                };
                assert_eq!(denied.status.unwrap().code, 503);
                let retry_after: Vec<_> = denied
                    .headers
                    .iter()
                    .filter_map(|h| h.header.as_ref())
                    .filter(|h| h.key == "retry-after")
                    .collect();
                assert_eq!(retry_after.len(), 1);
                let seconds: u64 = retry_after[0].value.parse().unwrap();
                assert!((1..=5).contains(&seconds), "{seconds}");
                assert!(denied.body.contains("overloaded"), "{}", denied.body);
            }
            OnOverload::Error => {
                let err = answer.expect_err("error mode returns the gRPC error");
                assert_eq!(err.code(), tonic::Code::ResourceExhausted);
                assert!(pushback_ms(&err) >= 10);
            }
        }
        // Memo hits still pass a full queue, in either mode.
        let hit = client
            .check(check_request(&[("authorization", &hot)], &[]))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(hit.status.unwrap().code, 0, "{mode:?}");
        drop(backlog);
        let after = client
            .check(check_request(&[("authorization", &cold)], &[]))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(after.status.unwrap().code, 0, "{mode:?}: served again");
    }
}

/// This thread's nice value, from /proc.
#[cfg(target_os = "linux")]
fn own_nice() -> i32 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    rest.split(' ').nth(16).unwrap().parse().unwrap()
}

/// The nice values of this process's verification threads, from /proc.
#[cfg(target_os = "linux")]
fn verification_threads_nice() -> Vec<i32> {
    let mut nice = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let path = task.unwrap().path();
        let Ok(comm) = std::fs::read_to_string(path.join("comm")) else {
            continue;
        };
        if !comm.trim().starts_with("jwtd-verify-") {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(path.join("stat")) else {
            continue; // the thread ended meanwhile
        };
        // The fields after the command's closing parenthesis: state is
        // field 3, nice is field 19.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        nice.push(rest.split(' ').nth(16).unwrap().parse().unwrap());
    }
    nice
}

/// Waits until `threads` verification threads run `nice` above this
/// thread. Other tests' engines share the process (their threads keep the
/// default), so a configured value is told apart by its count.
#[cfg(target_os = "linux")]
fn wait_for_niced_threads(threads: usize, nice: i32) {
    let want = (own_nice() + nice).min(19);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found = verification_threads_nice();
        if found.iter().filter(|n| **n == want).count() >= threads {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "want {threads} threads at nice {want}: {found:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The pool's threads run at a lower priority than the network threads, so
/// under overload the front end (hits, shedding) gets the CPU first.
#[cfg(target_os = "linux")]
#[test]
fn the_verification_threads_are_niced() {
    let _engine = engine(2, BOUND);
    assert_eq!(EngineConfig::default().pool_nice, 10);
    wait_for_niced_threads(2, 10);
}

/// `[cache] pool_nice` sets how much nicer they run (a value no other test
/// uses, so only this engine's threads can have it).
#[cfg(target_os = "linux")]
#[test]
fn the_verification_threads_take_the_configured_nice() {
    let config = EngineConfig {
        threads: 3,
        pool_nice: 4,
        ..EngineConfig::default()
    };
    let limits = Limits {
        max_batch: 64,
        max_token_bytes: 8192,
        max_pending_tokens: Some(BOUND),
    };
    let registry = Registry::fixed(trust(), limits);
    let _engine = Engine::new(registry, Arc::new(FixedClock(now())), config).unwrap();
    wait_for_niced_threads(3, 4);
}
