//! Envoy's external authorization (`envoy.service.auth.v3.Authorization/Check`)
//! over the same engine, memo, keys and tracing as Verify, so Envoy's
//! ext_authz filter or an Istio CUSTOM AuthorizationPolicy can call jwtd.
//!
//! A Check takes the token from one request header (`authorization` with the
//! `Bearer ` scheme by default) and answers:
//! - VALID: OK, with the configured headers set upstream (subject, issuer,
//!   chosen claims, optionally the payload), the Authorization header
//!   optionally removed. Every configured header that jwtd does not set is
//!   removed, so a client cannot send its own `x-jwt-sub` past a token
//!   without that claim.
//! - a bad token: DENIED with HTTP 401 and `www-authenticate: Bearer
//!   error="invalid_token", error_description="…"` naming the reason;
//!   AUDIENCE_MISMATCH is 403 (the token is good, not for this service);
//!   KEYS_UNAVAILABLE is 503 (an outage, not a bad token: the caller may
//!   retry). No token: 401 with a bare `Bearer` challenge (RFC 6750 §3),
//!   unless missing tokens are allowed.
//!
//! - a good token without a scope the route needs (`jwtd.scopes`) or the
//!   issuer requires: 403 with `Bearer error="insufficient_scope",
//!   scope="…"` (RFC 6750 §3.1); an `azp`/`client_id` not allowed: 403.
//!
//! Per route, Envoy's `context_extensions` (set by the operator in the route
//! config, never by the client) may say `jwtd.allow_missing = "true"`,
//! `jwtd.audiences = "a,b"` (accept only those audiences here) and
//! `jwtd.scopes = "read write"` (every token must grant both). A value that
//! names nothing (`""`, `" , "`) is a route configuration error
//! (INVALID_ARGUMENT), never a silent removal of the restriction.
//!
//! Decisions:
//! - `detailed_errors = false` sends the client only the RFC 6750 error code
//!   and a generic description: reasons name issuer URLs and server times,
//!   which are not for the internet. Envoy's log (the gRPC status message)
//!   always gets the precise reason.
//! - A `sub` that cannot be a header value (CR, LF, NUL or other control
//!   characters, or over the header length limit) denies the request with
//!   401 `invalid_token` rather than dropping the header: an upstream that
//!   keys on `x-jwt-sub` would otherwise see an authenticated request with
//!   no identity, and might treat it as anonymous or as a default user.
//!
//! When jwtd will not do a Check now (shed for overload: 503; the caller
//! over its `[callers]` limit: 429), it answers DENIED with `retry-after`,
//! or, with `on_overload = "error"`, returns the gRPC error so that Envoy's
//! own failure policy decides. A caller not allowed is always the gRPC
//! error PERMISSION_DENIED.
//!
//! HTTP codes are chosen in [`http_status_of`] (a rejected token) and
//! [`not_now_http`] (a Check jwtd will not do now), and nowhere else.
//!
//! Decision record: `docs/adr/0004-keys-unavailable-is-its-own-status.md`.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use envoy_types::pb::envoy::config::core::v3::header_value_option::HeaderAppendAction;
use envoy_types::pb::envoy::config::core::v3::{HeaderValue, HeaderValueOption};
use envoy_types::pb::envoy::service::auth::v3::authorization_server::Authorization;
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use envoy_types::pb::envoy::service::auth::v3::{
    CheckRequest, CheckResponse, DeniedHttpResponse, OkHttpResponse,
};
use envoy_types::pb::envoy::r#type::v3::HttpStatus;
use envoy_types::pb::google::rpc;
use tonic::{Request, Response, Status};

pub use crate::config::settings::{ExtAuthzConfig, OnOverload, valid_header_name};
use crate::observability::audit::{Api, Audit, caller_name};
use crate::pb;
use crate::runtime::admission::Shed;
use crate::runtime::engine::Engine;
use crate::transport::callers::{Callers, Refusal};
use crate::transport::grpc::{self, Call, CallInfo, NotVerified, Renderer, verify_tokens};
use crate::verifier::policy::Narrowing;

/// The reason of a VALID token whose `sub` cannot be a header value.
const UNFIT_SUBJECT: &str =
    "the subject cannot be forwarded as a header (control characters, or over 4 KiB)";

/// The full gRPC method name, as metrics and traces name it.
pub const CHECK_METHOD: &str = "envoy.service.auth.v3.Authorization/Check";

/// The Authorization service.
pub struct AuthzApi {
    engine: Arc<Engine>,
    config: Arc<ExtAuthzConfig>,
    callers: Arc<Callers>,
    audit: Arc<Audit>,
}

impl AuthzApi {
    /// Checks through `engine` for `callers` as `config` says, its
    /// decisions recorded in `audit`.
    pub fn new(
        engine: Arc<Engine>,
        config: ExtAuthzConfig,
        callers: Arc<Callers>,
        audit: Arc<Audit>,
    ) -> Self {
        Self {
            engine,
            config: Arc::new(config),
            callers,
            audit,
        }
    }

    async fn check_call(
        &self,
        info: CallInfo,
        request: CheckRequest,
    ) -> Result<CheckResponse, Status> {
        let identity = info.identity.as_deref();
        // A caller not allowed is a gRPC error whatever `on_overload` says:
        // it is not a client's request to deny but a proxy that should not
        // be calling.
        self.callers
            .allowed(identity)
            .map_err(|r| grpc::refused(CHECK_METHOD, &r, 1))?;
        let input = read_check(&self.config, &request)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        // One token of the caller's bucket per Check, token or not.
        let caller = match self.callers.admit(identity, 1) {
            Ok(caller) => caller,
            Err(refusal) => {
                let status = grpc::refused(CHECK_METHOD, &refusal, 1);
                return self.overloaded(status, &not_now_http(NotNow::Refused(&refusal)));
            }
        };
        let token = match input.token {
            BearerToken::Present(token) => token,
            BearerToken::Missing if input.allow_missing => {
                return self
                    .allowed(None)
                    .ok_or_else(|| Status::internal("no claims, yet a header was refused"));
            }
            BearerToken::Missing => return Ok(denied(401, "Bearer".into(), "no token")),
            BearerToken::NotBearer => {
                return Ok(denied(
                    401,
                    challenge("invalid_token", "not a bearer token"),
                    "not a bearer token",
                ));
            }
        };
        let route_scopes = input.scopes.clone();
        let narrowing = Narrowing {
            audiences: input.audiences,
            issuer: None,
            scopes: input.scopes,
        };
        let tokens = Arc::new(vec![token.into_owned()]);
        // FULL: the claim headers are read from the payload.
        let verified = verify_tokens(
            &self.engine,
            Arc::clone(&tokens),
            narrowing,
            Renderer::FULL,
            info.deadline,
        );
        let (mut results, _, _) = match verified.await {
            Ok(verified) => verified,
            Err(NotVerified::Shed(shed)) => {
                let status = grpc::shed(CHECK_METHOD, &shed, &caller, 1);
                return self.overloaded(status, &not_now_http(NotNow::Shed(&shed)));
            }
            Err(NotVerified::Failed(status)) => return Err(status),
        };
        let Some(result) = results.first_mut() else {
            return Err(Status::internal("the engine returned no result"));
        };
        let status = pb::Status::try_from(result.status).unwrap_or(pb::Status::Unspecified);
        let response = match (status, &result.claims) {
            (pb::Status::Valid, Some(claims)) => match self.allowed(Some(claims)) {
                Some(ok) => ok,
                None => {
                    // The decision the trail records is the one answered.
                    *result = pb::VerifyResult {
                        status: pb::Status::Malformed as i32,
                        reason: UNFIT_SUBJECT.to_owned(),
                        claims: None,
                        cached: result.cached,
                    };
                    self.rejected(pb::Status::Malformed, UNFIT_SUBJECT, &route_scopes)
                }
            },
            _ => self.rejected(status, &result.reason, &route_scopes),
        };
        let snapshot = self.engine.registry().snapshot();
        let caller_name = caller_name(identity, info.peer);
        self.audit.record(
            &info.audited(Api::Check, &caller_name),
            &tokens,
            &results,
            &snapshot.trust,
        );
        Ok(response)
    }

    /// DENIED for a token jwtd rejected with `status` and `reason`: its HTTP
    /// code, and an RFC 6750 challenge (`insufficient_scope` naming the
    /// route's scopes, else `invalid_token`; none for an outage). With
    /// `detailed_errors = false` the client sees only the error code and a
    /// generic description; Envoy's log still gets the reason.
    fn rejected(&self, status: pb::Status, reason: &str, route_scopes: &[String]) -> CheckResponse {
        let code = http_status_of(status);
        let error = match status {
            pb::Status::InsufficientScope => "insufficient_scope",
            _ => "invalid_token",
        };
        let description = if self.config.detailed_errors {
            reason
        } else {
            generic_description(error)
        };
        let www = match code {
            503 => String::new(),
            _ if error == "insufficient_scope" => {
                insufficient_scope_challenge(description, route_scopes)
            }
            _ => challenge(error, description),
        };
        let body = if self.config.detailed_errors {
            format!("{}: {reason}", status.as_str_name())
        } else if code == 503 {
            "temporarily unavailable".to_owned()
        } else {
            error.to_owned()
        };
        let mut response = denied(code, www, &body);
        if let Some(rpc) = response.status.as_mut() {
            // For Envoy's logs, never the client: the precise reason.
            rpc.message = format!("{}: {reason}", status.as_str_name());
        }
        response
    }

    /// A Check jwtd will not do now: `status` (RESOURCE_EXHAUSTED, with its
    /// pushback) with `on_overload = "error"`, so Envoy's own failure policy
    /// decides; else DENIED with `http`'s code and `retry-after`.
    fn overloaded(&self, status: Status, http: &Overload) -> Result<CheckResponse, Status> {
        match self.config.on_overload {
            OnOverload::Error => Err(status),
            OnOverload::Deny => {
                let mut response = denied(http.code, String::new(), &http.body);
                if let (Some(after), Some(HttpResponse::DeniedResponse(d))) =
                    (http.retry_after, response.http_response.as_mut())
                {
                    let seconds = after.as_millis().div_ceil(1000).max(1);
                    d.headers
                        .push(header_option("retry-after".into(), seconds.to_string()));
                }
                Ok(response)
            }
        }
    }

    /// OK, with the claims' headers set (and every other configured header
    /// removed) when there is a verified token. `None` when the subject
    /// cannot be a header value: the caller denies the request rather than
    /// send it upstream without its identity (or with a header injected).
    fn allowed(&self, claims: Option<&pb::Claims>) -> Option<CheckResponse> {
        let config = &*self.config;
        let mut set: Vec<(String, String)> = Vec::new();
        if let Some(claims) = claims {
            if !config.subject_header.is_empty() && !claims.subject.is_empty() {
                let subject = serde_json::Value::String(claims.subject.clone());
                set.push((config.subject_header.clone(), header_value(&subject)?));
            }
            if !config.issuer_header.is_empty() {
                set.push((config.issuer_header.clone(), claims.issuer.clone()));
            }
            if !config.payload_header.is_empty() {
                let payload =
                    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&claims.payload_json);
                set.push((config.payload_header.clone(), payload));
            }
            if !config.claim_to_headers.is_empty() {
                let payload: serde_json::Map<String, serde_json::Value> =
                    serde_json::from_slice(&claims.payload_json).unwrap_or_default();
                for (claim, header) in &config.claim_to_headers {
                    if let Some(value) = payload.get(claim).and_then(header_value) {
                        set.push((header.clone(), value));
                    }
                }
            }
        }
        let mut headers_to_remove: Vec<String> = config
            .upstream_headers()
            .filter(|h| !set.iter().any(|(name, _)| name == h))
            .map(str::to_owned)
            .collect();
        if config.remove_authorization && claims.is_some() {
            headers_to_remove.push(config.header.clone());
        }
        Some(CheckResponse {
            status: Some(rpc::Status {
                code: tonic::Code::Ok as i32,
                ..rpc::Status::default()
            }),
            http_response: Some(HttpResponse::OkResponse(OkHttpResponse {
                headers: set
                    .into_iter()
                    .map(|(key, value)| header_option(key, value))
                    .collect(),
                headers_to_remove,
                ..OkHttpResponse::default()
            })),
            ..CheckResponse::default()
        })
    }
}

#[tonic::async_trait]
impl Authorization for AuthzApi {
    async fn check(
        &self,
        request: Request<CheckRequest>,
    ) -> Result<Response<CheckResponse>, Status> {
        Call::run(CHECK_METHOD, &self.callers, request, |info, r| {
            self.check_call(info, r)
        })
        .await
    }
}

/// What a Check asks for, read from its request alone: the route's settings
/// (from `context_extensions`, which the operator sets in Envoy's route
/// config; a client cannot) and the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckInput<'r> {
    /// Whether a request without the header passes.
    pub allow_missing: bool,
    /// Audiences this route accepts (narrowing the issuers' own); empty for
    /// no narrowing.
    pub audiences: Vec<String>,
    /// Scopes every token must grant on this route (`jwtd.scopes`).
    pub scopes: Vec<String>,
    /// The token, if the request carries one.
    pub token: BearerToken<'r>,
}

/// The token header of a Check request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BearerToken<'r> {
    /// No such header.
    Missing,
    /// The header does not start with the configured scheme, or nothing
    /// follows it.
    NotBearer,
    /// The token: non-empty, trimmed.
    Present(Cow<'r, str>),
}

/// A route setting that is not what jwtd understands: a configuration
/// error of the route, answered as INVALID_ARGUMENT.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RouteError {
    /// `jwtd.allow_missing` is neither `"true"` nor `"false"`.
    #[error("context extension jwtd.allow_missing is {0:?}, not \"true\" or \"false\"")]
    AllowMissing(String),
    /// A route value that names nothing (`jwtd.audiences: ""`, `" , "`):
    /// taken as no restriction, it would silently open the route.
    #[error("context extension {0} is set but names nothing; remove it, or name a value")]
    Blank(&'static str),
}

/// Reads a Check request as `config` says: pure, so the fuzzer can feed it
/// arbitrary header maps (`fuzz/fuzz_targets/ext_authz_request.rs`).
pub fn read_check<'r>(
    config: &ExtAuthzConfig,
    request: &'r CheckRequest,
) -> Result<CheckInput<'r>, RouteError> {
    let attributes = request.attributes.as_ref();
    let route = attributes.map(|a| &a.context_extensions);
    let setting = |name: &str| route.and_then(|r| r.get(name)).map(String::as_str);
    let allow_missing = match setting("jwtd.allow_missing") {
        Some("true") => true,
        Some("false") => false,
        Some(other) => return Err(RouteError::AllowMissing(other.to_owned())),
        None => config.allow_missing,
    };
    let list =
        |name: &'static str, separator: fn(char) -> bool| -> Result<Vec<String>, RouteError> {
            let Some(value) = setting(name) else {
                return Ok(Vec::new());
            };
            let items: Vec<String> = value
                .split(separator)
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
                .collect();
            if items.is_empty() {
                return Err(RouteError::Blank(name));
            }
            Ok(items)
        };
    let audiences = list("jwtd.audiences", |c| c == ',')?;
    let scopes = list("jwtd.scopes", char::is_whitespace)?;
    let http = attributes
        .and_then(|a| a.request.as_ref())
        .and_then(|r| r.http.as_ref());
    let value =
        http.and_then(|http| header(&http.headers, http.header_map.as_ref(), &config.header));
    let token = match value {
        None => BearerToken::Missing,
        Some(Cow::Borrowed(v)) => strip_prefix(v, &config.prefix)
            .map_or(BearerToken::NotBearer, |t| {
                BearerToken::Present(Cow::Borrowed(t))
            }),
        Some(Cow::Owned(v)) => strip_prefix(&v, &config.prefix)
            .map_or(BearerToken::NotBearer, |t| {
                BearerToken::Present(Cow::Owned(t.to_owned()))
            }),
    };
    Ok(CheckInput {
        allow_missing,
        audiences,
        scopes,
        token,
    })
}

/// Why jwtd will not do a Check now.
#[derive(Debug, Clone, Copy)]
enum NotNow<'a> {
    /// Shed for overload.
    Shed(&'a Shed),
    /// The caller is over its limit.
    Refused(&'a Refusal),
}

/// The HTTP answer of a Check that jwtd will not do now.
#[derive(Debug)]
struct Overload {
    code: u16,
    retry_after: Option<Duration>,
    body: String,
}

/// 503 with `retry-after` when jwtd sheds (its own overload: the client may
/// try another replica at once), 429 with `retry-after` for a caller over
/// its limit (no `retry-after` when the call can never pass).
fn not_now_http(not_now: NotNow<'_>) -> Overload {
    match not_now {
        NotNow::Shed(shed) => Overload {
            code: 503,
            retry_after: Some(shed.pushback()),
            body: shed.to_string(),
        },
        NotNow::Refused(refusal) => Overload {
            code: 429,
            retry_after: match refusal {
                Refusal::OverLimit { retry_after, .. } => Some(*retry_after),
                _ => None,
            },
            body: refusal.to_string(),
        },
    }
}

/// The HTTP status Envoy answers a rejected token with: 403 for a token
/// that is good but not for this audience, client or scope, 503 for a key
/// outage (so a caller can tell it from a bad token, and retry), 401 for
/// the rest.
pub fn http_status_of(status: pb::Status) -> u16 {
    match status {
        pb::Status::AudienceMismatch
        | pb::Status::InsufficientScope
        | pb::Status::ClientNotAllowed => 403,
        pb::Status::KeysUnavailable => 503,
        _ => 401,
    }
}

/// The header's value, from the map Envoy fills by default or the raw
/// header list it sends with `encode_raw_headers`.
fn header<'r>(
    headers: &'r HashMap<String, String>,
    raw: Option<&'r envoy_types::pb::envoy::config::core::v3::HeaderMap>,
    name: &str,
) -> Option<Cow<'r, str>> {
    if let Some(value) = headers.get(name) {
        return Some(Cow::Borrowed(value));
    }
    raw?.headers
        .iter()
        .find(|h| h.key.eq_ignore_ascii_case(name))
        .map(|h| {
            if h.raw_value.is_empty() {
                Cow::Borrowed(h.value.as_str())
            } else {
                String::from_utf8_lossy(&h.raw_value)
            }
        })
}

/// The token after `prefix` (case-insensitive), trimmed; `None` when the
/// value does not start with it or nothing follows.
fn strip_prefix<'v>(value: &'v str, prefix: &str) -> Option<&'v str> {
    let head = value.get(..prefix.len())?;
    if !head.eq_ignore_ascii_case(prefix) {
        return None;
    }
    let token = value[prefix.len()..].trim();
    (!token.is_empty()).then_some(token)
}

/// A claim as one header value: strings as they are, numbers and booleans
/// printed, arrays of those joined by spaces (as `scope` is), objects as
/// JSON. `None` when the result could not be a header value (control
/// characters, or over 4 KiB).
fn header_value(value: &serde_json::Value) -> Option<String> {
    use serde_json::Value as V;
    let text = match value {
        V::String(s) => s.clone(),
        V::Number(_) | V::Bool(_) => value.to_string(),
        V::Array(items) => items
            .iter()
            .map(|item| match item {
                V::String(s) => Some(s.clone()),
                V::Number(_) | V::Bool(_) => Some(item.to_string()),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()?
            .join(" "),
        V::Object(_) => value.to_string(),
        V::Null => return None,
    };
    let fits = text.len() <= 4096
        && text
            .bytes()
            .all(|b| b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80);
    fits.then_some(text)
}

/// What a client is told with `detailed_errors = false`: RFC 6750's own
/// wording, nothing about the token, the issuer or the server's clock.
fn generic_description(error: &str) -> &'static str {
    match error {
        "insufficient_scope" => {
            "The request requires higher privileges than provided by the access token."
        }
        _ => "The access token is invalid.",
    }
}

/// `Bearer error="insufficient_scope", error_description="…", scope="…"`
/// (RFC 6750 §3.1), the scope attribute naming the route's scopes when it
/// has some.
fn insufficient_scope_challenge(description: &str, scopes: &[String]) -> String {
    let mut c = challenge("insufficient_scope", description);
    let scopes: Vec<&str> = scopes
        .iter()
        .map(String::as_str)
        .filter(|s| {
            s.chars()
                .all(|c| c == '!' || ('#'..='[').contains(&c) || (']'..='~').contains(&c))
        })
        .collect();
    if !scopes.is_empty() {
        c.push_str(&format!(", scope=\"{}\"", scopes.join(" ")));
    }
    c
}

/// `Bearer error="…", error_description="…"`, with the description reduced
/// to the characters RFC 6750 allows there.
fn challenge(error: &str, description: &str) -> String {
    let description: String = description
        .chars()
        .take(200)
        .map(|c| match c {
            ' ' | '!' | '#'..='[' | ']'..='~' => c,
            _ => '\'',
        })
        .collect();
    format!("Bearer error=\"{error}\", error_description=\"{description}\"")
}

fn header_option(key: String, value: String) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(HeaderValue {
            key,
            value,
            ..HeaderValue::default()
        }),
        append_action: HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
        ..HeaderValueOption::default()
    }
}

fn denied(code: u16, www_authenticate: String, body: &str) -> CheckResponse {
    let rpc_code = match code {
        403 => tonic::Code::PermissionDenied,
        429 => tonic::Code::ResourceExhausted,
        503 => tonic::Code::Unavailable,
        _ => tonic::Code::Unauthenticated,
    };
    let mut headers = Vec::new();
    if !www_authenticate.is_empty() {
        headers.push(header_option("www-authenticate".into(), www_authenticate));
    }
    CheckResponse {
        status: Some(rpc::Status {
            code: rpc_code as i32,
            message: body.to_owned(),
            ..rpc::Status::default()
        }),
        http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
            status: Some(HttpStatus {
                code: i32::from(code),
            }),
            headers,
            body: body.to_owned(),
        })),
        ..CheckResponse::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_tokens_not_for_here_are_403_outages_503_the_rest_401() {
        for n in 1.. {
            let Ok(status) = pb::Status::try_from(n) else {
                break;
            };
            let want = match status {
                pb::Status::AudienceMismatch
                | pb::Status::InsufficientScope
                | pb::Status::ClientNotAllowed => 403,
                pb::Status::KeysUnavailable => 503,
                _ => 401,
            };
            assert_eq!(http_status_of(status), want, "{status:?}");
        }
    }

    #[test]
    fn blank_route_values_are_errors_not_open_routes() {
        let config = ExtAuthzConfig::default();
        for (name, value) in [
            ("jwtd.audiences", ""),
            ("jwtd.audiences", " , "),
            ("jwtd.scopes", "  "),
        ] {
            let request = request_with(&[("authorization", "Bearer x")], &[(name, value)]);
            assert_eq!(
                read_check(&config, &request),
                Err(RouteError::Blank(name)),
                "{name}: {value:?}"
            );
        }
        let request = request_with(
            &[],
            &[
                ("jwtd.audiences", "orders, billing"),
                ("jwtd.scopes", "read  write"),
            ],
        );
        let input = read_check(&config, &request).expect("valid");
        assert_eq!(input.audiences, ["orders", "billing"]);
        assert_eq!(input.scopes, ["read", "write"]);
    }

    #[test]
    fn the_insufficient_scope_challenge_names_the_routes_scopes() {
        assert_eq!(
            insufficient_scope_challenge("missing scope write", &["read".into(), "write".into()]),
            "Bearer error=\"insufficient_scope\", error_description=\"missing scope write\", scope=\"read write\""
        );
        assert_eq!(
            insufficient_scope_challenge("d", &[]),
            "Bearer error=\"insufficient_scope\", error_description=\"d\""
        );
    }

    fn request_with(headers: &[(&str, &str)], route: &[(&str, &str)]) -> CheckRequest {
        use envoy_types::pb::envoy::service::auth::v3::AttributeContext;
        use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
        let pairs = |l: &[(&str, &str)]| {
            l.iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        CheckRequest {
            attributes: Some(AttributeContext {
                request: Some(Request {
                    http: Some(HttpRequest {
                        headers: pairs(headers),
                        ..HttpRequest::default()
                    }),
                    ..Request::default()
                }),
                context_extensions: pairs(route),
                ..AttributeContext::default()
            }),
        }
    }

    #[test]
    fn the_scheme_is_matched_without_case_and_must_carry_a_token() {
        assert_eq!(strip_prefix("Bearer abc", "Bearer "), Some("abc"));
        assert_eq!(strip_prefix("bearer  abc ", "Bearer "), Some("abc"));
        assert_eq!(strip_prefix("Basic abc", "Bearer "), None);
        assert_eq!(strip_prefix("Bearer ", "Bearer "), None);
        assert_eq!(strip_prefix("Bear", "Bearer "), None);
        assert_eq!(strip_prefix("abc", ""), Some("abc"));
    }

    #[test]
    fn claims_become_header_values_or_nothing() {
        use serde_json::json;
        assert_eq!(
            header_value(&json!("read write")).as_deref(),
            Some("read write")
        );
        assert_eq!(header_value(&json!(["a", "b"])).as_deref(), Some("a b"));
        assert_eq!(header_value(&json!(42)).as_deref(), Some("42"));
        assert_eq!(header_value(&json!({"k": 1})).as_deref(), Some("{\"k\":1}"));
        assert_eq!(header_value(&json!("a\r\nx-admin: true")), None);
        assert_eq!(header_value(&json!([{"nested": 1}])), None);
        assert_eq!(header_value(&json!(null)), None);
        assert_eq!(header_value(&json!("x".repeat(5000))), None);
    }

    #[test]
    fn challenges_keep_to_the_rfc_6750_characters() {
        let c = challenge("invalid_token", "bad \"quoted\" \\ thing\u{e9}");
        assert_eq!(
            c,
            "Bearer error=\"invalid_token\", error_description=\"bad 'quoted' ' thing'\""
        );
    }

    #[test]
    fn header_names_are_checked() {
        assert!(valid_header_name("x-jwt-sub"));
        assert!(!valid_header_name("X-Jwt-Sub"));
        assert!(!valid_header_name("x jwt"));
        assert!(!valid_header_name(""));
    }
}
