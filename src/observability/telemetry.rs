//! Prometheus metrics: every metric name and label lives here, recorded
//! through the `metrics` facade and served by metrics-exporter-prometheus
//! (the well-kept exporter of that facade; it renders the text format and
//! runs the `/metrics` listener, so nothing here writes exposition text).
//! Without an installed recorder every call is a no-op, so the library and
//! its tests pay nothing.
//!
//! Label values are bounded: `issuer` only ever takes a configured issuer or
//! `unknown` (a token's own `iss` never becomes a label), `status` one of the
//! fixed Status names, `result` and `code` fixed sets. Verifications are
//! counted once per batch and label set, not per token.

use std::net::SocketAddr;
use std::time::Duration;

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

use crate::pb;

/// Verifications by issuer, status and whether the memo answered.
pub const VERIFICATIONS: &str = "jwtd_verifications_total";
/// Memo lookups that found a current entry.
pub const MEMO_HITS: &str = "jwtd_memo_hits_total";
/// Memo lookups that did not.
pub const MEMO_MISSES: &str = "jwtd_memo_misses_total";
/// Entries in the memo.
pub const MEMO_ENTRIES: &str = "jwtd_memo_entries";
/// Entries evicted to stay within the memo's bounds.
pub const MEMO_EVICTIONS: &str = "jwtd_memo_evictions_total";
/// Key-set loads and checks by issuer and result (`ok`: loaded, or found
/// unchanged by a 304 or the file's unchanged stamp; `error`).
pub const JWKS_FETCHES: &str = "jwtd_jwks_fetches_total";
/// Keys in each issuer's current set.
pub const KEYS_LOADED: &str = "jwtd_keys_loaded";
/// When each issuer's keys were last loaded or confirmed unchanged (seconds
/// since the epoch): how fresh they are is
/// `time() - jwtd_jwks_last_success_timestamp_seconds`, which the
/// `JwtdKeysStale` alert reads.
pub const JWKS_LAST_SUCCESS: &str = "jwtd_jwks_last_success_timestamp_seconds";
/// Tokens per Verify call.
pub const BATCH_SIZE: &str = "jwtd_batch_size";
/// RPC latency by method and gRPC code. Its buckets have a bound at 2 ms,
/// the single-token latency target of BENCHMARKS.md (issue 14, target 6),
/// so the share of calls within it is a count, not an interpolation.
pub const RPC_SECONDS: &str = "jwtd_rpc_duration_seconds";
/// RPCs being served.
pub const IN_FLIGHT: &str = "jwtd_rpc_in_flight";

/// Calls refused before or instead of verifying, by method, reason
/// (`not_allowed`, `rate_limited`, `over_burst`, `overloaded`, `deadline`)
/// and caller (a configured caller id, or `other`).
pub const REFUSED_CALLS: &str = "jwtd_refused_calls_total";
/// The tokens those calls carried, by the same labels.
pub const REFUSED_TOKENS: &str = "jwtd_refused_tokens_total";
/// Cold tokens queued for or under a signature check now.
pub const PENDING_TOKENS: &str = "jwtd_pending_tokens";
/// The bound on them (`limits.max_pending_tokens` or its default).
pub const PENDING_TOKENS_LIMIT: &str = "jwtd_pending_tokens_limit";
/// The measured time of one signature check on one pool thread, the basis
/// of wait estimates and pushbacks.
pub const TOKEN_COST: &str = "jwtd_token_check_seconds";
/// Misses answered by another call's check of the same token.
pub const COALESCED: &str = "jwtd_coalesced_tokens_total";
/// Unlisted caller identities with a bucket of their own.
pub const TRACKED_CALLERS: &str = "jwtd_tracked_callers";

/// Entries each revocation source holds now, by `source` (`file`, `url`,
/// `redis`).
pub const REVOCATION_ENTRIES: &str = "jwtd_revocation_entries";
/// When each revocation source last synced (seconds since the epoch): a
/// list read or found unchanged, a 304, a Redis load or heartbeat.
pub const REVOCATION_LAST_SYNC: &str = "jwtd_revocation_last_sync_timestamp_seconds";
/// 1 while a revocation source is stale (no sync for `max_stale_seconds`).
pub const REVOCATION_STALE: &str = "jwtd_revocation_source_stale";
/// Sync attempts by source and result (`ok`, `error`).
pub const REVOCATION_SYNCS: &str = "jwtd_revocation_syncs_total";
/// Entries not kept, by source and reason (`invalid`: a bad line or Redis
/// value; `over_cap`: past `max_entries`).
pub const REVOCATION_REFUSED: &str = "jwtd_revocation_refused_entries_total";

/// Tokens answered REVOKED, by the kind of entry that matched (`jti`,
/// `subject`); `jwtd_verifications_total{status="STATUS_REVOKED"}` counts
/// them by issuer too.
pub const REVOKED: &str = "jwtd_revoked_tokens_total";

/// When the running TLS certificate expires (seconds since the epoch); set
/// at start and on every reload, only with `[tls]`.
pub const TLS_CERT_EXPIRY: &str = "jwtd_tls_certificate_expiry_timestamp_seconds";

/// Spans dropped because the export queue was full (collector slow or down).
pub const SPANS_DROPPED: &str = "jwtd_trace_spans_dropped_total";
/// Spans handed to the OTLP exporter, by result (`ok`, `error`).
pub const SPANS_EXPORTED: &str = "jwtd_trace_spans_exported_total";

/// Why the metrics listener could not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TelemetryError {
    /// The exporter refused its configuration or could not bind.
    #[error("cannot start the metrics listener on {addr}: {reason}")]
    Metrics {
        /// The configured `metrics_listen`.
        addr: SocketAddr,
        /// Why.
        reason: String,
    },
}

/// Installs the global recorder and serves `/metrics` on `addr`. Must run
/// inside a tokio runtime (the listener is spawned on it).
pub fn serve_metrics(addr: SocketAddr) -> Result<(), TelemetryError> {
    let fail = |e: metrics_exporter_prometheus::BuildError| TelemetryError::Metrics {
        addr,
        reason: e.to_string(),
    };
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets_for_metric(
            Matcher::Full(BATCH_SIZE.into()),
            &[
                1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0,
            ],
        )
        .map_err(fail)?
        .set_buckets_for_metric(
            Matcher::Full(RPC_SECONDS.into()),
            &[
                0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                0.5, 1.0, 2.5,
            ],
        )
        .map_err(fail)?
        .install()
        .map_err(fail)?;
    // A counter appears on /metrics at its first event; this one shows 0
    // from the start (the dashboard's span panel, and any rate() over it).
    counter!(SPANS_DROPPED).increment(0);
    // The standard process metrics (CPU, resident memory, start time, file
    // descriptors, threads), read from /proc once a second: a scrape sees
    // them at most a second old.
    let process = metrics_process::Collector::default();
    process.describe();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(1));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            process.collect();
        }
    });
    Ok(())
}

/// `count` outcomes with one label set. `issuer` must be a configured
/// issuer or `None`.
pub fn verifications(issuer: Option<&str>, status: pb::Status, cached: bool, count: u64) {
    counter!(
        VERIFICATIONS,
        "issuer" => issuer.unwrap_or("unknown").to_owned(),
        "status" => status.as_str_name(),
        "cached" => if cached { "true" } else { "false" },
    )
    .increment(count);
}

/// Memo lookups of one batch.
pub fn memo_lookups(hits: u64, misses: u64) {
    counter!(MEMO_HITS).increment(hits);
    counter!(MEMO_MISSES).increment(misses);
}

/// The memo's size and eviction count (absolute values).
pub fn memo_state(entries: usize, evictions: usize) {
    gauge!(MEMO_ENTRIES).set(entries as f64);
    counter!(MEMO_EVICTIONS).absolute(evictions as u64);
}

/// A key-set load attempt for a configured issuer.
pub fn key_load(issuer: &str, ok: bool, keys: usize, now_unix: f64) {
    if ok {
        keys_confirmed(issuer, now_unix);
        gauge!(KEYS_LOADED, "issuer" => issuer.to_owned()).set(keys as f64);
    } else {
        counter!(JWKS_FETCHES, "issuer" => issuer.to_owned(), "result" => "error").increment(1);
    }
}

/// A check that found an issuer's keys unchanged (a 304, or the file's
/// stamp): a success, for freshness.
pub fn keys_confirmed(issuer: &str, now_unix: f64) {
    counter!(JWKS_FETCHES, "issuer" => issuer.to_owned(), "result" => "ok").increment(1);
    gauge!(JWKS_LAST_SUCCESS, "issuer" => issuer.to_owned()).set(now_unix);
}

/// The size of one Verify batch.
pub fn batch(size: usize) {
    histogram!(BATCH_SIZE).record(size as f64);
}

/// A call refused (see [`REFUSED_CALLS`]); `caller` must be a configured
/// caller id or `other`.
pub fn refused(method: &'static str, reason: &'static str, caller: &str, tokens: usize) {
    let labels = [
        ("method", method.to_owned()),
        ("reason", reason.to_owned()),
        ("caller", caller.to_owned()),
    ];
    counter!(REFUSED_CALLS, &labels).increment(1);
    counter!(REFUSED_TOKENS, &labels).increment(tokens as u64);
}

/// The state of admission control and callers (the server sets it every
/// half second, so no call pays for it).
pub fn admission(
    pending: usize,
    limit: usize,
    token_cost: Duration,
    coalesced: u64,
    tracked: usize,
) {
    gauge!(PENDING_TOKENS).set(pending as f64);
    gauge!(PENDING_TOKENS_LIMIT).set(limit as f64);
    gauge!(TOKEN_COST).set(token_cost.as_secs_f64());
    counter!(COALESCED).absolute(coalesced);
    gauge!(TRACKED_CALLERS).set(tracked as f64);
}

/// A revocation source's entry count now.
pub fn revocation_entries(source: &'static str, entries: usize) {
    gauge!(REVOCATION_ENTRIES, "source" => source).set(entries as f64);
}

/// A sync attempt of a revocation source; `ok` also sets its last-sync time.
pub fn revocation_sync(source: &'static str, ok: bool, now_unix: f64) {
    let result = if ok { "ok" } else { "error" };
    counter!(REVOCATION_SYNCS, "source" => source, "result" => result).increment(1);
    if ok {
        gauge!(REVOCATION_LAST_SYNC, "source" => source).set(now_unix);
    }
}

/// Whether a revocation source is stale now.
pub fn revocation_stale(source: &'static str, stale: bool) {
    gauge!(REVOCATION_STALE, "source" => source).set(if stale { 1.0 } else { 0.0 });
}

/// Entries a revocation source did not keep; `reason` is `invalid` or
/// `over_cap`.
pub fn revocation_refused(source: &'static str, reason: &'static str, count: usize) {
    if count > 0 {
        counter!(REVOCATION_REFUSED, "source" => source, "reason" => reason)
            .increment(count as u64);
    }
}

/// A token answered REVOKED.
pub fn revoked(by: &crate::verifier::verify::RevokedBy) {
    let by = match by {
        crate::verifier::verify::RevokedBy::Jti => "jti",
        crate::verifier::verify::RevokedBy::Subject { .. } => "subject",
    };
    counter!(REVOKED, "by" => by).increment(1);
}

/// The running certificate's expiry, in seconds since the epoch.
pub fn tls_certificate_expiry(at_unix: u64) {
    gauge!(TLS_CERT_EXPIRY).set(at_unix as f64);
}

/// Spans dropped before export.
pub fn spans_dropped(count: u64) {
    counter!(SPANS_DROPPED).increment(count);
}

/// One export of `count` spans.
pub fn spans_exported(ok: bool, count: u64) {
    let result = if ok { "ok" } else { "error" };
    counter!(SPANS_EXPORTED, "result" => result).increment(count);
}

/// Counts an RPC as in flight until dropped, then records its latency.
#[derive(Debug)]
pub struct RpcTimer {
    method: &'static str,
    started: std::time::Instant,
    code: &'static str,
}

impl RpcTimer {
    /// An RPC of `method` started now.
    pub fn start(method: &'static str) -> Self {
        gauge!(IN_FLIGHT, "method" => method).increment(1.0);
        Self {
            method,
            started: std::time::Instant::now(),
            code: "Cancelled",
        }
    }

    /// When the RPC started.
    pub fn started(&self) -> std::time::Instant {
        self.started
    }

    /// The gRPC code the RPC ends with (default: Cancelled, for a dropped call).
    pub fn finish(&mut self, code: tonic::Code) {
        self.code = code_name(code);
    }
}

impl Drop for RpcTimer {
    fn drop(&mut self) {
        gauge!(IN_FLIGHT, "method" => self.method).decrement(1.0);
        let seconds = self.started.elapsed().as_secs_f64();
        histogram!(RPC_SECONDS, "method" => self.method, "code" => self.code).record(seconds);
    }
}

fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "Ok",
        Cancelled => "Cancelled",
        Unknown => "Unknown",
        InvalidArgument => "InvalidArgument",
        DeadlineExceeded => "DeadlineExceeded",
        NotFound => "NotFound",
        AlreadyExists => "AlreadyExists",
        PermissionDenied => "PermissionDenied",
        ResourceExhausted => "ResourceExhausted",
        FailedPrecondition => "FailedPrecondition",
        Aborted => "Aborted",
        OutOfRange => "OutOfRange",
        Unimplemented => "Unimplemented",
        Internal => "Internal",
        Unavailable => "Unavailable",
        DataLoss => "DataLoss",
        Unauthenticated => "Unauthenticated",
    }
}

/// Seconds since the epoch, for timestamp gauges.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d: Duration| d.as_secs_f64())
}
