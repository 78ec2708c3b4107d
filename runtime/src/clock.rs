//! The real clocks the core takes as inputs.
//!
//! [`Clock::default`] reads the process's clocks (`Instant::now`, `SystemTime::now`): that is
//! what production runs. [`Clock::with_source`] reads a [`ClockSource`] instead, which the
//! simulator uses to give each simulated node its own skewed clock (an offset on the wall
//! clock, a drift on both clocks). A source is a handful of plain functions and a key, so a
//! `Clock` stays `Copy`.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Where a non-default [`Clock`] reads its time. Each function is called with [`key`](Self::key)
/// (the simulator passes which node's clock it is).
#[derive(Clone, Copy, Debug)]
pub struct ClockSource {
    /// Handed back to every function below.
    pub key: u64,
    /// The monotonic time now, as an `Instant` on the source's own time line (which may run
    /// faster or slower than `Instant::now()`'s). Must never go backwards.
    pub now: fn(u64) -> Instant,
    /// The `Instant` on `Instant::now()`'s time line at which [`now`](Self::now) reads (or read)
    /// the given instant of the source's time line.
    pub real_at: fn(u64, Instant) -> Instant,
    /// Unix time in milliseconds, as this source's wall clock reads it.
    pub wall_ms: fn(u64) -> u64,
}

/// A monotonic millisecond clock (for the core's timers) and the wall clock (for the stamps
/// the leader puts into Raft commands).
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    /// When the clock was created, on the time line of `source` (or of `Instant::now()`).
    start: Instant,
    source: Option<ClockSource>,
}

impl Default for Clock {
    fn default() -> Self {
        Clock { start: Instant::now(), source: None }
    }
}

impl Clock {
    /// A clock that reads `source` instead of the process's clocks.
    pub fn with_source(source: ClockSource) -> Self {
        Clock { start: (source.now)(source.key), source: Some(source) }
    }

    /// Milliseconds since this clock was created; never goes backwards.
    pub fn mono_ms(&self) -> u64 {
        let now = match &self.source {
            None => Instant::now(),
            Some(s) => (s.now)(s.key),
        };
        now.saturating_duration_since(self.start).as_millis() as u64
    }

    /// The `Instant` (on `Instant::now()`'s time line) at which the monotonic clock reads `ms`.
    /// With a source whose time line runs at another rate, the answer holds for the rate in
    /// force when this is called.
    pub fn instant_at(&self, ms: u64) -> Instant {
        let at = self.start + std::time::Duration::from_millis(ms);
        match &self.source {
            None => at,
            Some(s) => (s.real_at)(s.key, at),
        }
    }

    /// Unix time in milliseconds.
    pub fn wall_ms(&self) -> u64 {
        match &self.source {
            None => SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0),
            Some(s) => (s.wall_ms)(s.key),
        }
    }
}
