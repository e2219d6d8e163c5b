//! Tallies of a run and the report rendered from them: ghz's text summary
//! shape, and ghz's JSON field names (`count`, `total`, `average`,
//! `fastest`, `slowest`, `rps`, `latencyDistribution`, `histogram`,
//! `statusCodeDistribution`, `errorDistribution`; durations in nanoseconds,
//! histogram marks in seconds, as ghz writes them) plus jwtd's own fields, so
//! scripts and dashboards built for ghz read it unchanged.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use jwtd::pb;
use prost::Message as _;
use serde::Serialize;
use serde_json::Value;

use crate::scan;

/// Latencies above this are clamped (no call waits longer than the timeout).
const MAX_LATENCY_NS: u64 = 600_000_000_000;

/// The percentiles of the latency distribution, as ghz prints them plus p99.9.
pub const PERCENTILES: [f64; 8] = [10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.9];

/// Everything one worker (or, merged, the whole run) counted.
#[derive(Debug, Clone)]
pub struct Tally {
    /// Call latency in nanoseconds (from the intended send time at a fixed rate).
    pub latency: Histogram<u64>,
    /// Calls by gRPC status code name, as ghz names them (`OK`, `Unavailable`).
    pub codes: BTreeMap<String, u64>,
    /// Failed calls by ghz-style message.
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

impl Default for Tally {
    #[allow(clippy::expect_used)] // Constant bounds; see the comment.
    fn default() -> Self {
        Self {
            // 1 ns to 10 min at 3 significant digits: constant-time records,
            // about 250 KB. hdrhistogram refuses only low < 1, high < 2 * low
            // or more than 5 digits, none of which these constants are.
            latency: Histogram::new_with_bounds(1, MAX_LATENCY_NS, 3)
                .expect("constant histogram bounds are valid"),
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
    /// Records one call: its latency, and either its gRPC error or its
    /// per-token statuses checked against `expected`. With `sample`, the
    /// response is also decoded with prost and compared with the scan.
    pub fn record(
        &mut self,
        latency: Duration,
        result: Result<&[u8], &tonic::Status>,
        expected: &[i32],
        sample: bool,
    ) {
        let ns = u64::try_from(latency.as_nanos()).unwrap_or(MAX_LATENCY_NS);
        self.latency
            .saturating_record(ns.clamp(1_000, MAX_LATENCY_NS));
        let body = match result {
            Err(status) => {
                let name = code_name(status.code());
                *self.codes.entry(name.to_owned()).or_default() += 1;
                *self
                    .errors
                    .entry(format!(
                        "rpc error: code = {name} desc = {}",
                        status.message()
                    ))
                    .or_default() += 1;
                return;
            }
            Ok(body) => body,
        };
        *self.codes.entry("OK".to_owned()).or_default() += 1;
        let mut position = 0;
        let mut wrong = 0u64;
        let mut seen = Vec::new();
        let scanned = scan::results(body, |r| {
            *self.statuses.entry(r.status).or_default() += 1;
            self.cached += u64::from(r.cached);
            if expected.get(position) != Some(&r.status) {
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
                seen.push(r.status);
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
            let agrees = pb::VerifyResponse::decode(body).is_ok_and(|full| {
                full.results
                    .iter()
                    .map(|r| r.status)
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
        for (k, v) in &other.codes {
            *self.codes.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &other.errors {
            *self.errors.entry(k.clone()).or_default() += v;
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

    /// Failed calls plus calls with unexpected answers.
    pub fn bad_calls(&self) -> u64 {
        let failed: u64 = self
            .codes
            .iter()
            .filter(|(k, _)| k.as_str() != "OK")
            .map(|(_, v)| v)
            .sum();
        failed + self.unexpected_calls + self.sample_mismatches
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
        out
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
            tally.record(Duration::from_micros(us), Ok(&ok), &[], false);
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
            Ok(&response(&[Valid, Malformed])),
            &expected,
            true,
        );
        tally.record(
            Duration::from_millis(1),
            Ok(&response(&[Valid, BadSignature])),
            &expected,
            true,
        );
        tally.record(
            Duration::from_millis(1),
            Ok(&response(&[Valid])),
            &expected,
            false,
        );
        let unavailable = tonic::Status::unavailable("gone");
        tally.record(
            Duration::from_millis(1),
            Err(&unavailable),
            &expected,
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

    #[test]
    fn json_uses_ghz_field_names() {
        let mut tally = Tally::default();
        tally.record(
            Duration::from_millis(2),
            Ok(&response(&[pb::Status::Valid])),
            &[1],
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
