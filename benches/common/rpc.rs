//! A jwtd on loopback, a discarding OTLP collector and the Verify request
//! of the tracing cost measurements (`benches/tracing.rs` and
//! `examples/trace_cost.rs`).

use std::sync::Arc;

use jwtd::clock::SystemClock;
use jwtd::config::Limits;
use jwtd::engine::Engine;
use jwtd::otel::{Endpoint, Protocol, SamplerChoice, TraceSettings, Tracing};
use jwtd::pb::VerifyRequest;
use jwtd::pb::verifier_service_client::VerifierServiceClient;
use jwtd::registry::Registry;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use tonic::transport::Channel;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

pub const BATCH: usize = 64;

struct Discard;

#[tonic::async_trait]
impl TraceService for Discard {
    async fn export(
        &self,
        _: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

async fn listen() -> (tokio::net::TcpListener, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    (listener, url)
}

pub async fn collector() -> String {
    let (listener, url) = listen().await;
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(Discard))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    url
}

/// A jwtd on loopback; `memo` off makes every token a signature check.
pub async fn jwtd(memo: bool) -> VerifierServiceClient<Channel> {
    let limits = Limits {
        max_batch: 1024,
        max_token_bytes: 8192,
        max_pending_tokens: None,
    };
    let config = super::engine_config(memo);
    let registry = Registry::fixed(super::trust(), limits);
    let engine = Arc::new(Engine::new(registry, Arc::new(SystemClock), config).unwrap());
    let (listener, url) = listen().await;
    tokio::spawn(jwtd::server::serve(
        listener,
        engine,
        std::future::pending(),
    ));
    VerifierServiceClient::connect(url).await.unwrap()
}

pub fn request(tokens: &[String]) -> tonic::Request<VerifyRequest> {
    let mut request = tonic::Request::new(VerifyRequest {
        tokens: tokens.to_vec(),
        ..VerifyRequest::default()
    });
    request.metadata_mut().insert(
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
            .parse()
            .unwrap(),
    );
    request
}

/// 64 distinct RS256 tokens.
pub fn tokens() -> Vec<String> {
    let signer = super::signer("RS256");
    (0..BATCH)
        .map(|n| {
            signer
                .sign(Some(super::kid_for("RS256")), &super::claims(super::ISS, n))
                .unwrap()
        })
        .collect()
}

/// Starts exporting every span to a discarding collector in this process
/// and installs the global subscriber. Call inside the runtime.
pub async fn start_tracing() -> Tracing {
    let settings = TraceSettings {
        endpoint: Endpoint::Base(collector().await),
        protocol: Protocol::Grpc,
        service_name: "jwtd-bench".into(),
        resource_attributes: Default::default(),
        sampler: SamplerChoice::default(),
        max_queued_spans: jwtd::otel::DEFAULT_MAX_QUEUED_SPANS,
    };
    let tracing = Tracing::start(&settings).unwrap();
    tracing_subscriber::registry().with(tracing.layer()).init();
    tracing
}
