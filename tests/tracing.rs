//! Traces end to end: the real `jwtd` binary exporting by OTLP to a
//! collector inside this test (the OTLP TraceService over gRPC, and
//! OTLP/HTTP protobuf at /v1/traces), called with a W3C `traceparent`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests state their expectations by panicking.

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jwtd::pb::verifier_service_client::VerifierServiceClient;
use jwtd::pb::{Status, VerifyRequest, VerifyResult};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message as _;
use serde_json::json;
use support::process::Served;
use support::{ISS, independent_token};

/// A span as exported, with the `service.name` of its resource.
#[derive(Debug, Clone)]
struct Exported {
    service: String,
    span: Span,
}

/// Everything the collector has received.
#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<Exported>>>);

impl Received {
    fn take(&self, request: ExportTraceServiceRequest) {
        let mut all = self.0.lock().unwrap();
        for resource in request.resource_spans {
            let service = resource
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| text(kv.value.as_ref()?.value.as_ref()?))
                .unwrap_or_default();
            for scope in resource.scope_spans {
                for span in scope.spans {
                    all.push(Exported {
                        service: service.clone(),
                        span,
                    });
                }
            }
        }
    }

    /// Waits up to 20 s until `done` holds for the spans received so far.
    async fn until(&self, what: &str, done: impl Fn(&[Exported]) -> bool) -> Vec<Exported> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let all = self.0.lock().unwrap().clone();
            if done(&all) {
                return all;
            }
            assert!(
                Instant::now() < deadline,
                "collector never saw {what}; got {:#?}",
                all.iter().map(|e| &e.span.name).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn in_trace(&self, trace_id: &[u8]) -> Vec<Span> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.span.trace_id == trace_id)
            .map(|e| e.span.clone())
            .collect()
    }
}

#[tonic::async_trait]
impl TraceService for Received {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.take(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// An OTLP/gRPC collector on 127.0.0.1:0.
async fn grpc_collector() -> (String, Received) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let received = Received::default();
    let service = TraceServiceServer::new(received.clone());
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
            .unwrap();
    });
    (format!("http://{addr}"), received)
}

/// An OTLP/HTTP (protobuf) collector on 127.0.0.1:0, at /v1/traces.
async fn http_collector() -> (String, Received) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let received = Received::default();
    let sink = received.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: axum::body::Bytes| {
            let sink = sink.clone();
            async move {
                let request = ExportTraceServiceRequest::decode(body).expect("OTLP protobuf body");
                sink.take(request);
                (
                    [("content-type", "application/x-protobuf")],
                    ExportTraceServiceResponse::default().encode_to_vec(),
                )
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), received)
}

fn text(value: &Any) -> Option<String> {
    match value {
        Any::StringValue(s) => Some(s.clone()),
        _ => None,
    }
}

fn attrs(kvs: &[opentelemetry_proto::tonic::common::v1::KeyValue]) -> HashMap<String, Any> {
    kvs.iter()
        .filter_map(|kv| Some((kv.key.clone(), kv.value.as_ref()?.value.clone()?)))
        .collect()
}

fn int(v: i64) -> Any {
    Any::IntValue(v)
}

fn string(s: &str) -> Any {
    Any::StringValue(s.to_owned())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn one<'a>(spans: &'a [Span], name: &str) -> &'a Span {
    let found: Vec<_> = spans.iter().filter(|s| s.name == name).collect();
    assert_eq!(found.len(), 1, "one {name} span in {spans:#?}");
    found[0]
}

/// A token from the independent signer, valid for an hour from now.
fn token(alg: &str, iss: &str, exp_in: i64) -> String {
    let now = support::wall_now();
    independent_token(
        alg,
        &json!({ "iss": iss, "sub": "alice", "aud": "api", "iat": now - 10, "exp": now + exp_in }),
    )
}

fn issuer_section() -> String {
    let jwks = support::data("keys/jwks.json");
    format!(
        "[[issuers]]\nissuer = {ISS:?}\njwks_file = {jwks:?}\naudiences = [\"api\"]\nalgorithms = [\"RS256\", \"ES256\"]\n"
    )
}

async fn verify(addr: &str, traceparent: &str, tokens: Vec<String>) -> Vec<VerifyResult> {
    let mut client = VerifierServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let mut request = tonic::Request::new(VerifyRequest {
        tokens,
        ..VerifyRequest::default()
    });
    request
        .metadata_mut()
        .insert("traceparent", traceparent.parse().unwrap());
    request
        .metadata_mut()
        .insert("baggage", "tenant=acme".parse().unwrap());
    client.verify(request).await.unwrap().into_inner().results
}

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER: &str = "00f067aa0ba902b7";
const UNSAMPLED: &str = "0af7651916cd43dd8448eb211c80319c";

#[tokio::test]
async fn a_callers_trace_continues_through_jwtd_over_otlp_grpc() {
    let (endpoint, received) = grpc_collector().await;
    let config = support::scratch(
        "grpc.toml",
        &format!(
            "listen = \"127.0.0.1:0\"\nmetrics_listen = \"\"\n{}",
            issuer_section()
        ),
    );
    let mut served = Served::start_with(&config, |cmd| {
        cmd.env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)
            .env("OTEL_SERVICE_NAME", "jwtd-under-test")
            .env("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test")
            .env("OTEL_BSP_SCHEDULE_DELAY", "50");
    });
    let addr = served.address();

    let valid = token("RS256", ISS, 3600);
    let expired = token("RS256", ISS, -3600);
    let mut forged = token("ES256", ISS, 3600);
    forged.replace_range(forged.len() - 4.., "AAAA");
    let garbage = "not-a-token".to_owned();

    // Unsampled by the caller: the parent-based sampler records nothing.
    let results = verify(
        &addr,
        &format!("00-{UNSAMPLED}-{CALLER}-00"),
        vec![valid.clone()],
    )
    .await;
    assert_eq!(results[0].status, Status::Valid as i32);

    let tokens = vec![valid.clone(), expired.clone(), forged.clone(), garbage];
    let results = verify(&addr, &format!("00-{TRACE}-{CALLER}-01"), tokens).await;
    let statuses: Vec<_> = results.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses,
        [
            Status::Valid,
            Status::Expired,
            Status::BadSignature,
            Status::Malformed
        ]
        .map(|s| s as i32)
    );

    let trace = unhex(TRACE);
    received
        .until("the Verify trace", |all| {
            [
                "jwtd.v1.VerifierService/Verify",
                "jwtd.batch",
                "jwtd.verify_signatures",
            ]
            .iter()
            .all(|name| {
                all.iter()
                    .any(|e| e.span.trace_id == trace && e.span.name == *name)
            })
        })
        .await;
    let spans = received.in_trace(&trace);

    // The server span: the caller's trace, the caller's span as parent, and
    // the RPC semantic conventions.
    let server = one(&spans, "jwtd.v1.VerifierService/Verify");
    assert_eq!(server.parent_span_id, unhex(CALLER));
    assert_eq!(server.kind, SpanKind::Server as i32);
    let a = attrs(&server.attributes);
    assert_eq!(a["rpc.system"], string("grpc"));
    assert_eq!(a["rpc.service"], string("jwtd.v1.VerifierService"));
    assert_eq!(a["rpc.method"], string("Verify"));
    assert_eq!(a["rpc.grpc.status_code"], int(0));
    assert_eq!(a["server.address"], string("127.0.0.1"));
    let port: i64 = addr.rsplit(':').next().unwrap().parse().unwrap();
    assert_eq!(a["server.port"], int(port));
    assert!(
        !a.keys()
            .any(|k| k.contains("tenant") || k.contains("baggage")),
        "baggage is not copied into attributes: {a:?}"
    );

    // The batch: size, memo hits and misses, a count per status.
    let batch = one(&spans, "jwtd.batch");
    assert_eq!(batch.parent_span_id, server.span_id);
    let b = attrs(&batch.attributes);
    assert_eq!(b["batch.size"], int(4));
    // The valid token was memoized by the unsampled call.
    assert_eq!(b["memo.hits"], int(1), "{b:?}");
    assert_eq!(b["memo.misses"], int(3));
    for status in [
        "STATUS_VALID",
        "STATUS_EXPIRED",
        "STATUS_BAD_SIGNATURE",
        "STATUS_MALFORMED",
    ] {
        assert_eq!(
            b[&format!("jwtd.status.{status}")],
            int(1),
            "{status} in {b:?}"
        );
    }

    // The parallel work, inside the batch.
    let pool = one(&spans, "jwtd.verify_signatures");
    assert_eq!(pool.parent_span_id, batch.span_id);
    assert_eq!(attrs(&pool.attributes)["jwtd.tokens"], int(3));

    // One event per rejected token, saying what it may and nothing more.
    let rejected: Vec<_> = batch
        .events
        .iter()
        .filter(|e| e.name == "jwtd.token.rejected")
        .map(|e| attrs(&e.attributes))
        .collect();
    assert_eq!(rejected.len(), 3, "{:#?}", batch.events);
    let by_status = |s: &str| {
        rejected
            .iter()
            .find(|e| e["jwtd.status"] == string(&format!("STATUS_{s}")))
            .unwrap_or_else(|| panic!("an event for {s}"))
    };
    let e = by_status("EXPIRED");
    assert_eq!(e["jwtd.issuer"], string(ISS));
    assert_eq!(e["jwtd.kid"], string("rsa2048"));
    assert_eq!(e["jwtd.alg"], string("RS256"));
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, expired.as_bytes());
    assert_eq!(
        e["jwtd.token.sha256_prefix"],
        string(&hex(&digest.as_ref()[..8]))
    );
    assert_eq!(by_status("BAD_SIGNATURE")["jwtd.alg"], string("ES256"));
    assert_eq!(by_status("MALFORMED")["jwtd.issuer"], string("untrusted"));
    // Nothing of a token's own text reaches the collector.
    let everything = format!("{spans:?}");
    for t in [&valid, &expired, &forged] {
        let signature = t.rsplit('.').next().unwrap();
        assert!(!everything.contains(signature), "a signature was exported");
        let payload = t.split('.').nth(1).unwrap();
        assert!(!everything.contains(payload), "a payload was exported");
    }

    // The resource names the service as configured by the environment.
    let all = received.0.lock().unwrap().clone();
    let exported = all
        .iter()
        .find(|e| e.span.span_id == server.span_id)
        .unwrap();
    assert_eq!(exported.service, "jwtd-under-test");

    // The unsampled call left nothing.
    assert!(
        received.in_trace(&unhex(UNSAMPLED)).is_empty(),
        "spans of an unsampled caller were exported"
    );

    // Rejection events are for traces: logs at info carry none of them.
    served.signal("TERM");
    assert!(served.wait_exit().await.success());
    let log = served.whole_log();
    assert!(log.iter().any(|l| l.contains("jwtd stopped")), "{log:#?}");
    assert!(
        !log.iter()
            .any(|l| l.contains("jwtd.token.rejected") || l.contains("sha256_prefix")),
        "a rejection event was logged: {log:#?}"
    );
}

#[tokio::test]
async fn the_telemetry_section_exports_by_otlp_http_and_an_unknown_kid_fetch_links_to_its_request()
{
    let (endpoint, received) = http_collector().await;
    // A remote issuer whose set gains the p256 key after the first fetch.
    let all = support::all_jwks();
    let first = json!({ "keys": [all.iter().find(|k| k["kid"] == "rsa2048").unwrap()] });
    let second = json!({ "keys": all.iter().filter(|k| k["kid"] == "rsa2048" || k["kid"] == "p256").collect::<Vec<_>>() });
    let fetches = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = Arc::clone(&fetches);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let idp = listener.local_addr().unwrap();
    let app = axum::Router::new().route(
        "/jwks",
        axum::routing::get(move || {
            let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let body = if n == 0 {
                first.clone()
            } else {
                second.clone()
            };
            async move { axum::Json(body) }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let remote = "https://remote.test";
    let config = support::scratch(
        "http.toml",
        &format!(
            "listen = \"127.0.0.1:0\"\nmetrics_listen = \"\"\n\
             [telemetry]\notlp_endpoint = {endpoint:?}\notlp_protocol = \"http/protobuf\"\n\
             service_name = \"jwtd-http\"\n\
             [[issuers]]\nissuer = {remote:?}\njwks_uri = \"http://{idp}/jwks\"\n\
             allow_insecure_http = true\naudiences = [\"api\"]\nmin_refresh_seconds = 0.1\n"
        ),
    );
    let mut served = Served::start_with(&config, |cmd| {
        cmd.env("OTEL_BSP_SCHEDULE_DELAY", "50");
    });
    let addr = served.address();

    let results = verify(
        &addr,
        &format!("00-{TRACE}-{CALLER}-01"),
        vec![token("ES256", remote, 3600)],
    )
    .await;
    assert_eq!(
        results[0].status,
        Status::Valid as i32,
        "{}",
        results[0].reason
    );

    let trace = unhex(TRACE);
    let all = received
        .until("the server span and the kid-miss fetch", |all| {
            all.iter()
                .any(|e| e.span.trace_id == trace && e.span.name.ends_with("/Verify"))
                && all.iter().any(|e| {
                    e.span.name == "jwtd.jwks_fetch"
                        && attrs(&e.span.attributes).get("jwtd.trigger")
                            == Some(&string("kid_miss"))
                })
        })
        .await;
    let server = all
        .iter()
        .find(|e| e.span.trace_id == trace && e.span.name.ends_with("/Verify"))
        .unwrap();
    assert_eq!(server.service, "jwtd-http");
    assert_eq!(server.span.parent_span_id, unhex(CALLER));

    // The startup fetch: a root of its own.
    let fetches: Vec<_> = all
        .iter()
        .filter(|e| e.span.name == "jwtd.jwks_fetch")
        .collect();
    let startup = fetches
        .iter()
        .find(|e| attrs(&e.span.attributes)["jwtd.trigger"] == string("startup"))
        .expect("a startup fetch span");
    let s = attrs(&startup.span.attributes);
    assert_eq!(s["jwtd.issuer"], string(remote));
    assert_eq!(s["server.address"], string("127.0.0.1"));
    assert_eq!(s["jwtd.fetch.result"], string("ok"));
    assert_eq!(s["jwtd.keys_loaded"], int(1));
    assert!(startup.span.parent_span_id.is_empty());

    // The kid-miss fetch: its own trace, linked to the request's wait.
    let miss = fetches
        .iter()
        .find(|e| attrs(&e.span.attributes)["jwtd.trigger"] == string("kid_miss"))
        .unwrap();
    assert_eq!(attrs(&miss.span.attributes)["jwtd.keys_loaded"], int(2));
    assert_ne!(miss.span.trace_id, trace);
    let spans = received.in_trace(&trace);
    let wait = one(&spans, "jwtd.kid_miss_refresh");
    let batch = one(&spans, "jwtd.batch");
    assert_eq!(wait.parent_span_id, batch.span_id);
    assert!(
        miss.span
            .links
            .iter()
            .any(|l| l.trace_id == trace && l.span_id == wait.span_id),
        "the fetch links to the request: {:#?}",
        miss.span.links
    );

    // Log lines inside the fetch carry its trace id.
    let line = served.wait_for("keys loaded");
    assert!(line.contains("trace_id="), "{line}");
}

#[tokio::test]
async fn spans_still_queued_are_flushed_on_sigterm() {
    let (endpoint, received) = grpc_collector().await;
    let config = support::scratch(
        "flush.toml",
        &format!(
            "listen = \"127.0.0.1:0\"\nmetrics_listen = \"\"\n{}",
            issuer_section()
        ),
    );
    let mut served = Served::start_with(&config, |cmd| {
        // No scheduled export during the test: only the flush at exit.
        cmd.env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)
            .env("OTEL_BSP_SCHEDULE_DELAY", "600000");
    });
    let addr = served.address();
    let trace = "a1a2a3a4a5a6a7a8b1b2b3b4b5b6b7b8";
    let results = verify(
        &addr,
        &format!("00-{trace}-{CALLER}-01"),
        vec![token("RS256", ISS, 3600)],
    )
    .await;
    assert_eq!(results[0].status, Status::Valid as i32);
    assert!(received.in_trace(&unhex(trace)).is_empty());
    served.signal("TERM");
    assert!(served.wait_exit().await.success());
    let spans = received.in_trace(&unhex(trace));
    assert!(
        spans.iter().any(|s| s.name.ends_with("/Verify")),
        "the server span was flushed at exit: {spans:#?}"
    );
}

#[tokio::test]
async fn an_unreachable_collector_costs_dropped_spans_not_failed_calls() {
    // Accepts connections and never answers: every export hangs to its timeout.
    let black_hole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", black_hole.local_addr().unwrap());
    // A free port for /metrics (the exporter does not report an ephemeral one).
    let metrics = format!("127.0.0.1:{}", support::free_port());
    let config = support::scratch(
        "blackhole.toml",
        &format!(
            "listen = \"127.0.0.1:0\"\nmetrics_listen = {metrics:?}\n\
             [telemetry]\notlp_endpoint = {endpoint:?}\nmax_queued_spans = 4\n{}",
            issuer_section()
        ),
    );
    let mut served = Served::start_with(&config, |cmd| {
        cmd.env("OTEL_BSP_SCHEDULE_DELAY", "10")
            .env("OTEL_EXPORTER_OTLP_TIMEOUT", "30000");
    });
    let addr = served.address();
    let valid = token("RS256", ISS, 3600);
    for i in 0..20 {
        let results = verify(
            &addr,
            &format!("00-{TRACE}-{:016x}-01", i + 1),
            vec![valid.clone()],
        )
        .await;
        assert_eq!(results[0].status, Status::Valid as i32);
    }
    let body = scrape(&metrics).await;
    let dropped: f64 = body
        .lines()
        .find(|l| l.starts_with("jwtd_trace_spans_dropped_total"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no drop counter in {body}"));
    // 41 spans ended (server and batch spans for 20 calls, and one pool span
    // for the first, the only memo miss); the queue holds 4, none exported.
    assert!(dropped >= 37.0, "dropped {dropped}");
}

async fn scrape(addr: &str) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(format!("GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut body = String::new();
    stream.read_to_string(&mut body).await.unwrap();
    body
}
