//! What only the leader does on a timer: expire TTL sessions, reap KV tombstones, and keep
//! its own node registered with a passing `serfHealth` check.
//!
//! Session TTL timers are not replicated (as in Consul): a renewal resets the leader's timer,
//! and a new leader restarts every TTL session's timer from scratch
//! ([`LeaderDuties::handle_became_leader`]), so a leader change never expires a session early.
//!
//! Drain contract: after any `handle_*` call, drain [`LeaderDuties::poll_output`] until `None`.

use std::collections::{BTreeMap, VecDeque};

use crate::catalog::{Command, HealthCheck, Node, Registration, Service, Session, Status};
use crate::limits;
use crate::plant::Planted;

/// The ID and name of the check that tracks a node's membership (Consul's).
pub const SERF_CHECK_ID: &str = "serfHealth";
pub const SERF_CHECK_NAME: &str = "Serf Health Status";
pub const SERF_ALIVE_OUTPUT: &str = "Agent alive and reachable";

/// Something the leader must propose through Raft.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaderOutput {
    /// Propose this command (stamped by the driver). Losing leadership may drop it; the next
    /// leader restarts its own duties.
    Propose(Command),
}

/// Why a timer is armed, for readable traces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TimerReason {
    SessionTtl(String),
    TombstoneReap,
}

/// The leader's timer-driven duties.
#[derive(Debug)]
pub struct LeaderDuties {
    self_node: Node,
    server_port: u16,
    leading: bool,
    session_deadlines: BTreeMap<String, u64>,
    next_reap_ms: Option<u64>,
    outputs: VecDeque<LeaderOutput>,
    /// Bugs planted for the simulator's negative scenarios (none in production).
    planted: Planted,
}

impl LeaderDuties {
    /// `self_node` is this server's catalog record, registered (with the `consul` service on
    /// `server_port`) whenever it becomes leader.
    pub fn new(self_node: Node, server_port: u16) -> Self {
        LeaderDuties {
            self_node,
            server_port,
            leading: false,
            session_deadlines: BTreeMap::new(),
            next_reap_ms: None,
            outputs: VecDeque::new(),
            planted: Planted::default(),
        }
    }

    /// Turns on planted bugs (the simulator's negative scenarios only).
    pub fn set_planted(&mut self, planted: Planted) {
        self.planted = planted;
    }

    pub fn is_leading(&self) -> bool {
        self.leading
    }

    /// This node became leader: register itself and restart every TTL session's timer.
    pub fn handle_became_leader<'a>(&mut self, now_ms: u64, sessions: impl IntoIterator<Item = &'a Session>) {
        self.leading = true;
        self.session_deadlines.clear();
        for s in sessions {
            if let Some(ttl_ms) = s.ttl_ms() {
                self.session_deadlines.insert(s.id.clone(), deadline(now_ms, ttl_ms));
            }
        }
        self.next_reap_ms = Some(now_ms + limits::TOMBSTONE_REAP_INTERVAL_MS);
        self.outputs.push_back(LeaderOutput::Propose(alive_registration(&self.self_node)));
        self.outputs.push_back(LeaderOutput::Propose(server_service_registration(&self.self_node, self.server_port)));
    }

    /// This node is no longer leader: forget every timer.
    pub fn handle_lost_leadership(&mut self) {
        self.leading = false;
        self.session_deadlines.clear();
        self.next_reap_ms = None;
        self.outputs.clear();
    }

    /// A TTL session was created or renewed: its timer restarts.
    pub fn handle_session_renewed(&mut self, now_ms: u64, session: &Session) {
        if !self.leading {
            return;
        }
        if let Some(ttl_ms) = session.ttl_ms() {
            self.session_deadlines.insert(session.id.clone(), deadline(now_ms, ttl_ms));
        }
    }

    /// A session is gone (destroyed or unknown on renewal).
    pub fn handle_session_gone(&mut self, id: &str) {
        self.session_deadlines.remove(id);
    }

    pub fn handle_timeout(&mut self, now_ms: u64) {
        if !self.leading {
            return;
        }
        let expired: Vec<String> =
            self.session_deadlines.iter().filter(|(_, d)| **d <= now_ms).map(|(id, _)| id.clone()).collect();
        for id in expired {
            self.session_deadlines.remove(&id);
            if self.planted.forget_session_invalidation {
                continue; // planted bug: the expired session lives on, with its locks
            }
            self.outputs.push_back(LeaderOutput::Propose(Command::SessionDestroy { id }));
        }
        if self.next_reap_ms.is_some_and(|t| t <= now_ms) {
            self.next_reap_ms = Some(now_ms + limits::TOMBSTONE_REAP_INTERVAL_MS);
            self.outputs.push_back(LeaderOutput::Propose(Command::ReapTombstones { age_ms: limits::TOMBSTONE_TTL_MS }));
        }
    }

    /// The earliest armed timer and why.
    pub fn poll_timeout(&self) -> Option<(u64, TimerReason)> {
        let session = self.session_deadlines.iter().min_by_key(|(id, d)| (**d, (*id).clone()));
        let session = session.map(|(id, d)| (*d, TimerReason::SessionTtl(id.clone())));
        let reap = self.next_reap_ms.map(|t| (t, TimerReason::TombstoneReap));
        match (session, reap) {
            (Some(s), Some(r)) => Some(if s.0 <= r.0 { s } else { r }),
            (s, r) => s.or(r),
        }
    }

    pub fn poll_output(&mut self) -> Option<LeaderOutput> {
        self.outputs.pop_front()
    }
}

fn deadline(now_ms: u64, ttl_ms: u64) -> u64 {
    now_ms.saturating_add(ttl_ms.saturating_mul(limits::SESSION_TTL_MULTIPLIER))
}

/// The `consul` service every server has in the catalog (clients such as Prometheus' Consul
/// discovery find the servers through it).
pub const SERVER_SERVICE: &str = "consul";

/// Registers a server's `consul` service.
pub fn server_service_registration(node: &Node, server_port: u16) -> Command {
    Command::Register(Box::new(Registration {
        node: node.clone(),
        skip_node_update: false,
        service: Some(Service {
            id: SERVER_SERVICE.to_string(),
            service: SERVER_SERVICE.to_string(),
            port: server_port,
            ..Default::default()
        }),
        checks: Vec::new(),
    }))
}

/// The registration that marks a member alive: its node record and a passing `serfHealth`.
pub fn alive_registration(node: &Node) -> Command {
    Command::Register(Box::new(Registration {
        node: node.clone(),
        skip_node_update: false,
        service: None,
        checks: vec![HealthCheck {
            node: node.node.clone(),
            check_id: SERF_CHECK_ID.to_string(),
            name: SERF_CHECK_NAME.to_string(),
            status: Status::Passing,
            output: SERF_ALIVE_OUTPUT.to_string(),
            ..Default::default()
        }],
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(id: &str, ttl: &str) -> Session {
        Session { id: id.into(), ttl: ttl.into(), ..Default::default() }
    }

    #[test]
    fn ttl_sessions_expire_after_twice_their_ttl_unless_renewed() {
        let mut d = LeaderDuties::new(Node { node: "n1".into(), ..Default::default() }, 8300);
        let a = session("a", "10s");
        let b = session("b", "10s");
        d.handle_became_leader(0, [&a, &b, &session("c", "")]);
        assert!(matches!(d.poll_output(), Some(LeaderOutput::Propose(Command::Register(_)))));
        assert!(matches!(d.poll_output(), Some(LeaderOutput::Propose(Command::Register(r))) if r.service.is_some()));
        assert_eq!(d.poll_timeout(), Some((20_000, TimerReason::SessionTtl("a".into()))));
        d.handle_session_renewed(15_000, &b);
        d.handle_timeout(19_999);
        assert_eq!(d.poll_output(), None);
        d.handle_timeout(20_000);
        assert_eq!(d.poll_output(), Some(LeaderOutput::Propose(Command::SessionDestroy { id: "a".into() })));
        assert_eq!(d.poll_output(), None);
        d.handle_timeout(35_000);
        assert_eq!(d.poll_output(), Some(LeaderOutput::Propose(Command::SessionDestroy { id: "b".into() })));
    }

    #[test]
    fn the_planted_forget_session_invalidation_bug_never_expires_a_session() {
        let mut d = LeaderDuties::new(Node::default(), 8300);
        d.set_planted(Planted { forget_session_invalidation: true, ..Planted::default() });
        d.handle_became_leader(0, [&session("a", "10s")]);
        while d.poll_output().is_some() {}
        d.handle_timeout(20_000);
        assert_eq!(d.poll_output(), None, "with the bug planted, nothing is proposed");
    }

    #[test]
    fn a_new_leader_restarts_timers_and_a_follower_has_none() {
        let mut d = LeaderDuties::new(Node::default(), 8300);
        let a = session("a", "10s");
        d.handle_became_leader(0, [&a]);
        d.handle_lost_leadership();
        assert_eq!(d.poll_timeout(), None);
        d.handle_timeout(1_000_000);
        assert_eq!(d.poll_output(), None);
        d.handle_became_leader(1_000_000, [&a]);
        while d.poll_output().is_some() {}
        assert_eq!(d.poll_timeout(), Some((1_020_000, TimerReason::SessionTtl("a".into()))));
    }

    #[test]
    fn tombstones_are_reaped_periodically() {
        let mut d = LeaderDuties::new(Node::default(), 8300);
        d.handle_became_leader(0, []);
        while d.poll_output().is_some() {}
        assert_eq!(d.poll_timeout(), Some((limits::TOMBSTONE_REAP_INTERVAL_MS, TimerReason::TombstoneReap)));
        d.handle_timeout(limits::TOMBSTONE_REAP_INTERVAL_MS);
        assert_eq!(
            d.poll_output(),
            Some(LeaderOutput::Propose(Command::ReapTombstones { age_ms: limits::TOMBSTONE_TTL_MS }))
        );
    }
}
