//! The typed, validated settings every layer reads: the bottom of the
//! config layer, importing nothing above the verifier core. The loader
//! (`config/mod.rs`, `config/sections.rs`) builds these from the raw TOML;
//! the engine, server and adapters only ever see these types.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use reqwest::Url;

use crate::verifier::policy::IssuerPolicy;

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

/// Default pending cold tokens per verification thread when
/// `limits.max_pending_tokens` is not set: about 50 ms of RS256 work per
/// thread at the 25 µs a check costs on these machines (ES256, ~90 µs, makes
/// it ~185 ms), well inside Envoy's default ext_authz timeout of 200 ms.
pub const PENDING_TOKENS_PER_THREAD: usize = 2048;
/// Default `server.max_concurrent_streams`: a few hundred calls per
/// connection (hyper's own default before tonic removed it was 200).
pub const DEFAULT_MAX_CONCURRENT_STREAMS: u32 = 256;
/// Default `server.max_header_list_bytes` (hyper's default, 16 KiB).
pub const DEFAULT_MAX_HEADER_LIST_BYTES: u32 = 16 * 1024;
/// Default `ext_authz.max_request_bytes`: Envoy's default limit on request
/// headers is 60 KiB, and a CheckRequest carries them plus a little.
pub const DEFAULT_CHECK_REQUEST_BYTES: usize = 128 * 1024;
/// Room for a Verify request's audiences, issuer and protobuf framing
/// beyond its tokens.
pub const REQUEST_FRAMING_BYTES: usize = 256 * 1024;
/// The largest Verify decode cap `check-config` accepts (64 MiB):
/// `max_batch × (max_token_bytes + 16) + 256 KiB` may not exceed it.
pub const MAX_REQUEST_BYTES_CEILING: usize = 64 * 1024 * 1024;

/// Request limits (`[limits]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most tokens in one Verify call (restart-only: it sizes the transport's
    /// decode cap, [`Limits::max_request_bytes`]).
    pub max_batch: usize,
    /// Longest token decoded (restart-only, as `max_batch`).
    pub max_token_bytes: usize,
    /// Most cold tokens (memo misses queued for or under a signature check)
    /// across every call at once; `None` derives the bound from the pool
    /// size ([`Limits::pending_bound`]). Applied on reload.
    pub max_pending_tokens: Option<usize>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_batch: DEFAULT_MAX_BATCH,
            max_token_bytes: DEFAULT_MAX_TOKEN_BYTES,
            max_pending_tokens: None,
        }
    }
}

impl Limits {
    /// The bound on pending cold tokens for a pool of `threads`: the
    /// configured value, or [`PENDING_TOKENS_PER_THREAD`] per thread, and
    /// never under one full batch (a bound below `max_batch` would shed
    /// every full cold batch forever).
    pub fn pending_bound(&self, threads: usize) -> usize {
        self.max_pending_tokens
            .unwrap_or(PENDING_TOKENS_PER_THREAD.saturating_mul(threads.max(1)))
            .max(self.max_batch)
    }

    /// The largest Verify request the transport decodes: a full batch of
    /// the longest tokens plus room for the audiences and framing. tonic's
    /// 4 MiB default would refuse legal batches; no limit at all would let
    /// one request claim unbounded memory.
    pub fn max_request_bytes(&self) -> usize {
        self.max_batch
            .saturating_mul(self.max_token_bytes.saturating_add(16))
            .saturating_add(REQUEST_FRAMING_BYTES)
    }
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
    /// Most concurrent streams (calls) per HTTP/2 connection; a client
    /// opening more gets REFUSED_STREAM, which gRPC clients retry.
    pub max_concurrent_streams: u32,
    /// Largest HTTP/2 header list (gRPC metadata) a request may send.
    pub max_header_list_bytes: u32,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            drain: Duration::from_secs(5),
            http2_keepalive_interval: Duration::from_secs(30),
            http2_keepalive_timeout: Duration::from_secs(10),
            max_connection_age: Duration::from_secs(300),
            max_concurrent_streams: DEFAULT_MAX_CONCURRENT_STREAMS,
            max_header_list_bytes: DEFAULT_MAX_HEADER_LIST_BYTES,
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

/// Memo and pool settings (`[cache]` in the config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineConfig {
    /// Most memoized results; 0 turns the memo off.
    pub memo_entries: usize,
    /// Most bytes the memoized results hold.
    pub memo_max_bytes: usize,
    /// Longest an entry lives, in seconds (never past the token's exp).
    pub memo_max_ttl_seconds: i64,
    /// Most memoized rejections; 0 turns the negative memo off.
    pub negative_entries: usize,
    /// How long a memoized rejection lives, in seconds.
    pub negative_ttl_seconds: i64,
    /// Verification threads; 0 means one per core.
    pub threads: usize,
    /// How much nicer than the process the verification threads run
    /// (0..=19; Linux). The default, [`DEFAULT_POOL_NICE`], keeps the
    /// network threads first under overload; 0 gives cold calls the
    /// shortest tail below capacity (BENCHMARKS.md has both, measured).
    pub pool_nice: i32,
}

/// The verification threads' default nice value relative to the process.
pub const DEFAULT_POOL_NICE: i32 = 10;

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            memo_entries: 100_000,
            memo_max_bytes: 256 * 1024 * 1024,
            memo_max_ttl_seconds: 300,
            negative_entries: 10_000,
            negative_ttl_seconds: 30,
            threads: 0,
            pool_nice: DEFAULT_POOL_NICE,
        }
    }
}

/// `[ext_authz]` in the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtAuthzConfig {
    /// The request header holding the token (lower case).
    pub header: String,
    /// The scheme before the token, matched without regard to case; empty
    /// takes the whole header value.
    pub prefix: String,
    /// Let requests without the header through (OK, no headers added).
    pub allow_missing: bool,
    /// Upstream header for the `sub` claim; empty for none.
    pub subject_header: String,
    /// Upstream header for the `iss` claim; empty for none.
    pub issuer_header: String,
    /// Claim name → upstream header.
    pub claim_to_headers: BTreeMap<String, String>,
    /// Upstream header for the payload (base64url, as Envoy's jwt_authn
    /// forwards it); empty for none.
    pub payload_header: String,
    /// Remove the token's header before the request goes upstream.
    pub remove_authorization: bool,
    /// What a shed Check gets.
    pub on_overload: OnOverload,
    /// Largest CheckRequest the transport decodes (the headers of one HTTP
    /// request and Envoy's attributes).
    pub max_request_bytes: usize,
    /// Send clients the rejection's reason (`true`), or only the RFC 6750
    /// error code and a generic description (`false`).
    pub detailed_errors: bool,
}

impl Default for ExtAuthzConfig {
    fn default() -> Self {
        Self {
            header: "authorization".into(),
            prefix: "Bearer ".into(),
            allow_missing: false,
            subject_header: "x-jwt-sub".into(),
            issuer_header: "x-jwt-iss".into(),
            claim_to_headers: BTreeMap::new(),
            payload_header: String::new(),
            remove_authorization: false,
            on_overload: OnOverload::Deny,
            max_request_bytes: DEFAULT_CHECK_REQUEST_BYTES,
            detailed_errors: true,
        }
    }
}

impl ExtAuthzConfig {
    /// Every upstream header jwtd may set.
    pub(crate) fn upstream_headers(&self) -> impl Iterator<Item = &str> {
        [
            &self.subject_header,
            &self.issuer_header,
            &self.payload_header,
        ]
        .into_iter()
        .chain(self.claim_to_headers.values())
        .map(String::as_str)
        .filter(|h| !h.is_empty())
    }
}

/// Checks that `name` can be an HTTP header name (lower case token chars).
pub fn valid_header_name(name: &str) -> bool {
    !name.is_empty()
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&b)
        })
}

/// What Check answers when jwtd sheds the call (overload, a caller over its
/// rate limit): `[ext_authz] on_overload`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnOverload {
    /// DENIED with HTTP 503 (shed) or 429 (caller over its limit) and a
    /// `retry-after` header: the client learns to come back later.
    #[default]
    Deny,
    /// The gRPC error (RESOURCE_EXHAUSTED), so that Envoy's own
    /// `failure_mode_allow` / `status_on_error` policy decides.
    Error,
}

/// How a caller is identified (`[callers] identity`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum IdentityKind {
    /// The remote IP address of the connection (port ignored).
    #[default]
    Peer,
    /// The client certificate: its first URI SAN, else its first DNS SAN.
    /// Needs `[tls] client_ca_file`.
    Mtls,
    /// The value of this request metadata header (lower case), as a trusted
    /// sidecar sets it.
    Header(String),
}

/// Which decisions the audit trail records (`[audit] mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuditMode {
    /// Every decision, VALID included.
    All,
    /// Every rejection (rate-limited per status), no VALID.
    #[default]
    Rejections,
    /// Nothing.
    Off,
}

/// Default `[audit] rejections_per_second`: per status, so a flood of one
/// kind of bad token is summarised while other kinds still show.
pub const DEFAULT_AUDIT_REJECTIONS_PER_SECOND: u32 = 20;

/// The audit trail (`[audit]`; read at start).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditConfig {
    /// What is recorded.
    pub mode: AuditMode,
    /// Most rejection events per second for each status; the rest are
    /// counted and reported on the next event of that status.
    pub rejections_per_second: NonZeroU32,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            mode: AuditMode::default(),
            rejections_per_second: NonZeroU32::new(DEFAULT_AUDIT_REJECTIONS_PER_SECOND)
                .unwrap_or(NonZeroU32::MIN),
        }
    }
}

/// A token bucket: `tokens_per_second` sustained, `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Tokens per second, sustained.
    pub tokens_per_second: NonZeroU32,
    /// The bucket's size: most tokens at once.
    pub burst: NonZeroU32,
}

/// Longest caller id, and longest identity jwtd reads from a request, in
/// bytes; a longer identity counts as none.
pub const MAX_CALLER_ID_BYTES: usize = 256;

/// One `[[callers.caller]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallerConfig {
    /// Compared exactly with the caller's identity.
    pub id: String,
    /// Its bucket; `None` is no limit.
    pub limit: Option<RateLimit>,
}

/// Per-caller identity, limits and allowlist (`[callers]`; read at start).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallersConfig {
    /// How a call's identity is read.
    pub identity: IdentityKind,
    /// The bucket of each caller not listed; `None` is no limit.
    pub default_limit: Option<RateLimit>,
    /// False: callers not listed get PERMISSION_DENIED.
    pub allow_unlisted: bool,
    /// The listed callers, in file order, ids unique.
    pub callers: Vec<CallerConfig>,
}

impl Default for CallersConfig {
    /// Every caller allowed, none limited: the behaviour without `[callers]`.
    fn default() -> Self {
        Self {
            identity: IdentityKind::Peer,
            default_limit: None,
            allow_unlisted: true,
            callers: Vec::new(),
        }
    }
}

impl CallersConfig {
    /// True when no caller is refused or limited, so identities need not
    /// even be read.
    pub fn is_open(&self) -> bool {
        self.allow_unlisted
            && self.default_limit.is_none()
            && self.callers.iter().all(|c| c.limit.is_none())
    }
}

/// Default `[revocation] max_entries`: entries kept per source. About
/// 200 bytes each in memory (key strings, table slot), so ~20 MiB.
pub const DEFAULT_REVOCATION_MAX_ENTRIES: usize = 100_000;
/// Default `[revocation] max_list_bytes`: the largest list file or URL body
/// read (a JSON line is ~100 bytes, so ~160,000 entries).
pub const DEFAULT_REVOCATION_MAX_LIST_BYTES: usize = 16 * 1024 * 1024;
/// Default `[revocation] max_token_lifetime_seconds` (one day).
pub const DEFAULT_MAX_TOKEN_LIFETIME_SECONDS: i64 = 86_400;

/// What tokens get while a revocation source is stale (`[revocation]
/// on_stale`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnStale {
    /// Keep checking against the last list that loaded (a metric and a log
    /// line say it is stale).
    #[default]
    Serve,
    /// Tokens of the issuers the sources cover get KEYS_UNAVAILABLE, naming
    /// the stale source, rather than VALID.
    Unavailable,
}

/// A `redis://` or `rediss://` URL. Its `Debug` hides the password, so a
/// printed config never shows it; [`RedisUrl::redacted`] is what logs use.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl(Url);

impl RedisUrl {
    /// Wraps `url` when its scheme is `redis` or `rediss` and it names a host.
    pub fn try_new(url: Url) -> Result<Self, String> {
        if !matches!(url.scheme(), "redis" | "rediss") {
            return Err("is not a redis:// or rediss:// URL".into());
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err("names no host".into());
        }
        Ok(Self(url))
    }

    /// The whole URL, password included: for the Redis client only.
    pub fn expose(&self) -> &str {
        self.0.as_str()
    }

    /// True for `rediss://` (TLS).
    pub fn is_tls(&self) -> bool {
        self.0.scheme() == "rediss"
    }

    /// The URL without user name and password, for logs and errors.
    pub fn redacted(&self) -> String {
        let mut shown = self.0.clone();
        // A URL with a host always accepts these; on failure it keeps them,
        // so fall back to scheme, host and port.
        if shown.set_password(None).is_err() || shown.set_username("").is_err() {
            return format!(
                "{}://{}:{}",
                self.0.scheme(),
                self.0.host_str().unwrap_or(""),
                self.0.port().unwrap_or(6379)
            );
        }
        shown.to_string()
    }
}

impl std::fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// `[revocation]`: where revoked tokens are listed, and what a stale list
/// means (read at start).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationConfig {
    /// A JSON Lines file (absolute, or resolved against the config's folder).
    pub file: Option<PathBuf>,
    /// A JSON Lines URL, polled with If-None-Match.
    pub url: Option<Url>,
    /// The shared Redis that `jwtd revoke` writes to.
    pub redis_url: Option<RedisUrl>,
    /// Plain-http `url` allowed (loopback and tests only).
    pub allow_insecure_http: bool,
    /// How often the file's stamp is checked.
    pub file_refresh: Duration,
    /// How often the URL is polled.
    pub url_refresh: Duration,
    /// How long a source may fail to sync before it is stale.
    pub max_stale: Duration,
    /// What tokens get while a covering source is stale.
    pub on_stale: OnStale,
    /// The issuers the sources cover (for `on_stale`); `None` is every issuer.
    pub issuers: Option<Vec<String>>,
    /// Most entries kept per source.
    pub max_entries: usize,
    /// Largest list (file or URL body) read, in bytes.
    pub max_list_bytes: usize,
    /// The longest lifetime (`exp` − `iat`) of the covered issuers' tokens:
    /// `jwtd revoke --jti` without `--exp` revokes until now plus this.
    pub max_token_lifetime_seconds: i64,
    /// How long a subject entry lives in Redis, counted from its
    /// `revoked_at`; at least the longest token lifetime plus leeway, so no
    /// token issued before `revoked_at` outlives it.
    pub subject_ttl_seconds: i64,
    /// Prefix of the Redis keys and of the channel (`PREFIX:events`).
    pub redis_prefix: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_cap_covers_a_full_batch() {
        let limits = Limits::default();
        assert!(limits.max_request_bytes() > 1024 * 8192);
        assert!(limits.max_request_bytes() < 16 * 1024 * 1024);
    }

    #[test]
    fn the_pending_bound_scales_with_threads_and_holds_a_batch() {
        let limits = Limits::default();
        assert_eq!(limits.pending_bound(2), 2 * PENDING_TOKENS_PER_THREAD);
        assert_eq!(limits.pending_bound(0), PENDING_TOKENS_PER_THREAD);
        let big_batches = Limits {
            max_batch: 10_000,
            ..Limits::default()
        };
        assert_eq!(big_batches.pending_bound(1), 10_000);
        let set = Limits {
            max_pending_tokens: Some(3000),
            ..Limits::default()
        };
        assert_eq!(set.pending_bound(64), 3000);
    }
}
