//! The discrete-event driver: N [`Gossip`] state machines on a simulated network, one event
//! queue, one seeded RNG.
//!
//! # Events
//!
//! Every event has a virtual time in milliseconds and a sequence number (see [`super::queue`]).
//! A datagram is sent with a latency drawn from the network model, possibly lost, and checked
//! against partitions when it arrives; a stream is a request and a reply, each with its own
//! latency, that fails (`None`) when the peer's process is down (refused: one round trip), or
//! partitioned from the opener, or slower than [`Config::stream_timeout_ms`](legate_core::gossip::Config)
//! (the opener's timeout). Timers fire when [`Gossip::poll_timeout`] says; a timer event that a
//! later `poll_timeout` superseded is dropped when it comes due.
//!
//! # Processes
//!
//! A member's process is started (it joins 1–3 random running members, like
//! `retry_join`), crashed (its state is gone; datagrams to it vanish; streams to it are
//! refused), restarted (a fresh `Gossip`, incarnation 0, same name and address, joining
//! again), or leaves (it stops once its leave has propagated, or after [`LEAVE_PROPAGATE_MAX_MS`]).
//! Each start bumps the member's *life*, and events addressed to an earlier life are dropped.
//!
//! A *slowed* member models CPU starvation (Lifeguard's "slow message processing"): each of
//! its inputs — datagram, stream request, stream reply, timer — reaches its state machine late
//! by a delay drawn per input from [`Setup::slow`] (timers may have their own range). Its clock
//! is not late: the state machine sees the true time when it finally processes the input, so
//! its own probes can time out before it processes the acks that arrived in time.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use legate_core::gossip::{Event as GossipEvent, Gossip, Output, Stats};
use rand::seq::index::sample;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::check::Bounds;
use super::experiment::FORM_SPREAD_PER_MEMBER_MS;
use super::history::FaultHistory;
use super::load::{Load, LoadFigures};
use super::net::Network;
use super::queue::Queue;
use super::record::{FailedEvent, Observations, Recorder};
use super::setup::{agent_tags, node_addr, node_name, NodeId, Setup};
use super::views::{Belief, Views};
use crate::run::Fnv;

/// A leaving member stops at the latest this long after it started to leave, propagated or
/// not (Serf's leave waits a bounded time too).
pub const LEAVE_PROPAGATE_MAX_MS: u64 = 5_000;
/// A joining member asks at most this many running members (`retry_join` addresses).
pub const JOIN_SEEDS_MAX: usize = 3;
/// How often [`World::settle`] looks at every member's news queue.
pub const SETTLE_CHECK_MS: u64 = 100;

/// Something the driver does to a member or to the network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Start a member that never ran or crashed: a fresh `Gossip` that joins 1–3 random
    /// running members.
    Start(NodeId),
    /// Stop a running member's process at once; it keeps nothing.
    Crash(NodeId),
    /// A running member leaves gracefully, then stops.
    Leave(NodeId),
    /// From now on the member processes every input late (see the module docs).
    Slow(NodeId),
    /// The member processes its input on time again.
    Unslow(NodeId),
    /// Cut the network into islands (replacing any partition); members not named form one
    /// more island together.
    Split(Vec<Vec<NodeId>>),
    /// Remove the partition.
    Heal,
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names = |nodes: &[NodeId]| nodes.iter().map(|n| node_name(*n)).collect::<Vec<_>>().join(" ");
        match self {
            Action::Start(n) => write!(f, "start {}", node_name(*n)),
            Action::Crash(n) => write!(f, "crash {}", node_name(*n)),
            Action::Leave(n) => write!(f, "leave {}", node_name(*n)),
            Action::Slow(n) => write!(f, "slow {}", node_name(*n)),
            Action::Unslow(n) => write!(f, "unslow {}", node_name(*n)),
            Action::Split(islands) => {
                let islands: Vec<String> = islands.iter().map(|i| format!("[{}]", names(i))).collect();
                write!(f, "split {} from the rest", islands.join(" "))
            }
            Action::Heal => write!(f, "heal"),
        }
    }
}

/// Where a member's process is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Never started.
    Idle,
    Running,
    /// Running, telling the others it leaves.
    Leaving,
    Crashed,
    Left,
}

/// One member slot: its identity and, while it runs, its state machine.
struct Node {
    addr: SocketAddr,
    name: String,
    tags: BTreeMap<String, String>,
    gossip: Option<Gossip>,
    status: Status,
    /// Bumped at every start and stop; events for another life are dropped.
    life: u32,
    slow: bool,
    /// The `poll_timeout` a pending wake-up event was scheduled for.
    timer_due_ms: Option<u64>,
    /// Streams this process opened whose reply (or failure) is still to come.
    streams: BTreeSet<u64>,
}

/// An input to a member's state machine.
enum Input {
    Packet { from: NodeId, bytes: Vec<u8> },
    StreamRequest { from: NodeId, from_life: u32, token: u64, bytes: Vec<u8> },
    StreamReply { token: u64, reply: Option<Vec<u8>> },
    Timer { due_ms: u64 },
}

enum Event {
    Act(Action),
    /// A datagram reaches `to`'s host.
    Datagram {
        to: NodeId,
        from: NodeId,
        bytes: Vec<u8>,
    },
    /// A stream request reaches `to`'s host.
    StreamOpen {
        to: NodeId,
        from: NodeId,
        from_life: u32,
        token: u64,
        bytes: Vec<u8>,
    },
    /// A stream's reply (or its failure) reaches the opener's host.
    StreamBack {
        to: NodeId,
        life: u32,
        from: NodeId,
        token: u64,
        reply: Option<Vec<u8>>,
    },
    /// A member's timer is due.
    Wake {
        node: NodeId,
        life: u32,
        due_ms: u64,
    },
    /// A slowed member finally processes an input.
    Process {
        node: NodeId,
        life: u32,
        input: Input,
    },
    /// A leaving member stops whether or not its leave has propagated.
    LeaveDeadline {
        node: NodeId,
        life: u32,
    },
}

/// N gossip members on one simulated network (see the module docs).
pub struct World {
    setup: Setup,
    /// How long after a fault a `Failed` event is still blamed on it.
    excuse_ms: u64,
    now_ms: u64,
    rng: ChaCha8Rng,
    queue: Queue<Event>,
    nodes: Vec<Node>,
    by_addr: BTreeMap<SocketAddr, NodeId>,
    net: Network,
    views: Views,
    history: FaultHistory,
    load: Load,
    recorder: Recorder,
    trace: Fnv,
    /// Counters of the state machines that stopped.
    stopped_stats: Stats,
    /// Readable trace lines (actions and membership events), when asked for.
    log: Option<Vec<String>>,
}

impl World {
    /// A world of `setup.members` idle members; `seed` decides every random choice.
    pub fn new(seed: u64, setup: Setup) -> Result<World, String> {
        setup.validate()?;
        let n = setup.members;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let nodes: Vec<Node> = (0..n)
            .map(|id| Node {
                addr: node_addr(id),
                name: node_name(id),
                tags: agent_tags(&mut rng),
                gossip: None,
                status: Status::Idle,
                life: 0,
                slow: false,
                timer_due_ms: None,
                streams: BTreeSet::new(),
            })
            .collect();
        for node in &nodes {
            // The one way a start can fail; checked here so that a start cannot.
            Gossip::new(0, setup.gossip.clone(), &node.name, node.addr, node.tags.clone(), 0)
                .map_err(|e| format!("{}: {e}", node.name))?;
        }
        let by_addr = nodes.iter().enumerate().map(|(id, node)| (node.addr, id)).collect();
        Ok(World {
            excuse_ms: Bounds::new(&setup.gossip, n, setup.slow.max_ms()).excuse_ms,
            net: Network::new(setup.net, n),
            views: Views::new(n),
            history: FaultHistory::new(n),
            load: Load::new(n),
            recorder: Recorder::new(),
            setup,
            now_ms: 0,
            rng,
            queue: Queue::new(),
            nodes,
            by_addr,
            trace: Fnv::default(),
            stopped_stats: Stats::default(),
            log: None,
        })
    }

    pub fn setup(&self) -> &Setup {
        &self.setup
    }

    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    pub fn status(&self, node: NodeId) -> Status {
        self.nodes[node].status
    }

    /// A running member's state machine.
    pub fn gossip(&self, node: NodeId) -> Option<&Gossip> {
        self.nodes[node].gossip.as_ref()
    }

    /// What `observer` (running) believes about `subject`, from its events.
    pub fn belief(&self, observer: NodeId, subject: NodeId) -> Belief {
        self.views.belief(observer, subject)
    }

    /// Members whose process runs (leaving ones included), by id.
    pub fn running(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.views.running()
    }

    /// Every running member believes every other running member alive.
    pub fn converged(&self) -> bool {
        self.views.converged()
    }

    /// Every running member other than `subject` believes it alive.
    pub fn all_believe_alive(&self, subject: NodeId) -> bool {
        self.views.doubters(subject) == 0
    }

    pub fn observations(&self) -> &Observations {
        self.recorder.observations()
    }

    /// Suspicions every member's state machine started (raised or heard of), over the whole
    /// run: false alarms cost this much suspicion, refutation and news traffic.
    pub fn suspicions_started(&self) -> u64 {
        let running: u64 =
            self.nodes.iter().filter_map(|n| n.gossip.as_ref()).map(|g| g.stats().suspicions_started).sum();
        running + self.stopped_stats.suspicions_started
    }

    /// A digest of every input each state machine processed and every event it emitted, in
    /// order: two runs with equal hashes did the same thing.
    pub fn trace_hash(&self) -> u64 {
        self.trace.finish()
    }

    /// Keeps a readable trace from now on: every action and membership event, one line each.
    pub fn keep_log(&mut self) {
        self.log.get_or_insert_with(Vec::new);
    }

    /// The readable trace kept since [`World::keep_log`].
    pub fn take_log(&mut self) -> Vec<String> {
        self.log.take().unwrap_or_default()
    }

    /// Hashes a line into the trace, and keeps it if a readable trace is kept.
    fn note(&mut self, line: String) {
        let line = format!("{:>10.3}s {line}", self.now_ms as f64 / 1_000.0);
        self.trace.write_str(&line);
        if let Some(log) = &mut self.log {
            log.push(line);
        }
    }

    /// Starts counting what each member sends.
    pub fn open_load_window(&mut self) {
        self.load.open(self.now_ms);
    }

    /// Per-member rates since [`World::open_load_window`].
    pub fn close_load_window(&mut self) -> LoadFigures {
        self.load.close(self.now_ms, self.views.running())
    }

    /// Does `action` now.
    pub fn act(&mut self, action: Action) {
        self.note(action.to_string());
        match action {
            Action::Start(node) => self.start(node),
            Action::Crash(node) => self.crash(node),
            Action::Leave(node) => self.leave(node),
            Action::Slow(node) => {
                self.nodes[node].slow = true;
                self.history.slowed(node, self.now_ms);
            }
            Action::Unslow(node) => {
                self.nodes[node].slow = false;
                self.history.unslowed(node, self.now_ms);
            }
            Action::Split(islands) => {
                self.net.split(&islands);
                self.history.split(self.now_ms);
            }
            Action::Heal => {
                assert!(self.net.is_partitioned(), "heal without a partition");
                self.net.heal();
                self.history.healed(self.now_ms);
            }
        }
    }

    /// Forms a pool of members `0..pool`: the first starts now, the others at random times
    /// over the next `spread_ms`, each joining 1–3 running members. Runs until every member
    /// sees every other alive, at most `limit_ms` after the last start: how long that took
    /// after it.
    pub fn form(&mut self, pool: usize, spread_ms: u64, limit_ms: u64) -> Option<u64> {
        let start_ms = self.now_ms;
        self.act(Action::Start(0));
        for node in 1..pool {
            let at_ms = start_ms + self.rng.random_range(1..=spread_ms.max(1));
            self.schedule(at_ms, Action::Start(node));
        }
        self.run_until(start_ms + spread_ms);
        self.run_until_true(limit_ms, World::converged)
    }

    /// A world of `setup.members` members that all started (one per
    /// [`FORM_SPREAD_PER_MEMBER_MS`] on average, each joining 1–3 running members) and formed
    /// one pool, with the bounds of its configuration. Errs on a bad setup or a pool that did
    /// not converge within [`Bounds::converge_ms`].
    pub fn formed(seed: u64, setup: Setup) -> Result<(World, Bounds), String> {
        let members = setup.members;
        let bounds = Bounds::new(&setup.gossip, members, 0);
        let mut world = World::new(seed, setup)?;
        let spread_ms = FORM_SPREAD_PER_MEMBER_MS * members as u64;
        match world.form(members, spread_ms, bounds.converge_ms()) {
            Some(_) => Ok((world, bounds)),
            None => Err(format!("the pool of {members} did not form within {} ms", bounds.converge_ms())),
        }
    }

    /// Runs until no running member has news left to send, checking every
    /// [`SETTLE_CHECK_MS`], at most `limit_ms`: how long that took.
    pub fn settle(&mut self, limit_ms: u64) -> Option<u64> {
        let start_ms = self.now_ms;
        let quiet = |w: &World| w.nodes.iter().filter_map(|n| n.gossip.as_ref()).all(|g| g.pending_broadcasts() == 0);
        while !quiet(self) {
            if self.now_ms >= start_ms + limit_ms {
                return None;
            }
            self.run_until((self.now_ms + SETTLE_CHECK_MS).min(start_ms + limit_ms));
        }
        Some(self.now_ms - start_ms)
    }

    /// Does `action` at `at_ms` (not before now).
    pub fn schedule(&mut self, at_ms: u64, action: Action) {
        assert!(at_ms >= self.now_ms, "an action at {at_ms} ms, in the past of {} ms", self.now_ms);
        self.queue.push(at_ms, Event::Act(action));
    }

    /// Runs every event due up to `until_ms`.
    pub fn run_until(&mut self, until_ms: u64) {
        while let Some((at_ms, event)) = self.queue.pop_until(until_ms) {
            self.step(at_ms, event);
        }
        self.now_ms = self.now_ms.max(until_ms);
    }

    /// Runs until `done` holds (checked after every event) or `limit_ms` passed: how long it
    /// took, or `None`.
    pub fn run_until_true(&mut self, limit_ms: u64, done: impl Fn(&World) -> bool) -> Option<u64> {
        let (start_ms, deadline_ms) = (self.now_ms, self.now_ms + limit_ms);
        if done(self) {
            return Some(0);
        }
        while let Some((at_ms, event)) = self.queue.pop_until(deadline_ms) {
            self.step(at_ms, event);
            if done(self) {
                return Some(self.now_ms - start_ms);
            }
        }
        self.now_ms = deadline_ms;
        None
    }

    fn step(&mut self, at_ms: u64, event: Event) {
        assert!(at_ms >= self.now_ms, "time went back from {} to {at_ms} ms", self.now_ms);
        self.now_ms = at_ms;
        self.dispatch(event);
    }

    fn dispatch(&mut self, event: Event) {
        match event {
            Event::Act(action) => self.act(action),
            Event::Datagram { to, from, bytes } => {
                if self.nodes[to].gossip.is_some() && self.net.reachable(from, to) {
                    self.input(to, Input::Packet { from, bytes });
                }
            }
            Event::StreamOpen { to, from, from_life, token, bytes } => {
                if !self.net.reachable(from, to) {
                    // Nothing comes back: the opener's timeout reports the failure.
                } else if self.nodes[to].gossip.is_some() {
                    self.input(to, Input::StreamRequest { from, from_life, token, bytes });
                } else {
                    let at_ms = self.now_ms + self.net.latency_ms(&mut self.rng);
                    let refused = Event::StreamBack { to: from, life: from_life, from: to, token, reply: None };
                    self.queue.push(at_ms, refused);
                }
            }
            Event::StreamBack { to, life, from, token, reply } => {
                if self.nodes[to].life == life && self.net.reachable(from, to) {
                    self.input(to, Input::StreamReply { token, reply });
                }
            }
            Event::Wake { node, life, due_ms } => {
                let n = &self.nodes[node];
                if n.life == life && n.timer_due_ms == Some(due_ms) {
                    self.input(node, Input::Timer { due_ms });
                }
            }
            Event::Process { node, life, input } => {
                if self.nodes[node].life == life {
                    self.handle(node, input);
                }
            }
            Event::LeaveDeadline { node, life } => {
                if self.nodes[node].life == life && self.nodes[node].status == Status::Leaving {
                    self.stop(node, Status::Left);
                }
            }
        }
    }

    /// An input reached a running member: it handles it now, or late if it is slowed.
    fn input(&mut self, node: NodeId, input: Input) {
        let n = &self.nodes[node];
        if n.slow {
            let delay = match input {
                Input::Timer { .. } => self.setup.slow.timer_delay,
                _ => self.setup.slow.input_delay,
            };
            let at_ms = self.now_ms + delay.draw(&mut self.rng);
            self.queue.push(at_ms, Event::Process { node, life: n.life, input });
        } else {
            self.handle(node, input);
        }
    }

    fn handle(&mut self, node: NodeId, input: Input) {
        let now_ms = self.now_ms;
        let n = &mut self.nodes[node];
        let Some(gossip) = n.gossip.as_mut() else { return };
        match input {
            Input::Packet { from, bytes } => {
                trace_input(&mut self.trace, now_ms, node, "packet", from, &bytes);
                gossip.handle_packet(now_ms, node_addr(from), &bytes);
            }
            Input::StreamRequest { from, from_life, token, bytes } => {
                trace_input(&mut self.trace, now_ms, node, "stream", from, &bytes);
                let reply = gossip.handle_stream(now_ms, node_addr(from), &bytes);
                if let Some(r) = &reply {
                    self.load.stream(node, r.len());
                }
                let at_ms = now_ms + self.net.latency_ms(&mut self.rng);
                self.queue.push(at_ms, Event::StreamBack { to: from, life: from_life, from: node, token, reply });
            }
            Input::StreamReply { token, reply } => {
                if !n.streams.remove(&token) {
                    return;
                }
                trace_input(&mut self.trace, now_ms, node, "reply", node, reply.as_deref().unwrap_or_default());
                gossip.handle_stream_reply(now_ms, token, reply.as_deref());
            }
            Input::Timer { due_ms } => {
                if n.timer_due_ms != Some(due_ms) {
                    return;
                }
                n.timer_due_ms = None;
                if gossip.poll_timeout().is_some_and(|t| t <= now_ms) {
                    trace_input(&mut self.trace, now_ms, node, "timer", node, &[]);
                    gossip.handle_timeout(now_ms);
                }
            }
        }
        self.after_input(node);
    }

    /// Carries out what the state machine asked for, stops a member whose leave has
    /// propagated, and re-arms its timer.
    fn after_input(&mut self, node: NodeId) {
        let n = &mut self.nodes[node];
        let Some(gossip) = n.gossip.as_mut() else { return };
        let outputs: Vec<Output> = std::iter::from_fn(|| gossip.poll_output()).collect();
        let (propagated, due_ms) = (gossip.leave_propagated(), gossip.poll_timeout());
        for output in outputs {
            self.carry(node, output);
        }
        if self.nodes[node].status == Status::Leaving && propagated {
            self.stop(node, Status::Left);
            return;
        }
        let n = &mut self.nodes[node];
        if let Some(due_ms) = due_ms.filter(|due| n.timer_due_ms != Some(*due)) {
            n.timer_due_ms = Some(due_ms);
            // Never in the past, and never twice in one millisecond after a timeout: a
            // timer that stays due would otherwise spin.
            let wake = Event::Wake { node, life: n.life, due_ms };
            self.queue.push(due_ms.max(self.now_ms + 1), wake);
        }
    }

    fn carry(&mut self, node: NodeId, output: Output) {
        let now_ms = self.now_ms;
        match output {
            Output::Packet { to, bytes } => {
                self.load.datagram(node, bytes.len());
                let Some(&dest) = self.by_addr.get(&to) else { return };
                if self.net.lost(&mut self.rng) {
                    return;
                }
                let at_ms = now_ms + self.net.latency_ms(&mut self.rng);
                self.queue.push(at_ms, Event::Datagram { to: dest, from: node, bytes });
            }
            Output::Stream { to, token, kind: _, bytes } => {
                self.load.stream(node, bytes.len());
                let life = self.nodes[node].life;
                self.nodes[node].streams.insert(token);
                let timeout = Event::StreamBack { to: node, life, from: node, token, reply: None };
                self.queue.push(now_ms + self.setup.gossip.stream_timeout_ms, timeout);
                let at_ms = now_ms + self.net.latency_ms(&mut self.rng);
                let event = match self.by_addr.get(&to) {
                    Some(&dest) => Event::StreamOpen { to: dest, from: node, from_life: life, token, bytes },
                    None => Event::StreamBack { to: node, life, from: node, token, reply: None },
                };
                self.queue.push(at_ms, event);
            }
            Output::Event(event) => self.observe(node, event),
        }
    }

    /// A membership event at `observer`: update its beliefs and the records.
    fn observe(&mut self, observer: NodeId, event: GossipEvent) {
        let (belief, member) = match &event {
            GossipEvent::Joined(m) | GossipEvent::Updated(m) => (Belief::Alive, m),
            GossipEvent::Failed(m) => (Belief::Failed, m),
            GossipEvent::Left(m) => (Belief::Left, m),
            GossipEvent::Reaped(m) => (Belief::Unknown, m),
            // The simulator checks membership only.
            GossipEvent::User(_) => return,
        };
        let Some(&subject) = self.by_addr.get(&member.addr) else { return };
        if subject == observer {
            return;
        }
        self.note(format!(
            "{} sees {} {belief:?} (incarnation {})",
            node_name(observer),
            member.name,
            member.incarnation
        ));
        self.views.set(observer, subject, belief);
        match event {
            GossipEvent::Joined(m) => self.recorder.joined(self.now_ms, observer, subject, m.incarnation),
            GossipEvent::Failed(m) => {
                let cause = self.history.cause(subject, self.now_ms, self.excuse_ms);
                let failed = FailedEvent { at_ms: self.now_ms, observer, subject, cause };
                self.recorder.failed(failed, m.incarnation);
            }
            GossipEvent::Left(_) | GossipEvent::Reaped(_) => self.recorder.forgot(observer, subject),
            GossipEvent::Updated(_) | GossipEvent::User(_) => {}
        }
        self.recorder.settle(subject, self.now_ms, &self.views);
    }

    fn start(&mut self, node: NodeId) {
        let n = &self.nodes[node];
        assert!(
            matches!(n.status, Status::Idle | Status::Crashed | Status::Left),
            "start of {} while {:?}",
            n.name,
            n.status
        );
        let restart = n.status != Status::Idle;
        let seed = self.rng.random();
        let gossip = Gossip::new(self.now_ms, self.setup.gossip.clone(), &n.name, n.addr, n.tags.clone(), seed)
            .expect("World::new checked every member's tags");
        let seeds = self.join_seeds(node);
        let n = &mut self.nodes[node];
        n.gossip = Some(gossip);
        n.status = Status::Running;
        n.life += 1;
        self.views.started(node);
        self.history.started(node, self.now_ms);
        self.load.disturbed(node);
        self.recorder.started(node, self.now_ms, restart, &self.views);
        if !seeds.is_empty() {
            let addrs: Vec<SocketAddr> = seeds.iter().map(|s| self.nodes[*s].addr).collect();
            let now_ms = self.now_ms;
            if let Some(g) = self.nodes[node].gossip.as_mut() {
                g.join(now_ms, &addrs);
            }
        }
        self.after_input(node);
    }

    /// 1–[`JOIN_SEEDS_MAX`] random running members other than `node`.
    fn join_seeds(&mut self, node: NodeId) -> Vec<NodeId> {
        let candidates: Vec<NodeId> =
            self.views.running().filter(|&m| m != node && self.nodes[m].status == Status::Running).collect();
        if candidates.is_empty() {
            return Vec::new();
        }
        let k = self.rng.random_range(1..=JOIN_SEEDS_MAX.min(candidates.len()));
        sample(&mut self.rng, candidates.len(), k).into_iter().map(|i| candidates[i]).collect()
    }

    fn crash(&mut self, node: NodeId) {
        assert!(self.nodes[node].gossip.is_some(), "crash of {}, which is not running", self.nodes[node].name);
        self.stop(node, Status::Crashed);
        self.history.crashed(node, self.now_ms);
        self.recorder.crashed(node, self.now_ms, &self.views);
    }

    fn leave(&mut self, node: NodeId) {
        let n = &mut self.nodes[node];
        assert_eq!(n.status, Status::Running, "leave of {}", n.name);
        let Some(gossip) = n.gossip.as_mut() else { return };
        gossip.leave(self.now_ms);
        n.status = Status::Leaving;
        let deadline = Event::LeaveDeadline { node, life: n.life };
        self.queue.push(self.now_ms + LEAVE_PROPAGATE_MAX_MS, deadline);
        self.history.left(node, self.now_ms);
        self.recorder.leaving(node, self.now_ms);
        self.after_input(node);
    }

    /// The member's process ends (`status`: crashed or left).
    fn stop(&mut self, node: NodeId, status: Status) {
        let n = &mut self.nodes[node];
        if let Some(gossip) = n.gossip.take() {
            self.stopped_stats.suspicions_started += gossip.stats().suspicions_started;
        }
        n.status = status;
        n.life += 1;
        n.timer_due_ms = None;
        n.streams.clear();
        self.views.stopped(node);
        self.load.disturbed(node);
        self.recorder.stopped(node, self.now_ms, &self.views);
    }
}

/// Hashes one input into the trace: when, who, what, from whom, and its bytes.
fn trace_input(trace: &mut Fnv, now_ms: u64, node: NodeId, kind: &str, from: NodeId, bytes: &[u8]) {
    trace.write(&now_ms.to_le_bytes());
    trace.write(&(node as u64).to_le_bytes());
    trace.write_str(kind);
    trace.write(&(from as u64).to_le_bytes());
    trace.write(bytes);
}
