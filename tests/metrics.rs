//! /metrics after a mixed batch: the counters move by the right amounts and
//! labels stay bounded. One test: the recorder is process-wide.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests state their expectations by panicking.

mod support;

use jwtd::config::Limits;
use jwtd::pb::VerifyRequest;
use jwtd::pb::verifier_service_client::VerifierServiceClient;
use serde_json::json;
use support::*;

#[tokio::test]
async fn metrics_count_a_mixed_batch() {
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    jwtd::telemetry::serve_metrics(addr).unwrap();

    let server = Server::start(
        trust(),
        Limits {
            max_batch: 16,
            max_token_bytes: 8192,
            max_pending_tokens: None,
        },
    )
    .await;
    let mut client = VerifierServiceClient::new(server.channel().await);
    let valid = independent_token("ES256", &claims(ISS));
    let mut expired = claims(ISS);
    expired["exp"] = json!(NOW - 3600);
    let expired = independent_token("EdDSA", &expired);
    let batch = vec![valid.clone(), expired, "garbage".to_owned(), valid.clone()];
    // The second call answers no claims (STATUS_ONLY): its VALID tokens
    // are still counted under their issuer.
    for view in [jwtd::pb::View::Full, jwtd::pb::View::StatusOnly] {
        client
            .verify(VerifyRequest {
                tokens: batch.clone(),
                view: view as i32,
                ..VerifyRequest::default()
            })
            .await
            .unwrap();
    }
    let over = client
        .verify(VerifyRequest {
            tokens: vec!["t".into(); 17],
            ..VerifyRequest::default()
        })
        .await;
    assert!(over.is_err());

    let text = scrape_metrics(addr).await;
    let v = |series: &str| sample(&text, series);
    let iss = ISS;
    // First call: the valid token checked once (its duplicate copies the
    // result), the expired one checked, garbage malformed. Second call: all
    // from the memos.
    assert_eq!(
        v(&format!(
            r#"jwtd_verifications_total{{issuer="{iss}",status="STATUS_VALID",cached="false"}}"#
        )),
        2.0,
        "{text}"
    );
    assert_eq!(
        v(&format!(
            r#"jwtd_verifications_total{{issuer="{iss}",status="STATUS_VALID",cached="true"}}"#
        )),
        2.0
    );
    // Rejections carry no issuer label; an expired token is never memoized,
    // so it is checked both times.
    assert_eq!(
        v(r#"jwtd_verifications_total{issuer="unknown",status="STATUS_EXPIRED",cached="false"}"#),
        2.0
    );
    assert_eq!(
        v(r#"jwtd_verifications_total{issuer="unknown",status="STATUS_MALFORMED",cached="false"}"#),
        1.0
    );
    assert_eq!(
        v(r#"jwtd_verifications_total{issuer="unknown",status="STATUS_MALFORMED",cached="true"}"#),
        1.0
    );
    assert_eq!(
        v("jwtd_memo_hits_total"),
        3.0,
        "second call: valid twice and garbage"
    );
    assert_eq!(
        v("jwtd_memo_misses_total"),
        5.0,
        "first call 4, second call the expired token"
    );
    assert_eq!(v("jwtd_memo_entries"), 1.0);
    assert_eq!(
        v("jwtd_batch_size_count"),
        2.0,
        "the refused call has no batch"
    );
    assert_eq!(
        v(r#"jwtd_rpc_duration_seconds_count{method="jwtd.v1.VerifierService/Verify",code="Ok"}"#),
        2.0
    );
    assert_eq!(
        v(
            r#"jwtd_rpc_duration_seconds_count{method="jwtd.v1.VerifierService/Verify",code="InvalidArgument"}"#
        ),
        1.0
    );
    assert_eq!(
        v(r#"jwtd_rpc_in_flight{method="jwtd.v1.VerifierService/Verify"}"#),
        0.0
    );
    for line in text.lines().filter(|l| l.contains("issuer=")) {
        assert!(
            line.contains(&format!(r#"issuer="{iss}""#)) || line.contains(r#"issuer="unknown""#),
            "unbounded issuer label: {line}"
        );
    }
    server.stop().await;
}
