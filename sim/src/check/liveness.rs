//! Liveness once faults heal: a leader is elected and writes complete, within bounds.
//!
//! Property: **eventual progress after stabilisation** — Raft's availability claim (a majority of
//! servers that can talk to each other and to clients elects a leader and commits, Raft §5.2 and
//! §5.6, under its timing requirement `broadcastTime ≪ electionTimeout ≪ MTBF`), checked the way
//! TigerBeetle's VOPR checks liveness: a safety phase with faults, then a liveness phase in which
//! every fault is healed and the cluster must make progress within a bound. Liveness can't be
//! violated in finite time in general; with a bound it becomes a checkable (bounded-liveness)
//! safety property, and a scenario picks bounds generous enough for its timers.
//!
//! Rules, for a phase starting at `healed_at` (the moment the last fault was healed) and observed
//! until `observed_until`:
//!
//! - A leader is observed by `healed_at + leader_after_heal_max`.
//! - Every write invoked at or after `healed_at` is acknowledged within `write_latency_max` of its
//!   invocation ("acknowledged" = answered, whatever the answer: a CAS answering `false` made
//!   progress). A write still unanswered is judged only if `observed_until` leaves it the whole
//!   bound; later ones are skipped.
//! - The phase must be long enough to judge something: a run that ends before the leader bound,
//!   or with no judgeable write, is reported, so a misconfigured scenario cannot pass vacuously.

use std::time::Duration;

use super::history::ClientId;
use super::{Violation, Violations};

const CHECKER: &str = "liveness";

/// How quickly the healed cluster must make progress.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LivenessBounds {
    /// From the heal to the first leader observed.
    pub leader_after_heal_max: Duration,
    /// From a write's invocation to its acknowledgement.
    pub write_latency_max: Duration,
}

/// A write invoked after the heal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteAfterHeal {
    pub client: ClientId,
    pub key: String,
    pub invoke: Duration,
    /// When it was answered; `None` if it never was (timed out, or still in flight at the end).
    pub acked_at: Option<Duration>,
}

/// What the simulator saw in the liveness phase.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LivenessObservations {
    /// When the last fault was healed.
    pub healed_at: Duration,
    /// The first time after `healed_at` that some node was seen as leader.
    pub first_leader_at: Option<Duration>,
    /// Writes invoked at or after `healed_at`.
    pub writes: Vec<WriteAfterHeal>,
    /// The end of the observation (the end of the run).
    pub observed_until: Duration,
}

/// Checks the liveness phase against the bounds.
pub fn check(observations: &LivenessObservations, bounds: &LivenessBounds) -> Vec<Violation> {
    let mut violations = Violations::new(CHECKER);
    let healed_at = observations.healed_at;
    let observed_until = observations.observed_until;
    assert!(healed_at <= observed_until, "the observation ends before the heal");

    let leader_deadline = healed_at.saturating_add(bounds.leader_after_heal_max);
    match observations.first_leader_at {
        Some(at) => {
            assert!(at >= healed_at, "the first leader after the heal was observed before it");
            if at > leader_deadline {
                violations.push(format!(
                    "no leader until {at:?}, {:?} after the heal at {healed_at:?} (bound {:?})",
                    at - healed_at,
                    bounds.leader_after_heal_max
                ));
            }
        }
        None if observed_until >= leader_deadline => violations.push(format!(
            "no leader observed between the heal at {healed_at:?} and the end at {observed_until:?} (bound {:?})",
            bounds.leader_after_heal_max
        )),
        None => violations.push(format!(
            "the run ended at {observed_until:?}, before the leader bound ran out at {leader_deadline:?}: \
             liveness cannot be judged; lengthen the liveness phase"
        )),
    }

    let mut judged = 0usize;
    for (i, write) in observations.writes.iter().enumerate() {
        assert!(write.invoke >= healed_at, "write #{i} was invoked before the heal: {write:?}");
        let deadline = write.invoke.saturating_add(bounds.write_latency_max);
        match write.acked_at {
            Some(at) => {
                assert!(at >= write.invoke, "write #{i} was acknowledged before its invocation: {write:?}");
                judged += 1;
                if at > deadline {
                    violations.push(format!(
                        "write #{i} by client {} to {:?} invoked at {:?} took {:?} (bound {:?})",
                        write.client,
                        write.key,
                        write.invoke,
                        at - write.invoke,
                        bounds.write_latency_max
                    ));
                }
            }
            None if observed_until >= deadline => {
                judged += 1;
                violations.push(format!(
                    "write #{i} by client {} to {:?} invoked at {:?} was never acknowledged (bound {:?}, observed \
                     until {observed_until:?})",
                    write.client, write.key, write.invoke, bounds.write_latency_max
                ));
            }
            None => {}
        }
    }
    if judged == 0 {
        violations.push(format!(
            "no write after the heal at {healed_at:?} could be judged ({} issued, observed until \
             {observed_until:?}): liveness of writes is unchecked",
            observations.writes.len()
        ));
    }
    violations.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn bounds() -> LivenessBounds {
        LivenessBounds { leader_after_heal_max: t(5_000), write_latency_max: t(2_000) }
    }

    fn write(invoke: u64, acked_at: Option<u64>) -> WriteAfterHeal {
        WriteAfterHeal { client: 1, key: "k".into(), invoke: t(invoke), acked_at: acked_at.map(t) }
    }

    fn phase(first_leader_at: Option<u64>, writes: Vec<WriteAfterHeal>) -> LivenessObservations {
        LivenessObservations {
            healed_at: t(10_000),
            first_leader_at: first_leader_at.map(t),
            writes,
            observed_until: t(30_000),
        }
    }

    #[test]
    fn a_prompt_leader_and_prompt_writes_pass() {
        let observations = phase(Some(12_000), vec![write(10_000, Some(11_900)), write(12_000, Some(12_050))]);
        assert_eq!(check(&observations, &bounds()), Vec::new());
    }

    #[test]
    fn a_slow_or_missing_leader_is_reported() {
        let slow = check(&phase(Some(16_000), vec![write(16_000, Some(16_100))]), &bounds());
        assert_eq!(slow.len(), 1);
        assert_eq!(slow[0].message, "no leader until 16s, 6s after the heal at 10s (bound 5s)");
        let missing = check(&phase(None, vec![write(10_000, None)]), &bounds());
        assert_eq!(missing.len(), 2, "{missing:?}");
        assert!(missing[0].message.starts_with("no leader observed"), "{missing:?}");
        assert!(missing[1].message.contains("was never acknowledged"), "{missing:?}");
    }

    #[test]
    fn slow_writes_are_reported_and_late_unanswered_ones_skipped() {
        let observations = phase(
            Some(11_000),
            vec![
                write(11_000, Some(13_500)),
                // Invoked too close to the end to judge.
                write(29_000, None),
            ],
        );
        let violations = check(&observations, &bounds());
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert_eq!(violations[0].message, "write #0 by client 1 to \"k\" invoked at 11s took 2.5s (bound 2s)");
    }

    #[test]
    fn a_phase_too_short_to_judge_is_reported() {
        let mut observations = phase(None, vec![]);
        observations.observed_until = t(11_000);
        let violations = check(&observations, &bounds());
        assert_eq!(violations.len(), 2, "{violations:?}");
        assert!(violations[0].message.contains("liveness cannot be judged"), "{violations:?}");
        assert!(violations[1].message.contains("liveness of writes is unchecked"), "{violations:?}");
    }
}
