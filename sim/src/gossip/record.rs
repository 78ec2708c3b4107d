//! What a run observed: when each join converged, when each crash was detected, when each
//! leave reached everyone, and every `Failed` event with what explains it.
//!
//! "Everyone" follows the Serf convergence simulator's yardstick: 99.99 % of the running
//! members, which is all of them below 10,000 members. A record stays open until its
//! condition holds; the driver re-evaluates the open records of a member after every event
//! about it, and all open records whenever a member starts or stops.

use std::collections::BTreeMap;

use super::history::Cause;
use super::setup::NodeId;
use super::views::Views;

/// Events of one kind kept verbatim (the rest are only counted).
pub const SAMPLES_MAX: usize = 8;

/// Members that may still lag when an update counts as everywhere: 0.01 % of `observers`.
pub fn stragglers_allowed(observers: usize) -> usize {
    observers / 10_000
}

/// A member's start, and how long until (nearly) every running member believed it alive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinRecord {
    pub node: NodeId,
    pub started_ms: u64,
    /// A restart of a member that ran before (a rejoin), not a first start.
    pub restart: bool,
    pub converged_ms: Option<u64>,
}

/// A crash, and how long until no running member (beyond the stragglers allowed) believed
/// the crashed member alive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrashRecord {
    pub node: NodeId,
    pub crashed_ms: u64,
    pub detected_ms: Option<u64>,
    /// Restarted before the crash was detected: detection no longer applies.
    pub restarted_ms: Option<u64>,
}

/// A graceful leave, and how long until no running member believed the member alive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaveRecord {
    pub node: NodeId,
    pub left_ms: u64,
    pub gone_ms: Option<u64>,
}

/// One `Failed` event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FailedEvent {
    pub at_ms: u64,
    pub observer: NodeId,
    pub subject: NodeId,
    pub cause: Cause,
}

/// A member that had declared another failed saw it alive again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Revival {
    pub at_ms: u64,
    pub observer: NodeId,
    pub subject: NodeId,
    /// The incarnation the observer had declared it failed at.
    pub failed_incarnation: u32,
    /// The incarnation it is alive at now: above the failed one, or the death was not refuted.
    pub alive_incarnation: u32,
}

/// Events of one kind: all counted, the first [`SAMPLES_MAX`] kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sampled<T> {
    pub total: u64,
    pub first: Vec<T>,
}

impl<T> Default for Sampled<T> {
    fn default() -> Self {
        Sampled { total: 0, first: Vec::new() }
    }
}

impl<T> Sampled<T> {
    pub fn push(&mut self, event: T) {
        self.total += 1;
        if self.first.len() < SAMPLES_MAX {
            self.first.push(event);
        }
    }
}

/// Everything a run observed (see the module docs).
#[derive(Clone, Debug, Default)]
pub struct Observations {
    pub joins: Vec<JoinRecord>,
    pub crashes: Vec<CrashRecord>,
    pub leaves: Vec<LeaveRecord>,
    /// `Failed` events by what explains them.
    pub failed: BTreeMap<Cause, Sampled<FailedEvent>>,
    /// Failed members seen alive again by a member that had declared them failed.
    pub revivals: u64,
    /// Revivals at an incarnation not above the failed one: a death that was never refuted.
    pub stale_revivals: Sampled<Revival>,
}

impl Observations {
    /// How many `Failed` events `cause` explains.
    pub fn failed(&self, cause: Cause) -> u64 {
        self.failed.get(&cause).map_or(0, |s| s.total)
    }
}

/// Keeps [`Observations`] up to date as the driver reports what happens.
pub(super) struct Recorder {
    obs: Observations,
    open_joins: BTreeMap<NodeId, usize>,
    open_crashes: BTreeMap<NodeId, usize>,
    open_leaves: BTreeMap<NodeId, usize>,
    /// `(observer, subject)` → the incarnation the running observer declared the subject
    /// failed at, while it believes so.
    failed_at: BTreeMap<(NodeId, NodeId), u32>,
}

impl Recorder {
    pub(super) fn new() -> Recorder {
        Recorder {
            obs: Observations::default(),
            open_joins: BTreeMap::new(),
            open_crashes: BTreeMap::new(),
            open_leaves: BTreeMap::new(),
            failed_at: BTreeMap::new(),
        }
    }

    pub(super) fn observations(&self) -> &Observations {
        &self.obs
    }

    /// `node` started (`views` already counts it as running).
    pub(super) fn started(&mut self, node: NodeId, now_ms: u64, restart: bool, views: &Views) {
        if let Some(i) = self.open_crashes.remove(&node) {
            self.obs.crashes[i].restarted_ms = Some(now_ms);
        }
        self.open_joins.insert(node, self.obs.joins.len());
        self.obs.joins.push(JoinRecord { node, started_ms: now_ms, restart, converged_ms: None });
        self.settle_all(now_ms, views);
    }

    /// `node`'s process stopped (crash or leave): what it believed is gone.
    pub(super) fn stopped(&mut self, node: NodeId, now_ms: u64, views: &Views) {
        let beliefs: Vec<(NodeId, NodeId)> = self.failed_at.range((node, 0)..(node + 1, 0)).map(|(k, _)| *k).collect();
        for key in beliefs {
            self.failed_at.remove(&key);
        }
        self.settle_all(now_ms, views);
    }

    pub(super) fn crashed(&mut self, node: NodeId, now_ms: u64, views: &Views) {
        self.open_joins.remove(&node);
        self.open_crashes.insert(node, self.obs.crashes.len());
        self.obs.crashes.push(CrashRecord { node, crashed_ms: now_ms, detected_ms: None, restarted_ms: None });
        self.settle_all(now_ms, views);
    }

    /// `node` started to leave (it still runs until its leave has propagated).
    pub(super) fn leaving(&mut self, node: NodeId, now_ms: u64) {
        self.open_joins.remove(&node);
        self.open_leaves.insert(node, self.obs.leaves.len());
        self.obs.leaves.push(LeaveRecord { node, left_ms: now_ms, gone_ms: None });
    }

    /// `observer` saw `subject` join (or come back) at `incarnation`.
    pub(super) fn joined(&mut self, now_ms: u64, observer: NodeId, subject: NodeId, incarnation: u32) {
        let Some(failed_incarnation) = self.failed_at.remove(&(observer, subject)) else { return };
        self.obs.revivals += 1;
        if incarnation <= failed_incarnation {
            let revival =
                Revival { at_ms: now_ms, observer, subject, failed_incarnation, alive_incarnation: incarnation };
            self.obs.stale_revivals.push(revival);
        }
    }

    /// `event.observer` declared `event.subject` failed at `incarnation`.
    pub(super) fn failed(&mut self, event: FailedEvent, incarnation: u32) {
        self.failed_at.insert((event.observer, event.subject), incarnation);
        self.obs.failed.entry(event.cause).or_default().push(event);
    }

    /// `observer` left or reaped `subject`: a later join is not a revival.
    pub(super) fn forgot(&mut self, observer: NodeId, subject: NodeId) {
        self.failed_at.remove(&(observer, subject));
    }

    /// Closes the open records about `subject` whose condition now holds.
    pub(super) fn settle(&mut self, subject: NodeId, now_ms: u64, views: &Views) {
        let running = views.is_running(subject);
        let gone = !running && views.believed_alive(subject) <= stragglers_allowed(views.running_count());
        let everyone = |observers: usize| views.doubters(subject) <= stragglers_allowed(observers);
        if running && everyone(views.running_count() - 1) {
            if let Some(i) = self.open_joins.remove(&subject) {
                self.obs.joins[i].converged_ms = Some(now_ms);
            }
        }
        if gone {
            if let Some(i) = self.open_crashes.remove(&subject) {
                self.obs.crashes[i].detected_ms = Some(now_ms);
            }
            if let Some(i) = self.open_leaves.remove(&subject) {
                self.obs.leaves[i].gone_ms = Some(now_ms);
            }
        }
    }

    fn settle_all(&mut self, now_ms: u64, views: &Views) {
        let open: Vec<NodeId> =
            self.open_joins.keys().chain(self.open_crashes.keys()).chain(self.open_leaves.keys()).copied().collect();
        for subject in open {
            self.settle(subject, now_ms, views);
        }
    }
}
