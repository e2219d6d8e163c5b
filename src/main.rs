//! The `jwtd` command: parse arguments, load config, init logs, serve.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use clap::{Args, Parser, Subcommand};
use jwtd::clock::{Clock as _, SystemClock};
use jwtd::config::Config;
use jwtd::jose::Algorithm;
use jwtd::mint::Signer;
use jwtd::policy::Trust;
use jwtd::server;
use serde_json::{Map, Value};
use tracing_subscriber::EnvFilter;

/// jwtd verifies JSON Web Tokens for other services over gRPC.
///
/// With no command, jwtd serves: Verify (jwtd.v1.VerifierService), gRPC
/// health and server reflection on the configured `listen` address. Logs go to
/// stderr; RUST_LOG filters them (default "info").
#[derive(Debug, Parser)]
#[command(name = "jwtd", version, propagate_version = true)]
struct Cli {
    /// The TOML config file.
    #[arg(long, short = 'c', env = "JWTD_CONFIG", global = true)]
    config: Option<PathBuf>,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve Verify, health and reflection (the default).
    Serve,
    /// Validate the config and load every key set, then exit: 0 when good,
    /// 1 with a message naming the key and the problem when not.
    CheckConfig,
    /// Sign a development token with a local PKCS#8 private key and print it.
    Mint(MintArgs),
}

#[derive(Debug, Args)]
struct MintArgs {
    /// PEM file with a PKCS#8 private key (RSA, EC P-256/384/521, Ed25519).
    #[arg(long)]
    key: PathBuf,
    /// Signature algorithm; defaults to RS256, ES256/384/512 or EdDSA by key.
    #[arg(long)]
    alg: Option<String>,
    /// The header's kid.
    #[arg(long)]
    kid: Option<String>,
    /// The iss claim.
    #[arg(long)]
    iss: String,
    /// The sub claim.
    #[arg(long)]
    sub: Option<String>,
    /// An aud value; repeat for several.
    #[arg(long)]
    aud: Vec<String>,
    /// Lifetime in seconds, from now (sets iat and exp).
    #[arg(long, default_value_t = 3600, allow_negative_numbers = true)]
    ttl: i64,
    /// An extra claim as NAME=JSON (e.g. scope="\"read write\"" or admin=true);
    /// repeat for several.
    #[arg(long = "claim", value_name = "NAME=JSON")]
    claims: Vec<String>,
}

/// How long in-flight calls may take to finish after SIGTERM or SIGINT.
const DRAIN_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logs();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("jwtd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logs() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(&load_config(cli.config)?),
        Command::CheckConfig => {
            let config = load_config(cli.config)?;
            let trust = load_trust(&config)?;
            let keys: usize = trust.issuers().map(key_count).sum();
            println!(
                "config ok: {} issuer(s), {keys} usable key(s), listen {}",
                config.issuers.len(),
                config.listen
            );
            Ok(())
        }
        Command::Mint(args) => {
            println!("{}", mint(&args)?);
            Ok(())
        }
    }
}

fn load_config(path: Option<PathBuf>) -> anyhow::Result<Config> {
    let Some(path) = path else {
        bail!("no config: pass --config PATH or set JWTD_CONFIG (see README: dev/jwtd.dev.toml)");
    };
    Ok(Config::load(&path)?)
}

fn key_count(issuer: &jwtd::policy::TrustedIssuer) -> usize {
    match &issuer.keys {
        jwtd::policy::KeyState::Loaded(set) => set.len(),
        jwtd::policy::KeyState::Unavailable => 0,
    }
}

fn load_trust(config: &Config) -> anyhow::Result<Trust> {
    let (trust, refused) = server::load_trust(config)?;
    for (issuer, refused) in refused {
        tracing::warn!(%issuer, "refused {refused}");
    }
    Ok(trust)
}

fn serve(config: &Config) -> anyhow::Result<()> {
    let trust = Arc::new(load_trust(config)?);
    let runtime = tokio::runtime::Runtime::new().context("cannot start the tokio runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let addr = listener.local_addr()?;
        for issuer in trust.issuers() {
            tracing::info!(
                issuer = issuer.policy.issuer(),
                keys = key_count(issuer),
                "issuer loaded"
            );
        }
        tracing::info!(%addr, "jwtd ready: serving jwtd.v1.VerifierService, grpc.health.v1 and reflection");
        // In-flight calls get DRAIN_LIMIT to finish after the signal; clients
        // that keep idle connections open cannot hold the process past it.
        let (signalled, mut drain) = tokio::sync::watch::channel(false);
        let serving = server::serve(
            listener,
            trust,
            config.limits,
            Arc::new(SystemClock),
            async move {
                shutdown_signal().await;
                let _ = signalled.send(true);
            },
        );
        tokio::select! {
            result = serving => result?,
            _ = async {
                let _ = drain.wait_for(|s| *s).await;
                tokio::time::sleep(DRAIN_LIMIT).await;
            } => tracing::warn!("connections still open after {DRAIN_LIMIT:?}; closing them"),
        }
        tracing::info!("jwtd stopped");
        Ok(())
    })
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = term.recv() => {}
                }
            }
            Err(e) => {
                tracing::warn!("cannot watch SIGTERM ({e}); stopping on SIGINT only");
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
    tracing::info!("shutdown signal received; draining in-flight calls");
}

fn mint(args: &MintArgs) -> anyhow::Result<String> {
    let pem = std::fs::read_to_string(&args.key)
        .with_context(|| format!("cannot read {}", args.key.display()))?;
    let alg = match &args.alg {
        None => None,
        Some(name) => Some(
            Algorithm::from_name(name).with_context(|| format!("unsupported --alg {name:?}"))?,
        ),
    };
    let signer = Signer::from_pkcs8_pem(&pem, alg)?;
    let now = SystemClock.now().0;
    let mut claims = Map::new();
    claims.insert("iss".into(), args.iss.clone().into());
    if let Some(sub) = &args.sub {
        claims.insert("sub".into(), sub.clone().into());
    }
    match args.aud.as_slice() {
        [] => {}
        [one] => {
            claims.insert("aud".into(), one.clone().into());
        }
        many => {
            claims.insert("aud".into(), many.to_vec().into());
        }
    }
    claims.insert("iat".into(), now.into());
    claims.insert("exp".into(), now.saturating_add(args.ttl).into());
    for claim in &args.claims {
        let (name, json) = claim
            .split_once('=')
            .with_context(|| format!("--claim {claim:?} is not NAME=JSON"))?;
        let value: Value = serde_json::from_str(json)
            .with_context(|| format!("--claim {name}: {json:?} is not JSON"))?;
        claims.insert(name.to_owned(), value);
    }
    Ok(signer.sign(args.kid.as_deref(), &claims)?)
}
