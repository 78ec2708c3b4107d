//! The scenario nemesis: applies the faults a scenario file describes — an explicit schedule or
//! draws from the seed — to a running [`Cluster`], and undoes each when its duration ends.
//!
//! Every choice (which server "random" or "follower" means, which sides a partition has, each
//! random fault's parameters) is drawn from madsim's seeded RNG at the moment the fault starts,
//! so a run is a function of its seed. Overlapping faults compose: a link cut by two partitions
//! is restored when the last of them ends; a server crashed while already down is left alone.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use madsim::net::NetSim;
use madsim::rand::{thread_rng, Rng};

use super::net::{link_faults, set_link_faults, LinkFaults};
use super::skew::{set_skew, skew_of, Skew};
use super::Cluster;
use crate::scenario::{Direction, Fault, FaultKind, Partition, PartitionShape, RandomNemesis, Target};

/// One line of the run's trace: what the nemesis did, when (virtual time since the run began).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultEvent {
    pub at: Duration,
    pub what: String,
}

impl fmt::Display for FaultEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:>10.3}s nemesis {}", self.at.as_secs_f64(), self.what)
    }
}

/// How to undo one active fault.
#[derive(Clone, Debug)]
enum Undo {
    Links(Vec<(usize, usize)>),
    Restart(usize),
    Resume(usize),
    Clock(usize),
    Messages(Option<IpAddr>, LinkFaults),
}

struct Active {
    until: Duration,
    undo: Undo,
    label: String,
}

/// Applies and undoes a scenario's faults.
pub struct FaultDriver {
    /// Cuts per directed server link: restored when the count drops to zero.
    cut: BTreeMap<(usize, usize), u32>,
    down: BTreeMap<usize, bool>,
    paused: BTreeMap<usize, bool>,
    active: Vec<Active>,
    /// The skew each server carries all run (`[clocks]`); clock faults return to it.
    base_skews: Vec<Skew>,
    /// The one server that may get bit flips (a flipped server refuses to start for good).
    flip_victim: Option<usize>,
    /// Everything the nemesis did, in order.
    pub events: Vec<FaultEvent>,
    /// Faults injected.
    pub injected: usize,
}

impl FaultDriver {
    pub fn new(base_skews: Vec<Skew>) -> FaultDriver {
        FaultDriver {
            cut: BTreeMap::new(),
            down: BTreeMap::new(),
            paused: BTreeMap::new(),
            active: Vec::new(),
            base_skews,
            flip_victim: None,
            events: Vec::new(),
            injected: 0,
        }
    }

    /// Faults currently active.
    pub fn active(&self) -> usize {
        self.active.len()
    }

    fn log(&mut self, at: Duration, what: String) {
        self.events.push(FaultEvent { at, what });
    }

    /// Undoes every fault whose time is up.
    pub fn expire(&mut self, cluster: &Cluster, now: Duration) {
        let mut i = 0;
        while i < self.active.len() {
            if self.active[i].until <= now {
                let a = self.active.remove(i);
                self.undo(cluster, &a.undo);
                self.log(now, format!("end {}", a.label));
            } else {
                i += 1;
            }
        }
    }

    /// Undoes every fault (the liveness phase starts).
    pub fn heal(&mut self, cluster: &Cluster, now: Duration) {
        for a in std::mem::take(&mut self.active) {
            self.undo(cluster, &a.undo);
        }
        self.log(now, "heal everything".into());
    }

    fn undo(&mut self, cluster: &Cluster, undo: &Undo) {
        match undo {
            Undo::Links(links) => {
                let net = NetSim::current();
                for link in links {
                    let count = self.cut.entry(*link).or_insert(1);
                    *count -= 1;
                    if *count == 0 {
                        self.cut.remove(link);
                        net.unclog_link(cluster.servers[link.0].node.id(), cluster.servers[link.1].node.id());
                    }
                }
            }
            Undo::Restart(i) => {
                if self.down.remove(i).is_some() {
                    cluster.restart(*i);
                }
            }
            Undo::Resume(i) => {
                if self.paused.remove(i).is_some() {
                    cluster.handle.resume(cluster.servers[*i].node.id());
                }
            }
            Undo::Clock(i) => set_skew(cluster.servers[*i].node.id(), self.base_skews[*i]),
            Undo::Messages(node, previous) => set_link_faults(*node, *previous),
        }
    }

    fn resolve(&self, cluster: &Cluster, target: Target) -> usize {
        let n = cluster.servers.len();
        let leader = cluster.observer.leaders().first().map(|id| *id as usize - 1);
        match target {
            Target::Node(i) => i as usize,
            Target::Leader => leader.unwrap_or_else(|| thread_rng().gen_range(0..n)),
            Target::Random => thread_rng().gen_range(0..n),
            Target::Follower => {
                let others: Vec<usize> = (0..n).filter(|i| Some(*i) != leader).collect();
                others[thread_rng().gen_range(0..others.len())]
            }
        }
    }

    /// Applies `fault` at `now` for `duration`.
    pub fn apply(&mut self, cluster: &Cluster, fault: &Fault, now: Duration, duration: Duration) {
        let until = now + duration;
        let n = cluster.servers.len();
        let (undo, label) = match fault {
            Fault::Partition(p) => {
                let links = partition_links(cluster, self, *p);
                let net = NetSim::current();
                for link in &links {
                    let count = self.cut.entry(*link).or_insert(0);
                    *count += 1;
                    if *count == 1 {
                        net.clog_link(cluster.servers[link.0].node.id(), cluster.servers[link.1].node.id());
                    }
                }
                let shown: Vec<String> = links.iter().map(|(a, b)| format!("s{a}->s{b}")).collect();
                (Undo::Links(links), format!("partition {} cutting [{}]", p.shape().name(), shown.join(" ")))
            }
            Fault::Crash { target, torn_write, bit_flip } => {
                let i = self.resolve(cluster, *target);
                if self.down.contains_key(&i) {
                    self.log(now, format!("skip crash of s{i}: already down"));
                    return;
                }
                self.paused.remove(&i);
                cluster.kill_with(i, *torn_write);
                let mut label = format!("crash s{i}{}", if *torn_write { " (torn writes allowed)" } else { "" });
                if *bit_flip && n >= 3 && self.flip_victim.is_none_or(|v| v == i) {
                    self.flip_victim = Some(i);
                    let mut rng = rand_seeded();
                    if let Some(flip) = cluster.servers[i].durable.disk.flip_bit(&mut rng) {
                        label.push_str(&format!(" + bit flip {flip:?}"));
                    }
                }
                self.down.insert(i, true);
                (Undo::Restart(i), label)
            }
            Fault::Pause { target } => {
                let i = self.resolve(cluster, *target);
                if self.down.contains_key(&i) || self.paused.contains_key(&i) {
                    self.log(now, format!("skip pause of s{i}: already down or paused"));
                    return;
                }
                cluster.handle.pause(cluster.servers[i].node.id());
                self.paused.insert(i, true);
                (Undo::Resume(i), format!("pause s{i}"))
            }
            Fault::Clock { target, offset_ns, drift_ppm } => {
                let i = self.resolve(cluster, *target);
                let node = cluster.servers[i].node.id();
                let base = skew_of(node);
                set_skew(node, Skew { offset_ns: base.offset_ns + offset_ns, drift_ppm: base.drift_ppm + drift_ppm });
                (Undo::Clock(i), format!("clock s{i} offset {offset_ns}ns drift {drift_ppm}ppm"))
            }
            Fault::Drop { target, probability } => {
                self.messages(cluster, *target, |f| f.drop = *probability, format!("drop p={probability}"))
            }
            Fault::Delay { target, latency_max_ns } => self.messages(
                cluster,
                *target,
                |f| f.delay_max = Duration::from_nanos(*latency_max_ns),
                format!("delay up to {:?}", Duration::from_nanos(*latency_max_ns)),
            ),
            Fault::Duplicate { target, probability } => {
                self.messages(cluster, *target, |f| f.duplicate = *probability, format!("duplicate p={probability}"))
            }
            Fault::Reorder { target, probability } => {
                self.messages(cluster, *target, |f| f.reorder = *probability, format!("reorder p={probability}"))
            }
        };
        self.injected += 1;
        self.log(now, format!("start {label} for {duration:?}"));
        self.active.push(Active { until, undo, label });
    }

    fn messages(
        &self,
        cluster: &Cluster,
        target: Option<Target>,
        set: impl FnOnce(&mut LinkFaults),
        what: String,
    ) -> (Undo, String) {
        let node = target.map(|t| {
            let i = self.resolve(cluster, t);
            (i, cluster.servers[i].addr.ip())
        });
        let key = node.map(|(_, ip)| ip);
        let previous = link_faults(key);
        let mut now = previous;
        set(&mut now);
        set_link_faults(key, now);
        let on = node.map_or("every link".to_string(), |(i, _)| format!("links of s{i}"));
        (Undo::Messages(key, previous), format!("{what} on {on}"))
    }

    /// One draw of a random nemesis: with the configured chance and room under `active_max`,
    /// a fault of a random kind with random parameters.
    pub fn draw(&mut self, cluster: &Cluster, spec: &RandomNemesis, clock_max: (u64, u32), now: Duration) {
        if self.active.len() >= spec.active_max as usize || !thread_rng().gen_bool(spec.probability) {
            return;
        }
        let kind = spec.faults[thread_rng().gen_range(0..spec.faults.len())];
        let n = cluster.servers.len() as u32;
        let random_target = |followers_ok: bool| -> Target {
            match thread_rng().gen_range(0..3) {
                0 => Target::Leader,
                1 if followers_ok && n >= 3 => Target::Follower,
                _ => Target::Node(thread_rng().gen_range(0..n)),
            }
        };
        let maybe_target = || if thread_rng().gen_bool(0.5) { None } else { Some(random_target(true)) };
        let fault = match kind {
            FaultKind::Partition => {
                let shapes: Vec<PartitionShape> = if spec.shapes.is_empty() {
                    PartitionShape::ALL.iter().copied().filter(|s| s.servers_min() <= n).collect()
                } else {
                    spec.shapes.clone()
                };
                if shapes.is_empty() {
                    return;
                }
                let p = match shapes[thread_rng().gen_range(0..shapes.len())] {
                    PartitionShape::IsolateLeader => Partition::IsolateLeader,
                    PartitionShape::IsolateNode => Partition::IsolateNode { target: random_target(true) },
                    PartitionShape::MajorityMinority => Partition::MajorityMinority,
                    PartitionShape::Bridge => Partition::Bridge,
                    PartitionShape::OneWay => Partition::OneWay {
                        target: random_target(true),
                        direction: if thread_rng().gen_bool(0.5) { Direction::Inbound } else { Direction::Outbound },
                    },
                };
                Fault::Partition(p)
            }
            FaultKind::Crash => Fault::Crash {
                target: random_target(true),
                torn_write: spec.torn_writes,
                bit_flip: spec.bit_flips && thread_rng().gen_bool(0.2),
            },
            FaultKind::Pause => Fault::Pause { target: random_target(true) },
            FaultKind::Clock => {
                let (offset_max, drift_max) = clock_max;
                let offset_max = offset_max.max(1_000_000_000) as i64;
                let drift_max = drift_max.max(5_000) as i32;
                Fault::Clock {
                    target: random_target(true),
                    offset_ns: thread_rng().gen_range(-offset_max..=offset_max),
                    drift_ppm: thread_rng().gen_range(-drift_max..=drift_max),
                }
            }
            FaultKind::Drop => Fault::Drop { target: maybe_target(), probability: thread_rng().gen_range(0.05..0.5) },
            FaultKind::Delay => Fault::Delay {
                target: maybe_target(),
                latency_max_ns: thread_rng().gen_range(10_000_000..=500_000_000),
            },
            FaultKind::Duplicate => {
                Fault::Duplicate { target: maybe_target(), probability: thread_rng().gen_range(0.05..0.5) }
            }
            FaultKind::Reorder => {
                Fault::Reorder { target: maybe_target(), probability: thread_rng().gen_range(0.05..0.5) }
            }
        };
        let duration_ns = thread_rng().gen_range(spec.duration_max_ns.min(100_000_000)..=spec.duration_max_ns);
        self.apply(cluster, &fault, now, Duration::from_nanos(duration_ns));
    }
}

fn rand_seeded() -> rand_chacha::ChaCha8Rng {
    use rand::SeedableRng;
    rand_chacha::ChaCha8Rng::seed_from_u64(thread_rng().gen::<u64>())
}

/// The directed server links a partition of this shape cuts, drawn now.
fn partition_links(cluster: &Cluster, driver: &FaultDriver, p: Partition) -> Vec<(usize, usize)> {
    let n = cluster.servers.len();
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = thread_rng().gen_range(0..=i);
        order.swap(i, j);
    }
    let mut links = Vec::new();
    let isolate = |alone: usize, links: &mut Vec<(usize, usize)>| {
        for other in (0..n).filter(|o| *o != alone) {
            links.push((alone, other));
            links.push((other, alone));
        }
    };
    match p {
        Partition::IsolateLeader => isolate(driver.resolve(cluster, Target::Leader), &mut links),
        Partition::IsolateNode { target } => isolate(driver.resolve(cluster, target), &mut links),
        Partition::MajorityMinority => {
            let minority = thread_rng().gen_range(1..=((n - 1) / 2).max(1));
            let (small, big) = order.split_at(minority);
            cut_between(small, big, &mut links);
        }
        Partition::Bridge => {
            let rest = &order[1..];
            let (left, right) = rest.split_at(rest.len() / 2);
            cut_between(left, right, &mut links);
        }
        Partition::OneWay { target, direction } => {
            let t = driver.resolve(cluster, target);
            for other in (0..n).filter(|o| *o != t) {
                links.push(match direction {
                    Direction::Inbound => (other, t),
                    Direction::Outbound => (t, other),
                });
            }
        }
    }
    links
}

fn cut_between(a: &[usize], b: &[usize], links: &mut Vec<(usize, usize)>) {
    for &x in a {
        for &y in b {
            links.push((x, y));
            links.push((y, x));
        }
    }
}
