//! The tonic adapter of the Verify RPC, and the one place where verification
//! outcomes become wire values ([`status_of`], [`result_of`]).
//!
//! Whole-call problems are gRPC errors with a clear message: a batch over
//! `limits.max_batch`, an `issuer` filter naming no configured issuer, or
//! unreasonable request audiences. Everything about a single token is a
//! per-token `VerifyResult`.
//!
//! Signature checks are CPU work, so a batch runs on tokio's blocking pool,
//! never on the reactor threads that serve other connections.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::clock::Clock;
use crate::config::Limits;
use crate::pb;
use crate::policy::{Narrowing, Trust};
use crate::verify::{self, Rejection, Verified};

/// Most audiences one request may name.
pub const MAX_REQUEST_AUDIENCES: usize = 64;
/// Longest audience or issuer a request may name, in bytes.
pub const MAX_REQUEST_VALUE_BYTES: usize = 1024;

/// The `jwtd.v1.VerifierService` implementation.
pub struct VerifierApi {
    trust: Arc<Trust>,
    limits: Limits,
    clock: Arc<dyn Clock>,
}

impl VerifierApi {
    /// A service verifying against `trust` with the time from `clock`.
    pub fn new(trust: Arc<Trust>, limits: Limits, clock: Arc<dyn Clock>) -> Self {
        Self {
            trust,
            limits,
            clock,
        }
    }

    /// Checks the whole-call rules and returns what the call narrows.
    fn narrowing(&self, request: &pb::VerifyRequest) -> Result<Narrowing, Status> {
        let count = request.tokens.len();
        if count > self.limits.max_batch {
            return Err(Status::invalid_argument(format!(
                "batch of {count} tokens is over the limit of {} (limits.max_batch)",
                self.limits.max_batch
            )));
        }
        if request.audiences.len() > MAX_REQUEST_AUDIENCES {
            return Err(Status::invalid_argument(format!(
                "{} audiences is over the limit of {MAX_REQUEST_AUDIENCES}",
                request.audiences.len()
            )));
        }
        if let Some(i) = request
            .audiences
            .iter()
            .position(|a| a.is_empty() || a.len() > MAX_REQUEST_VALUE_BYTES)
        {
            return Err(Status::invalid_argument(format!(
                "audiences[{i}] must be 1 to {MAX_REQUEST_VALUE_BYTES} bytes"
            )));
        }
        let issuer = match request.issuer.as_str() {
            "" => None,
            iss if iss.len() > MAX_REQUEST_VALUE_BYTES => {
                return Err(Status::invalid_argument(format!(
                    "issuer is over {MAX_REQUEST_VALUE_BYTES} bytes"
                )));
            }
            iss if self.trust.issuer(iss).is_none() => {
                return Err(Status::invalid_argument(format!(
                    "issuer {iss:?} is not configured in jwtd"
                )));
            }
            iss => Some(iss.to_owned()),
        };
        Ok(Narrowing {
            audiences: request.audiences.clone(),
            issuer,
        })
    }
}

#[tonic::async_trait]
impl pb::verifier_service_server::VerifierService for VerifierApi {
    async fn verify(
        &self,
        request: Request<pb::VerifyRequest>,
    ) -> Result<Response<pb::VerifyResponse>, Status> {
        let request = request.into_inner();
        let narrowing = self.narrowing(&request)?;
        if request.tokens.is_empty() {
            return Ok(Response::new(pb::VerifyResponse::default()));
        }
        let trust = Arc::clone(&self.trust);
        let now = self.clock.now();
        let results = tokio::task::spawn_blocking(move || {
            request
                .tokens
                .iter()
                .map(|token| result_of(verify::verify(token, &trust, &narrowing, now)))
                .collect()
        })
        .await
        .map_err(|e| Status::internal(format!("verification task failed: {e}")))?;
        Ok(Response::new(pb::VerifyResponse { results }))
    }
}

/// The wire status of a rejection. Every variant is mapped here and nowhere else.
pub fn status_of(rejection: &Rejection) -> pb::Status {
    use pb::Status as S;
    match rejection {
        Rejection::TooLarge { .. } => S::TokenTooLarge,
        Rejection::Malformed(_) => S::Malformed,
        Rejection::AlgNone | Rejection::UnknownAlgorithm | Rejection::AlgorithmNotAllowed(_) => {
            S::UnsupportedAlgorithm
        }
        Rejection::MissingIssuer | Rejection::MissingExp | Rejection::MissingAudience => {
            S::MissingClaim
        }
        Rejection::MissingClaim(_) => S::MissingClaim,
        Rejection::IssuerNotTrusted | Rejection::IssuerNotRequested => S::IssuerNotTrusted,
        Rejection::KeysUnavailable(_) => S::KeysUnavailable,
        Rejection::UnknownKid
        | Rejection::KeyAlgorithmMismatch { .. }
        | Rejection::NoKeyForAlgorithm(_) => S::UnknownKey,
        Rejection::BadSignature => S::BadSignature,
        Rejection::Expired { .. } => S::Expired,
        Rejection::NotYetValid { .. } => S::NotYetValid,
        Rejection::AudienceMismatch(_) => S::AudienceMismatch,
    }
}

/// One token's wire result.
pub fn result_of(outcome: Result<Verified, Rejection>) -> pb::VerifyResult {
    match outcome {
        Ok(verified) => {
            let (claims, algorithm, kid, payload) = verified.into_parts();
            pb::VerifyResult {
                status: pb::Status::Valid.into(),
                reason: String::new(),
                claims: Some(pb::Claims {
                    issuer: claims.iss.unwrap_or_default(),
                    subject: claims.sub.unwrap_or_default(),
                    audiences: claims.aud.unwrap_or_default(),
                    expires_at: claims.exp.unwrap_or_default(),
                    not_before: claims.nbf.unwrap_or_default(),
                    issued_at: claims.iat.unwrap_or_default(),
                    jwt_id: claims.jti.unwrap_or_default(),
                    key_id: kid.unwrap_or_default(),
                    algorithm: algorithm.name().to_owned(),
                    payload_json: payload,
                }),
                cached: false,
            }
        }
        Err(rejection) => pb::VerifyResult {
            status: status_of(&rejection).into(),
            reason: rejection.to_string(),
            claims: None,
            cached: false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jose::{Algorithm, Malformed};
    use crate::verify::AudienceSide;

    #[test]
    fn every_rejection_has_its_status() {
        use pb::Status as S;
        let cases = [
            (Rejection::TooLarge { len: 9, max: 8 }, S::TokenTooLarge),
            (Rejection::Malformed(Malformed::Jwe), S::Malformed),
            (Rejection::AlgNone, S::UnsupportedAlgorithm),
            (Rejection::UnknownAlgorithm, S::UnsupportedAlgorithm),
            (
                Rejection::AlgorithmNotAllowed(Algorithm::HS256),
                S::UnsupportedAlgorithm,
            ),
            (Rejection::MissingIssuer, S::MissingClaim),
            (Rejection::MissingExp, S::MissingClaim),
            (Rejection::MissingAudience, S::MissingClaim),
            (Rejection::MissingClaim("sub".into()), S::MissingClaim),
            (Rejection::IssuerNotTrusted, S::IssuerNotTrusted),
            (Rejection::IssuerNotRequested, S::IssuerNotTrusted),
            (Rejection::KeysUnavailable("i".into()), S::KeysUnavailable),
            (Rejection::UnknownKid, S::UnknownKey),
            (
                Rejection::KeyAlgorithmMismatch {
                    kid: "k".into(),
                    alg: Algorithm::RS256,
                },
                S::UnknownKey,
            ),
            (
                Rejection::NoKeyForAlgorithm(Algorithm::RS256),
                S::UnknownKey,
            ),
            (Rejection::BadSignature, S::BadSignature),
            (
                Rejection::Expired {
                    exp: 1,
                    now: 2,
                    leeway: 0,
                },
                S::Expired,
            ),
            (
                Rejection::NotYetValid {
                    nbf: 3,
                    now: 2,
                    leeway: 0,
                },
                S::NotYetValid,
            ),
            (
                Rejection::AudienceMismatch(AudienceSide::Requested),
                S::AudienceMismatch,
            ),
        ];
        for (rejection, want) in cases {
            assert_eq!(status_of(&rejection), want, "{rejection:?}");
            let result = result_of(Err(rejection.clone()));
            assert_eq!(result.status, i32::from(want));
            assert_eq!(result.reason, rejection.to_string());
            assert!(result.claims.is_none() && !result.cached);
        }
    }
}
