//! The real clocks the core takes as inputs.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// A monotonic millisecond clock (for the core's timers) and the wall clock (for the stamps
/// the leader puts into Raft commands).
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    start: Instant,
}

impl Default for Clock {
    fn default() -> Self {
        Clock { start: Instant::now() }
    }
}

impl Clock {
    /// Milliseconds since this clock was created; never goes backwards.
    pub fn mono_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    /// The `Instant` at which the monotonic clock reads `ms`.
    pub fn instant_at(&self, ms: u64) -> Instant {
        self.start + std::time::Duration::from_millis(ms)
    }

    /// Unix time in milliseconds.
    pub fn wall_ms(&self) -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
    }
}
