//! Where the service gets "now": a trait so tests pin the time, and the
//! system clock for production. The verifier itself never reads a clock.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::verifier::verify::UnixTime;

/// A source of the current time.
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> UnixTime;
}

/// The operating system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> UnixTime {
        // A clock before 1970 reads as 0 (every exp then lies in the future,
        // which only matters on a badly broken host; nbf still protects).
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        UnixTime(i64::try_from(secs).unwrap_or(i64::MAX))
    }
}

/// A clock fixed at one instant, for tests and tools.
#[derive(Debug, Clone, Copy)]
pub struct FixedClock(pub UnixTime);

impl Clock for FixedClock {
    fn now(&self) -> UnixTime {
        self.0
    }
}

/// A clock the test moves by hand.
#[derive(Debug, Default)]
pub struct ManualClock(std::sync::atomic::AtomicI64);

impl ManualClock {
    /// A clock reading `now`.
    pub fn new(now: UnixTime) -> Self {
        Self(std::sync::atomic::AtomicI64::new(now.0))
    }

    /// Sets the time.
    pub fn set(&self, now: UnixTime) {
        self.0.store(now.0, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> UnixTime {
        UnixTime(self.0.load(std::sync::atomic::Ordering::Relaxed))
    }
}
