//! Assembles the running service: Verify and Envoy's Check over one engine,
//! grpc.health.v1 and server reflection (v1 and v1alpha, since grpcurl 1.8
//! and ghz still speak v1alpha) on one port, plaintext or TLS.
//!
//! Health for `jwtd.v1.VerifierService` is NOT_SERVING until every issuer has
//! loaded keys once and every revocation source has loaded once (with
//! `startup = "wait"`), so a mesh does not route to a replica that would
//! answer KEYS_UNAVAILABLE or miss revocations; `""` reports the process.
//! Overload never flips readiness: turning a busy replica NOT_SERVING moves
//! all of its load onto the others at once, and they fall in turn. A busy
//! replica sheds cold work instead (`runtime::admission`), and health calls
//! never wait behind it (they do no verification).
//!
//! Transport bounds: at most `server.max_concurrent_streams` calls per
//! HTTP/2 connection, a header list of at most `server.max_header_list_bytes`,
//! and a decode cap per method (Verify: a full batch of the longest tokens;
//! Check: `ext_authz.max_request_bytes`), answered RESOURCE_EXHAUSTED when
//! passed ([`super::oversize`]). The caps are sized at start: `max_batch`
//! and `max_token_bytes` take a restart.
//!
//! Decisions:
//! - **Readiness ignores load** (above): shedding, not health, answers
//!   overload.
//! - **Per-method caps, no global byte budget**: tonic decodes a message
//!   before any handler runs, so one connection can hold up to
//!   `max_concurrent_streams` requests at the method's cap (256 × 8.3 MiB
//!   for Verify by default). The number of connections is not bounded here;
//!   a mesh's connection limits, or a smaller `max_concurrent_streams` and
//!   `max_batch`, bound it where that matters.
//! - **Admission gauges on a timer** ([`GAUGE_EVERY`]), not per call.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;

use envoy_types::pb::envoy::service::auth::v3::authorization_server::AuthorizationServer;

use crate::config::settings::{
    AuditConfig, CallersConfig, ExtAuthzConfig, ServerConfig, TlsConfig,
};
use crate::observability::audit::Audit;
use crate::observability::telemetry;
use crate::pb;
use crate::pb::verifier_service_server::VerifierServiceServer;
use crate::runtime::engine::Engine;
use crate::transport::callers::Callers;
use crate::transport::ext_authz::AuthzApi;
use crate::transport::grpc::VerifierApi;
use crate::transport::oversize::OversizeLayer;
use crate::transport::tls;

/// The full gRPC name of the Verify service, as health checks ask for it.
pub const SERVICE_NAME: &str = "jwtd.v1.VerifierService";

/// How [`serve_with`] runs, beyond the engine.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    /// Drain, keepalive and connection age.
    pub server: ServerConfig,
    /// TLS; `None` is plaintext.
    pub tls: Option<TlsConfig>,
    /// The ext_authz Check settings.
    pub ext_authz: ExtAuthzConfig,
    /// Caller identity, limits and allowlist.
    pub callers: CallersConfig,
    /// The audit trail of decisions.
    pub audit: AuditConfig,
}

/// How often the admission and caller gauges are set.
const GAUGE_EVERY: Duration = Duration::from_millis(500);

/// Serves with the default options and no drain period, until `shutdown`
/// completes; then finishes in-flight calls.
pub async fn serve(
    listener: TcpListener,
    engine: Arc<Engine>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let options = ServeOptions {
        server: ServerConfig {
            drain: Duration::ZERO,
            ..ServerConfig::default()
        },
        ..ServeOptions::default()
    };
    serve_with(listener, engine, options, shutdown).await
}

/// Serves Verify, Check, health and reflection until `shutdown` completes.
/// Then: readiness (health of the two services) turns NOT_SERVING while
/// liveness (`""`) stays SERVING; calls are still accepted for
/// `server.drain`, so the mesh sees the change and stops routing here;
/// then no new connections are accepted and in-flight calls finish.
pub async fn serve_with(
    listener: TcpListener,
    engine: Arc<Engine>,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let registry = Arc::clone(engine.registry());
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_service_status("", ServingStatus::Serving).await;
    set_readiness(&health, ServingStatus::NotServing).await;
    let mut ready = registry.ready();
    let mut lists_ready = engine.revocations().ready();
    let readiness = health.clone();
    let health_task = tokio::spawn(async move {
        // Readiness only ever flips to true; an error means the registry (or
        // the revocation store) is gone.
        if ready.wait_for(|r| *r).await.is_ok() && lists_ready.wait_for(|r| *r).await.is_ok() {
            set_readiness(&readiness, ServingStatus::Serving).await;
            tracing::info!(
                "keys loaded for every issuer (and revocation lists, if any): {SERVICE_NAME} is \
                 SERVING"
            );
        }
    });
    let limits = registry.snapshot().limits;

    let reflection_v1 = reflection()
        .build_v1()
        .map_err(|e| ServeError::Reflection(e.to_string()))?;
    let reflection_v1alpha = reflection()
        .build_v1alpha()
        .map_err(|e| ServeError::Reflection(e.to_string()))?;

    let callers = Arc::new(Callers::new(&options.callers));
    let gauges = tokio::spawn(set_gauges(Arc::clone(&engine), Arc::clone(&callers)));
    let check_cap = options.ext_authz.max_request_bytes;
    let audit = Arc::new(Audit::new(options.audit));
    let verifier = VerifierServiceServer::new(VerifierApi::new(
        Arc::clone(&engine),
        Arc::clone(&callers),
        Arc::clone(&audit),
    ))
    .max_decoding_message_size(limits.max_request_bytes());
    let authz = AuthorizationServer::new(AuthzApi::new(engine, options.ext_authz, callers, audit))
        .max_decoding_message_size(check_cap);

    let drain = options.server.drain;
    let stop = async move {
        shutdown.await;
        health_task.abort();
        gauges.abort();
        set_readiness(&health, ServingStatus::NotServing).await;
        if !drain.is_zero() {
            tracing::info!(
                "readiness is NOT_SERVING; still serving for {drain:?} (server.drain_seconds)"
            );
            tokio::time::sleep(drain).await;
        }
        tracing::info!("no longer accepting connections; finishing in-flight calls");
    };

    // Nagle off on every accepted connection: with it on, a small response
    // waits for the client's delayed ACK (~40 ms per call, measured). The
    // builder's tcp_nodelay applies only to listeners tonic binds itself.
    let tcp = TcpIncoming::from(listener).with_nodelay(Some(true));
    let router = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(options.server.http2_keepalive_interval))
        .http2_keepalive_timeout(Some(options.server.http2_keepalive_timeout))
        .max_connection_age(options.server.max_connection_age)
        .max_concurrent_streams(options.server.max_concurrent_streams)
        .http2_max_header_list_size(options.server.max_header_list_bytes)
        .layer(OversizeLayer)
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(verifier)
        .add_service(authz);
    let served = match options.tls {
        None => router.serve_with_incoming_shutdown(tcp, stop).await,
        Some(tls) => {
            let incoming = tls::incoming(tcp, tls).map_err(|e| ServeError::Tls(e.to_string()))?;
            router.serve_with_incoming_shutdown(incoming, stop).await
        }
    };
    served.map_err(|e| ServeError::Transport(e.to_string()))
}

/// Sets the admission and caller gauges every [`GAUGE_EVERY`], so the
/// per-call path sets none of them.
async fn set_gauges(engine: Arc<Engine>, callers: Arc<Callers>) {
    let mut every = tokio::time::interval(GAUGE_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let admission = engine.admission();
        telemetry::admission(
            admission.pending(),
            engine.pending_bound(),
            admission.token_cost(),
            engine.coalesced(),
            callers.tracked(),
        );
    }
}

/// The services whose health is readiness.
const READINESS: [&str; 2] = [SERVICE_NAME, AUTHZ_SERVICE_NAME];

/// Sets the health of every readiness service.
async fn set_readiness(health: &tonic_health::server::HealthReporter, status: ServingStatus) {
    for service in READINESS {
        health.set_service_status(service, status).await;
    }
}

/// The full gRPC name of Envoy's Authorization service.
pub const AUTHZ_SERVICE_NAME: &str = "envoy.service.auth.v3.Authorization";

/// Reflection over jwtd's API, health, and Envoy's Check (the descriptors
/// of `envoy.service.auth.v3` and what it imports, pruned from the
/// envoy-types crate's set; see `proto/envoy/README.md`).
fn reflection() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(ENVOY_AUTHZ_DESCRIPTORS)
}

/// Encoded FileDescriptorSet of `envoy.service.auth.v3` and its imports.
pub const ENVOY_AUTHZ_DESCRIPTORS: &[u8] =
    include_bytes!("../../proto/envoy/ext_authz_descriptors.bin");

/// Why serving stopped with an error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The reflection descriptors could not be built.
    #[error("cannot build server reflection: {0}")]
    Reflection(String),
    /// The transport failed.
    #[error("transport error: {0}")]
    Transport(String),
    /// The TLS files do not make a server config.
    #[error("cannot serve TLS: {0}")]
    Tls(String),
}
