//! Gossip membership: SWIM with Lifeguard, sans-IO.
//!
//! One [`Gossip`] is one member of one pool (an agent has a LAN pool; a server has a WAN pool
//! too). It decides everything — whom to probe, when to suspect, when to declare a member
//! failed, what to piggyback — and its driver only moves bytes and keeps time:
//!
//! * feed datagrams with [`Gossip::handle_packet`], incoming stream requests with
//!   [`Gossip::handle_stream`] (the reply goes back on the same stream), and the outcome of
//!   streams this member opened with [`Gossip::handle_stream_reply`];
//! * call [`Gossip::handle_timeout`] when [`Gossip::poll_timeout`] says;
//! * drain [`Gossip::poll_output`] until `None` after every call: [`Output::Packet`] is a
//!   datagram to send, [`Output::Stream`] a request to send on a new stream (TCP) whose reply
//!   (or failure, within [`Config::stream_timeout_ms`]) comes back through
//!   `handle_stream_reply`, and [`Output::Event`] a membership change.
//!
//! # Protocol
//!
//! Every probe interval the member probes the next member of a shuffled round (each member once
//! per round): a ping over UDP; without an ack within the probe timeout, indirect pings through
//! `indirect_checks` other members (which answer with a nack when the target is silent) and a
//! ping over a stream as a fallback. No ack by the end of the interval: the target becomes
//! *suspect*. A suspect that does not refute (an alive message with a higher incarnation)
//! before its suspicion timeout becomes *dead* (`failed`). Membership news rides piggybacked on
//! every packet and on a gossip round to a few random members every gossip interval, each piece
//! sent `retransmit_mult · ⌈log10(n+1)⌉` times; a periodic push-pull exchanges the full state
//! with one random member over a stream, which repairs whatever gossip missed and heals
//! partitions.
//!
//! Lifeguard ([`Config::lifeguard`]): the suspicion timeout starts at
//! `suspicion_max_timeout_mult ×` its minimum `suspicion_mult · max(1, log10 n) · probe_interval`
//! and shrinks towards the minimum as independent members confirm the suspicion; a member that
//! misses acks or nacks, or has to refute a suspicion of itself, stretches its own probe
//! interval and timeout (local health awareness, up to `awareness_max_multiplier ×`); and a
//! suspect is told of the suspicion first (buddy system), in the probe it is sent.
//!
//! Leaving: [`Gossip::leave`] broadcasts a `left` message; [`Gossip::force_leave`] turns a failed
//! member into a left one. Failed members are forgotten (reaped) after `reconnect_timeout_ms`,
//! left ones after `tombstone_timeout_ms`. A member that restarts refutes its own death with a
//! higher incarnation and is alive again.
//!
//! User events ([`Gossip::user_event`], Serf's user events): piggybacked like membership news
//! under their own keys, delivered once per member as [`Event::User`]; see `user_event.rs`.

mod awareness;
mod broadcast;
mod config;
mod member;
mod suspicion;
mod user_event;
mod wire;

#[cfg(test)]
mod tests;

pub use config::Config;
pub use member::{Member, MemberState, MemberStatus};
pub use user_event::{UserEvent, UserEventError};
pub use wire::{WireError, STREAM_SIZE_MAX_BYTES, TAGS_SIZE_MAX_BYTES};

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;

use rand_chacha::ChaCha8Rng;

/// A membership change, in Serf's terms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A member is new, or alive again after it failed or left.
    Joined(Member),
    /// A member's address or tags changed.
    Updated(Member),
    /// A member was declared dead.
    Failed(Member),
    /// A member left gracefully (or was forced to leave).
    Left(Member),
    /// A failed or left member was forgotten.
    Reaped(Member),
    /// A user event, delivered once per event ID (fired here or heard of).
    User(UserEvent),
}

/// What a stream this member opens is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StreamKind {
    /// A push-pull state exchange asked for by [`Gossip::join`].
    Join,
    /// The periodic push-pull state exchange.
    PushPull,
    /// The fallback probe of a member that did not answer over UDP.
    Ping,
}

/// Something the driver must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Send this datagram.
    Packet { to: SocketAddr, bytes: Vec<u8> },
    /// Open a stream to `to`, send `bytes`, read one reply and hand it (or `None` on any
    /// failure or after [`Config::stream_timeout_ms`]) to [`Gossip::handle_stream_reply`] with
    /// `token`.
    Stream { to: SocketAddr, token: u64, kind: StreamKind, bytes: Vec<u8> },
    /// Membership changed, or a user event arrived.
    Event(Event),
}

/// Counters for metrics and for the simulator's load figures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub packets_sent: u64,
    pub packet_bytes_sent: u64,
    pub packets_received: u64,
    pub streams_opened: u64,
    pub stream_bytes_sent: u64,
    pub probes: u64,
    pub probes_failed: u64,
    pub suspicions_started: u64,
    pub refutations: u64,
    pub malformed: u64,
}

use awareness::Awareness;
use broadcast::{Broadcasts, Take};
use rand_core::{RngCore, SeedableRng};
use suspicion::Suspicion;
use user_event::{SeenIds, EVENT_KEY_PREFIX};
use wire::{Msg, PacketBuilder, PushState, StreamMsg, WireState};

/// The probe in flight.
#[derive(Debug)]
struct Probe {
    seq: u32,
    target: String,
    /// When indirect probes start (if no ack by then).
    timeout_ms: u64,
    /// When the target becomes suspect (if no ack by then).
    deadline_ms: u64,
    /// When the ping went out: a direct ack measures the round-trip time.
    sent_ms: u64,
    indirect_sent: bool,
    expected_nacks: u32,
    nacks: u32,
    stream_token: Option<u64>,
}

/// An indirect probe this member runs for another.
#[derive(Debug)]
struct Relay {
    requester: SocketAddr,
    requester_seq: u32,
    nack_at_ms: u64,
}

/// One member of one gossip pool (see the module docs).
#[derive(Debug)]
pub struct Gossip {
    config: Config,
    name: String,
    members: BTreeMap<String, Member>,
    /// Probe round: member names in shuffled order, and the next position.
    round: Vec<String>,
    round_pos: usize,
    probe: Option<Probe>,
    relays: BTreeMap<u32, Relay>,
    suspicions: BTreeMap<String, Suspicion>,
    broadcasts: Broadcasts,
    awareness: Awareness,
    rng: ChaCha8Rng,
    seq: u32,
    next_token: u64,
    /// Streams in flight: token → (kind, seq of a fallback ping).
    streams: BTreeMap<u64, (StreamKind, u32)>,
    next_probe_ms: u64,
    next_gossip_ms: u64,
    next_push_pull_ms: u64,
    next_reap_ms: u64,
    next_reconnect_ms: u64,
    leaving: bool,
    outputs: VecDeque<Output>,
    stats: Stats,
    /// The IDs of recent user events, so that each is delivered once.
    seen_events: SeenIds,
    /// Serf's event Lamport clock: the time the next event fired here gets.
    event_clock: u64,
    /// Smoothed round-trip time to each member answering direct pings (ms).
    rtt_ms: BTreeMap<String, u64>,
}

impl Gossip {
    /// A pool of one: this member, alive, with `tags`. `seed` drives every random choice.
    pub fn new(
        now_ms: u64,
        config: Config,
        name: &str,
        addr: SocketAddr,
        tags: BTreeMap<String, String>,
        seed: u64,
    ) -> Result<Gossip, WireError> {
        wire::check_tags(&tags)?;
        let me = Member {
            name: name.to_string(),
            addr,
            tags,
            incarnation: 0,
            state: MemberState::Alive,
            state_change_ms: now_ms,
        };
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        // Members started together do not tick together.
        let stagger = |rng: &mut ChaCha8Rng, ms: u64| now_ms + rng.next_u64() % ms.max(1);
        let next_probe_ms = stagger(&mut rng, config.probe_interval_ms);
        let next_gossip_ms = stagger(&mut rng, config.gossip_interval_ms);
        let next_push_pull_ms = stagger(&mut rng, config.push_pull_interval_ms);
        let mut g = Gossip {
            awareness: Awareness::new(config.awareness_max_multiplier),
            next_reap_ms: now_ms + config.reap_interval_ms,
            next_reconnect_ms: now_ms + config.reconnect_interval_ms,
            config,
            name: name.to_string(),
            members: BTreeMap::new(),
            round: Vec::new(),
            round_pos: 0,
            probe: None,
            relays: BTreeMap::new(),
            suspicions: BTreeMap::new(),
            broadcasts: Broadcasts::default(),
            rng,
            seq: 0,
            next_token: 0,
            streams: BTreeMap::new(),
            next_probe_ms,
            next_gossip_ms,
            next_push_pull_ms,
            leaving: false,
            outputs: VecDeque::new(),
            stats: Stats::default(),
            seen_events: SeenIds::default(),
            event_clock: 0,
            rtt_ms: BTreeMap::new(),
        };
        g.outputs.push_back(Output::Event(Event::Joined(me.clone())));
        g.members.insert(name.to_string(), me);
        Ok(g)
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// This member.
    pub fn local(&self) -> &Member {
        &self.members[&self.name]
    }

    /// Every member known, this one included, by name.
    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.members.values()
    }

    /// The smoothed round-trip time of direct probes to each member that answered one (ms),
    /// the estimate of distance behind "nearest first" (Consul uses network coordinates).
    pub fn rtt_ms(&self) -> &BTreeMap<String, u64> {
        &self.rtt_ms
    }

    pub fn member(&self, name: &str) -> Option<&Member> {
        self.members.get(name)
    }

    /// Alive and suspect members, this one included: the pool's size for timeouts.
    pub fn num_live(&self) -> usize {
        self.members.values().filter(|m| m.is_live()).count()
    }

    /// Lifeguard's local health score: 0 is healthy.
    pub fn health_score(&self) -> u32 {
        self.awareness.score()
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// True once [`Gossip::leave`] was called.
    pub fn is_leaving(&self) -> bool {
        self.leaving
    }

    /// True when news of this member's leave has been sent as often as news is (or there is
    /// nobody to tell): the driver may stop.
    pub fn leave_propagated(&self) -> bool {
        self.leaving && (!self.broadcasts.contains(&self.name) || self.num_live() == 0)
    }

    /// Pieces of news waiting to be sent.
    pub fn pending_broadcasts(&self) -> usize {
        self.broadcasts.len()
    }

    /// Exchanges full state with each address (a join). The driver learns which succeeded
    /// from [`Gossip::handle_stream_reply`]'s answer.
    pub fn join(&mut self, _now_ms: u64, addrs: &[SocketAddr]) -> Vec<u64> {
        let bytes = wire::encode_stream(&StreamMsg::PushPull { join: true, states: self.push_states() });
        addrs.iter().map(|addr| self.open_stream(*addr, StreamKind::Join, 0, bytes.clone())).collect()
    }

    /// Leaves gracefully: news of it is broadcast; probing stops.
    pub fn leave(&mut self, now_ms: u64) {
        if self.leaving {
            return;
        }
        self.leaving = true;
        let me = self.members.get_mut(&self.name).expect("self is a member");
        me.incarnation += 1;
        me.state = MemberState::Left;
        me.state_change_ms = now_ms;
        let msg = Msg::Left { incarnation: me.incarnation, node: self.name.clone() };
        self.probe = None;
        self.queue(&msg);
    }

    /// Turns a failed member into a left one, for everyone (`legate force-leave`).
    pub fn force_leave(&mut self, now_ms: u64, name: &str) -> Result<(), String> {
        let Some(m) = self.members.get(name) else {
            return Err(format!("no member named {name:?}"));
        };
        match m.state {
            MemberState::Dead => {}
            MemberState::Left => return Ok(()),
            _ => return Err(format!("member {name:?} is not failed; only failed members can be forced to leave")),
        }
        let msg = Msg::Left { incarnation: m.incarnation, node: name.to_string() };
        self.on_left(now_ms, msg);
        Ok(())
    }

    /// Changes this member's tags (news with a new incarnation).
    pub fn set_tags(&mut self, _now_ms: u64, tags: BTreeMap<String, String>) -> Result<(), WireError> {
        wire::check_tags(&tags)?;
        let me = self.members.get_mut(&self.name).expect("self is a member");
        me.tags = tags;
        me.incarnation += 1;
        let msg = alive_msg(me);
        self.queue(&msg);
        let me = self.local().clone();
        self.outputs.push_back(Output::Event(Event::Updated(me)));
        Ok(())
    }

    /// Fires a user event: it is delivered here ([`Event::User`]) and gossiped to every
    /// member. Its `ltime` is set from the pool's event clock; the event as sent is returned.
    pub fn user_event(&mut self, _now_ms: u64, mut event: UserEvent) -> Result<UserEvent, UserEventError> {
        event.check()?;
        if self.broadcasts.count_prefix(EVENT_KEY_PREFIX) >= crate::limits::USER_EVENTS_PENDING_MAX {
            return Err(UserEventError::Busy);
        }
        if !self.seen_events.insert(&event.id) {
            // A driver that reuses an ID: delivered already, nothing new to say.
            return Err(UserEventError::DuplicateId);
        }
        event.ltime = self.event_clock;
        self.event_clock += 1;
        let msg = Msg::UserEvent(event.clone());
        self.broadcasts.push(&UserEvent::broadcast_key(&event.id), wire::encode_msg(&msg));
        self.outputs.push_back(Output::Event(Event::User(event.clone())));
        Ok(event)
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// The earliest moment [`Gossip::handle_timeout`] has work.
    pub fn poll_timeout(&self) -> Option<u64> {
        let mut t = self.next_gossip_ms.min(self.next_reap_ms);
        if !self.leaving {
            t = t.min(self.next_probe_ms).min(self.next_push_pull_ms).min(self.next_reconnect_ms);
        }
        if let Some(p) = &self.probe {
            t = t.min(p.deadline_ms);
            if !p.indirect_sent {
                t = t.min(p.timeout_ms);
            }
        }
        if let Some(s) = self.suspicions.values().map(|s| s.deadline_ms).min() {
            t = t.min(s);
        }
        if let Some(r) = self.relays.values().map(|r| r.nack_at_ms).min() {
            t = t.min(r);
        }
        Some(t)
    }

    pub fn handle_timeout(&mut self, now_ms: u64) {
        // Suspicions that ran out: those members are dead.
        let expired: Vec<(String, u32)> = self
            .suspicions
            .iter()
            .filter(|(_, s)| s.deadline_ms <= now_ms)
            .map(|(n, s)| (n.clone(), s.incarnation))
            .collect();
        for (node, incarnation) in expired {
            self.suspicions.remove(&node);
            let msg = Msg::Dead { incarnation, node, from: self.name.clone() };
            self.on_dead(now_ms, msg);
        }
        // Relayed probes whose target stayed silent: nack the requester.
        let silent: Vec<u32> = self.relays.iter().filter(|(_, r)| r.nack_at_ms <= now_ms).map(|(s, _)| *s).collect();
        for seq in silent {
            if let Some(r) = self.relays.remove(&seq) {
                self.send(r.requester, vec![Msg::Nack { seq: r.requester_seq }]);
            }
        }
        self.probe_timeouts(now_ms);
        if !self.leaving && self.next_probe_ms <= now_ms {
            self.start_probe(now_ms);
            self.next_probe_ms = now_ms + self.awareness.scale(self.config.probe_interval_ms);
        }
        if self.next_gossip_ms <= now_ms {
            self.gossip_round(now_ms);
            self.next_gossip_ms = now_ms + self.config.gossip_interval_ms;
        }
        if !self.leaving && self.next_push_pull_ms <= now_ms {
            self.push_pull(now_ms);
            self.next_push_pull_ms = now_ms + self.config.push_pull_interval_for(self.num_live());
        }
        if !self.leaving && self.next_reconnect_ms <= now_ms {
            self.reconnect();
            self.next_reconnect_ms = now_ms + self.config.reconnect_interval_ms;
        }
        if self.next_reap_ms <= now_ms {
            self.reap(now_ms);
            self.next_reap_ms = now_ms + self.config.reap_interval_ms;
        }
    }

    /// A datagram arrived from `from`.
    pub fn handle_packet(&mut self, now_ms: u64, from: SocketAddr, bytes: &[u8]) {
        self.stats.packets_received += 1;
        let msgs = match wire::decode_packet(bytes) {
            Ok((msgs, bad)) => {
                self.stats.malformed += bad as u64;
                msgs
            }
            Err(_) => {
                self.stats.malformed += 1;
                return;
            }
        };
        for msg in msgs {
            self.handle_msg(now_ms, from, msg);
        }
    }

    /// A stream request arrived from `from`: the reply to send back, if any.
    pub fn handle_stream(&mut self, now_ms: u64, from: SocketAddr, bytes: &[u8]) -> Option<Vec<u8>> {
        let msg = match wire::decode_stream(bytes) {
            Ok(m) => m,
            Err(_) => {
                self.stats.malformed += 1;
                return None;
            }
        };
        match msg {
            StreamMsg::PushPull { join: _, states } => {
                let reply = StreamMsg::PushPull { join: false, states: self.push_states() };
                self.merge(now_ms, states);
                Some(wire::encode_stream(&reply))
            }
            StreamMsg::Ping { seq, target } => {
                let _ = from;
                (target == self.name).then(|| wire::encode_stream(&StreamMsg::Ack { seq }))
            }
            StreamMsg::Ack { .. } => None,
        }
    }

    /// The reply (or `None`: failure or timeout) to a stream opened by [`Output::Stream`].
    /// `true` when the exchange succeeded.
    pub fn handle_stream_reply(&mut self, now_ms: u64, token: u64, reply: Option<&[u8]>) -> bool {
        let Some((kind, seq)) = self.streams.remove(&token) else { return false };
        let Some(bytes) = reply else { return false };
        let msg = match wire::decode_stream(bytes) {
            Ok(m) => m,
            Err(_) => {
                self.stats.malformed += 1;
                return false;
            }
        };
        match (kind, msg) {
            (StreamKind::Join | StreamKind::PushPull, StreamMsg::PushPull { states, .. }) => {
                self.merge(now_ms, states);
                true
            }
            (StreamKind::Ping, StreamMsg::Ack { seq: acked }) if acked == seq => {
                self.on_ack(now_ms, seq);
                true
            }
            _ => false,
        }
    }

    // ---- probing ----

    fn start_probe(&mut self, now_ms: u64) {
        if self.probe.is_some() {
            // The last probe has not settled (its deadline is this interval's end): next time.
            return;
        }
        let Some(target) = self.next_target() else { return };
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let m = &self.members[&target];
        let addr = m.addr;
        let mut primary = Vec::new();
        if self.config.lifeguard && m.state == MemberState::Suspect {
            // Buddy system: a suspect hears of the suspicion first, and can refute it.
            primary.push(Msg::Suspect { incarnation: m.incarnation, node: target.clone(), from: self.name.clone() });
        }
        primary.push(Msg::Ping { seq, target: target.clone() });
        self.stats.probes += 1;
        self.probe = Some(Probe {
            seq,
            target,
            timeout_ms: now_ms + self.awareness.scale(self.config.probe_timeout_ms),
            deadline_ms: now_ms + self.awareness.scale(self.config.probe_interval_ms),
            sent_ms: now_ms,
            indirect_sent: false,
            expected_nacks: 0,
            nacks: 0,
            stream_token: None,
        });
        self.send(addr, primary);
    }

    /// The next live member of the round; a new shuffled round when this one is done.
    fn next_target(&mut self) -> Option<String> {
        for _ in 0..2 {
            while self.round_pos < self.round.len() {
                let name = self.round[self.round_pos].clone();
                self.round_pos += 1;
                if self.members.get(&name).is_some_and(|m| m.is_live()) && name != self.name {
                    return Some(name);
                }
            }
            let mut names: Vec<String> =
                self.members.values().filter(|m| m.is_live() && m.name != self.name).map(|m| m.name.clone()).collect();
            shuffle(&mut self.rng, &mut names);
            self.round = names;
            self.round_pos = 0;
        }
        None
    }

    fn probe_timeouts(&mut self, now_ms: u64) {
        let Some(p) = &self.probe else { return };
        if !p.indirect_sent && p.timeout_ms <= now_ms {
            self.indirect_probe(now_ms);
        }
        let Some(p) = &self.probe else { return };
        if p.deadline_ms > now_ms {
            return;
        }
        let p = self.probe.take().expect("checked");
        self.stats.probes_failed += 1;
        if self.config.lifeguard {
            // Missed nacks mean our own network (or CPU) may be the problem.
            let delta = if p.expected_nacks > 0 { p.expected_nacks.saturating_sub(p.nacks) as i64 } else { 1 };
            self.awareness.apply(delta);
        }
        if let Some(token) = p.stream_token {
            self.streams.remove(&token);
        }
        let Some(m) = self.members.get(&p.target) else { return };
        if !m.is_live() {
            return;
        }
        let msg = Msg::Suspect { incarnation: m.incarnation, node: p.target.clone(), from: self.name.clone() };
        self.on_suspect(now_ms, msg);
    }

    fn indirect_probe(&mut self, _now_ms: u64) {
        let Some(p) = self.probe.as_mut() else { return };
        p.indirect_sent = true;
        let (seq, target) = (p.seq, p.target.clone());
        let Some(target_addr) = self.members.get(&target).map(|m| m.addr) else { return };
        let me = self.name.clone();
        let helpers = self.random_members(self.config.indirect_checks, |m| {
            m.state == MemberState::Alive && m.name != me && m.name != target
        });
        let expected = if self.config.lifeguard { helpers.len() as u32 } else { 0 };
        for addr in helpers.iter().map(|n| self.members[n].addr).collect::<Vec<_>>() {
            self.send(addr, vec![Msg::IndirectPing { seq, target: target.clone(), target_addr }]);
        }
        let token = if self.config.stream_fallback {
            let bytes = wire::encode_stream(&StreamMsg::Ping { seq, target });
            Some(self.open_stream(target_addr, StreamKind::Ping, seq, bytes))
        } else {
            None
        };
        if let Some(p) = self.probe.as_mut() {
            p.expected_nacks = expected;
            p.stream_token = token;
        }
    }

    fn on_ack(&mut self, now_ms: u64, seq: u32) {
        if self.probe.as_ref().is_some_and(|p| p.seq == seq) {
            let p = self.probe.take().expect("checked");
            if !p.indirect_sent {
                // Only a direct ack measures the path to the member; a relayed one may come
                // back through another member. New samples weigh 1/8 (TCP's smoothing).
                let sample = now_ms.saturating_sub(p.sent_ms);
                let rtt = self.rtt_ms.entry(p.target.clone()).or_insert(sample);
                *rtt = (*rtt * 7 + sample) / 8;
            }
            if let Some(token) = p.stream_token {
                self.streams.remove(&token);
            }
            if self.config.lifeguard {
                self.awareness.apply(-1);
            }
            return;
        }
        if let Some(r) = self.relays.remove(&seq) {
            self.send(r.requester, vec![Msg::Ack { seq: r.requester_seq }]);
        }
    }

    // ---- messages ----

    fn handle_msg(&mut self, now_ms: u64, from: SocketAddr, msg: Msg) {
        match msg {
            Msg::Ping { seq, target } => {
                if target == self.name {
                    self.send(from, vec![Msg::Ack { seq }]);
                }
            }
            Msg::IndirectPing { seq, target, target_addr } => {
                self.seq = self.seq.wrapping_add(1);
                let own = self.seq;
                // The requester gave up on its direct ping after the probe timeout and settles
                // the probe at the end of the interval: the nack must arrive before that.
                let c = &self.config;
                let window = c.probe_timeout_ms.min(c.probe_interval_ms.saturating_sub(c.probe_timeout_ms));
                let nack_at_ms = now_ms + window * 8 / 10;
                self.relays.insert(own, Relay { requester: from, requester_seq: seq, nack_at_ms });
                self.send(target_addr, vec![Msg::Ping { seq: own, target }]);
            }
            Msg::Ack { seq } => self.on_ack(now_ms, seq),
            Msg::Nack { seq } => {
                if let Some(p) = self.probe.as_mut().filter(|p| p.seq == seq) {
                    p.nacks += 1;
                }
            }
            m @ Msg::Alive { .. } => self.on_alive(now_ms, m),
            m @ Msg::Suspect { .. } => self.on_suspect(now_ms, m),
            m @ Msg::Dead { .. } => self.on_dead(now_ms, m),
            m @ Msg::Left { .. } => self.on_left(now_ms, m),
            Msg::UserEvent(event) => self.on_user_event(event),
        }
    }

    /// A user event heard of: delivered and gossiped on the first time, ignored after.
    fn on_user_event(&mut self, event: UserEvent) {
        if event.check().is_err() {
            self.stats.malformed += 1;
            return;
        }
        // Serf's witness: events fired here from now on are later than this one.
        self.event_clock = self.event_clock.max(event.ltime.saturating_add(1));
        if !self.seen_events.insert(&event.id) {
            return;
        }
        if self.broadcasts.count_prefix(EVENT_KEY_PREFIX) < crate::limits::USER_EVENTS_PENDING_MAX {
            let msg = Msg::UserEvent(event.clone());
            self.broadcasts.push(&UserEvent::broadcast_key(&event.id), wire::encode_msg(&msg));
        }
        self.outputs.push_back(Output::Event(Event::User(event)));
    }

    fn on_alive(&mut self, now_ms: u64, msg: Msg) {
        let Msg::Alive { incarnation, ref node, addr, ref tags } = msg else { return };
        if wire::check_tags(tags).is_err() {
            self.stats.malformed += 1;
            return;
        }
        if *node == self.name {
            let me = &self.members[&self.name];
            let ours =
                incarnation < me.incarnation || (incarnation == me.incarnation && addr == me.addr && *tags == me.tags);
            if !ours && !self.leaving {
                // News of an older life of ours (or an impostor): refute with a newer incarnation.
                self.refute(incarnation);
            }
            return;
        }
        let event = match self.members.get_mut(node.as_str()) {
            None => {
                let m = Member {
                    name: node.clone(),
                    addr,
                    tags: tags.clone(),
                    incarnation,
                    state: MemberState::Alive,
                    state_change_ms: now_ms,
                };
                // A newcomer joins the current round at a random place.
                let pos = self.round_pos + (self.rng.next_u64() as usize) % (self.round.len() - self.round_pos + 1);
                self.round.insert(pos, node.clone());
                self.members.insert(node.clone(), m.clone());
                Event::Joined(m)
            }
            Some(m) => {
                if incarnation <= m.incarnation {
                    return;
                }
                if m.addr != addr && m.is_live() {
                    // Two live members claim one name: keep the one we know.
                    return;
                }
                let was_down = !m.is_live();
                let changed = m.addr != addr || m.tags != *tags;
                m.incarnation = incarnation;
                m.addr = addr;
                m.tags = tags.clone();
                if m.state != MemberState::Alive {
                    m.state = MemberState::Alive;
                    m.state_change_ms = now_ms;
                }
                let m = m.clone();
                self.suspicions.remove(node.as_str());
                if was_down {
                    Event::Joined(m)
                } else if changed {
                    Event::Updated(m)
                } else {
                    self.queue(&msg);
                    return;
                }
            }
        };
        self.queue(&msg);
        self.outputs.push_back(Output::Event(event));
    }

    fn on_suspect(&mut self, now_ms: u64, msg: Msg) {
        let Msg::Suspect { incarnation, ref node, ref from } = msg else { return };
        let Some(m) = self.members.get(node.as_str()) else { return };
        if incarnation < m.incarnation {
            return;
        }
        if let Some(s) = self.suspicions.get_mut(node.as_str()) {
            if incarnation == s.incarnation && s.confirm(from) {
                self.queue(&msg);
            }
            return;
        }
        if m.state != MemberState::Alive {
            return;
        }
        if *node == self.name {
            if !self.leaving {
                self.refute(incarnation);
                if self.config.lifeguard {
                    self.awareness.apply(1);
                }
            }
            return;
        }
        let n = self.num_live();
        let min = self.config.suspicion_min_ms(n);
        let (k, max) = if self.config.lifeguard {
            let k = self.config.suspicion_mult.saturating_sub(2);
            let k = if (n as u32).saturating_sub(2) < k { 0 } else { k };
            (k, min * self.config.suspicion_max_timeout_mult as u64)
        } else {
            (0, min)
        };
        self.suspicions.insert(node.clone(), Suspicion::new(now_ms, incarnation, from, k, min, max));
        let m = self.members.get_mut(node.as_str()).expect("checked");
        m.incarnation = incarnation;
        m.state = MemberState::Suspect;
        m.state_change_ms = now_ms;
        self.stats.suspicions_started += 1;
        self.queue(&msg);
    }

    fn on_dead(&mut self, now_ms: u64, msg: Msg) {
        let Msg::Dead { incarnation, ref node, .. } = msg else { return };
        if self.members.get(node.as_str()).is_some_and(|m| incarnation >= m.incarnation && m.is_live()) {
            self.mark_down(now_ms, msg, MemberState::Dead);
        }
    }

    fn on_left(&mut self, now_ms: u64, msg: Msg) {
        let Msg::Left { incarnation, ref node } = msg else { return };
        if self.members.get(node.as_str()).is_some_and(|m| incarnation >= m.incarnation && m.state != MemberState::Left)
        {
            self.mark_down(now_ms, msg, MemberState::Left);
        }
    }

    /// Accepted news that a member is dead or left (`msg`): record, pass on, report it — or,
    /// about ourselves (someone failed or forced us out, or an earlier life left), refute it.
    fn mark_down(&mut self, now_ms: u64, msg: Msg, state: MemberState) {
        let (Msg::Dead { incarnation, node, .. } | Msg::Left { incarnation, node }) = &msg else { return };
        let (incarnation, node) = (*incarnation, node.clone());
        if node == self.name {
            if !self.leaving {
                self.refute(incarnation);
            }
            return;
        }
        self.suspicions.remove(&node);
        let Some(m) = self.members.get_mut(&node) else { return };
        m.incarnation = incarnation;
        m.state = state;
        m.state_change_ms = now_ms;
        let m = m.clone();
        self.queue(&msg);
        let event = if state == MemberState::Left { Event::Left(m) } else { Event::Failed(m) };
        self.outputs.push_back(Output::Event(event));
    }

    /// Someone believes something older about us: announce a newer incarnation.
    fn refute(&mut self, incarnation: u32) {
        self.stats.refutations += 1;
        let me = self.members.get_mut(&self.name).expect("self is a member");
        me.incarnation = me.incarnation.max(incarnation) + 1;
        let msg = alive_msg(me);
        self.queue(&msg);
    }

    // ---- dissemination ----

    fn queue(&mut self, msg: &Msg) {
        if let Some(node) = msg.subject() {
            let node = node.to_string();
            self.broadcasts.push(&node, wire::encode_msg(msg));
        }
    }

    /// Sends `primary` messages to `to`, filling the rest of the datagram with news.
    fn send(&mut self, to: SocketAddr, primary: Vec<Msg>) {
        let mut packet = PacketBuilder::new(self.config.packet_max_bytes);
        for m in &primary {
            packet.push(&wire::encode_msg(m));
        }
        self.piggyback(&mut packet);
        self.emit(to, packet);
    }

    fn piggyback(&mut self, packet: &mut PacketBuilder) {
        let limit = self.config.retransmit_limit(self.num_live());
        self.broadcasts.take(limit, |bytes| {
            if packet.room() < 16 {
                Take::Full
            } else if packet.push(bytes) {
                Take::Taken
            } else {
                Take::Skip
            }
        });
    }

    fn emit(&mut self, to: SocketAddr, packet: PacketBuilder) {
        if packet.is_empty() {
            return;
        }
        let bytes = packet.finish();
        self.stats.packets_sent += 1;
        self.stats.packet_bytes_sent += bytes.len() as u64;
        self.outputs.push_back(Output::Packet { to, bytes });
    }

    fn gossip_round(&mut self, now_ms: u64) {
        if self.broadcasts.len() == 0 {
            return;
        }
        let dead_window = self.config.gossip_to_dead_ms;
        let me = self.name.clone();
        let targets = self.random_members(self.config.gossip_nodes, |m| {
            m.name != me
                && match m.state {
                    MemberState::Alive | MemberState::Suspect => true,
                    MemberState::Dead => now_ms.saturating_sub(m.state_change_ms) < dead_window,
                    MemberState::Left => false,
                }
        });
        for name in targets {
            let addr = self.members[&name].addr;
            let mut packet = PacketBuilder::new(self.config.packet_max_bytes);
            self.piggyback(&mut packet);
            self.emit(addr, packet);
        }
    }

    fn push_pull(&mut self, _now_ms: u64) {
        let me = self.name.clone();
        let Some(target) = self.random_members(1, |m| m.state == MemberState::Alive && m.name != me).pop() else {
            return;
        };
        let addr = self.members[&target].addr;
        let bytes = wire::encode_stream(&StreamMsg::PushPull { join: false, states: self.push_states() });
        self.open_stream(addr, StreamKind::PushPull, 0, bytes);
    }

    /// Serf's reconnect: with probability failed/alive, a push-pull with one random failed
    /// member. If it is in fact alive (a healed partition), each side learns that the other
    /// believes it dead and refutes.
    fn reconnect(&mut self) {
        let failed = self.members.values().filter(|m| m.state == MemberState::Dead).count();
        if failed == 0 {
            return;
        }
        let alive = self.num_live().max(1);
        // Draw in [0, alive): go ahead when the draw falls below `failed`.
        if (self.rng.next_u64() % alive as u64) >= failed as u64 {
            return;
        }
        let Some(target) = self.random_members(1, |m| m.state == MemberState::Dead).pop() else { return };
        let addr = self.members[&target].addr;
        let bytes = wire::encode_stream(&StreamMsg::PushPull { join: false, states: self.push_states() });
        self.open_stream(addr, StreamKind::PushPull, 0, bytes);
    }

    fn open_stream(&mut self, to: SocketAddr, kind: StreamKind, seq: u32, bytes: Vec<u8>) -> u64 {
        self.next_token += 1;
        let token = self.next_token;
        self.streams.insert(token, (kind, seq));
        self.stats.streams_opened += 1;
        self.stats.stream_bytes_sent += bytes.len() as u64;
        self.outputs.push_back(Output::Stream { to, token, kind, bytes });
        token
    }

    fn push_states(&self) -> Vec<PushState> {
        self.members
            .values()
            .map(|m| PushState {
                name: m.name.clone(),
                addr: m.addr,
                tags: m.tags.clone(),
                incarnation: m.incarnation,
                state: m.state.into(),
            })
            .collect()
    }

    /// Takes in another member's full state (memberlist's `mergeState`): a remote death is only
    /// a suspicion here, so that one member's mistake does not kill without a timeout.
    fn merge(&mut self, now_ms: u64, states: Vec<PushState>) {
        for s in states {
            let msg = match s.state {
                WireState::Alive => Msg::Alive { incarnation: s.incarnation, node: s.name, addr: s.addr, tags: s.tags },
                WireState::Left => Msg::Left { incarnation: s.incarnation, node: s.name },
                WireState::Dead | WireState::Suspect => {
                    Msg::Suspect { incarnation: s.incarnation, node: s.name, from: self.name.clone() }
                }
            };
            match msg {
                m @ Msg::Alive { .. } => self.on_alive(now_ms, m),
                m @ Msg::Left { .. } => self.on_left(now_ms, m),
                m => self.on_suspect(now_ms, m),
            }
        }
    }

    fn reap(&mut self, now_ms: u64) {
        let (failed, left) = (self.config.reconnect_timeout_ms, self.config.tombstone_timeout_ms);
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| m.name != self.name)
            .filter(|m| match m.state {
                MemberState::Dead => now_ms.saturating_sub(m.state_change_ms) >= failed,
                MemberState::Left => now_ms.saturating_sub(m.state_change_ms) >= left,
                _ => false,
            })
            .map(|m| m.name.clone())
            .collect();
        for name in gone {
            self.rtt_ms.remove(&name);
            if let Some(m) = self.members.remove(&name) {
                self.broadcasts.remove(&name);
                self.outputs.push_back(Output::Event(Event::Reaped(m)));
            }
        }
    }

    /// Up to `n` distinct random members passing `keep`, by name.
    fn random_members(&mut self, n: usize, keep: impl Fn(&Member) -> bool) -> Vec<String> {
        let mut names: Vec<&String> = self.members.values().filter(|m| keep(m)).map(|m| &m.name).collect();
        let mut picked = Vec::with_capacity(n.min(names.len()));
        while picked.len() < n && !names.is_empty() {
            let i = (self.rng.next_u64() % names.len() as u64) as usize;
            picked.push(names.swap_remove(i).clone());
        }
        picked
    }
}

fn alive_msg(m: &Member) -> Msg {
    Msg::Alive { incarnation: m.incarnation, node: m.name.clone(), addr: m.addr, tags: m.tags.clone() }
}

fn shuffle(rng: &mut ChaCha8Rng, v: &mut [String]) {
    for i in (1..v.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
}
