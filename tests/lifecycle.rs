//! Graceful shutdown as a mesh sees it: on SIGTERM readiness turns
//! NOT_SERVING first, calls keep being served through the drain period,
//! no accepted call is dropped, and the process exits 0. And the
//! connection settings meshes rely on: a maximum connection age (GOAWAY)
//! and HTTP/2 keepalive (PINGs, and a silent peer disconnected).

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests state their expectations by panicking.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use jwtd::pb::verifier_service_client::VerifierServiceClient;
use jwtd::pb::{Status, VerifyRequest};
use support::process::Served;
use support::{ISS, independent_token};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

const DRAIN: Duration = Duration::from_millis(1500);

fn token() -> String {
    let now = support::wall_now();
    independent_token(
        "RS256",
        &serde_json::json!({ "iss": ISS, "sub": "alice", "aud": "api", "exp": now + 3600 }),
    )
}

async fn health(client: &mut HealthClient<tonic::transport::Channel>, service: &str) -> i32 {
    client
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .map(|r| r.into_inner().status)
        .unwrap_or(-1)
}

/// One finished call: when it started (since SIGTERM, negative before) and
/// its outcome.
type Outcome = (f64, Result<(), tonic::Status>);

#[tokio::test]
async fn sigterm_flips_readiness_drains_and_drops_no_accepted_call() {
    let jwks = support::data("keys/jwks.json");
    // A remote issuer whose second fetch (a kid miss) takes 700 ms: a call
    // that triggers it right before the drain ends is in flight when jwtd
    // stops accepting, and must still be answered.
    let all = support::all_jwks();
    let first =
        serde_json::json!({ "keys": [all.iter().find(|k| k["kid"] == "rsa2048").unwrap()] });
    let second = serde_json::json!({ "keys": all.iter().filter(|k| k["kid"] != "p384").collect::<Vec<_>>() });
    let fetches = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let idp = listener.local_addr().unwrap();
    let app = axum::Router::new().route(
        "/jwks",
        axum::routing::get(move || {
            let n = fetches.fetch_add(1, Ordering::SeqCst);
            let (first, second) = (first.clone(), second.clone());
            async move {
                if n == 0 {
                    axum::Json(first)
                } else {
                    tokio::time::sleep(Duration::from_millis(700)).await;
                    axum::Json(second)
                }
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("jwtd.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\nmetrics_listen = \"\"\n[server]\ndrain_seconds = {}\n\
             [[issuers]]\nissuer = {ISS:?}\njwks_file = {jwks:?}\naudiences = [\"api\"]\n\
             [[issuers]]\nissuer = \"https://remote.test\"\njwks_uri = \"http://{idp}/jwks\"\n\
             allow_insecure_http = true\naudiences = [\"api\"]\nkid_miss_wait_ms = 3000\n\
             min_refresh_seconds = 0.1\n",
            DRAIN.as_secs_f64()
        ),
    )
    .unwrap();
    let mut served = Served::start(&config);
    let addr = format!("http://{}", served.address());
    let channel = tonic::transport::Endpoint::from_shared(addr.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut probe = HealthClient::new(channel.clone());
    while health(&mut probe, "jwtd.v1.VerifierService").await != ServingStatus::Serving as i32 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Four callers, each calling back to back until told to stop.
    let token = token();
    let stop = Arc::new(AtomicBool::new(false));
    let signalled: Arc<std::sync::OnceLock<Instant>> = Arc::default();
    let mut callers = Vec::new();
    for _ in 0..4 {
        let (channel, token, stop, signalled) = (
            channel.clone(),
            token.clone(),
            Arc::clone(&stop),
            Arc::clone(&signalled),
        );
        callers.push(tokio::spawn(async move {
            let mut client = VerifierServiceClient::new(channel);
            let mut outcomes: Vec<Outcome> = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let result = client
                    .verify(VerifyRequest {
                        tokens: vec![token.clone()],
                        ..VerifyRequest::default()
                    })
                    .await
                    .map(|r| assert_eq!(r.into_inner().results[0].status, Status::Valid as i32));
                let at = match signalled.get() {
                    Some(t) if started >= *t => (started - *t).as_secs_f64(),
                    Some(t) => -((*t - started).as_secs_f64()),
                    None => -1.0,
                };
                let failed = result.is_err();
                outcomes.push((at, result));
                if failed {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            outcomes
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;

    let slow = {
        let channel = channel.clone();
        let now = support::wall_now();
        let token = independent_token(
            "ES256",
            &serde_json::json!({ "iss": "https://remote.test", "aud": "api", "exp": now + 3600 }),
        );
        tokio::spawn(async move {
            tokio::time::sleep(DRAIN - Duration::from_millis(300)).await;
            VerifierServiceClient::new(channel)
                .verify(VerifyRequest {
                    tokens: vec![token],
                    ..VerifyRequest::default()
                })
                .await
        })
    };
    signalled.set(Instant::now()).unwrap();
    served.signal("TERM");
    // Readiness flips at once; liveness does not.
    let flip = loop {
        let status = health(&mut probe, "jwtd.v1.VerifierService").await;
        if status == ServingStatus::NotServing as i32 {
            break signalled.get().unwrap().elapsed();
        }
        assert!(
            signalled.get().unwrap().elapsed() < DRAIN,
            "readiness never flipped"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(health(&mut probe, "").await, ServingStatus::Serving as i32);
    assert_eq!(
        health(&mut probe, "envoy.service.auth.v3.Authorization").await,
        ServingStatus::NotServing as i32
    );

    let slow = slow
        .await
        .unwrap()
        .expect("the call in flight at the end of the drain is answered");
    assert_eq!(slow.into_inner().results[0].status, Status::Valid as i32);
    assert!(
        served.wait_exit().await.success(),
        "jwtd exits 0 after draining"
    );
    stop.store(true, Ordering::Relaxed);
    let mut outcomes: Vec<Outcome> = Vec::new();
    for caller in callers {
        outcomes.extend(caller.await.unwrap());
    }

    // Every call that started before the drain period ended was served,
    // before and after readiness flipped.
    let drain = DRAIN.as_secs_f64();
    let in_drain: Vec<_> = outcomes
        .iter()
        .filter(|(at, _)| *at < drain - 0.2)
        .collect();
    let served_after_flip = in_drain
        .iter()
        .filter(|(at, r)| *at > flip.as_secs_f64() && r.is_ok())
        .count();
    assert!(served_after_flip > 0, "nothing was served during the drain");
    for (at, result) in &in_drain {
        assert!(
            result.is_ok(),
            "a call at {at:.3}s into the drain failed: {result:?}"
        );
    }
    // Calls sent as the connection closes may be refused: UNAVAILABLE, or
    // (hyper's words for a stream the server never took) "connection
    // closed". The call above shows what was taken is finished.
    for (at, result) in &outcomes {
        if let Err(status) = result {
            let refused = status.code() == tonic::Code::Unavailable
                || (status.code() == tonic::Code::Cancelled
                    && format!("{status:?}").contains("connection closed"));
            assert!(refused, "a call at {at:.3}s ended {status:?}");
            assert!(
                *at >= drain - 0.2,
                "a call at {at:.3}s, inside the drain, failed"
            );
        }
    }
}

/// `max_connection_age_seconds` closes each connection after that age with
/// a GOAWAY, so a mesh's long-lived connections spread over new replicas.
/// Watched on one bare HTTP/2 connection: a call passes on it, then the
/// server ends it.
#[tokio::test]
async fn connections_are_closed_after_max_connection_age() {
    let jwks = support::data("keys/jwks.json");
    let config = support::scratch(
        "jwtd.toml",
        &format!(
            "listen = \"127.0.0.1:0\"\nmetrics_listen = \"\"\n[server]\ndrain_seconds = 0\n\
             max_connection_age_seconds = 1.5\n[[issuers]]\nissuer = {ISS:?}\njwks_file = {jwks:?}\n"
        ),
    );
    let mut served = Served::start(&config);
    let addr = served.address();
    // Before the connect, so never after the server's accept starts the age.
    let opened = Instant::now();
    let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    let connection = tokio::spawn(connection);

    // grpc.health.v1.Health/Check for the whole server: an empty message.
    let mut client = client.ready().await.unwrap();
    let request = http::Request::post(format!("http://{addr}/grpc.health.v1.Health/Check"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap();
    let (response, mut body) = client.send_request(request, false).unwrap();
    body.send_data(bytes::Bytes::from_static(&[0, 0, 0, 0, 0]), true)
        .unwrap();
    let mut response = response.await.unwrap();
    assert_eq!(response.status(), 200);
    while let Some(chunk) = response.body_mut().data().await {
        chunk.unwrap();
    }
    let trailers = response.body_mut().trailers().await.unwrap().unwrap();
    assert_eq!(trailers["grpc-status"], "0");
    drop(client);

    let closed = tokio::time::timeout(Duration::from_secs(10), connection)
        .await
        .expect("the server closed the connection after its maximum age");
    closed
        .unwrap()
        .expect("a clean GOAWAY, not a connection error");
    assert!(
        opened.elapsed() >= Duration::from_millis(1500),
        "closed before its age: {:?}",
        opened.elapsed()
    );
    served.signal("TERM");
    assert!(served.wait_exit().await.success());
}

/// HTTP/2 keepalive: jwtd PINGs a quiet connection every
/// `http2_keepalive_interval_seconds`, and closes one whose peer has not
/// answered within `http2_keepalive_timeout_seconds` (a peer gone without a
/// FIN). Spoken frame by frame: this client acknowledges the server's
/// SETTINGS but never its PINGs.
#[tokio::test]
async fn a_peer_that_never_answers_pings_is_disconnected() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    const SETTINGS: u8 = 0x4;
    const PING: u8 = 0x6;
    const ACK: u8 = 0x1;

    let jwks = support::data("keys/jwks.json");
    let config = support::scratch(
        "jwtd.toml",
        &format!(
            "listen = \"127.0.0.1:0\"\nmetrics_listen = \"\"\n[server]\ndrain_seconds = 0\n\
             http2_keepalive_interval_seconds = 0.2\nhttp2_keepalive_timeout_seconds = 0.3\n\
             [[issuers]]\nissuer = {ISS:?}\njwks_file = {jwks:?}\n"
        ),
    );
    let mut served = Served::start(&config);
    let addr = served.address();
    let mut tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    tcp.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    tcp.write_all(&[0, 0, 0, SETTINGS, 0, 0, 0, 0, 0])
        .await
        .unwrap();

    let mut pings = 0;
    let outcome = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let mut header = [0u8; 9];
            if tcp.read_exact(&mut header).await.is_err() {
                return; // closed by jwtd
            }
            let len =
                usize::from(header[0]) << 16 | usize::from(header[1]) << 8 | usize::from(header[2]);
            let mut payload = vec![0u8; len];
            if tcp.read_exact(&mut payload).await.is_err() {
                return;
            }
            match (header[3], header[4] & ACK) {
                (SETTINGS, 0) => tcp
                    .write_all(&[0, 0, 0, SETTINGS, ACK, 0, 0, 0, 0])
                    .await
                    .unwrap(),
                (PING, 0) => pings += 1,
                _ => {}
            }
        }
    })
    .await;
    assert!(outcome.is_ok(), "a silent peer was kept for 10 s");
    assert!(pings >= 1, "closed without a keepalive PING first");
    served.signal("TERM");
    assert!(served.wait_exit().await.success());
}
