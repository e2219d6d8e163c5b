//! The TOML configuration: raw serde structs that refuse unknown keys, turned
//! into typed, validated values. Errors name the key and the bad value. Reads
//! the config file; reads no key material (see `keys` and `server`).
//!
//! ```toml
//! listen = "127.0.0.1:50051"
//! metrics_listen = "127.0.0.1:9464" # "" turns /metrics off
//! startup = "wait"               # or "serve"
//! [limits]
//! max_batch = 1024
//! max_token_bytes = 8192
//! [cache]
//! memo_entries = 100000          # 0 turns the memo off
//! memo_max_bytes = 268435456
//! memo_max_ttl_seconds = 300
//! negative_entries = 10000
//! negative_ttl_seconds = 30
//! threads = 0                    # verification threads; 0 = one per core
//! [fetch]
//! connect_timeout_seconds = 5
//! timeout_seconds = 10
//! max_response_bytes = 1048576
//! max_redirects = 3
//! [[issuers]]
//! issuer = "https://issuer.example"
//! jwks_file = "keys/jwks.json"   # or jwks_uri = "https://…", or discovery_uri = "https://…"
//! audiences = ["orders-api"]
//! algorithms = ["RS256", "ES256"]
//! leeway_seconds = 60
//! required_claims = ["sub"]
//! require_exp = true
//! allow_insecure_http = false
//! refresh_seconds = 300          # 5 for jwks_file (how often its mtime is checked)
//! min_refresh_seconds = 60
//! max_refresh_seconds = 3600
//! max_stale_seconds = 86400
//! kid_miss_wait_ms = 500
//! [server]
//! drain_seconds = 5              # after SIGTERM: NOT_SERVING, still serving
//! http2_keepalive_interval_seconds = 30
//! http2_keepalive_timeout_seconds = 10
//! max_connection_age_seconds = 300
//! [tls]                          # optional; absent = plaintext
//! cert_file = "tls/tls.crt"
//! key_file = "tls/tls.key"
//! client_ca_file = "tls/ca.crt"  # optional: require client certificates
//! reload_seconds = 10
//! [ext_authz]                    # Envoy's Check
//! header = "authorization"
//! prefix = "Bearer "
//! allow_missing = false
//! subject_header = "x-jwt-sub"
//! issuer_header = "x-jwt-iss"
//! claim_to_headers = { scope = "x-jwt-scope" }
//! payload_header = ""            # e.g. "x-jwt-payload" (base64url)
//! remove_authorization = false
//! [telemetry]                    # each key yields to its OTEL_* variable
//! otlp_endpoint = "http://otel-collector:4317"   # unset: no trace export
//! otlp_protocol = "grpc"         # or "http/protobuf"
//! service_name = "jwtd"
//! resource_attributes = { "deployment.environment" = "prod" }
//! traces_sampler = "parentbased_traceidratio"
//! traces_sampler_arg = 0.25
//! max_queued_spans = 2048
//! ```
//!
//! Durations in seconds may be fractional (`0.25`), which tests use to keep
//! refresh and outage scenarios short.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::Url;
use serde::Deserialize;

use crate::runtime::engine::EngineConfig;
use crate::transport::ext_authz::{ExtAuthzConfig, valid_header_name};
use crate::verifier::jose::{Algorithm, AlgorithmSet};
use crate::keys::KeySetError;
use crate::keys::fetch::FetchLimits;
use crate::observability::otel::{self, TelemetryConfig};
use crate::verifier::policy::{IssuerPolicy, Leeway, PolicyError};

/// Default listen address: loopback only, so a bare start exposes nothing.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:50051";
/// Default `metrics_listen`: loopback, the port OpenTelemetry's Prometheus
/// exporters use.
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9464";
/// Default and bounds of `limits.max_batch`.
pub const DEFAULT_MAX_BATCH: usize = 1024;
/// Largest accepted `limits.max_batch`.
pub const MAX_MAX_BATCH: usize = 100_000;
/// Default `limits.max_token_bytes`.
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 8192;
/// Bounds of `limits.max_token_bytes`.
pub const MAX_TOKEN_BYTES_RANGE: std::ops::RangeInclusive<usize> = 256..=1024 * 1024;

/// Why a configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {reason}")]
    Read {
        /// The config file.
        path: String,
        /// The I/O error.
        reason: String,
    },
    /// Not valid TOML, an unknown key, or a value of the wrong type.
    #[error("{path}: {message}")]
    Parse {
        /// The config file.
        path: String,
        /// The TOML parser's message (it names the line and the key).
        message: String,
    },
    /// A value breaks a rule.
    #[error("{key}: {problem}")]
    Invalid {
        /// The key, e.g. `issuers[0].algorithms`.
        key: String,
        /// What is wrong with it.
        problem: String,
    },
    /// An issuer's key set could not be loaded.
    #[error("issuers[{index}] ({issuer}): {error}")]
    Keys {
        /// Position in `[[issuers]]`.
        index: usize,
        /// The issuer.
        issuer: String,
        /// Why the set was refused.
        error: KeySetError,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: Option<String>,
    metrics_listen: Option<String>,
    startup: Option<String>,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    fetch: RawFetch,
    #[serde(default)]
    cache: RawCache,
    #[serde(default)]
    telemetry: RawTelemetry,
    #[serde(default)]
    server: RawServer,
    tls: Option<RawTls>,
    #[serde(default)]
    ext_authz: RawExtAuthz,
    #[serde(default)]
    issuers: Vec<RawIssuer>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    drain_seconds: Option<f64>,
    http2_keepalive_interval_seconds: Option<f64>,
    http2_keepalive_timeout_seconds: Option<f64>,
    max_connection_age_seconds: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert_file: PathBuf,
    key_file: PathBuf,
    client_ca_file: Option<PathBuf>,
    reload_seconds: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExtAuthz {
    header: Option<String>,
    prefix: Option<String>,
    allow_missing: Option<bool>,
    subject_header: Option<String>,
    issuer_header: Option<String>,
    #[serde(default)]
    claim_to_headers: BTreeMap<String, String>,
    payload_header: Option<String>,
    remove_authorization: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTelemetry {
    otlp_endpoint: Option<String>,
    otlp_protocol: Option<String>,
    service_name: Option<String>,
    #[serde(default)]
    resource_attributes: BTreeMap<String, String>,
    traces_sampler: Option<String>,
    traces_sampler_arg: Option<f64>,
    max_queued_spans: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCache {
    memo_entries: Option<usize>,
    memo_max_bytes: Option<usize>,
    memo_max_ttl_seconds: Option<i64>,
    negative_entries: Option<usize>,
    negative_ttl_seconds: Option<i64>,
    threads: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFetch {
    connect_timeout_seconds: Option<f64>,
    timeout_seconds: Option<f64>,
    max_response_bytes: Option<usize>,
    max_redirects: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_batch: Option<usize>,
    max_token_bytes: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIssuer {
    issuer: String,
    jwks_file: Option<PathBuf>,
    audiences: Option<Vec<String>>,
    algorithms: Option<Vec<String>>,
    leeway_seconds: Option<i64>,
    required_claims: Option<Vec<String>>,
    require_exp: Option<bool>,
    jwks_uri: Option<String>,
    discovery_uri: Option<String>,
    allow_insecure_http: Option<bool>,
    refresh_seconds: Option<f64>,
    min_refresh_seconds: Option<f64>,
    max_refresh_seconds: Option<f64>,
    max_stale_seconds: Option<f64>,
    kid_miss_wait_ms: Option<u64>,
}

/// Request limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most tokens in one Verify call.
    pub max_batch: usize,
    /// Longest token decoded.
    pub max_token_bytes: usize,
}

/// Where an issuer's keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// A local JWK Set file (absolute, or resolved against the config's folder).
    File(PathBuf),
    /// A JWK Set URL.
    JwksUri(Url),
    /// An OpenID Connect discovery document whose `jwks_uri` names the set.
    Discovery(Url),
}

/// How an issuer's keys are kept fresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefreshPolicy {
    /// Refresh interval without Cache-Control max-age (for files: how often
    /// the file is checked for changes).
    pub refresh: Duration,
    /// Lower bound of the interval, and the rate limit of unknown-kid refreshes.
    pub min: Duration,
    /// Upper bound of the interval (and of retry backoff).
    pub max: Duration,
    /// How long the last good set keeps serving while fetches fail.
    pub max_stale: Duration,
    /// How long a request with an unknown kid waits for the refresh it caused.
    pub kid_miss_wait: Duration,
}

/// One `[[issuers]]` entry, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerConfig {
    /// What the issuer's tokens must satisfy.
    pub policy: IssuerPolicy,
    /// Where its keys come from.
    pub source: KeySource,
    /// Plain-http URLs are allowed (loopback and tests only).
    pub allow_insecure_http: bool,
    /// How the keys are refreshed.
    pub refresh: RefreshPolicy,
}

/// Whether Verify is reported healthy before every issuer's keys loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Startup {
    /// Health stays NOT_SERVING until every issuer loaded once.
    #[default]
    Wait,
    /// Health is SERVING at once; tokens of issuers without keys get
    /// KEYS_UNAVAILABLE meanwhile.
    Serve,
}

/// How connections are kept and let go (`[server]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerConfig {
    /// After SIGTERM: health says NOT_SERVING and jwtd keeps serving this
    /// long, so the mesh stops routing to it, before it stops accepting.
    pub drain: Duration,
    /// HTTP/2 PING interval on idle connections.
    pub http2_keepalive_interval: Duration,
    /// How long a PING may go unanswered before the connection is closed.
    pub http2_keepalive_timeout: Duration,
    /// Connections are closed gracefully (GOAWAY) after this long, so
    /// long-lived mesh connections rebalance across replicas.
    pub max_connection_age: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            drain: Duration::from_secs(5),
            http2_keepalive_interval: Duration::from_secs(30),
            http2_keepalive_timeout: Duration::from_secs(10),
            max_connection_age: Duration::from_secs(300),
        }
    }
}

/// TLS on the gRPC port (`[tls]`); mTLS when a client CA is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// PEM certificate chain.
    pub cert_file: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// PEM CA bundle that client certificates must chain to.
    pub client_ca_file: Option<PathBuf>,
    /// How often the files are checked for changes.
    pub reload: Duration,
}

/// A validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The gRPC listen address.
    pub listen: SocketAddr,
    /// Where `/metrics` is served (Prometheus text format); `None` is off.
    pub metrics_listen: Option<SocketAddr>,
    /// Health before keys load.
    pub startup: Startup,
    /// Request limits.
    pub limits: Limits,
    /// Bounds on key fetches.
    pub fetch: FetchLimits,
    /// Memo and verification pool (read at start; a reload keeps them).
    pub cache: EngineConfig,
    /// Connection lifecycle.
    pub server: ServerConfig,
    /// TLS on the gRPC port; `None` serves plaintext (a sidecar's job).
    pub tls: Option<TlsConfig>,
    /// Envoy ext_authz Check.
    pub ext_authz: ExtAuthzConfig,
    /// Trace export; the `OTEL_*` variables override it at start
    /// ([`crate::observability::otel::TraceSettings::resolve`]).
    pub telemetry: TelemetryConfig,
    /// Trusted issuers, in file order.
    pub issuers: Vec<IssuerConfig>,
}

impl Config {
    /// The top-level keys and sections that `new` changes and that only a
    /// restart applies: a reload (SIGHUP) applies `startup`, `[limits]`,
    /// `[fetch]` and the issuers, and nothing else. Listeners, the pool, TLS
    /// settings, ext_authz and telemetry are built once at start.
    pub fn restart_only_changes(&self, new: &Config) -> Vec<&'static str> {
        [
            ("listen", self.listen != new.listen),
            ("metrics_listen", self.metrics_listen != new.metrics_listen),
            ("[cache]", self.cache != new.cache),
            ("[server]", self.server != new.server),
            ("[tls]", self.tls != new.tls),
            ("[ext_authz]", self.ext_authz != new.ext_authz),
            ("[telemetry]", self.telemetry != new.telemetry),
        ]
        .into_iter()
        .filter_map(|(name, changed)| changed.then_some(name))
        .collect()
    }

    /// Reads and validates a config file. Relative paths inside it are
    /// resolved against the file's folder.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        let base = path.parent().unwrap_or_else(|| Path::new("."));
        Self::from_toml(&text, base).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.display().to_string(),
                message,
            },
            other => other,
        })
    }

    /// Parses and validates TOML text; `base` resolves relative paths.
    pub fn from_toml(text: &str, base: &Path) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: "<config>".into(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        build_and_validate(raw, base)
    }
}

fn invalid(key: impl Into<String>, problem: impl ToString) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        problem: problem.to_string(),
    }
}

fn build_and_validate(raw: RawConfig, base: &Path) -> Result<Config, ConfigError> {
    let listen_text = raw.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
    let listen = listen_text.parse().map_err(|_| {
        invalid(
            "listen",
            format!("{listen_text:?} is not an address like \"127.0.0.1:50051\""),
        )
    })?;

    let metrics_listen = match raw
        .metrics_listen
        .as_deref()
        .unwrap_or(DEFAULT_METRICS_LISTEN)
    {
        "" => None,
        text => Some(text.parse().map_err(|_| {
            invalid(
                "metrics_listen",
                format!(
                    "{text:?} is not an address like \"127.0.0.1:9464\" (\"\" turns metrics off)"
                ),
            )
        })?),
    };

    let max_batch = raw.limits.max_batch.unwrap_or(DEFAULT_MAX_BATCH);
    if !(1..=MAX_MAX_BATCH).contains(&max_batch) {
        return Err(invalid(
            "limits.max_batch",
            format!("{max_batch} is outside 1..={MAX_MAX_BATCH}"),
        ));
    }
    let max_token_bytes = raw
        .limits
        .max_token_bytes
        .unwrap_or(DEFAULT_MAX_TOKEN_BYTES);
    if !MAX_TOKEN_BYTES_RANGE.contains(&max_token_bytes) {
        return Err(invalid(
            "limits.max_token_bytes",
            format!(
                "{max_token_bytes} is outside {}..={}",
                MAX_TOKEN_BYTES_RANGE.start(),
                MAX_TOKEN_BYTES_RANGE.end()
            ),
        ));
    }

    let startup = match raw.startup.as_deref() {
        None | Some("wait") => Startup::Wait,
        Some("serve") => Startup::Serve,
        Some(other) => {
            return Err(invalid(
                "startup",
                format!("{other:?} is neither \"wait\" nor \"serve\""),
            ));
        }
    };
    let defaults = FetchLimits::default();
    let fetch = FetchLimits {
        connect_timeout: seconds(
            "fetch.connect_timeout_seconds",
            raw.fetch.connect_timeout_seconds,
            defaults.connect_timeout,
        )?,
        timeout: seconds(
            "fetch.timeout_seconds",
            raw.fetch.timeout_seconds,
            defaults.timeout,
        )?,
        max_bytes: raw.fetch.max_response_bytes.unwrap_or(defaults.max_bytes),
        max_redirects: raw.fetch.max_redirects.unwrap_or(defaults.max_redirects),
    };
    if fetch.max_bytes == 0 || fetch.max_bytes > 64 * 1024 * 1024 {
        return Err(invalid(
            "fetch.max_response_bytes",
            format!("{} is outside 1..=67108864", fetch.max_bytes),
        ));
    }
    if fetch.max_redirects > 10 {
        return Err(invalid(
            "fetch.max_redirects",
            format!("{} is over 10", fetch.max_redirects),
        ));
    }

    let defaults = EngineConfig::default();
    let cache = EngineConfig {
        memo_entries: raw.cache.memo_entries.unwrap_or(defaults.memo_entries),
        memo_max_bytes: raw.cache.memo_max_bytes.unwrap_or(defaults.memo_max_bytes),
        memo_max_ttl_seconds: raw
            .cache
            .memo_max_ttl_seconds
            .unwrap_or(defaults.memo_max_ttl_seconds),
        negative_entries: raw
            .cache
            .negative_entries
            .unwrap_or(defaults.negative_entries),
        negative_ttl_seconds: raw
            .cache
            .negative_ttl_seconds
            .unwrap_or(defaults.negative_ttl_seconds),
        threads: raw.cache.threads.unwrap_or(defaults.threads),
    };
    for (key, value, range) in [
        (
            "cache.memo_entries",
            cache.memo_entries as i64,
            0..=100_000_000,
        ),
        (
            "cache.negative_entries",
            cache.negative_entries as i64,
            0..=10_000_000,
        ),
        (
            "cache.memo_max_ttl_seconds",
            cache.memo_max_ttl_seconds,
            1..=86_400,
        ),
        (
            "cache.negative_ttl_seconds",
            cache.negative_ttl_seconds,
            1..=3_600,
        ),
        ("cache.threads", cache.threads as i64, 0..=1024),
    ] {
        if !range.contains(&value) {
            return Err(invalid(
                key,
                format!("{value} is outside {}..={}", range.start(), range.end()),
            ));
        }
    }
    if cache.memo_max_bytes < 1024 * 1024 {
        return Err(invalid(
            "cache.memo_max_bytes",
            format!("{} is under 1 MiB", cache.memo_max_bytes),
        ));
    }

    if raw.issuers.is_empty() {
        return Err(invalid(
            "issuers",
            "at least one [[issuers]] entry is required",
        ));
    }
    let mut seen = HashSet::new();
    let mut issuers = Vec::with_capacity(raw.issuers.len());
    for (i, raw) in raw.issuers.into_iter().enumerate() {
        let at = |field: &str| format!("issuers[{i}].{field}");
        if !seen.insert(raw.issuer.clone()) {
            return Err(invalid(
                at("issuer"),
                format!("{:?} is configured more than once", raw.issuer),
            ));
        }
        let mut policy = IssuerPolicy::new(raw.issuer).map_err(|e| invalid(at("issuer"), e))?;
        if let Some(audiences) = raw.audiences {
            policy = policy
                .with_audiences(audiences)
                .map_err(|e| invalid(at("audiences"), format!("an audience {e}")))?;
        }
        if let Some(names) = raw.algorithms {
            let algorithms = parse_algorithms(&names).map_err(|e| invalid(at("algorithms"), e))?;
            policy = policy
                .with_algorithms(algorithms)
                .map_err(|e| invalid(at("algorithms"), e))?;
        }
        if let Some(seconds) = raw.leeway_seconds {
            let leeway = Leeway::try_new(seconds).map_err(|e| invalid(at("leeway_seconds"), e))?;
            policy = policy.with_leeway(leeway);
        }
        if let Some(claims) = raw.required_claims {
            policy = policy
                .with_required_claims(claims)
                .map_err(|e: PolicyError| {
                    invalid(at("required_claims"), format!("a claim name {e}"))
                })?;
        }
        if let Some(require) = raw.require_exp {
            policy = policy.with_require_exp(require);
        }
        let allow_insecure_http = raw.allow_insecure_http.unwrap_or(false);
        let url = |field: &str, text: String| {
            let url = Url::parse(&text)
                .map_err(|e| invalid(at(field), format!("{text:?} is not a URL ({e})")))?;
            match url.scheme() {
                "https" => Ok(url),
                "http" if allow_insecure_http => Ok(url),
                "http" => Err(invalid(
                    at(field),
                    format!(
                        "{text:?} is not https (set allow_insecure_http = true for loopback and tests)"
                    ),
                )),
                _ => Err(invalid(
                    at(field),
                    format!("{text:?} is not an http(s) URL"),
                )),
            }
        };
        let source = match (raw.jwks_file, raw.jwks_uri, raw.discovery_uri) {
            (Some(path), None, None) => KeySource::File(base.join(path)),
            (None, Some(uri), None) => KeySource::JwksUri(url("jwks_uri", uri)?),
            (None, None, Some(uri)) => KeySource::Discovery(url("discovery_uri", uri)?),
            (None, None, None) => {
                return Err(invalid(
                    at("jwks_file"),
                    "a key source is required: one of jwks_file, jwks_uri, discovery_uri",
                ));
            }
            _ => {
                return Err(invalid(
                    at("jwks_file"),
                    "set exactly one of jwks_file, jwks_uri, discovery_uri",
                ));
            }
        };
        let is_file = matches!(source, KeySource::File(_));
        let default_refresh = Duration::from_secs(if is_file { 5 } else { 300 });
        let refresh = RefreshPolicy {
            refresh: seconds(&at("refresh_seconds"), raw.refresh_seconds, default_refresh)?,
            min: seconds(
                &at("min_refresh_seconds"),
                raw.min_refresh_seconds,
                Duration::from_secs(60),
            )?,
            max: seconds(
                &at("max_refresh_seconds"),
                raw.max_refresh_seconds,
                Duration::from_secs(3600),
            )?,
            max_stale: seconds(
                &at("max_stale_seconds"),
                raw.max_stale_seconds,
                Duration::from_secs(86400),
            )?,
            kid_miss_wait: Duration::from_millis(raw.kid_miss_wait_ms.unwrap_or(500)),
        };
        if refresh.min > refresh.max {
            return Err(invalid(
                at("min_refresh_seconds"),
                format!(
                    "{:?} is more than max_refresh_seconds ({:?})",
                    refresh.min, refresh.max
                ),
            ));
        }
        if refresh.kid_miss_wait > Duration::from_secs(30) {
            return Err(invalid(
                at("kid_miss_wait_ms"),
                format!("{:?} is over 30 s", refresh.kid_miss_wait),
            ));
        }
        issuers.push(IssuerConfig {
            policy,
            source,
            allow_insecure_http,
            refresh,
        });
    }

    let telemetry = telemetry_config(raw.telemetry)?;
    let server = server_config(&raw.server)?;
    let tls = raw.tls.map(|t| tls_config(t, base)).transpose()?;
    let ext_authz = ext_authz_config(raw.ext_authz)?;

    Ok(Config {
        server,
        tls,
        ext_authz,
        telemetry,
        listen,
        metrics_listen,
        startup,
        limits: Limits {
            max_batch,
            max_token_bytes,
        },
        fetch,
        cache,
        issuers,
    })
}

fn server_config(raw: &RawServer) -> Result<ServerConfig, ConfigError> {
    let defaults = ServerConfig::default();
    let drain = match raw.drain_seconds {
        Some(0.0) => Duration::ZERO,
        other => seconds("server.drain_seconds", other, defaults.drain)?,
    };
    Ok(ServerConfig {
        drain,
        http2_keepalive_interval: seconds(
            "server.http2_keepalive_interval_seconds",
            raw.http2_keepalive_interval_seconds,
            defaults.http2_keepalive_interval,
        )?,
        http2_keepalive_timeout: seconds(
            "server.http2_keepalive_timeout_seconds",
            raw.http2_keepalive_timeout_seconds,
            defaults.http2_keepalive_timeout,
        )?,
        max_connection_age: seconds(
            "server.max_connection_age_seconds",
            raw.max_connection_age_seconds,
            defaults.max_connection_age,
        )?,
    })
}

fn tls_config(raw: RawTls, base: &Path) -> Result<TlsConfig, ConfigError> {
    Ok(TlsConfig {
        cert_file: base.join(raw.cert_file),
        key_file: base.join(raw.key_file),
        client_ca_file: raw.client_ca_file.map(|p| base.join(p)),
        reload: seconds(
            "tls.reload_seconds",
            raw.reload_seconds,
            Duration::from_secs(10),
        )?,
    })
}

fn ext_authz_config(raw: RawExtAuthz) -> Result<ExtAuthzConfig, ConfigError> {
    let defaults = ExtAuthzConfig::default();
    let name = |key: &str, value: Option<String>, default: String, may_be_empty: bool| {
        let value = value.unwrap_or(default);
        if (may_be_empty && value.is_empty()) || valid_header_name(&value) {
            Ok(value)
        } else {
            Err(invalid(
                format!("ext_authz.{key}"),
                format!("{value:?} is not a lower-case HTTP header name"),
            ))
        }
    };
    let header = name("header", raw.header, defaults.header, false)?;
    let subject_header = name(
        "subject_header",
        raw.subject_header,
        defaults.subject_header,
        true,
    )?;
    let issuer_header = name(
        "issuer_header",
        raw.issuer_header,
        defaults.issuer_header,
        true,
    )?;
    let payload_header = name(
        "payload_header",
        raw.payload_header,
        defaults.payload_header,
        true,
    )?;
    for (claim, h) in &raw.claim_to_headers {
        if claim.is_empty() || !valid_header_name(h) {
            return Err(invalid(
                format!("ext_authz.claim_to_headers.{claim}"),
                format!("{h:?} is not a lower-case HTTP header name"),
            ));
        }
    }
    Ok(ExtAuthzConfig {
        header,
        prefix: raw.prefix.unwrap_or(defaults.prefix),
        allow_missing: raw.allow_missing.unwrap_or(defaults.allow_missing),
        subject_header,
        issuer_header,
        claim_to_headers: raw.claim_to_headers,
        payload_header,
        remove_authorization: raw
            .remove_authorization
            .unwrap_or(defaults.remove_authorization),
    })
}

fn telemetry_config(raw: RawTelemetry) -> Result<TelemetryConfig, ConfigError> {
    let otlp_endpoint = match raw.otlp_endpoint {
        Some(url) if url.trim().is_empty() => None,
        Some(url) => {
            let parsed = Url::parse(url.trim()).map_err(|e| {
                invalid(
                    "telemetry.otlp_endpoint",
                    format!("{url:?} is not a URL: {e}"),
                )
            })?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(invalid(
                    "telemetry.otlp_endpoint",
                    format!("{url:?} must be an http:// or https:// URL"),
                ));
            }
            Some(url.trim().to_owned())
        }
        None => None,
    };
    let otlp_protocol = raw
        .otlp_protocol
        .as_deref()
        .map(otel::Protocol::parse)
        .transpose()
        .map_err(|e| invalid("telemetry.otlp_protocol", e))?;
    if raw.traces_sampler_arg.is_some() && raw.traces_sampler.is_none() {
        return Err(invalid(
            "telemetry.traces_sampler_arg",
            "is set without telemetry.traces_sampler",
        ));
    }
    let sampler = raw
        .traces_sampler
        .as_deref()
        .map(|name| {
            let arg = raw.traces_sampler_arg.map(|a| a.to_string());
            otel::SamplerChoice::parse(name, arg.as_deref())
        })
        .transpose()
        .map_err(|e| invalid("telemetry.traces_sampler", e))?;
    if raw.max_queued_spans == Some(0) {
        return Err(invalid(
            "telemetry.max_queued_spans",
            "0 is not a positive count",
        ));
    }
    if let Some(key) = raw.resource_attributes.keys().find(|k| k.trim().is_empty()) {
        return Err(invalid(
            "telemetry.resource_attributes",
            format!("{key:?} is an empty key"),
        ));
    }
    Ok(TelemetryConfig {
        otlp_endpoint,
        otlp_protocol,
        service_name: raw.service_name.filter(|s| !s.trim().is_empty()),
        resource_attributes: raw.resource_attributes,
        sampler,
        max_queued_spans: raw.max_queued_spans,
    })
}

/// A positive, finite duration in seconds (fractions allowed) of at most a
/// year, or `default`.
fn seconds(key: &str, value: Option<f64>, default: Duration) -> Result<Duration, ConfigError> {
    let Some(value) = value else {
        return Ok(default);
    };
    if !(value > 0.0 && value <= 366.0 * 86400.0) {
        return Err(invalid(
            key,
            format!("{value} is not a duration in 0..=31622400 seconds"),
        ));
    }
    Duration::try_from_secs_f64(value).map_err(|e| invalid(key, e))
}

fn parse_algorithms(names: &[String]) -> Result<AlgorithmSet, String> {
    let supported = || {
        Algorithm::ALL
            .iter()
            .map(|a| a.name())
            .collect::<Vec<_>>()
            .join(", ")
    };
    names
        .iter()
        .map(|name| {
            Algorithm::from_name(name).ok_or_else(|| {
                format!(
                    "{name:?} is not a supported algorithm (supported: {})",
                    supported()
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml(text, Path::new("/etc/jwtd"))
    }

    const MINIMAL: &str = r#"
        [[issuers]]
        issuer = "https://issuer.example"
        jwks_file = "jwks.json"
    "#;

    #[test]
    fn a_reload_names_what_only_a_restart_applies() {
        let base = parse(MINIMAL).unwrap();
        let reloadable = parse(&format!(
            "startup = \"wait\"\n[limits]\nmax_batch = 8\n[fetch]\ntimeout_seconds = 2\n{MINIMAL}\n\
             [[issuers]]\nissuer = \"https://other.example\"\njwks_file = \"other.json\"\n"
        ))
        .unwrap();
        assert_eq!(base.restart_only_changes(&reloadable), Vec::<&str>::new());
        let restart = parse(&format!(
            "listen = \"0.0.0.0:6000\"\nmetrics_listen = \"\"\n[cache]\nmemo_entries = 10\n\
             [server]\ndrain_seconds = 1\n[ext_authz]\nheader = \"x-token\"\n\
             [telemetry]\nservice_name = \"other\"\n{MINIMAL}"
        ))
        .unwrap();
        assert_eq!(
            base.restart_only_changes(&restart),
            [
                "listen",
                "metrics_listen",
                "[cache]",
                "[server]",
                "[ext_authz]",
                "[telemetry]"
            ]
        );
    }

    #[test]
    fn defaults_apply() {
        let c = parse(MINIMAL).expect("valid");
        assert_eq!(c.listen, "127.0.0.1:50051".parse().expect("addr"));
        assert_eq!(
            c.limits,
            Limits {
                max_batch: 1024,
                max_token_bytes: 8192
            }
        );
        let issuer = &c.issuers[0];
        assert_eq!(
            issuer.source,
            KeySource::File(PathBuf::from("/etc/jwtd/jwks.json"))
        );
        assert_eq!(issuer.policy.leeway().seconds(), 60);
        assert!(issuer.policy.require_exp());
        assert_eq!(issuer.policy.algorithms(), AlgorithmSet::all());
        assert_eq!(c.startup, Startup::Wait);
        assert_eq!(c.fetch, FetchLimits::default());
        assert_eq!(c.cache, EngineConfig::default());
        assert_eq!(
            c.metrics_listen,
            Some("127.0.0.1:9464".parse().expect("addr"))
        );
        let off = parse(&format!("metrics_listen = \"\"\n{MINIMAL}")).expect("valid");
        assert_eq!(off.metrics_listen, None);
        assert_eq!(c.cache.memo_entries, 100_000);
        assert_eq!(c.cache.memo_max_ttl_seconds, 300);
        assert_eq!(
            issuer.refresh.refresh,
            Duration::from_secs(5),
            "files are checked often"
        );
        assert_eq!(issuer.refresh.min, Duration::from_secs(60));
        assert_eq!(issuer.refresh.max, Duration::from_secs(3600));
        assert_eq!(issuer.refresh.max_stale, Duration::from_secs(86400));
        assert_eq!(issuer.refresh.kid_miss_wait, Duration::from_millis(500));
    }

    #[test]
    fn remote_sources_and_refresh_settings() {
        let c = parse(
            r#"
            startup = "serve"
            [fetch]
            timeout_seconds = 2.5
            [[issuers]]
            issuer = "https://a.example"
            jwks_uri = "https://a.example/jwks"
            [[issuers]]
            issuer = "http://127.0.0.1:8080"
            discovery_uri = "http://127.0.0.1:8080/.well-known/openid-configuration"
            allow_insecure_http = true
            refresh_seconds = 0.5
            min_refresh_seconds = 0.25
            kid_miss_wait_ms = 200
            "#,
        )
        .expect("valid");
        assert_eq!(c.startup, Startup::Serve);
        assert_eq!(c.fetch.timeout, Duration::from_millis(2500));
        assert!(
            matches!(&c.issuers[0].source, KeySource::JwksUri(u) if u.as_str() == "https://a.example/jwks")
        );
        assert_eq!(c.issuers[0].refresh.refresh, Duration::from_secs(300));
        assert!(!c.issuers[0].allow_insecure_http);
        assert!(matches!(&c.issuers[1].source, KeySource::Discovery(_)));
        assert!(c.issuers[1].allow_insecure_http);
        assert_eq!(c.issuers[1].refresh.refresh, Duration::from_millis(500));
        assert_eq!(c.issuers[1].refresh.min, Duration::from_millis(250));
        assert_eq!(
            c.issuers[1].refresh.kid_miss_wait,
            Duration::from_millis(200)
        );
    }

    #[test]
    fn the_documented_example_parses() {
        let c = parse(
            r#"
            listen = "0.0.0.0:9000"
            [limits]
            max_batch = 10
            max_token_bytes = 4096
            [[issuers]]
            issuer = "https://issuer.example"
            jwks_file = "/abs/jwks.json"
            audiences = ["orders-api"]
            algorithms = ["RS256", "ES256"]
            leeway_seconds = 5
            required_claims = ["sub"]
            require_exp = false
            "#,
        )
        .expect("valid");
        let p = &c.issuers[0].policy;
        assert_eq!(c.limits.max_batch, 10);
        assert_eq!(p.audiences(), ["orders-api"]);
        assert!(p.algorithms().contains(Algorithm::ES256));
        assert!(!p.algorithms().contains(Algorithm::HS256));
        assert_eq!(p.leeway().seconds(), 5);
        assert_eq!(p.required_claims(), ["sub"]);
        assert!(!p.require_exp());
        assert_eq!(
            c.issuers[0].source,
            KeySource::File(PathBuf::from("/abs/jwks.json"))
        );
    }

    fn invalid_key(text: &str) -> (String, String) {
        match parse(text) {
            Err(ConfigError::Invalid { key, problem }) => (key, problem),
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn errors_name_the_key_and_the_value() {
        let (key, problem) = invalid_key(&format!("listen = \"nowhere\"\n{MINIMAL}"));
        assert_eq!(key, "listen");
        assert!(problem.contains("\"nowhere\""), "{problem}");

        let (key, problem) = invalid_key(&format!("[limits]\nmax_batch = 0\n{MINIMAL}"));
        assert_eq!(key, "limits.max_batch");
        assert!(problem.contains('0'), "{problem}");

        let (key, _) = invalid_key(&format!("[limits]\nmax_token_bytes = 10\n{MINIMAL}"));
        assert_eq!(key, "limits.max_token_bytes");

        let (key, problem) = invalid_key(&format!("{MINIMAL}algorithms = [\"RS256\", \"none\"]"));
        assert_eq!(key, "issuers[0].algorithms");
        assert!(problem.contains("\"none\""), "{problem}");

        let (key, _) = invalid_key(&format!("{MINIMAL}algorithms = []"));
        assert_eq!(key, "issuers[0].algorithms");

        let (key, problem) = invalid_key(&format!("{MINIMAL}leeway_seconds = 86400"));
        assert_eq!(key, "issuers[0].leeway_seconds");
        assert!(problem.contains("86400"), "{problem}");

        let (key, _) = invalid_key(&format!("{MINIMAL}audiences = [\"\"]"));
        assert_eq!(key, "issuers[0].audiences");

        let (key, _) = invalid_key(&format!("{MINIMAL}{MINIMAL}"));
        assert_eq!(key, "issuers[1].issuer");

        let (key, _) = invalid_key("[[issuers]]\nissuer = \"https://i\"\n");
        assert_eq!(key, "issuers[0].jwks_file");

        let (key, problem) = invalid_key(&format!("{MINIMAL}jwks_uri = \"https://i/k\""));
        assert_eq!(key, "issuers[0].jwks_file");
        assert!(problem.contains("exactly one"), "{problem}");

        let (key, problem) =
            invalid_key("[[issuers]]\nissuer = \"https://i\"\njwks_uri = \"http://127.0.0.1/k\"\n");
        assert_eq!(key, "issuers[0].jwks_uri");
        assert!(problem.contains("allow_insecure_http"), "{problem}");

        let (key, _) = invalid_key(
            "[[issuers]]\nissuer = \"https://i\"\ndiscovery_uri = \"ftp://i/x\"\nallow_insecure_http = true\n",
        );
        assert_eq!(key, "issuers[0].discovery_uri");

        let (key, _) = invalid_key(&format!(
            "{MINIMAL}min_refresh_seconds = 10\nmax_refresh_seconds = 5"
        ));
        assert_eq!(key, "issuers[0].min_refresh_seconds");

        let (key, _) = invalid_key(&format!("{MINIMAL}refresh_seconds = 0"));
        assert_eq!(key, "issuers[0].refresh_seconds");

        let (key, _) = invalid_key(&format!("[cache]\nmemo_max_ttl_seconds = 0\n{MINIMAL}"));
        assert_eq!(key, "cache.memo_max_ttl_seconds");

        let (key, _) = invalid_key(&format!("metrics_listen = \"9464\"\n{MINIMAL}"));
        assert_eq!(key, "metrics_listen");

        let (key, _) = invalid_key(&format!("startup = \"later\"\n{MINIMAL}"));
        assert_eq!(key, "startup");

        let (key, _) = invalid_key("listen = \"127.0.0.1:1\"\n");
        assert_eq!(key, "issuers");
    }

    #[test]
    fn the_telemetry_section_mirrors_the_otel_variables() {
        let c = parse(MINIMAL).expect("valid");
        assert_eq!(c.telemetry, TelemetryConfig::default(), "off by default");
        let c = parse(&format!(
            "[telemetry]\notlp_endpoint = \"http://collector:4318\"\n\
             otlp_protocol = \"http/protobuf\"\nservice_name = \"edge-jwtd\"\n\
             resource_attributes = {{ \"deployment.environment\" = \"prod\" }}\n\
             traces_sampler = \"parentbased_traceidratio\"\ntraces_sampler_arg = 0.25\n\
             max_queued_spans = 512\n{MINIMAL}"
        ))
        .expect("valid");
        let t = &c.telemetry;
        assert_eq!(t.otlp_endpoint.as_deref(), Some("http://collector:4318"));
        assert_eq!(t.otlp_protocol, Some(otel::Protocol::HttpProtobuf));
        assert_eq!(t.service_name.as_deref(), Some("edge-jwtd"));
        assert_eq!(t.resource_attributes["deployment.environment"], "prod");
        assert_eq!(
            t.sampler,
            Some(otel::SamplerChoice {
                parent_based: true,
                ratio: 0.25
            })
        );
        assert_eq!(t.max_queued_spans, Some(512));
        for (text, key) in [
            (
                "otlp_endpoint = \"collector:4317\"",
                "telemetry.otlp_endpoint",
            ),
            (
                "otlp_endpoint = \"ftp://collector\"",
                "telemetry.otlp_endpoint",
            ),
            ("otlp_protocol = \"http/json\"", "telemetry.otlp_protocol"),
            ("traces_sampler = \"often\"", "telemetry.traces_sampler"),
            (
                "traces_sampler = \"traceidratio\"\ntraces_sampler_arg = 2.0",
                "telemetry.traces_sampler",
            ),
            ("traces_sampler_arg = 0.5", "telemetry.traces_sampler_arg"),
            ("max_queued_spans = 0", "telemetry.max_queued_spans"),
        ] {
            let (got, _) = invalid_key(&format!("[telemetry]\n{text}\n{MINIMAL}"));
            assert_eq!(got, key, "{text}");
        }
    }

    #[test]
    fn server_tls_and_ext_authz_sections() {
        let c = parse(MINIMAL).expect("valid");
        assert_eq!(c.server, ServerConfig::default());
        assert_eq!(c.server.drain, Duration::from_secs(5));
        assert_eq!(c.tls, None);
        assert_eq!(c.ext_authz, ExtAuthzConfig::default());
        let c = parse(&format!(
            "[server]\ndrain_seconds = 0\nmax_connection_age_seconds = 60\n\
             [tls]\ncert_file = \"tls/tls.crt\"\nkey_file = \"/abs/tls.key\"\nclient_ca_file = \"ca.crt\"\n\
             [ext_authz]\nheader = \"x-token\"\nprefix = \"\"\nallow_missing = true\n\
             claim_to_headers = {{ scope = \"x-jwt-scope\" }}\npayload_header = \"x-jwt-payload\"\n\
             remove_authorization = true\n{MINIMAL}"
        ))
        .expect("valid");
        assert_eq!(c.server.drain, Duration::ZERO);
        assert_eq!(c.server.max_connection_age, Duration::from_secs(60));
        let tls = c.tls.expect("tls");
        assert_eq!(tls.cert_file, PathBuf::from("/etc/jwtd/tls/tls.crt"));
        assert_eq!(tls.key_file, PathBuf::from("/abs/tls.key"));
        assert_eq!(tls.client_ca_file, Some(PathBuf::from("/etc/jwtd/ca.crt")));
        assert_eq!(c.ext_authz.header, "x-token");
        assert_eq!(c.ext_authz.prefix, "");
        assert!(c.ext_authz.allow_missing && c.ext_authz.remove_authorization);
        assert_eq!(c.ext_authz.claim_to_headers["scope"], "x-jwt-scope");
        for (text, key) in [
            ("[server]\ndrain_seconds = -1", "server.drain_seconds"),
            (
                "[server]\nmax_connection_age_seconds = 0",
                "server.max_connection_age_seconds",
            ),
            (
                "[ext_authz]\nheader = \"Authorization\"",
                "ext_authz.header",
            ),
            ("[ext_authz]\nheader = \"\"", "ext_authz.header"),
            (
                "[ext_authz]\nsubject_header = \"x sub\"",
                "ext_authz.subject_header",
            ),
            (
                "[ext_authz]\nclaim_to_headers = { scope = \"X-Scope\" }",
                "ext_authz.claim_to_headers.scope",
            ),
        ] {
            let (got, _) = invalid_key(&format!("{text}\n{MINIMAL}"));
            assert_eq!(got, key, "{text}");
        }
    }

    #[test]
    fn unknown_keys_and_wrong_types_are_refused() {
        for text in [
            format!("{MINIMAL}leeway = 5"),
            format!("lisen = \"127.0.0.1:1\"\n{MINIMAL}"),
            format!("[limits]\nmax_batch = \"ten\"\n{MINIMAL}"),
        ] {
            match parse(&text) {
                Err(ConfigError::Parse { message, .. }) => {
                    assert!(message.contains("line"), "{message}");
                }
                other => panic!("expected a parse error, got {other:?}"),
            }
        }
    }
}
