//! The URL source: a JSON Lines list polled over HTTP(S) every
//! `refresh_seconds` with `If-None-Match`. Fetches through
//! [`crate::keys::fetch`] (the only HTTP client), keeps only the ETag.
//!
//! Decisions:
//! - **Every 30 s by default, jittered ±20 %** (as key refreshes), so
//!   replicas started together do not poll together; with ETags an
//!   unchanged list costs the server a 304 and jwtd nothing.
//! - **A 304 is a sync**: the list is known current. A failed poll keeps
//!   the last list; the source turns stale after `max_stale_seconds`.
//! - **Same rules as JWKS fetches**: https unless `allow_insecure_http`,
//!   timeouts from `[fetch]`, redirects bounded and never to http, the body
//!   capped while streaming at `max_list_bytes` (16 MiB by default).
//! - **Logs show the URL without its query or credentials**: a list URL
//!   may carry an access token.

use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;

use crate::keys::fetch::{Conditional, FetchError, Fetcher};
use crate::keys::registry::jitter;
use crate::revocation::entry::parse_list;
use crate::revocation::report_list;
use crate::revocation::store::Source;
use crate::verifier::clock::Clock;

/// The Accept header of list fetches.
pub const ACCEPT: &str = "application/jsonl, application/x-ndjson, text/plain;q=0.9, */*;q=0.1";

/// `url` without credentials, query or fragment, for logs.
pub fn shown(url: &Url) -> String {
    let mut shown = url.clone();
    shown.set_query(None);
    shown.set_fragment(None);
    // Fails only for URLs that cannot have credentials: nothing to hide.
    let _ = shown.set_password(None);
    let _ = shown.set_username("");
    shown.to_string()
}

/// One poll: the new list's entry count when it changed, `None` on a 304.
pub(crate) async fn poll(
    source: &Source,
    fetcher: &Fetcher,
    url: &Url,
    etag: &mut Option<String>,
    clock: &dyn Clock,
) -> Result<Option<usize>, FetchError> {
    match fetcher
        .get_if_none_match(url, ACCEPT, etag.as_deref())
        .await?
    {
        Conditional::NotModified => Ok(None),
        Conditional::Fetched { body, etag: next } => {
            let list = parse_list(&body);
            report_list(source, &list);
            let applied = source.replace(list.entries, clock.now());
            tracing::info!(
                source = "url",
                url = source.location(),
                entries = applied.kept,
                expired = applied.expired,
                over_cap = applied.over_cap,
                etag = next.as_deref().unwrap_or(""),
                "revocation list loaded"
            );
            *etag = next;
            Ok(Some(applied.kept))
        }
    }
}

/// The URL source's task: polls every `every` (jittered), recording each
/// sync.
pub(crate) async fn run(
    source: Arc<Source>,
    fetcher: Fetcher,
    url: Url,
    every: Duration,
    clock: Arc<dyn Clock>,
) {
    let mut etag = None;
    let mut failures = 0u32;
    loop {
        match poll(&source, &fetcher, &url, &mut etag, clock.as_ref()).await {
            Ok(_) => {
                failures = 0;
                source.synced();
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                source.failed();
                if failures.is_power_of_two() {
                    tracing::warn!(
                        source = "url",
                        url = source.location(),
                        failures,
                        "revocation list not fetched, keeping the last one: {e}"
                    );
                }
            }
        }
        tokio::time::sleep(jitter(every)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_urls_hide_credentials_and_query() {
        let url =
            Url::parse("https://user:pw@lists.example/revoked.jsonl?token=s3cret#x").expect("url");
        assert_eq!(shown(&url), "https://lists.example/revoked.jsonl");
    }
}
