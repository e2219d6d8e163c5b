//! The `jwtd` command: parse arguments, load config, init logs, serve.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use clap::{Args, Parser, Subcommand};
use jwtd::audit;
use jwtd::clock::{Clock as _, SystemClock};
use jwtd::config::{AuditMode, Config, RevocationConfig};
use jwtd::engine::Engine;
use jwtd::jose::Algorithm;
use jwtd::mint::Signer;
use jwtd::otel::{self, TraceSettings, Tracing};
use jwtd::policy::{KeyState, TrustedIssuer};
use jwtd::registry::{self, Registry};
use jwtd::revocation::Entry;
use jwtd::server;
use jwtd::telemetry;
use serde_json::{Map, Value};
use tracing_subscriber::EnvFilter;

/// jwtd verifies JSON Web Tokens for other services over gRPC.
///
/// With no command, jwtd serves: Verify (jwtd.v1.VerifierService), Envoy's
/// Check (envoy.service.auth.v3.Authorization), gRPC health and server
/// reflection on the configured `listen` address. Logs go to
/// stderr; RUST_LOG filters them (default "info").
#[derive(Debug, Parser)]
#[command(name = "jwtd", version = jwtd::VERSION, propagate_version = true)]
struct Cli {
    /// The TOML config file.
    #[arg(long, short = 'c', env = "JWTD_CONFIG", global = true)]
    config: Option<PathBuf>,

    /// Log format on stderr: `human`, or `json` (one object per line) for
    /// log collectors.
    #[arg(long, value_enum, default_value_t = LogFormat::Human, global = true)]
    log_format: LogFormat,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve Verify, Check, health and reflection (the default).
    Serve,
    /// Validate the config and load every key set, then exit: 0 when good,
    /// 1 with a message naming the key and the problem when not.
    CheckConfig,
    /// Sign a development token with a local PKCS#8 private key and print it.
    Mint(MintArgs),
    /// Revoke a token (--jti) or every earlier token of a subject (--sub):
    /// write the entry to the config's `[revocation] redis_url`, publish it
    /// to every running jwtd, and print it as one JSON line (the file
    /// source's format).
    Revoke(RevokeArgs),
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["jti", "sub"])))]
struct RevokeArgs {
    /// The issuer of the token(s), exactly as in their iss claim.
    #[arg(long)]
    iss: String,
    /// Revoke the token with this jti.
    #[arg(long)]
    jti: Option<String>,
    /// With --jti: the token's exp (seconds since the epoch); default now
    /// plus `[revocation] max_token_lifetime_seconds`.
    #[arg(long, requires = "jti", allow_negative_numbers = true)]
    exp: Option<i64>,
    /// Revoke every token of this subject issued before --at.
    #[arg(long)]
    sub: Option<String>,
    /// With --sub: the revocation time (seconds since the epoch); default now.
    #[arg(long, requires = "sub", allow_negative_numbers = true)]
    at: Option<i64>,
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

/// How long in-flight calls may take to finish after SIGTERM or SIGINT and
/// the drain period.
const DRAIN_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("jwtd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr, filtered by RUST_LOG; with `tracing`, jwtd's spans (and
/// warnings and errors, as span events) also go to OpenTelemetry. Log lines
/// inside a traced call carry its `trace_id` and `span_id` (fields of the
/// call's span), so a log search and a trace search meet.
///
/// The audit trail gets a subscriber of its own on stderr, in the same
/// format, whatever RUST_LOG says (`jwtd::audit` explains why).
fn init_logs(format: LogFormat, tracing: Option<&Tracing>, audit_mode: AuditMode) {
    use tracing_subscriber::filter::FilterExt as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    use tracing_subscriber::{Layer as _, Registry};

    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    if audit_mode != AuditMode::Off {
        let audit = tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_max_level(tracing::Level::INFO);
        audit::install(match format {
            LogFormat::Human => audit
                .with_ansi(std::io::stderr().is_terminal())
                .finish()
                .into(),
            LogFormat::Json => audit.json().finish().into(),
        });
    }
    // Per-token rejection events are for traces only.
    let logged = filter.and(otel::ByMetadata(|m| {
        !(m.is_event() && m.target() == otel::TARGET)
    }));
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let logs: Box<dyn tracing_subscriber::Layer<Registry> + Send + Sync> = match format {
        LogFormat::Human => logs.with_ansi(std::io::stderr().is_terminal()).boxed(),
        LogFormat::Json => logs
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .boxed(),
    };
    let registry = tracing_subscriber::registry().with(logs.with_filter(logged));
    // Not an `Option` layer: a `None` layer still says "always" to every
    // callsite, so the registry would open every trace-level span of h2.
    match tracing {
        Some(tracing) => registry.with(tracing.layer()).init(),
        None => registry.init(),
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let command = cli.command.unwrap_or(Command::Serve);
    if let Command::Mint(args) = &command {
        println!("{}", mint(args)?);
        return Ok(());
    }
    let Some(path) = cli.config else {
        bail!("no config: pass --config PATH or set JWTD_CONFIG (see README: dev/jwtd.dev.toml)");
    };
    let config = Config::load(&path)?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the tokio runtime")?;
    if let Command::Revoke(args) = &command {
        println!("{}", runtime.block_on(revoke(&config, args))?);
        return Ok(());
    }
    if let Command::CheckConfig = command {
        init_logs(cli.log_format, None, AuditMode::Off);
        TraceSettings::resolve(&config.telemetry, |name| std::env::var(name).ok())?;
        return runtime.block_on(check_config(&config));
    }
    let settings = TraceSettings::resolve(&config.telemetry, |name| std::env::var(name).ok())?;
    // The gRPC exporter's channel lives on the runtime: build it inside.
    let tracing = match &settings {
        Some(settings) => Some(runtime.block_on(async { Tracing::start(settings) })?),
        None => None,
    };
    init_logs(cli.log_format, tracing.as_ref(), config.audit.mode);
    if let Some(settings) = &settings {
        tracing::info!(
            endpoint = ?settings.endpoint,
            protocol = ?settings.protocol,
            service = %settings.service_name,
            sampler = ?settings.sampler,
            "exporting traces by OTLP"
        );
    }
    let served = runtime.block_on(serve(path, config));
    if let Some(tracing) = tracing {
        // Flushes queued spans; blocking, and the exporter needs the runtime.
        let _ = runtime.block_on(runtime.spawn_blocking(move || tracing.shutdown()));
    }
    served
}

/// Loads every issuer's keys once (fetching URL sources) and reports.
async fn check_config(config: &Config) -> anyhow::Result<()> {
    for warning in config.warnings() {
        tracing::warn!("{warning}");
    }
    let mut keys = 0;
    for (index, issuer) in config.issuers.iter().enumerate() {
        let name = issuer.policy.issuer();
        let (set, refused) = registry::load_once(issuer, config.fetch)
            .await
            .with_context(|| format!("issuers[{index}] ({name})"))?;
        for r in refused {
            tracing::warn!(issuer = name, "refused {r}");
        }
        keys += set.len();
    }
    if let Some(tls) = &config.tls {
        jwtd::tls::server_config(tls).context("[tls]")?;
    }
    if let Some(revocation) = &config.revocation {
        check_revocation(revocation, config.fetch)
            .await
            .context("[revocation]")?;
    }
    println!(
        "config ok: {} issuer(s), {keys} usable key(s), listen {}",
        config.issuers.len(),
        config.listen
    );
    Ok(())
}

/// Reads the revocation list file and URL once, and PINGs the Redis.
async fn check_revocation(
    config: &RevocationConfig,
    fetch: jwtd::keys::fetch::FetchLimits,
) -> anyhow::Result<()> {
    use jwtd::revocation::{file, parse_list, redis::Redis, url};
    let report = |what: &str, list: &jwtd::revocation::ParsedList| {
        for bad in &list.bad {
            tracing::warn!("{what}: line {} skipped: {}", bad.line, bad.error);
        }
        tracing::info!("{what}: {} entries", list.entries.len());
    };
    if let Some(path) = &config.file {
        let list = file::read_list(path, config.max_list_bytes).await?;
        report(&format!("file {}", path.display()), &list);
    }
    if let Some(list_url) = &config.url {
        let limits = jwtd::keys::fetch::FetchLimits {
            max_bytes: config.max_list_bytes,
            ..fetch
        };
        let fetcher = jwtd::keys::fetch::Fetcher::new(limits, config.allow_insecure_http)?;
        let shown = url::shown(list_url);
        let fetched = fetcher
            .get_if_none_match(list_url, url::ACCEPT, None)
            .await
            .with_context(|| format!("url {shown}"))?;
        if let jwtd::keys::fetch::Conditional::Fetched { body, .. } = fetched {
            report(&format!("url {shown}"), &parse_list(&body));
        }
    }
    if let Some(redis_url) = &config.redis_url {
        Redis::new(redis_url, &config.redis_prefix)?.ping().await?;
    }
    Ok(())
}

/// `jwtd revoke`: the entry, written and published, as one JSON line.
async fn revoke(config: &Config, args: &RevokeArgs) -> anyhow::Result<String> {
    let Some(revocation) = &config.revocation else {
        bail!(
            "the config has no [revocation] section with a redis_url: jwtd revoke writes to Redis"
        );
    };
    let now = SystemClock.now();
    let entry = match (&args.jti, &args.sub) {
        (Some(jti), _) => Entry::Jti {
            iss: args.iss.clone(),
            jti: jti.clone(),
            exp: args
                .exp
                .unwrap_or(now.0.saturating_add(revocation.max_token_lifetime_seconds)),
        },
        (None, Some(sub)) => Entry::Subject {
            iss: args.iss.clone(),
            sub: sub.clone(),
            revoked_at: args.at.unwrap_or(now.0),
        },
        // clap's group requires one of the two.
        (None, None) => bail!("pass --jti or --sub"),
    };
    // The same rules as a list line: what is written must load.
    let line = entry.to_line();
    jwtd::revocation::parse_entry(line.as_bytes()).context("the entry is not valid")?;
    let leeway = config
        .issuers
        .iter()
        .find(|c| c.policy.issuer() == args.iss)
        .map(|c| c.policy.leeway().seconds());
    let until = jwtd::revocation::redis::revoke(revocation, &entry, leeway, now).await?;
    tracing::debug!(until, "revocation written");
    Ok(line)
}

async fn serve(path: PathBuf, config: Config) -> anyhow::Result<()> {
    if let Some(addr) = config.metrics_listen {
        telemetry::serve_metrics(addr)?;
        tracing::info!(%addr, "serving Prometheus metrics at /metrics");
    }
    for warning in config.warnings() {
        tracing::warn!("{warning}");
    }
    let (registry, refused) = Registry::start(&config).await?;
    for (issuer, r) in refused {
        tracing::warn!(%issuer, "refused {r}");
    }
    if let Some(tls) = &config.tls {
        // Refuse bad certificate files now, not after the ready line.
        jwtd::tls::server_config(tls)?;
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    for issuer in registry.snapshot().trust.issuers() {
        tracing::info!(
            issuer = issuer.policy.issuer(),
            keys = key_count(issuer),
            "issuer configured"
        );
    }
    let scheme = if config.tls.is_some() {
        "TLS"
    } else {
        "plaintext"
    };
    tracing::info!(%addr, scheme, version = jwtd::VERSION, "jwtd ready: serving jwtd.v1.VerifierService, envoy.service.auth.v3.Authorization, grpc.health.v1 and reflection");
    let reloads = tokio::spawn(reload_on_sighup(
        path,
        config.clone(),
        Arc::clone(&registry),
    ));

    // After the signal: readiness flips, calls are served for the drain
    // period, then in-flight calls get DRAIN_LIMIT to finish; clients that
    // keep idle connections open cannot hold the process past it.
    let (signalled, mut drain) = tokio::sync::watch::channel(false);
    let clock: Arc<dyn jwtd::clock::Clock> = Arc::new(SystemClock);
    let mut engine = Engine::new(registry, Arc::clone(&clock), config.cache)?;
    if let Some(revocation) = &config.revocation {
        let store = jwtd::revocation::start(
            revocation,
            &config.issuers,
            config.startup,
            config.fetch,
            clock,
        )?;
        for source in store.sources() {
            tracing::info!(
                source = source.kind().name(),
                location = source.location(),
                on_stale = ?revocation.on_stale,
                "revocation source configured"
            );
        }
        engine = engine.with_revocations(store);
    }
    let engine = Arc::new(engine);
    let options = server::ServeOptions {
        server: config.server,
        tls: config.tls.clone(),
        ext_authz: config.ext_authz.clone(),
        callers: config.callers.clone(),
        audit: config.audit,
    };
    let limit = config.server.drain + DRAIN_LIMIT;
    let serving = server::serve_with(listener, engine, options, async move {
        shutdown_signal().await;
        let _ = signalled.send(true);
    });
    tokio::select! {
        result = serving => result?,
        _ = async {
            let _ = drain.wait_for(|s| *s).await;
            tokio::time::sleep(limit).await;
        } => tracing::warn!("connections still open {limit:?} after the signal; closing them"),
    }
    reloads.abort();
    tracing::info!("jwtd stopped");
    Ok(())
}

fn key_count(issuer: &TrustedIssuer) -> usize {
    match &issuer.keys {
        KeyState::Loaded(set) => set.len(),
        KeyState::Unavailable => 0,
    }
}

/// Re-reads the config file on every SIGHUP. A config that does not parse,
/// validate or load is rejected with a log line; the running one stays.
/// Changes that only a restart applies (compared with the config jwtd
/// `started` with) are named in a warning rather than silently ignored.
async fn reload_on_sighup(path: PathBuf, started: Config, registry: Arc<Registry>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hup = match signal(SignalKind::hangup()) {
            Ok(hup) => hup,
            Err(e) => {
                tracing::warn!("cannot watch SIGHUP ({e}); config reload is off");
                return;
            }
        };
        while hup.recv().await.is_some() {
            tracing::info!(path = %path.display(), "SIGHUP: reloading config");
            let config = match Config::load(&path) {
                Ok(config) => config,
                Err(e) => {
                    tracing::error!("config reload rejected, keeping the running config: {e}");
                    continue;
                }
            };
            let later = started.restart_only_changes(&config);
            if !later.is_empty() {
                tracing::warn!(
                    "{} changed in the file; that takes a restart, the running values stay",
                    later.join(", ")
                );
            }
            let config = started.reloaded(config);
            if let Some(n) = config.limits.max_pending_tokens
                && n < config.limits.max_batch
            {
                tracing::warn!(
                    "limits.max_pending_tokens ({n}) is under the running limits.max_batch ({}); \
                     the bound is {} until a restart applies the file's max_batch",
                    config.limits.max_batch,
                    config.limits.max_batch
                );
            }
            match registry.reload(&config).await {
                Ok(refused) => {
                    for (issuer, r) in refused {
                        tracing::warn!(%issuer, "refused {r}");
                    }
                    tracing::info!(issuers = config.issuers.len(), "config reloaded");
                }
                Err(e) => {
                    tracing::error!("config reload rejected, keeping the running config: {e}");
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (path, started, registry);
    }
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
