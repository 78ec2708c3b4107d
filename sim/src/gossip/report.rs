//! What a run measured, and the same figures summarised over a batch of seeds.

use std::fmt;

use super::experiment::Experiment;
use super::history::Cause;
use super::load::LoadFigures;
use super::record::{JoinRecord, Observations};
use super::world::World;

/// `Failed` events about members that were running and reachable from the observer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FalsePositives {
    /// About healthy members.
    pub healthy: u64,
    /// About slowed (CPU-starved) members.
    pub slowed: u64,
}

impl FalsePositives {
    pub fn total(&self) -> u64 {
        self.healthy + self.slowed
    }
}

/// One run's figures, checker verdicts and trace hash. Durations are virtual milliseconds.
#[derive(Clone, Debug)]
pub struct Report {
    pub seed: u64,
    /// The pool that formed first.
    pub members: usize,
    pub lifeguard: bool,
    pub loss: f64,
    pub slowed: usize,
    /// From the last start of the forming pool until every member saw every other alive.
    pub formed_ms: Option<u64>,
    /// Each late join: from its start until every running member saw it alive.
    pub joins_ms: Vec<Option<u64>>,
    /// Each crash: until no running member believed it alive.
    pub detections_ms: Vec<Option<u64>>,
    /// Each restart: until every running member saw it alive again.
    pub rejoins_ms: Vec<Option<u64>>,
    /// Each leave: until no running member believed it alive.
    pub leaves_ms: Vec<Option<u64>>,
    /// Each partition: from its end until every member saw every other alive again.
    pub heals_ms: Vec<Option<u64>>,
    /// Per-member message load over the steady window.
    pub load: LoadFigures,
    pub false_positives: FalsePositives,
    /// Suspicions the members' state machines started over the run (see
    /// [`World::suspicions_started`](super::World::suspicions_started)).
    pub suspicions: u64,
    /// When the slowed members were slowed.
    pub slowed_from_ms: u64,
    pub slowed_until_ms: u64,
    pub virtual_ms: u64,
    pub trace_hash: u64,
    /// Checker failures, as `checker: message`.
    pub violations: Vec<String>,
    /// Findings reported rather than asserted.
    pub notes: Vec<String>,
    /// The readable trace, if the experiment kept one.
    pub trace: Vec<String>,
}

impl Report {
    pub(super) fn new(seed: u64, exp: &Experiment) -> Report {
        Report {
            seed,
            members: exp.setup.members,
            lifeguard: exp.setup.gossip.lifeguard,
            loss: exp.setup.net.loss,
            slowed: exp.slow,
            formed_ms: None,
            joins_ms: Vec::new(),
            detections_ms: Vec::new(),
            rejoins_ms: Vec::new(),
            leaves_ms: Vec::new(),
            heals_ms: Vec::new(),
            load: LoadFigures::default(),
            false_positives: FalsePositives::default(),
            suspicions: 0,
            slowed_from_ms: 0,
            slowed_until_ms: 0,
            virtual_ms: 0,
            trace_hash: 0,
            violations: Vec::new(),
            notes: Vec::new(),
            trace: Vec::new(),
        }
    }

    pub(super) fn check(&mut self, checker: &str, result: Result<(), String>) {
        if let Err(e) = result {
            self.violations.push(format!("{checker}: {e}"));
        }
    }

    /// Takes the figures out of what the run observed; `late` are the late joins.
    pub(super) fn observe(&mut self, obs: &Observations, late: &[&JoinRecord], world: &World) {
        let took = |from: u64, to: Option<u64>| to.map(|t| t - from);
        self.joins_ms = late.iter().map(|j| took(j.started_ms, j.converged_ms)).collect();
        self.rejoins_ms = obs.joins.iter().filter(|j| j.restart).map(|j| took(j.started_ms, j.converged_ms)).collect();
        self.detections_ms = obs.crashes.iter().map(|c| took(c.crashed_ms, c.detected_ms)).collect();
        self.leaves_ms = obs.leaves.iter().map(|l| took(l.left_ms, l.gone_ms)).collect();
        self.false_positives =
            FalsePositives { healthy: obs.failed(Cause::Healthy), slowed: obs.failed(Cause::Slowed) };
        self.suspicions = world.suspicions_started();
        self.virtual_ms = world.now_ms();
        self.trace_hash = world.trace_hash();
    }

    pub fn is_ok(&self) -> bool {
        self.violations.is_empty()
    }

    /// Member-seconds spent slowed (false positives per slowed member-minute compare runs of
    /// different lengths).
    pub fn slowed_member_s(&self) -> f64 {
        self.slowed as f64 * self.slowed_until_ms.saturating_sub(self.slowed_from_ms) as f64 / 1_000.0
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |v: &[Option<u64>]| {
            v.iter().map(|d| d.map_or("never".to_string(), |ms| format!("{:.1}s", ms as f64 / 1e3))).collect::<Vec<_>>()
        };
        write!(
            f,
            "seed {} trace {:016x}: formed {}, joins [{}], detections [{}], rejoins [{}], heals [{}], \
             false positives {} healthy + {} slowed, {} suspicions, {:.1} kbit/s {:.1} pkt/s per member, \
             {:.0}s virtual: {}",
            self.seed,
            self.trace_hash,
            list(&[self.formed_ms]).join(""),
            list(&self.joins_ms).join(" "),
            list(&self.detections_ms).join(" "),
            list(&self.rejoins_ms).join(" "),
            list(&self.heals_ms).join(" "),
            self.false_positives.healthy,
            self.false_positives.slowed,
            self.suspicions,
            self.load.kbit_per_s_mean,
            self.load.datagrams_per_s_mean,
            self.virtual_ms as f64 / 1e3,
            if self.is_ok() { "ok".to_string() } else { format!("{} violation(s)", self.violations.len()) }
        )
    }
}

/// A distribution of durations (nearest-rank percentiles), with the measurements that never
/// completed counted apart.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Distribution {
    sorted_ms: Vec<u64>,
    pub never: usize,
}

impl Distribution {
    pub fn of<'a>(values: impl IntoIterator<Item = &'a Option<u64>>) -> Distribution {
        let mut d = Distribution::default();
        for v in values {
            match v {
                Some(ms) => d.sorted_ms.push(*ms),
                None => d.never += 1,
            }
        }
        d.sorted_ms.sort_unstable();
        d
    }

    pub fn count(&self) -> usize {
        self.sorted_ms.len()
    }

    /// The `p`th percentile (0 < p ≤ 100), nearest rank.
    pub fn percentile_ms(&self, p: f64) -> Option<u64> {
        let n = self.sorted_ms.len();
        if n == 0 {
            return None;
        }
        let rank = ((p / 100.0) * n as f64).ceil().clamp(1.0, n as f64) as usize;
        Some(self.sorted_ms[rank - 1])
    }
}

impl fmt::Display for Distribution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = |p| self.percentile_ms(p).map_or("-".to_string(), |ms| format!("{:.2}s", ms as f64 / 1e3));
        write!(f, "p50 {} p99 {} max {} (n={}", s(50.0), s(99.0), s(100.0), self.count())?;
        if self.never > 0 {
            write!(f, ", {} never", self.never)?;
        }
        write!(f, ")")
    }
}

/// Figures over a batch of runs of one experiment.
#[derive(Clone, Debug)]
pub struct Summary {
    pub runs: usize,
    pub failed_runs: usize,
    pub formed: Distribution,
    pub joins: Distribution,
    pub detections: Distribution,
    pub rejoins: Distribution,
    pub heals: Distribution,
    pub false_positives: FalsePositives,
    pub suspicions: u64,
    pub slowed_member_s: f64,
    pub kbit_per_s_mean: f64,
    pub kbit_per_s_max: f64,
    pub datagrams_per_s_mean: f64,
    pub datagrams_per_s_max: f64,
}

impl Summary {
    pub fn of(reports: &[Report]) -> Summary {
        let runs = reports.len();
        let mean = |f: fn(&Report) -> f64| reports.iter().map(f).sum::<f64>() / runs.max(1) as f64;
        let max = |f: fn(&Report) -> f64| reports.iter().map(f).fold(0.0, f64::max);
        Summary {
            runs,
            failed_runs: reports.iter().filter(|r| !r.is_ok()).count(),
            formed: Distribution::of(reports.iter().map(|r| &r.formed_ms)),
            joins: Distribution::of(reports.iter().flat_map(|r| &r.joins_ms)),
            detections: Distribution::of(reports.iter().flat_map(|r| &r.detections_ms)),
            rejoins: Distribution::of(reports.iter().flat_map(|r| &r.rejoins_ms)),
            heals: Distribution::of(reports.iter().flat_map(|r| &r.heals_ms)),
            false_positives: FalsePositives {
                healthy: reports.iter().map(|r| r.false_positives.healthy).sum(),
                slowed: reports.iter().map(|r| r.false_positives.slowed).sum(),
            },
            suspicions: reports.iter().map(|r| r.suspicions).sum(),
            slowed_member_s: reports.iter().map(Report::slowed_member_s).sum(),
            kbit_per_s_mean: mean(|r| r.load.kbit_per_s_mean),
            kbit_per_s_max: max(|r| r.load.kbit_per_s_max),
            datagrams_per_s_mean: mean(|r| r.load.datagrams_per_s_mean),
            datagrams_per_s_max: max(|r| r.load.datagrams_per_s_max),
        }
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "  runs:                {} ({} with violations)", self.runs, self.failed_runs)?;
        writeln!(f, "  pool formed:         {}", self.formed)?;
        writeln!(f, "  join convergence:    {}", self.joins)?;
        writeln!(f, "  failure detection:   {}", self.detections)?;
        writeln!(f, "  rejoin (restart):    {}", self.rejoins)?;
        writeln!(f, "  partition heal:      {}", self.heals)?;
        writeln!(
            f,
            "  false positives:     {} about healthy members, {} about slowed members ({:.0} slowed member-seconds)",
            self.false_positives.healthy, self.false_positives.slowed, self.slowed_member_s
        )?;
        writeln!(f, "  suspicions started:  {}", self.suspicions)?;
        write!(
            f,
            "  load per member:     {:.1} kbit/s mean, {:.1} max; {:.1} datagrams/s mean, {:.1} max",
            self.kbit_per_s_mean, self.kbit_per_s_max, self.datagrams_per_s_mean, self.datagrams_per_s_max
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank_and_misses_are_counted_apart() {
        let values: Vec<Option<u64>> = (1..=100).map(Some).chain([None]).collect();
        let d = Distribution::of(&values);
        assert_eq!((d.count(), d.never), (100, 1));
        assert_eq!(d.percentile_ms(50.0), Some(50));
        assert_eq!(d.percentile_ms(99.0), Some(99));
        assert_eq!(d.percentile_ms(100.0), Some(100));
        assert_eq!(Distribution::of(&[]).percentile_ms(50.0), None);
    }
}
