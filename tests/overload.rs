//! Overload and abuse against the real binary: a flood of cold work is shed
//! with RESOURCE_EXHAUSTED and a pushback while memo hits and health checks
//! keep being answered, Check answers overload as configured, everything is
//! served again once the flood ends; requests over the transport's caps are
//! refused with RESOURCE_EXHAUSTED and the process lives; and the HTTP/2
//! bounds are what the server advertises.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests state their expectations by panicking.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use jwtd::pb::verifier_service_client::VerifierServiceClient;
use jwtd::pb::{Status as S, VerifyRequest};
use support::process::Served;
use support::*;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

/// How long the flood lasts.
const FLOOD: Duration = Duration::from_millis(1500);

/// A token valid now on the wall clock.
fn live_token(n: u32) -> String {
    let mut c = claims(ISS);
    c["exp"] = serde_json::json!(wall_now() + 600);
    c["jti"] = serde_json::json!(format!("hot-{n}"));
    independent_token("EdDSA", &c)
}

fn request(tokens: Vec<String>) -> VerifyRequest {
    VerifyRequest {
        tokens,
        ..VerifyRequest::default()
    }
}

/// Cold work that is never the same twice: each batch costs full ECDSA
/// checks (and is BAD_SIGNATURE).
struct Cold(AtomicU32);

impl Cold {
    fn batch(&self, n: u32) -> Vec<String> {
        let start = self.0.fetch_add(n, Ordering::Relaxed);
        expensive_tokens(start..start + n)
    }
}

/// What the flood saw.
#[derive(Debug, Default)]
struct Seen {
    admitted: u32,
    shed: u32,
    check_overload_answers: u32,
}

async fn flood(mode: &str) {
    let metrics = free_port();
    let cfg = binary_config(&format!(
        "metrics_listen = \"127.0.0.1:{metrics}\"\n\
         [limits]\nmax_batch = 32\nmax_pending_tokens = 32\n[cache]\nthreads = 1\n\
         [ext_authz]\non_overload = \"{mode}\"\n"
    ));
    let mut jwtd = Served::start(&cfg);
    let addr = jwtd.address();
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let hot: Vec<String> = (0..16).map(live_token).collect();
    let warm = VerifierServiceClient::new(channel.clone())
        .verify(request(hot.clone()))
        .await
        .unwrap();
    assert!(
        warm.into_inner()
            .results
            .iter()
            .all(|r| r.status == S::Valid as i32)
    );

    let cold = Arc::new(Cold(AtomicU32::new(0)));
    let stop = Arc::new(AtomicBool::new(false));
    let mut flooders = Vec::new();
    for _ in 0..6 {
        // Each on its own connection, as separate callers would be.
        let channel = Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let (cold, stop) = (Arc::clone(&cold), Arc::clone(&stop));
        flooders.push(tokio::spawn(async move {
            let mut client = VerifierServiceClient::new(channel);
            let mut seen = Seen::default();
            while !stop.load(Ordering::Relaxed) {
                match client.verify(request(cold.batch(32))).await {
                    Ok(r) => {
                        seen.admitted += 1;
                        let r = r.into_inner();
                        assert!(r.results.iter().all(|r| r.status == S::BadSignature as i32));
                    }
                    Err(e) => {
                        assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{e:?}");
                        assert!(e.message().contains("limits.max_pending_tokens (32)"));
                        let ms: u64 = e
                            .metadata()
                            .get("grpc-retry-pushback-ms")
                            .unwrap()
                            .to_str()
                            .unwrap()
                            .parse()
                            .unwrap();
                        assert!((10..=5000).contains(&ms), "{ms}");
                        seen.shed += 1;
                    }
                }
            }
            seen
        }));
    }
    // Memo hits keep flowing: every hit-only batch is answered, VALID.
    let hits = {
        let (channel, hot, stop) = (channel.clone(), hot.clone(), Arc::clone(&stop));
        tokio::spawn(async move {
            let mut client = VerifierServiceClient::new(channel);
            let mut calls = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let r = client.verify(request(hot.clone())).await;
                let r = r.expect("a batch of memo hits is never shed").into_inner();
                assert!(
                    r.results
                        .iter()
                        .all(|r| r.status == S::Valid as i32 && r.cached)
                );
                calls += 1;
            }
            calls
        })
    };
    // Health keeps answering SERVING: overload never flips readiness.
    let health = {
        let (channel, stop) = (channel.clone(), Arc::clone(&stop));
        tokio::spawn(async move {
            let mut client = HealthClient::new(channel);
            let mut calls = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let mut ask = tonic::Request::new(HealthCheckRequest {
                    service: "jwtd.v1.VerifierService".into(),
                });
                ask.set_timeout(Duration::from_secs(5));
                let status = client
                    .check(ask)
                    .await
                    .expect("health answers")
                    .into_inner();
                assert_eq!(status.status, ServingStatus::Serving as i32);
                calls += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            calls
        })
    };
    // Checks with cold tokens get the configured overload answer.
    let checks = {
        let (channel, cold, stop) = (channel.clone(), Arc::clone(&cold), Arc::clone(&stop));
        let mode = mode.to_owned();
        tokio::spawn(async move {
            let mut client = AuthorizationClient::new(channel);
            let mut overloaded = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let bearer = format!("Bearer {}", cold.batch(1)[0]);
                let answer = client
                    .check(check_request(&[("authorization", &bearer)], &[]))
                    .await;
                match (mode.as_str(), answer) {
                    ("deny", Ok(r)) => {
                        let Some(HttpResponse::DeniedResponse(d)) = r.into_inner().http_response
                        else {
                            panic!("a bad token is never allowed");
                        };
                        match d.status.unwrap().code {
                            401 => {}
                            503 => {
                                assert!(d.headers.iter().any(|h| {
                                    h.header.as_ref().is_some_and(|h| h.key == "retry-after")
                                }));
                                overloaded += 1;
                            }
                            other => panic!("HTTP {other}"),
                        }
                    }
                    ("error", Ok(r)) => {
                        assert!(matches!(
                            r.into_inner().http_response,
                            Some(HttpResponse::DeniedResponse(_))
                        ));
                    }
                    ("error", Err(e)) => {
                        assert_eq!(e.code(), tonic::Code::ResourceExhausted);
                        assert!(e.metadata().get("grpc-retry-pushback-ms").is_some());
                        overloaded += 1;
                    }
                    (mode, other) => panic!("{mode}: {other:?}"),
                }
            }
            overloaded
        })
    };
    tokio::time::sleep(FLOOD).await;
    stop.store(true, Ordering::Relaxed);
    let mut seen = Seen::default();
    for f in flooders {
        let s = f.await.unwrap();
        seen.admitted += s.admitted;
        seen.shed += s.shed;
    }
    let hit_calls = hits.await.unwrap();
    let health_calls = health.await.unwrap();
    seen.check_overload_answers = checks.await.unwrap();
    eprintln!("{mode}: {seen:?}; {hit_calls} hit-only calls, {health_calls} health calls");
    assert!(seen.shed > 0, "{mode}: nothing was shed: {seen:?}");
    assert!(seen.admitted > 0, "{mode}: nothing was admitted: {seen:?}");
    assert!(seen.check_overload_answers > 0, "{mode}: {seen:?}");
    assert!(hit_calls > 0 && health_calls > 0);

    // After the flood, cold work is served again.
    let mut client = VerifierServiceClient::new(channel.clone());
    let fresh = {
        let mut c = claims(ISS);
        c["exp"] = serde_json::json!(wall_now() + 600);
        c["jti"] = serde_json::json!("after");
        independent_token("ES256", &c)
    };
    let after = client
        .verify(request(vec![fresh]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(after.results[0].status, S::Valid as i32);
    assert!(!after.results[0].cached);

    // The metrics name the shedding.
    let text = scrape_metrics(format!("127.0.0.1:{metrics}")).await;
    let shed_line = text
        .lines()
        .find(|l| {
            l.starts_with("jwtd_refused_calls_total{")
                && l.contains("reason=\"overloaded\"")
                && l.contains("jwtd.v1.VerifierService/Verify")
        })
        .unwrap_or_else(|| panic!("no shed counter in\n{text}"));
    let counted: f64 = shed_line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(counted >= f64::from(seen.shed), "{shed_line} vs {seen:?}");
    assert!(
        text.lines().any(|l| l == "jwtd_pending_tokens_limit 32"),
        "{text}"
    );
    jwtd.signal("TERM");
    assert!(jwtd.wait_exit().await.success());
}

#[tokio::test]
async fn a_flood_of_cold_work_is_shed_while_hits_and_health_go_on_check_denies_503() {
    flood("deny").await;
}

#[tokio::test]
async fn with_on_overload_error_a_shed_check_is_the_grpc_error() {
    flood("error").await;
}

#[tokio::test]
async fn requests_over_the_transport_caps_are_resource_exhausted_and_jwtd_lives() {
    let cfg = binary_config(
        "[limits]\nmax_batch = 4\nmax_token_bytes = 1024\n[ext_authz]\nmax_request_bytes = 4096",
    );
    let mut jwtd = Served::start(&cfg);
    let channel = Channel::from_shared(format!("http://{}", jwtd.address()))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut verify = VerifierServiceClient::new(channel.clone());
    // 4 × (1024 + 16) + 256 KiB = 266,304 bytes decode; this is 300 KB.
    let big = verify
        .verify(request(vec!["x".repeat(300_000)]))
        .await
        .expect_err("over the cap");
    assert_eq!(big.code(), tonic::Code::ResourceExhausted, "{big:?}");
    assert_eq!(
        big.metadata().get("grpc-retry-pushback-ms").unwrap(),
        "-1",
        "never retried"
    );
    assert!(
        big.message().contains("limit of 266304 bytes")
            && big.message().contains("limits.max_batch"),
        "{}",
        big.message()
    );
    let mut authz = AuthorizationClient::new(channel.clone());
    let huge_header = "y".repeat(8000);
    let big = authz
        .check(check_request(&[("x-padding", &huge_header)], &[]))
        .await
        .expect_err("over the Check cap");
    assert_eq!(big.code(), tonic::Code::ResourceExhausted);
    assert!(
        big.message().contains("ext_authz.max_request_bytes"),
        "{}",
        big.message()
    );
    // Within the caps, both are served by the same process.
    let token = live_token(1);
    let ok = verify.verify(request(vec![token.clone()])).await.unwrap();
    assert_eq!(ok.into_inner().results[0].status, S::Valid as i32);
    let bearer = format!("Bearer {token}");
    let ok = authz
        .check(check_request(&[("authorization", &bearer)], &[]))
        .await
        .unwrap();
    assert_eq!(ok.into_inner().status.unwrap().code, 0);
    let over_batch = verify
        .verify(request(vec![token; 5]))
        .await
        .expect_err("over max_batch");
    assert_eq!(over_batch.code(), tonic::Code::InvalidArgument);
    jwtd.signal("TERM");
    assert!(jwtd.wait_exit().await.success());
}

/// The server's first SETTINGS frame carries `server.max_concurrent_streams`
/// and `server.max_header_list_bytes`.
#[tokio::test]
async fn the_server_advertises_its_stream_and_header_list_bounds() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    const SETTINGS: u8 = 0x4;
    const MAX_CONCURRENT_STREAMS: u16 = 0x3;
    const MAX_HEADER_LIST_SIZE: u16 = 0x6;

    let cfg = binary_config("[server]\nmax_concurrent_streams = 7\nmax_header_list_bytes = 9000");
    let mut jwtd = Served::start(&cfg);
    let mut tcp = tokio::net::TcpStream::connect(jwtd.address())
        .await
        .unwrap();
    tcp.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    tcp.write_all(&[0, 0, 0, SETTINGS, 0, 0, 0, 0, 0])
        .await
        .unwrap();
    let settings = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let mut head = [0u8; 9];
            tcp.read_exact(&mut head).await.unwrap();
            let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
            let mut payload = vec![0u8; len];
            tcp.read_exact(&mut payload).await.unwrap();
            let is_ack = head[4] & 1 == 1;
            if head[3] == SETTINGS && !is_ack {
                return payload;
            }
        }
    })
    .await
    .expect("the server sends its SETTINGS");
    let params: Vec<(u16, u32)> = settings
        .chunks_exact(6)
        .map(|p| {
            (
                u16::from_be_bytes([p[0], p[1]]),
                u32::from_be_bytes([p[2], p[3], p[4], p[5]]),
            )
        })
        .collect();
    assert!(params.contains(&(MAX_CONCURRENT_STREAMS, 7)), "{params:?}");
    assert!(params.contains(&(MAX_HEADER_LIST_SIZE, 9000)), "{params:?}");
}
