//! Each section of the file, from its raw form to its settings, with the
//! rules that apply to it. Errors name the key (`limits.max_batch`,
//! `issuers[2].jwks_uri`) and the bad value.

use std::collections::HashSet;
use std::num::NonZeroU32;
use std::path::Path;
use std::time::Duration;

use reqwest::Url;

use super::raw::{
    RawAudit, RawCache, RawCallers, RawExtAuthz, RawFetch, RawIssuer, RawLimits, RawServer,
    RawTelemetry, RawTls,
};
use super::settings::*;
use super::{ConfigError, invalid, seconds};
use crate::keys::fetch::FetchLimits;
use crate::observability::otel::{self, TelemetryConfig};
use crate::verifier::jose::{Algorithm, AlgorithmSet};
use crate::verifier::policy::{IssuerPolicy, Leeway, PolicyError};

/// `[limits]`.
pub(super) fn limits(raw: &RawLimits) -> Result<Limits, ConfigError> {
    let max_batch = raw.max_batch.unwrap_or(DEFAULT_MAX_BATCH);
    if !(1..=MAX_MAX_BATCH).contains(&max_batch) {
        return Err(invalid(
            "limits.max_batch",
            format!("{max_batch} is outside 1..={MAX_MAX_BATCH}"),
        ));
    }
    let max_token_bytes = raw.max_token_bytes.unwrap_or(DEFAULT_MAX_TOKEN_BYTES);
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
    let max_pending_tokens = match raw.max_pending_tokens {
        None => None,
        Some(0) => {
            return Err(invalid(
                "limits.max_pending_tokens",
                "0 is not a bound (leave the key out for the default derived from the cores)",
            ));
        }
        Some(n) if n < max_batch => {
            return Err(invalid(
                "limits.max_pending_tokens",
                format!(
                    "{n} is under limits.max_batch ({max_batch}): a full cold batch could never be admitted"
                ),
            ));
        }
        Some(n) => Some(n),
    };
    let limits = Limits {
        max_batch,
        max_token_bytes,
        max_pending_tokens,
    };
    if limits.max_request_bytes() > MAX_REQUEST_BYTES_CEILING {
        return Err(invalid(
            "limits.max_batch",
            format!(
                "{max_batch} tokens of up to {max_token_bytes} bytes make requests of up to {} bytes, \
                 over the ceiling of {MAX_REQUEST_BYTES_CEILING} (64 MiB): lower max_batch or max_token_bytes",
                limits.max_request_bytes()
            ),
        ));
    }
    Ok(limits)
}

/// `[fetch]`.
pub(super) fn fetch(raw: &RawFetch) -> Result<FetchLimits, ConfigError> {
    let defaults = FetchLimits::default();
    let fetch = FetchLimits {
        connect_timeout: seconds(
            "fetch.connect_timeout_seconds",
            raw.connect_timeout_seconds,
            defaults.connect_timeout,
        )?,
        timeout: seconds(
            "fetch.timeout_seconds",
            raw.timeout_seconds,
            defaults.timeout,
        )?,
        max_bytes: raw.max_response_bytes.unwrap_or(defaults.max_bytes),
        max_redirects: raw.max_redirects.unwrap_or(defaults.max_redirects),
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

    Ok(fetch)
}

/// `[cache]`.
pub(super) fn cache(raw: &RawCache) -> Result<EngineConfig, ConfigError> {
    let defaults = EngineConfig::default();
    let cache = EngineConfig {
        memo_entries: raw.memo_entries.unwrap_or(defaults.memo_entries),
        memo_max_bytes: raw.memo_max_bytes.unwrap_or(defaults.memo_max_bytes),
        memo_max_ttl_seconds: raw
            .memo_max_ttl_seconds
            .unwrap_or(defaults.memo_max_ttl_seconds),
        negative_entries: raw.negative_entries.unwrap_or(defaults.negative_entries),
        negative_ttl_seconds: raw
            .negative_ttl_seconds
            .unwrap_or(defaults.negative_ttl_seconds),
        threads: raw.threads.unwrap_or(defaults.threads),
        pool_nice: raw.pool_nice.unwrap_or(defaults.pool_nice),
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
        ("cache.pool_nice", i64::from(cache.pool_nice), 0..=19),
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

    Ok(cache)
}

/// `[[issuers]]`, in file order.
pub(super) fn issuers(raw: Vec<RawIssuer>, base: &Path) -> Result<Vec<IssuerConfig>, ConfigError> {
    if raw.is_empty() {
        return Err(invalid(
            "issuers",
            "at least one [[issuers]] entry is required",
        ));
    }
    let mut seen = HashSet::new();
    let mut issuers = Vec::with_capacity(raw.len());
    for (i, raw) in raw.into_iter().enumerate() {
        let at = |field: &str| format!("issuers[{i}].{field}");
        if !seen.insert(raw.issuer.clone()) {
            return Err(invalid(
                at("issuer"),
                format!("{:?} is configured more than once", raw.issuer),
            ));
        }
        let mut policy = IssuerPolicy::new(raw.issuer).map_err(|e| invalid(at("issuer"), e))?;
        match (raw.audiences, raw.allow_any_audience) {
            (Some(_), Some(true)) => {
                return Err(invalid(
                    at("allow_any_audience"),
                    "is true while audiences are listed: say one or the other",
                ));
            }
            (Some(audiences), _) => {
                policy = policy.with_audiences(audiences).map_err(|e| {
                    invalid(
                        at("audiences"),
                        format!("{e} (allow_any_audience = true accepts any)"),
                    )
                })?;
            }
            (None, Some(true)) => policy = policy.allowing_any_audience(),
            // No rule: only audiences a call names admit a token
            // (`check-config` warns).
            (None, _) => {}
        }
        if let Some(types) = raw.types {
            policy = policy
                .with_types(types)
                .map_err(|e| invalid(at("types"), e))?;
        }
        if let Some(scopes) = raw.required_scopes {
            policy = policy
                .with_required_scopes(scopes)
                .map_err(|e| invalid(at("required_scopes"), format!("a scope {e}")))?;
        }
        if let Some(parties) = raw.authorized_parties {
            policy = policy
                .with_authorized_parties(parties)
                .map_err(|e| invalid(at("authorized_parties"), e))?;
        }
        if let Some(seconds) = raw.max_age_seconds {
            policy = policy
                .with_max_age(seconds)
                .map_err(|e| invalid(at("max_age_seconds"), e))?;
        }
        match (raw.roles_claim, raw.required_roles) {
            (Some(path), Some(roles)) => {
                policy = policy
                    .with_roles(&path, roles)
                    .map_err(|e| invalid(at("roles_claim"), e))?;
            }
            (None, None) => {}
            (Some(_), None) => {
                return Err(invalid(at("roles_claim"), "is set without required_roles"));
            }
            (None, Some(_)) => {
                return Err(invalid(
                    at("required_roles"),
                    "is set without roles_claim (e.g. \"realm_access.roles\")",
                ));
            }
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

    Ok(issuers)
}

pub(super) fn server_config(raw: &RawServer) -> Result<ServerConfig, ConfigError> {
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
        max_concurrent_streams: in_range(
            "server.max_concurrent_streams",
            raw.max_concurrent_streams,
            defaults.max_concurrent_streams,
            1..=10_000,
        )?,
        max_header_list_bytes: in_range(
            "server.max_header_list_bytes",
            raw.max_header_list_bytes,
            defaults.max_header_list_bytes,
            1024..=1024 * 1024,
        )?,
    })
}

/// `value` (or `default`) when it lies in `range`.
fn in_range<T>(
    key: &str,
    value: Option<T>,
    default: T,
    range: std::ops::RangeInclusive<T>,
) -> Result<T, ConfigError>
where
    T: PartialOrd + std::fmt::Display + Copy,
{
    let value = value.unwrap_or(default);
    if range.contains(&value) {
        Ok(value)
    } else {
        Err(invalid(
            key,
            format!("{value} is outside {}..={}", range.start(), range.end()),
        ))
    }
}

pub(super) fn tls_config(raw: RawTls, base: &Path) -> Result<TlsConfig, ConfigError> {
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

pub(super) fn ext_authz_config(raw: RawExtAuthz) -> Result<ExtAuthzConfig, ConfigError> {
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
        on_overload: match raw.on_overload.as_deref() {
            None | Some("deny") => OnOverload::Deny,
            Some("error") => OnOverload::Error,
            Some(other) => {
                return Err(invalid(
                    "ext_authz.on_overload",
                    format!("{other:?} is neither \"deny\" nor \"error\""),
                ));
            }
        },
        max_request_bytes: in_range(
            "ext_authz.max_request_bytes",
            raw.max_request_bytes,
            defaults.max_request_bytes,
            4096..=16 * 1024 * 1024,
        )?,
        detailed_errors: raw.detailed_errors.unwrap_or(defaults.detailed_errors),
    })
}

pub(super) fn audit_config(raw: &RawAudit) -> Result<AuditConfig, ConfigError> {
    let defaults = AuditConfig::default();
    let mode = match raw.mode.as_deref() {
        None => defaults.mode,
        Some("all") => AuditMode::All,
        Some("rejections") => AuditMode::Rejections,
        Some("off") => AuditMode::Off,
        Some(other) => {
            return Err(invalid(
                "audit.mode",
                format!("{other:?} is not \"all\", \"rejections\" or \"off\""),
            ));
        }
    };
    let rate = in_range(
        "audit.rejections_per_second",
        raw.rejections_per_second,
        defaults.rejections_per_second.get(),
        1..=100_000,
    )?;
    Ok(AuditConfig {
        mode,
        rejections_per_second: NonZeroU32::new(rate).unwrap_or(defaults.rejections_per_second),
    })
}

pub(super) fn telemetry_config(raw: RawTelemetry) -> Result<TelemetryConfig, ConfigError> {
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

/// `[callers]`. `tls` is the `[tls]` section, which `identity = "mtls"`
/// needs with a client CA.
pub(super) fn callers_config(
    raw: RawCallers,
    tls: Option<&TlsConfig>,
) -> Result<CallersConfig, ConfigError> {
    let identity = match raw.identity.as_deref() {
        None | Some("peer") => IdentityKind::Peer,
        Some("mtls") => {
            if tls.is_none_or(|t| t.client_ca_file.is_none()) {
                return Err(invalid(
                    "callers.identity",
                    "\"mtls\" needs client certificates: set [tls] client_ca_file",
                ));
            }
            IdentityKind::Mtls
        }
        Some(other) => match other.strip_prefix("header:") {
            Some(name)
                if valid_header_name(name)
                    && !name.starts_with("grpc-")
                    && !matches!(name, "te" | "content-type" | "user-agent") =>
            {
                IdentityKind::Header(name.to_owned())
            }
            _ => {
                return Err(invalid(
                    "callers.identity",
                    format!(
                        "{other:?} is not \"peer\", \"mtls\" or \"header:NAME\" with NAME a lower-case \
                         metadata header (not grpc-*)"
                    ),
                ));
            }
        },
    };
    let default_limit = rate_limit(
        "callers.default_tokens_per_second",
        "callers.default_burst",
        raw.default_tokens_per_second.unwrap_or(0),
        raw.default_burst.unwrap_or(0),
    )?;
    let mut seen = HashSet::new();
    let mut callers = Vec::with_capacity(raw.caller.len());
    for (i, c) in raw.caller.into_iter().enumerate() {
        let at = |field: &str| format!("callers.caller[{i}].{field}");
        if c.id.is_empty() || c.id.len() > MAX_CALLER_ID_BYTES || c.id.chars().any(char::is_control)
        {
            return Err(invalid(
                at("id"),
                format!(
                    "{:?} is not 1 to {MAX_CALLER_ID_BYTES} bytes without control characters",
                    c.id
                ),
            ));
        }
        if !seen.insert(c.id.clone()) {
            return Err(invalid(
                at("id"),
                format!("{:?} is listed more than once", c.id),
            ));
        }
        let limit = match c.tokens_per_second {
            // Not set: the defaults apply to this caller too.
            None if c.burst.is_some() => {
                return Err(invalid(at("burst"), "is set without tokens_per_second"));
            }
            None => default_limit,
            Some(rate) => rate_limit(
                &at("tokens_per_second"),
                &at("burst"),
                rate,
                c.burst.unwrap_or(0),
            )?,
        };
        callers.push(CallerConfig { id: c.id, limit });
    }
    Ok(CallersConfig {
        identity,
        default_limit,
        allow_unlisted: raw.allow_unlisted.unwrap_or(true),
        callers,
    })
}

/// A bucket from a rate (0: no limit) and a burst (0: equal to the rate).
fn rate_limit(
    rate_key: &str,
    burst_key: &str,
    rate: u32,
    burst: u32,
) -> Result<Option<RateLimit>, ConfigError> {
    let Some(tokens_per_second) = NonZeroU32::new(rate) else {
        if burst != 0 {
            return Err(invalid(
                burst_key,
                format!("{burst} is set for no limit ({rate_key} = 0)"),
            ));
        }
        return Ok(None);
    };
    let burst = NonZeroU32::new(burst).unwrap_or(tokens_per_second);
    Ok(Some(RateLimit {
        tokens_per_second,
        burst,
    }))
}
