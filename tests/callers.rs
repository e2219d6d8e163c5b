//! Per-caller limits and the allowlist against the real binary, for each
//! way a caller is identified: its address (`peer`), a header a sidecar sets
//! (`header:NAME`), and its client certificate (`mtls`). In each, one caller
//! is limited and another is not: the limited one is refused with
//! RESOURCE_EXHAUSTED and a pushback once its bucket is empty while the
//! other goes on, and callers not allowed get PERMISSION_DENIED.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests state their expectations by panicking.

mod support;

use std::time::Instant;

use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use jwtd::pb::verifier_service_client::VerifierServiceClient;
use jwtd::pb::{Status as S, VerifyRequest};
use support::pki::Ca;
use support::process::Served;
use support::*;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// The limited callers' bucket: 1 token per second, 2 at once.
const LIMITED: &str = "tokens_per_second = 1\nburst = 2";

/// A token valid now on the wall clock (the binary's clock).
fn live_token() -> String {
    let mut c = claims(ISS);
    c["exp"] = serde_json::json!(wall_now() + 600);
    independent_token("EdDSA", &c)
}

/// A Verify of `n` tokens, as the caller `header` names (if any).
async fn verify(
    channel: &Channel,
    n: usize,
    header: Option<&str>,
) -> Result<Vec<i32>, tonic::Status> {
    let mut request = tonic::Request::new(VerifyRequest {
        tokens: vec![live_token(); n],
        ..VerifyRequest::default()
    });
    if let Some(id) = header {
        request
            .metadata_mut()
            .insert("x-caller", id.parse().unwrap());
    }
    let response = VerifierServiceClient::new(channel.clone())
        .verify(request)
        .await?;
    Ok(response
        .into_inner()
        .results
        .iter()
        .map(|r| r.status)
        .collect())
}

/// Sends one-token calls until one is refused and checks the refusal: a
/// caller of 1 token/s with a burst of 2 passes at most its burst plus what
/// refilled meanwhile.
async fn assert_limited<F, Fut>(caller: &str, mut call: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Vec<i32>, tonic::Status>>,
{
    let started = Instant::now();
    let mut passed = 0;
    let refusal = loop {
        match call().await {
            Ok(statuses) => {
                assert_eq!(statuses, [S::Valid as i32]);
                passed += 1;
                assert!(passed < 50, "{caller}: never refused");
            }
            Err(status) => break status,
        }
    };
    let refilled = started.elapsed().as_secs_f64().ceil() as usize;
    assert!(passed >= 2, "{caller}: its burst of 2 passes ({passed})");
    assert!(passed <= 2 + refilled, "{caller}: {passed} passed");
    assert_eq!(
        refusal.code(),
        tonic::Code::ResourceExhausted,
        "{refusal:?}"
    );
    assert!(
        refusal.message().contains(caller) && refusal.message().contains("1 tokens per second"),
        "{}",
        refusal.message()
    );
    let pushback: u64 = refusal
        .metadata()
        .get("grpc-retry-pushback-ms")
        .expect("a pushback")
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=1000).contains(&pushback), "{pushback} ms");
}

async fn assert_unlimited<F, Fut>(mut call: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Vec<i32>, tonic::Status>>,
{
    for _ in 0..20 {
        let statuses = call().await.expect("an unlimited caller passes");
        assert!(statuses.iter().all(|s| *s == S::Valid as i32));
    }
}

async fn connect(addr: &str, from: Option<std::net::IpAddr>) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .local_address(from)
        .connect()
        .await
        .unwrap()
}

#[tokio::test]
async fn peer_identity_limits_one_address_and_not_another() {
    let cfg = binary_config(&format!(
        "[callers]\nidentity = \"peer\"\n[[callers.caller]]\nid = \"127.0.0.2\"\n{LIMITED}\n"
    ));
    let mut jwtd = Served::start(&cfg);
    let addr = jwtd.address();
    let limited = connect(&addr, Some("127.0.0.2".parse().unwrap())).await;
    let other = connect(&addr, Some("127.0.0.1".parse().unwrap())).await;
    assert_limited("127.0.0.2", || verify(&limited, 1, None)).await;
    assert_unlimited(|| verify(&other, 5, None)).await;
    let burst = verify(&limited, 3, None).await.expect_err("over the burst");
    assert_eq!(burst.code(), tonic::Code::ResourceExhausted);
    assert!(
        burst.message().contains("can never pass"),
        "{}",
        burst.message()
    );
    assert_eq!(
        burst.metadata().get("grpc-retry-pushback-ms").unwrap(),
        "-1"
    );
}

#[tokio::test]
async fn header_identity_limits_allows_and_refuses_callers() {
    let cfg = binary_config(&format!(
        "[callers]\nidentity = \"header:x-caller\"\nallow_unlisted = false\n\
         [[callers.caller]]\nid = \"limited\"\n{LIMITED}\n\
         [[callers.caller]]\nid = \"free\"\ntokens_per_second = 0\n"
    ));
    let mut jwtd = Served::start(&cfg);
    let channel = connect(&jwtd.address(), None).await;
    for caller in [None, Some("stranger"), Some("LIMITED")] {
        let refused = verify(&channel, 1, caller).await.expect_err("not allowed");
        assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{caller:?}");
        assert!(refused.message().contains("allow_unlisted"));
        assert!(refused.metadata().get("grpc-retry-pushback-ms").is_none());
    }
    assert_unlimited(|| verify(&channel, 5, Some("free"))).await;
    assert_limited("limited", || verify(&channel, 1, Some("limited"))).await;

    // Check counts one token per call against the same buckets; the default
    // answer to a caller over its limit is DENIED 429 with retry-after.
    let mut authz = AuthorizationClient::new(channel.clone());
    let bearer = format!("Bearer {}", live_token());
    let check = |caller: &str| {
        let mut request = tonic::Request::new(check_request(&[("authorization", &bearer)], &[]));
        request
            .metadata_mut()
            .insert("x-caller", caller.parse().unwrap());
        request
    };
    let denied = authz
        .check(check("stranger"))
        .await
        .expect_err("not allowed");
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);
    let ok = authz.check(check("free")).await.unwrap().into_inner();
    assert_eq!(ok.status.unwrap().code, 0);
    // Empty the limited caller's bucket again just before its Check.
    while verify(&channel, 1, Some("limited")).await.is_ok() {}
    let limited = authz.check(check("limited")).await.unwrap().into_inner();
    let Some(HttpResponse::DeniedResponse(d)) = limited.http_response else {
        panic!("the limited caller's bucket is still empty: expected DENIED");
    };
    assert_eq!(d.status.unwrap().code, 429);
    let retry_after: u64 = d
        .headers
        .iter()
        .filter_map(|h| h.header.as_ref())
        .find(|h| h.key == "retry-after")
        .expect("retry-after")
        .value
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry_after), "{retry_after}");
}

#[tokio::test]
async fn mtls_identity_is_the_certificates_uri_san_else_its_dns_san() {
    let ca = Ca::new("mesh CA");
    let folder = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = folder.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let (cert, key) = ca.issue("localhost", true);
    let (cert, key, client_ca) = (
        write("tls.crt", &cert),
        write("tls.key", &key),
        write("ca.crt", &ca.pem),
    );
    let cfg = binary_config(&format!(
        "[tls]\ncert_file = {cert:?}\nkey_file = {key:?}\nclient_ca_file = {client_ca:?}\n\
         [callers]\nidentity = \"mtls\"\nallow_unlisted = false\n\
         [[callers.caller]]\nid = \"spiffe://test/limited\"\n{LIMITED}\n\
         [[callers.caller]]\nid = \"free.example\"\n"
    ));
    let mut jwtd = Served::start(&cfg);
    let addr = jwtd.address();
    let client = |identity: (String, String)| {
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&ca.pem))
            .domain_name("localhost")
            .identity(Identity::from_pem(identity.0, identity.1));
        let endpoint = Endpoint::from_shared(format!("https://{addr}"))
            .unwrap()
            .tls_config(tls)
            .unwrap();
        async move { endpoint.connect().await.unwrap() }
    };
    let limited = client(ca.issue_client(&["spiffe://test/limited"], &["limited.example"])).await;
    let free = client(ca.issue_client(&[], &["free.example", "other.example"])).await;
    let stranger = client(ca.issue_client(&["spiffe://test/stranger"], &["free.example"])).await;

    let refused = verify(&stranger, 1, None).await.expect_err("not listed");
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    assert!(
        refused.message().contains("spiffe://test/stranger"),
        "the URI SAN is the identity, not the DNS SAN: {}",
        refused.message()
    );
    assert_unlimited(|| verify(&free, 5, None)).await;
    assert_limited("spiffe://test/limited", || verify(&limited, 1, None)).await;
}

#[test]
fn mtls_identity_without_client_certificates_is_refused_by_check_config() {
    let cfg = binary_config("[callers]\nidentity = \"mtls\"\n");
    let out = support::process::jwtd()
        .args(["check-config", "--config"])
        .arg(&*cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("callers.identity") && stderr.contains("client_ca_file"),
        "{stderr}"
    );
}
