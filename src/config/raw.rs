//! The TOML as written: serde structs that refuse unknown keys and know no
//! rules. `sections.rs` turns them into [`super::settings`].

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) listen: Option<String>,
    pub(super) metrics_listen: Option<String>,
    pub(super) startup: Option<String>,
    #[serde(default)]
    pub(super) limits: RawLimits,
    #[serde(default)]
    pub(super) fetch: RawFetch,
    #[serde(default)]
    pub(super) cache: RawCache,
    #[serde(default)]
    pub(super) telemetry: RawTelemetry,
    #[serde(default)]
    pub(super) server: RawServer,
    pub(super) tls: Option<RawTls>,
    #[serde(default)]
    pub(super) ext_authz: RawExtAuthz,
    #[serde(default)]
    pub(super) callers: Option<RawCallers>,
    pub(super) revocation: Option<RawRevocation>,
    #[serde(default)]
    pub(super) audit: RawAudit,
    #[serde(default)]
    pub(super) issuers: Vec<RawIssuer>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAudit {
    pub(super) mode: Option<String>,
    pub(super) rejections_per_second: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServer {
    pub(super) drain_seconds: Option<f64>,
    pub(super) http2_keepalive_interval_seconds: Option<f64>,
    pub(super) http2_keepalive_timeout_seconds: Option<f64>,
    pub(super) max_connection_age_seconds: Option<f64>,
    pub(super) max_concurrent_streams: Option<u32>,
    pub(super) max_header_list_bytes: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    pub(super) cert_file: PathBuf,
    pub(super) key_file: PathBuf,
    pub(super) client_ca_file: Option<PathBuf>,
    pub(super) reload_seconds: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawExtAuthz {
    pub(super) header: Option<String>,
    pub(super) prefix: Option<String>,
    pub(super) allow_missing: Option<bool>,
    pub(super) subject_header: Option<String>,
    pub(super) issuer_header: Option<String>,
    #[serde(default)]
    pub(super) claim_to_headers: BTreeMap<String, String>,
    pub(super) payload_header: Option<String>,
    pub(super) remove_authorization: Option<bool>,
    pub(super) on_overload: Option<String>,
    pub(super) max_request_bytes: Option<usize>,
    pub(super) detailed_errors: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTelemetry {
    pub(super) otlp_endpoint: Option<String>,
    pub(super) otlp_protocol: Option<String>,
    pub(super) service_name: Option<String>,
    #[serde(default)]
    pub(super) resource_attributes: BTreeMap<String, String>,
    pub(super) traces_sampler: Option<String>,
    pub(super) traces_sampler_arg: Option<f64>,
    pub(super) max_queued_spans: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCache {
    pub(super) memo_entries: Option<usize>,
    pub(super) memo_max_bytes: Option<usize>,
    pub(super) memo_max_ttl_seconds: Option<i64>,
    pub(super) negative_entries: Option<usize>,
    pub(super) negative_ttl_seconds: Option<i64>,
    pub(super) threads: Option<usize>,
    pub(super) pool_nice: Option<i32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFetch {
    pub(super) connect_timeout_seconds: Option<f64>,
    pub(super) timeout_seconds: Option<f64>,
    pub(super) max_response_bytes: Option<usize>,
    pub(super) max_redirects: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    pub(super) max_batch: Option<usize>,
    pub(super) max_token_bytes: Option<usize>,
    pub(super) max_pending_tokens: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawIssuer {
    pub(super) issuer: String,
    pub(super) jwks_file: Option<PathBuf>,
    pub(super) audiences: Option<Vec<String>>,
    pub(super) allow_any_audience: Option<bool>,
    pub(super) types: Option<Vec<String>>,
    pub(super) required_scopes: Option<Vec<String>>,
    pub(super) authorized_parties: Option<Vec<String>>,
    pub(super) max_age_seconds: Option<i64>,
    pub(super) roles_claim: Option<String>,
    pub(super) required_roles: Option<Vec<String>>,
    pub(super) algorithms: Option<Vec<String>>,
    pub(super) leeway_seconds: Option<i64>,
    pub(super) required_claims: Option<Vec<String>>,
    pub(super) require_exp: Option<bool>,
    pub(super) jwks_uri: Option<String>,
    pub(super) discovery_uri: Option<String>,
    pub(super) allow_insecure_http: Option<bool>,
    pub(super) refresh_seconds: Option<f64>,
    pub(super) min_refresh_seconds: Option<f64>,
    pub(super) max_refresh_seconds: Option<f64>,
    pub(super) max_stale_seconds: Option<f64>,
    pub(super) kid_miss_wait_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCallers {
    pub(super) identity: Option<String>,
    pub(super) default_tokens_per_second: Option<u32>,
    pub(super) default_burst: Option<u32>,
    pub(super) allow_unlisted: Option<bool>,
    #[serde(default)]
    pub(super) caller: Vec<RawCaller>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCaller {
    pub(super) id: String,
    pub(super) tokens_per_second: Option<u32>,
    pub(super) burst: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRevocation {
    pub(super) file: Option<PathBuf>,
    pub(super) url: Option<String>,
    pub(super) redis_url: Option<String>,
    pub(super) allow_insecure_http: Option<bool>,
    pub(super) refresh_seconds: Option<f64>,
    pub(super) max_stale_seconds: Option<f64>,
    pub(super) on_stale: Option<String>,
    pub(super) issuers: Option<Vec<String>>,
    pub(super) max_entries: Option<usize>,
    pub(super) max_list_bytes: Option<usize>,
    pub(super) max_token_lifetime_seconds: Option<i64>,
    pub(super) subject_ttl_seconds: Option<i64>,
    pub(super) redis_prefix: Option<String>,
}
