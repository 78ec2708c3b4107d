//! The gossip state machine on a tiny in-memory network (instant delivery, 1 ms per hop).
//! The simulator (`sim`, `cargo test -p sim gossip`) runs it at scale with loss, latency,
//! partitions and slow nodes.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use proptest::prelude::*;

use super::suspicion::timeout_ms;
use super::*;

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, i as u8 + 1], 8301))
}

fn name(i: usize) -> String {
    format!("n{i}")
}

/// Members on a lossless network; `down` members neither send nor receive.
struct Net {
    now: u64,
    nodes: Vec<Gossip>,
    down: BTreeSet<usize>,
    /// While set, members on different sides (below / at or above it) cannot talk.
    split_at: Option<usize>,
    events: Vec<(usize, Event)>,
    /// Datagrams in flight: (deliver at, to, from, bytes).
    wire: Vec<(u64, usize, SocketAddr, Vec<u8>)>,
    largest_packet: usize,
    /// Extra milliseconds on every datagram to or from a member.
    slow: BTreeMap<usize, u64>,
}

impl Net {
    fn new(n: usize, config: Config) -> Net {
        let nodes =
            (0..n).map(|i| Gossip::new(0, config.clone(), &name(i), addr(i), tags(i), i as u64).unwrap()).collect();
        let mut net = Net {
            now: 0,
            nodes,
            down: BTreeSet::new(),
            split_at: None,
            events: Vec::new(),
            wire: Vec::new(),
            largest_packet: 0,
            slow: BTreeMap::new(),
        };
        for i in 1..n {
            net.nodes[i].join(0, &[addr(0)]);
        }
        net.drain();
        net
    }

    fn cut(&self, a: usize, b: usize) -> bool {
        self.down.contains(&a) || self.down.contains(&b) || self.split_at.is_some_and(|s| (a < s) != (b < s))
    }

    fn index_of(&self, a: SocketAddr) -> Option<usize> {
        self.nodes.iter().position(|g| g.local().addr == a)
    }

    /// Carries out every output: datagrams go on the wire, streams are answered at once.
    fn drain(&mut self) {
        loop {
            let mut any = false;
            for i in 0..self.nodes.len() {
                while let Some(out) = self.nodes[i].poll_output() {
                    any = true;
                    self.carry(i, out);
                }
            }
            if !any {
                return;
            }
        }
    }

    fn carry(&mut self, from: usize, out: Output) {
        let from_addr = self.nodes[from].local().addr;
        match out {
            Output::Packet { to, bytes } => {
                self.largest_packet = self.largest_packet.max(bytes.len());
                if let Some(j) = self.index_of(to) {
                    let extra = self.slow.get(&from).unwrap_or(&0) + self.slow.get(&j).unwrap_or(&0);
                    self.wire.push((self.now + 1 + extra, j, from_addr, bytes));
                }
            }
            Output::Stream { to, token, bytes, .. } => {
                let reply = match self.index_of(to) {
                    Some(j) if !self.cut(from, j) => self.nodes[j].handle_stream(self.now, from_addr, &bytes),
                    _ => None,
                };
                self.nodes[from].handle_stream_reply(self.now, token, reply.as_deref());
            }
            Output::Event(e) => self.events.push((from, e)),
        }
    }

    /// Runs until `until_ms`, one millisecond at a time.
    fn run_until(&mut self, until_ms: u64) {
        while self.now < until_ms {
            self.now += 1;
            let now = self.now;
            let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.wire).into_iter().partition(|p| p.0 <= now);
            self.wire = later;
            for (_, to, from, bytes) in due {
                let sender = self.index_of(from).expect("a member sent it");
                if !self.cut(sender, to) {
                    self.nodes[to].handle_packet(now, from, &bytes);
                }
            }
            for i in 0..self.nodes.len() {
                if !self.down.contains(&i) && self.nodes[i].poll_timeout().is_some_and(|t| t <= now) {
                    self.nodes[i].handle_timeout(now);
                }
            }
            self.drain();
        }
    }

    fn state(&self, observer: usize, of: usize) -> Option<MemberState> {
        self.nodes[observer].member(&name(of)).map(|m| m.state)
    }

    /// True when every live member sees `of` in `state`.
    fn all_see(&self, of: usize, state: MemberState) -> bool {
        (0..self.nodes.len()).filter(|i| !self.down.contains(i) && *i != of).all(|i| self.state(i, of) == Some(state))
    }

    /// Runs until `cond` holds, at most `limit_ms` more; the time it took.
    fn run_until_true(&mut self, limit_ms: u64, cond: impl Fn(&Net) -> bool) -> Option<u64> {
        let start = self.now;
        while self.now < start + limit_ms {
            if cond(self) {
                return Some(self.now - start);
            }
            self.run_until(self.now + 10);
        }
        cond(self).then(|| self.now - start)
    }
}

fn tags(i: usize) -> BTreeMap<String, String> {
    BTreeMap::from([("role".to_string(), if i < 3 { "consul" } else { "node" }.to_string())])
}

#[test]
fn members_joining_through_one_seed_all_see_each_other() {
    let mut net = Net::new(8, Config::lan());
    // Each join told the seed; gossip tells everyone else.
    let took = net.run_until_true(5_000, |n| n.nodes.iter().all(|g| g.members().count() == 8));
    assert!(took.is_some(), "everyone knows everyone within 5 s");
    for i in 0..8 {
        assert!(net.nodes[i].members().all(|m| m.state == MemberState::Alive));
    }
    assert_eq!(net.nodes[5].member("n2").unwrap().tags["role"], "consul", "tags travel");
    net.run_until(30_000);
    assert!(net.events.iter().all(|(_, e)| !matches!(e, Event::Failed(_))), "no failure on a healthy network");
    assert!(net.largest_packet <= Config::lan().packet_max_bytes);
}

#[test]
fn a_crashed_member_is_suspected_then_failed_everywhere() {
    let config = Config::lan();
    let mut net = Net::new(10, config.clone());
    net.run_until(5_000);
    net.down.insert(7);
    let took = net.run_until_true(60_000, |n| n.all_see(7, MemberState::Dead)).expect("failure detected");
    // A probe round reaches it within n probe intervals, then the suspicion timeout runs: at
    // most its maximum (6 × 4 × 1 s with 10 members), shortened by confirmations.
    let bound = 10 * config.probe_interval_ms + 6 * config.suspicion_min_ms(10) + 2_000;
    assert!(took <= bound, "detected in {took} ms, bound {bound} ms");
    let failed: BTreeSet<usize> =
        net.events.iter().filter(|(_, e)| matches!(e, Event::Failed(m) if m.name == "n7")).map(|(i, _)| *i).collect();
    assert_eq!(failed.len(), 9, "every live member reported the failure once: {failed:?}");
    assert!(net.events.iter().all(|(_, e)| !matches!(e, Event::Failed(m) if m.name != "n7")), "no false positive");
}

#[test]
fn direct_probes_measure_round_trip_times_and_forget_reaped_members() {
    let mut config = Config::lan();
    config.reconnect_timeout_ms = 30_000;
    let mut net = Net::new(4, config);
    // n3 is far: 40 ms more each way.
    net.slow.insert(3, 40);
    net.run_until(30_000);
    let rtt = net.nodes[0].rtt_ms().clone();
    assert_eq!(rtt.get("n1"), Some(&2), "one millisecond each way: {rtt:?}");
    let far = rtt.get("n3").copied().expect("n3 was probed");
    assert!((70..=82).contains(&far), "n3 is 82 ms away (smoothed from the first sample): {far}");
    assert!(!rtt.contains_key("n0"), "no entry for itself");
    net.down.insert(3);
    let reaped = net.run_until_true(120_000, |n| n.nodes[0].member("n3").is_none());
    assert!(reaped.is_some(), "n3 failed and was reaped");
    assert!(!net.nodes[0].rtt_ms().contains_key("n3"), "a reaped member's time is forgotten");
}

#[test]
fn the_two_sides_of_a_long_partition_find_each_other_after_it_heals() {
    let mut net = Net::new(8, Config::lan());
    net.run_until(3_000);
    net.split_at = Some(4);
    // Long enough that each side declared the other dead and stopped gossiping to it.
    net.run_until(net.now + 120_000);
    assert!((0..4).all(|i| (4..8).all(|j| net.state(i, j) == Some(MemberState::Dead))), "each side failed the other");
    net.split_at = None;
    let all_alive = |n: &Net| (0..8).all(|j| n.all_see(j, MemberState::Alive));
    let took = net.run_until_true(5 * 60_000, all_alive).expect("the pool is whole again");
    assert!(took <= 3 * 60_000, "healed in {took} ms");
}

#[test]
fn a_restarted_member_refutes_its_death_and_is_alive_again() {
    let mut net = Net::new(6, Config::lan());
    net.run_until(3_000);
    net.down.insert(4);
    net.run_until_true(60_000, |n| n.all_see(4, MemberState::Dead)).expect("failure detected");
    let dead_incarnation = net.nodes[0].member("n4").unwrap().incarnation;
    // A fresh process: incarnation 0 again, so its first alive message is ignored until it
    // learns of its death and refutes it.
    net.nodes[4] = Gossip::new(net.now, Config::lan(), "n4", addr(4), tags(4), 99).unwrap();
    net.down.remove(&4);
    let now = net.now;
    net.nodes[4].join(now, &[addr(1)]);
    net.drain();
    net.run_until_true(30_000, |n| n.all_see(4, MemberState::Alive)).expect("alive again everywhere");
    assert!(net.nodes[0].member("n4").unwrap().incarnation > dead_incarnation);
    assert!(net
        .events
        .iter()
        .any(|(i, e)| *i == 0 && matches!(e, Event::Joined(m) if m.name == "n4" && m.incarnation > 0)));
}

#[test]
fn a_graceful_leave_is_left_everywhere_not_failed() {
    let mut net = Net::new(6, Config::lan());
    net.run_until(3_000);
    let now = net.now;
    net.nodes[2].leave(now);
    net.drain();
    net.run_until_true(5_000, |n| n.nodes[2].leave_propagated()).expect("leave propagated");
    net.down.insert(2);
    net.run_until_true(5_000, |n| n.all_see(2, MemberState::Left)).expect("left everywhere");
    net.run_until(net.now + 60_000);
    assert!(net.all_see(2, MemberState::Left), "still left, never failed");
    assert!(!net.events.iter().any(|(_, e)| matches!(e, Event::Failed(_))));
}

#[test]
fn force_leave_turns_a_failed_member_into_a_left_one() {
    let mut net = Net::new(5, Config::lan());
    net.run_until(2_000);
    assert!(net.nodes[0].force_leave(net.now, "n3").is_err(), "an alive member cannot be forced out");
    assert!(net.nodes[0].force_leave(net.now, "nobody").is_err());
    net.down.insert(3);
    net.run_until_true(60_000, |n| n.all_see(3, MemberState::Dead)).expect("failure detected");
    let now = net.now;
    net.nodes[0].force_leave(now, "n3").unwrap();
    net.drain();
    net.run_until_true(5_000, |n| n.all_see(3, MemberState::Left)).expect("left everywhere");
}

#[test]
fn failed_and_left_members_are_reaped_after_their_timeouts() {
    let config = Config { reconnect_timeout_ms: 40_000, tombstone_timeout_ms: 20_000, ..Config::lan() };
    let mut net = Net::new(5, config);
    net.run_until(2_000);
    let now = net.now;
    net.nodes[1].leave(now);
    net.drain();
    net.run_until(now + 2_000);
    net.down.insert(1);
    net.down.insert(2);
    net.run_until(net.now + 90_000);
    for i in [0, 3, 4] {
        assert!(net.nodes[i].member("n1").is_none() && net.nodes[i].member("n2").is_none(), "reaped at {i}");
    }
    let reaped = net.events.iter().filter(|(i, e)| *i == 0 && matches!(e, Event::Reaped(_))).count();
    assert_eq!(reaped, 2);
}

#[test]
fn a_suspicion_of_ourselves_is_refuted_with_a_higher_incarnation() {
    let mut g = Gossip::new(0, Config::lan(), "me", addr(0), BTreeMap::new(), 1).unwrap();
    let mut p = wire::PacketBuilder::new(1400);
    p.push(&wire::encode_msg(&Msg::Alive { incarnation: 0, node: "x".into(), addr: addr(1), tags: BTreeMap::new() }));
    p.push(&wire::encode_msg(&Msg::Suspect { incarnation: 0, node: "me".into(), from: "x".into() }));
    g.handle_packet(10, addr(1), &p.finish());
    assert_eq!(g.local().incarnation, 1);
    assert_eq!(g.stats().refutations, 1);
    assert_eq!(g.health_score(), 1, "having to refute counts against our own health");
    assert_eq!(g.local().state, MemberState::Alive);
}

#[test]
fn a_probe_of_a_suspect_carries_the_suspicion_first() {
    let mut g = Gossip::new(0, Config::lan(), "me", addr(0), BTreeMap::new(), 1).unwrap();
    let mut p = wire::PacketBuilder::new(1400);
    p.push(&wire::encode_msg(&Msg::Alive { incarnation: 3, node: "x".into(), addr: addr(1), tags: BTreeMap::new() }));
    p.push(&wire::encode_msg(&Msg::Alive { incarnation: 0, node: "y".into(), addr: addr(2), tags: BTreeMap::new() }));
    p.push(&wire::encode_msg(&Msg::Alive { incarnation: 0, node: "z".into(), addr: addr(3), tags: BTreeMap::new() }));
    p.push(&wire::encode_msg(&Msg::Suspect { incarnation: 3, node: "x".into(), from: "y".into() }));
    g.handle_packet(1, addr(2), &p.finish());
    while g.poll_output().is_some() {}
    // Probe until x is the target.
    let first = loop {
        let now = g.poll_timeout().unwrap();
        g.handle_timeout(now);
        let pings: Vec<_> = std::iter::from_fn(|| g.poll_output())
            .filter_map(|o| match o {
                Output::Packet { to, bytes } if to == addr(1) => Some(wire::decode_packet(&bytes).unwrap().0),
                _ => None,
            })
            .filter(|msgs| msgs.iter().any(|m| matches!(m, Msg::Ping { .. })))
            .collect();
        if let Some(msgs) = pings.into_iter().next() {
            break msgs;
        }
        assert!(now < 20_000, "x was never probed");
    };
    assert!(
        matches!(&first[0], Msg::Suspect { node, .. } if node == "x"),
        "buddy: the suspicion comes first: {first:?}"
    );
    assert!(matches!(&first[1], Msg::Ping { target, .. } if target == "x"));
}

#[test]
fn a_relay_nacks_a_silent_target_before_the_requester_settles_its_probe() {
    for config in [Config::lan(), Config::wan(), Config::local()] {
        let mut g = Gossip::new(0, config.clone(), "relay", addr(0), BTreeMap::new(), 1).unwrap();
        let mut p = wire::PacketBuilder::new(1400);
        p.push(&wire::encode_msg(&Msg::IndirectPing { seq: 7, target: "t".into(), target_addr: addr(2) }));
        g.handle_packet(0, addr(1), &p.finish());
        while g.poll_output().is_some() {}
        let nacked_at = loop {
            let at = g.poll_timeout().unwrap();
            g.handle_timeout(at);
            let nack = std::iter::from_fn(|| g.poll_output()).any(|o| match o {
                Output::Packet { to, bytes } if to == addr(1) => {
                    wire::decode_packet(&bytes).unwrap().0.contains(&Msg::Nack { seq: 7 })
                }
                _ => false,
            });
            if nack || at > config.probe_interval_ms {
                break at;
            }
        };
        assert!(nacked_at < config.probe_interval_ms - config.probe_timeout_ms, "nack at {nacked_at} ms: {config:?}");
    }
}

#[test]
fn confirmations_shorten_a_suspicion_to_its_minimum() {
    let (min, max) = (4_000, 24_000);
    assert_eq!(timeout_ms(0, 2, min, max), max);
    assert_eq!(timeout_ms(2, 2, min, max), min);
    let one = timeout_ms(1, 2, min, max);
    assert!(min < one && one < max);
    assert_eq!(timeout_ms(0, 0, min, max), min, "no confirmations expected: the minimum");
    let mut s = suspicion::Suspicion::new(100, 1, "a", 2, min, max);
    assert_eq!(s.deadline_ms, 100 + max);
    assert!(!s.confirm("a"), "the first suspector does not confirm itself");
    assert!(s.confirm("b"));
    assert_eq!(s.deadline_ms, 100 + one);
    assert!(s.confirm("c"));
    assert!(!s.confirm("d"), "k confirmations is the floor");
    assert_eq!(s.deadline_ms, 100 + min);
}

#[test]
fn consuls_timer_scaling() {
    let lan = Config::lan();
    assert_eq!(lan.suspicion_min_ms(5), 4_000);
    assert_eq!(lan.suspicion_min_ms(1_000), 12_000, "4 · log10(1000) · 1 s");
    assert_eq!(lan.retransmit_limit(5), 4);
    assert_eq!(lan.retransmit_limit(1_000), 16, "4 · ⌈log10(1001)⌉");
    assert_eq!(lan.push_pull_interval_for(32), 30_000);
    assert_eq!(lan.push_pull_interval_for(1_000), 30_000 * 6, "one more interval per doubling above 32");
    let wan = Config::wan();
    assert_eq!((wan.probe_interval_ms, wan.probe_timeout_ms, wan.suspicion_mult), (5_000, 3_000, 6));
}

#[test]
fn oversized_tags_are_refused() {
    let big = BTreeMap::from([("k".to_string(), "v".repeat(600))]);
    assert!(matches!(Gossip::new(0, Config::lan(), "me", addr(0), big.clone(), 1), Err(WireError::TagsTooLarge(_))));
    let mut g = Gossip::new(0, Config::lan(), "me", addr(0), BTreeMap::new(), 1).unwrap();
    assert!(g.set_tags(0, big).is_err());
    g.set_tags(0, tags(0)).unwrap();
    assert_eq!(g.local().incarnation, 1);
}

#[test]
fn a_full_news_queue_fills_packets_without_exceeding_the_limit() {
    let mut g = Gossip::new(0, Config::lan(), "me", addr(0), BTreeMap::new(), 1).unwrap();
    let mut states = Vec::new();
    for i in 0..300 {
        states.push(wire::PushState {
            name: format!("member-with-a-longish-name-{i}"),
            addr: addr(i % 200),
            tags: tags(i),
            incarnation: 0,
            state: wire::WireState::Alive,
        });
    }
    let bytes = wire::encode_stream(&wire::StreamMsg::PushPull { join: true, states });
    assert!(g.handle_stream(0, addr(1), &bytes).is_some());
    assert_eq!(g.members().count(), 301);
    let mut packets = 0;
    for t in 1..2_000 {
        g.handle_timeout(t);
        while let Some(out) = g.poll_output() {
            if let Output::Packet { bytes, .. } = out {
                assert!(bytes.len() <= 1_400, "{} bytes", bytes.len());
                packets += 1;
            }
        }
    }
    assert!(packets > 10);
}

fn user_event(id: &str, name: &str, payload: &[u8]) -> UserEvent {
    UserEvent {
        id: id.to_string(),
        name: name.to_string(),
        payload: payload.to_vec(),
        node_filter: String::new(),
        service_filter: String::new(),
        tag_filter: String::new(),
        ltime: 0,
    }
}

/// How many times each member delivered the event with `id`.
fn deliveries(net: &Net, id: &str) -> Vec<usize> {
    (0..net.nodes.len())
        .map(|i| net.events.iter().filter(|(at, e)| *at == i && matches!(e, Event::User(u) if u.id == id)).count())
        .collect()
}

#[test]
fn a_user_event_reaches_every_member_exactly_once() {
    let mut net = Net::new(6, Config::lan());
    assert!(net.run_until_true(5_000, |n| n.nodes.iter().all(|g| g.members().count() == 6)).is_some());
    let now = net.now;
    let sent = net.nodes[4].user_event(now, user_event("e-1", "deploy", b"v2")).unwrap();
    assert_eq!(sent.ltime, 0, "the first event of a pool");
    net.drain();

    let took = net.run_until_true(5_000, |n| deliveries(n, "e-1").iter().all(|c| *c >= 1));
    assert!(took.is_some(), "every member hears of the event within 5 s: {:?}", deliveries(&net, "e-1"));
    // Long after the news stopped: still exactly once each, with what was fired.
    net.run_until(net.now + 20_000);
    assert_eq!(deliveries(&net, "e-1"), vec![1; 6], "each member delivers the event once");
    for (_, e) in &net.events {
        if let Event::User(u) = e {
            assert_eq!((u.name.as_str(), u.payload.as_slice(), u.ltime), ("deploy", &b"v2"[..], 0));
        }
    }
    assert!(net.nodes.iter().all(|g| g.pending_broadcasts() == 0), "event news is dropped after its retransmits");
    assert!(net.events.iter().all(|(_, e)| !matches!(e, Event::Failed(_))), "events disturb no membership");

    // The event clock moved on everywhere: the next event is later.
    let now = net.now;
    let next = net.nodes[1].user_event(now, user_event("e-2", "deploy", b"")).unwrap();
    assert_eq!(next.ltime, 1);
}

#[test]
fn user_events_do_not_replace_member_news_or_each_other() {
    let mut g = Gossip::new(0, Config::lan(), "me", addr(0), BTreeMap::new(), 1).unwrap();
    g.set_tags(0, tags(0)).unwrap();
    assert_eq!(g.pending_broadcasts(), 1);
    g.user_event(0, user_event("a", "x", b"")).unwrap();
    g.user_event(0, user_event("b", "x", b"")).unwrap();
    assert_eq!(g.pending_broadcasts(), 3, "member news and two events, each under its own key");
    assert_eq!(g.user_event(0, user_event("a", "x", b"")), Err(UserEventError::DuplicateId), "an ID fires once");
    let delivered: Vec<_> =
        std::iter::from_fn(|| g.poll_output()).filter(|o| matches!(o, Output::Event(Event::User(_)))).collect();
    assert_eq!(delivered.len(), 2, "each fired event is delivered here too");
}

#[test]
fn bad_user_events_are_refused() {
    let mut g = Gossip::new(0, Config::lan(), "me", addr(0), BTreeMap::new(), 1).unwrap();
    assert_eq!(g.user_event(0, user_event("a", "", b"")), Err(UserEventError::EmptyName));
    assert_eq!(g.user_event(0, user_event("", "x", b"")), Err(UserEventError::BadId));
    let big = vec![b'p'; crate::limits::USER_EVENT_SIZE_MAX_BYTES];
    assert!(matches!(g.user_event(0, user_event("a", "x", &big)), Err(UserEventError::TooLarge(513))));
    let fits = vec![b'p'; crate::limits::USER_EVENT_SIZE_MAX_BYTES - 1];
    assert!(g.user_event(0, user_event("a", "x", &fits)).is_ok(), "name and payload at the limit fit");
    for i in 1..crate::limits::USER_EVENTS_PENDING_MAX {
        g.user_event(0, user_event(&format!("id-{i}"), "x", b"")).unwrap();
    }
    assert_eq!(g.user_event(0, user_event("one-more", "x", b"")), Err(UserEventError::Busy), "the queue is bounded");
}

#[test]
fn a_heard_event_is_delivered_once_and_the_record_of_ids_is_bounded() {
    let mut g = Gossip::new(0, Config::lan(), "me", addr(0), BTreeMap::new(), 1).unwrap();
    let packet = |e: UserEvent| {
        let mut p = PacketBuilder::new(1_400);
        assert!(p.push(&wire::encode_msg(&Msg::UserEvent(e))));
        p.finish()
    };
    g.handle_packet(1, addr(1), &packet(user_event("x", "deploy", b"")));
    g.handle_packet(2, addr(2), &packet(user_event("x", "deploy", b"")));
    let count = |g: &mut Gossip| {
        std::iter::from_fn(|| g.poll_output()).filter(|o| matches!(o, Output::Event(Event::User(_)))).count()
    };
    assert_eq!(count(&mut g), 1, "a duplicate is not delivered");
    let limit = crate::limits::USER_EVENT_IDS_SEEN_MAX;
    for i in 0..limit {
        g.handle_packet(3, addr(1), &packet(user_event(&format!("y{i}"), "deploy", b"")));
    }
    assert_eq!(count(&mut g), limit);
    // "x" was forgotten to make room: it would be delivered again; the newest are remembered.
    g.handle_packet(4, addr(1), &packet(user_event(&format!("y{}", limit - 1), "deploy", b"")));
    assert_eq!(count(&mut g), 0);
    g.handle_packet(4, addr(1), &packet(user_event("x", "deploy", b"")));
    assert_eq!(count(&mut g), 1);
    let too_big = user_event("z", "deploy", &vec![0; crate::limits::USER_EVENT_SIZE_MAX_BYTES + 1]);
    let before = g.stats().malformed;
    g.handle_packet(5, addr(1), &packet(too_big));
    assert_eq!((count(&mut g), g.stats().malformed), (0, before + 1), "an oversized event is dropped and counted");
}

proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let mut g = Gossip::new(0, Config::lan(), "me", addr(0), BTreeMap::new(), 1).unwrap();
        g.handle_packet(1, addr(1), &bytes);
        let _ = g.handle_stream(1, addr(1), &bytes);
        let mut framed = vec![0x4c, 3];
        framed.extend_from_slice(&bytes);
        g.handle_packet(2, addr(1), &framed);
        g.handle_timeout(5_000);
        while g.poll_output().is_some() {}
    }
}
