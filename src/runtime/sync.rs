//! Lock helpers shared by the modules that keep small control-plane state
//! behind a `Mutex` (never on a per-token path).

use std::sync::{Mutex, MutexGuard};

/// Locks `m`, carrying on after a panic elsewhere poisoned it: the guarded
/// data here (queues of digests, timestamps, task handles) stays meaningful.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
