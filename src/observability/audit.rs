//! The audit trail: one structured event per decision, on its own `tracing`
//! target ([`TARGET`], `jwtd::audit`), so an operator can route, keep or
//! drop it apart from the service's logs (`RUST_LOG`, a log shipper's
//! filter on `target`). With `--log-format json` each event is one JSON
//! line: time, level, target, and the fields
//! - `api`: `Verify` or `Check`;
//! - `caller`: the `[callers]` identity when the call carries one, else the
//!   peer address (`unknown` without either);
//! - `issuer`: a VALID token's issuer; for a rejection, the token's `iss`
//!   only when it names a configured issuer, else `untrusted`;
//! - `subject`: a VALID token's `sub` (empty for rejections);
//! - `token_id`: `jti:<the jti>` for a VALID token that has one, else
//!   `sha256:<first 16 hex digits of the token's SHA-256>`, which a caller
//!   can compute from its own copy to find the decision;
//! - `status`, `reason` (jwtd's own text, as Verify returns it), `cached`
//!   (a memo hit), `trace_id` (the W3C `traceparent` trace id the caller
//!   sent, whether or not jwtd exports traces; empty without one);
//! - `suppressed`: rejections of this status left out since the last event
//!   of that status (the rate limit below).
//!
//! Never the token, a signature, or a claim of a token that did not verify:
//! what an unverified token claims is attacker-chosen text, so a rejection
//! names only a configured issuer and the digest.
//!
//! Decisions:
//! - Modes `all`, `rejections` (the default) and `off` (`[audit] mode`).
//!   VALID decisions are not rate-limited: `all` is an operator's explicit
//!   choice to log every decision. Rejections are limited per status with a
//!   token bucket (governor, as `[callers]` uses) of `rejections_per_second`
//!   (20 by default), so a flood of garbage cannot fill a disk, while a
//!   second kind of rejection still shows during the flood; what the limit
//!   drops is counted into the next event of that status.
//! - The binary gives the trail a subscriber of its own ([`install`]: the
//!   same `fmt` format on stderr, INFO, no per-layer filters) instead of the
//!   process's one. Through the process's subscriber, whose log and
//!   OpenTelemetry layers filter per layer, an audit event (or only the
//!   `enabled!` test) during a call kept the call's server span from being
//!   exported (tests/tracing.rs caught it). So `RUST_LOG` does not touch
//!   the trail; `[audit] mode` does. Events are roots (`parent: None`), and
//!   the trace id is read from the caller's `traceparent` rather than from
//!   jwtd's span, whose ids exist only once it is started for export.
//! - The work is skipped unless a subscriber listens to the target
//!   (`tracing::enabled!`), and a rejection's facts (a SHA-256 and a parse)
//!   are computed only for events that pass the limit.
//! - Cost, criterion `batch/hit/1024` against `audit/all/hit/1024` (JSON
//!   formatted into a sink) in one run: see BENCHMARKS.md "Audit".

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::config::settings::{AuditConfig, AuditMode};
use crate::observability::otel;
use crate::pb;
use crate::verifier::policy::Trust;

/// The `tracing` target of audit events.
pub const TARGET: &str = "jwtd::audit";

/// The API a decision was made for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// `jwtd.v1.VerifierService/Verify`.
    Verify,
    /// `envoy.service.auth.v3.Authorization/Check`.
    Check,
}

impl Api {
    fn name(self) -> &'static str {
        match self {
            Api::Verify => "Verify",
            Api::Check => "Check",
        }
    }
}

/// The subscriber the trail writes to, once [`install`]ed.
static INSTALLED: std::sync::OnceLock<tracing::Dispatch> = std::sync::OnceLock::new();

/// Sends every audit event to `dispatch` (the binary installs a `fmt`
/// subscriber on stderr in the log format it was given) rather than to the
/// process's default subscriber. Only the first call counts.
pub fn install(dispatch: tracing::Dispatch) {
    let _ = INSTALLED.set(dispatch);
}

/// Who made a call, and how: what every event of the call says.
#[derive(Debug, Clone, Copy)]
pub struct AuditedCall<'a> {
    /// Verify or Check.
    pub api: Api,
    /// See [`caller_name`].
    pub caller: &'a str,
    /// The trace id of the caller's `traceparent`, or `""`.
    pub trace_id: &'a str,
}

/// Statuses the limiter keeps apart; a larger value shares the last slot.
const SLOTS: usize = 32;

/// The audit trail of one server.
#[derive(Debug)]
pub struct Audit {
    mode: AuditMode,
    /// One bucket per status.
    limits: Vec<DefaultDirectRateLimiter>,
    /// Rejections dropped by the limit since the last event, per status.
    suppressed: Vec<AtomicU64>,
}

impl Audit {
    /// An audit trail as `config` says.
    pub fn new(config: AuditConfig) -> Self {
        let quota = Quota::per_second(config.rejections_per_second);
        Self {
            mode: config.mode,
            limits: (0..SLOTS).map(|_| RateLimiter::direct(quota)).collect(),
            suppressed: (0..SLOTS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Whether VALID decisions are recorded (`mode = all`): their events
    /// name the issuer, subject and jti, read from the results' claims, so
    /// a Verify call whose view sends no claims still renders those three.
    pub fn records_valid(&self) -> bool {
        self.mode == AuditMode::All
    }

    /// Records the decisions of one call: `results[i]` for `tokens[i]`.
    pub fn record(
        &self,
        call: &AuditedCall<'_>,
        tokens: &[String],
        results: &[pb::VerifyResult],
        trust: &Trust,
    ) {
        if self.mode == AuditMode::Off {
            return;
        }
        match INSTALLED.get() {
            Some(dispatch) => tracing::dispatcher::with_default(dispatch, || {
                self.emit(call, tokens, results, trust);
            }),
            None => self.emit(call, tokens, results, trust),
        }
    }

    fn emit(
        &self,
        call: &AuditedCall<'_>,
        tokens: &[String],
        results: &[pb::VerifyResult],
        trust: &Trust,
    ) {
        let AuditedCall {
            api,
            caller,
            trace_id,
        } = *call;
        if !tracing::enabled!(target: TARGET, tracing::Level::INFO) {
            return;
        }
        for (token, result) in tokens.iter().zip(results) {
            if result.status == pb::Status::Valid as i32 {
                if self.mode == AuditMode::All {
                    valid_event(api, caller, token, result, trace_id);
                }
                continue;
            }
            let slot = usize::try_from(result.status).map_or(SLOTS - 1, |s| s.min(SLOTS - 1));
            if self.limits[slot].check().is_err() {
                self.suppressed[slot].fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let suppressed = self.suppressed[slot].swap(0, Ordering::Relaxed);
            let facts = otel::token_facts(token, trust);
            let status = pb::Status::try_from(result.status).unwrap_or(pb::Status::Unspecified);
            tracing::info!(
                target: TARGET,
                parent: None,
                api = api.name(),
                caller,
                issuer = &*facts.issuer,
                subject = "",
                token_id = format_args!("sha256:{}", facts.digest),
                status = status.as_str_name(),
                reason = result.reason.as_str(),
                cached = result.cached,
                trace_id,
                suppressed,
                "token rejected"
            );
        }
    }
}

fn valid_event(api: Api, caller: &str, token: &str, result: &pb::VerifyResult, trace_id: &str) {
    let claims = result.claims.as_ref();
    let (issuer, subject, jti) = claims.map_or(("", "", ""), |c| {
        (c.issuer.as_str(), c.subject.as_str(), c.jwt_id.as_str())
    });
    let token_id: Cow<'_, str> = if jti.is_empty() {
        Cow::Owned(format!("sha256:{}", super::token_fingerprint(token)))
    } else {
        Cow::Owned(format!("jti:{jti}"))
    };
    tracing::info!(
        target: TARGET,
        parent: None,
        api = api.name(),
        caller,
        issuer,
        subject,
        token_id = &*token_id,
        status = pb::Status::Valid.as_str_name(),
        reason = "",
        cached = result.cached,
        trace_id,
        suppressed = 0_u64,
        "token accepted"
    );
}

/// Who made a call, for the trail: the identity, else the peer address.
pub fn caller_name<'a>(
    identity: Option<&'a str>,
    peer: Option<std::net::SocketAddr>,
) -> Cow<'a, str> {
    match (identity, peer) {
        (Some(id), _) => Cow::Borrowed(id),
        (None, Some(peer)) => Cow::Owned(peer.ip().to_string()),
        (None, None) => Cow::Borrowed("unknown"),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Collects formatted JSON lines.
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Lines {
        fn events(&self) -> Vec<serde_json::Value> {
            let bytes = self.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
            String::from_utf8(bytes)
                .expect("utf8")
                .lines()
                .map(|l| serde_json::from_str(l).expect("a JSON line"))
                .collect()
        }
    }

    /// Runs `f` with a JSON subscriber that keeps only the audit target.
    fn captured(f: impl FnOnce()) -> (Vec<serde_json::Value>, String) {
        use tracing_subscriber::layer::SubscriberExt as _;
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .json()
                .with_writer(move || writer.clone())
                .with_filter(
                    tracing_subscriber::filter::Targets::new()
                        .with_target(TARGET, tracing::Level::INFO),
                ),
        );
        tracing::subscriber::with_default(subscriber, f);
        let raw = String::from_utf8(lines.0.lock().unwrap_or_else(|e| e.into_inner()).clone())
            .expect("utf8");
        (lines.events(), raw)
    }

    use tracing_subscriber::Layer as _;

    fn valid(iss: &str, sub: &str, jti: &str, cached: bool) -> pb::VerifyResult {
        pb::VerifyResult {
            status: pb::Status::Valid as i32,
            reason: String::new(),
            claims: Some(pb::Claims {
                issuer: iss.into(),
                subject: sub.into(),
                jwt_id: jti.into(),
                ..pb::Claims::default()
            }),
            cached,
        }
    }

    fn rejected(status: pb::Status, reason: &str) -> pb::VerifyResult {
        pb::VerifyResult {
            status: status as i32,
            reason: reason.into(),
            claims: None,
            cached: false,
        }
    }

    fn trust() -> Trust {
        let policy = crate::verifier::policy::IssuerPolicy::new("https://i.test")
            .expect("valid")
            .allowing_any_audience();
        Trust::new(
            [crate::verifier::policy::TrustedIssuer {
                policy: Arc::new(policy),
                keys: crate::verifier::policy::KeyState::Unavailable,
            }],
            8192,
        )
    }

    /// A token-shaped string with `payload` (unsigned: the trail never
    /// verifies, it reports).
    fn token(payload: &str) -> String {
        use base64::Engine as _;
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        format!(
            "{}.{}.c2lnbmF0dXJl",
            b64(r#"{"alg":"RS256","kid":"k"}"#),
            b64(payload)
        )
    }

    fn call(caller: &str) -> AuditedCall<'_> {
        AuditedCall {
            api: Api::Verify,
            caller,
            trace_id: "",
        }
    }

    fn audit(mode: AuditMode, per_second: u32) -> Audit {
        Audit::new(AuditConfig {
            mode,
            rejections_per_second: std::num::NonZeroU32::new(per_second).expect("non-zero"),
        })
    }

    #[test]
    fn every_decision_is_an_event_without_token_text_in_mode_all() {
        let tokens = vec![
            token(r#"{"iss":"https://i.test","sub":"alice","jti":"j-1"}"#),
            token(r#"{"iss":"https://i.test","sub":"bob"}"#),
            token(r#"{"iss":"https://evil.test","sub":"mallory\r\nforged: 1"}"#),
        ];
        let results = vec![
            valid("https://i.test", "alice", "j-1", true),
            valid("https://i.test", "bob", "", false),
            rejected(pb::Status::IssuerNotTrusted, "issuer is not trusted"),
        ];
        let trail = audit(AuditMode::All, 20);
        let (events, raw) = captured(|| {
            let call = AuditedCall {
                api: Api::Check,
                caller: "checkout",
                trace_id: "4bf92f3577b34da6a3ce929d0e0e4736",
            };
            trail.record(&call, &tokens, &results, &trust());
        });
        assert_eq!(events.len(), 3, "{raw}");
        let f = |i: usize, k: &str| events[i]["fields"][k].clone();
        assert_eq!(events[0]["target"], TARGET);
        assert_eq!(f(0, "api"), "Check");
        assert_eq!(f(0, "caller"), "checkout");
        assert_eq!(f(0, "issuer"), "https://i.test");
        assert_eq!(f(0, "subject"), "alice");
        assert_eq!(f(0, "token_id"), "jti:j-1");
        assert_eq!(f(0, "status"), "STATUS_VALID");
        assert_eq!(f(0, "trace_id"), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(f(2, "trace_id"), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(f(0, "cached"), true);
        assert_eq!(f(1, "cached"), false);
        let id = format!(
            "sha256:{}",
            crate::observability::token_fingerprint(&tokens[1])
        );
        assert_eq!(f(1, "token_id"), id.as_str());
        assert_eq!(id.len(), "sha256:".len() + 16);
        assert_eq!(f(2, "status"), "STATUS_ISSUER_NOT_TRUSTED");
        assert_eq!(
            f(2, "issuer"),
            "untrusted",
            "an unconfigured iss is not echoed"
        );
        assert_eq!(f(2, "subject"), "");
        assert_eq!(f(2, "reason"), "issuer is not trusted");
        for t in &tokens {
            for part in t.split('.') {
                assert!(!raw.contains(part), "token text in the trail: {raw}");
            }
        }
        assert!(
            !raw.contains("mallory") && !raw.contains("evil.test"),
            "{raw}"
        );
    }

    #[test]
    fn rejections_mode_leaves_out_valid_decisions() {
        let tokens = vec![token("{}"), token("{}")];
        let results = vec![
            valid("https://i.test", "alice", "j", false),
            rejected(pb::Status::Expired, "expired"),
        ];
        let (events, raw) = captured(|| {
            audit(AuditMode::Rejections, 20).record(&call("10.0.0.1"), &tokens, &results, &trust());
        });
        assert_eq!(events.len(), 1, "{raw}");
        assert_eq!(events[0]["fields"]["status"], "STATUS_EXPIRED");
        assert_eq!(events[0]["fields"]["api"], "Verify");
        let (events, _) = captured(|| {
            audit(AuditMode::Off, 20).record(&call("x"), &tokens, &results, &trust());
        });
        assert!(events.is_empty());
    }

    #[test]
    fn a_flood_of_one_rejection_is_limited_per_status_and_counted() {
        let tokens: Vec<String> = (0..50).map(|i| token(&format!(r#"{{"n":{i}}}"#))).collect();
        let mut results: Vec<pb::VerifyResult> = (0..49)
            .map(|_| rejected(pb::Status::BadSignature, "bad signature"))
            .collect();
        // Another kind of rejection at the end of the flood still shows.
        results.push(rejected(pb::Status::Expired, "expired"));
        let trail = audit(AuditMode::Rejections, 5);
        let (events, raw) = captured(|| {
            trail.record(&call("flood"), &tokens, &results, &trust());
        });
        let statuses: Vec<&str> = events
            .iter()
            .map(|e| e["fields"]["status"].as_str().expect("status"))
            .collect();
        assert_eq!(
            statuses,
            ["STATUS_BAD_SIGNATURE"; 5]
                .into_iter()
                .chain(["STATUS_EXPIRED"])
                .collect::<Vec<_>>(),
            "{raw}"
        );
        // The 44 left out are reported by the next event of that status.
        std::thread::sleep(std::time::Duration::from_millis(250));
        let (events, raw) = captured(|| {
            trail.record(&call("flood"), &tokens[..1], &results[..1], &trust());
        });
        assert_eq!(events.len(), 1, "{raw}");
        assert_eq!(events[0]["fields"]["suppressed"], 44);
    }

    #[test]
    fn the_caller_is_the_identity_else_the_peer_address() {
        let peer = "10.1.2.3:5555".parse().ok();
        assert_eq!(caller_name(Some("checkout"), peer), "checkout");
        assert_eq!(caller_name(None, peer), "10.1.2.3");
        assert_eq!(caller_name(None, None), "unknown");
    }
}
