//! The batch engine: memo correctness (expiry, key removal, narrowing on
//! hits, one-byte forgeries), in-batch de-duplication, order, equality with
//! the sequential verifier, and cancellation.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests state their expectations by panicking.

mod support;

use std::sync::Arc;
use std::time::Duration;

use jwtd::clock::ManualClock;
use jwtd::config::{Config, Limits};
use jwtd::engine::{CancelToken, Engine, EngineConfig};
use jwtd::grpc::result_of;
use jwtd::pb::{Status as S, VerifyResult};
use jwtd::policy::{IssuerPolicy, Narrowing};
use jwtd::registry::Registry;
use jwtd::verify::{UnixTime, verify};
use proptest::prelude::*;
use serde_json::{Value, json};
use support::*;

const LIMITS: Limits = Limits {
    max_batch: 4096,
    max_token_bytes: 8192,
    max_pending_tokens: None,
};

fn engine_with(
    registry: Arc<Registry>,
    clock: Arc<ManualClock>,
    config: EngineConfig,
) -> Arc<Engine> {
    Arc::new(Engine::new(registry, clock, config).unwrap())
}

fn fixed_engine(clock: Arc<ManualClock>) -> Arc<Engine> {
    let policy = IssuerPolicy::new(ISS)
        .and_then(|p| p.with_audiences(vec!["api".into(), "billing".into()]))
        .unwrap();
    engine_with(
        Registry::fixed(trust_with(policy), LIMITS),
        clock,
        EngineConfig::default(),
    )
}

async fn run(engine: &Arc<Engine>, tokens: &[String], narrowing: Narrowing) -> Vec<VerifyResult> {
    engine
        .verify_batch(
            Arc::new(tokens.to_vec()),
            Arc::new(narrowing),
            CancelToken::default(),
            result_of,
        )
        .await
        .unwrap()
}

fn statuses(results: &[VerifyResult]) -> Vec<(S, bool)> {
    results
        .iter()
        .map(|r| (S::try_from(r.status).unwrap(), r.cached))
        .collect()
}

fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(UnixTime(NOW)))
}

#[tokio::test]
async fn a_memoized_token_still_expires_on_time() {
    let clock = clock();
    let engine = fixed_engine(Arc::clone(&clock));
    let mut c = claims(ISS);
    c["exp"] = json!(NOW + 100);
    let t = independent_token("ES256", &c);
    let batch = [t];
    assert_eq!(
        statuses(&run(&engine, &batch, Narrowing::default()).await),
        [(S::Valid, false)]
    );
    assert_eq!(
        statuses(&run(&engine, &batch, Narrowing::default()).await),
        [(S::Valid, true)]
    );
    // Leeway is 60 s: at exp + 59 still valid from the memo, at exp + 60 not.
    clock.set(UnixTime(NOW + 159));
    assert_eq!(
        statuses(&run(&engine, &batch, Narrowing::default()).await),
        [(S::Valid, true)]
    );
    clock.set(UnixTime(NOW + 160));
    let after = run(&engine, &batch, Narrowing::default()).await;
    assert_eq!(after[0].status, S::Expired as i32);
    assert_eq!(
        engine.authentications(),
        2,
        "the expired entry was not served from the memo"
    );
}

#[tokio::test]
async fn narrowing_applies_to_hits() {
    let engine = fixed_engine(clock());
    let t = independent_token("EdDSA", &claims(ISS));
    let batch = [t];
    assert_eq!(
        statuses(&run(&engine, &batch, Narrowing::default()).await),
        [(S::Valid, false)]
    );
    let billing = Narrowing {
        audiences: vec!["billing".into()],
        issuer: None,
        ..Narrowing::default()
    };
    assert_eq!(
        statuses(&run(&engine, &batch, billing).await),
        [(S::AudienceMismatch, true)],
        "same token, another caller's audience"
    );
    let other_issuer = Narrowing {
        audiences: vec![],
        issuer: Some(HMAC_ISS.into()),
        ..Narrowing::default()
    };
    assert_eq!(
        statuses(&run(&engine, &batch, other_issuer).await),
        [(S::IssuerNotTrusted, true)]
    );
    assert_eq!(
        statuses(&run(&engine, &batch, Narrowing::default()).await),
        [(S::Valid, true)]
    );
    assert_eq!(engine.authentications(), 1);
}

#[tokio::test]
async fn a_one_byte_forgery_of_a_cached_token_is_never_a_hit() {
    let engine = fixed_engine(clock());
    let t = independent_token("RS256", &claims(ISS));
    run(&engine, std::slice::from_ref(&t), Narrowing::default()).await;
    assert_eq!(
        statuses(&run(&engine, std::slice::from_ref(&t), Narrowing::default()).await),
        [(S::Valid, true)]
    );
    let bytes = t.as_bytes();
    for i in (0..bytes.len()).step_by(7) {
        let mut forged = bytes.to_vec();
        forged[i] = if forged[i] == b'A' { b'B' } else { b'A' };
        let forged = String::from_utf8(forged).unwrap();
        let result = &run(&engine, &[forged], Narrowing::default()).await[0];
        assert_ne!(result.status, S::Valid as i32, "byte {i}");
        assert!(!result.cached, "byte {i}: a forgery hit the memo");
    }
}

#[tokio::test]
async fn duplicates_in_a_batch_are_verified_once_and_order_is_kept() {
    let engine = fixed_engine(clock());
    let valid = independent_token("PS256", &claims(ISS));
    let mut expired_claims = claims(ISS);
    expired_claims["exp"] = json!(NOW - 3600);
    let expired = independent_token("ES384", &expired_claims);
    let garbage = "x.y.z".to_owned();
    let batch = vec![
        valid.clone(),
        garbage.clone(),
        valid.clone(),
        expired.clone(),
        valid.clone(),
        expired.clone(),
        garbage.clone(),
    ];
    let results = run(&engine, &batch, Narrowing::default()).await;
    assert_eq!(
        results
            .iter()
            .map(|r| S::try_from(r.status).unwrap())
            .collect::<Vec<_>>(),
        [
            S::Valid,
            S::Malformed,
            S::Valid,
            S::Expired,
            S::Valid,
            S::Expired,
            S::Malformed
        ]
    );
    assert_eq!(
        engine.authentications(),
        3,
        "three distinct tokens, three checks"
    );
    // Again: the valid token comes from the memo and the malformed one from
    // the negative memo; the expired token's entry would outlive its exp, so
    // it was never stored and is checked once more.
    let again = run(&engine, &batch, Narrowing::default()).await;
    assert_eq!(
        statuses(&again)[..4],
        [
            (S::Valid, true),
            (S::Malformed, true),
            (S::Valid, true),
            (S::Expired, false)
        ]
    );
    assert_eq!(engine.authentications(), 4);
}

#[tokio::test]
async fn a_removed_key_invalidates_memoized_results() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let path = dir.join("jwks.json");
    let write = |kids: &[&str]| {
        let keys: Vec<Value> = kids.iter().map(|k| jwk(k)).collect();
        let tmp = dir.join("tmp.json");
        std::fs::write(&tmp, json!({ "keys": keys }).to_string()).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
    };
    write(&["rsa2048", "p256"]);
    let config = Config::from_toml(
        &format!(
            "[[issuers]]\nissuer = \"{ISS}\"\njwks_file = {:?}\nrefresh_seconds = 0.05\nallow_any_audience = true\n",
            path.display().to_string()
        ),
        std::path::Path::new("/"),
    )
    .unwrap();
    let (registry, _) = Registry::start(&config).await.unwrap();
    let engine = engine_with(Arc::clone(&registry), clock(), EngineConfig::default());
    let rs = independent_token("RS256", &claims(ISS));
    let es = independent_token("ES256", &claims(ISS));
    let batch = [rs, es];
    run(&engine, &batch, Narrowing::default()).await;
    assert_eq!(
        statuses(&run(&engine, &batch, Narrowing::default()).await),
        [(S::Valid, true), (S::Valid, true)]
    );

    let before = registry.snapshot();
    write(&["p256"]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while Arc::ptr_eq(&before, &registry.snapshot()) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "file change not seen"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let after = run(&engine, &batch, Narrowing::default()).await;
    assert_eq!(
        after[0].status,
        S::UnknownKey as i32,
        "removed key: never VALID from the memo"
    );
    assert_eq!(
        (after[1].status, after[1].cached),
        (S::Valid as i32, true),
        "the unchanged key keeps its memoized results across the refresh"
    );
}

#[tokio::test]
async fn a_disabled_memo_verifies_every_time() {
    let policy = IssuerPolicy::new(ISS).unwrap().allowing_any_audience();
    let config = EngineConfig {
        memo_entries: 0,
        negative_entries: 0,
        ..EngineConfig::default()
    };
    let engine = engine_with(Registry::fixed(trust_with(policy), LIMITS), clock(), config);
    let t = independent_token("ES256", &claims(ISS));
    for _ in 0..3 {
        assert_eq!(
            statuses(&run(&engine, std::slice::from_ref(&t), Narrowing::default()).await),
            [(S::Valid, false)]
        );
    }
    assert_eq!(engine.authentications(), 3);
}

#[tokio::test]
async fn a_cancelled_batch_stops_early() {
    let engine = fixed_engine(clock());
    let tokens = expensive_distinct_tokens(4096);
    let cancel = CancelToken::default();
    let guard = cancel.guard();
    let batch = engine.verify_batch(
        Arc::new(tokens),
        Arc::new(Narrowing::default()),
        cancel,
        result_of,
    );
    tokio::pin!(batch);
    // Let the pool start, then drop the call as tonic does on a deadline.
    let early = tokio::time::timeout(Duration::from_millis(5), &mut batch).await;
    assert!(early.is_err(), "4096 signature checks finished within 5 ms");
    drop(guard);
    assert!(
        batch.await.is_err(),
        "a cancelled batch reports cancellation"
    );
    let checked = engine.tokens_checked();
    assert!(
        checked < 4096,
        "the pool kept working after cancellation: {checked}"
    );
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A pool of tokens covering every kind of outcome.
fn pool() -> Vec<String> {
    let mut expired = claims(ISS);
    expired["exp"] = json!(NOW - 3600);
    let mut other_aud = claims(ISS);
    other_aud["aud"] = json!("elsewhere");
    let valid = independent_token("RS256", &claims(ISS));
    let (input, _) = valid.rsplit_once('.').unwrap();
    vec![
        valid.clone(),
        independent_token("ES256", &claims(ISS)),
        independent_token("HS256", &claims(HMAC_ISS)),
        independent_token("EdDSA", &expired),
        independent_token("PS256", &other_aud),
        format!("{input}.{}", b64(&[7u8; 256])),
        "garbage".into(),
        "a.b.c".into(),
        format!(
            "{}.{}.AAAA",
            b64(br#"{"alg":"RS256","kid":"nope"}"#),
            b64(claims(ISS).to_string().as_bytes())
        ),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn the_engine_agrees_with_the_sequential_verifier(
        picks in prop::collection::vec(0usize..9, 1..40),
        audience in prop::option::of(prop::sample::select(vec!["api", "billing"])),
    ) {
        let tokens: Vec<String> = {
            let pool = pool();
            picks.iter().map(|&i| pool[i].clone()).collect()
        };
        let narrowing = Narrowing {
            audiences: audience.map(|a| vec![a.to_owned()]).unwrap_or_default(),
            issuer: None,
            ..Narrowing::default()
        };
        let policy = IssuerPolicy::new(ISS)
            .and_then(|p| p.with_audiences(vec!["api".into(), "billing".into()]))
            .unwrap();
        let trust = trust_with(policy.clone());
        let rt = tokio::runtime::Runtime::new().unwrap();
        let engine = engine_with(Registry::fixed(trust_with(policy), LIMITS), clock(), EngineConfig::default());
        // Twice: the second pass is served from the memos.
        for _ in 0..2 {
            let got = rt.block_on(run(&engine, &tokens, narrowing.clone()));
            for (token, result) in tokens.iter().zip(&got) {
                let want = match verify(token, &trust, &narrowing, now()) {
                    Ok(v) => result_of(Ok(v.get()), result.cached),
                    Err(r) => result_of(Err(&r), result.cached),
                };
                prop_assert_eq!(result, &want);
            }
        }
    }
}

#[tokio::test]
async fn a_grpc_deadline_stops_the_batch() {
    use jwtd::pb::VerifyRequest;
    use jwtd::pb::verifier_service_client::VerifierServiceClient;

    let engine = fixed_engine(clock());
    let server = Server::start_engine(Arc::clone(&engine)).await;
    let tokens = expensive_distinct_tokens(4096);
    let mut client = VerifierServiceClient::new(server.channel().await);
    let mut request = tonic::Request::new(VerifyRequest {
        tokens,
        ..VerifyRequest::default()
    });
    request.set_timeout(Duration::from_millis(20));
    let status = client.verify(request).await.expect_err("over its deadline");
    assert!(
        matches!(
            status.code(),
            tonic::Code::DeadlineExceeded | tonic::Code::Cancelled
        ),
        "{status:?}"
    );
    // Bounded wait for the pool to notice; then it must have stopped short.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut last = engine.tokens_checked();
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = engine.tokens_checked();
        if now == last {
            break;
        }
        last = now;
        assert!(
            tokio::time::Instant::now() < deadline,
            "the pool never settled"
        );
    }
    assert!(
        last < 4096,
        "all 4096 tokens were checked after the deadline"
    );
    server.stop().await;
}
