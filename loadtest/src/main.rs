//! The `jwtd-load` command: corpus, run, echo-server, table.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use jwtd_load::corpus::{self, Corpus};
use jwtd_load::driver::{self, Stop};
use jwtd_load::report::{Context, Report};
use jwtd_load::scenario::{self, Alg, Kind, Reuse, Scenario};
use jwtd_load::view::View;
use jwtd_load::{echo, table};

/// Load testing for jwtd: token corpora, a lean gRPC load driver with
/// ghz-shaped reports, and an echo server that measures the transport
/// ceiling. Scenarios: single-cold, batch64-cold, batch64-hot, mixed, flood,
/// overload.
#[derive(Debug, Parser)]
#[command(name = "jwtd-load", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write a scenario's token corpus, JWKS and jwtd config (and a ghz
    /// data file) into a directory.
    Corpus(CorpusArgs),
    /// Drive a running jwtd (or echo-server) with a corpus and report.
    Run(RunArgs),
    /// Serve the Verify RPC with precomputed VALID results (the ceiling).
    EchoServer(EchoArgs),
    /// Print BENCHMARKS.md table rows (medians) from `run --format json` files.
    Table(TableArgs),
    /// The crypto floor: the corpus's RS256 tokens verified by aws-lc-rs
    /// with pre-parsed keys on N threads (a `raw-rs256` report for `table`).
    Raw(RawArgs),
}

#[derive(Debug, Args)]
struct RawArgs {
    /// A directory written by `jwtd-load corpus` (its VALID RS256 tokens).
    #[arg(long)]
    corpus: PathBuf,
    /// Threads verifying at once.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// How long to verify.
    #[arg(long, short = 'z', value_parser = parse_duration, default_value = "5s")]
    duration: Duration,
    /// Write the JSON report here instead of stdout.
    #[arg(long, short = 'o')]
    output: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct CorpusArgs {
    /// One of single-cold, batch64-cold, batch64-hot, mixed, flood, overload.
    #[arg(long)]
    scenario: String,
    /// The directory to write corpus.json, tokens.tsv, jwks.json, jwtd.toml into.
    #[arg(long)]
    out: PathBuf,
    /// Seed of every random choice.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// `iat` of the tokens (seconds since the epoch); default now.
    #[arg(long)]
    now: Option<i64>,
    /// Lifetime of the tokens, in seconds.
    #[arg(long, default_value_t = 86_400)]
    ttl: i64,
    /// `listen` of the written jwtd config ("127.0.0.1:0": any free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    /// `metrics_listen` of the written jwtd config ("" turns /metrics off).
    /// Default: off, except for overload, which gets a loopback port that is
    /// free now.
    #[arg(long)]
    metrics_listen: Option<String>,
    /// Also write a ghz --data-file (VerifyRequest messages in proto JSON).
    #[arg(long)]
    ghz_data: Option<PathBuf>,
    /// Override: tokens per call.
    #[arg(long)]
    batch: Option<usize>,
    /// Override: algorithms, comma-separated (RS256, RS256-3072, ES256, ES384, EdDSA).
    #[arg(long, value_delimiter = ',')]
    algs: Vec<String>,
    /// Override: distinct tokens (for cycle scenarios; the cold set for mixed
    /// and overload).
    #[arg(long)]
    distinct: Option<usize>,
    /// Override: share of invalid tokens, 0..=1.
    #[arg(long)]
    invalid_share: Option<f64>,
    /// Override: bytes of padding claims.
    #[arg(long)]
    claim_bytes: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Text,
    Json,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// A directory written by `jwtd-load corpus`.
    #[arg(long)]
    corpus: PathBuf,
    /// The server, host:port.
    #[arg(long, default_value = "127.0.0.1:50051")]
    addr: String,
    /// Override the corpus's tokens per call.
    #[arg(long)]
    batch: Option<usize>,
    /// HTTP/2 connections.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Calls in flight at once: the workers of a closed loop; with --rate,
    /// the cap on calls in flight (rate × timeout never holds a call back).
    #[arg(long, short = 'c', default_value_t = 16)]
    concurrency: usize,
    /// Calls per second, each sent at its due time whether or not earlier
    /// ones were answered (default: a closed loop, as fast as the server
    /// answers).
    #[arg(long)]
    rate: Option<f64>,
    /// Length of the measured phase (e.g. 10s, 500ms, 2m).
    #[arg(long, short = 'z', value_parser = parse_duration, conflicts_with = "count")]
    duration: Option<Duration>,
    /// Number of measured calls, instead of a duration.
    #[arg(long, short = 'n')]
    count: Option<u64>,
    /// Uncounted calls first, for this long.
    #[arg(long, value_parser = parse_duration, default_value = "1s")]
    warmup: Duration,
    /// Deadline of each call.
    #[arg(long, value_parser = parse_duration, default_value = "20s")]
    timeout: Duration,
    /// Driver threads (the driver shares the machine with the server).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Report format on stdout.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Write the report here instead of stdout.
    #[arg(long, short = 'o')]
    output: Option<PathBuf>,
    /// Exit 2 when failed calls plus calls with an unexpected token status
    /// exceed this share of all calls (0 = none allowed).
    #[arg(long)]
    max_error_rate: Option<f64>,
    /// Also report this process's CPU per token and peak RSS (Linux /proc).
    #[arg(long)]
    server_pid: Option<u32>,
    /// No progress bar.
    #[arg(long)]
    no_progress: bool,
    /// A label copied into the report's options (`jwtd-load table` groups by it).
    #[arg(long, default_value = "jwtd")]
    label: String,
    /// Count RESOURCE_EXHAUSTED answers with a valid grpc-retry-pushback-ms
    /// trailer as shed calls, not failed ones (a shed hot call still fails).
    #[arg(long)]
    allow_shed: bool,
    /// jwtd's /metrics (http://ADDR/metrics): report its own time per call,
    /// admitted and shed, over the measured phase.
    #[arg(long)]
    metrics_url: Option<String>,
    /// Ask for this view of each result (full, registered, status-only) and
    /// check each answered result has its shape (default: send no view,
    /// check statuses only).
    #[arg(long)]
    view: Option<View>,
}

#[derive(Debug, Args)]
struct EchoArgs {
    /// Address to listen on ("127.0.0.1:0": any free port, printed on stderr).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    /// Server threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// The shape of the answer to a request that names no view (one that
    /// names one gets its own): full, registered or status-only.
    #[arg(long, default_value = "full")]
    view: View,
}

#[derive(Debug, Args)]
struct TableArgs {
    /// JSON reports; grouped by their scenario and options.label.
    files: Vec<PathBuf>,
    /// Criterion's verify/raw/RS256 time per token in µs (for the 2× raw floor).
    #[arg(long)]
    raw_rs256_us: Option<f64>,
    /// Instead: one summary line per report (calls, tokens, statuses).
    #[arg(long, conflicts_with = "half_rate")]
    summary: bool,
    /// Instead: half the median calls/s of the reports, for a fixed-rate rerun.
    #[arg(long)]
    half_rate: bool,
    /// Instead: this many times the median admitted calls/s of the reports
    /// (e.g. 3 for an offered load of three times capacity).
    #[arg(long, conflicts_with_all = ["summary", "half_rate"])]
    rate_of: Option<f64>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("jwtd-load: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Corpus(args) => make_corpus(&args).map(|()| ExitCode::SUCCESS),
        Command::Run(args) => drive(&args),
        Command::EchoServer(args) => serve_echo(&args).map(|()| ExitCode::SUCCESS),
        Command::Raw(args) => {
            let checks = jwtd_load::raw::checks(&args.corpus)?;
            let rate = jwtd_load::raw::measure(&checks, args.threads, args.duration)?;
            let report = jwtd_load::raw::report(&args.corpus, args.threads, rate);
            let text = serde_json::to_string_pretty(&report)?;
            match &args.output {
                Some(path) => std::fs::write(path, text)?,
                None => println!("{text}"),
            }
            eprintln!(
                "raw RS256, {} threads: {rate:.0} checks/s ({} distinct tokens)",
                args.threads,
                checks.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Table(args) => {
            if args.summary {
                for file in &args.files {
                    println!("{}", table::summary(file)?);
                }
            } else if args.half_rate {
                println!("{:.0}", table::half_rate(&args.files)?);
            } else if let Some(factor) = args.rate_of {
                println!("{:.0}", table::rate_of(&args.files, factor)?);
            } else {
                print!("{}", table::render(&args.files, args.raw_rs256_us)?);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `10s`, `500ms`, `2m`, `1.5s` or plain seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = match text.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 10s or 500ms"))?;
    let scale = match unit {
        "ms" => 1e-3,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return Err(format!("{text:?}: unit must be ms, s, m or h")),
    };
    Duration::try_from_secs_f64(value * scale).map_err(|e| format!("{text:?}: {e}"))
}

fn make_corpus(args: &CorpusArgs) -> anyhow::Result<()> {
    let Some(mut scenario) = Scenario::named(&args.scenario) else {
        bail!(
            "unknown scenario {:?}; one of {}",
            args.scenario,
            scenario::NAMES.join(", ")
        );
    };
    if let Some(batch) = args.batch {
        scenario.batch = batch.max(1);
    }
    if !args.algs.is_empty() {
        scenario.algs = args
            .algs
            .iter()
            .map(|a| Alg::from_name(a).with_context(|| format!("unknown algorithm {a:?}")))
            .collect::<anyhow::Result<_>>()?;
    }
    if let Some(n) = args.distinct {
        scenario.reuse = match scenario.reuse {
            Reuse::Cycle { .. } => Reuse::Cycle { distinct: n },
            Reuse::HotCold { hot, hot_share, .. } => Reuse::HotCold {
                hot,
                cold: n,
                hot_share,
            },
            Reuse::HotColdCalls { hot, hot_share, .. } => Reuse::HotColdCalls {
                hot,
                cold: n,
                hot_share,
            },
        };
    }
    if let Some(share) = args.invalid_share {
        scenario.invalid_share = share;
        if scenario.invalid_kinds.is_empty() {
            scenario.invalid_kinds = vec![
                Kind::Expired,
                Kind::BadSignature,
                Kind::WrongAudience,
                Kind::Garbage,
            ];
        }
    }
    if let Some(bytes) = args.claim_bytes {
        scenario.claim_bytes = bytes;
    }
    let now = match args.now {
        Some(now) => now,
        None => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .context("the clock is before 1970")?
            .as_secs()
            .try_into()
            .context("the clock is past 2^63")?,
    };
    let metrics_listen = match args.metrics_listen.as_deref() {
        Some("") => None,
        Some(addr) => Some(addr.to_owned()),
        None if scenario.metrics => Some(free_loopback_port()?),
        None => None,
    };
    let options = corpus::Options {
        scenario,
        seed: args.seed,
        now,
        ttl: args.ttl,
        listen: args.listen.clone(),
        metrics_listen,
    };
    let corpus = corpus::generate(&options)?;
    corpus.write(&args.out)?;
    if let Some(path) = &args.ghz_data {
        let data = serde_json::to_vec(&corpus.ghz_data())?;
        std::fs::write(path, data).with_context(|| format!("cannot write {}", path.display()))?;
    }
    eprintln!(
        "jwtd-load corpus: {} ({} distinct tokens, stream of {}, {} per call{}{}) in {}",
        corpus.meta.scenario,
        corpus.meta.distinct,
        corpus.meta.stream,
        corpus.meta.batch,
        if corpus.meta.hot_calls.is_empty() {
            String::new()
        } else {
            format!(
                ", {} of {} calls hot",
                corpus.meta.hot_calls.len(),
                corpus.meta.stream / corpus.meta.batch.max(1)
            )
        },
        corpus
            .meta
            .metrics_listen
            .as_deref()
            .map_or(String::new(), |a| format!(", /metrics on {a}")),
        args.out.display()
    );
    Ok(())
}

/// A loopback address whose port is free now (the OS picks it; released at
/// once, so jwtd can bind it when it starts: another process could take it
/// in between, which `--metrics-listen` avoids).
fn free_loopback_port() -> anyhow::Result<String> {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").context("cannot find a free loopback port")?;
    Ok(listener.local_addr()?.to_string())
}

fn runtime(threads: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if threads > 0 {
        builder.worker_threads(threads);
    }
    builder
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")
}

fn drive(args: &RunArgs) -> anyhow::Result<ExitCode> {
    let corpus = Corpus::read(&args.corpus)?;
    let batch = args.batch.unwrap_or(corpus.meta.batch);
    let requests: Arc<[_]> = corpus.requests_in_view(batch, args.view).into();
    let stop = match (args.duration, args.count) {
        (_, Some(n)) => Stop::Count(n),
        (Some(d), None) => Stop::After(d),
        (None, None) => Stop::After(Duration::from_secs(10)),
    };
    let options = driver::Options {
        addr: args.addr.clone(),
        connections: args.connections,
        concurrency: args.concurrency,
        rate: args.rate,
        stop,
        warmup: args.warmup,
        timeout: args.timeout,
        progress: !args.no_progress,
        server_pid: args.server_pid,
        allow_shed: args.allow_shed,
        metrics_url: args.metrics_url.clone(),
    };
    if let Some(rate) = args.rate {
        let needed = (rate * args.timeout.as_secs_f64()).ceil();
        if (args.concurrency as f64) < needed {
            eprintln!(
                "jwtd-load: --concurrency {} is below rate × timeout ({needed:.0}): if the server \
                 falls behind, the driver will hold calls back (reported as throttled)",
                args.concurrency
            );
        }
    }
    let outcome = runtime(args.threads)?.block_on(async {
        let channels = driver::connect(&options.addr, options.connections, options.timeout).await?;
        driver::run(requests, channels, &options).await
    })?;
    if outcome.prime_failed > 0 {
        eprintln!(
            "jwtd-load: {} of {} hot calls failed when primed; hot calls may miss the memo",
            outcome.prime_failed, outcome.primed
        );
    }
    let (server_time, metrics_error) = match outcome.server_time {
        Some(Ok(times)) => (Some(times), None),
        Some(Err(e)) => (None, Some(e.to_string())),
        None => (None, None),
    };
    let context = Context {
        scenario: corpus.meta.scenario.clone(),
        batch,
        expected_mix: corpus
            .expected_mix()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v as u64))
            .collect(),
        total: outcome.total,
        driver_cpu: outcome.driver_cpu,
        server_cpu: outcome.server_cpu,
        server_peak_rss: outcome.server_peak_rss,
        options: serde_json::json!({
            "host": args.addr,
            "call": "jwtd.v1.VerifierService.Verify",
            "corpus": args.corpus,
            "connections": args.connections,
            "concurrency": args.concurrency,
            "rps": args.rate.unwrap_or(0.0),
            "duration": match stop { Stop::After(d) => d.as_nanos() as u64, Stop::Count(_) => 0 },
            "total": match stop { Stop::Count(n) => n, Stop::After(_) => 0 },
            "warmup": args.warmup.as_nanos() as u64,
            "threads": args.threads,
            "label": args.label,
            "timeout": args.timeout.as_nanos() as u64,
            "allowShed": args.allow_shed,
            "metricsUrl": args.metrics_url,
            "view": args.view.map(View::name),
        }),
        allow_shed: args.allow_shed,
        offered: outcome.offered,
        server_time,
        metrics_error,
        primed_calls: outcome.primed,
    };
    let report = Report::new(&outcome.tally, context);
    let rendered = match args.format {
        Format::Text => report.text(),
        Format::Json => serde_json::to_string_pretty(&report)? + "\n",
    };
    match &args.output {
        Some(path) => std::fs::write(path, rendered)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => print!("{rendered}"),
    }
    if report.count == 0 {
        eprintln!("jwtd-load: no call completed in the measured phase");
        return Ok(ExitCode::from(2));
    }
    if let Some(e) = &report.metrics_error {
        eprintln!("jwtd-load: --metrics-url gave no server time: {e}");
        return Ok(ExitCode::from(2));
    }
    if let Some(max) = args.max_error_rate
        && report.error_rate > max
    {
        eprintln!(
            "jwtd-load: error rate {:.4}% is over --max-error-rate {:.4}% ({} unexpected tokens; {}; errors: {:?})",
            100.0 * report.error_rate,
            100.0 * max,
            report.unexpected_tokens,
            report
                .first_unexpected
                .as_deref()
                .unwrap_or("no unexpected token"),
            report.error_distribution,
        );
        return Ok(ExitCode::from(2));
    }
    Ok(ExitCode::SUCCESS)
}

fn serve_echo(args: &EchoArgs) -> anyhow::Result<()> {
    runtime(args.threads)?.block_on(async {
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let addr = listener.local_addr()?;
        // The same shape as jwtd's ready line, so one script finds both ports.
        eprintln!("jwtd-load echo-server ready addr={addr}");
        echo::serve_echo(echo::Echo::with_default_view(args.view), listener, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("3d").is_err());
    }
}
