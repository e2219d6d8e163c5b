//! The load loop: calls share a few HTTP/2 connections, send pre-encoded
//! requests in corpus order, and tally into a few shards merged at the end.
//!
//! Two ways to send:
//! - **Closed loop** (no `--rate`): `--concurrency` workers, each sending its
//!   next call when its last one is answered: the server's capacity.
//! - **Open loop** (`--rate R`): one pacer dispatches call `k` at
//!   `start + k / R` as a task of its own, whether or not earlier calls have
//!   been answered; `--concurrency` only caps the calls in flight.
//!
//! Either way call `k`'s latency counts from its due time, not from when it
//! got sent: when jwtd stalls, the calls that should have been sent meanwhile
//! show the stall (no coordinated omission), and so does a call held back by
//! a full in-flight cap. tokio's timer fires on millisecond ticks, so the
//! pacer wakes up to 1 ms before a due time and sends then.
//!
//! Decisions:
//! - **A task per call at a fixed rate.** Rate mode used to run on
//!   `--concurrency` workers, each with one call in flight: once the server's
//!   latency passed concurrency / rate, every worker was busy and the offered
//!   rate fell to concurrency / latency, with nothing in the report to say
//!   so. Overload is measured by offering more than the server can take, so
//!   the pacer must not wait for answers.
//! - **The cap, and saying when it bit.** A call is never in flight longer
//!   than `--timeout` (tonic ends it), so `rate × timeout` slots are enough
//!   never to hold a call back; fewer may be given (the driver's memory and
//!   the server's streams are finite too). A call due while every slot is
//!   taken waits for one, and is counted (`offered.throttledCalls`, with the
//!   longest send lag), so a report shows whether the server or the driver
//!   limited the load.
//! - **Sharded tallies behind a mutex.** A tally holds five HDR histograms
//!   (about 1 MB); one per worker would cost half a gigabyte at
//!   `--concurrency 512`, and a task per call has no worker to own one. The
//!   lock is held for one record (about a microsecond for a 64-token scan)
//!   and is uncontended on the default single driver thread.
//! - **Hot calls primed first.** Calls the corpus marks hot (memo hits only)
//!   are sent once each, one at a time, before the warm-up, so their tokens
//!   are in jwtd's memo when the offered load starts. Otherwise a server that
//!   sheds cold work could refuse a hot token's first sighting, again and
//!   again, and that call would never become the all-hits call it stands for.
//!   Each is followed by a cold call, so that hot entries do not sit in one
//!   long run of jwtd's eviction queue ([`priming_order`] says why).
//! - **Server time from `/metrics`** is read at the start of the measured
//!   phase and after its last answer (see [`crate::scrape`]); once before
//!   anything is sent, so a wrong URL fails the run before it starts.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::{Semaphore, TryAcquireError};
use tokio::time::Instant;
use tonic::client::Grpc;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::{Channel, Endpoint};

use crate::Error;
use crate::codec::RawCodec;
use crate::corpus::Prepared;
use crate::proc_stats;
use crate::report::{Offered, Outcome as Answer, ServerTimes, Tally};
use crate::scrape::{self, RpcHistogram, ScrapeError};

/// One response in this many per worker (per call index at a fixed rate) is
/// fully decoded as a cross-check.
pub const SAMPLE_EVERY: u64 = 64;

/// Tally shards (see the module doc).
const SHARDS: usize = 4;

/// How long a `/metrics` scrape may take.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);

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
    /// Calls in flight at once: the workers of a closed loop, the cap of an
    /// open one.
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
    /// RESOURCE_EXHAUSTED with a valid pushback is a shed call, not a failure.
    pub allow_shed: bool,
    /// jwtd's `/metrics`, read before and after the measured phase.
    pub metrics_url: Option<String>,
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
    /// What a fixed-rate run offered.
    pub offered: Option<Offered>,
    /// jwtd's time per call over the measured phase (`metrics_url`), or why
    /// it could not be read.
    pub server_time: Option<Result<ServerTimes, ScrapeError>>,
    /// Hot calls sent before the warm-up.
    pub primed: u64,
    /// Of those, the ones not answered OK.
    pub prime_failed: u64,
}

/// One shard of the run's tally, with the time of its last measured answer.
struct Shard {
    tally: Tally,
    last: Instant,
}

struct Shared {
    requests: Arc<[Prepared]>,
    shards: Vec<Mutex<Shard>>,
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
    allow_shed: bool,
}

/// A shard, even if a recording task panicked while holding it (a tally is
/// only ever added to, so what it holds is still a count).
fn lock(shard: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    shard.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What the pacer of an open loop saw.
#[derive(Debug, Default)]
struct Paced {
    sent: u64,
    throttled: u64,
    max_lag: Duration,
    peak: u64,
    last_dispatch: Option<Instant>,
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
    let path = PathAndQuery::from_static(VERIFY_PATH);
    let fresh = |channel: &Channel| {
        Grpc::new(channel.clone())
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX)
    };
    if let Some(url) = &options.metrics_url {
        // Fail before sending anything when the URL is wrong.
        scrape_rpc(url).await?;
    }
    let (primed, prime_failed) = {
        let mut grpc = fresh(&channels[0]);
        let mut sent = (0, 0);
        for prepared in priming_order(&requests) {
            sent.0 += u64::from(prepared.hot);
            if call(&mut grpc, &path, options.timeout, prepared)
                .await
                .is_err()
            {
                sent.1 += u64::from(prepared.hot);
            }
        }
        sent
    };

    let start = Instant::now();
    let measure_start = start + options.warmup;
    let shared = Arc::new(Shared {
        requests,
        shards: (0..SHARDS)
            .map(|_| {
                Mutex::new(Shard {
                    tally: Tally::default(),
                    last: measure_start,
                })
            })
            .collect(),
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
        path,
        allow_shed: options.allow_shed,
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

    // CPU counters and the server's histogram at the start of the measured
    // phase, read by a task that wakes then (warm-up is not charged to the
    // run).
    let server = options.server_pid.map(|p| p.to_string());
    let baseline = {
        let server = server.clone();
        let url = options.metrics_url.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(measure_start).await;
            let cpu = (
                proc_stats::cpu_time("self"),
                server.as_deref().and_then(proc_stats::cpu_time),
            );
            let histogram = match url {
                Some(url) => Some(scrape_rpc(&url).await),
                None => None,
            };
            (cpu, histogram)
        })
    };

    // acquire_many counts in u32; no run has four billion calls in flight.
    let cap = options.concurrency.clamp(1, u32::MAX as usize);
    let paced = if shared.interval.is_some() {
        let grpcs: Vec<_> = channels.iter().map(fresh).collect();
        Some(pace(Arc::clone(&shared), grpcs, cap).await?)
    } else {
        let workers: Vec<_> = (0..cap)
            .map(|i| {
                let mut grpc = fresh(&channels[i % channels.len()]);
                let shared = Arc::clone(&shared);
                tokio::spawn(async move { worker(&mut grpc, &shared).await })
            })
            .collect();
        for w in workers {
            w.await
                .map_err(|e| Error::Transport(format!("a worker failed: {e}")))?;
        }
        None
    };
    let mut tally = Tally::default();
    let mut last = measure_start;
    for shard in &shared.shards {
        let shard = lock(shard);
        tally.merge(&shard.tally);
        last = last.max(shard.last);
    }
    let end_cpu = (
        proc_stats::cpu_time("self"),
        server.as_deref().and_then(proc_stats::cpu_time),
    );
    let end_histogram = match &options.metrics_url {
        Some(url) => Some(scrape_rpc(url).await),
        None => None,
    };
    ticker.abort();
    bar.finish_and_clear();
    let ((driver0, server0), start_histogram) = baseline
        .await
        .map_err(|e| Error::Transport(format!("the baseline task failed: {e}")))?;
    let diff = |a: Option<Duration>, b: Option<Duration>| Some(b?.saturating_sub(a?));
    let server_time = match (start_histogram, end_histogram) {
        (Some(before), Some(after)) => Some((|| {
            let delta = after?.since(&before?)?;
            Ok(ServerTimes {
                admitted: delta.summary(scrape::CODE_OK),
                shed: delta.summary(scrape::CODE_SHED),
            })
        })()),
        _ => None,
    };
    let total = last.saturating_duration_since(measure_start);
    let offered = match (paced, options.rate) {
        (Some(p), Some(rate)) => {
            // Over the time the sends took: a driver that fell behind sent
            // the phase's calls over a longer time than the phase.
            let sending = p
                .last_dispatch
                .map_or(total, |t| t.saturating_duration_since(measure_start));
            let window = match options.stop {
                Stop::After(d) => d.max(sending),
                Stop::Count(_) => sending,
            };
            Some(Offered {
                rate,
                sent_calls: p.sent,
                sent_per_sec: p.sent as f64 / window.as_secs_f64().max(1e-9),
                throttled_calls: p.throttled,
                max_send_lag_ns: u64::try_from(p.max_lag.as_nanos()).unwrap_or(u64::MAX),
                peak_in_flight: p.peak,
                in_flight_cap: cap as u64,
            })
        }
        _ => None,
    };
    Ok(Outcome {
        tally,
        total,
        driver_cpu: diff(driver0, end_cpu.0),
        server_cpu: diff(server0, end_cpu.1),
        server_peak_rss: server.as_deref().and_then(proc_stats::peak_rss),
        offered,
        server_time,
        primed,
        prime_failed,
    })
}

/// The calls that prime jwtd's memo: every hot call once, each followed by
/// a cold one while cold ones last. A hot call adds at most a batch of new
/// entries to jwtd's CLOCK queue, and the cold call after it puts
/// unreferenced entries behind them: jwtd's eviction stops after 16
/// referenced entries in a row and drops the next one outright, so a run of
/// more than 16 hot entries (all hot calls primed back to back) would lose
/// one hot entry per turn of the hand.
fn priming_order(requests: &[Prepared]) -> Vec<&Prepared> {
    let mut cold = requests.iter().filter(|p| !p.hot);
    requests
        .iter()
        .filter(|p| p.hot)
        .flat_map(|hot| std::iter::once(hot).chain(cold.next()))
        .collect()
}

async fn scrape_rpc(url: &str) -> Result<RpcHistogram, ScrapeError> {
    let text = scrape::fetch(url, SCRAPE_TIMEOUT).await?;
    RpcHistogram::parse(&text, scrape::VERIFY_METHOD)
}

/// The open loop: dispatches call `k` at its due time as a task of its own,
/// at most `cap` in flight; returns when every call has been answered.
async fn pace(shared: Arc<Shared>, grpcs: Vec<Grpc<Channel>>, cap: usize) -> Result<Paced, Error> {
    let slots = Arc::new(Semaphore::new(cap));
    // The semaphore is never closed; the error exists for its API.
    let closed = || Error::Transport("the in-flight slots closed".into());
    let interval = shared.interval.unwrap_or(0.0);
    let mut paced = Paced::default();
    for k in 0u64.. {
        let due = shared.start + Duration::from_nanos((k as f64 * interval) as u64);
        if shared.end.is_some_and(|end| due >= end) {
            break;
        }
        let measured = due >= shared.measure_start;
        if measured && shared.count.is_some_and(|limit| paced.sent >= limit) {
            break;
        }
        if due > Instant::now() + Duration::from_millis(1) {
            tokio::time::sleep_until(due - Duration::from_millis(1)).await;
        }
        let permit = match Arc::clone(&slots).try_acquire_owned() {
            Ok(permit) => permit,
            Err(TryAcquireError::NoPermits) => {
                paced.throttled += u64::from(measured);
                Arc::clone(&slots)
                    .acquire_owned()
                    .await
                    .map_err(|_| closed())?
            }
            Err(TryAcquireError::Closed) => return Err(closed()),
        };
        paced.peak = paced.peak.max((cap - slots.available_permits()) as u64);
        if measured {
            let now = Instant::now();
            paced.sent += 1;
            paced.max_lag = paced.max_lag.max(now.saturating_duration_since(due));
            paced.last_dispatch = Some(now);
        }
        let mut grpc = grpcs[(k % grpcs.len() as u64) as usize].clone();
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            one_call(
                &mut grpc,
                &shared,
                k,
                due,
                measured,
                k.is_multiple_of(SAMPLE_EVERY),
            )
            .await;
            drop(permit);
        });
    }
    // Every slot back: every call answered (or timed out).
    let all = u32::try_from(cap).map_err(|_| closed())?;
    drop(slots.acquire_many(all).await.map_err(|_| closed())?);
    Ok(paced)
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

/// One worker of a closed loop: sends until the run ends.
async fn worker(grpc: &mut Grpc<Channel>, shared: &Shared) {
    let mut calls = 0u64;
    loop {
        let k = shared.next.fetch_add(1, Ordering::Relaxed);
        let due = Instant::now();
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
        let sample = measured && calls.is_multiple_of(SAMPLE_EVERY);
        calls += u64::from(measured);
        one_call(grpc, shared, k, due, measured, sample).await;
    }
}

/// Sends call `k` (due at `due`) and, when `measured`, records it.
async fn one_call(
    grpc: &mut Grpc<Channel>,
    shared: &Shared,
    k: u64,
    due: Instant,
    measured: bool,
    sample: bool,
) {
    let prepared = &shared.requests[(k % shared.requests.len() as u64) as usize];
    let result = call(grpc, &shared.path, shared.timeout, prepared).await;
    let done = Instant::now();
    if !measured {
        return;
    }
    // From the due time, however late the call went out (this used to be
    // the later of due and send time, which dropped the wait of a call sent
    // late); a call sent up to 1 ms early and answered before its due time
    // counts as 0.
    let latency = done.saturating_duration_since(due);
    let outcome = Answer::classify(
        result.as_ref().map(|body| &body[..]),
        prepared.hot,
        shared.allow_shed,
    );
    {
        let mut shard = lock(&shared.shards[(k % SHARDS as u64) as usize]);
        shard.tally.record(
            latency,
            outcome,
            &prepared.expected,
            prepared.view,
            prepared.hot,
            sample,
        );
        shard.last = shard.last.max(done);
    }
    shared.measured_done.fetch_add(1, Ordering::Relaxed);
}

async fn call(
    grpc: &mut Grpc<Channel>,
    path: &PathAndQuery,
    timeout: Duration,
    prepared: &Prepared,
) -> Result<bytes::Bytes, tonic::Status> {
    let send = async {
        grpc.ready()
            .await
            .map_err(|e| tonic::Status::unavailable(format!("connection not ready: {e}")))?;
        let mut request = tonic::Request::new(prepared.body.clone());
        request.set_timeout(timeout);
        grpc.unary(request, path.clone(), RawCodec)
            .await
            .map(tonic::Response::into_inner)
    };
    // tonic's own timeout starts when the connection takes the request; this
    // one also bounds the wait for the channel (a reconnecting channel holds
    // calls in its queue), so no call holds an in-flight slot longer than
    // `timeout`.
    tokio::time::timeout(timeout, send)
        .await
        .map_err(|_| tonic::Status::deadline_exceeded("no answer within --timeout (driver)"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prepared(hot: bool, tag: u8) -> Prepared {
        Prepared {
            body: bytes::Bytes::from(vec![tag]),
            expected: Box::new([]),
            hot,
            view: None,
        }
    }

    #[test]
    fn priming_puts_a_cold_call_after_each_hot_one() {
        // Stream: H0 H1 H2 c3 c4 H5 (three hot calls in a row, as a corpus
        // may have them).
        let requests: Vec<Prepared> = [true, true, true, false, false, true]
            .iter()
            .enumerate()
            .map(|(i, &hot)| prepared(hot, i as u8))
            .collect();
        let order: Vec<u8> = priming_order(&requests).iter().map(|p| p.body[0]).collect();
        // Every hot call once, cold ones between while they last.
        assert_eq!(order, vec![0, 3, 1, 4, 2, 5]);
        let none_hot: Vec<Prepared> = (0..3).map(|i| prepared(false, i)).collect();
        assert!(priming_order(&none_hot).is_empty());
    }
}
