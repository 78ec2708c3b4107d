//! Checkers of recorded histories, one property per file.
//!
//! Workloads running in the simulator record what their clients observed ([`history`]); after a
//! run, the checkers decide whether those observations are possible for a correct system. They
//! are pure functions of their input: no madsim, no clock, no randomness, no `HashMap` iteration
//! that reaches the output. The same history always yields the same verdict and message.
//!
//! Every checker is *sound* in the Jepsen sense: it reports a violation only when no correct
//! execution could have produced the observations. Where a client cannot know something (did a
//! timed-out write happen? when did the server expire a session?) the checker takes the most
//! permissive reading, and each file documents exactly which reading it takes.
//!
//! - [`linearizability`]: a per-key CAS register is linearizable (Herlihy & Wing; Wing & Gong's
//!   search with Lowe's just-in-time linearization, as in Knossos and Porcupine).
//! - [`lock_safety`]: mutual exclusion, LockIndex fencing, lock-delay (Jepsen's lock tests;
//!   Kleppmann's fencing tokens; Chubby's and Consul's lock-delay).
//! - [`monotonic`]: `X-Consul-Index` never goes backwards per client and query (monotonic reads,
//!   Terry et al.; Consul's blocking-query contract).
//! - [`durability`]: no acknowledged write lost (Jepsen's lost updates).
//! - [`raft_safety`]: Election Safety, State Machine Safety, Log Matching (Raft, Figure 3).
//! - [`liveness`]: a leader and completed writes soon after faults heal (TigerBeetle's VOPR
//!   liveness mode).
//! - [`dc_isolation`]: each datacenter's KV is its own store; no value crosses (Consul's
//!   federation model: datacenters share nothing but the WAN gossip pool).
//! - [`local_availability`]: a datacenter cut off from the others keeps serving its own clients
//!   (the CAP trade-off Consul makes across datacenters: each is its own CP system).
//! - [`wan_fail_fast`]: a request for an unreachable datacenter fails fast with "No path to
//!   datacenter", and such requests succeed again after the heal (Consul's `ErrNoDCPath`).
//!
//! Checkers that can only pass or fail return a `Vec<Violation>` (empty means the property
//! held); the linearizability search can also run out of budget, so it returns a [`Verdict`].

use std::fmt;

pub mod dc_isolation;
pub mod durability;
pub mod history;
pub mod linearizability;
pub mod liveness;
pub mod local_availability;
pub mod lock_safety;
pub mod monotonic;
pub mod raft_safety;
pub mod wan_fail_fast;

pub use durability::{FinalRead, WriteRecord};
pub use history::{ClientId, LockInput, LockOp, LockOutput, Op, OpId, Outcome, Recorder, RegisterInput};
pub use history::{DcAnswer, DcIndex, DcOp, DcRequest, FaultScope, FaultSpan};
pub use history::{IndexEvent, RegisterOp, RegisterOutput, SessionEnd, SessionEnds, SessionId, Value};
pub use liveness::{LivenessBounds, LivenessObservations, WriteAfterHeal};
pub use lock_safety::LockDelayWindow;
pub use raft_safety::{Applied, LeaderObserved};

/// How many violations one checker reports before summarising the rest as a count: a broken
/// run can violate a property thousands of times, and the first few say what went wrong.
pub const VIOLATIONS_REPORTED_MAX: usize = 16;

/// A property that the recorded history shows was broken.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The checker that found it (its module name, e.g. `"lock_safety"`).
    pub checker: &'static str,
    /// What was violated and the observations that prove it, readable without the source.
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {}", self.checker, self.message)
    }
}

/// The outcome of a check that can also run out of its search budget.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The property holds for the whole history.
    Ok,
    /// The property is violated; the message explains how.
    Violation(Violation),
    /// The search hit its limit before deciding. Not a violation: rerun with a larger limit, or
    /// record shorter or less concurrent histories.
    Unknown {
        /// The checker that gave up.
        checker: &'static str,
        /// Which limit was hit, and where.
        reason: String,
    },
}

impl Verdict {
    /// True only for [`Verdict::Ok`].
    pub fn is_ok(&self) -> bool {
        matches!(self, Verdict::Ok)
    }

    /// True only for [`Verdict::Violation`].
    pub fn is_violation(&self) -> bool {
        matches!(self, Verdict::Violation(_))
    }

    /// True only for [`Verdict::Unknown`].
    pub fn is_unknown(&self) -> bool {
        matches!(self, Verdict::Unknown { .. })
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Ok => write!(f, "ok"),
            Verdict::Violation(v) => write!(f, "{v}"),
            Verdict::Unknown { checker, reason } => write!(f, "[{checker}] unknown: {reason}"),
        }
    }
}

/// Collects one checker's violations, keeping the first [`VIOLATIONS_REPORTED_MAX`] and
/// counting the rest, so a badly broken run yields a short report.
pub(crate) struct Violations {
    checker: &'static str,
    list: Vec<Violation>,
    omitted: usize,
}

impl Violations {
    pub(crate) fn new(checker: &'static str) -> Violations {
        Violations { checker, list: Vec::new(), omitted: 0 }
    }

    pub(crate) fn push(&mut self, message: String) {
        if self.list.len() < VIOLATIONS_REPORTED_MAX {
            self.list.push(Violation { checker: self.checker, message });
        } else {
            self.omitted += 1;
        }
    }

    pub(crate) fn finish(mut self) -> Vec<Violation> {
        if self.omitted > 0 {
            let message = format!("... and {} more violations not shown", self.omitted);
            self.list.push(Violation { checker: self.checker, message });
        }
        self.list
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn violations_are_capped_and_the_rest_counted() {
        let mut violations = Violations::new("test");
        for i in 0..VIOLATIONS_REPORTED_MAX + 3 {
            violations.push(format!("violation {i}"));
        }
        let list = violations.finish();
        assert_eq!(list.len(), VIOLATIONS_REPORTED_MAX + 1);
        assert_eq!(list[0].message, "violation 0");
        assert_eq!(list.last().unwrap().message, "... and 3 more violations not shown");
        assert_eq!(list[0].to_string(), "[test] violation 0");
    }
}
