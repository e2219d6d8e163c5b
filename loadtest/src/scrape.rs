//! jwtd's own view of a run: the `jwtd_rpc_duration_seconds` histogram of
//! Verify read from its `/metrics` (Prometheus text) before and after the
//! measured phase, and the difference, by gRPC code. Parsing and arithmetic
//! are pure; [`fetch`] is the only I/O.
//!
//! Decisions:
//! - **Bucket deltas, not server percentiles.** A Prometheus histogram is
//!   cumulative since the server started, warm-up included; the difference
//!   of two scrapes is exactly the calls that ended between them. Shares
//!   "under 0.25 ms / 0.5 ms / 1 ms / 2 ms" are read at bucket bounds jwtd
//!   has (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.0025, …), so they are
//!   exact counts, not interpolations; a percentile is given as the bound it
//!   is under.
//! - **A counter that went down is an error**: the server restarted between
//!   the scrapes, and the difference would mean nothing.
//! - **HTTP/1.0 by hand** for the GET. The endpoint is plain HTTP on
//!   loopback; a 1.0 request makes the server delimit the body by closing
//!   the connection (no chunked encoding to undo), so reading to the end is
//!   the whole client. Not worth an HTTP client crate for one GET per phase.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// The histogram jwtd records per RPC.
pub const RPC_SECONDS: &str = "jwtd_rpc_duration_seconds";
/// Its `method` label for Verify.
pub const VERIFY_METHOD: &str = "jwtd.v1.VerifierService/Verify";
/// jwtd's name (`code` label) of OK.
pub const CODE_OK: &str = "Ok";
/// jwtd's name (`code` label) of RESOURCE_EXHAUSTED.
pub const CODE_SHED: &str = "ResourceExhausted";
/// The bounds the report gives shares under, in seconds.
pub const SHARE_BOUNDS: [f64; 4] = [0.00025, 0.0005, 0.001, 0.002];
/// Largest `/metrics` answer read.
const MAX_BODY: usize = 16 << 20;

/// Why `/metrics` could not be read or compared.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ScrapeError {
    /// The URL is not `http://HOST:PORT/PATH`.
    #[error("{0:?} is not a URL like http://127.0.0.1:9464/metrics")]
    Url(String),
    /// Connecting, sending or reading failed.
    #[error("{url}: {reason}")]
    Io {
        /// The URL.
        url: String,
        /// What failed.
        reason: String,
    },
    /// The server answered, but not 200 with a text body.
    #[error("{url}: {reason}")]
    Http {
        /// The URL.
        url: String,
        /// The status line or what was wrong with the answer.
        reason: String,
    },
    /// A sample line of the histogram could not be read.
    #[error("/metrics line {line}: {reason}")]
    Parse {
        /// 1-based line number.
        line: usize,
        /// Why.
        reason: String,
    },
    /// A count went down between two scrapes: the server restarted.
    #[error("code {code}: count went from {before} to {after}; did the server restart?")]
    Reset {
        /// The `code` label.
        code: String,
        /// The earlier count.
        before: u64,
        /// The later count.
        after: u64,
    },
}

/// One code's histogram: cumulative bucket counts by upper bound (seconds,
/// `+Inf` last), the sum of observed seconds, and the count.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Buckets {
    /// `(le, cumulative count)`, ascending by `le`.
    pub cumulative: Vec<(f64, u64)>,
    /// `_sum`, in seconds.
    pub sum: f64,
    /// `_count` (the `+Inf` bucket when `_count` is absent).
    pub count: u64,
}

impl Buckets {
    /// The share of calls at or under `le` seconds, when `le` is one of the
    /// bucket bounds (and there were calls).
    pub fn share_at_most(&self, le: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        self.cumulative
            .iter()
            .find(|(bound, _)| same_bound(*bound, le))
            .map(|(_, n)| *n as f64 / self.count as f64)
    }

    /// The smallest bucket bound that at least `q` (0..=1) of the calls are
    /// at or under: the `q` quantile is at most this.
    pub fn quantile_bound(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let need = (q * self.count as f64).ceil().max(1.0) as u64;
        self.cumulative
            .iter()
            .find(|(_, n)| *n >= need)
            .map(|(bound, _)| *bound)
    }

    /// This histogram minus an earlier one of the same code.
    fn since(&self, before: &Buckets, code: &str) -> Result<Buckets, ScrapeError> {
        let reset = |before: u64, after: u64| ScrapeError::Reset {
            code: code.to_owned(),
            before,
            after,
        };
        let cumulative = self
            .cumulative
            .iter()
            .map(|&(le, after)| {
                let before = before
                    .cumulative
                    .iter()
                    .find(|(b, _)| same_bound(*b, le))
                    .map_or(0, |(_, n)| *n);
                after
                    .checked_sub(before)
                    .map(|n| (le, n))
                    .ok_or_else(|| reset(before, after))
            })
            .collect::<Result<_, _>>()?;
        Ok(Buckets {
            cumulative,
            sum: (self.sum - before.sum).max(0.0),
            count: self
                .count
                .checked_sub(before.count)
                .ok_or_else(|| reset(before.count, self.count))?,
        })
    }
}

/// Equal bucket bounds, up to float formatting (`+Inf` only equals itself:
/// any finite bound is within any tolerance of it, relatively).
fn same_bound(a: f64, b: f64) -> bool {
    a == b || (a.is_finite() && b.is_finite() && (a - b).abs() <= 1e-9 * a.abs().max(b.abs()))
}

/// Verify's RPC histogram, by `code` label.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RpcHistogram {
    /// Per code (`Ok`, `ResourceExhausted`, …).
    pub codes: BTreeMap<String, Buckets>,
}

impl RpcHistogram {
    /// Reads the `method` series of [`RPC_SECONDS`] from Prometheus text.
    pub fn parse(text: &str, method: &str) -> Result<RpcHistogram, ScrapeError> {
        let mut codes: BTreeMap<String, Buckets> = BTreeMap::new();
        let mut counted: BTreeMap<String, bool> = BTreeMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            let Some(rest) = line.strip_prefix(RPC_SECONDS) else {
                continue;
            };
            let bad = |reason: String| ScrapeError::Parse {
                line: n + 1,
                reason,
            };
            let (suffix, rest) = match rest.find(['{', ' ']) {
                Some(i) => rest.split_at(i),
                None => continue,
            };
            if !matches!(suffix, "_bucket" | "_sum" | "_count") {
                continue;
            }
            let (labels, value) = split_sample(rest).map_err(bad)?;
            if labels.get("method").map(String::as_str) != Some(method) {
                continue;
            }
            let code = labels.get("code").cloned().unwrap_or_default();
            let entry = codes.entry(code.clone()).or_default();
            match suffix {
                "_sum" => entry.sum = value,
                "_count" => {
                    entry.count = count(value).map_err(bad)?;
                    counted.insert(code, true);
                }
                _ => {
                    let le = labels
                        .get("le")
                        .ok_or_else(|| bad("a bucket without le".into()))?;
                    let le = parse_float(le).ok_or_else(|| bad(format!("le {le:?}")))?;
                    entry.cumulative.push((le, count(value).map_err(bad)?));
                }
            }
        }
        for (code, buckets) in &mut codes {
            buckets.cumulative.sort_by(|a, b| a.0.total_cmp(&b.0));
            if !counted.contains_key(code) {
                buckets.count = buckets.cumulative.last().map_or(0, |(_, n)| *n);
            }
        }
        Ok(RpcHistogram { codes })
    }

    /// The calls that ended between `before` and this scrape.
    pub fn since(&self, before: &RpcHistogram) -> Result<RpcHistogram, ScrapeError> {
        let empty = Buckets::default();
        let codes = self
            .codes
            .iter()
            .map(|(code, after)| {
                let earlier = before.codes.get(code).unwrap_or(&empty);
                Ok((code.clone(), after.since(earlier, code)?))
            })
            .collect::<Result<_, ScrapeError>>()?;
        Ok(RpcHistogram { codes })
    }

    /// The report's summary of one code's calls.
    pub fn summary(&self, code: &str) -> ServerTime {
        let empty = Buckets::default();
        let b = self.codes.get(code).unwrap_or(&empty);
        ServerTime {
            calls: b.count,
            mean_seconds: (b.count > 0).then(|| b.sum / b.count as f64),
            share_under: SHARE_BOUNDS
                .iter()
                .filter_map(|&le| Some((format!("{le}"), b.share_at_most(le)?)))
                .collect(),
            p50_at_most_seconds: b.quantile_bound(0.5),
            p99_at_most_seconds: b.quantile_bound(0.99),
        }
    }
}

/// Server-side time of one code's calls over the measured phase.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerTime {
    /// Calls with that code.
    pub calls: u64,
    /// Mean seconds per call.
    pub mean_seconds: Option<f64>,
    /// Share of calls at or under each of [`SHARE_BOUNDS`] (keys in seconds).
    pub share_under: BTreeMap<String, f64>,
    /// The bucket bound the median is at or under, seconds.
    pub p50_at_most_seconds: Option<f64>,
    /// The bucket bound p99 is at or under, seconds.
    pub p99_at_most_seconds: Option<f64>,
}

/// `{labels} value [timestamp]` after a metric name.
fn split_sample(rest: &str) -> Result<(BTreeMap<String, String>, f64), String> {
    let mut labels = BTreeMap::new();
    let mut rest = rest.trim_start();
    if let Some(inner) = rest.strip_prefix('{') {
        let mut chars = inner.char_indices();
        let mut name = String::new();
        loop {
            let Some((i, c)) = chars.next() else {
                return Err("unterminated label set".into());
            };
            match c {
                '}' => {
                    rest = &inner[i + 1..];
                    break;
                }
                ',' | ' ' => {}
                '=' => {
                    if chars.next().map(|(_, c)| c) != Some('"') {
                        return Err(format!("label {name} has no quoted value"));
                    }
                    let mut value = String::new();
                    loop {
                        match chars.next().map(|(_, c)| c) {
                            None => return Err("unterminated label value".into()),
                            Some('"') => break,
                            Some('\\') => match chars.next().map(|(_, c)| c) {
                                Some('n') => value.push('\n'),
                                Some(c) => value.push(c),
                                None => return Err("unterminated escape".into()),
                            },
                            Some(c) => value.push(c),
                        }
                    }
                    labels.insert(std::mem::take(&mut name), value);
                }
                c => name.push(c),
            }
        }
    }
    let value = rest
        .split_whitespace()
        .next()
        .ok_or_else(|| "no value".to_owned())?;
    let value = parse_float(value).ok_or_else(|| format!("value {value:?}"))?;
    Ok((labels, value))
}

/// A Prometheus float (`+Inf`, `-Inf`, `NaN` spelled as the format does).
fn parse_float(text: &str) -> Option<f64> {
    match text {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        _ => text.parse().ok(),
    }
}

fn count(value: f64) -> Result<u64, String> {
    if value >= 0.0 && value.fract() == 0.0 && value < 2f64.powi(63) {
        Ok(value as u64)
    } else {
        Err(format!("count {value} is not a non-negative integer"))
    }
}

/// `(host:port, path)` of an `http://` URL.
fn split_url(url: &str) -> Result<(&str, &str), ScrapeError> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| ScrapeError::Url(url.to_owned()))?;
    let (host, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, "/metrics"),
    };
    if host.is_empty() || !host.contains(':') {
        return Err(ScrapeError::Url(url.to_owned()));
    }
    Ok((host, path))
}

/// GETs `url` (plain HTTP) and returns the body of a 200 answer.
pub async fn fetch(url: &str, timeout: Duration) -> Result<String, ScrapeError> {
    let (host, path) = split_url(url)?;
    let io = |e: std::io::Error| ScrapeError::Io {
        url: url.to_owned(),
        reason: e.to_string(),
    };
    let get = async {
        let mut stream = tokio::net::TcpStream::connect(host).await.map_err(io)?;
        let request = format!("GET {path} HTTP/1.0\r\nHost: {host}\r\nAccept: text/plain\r\n\r\n");
        stream.write_all(request.as_bytes()).await.map_err(io)?;
        let mut answer = Vec::new();
        (&mut stream)
            .take(MAX_BODY as u64 + 1)
            .read_to_end(&mut answer)
            .await
            .map_err(io)?;
        Ok::<_, ScrapeError>(answer)
    };
    let answer = tokio::time::timeout(timeout, get)
        .await
        .map_err(|_| ScrapeError::Io {
            url: url.to_owned(),
            reason: format!("no answer in {timeout:?}"),
        })??;
    body_of(&answer).map_err(|reason| ScrapeError::Http {
        url: url.to_owned(),
        reason,
    })
}

/// The body of a whole HTTP/1.x answer, if its status is 200.
fn body_of(answer: &[u8]) -> Result<String, String> {
    if answer.len() > MAX_BODY {
        return Err(format!("answer larger than {MAX_BODY} bytes"));
    }
    let end = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no end of headers")?;
    let head = String::from_utf8_lossy(&answer[..end]);
    let status = head.lines().next().unwrap_or_default();
    if status.split_whitespace().nth(1) != Some("200") {
        return Err(format!("answered {status:?}"));
    }
    if head.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    }) {
        return Err("chunked answer to an HTTP/1.0 request".into());
    }
    String::from_utf8(answer[end + 4..].to_vec()).map_err(|_| "body is not UTF-8".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape metrics-exporter-prometheus renders (jwtd's buckets), with
    /// another method and another metric around it.
    fn exposition(ok: [u64; 16], ok_sum: f64, shed: [u64; 16], shed_sum: f64) -> String {
        let les = [
            "0.0001", "0.00025", "0.0005", "0.001", "0.002", "0.0025", "0.005", "0.01", "0.025",
            "0.05", "0.1", "0.25", "0.5", "1", "2.5", "+Inf",
        ];
        let mut text = String::from(
            "# TYPE jwtd_rpc_duration_seconds histogram\n\
             jwtd_batch_size_bucket{le=\"8\"} 5\n",
        );
        for (code, counts, sum) in [("Ok", ok, ok_sum), ("ResourceExhausted", shed, shed_sum)] {
            for (le, n) in les.iter().zip(counts) {
                text.push_str(&format!(
                    "jwtd_rpc_duration_seconds_bucket{{method=\"jwtd.v1.VerifierService/Verify\",code=\"{code}\",le=\"{le}\"}} {n}\n"
                ));
            }
            text.push_str(&format!(
                "jwtd_rpc_duration_seconds_sum{{method=\"jwtd.v1.VerifierService/Verify\",code=\"{code}\"}} {sum}\n\
                 jwtd_rpc_duration_seconds_count{{method=\"jwtd.v1.VerifierService/Verify\",code=\"{code}\"}} {}\n",
                counts[14]
            ));
        }
        text.push_str(
            "jwtd_rpc_duration_seconds_bucket{code=\"Ok\",method=\"envoy.service.auth.v3.Authorization/Check\",le=\"+Inf\"} 99\n\
             jwtd_rpc_duration_seconds_count{code=\"Ok\",method=\"envoy.service.auth.v3.Authorization/Check\"} 99\n",
        );
        text
    }

    #[test]
    fn parses_one_method_by_code() {
        let text = exposition(
            [0, 1, 2, 3, 3, 4, 5, 6, 7, 8, 9, 10, 10, 10, 10, 10],
            0.5,
            [1, 2, 3, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4],
            0.001,
        );
        let h = RpcHistogram::parse(&text, VERIFY_METHOD).expect("parses");
        assert_eq!(
            h.codes.keys().collect::<Vec<_>>(),
            vec!["Ok", "ResourceExhausted"]
        );
        let ok = &h.codes["Ok"];
        assert_eq!(ok.count, 10);
        assert_eq!(ok.sum, 0.5);
        assert_eq!(ok.cumulative.len(), 16);
        assert_eq!(ok.cumulative[15], (f64::INFINITY, 10));
        assert_eq!(ok.cumulative[4], (0.002, 3));
        assert_eq!(ok.cumulative[1], (0.00025, 1));
        // The Check method's 99 calls are not Verify's.
        let check = RpcHistogram::parse(&text, "envoy.service.auth.v3.Authorization/Check")
            .expect("parses");
        assert_eq!(check.codes["Ok"].count, 99);
    }

    #[test]
    fn deltas_between_two_scrapes() {
        let before = RpcHistogram::parse(
            &exposition(
                [0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 4, 4, 4, 4, 4],
                0.1,
                [0; 16],
                0.0,
            ),
            VERIFY_METHOD,
        )
        .expect("before");
        // Then: 96 more OK calls, 50 under 10 ms and all under 100 ms; 100
        // shed calls, 60 under 0.25 ms, 90 under 0.5 ms, 99 under 1 ms.
        let after = RpcHistogram::parse(
            &exposition(
                [
                    0, 0, 0, 0, 5, 10, 30, 51, 70, 90, 100, 100, 100, 100, 100, 100,
                ],
                1.7,
                [
                    20, 60, 90, 99, 100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 100,
                ],
                0.02,
            ),
            VERIFY_METHOD,
        )
        .expect("after");
        let delta = after.since(&before).expect("no reset");
        // Bucket by bucket: 51 - 1 under 10 ms, 100 - 4 under 100 ms.
        let ok_buckets = &delta.codes[CODE_OK];
        assert_eq!(ok_buckets.cumulative[7], (0.01, 50));
        assert_eq!(ok_buckets.cumulative[9], (0.05, 87));
        assert_eq!(ok_buckets.cumulative[15], (f64::INFINITY, 96));
        // p90 needs 87 of 96 calls: exactly the 87 under 50 ms.
        assert_eq!(ok_buckets.quantile_bound(0.9), Some(0.05));
        assert_eq!(ok_buckets.quantile_bound(0.91), Some(0.1));
        let ok = delta.summary(CODE_OK);
        assert_eq!(ok.calls, 96);
        assert!((ok.mean_seconds.expect("calls") - 1.6 / 96.0).abs() < 1e-12);
        assert_eq!(ok.share_under.get("0.001"), Some(&0.0));
        // 5 of 96 at or under 2 ms, counted at jwtd's 2 ms bound.
        assert_eq!(ok.share_under.get("0.002"), Some(&(5.0 / 96.0)));
        // 50 of 96 at or under 10 ms: the median is under the 0.01 bound.
        assert_eq!(ok.p50_at_most_seconds, Some(0.01));
        assert_eq!(ok.p99_at_most_seconds, Some(0.1));

        let shed = delta.summary(CODE_SHED);
        assert_eq!(shed.calls, 100);
        assert_eq!(shed.share_under.get("0.00025"), Some(&0.6));
        assert_eq!(shed.share_under.get("0.0005"), Some(&0.9));
        assert_eq!(shed.share_under.get("0.001"), Some(&0.99));
        assert_eq!(shed.share_under.get("0.002"), Some(&1.0));
        assert_eq!(shed.p50_at_most_seconds, Some(0.00025));
        assert_eq!(shed.p99_at_most_seconds, Some(0.001));

        // A code seen only after counts from zero; one never seen is empty.
        assert_eq!(delta.summary("Unavailable").calls, 0);
        assert_eq!(delta.summary("Unavailable").mean_seconds, None);
        // Going backwards is a restart.
        assert!(matches!(
            before.since(&after),
            Err(ScrapeError::Reset { .. })
        ));
    }

    #[test]
    fn bounds_compare_as_numbers() {
        assert!(same_bound(0.00025, 2.5e-4));
        assert!(same_bound(0.1, 0.1 + 1e-15));
        assert!(same_bound(f64::INFINITY, f64::INFINITY));
        assert!(!same_bound(0.0001, f64::INFINITY));
        assert!(!same_bound(f64::INFINITY, 2.5));
        assert!(!same_bound(0.00025, 0.0005));
    }

    #[test]
    fn label_syntax() {
        let (labels, value) =
            split_sample("{a=\"x\\\"y\",b=\"p\\\\q\", le=\"+Inf\"} 1e3 1700000000").expect("ok");
        assert_eq!(labels["a"], "x\"y");
        assert_eq!(labels["b"], "p\\q");
        assert_eq!(labels["le"], "+Inf");
        assert_eq!(value, 1000.0);
        assert!(split_sample("{a=\"x} 1").is_err());
        assert!(split_sample("{a=x} 1").is_err());
        assert!(split_sample("{a=\"x\"}").is_err());
        let broken =
            "jwtd_rpc_duration_seconds_count{method=\"jwtd.v1.VerifierService/Verify\"} -3\n";
        assert!(matches!(
            RpcHistogram::parse(broken, VERIFY_METHOD),
            Err(ScrapeError::Parse { line: 1, .. })
        ));
    }

    #[tokio::test]
    async fn fetches_over_loopback() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.expect("accept");
            let mut request = vec![0u8; 1024];
            let n = socket.read(&mut request).await.expect("read");
            socket
                .write_all(b"HTTP/1.0 200 OK\r\ncontent-type: text/plain\r\n\r\nup 1\n")
                .await
                .expect("write");
            String::from_utf8_lossy(&request[..n]).into_owned()
        });
        let body = fetch(&format!("http://{addr}/metrics"), Duration::from_secs(5))
            .await
            .expect("fetched");
        assert_eq!(body, "up 1\n");
        let request = server.await.expect("server");
        assert!(
            request.starts_with("GET /metrics HTTP/1.0\r\n"),
            "{request}"
        );
        // Nothing listening: an I/O error naming the URL, not a hang.
        let gone = fetch(&format!("http://{addr}/metrics"), Duration::from_secs(5)).await;
        assert!(matches!(gone, Err(ScrapeError::Io { .. })), "{gone:?}");
    }

    #[test]
    fn http_answers_and_urls() {
        assert_eq!(
            body_of(b"HTTP/1.0 200 OK\r\ncontent-type: text/plain\r\n\r\nx 1\n"),
            Ok("x 1\n".into())
        );
        assert!(body_of(b"HTTP/1.1 404 Not Found\r\n\r\n").is_err());
        assert!(body_of(b"HTTP/1.0 200 OK\r\n").is_err());
        assert_eq!(
            split_url("http://127.0.0.1:9464/metrics"),
            Ok(("127.0.0.1:9464", "/metrics"))
        );
        assert_eq!(
            split_url("http://127.0.0.1:9464"),
            Ok(("127.0.0.1:9464", "/metrics"))
        );
        assert!(split_url("https://127.0.0.1:9464/metrics").is_err());
        assert!(split_url("127.0.0.1:9464").is_err());
    }
}
