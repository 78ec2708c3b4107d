//! The gossip checkers, after SWIM's two properties of a failure detector (Das, Gupta &
//! Motivala, 2002) and the convergence that dissemination must reach:
//!
//! - [`completeness`]: every crashed member is eventually failed at every running member
//!   (SWIM's strong completeness), here within a time bound;
//! - [`accuracy`]: no running, reachable, healthy member is declared failed (SWIM's accuracy,
//!   which SWIM only makes probable; Lifeguard's point is to make it so in practice);
//! - [`join_convergence`], [`rejoin`], [`graceful_leave`], [`converged_within`]: news of a
//!   join, a restart, a leave, and the whole membership after faults heal, reaches everyone
//!   within a bound.
//!
//! Each returns `Err` with a message that names the members and times involved. The bounds
//! ([`Bounds`]) derive from the gossip configuration, so a test at any size uses the same ones.

use legate_core::gossip::Config;

use super::history::Cause;
use super::record::{CrashRecord, JoinRecord, LeaveRecord, Observations};
use super::setup::node_name;

/// Time bounds for one pool size and configuration, in milliseconds.
///
/// Gossip spreads news probabilistically: each member repeats a piece of news
/// `retransmit_limit` times to random members, so at small sizes a member occasionally hears
/// nothing, and the periodic push-pull (anti-entropy) repairs it. The bounds therefore come in
/// two tiers: what gossip alone achieves on almost every run ([`Bounds::spread_ms`],
/// [`Bounds::detect_by_gossip_ms`]), which tests hold the bulk of a distribution to, and what
/// anti-entropy guarantees ([`Bounds::join_ms`], [`Bounds::detect_ms`]), which every single
/// measurement must meet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds {
    /// News reaches (nearly) everyone by gossip: two spans of one member repeating it
    /// (`retransmit_limit · gossip_interval`), one probe interval, and two slowed-member
    /// delays (a slowed relay, a slowed observer) when members are slowed.
    pub spread_ms: u64,
    /// Two push-pull intervals: by then a member that gossip missed has exchanged full state.
    pub repair_ms: u64,
    /// The longest a suspicion runs: Lifeguard's ceiling, or SWIM's fixed timeout without it.
    pub suspicion_ms: u64,
    /// Until some member probes a crashed one: a probe interval fully stretched by local
    /// health awareness.
    pub first_probe_ms: u64,
    /// Two reconnect intervals: by then the members of two halves that failed each other have
    /// tried a push-pull across (Serf's reconnect, at a chance of `failed / alive` each time).
    pub reconnect_ms: u64,
    /// A `Failed` event is still blamed on a fault that ended this long before: Lifeguard's
    /// longest suspicion (with or without Lifeguard, for a fair comparison) plus a fully
    /// stretched probe interval.
    pub excuse_ms: u64,
}

impl Bounds {
    /// `slow_delay_max_ms` is the longest delay of a slowed member (0 when none is slowed).
    pub fn new(config: &Config, members: usize, slow_delay_max_ms: u64) -> Bounds {
        let suspicion_min_ms = config.suspicion_min_ms(members);
        let suspicion_max_ms = suspicion_min_ms * u64::from(config.suspicion_max_timeout_mult);
        let first_probe_ms = config.probe_interval_ms * u64::from(config.awareness_max_multiplier);
        let news_ms = u64::from(config.retransmit_limit(members)) * config.gossip_interval_ms;
        Bounds {
            spread_ms: 2 * news_ms + config.probe_interval_ms + 2 * slow_delay_max_ms,
            repair_ms: 2 * config.push_pull_interval_for(members),
            suspicion_ms: if config.lifeguard { suspicion_max_ms } else { suspicion_min_ms },
            first_probe_ms,
            reconnect_ms: 2 * config.reconnect_interval_ms,
            excuse_ms: suspicion_max_ms + first_probe_ms,
        }
    }

    /// Every join (or rejoin) is alive everywhere within this: gossip, then repair.
    pub fn join_ms(&self) -> u64 {
        self.spread_ms + self.repair_ms
    }

    /// A crash is detected everywhere by gossip: a first probe, a suspicion, its spread.
    pub fn detect_by_gossip_ms(&self) -> u64 {
        self.first_probe_ms + self.suspicion_ms + self.spread_ms
    }

    /// Every crash is detected everywhere within this: a member that missed the news learns
    /// of the death by push-pull, as a suspicion of its own that must run out.
    pub fn detect_ms(&self) -> u64 {
        self.detect_by_gossip_ms() + self.repair_ms + self.suspicion_ms
    }

    /// The whole pool agrees (after forming, after the faults end).
    pub fn converge_ms(&self) -> u64 {
        self.join_ms()
    }

    /// The whole pool agrees again after a partition that outlasted every suspicion heals:
    /// a reconnect across, then the refutations spread as a join's news does.
    pub fn heal_ms(&self) -> u64 {
        self.reconnect_ms + self.join_ms()
    }
}

/// Every crashed member that was not restarted first was failed everywhere within
/// `bound_ms` of its crash.
pub fn completeness<'a>(crashes: impl IntoIterator<Item = &'a CrashRecord>, bound_ms: u64) -> Result<(), String> {
    for c in crashes {
        let name = node_name(c.node);
        let took = match (c.detected_ms, c.restarted_ms) {
            (Some(detected), _) => detected - c.crashed_ms,
            // Restarted before the bound ran out: there was nothing left to detect.
            (None, Some(restarted)) if restarted - c.crashed_ms <= bound_ms => continue,
            (None, _) => {
                return Err(format!(
                    "{name} crashed at {} ms and some running member still believed it alive {bound_ms} ms later",
                    c.crashed_ms
                ))
            }
        };
        if took > bound_ms {
            return Err(format!(
                "{name} crashed at {} ms and was failed everywhere only {took} ms later (bound {bound_ms} ms)",
                c.crashed_ms
            ));
        }
    }
    Ok(())
}

/// No healthy member (running, reachable from the observer, not slowed, no fault of its own
/// within the grace period) was declared failed.
pub fn accuracy(obs: &Observations) -> Result<(), String> {
    no_failures(obs, Cause::Healthy, "healthy")
}

/// No slowed member was declared failed: the false positives Lifeguard reduces. Runs with
/// slowed members report this rather than assert it (see the module docs of `gossip`).
pub fn slowed_accuracy(obs: &Observations) -> Result<(), String> {
    no_failures(obs, Cause::Slowed, "slowed but running")
}

fn no_failures(obs: &Observations, cause: Cause, what: &str) -> Result<(), String> {
    let count = obs.failed(cause);
    if count == 0 {
        return Ok(());
    }
    let samples: Vec<String> = obs.failed[&cause]
        .first
        .iter()
        .map(|f| format!("{} failed {} at {} ms", node_name(f.observer), node_name(f.subject), f.at_ms))
        .collect();
    Err(format!("{count} Failed events about {what} members, e.g. {}", samples.join("; ")))
}

/// Every join in `joins` was alive everywhere within `bound_ms` of its start.
pub fn join_convergence<'a>(joins: impl IntoIterator<Item = &'a JoinRecord>, bound_ms: u64) -> Result<(), String> {
    for j in joins {
        within(
            &format!("{} started at {} ms", node_name(j.node), j.started_ms),
            j.started_ms,
            j.converged_ms,
            bound_ms,
        )?;
    }
    Ok(())
}

/// Every restart in `joins` was alive everywhere within `bound_ms`, and every member that
/// had declared a member failed saw it alive again only at a higher incarnation (the failed
/// member refuted its death; SWIM's incarnation rule).
pub fn rejoin<'a>(
    joins: impl IntoIterator<Item = &'a JoinRecord>,
    obs: &Observations,
    bound_ms: u64,
) -> Result<(), String> {
    for j in joins.into_iter().filter(|j| j.restart) {
        within(
            &format!("{} restarted at {} ms", node_name(j.node), j.started_ms),
            j.started_ms,
            j.converged_ms,
            bound_ms,
        )?;
    }
    if let Some(r) = obs.stale_revivals.first.first() {
        return Err(format!(
            "{} revivals without refutation, e.g. {} saw {} alive at incarnation {} at {} ms after declaring it \
             failed at incarnation {}",
            obs.stale_revivals.total,
            node_name(r.observer),
            node_name(r.subject),
            r.alive_incarnation,
            r.at_ms,
            r.failed_incarnation
        ));
    }
    Ok(())
}

/// Every member that left was believed alive by nobody within `bound_ms`, and none was
/// declared failed: a leave is `Left` everywhere.
pub fn graceful_leave<'a>(
    leaves: impl IntoIterator<Item = &'a LeaveRecord>,
    obs: &Observations,
    bound_ms: u64,
) -> Result<(), String> {
    for l in leaves {
        within(&format!("{} left at {} ms", node_name(l.node), l.left_ms), l.left_ms, l.gone_ms, bound_ms)?;
    }
    no_failures(obs, Cause::Left, "gracefully left")
}

/// The pool converged (`took_ms`) within `bound_ms` after `what`.
pub fn converged_within(what: &str, took_ms: Option<u64>, bound_ms: u64) -> Result<(), String> {
    match took_ms {
        Some(took) if took <= bound_ms => Ok(()),
        Some(took) => Err(format!("membership converged {took} ms after {what} (bound {bound_ms} ms)")),
        None => Err(format!("membership did not converge within {bound_ms} ms after {what}")),
    }
}

fn within(what: &str, from_ms: u64, done_ms: Option<u64>, bound_ms: u64) -> Result<(), String> {
    match done_ms.map(|d| d - from_ms) {
        Some(took) if took <= bound_ms => Ok(()),
        Some(took) => Err(format!("{what}: reached everyone after {took} ms (bound {bound_ms} ms)")),
        None => Err(format!("{what}: not reached everyone within the run")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gossip::record::{FailedEvent, Revival};

    fn crash(detected_ms: Option<u64>, restarted_ms: Option<u64>) -> CrashRecord {
        CrashRecord { node: 3, crashed_ms: 1_000, detected_ms, restarted_ms }
    }

    #[test]
    fn completeness_fails_on_a_late_or_missing_detection() {
        assert!(completeness(&[crash(Some(5_000), None)], 4_000).is_ok());
        let late = completeness(&[crash(Some(6_000), None)], 4_000).unwrap_err();
        assert!(late.contains("node-0003") && late.contains("5000 ms later"), "{late}");
        assert!(completeness(&[crash(None, None)], 4_000).unwrap_err().contains("still believed it alive"));
        assert!(completeness(&[crash(None, Some(9_000))], 4_000).is_err(), "restarted only after the bound");
        assert!(completeness(&[crash(None, Some(2_000))], 4_000).is_ok(), "restarted before it could be detected");
    }

    #[test]
    fn accuracy_fails_on_a_healthy_member_declared_failed() {
        let mut obs = Observations::default();
        let failed = |cause| FailedEvent { at_ms: 7, observer: 1, subject: 2, cause };
        obs.failed.entry(Cause::Crashed).or_default().push(failed(Cause::Crashed));
        obs.failed.entry(Cause::Slowed).or_default().push(failed(Cause::Slowed));
        assert!(accuracy(&obs).is_ok(), "true positives and slowed members do not count");
        assert!(slowed_accuracy(&obs).is_err());
        obs.failed.entry(Cause::Healthy).or_default().push(failed(Cause::Healthy));
        let err = accuracy(&obs).unwrap_err();
        assert!(err.contains("1 Failed events") && err.contains("node-0001 failed node-0002 at 7 ms"), "{err}");
    }

    #[test]
    fn a_rejoin_must_be_timely_and_come_back_at_a_higher_incarnation() {
        let j = JoinRecord { node: 1, started_ms: 0, restart: true, converged_ms: Some(100) };
        let mut obs = Observations::default();
        assert!(rejoin([&j], &obs, 1_000).is_ok());
        assert!(rejoin([&j], &obs, 50).is_err(), "too slow");
        let stale = Revival { at_ms: 90, observer: 2, subject: 1, failed_incarnation: 2, alive_incarnation: 2 };
        obs.stale_revivals.push(stale);
        let err = rejoin([&j], &obs, 1_000).unwrap_err();
        assert!(err.contains("alive at incarnation 2 at 90 ms after declaring it failed at incarnation 2"), "{err}");
    }

    #[test]
    fn lifeguard_stretches_the_detection_bound_by_its_suspicion_ceiling() {
        let on = Bounds::new(&Config::lan(), 100, 0);
        let off = Bounds::new(&Config { lifeguard: false, ..Config::lan() }, 100, 0);
        let stretch = 5 * Config::lan().suspicion_min_ms(100);
        assert_eq!(on.detect_by_gossip_ms() - off.detect_by_gossip_ms(), stretch);
        assert_eq!(on.detect_ms() - off.detect_ms(), 2 * stretch, "a repaired suspicion runs its full course");
        assert_eq!(on.excuse_ms, off.excuse_ms, "the same grace either way, for a fair comparison");
        assert_eq!(on.repair_ms, 2 * 90_000, "push-pull every 90 s at 100 members");
    }
}
