//! Time as the heartbeat sees it, injectable so that the same code runs against a simulated
//! clock.
//!
//! Two readings are needed: a monotonic one for intervals and deadlines (never jumps), and
//! wall-clock seconds, which o2hb writes into `hb_seq`.

use parking_lot::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// One reading of a [`Clock`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Now {
    /// Monotonic time since the clock's origin.
    pub mono: Duration,
    /// Seconds since the Unix epoch (`ktime_get_real_seconds()` in the kernel).
    pub wall_secs: u64,
}

/// A source of time.
pub trait Clock: Send + Sync {
    fn now(&self) -> Now;
    /// Lets `d` pass (a simulated clock advances itself instead of blocking).
    fn sleep(&self, d: Duration);
}

/// The operating system's clocks.
#[derive(Debug)]
pub struct SystemClock {
    origin: Instant,
}

impl SystemClock {
    pub fn new() -> Self {
        SystemClock { origin: Instant::now() }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Now {
        let wall_secs = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        Now { mono: self.origin.elapsed(), wall_secs }
    }

    fn sleep(&self, d: Duration) {
        std::thread::sleep(d);
    }
}

/// A clock that moves only when told to, for deterministic tests. Wall time advances with
/// monotonic time from the given starting second.
#[derive(Debug)]
pub struct ManualClock {
    start_wall: u64,
    mono: Mutex<Duration>,
}

impl ManualClock {
    pub fn new(start_wall_secs: u64) -> Self {
        ManualClock { start_wall: start_wall_secs, mono: Mutex::new(Duration::ZERO) }
    }

    /// Moves time forward by `d`.
    pub fn advance(&self, d: Duration) {
        let mut m = self.mono.lock();
        *m = m.saturating_add(d);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Now {
        let mono = *self.mono.lock();
        Now { mono, wall_secs: self.start_wall.saturating_add(mono.as_secs()) }
    }

    fn sleep(&self, d: Duration) {
        self.advance(d);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_advanced() {
        let c = ManualClock::new(1_000);
        assert_eq!(c.now(), Now { mono: Duration::ZERO, wall_secs: 1_000 });
        c.sleep(Duration::from_millis(1_500));
        assert_eq!(c.now(), Now { mono: Duration::from_millis(1_500), wall_secs: 1_001 });
    }

    #[test]
    fn system_clock_is_monotonic_and_near_the_wall_clock() {
        let c = SystemClock::new();
        let a = c.now();
        c.sleep(Duration::from_millis(2));
        let b = c.now();
        assert!(b.mono >= a.mono + Duration::from_millis(2));
        assert!(a.wall_secs > 1_600_000_000);
    }
}
