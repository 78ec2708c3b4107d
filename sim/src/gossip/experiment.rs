//! The standard gossip run, in phases (TigerBeetle's VOPR shape: faults, then a liveness
//! phase with every fault healed), each measured and checked:
//!
//! 1. **form**: the pool's members start at random times, each joining 1–3 running members
//!    ([`World::form`]); run until every member sees every other alive;
//! 2. **steady**: once no member has news left to send, `slow` random members are slowed and
//!    message load is measured over a window of `steady_ms`;
//! 3. **joins**: `joins` new members start one after another, each measured until it is alive
//!    everywhere (the figure comparable to Serf's convergence simulator);
//! 4. **crashes**: `crashes` random healthy members crash one probe interval apart, measured
//!    until each is failed everywhere; with `restart`, each then restarts and must come back
//!    alive everywhere at a higher incarnation;
//! 5. **leaves**: `leaves` random healthy members leave gracefully: left everywhere, never
//!    failed;
//! 6. **partition**: the running members split into two random halves long enough for each
//!    half to declare the other failed and then stop gossiping to it (detection by gossip plus
//!    `gossip_to_dead_ms`), then heal; measured until the membership has converged again;
//! 7. **liveness**: the slowed members recover; the membership must converge.
//!
//! Every choice (who is slowed, who crashes or leaves, the halves) is drawn from the run's
//! seed, on a random stream separate from the world's.

use rand::seq::index::sample;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::check::{self, Bounds};
use super::record::{JoinRecord, Observations};
use super::report::Report;
use super::setup::{NodeId, Setup};
use super::world::{Action, Status, World, LEAVE_PROPAGATE_MAX_MS};

/// The ChaCha stream the experiment's own choices come from (the world uses stream 0).
const EXPERIMENT_STREAM: u64 = 1;
/// Members of the forming pool start one per this on average: about the rate at which every
/// member can relay the news of each join (`retransmit_limit` transmissions of a ~250-byte
/// alive message, five to a datagram, three datagrams per 200 ms gossip round). Faster, and
/// every member's news queue grows with the pool — realistic, but each datagram then walks
/// the whole queue, which makes forming a 1,000-member pool cost minutes of CPU.
pub const FORM_SPREAD_PER_MEMBER_MS: u64 = 250;

/// What one run does after its pool forms (see the module docs).
#[derive(Clone, Debug)]
pub struct Experiment {
    /// The pool that forms first: `setup.members` members. The world holds `joins` more.
    pub setup: Setup,
    pub joins: usize,
    pub crashes: usize,
    /// Crashed members restart once detected (a rejoin).
    pub restart: bool,
    pub leaves: usize,
    /// Members slowed from the steady phase until the liveness phase.
    pub slow: usize,
    pub partition: bool,
    /// The quiet window over which message load is measured.
    pub steady_ms: u64,
    /// Keep a readable trace (every action and membership event) in the report.
    pub trace: bool,
}

impl Experiment {
    /// A pool of `members` on Consul's LAN settings, with every phase on and nothing slowed.
    pub fn lan(members: usize) -> Experiment {
        Experiment {
            setup: Setup::lan(members),
            joins: 3,
            crashes: 2,
            restart: true,
            leaves: 1,
            slow: 0,
            partition: true,
            steady_ms: 30_000,
            trace: false,
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        self.setup.validate()?;
        let pool = self.setup.members;
        let taken = self.crashes + self.leaves + self.slow;
        if taken >= pool {
            return Err(format!(
                "crashes + leaves + slow ({taken}) must leave at least one healthy member of the {pool}"
            ));
        }
        if self.partition && pool < 2 {
            return Err("a partition needs at least 2 members".into());
        }
        Ok(())
    }

    /// The bounds the checkers hold this run to.
    pub fn bounds(&self) -> Bounds {
        let slow_delay_max_ms = if self.slow > 0 { self.setup.slow.max_ms() } else { 0 };
        Bounds::new(&self.setup.gossip, self.setup.members + self.joins, slow_delay_max_ms)
    }

    /// Runs the phases for `seed`, checks them, and reports.
    pub fn run(&self, seed: u64) -> Result<Report, String> {
        self.validate()?;
        let world_setup = Setup { members: self.setup.members + self.joins, ..self.setup.clone() };
        let mut run = Run {
            world: World::new(seed, world_setup)?,
            rng: experiment_rng(seed),
            bounds: self.bounds(),
            report: Report::new(seed, self),
        };
        if self.trace {
            run.world.keep_log();
        }
        run.form(self.setup.members);
        let slowed = run.steady(self.slow, self.steady_ms);
        let joins_from = run.world.observations().joins.len();
        run.joins(self.setup.members, self.joins);
        let healthy = |w: &World, n: NodeId| w.status(n) == Status::Running && !slowed.contains(&n);
        run.crashes(self.crashes, self.restart, healthy);
        run.leaves(self.leaves, healthy);
        if self.partition {
            run.partition();
        }
        run.liveness(&slowed);
        Ok(run.finish(joins_from))
    }
}

fn experiment_rng(seed: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(EXPERIMENT_STREAM);
    rng
}

/// One run in progress.
struct Run {
    world: World,
    rng: ChaCha8Rng,
    bounds: Bounds,
    report: Report,
}

impl Run {
    fn form(&mut self, pool: usize) {
        let spread_ms = FORM_SPREAD_PER_MEMBER_MS * pool as u64;
        let took = self.world.form(pool, spread_ms, self.bounds.converge_ms());
        self.report.formed_ms = took;
        self.report.check("formation", check::converged_within("the pool formed", took, self.bounds.converge_ms()));
    }

    /// Lets the news of the forming drain, slows `slow` random members, then measures load
    /// over `steady_ms`. Returns the slowed.
    fn steady(&mut self, slow: usize, steady_ms: u64) -> Vec<NodeId> {
        if self.world.settle(self.bounds.converge_ms()).is_none() {
            self.report.notes.push("load measured while news of the forming was still queued".into());
        }
        let slowed = self.pick(slow, |w, n| w.status(n) == Status::Running);
        for &node in &slowed {
            self.world.act(Action::Slow(node));
        }
        self.report.slowed_from_ms = self.world.now_ms();
        self.world.open_load_window();
        self.world.run_until(self.world.now_ms() + steady_ms);
        self.report.load = self.world.close_load_window();
        slowed
    }

    fn joins(&mut self, first: NodeId, joins: usize) {
        for node in first..first + joins {
            self.world.act(Action::Start(node));
            self.world.run_until_true(self.bounds.join_ms(), |w| w.all_believe_alive(node));
        }
    }

    fn crashes(&mut self, crashes: usize, restart: bool, healthy: impl Fn(&World, NodeId) -> bool) {
        if crashes == 0 {
            return;
        }
        let victims = self.pick(crashes, healthy);
        let interval_ms = self.world.setup().gossip.probe_interval_ms;
        for (i, &node) in victims.iter().enumerate() {
            self.world.schedule(self.world.now_ms() + i as u64 * interval_ms, Action::Crash(node));
        }
        let first = self.world.observations().crashes.len();
        let all_in = self.world.now_ms() + crashes as u64 * interval_ms;
        self.world.run_until(all_in);
        let detected = |w: &World| w.observations().crashes[first..].iter().all(|c| c.detected_ms.is_some());
        self.world.run_until_true(self.bounds.detect_ms(), detected);
        if !restart {
            return;
        }
        for &node in &victims {
            self.world.act(Action::Start(node));
        }
        let back = |w: &World| victims.iter().all(|&n| w.all_believe_alive(n));
        self.world.run_until_true(self.bounds.join_ms(), back);
    }

    fn leaves(&mut self, leaves: usize, healthy: impl Fn(&World, NodeId) -> bool) {
        if leaves == 0 {
            return;
        }
        let first = self.world.observations().leaves.len();
        for node in self.pick(leaves, healthy) {
            self.world.act(Action::Leave(node));
        }
        let gone = |w: &World| w.observations().leaves[first..].iter().all(|l| l.gone_ms.is_some());
        self.world.run_until_true(LEAVE_PROPAGATE_MAX_MS + self.bounds.join_ms(), gone);
    }

    fn partition(&mut self) {
        let running: Vec<NodeId> = self.world.running().collect();
        let half = self.pick_from(&running, running.len() / 2);
        self.world.act(Action::Split(vec![half]));
        let gossip_to_dead_ms = self.world.setup().gossip.gossip_to_dead_ms;
        self.world.run_until(self.world.now_ms() + self.bounds.detect_by_gossip_ms() + gossip_to_dead_ms);
        self.world.act(Action::Heal);
        let took = self.world.run_until_true(self.bounds.heal_ms(), World::converged);
        self.report.heals_ms.push(took);
        self.report.check("partition", check::converged_within("the partition healed", took, self.bounds.heal_ms()));
    }

    fn liveness(&mut self, slowed: &[NodeId]) {
        for &node in slowed {
            self.world.act(Action::Unslow(node));
        }
        self.report.slowed_until_ms = self.world.now_ms();
        let took = self.world.run_until_true(self.bounds.converge_ms(), World::converged);
        self.report.check("liveness", check::converged_within("the faults ended", took, self.bounds.converge_ms()));
    }

    fn finish(mut self, joins_from: usize) -> Report {
        let obs: &Observations = self.world.observations();
        let b = self.bounds;
        let late: Vec<&JoinRecord> = obs.joins[joins_from..].iter().filter(|j| !j.restart).collect();
        let results = [
            ("join", check::join_convergence(late.iter().copied(), b.join_ms())),
            ("completeness", check::completeness(&obs.crashes, b.detect_ms())),
            ("rejoin", check::rejoin(&obs.joins, obs, b.join_ms())),
            ("leave", check::graceful_leave(&obs.leaves, obs, LEAVE_PROPAGATE_MAX_MS + b.join_ms())),
            ("accuracy", check::accuracy(obs)),
        ];
        let slowed = check::slowed_accuracy(obs);
        self.report.observe(obs, &late, &self.world);
        self.report.trace = self.world.take_log();
        for (checker, result) in results {
            self.report.check(checker, result);
        }
        if let Err(e) = slowed {
            self.report.notes.push(format!("slowed members declared failed: {e}"));
        }
        self.report
    }

    /// `k` distinct random members passing `keep`, in id order.
    fn pick(&mut self, k: usize, keep: impl Fn(&World, NodeId) -> bool) -> Vec<NodeId> {
        let candidates: Vec<NodeId> = self.world.running().filter(|&n| keep(&self.world, n)).collect();
        self.pick_from(&candidates, k)
    }

    fn pick_from(&mut self, candidates: &[NodeId], k: usize) -> Vec<NodeId> {
        let mut picked: Vec<NodeId> = sample(&mut self.rng, candidates.len(), k.min(candidates.len()))
            .into_iter()
            .map(|i| candidates[i])
            .collect();
        picked.sort_unstable();
        picked
    }
}
