//! Admission control: the process-wide bound on cold work, and the answer a
//! call gets when it would pass it. Counts; never sleeps, never queues.
//!
//! A token is *cold* from the moment the engine hands it to the verification
//! pool until its check is done: it missed the memo and the negative memo
//! and was not already being checked for another call. Memo hits are never
//! counted, so a batch of hits is answered whatever the pool's backlog: in a
//! mesh most tokens are repeats, and those keep flowing while cold work is
//! shed.
//!
//! Decisions:
//! - **Tokens, not calls.** A 1024-token cold batch is 1024 times the work
//!   of a single Check; counting calls would let a few big batches queue
//!   seconds of work. The bound is `limits.max_pending_tokens`, by default
//!   [`PENDING_TOKENS_PER_THREAD`] per pool thread: about 50 ms of RS256
//!   checks per thread at the 25 µs one costs here (ES256, ~90 µs: ~185 ms),
//!   inside Envoy's default ext_authz timeout of 200 ms.
//! - **Reserved per hand-off.** The engine reserves each chunk of misses as
//!   its scan finds them (so the pool starts on a big batch before the scan
//!   ends); the reservation is released when the pool finishes the chunk,
//!   whether the call is still there or not. A call whose chunk does not fit
//!   is refused whole (one answer is simpler for callers than a batch with
//!   holes), its earlier chunks are cancelled, and whatever they already
//!   checked is memoized (unless the memo is full of hotter entries), so a
//!   retry mostly finds it. A cancelled chunk still queued on the pool
//!   stays counted until a pool thread reaches it and skips its tokens (a
//!   few µs): while a backlog of cancelled work drains, the count reads
//!   high for at most the time the bound takes to drain (~50 ms by
//!   default), erring toward shedding.
//! - **Deadlines.** The wait before a call's cold work starts is estimated
//!   as `pending × cost / threads`, `cost` an average of sampled check
//!   times on the pool. A call whose `grpc-timeout` would expire first is
//!   shed before it costs any CPU (weighed when its first chunk asks for
//!   room: its later chunks wait behind its own, and a batch too big for its
//!   own deadline is stopped by the deadline, not shed), with
//!   RESOURCE_EXHAUSTED rather than
//!   DEADLINE_EXCEEDED: the deadline has not passed, this replica is just
//!   too busy, and RESOURCE_EXHAUSTED is the code gRPC retry policies and
//!   Envoy treat as "try again later, maybe elsewhere" (DEADLINE_EXCEEDED is
//!   never retried).
//! - **Pushback** (gRFC A6 `grpc-retry-pushback-ms`): the time the current
//!   backlog takes to drain at the measured cost, clamped to
//!   [`MIN_PUSHBACK`]..=[`MAX_PUSHBACK`]; clients that honour it come back
//!   when there is room instead of hammering a full queue.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub use crate::config::settings::PENDING_TOKENS_PER_THREAD;

/// The cost of one check assumed before any is measured: RS256 with a
/// 2048-bit key on these machines.
pub const INITIAL_TOKEN_COST: Duration = Duration::from_micros(25);
/// Shortest pushback sent: retrying sooner would meet the same queue.
pub const MIN_PUSHBACK: Duration = Duration::from_millis(10);
/// Longest pushback sent.
pub const MAX_PUSHBACK: Duration = Duration::from_secs(5);
/// Weight of a new cost sample in the moving average (1/8).
const COST_SAMPLE_SHIFT: u32 = 3;

/// Why a call was shed. The `Display` text is the gRPC message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Shed {
    /// Its cold tokens would pass the bound on pending cold work.
    #[error(
        "overloaded: {pending} tokens already wait for a signature check and {wanted} more \
         would pass limits.max_pending_tokens ({limit}); retry after the pushback"
    )]
    Overloaded {
        /// The bound.
        limit: usize,
        /// Cold tokens pending when the call asked.
        pending: usize,
        /// Cold tokens the call asked to add.
        wanted: usize,
        /// When to come back.
        pushback: Duration,
    },
    /// Its deadline would pass before its cold work could start.
    #[error(
        "overloaded: the call's deadline leaves {} ms, but its signature checks would start in \
         about {} ms ({pending} tokens ahead); retry after the pushback",
        left.as_millis(),
        wait.as_millis()
    )]
    Deadline {
        /// Time left before the deadline.
        left: Duration,
        /// Estimated wait before the call's first check.
        wait: Duration,
        /// Cold tokens ahead of it.
        pending: usize,
        /// When to come back.
        pushback: Duration,
    },
}

impl Shed {
    /// How long the caller should wait before retrying.
    pub fn pushback(&self) -> Duration {
        match self {
            Shed::Overloaded { pushback, .. } | Shed::Deadline { pushback, .. } => *pushback,
        }
    }

    /// The metric label of the reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Shed::Overloaded { .. } => "overloaded",
            Shed::Deadline { .. } => "deadline",
        }
    }
}

/// The count of pending cold tokens and the measured cost of one.
#[derive(Debug)]
pub struct Admission {
    pending: AtomicUsize,
    threads: usize,
    /// Moving average of one check's time on a pool thread, in ns.
    cost_ns: AtomicU64,
}

/// Cold tokens counted as pending until this is dropped.
#[derive(Debug)]
#[must_use = "the tokens stay counted only while the reservation lives"]
pub struct Reservation {
    admission: Arc<Admission>,
    tokens: usize,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.admission
            .pending
            .fetch_sub(self.tokens, Ordering::AcqRel);
    }
}

impl Admission {
    /// An empty count for a pool of `threads`.
    pub fn new(threads: usize) -> Self {
        Self {
            pending: AtomicUsize::new(0),
            threads: threads.max(1),
            cost_ns: AtomicU64::new(INITIAL_TOKEN_COST.as_nanos() as u64),
        }
    }

    /// Cold tokens pending now.
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::Acquire)
    }

    /// The measured cost of one check on one pool thread.
    pub fn token_cost(&self) -> Duration {
        Duration::from_nanos(self.cost_ns.load(Ordering::Relaxed))
    }

    /// Folds one measured check into the average. A sample is clamped to
    /// within 4× of the average first: the samples are wall time on a
    /// low-priority thread, and one preemption (milliseconds) must not make
    /// every deadline look unreachable for the next hundred checks.
    /// Concurrent updates may lose a sample; the average only steers
    /// estimates.
    pub fn record_cost(&self, sample: Duration) {
        let old = self.cost_ns.load(Ordering::Relaxed);
        let sample = u64::try_from(sample.as_nanos())
            .unwrap_or(u64::MAX)
            .clamp(old / 4, old.saturating_mul(4));
        let new = if sample >= old {
            old + ((sample - old) >> COST_SAMPLE_SHIFT)
        } else {
            old - ((old - sample) >> COST_SAMPLE_SHIFT)
        };
        self.cost_ns.store(new.max(1), Ordering::Relaxed);
    }

    /// How long `tokens` pending cold tokens keep the pool busy.
    pub fn drain_time(&self, tokens: usize) -> Duration {
        let ns = u128::from(self.cost_ns.load(Ordering::Relaxed)) * tokens as u128
            / self.threads as u128;
        Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
    }

    /// The pushback for a call shed now.
    pub fn pushback(&self) -> Duration {
        self.drain_time(self.pending())
            .clamp(MIN_PUSHBACK, MAX_PUSHBACK)
    }

    /// Counts `tokens` more cold tokens, unless that passes `limit` or the
    /// wait before they could start passes `deadline` (seen at `now`).
    pub fn try_reserve(
        self: &Arc<Self>,
        tokens: usize,
        limit: usize,
        deadline: Option<Instant>,
        now: Instant,
    ) -> Result<Reservation, Shed> {
        let mut pending = self.pending();
        loop {
            if pending.saturating_add(tokens) > limit {
                return Err(Shed::Overloaded {
                    limit,
                    pending,
                    wanted: tokens,
                    pushback: self.pushback(),
                });
            }
            if let Some(deadline) = deadline {
                let left = deadline.saturating_duration_since(now);
                let wait = self.drain_time(pending);
                if wait >= left {
                    return Err(Shed::Deadline {
                        left,
                        wait,
                        pending,
                        pushback: self.pushback(),
                    });
                }
            }
            match self.pending.compare_exchange_weak(
                pending,
                pending + tokens,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    return Ok(Reservation {
                        admission: Arc::clone(self),
                        tokens,
                    });
                }
                Err(current) => pending = current,
            }
        }
    }

    /// Counts `tokens` more cold tokens whatever the bound: for work a call
    /// was already admitted for (a second pass after an unknown-kid refresh).
    pub fn reserve(self: &Arc<Self>, tokens: usize) -> Reservation {
        self.pending.fetch_add(tokens, Ordering::AcqRel);
        Reservation {
            admission: Arc::clone(self),
            tokens,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission(threads: usize) -> Arc<Admission> {
        Arc::new(Admission::new(threads))
    }

    #[test]
    fn the_bound_counts_tokens_until_their_reservations_drop() {
        let a = admission(2);
        let now = Instant::now();
        let first = a.try_reserve(60, 100, None, now).expect("fits");
        let second = a.try_reserve(40, 100, None, now).expect("fits exactly");
        assert_eq!(a.pending(), 100);
        match a.try_reserve(1, 100, None, now) {
            Err(Shed::Overloaded {
                limit: 100,
                pending: 100,
                wanted: 1,
                ..
            }) => {}
            other => panic!("expected Overloaded, got {other:?}"),
        }
        drop(first);
        assert_eq!(a.pending(), 40);
        let third = a.try_reserve(60, 100, None, now).expect("room again");
        drop((second, third));
        assert_eq!(a.pending(), 0);
        let forced = a.reserve(500);
        assert_eq!(a.pending(), 500, "a forced reservation ignores the bound");
        drop(forced);
        assert_eq!(a.pending(), 0);
    }

    #[test]
    fn a_deadline_that_passes_before_the_work_could_start_is_shed() {
        let a = admission(2);
        for _ in 0..200 {
            a.record_cost(Duration::from_micros(100));
        }
        let cost = a.token_cost();
        assert!(
            cost > Duration::from_micros(95) && cost <= Duration::from_micros(100),
            "{cost:?}"
        );
        let now = Instant::now();
        let _ahead = a.reserve(1000); // 1000 × 100 µs / 2 threads ≈ 50 ms
        let wait = a.drain_time(1000);
        assert!(
            wait > Duration::from_millis(45) && wait <= Duration::from_millis(50),
            "{wait:?}"
        );
        let soon = now + Duration::from_millis(20);
        match a.try_reserve(1, 10_000, Some(soon), now) {
            Err(Shed::Deadline {
                left,
                wait,
                pending: 1000,
                pushback,
            }) => {
                assert_eq!(left, Duration::from_millis(20));
                assert!(wait > left);
                assert_eq!(pushback, a.drain_time(1000));
            }
            other => panic!("expected Deadline, got {other:?}"),
        }
        assert_eq!(a.pending(), 1000, "a shed call reserves nothing");
        let later = now + Duration::from_millis(200);
        let _ok = a.try_reserve(1, 10_000, Some(later), now).expect("in time");
        let past = now.checked_sub(Duration::from_millis(1)).unwrap_or(now);
        assert!(
            a.try_reserve(1, 10_000, Some(past), now).is_err(),
            "a deadline already passed is shed"
        );
    }

    #[test]
    fn one_outlying_sample_moves_the_estimate_a_little() {
        let a = admission(2);
        a.record_cost(Duration::from_millis(4)); // a preemption
        let cost = a.token_cost();
        assert!(
            cost <= Duration::from_micros(25 + 75 / 8 + 1),
            "clamped to 4x before averaging: {cost:?}"
        );
        a.record_cost(Duration::ZERO);
        assert!(
            a.token_cost() > Duration::from_micros(20),
            "{:?}",
            a.token_cost()
        );
    }

    #[test]
    fn pushback_follows_the_backlog_within_its_bounds() {
        let a = admission(1);
        assert_eq!(a.pushback(), MIN_PUSHBACK, "an empty queue: the floor");
        let _r = a.reserve(2000); // 2000 × 25 µs = 50 ms
        assert_eq!(a.pushback(), Duration::from_millis(50));
        let _more = a.reserve(10_000_000);
        assert_eq!(a.pushback(), MAX_PUSHBACK);
    }

    #[test]
    fn concurrent_reservations_never_pass_the_bound() {
        let a = admission(4);
        let limit = 64;
        std::thread::scope(|s| {
            for _ in 0..4 {
                let a = Arc::clone(&a);
                s.spawn(move || {
                    for _ in 0..20_000 {
                        if let Ok(r) = a.try_reserve(3, limit, None, Instant::now()) {
                            assert!(a.pending() <= limit);
                            drop(r);
                        }
                    }
                });
            }
        });
        assert_eq!(a.pending(), 0);
    }
}
