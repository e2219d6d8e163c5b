//! Verify, Check and health through a real HTTP/2 proxy: nginx with
//! `grpc_pass` in front of jwtd, as an ingress or a plain reverse proxy
//! runs it. CI installs nginx from Debian's packages and sets
//! JWTD_REQUIRE_PROXY=1; elsewhere the test says it was skipped.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests state their expectations by panicking.

mod support;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest};
use jwtd::pb::verifier_service_client::VerifierServiceClient;
use jwtd::pb::{Status, VerifyRequest};
use support::*;

fn nginx() -> Option<PathBuf> {
    ["/usr/sbin/nginx", "/usr/bin/nginx", "/usr/local/sbin/nginx"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// nginx in the foreground, killed when dropped.
struct Nginx(std::process::Child);

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn verify_check_and_health_pass_through_nginx_grpc_pass() {
    let Some(nginx) = nginx() else {
        assert!(
            std::env::var_os("JWTD_REQUIRE_PROXY").is_none(),
            "JWTD_REQUIRE_PROXY is set but nginx is not installed"
        );
        eprintln!("skipped: nginx is not installed (CI installs it)");
        return;
    };
    let server = Server::start(
        trust(),
        jwtd::config::Limits {
            max_batch: 64,
            max_token_bytes: 8192,
            max_pending_tokens: None,
        },
    )
    .await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let port = free_port();
    let conf = format!(
        "daemon off;\nmaster_process off;\nerror_log {dir}/error.log warn;\npid {dir}/nginx.pid;\n\
         events {{}}\n\
         http {{\n  access_log off;\n  client_body_temp_path {dir}/body;\n  proxy_temp_path {dir}/proxy;\n\
           fastcgi_temp_path {dir}/fastcgi;\n  uwsgi_temp_path {dir}/uwsgi;\n  scgi_temp_path {dir}/scgi;\n\
           server {{\n    listen 127.0.0.1:{port} http2;\n\
             location / {{ grpc_pass grpc://{upstream}; }}\n  }}\n}}\n",
        dir = dir.display(),
        upstream = server.addr,
    );
    let conf_path = dir.join("nginx.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let _proxy = Nginx(
        Command::new(&nginx)
            .arg("-p")
            .arg(dir)
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-c")
            .arg(&conf_path)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("nginx starts"),
    );
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let channel = loop {
        match tonic::transport::Endpoint::from_shared(url.clone())
            .unwrap()
            .connect()
            .await
        {
            Ok(channel) => break channel,
            Err(e) => {
                assert!(Instant::now() < deadline, "nginx never listened: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };

    let valid = independent_token("RS256", &claims(ISS));
    let mut expired = claims(ISS);
    expired["exp"] = serde_json::json!(NOW - 600);
    let expired = independent_token("ES256", &expired);
    let results = VerifierServiceClient::new(channel.clone())
        .verify(VerifyRequest {
            tokens: vec![valid.clone(), expired, "garbage".into()],
            ..VerifyRequest::default()
        })
        .await
        .expect("Verify through nginx")
        .into_inner()
        .results;
    let statuses: Vec<_> = results.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses,
        [Status::Valid, Status::Expired, Status::Malformed].map(|s| s as i32)
    );
    assert_eq!(results[0].claims.as_ref().unwrap().subject, "alice");

    // A whole-call error keeps its code and message across the proxy.
    let over = VerifierServiceClient::new(channel.clone())
        .verify(VerifyRequest {
            tokens: vec![valid.clone(); 65],
            ..VerifyRequest::default()
        })
        .await
        .expect_err("over the batch limit");
    assert_eq!(over.code(), tonic::Code::InvalidArgument);
    assert!(
        over.message().contains("limits.max_batch"),
        "{}",
        over.message()
    );

    let check = |token: &str| CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(Request {
                http: Some(HttpRequest {
                    headers: [("authorization".to_owned(), format!("Bearer {token}"))].into(),
                    ..HttpRequest::default()
                }),
                ..Request::default()
            }),
            ..AttributeContext::default()
        }),
    };
    let mut authz = AuthorizationClient::new(channel.clone());
    let ok = authz
        .check(check(&valid))
        .await
        .expect("Check through nginx")
        .into_inner();
    assert!(
        matches!(ok.http_response, Some(HttpResponse::OkResponse(_))),
        "{ok:?}"
    );
    let denied = authz.check(check("garbage")).await.unwrap().into_inner();
    let Some(HttpResponse::DeniedResponse(denied)) = denied.http_response else {
        panic!("garbage passed Check");
    };
    assert_eq!(denied.status.unwrap().code, 401);

    let health = tonic_health::pb::health_client::HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest {
            service: "jwtd.v1.VerifierService".into(),
        })
        .await
        .expect("health through nginx")
        .into_inner();
    assert_eq!(
        health.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    server.stop().await;
}
