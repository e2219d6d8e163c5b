//! Tallies of a run and the report rendered from them: ghz's text summary
//! shape, and ghz's JSON field names (`count`, `total`, `average`,
//! `fastest`, `slowest`, `rps`, `latencyDistribution`, `histogram`,
//! `statusCodeDistribution`, `errorDistribution`; durations in nanoseconds,
//! histogram marks in seconds, as ghz writes them) plus jwtd's own fields, so
//! scripts and dashboards built for ghz read it unchanged.
//!
//! Decisions:
//! - **Every call has one outcome**: admitted (answered OK; its tokens are
//!   checked against the corpus), shed (see [`crate::shed`]: only with
//!   `--allow-shed`) or failed. ghz's fields count all calls, as ghz does
//!   (`statusCodeDistribution` shows shed calls as `ResourceExhausted`);
//!   `errorDistribution` and the error rate hold failed calls only, and shed
//!   calls get their own distribution and latencies.
//! - **Latency per outcome**: admitted, shed and hot calls each have their
//!   own histogram beside the all-calls one, so a fast refusal does not pull
//!   the admitted calls' percentiles down.
//! - **Message maps are bounded** ([`MAX_MESSAGES`] keys each), since a
//!   server may put numbers in its messages.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use jwtd::pb;
use prost::Message as _;
use serde::Serialize;
use serde_json::Value;

use crate::scan::{self, Shape};
use crate::scrape::ServerTime;
use crate::shed::{self, NotShed};
use crate::view::View;

/// Latencies above this are clamped (no call waits longer than the timeout).
const MAX_LATENCY_NS: u64 = 600_000_000_000;

/// The percentiles of the latency distribution, as ghz prints them plus p99.9.
pub const PERCENTILES: [f64; 8] = [10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.9];

/// Most distinct messages kept per message map; the rest are counted under
/// [`OTHER_MESSAGES`].
pub const MAX_MESSAGES: usize = 64;
/// The key that counts messages past [`MAX_MESSAGES`].
pub const OTHER_MESSAGES: &str = "(other messages)";

/// Calls and tokens of one kind of outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Count {
    /// Calls.
    pub calls: u64,
    /// Tokens in those calls.
    pub tokens: u64,
}

/// One call's answer, classified.
#[derive(Debug, Clone)]
pub enum Outcome<'a> {
    /// Answered OK: the encoded `VerifyResponse`.
    Answered(&'a [u8]),
    /// Shed by the server (RESOURCE_EXHAUSTED with a valid pushback).
    Shed(&'a tonic::Status, shed::Shed),
    /// Failed; with the shed rule it broke, if it looked like a shed.
    Failed(&'a tonic::Status, Option<NotShed>),
}

/// Everything one worker (or, merged, the whole run) counted.
#[derive(Debug, Clone)]
pub struct Tally {
    /// Call latency in nanoseconds (from the intended send time at a fixed
    /// rate), every call.
    pub latency: Histogram<u64>,
    /// Latency of admitted (OK) calls.
    pub admitted: Histogram<u64>,
    /// Latency of shed calls.
    pub shed: Histogram<u64>,
    /// Latency of hot calls (memo hits only), whatever their outcome.
    pub hot: Histogram<u64>,
    /// Pushback of shed calls, in milliseconds.
    pub pushback_ms: Histogram<u64>,
    /// Shed calls and tokens by reason name.
    pub shed_by_reason: BTreeMap<&'static str, Count>,
    /// Shed calls by message (at most [`MAX_MESSAGES`] keys).
    pub shed_messages: BTreeMap<String, u64>,
    /// Calls that failed (neither answered nor shed).
    pub failed: u64,
    /// Tokens answered with the Status the corpus expects.
    pub good_tokens: u64,
    /// Tokens of hot calls answered without the memo.
    pub hot_uncached_tokens: u64,
    /// Calls by gRPC status code name, as ghz names them (`OK`, `Unavailable`).
    pub codes: BTreeMap<String, u64>,
    /// Failed calls by ghz-style message (at most [`MAX_MESSAGES`] keys).
    pub errors: BTreeMap<String, u64>,
    /// Tokens by `jwtd.v1.Status` value.
    pub statuses: BTreeMap<i32, u64>,
    /// Tokens answered (in OK calls).
    pub tokens: u64,
    /// Tokens whose signature work came from jwtd's memo.
    pub cached: u64,
    /// Tokens whose status differs from the corpus's expectation.
    pub unexpected_tokens: u64,
    /// OK calls with at least one unexpected token status or a wrong count.
    pub unexpected_calls: u64,
    /// The first unexpected answer, for the error message.
    pub first_unexpected: Option<String>,
    /// Responses fully decoded with prost as a cross-check of the scanner.
    pub sampled: u64,
    /// Sampled responses where prost and the scanner disagreed.
    pub sample_mismatches: u64,
}

/// 1 ns to 10 min at 3 significant digits: constant-time records, about
/// 250 KB.
#[allow(clippy::expect_used)] // Constant bounds; see the comment.
fn latency_histogram() -> Histogram<u64> {
    // hdrhistogram refuses only low < 1, high < 2 * low or more than 5
    // digits, none of which these constants are.
    Histogram::new_with_bounds(1, MAX_LATENCY_NS, 3).expect("constant histogram bounds are valid")
}

impl Default for Tally {
    #[allow(clippy::expect_used)] // Constant bounds; see the comment.
    fn default() -> Self {
        Self {
            latency: latency_histogram(),
            admitted: latency_histogram(),
            shed: latency_histogram(),
            hot: latency_histogram(),
            // Up to 2^31 ms, gRFC A6's largest pushback; same rule as above.
            pushback_ms: Histogram::new_with_bounds(1, 1 << 31, 3)
                .expect("constant histogram bounds are valid"),
            shed_by_reason: BTreeMap::new(),
            shed_messages: BTreeMap::new(),
            failed: 0,
            good_tokens: 0,
            hot_uncached_tokens: 0,
            codes: BTreeMap::new(),
            errors: BTreeMap::new(),
            statuses: BTreeMap::new(),
            tokens: 0,
            cached: 0,
            unexpected_tokens: 0,
            unexpected_calls: 0,
            first_unexpected: None,
            sampled: 0,
            sample_mismatches: 0,
        }
    }
}

/// ghz's (Go's) name of a gRPC status code.
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "Canceled",
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

fn status_name(value: i32) -> String {
    pb::Status::try_from(value).map_or_else(
        |_| format!("STATUS_{value}"),
        |s| s.as_str_name().to_owned(),
    )
}

impl Tally {
    /// Records one call of `expected.len()` tokens: its latency, and either
    /// its outcome without a body or its per-token statuses checked against
    /// `expected`. `hot` marks a call of memo hits only. With `sample`, an
    /// answer is also decoded with prost and compared with the scan.
    pub fn record(
        &mut self,
        latency: Duration,
        outcome: Outcome<'_>,
        expected: &[i32],
        view: Option<View>,
        hot: bool,
        sample: bool,
    ) {
        let ns = u64::try_from(latency.as_nanos())
            .unwrap_or(MAX_LATENCY_NS)
            .clamp(1_000, MAX_LATENCY_NS);
        self.latency.saturating_record(ns);
        if hot {
            self.hot.saturating_record(ns);
        }
        let body = match outcome {
            Outcome::Failed(status, broken) => {
                self.failed += 1;
                let name = code_name(status.code());
                *self.codes.entry(name.to_owned()).or_default() += 1;
                let mut message = format!("rpc error: code = {name} desc = {}", status.message());
                if let Some(rule) = broken.filter(NotShed::breaks_a_rule) {
                    let _ = write!(message, " [not a valid shed: {rule}]");
                }
                bump(&mut self.errors, message);
                return;
            }
            Outcome::Shed(status, shed) => {
                self.shed.saturating_record(ns);
                self.pushback_ms
                    .saturating_record(u64::from(shed.pushback_ms));
                let count = self.shed_by_reason.entry(shed.reason.name()).or_default();
                count.calls += 1;
                count.tokens += expected.len() as u64;
                *self
                    .codes
                    .entry(code_name(status.code()).to_owned())
                    .or_default() += 1;
                bump(&mut self.shed_messages, status.message().to_owned());
                return;
            }
            Outcome::Answered(body) => body,
        };
        self.admitted.saturating_record(ns);
        *self.codes.entry("OK".to_owned()).or_default() += 1;
        let mut position = 0;
        let mut wrong = 0u64;
        let mut seen = Vec::new();
        let scanned = scan::results(body, |r| {
            *self.statuses.entry(r.status).or_default() += 1;
            self.cached += u64::from(r.cached);
            if hot && !r.cached {
                self.hot_uncached_tokens += 1;
            }
            let shape_fits = view.is_none_or(|v| v.fits(r.status, r.shape, r.has_reason));
            if expected.get(position) == Some(&r.status) && shape_fits {
                self.good_tokens += 1;
            } else if expected.get(position) == Some(&r.status) {
                wrong += 1;
                if self.first_unexpected.is_none()
                    && let Some(view) = view
                {
                    self.first_unexpected = Some(format!(
                        "token {position} of a call: {} in view {view} wants {}{}, got {}{}",
                        status_name(r.status),
                        if r.status == pb::Status::Valid as i32 {
                            view.valid_shape().describe()
                        } else {
                            Shape::Bare.describe()
                        },
                        if r.status == pb::Status::Valid as i32 {
                            ""
                        } else {
                            " and a reason"
                        },
                        r.shape.describe(),
                        if r.has_reason { " and a reason" } else { "" },
                    ));
                }
            } else {
                wrong += 1;
                if self.first_unexpected.is_none() {
                    self.first_unexpected = Some(format!(
                        "token {position} of a call: expected {}, got {}",
                        expected
                            .get(position)
                            .map_or("nothing".into(), |e| status_name(*e)),
                        status_name(r.status)
                    ));
                }
            }
            if sample {
                seen.push((r.status, r.shape));
            }
            position += 1;
        });
        self.tokens += position as u64;
        match scanned {
            Ok(n) if n == expected.len() && wrong == 0 => {}
            Ok(n) => {
                self.unexpected_calls += 1;
                self.unexpected_tokens += wrong + n.abs_diff(expected.len()) as u64;
                if n != expected.len() && self.first_unexpected.is_none() {
                    self.first_unexpected =
                        Some(format!("{n} results for {} tokens", expected.len()));
                }
            }
            Err(e) => {
                self.unexpected_calls += 1;
                self.unexpected_tokens += expected.len() as u64;
                self.first_unexpected
                    .get_or_insert_with(|| format!("response: {e}"));
            }
        }
        if sample {
            self.sampled += 1;
            let shape = |r: &pb::VerifyResult| match &r.claims {
                None => Shape::Bare,
                Some(c) if c.payload_json.is_empty() => Shape::Registered,
                Some(_) => Shape::Full,
            };
            let agrees = pb::VerifyResponse::decode(body).is_ok_and(|full| {
                full.results
                    .iter()
                    .map(|r| (r.status, shape(r)))
                    .eq(seen.iter().copied())
            });
            if !agrees {
                self.sample_mismatches += 1;
            }
        }
    }

    /// Adds `other` into this tally.
    pub fn merge(&mut self, other: &Tally) {
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.latency.add(&other.latency);
        let _ = self.admitted.add(&other.admitted);
        let _ = self.shed.add(&other.shed);
        let _ = self.hot.add(&other.hot);
        let _ = self.pushback_ms.add(&other.pushback_ms);
        for (k, v) in &other.shed_by_reason {
            let count = self.shed_by_reason.entry(k).or_default();
            count.calls += v.calls;
            count.tokens += v.tokens;
        }
        for (k, v) in &other.shed_messages {
            bump_by(&mut self.shed_messages, k.clone(), *v);
        }
        self.failed += other.failed;
        self.good_tokens += other.good_tokens;
        self.hot_uncached_tokens += other.hot_uncached_tokens;
        for (k, v) in &other.codes {
            *self.codes.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &other.errors {
            bump_by(&mut self.errors, k.clone(), *v);
        }
        for (k, v) in &other.statuses {
            *self.statuses.entry(*k).or_default() += v;
        }
        self.tokens += other.tokens;
        self.cached += other.cached;
        self.unexpected_tokens += other.unexpected_tokens;
        self.unexpected_calls += other.unexpected_calls;
        if self.first_unexpected.is_none() {
            self.first_unexpected.clone_from(&other.first_unexpected);
        }
        self.sampled += other.sampled;
        self.sample_mismatches += other.sample_mismatches;
    }

    /// Calls recorded.
    pub fn calls(&self) -> u64 {
        self.latency.len()
    }

    /// Failed calls plus calls with unexpected answers (shed calls are
    /// neither).
    pub fn bad_calls(&self) -> u64 {
        self.failed + self.unexpected_calls + self.sample_mismatches
    }
}

impl<'a> Outcome<'a> {
    /// The outcome of a call's `result` under the shed rules of
    /// [`crate::shed`].
    pub fn classify(
        result: Result<&'a [u8], &'a tonic::Status>,
        hot: bool,
        allow_shed: bool,
    ) -> Outcome<'a> {
        match result {
            Ok(body) => Outcome::Answered(body),
            Err(status) => match shed::classify(status, hot, allow_shed) {
                Ok(shed) => Outcome::Shed(status, shed),
                Err(rule) => Outcome::Failed(status, Some(rule)),
            },
        }
    }
}

fn bump(map: &mut BTreeMap<String, u64>, key: String) {
    bump_by(map, key, 1);
}

/// Adds `n` under `key`, or under [`OTHER_MESSAGES`] once the map is full.
fn bump_by(map: &mut BTreeMap<String, u64>, key: String, n: u64) {
    if map.len() >= MAX_MESSAGES && !map.contains_key(&key) {
        *map.entry(OTHER_MESSAGES.to_owned()).or_default() += n;
    } else {
        *map.entry(key).or_default() += n;
    }
}

/// One point of the latency distribution.
#[derive(Debug, Clone, Serialize)]
pub struct LatencyPoint {
    /// The percentile (ghz: an integer; 99.9 here is a float).
    pub percentage: Value,
    /// Latency at that percentile, in nanoseconds.
    pub latency: u64,
}

/// One bar of the latency histogram.
#[derive(Debug, Clone, Serialize)]
pub struct Bucket {
    /// Upper edge of the bar, in seconds.
    pub mark: f64,
    /// Calls in the bar.
    pub count: u64,
    /// Share of all calls.
    pub frequency: f64,
}

/// Measurements taken beside the calls.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// Scenario name (from the corpus).
    pub scenario: String,
    /// Tokens per call.
    pub batch: usize,
    /// Expected token status shares of the corpus stream.
    pub expected_mix: BTreeMap<String, u64>,
    /// Wall time of the measured phase.
    pub total: Duration,
    /// The driver's CPU time over the measured phase.
    pub driver_cpu: Option<Duration>,
    /// The server's CPU time over the measured phase (with `--server-pid`).
    pub server_cpu: Option<Duration>,
    /// The server's peak RSS at the end (with `--server-pid`).
    pub server_peak_rss: Option<u64>,
    /// The options of the run, echoed as ghz does.
    pub options: Value,
    /// Whether shed calls were allowed (`--allow-shed`).
    pub allow_shed: bool,
    /// What the driver offered, at a fixed rate.
    pub offered: Option<Offered>,
    /// jwtd's own time per call over the measured phase (`--metrics-url`).
    pub server_time: Option<ServerTimes>,
    /// Why `--metrics-url` gave no server time.
    pub metrics_error: Option<String>,
    /// Hot calls sent once each before the warm-up.
    pub primed_calls: u64,
}

/// What an open-loop (fixed-rate) run offered, so a reader can tell load
/// the server refused from load the driver never sent.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Offered {
    /// Calls per second asked for (`--rate`).
    pub rate: f64,
    /// Measured calls sent.
    pub sent_calls: u64,
    /// Measured calls sent per second of the measured phase.
    pub sent_per_sec: f64,
    /// Measured calls that waited for an in-flight slot (`--concurrency`):
    /// the driver, not the server, held them back. Their latency still
    /// counts from their due time.
    pub throttled_calls: u64,
    /// Longest delay between a measured call's due time and its dispatch, ns.
    pub max_send_lag_ns: u64,
    /// Most calls in flight at once.
    pub peak_in_flight: u64,
    /// The in-flight cap (`--concurrency`).
    pub in_flight_cap: u64,
}

/// jwtd's time per Verify call by outcome, from its `/metrics` histogram.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerTimes {
    /// Calls answered OK (code `Ok`).
    pub admitted: ServerTime,
    /// Calls refused with RESOURCE_EXHAUSTED.
    pub shed: ServerTime,
}

/// Percentiles of one outcome's latency, ns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Percentiles {
    /// Calls.
    pub count: u64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    #[serde(rename = "p99.9")]
    pub p999: u64,
}

impl Percentiles {
    fn of(h: &Histogram<u64>) -> Percentiles {
        if h.is_empty() {
            return Percentiles::default();
        }
        Percentiles {
            count: h.len(),
            p50: h.value_at_percentile(50.0),
            p90: h.value_at_percentile(90.0),
            p99: h.value_at_percentile(99.0),
            p999: h.value_at_percentile(99.9),
        }
    }
}

/// The pushback values shed calls carried, ms.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Pushback {
    /// Shed calls (each carried one value).
    pub count: u64,
    /// Smallest.
    pub min: u64,
    /// Median.
    pub median: u64,
    /// Largest.
    pub max: u64,
}

/// The report: ghz's fields first, then jwtd's.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// When the report was made (RFC 3339, UTC).
    pub date: String,
    /// The run's options.
    pub options: Value,
    /// Calls measured.
    pub count: u64,
    /// Wall time of the measured phase, ns.
    pub total: u64,
    /// Mean latency, ns.
    pub average: u64,
    /// Fastest call, ns.
    pub fastest: u64,
    /// Slowest call, ns.
    pub slowest: u64,
    /// Calls per second.
    pub rps: f64,
    /// Latency percentiles.
    pub latency_distribution: Vec<LatencyPoint>,
    /// Ten equal-width latency bars from fastest to slowest.
    pub histogram: Vec<Bucket>,
    /// Calls by gRPC status code.
    pub status_code_distribution: BTreeMap<String, u64>,
    /// Failed calls by message.
    pub error_distribution: BTreeMap<String, u64>,
    // jwtd's own fields.
    /// Scenario name.
    pub scenario: String,
    /// Tokens per call.
    pub batch: usize,
    /// Tokens answered.
    pub tokens: u64,
    /// Tokens per second.
    pub tokens_per_sec: f64,
    /// Tokens by jwtd Status name.
    pub token_status_distribution: BTreeMap<String, u64>,
    /// The corpus's expected Status mix (tokens in the stream).
    pub expected_token_status_distribution: BTreeMap<String, u64>,
    /// Tokens answered from jwtd's memo.
    pub cached_tokens: u64,
    /// Tokens with a status other than the corpus expected.
    pub unexpected_tokens: u64,
    /// Calls that failed or held an unexpected answer, over all calls.
    pub error_rate: f64,
    /// The first unexpected answer seen, if any.
    pub first_unexpected: Option<String>,
    /// Responses also fully decoded to check the scanner.
    pub sampled_responses: u64,
    /// The driver's CPU seconds over the measured phase.
    pub driver_cpu_seconds: Option<f64>,
    /// The driver's CPU per call, µs.
    pub driver_cpu_us_per_call: Option<f64>,
    /// The server's CPU seconds over the measured phase.
    pub server_cpu_seconds: Option<f64>,
    /// The server's CPU seconds per million tokens.
    pub server_cpu_seconds_per_million_tokens: Option<f64>,
    /// The server's CPU per call, µs.
    pub server_cpu_us_per_call: Option<f64>,
    /// The server's peak resident set, bytes.
    pub server_peak_rss_bytes: Option<u64>,
    // Outcomes (see the module doc).
    /// Whether shed calls were allowed (`--allow-shed`).
    pub allow_shed: bool,
    /// Calls answered OK, and their tokens.
    pub admitted: Count,
    /// Calls shed, and their tokens.
    pub shed: Count,
    /// Calls that failed (neither answered nor shed).
    pub failed_calls: u64,
    /// Shed calls over all calls.
    pub shed_share: f64,
    /// Shed calls and tokens by reason (`pending`, `deadline`, `unknown`).
    pub shed_by_reason: BTreeMap<String, Count>,
    /// Shed calls by message.
    pub shed_distribution: BTreeMap<String, u64>,
    /// Tokens answered with the Status the corpus expects.
    pub good_tokens: u64,
    /// Good tokens per second of the measured phase.
    pub goodput_tokens_per_sec: f64,
    /// Latency of admitted calls, ns.
    pub admitted_latency: Percentiles,
    /// Latency of shed calls, ns.
    pub shed_latency: Percentiles,
    /// Latency of hot calls (memo hits only), ns.
    pub hot_latency: Percentiles,
    /// Tokens of hot calls that jwtd answered without its memo.
    pub hot_uncached_tokens: u64,
    /// The pushback values of shed calls, ms.
    pub pushback_ms: Option<Pushback>,
    /// Hot calls sent once each before the warm-up (to fill the memo).
    pub primed_calls: u64,
    /// What a fixed-rate run offered.
    pub offered: Option<Offered>,
    /// jwtd's time per call by outcome (`--metrics-url`).
    pub server_time: Option<ServerTimes>,
    /// Why `--metrics-url` gave no server time.
    pub metrics_error: Option<String>,
}

impl Report {
    /// The report of `tally` in `context`.
    pub fn new(tally: &Tally, context: Context) -> Report {
        let h = &tally.latency;
        let count = h.len();
        let secs = context.total.as_secs_f64().max(1e-9);
        let (fastest, slowest) = if count == 0 {
            (0, 0)
        } else {
            (h.min(), h.max())
        };
        let latency_distribution = PERCENTILES
            .iter()
            .map(|&p| LatencyPoint {
                percentage: if p.fract() == 0.0 {
                    Value::from(p as u64)
                } else {
                    Value::from(p)
                },
                latency: if count == 0 {
                    0
                } else {
                    h.value_at_percentile(p)
                },
            })
            .collect();
        let per = |x: Option<Duration>, n: u64, scale: f64| {
            x.filter(|_| n > 0)
                .map(|d| d.as_secs_f64() * scale / n as f64)
        };
        Report {
            date: rfc3339_now(),
            options: context.options,
            count,
            total: u64::try_from(context.total.as_nanos()).unwrap_or(u64::MAX),
            average: if count == 0 {
                0
            } else {
                h.mean().round() as u64
            },
            fastest,
            slowest,
            rps: count as f64 / secs,
            latency_distribution,
            histogram: buckets(h, fastest, slowest),
            status_code_distribution: tally.codes.clone(),
            error_distribution: tally.errors.clone(),
            scenario: context.scenario,
            batch: context.batch,
            tokens: tally.tokens,
            tokens_per_sec: tally.tokens as f64 / secs,
            token_status_distribution: tally
                .statuses
                .iter()
                .map(|(k, v)| (status_name(*k), *v))
                .collect(),
            expected_token_status_distribution: context.expected_mix,
            cached_tokens: tally.cached,
            unexpected_tokens: tally.unexpected_tokens,
            error_rate: if count == 0 {
                1.0
            } else {
                tally.bad_calls() as f64 / count as f64
            },
            first_unexpected: tally.first_unexpected.clone(),
            sampled_responses: tally.sampled,
            driver_cpu_seconds: context.driver_cpu.map(|d| d.as_secs_f64()),
            driver_cpu_us_per_call: per(context.driver_cpu, count, 1e6),
            server_cpu_seconds: context.server_cpu.map(|d| d.as_secs_f64()),
            server_cpu_seconds_per_million_tokens: per(context.server_cpu, tally.tokens, 1e6),
            server_cpu_us_per_call: per(context.server_cpu, count, 1e6),
            server_peak_rss_bytes: context.server_peak_rss,
            allow_shed: context.allow_shed,
            admitted: Count {
                calls: tally.admitted.len(),
                tokens: tally.tokens,
            },
            shed: Count {
                calls: tally.shed.len(),
                tokens: tally.shed_by_reason.values().map(|c| c.tokens).sum(),
            },
            failed_calls: tally.failed,
            shed_share: if count == 0 {
                0.0
            } else {
                tally.shed.len() as f64 / count as f64
            },
            shed_by_reason: tally
                .shed_by_reason
                .iter()
                .map(|(k, v)| ((*k).to_owned(), *v))
                .collect(),
            shed_distribution: tally.shed_messages.clone(),
            good_tokens: tally.good_tokens,
            goodput_tokens_per_sec: tally.good_tokens as f64 / secs,
            admitted_latency: Percentiles::of(&tally.admitted),
            shed_latency: Percentiles::of(&tally.shed),
            hot_latency: Percentiles::of(&tally.hot),
            hot_uncached_tokens: tally.hot_uncached_tokens,
            pushback_ms: (!tally.pushback_ms.is_empty()).then(|| Pushback {
                count: tally.pushback_ms.len(),
                min: tally.pushback_ms.min(),
                median: tally.pushback_ms.value_at_percentile(50.0),
                max: tally.pushback_ms.max(),
            }),
            primed_calls: context.primed_calls,
            offered: context.offered,
            server_time: context.server_time,
            metrics_error: context.metrics_error,
        }
    }

    /// The ghz-shaped text summary.
    pub fn text(&self) -> String {
        let ms = |ns: u64| format!("{:.2} ms", ns as f64 / 1e6);
        let mut out = String::new();
        let _ = writeln!(out, "\nSummary:");
        let _ = writeln!(
            out,
            "  Scenario:\t{} ({} tokens per call)",
            self.scenario, self.batch
        );
        let _ = writeln!(out, "  Count:\t{}", self.count);
        let _ = writeln!(out, "  Total:\t{:.2} s", self.total as f64 / 1e9);
        let _ = writeln!(out, "  Slowest:\t{}", ms(self.slowest));
        let _ = writeln!(out, "  Fastest:\t{}", ms(self.fastest));
        let _ = writeln!(out, "  Average:\t{}", ms(self.average));
        let _ = writeln!(out, "  Requests/sec:\t{:.2}", self.rps);
        let _ = writeln!(out, "  Tokens/sec:\t{:.2}", self.tokens_per_sec);
        let _ = writeln!(out, "\nResponse time histogram:");
        let most = self
            .histogram
            .iter()
            .map(|b| b.count)
            .max()
            .unwrap_or(0)
            .max(1);
        for b in &self.histogram {
            let bar = "∎".repeat((b.count * 40 / most) as usize);
            let _ = writeln!(out, "  {:.3} [{}]\t|{bar}", b.mark * 1e3, b.count);
        }
        let _ = writeln!(out, "\nLatency distribution:");
        for p in &self.latency_distribution {
            let _ = writeln!(out, "  {} % in {}", p.percentage, ms(p.latency));
        }
        let _ = writeln!(out, "\nStatus code distribution:");
        for (code, n) in &self.status_code_distribution {
            let _ = writeln!(out, "  [{code}]\t{n} responses");
        }
        if !self.error_distribution.is_empty() {
            let _ = writeln!(out, "\nError distribution:");
            for (e, n) in &self.error_distribution {
                let _ = writeln!(out, "  [{n}]\t{e}");
            }
        }
        let _ = writeln!(
            out,
            "\nToken status distribution (share of the corpus stream in brackets):"
        );
        let stream: u64 = self.expected_token_status_distribution.values().sum();
        for (status, n) in &self.token_status_distribution {
            let expected = self
                .expected_token_status_distribution
                .get(status)
                .copied()
                .unwrap_or(0);
            let _ = writeln!(
                out,
                "  [{status}]\t{n} tokens\t{:.1}% ({:.1}%)",
                100.0 * *n as f64 / self.tokens.max(1) as f64,
                100.0 * expected as f64 / stream.max(1) as f64
            );
        }
        let _ = writeln!(
            out,
            "  memo hits: {:.1}%; unexpected: {} tokens; error rate {:.4}%",
            100.0 * self.cached_tokens as f64 / self.tokens.max(1) as f64,
            self.unexpected_tokens,
            100.0 * self.error_rate
        );
        if let Some(first) = &self.first_unexpected {
            let _ = writeln!(out, "  first unexpected: {first}");
        }
        let _ = writeln!(out, "\nCPU:");
        if let Some(us) = self.driver_cpu_us_per_call {
            let _ = writeln!(out, "  driver:\t{us:.1} µs per call");
        }
        if let (Some(us), Some(m)) = (
            self.server_cpu_us_per_call,
            self.server_cpu_seconds_per_million_tokens,
        ) {
            let _ = writeln!(
                out,
                "  server:\t{us:.1} µs per call, {m:.2} s per million tokens"
            );
        }
        if let Some(rss) = self.server_peak_rss_bytes {
            let _ = writeln!(out, "  server peak RSS:\t{:.1} MiB", rss as f64 / 1048576.0);
        }
        self.overload_text(&mut out);
        out
    }

    /// Whether the outcome sections say more than the summary above.
    fn has_outcomes(&self) -> bool {
        self.allow_shed
            || self.shed.calls > 0
            || self.hot_latency.count > 0
            || self.server_time.is_some()
            || self.metrics_error.is_some()
    }

    /// The outcome, offered-load and server-time sections.
    fn overload_text(&self, out: &mut String) {
        let ms = |ns: u64| format!("{:.2}", ns as f64 / 1e6);
        let pct = |p: &Percentiles| {
            if p.count == 0 {
                return String::new();
            }
            format!(
                "\tp50 {} / p90 {} / p99 {} / p99.9 {} ms",
                ms(p.p50),
                ms(p.p90),
                ms(p.p99),
                ms(p.p999)
            )
        };
        if self.has_outcomes() {
            let share = |n: u64| 100.0 * n as f64 / self.count.max(1) as f64;
            let _ = writeln!(out, "\nOutcomes:");
            let _ = writeln!(
                out,
                "  admitted:\t{} calls ({:.1}%), {} tokens{}",
                self.admitted.calls,
                share(self.admitted.calls),
                self.admitted.tokens,
                pct(&self.admitted_latency)
            );
            let reasons = self
                .shed_by_reason
                .iter()
                .map(|(r, c)| format!("{r} {}", c.calls))
                .collect::<Vec<_>>()
                .join(", ");
            let _ = writeln!(
                out,
                "  shed:\t{} calls ({:.1}%), {} tokens{}{}",
                self.shed.calls,
                100.0 * self.shed_share,
                self.shed.tokens,
                if reasons.is_empty() {
                    String::new()
                } else {
                    format!(" ({reasons})")
                },
                pct(&self.shed_latency)
            );
            let _ = writeln!(
                out,
                "  failed:\t{} calls ({:.1}%)",
                self.failed_calls,
                share(self.failed_calls)
            );
            if self.hot_latency.count > 0 {
                let _ = writeln!(
                    out,
                    "  hot calls:\t{} ({} primed first; {} tokens missed the memo){}",
                    self.hot_latency.count,
                    self.primed_calls,
                    self.hot_uncached_tokens,
                    pct(&self.hot_latency)
                );
            }
            let _ = writeln!(
                out,
                "  goodput:\t{:.0} tokens/s with the expected Status",
                self.goodput_tokens_per_sec
            );
            if let Some(p) = &self.pushback_ms {
                let _ = writeln!(
                    out,
                    "  pushback:\tmin {} ms, median {} ms, max {} ms",
                    p.min, p.median, p.max
                );
            }
            for (message, n) in &self.shed_distribution {
                let _ = writeln!(out, "  [{n}]\t{message}");
            }
        }
        if let Some(o) = &self.offered {
            let _ = writeln!(out, "\nOffered load:");
            let _ = writeln!(
                out,
                "  rate:\t{:.0} calls/s asked, {:.0} sent/s ({} calls)",
                o.rate, o.sent_per_sec, o.sent_calls
            );
            let _ = writeln!(
                out,
                "  in flight:\tpeak {} of {}; {} calls waited for a slot; send lag max {} ms",
                o.peak_in_flight,
                o.in_flight_cap,
                o.throttled_calls,
                ms(o.max_send_lag_ns)
            );
        }
        if let Some(t) = &self.server_time {
            let _ = writeln!(out, "\nServer time (jwtd /metrics, measured phase):");
            for (name, s) in [("admitted", &t.admitted), ("shed", &t.shed)] {
                if s.calls == 0 {
                    let _ = writeln!(out, "  {name}:\t0 calls");
                    continue;
                }
                let under = s
                    .share_under
                    .iter()
                    .map(|(le, share)| {
                        let le: f64 = le.parse().unwrap_or(f64::NAN);
                        format!("<= {} ms {:.1}%", le * 1e3, 100.0 * share)
                    })
                    .collect::<Vec<_>>()
                    .join(", ");
                let bound =
                    |b: Option<f64>| b.map_or("—".into(), |s| format!("<= {} ms", s * 1e3));
                let _ = writeln!(
                    out,
                    "  {name}:\t{} calls, mean {}; {under}; p50 {}, p99 {}",
                    s.calls,
                    s.mean_seconds
                        .map_or("—".into(), |m| format!("{:.3} ms", m * 1e3)),
                    bound(s.p50_at_most_seconds),
                    bound(s.p99_at_most_seconds)
                );
            }
        }
        if let Some(e) = &self.metrics_error {
            let _ = writeln!(out, "\nServer time: not measured: {e}");
        }
    }
}

/// Ten equal-width bars between `fastest` and `slowest`, as ghz draws them.
fn buckets(h: &Histogram<u64>, fastest: u64, slowest: u64) -> Vec<Bucket> {
    if h.is_empty() {
        return Vec::new();
    }
    const BARS: u64 = 10;
    let width = ((slowest - fastest) / BARS).max(1);
    let mut counts = [0u64; BARS as usize + 1];
    for v in h.iter_recorded() {
        let value = h.highest_equivalent(v.value_iterated_to()).min(slowest);
        let i = ((value.saturating_sub(fastest)) / width).min(BARS) as usize;
        counts[i] += v.count_since_last_iteration();
    }
    let total = h.len() as f64;
    counts
        .iter()
        .enumerate()
        .map(|(i, &count)| Bucket {
            mark: (fastest + width * i as u64) as f64 / 1e9,
            count,
            frequency: count as f64 / total,
        })
        .collect()
}

/// The current time as RFC 3339 UTC, without a date-time crate.
fn rfc3339_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    rfc3339(secs)
}

/// Seconds since the epoch as RFC 3339 UTC (Howard Hinnant's civil_from_days).
pub fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(statuses: &[pb::Status]) -> Vec<u8> {
        pb::VerifyResponse {
            results: statuses
                .iter()
                .map(|s| pb::VerifyResult {
                    status: *s as i32,
                    cached: *s == pb::Status::Valid,
                    ..Default::default()
                })
                .collect(),
        }
        .encode_to_vec()
    }

    #[test]
    fn percentiles_of_known_latencies() {
        let mut tally = Tally::default();
        let ok = response(&[]);
        for us in 1..=1000u64 {
            tally.record(
                Duration::from_micros(us),
                Outcome::Answered(&ok),
                &[],
                None,
                false,
                false,
            );
        }
        let report = Report::new(
            &tally,
            Context {
                total: Duration::from_secs(2),
                ..Context::default()
            },
        );
        let at = |p: usize| report.latency_distribution[p].latency as f64 / 1e3;
        // HDR at 3 significant digits: within 0.1% of the exact value.
        for (i, exact) in [100.0, 250.0, 500.0, 750.0, 900.0, 950.0, 990.0, 999.0]
            .iter()
            .enumerate()
        {
            assert!(
                (at(i) - exact).abs() <= exact * 0.001 + 0.5,
                "p{} = {}",
                PERCENTILES[i],
                at(i)
            );
        }
        assert_eq!(report.count, 1000);
        assert_eq!(report.rps, 500.0);
        assert_eq!(report.fastest, 1000);
        assert!((report.slowest as f64 - 1e6).abs() <= 1e3);
        assert!((report.average as f64 - 500_500.0).abs() <= 500.0);
        assert_eq!(report.histogram.iter().map(|b| b.count).sum::<u64>(), 1000);
        // Uniform input: every one of the ten full-width bars holds about 100.
        assert!(
            report.histogram[..10]
                .iter()
                .all(|b| (95..=105).contains(&b.count)),
            "{:?}",
            report.histogram
        );
    }

    #[test]
    fn unexpected_statuses_and_errors_are_counted() {
        use pb::Status::*;
        let mut tally = Tally::default();
        let expected = [Valid as i32, Malformed as i32];
        tally.record(
            Duration::from_millis(1),
            Outcome::Answered(&response(&[Valid, Malformed])),
            &expected,
            None,
            false,
            true,
        );
        tally.record(
            Duration::from_millis(1),
            Outcome::Answered(&response(&[Valid, BadSignature])),
            &expected,
            None,
            false,
            true,
        );
        tally.record(
            Duration::from_millis(1),
            Outcome::Answered(&response(&[Valid])),
            &expected,
            None,
            false,
            false,
        );
        let unavailable = tonic::Status::unavailable("gone");
        tally.record(
            Duration::from_millis(1),
            Outcome::classify(Err(&unavailable), false, true),
            &expected,
            None,
            false,
            false,
        );
        assert_eq!(tally.calls(), 4);
        assert_eq!(tally.tokens, 5);
        assert_eq!(tally.cached, 3);
        assert_eq!(tally.unexpected_tokens, 2);
        assert_eq!(tally.unexpected_calls, 2);
        assert_eq!(tally.bad_calls(), 3);
        assert_eq!(tally.sampled, 2);
        assert_eq!(tally.sample_mismatches, 0);
        assert_eq!(tally.codes.get("Unavailable"), Some(&1));
        assert_eq!(tally.codes.get("OK"), Some(&3));
        assert_eq!(
            tally.errors.keys().next().map(String::as_str),
            Some("rpc error: code = Unavailable desc = gone")
        );
        assert!(
            tally
                .first_unexpected
                .as_deref()
                .is_some_and(|m| m.contains("STATUS_BAD_SIGNATURE"))
        );

        let mut merged = Tally::default();
        merged.merge(&tally);
        merged.merge(&tally);
        assert_eq!(merged.calls(), 8);
        assert_eq!(merged.statuses.get(&(Valid as i32)), Some(&6));
    }

    fn exhausted(message: &str, pushback: Option<&'static str>) -> tonic::Status {
        let mut metadata = tonic::metadata::MetadataMap::new();
        if let Some(ms) = pushback {
            metadata.insert(
                shed::PUSHBACK_TRAILER,
                tonic::metadata::MetadataValue::from_static(ms),
            );
        }
        tonic::Status::with_metadata(tonic::Code::ResourceExhausted, message, metadata)
    }

    #[test]
    fn shed_calls_are_their_own_outcome() {
        use pb::Status::*;
        let expected = [Valid as i32, Malformed as i32];
        let ok = response(&[Valid, Malformed]);
        let pending = "2 cold tokens would exceed max_pending_tokens = 64";
        let mut tally = Tally::default();
        let record = |tally: &mut Tally, ms: u64, outcome: Outcome<'_>, hot: bool| {
            tally.record(
                Duration::from_micros(ms),
                outcome,
                &expected,
                None,
                hot,
                false,
            );
        };
        // Admitted: a cold call and a hot one (its MALFORMED token is not a
        // memo hit), 10 ms each.
        record(&mut tally, 10_000, Outcome::Answered(&ok), false);
        record(&mut tally, 10_000, Outcome::Answered(&ok), true);
        // Shed, 100 µs each: two for the pending bound, one for the deadline.
        for (message, ms) in [
            (pending, "5"),
            (pending, "10"),
            ("deadline would expire first", "0"),
        ] {
            let status = exhausted(message, Some(ms));
            record(
                &mut tally,
                100,
                Outcome::classify(Err(&status), false, true),
                false,
            );
        }
        // Failed: no pushback, a hot call shed, and a shed without
        // --allow-shed.
        let bare = exhausted(pending, None);
        record(
            &mut tally,
            100,
            Outcome::classify(Err(&bare), false, true),
            false,
        );
        let hot_shed = exhausted(pending, Some("5"));
        record(
            &mut tally,
            100,
            Outcome::classify(Err(&hot_shed), true, true),
            true,
        );
        record(
            &mut tally,
            100,
            Outcome::classify(Err(&hot_shed), false, false),
            false,
        );

        assert_eq!(tally.calls(), 8);
        assert_eq!(tally.admitted.len(), 2);
        assert_eq!(tally.shed.len(), 3);
        assert_eq!(tally.failed, 3);
        assert_eq!(tally.bad_calls(), 3);
        assert_eq!(tally.good_tokens, 4);
        assert_eq!(tally.hot_uncached_tokens, 1);
        assert_eq!(tally.hot.len(), 2);
        assert_eq!(tally.codes.get("ResourceExhausted"), Some(&6));
        assert_eq!(
            tally.shed_by_reason.get("pending"),
            Some(&Count {
                calls: 2,
                tokens: 4
            })
        );
        assert_eq!(
            tally.shed_by_reason.get("deadline"),
            Some(&Count {
                calls: 1,
                tokens: 2
            })
        );
        assert_eq!(tally.shed_messages.get(pending), Some(&2));
        // The two broken rules are named in the error messages.
        let errors: Vec<&String> = tally.errors.keys().collect();
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(errors.iter().any(|e| e.contains("a hot call")));
        assert!(
            errors
                .iter()
                .any(|e| e.contains("no grpc-retry-pushback-ms trailer"))
        );

        let mut merged = Tally::default();
        merged.merge(&tally);
        merged.merge(&tally);
        assert_eq!(merged.shed.len(), 6);
        assert_eq!(merged.failed, 6);
        assert_eq!(merged.shed_by_reason["pending"].tokens, 8);

        let report = Report::new(
            &tally,
            Context {
                total: Duration::from_secs(2),
                batch: 2,
                allow_shed: true,
                ..Context::default()
            },
        );
        assert_eq!(report.count, 8);
        assert_eq!(
            report.admitted,
            Count {
                calls: 2,
                tokens: 4
            }
        );
        assert_eq!(
            report.shed,
            Count {
                calls: 3,
                tokens: 6
            }
        );
        assert_eq!(report.failed_calls, 3);
        assert_eq!(report.shed_share, 3.0 / 8.0);
        assert_eq!(report.error_rate, 3.0 / 8.0);
        assert_eq!(report.goodput_tokens_per_sec, 2.0);
        // Percentiles per outcome: the fast refusals do not pull the
        // admitted calls' latency down, nor the other way round.
        assert!((report.admitted_latency.p50 as f64 - 1e7).abs() <= 1e4);
        assert!((report.admitted_latency.p999 as f64 - 1e7).abs() <= 1e4);
        assert!((report.shed_latency.p99 as f64 - 1e5).abs() <= 1e2);
        assert_eq!(report.hot_latency.count, 2);
        assert_eq!(
            report.pushback_ms,
            Some(Pushback {
                count: 3,
                min: 0,
                median: 5,
                max: 10
            })
        );
        let json = serde_json::to_value(&report).expect("serializes");
        assert_eq!(json["shed"]["calls"], 3);
        assert_eq!(json["shedByReason"]["pending"]["tokens"], 4);
        assert_eq!(json["admittedLatency"]["count"], 2);
        assert!(json["admittedLatency"]["p99.9"].is_u64());
        assert_eq!(json["pushbackMs"]["max"], 10);
        assert_eq!(json["goodputTokensPerSec"], 2.0);
        assert_eq!(json["statusCodeDistribution"]["ResourceExhausted"], 6);
        let text = report.text();
        for line in [
            "Outcomes:",
            "shed:\t3 calls (37.5%), 6 tokens (deadline 1, pending 2)",
            "failed:\t3 calls",
            "pushback:\tmin 0 ms, median 5 ms, max 10 ms",
            "1 tokens missed the memo",
        ] {
            assert!(text.contains(line), "{line} missing from {text}");
        }
    }

    #[test]
    fn a_result_of_the_wrong_shape_for_its_view_is_unexpected() {
        use pb::Status::*;
        let expected = [Valid as i32, Expired as i32];
        let answer = |claims: Option<pb::Claims>, reason: &str| {
            pb::VerifyResponse {
                results: vec![
                    pb::VerifyResult {
                        status: Valid as i32,
                        claims,
                        ..Default::default()
                    },
                    pb::VerifyResult {
                        status: Expired as i32,
                        reason: reason.into(),
                        ..Default::default()
                    },
                ],
            }
            .encode_to_vec()
        };
        let full = Some(pb::Claims {
            issuer: "https://i".into(),
            payload_json: b"{}".to_vec(),
            ..Default::default()
        });
        let registered = Some(pb::Claims {
            issuer: "https://i".into(),
            ..Default::default()
        });
        let cases = [
            (View::Full, full.clone(), "expired", 0),
            (View::Registered, registered.clone(), "expired", 0),
            (View::StatusOnly, None, "expired", 0),
            (View::Full, registered.clone(), "expired", 1),
            (View::Registered, full.clone(), "expired", 1),
            (View::StatusOnly, registered, "expired", 1),
            (View::StatusOnly, None, "", 1),
        ];
        for (view, claims, reason, wrong) in cases {
            let mut tally = Tally::default();
            let body = answer(claims.clone(), reason);
            tally.record(
                Duration::from_millis(1),
                Outcome::Answered(&body),
                &expected,
                Some(view),
                false,
                true,
            );
            assert_eq!(
                tally.unexpected_tokens, wrong,
                "{view} {claims:?} {reason:?}"
            );
            assert_eq!(tally.good_tokens, 2 - wrong);
            assert_eq!(tally.sample_mismatches, 0, "scanner and prost agree");
            if wrong > 0 {
                let message = tally.first_unexpected.unwrap_or_default();
                assert!(
                    message.contains(&format!("in view {view} wants")),
                    "{message}"
                );
            }
            // Without a view, only statuses are checked.
            let mut unchecked = Tally::default();
            unchecked.record(
                Duration::from_millis(1),
                Outcome::Answered(&body),
                &expected,
                None,
                false,
                false,
            );
            assert_eq!(unchecked.unexpected_tokens, 0);
        }
    }

    #[test]
    fn message_maps_are_bounded() {
        let mut tally = Tally::default();
        for i in 0..(MAX_MESSAGES + 10) {
            let status = exhausted(&format!("max_pending_tokens, {i} pending"), Some("1"));
            tally.record(
                Duration::from_micros(50),
                Outcome::classify(Err(&status), false, true),
                &[1],
                None,
                false,
                false,
            );
        }
        assert_eq!(tally.shed_messages.len(), MAX_MESSAGES + 1);
        assert_eq!(tally.shed_messages.get(OTHER_MESSAGES), Some(&10));
        assert_eq!(tally.shed.len() as usize, MAX_MESSAGES + 10);
    }

    #[test]
    fn json_uses_ghz_field_names() {
        let mut tally = Tally::default();
        tally.record(
            Duration::from_millis(2),
            Outcome::Answered(&response(&[pb::Status::Valid])),
            &[1],
            None,
            false,
            true,
        );
        let report = Report::new(
            &tally,
            Context {
                total: Duration::from_secs(1),
                batch: 1,
                ..Context::default()
            },
        );
        let json = serde_json::to_value(&report).expect("serializes");
        for key in [
            "date",
            "options",
            "count",
            "total",
            "average",
            "fastest",
            "slowest",
            "rps",
            "latencyDistribution",
            "histogram",
            "statusCodeDistribution",
            "errorDistribution",
            "tokensPerSec",
            "tokenStatusDistribution",
            "unexpectedTokens",
            "errorRate",
            "driverCpuUsPerCall",
            "serverCpuSecondsPerMillionTokens",
            "serverPeakRssBytes",
        ] {
            assert!(json.get(key).is_some(), "{key} missing from {json}");
        }
        assert_eq!(json["latencyDistribution"][0]["percentage"], 10);
        assert_eq!(json["latencyDistribution"][7]["percentage"], 99.9);
        assert!(json["latencyDistribution"][2]["latency"].is_u64());
        assert!(json["histogram"][0]["mark"].is_f64());
        assert_eq!(json["statusCodeDistribution"]["OK"], 1);
        assert_eq!(json["tokenStatusDistribution"]["STATUS_VALID"], 1);
        assert_eq!(json["total"], 1_000_000_000u64);
        let text = report.text();
        for line in [
            "Summary:",
            "Requests/sec:",
            "Latency distribution:",
            "99.9 % in",
            "[OK]\t1 responses",
        ] {
            assert!(text.contains(line), "{line} missing from {text}");
        }
    }

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }
}
