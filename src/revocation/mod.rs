//! Revocation (issue 13 §3): lists of revoked tokens that every VALID answer
//! is checked against, from a file, a URL and a shared Redis. Owns the
//! sources' tasks and the in-memory store; must not sit in the pure core
//! (`verify` knows nothing of lists: the engine checks an authenticated,
//! admitted token against [`store::Revocations`] as the last step).
//!
//! - [`entry`]: the entry format (JSON Lines) and its parser;
//! - [`store`]: the per-source tables and the hot-path check;
//! - [`file`], [`url`], [`redis`]: the sources, each a task that fills its
//!   table and reports each sync;
//! - [`start`] builds the store from `[revocation]` and spawns the tasks.
//!
//! Decisions:
//! - **Checked after the memo, for hits and misses alike**: the memo holds
//!   authentication (signature, key, issuer), never admission, so a token
//!   revoked after it was memoized is REVOKED at its next call. The check
//!   costs an atomic load per source when the lists are empty and two hash
//!   lookups when not (BENCHMARKS.md, "Revocation (issue 13)").
//! - **Three sources, one meaning**: a file for deployments that render
//!   lists (Vault Agent, ConfigMaps), a URL for a central list service
//!   (polled with If-None-Match, so an unchanged list costs a 304), and
//!   Redis for revocations every replica must see within a second. Entries
//!   of all sources apply together; a source's entries are replaced only by
//!   that source.
//! - **Redis pub/sub, not polling**: polling 100,000 keys every second from
//!   every replica would cost Redis more than all of jwtd's other work; a
//!   PUBLISH after each write reaches every subscribed replica in well under
//!   a millisecond on a LAN, and a full SCAN at start and on every
//!   reconnect (plus every [`redis::RESYNC_EVERY`]) covers what a dropped
//!   connection missed. Keys EXPIRE with the tokens they revoke, so Redis
//!   holds only what still matters.
//! - **Retention**: a jti entry is kept until the token's `exp` plus the
//!   issuer's leeway (after that the token is EXPIRED anyway). A subject
//!   entry has no natural end: in Redis it lives `subject_ttl_seconds`
//!   after `revoked_at` (default `max_token_lifetime_seconds` 86,400 plus
//!   the largest leeway 3,600 = 90,000 s), after which every token issued
//!   before it has expired; a listed subject entry lasts while it is listed.
//! - **Staleness is the operator's choice** (`on_stale`): serving the last
//!   list (default) keeps jwtd up when the list service is down, at the
//!   cost of missing new revocations; `unavailable` answers
//!   KEYS_UNAVAILABLE for the covered issuers instead, as a key outage
//!   does. `max_stale_seconds` (300 by default) is ten URL polls or five
//!   minutes of failed Redis heartbeats.
//! - **What reloads**: the lists themselves (file changes, URL polls, Redis
//!   updates) apply on their own; the `[revocation]` section's settings and
//!   the leeways used for jti retention are read at start, and a SIGHUP
//!   that changes them logs that a restart is needed, as for `[callers]`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::config::settings::{IssuerConfig, RevocationConfig, Startup};
use crate::keys::fetch::{FetchError, FetchLimits};
use crate::observability::telemetry;
use crate::verifier::clock::Clock;

pub mod entry;
pub mod file;
pub mod redis;
pub mod store;
pub mod url;

pub use entry::{Entry, EntryError, ParsedList, parse_entry, parse_list};
pub use store::{Freshness, Revocations, Source, SourceKind, StoreSettings};

/// How often staleness is swept and expired entries dropped.
pub const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Why a revocation source could not be read, or an entry not written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RevocationError {
    /// The list file could not be read.
    #[error("cannot read {path}: {reason}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        reason: String,
    },
    /// The list is over `max_list_bytes`.
    #[error("{what} is larger than {max} bytes (revocation.max_list_bytes)")]
    TooLarge {
        /// The file or URL.
        what: String,
        /// The cap.
        max: usize,
    },
    /// The URL could not be fetched.
    #[error("cannot fetch the revocation list: {0}")]
    Fetch(#[from] FetchError),
    /// Redis refused, failed or could not be reached (the URL's password
    /// never appears here).
    #[error("redis {location}: {reason}")]
    Redis {
        /// The Redis URL without credentials.
        location: String,
        /// What went wrong.
        reason: String,
    },
    /// `jwtd revoke` needs a `[revocation] redis_url`.
    #[error("no [revocation] redis_url in the config: jwtd revoke writes to Redis")]
    NoRedis,
    /// The entry would expire at once: the token is expired already.
    #[error("the entry would expire at {until}, which is not after now ({now}): nothing to revoke")]
    AlreadyExpired {
        /// When the entry would expire.
        until: i64,
        /// The time now.
        now: i64,
    },
}

/// Logs the bad lines of a list (with their line numbers) and counts them.
pub(crate) fn report_list(source: &Source, list: &ParsedList) {
    for bad in list.bad.iter().take(MAX_BAD_LINES_LOGGED) {
        tracing::warn!(
            source = source.kind().name(),
            location = source.location(),
            line = bad.line,
            "revocation list line {} skipped: {}",
            bad.line,
            bad.error
        );
    }
    if list.bad.len() > MAX_BAD_LINES_LOGGED {
        tracing::warn!(
            source = source.kind().name(),
            location = source.location(),
            "{} more bad lines skipped",
            list.bad.len() - MAX_BAD_LINES_LOGGED
        );
    }
    telemetry::revocation_refused(source.kind().name(), "invalid", list.bad.len());
}

/// Bad lines logged one by one per load; the rest are counted in one line.
const MAX_BAD_LINES_LOGGED: usize = 20;

/// The store's settings from `[revocation]`, the issuers and `startup`.
pub fn store_settings(
    config: &RevocationConfig,
    issuers: &[IssuerConfig],
    startup: Startup,
) -> StoreSettings {
    StoreSettings {
        on_stale: config.on_stale,
        covered: config.issuers.clone(),
        max_entries: config.max_entries,
        leeways: leeways(issuers),
        subject_ttl_seconds: config.subject_ttl_seconds,
        wait_for_first_load: startup == Startup::Wait,
    }
}

/// Each configured issuer's leeway, in seconds.
pub fn leeways(issuers: &[IssuerConfig]) -> HashMap<String, i64> {
    issuers
        .iter()
        .map(|c| (c.policy.issuer().to_owned(), c.policy.leeway().seconds()))
        .collect()
}

/// Builds the store for `config` and spawns its sources' tasks (and the
/// sweep of staleness and expired entries); they stop when the store is
/// dropped. Must run inside a tokio runtime.
pub fn start(
    config: &RevocationConfig,
    issuers: &[IssuerConfig],
    startup: Startup,
    fetch: FetchLimits,
    clock: Arc<dyn Clock>,
) -> Result<Arc<Revocations>, RevocationError> {
    let mut sources = Vec::new();
    if let Some(path) = &config.file {
        sources.push((SourceKind::File, path.display().to_string()));
    }
    if let Some(url) = &config.url {
        sources.push((SourceKind::Url, url::shown(url)));
    }
    if let Some(redis) = &config.redis_url {
        sources.push((SourceKind::Redis, redis.redacted()));
    }
    let store = Arc::new(Revocations::new(
        &sources,
        &store_settings(config, issuers, startup),
    ));
    if let (Some(path), Some(source)) = (&config.file, store.source(SourceKind::File)) {
        store.adopt(tokio::spawn(file::run(
            Arc::clone(source),
            path.clone(),
            config.file_refresh,
            config.max_list_bytes,
            Arc::clone(&clock),
        )));
    }
    if let (Some(list), Some(source)) = (&config.url, store.source(SourceKind::Url)) {
        let limits = FetchLimits {
            max_bytes: config.max_list_bytes,
            ..fetch
        };
        let fetcher = crate::keys::fetch::Fetcher::new(limits, config.allow_insecure_http)?;
        store.adopt(tokio::spawn(url::run(
            Arc::clone(source),
            fetcher,
            list.clone(),
            config.url_refresh,
            Arc::clone(&clock),
        )));
    }
    if let (Some(target), Some(source)) = (&config.redis_url, store.source(SourceKind::Redis)) {
        let redis = redis::Redis::new(target, &config.redis_prefix)?;
        store.adopt(tokio::spawn(redis::run(
            Arc::clone(source),
            redis,
            config.max_entries,
            Arc::clone(&clock),
        )));
    }
    let weak = Arc::downgrade(&store);
    let max_stale = config.max_stale;
    store.adopt(tokio::spawn(async move {
        let mut every = tokio::time::interval(SWEEP_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            // The store owns this task: once it is gone, so is the sweep.
            let Some(store) = weak.upgrade() else { return };
            store.sweep_staleness(max_stale);
            store.prune(clock.now());
        }
    }));
    Ok(store)
}
