//! Short runs of the real driver against the echo server, a stub that sheds,
//! a stub that is slow, and jwtd itself, all in-process on 127.0.0.1:0.
//! Counts and statuses only, and lower bounds on latency where a stall must
//! show: no assertion that something is fast.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests state their expectations by panicking.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use jwtd::clock::SystemClock;
use jwtd::config::Config;
use jwtd::engine::Engine;
use jwtd::registry::Registry;
use jwtd_load::corpus::{self, Corpus};
use jwtd_load::driver::{self, Stop};
use jwtd_load::report::{Context, Report};
use jwtd_load::scenario::{Reuse, Scenario};
use jwtd_load::view::View;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

fn scratch(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("jwtd-load-test-{}-{name}", std::process::id()))
}

/// A scenario's corpus, shrunk for a test, written to a scratch directory.
fn small_corpus(name: &str) -> (Corpus, PathBuf) {
    small_corpus_in(name, name)
}

/// As [`small_corpus`], in a scratch directory named for `dir` (tests run
/// at once, and each removes its directory when done).
fn small_corpus_in(name: &str, dir: &str) -> (Corpus, PathBuf) {
    let mut scenario = Scenario::named(name).unwrap();
    scenario.reuse = match scenario.reuse {
        Reuse::Cycle { .. } => Reuse::Cycle { distinct: 64 },
        Reuse::HotCold { hot_share, .. } => Reuse::HotCold {
            hot: 32,
            cold: 64,
            hot_share,
        },
        Reuse::HotColdCalls { hot_share, .. } => Reuse::HotColdCalls {
            hot: 16,
            cold: 96,
            hot_share,
        },
    };
    // Enough invalid tokens in a small mixed corpus to see each kind.
    if name == "mixed" {
        scenario.invalid_share = 0.1;
    }
    let options = corpus::Options {
        scenario,
        seed: 9,
        now: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64,
        ttl: 3600,
        listen: "127.0.0.1:0".into(),
        metrics_listen: None,
    };
    let corpus = corpus::generate(&options).unwrap();
    let dir = scratch(dir);
    corpus.write(&dir).unwrap();
    (Corpus::read(&dir).unwrap(), dir)
}

fn options(addr: String, stop: Stop, rate: Option<f64>) -> driver::Options {
    driver::Options {
        addr,
        connections: 2,
        concurrency: 4,
        rate,
        stop,
        warmup: Duration::ZERO,
        timeout: Duration::from_secs(20),
        progress: false,
        server_pid: Some(std::process::id()),
        allow_shed: false,
        metrics_url: None,
    }
}

async fn drive(corpus: &Corpus, addr: String, stop: Stop, rate: Option<f64>) -> Report {
    drive_with(corpus, options(addr, stop, rate)).await
}

async fn drive_with(corpus: &Corpus, options: driver::Options) -> Report {
    drive_in_view(corpus, options, None).await
}

async fn drive_in_view(corpus: &Corpus, options: driver::Options, view: Option<View>) -> Report {
    let channels = driver::connect(&options.addr, options.connections, options.timeout)
        .await
        .unwrap();
    let outcome = driver::run(
        corpus.requests_in_view(corpus.meta.batch, view).into(),
        channels,
        &options,
    )
    .await
    .unwrap();
    Report::new(
        &outcome.tally,
        Context {
            scenario: corpus.meta.scenario.clone(),
            batch: corpus.meta.batch,
            total: outcome.total,
            driver_cpu: outcome.driver_cpu,
            server_cpu: outcome.server_cpu,
            server_peak_rss: outcome.server_peak_rss,
            allow_shed: options.allow_shed,
            offered: outcome.offered,
            primed_calls: outcome.primed,
            ..Context::default()
        },
    )
}

async fn echo_server() -> (String, oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(jwtd_load::echo::serve(listener, async {
        let _ = stopped.await;
    }));
    (addr, stop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_counted_run_against_the_echo_server() {
    let (corpus, dir) = small_corpus("batch64-hot");
    let (addr, stop) = echo_server().await;
    let report = drive(&corpus, addr.clone(), Stop::Count(200), None).await;
    assert_eq!(report.count, 200);
    assert_eq!(report.tokens, 200 * 64);
    assert_eq!(report.status_code_distribution.get("OK"), Some(&200));
    assert_eq!(
        report.token_status_distribution.get("STATUS_VALID"),
        Some(&(200 * 64))
    );
    assert_eq!(report.unexpected_tokens, 0);
    assert_eq!(report.error_rate, 0.0);
    // One response in SAMPLE_EVERY per worker is cross-checked with prost.
    assert!(
        report.sampled_responses >= 4,
        "{}",
        report.sampled_responses
    );
    assert!(report.fastest <= report.average && report.average <= report.slowest);
    assert!(report.driver_cpu_seconds.is_some() || !cfg!(target_os = "linux"));

    // At a fixed rate, the same count is sent.
    let paced = drive(&corpus, addr, Stop::Count(50), Some(1000.0)).await;
    assert_eq!(paced.count, 50);
    assert_eq!(paced.error_rate, 0.0);
    let _ = stop.send(());
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_echo_server_fails_the_status_check_of_a_flood() {
    // The echo answers VALID to garbage: the driver must notice.
    let (corpus, dir) = small_corpus("flood");
    let (addr, stop) = echo_server().await;
    let report = drive(&corpus, addr, Stop::Count(20), None).await;
    assert_eq!(report.count, 20);
    assert!(report.unexpected_tokens > 0);
    assert_eq!(report.error_rate, 1.0);
    assert!(report.first_unexpected.is_some());
    let _ = stop.send(());
    std::fs::remove_dir_all(dir).ok();
}

/// Starts jwtd in-process with the corpus's own config.
async fn jwtd_server(dir: &std::path::Path) -> (String, oneshot::Sender<()>) {
    let text = std::fs::read_to_string(dir.join(corpus::files::CONFIG)).unwrap();
    let config = Config::from_toml(&text, dir).unwrap();
    let (registry, refused) = Registry::start(&config).await.unwrap();
    assert!(refused.is_empty(), "{refused:?}");
    let engine = Arc::new(Engine::new(registry, Arc::new(SystemClock), config.cache).unwrap());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(jwtd::server::serve(listener, engine, async {
        let _ = stopped.await;
    }));
    (addr, stop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwtd_answers_every_scenario_as_the_corpus_expects() {
    for name in jwtd_load::scenario::NAMES {
        let (corpus, dir) = small_corpus(name);
        let (addr, stop) = jwtd_server(&dir).await;
        let calls = (corpus.stream.len() / corpus.meta.batch) as u64 * 2;
        let report = drive(&corpus, addr, Stop::Count(calls), None).await;
        assert_eq!(report.count, calls, "{name}");
        assert_eq!(
            report.unexpected_tokens, 0,
            "{name}: {:?} {:?}",
            report.first_unexpected, report.error_distribution
        );
        assert_eq!(report.error_rate, 0.0, "{name}");
        let mix = corpus.expected_mix();
        for (status, n) in &report.token_status_distribution {
            assert!(
                mix.contains_key(status.as_str()),
                "{name}: {status} x{n} not expected"
            );
        }
        let _ = stop.send(());
        std::fs::remove_dir_all(dir).ok();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_view_is_sent_and_its_shape_checked() {
    // jwtd answers each view in its shape, rejections with their reasons
    // (mixed has invalid tokens), memo hits included (two passes).
    let (corpus, dir) = small_corpus_in("mixed", "views-mixed");
    let (addr, stop) = jwtd_server(&dir).await;
    let calls = (corpus.stream.len() / corpus.meta.batch) as u64 * 2;
    let mut by_view = Vec::new();
    for view in View::ALL {
        let options = options(addr.clone(), Stop::Count(calls), None);
        let report = drive_in_view(&corpus, options, Some(view)).await;
        assert_eq!(report.count, calls, "{view}");
        assert_eq!(
            (report.unexpected_tokens, report.error_rate),
            (0, 0.0),
            "{view}: {:?}",
            report.first_unexpected
        );
        by_view.push(report.token_status_distribution);
    }
    assert!(by_view.iter().all(|d| *d == by_view[0]), "{by_view:?}");
    assert!(
        by_view[0].len() > 1,
        "valid and rejected tokens: {by_view:?}"
    );
    let _ = stop.send(());

    // The echo server answers the view each request names.
    let (corpus, hot_dir) = small_corpus_in("batch64-hot", "views-hot");
    let (echo, stop) = echo_server().await;
    for view in View::ALL {
        let options = options(echo.clone(), Stop::Count(20), None);
        let report = drive_in_view(&corpus, options, Some(view)).await;
        assert_eq!(
            report.unexpected_tokens, 0,
            "echo {view}: {:?}",
            report.first_unexpected
        );
    }
    let _ = stop.send(());

    // A server that ignores the view (the stub answers VALID without
    // claims) fits STATUS_ONLY only: the shape is checked.
    let (stub, stop) = stub_server(&corpus, Stub::Slow).await;
    for (view, fits) in [
        (View::StatusOnly, true),
        (View::Registered, false),
        (View::Full, false),
    ] {
        let options = options(stub.clone(), Stop::Count(2), None);
        let report = drive_in_view(&corpus, options, Some(view)).await;
        assert_eq!(report.unexpected_tokens == 0, fits, "stub {view}");
        if !fits {
            let message = report.first_unexpected.unwrap_or_default();
            assert!(
                message.contains(&format!("in view {view} wants")),
                "{message}"
            );
        }
    }
    let _ = stop.send(());
    std::fs::remove_dir_all(dir).ok();
    std::fs::remove_dir_all(hot_dir).ok();
}

/// How the stub below answers a call that is not all hot tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stub {
    /// Every other cold call shed with a pushback of 7 ms; hot calls served.
    Sheds,
    /// As Sheds, and every hot call shed too (a broken admission control).
    /// Every one, not every other: the priming calls alternate hot and cold,
    /// so "every other call" could leave the hot ones all unshed.
    ShedsHot,
    /// Every other cold call RESOURCE_EXHAUSTED without a pushback trailer.
    NoPushback,
    /// Every call served after 100 ms.
    Slow,
}

#[derive(Debug)]
struct StubServer {
    hot: std::collections::HashSet<String>,
    mode: Stub,
    calls: std::sync::atomic::AtomicU64,
}

#[tonic::async_trait]
impl jwtd::pb::verifier_service_server::VerifierService for StubServer {
    async fn verify(
        &self,
        request: tonic::Request<jwtd::pb::VerifyRequest>,
    ) -> Result<tonic::Response<jwtd::pb::VerifyResponse>, tonic::Status> {
        use std::sync::atomic::Ordering;
        let tokens = request.into_inner().tokens;
        let hot = tokens.iter().all(|t| self.hot.contains(t));
        let n = self.calls.fetch_add(1, Ordering::Relaxed);
        if self.mode == Stub::Slow {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let shed = match self.mode {
            Stub::Sheds | Stub::NoPushback => !hot && n.is_multiple_of(2),
            Stub::ShedsHot => hot || n.is_multiple_of(2),
            Stub::Slow => false,
        };
        if shed {
            let mut metadata = tonic::metadata::MetadataMap::new();
            if self.mode != Stub::NoPushback {
                metadata.insert("grpc-retry-pushback-ms", "7".parse().unwrap());
            }
            return Err(tonic::Status::with_metadata(
                tonic::Code::ResourceExhausted,
                format!(
                    "{} cold tokens would exceed max_pending_tokens = 1",
                    tokens.len()
                ),
                metadata,
            ));
        }
        Ok(tonic::Response::new(jwtd::pb::VerifyResponse {
            results: tokens
                .iter()
                .map(|_| jwtd::pb::VerifyResult {
                    status: jwtd::pb::Status::Valid as i32,
                    cached: hot,
                    ..Default::default()
                })
                .collect(),
        }))
    }
}

async fn stub_server(corpus: &Corpus, mode: Stub) -> (String, oneshot::Sender<()>) {
    let calls: Vec<&[(jwtd::pb::Status, String)]> =
        corpus.stream.chunks(corpus.meta.batch).collect();
    let hot = corpus
        .meta
        .hot_calls
        .iter()
        .flat_map(|&c| calls[c].iter().map(|(_, t)| t.clone()))
        .collect();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (stop, stopped) = oneshot::channel::<()>();
    let service = jwtd::pb::verifier_service_server::VerifierServiceServer::new(StubServer {
        hot,
        mode,
        calls: Default::default(),
    });
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
                async {
                    let _ = stopped.await;
                },
            ),
    );
    (addr, stop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shed_calls_are_counted_apart_from_failures() {
    let (corpus, dir) = small_corpus("overload");
    let hot_calls = corpus.meta.hot_calls.len() as u64;
    assert!(hot_calls > 0);
    let calls = 4 * (corpus.stream.len() / corpus.meta.batch) as u64;

    // A server that sheds half the cold calls, with a pushback trailer.
    let (addr, stop) = stub_server(&corpus, Stub::Sheds).await;
    let mut shedding = options(addr.clone(), Stop::Count(calls), None);
    shedding.allow_shed = true;
    let report = drive_with(&corpus, shedding.clone()).await;
    assert_eq!(report.count, calls);
    assert_eq!(report.primed_calls, hot_calls, "each hot call primed once");
    assert!(
        report.shed.calls > 0,
        "{:?}",
        report.status_code_distribution
    );
    assert_eq!(report.failed_calls, 0, "{:?}", report.error_distribution);
    assert_eq!(report.error_rate, 0.0);
    assert_eq!(report.admitted.calls + report.shed.calls, calls);
    assert_eq!(
        report.shed.tokens,
        report.shed.calls * corpus.meta.batch as u64
    );
    assert_eq!(report.shed_by_reason["pending"].calls, report.shed.calls);
    assert_eq!(report.shed_latency.count, report.shed.calls);
    assert_eq!(report.hot_latency.count, 4 * hot_calls);
    assert_eq!(report.hot_uncached_tokens, 0);
    assert_eq!(report.good_tokens, report.admitted.tokens);
    let pushback = report.pushback_ms.unwrap();
    assert_eq!((pushback.min, pushback.median, pushback.max), (7, 7, 7));
    assert_eq!(
        report.status_code_distribution.get("ResourceExhausted"),
        Some(&report.shed.calls)
    );

    // The same answers without --allow-shed are failures.
    shedding.allow_shed = false;
    let strict = drive_with(&corpus, shedding).await;
    assert_eq!(strict.shed.calls, 0);
    assert!(strict.failed_calls > 0);
    assert!(strict.error_rate > 0.0);
    let _ = stop.send(());

    // Shedding a hot call, or shedding without a trailer, is an error.
    for (mode, needle) in [
        (Stub::ShedsHot, "a hot call"),
        (Stub::NoPushback, "no grpc-retry-pushback-ms trailer"),
    ] {
        let (addr, stop) = stub_server(&corpus, mode).await;
        let mut options = options(addr, Stop::Count(calls), None);
        options.allow_shed = true;
        let report = drive_with(&corpus, options).await;
        assert!(report.failed_calls > 0, "{mode:?}");
        assert!(report.error_rate > 0.0, "{mode:?}");
        assert!(
            report.error_distribution.keys().any(|e| e.contains(needle)),
            "{mode:?}: {:?}",
            report.error_distribution
        );
        let _ = stop.send(());
    }
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fixed_rate_is_offered_whatever_the_server_answers() {
    // Each call takes 100 ms. At 400 calls/s, 40 calls need about 40 in
    // flight: with room for them, none waits for a slot; with 4 slots, the
    // driver holds most back, says so, and their latency still counts from
    // their due times (the last one is due at 97.5 ms, answered after ~1 s).
    let (corpus, dir) = small_corpus("batch64-hot");
    let (addr, stop) = stub_server(&corpus, Stub::Slow).await;
    let mut roomy = options(addr.clone(), Stop::Count(40), Some(400.0));
    roomy.concurrency = 1000;
    let report = drive_with(&corpus, roomy).await;
    assert_eq!(report.count, 40);
    let offered = report.offered.clone().unwrap();
    assert_eq!(offered.sent_calls, 40);
    assert_eq!(offered.throttled_calls, 0);
    assert_eq!(offered.in_flight_cap, 1000);
    assert!(offered.peak_in_flight > 4, "{offered:?}");

    let mut tight = options(addr, Stop::Count(40), Some(400.0));
    tight.concurrency = 4;
    let report = drive_with(&corpus, tight).await;
    assert_eq!(report.count, 40);
    let offered = report.offered.clone().unwrap();
    // Calls wait for a slot whenever none is free when they fall due (one
    // freed just in time is not counted), and the send lag shows the rest.
    assert!(offered.throttled_calls >= 10, "{offered:?}");
    assert!(offered.max_send_lag_ns >= 500_000_000, "{offered:?}");
    assert!(offered.sent_per_sec < 200.0, "{offered:?}");
    assert_eq!(offered.peak_in_flight, 4);
    assert!(report.slowest >= 500_000_000, "{}", report.slowest);
    let _ = stop.send(());
    std::fs::remove_dir_all(dir).ok();
}
