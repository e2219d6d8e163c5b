//! The live key store: one refresh task per issuer keeps its key set current,
//! and every change is published as a new immutable [`Snapshot`] that request
//! handlers load without taking a lock. Owns key-loading I/O scheduling; does
//! no verification.
//!
//! Design decisions, and why:
//! - **A whole-snapshot swap (arc-swap), not a concurrent map.** The hot path
//!   does one atomic load per call and then reads plain `HashMap`s; a refresh
//!   builds the new `Trust` aside (a clone of a few `Arc`s) and swaps it in.
//!   A dashmap would put a shard read-lock on every token lookup, and its lock
//!   cache lines bounce between cores (measured on this machine at 0.39x
//!   single-thread throughput with two threads, see issue 4); keys change once
//!   per minutes, reads happen per token, so the swap wins.
//! - **One task per issuer, the only fetcher for it.** Periodic refreshes,
//!   unknown-kid refreshes and retries all go through it, so concurrent misses
//!   share one fetch (single-flight) by construction.
//! - **Unknown kid**: at most one triggered refresh per issuer per
//!   `min_refresh_seconds`; a request waits up to `kid_miss_wait_ms` for it,
//!   and requests that arrive while it is in flight wait for the same one. A
//!   flood of random kids therefore costs one fetch per interval.
//! - **Outages**: the last good set keeps serving for `max_stale_seconds`
//!   while retries back off exponentially (from 1 s, or `min_refresh_seconds`
//!   if smaller, up to `max_refresh_seconds`) with ±20% jitter; after that the
//!   issuer's tokens get KEYS_UNAVAILABLE rather than being checked against
//!   keys nobody vouches for any more.
//! - **Refresh interval**: Cache-Control max-age clamped to
//!   `[min_refresh_seconds, max_refresh_seconds]`, else `refresh_seconds`,
//!   with ±20% jitter so replicas do not fetch in lock-step. Files are checked
//!   every `refresh_seconds` (default 5) and re-read only when their
//!   modification time or size changed.
//!
//! Decision record: `docs/adr/0001-snapshots-and-papaya-on-the-read-path.md`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use reqwest::Url;
use tokio::sync::{Notify, watch};
use tracing::Instrument as _;

use crate::config::settings::{IssuerConfig, KeySource, Limits, RefreshPolicy, Startup};
use crate::config::{Config, ConfigError};
use crate::keys::fetch::{FetchError, FetchLimits, Fetcher};
use crate::keys::stamp::{Stamp, stamp};
use crate::keys::{KeySet, KeySetError, Origin, Refused};
use crate::observability::{otel, telemetry};
use crate::runtime::sync::lock;
use crate::verifier::policy::{KeyState, Trust, TrustedIssuer};

/// What a request handler reads: the trusted issuers with their current keys,
/// and the request limits.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The issuers and keys.
    pub trust: Trust,
    /// The request limits.
    pub limits: Limits,
}

/// Why loading an issuer's keys failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The key file could not be read.
    #[error("cannot read {path}: {reason}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        reason: String,
    },
    /// The fetch failed.
    #[error("fetch {url}: {error}")]
    Fetch {
        /// The URL.
        url: String,
        /// What failed.
        error: FetchError,
    },
    /// The set was refused whole.
    #[error("{0}")]
    KeySet(#[from] KeySetError),
}

/// The key source of an issuer, plus what decides how it is refreshed: two
/// configs with equal `Source`s can share keys and a refresh task.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Source {
    source: KeySource,
    allow_insecure_http: bool,
    refresh: RefreshPolicy,
}

impl Source {
    fn of(config: &IssuerConfig) -> Self {
        Self {
            source: config.source.clone(),
            allow_insecure_http: config.allow_insecure_http,
            refresh: config.refresh,
        }
    }
}

#[derive(Debug, Default)]
struct KidMiss {
    /// When the last unknown-kid refresh was triggered.
    last: Option<Instant>,
    /// The generation that refresh will publish.
    pending: Option<u64>,
    /// The span of the request that triggered it, for the fetch span's link.
    link: Option<opentelemetry::trace::SpanContext>,
}

/// The control side of one issuer's refresh task.
struct Slot {
    issuer: String,
    source: Source,
    kick: Notify,
    generation: watch::Sender<u64>,
    loading: AtomicBool,
    loaded_once: AtomicBool,
    kid_miss: Mutex<KidMiss>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(task) = lock(&self.task).take() {
            task.abort();
        }
    }
}

/// The live key store.
pub struct Registry {
    current: ArcSwap<Snapshot>,
    slots: Mutex<HashMap<String, Arc<Slot>>>,
    fetch: Mutex<FetchLimits>,
    startup: Mutex<Startup>,
    ready: watch::Sender<bool>,
}

impl Registry {
    /// A registry over fixed keys, with no refresh tasks (tests, benches and
    /// tools).
    pub fn fixed(trust: Trust, limits: Limits) -> Arc<Registry> {
        let (ready, _) = watch::channel(true);
        Arc::new(Registry {
            current: ArcSwap::from_pointee(Snapshot { trust, limits }),
            slots: Mutex::new(HashMap::new()),
            fetch: Mutex::new(FetchLimits::default()),
            startup: Mutex::new(Startup::Serve),
            ready,
        })
    }

    /// Loads every issuer's keys once and starts their refresh tasks. Key
    /// files must load (a broken file is a config error); URL sources that
    /// fail start as KEYS_UNAVAILABLE and are retried in the background.
    /// Returns the keys refused inside sets, for the log.
    pub async fn start(
        config: &Config,
    ) -> Result<(Arc<Registry>, Vec<(String, Refused)>), ConfigError> {
        let (ready, _) = watch::channel(config.startup == Startup::Serve);
        let registry = Arc::new(Registry {
            current: ArcSwap::from_pointee(Snapshot {
                trust: Trust::new([], config.limits.max_token_bytes),
                limits: config.limits,
            }),
            slots: Mutex::new(HashMap::new()),
            fetch: Mutex::new(config.fetch),
            startup: Mutex::new(config.startup),
            ready,
        });
        let refused = registry.apply(config, &HashMap::new()).await?;
        Ok((registry, refused))
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// True once every issuer has loaded keys at least once (or at once, with
    /// `startup = "serve"`); watch it to drive health.
    pub fn ready(&self) -> watch::Receiver<bool> {
        self.ready.subscribe()
    }

    /// Applies a new configuration: issuers added, removed or changed take
    /// effect in one snapshot swap; requests in flight keep the snapshot they
    /// loaded. An issuer whose key source is unchanged keeps its keys and its
    /// refresh task. A new key file that does not load rejects the whole
    /// config and leaves the old one in place. The listen address cannot
    /// change without a restart. Every kept issuer re-reads its source at once.
    pub async fn reload(
        self: &Arc<Self>,
        config: &Config,
    ) -> Result<Vec<(String, Refused)>, ConfigError> {
        let existing = lock(&self.slots).clone();
        *lock(&self.fetch) = config.fetch;
        *lock(&self.startup) = config.startup;
        self.apply(config, &existing).await
    }

    async fn apply(
        self: &Arc<Self>,
        config: &Config,
        existing: &HashMap<String, Arc<Slot>>,
    ) -> Result<Vec<(String, Refused)>, ConfigError> {
        let current = self.snapshot();
        let mut refused_all = Vec::new();
        let mut issuers = Vec::with_capacity(config.issuers.len());
        let mut slots = HashMap::with_capacity(config.issuers.len());
        let mut to_start = Vec::new();
        for (index, issuer) in config.issuers.iter().enumerate() {
            let name = issuer.policy.issuer().to_owned();
            let source = Source::of(issuer);
            let previous = existing.get(&name);
            let current_keys = || {
                current
                    .trust
                    .issuer(&name)
                    .map_or(KeyState::Unavailable, |i| i.keys.clone())
            };
            // A key file's stamp is taken before it is read, and handed to
            // the refresh task: a change after this read is seen at its
            // first tick, however late the task first runs.
            let mut file_stamp: Stamp = None;
            let (slot, keys) = match previous {
                Some(slot) if slot.source == source => {
                    // A reload (SIGHUP) also means "look again now".
                    slot.kick.notify_one();
                    (Arc::clone(slot), current_keys())
                }
                _ => {
                    let keys = match &source.source {
                        // Same location, new refresh settings: the keys stay valid.
                        _ if previous.is_some_and(|p| p.source.source == source.source) => {
                            current_keys()
                        }
                        KeySource::File(path) => {
                            file_stamp = stamp(path);
                            let (set, refused) =
                                KeySet::load_file(path).map_err(|error| ConfigError::Keys {
                                    index,
                                    issuer: name.clone(),
                                    error,
                                })?;
                            refused_all.extend(refused.into_iter().map(|r| (name.clone(), r)));
                            telemetry::key_load(&name, true, set.len(), telemetry::unix_now());
                            KeyState::Loaded(Arc::new(set))
                        }
                        // Fetched by the refresh task right after the swap.
                        KeySource::JwksUri(_) | KeySource::Discovery(_) => KeyState::Unavailable,
                    };
                    let fetcher = match &source.source {
                        KeySource::File(_) => None,
                        _ => Some(
                            Fetcher::new(config.fetch, source.allow_insecure_http).map_err(
                                |e| ConfigError::Invalid {
                                    key: format!("issuers[{index}]"),
                                    problem: e.to_string(),
                                },
                            )?,
                        ),
                    };
                    let slot = Arc::new(Slot::new(name.clone(), source));
                    slot.loaded_once
                        .store(matches!(keys, KeyState::Loaded(_)), Ordering::Release);
                    to_start.push((
                        Arc::clone(&slot),
                        fetcher,
                        matches!(keys, KeyState::Loaded(_)),
                        file_stamp,
                    ));
                    (slot, keys)
                }
            };
            issuers.push(TrustedIssuer {
                policy: Arc::new(issuer.policy.clone()),
                keys,
            });
            slots.insert(name, slot);
        }

        let trust = Trust::new(issuers, config.limits.max_token_bytes);
        {
            let mut guard = lock(&self.slots);
            let old = std::mem::replace(&mut *guard, slots);
            self.current.store(Arc::new(Snapshot {
                trust,
                limits: config.limits,
            }));
            for (name, slot) in old {
                if !guard.get(&name).is_some_and(|s| Arc::ptr_eq(s, &slot)) {
                    slot.stop();
                }
            }
            for (slot, fetcher, loaded, file_stamp) in to_start {
                let task = tokio::spawn(run(
                    Arc::downgrade(self),
                    Arc::clone(&slot),
                    fetcher,
                    loaded,
                    file_stamp,
                ));
                *lock(&slot.task) = Some(task);
            }
            self.update_ready(&guard);
        }
        Ok(refused_all)
    }

    /// Flips readiness to true once every issuer has loaded keys. Readiness
    /// never flips back here: a config reload adding an issuer must not make
    /// every replica unready at once.
    fn update_ready(&self, slots: &HashMap<String, Arc<Slot>>) {
        if slots
            .values()
            .all(|s| s.loaded_once.load(Ordering::Acquire))
        {
            self.ready
                .send_if_modified(|ready| !std::mem::replace(ready, true));
        }
    }

    /// The issuer's current key set, if loaded.
    fn keys_of(&self, issuer: &str) -> Option<Arc<KeySet>> {
        match &self.snapshot().trust.issuer(issuer)?.keys {
            KeyState::Loaded(set) => Some(Arc::clone(set)),
            KeyState::Unavailable => None,
        }
    }

    /// Publishes `keys` for the slot's issuer, unless a reload replaced the slot.
    fn publish(&self, slot: &Arc<Slot>, keys: KeyState) {
        let slots = lock(&self.slots);
        if !slots
            .get(&slot.issuer)
            .is_some_and(|s| Arc::ptr_eq(s, slot))
        {
            return;
        }
        if matches!(keys, KeyState::Loaded(_)) {
            slot.loaded_once.store(true, Ordering::Release);
        }
        self.current.rcu(|snap| Snapshot {
            trust: snap.trust.with_keys(&slot.issuer, keys.clone()),
            limits: snap.limits,
        });
        self.update_ready(&slots);
    }

    /// Called when a token named a kid that `issuer`'s set lacks. Triggers
    /// one refresh (rate-limited per issuer) or joins the one in flight, and
    /// waits for it up to the issuer's `kid_miss_wait_ms`. True when a
    /// refresh completed, so the caller should verify against a new snapshot.
    pub async fn kid_miss(&self, issuer: &str) -> bool {
        let Some(slot) = lock(&self.slots).get(issuer).cloned() else {
            return false;
        };
        let mut generation = slot.generation.subscribe();
        let now = *generation.borrow_and_update();
        let target = {
            let mut miss = lock(&slot.kid_miss);
            match miss.pending {
                Some(pending) if pending > now => Some(pending),
                _ if miss
                    .last
                    .is_none_or(|t| t.elapsed() >= slot.source.refresh.min) =>
                {
                    // A load already running may have started before the key
                    // was published: wait for the one after it.
                    let target = now + 1 + u64::from(slot.loading.load(Ordering::Acquire));
                    miss.last = Some(Instant::now());
                    miss.pending = Some(target);
                    miss.link = otel::current_link();
                    slot.kick.notify_one();
                    Some(target)
                }
                _ => None,
            }
        };
        let Some(target) = target else {
            return false;
        };
        tokio::time::timeout(
            slot.source.refresh.kid_miss_wait,
            generation.wait_for(|g| *g >= target),
        )
        .await
        .is_ok_and(|r| r.is_ok())
    }
}

/// Loads one issuer's keys once, outside any registry (for `check-config`).
pub async fn load_once(
    config: &IssuerConfig,
    fetch: FetchLimits,
) -> Result<(KeySet, Vec<Refused>), LoadError> {
    let slot = Slot::new(config.policy.issuer().to_owned(), Source::of(config));
    let fetcher = match config.source {
        KeySource::File(_) => None,
        _ => Some(
            Fetcher::new(fetch, config.allow_insecure_http).map_err(|error| LoadError::Fetch {
                url: String::new(),
                error,
            })?,
        ),
    };
    match load(&slot, fetcher.as_ref(), &mut None, true, &mut None).await? {
        Loaded::Set(set, refused, _) => Ok((set, refused)),
        Loaded::Unchanged => Err(LoadError::Read {
            path: String::new(),
            reason: "unchanged".into(),
        }),
    }
}

impl Slot {
    fn new(issuer: String, source: Source) -> Self {
        Self {
            issuer,
            source,
            kick: Notify::new(),
            generation: watch::channel(0).0,
            loading: AtomicBool::new(false),
            loaded_once: AtomicBool::new(false),
            kid_miss: Mutex::new(KidMiss::default()),
            task: Mutex::new(None),
        }
    }

    fn stop(&self) {
        if let Some(task) = lock(&self.task).take() {
            task.abort();
        }
    }
}

enum Loaded {
    Set(KeySet, Vec<Refused>, Option<Duration>),
    Unchanged,
}

/// The refresh task of one issuer: the only code that loads its keys after
/// start. `file_stamp` is the key file's stamp when its keys were read (None:
/// the first tick reads the file again).
async fn run(
    registry: Weak<Registry>,
    slot: Arc<Slot>,
    fetcher: Option<Fetcher>,
    loaded: bool,
    mut file_stamp: Stamp,
) {
    let policy = slot.source.refresh;
    let is_file = matches!(slot.source.source, KeySource::File(_));
    let mut discovered: Option<(Url, Instant)> = None;
    let mut last_good = loaded.then(Instant::now);
    let mut unavailable = !loaded;
    let mut failures = 0u32;
    let mut wait = if loaded {
        jitter(next_interval(&policy, None, is_file))
    } else {
        Duration::ZERO
    };
    loop {
        let kicked = tokio::select! {
            () = tokio::time::sleep(wait) => false,
            () = slot.kick.notified() => true,
        };
        slot.loading.store(true, Ordering::Release);
        let link = if kicked {
            lock(&slot.kid_miss).link.take()
        } else {
            None
        };
        let trigger = match (kicked, last_good.is_some() || failures > 0) {
            (true, _) if link.is_some() => "kid_miss",
            (true, _) => "kick",
            (false, false) => "startup",
            (false, true) => "schedule",
        };
        let span = fetch_span(&slot.source.source, &slot.issuer, trigger, link);
        let outcome = load(
            &slot,
            fetcher.as_ref(),
            &mut file_stamp,
            kicked,
            &mut discovered,
        )
        .instrument(span.clone())
        .await;
        let Some(registry) = registry.upgrade() else {
            return;
        };
        let entered = span.enter();
        record_fetch(&span, &outcome);
        wait = match outcome {
            Ok(Loaded::Unchanged) => {
                // The keys are confirmed current: a success for freshness.
                telemetry::keys_confirmed(&slot.issuer, telemetry::unix_now());
                next_interval(&policy, None, true)
            }
            Ok(Loaded::Set(mut set, refused, max_age)) => {
                if let Some(previous) = registry.keys_of(&slot.issuer) {
                    set.adopt(&previous);
                }
                for r in &refused {
                    tracing::warn!(issuer = %slot.issuer, "refused {r}");
                }
                tracing::info!(
                    issuer = %slot.issuer,
                    keys = set.len(),
                    version = set.version(),
                    ?max_age,
                    "keys loaded"
                );
                telemetry::key_load(&slot.issuer, true, set.len(), telemetry::unix_now());
                registry.publish(&slot, KeyState::Loaded(Arc::new(set)));
                failures = 0;
                last_good = Some(Instant::now());
                unavailable = false;
                jitter(next_interval(&policy, max_age, is_file))
            }
            Err(error) => {
                telemetry::key_load(&slot.issuer, false, 0, 0.0);
                failures = failures.saturating_add(1);
                let stale = last_good.is_none_or(|t| t.elapsed() >= policy.max_stale);
                if failures.is_power_of_two() {
                    tracing::warn!(issuer = %slot.issuer, failures, stale, "key refresh failed: {error}");
                }
                if stale && !is_file && !unavailable {
                    tracing::error!(
                        issuer = %slot.issuer,
                        "no good key set for {:?}: tokens now get KEYS_UNAVAILABLE",
                        policy.max_stale
                    );
                    registry.publish(&slot, KeyState::Unavailable);
                    unavailable = true;
                }
                if is_file {
                    policy.refresh
                } else {
                    jitter(backoff(&policy, failures))
                }
            }
        };
        drop(entered);
        slot.loading.store(false, Ordering::Release);
        slot.generation.send_modify(|g| *g += 1);
    }
}

/// The span of a load: URL sources only (a file check every few seconds
/// is not worth a trace).
fn fetch_span(
    source: &KeySource,
    issuer: &str,
    trigger: &'static str,
    link: Option<opentelemetry::trace::SpanContext>,
) -> tracing::Span {
    let host = match source {
        KeySource::File(_) => return tracing::Span::none(),
        KeySource::JwksUri(url) | KeySource::Discovery(url) => url.host_str().unwrap_or(""),
    };
    otel::fetch_span(issuer, host, trigger, link)
}

fn record_fetch(span: &tracing::Span, outcome: &Result<Loaded, LoadError>) {
    if span.is_none() {
        return;
    }
    match outcome {
        Ok(Loaded::Set(set, _, _)) => {
            span.record("jwtd.fetch.result", "ok");
            span.record("jwtd.keys_loaded", set.len() as i64);
        }
        Ok(Loaded::Unchanged) => {
            span.record("jwtd.fetch.result", "unchanged");
        }
        Err(e) => {
            span.record("jwtd.fetch.result", "error");
            span.record("otel.status_code", "ERROR");
            tracing::warn!(target: otel::TARGET, "key load failed: {e}");
        }
    }
}

async fn load(
    slot: &Slot,
    fetcher: Option<&Fetcher>,
    file_stamp: &mut Stamp,
    kicked: bool,
    discovered: &mut Option<(Url, Instant)>,
) -> Result<Loaded, LoadError> {
    let policy = slot.source.refresh;
    let (url, fetcher) = match (&slot.source.source, fetcher) {
        (KeySource::File(path), _) => {
            let now = stamp(path);
            if !kicked && now.is_some() && now == *file_stamp {
                return Ok(Loaded::Unchanged);
            }
            let bytes = tokio::fs::read(path).await.map_err(|e| LoadError::Read {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
            let (set, refused) = KeySet::from_jwks(&bytes, Origin::LocalFile)?;
            *file_stamp = now;
            return Ok(Loaded::Set(set, refused, None));
        }
        (KeySource::JwksUri(url), Some(fetcher)) => (url.clone(), fetcher),
        (KeySource::Discovery(doc), Some(fetcher)) => {
            // Re-read the discovery document at most every max_refresh, or
            // after a failed JWKS fetch cleared it.
            let fresh = discovered
                .as_ref()
                .filter(|(_, at)| at.elapsed() < policy.max)
                .map(|(url, _)| url.clone());
            let url = match fresh {
                Some(url) => url,
                None => {
                    let url = fetcher.discover(doc, &slot.issuer).await.map_err(|error| {
                        LoadError::Fetch {
                            url: doc.to_string(),
                            error,
                        }
                    })?;
                    *discovered = Some((url.clone(), Instant::now()));
                    url
                }
            };
            (url, fetcher)
        }
        (_, None) => {
            return Err(LoadError::Fetch {
                url: String::new(),
                error: FetchError::Client("no HTTP client for a URL source".into()),
            });
        }
    };
    let fetched = match fetcher.get(&url).await {
        Ok(fetched) => fetched,
        Err(error) => {
            *discovered = None;
            return Err(LoadError::Fetch {
                url: url.to_string(),
                error,
            });
        }
    };
    let (set, refused) = KeySet::from_jwks(&fetched.body, Origin::Remote)?;
    Ok(Loaded::Set(set, refused, fetched.max_age))
}

/// The next refresh after a good load: max-age clamped to the bounds, else
/// `refresh_seconds`. Files are checked every `refresh_seconds`, unclamped.
fn next_interval(policy: &RefreshPolicy, max_age: Option<Duration>, is_file: bool) -> Duration {
    if is_file {
        return policy.refresh;
    }
    max_age
        .unwrap_or(policy.refresh)
        .clamp(policy.min, policy.max)
}

/// Retry delay after `failures` consecutive failures: doubling from 1 s (or
/// `min_refresh_seconds` when smaller), capped at `max_refresh_seconds`.
fn backoff(policy: &RefreshPolicy, failures: u32) -> Duration {
    let base = policy.min.min(Duration::from_secs(1));
    let factor = 1u32 << failures.saturating_sub(1).min(20);
    base.saturating_mul(factor).min(policy.max)
}

/// `d` scaled by a random factor in [0.8, 1.2).
pub(crate) fn jitter(d: Duration) -> Duration {
    let mut byte = [0u8; 2];
    // Without randomness the schedule is merely unjittered, which is safe.
    let r = match aws_lc_rs::rand::fill(&mut byte) {
        Ok(()) => f64::from(u16::from_le_bytes(byte)) / 65536.0,
        Err(_) => 0.5,
    };
    d.mul_f64(0.8 + 0.4 * r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RefreshPolicy {
        RefreshPolicy {
            refresh: Duration::from_secs(300),
            min: Duration::from_secs(60),
            max: Duration::from_secs(3600),
            max_stale: Duration::from_secs(86400),
            kid_miss_wait: Duration::from_millis(500),
        }
    }

    #[test]
    fn interval_honours_max_age_within_bounds() {
        let p = policy();
        let secs = |d: Duration| d.as_secs();
        assert_eq!(secs(next_interval(&p, None, false)), 300);
        assert_eq!(
            secs(next_interval(&p, Some(Duration::from_secs(900)), false)),
            900
        );
        assert_eq!(
            secs(next_interval(&p, Some(Duration::from_secs(5)), false)),
            60
        );
        assert_eq!(secs(next_interval(&p, Some(Duration::ZERO), false)), 60);
        assert_eq!(
            secs(next_interval(&p, Some(Duration::from_secs(86400)), false)),
            3600
        );
        assert_eq!(
            secs(next_interval(&p, Some(Duration::from_secs(86400)), true)),
            300
        );
    }

    #[test]
    fn backoff_doubles_from_one_second_up_to_the_max() {
        let p = policy();
        let secs: Vec<u64> = (1..=14).map(|n| backoff(&p, n).as_secs()).collect();
        assert_eq!(
            secs,
            [
                1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 3600, 3600
            ]
        );
        assert_eq!(backoff(&p, u32::MAX), Duration::from_secs(3600));
        let quick = RefreshPolicy {
            min: Duration::from_millis(100),
            ..p
        };
        assert_eq!(backoff(&quick, 1), Duration::from_millis(100));
        assert_eq!(backoff(&quick, 3), Duration::from_millis(400));
    }

    #[test]
    fn jitter_stays_within_twenty_percent() {
        let d = Duration::from_secs(100);
        for _ in 0..1000 {
            let j = jitter(d);
            assert!(
                j >= Duration::from_secs(80) && j < Duration::from_secs(120),
                "{j:?}"
            );
        }
    }
}
