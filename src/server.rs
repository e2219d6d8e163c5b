//! Assembles the running service: Verify over the key [`Registry`],
//! grpc.health.v1 and server reflection (v1 and v1alpha, since grpcurl 1.8
//! and ghz still speak v1alpha) on one port.
//!
//! Health for `jwtd.v1.VerifierService` is NOT_SERVING until every issuer has
//! loaded keys once (with `startup = "wait"`), so a mesh does not route to a
//! replica that would answer KEYS_UNAVAILABLE; `""` reports the process.

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;

use crate::config::Limits;
use crate::engine::Engine;
use crate::grpc::VerifierApi;
use crate::pb;
use crate::pb::verifier_service_server::VerifierServiceServer;

/// The full gRPC name of the Verify service, as health checks ask for it.
pub const SERVICE_NAME: &str = "jwtd.v1.VerifierService";

/// The largest Verify request jwtd decodes: a full batch of the longest
/// tokens plus room for the audiences and framing. tonic's 4 MiB default
/// would refuse legal batches; no limit at all would let one request claim
/// unbounded memory.
pub fn max_request_bytes(limits: &Limits) -> usize {
    limits
        .max_batch
        .saturating_mul(limits.max_token_bytes.saturating_add(16))
        .saturating_add(256 * 1024)
}

/// Serves until `shutdown` completes, then drains in-flight calls.
pub async fn serve(
    listener: TcpListener,
    engine: Arc<Engine>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let registry = Arc::clone(engine.registry());
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_service_status("", ServingStatus::Serving).await;
    health
        .set_not_serving::<VerifierServiceServer<VerifierApi>>()
        .await;
    let mut ready = registry.ready();
    let health_task = tokio::spawn(async move {
        // Readiness only ever flips to true; an error means the registry is gone.
        if ready.wait_for(|r| *r).await.is_ok() {
            health
                .set_serving::<VerifierServiceServer<VerifierApi>>()
                .await;
            tracing::info!("keys loaded for every issuer: {SERVICE_NAME} is SERVING");
        }
    });
    let limits = registry.snapshot().limits;

    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| ServeError::Reflection(e.to_string()))?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .map_err(|e| ServeError::Reflection(e.to_string()))?;

    let verifier = VerifierServiceServer::new(VerifierApi::new(engine))
        .max_decoding_message_size(max_request_bytes(&limits));

    // Nagle off on every accepted connection: with it on, a small response
    // waits for the client's delayed ACK (~40 ms per call, measured). The
    // builder's tcp_nodelay applies only to listeners tonic binds itself.
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let served = tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(verifier)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
        .map_err(|e| ServeError::Transport(e.to_string()));
    health_task.abort();
    served
}

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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_limit_covers_a_full_batch() {
        let limits = Limits {
            max_batch: 1024,
            max_token_bytes: 8192,
        };
        assert!(max_request_bytes(&limits) > 1024 * 8192);
        assert!(max_request_bytes(&limits) < 16 * 1024 * 1024);
    }
}
