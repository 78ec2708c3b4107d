//! What every running member believes about every other, as its own events told it.
//!
//! This is the view Serf (and `legate members`) shows: a member is *alive* from its `Joined`
//! event until a `Failed`, `Left` or `Reaped` one (a suspect is still alive to users). Only
//! running members' beliefs count; a member that stops forgets everything, as a fresh process
//! would. The counters let the driver ask "does every running member see X alive?" and "has
//! the pool converged?" in constant time, which a 1,000-member run needs after every event.

use super::setup::NodeId;

/// One member's belief about another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Belief {
    /// Never heard of it (or reaped it).
    Unknown,
    Alive,
    Failed,
    Left,
}

pub(super) struct Views {
    members: usize,
    /// `beliefs[observer * members + subject]`.
    beliefs: Vec<Belief>,
    /// Per subject: running members (other than itself) that believe it alive.
    believed_alive: Vec<u32>,
    running: Vec<bool>,
    running_count: usize,
    /// Sum of `believed_alive` over running subjects: the pool has converged when it is
    /// `running · (running − 1)`.
    alive_pairs: u64,
}

impl Views {
    pub(super) fn new(members: usize) -> Views {
        Views {
            members,
            beliefs: vec![Belief::Unknown; members * members],
            believed_alive: vec![0; members],
            running: vec![false; members],
            running_count: 0,
            alive_pairs: 0,
        }
    }

    pub(super) fn belief(&self, observer: NodeId, subject: NodeId) -> Belief {
        self.beliefs[observer * self.members + subject]
    }

    /// Records a running observer's new belief about another member.
    pub(super) fn set(&mut self, observer: NodeId, subject: NodeId, belief: Belief) {
        assert!(self.running[observer], "a stopped member {observer} has no beliefs");
        if observer == subject {
            return;
        }
        let slot = &mut self.beliefs[observer * self.members + subject];
        let before = std::mem::replace(slot, belief);
        let delta = i64::from(belief == Belief::Alive) - i64::from(before == Belief::Alive);
        self.count_alive(subject, delta);
    }

    /// A member's process started: it believes nothing yet, and others' beliefs about it
    /// now count towards convergence.
    pub(super) fn started(&mut self, node: NodeId) {
        assert!(!self.running[node], "member {node} started twice");
        self.running[node] = true;
        self.running_count += 1;
        self.alive_pairs += u64::from(self.believed_alive[node]);
    }

    /// A member's process stopped (crash or leave): its beliefs are gone.
    pub(super) fn stopped(&mut self, node: NodeId) {
        assert!(self.running[node], "member {node} stopped twice");
        for subject in 0..self.members {
            if self.belief(node, subject) == Belief::Alive {
                self.count_alive(subject, -1);
            }
        }
        self.beliefs[node * self.members..(node + 1) * self.members].fill(Belief::Unknown);
        self.alive_pairs -= u64::from(self.believed_alive[node]);
        self.running[node] = false;
        self.running_count -= 1;
    }

    fn count_alive(&mut self, subject: NodeId, delta: i64) {
        let count = &mut self.believed_alive[subject];
        *count = u32::try_from(i64::from(*count) + delta).expect("alive beliefs never go negative");
        if self.running[subject] {
            self.alive_pairs = (self.alive_pairs as i64 + delta) as u64;
        }
    }

    pub(super) fn is_running(&self, node: NodeId) -> bool {
        self.running[node]
    }

    pub(super) fn running_count(&self) -> usize {
        self.running_count
    }

    /// Running members other than `subject` that believe it alive.
    pub(super) fn believed_alive(&self, subject: NodeId) -> usize {
        self.believed_alive[subject] as usize
    }

    /// Running members (other than `subject`, if it runs) that do not believe it alive.
    pub(super) fn doubters(&self, subject: NodeId) -> usize {
        let observers = self.running_count - usize::from(self.running[subject]);
        observers - self.believed_alive(subject)
    }

    /// Every running member believes every other running member alive.
    pub(super) fn converged(&self) -> bool {
        let n = self.running_count as u64;
        self.alive_pairs == n * n.saturating_sub(1)
    }

    /// Running members in the order of their ids.
    pub(super) fn running(&self) -> impl Iterator<Item = NodeId> + '_ {
        (0..self.members).filter(|n| self.running[*n])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn convergence_counts_only_running_members() {
        let mut v = Views::new(3);
        for n in 0..3 {
            v.started(n);
        }
        assert!(!v.converged());
        for (o, s) in [(0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1)] {
            v.set(o, s, Belief::Alive);
        }
        assert!(v.converged());
        v.stopped(2);
        assert!(v.converged(), "0 and 1 see each other alive; what they think of the stopped 2 does not count");
        assert_eq!(v.believed_alive(2), 2);
        assert_eq!(v.doubters(2), 0);
        v.set(0, 2, Belief::Failed);
        v.set(1, 2, Belief::Failed);
        assert_eq!(v.doubters(2), 2);
        assert!(v.converged(), "every running member sees every running member alive");
        v.started(2);
        assert!(!v.converged(), "a restarted member knows nobody, and nobody believes it alive");
        assert_eq!(v.belief(2, 0), Belief::Unknown);
    }
}
