//! Short runs of the real driver against the echo server and against jwtd
//! itself, both in-process on 127.0.0.1:0. Counts and statuses only: no
//! timing assertions.

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
use tokio::net::TcpListener;
use tokio::sync::oneshot;

fn scratch(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("jwtd-load-test-{}-{name}", std::process::id()))
}

/// A scenario's corpus, shrunk for a test, written to a scratch directory.
fn small_corpus(name: &str) -> (Corpus, PathBuf) {
    let mut scenario = Scenario::named(name).unwrap();
    scenario.reuse = match scenario.reuse {
        Reuse::Cycle { .. } => Reuse::Cycle { distinct: 64 },
        Reuse::HotCold { hot_share, .. } => Reuse::HotCold {
            hot: 32,
            cold: 64,
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
    };
    let corpus = corpus::generate(&options).unwrap();
    let dir = scratch(name);
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
    }
}

async fn drive(corpus: &Corpus, addr: String, stop: Stop, rate: Option<f64>) -> Report {
    let options = options(addr, stop, rate);
    let channels = driver::connect(&options.addr, options.connections, options.timeout)
        .await
        .unwrap();
    let outcome = driver::run(
        corpus.requests(corpus.meta.batch).into(),
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
