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
//!
//! Tokens whose kid their issuer's set lacks trigger that issuer's
//! (rate-limited, single-flight) refresh; the call waits for it up to the
//! issuer's `kid_miss_wait_ms` and verifies those tokens once more against the
//! new snapshot, so a key published a moment ago is VALID, not UNKNOWN_KEY.

use std::collections::BTreeSet;
use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::clock::Clock;
use crate::pb;
use crate::policy::{Narrowing, Trust};
use crate::registry::{Registry, Snapshot};
use crate::verify::{self, Rejection, UnixTime, Verified};

/// Most audiences one request may name.
pub const MAX_REQUEST_AUDIENCES: usize = 64;
/// Longest audience or issuer a request may name, in bytes.
pub const MAX_REQUEST_VALUE_BYTES: usize = 1024;

/// The `jwtd.v1.VerifierService` implementation.
pub struct VerifierApi {
    registry: Arc<Registry>,
    clock: Arc<dyn Clock>,
}

type Outcome = Result<Verified, Rejection>;

impl VerifierApi {
    /// A service verifying against the registry's current keys, with the
    /// time from `clock`.
    pub fn new(registry: Arc<Registry>, clock: Arc<dyn Clock>) -> Self {
        Self { registry, clock }
    }

    /// Checks the whole-call rules and returns what the call narrows.
    fn narrowing(snapshot: &Snapshot, request: &pb::VerifyRequest) -> Result<Narrowing, Status> {
        let count = request.tokens.len();
        let max_batch = snapshot.limits.max_batch;
        if count > max_batch {
            return Err(Status::invalid_argument(format!(
                "batch of {count} tokens is over the limit of {max_batch} (limits.max_batch)"
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
            iss if snapshot.trust.issuer(iss).is_none() => {
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
        let snapshot = self.registry.snapshot();
        let narrowing = Arc::new(Self::narrowing(&snapshot, &request)?);
        if request.tokens.is_empty() {
            return Ok(Response::new(pb::VerifyResponse::default()));
        }
        let tokens = Arc::new(request.tokens);
        let now = self.clock.now();
        let all: Vec<usize> = (0..tokens.len()).collect();
        let mut outcomes = verify_on_pool(&snapshot, &tokens, &narrowing, now, all).await?;

        let missed: BTreeSet<String> = outcomes
            .iter()
            .filter_map(|o| match o {
                Err(Rejection::UnknownKid { issuer }) => Some(issuer.clone()),
                _ => None,
            })
            .collect();
        if !missed.is_empty() {
            let refreshed = self.refresh_for_kid_misses(missed).await;
            let retry: Vec<usize> = outcomes
                .iter()
                .enumerate()
                .filter(|(_, o)| {
                    matches!(o, Err(Rejection::UnknownKid { issuer }) if refreshed.contains(issuer))
                })
                .map(|(i, _)| i)
                .collect();
            if !retry.is_empty() {
                let snapshot = self.registry.snapshot();
                let again =
                    verify_on_pool(&snapshot, &tokens, &narrowing, now, retry.clone()).await?;
                for (i, outcome) in retry.into_iter().zip(again) {
                    outcomes[i] = outcome;
                }
            }
        }
        let results = outcomes.into_iter().map(result_of).collect();
        Ok(Response::new(pb::VerifyResponse { results }))
    }
}

impl VerifierApi {
    /// Asks each issuer in `missed` for a refresh, concurrently, and returns
    /// those whose refresh completed in time.
    async fn refresh_for_kid_misses(&self, missed: BTreeSet<String>) -> BTreeSet<String> {
        let mut waits = tokio::task::JoinSet::new();
        for issuer in missed {
            let registry = Arc::clone(&self.registry);
            waits.spawn(async move {
                let refreshed = registry.kid_miss(&issuer).await;
                (issuer, refreshed)
            });
        }
        let mut refreshed = BTreeSet::new();
        while let Some(joined) = waits.join_next().await {
            if let Ok((issuer, true)) = joined {
                refreshed.insert(issuer);
            }
        }
        refreshed
    }
}

/// Verifies the tokens at `indices` on the blocking pool.
async fn verify_on_pool(
    snapshot: &Arc<Snapshot>,
    tokens: &Arc<Vec<String>>,
    narrowing: &Arc<Narrowing>,
    now: UnixTime,
    indices: Vec<usize>,
) -> Result<Vec<Outcome>, Status> {
    let (snapshot, tokens, narrowing) = (
        Arc::clone(snapshot),
        Arc::clone(tokens),
        Arc::clone(narrowing),
    );
    tokio::task::spawn_blocking(move || {
        let trust: &Trust = &snapshot.trust;
        indices
            .into_iter()
            .map(|i| verify::verify(&tokens[i], trust, &narrowing, now))
            .collect()
    })
    .await
    .map_err(|e| Status::internal(format!("verification task failed: {e}")))
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
        Rejection::UnknownKid { .. }
        | Rejection::KeyAlgorithmMismatch { .. }
        | Rejection::NoKeyForAlgorithm(_) => S::UnknownKey,
        Rejection::BadSignature => S::BadSignature,
        Rejection::Expired { .. } => S::Expired,
        Rejection::NotYetValid { .. } => S::NotYetValid,
        Rejection::AudienceMismatch(_) => S::AudienceMismatch,
    }
}

/// One token's wire result.
pub fn result_of(outcome: Outcome) -> pb::VerifyResult {
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
            (Rejection::UnknownKid { issuer: "i".into() }, S::UnknownKey),
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
