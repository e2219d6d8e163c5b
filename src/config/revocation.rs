//! `[revocation]`, from its raw form to [`RevocationConfig`], with the
//! rules that apply to it. Errors name the key (`revocation.url`) and the
//! bad value; a Redis password never appears in one.

use std::path::Path;
use std::time::Duration;

use reqwest::Url;

use super::raw::RawRevocation;
use super::settings::{
    DEFAULT_MAX_TOKEN_LIFETIME_SECONDS, DEFAULT_REVOCATION_MAX_ENTRIES,
    DEFAULT_REVOCATION_MAX_LIST_BYTES, IssuerConfig, OnStale, RedisUrl, RevocationConfig,
};
use super::{ConfigError, invalid, seconds};
use crate::verifier::policy::MAX_LEEWAY_SECONDS;

/// Bounds of `max_entries` (per source).
const MAX_ENTRIES_RANGE: std::ops::RangeInclusive<usize> = 1..=10_000_000;
/// Bounds of `max_list_bytes` (1 KiB to 1 GiB).
const MAX_LIST_BYTES_RANGE: std::ops::RangeInclusive<usize> = 1024..=1024 * 1024 * 1024;
/// Bounds of `max_token_lifetime_seconds` and `subject_ttl_seconds` (a year).
const LIFETIME_RANGE: std::ops::RangeInclusive<i64> = 1..=366 * 86_400;
/// Default `redis_prefix`.
pub(super) const DEFAULT_REDIS_PREFIX: &str = "jwtd:revocation";

/// `[revocation]`; `issuers` are the configured issuers, which `issuers`
/// in the section must name and whose leeways bound `subject_ttl_seconds`.
pub(super) fn revocation_config(
    raw: RawRevocation,
    base: &Path,
    issuers: &[IssuerConfig],
) -> Result<RevocationConfig, ConfigError> {
    let at = |field: &str| format!("revocation.{field}");
    if raw.file.is_none() && raw.url.is_none() && raw.redis_url.is_none() {
        return Err(invalid(
            "revocation",
            "names no source: set file, url or redis_url (or remove the section)",
        ));
    }
    let allow_insecure_http = raw.allow_insecure_http.unwrap_or(false);
    let url = raw
        .url
        .map(|text| {
            let url = Url::parse(&text)
                .map_err(|e| invalid(at("url"), format!("{text:?} is not a URL ({e})")))?;
            match url.scheme() {
                "https" => Ok(url),
                "http" if allow_insecure_http => Ok(url),
                "http" => Err(invalid(
                    at("url"),
                    format!(
                        "{text:?} is not https (set allow_insecure_http = true for loopback and tests)"
                    ),
                )),
                _ => Err(invalid(at("url"), format!("{text:?} is not an http(s) URL"))),
            }
        })
        .transpose()?;
    let redis_url = raw
        .redis_url
        .map(|text| {
            // The text may hold a password: errors show only what is safe.
            let parsed = Url::parse(&text).map_err(|e| {
                invalid(
                    at("redis_url"),
                    format!("is not a URL like \"redis://host:6379/0\" ({e})"),
                )
            })?;
            let shown = format!(
                "{}://{}",
                parsed.scheme(),
                parsed.host_str().unwrap_or_default()
            );
            RedisUrl::try_new(parsed)
                .map_err(|problem| invalid(at("redis_url"), format!("{shown:?} {problem}")))
        })
        .transpose()?;

    let refresh = |default: Duration| seconds(&at("refresh_seconds"), raw.refresh_seconds, default);
    let file_refresh = refresh(Duration::from_secs(5))?;
    let url_refresh = refresh(Duration::from_secs(30))?;
    let max_stale = seconds(
        &at("max_stale_seconds"),
        raw.max_stale_seconds,
        Duration::from_secs(300),
    )?;
    let on_stale = match raw.on_stale.as_deref() {
        None | Some("serve") => OnStale::Serve,
        Some("unavailable") => OnStale::Unavailable,
        Some(other) => {
            return Err(invalid(
                at("on_stale"),
                format!("{other:?} is neither \"serve\" nor \"unavailable\""),
            ));
        }
    };
    let covered = match raw.issuers {
        None => None,
        Some(list) if list.is_empty() => {
            return Err(invalid(
                at("issuers"),
                "is empty: leave it out to cover every issuer",
            ));
        }
        Some(list) => {
            for (i, name) in list.iter().enumerate() {
                if !issuers.iter().any(|c| c.policy.issuer() == name) {
                    return Err(invalid(
                        format!("revocation.issuers[{i}]"),
                        format!("{name:?} is not a configured issuer"),
                    ));
                }
            }
            Some(list)
        }
    };
    let max_entries = raw.max_entries.unwrap_or(DEFAULT_REVOCATION_MAX_ENTRIES);
    if !MAX_ENTRIES_RANGE.contains(&max_entries) {
        return Err(invalid(
            at("max_entries"),
            format!(
                "{max_entries} is outside {}..={}",
                MAX_ENTRIES_RANGE.start(),
                MAX_ENTRIES_RANGE.end()
            ),
        ));
    }
    let max_list_bytes = raw
        .max_list_bytes
        .unwrap_or(DEFAULT_REVOCATION_MAX_LIST_BYTES);
    if !MAX_LIST_BYTES_RANGE.contains(&max_list_bytes) {
        return Err(invalid(
            at("max_list_bytes"),
            format!(
                "{max_list_bytes} is outside {}..={}",
                MAX_LIST_BYTES_RANGE.start(),
                MAX_LIST_BYTES_RANGE.end()
            ),
        ));
    }
    let lifetime = |key: &str, value: i64| {
        if LIFETIME_RANGE.contains(&value) {
            Ok(value)
        } else {
            Err(invalid(
                at(key),
                format!(
                    "{value} is outside {}..={}",
                    LIFETIME_RANGE.start(),
                    LIFETIME_RANGE.end()
                ),
            ))
        }
    };
    let max_token_lifetime_seconds = lifetime(
        "max_token_lifetime_seconds",
        raw.max_token_lifetime_seconds
            .unwrap_or(DEFAULT_MAX_TOKEN_LIFETIME_SECONDS),
    )?;
    // A token issued just before revoked_at is VALID until its exp plus the
    // leeway: the subject entry must outlive that.
    let leeway = issuers
        .iter()
        .filter(|c| {
            covered
                .as_ref()
                .is_none_or(|list| list.iter().any(|n| n == c.policy.issuer()))
        })
        .map(|c| c.policy.leeway().seconds())
        .max()
        .unwrap_or(0);
    let needed = max_token_lifetime_seconds + leeway;
    let subject_ttl_seconds = match raw.subject_ttl_seconds {
        None => lifetime(
            "subject_ttl_seconds",
            max_token_lifetime_seconds + MAX_LEEWAY_SECONDS,
        )?,
        Some(ttl) => {
            let ttl = lifetime("subject_ttl_seconds", ttl)?;
            if ttl < needed {
                return Err(invalid(
                    at("subject_ttl_seconds"),
                    format!(
                        "{ttl} is under max_token_lifetime_seconds ({max_token_lifetime_seconds}) plus \
                         the largest covered leeway ({leeway}): a token issued just before a subject's \
                         revocation would outlive its entry"
                    ),
                ));
            }
            ttl
        }
    };
    let redis_prefix = raw
        .redis_prefix
        .unwrap_or_else(|| DEFAULT_REDIS_PREFIX.to_owned());
    if !valid_prefix(&redis_prefix) {
        return Err(invalid(
            at("redis_prefix"),
            format!(
                "{redis_prefix:?} is not 1 to 64 characters of A-Z, a-z, 0-9 and \":_.-\" \
                 (it goes into a SCAN pattern)"
            ),
        ));
    }
    Ok(RevocationConfig {
        file: raw.file.map(|p| base.join(p)),
        url,
        redis_url,
        allow_insecure_http,
        file_refresh,
        url_refresh,
        max_stale,
        on_stale,
        issuers: covered,
        max_entries,
        max_list_bytes,
        max_token_lifetime_seconds,
        subject_ttl_seconds,
        redis_prefix,
    })
}

/// A Redis key prefix without glob characters (`*?[]\`), spaces or
/// anything a SCAN MATCH pattern would read specially.
fn valid_prefix(prefix: &str) -> bool {
    (1..=64).contains(&prefix.len())
        && prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b":_.-".contains(&b))
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    use crate::config::settings::OnStale;
    use crate::config::{Config, ConfigError};

    const ISSUER: &str =
        "[[issuers]]\nissuer = \"https://issuer.example\"\njwks_file = \"jwks.json\"\n";

    fn parse(section: &str) -> Result<Config, ConfigError> {
        Config::from_toml(
            &format!("[revocation]\n{section}\n{ISSUER}"),
            Path::new("/etc/jwtd"),
        )
    }

    fn invalid(section: &str) -> (String, String) {
        match parse(section) {
            Err(ConfigError::Invalid { key, problem }) => (key, problem),
            other => panic!("expected Invalid for {section:?}, got {other:?}"),
        }
    }

    #[test]
    fn every_key_parses_with_its_default() {
        let c = parse("file = \"revoked.jsonl\"").expect("valid");
        let r = c.revocation.expect("section");
        assert_eq!(r.file, Some(PathBuf::from("/etc/jwtd/revoked.jsonl")));
        assert_eq!(r.file_refresh, Duration::from_secs(5));
        assert_eq!(r.url_refresh, Duration::from_secs(30));
        assert_eq!(r.max_stale, Duration::from_secs(300));
        assert_eq!(r.on_stale, OnStale::Serve);
        assert_eq!(r.max_entries, 100_000);
        assert_eq!(r.subject_ttl_seconds, 86_400 + 3_600);
        assert_eq!(r.redis_prefix, "jwtd:revocation");
        assert!(
            Config::from_toml(ISSUER, Path::new("/"))
                .expect("valid")
                .revocation
                .is_none()
        );

        let c = parse(
            "url = \"http://127.0.0.1:8080/revoked\"\nallow_insecure_http = true\n\
             redis_url = \"rediss://:pw@redis.internal:6380/2\"\nrefresh_seconds = 2\n\
             max_stale_seconds = 10\non_stale = \"unavailable\"\n\
             issuers = [\"https://issuer.example\"]\nmax_entries = 5\nmax_list_bytes = 2048\n\
             max_token_lifetime_seconds = 600\nsubject_ttl_seconds = 700\nredis_prefix = \"x:y\"",
        )
        .expect("valid");
        let r = c.revocation.expect("section");
        assert_eq!(r.url_refresh, Duration::from_secs(2));
        assert_eq!(r.on_stale, OnStale::Unavailable);
        let redis = r.redis_url.expect("redis");
        assert!(redis.is_tls());
        assert!(!format!("{redis:?}").contains("pw"), "{redis:?}");
        assert_eq!(r.subject_ttl_seconds, 700);
    }

    #[test]
    fn bad_values_are_refused_naming_the_key() {
        for (section, key, says) in [
            ("", "revocation", "names no source"),
            ("url = \"not a url\"", "revocation.url", "not a URL"),
            (
                "url = \"http://lists.example/r\"",
                "revocation.url",
                "allow_insecure_http",
            ),
            (
                "url = \"ftp://lists.example/r\"",
                "revocation.url",
                "http(s)",
            ),
            (
                "redis_url = \"http://redis:6379\"",
                "revocation.redis_url",
                "redis://",
            ),
            (
                "redis_url = \"://:pw@\"",
                "revocation.redis_url",
                "not a URL",
            ),
            (
                "file = \"f\"\non_stale = \"ignore\"",
                "revocation.on_stale",
                "\"ignore\"",
            ),
            ("file = \"f\"\nissuers = []", "revocation.issuers", "empty"),
            (
                "file = \"f\"\nissuers = [\"https://else\"]",
                "revocation.issuers[0]",
                "not a configured",
            ),
            (
                "file = \"f\"\nmax_entries = 0",
                "revocation.max_entries",
                "outside",
            ),
            (
                "file = \"f\"\nmax_list_bytes = 10",
                "revocation.max_list_bytes",
                "outside",
            ),
            (
                "file = \"f\"\nredis_prefix = \"a*\"",
                "revocation.redis_prefix",
                "SCAN",
            ),
            (
                "file = \"f\"\nmax_token_lifetime_seconds = 600\nsubject_ttl_seconds = 599",
                "revocation.subject_ttl_seconds",
                "outlive",
            ),
            (
                "file = \"f\"\nrefresh_seconds = -1",
                "revocation.refresh_seconds",
                "",
            ),
        ] {
            let (got, problem) = invalid(section);
            assert_eq!(got, key, "{section:?}: {problem}");
            assert!(problem.contains(says), "{section:?}: {problem}");
            assert!(!problem.contains("pw"), "{problem}");
        }
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = parse("file = \"f\"\nrefresh = 5").expect_err("unknown key");
        assert!(err.to_string().contains("refresh"), "{err}");
    }
}
