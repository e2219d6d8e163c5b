//! The TOML configuration: raw serde structs that refuse unknown keys, turned
//! into typed, validated values. Errors name the key and the bad value. Reads
//! the config file; reads no key material (see `keys` and `server`).
//!
//! ```toml
//! listen = "127.0.0.1:50051"
//! metrics_listen = "127.0.0.1:9464" # "" turns /metrics off
//! startup = "wait"               # or "serve"
//! [limits]
//! max_batch = 1024               # restart-only (sizes the decode cap)
//! max_token_bytes = 8192         # restart-only
//! max_pending_tokens = 4096      # unset: 2048 per verification thread
//! [cache]
//! memo_entries = 100000          # 0 turns the memo off
//! memo_max_bytes = 268435456
//! memo_max_ttl_seconds = 300
//! negative_entries = 10000
//! negative_ttl_seconds = 30
//! threads = 0                    # verification threads; 0 = one per core
//! pool_nice = 10                 # their nice value above the process's (0..=19)
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
//! max_concurrent_streams = 256
//! max_header_list_bytes = 16384
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
//! on_overload = "deny"           # or "error"
//! max_request_bytes = 131072
//! [callers]                      # read at start
//! identity = "peer"              # or "mtls", or "header:x-caller"
//! default_tokens_per_second = 0  # 0 = no limit
//! default_burst = 0              # 0 = the rate
//! allow_unlisted = true
//! [[callers.caller]]
//! id = "checkout"
//! tokens_per_second = 2000
//! burst = 4000
//! [audit]                        # read at start; events on target jwtd::audit
//! mode = "rejections"            # or "all", or "off"
//! rejections_per_second = 20     # per status; the rest counted as suppressed
//! [revocation]                   # optional; read at start
//! file = "revoked.jsonl"         # and/or url = "https://…", redis_url = "redis://…"
//! refresh_seconds = 5            # file checks (5) and URL polls (30)
//! max_stale_seconds = 300
//! on_stale = "serve"             # or "unavailable"
//! issuers = ["https://issuer.example"] # covered by on_stale; default all
//! max_entries = 100000           # per source
//! max_list_bytes = 16777216
//! max_token_lifetime_seconds = 86400
//! subject_ttl_seconds = 90000    # Redis lifetime of a subject entry, from revoked_at
//! redis_prefix = "jwtd:revocation"
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

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use crate::keys::KeySetError;
use crate::keys::fetch::FetchLimits;
use crate::observability::otel::TelemetryConfig;

mod raw;
mod revocation;
mod sections;
pub mod settings;

use raw::RawConfig;
pub use settings::{
    AuditConfig, AuditMode, CallerConfig, CallersConfig, DEFAULT_LISTEN, DEFAULT_MAX_BATCH,
    DEFAULT_MAX_TOKEN_BYTES, DEFAULT_METRICS_LISTEN, EngineConfig, ExtAuthzConfig, IdentityKind,
    IssuerConfig, KeySource, Limits, MAX_MAX_BATCH, MAX_TOKEN_BYTES_RANGE, OnOverload, OnStale,
    RateLimit, RedisUrl, RefreshPolicy, RevocationConfig, ServerConfig, Startup, TlsConfig,
};

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
    /// Per-caller identity, limits and allowlist.
    pub callers: CallersConfig,
    /// The audit trail of decisions.
    pub audit: AuditConfig,
    /// Revocation lists (read at start); `None` checks none.
    pub revocation: Option<RevocationConfig>,
    /// Trace export; the `OTEL_*` variables override it at start
    /// ([`crate::observability::otel::TraceSettings::resolve`]).
    pub telemetry: TelemetryConfig,
    /// Trusted issuers, in file order.
    pub issuers: Vec<IssuerConfig>,
}

impl Config {
    /// The top-level keys and sections that `new` changes and that only a
    /// restart applies: a reload (SIGHUP) applies `startup`,
    /// `limits.max_pending_tokens`, `[fetch]` and the issuers, and nothing
    /// else. Listeners, the pool, the transport's size caps (from
    /// `limits.max_batch` and `limits.max_token_bytes`), TLS settings,
    /// ext_authz, callers, revocation sources and telemetry are built once
    /// at start.
    pub fn restart_only_changes(&self, new: &Config) -> Vec<&'static str> {
        [
            ("listen", self.listen != new.listen),
            ("metrics_listen", self.metrics_listen != new.metrics_listen),
            (
                "limits.max_batch",
                self.limits.max_batch != new.limits.max_batch,
            ),
            (
                "limits.max_token_bytes",
                self.limits.max_token_bytes != new.limits.max_token_bytes,
            ),
            ("[cache]", self.cache != new.cache),
            ("[server]", self.server != new.server),
            ("[tls]", self.tls != new.tls),
            ("[ext_authz]", self.ext_authz != new.ext_authz),
            ("[callers]", self.callers != new.callers),
            ("[audit]", self.audit != new.audit),
            ("[revocation]", self.revocation != new.revocation),
            ("[telemetry]", self.telemetry != new.telemetry),
        ]
        .into_iter()
        .filter_map(|(name, changed)| changed.then_some(name))
        .collect()
    }

    /// What is valid but probably not meant: each issuer without an
    /// audience rule (neither `audiences` nor `allow_any_audience = true`),
    /// whose tokens are AUDIENCE_MISMATCH unless the call names audiences.
    /// `check-config` and the start of `serve` log them.
    pub fn warnings(&self) -> Vec<String> {
        self.issuers
            .iter()
            .enumerate()
            .filter(|(_, i)| {
                *i.policy.audience_rule() == crate::verifier::policy::AudienceRule::Unset
            })
            .map(|(n, i)| {
                format!(
                    "issuers[{n}] ({}) sets neither audiences nor allow_any_audience = true: \
                     its tokens are AUDIENCE_MISMATCH unless the call names audiences",
                    i.policy.issuer()
                )
            })
            .collect()
    }

    /// `new` as a reload applies it to a process started with `self`: the
    /// restart-only limits stay those of the start, so the snapshot's
    /// `max_batch` never outgrows the transport's decode cap.
    pub fn reloaded(&self, mut new: Config) -> Config {
        new.limits.max_batch = self.limits.max_batch;
        new.limits.max_token_bytes = self.limits.max_token_bytes;
        new
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
    let limits = sections::limits(&raw.limits)?;
    let fetch = sections::fetch(&raw.fetch)?;
    let cache = sections::cache(&raw.cache)?;
    let issuers = sections::issuers(raw.issuers, base)?;
    let telemetry = sections::telemetry_config(raw.telemetry)?;
    let server = sections::server_config(&raw.server)?;
    let tls = raw.tls.map(|t| sections::tls_config(t, base)).transpose()?;
    let ext_authz = sections::ext_authz_config(raw.ext_authz)?;
    let audit = sections::audit_config(&raw.audit)?;
    let callers = raw
        .callers
        .map(|c| sections::callers_config(c, tls.as_ref()))
        .transpose()?
        .unwrap_or_default();
    let revocation = raw
        .revocation
        .map(|r| revocation::revocation_config(r, base, &issuers))
        .transpose()?;

    Ok(Config {
        audit,
        server,
        tls,
        ext_authz,
        callers,
        revocation,
        telemetry,
        listen,
        metrics_listen,
        startup,
        limits,
        fetch,
        cache,
        issuers,
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

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::observability::otel;
    use crate::verifier::jose::{Algorithm, AlgorithmSet};

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
            "startup = \"wait\"\n[limits]\nmax_pending_tokens = 5000\n[fetch]\ntimeout_seconds = 2\n{MINIMAL}\n\
             [[issuers]]\nissuer = \"https://other.example\"\njwks_file = \"other.json\"\n"
        ))
        .unwrap();
        assert_eq!(base.restart_only_changes(&reloadable), Vec::<&str>::new());
        let restart = parse(&format!(
            "listen = \"0.0.0.0:6000\"\nmetrics_listen = \"\"\n\
             [limits]\nmax_batch = 8\nmax_token_bytes = 4096\n[cache]\nmemo_entries = 10\n\
             [server]\ndrain_seconds = 1\n[ext_authz]\nheader = \"x-token\"\n\
             [callers]\nallow_unlisted = false\n[revocation]\nfile = \"revoked.jsonl\"\n\
             [telemetry]\nservice_name = \"other\"\n{MINIMAL}"
        ))
        .unwrap();
        assert_eq!(
            base.restart_only_changes(&restart),
            [
                "listen",
                "metrics_listen",
                "limits.max_batch",
                "limits.max_token_bytes",
                "[cache]",
                "[server]",
                "[ext_authz]",
                "[callers]",
                "[revocation]",
                "[telemetry]"
            ]
        );
        // What a reload applies: the new pending bound, the started sizes.
        let applied = base.reloaded(restart.clone());
        assert_eq!(applied.limits.max_batch, base.limits.max_batch);
        assert_eq!(applied.limits.max_token_bytes, base.limits.max_token_bytes);
        let applied = base.reloaded(reloadable);
        assert_eq!(applied.limits.max_pending_tokens, Some(5000));
    }

    #[test]
    fn defaults_apply() {
        let c = parse(MINIMAL).expect("valid");
        assert_eq!(c.listen, "127.0.0.1:50051".parse().expect("addr"));
        assert_eq!(
            c.limits,
            Limits {
                max_batch: 1024,
                max_token_bytes: 8192,
                max_pending_tokens: None,
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

        let (key, problem) = invalid_key(&format!("[cache]\npool_nice = 20\n{MINIMAL}"));
        assert_eq!(key, "cache.pool_nice");
        assert!(problem.contains("0..=19"), "{problem}");
        let (key, _) = invalid_key(&format!("[cache]\npool_nice = -1\n{MINIMAL}"));
        assert_eq!(key, "cache.pool_nice");
        let zero = parse(&format!("[cache]\npool_nice = 0\n{MINIMAL}")).expect("valid");
        assert_eq!(zero.cache.pool_nice, 0);

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
    fn overload_bounds_parse_and_are_checked() {
        let c = parse(&format!(
            "[limits]\nmax_batch = 64\nmax_pending_tokens = 64\n\
             [server]\nmax_concurrent_streams = 32\nmax_header_list_bytes = 8192\n\
             [ext_authz]\non_overload = \"error\"\nmax_request_bytes = 65536\n{MINIMAL}"
        ))
        .expect("valid");
        assert_eq!(c.limits.max_pending_tokens, Some(64));
        assert_eq!(c.server.max_concurrent_streams, 32);
        assert_eq!(c.server.max_header_list_bytes, 8192);
        assert_eq!(c.ext_authz.on_overload, OnOverload::Error);
        assert_eq!(c.ext_authz.max_request_bytes, 65536);
        let defaults = parse(MINIMAL).expect("valid");
        assert_eq!(defaults.limits.max_pending_tokens, None);
        assert_eq!(defaults.server.max_concurrent_streams, 256);
        assert_eq!(defaults.ext_authz.on_overload, OnOverload::Deny);

        for (text, key, words) in [
            (
                "[limits]\nmax_pending_tokens = 0",
                "limits.max_pending_tokens",
                "not a bound",
            ),
            (
                "[limits]\nmax_batch = 100\nmax_pending_tokens = 99",
                "limits.max_pending_tokens",
                "under limits.max_batch",
            ),
            (
                "[limits]\nmax_batch = 100000\nmax_token_bytes = 8192",
                "limits.max_batch",
                "ceiling",
            ),
            (
                "[server]\nmax_concurrent_streams = 0",
                "server.max_concurrent_streams",
                "0",
            ),
            (
                "[server]\nmax_header_list_bytes = 100",
                "server.max_header_list_bytes",
                "100",
            ),
            (
                "[ext_authz]\non_overload = \"allow\"",
                "ext_authz.on_overload",
                "allow",
            ),
            (
                "[ext_authz]\nmax_request_bytes = 10",
                "ext_authz.max_request_bytes",
                "10",
            ),
        ] {
            let (got, problem) = invalid_key(&format!("{text}\n{MINIMAL}"));
            assert_eq!(got, key, "{text}");
            assert!(problem.contains(words), "{text}: {problem}");
        }
    }

    #[test]
    fn callers_parse_with_their_limits() {
        let c = parse(MINIMAL).expect("valid");
        assert_eq!(c.callers, CallersConfig::default());
        assert!(c.callers.is_open() && c.callers.allow_unlisted);
        let c = parse(&format!(
            "[callers]\nidentity = \"header:x-caller\"\ndefault_tokens_per_second = 100\n\
             allow_unlisted = false\n\
             [[callers.caller]]\nid = \"checkout\"\ntokens_per_second = 2000\nburst = 4000\n\
             [[callers.caller]]\nid = \"batch\"\ntokens_per_second = 0\n\
             [[callers.caller]]\nid = \"web\"\n{MINIMAL}"
        ))
        .expect("valid");
        let k = &c.callers;
        assert_eq!(k.identity, IdentityKind::Header("x-caller".into()));
        assert!(!k.allow_unlisted && !k.is_open());
        let rate = |r: u32, b: u32| {
            Some(RateLimit {
                tokens_per_second: std::num::NonZeroU32::new(r).expect("non-zero"),
                burst: std::num::NonZeroU32::new(b).expect("non-zero"),
            })
        };
        assert_eq!(k.default_limit, rate(100, 100), "burst 0 is the rate");
        assert_eq!(k.callers[0].id, "checkout");
        assert_eq!(k.callers[0].limit, rate(2000, 4000));
        assert_eq!(k.callers[1].limit, None, "0 is no limit");
        assert_eq!(
            k.callers[2].limit,
            rate(100, 100),
            "unset takes the defaults"
        );

        let tls = "[tls]\ncert_file = \"c\"\nkey_file = \"k\"\n";
        let with_ca =
            format!("{tls}client_ca_file = \"ca\"\n[callers]\nidentity = \"mtls\"\n{MINIMAL}");
        assert_eq!(
            parse(&with_ca).expect("valid").callers.identity,
            IdentityKind::Mtls
        );
        for (text, key) in [
            (
                format!("{tls}[callers]\nidentity = \"mtls\""),
                "callers.identity",
            ),
            (
                "[callers]\nidentity = \"mtls\"".to_owned(),
                "callers.identity",
            ),
            (
                "[callers]\nidentity = \"cookie\"".to_owned(),
                "callers.identity",
            ),
            (
                "[callers]\nidentity = \"header:X-Caller\"".to_owned(),
                "callers.identity",
            ),
            (
                "[callers]\nidentity = \"header:grpc-timeout\"".to_owned(),
                "callers.identity",
            ),
            (
                "[callers]\ndefault_burst = 5".to_owned(),
                "callers.default_burst",
            ),
            (
                "[[callers.caller]]\nid = \"a\"\n[[callers.caller]]\nid = \"a\"".to_owned(),
                "callers.caller[1].id",
            ),
            (
                "[[callers.caller]]\nid = \"\"".to_owned(),
                "callers.caller[0].id",
            ),
            (
                "[[callers.caller]]\nid = \"a\"\nburst = 3".to_owned(),
                "callers.caller[0].burst",
            ),
        ] {
            let (got, _) = invalid_key(&format!("{text}\n{MINIMAL}"));
            assert_eq!(got, key, "{text}");
        }
    }

    #[test]
    fn issuer_grants_and_the_audience_decision_parse() {
        let c = parse(&format!(
            "{MINIMAL}types = [\"at+jwt\", \"\"]\nrequired_scopes = [\"read\"]\n\
             authorized_parties = [\"web\"]\nmax_age_seconds = 3600\n\
             roles_claim = \"realm_access.roles\"\nrequired_roles = [\"admin\"]\n\
             allow_any_audience = true\n[ext_authz]\ndetailed_errors = false\n"
        ))
        .expect("valid");
        let p = &c.issuers[0].policy;
        assert_eq!(p.types(), Some(&["at+jwt".to_owned(), String::new()][..]));
        assert_eq!(p.required_scopes(), ["read"]);
        assert_eq!(p.authorized_parties(), ["web"]);
        assert_eq!(p.max_age(), Some(3600));
        let roles = p.roles().expect("roles");
        assert_eq!(
            (roles.path.len(), &roles.required[..]),
            (2, &["admin".to_owned()][..])
        );
        assert_eq!(
            *p.audience_rule(),
            crate::verifier::policy::AudienceRule::Any
        );
        assert!(!c.ext_authz.detailed_errors);
        assert!(c.warnings().is_empty());

        let unset = parse(MINIMAL).expect("valid: a warning, not an error");
        let warnings = unset.warnings();
        assert_eq!(warnings.len(), 1);
        assert!(
            warnings[0].contains("issuers[0]") && warnings[0].contains("allow_any_audience"),
            "{warnings:?}"
        );
        assert!(
            parse(&format!("{MINIMAL}audiences = [\"api\"]"))
                .expect("valid")
                .warnings()
                .is_empty()
        );

        for (text, key) in [
            ("audiences = []", "issuers[0].audiences"),
            (
                "audiences = [\"a\"]\nallow_any_audience = true",
                "issuers[0].allow_any_audience",
            ),
            ("types = []", "issuers[0].types"),
            (
                "required_scopes = [\"read write\"]",
                "issuers[0].required_scopes",
            ),
            ("authorized_parties = []", "issuers[0].authorized_parties"),
            ("max_age_seconds = 0", "issuers[0].max_age_seconds"),
            (
                "roles_claim = \"a..b\"\nrequired_roles = [\"x\"]",
                "issuers[0].roles_claim",
            ),
            ("roles_claim = \"roles\"", "issuers[0].roles_claim"),
            ("required_roles = [\"x\"]", "issuers[0].required_roles"),
        ] {
            let (got, _) = invalid_key(&format!("{MINIMAL}{text}"));
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
