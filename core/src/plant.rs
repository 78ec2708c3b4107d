//! Bugs planted on purpose, for the simulator's negative scenarios.
//!
//! A checker that has never failed proves little. Each switch here turns on one real bug — the
//! kind a refactoring could introduce — so that a negative scenario can show that the checker
//! meant to catch it does. Production code paths never set them: the agent has no flag or
//! config key for them, and every field defaults to `false`.

/// Which planted bugs are active. `Planted::default()` is the correct system.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Planted {
    /// The Raft log store acknowledges an append before the entries are synced to disk.
    pub ack_before_sync: bool,
    /// A `?consistent` read is served from the local state machine without the leader
    /// confirming with a quorum that it still leads.
    pub stale_consistent_read: bool,
    /// The catalog grants an acquire during a key's lock-delay.
    pub ignore_lock_delay: bool,
    /// The leader never expires a TTL session: an abandoned session keeps its locks.
    pub forget_session_invalidation: bool,
}

impl Planted {
    /// True when no bug is planted.
    pub fn is_none(&self) -> bool {
        *self == Planted::default()
    }
}
