//! The transport ceiling: a server of the same Verify RPC that does no
//! verification and answers every token with one precomputed VALID result.
//! Run beside jwtd on the same machine, it shows what tonic, HTTP/2 and the
//! load driver cost by themselves, so jwtd's tokens/sec can be read as a
//! share of what the path allows.
//!
//! It answers in the request's `view` (issue 14), from one precomputed
//! result per view, so a lean view's ceiling is measured with answers of
//! the same size as jwtd's; a request that names no view gets the server's
//! `--view` (FULL by default), so ghz data files without one can be run
//! against any shape. An unknown view is INVALID_ARGUMENT, as in jwtd.

use std::future::Future;

use jwtd::pb::verifier_service_server::{VerifierService, VerifierServiceServer};
use jwtd::pb::{self, Claims, VerifyRequest, VerifyResponse, VerifyResult};
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

use crate::Error;
use crate::corpus::{AUDIENCE, ISSUER};
use crate::view::View;

/// The echo service.
#[derive(Debug, Clone)]
pub struct Echo {
    /// The answer per view, in [`View::ALL`] order.
    results: [VerifyResult; 3],
    /// The view of a request that names none.
    default: View,
}

impl Default for Echo {
    fn default() -> Self {
        Self::new()
    }
}

impl Echo {
    /// An echo whose result is shaped like jwtd's FULL answer for a corpus
    /// token (same claims and payload size), so responses weigh the same.
    pub fn new() -> Self {
        Self::with_default_view(View::Full)
    }

    /// As [`Echo::new`], answering `default`'s shape to requests that name
    /// no view.
    pub fn with_default_view(default: View) -> Self {
        let payload = format!(
            "{{\"iss\":\"{ISSUER}\",\"sub\":\"user-1\",\"aud\":\"{AUDIENCE}\",\"iat\":1700000000,\
             \"exp\":1700086400,\"jti\":\"2a-1\",\"scope\":\"read write{}\",\"tenant\":\"acme\"}}",
            " api:0".repeat(33)
        );
        let full = VerifyResult {
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
        };
        let results = View::ALL.map(|view| match view {
            View::Full => full.clone(),
            View::Registered => VerifyResult {
                claims: full.claims.clone().map(|c| Claims {
                    payload_json: Vec::new(),
                    ..c
                }),
                ..full.clone()
            },
            View::StatusOnly => VerifyResult {
                claims: None,
                ..full.clone()
            },
        });
        Self { results, default }
    }

    /// The precomputed answer of a request naming `view` (0: the default).
    fn result(&self, view: i32) -> Result<&VerifyResult, Status> {
        let view = match view {
            0 => self.default,
            n => View::of_wire(n)
                .ok_or_else(|| Status::invalid_argument(format!("unknown view {n}")))?,
        };
        let index = View::ALL.iter().position(|v| *v == view).unwrap_or(0);
        Ok(&self.results[index])
    }
}

#[tonic::async_trait]
impl VerifierService for Echo {
    async fn verify(
        &self,
        request: Request<VerifyRequest>,
    ) -> Result<Response<VerifyResponse>, Status> {
        let request = request.into_inner();
        let result = self.result(request.view)?;
        Ok(Response::new(VerifyResponse {
            results: vec![result.clone(); request.tokens.len()],
        }))
    }
}

/// Serves the echo service (and reflection, for ghz) on `listener` until
/// `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    serve_echo(Echo::new(), listener, shutdown).await
}

/// Serves `echo` (and reflection, for ghz) on `listener` until `shutdown`
/// completes.
pub async fn serve_echo(
    echo: Echo,
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
        .add_service(VerifierServiceServer::new(echo).max_decoding_message_size(64 << 20))
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

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message as _;

    #[test]
    fn each_view_has_its_precomputed_shape() {
        let echo = Echo::with_default_view(View::Registered);
        let full = echo.result(pb::View::Full as i32).expect("full");
        let registered = echo
            .result(pb::View::Registered as i32)
            .expect("registered");
        let lean = echo
            .result(pb::View::StatusOnly as i32)
            .expect("status only");
        let claims = full.claims.as_ref().expect("claims");
        assert!(!claims.payload_json.is_empty());
        assert_eq!(
            registered.claims,
            Some(Claims {
                payload_json: Vec::new(),
                ..claims.clone()
            })
        );
        assert_eq!(lean.claims, None);
        for r in [full, registered, lean] {
            assert_eq!(r.status, pb::Status::Valid as i32);
        }
        // A request without a view gets the server's --view.
        assert_eq!(echo.result(0).expect("default"), registered);
        let unknown = echo.result(9).expect_err("unknown");
        assert_eq!(unknown.code(), tonic::Code::InvalidArgument);
        eprintln!(
            "encoded bytes per result: full {}, registered {}, status only {}",
            full.encoded_len(),
            registered.encoded_len(),
            lean.encoded_len()
        );
    }
}
