//! The tonic adapter of the Verify RPC, and the one place where verification
//! outcomes become wire values ([`status_of`], [`result_of`]).
//!
//! Whole-call problems are gRPC errors with a clear message: a batch over
//! `limits.max_batch`, an `issuer` filter naming no configured issuer, or
//! unreasonable request audiences (INVALID_ARGUMENT); a caller not allowed
//! (PERMISSION_DENIED); a caller over its rate limit, or a call shed because
//! its cold work does not fit now (RESOURCE_EXHAUSTED, with a
//! `grpc-retry-pushback-ms` trailer, gRFC A6). Everything about a single
//! token is a per-token `VerifyResult`. [`refused`] and [`shed`] are the
//! one place refusals become gRPC statuses (a request over the decode cap
//! is refused before any handler runs: `transport::oversize` rewrites
//! tonic's own answer).
//!
//! A call goes: caller allowed? → request valid? → caller's bucket →
//! engine (memo, admission of cold work, CPU pool, unknown-kid refresh).
//! This adapter validates the call, renders each outcome, and cancels the
//! engine's work when the RPC is dropped.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Request, Response, Status};
use tracing::Instrument as _;

use crate::keys::registry::Snapshot;
use crate::observability::audit::{Api, Audit, AuditedCall, caller_name};
use crate::observability::{otel, telemetry};
use crate::pb;
use crate::runtime::admission::Shed;
use crate::runtime::engine::{Budget, CancelToken, Engine, EngineError};
use crate::transport::callers::{Callers, Refusal};
use crate::verifier::policy::Narrowing;
use crate::verifier::verify::{Rejection, Verified};

/// Most audiences, and most required scopes, one request may name.
pub const MAX_REQUEST_AUDIENCES: usize = 64;
/// Longest audience or issuer a request may name, in bytes.
pub const MAX_REQUEST_VALUE_BYTES: usize = 1024;

/// The `jwtd.v1.VerifierService` implementation.
pub struct VerifierApi {
    engine: Arc<Engine>,
    callers: Arc<Callers>,
    audit: Arc<Audit>,
}

impl VerifierApi {
    /// A service verifying through `engine` for `callers`, its decisions
    /// recorded in `audit`.
    pub fn new(engine: Arc<Engine>, callers: Arc<Callers>, audit: Arc<Audit>) -> Self {
        Self {
            engine,
            callers,
            audit,
        }
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
        if request.required_scopes.len() > MAX_REQUEST_AUDIENCES {
            return Err(Status::invalid_argument(format!(
                "{} required scopes is over the limit of {MAX_REQUEST_AUDIENCES}",
                request.required_scopes.len()
            )));
        }
        if let Some(i) = request.required_scopes.iter().position(|s| {
            s.is_empty() || s.len() > MAX_REQUEST_VALUE_BYTES || s.chars().any(char::is_whitespace)
        }) {
            return Err(Status::invalid_argument(format!(
                "required_scopes[{i}] must be 1 to {MAX_REQUEST_VALUE_BYTES} bytes without whitespace"
            )));
        }
        Ok(Narrowing {
            audiences: request.audiences.clone(),
            issuer,
            scopes: request.required_scopes.clone(),
        })
    }
}

#[tonic::async_trait]
impl pb::verifier_service_server::VerifierService for VerifierApi {
    async fn verify(
        &self,
        request: Request<pb::VerifyRequest>,
    ) -> Result<Response<pb::VerifyResponse>, Status> {
        Call::run(VERIFY_METHOD, &self.callers, request, |info, r| {
            self.verify_call(info, r)
        })
        .await
    }
}

impl VerifierApi {
    async fn verify_call(
        &self,
        info: CallInfo,
        request: pb::VerifyRequest,
    ) -> Result<pb::VerifyResponse, Status> {
        let count = request.tokens.len();
        let identity = info.identity.as_deref();
        self.callers
            .allowed(identity)
            .map_err(|r| refused(VERIFY_METHOD, &r, count))?;
        let snapshot = self.engine.registry().snapshot();
        let narrowing = Self::narrowing(&snapshot, &request)?;
        telemetry::batch(count);
        let caller = self
            .callers
            .admit(identity, count)
            .map_err(|r| refused(VERIFY_METHOD, &r, count))?;
        if request.tokens.is_empty() {
            return Ok(pb::VerifyResponse::default());
        }
        let tokens = Arc::new(request.tokens);
        let (results, statuses, batch) =
            verify_tokens(&self.engine, Arc::clone(&tokens), narrowing, info.deadline)
                .await
                .map_err(|e| e.into_status(VERIFY_METHOD, &caller, count))?;
        let caller_name = caller_name(identity, info.peer);
        self.audit.record(
            &info.audited(Api::Verify, &caller_name),
            &tokens,
            &results,
            &snapshot.trust,
        );
        if otel::enabled() {
            // Events only for rejections, and only when they are exported.
            let rejected = statuses.iter().any(|(s, _)| *s != pb::Status::Valid);
            if rejected && otel::is_sampled(&batch) {
                let _inside = batch.enter();
                for (token, result) in tokens.iter().zip(&results) {
                    if result.status != pb::Status::Valid as i32 {
                        let status =
                            pb::Status::try_from(result.status).unwrap_or(pb::Status::Unspecified);
                        let facts = otel::token_facts(token, &snapshot.trust);
                        otel::reject_event(status.as_str_name(), &facts);
                    }
                }
            }
        }
        Ok(pb::VerifyResponse { results })
    }
}

/// Why [`verify_tokens`] gave no results.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum NotVerified {
    /// Shed: the call's cold work does not fit now.
    #[error("{0}")]
    Shed(Shed),
    /// Anything else, as its gRPC status.
    #[error("{}", .0.message())]
    Failed(Status),
}

impl NotVerified {
    /// The gRPC status, the shed counted against `caller`.
    pub(crate) fn into_status(self, method: &'static str, caller: &str, tokens: usize) -> Status {
        match self {
            NotVerified::Shed(s) => shed(method, &s, caller, tokens),
            NotVerified::Failed(status) => status,
        }
    }
}

/// Verifies `tokens` in a batch span, cancelling the engine's work if this
/// future is dropped (deadline passed, caller gone), and counts the
/// outcomes in the metrics and on the span. Returns the results, the count
/// per status and the span (for per-token events).
pub(crate) async fn verify_tokens(
    engine: &Arc<Engine>,
    tokens: Arc<Vec<String>>,
    narrowing: Narrowing,
    deadline: Option<Instant>,
) -> Result<(Vec<pb::VerifyResult>, Vec<(pb::Status, u64)>, tracing::Span), NotVerified> {
    let batch = otel::batch_span(tokens.len());
    let cancel = CancelToken::default();
    let guard = cancel.guard();
    let budget = Budget { cancel, deadline };
    let results = engine
        .verify_batch(tokens, Arc::new(narrowing), budget, result_of)
        .instrument(batch.clone())
        .await
        .map_err(|e| match e {
            EngineError::Shed(s) => NotVerified::Shed(s),
            EngineError::Cancelled => {
                NotVerified::Failed(Status::cancelled("the call was cancelled"))
            }
            other => NotVerified::Failed(Status::internal(other.to_string())),
        })?;
    guard.disarm();
    let statuses = count_results(&results);
    otel::record_statuses(&batch, statuses.iter().map(|(s, n)| (s.as_str_name(), *n)));
    Ok((results, statuses, batch))
}

/// What the transport knows of a call besides its message.
#[derive(Debug, Clone, Default)]
pub struct CallInfo {
    /// The caller's identity, as `[callers] identity` reads it (`None`
    /// when nobody is limited or refused, or the call carries none).
    pub identity: Option<String>,
    /// When the caller stops waiting, from its `grpc-timeout`.
    pub deadline: Option<Instant>,
    /// The connection's remote address, when the transport knows it.
    pub peer: Option<std::net::SocketAddr>,
    /// The trace id of the caller's `traceparent`, if it sent one.
    pub trace_id: Option<String>,
}

impl CallInfo {
    /// What the audit trail records of this call to `api`.
    pub fn audited<'a>(&'a self, api: Api, caller: &'a str) -> AuditedCall<'a> {
        AuditedCall {
            api,
            caller,
            trace_id: self.trace_id.as_deref().unwrap_or(""),
        }
    }
}

/// The `grpc-retry-pushback-ms` trailer (gRFC A6).
pub const PUSHBACK_TRAILER: &str = "grpc-retry-pushback-ms";

/// RESOURCE_EXHAUSTED for a call shed by admission control, with the
/// pushback, counted.
pub fn shed(method: &'static str, shed: &Shed, caller: &str, tokens: usize) -> Status {
    telemetry::refused(method, shed.reason(), caller, tokens);
    with_pushback(
        Status::resource_exhausted(shed.to_string()),
        Some(shed.pushback()),
    )
}

/// The status of a caller's refusal, counted: PERMISSION_DENIED for a
/// caller not allowed, RESOURCE_EXHAUSTED with a pushback for one over its
/// limit (a pushback of -1, "do not retry", for a batch over its burst).
pub fn refused(method: &'static str, refusal: &Refusal, tokens: usize) -> Status {
    telemetry::refused(method, refusal.reason(), refusal.caller(), tokens);
    match refusal {
        Refusal::NotAllowed { .. } => Status::permission_denied(refusal.to_string()),
        Refusal::OverLimit { retry_after, .. } => with_pushback(
            Status::resource_exhausted(refusal.to_string()),
            Some(*retry_after),
        ),
        Refusal::OverBurst { .. } => {
            with_pushback(Status::resource_exhausted(refusal.to_string()), None)
        }
    }
}

/// `status` with a `grpc-retry-pushback-ms` trailer: whole milliseconds,
/// rounded up, or `-1` (do not retry) for `None`.
fn with_pushback(status: Status, pushback: Option<Duration>) -> Status {
    let value = match pushback {
        Some(d) => d
            .as_micros()
            .div_ceil(1000)
            .min(u128::from(u32::MAX))
            .to_string(),
        None => "-1".to_owned(),
    };
    let mut trailers = MetadataMap::new();
    if let Ok(value) = MetadataValue::try_from(value) {
        trailers.insert(PUSHBACK_TRAILER, value);
    }
    Status::with_metadata(status.code(), status.message().to_owned(), trailers)
}

/// The deadline a call's `grpc-timeout` sets, counted from `start`; `None`
/// without one, or with a value the gRPC spec does not allow (tonic then
/// applies no timeout either).
pub fn deadline_of(metadata: &MetadataMap, start: Instant) -> Option<Instant> {
    let text = metadata.get("grpc-timeout")?.to_str().ok()?;
    let unit = text.get(text.len().checked_sub(1)?..)?;
    let digits = &text[..text.len() - 1];
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    let timeout = match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    };
    start.checked_add(timeout)
}

/// One RPC as metrics and traces see it: in flight until dropped, then its
/// latency and code recorded (Cancelled when dropped before its handler
/// finished: the caller went away or its deadline passed).
#[derive(Debug)]
pub struct Call {
    timer: telemetry::RpcTimer,
    /// The server span (disabled when tracing is off).
    span: tracing::Span,
    code: tonic::Code,
}

impl Call {
    /// Serves `request` as one call of `method`: `handler` runs on what
    /// the transport knows of the call and its message, inside the call's
    /// span, and the call ends with its outcome's code.
    pub async fn run<T, R, F>(
        method: &'static str,
        callers: &Callers,
        request: Request<T>,
        handler: impl FnOnce(CallInfo, T) -> F,
    ) -> Result<Response<R>, Status>
    where
        F: std::future::Future<Output = Result<R, Status>>,
    {
        let mut call = Call::start(method, &request);
        let info = CallInfo {
            identity: callers.identity_of(&request),
            deadline: deadline_of(request.metadata(), call.timer.started()),
            peer: request.remote_addr(),
            trace_id: otel::traceparent_trace_id(request.metadata()),
        };
        let outcome = handler(info, request.into_inner())
            .instrument(call.span.clone())
            .await;
        call.finish(match &outcome {
            Ok(_) => tonic::Code::Ok,
            Err(status) => status.code(),
        });
        outcome.map(Response::new)
    }

    /// A call of `method` starting now, continuing the caller's trace.
    fn start<T>(method: &'static str, request: &Request<T>) -> Self {
        Self {
            timer: telemetry::RpcTimer::start(method),
            span: otel::rpc_span(method, request.metadata(), request.local_addr()),
            code: tonic::Code::Cancelled,
        }
    }

    /// The code the call ends with.
    fn finish(&mut self, code: tonic::Code) {
        self.code = code;
        self.timer.finish(code);
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        otel::record_code(&self.span, self.code);
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
        // A stale revocation list is an outage, like missing keys: retry.
        Rejection::KeysUnavailable(_) | Rejection::RevocationStale { .. } => S::KeysUnavailable,
        Rejection::Revoked { .. } => S::Revoked,
        Rejection::UnknownKid { .. }
        | Rejection::KeyAlgorithmMismatch { .. }
        | Rejection::NoKeyForAlgorithm(_) => S::UnknownKey,
        Rejection::BadSignature => S::BadSignature,
        Rejection::Expired { .. } => S::Expired,
        Rejection::NotYetValid { .. } => S::NotYetValid,
        Rejection::AudienceMismatch(_) => S::AudienceMismatch,
        Rejection::TypeNotAllowed(_) => S::TypeNotAllowed,
        Rejection::InsufficientScope(_) | Rejection::MissingRole(_) => S::InsufficientScope,
        Rejection::ClientNotAllowed => S::ClientNotAllowed,
        Rejection::TooOld { .. } => S::Expired,
    }
}

/// The full gRPC method name, as metrics and traces name it.
pub const VERIFY_METHOD: &str = "jwtd.v1.VerifierService/Verify";

/// Counts a batch's results in the verification metrics, once per distinct
/// label set rather than once per token (a metrics call hashes its labels;
/// per token that would show next to a ~1 µs memo hit). The issuer label is
/// the issuer of a VALID token, which is always a configured issuer; other
/// outcomes count as `unknown`, so nothing a token claims becomes a label.
/// Returns the count per status, for the batch span.
fn count_results(results: &[pb::VerifyResult]) -> Vec<(pb::Status, u64)> {
    /// (issuer, status, cached)
    type Labels<'a> = (Option<&'a str>, i32, bool);
    let mut counts: Vec<(Labels<'_>, u64)> = Vec::new();
    for r in results {
        let issuer = (r.status == pb::Status::Valid as i32)
            .then(|| r.claims.as_ref().map(|c| c.issuer.as_str()))
            .flatten();
        let key = (issuer, r.status, r.cached);
        match counts.iter_mut().find(|(k, _)| *k == key) {
            Some((_, n)) => *n += 1,
            None => counts.push((key, 1)),
        }
    }
    let mut statuses: Vec<(pb::Status, u64)> = Vec::new();
    for ((issuer, status, cached), n) in counts {
        let status = pb::Status::try_from(status).unwrap_or(pb::Status::Unspecified);
        telemetry::verifications(issuer, status, cached, n);
        match statuses.iter_mut().find(|(s, _)| *s == status) {
            Some((_, total)) => *total += n,
            None => statuses.push((status, n)),
        }
    }
    statuses
}

/// One token's wire result; `cached` when the expensive work came from the memo.
pub fn result_of(outcome: Result<Verified<'_>, &Rejection>, cached: bool) -> pb::VerifyResult {
    match outcome {
        Ok(verified) => {
            let claims = verified.claims();
            pb::VerifyResult {
                status: pb::Status::Valid.into(),
                reason: String::new(),
                claims: Some(pb::Claims {
                    issuer: claims.iss().unwrap_or_default().to_owned(),
                    subject: claims.sub().unwrap_or_default().to_owned(),
                    audiences: claims
                        .aud()
                        .map(|aud| aud.map(str::to_owned).collect())
                        .unwrap_or_default(),
                    expires_at: claims.exp().unwrap_or_default(),
                    not_before: claims.nbf().unwrap_or_default(),
                    issued_at: claims.iat().unwrap_or_default(),
                    jwt_id: claims.jti().unwrap_or_default().to_owned(),
                    key_id: verified.kid().unwrap_or_default().to_owned(),
                    algorithm: verified.algorithm().name().to_owned(),
                    payload_json: verified.payload().to_vec(),
                }),
                cached,
            }
        }
        Err(rejection) => pb::VerifyResult {
            status: status_of(rejection).into(),
            reason: rejection.to_string(),
            claims: None,
            cached,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verifier::jose::{Algorithm, Malformed};
    use crate::verifier::verify::{AudienceSide, RevokedBy};

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
            (Rejection::Revoked { by: RevokedBy::Jti }, S::Revoked),
            (
                Rejection::Revoked {
                    by: RevokedBy::Subject { revoked_at: 5 },
                },
                S::Revoked,
            ),
            (
                Rejection::RevocationStale { list: "redis" },
                S::KeysUnavailable,
            ),
            (
                Rejection::AudienceMismatch(AudienceSide::Unconfigured),
                S::AudienceMismatch,
            ),
            (
                Rejection::TypeNotAllowed(Some("JWT".into())),
                S::TypeNotAllowed,
            ),
            (
                Rejection::InsufficientScope("read".into()),
                S::InsufficientScope,
            ),
            (Rejection::MissingRole("admin".into()), S::InsufficientScope),
            (Rejection::ClientNotAllowed, S::ClientNotAllowed),
            (
                Rejection::TooOld {
                    iat: 1,
                    max_age: 2,
                    now: 5,
                },
                S::Expired,
            ),
        ];
        for (rejection, want) in cases {
            assert_eq!(status_of(&rejection), want, "{rejection:?}");
            let result = result_of(Err(&rejection), false);
            assert_eq!(result.status, i32::from(want));
            assert_eq!(result.reason, rejection.to_string());
            assert!(result.claims.is_none() && !result.cached);
        }
    }

    #[test]
    fn grpc_timeouts_become_deadlines() {
        let start = Instant::now();
        let deadline = |value: &str| {
            let mut m = MetadataMap::new();
            m.insert("grpc-timeout", value.parse().expect("ascii"));
            deadline_of(&m, start).map(|d| d - start)
        };
        assert_eq!(deadline("250m"), Some(Duration::from_millis(250)));
        assert_eq!(deadline("2S"), Some(Duration::from_secs(2)));
        assert_eq!(deadline("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(deadline("3M"), Some(Duration::from_secs(180)));
        assert_eq!(
            deadline("99999999u"),
            Some(Duration::from_micros(99_999_999))
        );
        assert_eq!(deadline("5n"), Some(Duration::from_nanos(5)));
        for bad in ["", "m", "123456789m", "12x", "-1m", "1.5S", "S1"] {
            assert_eq!(deadline(bad), None, "{bad:?}");
        }
        assert_eq!(deadline_of(&MetadataMap::new(), start), None);
    }

    #[test]
    fn refusals_map_to_their_codes_and_pushbacks() {
        let trailer = |s: &Status| {
            s.metadata()
                .get(PUSHBACK_TRAILER)
                .map(|v| v.to_str().expect("ascii").to_owned())
        };
        let not_allowed = refused(
            VERIFY_METHOD,
            &Refusal::NotAllowed {
                identity: Some("x".into()),
            },
            1,
        );
        assert_eq!(not_allowed.code(), tonic::Code::PermissionDenied);
        assert_eq!(trailer(&not_allowed), None, "never retried: no pushback");
        let over = refused(
            VERIFY_METHOD,
            &Refusal::OverLimit {
                caller: "a".into(),
                rate: 1,
                burst: 1,
                retry_after: Duration::from_micros(1500),
            },
            1,
        );
        assert_eq!(over.code(), tonic::Code::ResourceExhausted);
        assert_eq!(trailer(&over).as_deref(), Some("2"), "rounded up");
        let burst = refused(
            VERIFY_METHOD,
            &Refusal::OverBurst {
                caller: "a".into(),
                tokens: 9,
                burst: 1,
            },
            9,
        );
        assert_eq!(burst.code(), tonic::Code::ResourceExhausted);
        assert_eq!(trailer(&burst).as_deref(), Some("-1"), "do not retry");
        let s = shed(
            VERIFY_METHOD,
            &Shed::Overloaded {
                limit: 8,
                pending: 8,
                wanted: 1,
                pushback: Duration::from_millis(40),
            },
            "other",
            1,
        );
        assert_eq!(s.code(), tonic::Code::ResourceExhausted);
        assert_eq!(trailer(&s).as_deref(), Some("40"));
        assert!(s.message().contains("limits.max_pending_tokens (8)"));
    }
}
