//! Batch verification: memo lookups on the calling task, the misses split
//! across a CPU pool, identical tokens verified once, unknown kids refreshed
//! once. Holds no wire types: the caller passes a `render` function that
//! turns each outcome into its result, so a memo hit is rendered while the
//! memo entry is borrowed (no shared reference count is touched per hit).
//!
//! Decisions:
//! - **A pool sized to the cores** ([`crate::runtime::pool`]) for signature
//!   checks: CPU work never runs on tokio's reactor threads. Each chunk of
//!   misses is split into pieces, about two per thread, so every core works
//!   on a large batch; the last piece to finish answers the async task's
//!   oneshot. Its idle threads park at once (rayon's spin cost ~25 µs of
//!   CPU per one-token call under load:
//!   `docs/adr/0008-a-pool-that-parks-at-once.md`).
//! - **Memo hits never leave the calling task**: a hit is a fast keyed hash,
//!   a lookup and a compare (well under 1 µs), cheaper than any hand-off.
//!   The hash is computed once per token and serves the memo, the negative
//!   memo, the duplicate check and the in-flight table
//!   ([`crate::runtime::token_key`]). Misses go to the pool in
//!   chunks of 64 distinct tokens as the scan finds them, so signature checks
//!   start while the rest of a large batch is still being hashed (measured:
//!   the scan took ~0.9 ms of a 1024-token cold batch before the pool began).
//! - **Duplicates**: identical tokens in one batch (same bytes) are checked
//!   once; the copies are rendered from the first one's outcome.
//! - **Cancellation**: the caller's [`CancelToken`] is flipped when its RPC
//!   is dropped (deadline passed or client gone); pool workers check it per
//!   token and skip the rest of a cancelled batch.
//! - **Negative memo**: MALFORMED results (a pure function of the bytes) and
//!   BAD_SIGNATURE results (tied to the issuer's policy and exact key set)
//!   are kept in a small separate memo with a short TTL, so a flood of one
//!   bad token costs little. UNKNOWN_KEY and KEYS_UNAVAILABLE never are.
//! - **Admission** ([`crate::runtime::admission`]): each chunk of misses is
//!   reserved against the bound on pending cold work before it goes to the
//!   pool; a chunk that does not fit sheds the whole call (its earlier
//!   chunks are cancelled). Hits are never counted, so an all-hit batch is
//!   answered however full the pool is.
//! - **Across calls** ([`crate::runtime::inflight`]): a miss that another
//!   call is already checking waits for that check instead of repeating it.
//! - **The pool runs `pool_nice` nicer than the process** (10 by default,
//!   [`crate::config::settings::DEFAULT_POOL_NICE`]; Linux, best effort):
//!   under overload the pool is busy by design, and at the same priority its
//!   threads take half the CPU from the network threads that receive calls,
//!   answer hits and shed what does not fit, so calls queued in the
//!   transport before admission control could see them. Measured with
//!   `SCENARIOS=overload loadtest/measure.sh` at 3× capacity (6,527 calls/s
//!   of 32 tokens, one run, medians of 3): admitted p50 58 → 5.2 ms, hot
//!   p99 157 → 83 ms, shed p50 5.6 → 1.4 ms, for 4% less goodput (85k →
//!   81k tokens/s); in an earlier run without it, 2 of 3 runs tipped into
//!   queueing past the 1 s deadline (admitted p50 0.9 s, half the calls
//!   failed). The pool still gets every cycle the front end does not use.
//!   The price is paid below capacity: a one-token cold call waits behind
//!   the network threads whenever they are busy. Measured again with this
//!   pool (2026-12-01, interleaved, 3 rounds each): at 3× capacity, nice 10
//!   against 0 gave admitted p50 12.6 against 57.9 ms, shed p50 1.6 against
//!   11.5 ms, and no failed calls against one round of three tipping past
//!   the deadline. At half of single-cold's capacity, jwtd's own time per
//!   call was within 2 ms for 97.8–98.4% of calls at nice 10 and 99.6% at
//!   0 (mean 0.42 against 0.24 ms). So the default stays 10, and
//!   `[cache] pool_nice = 0` is there for a deployment that keeps its
//!   replicas well below capacity and wants the shortest cold tail. The
//!   setting is relative and can only lower priority: an unprivileged
//!   process cannot raise it again, so it is fixed at start, not adapted
//!   to load.
//! - **Revocation last, for hits and misses alike**: every admitted token
//!   is checked against [`crate::revocation::Revocations`] when it is
//!   rendered, memo hit or not, since the memo stores authentication and
//!   not admission; a revocation applies to a memoized token at once. The
//!   check is two lookups in a lock-free table, none when no list has
//!   entries (BENCHMARKS.md, "Revocation (issue 13)").
//! - **Big batches are scanned off the reactor**: scanning a batch of over
//!   [`SCAN_INLINE_BYTES`] (64 KiB; ~60 µs when the memo key was a SHA-256,
//!   less now, but a scan also answers and renders the hits) runs on
//!   tokio's blocking pool, at most one per verification thread at once (a
//!   cancelled call's scan stops at its next token), so an 8 MiB batch
//!   (~7 ms of SHA-256 then) does not hold up the health checks and HTTP/2
//!   PINGs that share its reactor thread. Smaller batches are scanned
//!   in place: the hand-off (~10–20 µs) would cost more than it saves.
//!
//! Decision records: `docs/adr/0002-rayon-pool-for-signature-checks.md` (the
//! hand-off), `docs/adr/0008-a-pool-that-parks-at-once.md` (the pool).

use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tracing::Instrument as _;

pub use crate::config::settings::EngineConfig;
use crate::keys::registry::{Registry, Snapshot};
use crate::observability::{otel, telemetry};
use crate::revocation::Revocations;
use crate::runtime::admission::{Admission, Reservation, Shed};
use crate::runtime::inflight::{Follower, InFlight, Join, Lead};
use crate::runtime::memo::{self, Memo};
use crate::runtime::pool::{self, Job as PoolJob, Pool};
use crate::runtime::sync::lock;
use crate::runtime::token_key::{KeyedHasher, TokenHasher, TokenKey, TokenRef};
use crate::verifier::clock::Clock;
use crate::verifier::policy::{Narrowing, Trust};
use crate::verifier::verify::{
    self, Authenticated, Failure, Negative, Rejection, UnixTime, Verified,
};

/// Batches with more token bytes than this are scanned on tokio's blocking
/// pool rather than on the reactor thread that received them.
pub const SCAN_INLINE_BYTES: usize = 64 * 1024;

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
    /// The call was shed: its cold work does not fit now.
    #[error("{0}")]
    Shed(Shed),
    /// A fault of jwtd's own (a scan task that failed, a token left
    /// without a result): the call fails rather than answer out of order.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Why a scan stopped before the end of its batch.
#[derive(Debug)]
enum ScanStop {
    /// A chunk did not fit: the call is shed.
    Shed(Shed),
    /// The call went away; the rest of the batch is not worth hashing.
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

    /// Cancels: pool workers skip the rest of the call's tokens.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
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
            token.cancel();
        }
    }
}

/// What one call may spend: it stops when cancelled, and is shed when its
/// deadline would pass before its cold work could start.
#[derive(Debug, Clone, Default)]
pub struct Budget {
    /// Flipped when the call goes away.
    pub cancel: CancelToken,
    /// When the caller stops waiting (from `grpc-timeout`), if it said.
    pub deadline: Option<Instant>,
}

impl From<CancelToken> for Budget {
    fn from(cancel: CancelToken) -> Self {
        Self {
            cancel,
            deadline: None,
        }
    }
}

/// Misses are handed to the pool in chunks of this many distinct tokens.
const POOL_CHUNK: usize = 64;

/// One check in this many per pool thread is timed, to estimate waits.
const COST_SAMPLE_EVERY: u32 = 8;

/// One distinct token that missed the memo, at its first index in the batch.
#[derive(Debug)]
struct Work {
    key: TokenKey,
    index: usize,
    /// Set when this call leads the token's check for every call. Only a
    /// pool job holds a lead, never an await, so a lead always settles.
    lead: Option<Lead<Shared>>,
}

impl Work {
    fn new(key: TokenKey, index: usize, lead: Option<Lead<Shared>>) -> Self {
        Self { key, index, lead }
    }
}

/// What a check hands to the calls following it: what a memo could hold.
type Shared = Result<Arc<Authenticated>, Arc<Negative>>;

/// What a pool worker produced for one [`Work`].
enum Done<R> {
    Rendered((usize, R), Outcome),
    KidMiss(Work, String),
}

/// A distinct token's outcome, kept to render its in-batch copies.
type Outcome = Result<Arc<Authenticated>, Rejection>;

/// A pool job's answer: `None` when the call was cancelled.
type Pending<R> = tokio::sync::oneshot::Receiver<Option<Vec<Done<R>>>>;

/// The pieces of one hand-off to the pool, gathered: the last piece to
/// finish releases the reservation and sends them all.
struct Gather<R> {
    /// `None` once a piece was cancelled.
    done: Option<Vec<Done<R>>>,
    left: usize,
    tx: Option<tokio::sync::oneshot::Sender<Option<Vec<Done<R>>>>>,
    reserved: Option<Reservation>,
}

/// Adds a finished piece to its hand-off; sends the whole when it was the
/// last. A piece that panicked never arrives: the sender is dropped with
/// the last piece's hold on `gather`, and the call sees it as cancelled.
fn gathered<R>(gather: &Mutex<Gather<R>>, piece: Option<Vec<Done<R>>>) {
    let (tx, reserved, done) = {
        let mut g = lock(gather);
        match (g.done.as_mut(), piece) {
            (Some(all), Some(mut piece)) => all.append(&mut piece),
            _ => g.done = None,
        }
        g.left -= 1;
        if g.left > 0 {
            return;
        }
        (g.tx.take(), g.reserved.take(), g.done.take())
    };
    drop(reserved);
    if let Some(tx) = tx {
        let _ = tx.send(done);
    }
}

/// Waits for a pool job and sorts its answers.
async fn collect<R>(rx: Pending<R>) -> Result<Rendered<R>, EngineError> {
    let Ok(Some(done)) = rx.await else {
        return Err(EngineError::Cancelled);
    };
    let mut rendered = Vec::with_capacity(done.len());
    let mut outcomes = Vec::with_capacity(done.len());
    let mut kid_misses = Vec::new();
    for d in done {
        match d {
            Done::Rendered(r, outcome) => {
                outcomes.push((r.0, outcome));
                rendered.push(r);
            }
            Done::KidMiss(w, issuer) => kid_misses.push((w, issuer)),
        }
    }
    Ok((rendered, outcomes, kid_misses))
}

/// Rendered results by index, outcomes by index, and the unknown kids left
/// for a refresh.
type Rendered<R> = (Vec<(usize, R)>, Vec<(usize, Outcome)>, Vec<(Work, String)>);

/// Everything a pool worker needs besides the snapshot.
struct Job<F> {
    tokens: Arc<Vec<String>>,
    narrowing: Arc<Narrowing>,
    cancel: CancelToken,
    deadline: Option<Instant>,
    now: UnixTime,
    render: F,
}

impl<F: Copy> Clone for Job<F> {
    fn clone(&self) -> Self {
        Self {
            tokens: Arc::clone(&self.tokens),
            narrowing: Arc::clone(&self.narrowing),
            cancel: self.cancel.clone(),
            deadline: self.deadline,
            now: self.now,
            render: self.render,
        }
    }
}

/// What the scan of a batch found: hits rendered, misses handed to the
/// pool, tokens other calls are checking, copies of earlier tokens.
struct Scan<R> {
    results: Vec<Option<R>>,
    pending: Vec<Pending<R>>,
    follows: Vec<(Work, Follower<Shared>)>,
    duplicates: Vec<(usize, usize)>,
    hits: u64,
    /// Distinct tokens handed to the pool.
    handed: usize,
    /// Open from the first hand-off to the pool until all is back.
    pool_span: tracing::Span,
}

/// Puts rendered results at their indices.
fn place<R>(results: &mut [Option<R>], rendered: Vec<(usize, R)>) {
    for (i, r) in rendered {
        results[i] = Some(r);
    }
}

/// The batch verifier.
pub struct Engine {
    registry: Arc<Registry>,
    clock: Arc<dyn Clock>,
    /// Finds tokens in the memos and the other tables.
    hasher: TokenHasher,
    memo: Memo<Arc<Authenticated>>,
    negative: Memo<Arc<Negative>>,
    config: EngineConfig,
    pool: Pool,
    threads: usize,
    admission: Arc<Admission>,
    inflight: Arc<InFlight<Shared>>,
    /// Permits for scans of big batches on the blocking pool.
    scans: Arc<tokio::sync::Semaphore>,
    authentications: AtomicU64,
    checked: AtomicU64,
    coalesced: AtomicU64,
    /// Checked after admission, for memo hits and misses alike.
    revocations: Arc<Revocations>,
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
        let nice = config.pool_nice;
        let pool = Pool::new(threads, "jwtd-verify", move || {
            lower_this_threads_priority(nice);
        })
        .map_err(|e| EngineError::Pool(e.to_string()))?;
        Ok(Engine {
            registry,
            clock,
            hasher: TokenHasher::new(),
            memo: Memo::new(config.memo_entries, config.memo_max_bytes),
            negative: Memo::new(config.negative_entries, config.memo_max_bytes / 16),
            config,
            pool,
            threads,
            admission: Arc::new(Admission::new(threads)),
            inflight: Arc::new(InFlight::new()),
            scans: Arc::new(tokio::sync::Semaphore::new(threads)),
            authentications: AtomicU64::new(0),
            checked: AtomicU64::new(0),
            coalesced: AtomicU64::new(0),
            revocations: Arc::new(Revocations::none()),
        })
    }

    /// The engine checking every admitted token against `revocations`
    /// (none by default).
    pub fn with_revocations(mut self, revocations: Arc<Revocations>) -> Engine {
        self.revocations = revocations;
        self
    }

    /// The revocation lists every VALID answer is checked against.
    pub fn revocations(&self) -> &Arc<Revocations> {
        &self.revocations
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

    /// How many misses were answered by another call's check of the same
    /// token.
    pub fn coalesced(&self) -> u64 {
        self.coalesced.load(Ordering::Relaxed)
    }

    /// The positive memo (for its size and counters).
    pub fn memo(&self) -> &Memo<Arc<Authenticated>> {
        &self.memo
    }

    /// The count of pending cold work, and the measured cost of a check.
    pub fn admission(&self) -> &Arc<Admission> {
        &self.admission
    }

    /// The bound on pending cold tokens now (`[limits]` may be reloaded).
    pub fn pending_bound(&self) -> usize {
        self.registry.snapshot().limits.pending_bound(self.threads)
    }

    /// Answers `token` from the memos when they hold a current result:
    /// `render(outcome, cached = true)`. `None` is a miss.
    pub fn answer_from_memo<R>(
        &self,
        token: &str,
        trust: &Trust,
        narrowing: &Narrowing,
        now: UnixTime,
        render: &impl Fn(Result<Verified<'_>, &Rejection>, bool) -> R,
    ) -> Option<R> {
        self.answer_keyed(&self.hasher.key(token), trust, narrowing, now, render)
    }

    /// [`Engine::answer_from_memo`] for a token already hashed.
    fn answer_keyed<R>(
        &self,
        key: &TokenRef<'_>,
        trust: &Trust,
        narrowing: &Narrowing,
        now: UnixTime,
        render: &impl Fn(Result<Verified<'_>, &Rejection>, bool) -> R,
    ) -> Option<R> {
        let hit = self.memo.with_hit(key, now, |auth| {
            auth.is_current(trust)
                .then(|| render_admitted(auth, &self.revocations, narrowing, now, true, render))
        });
        if let Some(Some(result)) = hit {
            return Some(result);
        }
        self.negative
            .with_hit(key, now, |negative| {
                negative
                    .recheck(trust, narrowing)
                    .map(|rejection| render(Err(&rejection), true))
            })
            .flatten()
    }

    /// Verifies a batch: one result per token, in order. `budget` is a
    /// [`CancelToken`] or a [`Budget`] with the call's deadline. A batch
    /// whose cold work does not fit now is [`EngineError::Shed`].
    pub async fn verify_batch<R, F>(
        self: &Arc<Self>,
        tokens: Arc<Vec<String>>,
        narrowing: Arc<Narrowing>,
        budget: impl Into<Budget>,
        render: F,
    ) -> Result<Vec<R>, EngineError>
    where
        R: Send + 'static,
        F: Fn(Result<Verified<'_>, &Rejection>, bool) -> R + Send + Sync + Copy + 'static,
    {
        let budget = budget.into();
        let snapshot = self.registry.snapshot();
        let now = self.clock.now();
        let limit = snapshot.limits.pending_bound(self.threads);
        let job = Job {
            tokens: Arc::clone(&tokens),
            narrowing: Arc::clone(&narrowing),
            cancel: budget.cancel,
            deadline: budget.deadline,
            now,
            render,
        };
        let bytes: usize = tokens.iter().map(String::len).sum();
        let scanned = if bytes <= SCAN_INLINE_BYTES {
            self.scan(&snapshot, &job, limit)
        } else {
            // The permit goes into the scan, so it is held as long as the
            // scan runs even if this call is dropped meanwhile (the scan
            // then stops at its next token). The engine owns the semaphore
            // and never closes it.
            let permit = Arc::clone(&self.scans)
                .acquire_owned()
                .await
                .map_err(|e| EngineError::Internal(format!("scan permits: {e}")))?;
            let engine = Arc::clone(self);
            let (snap, scan_job) = (Arc::clone(&snapshot), job.clone());
            let span = tracing::Span::current();
            tokio::task::spawn_blocking(move || {
                let _permit = permit;
                span.in_scope(|| engine.scan(&snap, &scan_job, limit))
            })
            .await
            .map_err(|e| EngineError::Internal(format!("the batch scan failed: {e}")))?
        };
        let scan = match scanned {
            Ok(scan) => scan,
            Err(stop) => {
                // Chunks already on the pool stop at their next token.
                job.cancel.cancel();
                return Err(match stop {
                    ScanStop::Shed(shed) => EngineError::Shed(shed),
                    ScanStop::Cancelled => EngineError::Cancelled,
                });
            }
        };
        let Scan {
            mut results,
            pending,
            follows,
            duplicates,
            hits,
            handed,
            pool_span,
        } = scan;
        let misses = results.iter().filter(|r| r.is_none()).count() as u64;
        telemetry::memo_lookups(hits, misses);
        if otel::enabled() {
            // The caller's batch span declares these fields.
            let batch = tracing::Span::current();
            batch.record("memo.hits", hits as i64);
            batch.record("memo.misses", misses as i64);
            pool_span.record("jwtd.tokens", handed as i64);
        }

        let mut kid_misses = Vec::new();
        let mut outcomes = Vec::new();
        for rx in pending {
            let (rendered, checked, missed) = collect(rx).instrument(pool_span.clone()).await?;
            place(&mut results, rendered);
            outcomes.extend(checked);
            kid_misses.extend(missed);
        }
        drop(pool_span);
        if !follows.is_empty() {
            let orphans = self
                .follow(&snapshot.trust, &job, follows, &mut results, &mut outcomes)
                .await;
            if !orphans.is_empty() {
                // Their leaders left without an outcome this call can use:
                // check them here. A call that already paid for checks of
                // its own is not shed now (that work would be lost to it);
                // one that only followed is admitted like any cold work.
                let reserved = if handed > 0 {
                    self.admission.reserve(orphans.len())
                } else {
                    self.admission
                        .try_reserve(orphans.len(), limit, job.deadline, Instant::now())
                        .map_err(|shed| {
                            job.cancel.cancel();
                            EngineError::Shed(shed)
                        })?
                };
                let rx = self.spawn_on_pool(Arc::clone(&snapshot), &job, orphans, reserved, false);
                let (rendered, checked, missed) = collect(rx).await?;
                place(&mut results, rendered);
                outcomes.extend(checked);
                kid_misses.extend(missed);
            }
        }
        if !kid_misses.is_empty() {
            // Unknown kids: refresh those issuers once, then check those
            // tokens again (against the new keys when the refresh made it in
            // time), rendering an unknown kid this time.
            let issuers: BTreeSet<String> = kid_misses
                .iter()
                .map(|(_, issuer)| issuer.clone())
                .collect();
            let span = otel::kid_miss_span(issuers.len());
            self.refresh_for_kid_misses(issuers).instrument(span).await;
            let again: Vec<Work> = kid_misses.into_iter().map(|(w, _)| w).collect();
            // Admitted once already: this pass is not shed.
            let reserved = self.admission.reserve(again.len());
            let rx = self.spawn_on_pool(self.registry.snapshot(), &job, again, reserved, true);
            let (rendered, checked, _) = collect(rx).await?;
            place(&mut results, rendered);
            outcomes.extend(checked);
        }
        if !duplicates.is_empty() {
            // Copies are rendered from their first occurrence's outcome (not
            // cloned), so each token is rendered, and counted, once.
            let outcomes: HashMap<usize, Outcome> = outcomes.into_iter().collect();
            for (i, first) in duplicates {
                results[i] = outcomes.get(&first).map(|outcome| match outcome {
                    Ok(auth) => {
                        render_admitted(auth, &self.revocations, &narrowing, now, false, &render)
                    }
                    Err(rejection) => render(Err(rejection), false),
                });
            }
        }
        telemetry::memo_state(self.memo.len(), self.memo.evictions());
        // Results are matched to tokens by position: a gap would shift every
        // later one onto the wrong token, so it fails the call instead.
        results
            .into_iter()
            .collect::<Option<Vec<R>>>()
            .ok_or_else(|| EngineError::Internal("a token was left without a result".into()))
    }

    /// Hashes every token, answers hits, and hands the misses this call
    /// leads to the pool in admitted chunks. Synchronous: it runs on the
    /// calling task for small batches and on the blocking pool for big ones.
    fn scan<R, F>(
        self: &Arc<Self>,
        snapshot: &Arc<Snapshot>,
        job: &Job<F>,
        limit: usize,
    ) -> Result<Scan<R>, ScanStop>
    where
        R: Send + 'static,
        F: Fn(Result<Verified<'_>, &Rejection>, bool) -> R + Send + Sync + Copy + 'static,
    {
        let tokens = &job.tokens;
        let max_bytes = snapshot.trust.max_token_bytes();
        let mut scan = Scan {
            results: Vec::with_capacity(tokens.len()),
            pending: Vec::new(),
            follows: Vec::new(),
            duplicates: Vec::new(),
            hits: 0,
            handed: 0,
            pool_span: tracing::Span::none(),
        };
        // First index of every distinct miss; later copies take its result.
        let mut seen: HashMap<TokenRef<'_>, usize, KeyedHasher> = HashMap::default();
        // Misses go to the pool in chunks while this scan goes on, so the
        // cores start on signatures before the batch is fully hashed.
        let mut chunk: Vec<Work> = Vec::new();
        for (i, token) in tokens.iter().enumerate() {
            if job.cancel.is_cancelled() {
                return Err(ScanStop::Cancelled);
            }
            if token.len() > max_bytes {
                let too_large = Rejection::TooLarge {
                    len: token.len(),
                    max: max_bytes,
                };
                scan.results
                    .push(Some((job.render)(Err(&too_large), false)));
                continue;
            }
            let key = self.hasher.key(token);
            if let Some(result) =
                self.answer_keyed(&key, &snapshot.trust, &job.narrowing, job.now, &job.render)
            {
                scan.hits += 1;
                scan.results.push(Some(result));
                continue;
            }
            scan.results.push(None);
            match seen.entry(key) {
                Entry::Occupied(first) => scan.duplicates.push((i, *first.get())),
                Entry::Vacant(slot) => {
                    slot.insert(i);
                    let owned = key.to_owned_key();
                    match self.inflight.join(&owned) {
                        Join::Follow(follower) => {
                            scan.follows.push((Work::new(owned, i, None), follower));
                        }
                        Join::Lead(lead) => {
                            // A lead that settled between this token's memo
                            // miss above and the join wrote the memo first:
                            // look once more, or the token is checked twice.
                            if let Some(result) = self.answer_keyed(
                                &key,
                                &snapshot.trust,
                                &job.narrowing,
                                job.now,
                                &job.render,
                            ) {
                                drop(lead);
                                // Later copies then find the memo themselves.
                                seen.remove(&key);
                                scan.hits += 1;
                                scan.results[i] = Some(result);
                                continue;
                            }
                            chunk.push(Work::new(owned, i, Some(lead)));
                            if chunk.len() == POOL_CHUNK {
                                self.hand_off(
                                    snapshot,
                                    job,
                                    std::mem::take(&mut chunk),
                                    limit,
                                    &mut scan,
                                )?;
                            }
                        }
                    }
                }
            }
        }
        if !chunk.is_empty() {
            self.hand_off(snapshot, job, chunk, limit, &mut scan)?;
        }
        Ok(scan)
    }

    /// Admits `work` and starts it on the pool.
    fn hand_off<R, F>(
        self: &Arc<Self>,
        snapshot: &Arc<Snapshot>,
        job: &Job<F>,
        work: Vec<Work>,
        limit: usize,
        scan: &mut Scan<R>,
    ) -> Result<(), ScanStop>
    where
        R: Send + 'static,
        F: Fn(Result<Verified<'_>, &Rejection>, bool) -> R + Send + Sync + Copy + 'static,
    {
        // The deadline is weighed at the call's first hand-off only: its
        // later chunks wait behind its own first ones, not behind others, and
        // a batch too big for its own deadline is stopped by that deadline
        // (cancellation), not shed as if the server were busy.
        let deadline = job.deadline.filter(|_| scan.pending.is_empty());
        let reserved = self
            .admission
            .try_reserve(work.len(), limit, deadline, Instant::now())
            .map_err(ScanStop::Shed)?;
        if scan.pending.is_empty() {
            scan.pool_span = otel::verify_span();
        }
        scan.handed += work.len();
        let rx = self.spawn_on_pool(Arc::clone(snapshot), job, work, reserved, false);
        scan.pending.push(rx);
        Ok(())
    }

    /// Waits for the checks other calls lead and renders their outcomes
    /// for this call; returns the tokens whose leaders had nothing usable.
    async fn follow<R, F>(
        &self,
        trust: &Trust,
        job: &Job<F>,
        follows: Vec<(Work, Follower<Shared>)>,
        results: &mut [Option<R>],
        outcomes: &mut Vec<(usize, Outcome)>,
    ) -> Vec<Work>
    where
        F: Fn(Result<Verified<'_>, &Rejection>, bool) -> R,
    {
        let mut orphans = Vec::new();
        for (work, follower) in follows {
            let answered = match follower.outcome().await {
                Some(Ok(auth)) if auth.is_current(trust) => {
                    let r = render_admitted(
                        &auth,
                        &self.revocations,
                        &job.narrowing,
                        job.now,
                        true,
                        &job.render,
                    );
                    outcomes.push((work.index, Ok(auth)));
                    Some(r)
                }
                Some(Err(negative)) => negative.recheck(trust, &job.narrowing).map(|rejection| {
                    let r = (job.render)(Err(&rejection), true);
                    outcomes.push((work.index, Err(rejection)));
                    r
                }),
                _ => None,
            };
            match answered {
                Some(r) => {
                    results[work.index] = Some(r);
                    self.coalesced.fetch_add(1, Ordering::Relaxed);
                }
                None => orphans.push(work),
            }
        }
        orphans
    }

    /// Starts checking `work` on the pool, where workers authenticate,
    /// memoize, settle the checks they lead, and render. Unless
    /// `final_pass`, an unknown kid comes back unrendered, with its issuer,
    /// for a refresh. `reserved` is released when the pool is done.
    fn spawn_on_pool<R, F>(
        self: &Arc<Self>,
        snapshot: Arc<Snapshot>,
        job: &Job<F>,
        work: Vec<Work>,
        reserved: Reservation,
        final_pass: bool,
    ) -> Pending<R>
    where
        R: Send + 'static,
        F: Fn(Result<Verified<'_>, &Rejection>, bool) -> R + Send + Sync + Copy + 'static,
    {
        let n = work.len();
        self.authentications.fetch_add(n as u64, Ordering::Relaxed);
        let (tx, rx) = tokio::sync::oneshot::channel();
        let pieces = pool::pieces(n, self.threads);
        let gather = Arc::new(Mutex::new(Gather {
            done: Some(Vec::with_capacity(n)),
            left: pieces,
            tx: Some(tx),
            reserved: Some(reserved),
        }));
        let mut work = work.into_iter();
        let jobs: Vec<PoolJob> = (0..pieces)
            .map(|p| {
                let piece: Vec<Work> = work
                    .by_ref()
                    .take(n / pieces + usize::from(p < n % pieces))
                    .collect();
                let engine = Arc::clone(self);
                let snapshot = Arc::clone(&snapshot);
                let job = job.clone();
                let gather = Arc::clone(&gather);
                Box::new(move || {
                    // Stops at the first cancelled token; dropping the rest
                    // ends their leads.
                    let done: Option<Vec<Done<R>>> = piece
                        .into_iter()
                        .map(|w| engine.check_one(&snapshot, &job, w, final_pass))
                        .collect();
                    gathered(&gather, done);
                }) as PoolJob
            })
            .collect();
        self.pool.submit(jobs);
        rx
    }

    /// One unique miss, on a pool thread: authenticate, memoize, settle,
    /// render.
    fn check_one<R, F>(
        &self,
        snapshot: &Snapshot,
        job: &Job<F>,
        mut work: Work,
        final_pass: bool,
    ) -> Option<Done<R>>
    where
        F: Fn(Result<Verified<'_>, &Rejection>, bool) -> R,
    {
        if job.cancel.is_cancelled() {
            // Dropping `work` ends its lead: followers check for themselves.
            return None;
        }
        self.checked.fetch_add(1, Ordering::Relaxed);
        let token = &job.tokens[work.index];
        let now = job.now;
        let timed = sample_this_check().then(Instant::now);
        let checked = verify::authenticate_with_context(token, &snapshot.trust, &job.narrowing);
        if let Some(started) = timed {
            self.admission.record_cost(started.elapsed());
        }
        match checked {
            Ok(auth) => {
                let rendered = (
                    work.index,
                    render_admitted(
                        &auth,
                        &self.revocations,
                        &job.narrowing,
                        now,
                        false,
                        &job.render,
                    ),
                );
                let until = memo::valid_until(
                    now,
                    auth.claims().exp(),
                    auth.policy().leeway().seconds(),
                    self.config.memo_max_ttl_seconds,
                );
                if until > now.0 {
                    let bytes = auth.heap_bytes();
                    self.memo
                        .insert(&work.key, Arc::clone(&auth), now, until, bytes);
                }
                if let Some(lead) = work.lead.take() {
                    lead.settle(Some(Ok(Arc::clone(&auth))));
                }
                Some(Done::Rendered(rendered, Ok(auth)))
            }
            Err(Failure {
                rejection: Rejection::UnknownKid { issuer },
                ..
            }) if !final_pass => {
                // The lead ends here, not after the refresh: a lead held
                // across an await could wait on a call that follows this
                // one (two calls, each leading a token the other needs).
                // Followers then check for themselves and share the
                // rate-limited refresh.
                if let Some(lead) = work.lead.take() {
                    lead.settle(None);
                }
                Some(Done::KidMiss(work, issuer))
            }
            Err(failure) => {
                let rendered = (work.index, (job.render)(Err(&failure.rejection), false));
                let rejection = failure.rejection.clone();
                let negative = failure.into_negative().map(Arc::new);
                if let Some(negative) = &negative {
                    let until = now.0.saturating_add(self.config.negative_ttl_seconds);
                    self.negative
                        .insert(&work.key, Arc::clone(negative), now, until, 0);
                }
                if let Some(lead) = work.lead.take() {
                    lead.settle(negative.map(Err));
                }
                Some(Done::Rendered(rendered, Err(rejection)))
            }
        }
    }

    /// Asks each issuer in `missed` for a refresh, concurrently, and waits
    /// (each up to its `kid_miss_wait_ms`) for those refreshes.
    async fn refresh_for_kid_misses(&self, missed: BTreeSet<String>) {
        let mut waits = tokio::task::JoinSet::new();
        for issuer in missed {
            let registry = Arc::clone(&self.registry);
            // In the caller's span, so the refresh it triggers links to it.
            waits.spawn(async move { registry.kid_miss(&issuer).await }.in_current_span());
        }
        while waits.join_next().await.is_some() {}
    }
}

/// Makes the calling (pool) thread `nice` nicer than it was (at most 19),
/// so the network threads, which answer hits and shed what does not fit,
/// get the CPU first when both want it. Relative, so a process started
/// under `nice` keeps the difference. Best effort: a failure leaves the
/// thread as it was.
fn lower_this_threads_priority(nice: i32) {
    if nice == 0 {
        return;
    }
    #[cfg(target_os = "linux")]
    {
        // On Linux, PRIO_PROCESS with a thread id reads and sets that
        // thread's own nice value.
        let tid = Some(rustix::thread::gettid());
        let current = rustix::process::getpriority_process(tid).unwrap_or(0);
        let lower = current.saturating_add(nice).min(19);
        if let Err(e) = rustix::process::setpriority_process(tid, lower) {
            tracing::debug!("cannot lower the verification threads' priority: {e}");
        }
    }
}

/// True for one check in [`COST_SAMPLE_EVERY`] on this thread: timing every
/// check would cost two clock reads on the cheapest ones (HS256, ~0.5 µs).
fn sample_this_check() -> bool {
    thread_local! {
        static TICK: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
    }
    TICK.with(|tick| {
        let n = tick.get().wrapping_add(1);
        tick.set(n);
        n % COST_SAMPLE_EVERY == 0
    })
}

/// Runs the cheap checks on `auth`, then the revocation lists, and renders
/// the outcome. The lists come last so a token that fails anything else
/// keeps that answer, and so an empty store costs one load per source.
fn render_admitted<R>(
    auth: &Authenticated,
    revocations: &Revocations,
    narrowing: &Narrowing,
    now: UnixTime,
    cached: bool,
    render: &impl Fn(Result<Verified<'_>, &Rejection>, bool) -> R,
) -> R {
    let admitted = verify::admit(auth, narrowing, now).and_then(|verified| {
        revocations
            .check(auth.policy().issuer(), auth.claims(), now)
            .inspect_err(revoked_event)
            .map(|()| verified)
    });
    match admitted {
        Ok(verified) => render(Ok(verified), cached),
        Err(rejection) => render(Err(&rejection), cached),
    }
}

/// Counts a revoked token and records an event naming the kind of entry
/// (never the token or its claims). At debug level: a revoked token
/// replayed in a loop would otherwise write a log line per call.
fn revoked_event(rejection: &Rejection) {
    if let Rejection::Revoked { by } = rejection {
        telemetry::revoked(by);
        tracing::debug!(target: "jwtd::revoked", %by, "token revoked");
    }
}
