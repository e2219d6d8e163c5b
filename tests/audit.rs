//! The audit trail of the real binary (`--log-format json`): one event per
//! decision on the `jwtd::audit` target, for Verify and Check, with the
//! caller, issuer, subject, token id and status, and never the token.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests state their expectations by panicking.

mod support;

use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use jwtd::pb::VerifyRequest;
use jwtd::pb::verifier_service_client::VerifierServiceClient;
use serde_json::{Value, json};
use support::process::Served;
use support::*;

fn valid_claims(jti: Option<&str>) -> Value {
    let mut claims = json!({
        "iss": ISS, "sub": "alice", "aud": "api", "exp": wall_now() + 600, "iat": wall_now(),
    });
    if let Some(jti) = jti {
        claims["jti"] = json!(jti);
    }
    claims
}

/// The next `n` audit events jwtd logs, as JSON.
fn audit_events(served: &mut Served, n: usize) -> Vec<Value> {
    (0..n)
        .map(|_| {
            let line = served.wait_for("\"target\":\"jwtd::audit\"");
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
        })
        .collect()
}

#[tokio::test]
async fn every_decision_is_recorded_without_the_token_even_when_logs_are_quiet() {
    // RUST_LOG=warn quiets the service's logs (its ready line too, so the
    // port is chosen here), not its audit trail.
    let addr = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap()
    };
    let jwks = data("keys/jwks.json");
    let cfg = scratch(
        "audit.toml",
        &format!(
            "listen = \"{addr}\"\nmetrics_listen = \"\"\n[server]\ndrain_seconds = 0\n[audit]\nmode = \"all\"\n\
             [[issuers]]\nissuer = {ISS:?}\njwks_file = {jwks:?}\naudiences = [\"api\"]\n"
        ),
    );
    let mut served = Served::start_with(&cfg, |cmd| {
        cmd.args(["--log-format", "json"]).env("RUST_LOG", "warn");
    });
    served.wait_until_listening(addr);
    let valid = independent_token("RS256", &valid_claims(Some("order-7")));
    let no_jti = independent_token("ES256", &valid_claims(None));
    let expired = independent_token(
        "RS256",
        &json!({ "iss": ISS, "sub": "alice", "aud": "api", "exp": wall_now() - 3600 }),
    );
    let garbage = "not.a.token".to_owned();

    let mut client = VerifierServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    client
        .verify(VerifyRequest {
            tokens: vec![
                valid.clone(),
                no_jti.clone(),
                expired.clone(),
                garbage.clone(),
            ],
            ..VerifyRequest::default()
        })
        .await
        .unwrap();
    let events = audit_events(&mut served, 4);
    let field = |i: usize, k: &str| events[i]["fields"][k].clone();
    for i in 0..4 {
        assert_eq!(field(i, "api"), "Verify");
        assert_eq!(field(i, "caller"), "127.0.0.1", "the peer, no [callers]");
    }
    assert_eq!(field(0, "status"), "STATUS_VALID");
    assert_eq!(field(0, "issuer"), ISS);
    assert_eq!(field(0, "subject"), "alice");
    assert_eq!(field(0, "token_id"), "jti:order-7");
    assert_eq!(field(0, "cached"), false);
    assert_eq!(field(1, "status"), "STATUS_VALID");
    let digest = field(1, "token_id");
    let digest = digest.as_str().unwrap();
    assert!(
        digest.starts_with("sha256:") && digest.len() == 7 + 16,
        "{digest}"
    );
    assert_eq!(field(2, "status"), "STATUS_EXPIRED");
    assert_eq!(field(2, "issuer"), ISS, "a configured issuer is named");
    assert_eq!(field(2, "subject"), "", "no claim of a rejected token");
    assert_eq!(field(3, "status"), "STATUS_MALFORMED");
    assert_eq!(field(3, "issuer"), "untrusted");

    // A memo hit through Check, from a caller named by the peer address.
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let bearer = format!("Bearer {valid}");
    AuthorizationClient::new(channel)
        .check(check_request(&[("authorization", bearer.as_str())], &[]))
        .await
        .unwrap();
    let check = &audit_events(&mut served, 1)[0];
    assert_eq!(check["fields"]["api"], "Check");
    assert_eq!(check["fields"]["status"], "STATUS_VALID");
    assert_eq!(check["fields"]["cached"], true);
    assert_eq!(check["fields"]["token_id"], "jti:order-7");

    // A call that wants no claims back still has them in the trail.
    let answered = client
        .verify(VerifyRequest {
            tokens: vec![valid.clone()],
            view: jwtd::pb::View::StatusOnly as i32,
            ..VerifyRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answered.results[0].claims, None);
    let lean = &audit_events(&mut served, 1)[0]["fields"];
    assert_eq!(lean["status"], "STATUS_VALID");
    assert_eq!(lean["issuer"], ISS);
    assert_eq!(lean["subject"], "alice");
    assert_eq!(lean["token_id"], "jti:order-7");

    served.signal("TERM");
    served.wait_exit().await;
    let log = served.whole_log().join("\n");
    for token in [&valid, &no_jti, &expired] {
        for part in token.split('.') {
            assert!(!log.contains(part), "token text in the log");
        }
    }
    assert!(!log.contains("not.a.token"));
}

#[tokio::test]
async fn the_default_records_rejections_only_and_off_records_nothing() {
    let valid = independent_token("RS256", &valid_claims(Some("v-1")));
    let expired = independent_token(
        "RS256",
        &json!({ "iss": ISS, "sub": "alice", "aud": "api", "exp": wall_now() - 3600 }),
    );
    for (extra, expected) in [
        ("", Some("STATUS_EXPIRED")),
        ("[audit]\nmode = \"off\"\n", None),
    ] {
        let cfg = binary_config(&format!("[server]\ndrain_seconds = 0\n{extra}"));
        let mut served = Served::start_with(&cfg, |cmd| {
            cmd.args(["--log-format", "json"]);
        });
        let addr = served.address_json();
        let mut client = VerifierServiceClient::connect(format!("http://{addr}"))
            .await
            .unwrap();
        client
            .verify(VerifyRequest {
                tokens: vec![valid.clone(), expired.clone()],
                ..VerifyRequest::default()
            })
            .await
            .unwrap();
        served.signal("TERM");
        served.wait_exit().await;
        let audited: Vec<Value> = served
            .whole_log()
            .iter()
            .filter(|l| l.contains("\"target\":\"jwtd::audit\""))
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let statuses: Vec<&str> = audited
            .iter()
            .map(|e| e["fields"]["status"].as_str().unwrap())
            .collect();
        assert_eq!(
            statuses,
            expected.into_iter().collect::<Vec<_>>(),
            "{extra:?}"
        );
    }
}
