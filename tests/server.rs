//! The real server on an ephemeral port, called through generated tonic
//! clients: Verify batches, whole-call errors, health and reflection.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests state their expectations by panicking.

mod support;

use jwtd::config::Limits;
use jwtd::pb::verifier_service_client::VerifierServiceClient;
use jwtd::pb::{Status as S, VerifyRequest, VerifyResult};
use jwtd::policy::IssuerPolicy;
use serde_json::json;
use support::*;

const LIMITS: Limits = Limits {
    max_batch: 9,
    max_token_bytes: 8192,
    max_pending_tokens: None,
};

async fn client(server: &Server) -> VerifierServiceClient<tonic::transport::Channel> {
    VerifierServiceClient::new(server.channel().await)
}

fn statuses(results: &[VerifyResult]) -> Vec<S> {
    results
        .iter()
        .map(|r| S::try_from(r.status).expect("known status"))
        .collect()
}

fn request(tokens: Vec<String>) -> VerifyRequest {
    VerifyRequest {
        tokens,
        ..VerifyRequest::default()
    }
}

#[tokio::test]
async fn a_mixed_batch_answers_each_token_in_order() {
    let policy = IssuerPolicy::new(ISS)
        .and_then(|p| p.with_audiences(vec!["api".into()]))
        .expect("valid");
    let server = Server::start(trust_with(policy), LIMITS).await;
    let mut client = client(&server).await;

    let valid = independent_token("ES256", &claims(ISS));
    let mut expired = claims(ISS);
    expired["exp"] = json!(NOW - 3600);
    let mut wrong_aud = claims(ISS);
    wrong_aud["aud"] = json!("other");
    let (input, _) = valid.rsplit_once('.').expect("parts");
    let bad_signature = format!("{input}.{}", "A".repeat(86));
    let payload = valid.split('.').nth(1).expect("payload");
    let alg_none = format!("{}.{payload}.", base64url(br#"{"alg":"none"}"#));
    let mut unknown_kid_header = json!({"alg": "RS256", "kid": "gone"}).to_string();
    unknown_kid_header = base64url(unknown_kid_header.as_bytes());
    let unknown_kid = format!("{unknown_kid_header}.{payload}.AAAA");
    let tokens = vec![
        valid.clone(),
        independent_token("RS256", &expired),
        "not-a-token".to_owned(),
        bad_signature,
        independent_token("EdDSA", &wrong_aud),
        unknown_kid,
        "x".repeat(9000),
        alg_none,
        independent_token("HS256", &claims(HMAC_ISS)),
    ];
    let response = client
        .verify(request(tokens))
        .await
        .expect("call succeeds")
        .into_inner();
    assert_eq!(
        statuses(&response.results),
        [
            S::Valid,
            S::Expired,
            S::Malformed,
            S::BadSignature,
            S::AudienceMismatch,
            S::UnknownKey,
            S::TokenTooLarge,
            S::UnsupportedAlgorithm,
            S::Valid,
        ]
    );
    let first = &response.results[0];
    assert_eq!(first.reason, "");
    assert!(!first.cached);
    let claims_out = first.claims.as_ref().expect("claims on VALID");
    assert_eq!(claims_out.issuer, ISS);
    assert_eq!(claims_out.subject, "alice");
    assert_eq!(claims_out.audiences, ["api"]);
    assert_eq!(claims_out.expires_at, NOW + 600);
    assert_eq!(claims_out.issued_at, NOW);
    assert_eq!(claims_out.not_before, 0);
    assert_eq!(claims_out.key_id, "p256");
    assert_eq!(claims_out.algorithm, "ES256");
    let payload: serde_json::Value =
        serde_json::from_slice(&claims_out.payload_json).expect("payload JSON");
    assert_eq!(payload, claims(ISS));
    for rejected in &response.results[1..8] {
        assert!(rejected.claims.is_none());
        assert!(!rejected.reason.is_empty());
        assert!(rejected.reason.len() < 120, "{}", rejected.reason);
    }
    assert!(response.results[1].reason.contains("expired"));
    server.stop().await;
}

#[tokio::test]
async fn every_view_answers_the_same_statuses_in_its_own_shape() {
    use jwtd::pb::View;
    let server = Server::start(trust(), LIMITS).await;
    let mut client = client(&server).await;
    let valid = independent_token("ES256", &claims(ISS));
    let mut expired = claims(ISS);
    expired["exp"] = json!(NOW - 3600);
    let (input, _) = valid.rsplit_once('.').expect("parts");
    let tokens = vec![
        valid.clone(),
        independent_token("RS256", &expired),
        format!("{input}.{}", "A".repeat(86)),
        "not-a-token".to_owned(),
    ];
    let want = [S::Valid, S::Expired, S::BadSignature, S::Malformed];
    let mut call = async |view: View| {
        client
            .verify(VerifyRequest {
                tokens: tokens.clone(),
                view: view as i32,
                ..VerifyRequest::default()
            })
            .await
            .expect("call succeeds")
            .into_inner()
            .results
    };
    // The first call is cold (rendered by the pool), the rest memo hits.
    let cold = call(View::StatusOnly).await;
    let full = call(View::Full).await;
    let unspecified = call(View::Unspecified).await;
    let registered = call(View::Registered).await;
    let status_only = call(View::StatusOnly).await;
    assert_eq!(full, unspecified, "UNSPECIFIED is FULL");
    assert!(
        !cold[0].cached && full[0].cached,
        "the memo answers after the first call"
    );
    for results in [&cold, &full, &registered, &status_only] {
        assert_eq!(statuses(results), want);
        // Rejections look alike in every view: status, reason, cached.
        for (r, f) in results[1..].iter().zip(&full[1..]) {
            assert!(r.claims.is_none());
            assert!(!r.reason.is_empty());
            assert_eq!((&r.reason, r.status), (&f.reason, f.status));
        }
    }
    for (a, b) in registered
        .iter()
        .zip(&full)
        .chain(status_only.iter().zip(&full))
    {
        assert_eq!(a.cached, b.cached);
    }
    let full_claims = full[0].claims.clone().expect("FULL has claims");
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&full_claims.payload_json).expect("JSON"),
        claims(ISS)
    );
    assert_eq!(
        registered[0].claims,
        Some(jwtd::pb::Claims {
            payload_json: Vec::new(),
            ..full_claims
        }),
        "REGISTERED: every registered claim, no payload"
    );
    for r in [&cold[0], &status_only[0]] {
        assert_eq!(r.claims, None, "STATUS_ONLY: no claims");
        assert_eq!(r.reason, "");
    }

    let err = client
        .verify(VerifyRequest {
            tokens: vec![valid],
            view: 7,
            ..VerifyRequest::default()
        })
        .await
        .expect_err("an unknown view");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(
        err.message().contains("view 7 is not a jwtd.v1.View"),
        "{}",
        err.message()
    );
    server.stop().await;
}

#[tokio::test]
async fn a_request_narrows_audiences_and_issuer() {
    let server = Server::start(trust(), LIMITS).await;
    let mut client = client(&server).await;
    let token = independent_token("RS256", &claims(ISS));
    let hs = independent_token("HS256", &claims(HMAC_ISS));

    let narrowed = client
        .verify(VerifyRequest {
            tokens: vec![token.clone(), hs.clone()],
            audiences: vec!["billing".into()],
            issuer: String::new(),
            ..VerifyRequest::default()
        })
        .await
        .expect("call")
        .into_inner();
    assert_eq!(
        statuses(&narrowed.results),
        [S::AudienceMismatch, S::AudienceMismatch]
    );

    let by_issuer = client
        .verify(VerifyRequest {
            tokens: vec![token, hs],
            audiences: vec!["api".into()],
            issuer: HMAC_ISS.into(),
            ..VerifyRequest::default()
        })
        .await
        .expect("call")
        .into_inner();
    assert_eq!(
        statuses(&by_issuer.results),
        [S::IssuerNotTrusted, S::Valid]
    );
    server.stop().await;
}

#[tokio::test]
async fn whole_call_errors_are_grpc_statuses() {
    let server = Server::start(trust(), LIMITS).await;
    let mut client = client(&server).await;

    let empty = client
        .verify(request(vec![]))
        .await
        .expect("empty batch is fine")
        .into_inner();
    assert!(empty.results.is_empty());

    let err = client
        .verify(request(vec!["t".into(); 10]))
        .await
        .expect_err("over the limit");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("limit of 9"), "{}", err.message());

    let err = client
        .verify(VerifyRequest {
            tokens: vec!["t".into()],
            audiences: vec![],
            issuer: "https://nobody.test".into(),
            ..VerifyRequest::default()
        })
        .await
        .expect_err("unknown issuer filter");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(
        err.message().contains("not configured"),
        "{}",
        err.message()
    );

    let err = client
        .verify(VerifyRequest {
            tokens: vec!["t".into()],
            audiences: vec![String::new()],
            issuer: String::new(),
            ..VerifyRequest::default()
        })
        .await
        .expect_err("empty audience");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);

    // A full batch of the longest tokens fits the message size limit.
    let full = client
        .verify(request(vec!["x".repeat(8192); 9]))
        .await
        .expect("a full batch decodes")
        .into_inner();
    assert_eq!(statuses(&full.results), [S::Malformed; 9]);
    server.stop().await;
}

#[tokio::test]
async fn the_default_batch_limit_carries_a_thousand_full_size_tokens() {
    let limits = Limits {
        max_batch: 1024,
        max_token_bytes: 8192,
        max_pending_tokens: None,
    };
    let server = Server::start(trust(), limits).await;
    let mut client = client(&server).await;
    let response = client
        .verify(request(vec!["y".repeat(8000); 1024]))
        .await
        .expect("8 MB batch is within the limit")
        .into_inner();
    assert_eq!(response.results.len(), 1024);
    server.stop().await;
}

#[tokio::test]
async fn health_reports_serving_for_the_server_and_the_service() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let server = Server::start(trust(), LIMITS).await;
    let mut health = HealthClient::new(server.channel().await);
    for service in [
        "",
        "jwtd.v1.VerifierService",
        "envoy.service.auth.v3.Authorization",
    ] {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .expect("health answers")
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32, "{service:?}");
    }
    let unknown = health
        .check(HealthCheckRequest {
            service: "nope.Service".into(),
        })
        .await
        .expect_err("unknown service");
    assert_eq!(unknown.code(), tonic::Code::NotFound);
    server.stop().await;
}

/// Lists services and describes the Verify service through one reflection
/// API version (the types differ between versions; the calls do not).
macro_rules! reflection_checks {
    ($name:ident, $pb:path) => {
        #[tokio::test]
        async fn $name() {
            use r::server_reflection_client::ServerReflectionClient;
            use r::server_reflection_request::MessageRequest;
            use r::server_reflection_response::MessageResponse;
            use $pb as r;

            let server = Server::start(trust(), LIMITS).await;
            let mut client = ServerReflectionClient::new(server.channel().await);
            let ask = |message| r::ServerReflectionRequest {
                host: String::new(),
                message_request: Some(message),
            };
            let requests = vec![
                ask(MessageRequest::ListServices(String::new())),
                ask(MessageRequest::FileContainingSymbol(
                    "jwtd.v1.VerifierService".into(),
                )),
                ask(MessageRequest::FileContainingSymbol(
                    "envoy.service.auth.v3.Authorization".into(),
                )),
            ];
            let mut responses = client
                .server_reflection_info(tokio_stream::iter(requests))
                .await
                .expect("reflection answers")
                .into_inner();

            let Some(MessageResponse::ListServicesResponse(list)) = responses
                .message()
                .await
                .expect("stream")
                .and_then(|m| m.message_response)
            else {
                panic!("expected a service list");
            };
            let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
            for want in [
                "jwtd.v1.VerifierService",
                "grpc.health.v1.Health",
                "envoy.service.auth.v3.Authorization",
            ] {
                assert!(names.contains(&want), "{names:?}");
            }

            /// The first file of the next FileDescriptorResponse.
            async fn next_file(
                responses: &mut tonic::Streaming<r::ServerReflectionResponse>,
            ) -> prost_types::FileDescriptorProto {
                use prost::Message as _;
                let Some(MessageResponse::FileDescriptorResponse(files)) = responses
                    .message()
                    .await
                    .expect("stream")
                    .and_then(|m| m.message_response)
                else {
                    panic!("expected a file descriptor");
                };
                prost_types::FileDescriptorProto::decode(files.file_descriptor_proto[0].as_slice())
                    .expect("descriptor decodes")
            }
            let file = next_file(&mut responses).await;
            assert_eq!(file.package(), "jwtd.v1");
            assert_eq!(file.service[0].method[0].name(), "Verify");

            // Check too, and every file it imports (a client needs them all
            // to build a CheckRequest; it asks for them by name).
            let authz = next_file(&mut responses).await;
            assert_eq!(authz.package(), "envoy.service.auth.v3");
            assert_eq!(authz.service[0].method[0].name(), "Check");
            let imports: Vec<_> = authz
                .dependency
                .iter()
                .map(|name| ask(MessageRequest::FileByFilename(name.clone())))
                .collect();
            assert!(!imports.is_empty());
            let count = imports.len();
            let mut answers = client
                .server_reflection_info(tokio_stream::iter(imports))
                .await
                .expect("reflection answers")
                .into_inner();
            for _ in 0..count {
                let answer = answers
                    .message()
                    .await
                    .expect("stream")
                    .and_then(|m| m.message_response);
                assert!(
                    matches!(answer, Some(MessageResponse::FileDescriptorResponse(_))),
                    "an import of external_auth.proto is not served: {answer:?}"
                );
            }
            server.stop().await;
        }
    };
}

reflection_checks!(reflection_v1_lists_and_describes, tonic_reflection::pb::v1);
reflection_checks!(
    reflection_v1alpha_lists_and_describes,
    tonic_reflection::pb::v1alpha
);

fn base64url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}
