//! Envoy's ext_authz Check through a tonic client: valid, expired,
//! wrong-audience, missing, malformed and outage cases, asserting the exact
//! CheckResponse (gRPC status, HTTP code, headers).

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests state their expectations by panicking.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use envoy_types::pb::envoy::service::auth::v3::CheckResponse;
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use jwtd::clock::FixedClock;
use jwtd::engine::{Engine, EngineConfig};
use jwtd::ext_authz::ExtAuthzConfig;
use jwtd::policy::{IssuerPolicy, KeyState, Trust, TrustedIssuer};
use jwtd::registry::Registry;
use jwtd::server::ServeOptions;
use serde_json::json;
use support::*;

const DOWN: &str = "https://down.test";

/// ISS and the HMAC issuer as usual, plus an issuer whose keys are down.
fn trust_with_outage() -> Trust {
    let mut issuers: Vec<TrustedIssuer> = trust().issuers().cloned().collect();
    issuers.push(TrustedIssuer {
        policy: Arc::new(IssuerPolicy::new(DOWN).unwrap()),
        keys: KeyState::Unavailable,
    });
    Trust::new(issuers, 8192)
}

async fn start(config: ExtAuthzConfig) -> (Server, AuthorizationClient<tonic::transport::Channel>) {
    let limits = jwtd::config::Limits {
        max_batch: 64,
        max_token_bytes: 8192,
        max_pending_tokens: None,
    };
    let registry = Registry::fixed(trust_with_outage(), limits);
    let engine = Engine::new(
        registry,
        Arc::new(FixedClock(now())),
        EngineConfig::default(),
    )
    .unwrap();
    let options = ServeOptions {
        server: jwtd::config::ServerConfig {
            drain: std::time::Duration::ZERO,
            ..Default::default()
        },
        ext_authz: config,
        ..Default::default()
    };
    let server = Server::start_with(Arc::new(engine), options).await;
    let client = AuthorizationClient::new(server.channel().await);
    (server, client)
}

async fn check(
    client: &mut AuthorizationClient<tonic::transport::Channel>,
    headers: &[(&str, &str)],
    route: &[(&str, &str)],
) -> CheckResponse {
    client
        .check(check_request(headers, route))
        .await
        .expect("Check answers")
        .into_inner()
}

/// (gRPC code, upstream headers set, headers removed) of an OK answer.
fn allowed(response: &CheckResponse) -> (i32, HashMap<String, String>, Vec<String>) {
    let Some(HttpResponse::OkResponse(ok)) = &response.http_response else {
        panic!("not OK: {response:?}");
    };
    let set = ok
        .headers
        .iter()
        .map(|h| {
            let h = h.header.as_ref().unwrap();
            (h.key.clone(), h.value.clone())
        })
        .collect();
    (
        response.status.as_ref().unwrap().code,
        set,
        ok.headers_to_remove.clone(),
    )
}

/// (gRPC code, HTTP code, www-authenticate) of a DENIED answer.
fn denied(response: &CheckResponse) -> (i32, i32, Option<String>) {
    let Some(HttpResponse::DeniedResponse(denied)) = &response.http_response else {
        panic!("not denied: {response:?}");
    };
    let www = denied
        .headers
        .iter()
        .filter_map(|h| h.header.as_ref())
        .find(|h| h.key == "www-authenticate")
        .map(|h| h.value.clone());
    (
        response.status.as_ref().unwrap().code,
        denied.status.as_ref().unwrap().code,
        www,
    )
}

fn config() -> ExtAuthzConfig {
    ExtAuthzConfig {
        claim_to_headers: BTreeMap::from([
            ("scope".to_owned(), "x-jwt-scope".to_owned()),
            ("tenant".to_owned(), "x-jwt-tenant".to_owned()),
        ]),
        payload_header: "x-jwt-payload".into(),
        remove_authorization: true,
        ..ExtAuthzConfig::default()
    }
}

const OK: i32 = tonic::Code::Ok as i32;
const UNAUTHENTICATED: i32 = tonic::Code::Unauthenticated as i32;

#[tokio::test]
async fn a_valid_token_passes_with_its_claims_as_headers() {
    let (server, mut client) = start(config()).await;
    let token = independent_token("ES256", &claims(ISS));
    let response = check(
        &mut client,
        &[("authorization", &format!("Bearer {token}"))],
        &[],
    )
    .await;
    let (code, set, removed) = allowed(&response);
    assert_eq!(code, OK);
    assert_eq!(set["x-jwt-sub"], "alice");
    assert_eq!(set["x-jwt-iss"], ISS);
    assert_eq!(set["x-jwt-scope"], "read");
    assert_eq!(set["x-jwt-payload"], token.split('.').nth(1).unwrap());
    assert_eq!(set.len(), 4, "{set:?}");
    // The token leaves, and so does any client-sent header for a claim the
    // token lacks (tenant), so it cannot be spoofed upstream.
    assert_eq!(removed, ["x-jwt-tenant", "authorization"]);

    // The scheme is case-insensitive, and Envoy's raw header list works too.
    let lower = check(
        &mut client,
        &[("authorization", &format!("bearer {token}"))],
        &[],
    )
    .await;
    assert_eq!(allowed(&lower).0, OK);
    server.stop().await;
}

#[tokio::test]
async fn rejections_are_401_with_a_bearer_challenge_naming_the_reason() {
    let (server, mut client) = start(ExtAuthzConfig::default()).await;
    let mut expired = claims(ISS);
    expired["exp"] = json!(NOW - 600);
    let expired = independent_token("RS256", &expired);
    let response = check(
        &mut client,
        &[("authorization", &format!("Bearer {expired}"))],
        &[],
    )
    .await;
    let (code, http, www) = denied(&response);
    assert_eq!((code, http), (UNAUTHENTICATED, 401));
    let www = www.unwrap();
    assert!(
        www.starts_with("Bearer error=\"invalid_token\", error_description=\"")
            && www.contains("expired"),
        "{www}"
    );
    let Some(HttpResponse::DeniedResponse(body)) = &response.http_response else {
        unreachable!()
    };
    assert!(body.body.starts_with("STATUS_EXPIRED: "), "{}", body.body);

    let malformed = check(&mut client, &[("authorization", "Bearer not.a-token")], &[]).await;
    let (code, http, www) = denied(&malformed);
    assert_eq!((code, http), (UNAUTHENTICATED, 401));
    assert!(www.unwrap().contains("error=\"invalid_token\""));

    let basic = check(&mut client, &[("authorization", "Basic dXNlcjpwYXNz")], &[]).await;
    assert_eq!(denied(&basic).1, 401);
    server.stop().await;
}

#[tokio::test]
async fn a_token_for_another_audience_is_403() {
    let (server, mut client) = start(ExtAuthzConfig::default()).await;
    let token = independent_token("EdDSA", &claims(ISS));
    let header = format!("Bearer {token}");
    // The route accepts only "billing"; the token is for "api".
    let route = [("jwtd.audiences", "billing")];
    let (code, http, www) =
        denied(&check(&mut client, &[("authorization", &header)], &route).await);
    assert_eq!((code, http), (tonic::Code::PermissionDenied as i32, 403));
    assert!(www.unwrap().contains("audience"));
    // The same token where the route takes "api".
    let route = [("jwtd.audiences", "billing, api")];
    assert_eq!(
        allowed(&check(&mut client, &[("authorization", &header)], &route).await).0,
        OK
    );
    server.stop().await;
}

#[tokio::test]
async fn a_missing_token_is_denied_unless_the_route_allows_it() {
    let (server, mut client) = start(config()).await;
    let (code, http, www) = denied(&check(&mut client, &[("x-other", "1")], &[]).await);
    assert_eq!((code, http), (UNAUTHENTICATED, 401));
    assert_eq!(
        www.as_deref(),
        Some("Bearer"),
        "RFC 6750: no error code without a token"
    );

    let route = [("jwtd.allow_missing", "true")];
    let (code, set, removed) = allowed(&check(&mut client, &[], &route).await);
    assert_eq!(code, OK);
    assert!(set.is_empty());
    // Nothing verified, so no identity header may pass from the client.
    for h in [
        "x-jwt-sub",
        "x-jwt-iss",
        "x-jwt-payload",
        "x-jwt-scope",
        "x-jwt-tenant",
    ] {
        assert!(removed.contains(&h.to_owned()), "{h} in {removed:?}");
    }
    assert!(!removed.contains(&"authorization".to_owned()));

    let bad_route = client
        .check(check_request(&[], &[("jwtd.allow_missing", "yes")]))
        .await
        .expect_err("a bad route setting is the operator's error");
    assert_eq!(bad_route.code(), tonic::Code::InvalidArgument);
    server.stop().await;
}

#[tokio::test]
async fn a_key_outage_is_503_not_401() {
    let (server, mut client) = start(ExtAuthzConfig::default()).await;
    let token = independent_token("RS256", &claims(DOWN));
    let response = check(
        &mut client,
        &[("authorization", &format!("Bearer {token}"))],
        &[],
    )
    .await;
    let (code, http, www) = denied(&response);
    assert_eq!((code, http), (tonic::Code::Unavailable as i32, 503));
    assert_eq!(www, None, "an outage is not the token's fault");
    server.stop().await;
}

#[tokio::test]
async fn a_custom_header_and_raw_header_maps_are_read() {
    let config = ExtAuthzConfig {
        header: "x-token".into(),
        prefix: String::new(),
        ..ExtAuthzConfig::default()
    };
    let (server, mut client) = start(config).await;
    let token = independent_token("PS256", &claims(ISS));
    let response = check(&mut client, &[("x-token", &token)], &[]).await;
    assert_eq!(allowed(&response).0, OK);

    // Envoy with encode_raw_headers sends header_map instead of headers.
    use envoy_types::pb::envoy::config::core::v3::{HeaderMap, HeaderValue};
    let mut request = check_request(&[], &[]);
    let http = request
        .attributes
        .as_mut()
        .unwrap()
        .request
        .as_mut()
        .unwrap()
        .http
        .as_mut()
        .unwrap();
    http.header_map = Some(HeaderMap {
        headers: vec![HeaderValue {
            key: "x-token".into(),
            raw_value: token.clone().into_bytes(),
            ..HeaderValue::default()
        }],
    });
    let response = client.check(request).await.unwrap().into_inner();
    assert_eq!(allowed(&response).0, OK);
    server.stop().await;
}
