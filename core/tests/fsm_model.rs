//! Model-based test: the catalog's KV and sessions agree with a small reference model.
//!
//! Random workloads (sets, CAS, locks, deletes, transactions, sessions coming and going,
//! lock-delays, time passing, tombstone reaps) run against both [`Catalog`] and [`Model`],
//! a plain-map restatement of Consul's rules (`/work/shared/consul-compat.md`, "KV", "Txn",
//! "Sessions and locks", "Blocking queries"). After every step the answer, every key, every
//! listing and its index must agree, and the catalog's invariants must hold:
//! `verify()` passes, query indexes are >= 1, a prefix's index never goes back until a reap,
//! no `ModifyIndex` exceeds the applied index, and a fresh acquisition raises `LockIndex`.

mod common;

use std::collections::BTreeMap;

use common::{Driver, KvStep, Op, Step, KEYS, PREFIXES};
use legate_core::catalog::{
    ApplyError, Behavior, Command, KvEntry, KvOp, KvVerb, Response, Session, TxnError, TxnOp, TxnOutcome, TxnResult,
};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

#[derive(Clone, Copy, Debug)]
struct SessionModel {
    delete: bool,
    lock_delay_ms: u64,
}

/// Why an acquire did not happen, or the entry it stored.
enum Acquire {
    InvalidSession,
    Held,
    Delayed,
    Stored(KvEntry),
}

/// The reference: Consul's KV and session rules over plain ordered maps.
#[derive(Clone, Debug, Default)]
struct Model {
    kv: BTreeMap<String, KvEntry>,
    /// Deleted keys: (index of the delete, leader ms of the delete).
    tombstones: BTreeMap<String, (u64, u64)>,
    /// Keys released by an invalidated session, with the ms their lock-delay ends.
    lock_delays: BTreeMap<String, u64>,
    sessions: BTreeMap<String, SessionModel>,
    /// Index of the last KV change.
    kv_table: u64,
}

impl Model {
    fn apply(&mut self, index: u64, now_ms: u64, command: &Command) -> Response {
        match command {
            Command::Kv(op) => self.kv_endpoint(index, now_ms, op),
            Command::Txn(ops) => self.txn(index, now_ms, ops),
            Command::SessionCreate(session) => self.session_create(session),
            Command::SessionDestroy { id } => {
                self.session_destroy(index, now_ms, id);
                Response::Done
            }
            Command::ReapTombstones { age_ms } => {
                let before_ms = now_ms.saturating_sub(*age_ms);
                self.tombstones.retain(|_, (_, at_ms)| *at_ms >= before_ms);
                self.lock_delays.retain(|_, until_ms| *until_ms > now_ms);
                Response::Done
            }
            other => panic!("the workload has no {other:?}"),
        }
    }

    /// Writes an entry; a write that changes nothing keeps the old one (and its indexes).
    fn store(
        &mut self,
        index: u64,
        op: &KvOp,
        value: Vec<u8>,
        flags: u64,
        session: Option<String>,
        lock_index: u64,
    ) -> KvEntry {
        let create_index = self.kv.get(&op.key).map_or(index, |e| e.create_index);
        let entry =
            KvEntry { lock_index, key: op.key.clone(), flags, value, session, create_index, modify_index: index };
        if let Some(old) = self.kv.get(&op.key) {
            let unchanged = KvEntry { modify_index: old.modify_index, ..entry.clone() };
            if *old == unchanged {
                return unchanged;
            }
        }
        self.kv.insert(op.key.clone(), entry.clone());
        self.kv_table = index;
        entry
    }

    fn set(&mut self, index: u64, op: &KvOp) -> KvEntry {
        let (session, lock_index) = self.kv.get(&op.key).map_or((None, 0), |e| (e.session.clone(), e.lock_index));
        self.store(index, op, op.value.clone(), op.flags, session, lock_index)
    }

    fn cas(&mut self, index: u64, op: &KvOp) -> Option<KvEntry> {
        let matches = match self.kv.get(&op.key) {
            None => op.index == 0,
            Some(e) => op.index != 0 && op.index == e.modify_index,
        };
        matches.then(|| self.set(index, op))
    }

    fn lock(&mut self, index: u64, now_ms: u64, op: &KvOp) -> Acquire {
        if !self.sessions.contains_key(&op.session) {
            return Acquire::InvalidSession;
        }
        let lock_index = match self.kv.get(&op.key) {
            Some(e) if e.session.as_ref() == Some(&op.session) => e.lock_index,
            Some(e) if e.session.is_some() => return Acquire::Held,
            existing => {
                if self.lock_delays.get(&op.key).is_some_and(|until_ms| now_ms < *until_ms) {
                    return Acquire::Delayed;
                }
                existing.map_or(1, |e| e.lock_index + 1)
            }
        };
        Acquire::Stored(self.store(index, op, op.value.clone(), op.flags, Some(op.session.clone()), lock_index))
    }

    fn unlock(&mut self, index: u64, op: &KvOp) -> Option<KvEntry> {
        let e = self.kv.get(&op.key)?;
        if e.session.as_ref() != Some(&op.session) {
            return None;
        }
        let lock_index = e.lock_index;
        Some(self.store(index, op, op.value.clone(), op.flags, None, lock_index))
    }

    fn remove(&mut self, index: u64, now_ms: u64, key: &str) {
        if self.kv.remove(key).is_some() {
            self.tombstones.insert(key.to_string(), (index, now_ms));
            self.kv_table = index;
        }
    }

    fn delete_cas(&mut self, index: u64, now_ms: u64, op: &KvOp) -> bool {
        match self.kv.get(&op.key) {
            None => true,
            Some(e) if e.modify_index != op.index => false,
            Some(_) => {
                self.remove(index, now_ms, &op.key);
                true
            }
        }
    }

    fn delete_tree(&mut self, index: u64, now_ms: u64, prefix: &str) {
        let doomed: Vec<String> = self.kv.keys().filter(|k| k.starts_with(prefix)).cloned().collect();
        for key in doomed {
            self.remove(index, now_ms, &key);
        }
    }

    /// `PUT`/`DELETE /v1/kv/...`: a bool, or an error for an unknown session.
    fn kv_endpoint(&mut self, index: u64, now_ms: u64, op: &KvOp) -> Response {
        match op.verb {
            KvVerb::Set => {
                self.set(index, op);
                Response::Bool(true)
            }
            KvVerb::Cas => Response::Bool(self.cas(index, op).is_some()),
            KvVerb::Lock => match self.lock(index, now_ms, op) {
                Acquire::InvalidSession => Response::Error(ApplyError::InvalidSession(op.session.clone())),
                Acquire::Held | Acquire::Delayed => Response::Bool(false),
                Acquire::Stored(_) => Response::Bool(true),
            },
            KvVerb::Unlock => Response::Bool(self.unlock(index, op).is_some()),
            KvVerb::Delete => {
                self.remove(index, now_ms, &op.key);
                Response::Bool(true)
            }
            KvVerb::DeleteCas => Response::Bool(self.delete_cas(index, now_ms, op)),
            KvVerb::DeleteTree => {
                self.delete_tree(index, now_ms, &op.key);
                Response::Bool(true)
            }
            verb => panic!("the plain KV workload has no {verb:?}"),
        }
    }

    /// Every op runs on a scratch copy; the copy is kept only if none failed.
    fn txn(&mut self, index: u64, now_ms: u64, ops: &[TxnOp]) -> Response {
        let mut scratch = self.clone();
        let mut results = Vec::new();
        let mut errors = Vec::new();
        for (op_index, TxnOp::Kv(op)) in ops.iter().enumerate() {
            match scratch.txn_op(index, now_ms, op) {
                Ok(mut r) => results.append(&mut r),
                Err(what) => errors.push(TxnError { op_index, what }),
            }
        }
        if errors.is_empty() {
            *self = scratch;
            Response::Txn(TxnOutcome::Committed(results))
        } else {
            Response::Txn(TxnOutcome::RolledBack(errors))
        }
    }

    /// One txn op with Consul's error texts; write verbs answer the entry without its value,
    /// get verbs with it, deletes nothing.
    fn txn_op(&mut self, index: u64, now_ms: u64, op: &KvOp) -> Result<Vec<TxnResult>, String> {
        let key = &op.key;
        let stripped = |e: KvEntry| vec![TxnResult::Kv(KvEntry { value: Vec::new(), ..e })];
        let full = |e: &KvEntry| vec![TxnResult::Kv(e.clone())];
        match op.verb {
            KvVerb::Set => Ok(stripped(self.set(index, op))),
            KvVerb::Cas => {
                self.cas(index, op).map(stripped).ok_or_else(|| format!("failed to set key {key:?}, index is stale"))
            }
            KvVerb::Lock => match self.lock(index, now_ms, op) {
                Acquire::InvalidSession => Err(format!("invalid session {:?}", op.session)),
                Acquire::Held => Err(format!("failed to lock key {key:?}, lock is already held")),
                Acquire::Delayed => Err(format!("failed to lock key {key:?} due to lock delay")),
                Acquire::Stored(e) => Ok(stripped(e)),
            },
            KvVerb::Unlock => self
                .unlock(index, op)
                .map(stripped)
                .ok_or_else(|| format!("failed to unlock key {key:?}, lock isn't held, or is held by another session")),
            KvVerb::Get => self.kv.get(key).map(full).ok_or_else(|| format!("key {key:?} doesn't exist")),
            KvVerb::GetOrEmpty => {
                let empty = KvEntry { key: key.clone(), ..Default::default() };
                Ok(full(self.kv.get(key).unwrap_or(&empty)))
            }
            KvVerb::GetTree => {
                Ok(self.kv.values().filter(|e| e.key.starts_with(key.as_str())).flat_map(full).collect())
            }
            KvVerb::CheckIndex => {
                let e = self.kv.get(key).ok_or_else(|| format!("failed to check index, key {key:?} doesn't exist"))?;
                if e.modify_index != op.index {
                    return Err(format!(
                        "failed index check for key {key:?}, current modify index {} != {}",
                        e.modify_index, op.index
                    ));
                }
                Ok(stripped(e.clone()))
            }
            KvVerb::CheckSession => {
                let e =
                    self.kv.get(key).ok_or_else(|| format!("failed to check session, key {key:?} doesn't exist"))?;
                let current = e.session.clone().unwrap_or_default();
                if current != op.session {
                    return Err(format!(
                        "failed session check for key {key:?}, current session {current:?} != {:?}",
                        op.session
                    ));
                }
                Ok(stripped(e.clone()))
            }
            KvVerb::CheckNotExists => match self.kv.get(key) {
                Some(_) => Err(format!("key {key:?} exists")),
                None => Ok(Vec::new()),
            },
            KvVerb::Delete => {
                self.remove(index, now_ms, key);
                Ok(Vec::new())
            }
            KvVerb::DeleteTree => {
                self.delete_tree(index, now_ms, key);
                Ok(Vec::new())
            }
            KvVerb::DeleteCas => {
                if self.delete_cas(index, now_ms, op) {
                    Ok(Vec::new())
                } else {
                    Err(format!("failed to delete key {key:?}, index is stale"))
                }
            }
        }
    }

    fn session_create(&mut self, session: &Session) -> Response {
        if self.sessions.contains_key(&session.id) {
            return Response::Error(ApplyError::SessionExists(session.id.clone()));
        }
        let model = SessionModel {
            delete: session.behavior == Behavior::Delete,
            lock_delay_ms: session.lock_delay / 1_000_000,
        };
        self.sessions.insert(session.id.clone(), model);
        Response::Done
    }

    /// Invalidation: each held key is released (or deleted) and enters lock-delay.
    fn session_destroy(&mut self, index: u64, now_ms: u64, id: &str) {
        let Some(session) = self.sessions.remove(id) else {
            return;
        };
        let held: Vec<KvEntry> = self.kv.values().filter(|e| e.session.as_deref() == Some(id)).cloned().collect();
        for e in held {
            if session.delete {
                self.remove(index, now_ms, &e.key);
            } else {
                let op = KvOp::new(KvVerb::Set, e.key.clone());
                self.store(index, &op, e.value, e.flags, None, e.lock_index);
            }
            if session.lock_delay_ms > 0 {
                self.lock_delays.insert(e.key, now_ms + session.lock_delay_ms);
            }
        }
    }

    fn entries_under<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = &'a KvEntry> + 'a {
        self.kv.values().filter(move |e| e.key.starts_with(prefix))
    }

    /// Consul's list index: the root answers the table; a prefix answers its newest entry or
    /// tombstone, else the table.
    fn prefix_index(&self, prefix: &str) -> u64 {
        if prefix.is_empty() {
            return self.kv_table.max(1);
        }
        let entries = self.entries_under(prefix).map(|e| e.modify_index);
        let tombs = self.tombstones.iter().filter(|(k, _)| k.starts_with(prefix)).map(|(_, (i, _))| *i);
        entries.chain(tombs).max().unwrap_or(self.kv_table).max(1)
    }
}

/// Everything after a step: the catalog agrees with the model and keeps its invariants.
fn check_state(fsm: &Driver, model: &Model) -> Result<(), TestCaseError> {
    let c = &fsm.catalog;
    prop_assert_eq!(c.verify(), Ok(()));
    prop_assert_eq!(c.last_index(), fsm.index);
    for key in KEYS {
        let answer = c.kv_get(key);
        prop_assert_eq!(&answer.value, &model.kv.get(key).cloned(), "kv_get({:?})", key);
        let expected_index = answer.value.as_ref().map_or(model.kv_table.max(1), |e| e.modify_index);
        prop_assert_eq!(answer.index, expected_index, "index of kv_get({:?})", key);
        prop_assert!(answer.index >= 1);
    }
    let all = c.kv_list("").value;
    prop_assert_eq!(&all, &model.kv.values().cloned().collect::<Vec<_>>());
    for e in &all {
        prop_assert!(e.create_index >= 1 && e.create_index <= e.modify_index, "indexes of {:?}", e);
        prop_assert!(e.modify_index <= c.last_index(), "{:?} is newer than the applied index", e);
        prop_assert!(e.lock_index >= u64::from(e.session.is_some()), "a held key has a lock index: {:?}", e);
    }
    for prefix in PREFIXES {
        let answer = c.kv_list(prefix);
        let expected: Vec<KvEntry> = model.entries_under(prefix).cloned().collect();
        prop_assert_eq!(&answer.value, &expected, "kv_list({:?})", prefix);
        prop_assert_eq!(answer.index, model.prefix_index(prefix), "index of kv_list({:?})", prefix);
        prop_assert!(answer.index >= 1);
    }
    let sessions: Vec<String> = c.session_list().value.into_iter().map(|s| s.id).collect();
    prop_assert_eq!(sessions, model.sessions.keys().cloned().collect::<Vec<_>>());
    Ok(())
}

/// A successful plain acquire by a session that did not hold the key raises `LockIndex` by
/// one; no step lowers the `LockIndex` of a key that lives through it.
fn check_lock_index(
    step: &KvStep,
    response: &Option<Response>,
    before: &BTreeMap<String, KvEntry>,
    fsm: &Driver,
) -> Result<(), TestCaseError> {
    for (key, old) in before {
        if let Some(new) = fsm.catalog.kv_get(key).value {
            prop_assert!(new.lock_index >= old.lock_index, "LockIndex of {} went back: {:?} -> {:?}", key, old, new);
        }
    }
    if step.verb != KvVerb::Lock || *response != Some(Response::Bool(true)) {
        return Ok(());
    }
    let key = KEYS[step.key];
    let session = common::SESSIONS[step.session];
    let after = fsm.catalog.kv_get(key).value.expect("an acquired key exists");
    prop_assert_eq!(after.session.as_deref(), Some(session));
    let old = before.get(key);
    if old.and_then(|e| e.session.as_deref()) != Some(session) {
        prop_assert_eq!(after.lock_index, old.map_or(0, |e| e.lock_index) + 1, "fresh acquisition of {}", key);
    } else {
        prop_assert_eq!(after.lock_index, old.map_or(0, |e| e.lock_index), "re-acquisition of {}", key);
    }
    Ok(())
}

fn run(ops: &[Op]) -> Result<(), TestCaseError> {
    let mut fsm = Driver::new();
    let mut model = Model::default();
    // The greatest index each prefix has answered since the last reap.
    let mut prefix_floor: BTreeMap<&str, u64> = BTreeMap::new();
    for (n, op) in ops.iter().enumerate() {
        let step = op.resolve(&|key| model.kv.get(key).map_or(0, |e| e.modify_index));
        let before: BTreeMap<String, KvEntry> =
            fsm.catalog.kv_list("").value.into_iter().map(|e| (e.key.clone(), e)).collect();

        let response = fsm.step(&step);
        let predicted = match &step {
            Step::Apply(command) => Some(model.apply(fsm.index, fsm.now_ms, command)),
            Step::Advance(_) | Step::Noop => None,
        };

        prop_assert_eq!(&response, &predicted, "step {}: {:?}", n, step);
        check_state(&fsm, &model)?;
        if let Op::Kv(kv) = op {
            check_lock_index(kv, &response, &before, &fsm)?;
        }
        if matches!(op, Op::ReapTombstones { .. }) {
            prefix_floor.clear();
        }
        for prefix in PREFIXES {
            let index = fsm.catalog.kv_list(prefix).index;
            let floor = prefix_floor.entry(prefix).or_insert(index);
            prop_assert!(index >= *floor, "index of {:?} went back from {} to {} at step {}", prefix, floor, index, n);
            *floor = index;
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn the_catalog_agrees_with_the_model(ops in common::workload()) {
        run(&ops)?;
    }
}
