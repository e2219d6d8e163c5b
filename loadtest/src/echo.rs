//! The transport ceiling: a server of the same Verify RPC that does no
//! verification and answers every token with one precomputed VALID result.
//! Run beside jwtd on the same machine, it shows what tonic, HTTP/2 and the
//! load driver cost by themselves, so jwtd's tokens/sec can be read as a
//! share of what the path allows.

use std::future::Future;

use jwtd::pb::verifier_service_server::{VerifierService, VerifierServiceServer};
use jwtd::pb::{self, Claims, VerifyRequest, VerifyResponse, VerifyResult};
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

use crate::Error;
use crate::corpus::{AUDIENCE, ISSUER};

/// The echo service.
#[derive(Debug, Clone)]
pub struct Echo {
    result: VerifyResult,
}

impl Default for Echo {
    fn default() -> Self {
        Self::new()
    }
}

impl Echo {
    /// An echo whose result is shaped like jwtd's answer for a corpus token
    /// (same claims and payload size), so responses weigh the same.
    pub fn new() -> Self {
        let payload = format!(
            "{{\"iss\":\"{ISSUER}\",\"sub\":\"user-1\",\"aud\":\"{AUDIENCE}\",\"iat\":1700000000,\
             \"exp\":1700086400,\"jti\":\"2a-1\",\"scope\":\"read write{}\",\"tenant\":\"acme\"}}",
            " api:0".repeat(33)
        );
        Self {
            result: VerifyResult {
                status: pb::Status::Valid as i32,
                reason: String::new(),
                claims: Some(Claims {
                    issuer: ISSUER.into(),
                    subject: "user-1".into(),
                    audiences: vec![AUDIENCE.into()],
                    expires_at: 1_700_086_400,
                    not_before: 0,
                    issued_at: 1_700_000_000,
                    jwt_id: "2a-1".into(),
                    key_id: "load-rsa2048".into(),
                    algorithm: "RS256".into(),
                    payload_json: payload.into_bytes(),
                }),
                cached: false,
            },
        }
    }
}

#[tonic::async_trait]
impl VerifierService for Echo {
    async fn verify(
        &self,
        request: Request<VerifyRequest>,
    ) -> Result<Response<VerifyResponse>, Status> {
        let n = request.into_inner().tokens.len();
        Ok(Response::new(VerifyResponse {
            results: vec![self.result.clone(); n],
        }))
    }
}

/// Serves the echo service (and reflection, for ghz) on `listener` until
/// `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .map_err(|e| Error::Transport(format!("reflection: {e}")))?;
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| Error::Transport(format!("reflection: {e}")))?;
    tonic::transport::Server::builder()
        .add_service(reflection)
        .add_service(reflection_v1)
        // As jwtd: a full batch of long tokens must decode.
        .add_service(VerifierServiceServer::new(Echo::new()).max_decoding_message_size(64 << 20))
        // Server::tcp_nodelay is ignored for a caller's listener (tonic's
        // docs): without TCP_NODELAY on each accepted socket, Nagle holds the
        // trailers frame of every small answer until the client's delayed
        // ACK, about 40 ms on Linux.
        .serve_with_incoming_shutdown(
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown,
        )
        .await
        .map_err(|e| Error::Transport(e.to_string()))
}
