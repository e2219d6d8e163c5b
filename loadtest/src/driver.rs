//! The load loop: workers share a few HTTP/2 connections, send pre-encoded
//! requests in corpus order, and tally per worker (merged at the end, so the
//! hot path shares nothing but two atomic counters).
//!
//! At a fixed rate, call `k` is due at `start + k / rate` whichever worker
//! sends it, and its latency is measured from that due time, not from when a
//! worker got round to it: when jwtd stalls, the calls that should have been
//! sent meanwhile show the stall (no coordinated omission). tokio's timer
//! fires on millisecond ticks, so a worker wakes up to 1 ms before a due time
//! and sends then; latency starts at the later of due time and send time.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::time::Instant;
use tonic::client::Grpc;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::{Channel, Endpoint};

use crate::Error;
use crate::codec::RawCodec;
use crate::corpus::Prepared;
use crate::proc_stats;
use crate::report::Tally;

/// One response in this many per worker is fully decoded as a cross-check.
pub const SAMPLE_EVERY: u64 = 64;

const VERIFY_PATH: &str = "/jwtd.v1.VerifierService/Verify";

/// When the measured phase ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// After this long.
    After(Duration),
    /// After this many measured calls.
    Count(u64),
}

/// How to drive the server.
#[derive(Debug, Clone)]
pub struct Options {
    /// `host:port` of the server (plaintext HTTP/2).
    pub addr: String,
    /// HTTP/2 connections; workers are spread over them.
    pub connections: usize,
    /// Calls in flight at once (one worker each).
    pub concurrency: usize,
    /// Calls per second, or `None` for as fast as the server answers.
    pub rate: Option<f64>,
    /// End of the measured phase.
    pub stop: Stop,
    /// Uncounted calls first, for this long.
    pub warmup: Duration,
    /// Deadline of each call (sent as `grpc-timeout`).
    pub timeout: Duration,
    /// Draw a progress bar on stderr (only when it is a terminal).
    pub progress: bool,
    /// Also measure this process's CPU and peak RSS.
    pub server_pid: Option<u32>,
}

/// What a run measured.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Every measured call, merged.
    pub tally: Tally,
    /// From the start of the measured phase to its last answer.
    pub total: Duration,
    /// The driver's CPU time over the measured phase.
    pub driver_cpu: Option<Duration>,
    /// The server's CPU time over the measured phase.
    pub server_cpu: Option<Duration>,
    /// The server's peak RSS at the end.
    pub server_peak_rss: Option<u64>,
}

struct Shared {
    requests: Arc<[Prepared]>,
    next: AtomicU64,
    measured_sent: AtomicU64,
    measured_done: AtomicU64,
    start: Instant,
    measure_start: Instant,
    end: Option<Instant>,
    count: Option<u64>,
    interval: Option<f64>,
    timeout: Duration,
    path: PathAndQuery,
}

/// Opens `connections` HTTP/2 connections to `addr`.
pub async fn connect(
    addr: &str,
    connections: usize,
    timeout: Duration,
) -> Result<Vec<Channel>, Error> {
    let uri = if addr.contains("://") {
        addr.to_owned()
    } else {
        format!("http://{addr}")
    };
    let endpoint = Endpoint::from_shared(uri)
        .map_err(|e| Error::Transport(format!("{addr}: {e}")))?
        .tcp_nodelay(true)
        // A 64-token answer is ~40 KB: with HTTP/2's default 64 KiB windows,
        // a few calls in flight on one connection would wait on WINDOW_UPDATEs.
        .initial_stream_window_size(Some(4 << 20))
        .initial_connection_window_size(Some(16 << 20))
        .connect_timeout(Duration::from_secs(5))
        .timeout(timeout);
    let mut channels = Vec::with_capacity(connections);
    for _ in 0..connections.max(1) {
        // Each connect() is its own TCP connection; clones of one Channel
        // would share a single HTTP/2 connection.
        channels.push(
            endpoint
                .connect()
                .await
                .map_err(|e| Error::Transport(format!("cannot connect to {addr}: {e}")))?,
        );
    }
    Ok(channels)
}

/// Runs the load described by `options` over `requests` (sent in order,
/// round-robin) on the connections in `channels`.
pub async fn run(
    requests: Arc<[Prepared]>,
    channels: Vec<Channel>,
    options: &Options,
) -> Result<Outcome, Error> {
    if requests.is_empty() || channels.is_empty() {
        return Err(Error::Corpus("nothing to send".into()));
    }
    let start = Instant::now();
    let measure_start = start + options.warmup;
    let shared = Arc::new(Shared {
        requests,
        next: AtomicU64::new(0),
        measured_sent: AtomicU64::new(0),
        measured_done: AtomicU64::new(0),
        start,
        measure_start,
        end: match options.stop {
            Stop::After(d) => Some(measure_start + d),
            Stop::Count(_) => None,
        },
        count: match options.stop {
            Stop::Count(n) => Some(n),
            Stop::After(_) => None,
        },
        interval: options.rate.filter(|r| *r > 0.0).map(|r| 1e9 / r),
        timeout: options.timeout,
        path: PathAndQuery::from_static(VERIFY_PATH),
    });

    let bar = progress_bar(options);
    let ticker = {
        let (bar, shared, stop) = (bar.clone(), Arc::clone(&shared), options.stop);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            loop {
                tick.tick().await;
                let done = shared.measured_done.load(Ordering::Relaxed);
                match stop {
                    Stop::After(_) => bar.set_position(shared.start.elapsed().as_millis() as u64),
                    Stop::Count(_) => bar.set_position(done),
                }
                bar.set_message(format!("{done} calls"));
            }
        })
    };

    // CPU counters at the start of the measured phase, read by a task that
    // wakes then (warm-up CPU is not charged to the run).
    let server = options.server_pid.map(|p| p.to_string());
    let baseline = {
        let server = server.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(measure_start).await;
            (
                proc_stats::cpu_time("self"),
                server.as_deref().and_then(proc_stats::cpu_time),
            )
        })
    };

    let workers: Vec<_> = (0..options.concurrency.max(1))
        .map(|i| {
            let mut grpc = Grpc::new(channels[i % channels.len()].clone())
                .max_decoding_message_size(usize::MAX)
                .max_encoding_message_size(usize::MAX);
            let shared = Arc::clone(&shared);
            tokio::spawn(async move { worker(&mut grpc, &shared).await })
        })
        .collect();
    let mut tally = Tally::default();
    let mut last = measure_start;
    for w in workers {
        let (part, done) = w
            .await
            .map_err(|e| Error::Transport(format!("a worker failed: {e}")))?;
        tally.merge(&part);
        last = last.max(done);
    }
    let end_cpu = (
        proc_stats::cpu_time("self"),
        server.as_deref().and_then(proc_stats::cpu_time),
    );
    ticker.abort();
    bar.finish_and_clear();
    let (driver0, server0) = baseline
        .await
        .map_err(|e| Error::Transport(format!("the CPU baseline task failed: {e}")))?;
    let diff = |a: Option<Duration>, b: Option<Duration>| Some(b?.saturating_sub(a?));
    Ok(Outcome {
        tally,
        total: last.saturating_duration_since(measure_start),
        driver_cpu: diff(driver0, end_cpu.0),
        server_cpu: diff(server0, end_cpu.1),
        server_peak_rss: server.as_deref().and_then(proc_stats::peak_rss),
    })
}

fn progress_bar(options: &Options) -> ProgressBar {
    if !options.progress {
        return ProgressBar::hidden();
    }
    let (len, template) = match options.stop {
        Stop::After(d) => (
            (options.warmup + d).as_millis() as u64,
            "{spinner} [{elapsed_precise}] {wide_bar} {percent}% {msg}",
        ),
        Stop::Count(n) => (
            n,
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg}",
        ),
    };
    // Hidden by itself when stderr is not a terminal (CI, redirected runs).
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr_with_hz(5));
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar
}

/// One worker: sends until the run ends; returns its tally and the time of
/// its last measured answer.
async fn worker(grpc: &mut Grpc<Channel>, shared: &Shared) -> (Tally, Instant) {
    let mut tally = Tally::default();
    let mut last = shared.measure_start;
    let mut calls = 0u64;
    loop {
        let k = shared.next.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let due = match shared.interval {
            Some(ns) => shared.start + Duration::from_nanos((k as f64 * ns) as u64),
            None => now,
        };
        if shared.end.is_some_and(|end| due >= end) {
            break;
        }
        let measured = due >= shared.measure_start;
        if measured
            && let Some(limit) = shared.count
            && shared.measured_sent.fetch_add(1, Ordering::Relaxed) >= limit
        {
            break;
        }
        if due > now + Duration::from_millis(1) {
            tokio::time::sleep_until(due - Duration::from_millis(1)).await;
        }
        let prepared = &shared.requests[(k % shared.requests.len() as u64) as usize];
        let sent = Instant::now();
        let from = due.max(sent);
        let result = call(grpc, shared, prepared).await;
        let done = Instant::now();
        if !measured {
            continue;
        }
        let sample = calls.is_multiple_of(SAMPLE_EVERY);
        calls += 1;
        match &result {
            Ok(body) => tally.record(done - from, Ok(body), &prepared.expected, sample),
            Err(status) => tally.record(done - from, Err(status), &prepared.expected, false),
        }
        shared.measured_done.fetch_add(1, Ordering::Relaxed);
        last = done;
    }
    (tally, last)
}

async fn call(
    grpc: &mut Grpc<Channel>,
    shared: &Shared,
    prepared: &Prepared,
) -> Result<bytes::Bytes, tonic::Status> {
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(format!("connection not ready: {e}")))?;
    let mut request = tonic::Request::new(prepared.body.clone());
    request.set_timeout(shared.timeout);
    grpc.unary(request, shared.path.clone(), RawCodec)
        .await
        .map(tonic::Response::into_inner)
}
