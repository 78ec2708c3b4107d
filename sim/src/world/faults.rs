//! The scenario nemesis: applies the faults a scenario file describes — an explicit schedule or
//! draws from the seed — to a running [`Cluster`], and undoes each when its duration ends.
//!
//! Every choice (which server "random" or "follower" means, which sides a partition has, each
//! random fault's parameters) is drawn from madsim's seeded RNG at the moment the fault starts,
//! so a run is a function of its seed. Overlapping faults compose: a link cut by two partitions
//! is restored when the last of them ends; a server crashed while already down is left alone;
//! a server down for two reasons (a crash, then its whole datacenter lost) restarts when the
//! last of them ends.
//!
//! With several datacenters every fault concerns one of them ([`DcTarget`]): a server fault
//! strikes a server of it (targets and partition shapes are relative to its servers), a WAN
//! fault cuts it off, loses it or slows its WAN links. With one datacenter nothing about this
//! draws from the seed, so lone-cluster runs replay as they always have.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use madsim::net::NetSim;
use madsim::rand::{thread_rng, Rng};

use super::net::{datacenter_of, link_faults, set_link_faults, set_wan_spike, LinkFaults};
use super::skew::{set_skew, skew_of, Skew};
use super::{server_label, Cluster, World};
pub use crate::check::{FaultScope, FaultSpan};
use crate::scenario::{DcTarget, Direction, Fault, FaultKind, Partition, PartitionShape, RandomNemesis, Target};

/// A server: (datacenter, server), both 0-based.
type ServerKey = (usize, usize);

impl AsRef<[Cluster]> for Cluster {
    fn as_ref(&self) -> &[Cluster] {
        std::slice::from_ref(self)
    }
}

impl AsRef<[Cluster]> for World {
    fn as_ref(&self) -> &[Cluster] {
        &self.datacenters
    }
}

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
    Links(Vec<(ServerKey, ServerKey)>),
    Restart(Vec<ServerKey>),
    Resume(ServerKey),
    Clock(ServerKey),
    Messages(Option<IpAddr>, LinkFaults),
    WanSpike(Option<usize>, Duration),
}

struct Active {
    until: Duration,
    undo: Undo,
    label: String,
    /// Its entry in [`FaultDriver::spans`].
    span: usize,
}

/// Applies and undoes a scenario's faults.
pub struct FaultDriver {
    /// Cuts per directed server link: restored when the count drops to zero.
    cut: BTreeMap<(ServerKey, ServerKey), u32>,
    /// Down servers, with the number of active faults that keep each down.
    down: BTreeMap<ServerKey, u32>,
    paused: BTreeMap<ServerKey, bool>,
    active: Vec<Active>,
    /// The skew each server carries all run (`[clocks]`), datacenter by datacenter; clock
    /// faults return to it.
    base_skews: Vec<Skew>,
    /// The one server that may get bit flips (a flipped server refuses to start for good).
    flip_victim: Option<ServerKey>,
    /// Everything the nemesis did, in order.
    pub events: Vec<FaultEvent>,
    /// Every fault injected, with its scope and time span; message faults also with the time
    /// their setting was really in force (see [`FaultDriver::track_messages`]).
    pub spans: Vec<FaultSpan>,
    /// Message-fault settings (by [`set_link_faults`] key) not at the default, since when.
    messages_since: BTreeMap<Option<IpAddr>, Duration>,
    /// The WAN spikes in force, per datacenter (`None`: every WAN link): the largest applies.
    wan_spikes: BTreeMap<Option<usize>, Vec<Duration>>,
    /// Faults injected.
    pub injected: usize,
}

impl FaultDriver {
    /// `base_skews`: every server's skew, the first datacenter's servers first.
    pub fn new(base_skews: Vec<Skew>) -> FaultDriver {
        FaultDriver {
            cut: BTreeMap::new(),
            down: BTreeMap::new(),
            paused: BTreeMap::new(),
            active: Vec::new(),
            base_skews,
            flip_victim: None,
            events: Vec::new(),
            spans: Vec::new(),
            messages_since: BTreeMap::new(),
            wan_spikes: BTreeMap::new(),
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
    pub fn expire(&mut self, world: &(impl AsRef<[Cluster]> + ?Sized), now: Duration) {
        let world = world.as_ref();
        let mut i = 0;
        while i < self.active.len() {
            if self.active[i].until <= now {
                let a = self.active.remove(i);
                self.undo(world, &a.undo, now);
                self.spans[a.span].end = now;
                self.log(now, format!("end {}", a.label));
            } else {
                i += 1;
            }
        }
    }

    /// Undoes every fault (the liveness phase starts).
    pub fn heal(&mut self, world: &(impl AsRef<[Cluster]> + ?Sized), now: Duration) {
        let world = world.as_ref();
        for a in std::mem::take(&mut self.active) {
            self.undo(world, &a.undo, now);
            self.spans[a.span].end = now;
        }
        // The runner clears every message fault with the heal, lingering ones included.
        for (key, since) in std::mem::take(&mut self.messages_since) {
            self.spans.push(FaultSpan { scope: message_scope(key), start: since, end: now });
        }
        self.log(now, "heal everything".into());
    }

    fn undo(&mut self, world: &[Cluster], undo: &Undo, now: Duration) {
        match undo {
            Undo::Links(links) => {
                let net = NetSim::current();
                for link in links {
                    let count = self.cut.entry(*link).or_insert(1);
                    *count -= 1;
                    if *count == 0 {
                        self.cut.remove(link);
                        net.unclog_link(node_of(world, link.0), node_of(world, link.1));
                    }
                }
            }
            Undo::Restart(keys) => {
                for key in keys {
                    let Some(count) = self.down.get_mut(key) else { continue };
                    *count -= 1;
                    if *count == 0 {
                        self.down.remove(key);
                        world[key.0].restart(key.1);
                    }
                }
            }
            Undo::Resume(key) => {
                if self.paused.remove(key).is_some() {
                    world[key.0].handle.resume(node_of(world, *key));
                }
            }
            Undo::Clock(key) => set_skew(node_of(world, *key), self.base_skews[flat(world, *key)]),
            Undo::Messages(node, previous) => {
                set_link_faults(*node, *previous);
                self.track_messages(*node, now);
            }
            Undo::WanSpike(dc, max) => {
                let spikes = self.wan_spikes.entry(*dc).or_default();
                if let Some(at) = spikes.iter().position(|s| s == max) {
                    spikes.remove(at);
                }
                set_wan_spike(*dc, spikes.iter().copied().max().unwrap_or_default());
            }
        }
    }

    /// The datacenter `dc` means now (drawn only when there are several).
    fn datacenter(&self, world: &[Cluster], dc: DcTarget) -> usize {
        match dc {
            DcTarget::Index(i) => i as usize,
            DcTarget::Random | DcTarget::All if world.len() > 1 => thread_rng().gen_range(0..world.len()),
            DcTarget::Random | DcTarget::All => 0,
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

    /// Applies `fault` at `now` for `duration`, in the first datacenter (or, for a WAN fault,
    /// to it).
    pub fn apply(
        &mut self,
        world: &(impl AsRef<[Cluster]> + ?Sized),
        fault: &Fault,
        now: Duration,
        duration: Duration,
    ) {
        self.apply_in(world, fault, DcTarget::Index(0), now, duration);
    }

    /// Applies `fault` concerning datacenter `dc` at `now` for `duration`.
    pub fn apply_in(
        &mut self,
        world: &(impl AsRef<[Cluster]> + ?Sized),
        fault: &Fault,
        dc: DcTarget,
        now: Duration,
        duration: Duration,
    ) {
        let world = world.as_ref();
        let until = now + duration;
        let (undo, label, scope) = match fault {
            Fault::WanPartition | Fault::DcLoss { .. } | Fault::WanDelay { .. } => {
                match self.wan_fault(world, fault, dc) {
                    Some(applied) => applied,
                    None => return,
                }
            }
            _ => {
                let d = self.datacenter(world, dc);
                match self.server_fault(world, d, fault, now) {
                    Some((undo, label, scope)) => (undo, label, scope),
                    None => return,
                }
            }
        };
        self.injected += 1;
        self.log(now, format!("start {label} for {duration:?}"));
        self.spans.push(FaultSpan { scope, start: now, end: until });
        self.active.push(Active { until, undo, label, span: self.spans.len() - 1 });
    }

    /// A fault on the servers or links of datacenter `d`; `None` when skipped.
    fn server_fault(
        &mut self,
        world: &[Cluster],
        d: usize,
        fault: &Fault,
        now: Duration,
    ) -> Option<(Undo, String, FaultScope)> {
        let cluster = &world[d];
        let n = cluster.servers.len();
        let name = |i: usize| label(world, (d, i));
        let inside = FaultScope::Servers(Some(d));
        Some(match fault {
            Fault::Partition(p) => {
                let links: Vec<(ServerKey, ServerKey)> =
                    partition_links(cluster, self, *p).into_iter().map(|(a, b)| ((d, a), (d, b))).collect();
                self.clog(world, &links);
                let shown: Vec<String> = links.iter().map(|(a, b)| format!("{}->{}", name(a.1), name(b.1))).collect();
                (Undo::Links(links), format!("partition {} cutting [{}]", p.shape().name(), shown.join(" ")), inside)
            }
            Fault::Crash { target, torn_write, bit_flip } => {
                let i = self.resolve(cluster, *target);
                if self.down.contains_key(&(d, i)) {
                    self.log(now, format!("skip crash of {}: already down", name(i)));
                    return None;
                }
                self.paused.remove(&(d, i));
                cluster.kill_with(i, *torn_write);
                let mut label = format!("crash {}{}", name(i), if *torn_write { " (torn writes allowed)" } else { "" });
                if *bit_flip && n >= 3 && self.flip_victim.is_none_or(|v| v == (d, i)) {
                    self.flip_victim = Some((d, i));
                    let mut rng = rand_seeded();
                    if let Some(flip) = cluster.servers[i].durable.disk.flip_bit(&mut rng) {
                        label.push_str(&format!(" + bit flip {flip:?}"));
                    }
                }
                self.down.insert((d, i), 1);
                (Undo::Restart(vec![(d, i)]), label, inside)
            }
            Fault::Pause { target } => {
                let i = self.resolve(cluster, *target);
                if self.down.contains_key(&(d, i)) || self.paused.contains_key(&(d, i)) {
                    self.log(now, format!("skip pause of {}: already down or paused", name(i)));
                    return None;
                }
                cluster.handle.pause(cluster.servers[i].node.id());
                self.paused.insert((d, i), true);
                (Undo::Resume((d, i)), format!("pause {}", name(i)), inside)
            }
            Fault::Clock { target, offset_ns, drift_ppm } => {
                let i = self.resolve(cluster, *target);
                let node = cluster.servers[i].node.id();
                let base = skew_of(node);
                set_skew(node, Skew { offset_ns: base.offset_ns + offset_ns, drift_ppm: base.drift_ppm + drift_ppm });
                (Undo::Clock((d, i)), format!("clock {} offset {offset_ns}ns drift {drift_ppm}ppm", name(i)), inside)
            }
            Fault::Drop { target, probability } => {
                self.messages(world, d, *target, |f| f.drop = *probability, format!("drop p={probability}"), now)
            }
            Fault::Delay { target, latency_max_ns } => self.messages(
                world,
                d,
                *target,
                |f| f.delay_max = Duration::from_nanos(*latency_max_ns),
                format!("delay up to {:?}", Duration::from_nanos(*latency_max_ns)),
                now,
            ),
            Fault::Duplicate { target, probability } => self.messages(
                world,
                d,
                *target,
                |f| f.duplicate = *probability,
                format!("duplicate p={probability}"),
                now,
            ),
            Fault::Reorder { target, probability } => {
                self.messages(world, d, *target, |f| f.reorder = *probability, format!("reorder p={probability}"), now)
            }
            Fault::WanPartition | Fault::DcLoss { .. } | Fault::WanDelay { .. } => {
                unreachable!("WAN faults are applied by wan_fault")
            }
        })
    }

    /// A fault on a datacenter as a whole; `None` when skipped.
    fn wan_fault(&mut self, world: &[Cluster], fault: &Fault, dc: DcTarget) -> Option<(Undo, String, FaultScope)> {
        assert!(world.len() > 1, "a WAN fault needs several datacenters (the scenario validator ensures it)");
        match fault {
            Fault::WanPartition => {
                let d = self.datacenter(world, dc);
                let mut links = Vec::new();
                for (other, cluster) in world.iter().enumerate().filter(|(o, _)| *o != d) {
                    for j in 0..cluster.servers.len() {
                        for i in 0..world[d].servers.len() {
                            links.push(((d, i), (other, j)));
                            links.push(((other, j), (d, i)));
                        }
                    }
                }
                self.clog(world, &links);
                let label = format!("wan-partition cutting {} off ({} links)", world[d].datacenter, links.len());
                Some((Undo::Links(links), label, FaultScope::WanCut(d)))
            }
            Fault::DcLoss { torn_write } => {
                let d = self.datacenter(world, dc);
                let mut keys = Vec::new();
                let mut killed = Vec::new();
                for i in 0..world[d].servers.len() {
                    match self.down.get_mut(&(d, i)) {
                        // Already down for another fault: it now also waits for this one.
                        Some(count) => *count += 1,
                        None => {
                            self.paused.remove(&(d, i));
                            world[d].kill_with(i, *torn_write);
                            self.down.insert((d, i), 1);
                            killed.push(format!("s{i}"));
                        }
                    }
                    keys.push((d, i));
                }
                let torn = if *torn_write { ", torn writes allowed" } else { "" };
                let label = format!("dc-loss of {} (crash [{}]{torn})", world[d].datacenter, killed.join(" "));
                Some((Undo::Restart(keys), label, FaultScope::DcLost(d)))
            }
            Fault::WanDelay { latency_max_ns } => {
                let d = match dc {
                    DcTarget::All => None,
                    other => Some(self.datacenter(world, other)),
                };
                // Overlapping spikes on the same links compose: the largest in force applies.
                let max = Duration::from_nanos(*latency_max_ns);
                let spikes = self.wan_spikes.entry(d).or_default();
                spikes.push(max);
                set_wan_spike(d, spikes.iter().copied().max().unwrap_or_default());
                let on =
                    d.map_or("every WAN link".to_string(), |d| format!("the WAN links of {}", world[d].datacenter));
                let label = format!("wan-delay up to {max:?} on {on}");
                Some((Undo::WanSpike(d, max), label, FaultScope::WanDelay(d)))
            }
            _ => unreachable!("server faults are applied by server_fault"),
        }
    }

    /// Records when the message-fault setting of `key` really changes between the default and
    /// a fault. A message fault restores the setting it found when it ends, so when two overlap
    /// on the same key and the first ends first, the second's end brings back the first's
    /// setting, which then stays until the heal. That composition is kept (lone-cluster runs
    /// replay as they always have); the spans recorded here tell the checkers the truth.
    fn track_messages(&mut self, key: Option<IpAddr>, now: Duration) {
        let faulty = link_faults(key) != LinkFaults::default();
        match (faulty, self.messages_since.get(&key).copied()) {
            (true, None) => {
                self.messages_since.insert(key, now);
            }
            (false, Some(since)) => {
                self.messages_since.remove(&key);
                self.spans.push(FaultSpan { scope: message_scope(key), start: since, end: now });
            }
            _ => {}
        }
    }

    /// Cuts `links` (counted, so overlapping cuts compose).
    fn clog(&mut self, world: &[Cluster], links: &[(ServerKey, ServerKey)]) {
        let net = NetSim::current();
        for link in links {
            let count = self.cut.entry(*link).or_insert(0);
            *count += 1;
            if *count == 1 {
                net.clog_link(node_of(world, link.0), node_of(world, link.1));
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn messages(
        &mut self,
        world: &[Cluster],
        d: usize,
        target: Option<Target>,
        set: impl FnOnce(&mut LinkFaults),
        what: String,
        now: Duration,
    ) -> (Undo, String, FaultScope) {
        let cluster = &world[d];
        let node = target.map(|t| {
            let i = self.resolve(cluster, t);
            (i, cluster.servers[i].addr.ip())
        });
        let key = node.map(|(_, ip)| ip);
        let previous = link_faults(key);
        let mut setting = previous;
        set(&mut setting);
        set_link_faults(key, setting);
        self.track_messages(key, now);
        let on = node.map_or("every link".to_string(), |(i, _)| format!("links of {}", label(world, (d, i))));
        let scope = FaultScope::Servers(node.map(|_| d));
        (Undo::Messages(key, previous), format!("{what} on {on}"), scope)
    }

    /// One draw of a random nemesis: with the configured chance and room under `active_max`,
    /// a fault of a random kind with random parameters (and, with several datacenters, in a
    /// random datacenter).
    pub fn draw(
        &mut self,
        world: &(impl AsRef<[Cluster]> + ?Sized),
        spec: &RandomNemesis,
        clock_max: (u64, u32),
        now: Duration,
    ) {
        let world = world.as_ref();
        if self.active.len() >= spec.active_max as usize || !thread_rng().gen_bool(spec.probability) {
            return;
        }
        let kind = spec.faults[thread_rng().gen_range(0..spec.faults.len())];
        // With one datacenter nothing is drawn, so lone-cluster runs replay as they always have.
        let d = if world.len() > 1 { thread_rng().gen_range(0..world.len()) } else { 0 };
        let dc = DcTarget::Index(d as u32);
        let n = world[d].servers.len() as u32;
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
            FaultKind::WanPartition => Fault::WanPartition,
            FaultKind::DcLoss => Fault::DcLoss { torn_write: spec.torn_writes },
            FaultKind::WanDelay => Fault::WanDelay { latency_max_ns: thread_rng().gen_range(10_000_000..=500_000_000) },
        };
        let dc = if kind == FaultKind::WanDelay && thread_rng().gen_bool(0.5) { DcTarget::All } else { dc };
        let duration_ns = thread_rng().gen_range(spec.duration_max_ns.min(100_000_000)..=spec.duration_max_ns);
        self.apply_in(world, &fault, dc, now, Duration::from_nanos(duration_ns));
    }
}

/// What a message-fault setting of `key` disturbs: a server's datacenter, or every one.
fn message_scope(key: Option<IpAddr>) -> FaultScope {
    FaultScope::Servers(key.map(datacenter_of))
}

/// The madsim node of a server.
fn node_of(world: &[Cluster], key: ServerKey) -> madsim::task::NodeId {
    world[key.0].servers[key.1].node.id()
}

/// A server's position among all servers, the first datacenter's first.
fn flat(world: &[Cluster], key: ServerKey) -> usize {
    world[..key.0].iter().map(|c| c.servers.len()).sum::<usize>() + key.1
}

/// How traces name a server (see [`server_label`]).
fn label(world: &[Cluster], key: ServerKey) -> String {
    server_label(world, key.0, key.1)
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
