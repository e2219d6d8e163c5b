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
//!
//! Each outcome is rendered by the call's [`Renderer`], built from the
//! request's [`View`] (issue 14): FULL (the default) answers the registered
//! claims and `payload_json`, REGISTERED the claims without the payload,
//! STATUS_ONLY the status, `cached` and a rejection's reason, no claims.
//!
//! Decisions:
//! - The view is decided once per call and the renderer is a 2-byte `Copy`
//!   value captured by the render closure the engine calls per token (memo
//!   hits included): one branch per token, no allocation, no second
//!   instantiation of the engine's batch code. FULL builds exactly what it
//!   built before (`result_of` is the FULL renderer).
//! - A rejection's reason is kept in every view: it is short (under 120
//!   bytes, tests/server.rs) and says precisely what failed, which a status
//!   alone does not (an expired token and a too-old one share EXPIRED).
//! - STATUS_ONLY still renders a VALID token's issuer (one short string),
//!   and with `[audit] mode = "all"` its subject and jti, because the
//!   `issuer` label of the verification counter and the trail's events read
//!   them from the results; [`Renderer::trim`] drops them after both have
//!   run, before the answer is encoded. Never the payload or the audiences:
//!   those are the bulk of a result (a load-test token's VALID result
//!   encodes to 437 bytes FULL, 86 REGISTERED, 2 STATUS_ONLY:
//!   `jwtd-load`'s echo test).
//! - An unknown view number (prost keeps it as an `i32`) is
//!   INVALID_ARGUMENT: answering FULL to a view this server does not know
//!   would send what the caller asked not to get.

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
        let view = View::of_request(request.view)?;
        let renderer = Renderer::new(view, self.audit.records_valid());
        telemetry::batch(count);
        let caller = self
            .callers
            .admit(identity, count)
            .map_err(|r| refused(VERIFY_METHOD, &r, count))?;
        if request.tokens.is_empty() {
            return Ok(pb::VerifyResponse::default());
        }
        let tokens = Arc::new(request.tokens);
        let (mut results, statuses, batch) = verify_tokens(
            &self.engine,
            Arc::clone(&tokens),
            narrowing,
            renderer,
            info.deadline,
        )
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
        renderer.trim(&mut results);
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
/// outcomes in the metrics and on the span. Returns the results as
/// `renderer` renders them (not yet trimmed: [`Renderer::trim`]), the count
/// per status and the span (for per-token events).
pub(crate) async fn verify_tokens(
    engine: &Arc<Engine>,
    tokens: Arc<Vec<String>>,
    narrowing: Narrowing,
    renderer: Renderer,
    deadline: Option<Instant>,
) -> Result<(Vec<pb::VerifyResult>, Vec<(pb::Status, u64)>, tracing::Span), NotVerified> {
    let batch = otel::batch_span(tokens.len());
    let cancel = CancelToken::default();
    let guard = cancel.guard();
    let budget = Budget { cancel, deadline };
    let render = move |outcome: Result<Verified<'_>, &Rejection>, cached: bool| {
        renderer.render(outcome, cached)
    };
    let results = engine
        .verify_batch(tokens, Arc::new(narrowing), budget, render)
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

/// How much of each result a Verify call answers (`VerifyRequest.view`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum View {
    /// Status, reason, the registered claims and the payload
    /// (`VIEW_FULL`, or `VIEW_UNSPECIFIED`).
    #[default]
    Full,
    /// As [`View::Full`] without `payload_json` (`VIEW_REGISTERED`).
    Registered,
    /// Status, `cached` and a rejection's reason; no claims
    /// (`VIEW_STATUS_ONLY`).
    StatusOnly,
}

impl View {
    /// The view a request's `view` field asks for: INVALID_ARGUMENT for a
    /// number `jwtd.v1.View` does not define.
    pub fn of_request(view: i32) -> Result<View, Status> {
        match pb::View::try_from(view) {
            Ok(pb::View::Unspecified | pb::View::Full) => Ok(View::Full),
            Ok(pb::View::Registered) => Ok(View::Registered),
            Ok(pb::View::StatusOnly) => Ok(View::StatusOnly),
            Err(_) => Err(Status::invalid_argument(format!(
                "view {view} is not a jwtd.v1.View this server knows (0 VIEW_UNSPECIFIED, \
                 1 VIEW_FULL, 2 VIEW_REGISTERED, 3 VIEW_STATUS_ONLY)"
            ))),
        }
    }
}

/// What a renderer puts in a VALID token's claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Carried {
    /// Every registered claim and the payload.
    Full,
    /// Every registered claim, no payload.
    Registered,
    /// Issuer, subject and jti: what the audit trail's VALID events name.
    AuditFacts,
    /// The issuer only: the `issuer` label of the verification counter.
    Issuer,
}

/// Renders each token's result for one call: the call's [`View`], plus
/// what the metrics and the audit trail read from the results before
/// [`Renderer::trim`] cuts them to the view (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Renderer {
    carried: Carried,
    /// Drop the claims before answering (STATUS_ONLY).
    trim: bool,
}

impl Renderer {
    /// Today's full answer, as Check (ext_authz) needs it for claim headers.
    pub const FULL: Renderer = Renderer {
        carried: Carried::Full,
        trim: false,
    };

    /// The renderer of a call asking for `view`; `audit_valid` when the
    /// audit trail records VALID decisions ([`Audit::records_valid`]).
    pub fn new(view: View, audit_valid: bool) -> Self {
        let (carried, trim) = match view {
            View::Full => (Carried::Full, false),
            View::Registered => (Carried::Registered, false),
            View::StatusOnly if audit_valid => (Carried::AuditFacts, true),
            View::StatusOnly => (Carried::Issuer, true),
        };
        Self { carried, trim }
    }

    /// One token's result; `cached` when the expensive work came from the memo.
    pub fn render(
        self,
        outcome: Result<Verified<'_>, &Rejection>,
        cached: bool,
    ) -> pb::VerifyResult {
        match outcome {
            Ok(verified) => pb::VerifyResult {
                status: pb::Status::Valid.into(),
                reason: String::new(),
                claims: Some(self.claims(&verified)),
                cached,
            },
            Err(rejection) => pb::VerifyResult {
                status: status_of(rejection).into(),
                reason: rejection.to_string(),
                claims: None,
                cached,
            },
        }
    }

    fn claims(self, verified: &Verified<'_>) -> pb::Claims {
        let claims = verified.claims();
        let issuer = claims.iss().unwrap_or_default().to_owned();
        match self.carried {
            Carried::Full | Carried::Registered => pb::Claims {
                issuer,
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
                payload_json: if self.carried == Carried::Full {
                    verified.payload().to_vec()
                } else {
                    Vec::new()
                },
            },
            Carried::AuditFacts => pb::Claims {
                issuer,
                subject: claims.sub().unwrap_or_default().to_owned(),
                jwt_id: claims.jti().unwrap_or_default().to_owned(),
                ..pb::Claims::default()
            },
            Carried::Issuer => pb::Claims {
                issuer,
                ..pb::Claims::default()
            },
        }
    }

    /// Cuts rendered results to the view: STATUS_ONLY drops the claims
    /// kept for the metrics and the trail. Nothing to do for other views.
    pub fn trim(self, results: &mut [pb::VerifyResult]) {
        if self.trim {
            for result in results {
                result.claims = None;
            }
        }
    }
}

/// One token's full wire result ([`Renderer::FULL`]); `cached` when the
/// expensive work came from the memo.
pub fn result_of(outcome: Result<Verified<'_>, &Rejection>, cached: bool) -> pb::VerifyResult {
    Renderer::FULL.render(outcome, cached)
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

    mod views {
        use std::sync::Arc;

        use base64::Engine as _;

        use super::super::*;
        use crate::keys::{KeySet, Origin};
        use crate::verifier::jose::{Algorithm, B64};
        use crate::verifier::mint::Signer;
        use crate::verifier::policy::{IssuerPolicy, KeyState, Trust, TrustedIssuer};
        use crate::verifier::verify::{UnixTime, VerifiedToken, verify};

        const ISS: &str = "https://issuer.test";
        const NOW: UnixTime = UnixTime(1_700_000_000);
        const SECRET: [u8; 32] = [0x42; 32];

        fn verified() -> VerifiedToken {
            let jwks = format!(
                r#"{{"keys":[{{"kty":"oct","kid":"k1","k":"{}"}}]}}"#,
                B64.encode(SECRET)
            );
            let (keys, _) = KeySet::from_jwks(jwks.as_bytes(), Origin::LocalFile).expect("keys");
            let policy = IssuerPolicy::new(ISS)
                .expect("valid")
                .allowing_any_audience();
            let trust = Trust::new(
                [TrustedIssuer {
                    policy: Arc::new(policy),
                    keys: KeyState::Loaded(Arc::new(keys)),
                }],
                8192,
            );
            let claims = serde_json::json!({
                "iss": ISS, "sub": "alice", "aud": ["api"], "exp": NOW.0 + 300,
                "iat": NOW.0, "jti": "j-1", "tenant": "acme",
            });
            let signer = Signer::hmac(&SECRET, Algorithm::HS256).expect("hmac");
            let token = signer
                .sign(Some("k1"), claims.as_object().expect("object"))
                .expect("signs");
            verify(&token, &trust, &Narrowing::default(), NOW).expect("valid")
        }

        fn answered(renderer: Renderer, cached: bool) -> (pb::VerifyResult, pb::VerifyResult) {
            let token = verified();
            let rejection = Rejection::Expired {
                exp: 1,
                now: 2,
                leeway: 0,
            };
            let mut results = vec![
                renderer.render(Ok(token.get()), cached),
                renderer.render(Err(&rejection), cached),
            ];
            renderer.trim(&mut results);
            let rejected = results.pop().expect("two");
            (results.pop().expect("two"), rejected)
        }

        fn registered(payload: bool) -> pb::Claims {
            pb::Claims {
                issuer: ISS.into(),
                subject: "alice".into(),
                audiences: vec!["api".into()],
                expires_at: NOW.0 + 300,
                not_before: 0,
                issued_at: NOW.0,
                jwt_id: "j-1".into(),
                key_id: "k1".into(),
                algorithm: "HS256".into(),
                payload_json: if payload {
                    verified().payload().to_vec()
                } else {
                    Vec::new()
                },
            }
        }

        /// Every view answers a rejection alike: status, reason, `cached`.
        fn assert_rejection(result: &pb::VerifyResult, cached: bool) {
            assert_eq!(result.status, i32::from(pb::Status::Expired));
            assert!(result.reason.contains("expired"), "{}", result.reason);
            assert_eq!(result.claims, None);
            assert_eq!(result.cached, cached);
        }

        #[test]
        fn full_answers_the_claims_and_the_payload() {
            for cached in [false, true] {
                let (valid, rejected) = answered(Renderer::new(View::Full, false), cached);
                assert_eq!(valid.status, i32::from(pb::Status::Valid));
                assert_eq!(valid.reason, "");
                assert_eq!(valid.cached, cached);
                assert_eq!(valid.claims, Some(registered(true)));
                assert!(
                    !valid
                        .claims
                        .as_ref()
                        .expect("claims")
                        .payload_json
                        .is_empty()
                );
                assert_rejection(&rejected, cached);
                // result_of is the FULL renderer; Check relies on it.
                assert_eq!(Renderer::new(View::Full, true), Renderer::FULL);
                let token = verified();
                assert_eq!(result_of(Ok(token.get()), cached), valid);
            }
        }

        #[test]
        fn registered_answers_the_claims_without_the_payload() {
            for audit_valid in [false, true] {
                let (valid, rejected) =
                    answered(Renderer::new(View::Registered, audit_valid), true);
                assert_eq!(valid.status, i32::from(pb::Status::Valid));
                assert!(valid.cached);
                assert_eq!(valid.claims, Some(registered(false)));
                assert_rejection(&rejected, true);
            }
        }

        #[test]
        fn status_only_answers_no_claims_but_keeps_the_reason() {
            for audit_valid in [false, true] {
                let renderer = Renderer::new(View::StatusOnly, audit_valid);
                let (valid, rejected) = answered(renderer, true);
                assert_eq!(
                    valid,
                    pb::VerifyResult {
                        status: pb::Status::Valid.into(),
                        reason: String::new(),
                        claims: None,
                        cached: true,
                    }
                );
                assert_rejection(&rejected, true);
                // Before the trim, only what the metrics (and the trail in
                // mode all) read; never the payload or the audiences.
                let token = verified();
                let untrimmed = renderer.render(Ok(token.get()), false);
                let kept = untrimmed.claims.expect("kept for the metrics");
                assert_eq!(kept.issuer, ISS);
                assert!(kept.payload_json.is_empty() && kept.audiences.is_empty());
                assert_eq!(kept.key_id, "");
                let facts = if audit_valid {
                    ("alice", "j-1")
                } else {
                    ("", "")
                };
                assert_eq!((kept.subject.as_str(), kept.jwt_id.as_str()), facts);
            }
        }

        #[test]
        fn request_views_map_and_unknown_ones_are_invalid() {
            assert_eq!(View::of_request(0).expect("unspecified"), View::Full);
            assert_eq!(View::of_request(1).expect("full"), View::Full);
            assert_eq!(View::of_request(2).expect("registered"), View::Registered);
            assert_eq!(View::of_request(3).expect("status only"), View::StatusOnly);
            for unknown in [4, -1, i32::MAX] {
                let err = View::of_request(unknown).expect_err("unknown");
                assert_eq!(err.code(), tonic::Code::InvalidArgument);
                assert!(
                    err.message().contains(&format!("view {unknown} is not")),
                    "{}",
                    err.message()
                );
            }
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
