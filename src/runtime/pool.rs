//! The verification pool: a fixed set of threads that take jobs from one
//! queue, in order, and park the moment it is empty.
//!
//! Decisions:
//! - **Park at once, never spin.** rayon's idle workers spin, steal and
//!   `sched_yield` for a while before they sleep; at 6,000 one-token calls
//!   per second on two cores that idle loop took ~25 µs of kernel time per
//!   call (250k context switches in 6 s) while the network threads waited
//!   (BENCHMARKS.md, issue 14, target 6). Here an idle worker waits on a
//!   condition variable, and a submitter wakes only as many workers as are
//!   idle and have a job: 2.0 context switches per one-token call instead
//!   of 9.2, batch64-cold p99 halved, for ~8 µs more per hand-off back to
//!   back (the wake-up a spinning worker saves).
//! - **One FIFO queue, no stealing.** The engine splits its work into
//!   pieces of a few tokens itself ([`pieces`]), about two per thread, so a
//!   slow piece (ES256 is ~3.6× RS256) is balanced by the others; every
//!   job is seconds at most, so a shared queue under one mutex is
//!   uncontended at these rates (a few thousand jobs per second).
//! - **A panicking job does not take its thread down**: it is caught, the
//!   thread goes on, and what the job owned is dropped (the engine's
//!   waiter then sees its answer channel closed).
//! - **Dropping the pool does not wait**: the workers finish the queue and
//!   exit. The last owner of the engine can be a job on this very pool, so
//!   joining here could wait for itself.
//!
//! Decision record: `docs/adr/0008-a-pool-that-parks-at-once.md`.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Condvar, Mutex, PoisonError};

/// A unit of work for the pool.
pub type Job = Box<dyn FnOnce() + Send + 'static>;

/// A fixed set of worker threads over one queue.
pub struct Pool {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    work: Condvar,
}

struct State {
    jobs: VecDeque<Job>,
    /// Workers waiting on `work`: a submission wakes at most this many.
    idle: usize,
    stopping: bool,
}

/// The fewest tokens worth a piece of their own: below this the hand-off
/// to another thread costs more than it spreads.
pub const MIN_PIECE: usize = 4;

/// How many pieces `len` items are split into for a pool of `threads`:
/// about two per thread, none smaller than [`MIN_PIECE`], at least one.
pub fn pieces(len: usize, threads: usize) -> usize {
    len.div_ceil(MIN_PIECE)
        .min(threads.saturating_mul(2))
        .max(1)
}

impl Pool {
    /// Starts `threads` workers named `{name}-{i}`, each running `start`
    /// first (to lower its priority, say).
    pub fn new(
        threads: usize,
        name: &str,
        start: impl Fn() + Clone + Send + 'static,
    ) -> std::io::Result<Pool> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                jobs: VecDeque::new(),
                idle: 0,
                stopping: false,
            }),
            work: Condvar::new(),
        });
        for i in 0..threads {
            let (shared, start) = (Arc::clone(&shared), start.clone());
            std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || {
                    start();
                    work(&shared);
                })?;
        }
        Ok(Pool { shared })
    }

    /// Queues `jobs` behind those already queued, waking idle workers for
    /// them.
    pub fn submit(&self, jobs: impl IntoIterator<Item = Job>) {
        let wake = {
            let mut state = self.shared.lock();
            let before = state.jobs.len();
            state.jobs.extend(jobs);
            (state.jobs.len() - before).min(state.idle)
        };
        for _ in 0..wake {
            self.shared.work.notify_one();
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.shared.lock().stopping = true;
        self.shared.work.notify_all();
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Jobs run outside the lock, so nothing can panic while holding it.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A worker's life: the next job, or park until there is one.
fn work(shared: &Shared) {
    loop {
        let job = {
            let mut state = shared.lock();
            loop {
                if let Some(job) = state.jobs.pop_front() {
                    break job;
                }
                if state.stopping {
                    return;
                }
                state.idle += 1;
                state = shared
                    .work
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
                state.idle -= 1;
            }
        };
        if std::panic::catch_unwind(AssertUnwindSafe(job)).is_err() {
            tracing::error!("a verification job panicked; its call is answered as cancelled");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    #[test]
    fn pieces_are_about_two_per_thread_and_never_tiny() {
        assert_eq!(pieces(0, 2), 1);
        assert_eq!(pieces(1, 2), 1);
        assert_eq!(pieces(4, 2), 1);
        assert_eq!(pieces(5, 2), 2);
        assert_eq!(pieces(64, 2), 4);
        assert_eq!(pieces(64, 8), 16);
        assert_eq!(pieces(1000, 1), 2);
    }

    #[test]
    fn every_job_runs_on_a_named_worker() {
        let pool = Pool::new(2, "test-pool", || {}).unwrap();
        let (tx, rx) = mpsc::channel();
        let jobs = (0..100).map(|i| {
            let tx = tx.clone();
            Box::new(move || {
                let name = std::thread::current().name().unwrap_or("").to_owned();
                tx.send((i, name)).unwrap();
            }) as Job
        });
        pool.submit(jobs);
        let mut seen: Vec<(i32, String)> = (0..100)
            .map(|_| rx.recv_timeout(Duration::from_secs(10)).unwrap())
            .collect();
        seen.sort();
        assert_eq!(
            seen.iter().map(|s| s.0).collect::<Vec<_>>(),
            (0..100).collect::<Vec<_>>()
        );
        assert!(seen.iter().all(|s| s.1.starts_with("test-pool-")));
    }

    #[test]
    fn both_threads_work_at_once() {
        // Two jobs that each wait for the other: they finish only if two
        // workers run them side by side.
        let pool = Pool::new(2, "test-pool", || {}).unwrap();
        let barrier = Arc::new(std::sync::Barrier::new(2));
        let (tx, rx) = mpsc::channel();
        let jobs = (0..2).map(|_| {
            let (barrier, tx) = (Arc::clone(&barrier), tx.clone());
            Box::new(move || {
                barrier.wait();
                tx.send(()).unwrap();
            }) as Job
        });
        pool.submit(jobs);
        for _ in 0..2 {
            rx.recv_timeout(Duration::from_secs(10)).unwrap();
        }
    }

    #[test]
    fn a_panicking_job_leaves_its_thread_working() {
        let pool = Pool::new(1, "test-pool", || {}).unwrap();
        let (tx, rx) = mpsc::channel::<u8>();
        let dropped = tx.clone();
        pool.submit([
            Box::new(move || {
                let _owned = dropped;
                if std::hint::black_box(true) {
                    panic!("a bug in a job");
                }
            }) as Job,
            Box::new(move || tx.send(7).unwrap()) as Job,
        ]);
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)), Ok(7));
    }

    #[test]
    fn workers_park_while_idle_and_wake_for_new_work() {
        let pool = Pool::new(2, "test-pool", || {}).unwrap();
        // Both workers reach the wait (and count themselves idle).
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while pool.shared.lock().idle < 2 {
            assert!(std::time::Instant::now() < deadline, "workers never parked");
            std::thread::sleep(Duration::from_millis(1));
        }
        let (tx, rx) = mpsc::channel();
        pool.submit([Box::new(move || tx.send(()).unwrap()) as Job]);
        rx.recv_timeout(Duration::from_secs(10)).unwrap();
    }

    #[test]
    fn dropping_the_pool_stops_its_threads() {
        let pool = Pool::new(2, "test-pool", || {}).unwrap();
        let shared = Arc::downgrade(&pool.shared);
        drop(pool);
        // Each worker holds the shared state until it returns.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while shared.strong_count() > 0 {
            assert!(std::time::Instant::now() < deadline, "workers never exited");
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}
