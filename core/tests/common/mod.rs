//! Random KV and session workloads shared by the catalog's property tests.
//!
//! A workload is a list of [`Op`]s over a few overlapping keys and sessions. Ops are resolved
//! into [`Command`]s against the state they run on, so that CAS indexes are right often enough
//! to matter.

#![allow(dead_code)] // each test binary uses its own part

use legate_core::catalog::{
    Behavior, Catalog, Command, KvOp, KvVerb, Node, Registration, Request, Response, Session, TxnOp,
};
use proptest::prelude::*;

/// Keys that nest and share prefixes.
pub const KEYS: [&str; 5] = ["a", "a/b", "a/c", "ab", "b"];
/// Prefixes listed after every step: the root, each key's, and one that matches nothing.
pub const PREFIXES: [&str; 6] = ["", "a", "a/", "ab", "b", "c"];
/// Sessions; the last is never created, so using it is always an invalid session.
pub const SESSIONS: [&str; 4] = ["s0", "s1", "s2", "ghost"];
/// The node every session lives on.
pub const NODE: &str = "n1";
/// Leader clock at the start of a run (Unix ms).
pub const T0_MS: u64 = 1_700_000_000_000;

/// How a CAS or check index is chosen, relative to the key's current `ModifyIndex` (0 when
/// absent).
#[derive(Clone, Copy, Debug)]
pub enum IndexPick {
    Current,
    Zero,
    Ahead(u64),
    Behind(u64),
}

impl IndexPick {
    pub fn resolve(self, current: u64) -> u64 {
        match self {
            IndexPick::Current => current,
            IndexPick::Zero => 0,
            IndexPick::Ahead(d) => current + d,
            IndexPick::Behind(d) => current.saturating_sub(d),
        }
    }
}

/// One KV operation, as an index into [`KEYS`] / [`PREFIXES`] / [`SESSIONS`].
#[derive(Clone, Copy, Debug)]
pub struct KvStep {
    pub verb: KvVerb,
    pub key: usize,
    pub prefix: usize,
    pub value: u8,
    pub flags: u64,
    pub pick: IndexPick,
    pub session: usize,
}

/// One step of a workload.
#[derive(Clone, Debug)]
pub enum Op {
    Kv(KvStep),
    Txn(Vec<KvStep>),
    SessionCreate {
        session: usize,
        delete: bool,
        lock_delay_s: u64,
    },
    SessionDestroy {
        session: usize,
    },
    /// The leader clock moves on.
    Advance {
        ms: u64,
    },
    ReapTombstones {
        age_ms: u64,
    },
    /// A Raft entry with no catalog effect (blank or membership).
    Noop,
}

/// What a step does to the state machine.
#[derive(Clone, Debug)]
pub enum Step {
    Apply(Command),
    Advance(u64),
    Noop,
}

impl KvStep {
    /// Builds the operation; `modify_of` answers a key's current `ModifyIndex` (0 if absent).
    pub fn resolve(&self, modify_of: &dyn Fn(&str) -> u64) -> KvOp {
        let key = if self.verb == KvVerb::DeleteTree { PREFIXES[self.prefix] } else { KEYS[self.key] };
        let value = if self.value == 0 { Vec::new() } else { vec![b'0' + self.value] };
        let uses_session = matches!(self.verb, KvVerb::Lock | KvVerb::Unlock | KvVerb::CheckSession);
        KvOp {
            verb: self.verb,
            key: key.to_string(),
            value,
            flags: self.flags,
            index: self.pick.resolve(modify_of(key)),
            session: if uses_session { SESSIONS[self.session].to_string() } else { String::new() },
        }
    }
}

impl Op {
    pub fn resolve(&self, modify_of: &dyn Fn(&str) -> u64) -> Step {
        match self {
            Op::Kv(step) => Step::Apply(Command::Kv(step.resolve(modify_of))),
            Op::Txn(steps) => {
                Step::Apply(Command::Txn(steps.iter().map(|s| TxnOp::Kv(s.resolve(modify_of))).collect()))
            }
            Op::SessionCreate { session, delete, lock_delay_s } => Step::Apply(Command::SessionCreate(Session {
                id: SESSIONS[*session].to_string(),
                node: NODE.to_string(),
                lock_delay: lock_delay_s * 1_000_000_000,
                behavior: if *delete { Behavior::Delete } else { Behavior::Release },
                ..Default::default()
            })),
            Op::SessionDestroy { session } => {
                Step::Apply(Command::SessionDestroy { id: SESSIONS[*session].to_string() })
            }
            Op::Advance { ms } => Step::Advance(*ms),
            Op::ReapTombstones { age_ms } => Step::Apply(Command::ReapTombstones { age_ms: *age_ms }),
            Op::Noop => Step::Noop,
        }
    }
}

/// The real state machine with its apply index and leader clock.
pub struct Driver {
    pub catalog: Catalog,
    pub index: u64,
    pub now_ms: u64,
}

impl Driver {
    /// A catalog holding node `n1` (at index 1), with no touched keys pending.
    pub fn new() -> Self {
        let mut driver = Driver { catalog: Catalog::new(), index: 0, now_ms: T0_MS };
        let node = Node { node: NODE.into(), address: "10.0.0.1".into(), ..Default::default() };
        let registered = driver.apply(Command::Register(Box::new(Registration { node, ..Default::default() })));
        assert_eq!(registered, Response::Done);
        driver.catalog.take_touched();
        driver
    }

    pub fn apply(&mut self, command: Command) -> Response {
        self.index += 1;
        self.catalog.apply(self.index, &Request { now_ms: self.now_ms, command })
    }

    /// Runs one step; only applied commands answer.
    pub fn step(&mut self, step: &Step) -> Option<Response> {
        match step {
            Step::Apply(command) => Some(self.apply(command.clone())),
            Step::Advance(ms) => {
                self.now_ms += ms;
                None
            }
            Step::Noop => {
                self.index += 1;
                self.catalog.apply_noop(self.index);
                None
            }
        }
    }

    pub fn modify_of(&self, key: &str) -> u64 {
        self.catalog.kv_get(key).value.map_or(0, |e| e.modify_index)
    }
}

fn index_pick() -> impl Strategy<Value = IndexPick> {
    prop_oneof![
        4 => Just(IndexPick::Current),
        1 => Just(IndexPick::Zero),
        1 => (1u64..4).prop_map(IndexPick::Ahead),
        1 => (1u64..4).prop_map(IndexPick::Behind),
    ]
}

fn kv_step(verbs: Vec<KvVerb>) -> impl Strategy<Value = KvStep> {
    (
        prop::sample::select(verbs),
        0..KEYS.len(),
        0..PREFIXES.len(),
        0u8..3,
        0u64..2,
        index_pick(),
        prop_oneof![6 => 0usize..3, 1 => Just(3usize)],
    )
        .prop_map(|(verb, key, prefix, value, flags, pick, session)| KvStep {
            verb,
            key,
            prefix,
            value,
            flags,
            pick,
            session,
        })
}

/// The verbs of the plain KV endpoint.
pub const KV_WRITE_VERBS: [KvVerb; 7] =
    [KvVerb::Set, KvVerb::Cas, KvVerb::Lock, KvVerb::Unlock, KvVerb::Delete, KvVerb::DeleteCas, KvVerb::DeleteTree];

/// Every KV verb of `/v1/txn`.
pub const TXN_VERBS: [KvVerb; 13] = [
    KvVerb::Set,
    KvVerb::Cas,
    KvVerb::Lock,
    KvVerb::Unlock,
    KvVerb::Get,
    KvVerb::GetOrEmpty,
    KvVerb::GetTree,
    KvVerb::CheckIndex,
    KvVerb::CheckSession,
    KvVerb::CheckNotExists,
    KvVerb::Delete,
    KvVerb::DeleteTree,
    KvVerb::DeleteCas,
];

fn session_create() -> impl Strategy<Value = Op> {
    (0usize..3, any::<bool>(), prop_oneof![1 => Just(0u64), 3 => 1u64..=3])
        .prop_map(|(session, delete, lock_delay_s)| Op::SessionCreate { session, delete, lock_delay_s })
}

/// One random step: mostly KV writes, with sessions coming and going and time passing.
pub fn op() -> impl Strategy<Value = Op> {
    // Lock-heavy: locks are where sessions, lock-delays and lock indexes meet.
    let mut plain = KV_WRITE_VERBS.to_vec();
    plain.extend([KvVerb::Lock, KvVerb::Lock, KvVerb::Lock, KvVerb::Unlock, KvVerb::Set]);
    prop_oneof![
        20 => kv_step(plain).prop_map(Op::Kv),
        3 => prop::collection::vec(kv_step(TXN_VERBS.to_vec()), 1..5).prop_map(Op::Txn),
        6 => session_create(),
        3 => (0usize..3).prop_map(|session| Op::SessionDestroy { session }),
        // Quarter seconds, so that lock-delays (whole seconds) often end exactly on a step.
        4 => (0u64..8).prop_map(|quarters| Op::Advance { ms: quarters * 250 }),
        1 => (0u64..20_000).prop_map(|age_ms| Op::ReapTombstones { age_ms }),
        1 => Just(Op::Noop),
    ]
}

/// A workload of 11 to 59 steps that opens with a few sessions, so that locks have holders.
pub fn workload() -> impl Strategy<Value = Vec<Op>> {
    (prop::collection::vec(session_create(), 1..4), prop::collection::vec(op(), 10..57)).prop_map(
        |(mut sessions, ops)| {
            sessions.extend(ops);
            sessions
        },
    )
}
