//! Batch verification: memo lookups on the calling task, the misses split
//! across a CPU pool, identical tokens verified once, unknown kids refreshed
//! once. Holds no wire types: the caller passes a `render` function that
//! turns each outcome into its result, so a memo hit is rendered while the
//! memo entry is borrowed (no shared reference count is touched per hit).
//!
//! Decisions:
//! - **rayon pool, sized to the cores**, for signature checks: CPU work never
//!   runs on tokio's reactor threads. A batch's misses are one `par_iter`, so
//!   every core works on a large batch; the async task awaits a oneshot.
//! - **Memo hits never leave the calling task**: a hit is a SHA-256 and a
//!   lookup (about 1 µs), cheaper than any hand-off.
//! - **Cancellation**: the caller's [`CancelToken`] is flipped when its RPC
//!   is dropped (deadline passed or client gone); pool workers check it per
//!   token and skip the rest of a cancelled batch.
//! - **Negative memo**: MALFORMED results (a pure function of the bytes) and
//!   BAD_SIGNATURE results (tied to the issuer's policy and exact key set)
//!   are kept in a small separate memo with a short TTL, so a flood of one
//!   bad token costs little. UNKNOWN_KEY and KEYS_UNAVAILABLE never are.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use rayon::prelude::*;

use crate::clock::Clock;
use crate::memo::{self, Digest, Memo};
use crate::policy::{Narrowing, Trust};
use crate::registry::{Registry, Snapshot};
use crate::verify::{self, Authenticated, Failure, Negative, Rejection, UnixTime, Verified};

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
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            memo_entries: 100_000,
            memo_max_bytes: 256 * 1024 * 1024,
            memo_max_ttl_seconds: 300,
            negative_entries: 10_000,
            negative_ttl_seconds: 30,
            threads: 0,
        }
    }
}

/// Why a batch could not be verified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The verification pool could not be built.
    #[error("cannot start the verification pool: {0}")]
    Pool(String),
    /// The call was cancelled (deadline passed or caller gone).
    #[error("cancelled")]
    Cancelled,
}

/// Flipped when the call that owns it goes away.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    /// True once cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// A guard that cancels the token when dropped, unless disarmed.
    pub fn guard(&self) -> CancelOnDrop {
        CancelOnDrop(Some(self.clone()))
    }
}

/// Cancels its token on drop: keep it alive in the RPC's future.
#[derive(Debug)]
pub struct CancelOnDrop(Option<CancelToken>);

impl CancelOnDrop {
    /// The call finished normally: do not cancel.
    pub fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(token) = self.0.take() {
            token.0.store(true, Ordering::Relaxed);
        }
    }
}

/// The outcome of one unique token that missed the memo.
type Checked = Result<Arc<Authenticated>, Failure>;

/// The batch verifier.
pub struct Engine {
    registry: Arc<Registry>,
    clock: Arc<dyn Clock>,
    memo: Memo<Arc<Authenticated>>,
    negative: Memo<Negative>,
    config: EngineConfig,
    pool: rayon::ThreadPool,
    authentications: AtomicU64,
    checked: Arc<AtomicU64>,
}

impl Engine {
    /// An engine over the registry's keys, with the time from `clock`.
    pub fn new(
        registry: Arc<Registry>,
        clock: Arc<dyn Clock>,
        config: EngineConfig,
    ) -> Result<Engine, EngineError> {
        let threads = match config.threads {
            0 => std::thread::available_parallelism().map_or(2, usize::from),
            n => n,
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("jwtd-verify-{i}"))
            .build()
            .map_err(|e| EngineError::Pool(e.to_string()))?;
        Ok(Engine {
            registry,
            clock,
            memo: Memo::new(config.memo_entries, config.memo_max_bytes),
            negative: Memo::new(config.negative_entries, config.memo_max_bytes / 16),
            config,
            pool,
            authentications: AtomicU64::new(0),
            checked: Arc::new(AtomicU64::new(0)),
        })
    }

    /// The registry the engine reads keys from.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// How many signature checks (memo misses) the engine has run.
    pub fn authentications(&self) -> u64 {
        self.authentications.load(Ordering::Relaxed)
    }

    /// How many tokens pool workers have actually checked (a cancelled batch
    /// stops short of its size).
    pub fn tokens_checked(&self) -> u64 {
        self.checked.load(Ordering::Relaxed)
    }

    /// The positive memo (for its size and counters).
    pub fn memo(&self) -> &Memo<Arc<Authenticated>> {
        &self.memo
    }

    /// Answers `token` from the memos when they hold a current result:
    /// `render(outcome, cached = true)`. `None` is a miss.
    pub fn answer_from_memo<R>(
        &self,
        digest: &Digest,
        trust: &Trust,
        narrowing: &Narrowing,
        now: UnixTime,
        render: &impl Fn(Result<Verified<'_>, &Rejection>, bool) -> R,
    ) -> Option<R> {
        let hit = self.memo.with_hit(digest, now, |auth| {
            auth.is_current(trust)
                .then(|| render_admitted(auth, narrowing, now, true, render))
        });
        if let Some(Some(result)) = hit {
            return Some(result);
        }
        self.negative
            .with_hit(digest, now, |negative| {
                negative
                    .recheck(trust, narrowing)
                    .map(|rejection| render(Err(&rejection), true))
            })
            .flatten()
    }

    /// Verifies a batch: one result per token, in order.
    pub async fn verify_batch<R, F>(
        self: &Arc<Self>,
        tokens: Arc<Vec<String>>,
        narrowing: Arc<Narrowing>,
        cancel: CancelToken,
        render: F,
    ) -> Result<Vec<R>, EngineError>
    where
        R: Send + 'static,
        F: Fn(Result<Verified<'_>, &Rejection>, bool) -> R,
    {
        let snapshot = self.registry.snapshot();
        let now = self.clock.now();
        let max_bytes = snapshot.trust.max_token_bytes();
        let mut results: Vec<Option<R>> = Vec::with_capacity(tokens.len());
        // Unique misses in first-seen order, and every index of each.
        let mut misses: HashMap<Digest, Vec<usize>> = HashMap::new();
        let mut order: Vec<Digest> = Vec::new();
        for (i, token) in tokens.iter().enumerate() {
            if token.len() > max_bytes {
                let too_large = Rejection::TooLarge {
                    len: token.len(),
                    max: max_bytes,
                };
                results.push(Some(render(Err(&too_large), false)));
                continue;
            }
            let digest = memo::digest_of(token);
            match self.answer_from_memo(&digest, &snapshot.trust, &narrowing, now, &render) {
                Some(result) => results.push(Some(result)),
                None => {
                    results.push(None);
                    misses
                        .entry(digest)
                        .or_insert_with(|| {
                            order.push(digest);
                            Vec::new()
                        })
                        .push(i);
                }
            }
        }
        if order.is_empty() {
            return Ok(results.into_iter().flatten().collect());
        }

        let unique: Vec<(Digest, usize)> = order.iter().map(|d| (*d, misses[d][0])).collect();
        let mut checked = self
            .authenticate_on_pool(&snapshot, &tokens, &narrowing, &cancel, unique.clone())
            .await?;

        // Unknown kids: refresh those issuers once, then check those again.
        let missed: BTreeSet<String> = checked
            .iter()
            .filter_map(|c| match c {
                Err(Failure {
                    rejection: Rejection::UnknownKid { issuer },
                    ..
                }) => Some(issuer.clone()),
                _ => None,
            })
            .collect();
        if !missed.is_empty() {
            let refreshed = self.refresh_for_kid_misses(missed).await;
            let retry: Vec<usize> = checked
                .iter()
                .enumerate()
                .filter(|(_, c)| {
                    matches!(c, Err(Failure { rejection: Rejection::UnknownKid { issuer }, .. }) if refreshed.contains(issuer))
                })
                .map(|(n, _)| n)
                .collect();
            if !retry.is_empty() {
                let snapshot = self.registry.snapshot();
                let again = self
                    .authenticate_on_pool(
                        &snapshot,
                        &tokens,
                        &narrowing,
                        &cancel,
                        retry.iter().map(|&n| unique[n]).collect(),
                    )
                    .await?;
                for (n, outcome) in retry.into_iter().zip(again) {
                    checked[n] = outcome;
                }
            }
        }

        for ((digest, _), outcome) in unique.iter().zip(checked) {
            let indices = &misses[digest];
            match outcome {
                Ok(auth) => {
                    let until = memo::valid_until(
                        now,
                        auth.claims().exp,
                        auth.policy().leeway().seconds(),
                        self.config.memo_max_ttl_seconds,
                    );
                    for &i in indices {
                        results[i] = Some(render_admitted(&auth, &narrowing, now, false, &render));
                    }
                    if until > now.0 {
                        let bytes = auth.heap_bytes();
                        self.memo.insert(*digest, auth, now, until, bytes);
                    }
                }
                Err(failure) => {
                    for &i in indices {
                        results[i] = Some(render(Err(&failure.rejection), false));
                    }
                    if let Some(negative) = failure.into_negative() {
                        let until = now.0.saturating_add(self.config.negative_ttl_seconds);
                        self.negative.insert(*digest, negative, now, until, 0);
                    }
                }
            }
        }
        Ok(results.into_iter().flatten().collect())
    }

    /// Authenticates `work` (digest, token index) on the pool, in order.
    async fn authenticate_on_pool(
        &self,
        snapshot: &Arc<Snapshot>,
        tokens: &Arc<Vec<String>>,
        narrowing: &Arc<Narrowing>,
        cancel: &CancelToken,
        work: Vec<(Digest, usize)>,
    ) -> Result<Vec<Checked>, EngineError> {
        self.authentications
            .fetch_add(work.len() as u64, Ordering::Relaxed);
        let snapshot = Arc::clone(snapshot);
        let (tokens, narrowing, cancel) =
            (Arc::clone(tokens), Arc::clone(narrowing), cancel.clone());
        let checked = Arc::clone(&self.checked);
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.pool.spawn(move || {
            let out: Option<Vec<Checked>> = work
                .par_iter()
                .with_min_len(4)
                .map(|&(_, i)| {
                    if cancel.is_cancelled() {
                        return None;
                    }
                    checked.fetch_add(1, Ordering::Relaxed);
                    Some(
                        verify::authenticate_with_context(&tokens[i], &snapshot.trust, &narrowing)
                            .map(Arc::new),
                    )
                })
                .collect();
            let _ = tx.send(out);
        });
        match rx.await {
            Ok(Some(out)) => Ok(out),
            _ => Err(EngineError::Cancelled),
        }
    }

    /// Asks each issuer in `missed` for a refresh, concurrently; returns those
    /// whose refresh completed in time.
    async fn refresh_for_kid_misses(&self, missed: BTreeSet<String>) -> BTreeSet<String> {
        let mut waits = tokio::task::JoinSet::new();
        for issuer in missed {
            let registry = Arc::clone(&self.registry);
            waits.spawn(async move {
                let refreshed = registry.kid_miss(&issuer).await;
                (issuer, refreshed)
            });
        }
        let mut refreshed = BTreeSet::new();
        while let Some(joined) = waits.join_next().await {
            if let Ok((issuer, true)) = joined {
                refreshed.insert(issuer);
            }
        }
        refreshed
    }
}

/// Runs the cheap checks on `auth` and renders the outcome.
fn render_admitted<R>(
    auth: &Authenticated,
    narrowing: &Narrowing,
    now: UnixTime,
    cached: bool,
    render: &impl Fn(Result<Verified<'_>, &Rejection>, bool) -> R,
) -> R {
    match verify::admit(auth, narrowing, now) {
        Ok(verified) => render(Ok(verified), cached),
        Err(rejection) => render(Err(&rejection), cached),
    }
}
