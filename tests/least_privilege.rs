//! Issue 13 §1–2 against the real binary over gRPC: the secure audience
//! default, token types, scopes per call, per issuer and per route, client
//! allowlists, roles in a nested claim and a maximum age, for cold tokens
//! and memo hits, through Verify and through Check. Every token is signed by
//! the jsonwebtoken crate, not by jwtd.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests state their expectations by panicking.

mod support;

use envoy_types::pb::envoy::service::auth::v3::CheckResponse;
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use jwtd::pb::Status as S;
use jwtd::pb::verifier_service_client::VerifierServiceClient;
use jwtd::pb::{VerifyRequest, VerifyResult};
use serde_json::{Value, json};
use support::process::{Served, jwtd};
use support::*;

/// ISS with every requirement of §2 at once (each test token meets all but
/// the one it breaks), and the HMAC issuer with no audience rule at all.
fn config(ext_authz: &str) -> Scratch {
    let jwks = data("keys/jwks.json");
    let hmac = data("keys/jwks-hmac.json");
    scratch(
        "least.toml",
        &format!(
            "listen = \"127.0.0.1:0\"\nmetrics_listen = \"\"\n{ext_authz}\n\
             [[issuers]]\nissuer = {ISS:?}\njwks_file = {jwks:?}\naudiences = [\"api\"]\n\
             types = [\"at+jwt\"]\nrequired_scopes = [\"read\"]\n\
             authorized_parties = [\"web\", \"cli\"]\nmax_age_seconds = 3600\n\
             roles_claim = \"realm_access.roles\"\nrequired_roles = [\"user\"]\n\
             [[issuers]]\nissuer = {HMAC_ISS:?}\njwks_file = {hmac:?}\n"
        ),
    )
}

/// Claims that meet every requirement of ISS, issued a minute ago.
fn good_claims() -> Value {
    let now = wall_now();
    json!({
        "iss": ISS, "sub": "alice", "aud": "api", "azp": "web",
        "iat": now - 60, "exp": now + 600,
        "scope": "read write",
        "realm_access": { "roles": ["user", "auditor"] },
    })
}

/// RS256 by jsonwebtoken, with `typ` as given (`None`: no typ member).
fn token(typ: Option<&str>, claims: &Value) -> String {
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("rsa2048".into());
    header.typ = typ.map(str::to_owned);
    let key = EncodingKey::from_rsa_pem(&read("keys/rsa2048.pem")).unwrap();
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

fn with(mut claims: Value, name: &str, value: Value) -> Value {
    claims[name] = value;
    claims
}

fn without(mut claims: Value, name: &str) -> Value {
    claims.as_object_mut().unwrap().remove(name);
    claims
}

async fn verify_with(addr: &str, tokens: &[&str], request: VerifyRequest) -> Vec<VerifyResult> {
    let mut client = VerifierServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let request = VerifyRequest {
        tokens: tokens.iter().map(|t| (*t).to_owned()).collect(),
        ..request
    };
    client.verify(request).await.unwrap().into_inner().results
}

async fn statuses(addr: &str, tokens: &[&str], request: VerifyRequest) -> Vec<S> {
    verify_with(addr, tokens, request)
        .await
        .iter()
        .map(|r| r.status())
        .collect()
}

fn scopes(list: &[&str]) -> VerifyRequest {
    VerifyRequest {
        required_scopes: list.iter().map(|s| (*s).to_owned()).collect(),
        ..VerifyRequest::default()
    }
}

#[tokio::test]
async fn an_issuer_without_an_audience_rule_fails_closed_and_check_config_warns() {
    let cfg = config("");
    let checked = jwtd()
        .args(["check-config", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(checked.status.success(), "{checked:?}");
    let stderr = String::from_utf8_lossy(&checked.stderr);
    assert!(
        stderr.contains(HMAC_ISS) && stderr.contains("allow_any_audience"),
        "check-config warns about the issuer: {stderr}"
    );
    assert!(!stderr.contains(&format!("({ISS})")), "{stderr}");

    let mut served = Served::start(&cfg);
    let addr = served.address();
    let hs = independent_token(
        "HS256",
        &json!({ "iss": HMAC_ISS, "sub": "alice", "aud": "api", "exp": wall_now() + 600 }),
    );
    let named = |aud: &str| VerifyRequest {
        audiences: vec![aud.to_owned()],
        ..VerifyRequest::default()
    };
    assert_eq!(
        statuses(&addr, &[&hs], VerifyRequest::default()).await,
        [S::AudienceMismatch]
    );
    // The token's aud is "api": a call that names it gets it checked.
    assert_eq!(statuses(&addr, &[&hs], named("api")).await, [S::Valid]);
    assert_eq!(
        statuses(&addr, &[&hs], named("billing")).await,
        [S::AudienceMismatch]
    );
}

#[tokio::test]
async fn token_types_are_compared_as_rfc_7515_says() {
    let cfg = config("");
    let mut served = Served::start(&cfg);
    let addr = served.address();
    let claims = good_claims();
    let accepted: Vec<String> = [
        "at+jwt",
        "AT+JWT",
        "application/at+jwt",
        "Application/AT+JWT",
    ]
    .iter()
    .map(|typ| token(Some(typ), &claims))
    .collect();
    let refused = [
        token(Some("JWT"), &claims),
        token(None, &claims),
        token(Some("application/jwt"), &claims),
        token(Some("at+jwt "), &claims),
    ];
    let all: Vec<&str> = accepted
        .iter()
        .chain(refused.iter())
        .map(String::as_str)
        .collect();
    let results = verify_with(&addr, &all, VerifyRequest::default()).await;
    let got: Vec<S> = results.iter().map(|r| r.status()).collect();
    assert_eq!(
        got,
        [
            S::Valid,
            S::Valid,
            S::Valid,
            S::Valid,
            S::TypeNotAllowed,
            S::TypeNotAllowed,
            S::TypeNotAllowed,
            S::TypeNotAllowed
        ]
    );
    assert!(results[4].reason.contains("JWT"), "{}", results[4].reason);
    assert!(
        results[5].reason.contains("(none)"),
        "{}",
        results[5].reason
    );
}

#[tokio::test]
async fn scopes_per_call_and_per_issuer_from_scope_or_scp_for_cold_tokens_and_memo_hits() {
    let cfg = config("");
    let mut served = Served::start(&cfg);
    let addr = served.address();
    let string = token(Some("at+jwt"), &good_claims());
    let array = token(
        Some("at+jwt"),
        &with(
            without(good_claims(), "scope"),
            "scp",
            json!(["read", "write"]),
        ),
    );
    let scp_string = token(
        Some("at+jwt"),
        &with(without(good_claims(), "scope"), "scp", json!("read write")),
    );
    let tokens = [string.as_str(), array.as_str(), scp_string.as_str()];

    // Cold: granted scopes pass.
    let first = verify_with(&addr, &tokens, scopes(&["write"])).await;
    assert!(first.iter().all(|r| r.status() == S::Valid), "{first:?}");
    assert!(first.iter().all(|r| !r.cached));

    // Memo hits: the same tokens, a scope they lack.
    let second = verify_with(&addr, &tokens, scopes(&["write", "admin"])).await;
    for result in &second {
        assert_eq!(result.status(), S::InsufficientScope, "{result:?}");
        assert!(result.cached, "checked on the memo hit too");
        assert_eq!(result.reason, "missing scope admin");
    }

    // The issuer's own required_scopes ("read") apply with no call scopes.
    let no_read = token(
        Some("at+jwt"),
        &with(good_claims(), "scope", json!("write")),
    );
    let results = verify_with(&addr, &[&no_read], VerifyRequest::default()).await;
    assert_eq!(results[0].status(), S::InsufficientScope);
    assert_eq!(results[0].reason, "missing scope read");

    // A scope claim of the wrong shape is malformed, not "no scopes".
    let bad = token(Some("at+jwt"), &with(good_claims(), "scope", json!(7)));
    assert_eq!(
        statuses(&addr, &[&bad], VerifyRequest::default()).await,
        [S::Malformed]
    );

    // A required scope that is not a scope is the call's error.
    let mut client = VerifierServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let refused = client
        .verify(VerifyRequest {
            tokens: vec![string.clone()],
            ..scopes(&["read write"])
        })
        .await
        .expect_err("a scope with a space");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    assert!(refused.message().contains("required_scopes"), "{refused:?}");
}

#[tokio::test]
async fn clients_roles_and_age_have_their_own_answers() {
    let cfg = config("");
    let mut served = Served::start(&cfg);
    let addr = served.address();
    let now = wall_now();
    let good = good_claims();
    let cases = [
        // client_id is read when there is no azp.
        (
            with(without(good.clone(), "azp"), "client_id", json!("cli")),
            S::Valid,
            "",
        ),
        (
            with(good.clone(), "azp", json!("evil")),
            S::ClientNotAllowed,
            "client",
        ),
        (without(good.clone(), "azp"), S::ClientNotAllowed, "client"),
        (
            with(
                good.clone(),
                "realm_access",
                json!({ "roles": ["auditor"] }),
            ),
            S::InsufficientScope,
            "missing role user",
        ),
        (
            without(good.clone(), "realm_access"),
            S::InsufficientScope,
            "missing role user",
        ),
        (
            with(good.clone(), "iat", json!(now - 7200)),
            S::Expired,
            "maximum age",
        ),
        (without(good.clone(), "iat"), S::MissingClaim, "iat"),
    ];
    let tokens: Vec<String> = cases
        .iter()
        .map(|(claims, _, _)| token(Some("at+jwt"), claims))
        .collect();
    let refs: Vec<&str> = tokens.iter().map(String::as_str).collect();
    for round in ["cold", "memo hit"] {
        let results = verify_with(&addr, &refs, VerifyRequest::default()).await;
        for ((_, status, reason), result) in cases.iter().zip(&results) {
            assert_eq!(result.status(), *status, "{round}: {result:?}");
            assert!(result.reason.contains(reason), "{round}: {result:?}");
        }
    }
}

fn check_request(
    token: &str,
    route: &[(&str, &str)],
) -> envoy_types::pb::envoy::service::auth::v3::CheckRequest {
    let bearer = format!("Bearer {token}");
    support::check_request(&[("authorization", bearer.as_str())], route)
}

/// (HTTP code, www-authenticate, body) of a DENIED answer.
fn denial(response: &CheckResponse) -> (i32, String, String) {
    let Some(HttpResponse::DeniedResponse(denied)) = &response.http_response else {
        panic!("not denied: {response:?}");
    };
    let www = denied
        .headers
        .iter()
        .filter_map(|h| h.header.as_ref())
        .find(|h| h.key == "www-authenticate")
        .map(|h| h.value.clone())
        .unwrap_or_default();
    (
        denied.status.as_ref().unwrap().code,
        www,
        denied.body.clone(),
    )
}

#[tokio::test]
async fn check_answers_403_insufficient_scope_and_filters_the_subject() {
    let cfg = config("");
    let mut served = Served::start(&cfg);
    let addr = served.address();
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = AuthorizationClient::new(channel);
    let good = token(Some("at+jwt"), &good_claims());

    let ok = client
        .check(check_request(&good, &[("jwtd.scopes", "read write")]))
        .await
        .unwrap()
        .into_inner();
    assert!(
        matches!(ok.http_response, Some(HttpResponse::OkResponse(_))),
        "{ok:?}"
    );

    let refused = client
        .check(check_request(&good, &[("jwtd.scopes", "read admin")]))
        .await
        .unwrap()
        .into_inner();
    let (code, www, _) = denial(&refused);
    assert_eq!(code, 403);
    assert!(
        www.starts_with("Bearer error=\"insufficient_scope\"")
            && www.contains("scope=\"read admin\"")
            && www.contains("missing scope admin"),
        "{www}"
    );

    // A blank route value is the route's error, not an open route.
    let blank = client
        .check(check_request(&good, &[("jwtd.scopes", "  ")]))
        .await
        .expect_err("a blank jwtd.scopes");
    assert_eq!(blank.code(), tonic::Code::InvalidArgument, "{blank:?}");
    assert!(blank.message().contains("jwtd.scopes"), "{blank:?}");

    // A subject with CR/LF never becomes a header: the request is denied.
    let injected = token(
        Some("at+jwt"),
        &with(good_claims(), "sub", json!("alice\r\nx-admin: true")),
    );
    let response = client
        .check(check_request(&injected, &[]))
        .await
        .unwrap()
        .into_inner();
    let (code, www, _) = denial(&response);
    assert_eq!(code, 401);
    assert!(www.contains("invalid_token"), "{www}");
}

#[tokio::test]
async fn without_detailed_errors_end_users_see_only_the_error_code() {
    let cfg = config("[ext_authz]\ndetailed_errors = false\n");
    let mut served = Served::start(&cfg);
    let addr = served.address();
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = AuthorizationClient::new(channel);
    let expired = token(
        Some("at+jwt"),
        &with(good_claims(), "exp", json!(wall_now() - 3600)),
    );
    let response = client
        .check(check_request(&expired, &[]))
        .await
        .unwrap()
        .into_inner();
    let (code, www, body) = denial(&response);
    assert_eq!(code, 401);
    assert!(www.contains("error=\"invalid_token\""), "{www}");
    for leak in [ISS, "expired", &wall_now().to_string()[..6]] {
        assert!(
            !www.contains(leak) && !body.contains(leak),
            "{leak} in {www} / {body}"
        );
    }
    // Envoy's log still gets the precise reason.
    let message = &response.status.as_ref().unwrap().message;
    assert!(message.contains("EXPIRED"), "{message}");

    let good = token(Some("at+jwt"), &good_claims());
    let refused = client
        .check(check_request(&good, &[("jwtd.scopes", "admin")]))
        .await
        .unwrap()
        .into_inner();
    let (code, www, body) = denial(&refused);
    assert_eq!(code, 403);
    assert!(
        www.contains("error=\"insufficient_scope\"") && www.contains("scope=\"admin\""),
        "{www}"
    );
    assert!(
        !www.contains("missing scope") && !body.contains("missing scope"),
        "{www} / {body}"
    );
}
