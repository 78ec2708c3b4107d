//! Per-node clock error: each simulated node's clocks may run off madsim's one virtual clock by
//! an offset and a drift.
//!
//! # The model
//!
//! madsim keeps one *real* (virtual) time line for the whole world: `std::time::Instant` and
//! `SystemTime` read it, and its timers fire on it. On top of that every node has a [`Skew`]:
//!
//! - **drift** (`drift_ppm`, parts per million): the node's *local* time runs at
//!   `1 + drift_ppm / 1e6` times the real rate. While a drift is in force, local elapsed time is
//!   `real elapsed × (1 + drift_ppm/1e6)`. A drift changed mid-run (by [`set_skew`]) takes effect
//!   from that moment: the local monotonic clock is piecewise linear, continuous, and never goes
//!   backwards. Drift must be above −1 000 000 ppm (a clock that stops or runs backwards is not
//!   a clock).
//! - **offset** (`offset_ns`): added to the node's *wall* clock only. A monotonic clock has no
//!   absolute meaning, so an offset cannot be seen there. Changing the offset makes the wall
//!   clock jump, as an NTP step does.
//!
//! What reads which clock, for a task running on a node:
//!
//! | timer / clock | follows |
//! |---|---|
//! | [`SimInstant::now`](super::SimInstant::now), so `MadsimRuntime::Instant` (Raft's heartbeats, election timeouts, leases; the server's routing deadlines) | local monotonic time (drift) |
//! | `MadsimRuntime::sleep`, `sleep_until`, `timeout`, `timeout_at` | local monotonic time: a local duration `d` is `d / (1 + drift)` of real time, rounded up |
//! | [`node_clock`]'s `mono_ms` / `instant_at` (session TTLs, the leader's duty timers) | local monotonic time (drift) |
//! | [`node_clock`]'s `wall_ms` (the stamp the leader puts into Raft commands: lock-delay expiry) | madsim's `SystemTime` + offset + the drift accumulated so far |
//! | `std::time::Instant`, `SystemTime`, `madsim::time::sleep` called directly | real time, unskewed (clients and checkers use these) |
//!
//! A node without a skew (or with `Skew::default()` since the start) reads exactly real time,
//! and its timers are armed at exactly the real deadlines they had before skew existed, so a
//! run without skew keeps the same schedule.
//!
//! # Scope and caveats
//!
//! - The table is thread-local: one per seed thread, so one per run. [`MadsimRuntime::with_seed_and_config`](super::MadsimRuntime::with_seed_and_config)
//!   clears it ([`reset`]). Keys are madsim [`NodeId`]s; a restarted node keeps its id, so it
//!   keeps its skew (the hardware clock outlives the process).
//! - "The current node" is the node of the madsim task that asks. An `Instant` taken on one
//!   node and compared on another is meaningless (as between two machines); openraft and the
//!   server only compare instants within their node. Code outside any madsim task (or outside
//!   any runtime) reads real time.
//! - A timer armed before a drift change keeps its real deadline if the local clock got
//!   *faster* (it fires late in local terms by at most the remaining wait × the drift change);
//!   if the local clock got *slower*, it re-arms when it wakes, so no timer ever fires before
//!   its local deadline.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use legate_runtime::clock::{Clock, ClockSource};
use madsim::task::NodeId;

use super::SimInstant;

const PPM: i128 = 1_000_000;
const NANOS_PER_SEC: u128 = 1_000_000_000;

/// One node's clock error.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Skew {
    /// Added to the node's wall clock (ns; negative = behind).
    pub offset_ns: i64,
    /// How much faster (positive) or slower (negative) the node's clocks run, in parts per
    /// million of real time. Must be above −1 000 000.
    pub drift_ppm: i32,
}

/// One node's clocks: the skew in force and the anchor of the current linear piece.
#[derive(Clone, Copy, Debug)]
struct NodeTime {
    skew: Skew,
    /// Real time at which the current piece starts.
    real_anchor: Instant,
    /// Local time at `real_anchor`.
    local_anchor: Instant,
}

impl NodeTime {
    fn rate(&self) -> u128 {
        (PPM + i128::from(self.skew.drift_ppm)) as u128
    }

    /// Local time at real time `real` (rounded down to the ns).
    fn local_at(&self, real: Instant) -> Instant {
        if self.skew.drift_ppm == 0 {
            return shift(self.local_anchor, real, self.real_anchor);
        }
        match real.checked_duration_since(self.real_anchor) {
            Some(dr) => self.local_anchor + from_nanos(dr.as_nanos() * self.rate() / PPM as u128),
            // Before this piece: only reachable for a time read before the latest `set_skew`.
            None => self.local_anchor,
        }
    }

    /// The earliest real time at which the local clock reads `local` (or a real time already
    /// past, if it read `local` before this piece started).
    fn real_at(&self, local: Instant) -> Instant {
        if self.skew.drift_ppm == 0 {
            return shift(self.real_anchor, local, self.local_anchor);
        }
        match local.checked_duration_since(self.local_anchor) {
            Some(dl) => self.real_anchor + from_nanos((dl.as_nanos() * PPM as u128).div_ceil(self.rate())),
            None => self.real_anchor,
        }
    }
}

/// `base + (to - from)`, exactly, for either sign of `to - from` (saturating at `base` if the
/// result would fall before the platform's earliest `Instant`).
fn shift(base: Instant, to: Instant, from: Instant) -> Instant {
    match to.checked_duration_since(from) {
        Some(d) => base + d,
        None => base.checked_sub(from - to).unwrap_or(base),
    }
}

fn from_nanos(ns: u128) -> Duration {
    Duration::new((ns / NANOS_PER_SEC) as u64, (ns % NANOS_PER_SEC) as u32)
}

#[derive(Default)]
struct Clocks {
    nodes: BTreeMap<NodeId, NodeTime>,
    /// The nodes [`node_clock`] was asked for; a [`ClockSource`] key is an index here.
    keys: Vec<NodeId>,
}

thread_local! {
    static CLOCKS: RefCell<Clocks> = RefCell::new(Clocks::default());
}

/// Reads the table; `None` if the thread is tearing down its thread-locals.
fn with_clocks<R>(f: impl FnOnce(&mut Clocks) -> R) -> Option<R> {
    CLOCKS.try_with(|c| f(&mut c.borrow_mut())).ok()
}

fn node_time(node: NodeId) -> Option<NodeTime> {
    with_clocks(|c| c.nodes.get(&node).copied()).flatten()
}

/// Forgets every skew and every [`node_clock`] key of this thread. [`MadsimRuntime::with_seed_and_config`](super::MadsimRuntime::with_seed_and_config)
/// calls it, so a new run on a reused thread starts with every node on real time.
pub fn reset() {
    with_clocks(|c| *c = Clocks::default());
}

/// Sets `node`'s clock error from now on. May be called at any time, also before the node's
/// tasks first run (right after creating it) and mid-run: the node's local monotonic time stays
/// continuous (only its rate changes), its wall clock jumps by the change in offset.
///
/// Panics if `skew.drift_ppm <= -1_000_000`.
pub fn set_skew(node: NodeId, skew: Skew) {
    assert!(
        i128::from(skew.drift_ppm) > -PPM,
        "clock drift {} ppm would stop or reverse node {node}'s clock",
        skew.drift_ppm
    );
    let real = Instant::now();
    with_clocks(|c| {
        let local = c.nodes.get(&node).map_or(real, |t| t.local_at(real));
        if skew == Skew::default() && local == real {
            // Back on real time exactly: the same as never skewed.
            c.nodes.remove(&node);
        } else {
            c.nodes.insert(node, NodeTime { skew, real_anchor: real, local_anchor: local });
        }
    });
}

/// `node`'s clock error now (`Skew::default()` if never set).
pub fn skew_of(node: NodeId) -> Skew {
    node_time(node).map_or_else(Skew::default, |t| t.skew)
}

/// The node of the madsim task running now; `None` outside a madsim runtime.
pub fn current_node() -> Option<NodeId> {
    madsim::time::TimeHandle::try_current()?;
    Some(madsim::plugin::node())
}

/// `node`'s local monotonic time now.
pub fn local_now_on(node: NodeId) -> SimInstant {
    let real = Instant::now();
    SimInstant::from_std(node_time(node).map_or(real, |t| t.local_at(real)))
}

/// The current node's local monotonic time now (real time outside a madsim task).
pub(super) fn local_now() -> SimInstant {
    let real = Instant::now();
    // Fast path, and the path of every run without skew: nothing to look up.
    if with_clocks(|c| c.nodes.is_empty()).unwrap_or(true) {
        return SimInstant::from_std(real);
    }
    match current_node() {
        Some(node) => SimInstant::from_std(node_time(node).map_or(real, |t| t.local_at(real))),
        None => SimInstant::from_std(real),
    }
}

/// The real (madsim) instant at which `node`'s local clock reads `local`, for the drift in
/// force now; a real instant already past if the local clock has read `local`. Exact (no
/// rounding) for a node without drift.
pub fn real_at(node: Option<NodeId>, local: SimInstant) -> Instant {
    let local = local.into_std();
    match node.and_then(node_time) {
        Some(t) => t.real_at(local),
        None => local,
    }
}

/// `node`'s wall clock now: madsim's `SystemTime` + the offset + the drift accumulated so far
/// (local monotonic time minus real time).
pub fn wall_now_on(node: NodeId) -> SystemTime {
    let (system, real) = (SystemTime::now(), Instant::now());
    let Some(t) = node_time(node) else { return system };
    let local = t.local_at(real);
    let drift_ns = match local.checked_duration_since(real) {
        Some(ahead) => ahead.as_nanos() as i128,
        None => -((real - local).as_nanos() as i128),
    };
    let total = drift_ns + i128::from(t.skew.offset_ns);
    let magnitude = from_nanos(total.unsigned_abs());
    if total >= 0 {
        system + magnitude
    } else {
        system.checked_sub(magnitude).unwrap_or(UNIX_EPOCH)
    }
}

fn key_node(key: u64) -> Option<NodeId> {
    with_clocks(|c| c.keys.get(key as usize).copied()).flatten()
}

fn source_now(key: u64) -> Instant {
    match key_node(key) {
        Some(node) => local_now_on(node).into_std(),
        None => Instant::now(),
    }
}

fn source_real_at(key: u64, local: Instant) -> Instant {
    real_at(key_node(key), SimInstant::from_std(local))
}

fn source_wall_ms(key: u64) -> u64 {
    let wall = match key_node(key) {
        Some(node) => wall_now_on(node),
        None => SystemTime::now(),
    };
    wall.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// A [`Clock`] that reads `node`'s skewed clocks (including later [`set_skew`] changes):
/// `mono_ms` and `instant_at` follow its local monotonic time, `wall_ms` its wall clock.
pub fn clock_of(node: NodeId) -> Clock {
    let key = with_clocks(|c| match c.keys.iter().position(|n| *n == node) {
        Some(i) => i,
        None => {
            c.keys.push(node);
            c.keys.len() - 1
        }
    })
    .expect("the clock table is gone: the thread is exiting");
    Clock::with_source(ClockSource {
        key: key as u64,
        now: source_now,
        real_at: source_real_at,
        wall_ms: source_wall_ms,
    })
}

/// The current node's skewed [`Clock`]: what a simulated server gives the production server
/// code instead of `Clock::default()`. Panics outside a madsim task.
pub fn node_clock() -> Clock {
    clock_of(current_node().expect("node_clock() must be called from a madsim task"))
}
