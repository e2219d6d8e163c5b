//! The in-memory revocation lists that every VALID answer is checked
//! against: one table per source, and [`Revocations::check`], the lookup on
//! the hot path. Holds entries and each source's freshness; does no I/O
//! (the sources in `file`, `url` and `redis` fill it).
//!
//! Decisions, and the numbers behind them (BENCHMARKS.md has the runs):
//! - **One papaya table per source, keyed by (kind, issuer, id)**, looked
//!   up with a borrowed [`Probe`] of `&str`s (papaya's `Equivalent`), so a
//!   check allocates nothing and hashes each string once. papaya because
//!   Redis applies single entries while tokens are checked: its reads are
//!   lock-free and write nothing shared (as for the memo), and a write
//!   never copies the table, where a copy-on-write snapshot would cost
//!   O(entries) per revocation (~10 ms at 100,000 entries).
//! - **A whole list is applied as a difference**: keys the new list lacks
//!   are removed, then new and changed entries inserted. An entry in both
//!   lists is never absent, so a reload cannot let a revoked token through
//!   for an instant (clearing and refilling would).
//! - **An empty table costs one atomic load**: most deployments list few
//!   entries most of the time; the count is checked before any hashing.
//! - **Entries expire by the check's own clock**: a jti entry applies until
//!   its `exp` plus the issuer's leeway (from the configuration at start;
//!   an issuer jwtd does not know gets the largest leeway, 3600 s, which
//!   only keeps the entry longer); a Redis subject entry until `revoked_at`
//!   plus `subject_ttl_seconds`, as its key; a listed subject entry while it
//!   is listed. Expired entries are dropped from memory by a sweep
//!   ([`Revocations::prune`]) and skipped on load; the check ignores them
//!   meanwhile, so the answer does not depend on when the sweep ran.
//! - **Bounded**: at most `max_entries` per source (a whole list keeps its
//!   first `max_entries` entries in list order; a Redis entry past the cap
//!   is refused), each counted in `jwtd_revocation_refused_entries_total`.
//!   About 200 bytes per entry: 100,000 entries are ~20 MiB.
//! - **Freshness is a flag the hot path reads** (one relaxed load per
//!   source, and only with `on_stale = "unavailable"`); the sources set it
//!   on every sync and a sweep ([`Revocations::sweep_staleness`]) when no
//!   sync came for `max_stale_seconds`, both under one lock, so a sync
//!   racing the sweep can never leave a current source marked stale.
//! - **Duplicates in one list**: for a subject, the latest `revoked_at`
//!   wins (it revokes more); for a jti, the latest `exp`. A Redis update
//!   replaces its key's entry, as Redis did.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use papaya::Equivalent;
use tokio::sync::watch;

use crate::config::settings::OnStale;
use crate::observability::telemetry;
use crate::revocation::entry::Entry;
use crate::runtime::sync::lock;
use crate::verifier::claims::Claims;
use crate::verifier::policy::MAX_LEEWAY_SECONDS;
use crate::verifier::verify::{Rejection, RevokedBy, UnixTime};

/// Where a source's entries come from. At most one source of each kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceKind {
    /// `[revocation] file`.
    File,
    /// `[revocation] url`.
    Url,
    /// `[revocation] redis_url`.
    Redis,
}

impl SourceKind {
    /// The name in metrics labels, logs and reasons.
    pub fn name(self) -> &'static str {
        match self {
            SourceKind::File => "file",
            SourceKind::Url => "url",
            SourceKind::Redis => "redis",
        }
    }
}

impl fmt::Display for SourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Whether a source's list can be trusted to be current.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Freshness {
    /// Not loaded yet, and `max_stale_seconds` have not passed since start.
    Pending = 0,
    /// Synced within `max_stale_seconds`.
    Fresh = 1,
    /// No sync for `max_stale_seconds` (or never loaded in that time).
    Stale = 2,
}

impl Freshness {
    fn from_u8(v: u8) -> Self {
        match v {
            0 => Freshness::Pending,
            1 => Freshness::Fresh,
            _ => Freshness::Stale,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Jti,
    Subject,
}

/// A table key: the kind of entry, its issuer, and its jti or subject.
#[derive(Debug, PartialEq, Eq)]
struct Key {
    kind: Kind,
    iss: Box<str>,
    id: Box<str>,
}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        Probe {
            kind: self.kind,
            iss: &self.iss,
            id: &self.id,
        }
        .hash(state);
    }
}

/// A [`Key`] borrowed from a token's claims: what the hot path looks up.
/// Hashes exactly as the key it stands for.
struct Probe<'a> {
    kind: Kind,
    iss: &'a str,
    id: &'a str,
}

impl Hash for Probe<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.kind.hash(state);
        // `str` hashes with a terminator, so ("a", "bc") and ("ab", "c")
        // differ.
        self.iss.hash(state);
        self.id.hash(state);
    }
}

impl Equivalent<Key> for Probe<'_> {
    fn equivalent(&self, key: &Key) -> bool {
        self.kind == key.kind && self.iss == &*key.iss && self.id == &*key.id
    }
}

/// What an entry revokes, and until when it applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Mark {
    /// Tokens issued before this are revoked (`i64::MAX` for a jti entry).
    revoked_at: i64,
    /// The entry applies while `now < until`.
    until: i64,
}

impl Mark {
    /// Two entries for one key: the one that revokes more, longer.
    fn merge(self, other: Mark) -> Mark {
        Mark {
            revoked_at: self.revoked_at.max(other.revoked_at),
            until: self.until.max(other.until),
        }
    }
}

/// What applying a whole list did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Applied {
    /// Entries the source holds now.
    pub kept: usize,
    /// Entries skipped because they no longer apply.
    pub expired: usize,
    /// Entries refused past `max_entries`.
    pub over_cap: usize,
}

/// An entry refused because its source holds `max_entries` already.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the source holds its maximum of {0} entries")]
pub struct OverCap(pub usize);

/// How a source keeps entries.
#[derive(Debug, Clone)]
struct Retention {
    max_entries: usize,
    /// Leeway per configured issuer, at start.
    leeways: Arc<HashMap<String, i64>>,
    /// For Redis: subject entries expire this long after `revoked_at`.
    subject_ttl: Option<i64>,
}

/// Readiness: flips to true once every source has loaded once.
#[derive(Debug)]
struct ReadyGate {
    ready: watch::Sender<bool>,
    pending: AtomicUsize,
}

impl ReadyGate {
    fn loaded_one(&self) {
        if self.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.ready.send_replace(true);
        }
    }
}

/// When a source last synced, and its freshness, changed together.
#[derive(Debug)]
struct SyncState {
    last_ok: Option<Instant>,
}

/// One source's entries and state.
pub struct Source {
    kind: SourceKind,
    location: String,
    table: papaya::HashMap<Key, Mark>,
    /// Entries in `table`; written only under `writer`.
    len: AtomicUsize,
    writer: Mutex<()>,
    freshness: AtomicU8,
    loaded_once: AtomicBool,
    sync: Mutex<SyncState>,
    retention: Retention,
    gate: Arc<ReadyGate>,
}

impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Source")
            .field("kind", &self.kind)
            .field("location", &self.location)
            .field("entries", &self.len())
            .field("freshness", &self.freshness())
            .finish_non_exhaustive()
    }
}

impl Source {
    /// The source's kind.
    pub fn kind(&self) -> SourceKind {
        self.kind
    }

    /// Where it reads from (a path, a URL without credentials or query, a
    /// Redis host), for logs.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// Entries held now.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// True when it holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Its freshness now.
    pub fn freshness(&self) -> Freshness {
        Freshness::from_u8(self.freshness.load(Ordering::Relaxed))
    }

    /// True once it has loaded at least once.
    pub fn loaded_once(&self) -> bool {
        self.loaded_once.load(Ordering::Acquire)
    }

    fn leeway_of(&self, iss: &str) -> i64 {
        self.retention
            .leeways
            .get(iss)
            .copied()
            .unwrap_or(MAX_LEEWAY_SECONDS)
    }

    fn key_of(&self, entry: Entry) -> (Key, Mark) {
        match entry {
            Entry::Jti { iss, jti, exp } => {
                let until = exp.saturating_add(self.leeway_of(&iss));
                let key = Key {
                    kind: Kind::Jti,
                    iss: iss.into_boxed_str(),
                    id: jti.into_boxed_str(),
                };
                (
                    key,
                    Mark {
                        revoked_at: i64::MAX,
                        until,
                    },
                )
            }
            Entry::Subject {
                iss,
                sub,
                revoked_at,
            } => {
                let until = self
                    .retention
                    .subject_ttl
                    .map_or(i64::MAX, |ttl| revoked_at.saturating_add(ttl));
                let key = Key {
                    kind: Kind::Subject,
                    iss: iss.into_boxed_str(),
                    id: sub.into_boxed_str(),
                };
                (key, Mark { revoked_at, until })
            }
        }
    }

    /// Replaces the source's entries with `entries` (a whole list), as a
    /// difference: entries in both the old and the new list stay present
    /// throughout.
    pub fn replace(&self, entries: impl IntoIterator<Item = Entry>, now: UnixTime) -> Applied {
        let _writer = lock(&self.writer);
        let max = self.retention.max_entries;
        let mut applied = Applied::default();
        let mut next: HashMap<Key, Mark> = HashMap::new();
        for entry in entries {
            let (key, mark) = self.key_of(entry);
            if mark.until <= now.0 {
                applied.expired += 1;
                continue;
            }
            let full = next.len() >= max;
            match next.get_mut(&key) {
                Some(existing) => *existing = existing.merge(mark),
                None if full => applied.over_cap += 1,
                None => {
                    next.insert(key, mark);
                }
            }
        }
        let table = self.table.pin();
        table.retain(|key, _| next.contains_key(key));
        applied.kept = next.len();
        for (key, mark) in next {
            if table.get(&key) != Some(&mark) {
                table.insert(key, mark);
            }
        }
        self.len.store(applied.kept, Ordering::Relaxed);
        telemetry::revocation_entries(self.kind.name(), applied.kept);
        telemetry::revocation_refused(self.kind.name(), "over_cap", applied.over_cap);
        applied
    }

    /// Applies one entry (a Redis update): it replaces its key's entry. An
    /// entry that no longer applies removes its key. `Ok(true)` when the
    /// table changed.
    pub fn apply(&self, entry: Entry, now: UnixTime) -> Result<bool, OverCap> {
        let _writer = lock(&self.writer);
        let (key, mark) = self.key_of(entry);
        let table = self.table.pin();
        let changed = if mark.until <= now.0 {
            let removed = table.remove(&key).is_some();
            if removed {
                self.len.fetch_sub(1, Ordering::Relaxed);
            }
            removed
        } else {
            match table.get(&key) {
                Some(existing) if *existing == mark => false,
                Some(_) => {
                    table.insert(key, mark);
                    true
                }
                None if self.len() >= self.retention.max_entries => {
                    telemetry::revocation_refused(self.kind.name(), "over_cap", 1);
                    return Err(OverCap(self.retention.max_entries));
                }
                None => {
                    table.insert(key, mark);
                    self.len.fetch_add(1, Ordering::Relaxed);
                    true
                }
            }
        };
        telemetry::revocation_entries(self.kind.name(), self.len());
        Ok(changed)
    }

    /// Drops the entries that no longer apply at `now`; returns how many.
    pub fn prune(&self, now: UnixTime) -> usize {
        let _writer = lock(&self.writer);
        let mut dropped = 0;
        self.table.pin().retain(|_, mark| {
            let keep = mark.until > now.0;
            dropped += usize::from(!keep);
            keep
        });
        if dropped > 0 {
            self.len.fetch_sub(dropped, Ordering::Relaxed);
            telemetry::revocation_entries(self.kind.name(), self.len());
        }
        dropped
    }

    /// Records a successful sync (a list read or found unchanged, a 304, a
    /// Redis load or heartbeat): the source is current.
    pub fn synced(&self) {
        let was = {
            let mut sync = lock(&self.sync);
            sync.last_ok = Some(Instant::now());
            Freshness::from_u8(
                self.freshness
                    .swap(Freshness::Fresh as u8, Ordering::Relaxed),
            )
        };
        telemetry::revocation_sync(self.kind.name(), true, telemetry::unix_now());
        if was == Freshness::Stale {
            telemetry::revocation_stale(self.kind.name(), false);
            tracing::info!(
                source = self.kind.name(),
                location = %self.location,
                entries = self.len(),
                "revocation source is current again"
            );
        }
        if !self.loaded_once.swap(true, Ordering::AcqRel) {
            self.gate.loaded_one();
        }
    }

    /// Records a failed sync (the source's task logs why).
    pub fn failed(&self) {
        telemetry::revocation_sync(self.kind.name(), false, 0.0);
    }

    /// Marks the source stale when it has not synced for `max_stale` (since
    /// `started` when it never did). True when it just became stale.
    fn sweep_staleness(&self, max_stale: Duration, started: Instant) -> bool {
        let sync = lock(&self.sync);
        let since = sync.last_ok.unwrap_or(started);
        if since.elapsed() < max_stale {
            return false;
        }
        let was = self
            .freshness
            .swap(Freshness::Stale as u8, Ordering::Relaxed);
        was != Freshness::Stale as u8
    }

    /// The entry that revokes this token, if any.
    fn revoked(&self, iss: &str, claims: &Claims, now: UnixTime) -> Option<RevokedBy> {
        if self.len.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let table = self.table.pin();
        if let Some(jti) = claims.jti()
            && let Some(mark) = table.get(&Probe {
                kind: Kind::Jti,
                iss,
                id: jti,
            })
            && now.0 < mark.until
        {
            return Some(RevokedBy::Jti);
        }
        if let Some(sub) = claims.sub()
            && let Some(mark) = table.get(&Probe {
                kind: Kind::Subject,
                iss,
                id: sub,
            })
            && now.0 < mark.until
            // No iat: the token may be from any time, so it counts as before.
            && claims.iat().is_none_or(|iat| iat < mark.revoked_at)
        {
            return Some(RevokedBy::Subject {
                revoked_at: mark.revoked_at,
            });
        }
        None
    }
}

/// How the store answers and keeps entries (from `[revocation]` and the
/// issuers, at start).
#[derive(Debug, Clone)]
pub struct StoreSettings {
    /// What tokens get while a covering source is stale.
    pub on_stale: OnStale,
    /// The issuers the sources cover; `None` is every issuer.
    pub covered: Option<Vec<String>>,
    /// Most entries per source.
    pub max_entries: usize,
    /// Each configured issuer's leeway, in seconds.
    pub leeways: HashMap<String, i64>,
    /// Lifetime of a Redis subject entry after its `revoked_at`.
    pub subject_ttl_seconds: i64,
    /// Readiness waits for every source's first load (`startup = "wait"`).
    pub wait_for_first_load: bool,
}

/// Every source's entries, and the check every VALID answer goes through.
pub struct Revocations {
    sources: Box<[Arc<Source>]>,
    covered: Option<HashSet<String>>,
    on_stale: OnStale,
    gate: Arc<ReadyGate>,
    started: Instant,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl fmt::Debug for Revocations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Revocations")
            .field("sources", &self.sources)
            .field("on_stale", &self.on_stale)
            .finish_non_exhaustive()
    }
}

impl Drop for Revocations {
    fn drop(&mut self) {
        for task in lock(&self.tasks).drain(..) {
            task.abort();
        }
    }
}

impl Revocations {
    /// A store with one empty source per `(kind, location)` and no tasks:
    /// the sources' tasks (or a test, a bench) fill it.
    pub fn new(sources: &[(SourceKind, String)], settings: &StoreSettings) -> Self {
        let (ready, _) = watch::channel(!settings.wait_for_first_load || sources.is_empty());
        let gate = Arc::new(ReadyGate {
            ready,
            pending: AtomicUsize::new(sources.len()),
        });
        let leeways = Arc::new(settings.leeways.clone());
        let sources = sources
            .iter()
            .map(|(kind, location)| {
                telemetry::revocation_stale(kind.name(), false);
                telemetry::revocation_entries(kind.name(), 0);
                Arc::new(Source {
                    kind: *kind,
                    location: location.clone(),
                    table: papaya::HashMap::new(),
                    len: AtomicUsize::new(0),
                    writer: Mutex::new(()),
                    freshness: AtomicU8::new(Freshness::Pending as u8),
                    loaded_once: AtomicBool::new(false),
                    sync: Mutex::new(SyncState { last_ok: None }),
                    retention: Retention {
                        max_entries: settings.max_entries,
                        leeways: Arc::clone(&leeways),
                        subject_ttl: (*kind == SourceKind::Redis)
                            .then_some(settings.subject_ttl_seconds),
                    },
                    gate: Arc::clone(&gate),
                })
            })
            .collect();
        Self {
            sources,
            covered: settings
                .covered
                .as_ref()
                .map(|list| list.iter().cloned().collect()),
            on_stale: settings.on_stale,
            gate,
            started: Instant::now(),
            tasks: Mutex::new(Vec::new()),
        }
    }

    /// A store with no source: every check passes (no `[revocation]`).
    pub fn none() -> Self {
        Self::new(
            &[],
            &StoreSettings {
                on_stale: OnStale::Serve,
                covered: None,
                max_entries: 0,
                leeways: HashMap::new(),
                subject_ttl_seconds: 0,
                wait_for_first_load: false,
            },
        )
    }

    /// The sources, in the order `file`, `url`, `redis` (those configured).
    pub fn sources(&self) -> &[Arc<Source>] {
        &self.sources
    }

    /// The source of `kind`, if configured.
    pub fn source(&self, kind: SourceKind) -> Option<&Arc<Source>> {
        self.sources.iter().find(|s| s.kind == kind)
    }

    /// True once every source has loaded once (at once unless the store
    /// waits for first loads); watch it to drive readiness.
    pub fn ready(&self) -> watch::Receiver<bool> {
        self.gate.ready.subscribe()
    }

    /// Keeps `task` until the store is dropped, then aborts it.
    pub(crate) fn adopt(&self, task: tokio::task::JoinHandle<()>) {
        lock(&self.tasks).push(task);
    }

    /// True when the sources cover `issuer` (for `on_stale`).
    fn covers(&self, issuer: &str) -> bool {
        self.covered.as_ref().is_none_or(|c| c.contains(issuer))
    }

    /// The check: `Err(Revoked)` when an entry of any source revokes the
    /// token (`issuer` is its configured issuer, `claims` its claims), else
    /// with `on_stale = "unavailable"`, `Err(RevocationStale)` when a
    /// source covering the issuer is not current. Allocates nothing.
    pub fn check(&self, issuer: &str, claims: &Claims, now: UnixTime) -> Result<(), Rejection> {
        for source in &self.sources {
            if let Some(by) = source.revoked(issuer, claims, now) {
                return Err(Rejection::Revoked { by });
            }
        }
        if self.on_stale == OnStale::Unavailable {
            for source in &self.sources {
                if source.freshness() != Freshness::Fresh && self.covers(issuer) {
                    return Err(Rejection::RevocationStale {
                        list: source.kind.name(),
                    });
                }
            }
        }
        Ok(())
    }

    /// Marks the sources that have not synced for `max_stale` stale, with a
    /// metric and a log line per source that just became so. Returns them.
    pub fn sweep_staleness(&self, max_stale: Duration) -> Vec<SourceKind> {
        let mut now_stale = Vec::new();
        for source in &self.sources {
            if !source.sweep_staleness(max_stale, self.started) {
                continue;
            }
            telemetry::revocation_stale(source.kind.name(), true);
            let (kind, location, entries) = (source.kind.name(), &source.location, source.len());
            match (self.on_stale, source.loaded_once()) {
                (OnStale::Unavailable, _) => tracing::error!(
                    source = kind,
                    %location,
                    "revocation source has not synced for {max_stale:?}: tokens of the issuers it \
                     covers now get KEYS_UNAVAILABLE (on_stale = \"unavailable\")"
                ),
                (OnStale::Serve, true) => tracing::warn!(
                    source = kind,
                    %location,
                    entries,
                    "revocation source has not synced for {max_stale:?}: serving its last list \
                     (on_stale = \"serve\")"
                ),
                (OnStale::Serve, false) => tracing::warn!(
                    source = kind,
                    %location,
                    "revocation source has not loaded in {max_stale:?} since start: no entries of \
                     its own are applied (on_stale = \"serve\")"
                ),
            }
            now_stale.push(source.kind);
        }
        now_stale
    }

    /// Drops every source's entries that no longer apply at `now`.
    pub fn prune(&self, now: UnixTime) -> usize {
        self.sources.iter().map(|s| s.prune(now)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000;
    const ISS: &str = "https://issuer.test";

    fn settings() -> StoreSettings {
        StoreSettings {
            on_stale: OnStale::Serve,
            covered: None,
            max_entries: 100,
            leeways: HashMap::from([(ISS.to_owned(), 60)]),
            subject_ttl_seconds: 1000,
            wait_for_first_load: true,
        }
    }

    fn store(settings: &StoreSettings) -> Revocations {
        Revocations::new(
            &[
                (SourceKind::File, "/tmp/list".into()),
                (SourceKind::Redis, "redis://127.0.0.1:1/".into()),
            ],
            settings,
        )
    }

    fn claims(jti: Option<&str>, sub: Option<&str>, iat: Option<i64>) -> Claims {
        let mut payload = serde_json::json!({ "iss": ISS, "exp": NOW + 600 });
        if let Some(jti) = jti {
            payload["jti"] = jti.into();
        }
        if let Some(sub) = sub {
            payload["sub"] = sub.into();
        }
        if let Some(iat) = iat {
            payload["iat"] = iat.into();
        }
        Claims::parse(payload.to_string().as_bytes()).expect("claims parse")
    }

    fn jti(iss: &str, jti: &str, exp: i64) -> Entry {
        Entry::Jti {
            iss: iss.into(),
            jti: jti.into(),
            exp,
        }
    }

    fn subject(sub: &str, revoked_at: i64) -> Entry {
        Entry::Subject {
            iss: ISS.into(),
            sub: sub.into(),
            revoked_at,
        }
    }

    fn at(t: i64) -> UnixTime {
        UnixTime(t)
    }

    #[test]
    fn a_jti_entry_revokes_that_token_of_that_issuer_only() {
        let s = store(&settings());
        let file = s.source(SourceKind::File).expect("file");
        let applied = file.replace([jti(ISS, "j1", NOW + 600)], at(NOW));
        assert_eq!(applied.kept, 1);
        let revoked = Err(Rejection::Revoked { by: RevokedBy::Jti });
        assert_eq!(
            s.check(ISS, &claims(Some("j1"), None, None), at(NOW)),
            revoked
        );
        assert_eq!(
            s.check(ISS, &claims(Some("j2"), None, None), at(NOW)),
            Ok(())
        );
        assert_eq!(
            s.check(ISS, &claims(None, Some("j1"), None), at(NOW)),
            Ok(())
        );
        assert_eq!(
            s.check(
                "https://other.test",
                &claims(Some("j1"), None, None),
                at(NOW)
            ),
            Ok(()),
            "another issuer's token with the same jti"
        );
    }

    #[test]
    fn a_jti_entry_lasts_until_exp_plus_the_issuers_leeway() {
        let s = store(&settings());
        let file = s.source(SourceKind::File).expect("file");
        file.replace(
            [
                jti(ISS, "j1", NOW + 10),
                jti("https://unknown", "j1", NOW + 10),
            ],
            at(NOW),
        );
        let token = claims(Some("j1"), None, None);
        // Leeway 60: revoked through exp + 59, not at exp + 60.
        assert!(s.check(ISS, &token, at(NOW + 69)).is_err());
        assert_eq!(s.check(ISS, &token, at(NOW + 70)), Ok(()));
        // An issuer jwtd does not know gets the largest leeway.
        assert!(s.check("https://unknown", &token, at(NOW + 3609)).is_err());
        assert_eq!(s.check("https://unknown", &token, at(NOW + 3610)), Ok(()));
        // The sweep drops what no longer applies; the answer is unchanged.
        assert_eq!(file.prune(at(NOW + 70)), 1);
        assert_eq!(file.len(), 1);
        assert_eq!(file.prune(at(NOW + 3610)), 1);
        assert!(file.is_empty());
        // An entry already expired is not loaded at all.
        let applied = file.replace([jti(ISS, "old", NOW - 61)], at(NOW));
        assert_eq!((applied.kept, applied.expired), (0, 1));
    }

    #[test]
    fn a_subject_entry_revokes_tokens_issued_before_it_and_those_without_iat() {
        let s = store(&settings());
        let file = s.source(SourceKind::File).expect("file");
        file.replace([subject("alice", NOW - 100)], at(NOW));
        let revoked = Err(Rejection::Revoked {
            by: RevokedBy::Subject {
                revoked_at: NOW - 100,
            },
        });
        let before = claims(None, Some("alice"), Some(NOW - 101));
        let same = claims(None, Some("alice"), Some(NOW - 100));
        let after = claims(None, Some("alice"), Some(NOW - 99));
        let no_iat = claims(None, Some("alice"), None);
        assert_eq!(s.check(ISS, &before, at(NOW)), revoked);
        assert_eq!(s.check(ISS, &same, at(NOW)), Ok(()), "issued at revoked_at");
        assert_eq!(s.check(ISS, &after, at(NOW)), Ok(()));
        assert_eq!(s.check(ISS, &no_iat, at(NOW)), revoked);
        assert_eq!(
            s.check(ISS, &claims(None, Some("bob"), Some(NOW - 101)), at(NOW)),
            Ok(())
        );
        // A listed subject entry lasts as long as it is listed.
        assert_eq!(s.check(ISS, &before, at(NOW + 100_000_000)), revoked);
    }

    #[test]
    fn a_redis_subject_entry_lasts_subject_ttl_after_revoked_at() {
        let s = store(&settings());
        let redis = s.source(SourceKind::Redis).expect("redis");
        assert_eq!(redis.apply(subject("alice", NOW), at(NOW)), Ok(true));
        let token = claims(None, Some("alice"), Some(NOW - 1));
        assert!(s.check(ISS, &token, at(NOW + 999)).is_err());
        assert_eq!(s.check(ISS, &token, at(NOW + 1000)), Ok(()));
        // An update replaces the key's entry, as in Redis.
        assert_eq!(redis.apply(subject("alice", NOW - 10), at(NOW)), Ok(true));
        assert_eq!(s.check(ISS, &token, at(NOW)), Ok(()));
        assert_eq!(redis.apply(subject("alice", NOW - 10), at(NOW)), Ok(false));
        // An entry that no longer applies removes its key.
        assert_eq!(redis.apply(subject("alice", NOW - 2000), at(NOW)), Ok(true));
        assert!(redis.is_empty());
    }

    #[test]
    fn duplicates_in_a_list_keep_the_broader_revocation() {
        let s = store(&settings());
        let file = s.source(SourceKind::File).expect("file");
        let applied = file.replace(
            [
                subject("alice", NOW - 100),
                subject("alice", NOW - 10),
                subject("alice", NOW - 50),
            ],
            at(NOW),
        );
        assert_eq!(applied.kept, 1);
        assert!(
            s.check(ISS, &claims(None, Some("alice"), Some(NOW - 20)), at(NOW))
                .is_err()
        );
    }

    #[test]
    fn a_reload_removes_what_the_list_dropped_and_keeps_the_rest() {
        let s = store(&settings());
        let file = s.source(SourceKind::File).expect("file");
        file.replace([jti(ISS, "a", NOW + 60), jti(ISS, "b", NOW + 60)], at(NOW));
        file.replace([jti(ISS, "b", NOW + 60), jti(ISS, "c", NOW + 60)], at(NOW));
        assert_eq!(file.len(), 2);
        let check = |id: &str| {
            s.check(ISS, &claims(Some(id), None, None), at(NOW))
                .is_err()
        };
        assert!(!check("a") && check("b") && check("c"));
        file.replace([], at(NOW));
        assert!(file.is_empty() && !check("b"));
    }

    #[test]
    fn sources_are_capped() {
        let s = store(&StoreSettings {
            max_entries: 2,
            ..settings()
        });
        let file = s.source(SourceKind::File).expect("file");
        let list = (0..5).map(|i| jti(ISS, &format!("j{i}"), NOW + 60));
        let applied = file.replace(list, at(NOW));
        assert_eq!((applied.kept, applied.over_cap), (2, 3));
        let check = |id: &str| {
            s.check(ISS, &claims(Some(id), None, None), at(NOW))
                .is_err()
        };
        assert!(
            check("j0") && check("j1") && !check("j2"),
            "list order decides"
        );
        let redis = s.source(SourceKind::Redis).expect("redis");
        assert_eq!(redis.apply(jti(ISS, "r0", NOW + 60), at(NOW)), Ok(true));
        assert_eq!(redis.apply(jti(ISS, "r1", NOW + 60), at(NOW)), Ok(true));
        assert_eq!(
            redis.apply(jti(ISS, "r2", NOW + 60), at(NOW)),
            Err(OverCap(2))
        );
        // Updating a key already held is not growth.
        assert_eq!(redis.apply(jti(ISS, "r1", NOW + 90), at(NOW)), Ok(true));
        assert_eq!(redis.len(), 2);
    }

    #[test]
    fn keys_do_not_collide_across_kinds_or_boundaries() {
        let s = store(&settings());
        let file = s.source(SourceKind::File).expect("file");
        file.replace([jti("a", "bc", NOW + 60)], at(NOW));
        let with_iss = |iss: &str, jti: Option<&str>, sub: &str| {
            let mut payload = serde_json::json!({ "iss": iss, "exp": NOW + 600, "sub": sub });
            if let Some(jti) = jti {
                payload["jti"] = jti.into();
            }
            Claims::parse(payload.to_string().as_bytes()).expect("claims parse")
        };
        let token = |iss: &str, jti: &str| with_iss(iss, Some(jti), jti);
        assert!(s.check("a", &token("a", "bc"), at(NOW)).is_err());
        assert_eq!(s.check("ab", &token("ab", "c"), at(NOW)), Ok(()));
        // The subject "bc" of issuer "a" is not the jti "bc".
        let by_sub = with_iss("a", None, "bc");
        assert_eq!(s.check("a", &by_sub, at(NOW)), Ok(()));
    }

    #[test]
    fn stale_sources_answer_unavailable_only_when_asked_and_for_covered_issuers() {
        let covered = StoreSettings {
            on_stale: OnStale::Unavailable,
            covered: Some(vec![ISS.to_owned()]),
            ..settings()
        };
        let s = store(&covered);
        let token = claims(Some("j"), None, None);
        // Never loaded: not current.
        assert_eq!(
            s.check(ISS, &token, at(NOW)),
            Err(Rejection::RevocationStale { list: "file" })
        );
        assert_eq!(s.check("https://other.test", &token, at(NOW)), Ok(()));
        for source in s.sources() {
            source.synced();
        }
        assert_eq!(s.check(ISS, &token, at(NOW)), Ok(()));
        assert_eq!(s.sweep_staleness(Duration::from_secs(60)), []);
        assert_eq!(
            s.sweep_staleness(Duration::ZERO),
            [SourceKind::File, SourceKind::Redis]
        );
        assert_eq!(s.sweep_staleness(Duration::ZERO), [], "reported once");
        assert_eq!(
            s.check(ISS, &token, at(NOW)),
            Err(Rejection::RevocationStale { list: "file" })
        );
        // A revocation still wins over staleness.
        s.source(SourceKind::Redis)
            .expect("redis")
            .apply(jti(ISS, "j", NOW + 60), at(NOW))
            .expect("fits");
        assert_eq!(
            s.check(ISS, &token, at(NOW)),
            Err(Rejection::Revoked { by: RevokedBy::Jti })
        );
        s.source(SourceKind::File).expect("file").synced();
        assert_eq!(
            s.check(ISS, &claims(None, None, None), at(NOW)),
            Err(Rejection::RevocationStale { list: "redis" })
        );

        let serving = store(&settings());
        assert_eq!(serving.sweep_staleness(Duration::ZERO).len(), 2);
        assert_eq!(serving.check(ISS, &token, at(NOW)), Ok(()));
    }

    #[test]
    fn readiness_waits_for_every_source_unless_told_not_to() {
        let s = store(&settings());
        let ready = s.ready();
        assert!(!*ready.borrow());
        s.source(SourceKind::File).expect("file").synced();
        assert!(!*ready.borrow());
        s.source(SourceKind::Redis).expect("redis").synced();
        s.source(SourceKind::Redis).expect("redis").synced();
        assert!(*ready.borrow());
        let at_once = store(&StoreSettings {
            wait_for_first_load: false,
            ..settings()
        });
        assert!(*at_once.ready().borrow());
    }
}
