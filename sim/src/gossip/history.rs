//! The faults a run injected, as time windows, so that every `Failed` event can be judged:
//! was its subject crashed, gone, cut off by a partition, or slowed around that time?
//!
//! A fault excuses a `Failed` event for a while after it ends: suspicions raised during the
//! fault run out, and news of a death spreads, after it. The driver passes that grace period
//! (see [`super::check::Bounds::excuse_ms`]).

use super::setup::NodeId;

/// What explains a `Failed` event about a subject, as seen by one observer at one time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Cause {
    /// The subject crashed (its process was down) within the grace period: a true positive.
    Crashed,
    /// A partition was in force within the grace period. SWIM's declarations are global: a
    /// death declared across the cut spreads to the declarer's island and, once the cut
    /// heals, to everyone, so a partition excuses every `Failed` event, not only those about
    /// members on the observer's far side.
    Partitioned,
    /// The subject left gracefully: it should be `Left`, never `Failed`.
    Left,
    /// The subject was running and reachable, but slowed (CPU-starved): a false positive of
    /// the kind Lifeguard sets out to prevent.
    Slowed,
    /// The subject was running, reachable and healthy: a plain false positive.
    Healthy,
}

/// `[from_ms, to_ms]`; `to_ms` is `None` while the fault lasts.
#[derive(Clone, Copy, Debug)]
struct Window {
    from_ms: u64,
    to_ms: Option<u64>,
}

impl Window {
    /// Whether the window touches `[from_ms, to_ms]`.
    fn touches(&self, from_ms: u64, to_ms: u64) -> bool {
        self.from_ms <= to_ms && self.to_ms.is_none_or(|end| end >= from_ms)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Down {
    Crashed,
    Left,
}

pub(super) struct FaultHistory {
    down: Vec<Vec<(Window, Down)>>,
    slowed: Vec<Vec<Window>>,
    partitions: Vec<Window>,
}

impl FaultHistory {
    pub(super) fn new(members: usize) -> FaultHistory {
        FaultHistory { down: vec![Vec::new(); members], slowed: vec![Vec::new(); members], partitions: Vec::new() }
    }

    pub(super) fn crashed(&mut self, node: NodeId, now_ms: u64) {
        self.down[node].push((Window { from_ms: now_ms, to_ms: None }, Down::Crashed));
    }

    pub(super) fn left(&mut self, node: NodeId, now_ms: u64) {
        self.down[node].push((Window { from_ms: now_ms, to_ms: None }, Down::Left));
    }

    /// The node runs again (a restart).
    pub(super) fn started(&mut self, node: NodeId, now_ms: u64) {
        if let Some((w, _)) = self.down[node].last_mut() {
            w.to_ms.get_or_insert(now_ms);
        }
    }

    pub(super) fn slowed(&mut self, node: NodeId, now_ms: u64) {
        if self.slowed[node].last().is_none_or(|w| w.to_ms.is_some()) {
            self.slowed[node].push(Window { from_ms: now_ms, to_ms: None });
        }
    }

    pub(super) fn unslowed(&mut self, node: NodeId, now_ms: u64) {
        if let Some(w) = self.slowed[node].last_mut() {
            w.to_ms.get_or_insert(now_ms);
        }
    }

    pub(super) fn split(&mut self, now_ms: u64) {
        self.healed(now_ms);
        self.partitions.push(Window { from_ms: now_ms, to_ms: None });
    }

    pub(super) fn healed(&mut self, now_ms: u64) {
        if let Some(w) = self.partitions.last_mut() {
            w.to_ms.get_or_insert(now_ms);
        }
    }

    /// Why `subject` may have been declared failed at `at_ms`, given faults that ended up to
    /// `grace_ms` earlier.
    pub(super) fn cause(&self, subject: NodeId, at_ms: u64, grace_ms: u64) -> Cause {
        let from_ms = at_ms.saturating_sub(grace_ms);
        let down = |kind| self.down[subject].iter().any(|(w, k)| *k == kind && w.touches(from_ms, at_ms));
        if down(Down::Crashed) {
            return Cause::Crashed;
        }
        if self.partitions.iter().any(|w| w.touches(from_ms, at_ms)) {
            return Cause::Partitioned;
        }
        if down(Down::Left) {
            return Cause::Left;
        }
        if self.slowed[subject].iter().any(|w| w.touches(from_ms, at_ms)) {
            return Cause::Slowed;
        }
        Cause::Healthy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_excuse_failures_during_them_and_for_a_grace_period_after() {
        let mut h = FaultHistory::new(4);
        h.crashed(1, 100);
        h.started(1, 200);
        assert_eq!(h.cause(1, 150, 0), Cause::Crashed);
        assert_eq!(h.cause(1, 250, 100), Cause::Crashed, "within the grace period");
        assert_eq!(h.cause(1, 350, 100), Cause::Healthy, "after it");
        h.split(400);
        assert_eq!(h.cause(2, 450, 0), Cause::Partitioned);
        h.healed(500);
        assert_eq!(h.cause(3, 550, 100), Cause::Partitioned, "within the grace period");
        assert_eq!(h.cause(3, 650, 100), Cause::Healthy);
        h.slowed(3, 700);
        assert_eq!(h.cause(3, 750, 0), Cause::Slowed);
        h.unslowed(3, 800);
        assert_eq!(h.cause(3, 1_000, 100), Cause::Healthy);
        h.left(0, 1_000);
        assert_eq!(h.cause(0, 1_050, 0), Cause::Left);
    }
}
