//! The nemesis: faults injected into a running [`Cluster`], every choice drawn from the
//! simulation's seeded RNG.
//!
//! Faults (Jepsen's vocabulary): network partitions of several shapes (isolate the leader,
//! majority/minority, a bridge where one node sees both sides, a one-way link cut), crash and
//! restart of a server (the leader included), and pause/resume of a server (a stalled
//! process). [`Nemesis::heal`] undoes everything, which starts a run's liveness phase.

use std::collections::BTreeSet;
use std::fmt;

use madsim::net::NetSim;
use madsim::rand::{thread_rng, Rng};

use super::Cluster;

/// The shape of a partition among the servers (clients stay connected to every server).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Partition {
    /// The current leader alone on one side.
    IsolateLeader,
    /// A random minority cut off from the majority.
    MajorityMinority,
    /// Two halves that only one "bridge" node connects (needs 3+ servers).
    Bridge,
    /// One direction of one link cut: `from` can no longer reach `to`.
    OneWay,
}

/// One fault the nemesis applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    Partition { shape: Partition, cut: Vec<(usize, usize)> },
    Kill(usize),
    Restart(usize),
    Pause(usize),
    Resume(usize),
    Heal,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Partition { shape, cut } => write!(f, "partition {shape:?} cutting {} links", cut.len()),
            Fault::Kill(i) => write!(f, "kill s{}", i + 1),
            Fault::Restart(i) => write!(f, "restart s{}", i + 1),
            Fault::Pause(i) => write!(f, "pause s{}", i + 1),
            Fault::Resume(i) => write!(f, "resume s{}", i + 1),
            Fault::Heal => write!(f, "heal"),
        }
    }
}

/// Which faults a run may inject.
#[derive(Clone, Debug)]
pub struct FaultMix {
    pub partitions: bool,
    pub kills: bool,
    pub pauses: bool,
}

impl Default for FaultMix {
    fn default() -> Self {
        FaultMix { partitions: true, kills: true, pauses: true }
    }
}

/// Injects faults and remembers what to undo.
pub struct Nemesis {
    mix: FaultMix,
    /// Directed links cut, as (from, to) server indexes.
    cut: BTreeSet<(usize, usize)>,
    killed: BTreeSet<usize>,
    paused: BTreeSet<usize>,
    /// Every fault applied, in order.
    pub log: Vec<Fault>,
}

impl Nemesis {
    pub fn new(mix: FaultMix) -> Self {
        Nemesis { mix, cut: BTreeSet::new(), killed: BTreeSet::new(), paused: BTreeSet::new(), log: Vec::new() }
    }

    /// Applies one random fault (or heals, sometimes), drawn from the seed.
    pub fn step(&mut self, cluster: &Cluster) {
        let n = cluster.servers.len();
        let mut choices: Vec<u8> = vec![0]; // heal
        if self.mix.partitions && n > 1 {
            choices.extend([1, 1]);
        }
        if self.mix.kills {
            choices.extend([2, 2]);
        }
        if self.mix.pauses {
            choices.push(3);
        }
        let pick = choices[thread_rng().gen_range(0..choices.len())];
        match pick {
            1 => {
                self.heal_network(cluster);
                let shape = self.random_shape(n);
                self.partition(cluster, shape);
            }
            2 => self.kill_or_restart(cluster),
            3 => self.pause_or_resume(cluster),
            _ => self.heal(cluster),
        }
    }

    fn random_shape(&self, n: usize) -> Partition {
        let mut shapes = vec![Partition::IsolateLeader, Partition::MajorityMinority, Partition::OneWay];
        if n >= 3 {
            shapes.push(Partition::Bridge);
        }
        shapes[thread_rng().gen_range(0..shapes.len())].clone()
    }

    /// Cuts the links of a partition of the given shape.
    pub fn partition(&mut self, cluster: &Cluster, shape: Partition) {
        let n = cluster.servers.len();
        let mut order: Vec<usize> = (0..n).collect();
        shuffle(&mut order);
        let mut links = Vec::new();
        match shape {
            Partition::IsolateLeader => {
                let alone = cluster.observer.leaders().first().map(|id| *id as usize - 1).unwrap_or(order[0]);
                for other in (0..n).filter(|o| *o != alone) {
                    links.push((alone, other));
                    links.push((other, alone));
                }
            }
            Partition::MajorityMinority => {
                let minority = thread_rng().gen_range(1..=(n - 1) / 2).max(1).min(n - 1);
                let (small, big) = order.split_at(minority);
                cut_between(small, big, &mut links);
            }
            Partition::Bridge => {
                // order[0] is the bridge: it keeps its links to both halves.
                let rest = &order[1..];
                let (left, right) = rest.split_at(rest.len() / 2);
                cut_between(left, right, &mut links);
            }
            Partition::OneWay => {
                if n > 1 {
                    links.push((order[0], order[1]));
                }
            }
        }
        let net = NetSim::current();
        for &(from, to) in &links {
            net.clog_link(cluster.servers[from].node.id(), cluster.servers[to].node.id());
            self.cut.insert((from, to));
        }
        self.log.push(Fault::Partition { shape, cut: links });
    }

    fn kill_or_restart(&mut self, cluster: &Cluster) {
        let n = cluster.servers.len();
        // Restart a killed server half the time, else kill a live one (leaders preferred).
        if let Some(&dead) = self.killed.iter().next() {
            if thread_rng().gen_bool(0.5) || self.killed.len() * 2 + 1 > n {
                self.restart(cluster, dead);
                return;
            }
        }
        let alive: Vec<usize> = (0..n).filter(|i| !self.killed.contains(i)).collect();
        if alive.len() <= 1 {
            return;
        }
        let leader = cluster.observer.leaders().first().map(|id| *id as usize - 1).filter(|l| alive.contains(l));
        let victim = match leader {
            Some(l) if thread_rng().gen_bool(0.5) => l,
            _ => alive[thread_rng().gen_range(0..alive.len())],
        };
        self.paused.remove(&victim);
        cluster.kill(victim);
        self.killed.insert(victim);
        self.log.push(Fault::Kill(victim));
    }

    fn restart(&mut self, cluster: &Cluster, i: usize) {
        cluster.restart(i);
        self.killed.remove(&i);
        self.log.push(Fault::Restart(i));
    }

    fn pause_or_resume(&mut self, cluster: &Cluster) {
        if let Some(&p) = self.paused.iter().next() {
            cluster.handle.resume(cluster.servers[p].node.id());
            self.paused.remove(&p);
            self.log.push(Fault::Resume(p));
            return;
        }
        let n = cluster.servers.len();
        let alive: Vec<usize> = (0..n).filter(|i| !self.killed.contains(i)).collect();
        if alive.is_empty() {
            return;
        }
        let victim = alive[thread_rng().gen_range(0..alive.len())];
        cluster.handle.pause(cluster.servers[victim].node.id());
        self.paused.insert(victim);
        self.log.push(Fault::Pause(victim));
    }

    fn heal_network(&mut self, cluster: &Cluster) {
        let net = NetSim::current();
        for (from, to) in std::mem::take(&mut self.cut) {
            net.unclog_link(cluster.servers[from].node.id(), cluster.servers[to].node.id());
        }
    }

    /// Undoes every fault: links restored, paused servers resumed, killed servers restarted.
    pub fn heal(&mut self, cluster: &Cluster) {
        self.heal_network(cluster);
        for p in std::mem::take(&mut self.paused) {
            cluster.handle.resume(cluster.servers[p].node.id());
        }
        for k in std::mem::take(&mut self.killed) {
            cluster.restart(k);
        }
        self.log.push(Fault::Heal);
    }

    /// Whether any fault is in force.
    pub fn is_healed(&self) -> bool {
        self.cut.is_empty() && self.killed.is_empty() && self.paused.is_empty()
    }
}

fn cut_between(a: &[usize], b: &[usize], links: &mut Vec<(usize, usize)>) {
    for &x in a {
        for &y in b {
            links.push((x, y));
            links.push((y, x));
        }
    }
}

fn shuffle(v: &mut [usize]) {
    for i in (1..v.len()).rev() {
        let j = thread_rng().gen_range(0..=i);
        v.swap(i, j);
    }
}
