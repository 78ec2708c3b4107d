//! The catalog state machine that Raft applies: nodes, services, checks, KV, sessions,
//! prepared queries.
//!
//! [`Catalog::apply`] is pure: the same sequence of `(index, Request)` gives the same state and
//! the same responses on every replica. It reads no clock (the leader's stamp in the request is
//! its only notion of time) and iterates only ordered maps.
//!
//! Every apply records which [`WatchKey`]s it changed; the caller drains them with
//! [`Catalog::take_touched`] and hands them to [`crate::watch::Watchers::fire`].
//!
//! Reads live in [`query`]: each returns an [`Answer`] carrying the result, its index (for
//! `X-Consul-Index` and blocking) and the watch set it was computed from.

mod command;
mod kv;
pub mod prepared;
pub mod query;
mod registry;
mod session;
mod snapshot;
mod txn;
pub mod types;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

pub use command::*;
pub use prepared::{
    FailoverPlan, PreparedQuery, PreparedQueryOp, QueryDns, QueryExecution, QueryFailover, ServiceQuery,
};
pub use query::{Answer, Query, QueryValue};
pub use snapshot::{CatalogSnapshot, ARCHIVE_MAGIC};
pub use types::*;

use crate::plant::Planted;
use crate::watch::WatchKey;

/// The last index at which each kind of record changed (Consul's table indexes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableIndexes {
    pub nodes: u64,
    pub services: u64,
    pub checks: u64,
    pub kv: u64,
    pub sessions: u64,
    /// Absent from logs and snapshots written before prepared queries existed.
    #[serde(default)]
    pub prepared_queries: u64,
}

/// A KV delete's marker, kept so that a prefix's index never goes backwards while it lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tombstone {
    pub index: u64,
    pub at_ms: u64,
}

/// Key of a per-node record: (lower-cased node name, ID).
pub(crate) type NodeScoped = (String, String);

/// The replicated catalog.
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    /// Index of the last applied request.
    last_index: u64,
    nodes: BTreeMap<String, Node>,
    services: BTreeMap<NodeScoped, Service>,
    checks: BTreeMap<NodeScoped, HealthCheck>,
    kv: BTreeMap<String, KvEntry>,
    tombstones: BTreeMap<String, Tombstone>,
    /// Keys in lock-delay, with the (leader-stamped) Unix ms at which the delay ends.
    lock_delays: BTreeMap<String, u64>,
    sessions: BTreeMap<String, Session>,
    /// Prepared queries by (lower-case) ID.
    prepared_queries: BTreeMap<String, PreparedQuery>,
    tables: TableIndexes,
    /// Last change of anything a `/v1/health/service/<name>` answer shows, by name key.
    service_index: BTreeMap<String, u64>,
    /// Last change of anything a `/v1/catalog/node/<name>` answer shows, by name key.
    node_index: BTreeMap<String, u64>,

    // Derived indexes, rebuilt from the above on restore.
    services_by_name: BTreeMap<String, BTreeSet<NodeScoped>>,
    node_ids: BTreeMap<String, String>,
    session_locks: BTreeMap<String, BTreeSet<String>>,
    sessions_by_node: BTreeMap<String, BTreeSet<String>>,
    /// Prepared query IDs by lower-cased name.
    query_names: BTreeMap<String, String>,
    /// Prepared query IDs by the session they are bound to.
    queries_by_session: BTreeMap<String, BTreeSet<String>>,

    /// Watch keys changed since the last [`Catalog::take_touched`].
    touched: Vec<WatchKey>,
    /// Open while a transaction runs, to undo it if it fails.
    journal: Option<kv::KvJournal>,
    /// Bugs planted for the simulator's negative scenarios (none in production).
    planted: Planted,
}

impl Catalog {
    pub fn new() -> Self {
        Self::default()
    }

    /// Turns on planted bugs (the simulator's negative scenarios only).
    pub fn set_planted(&mut self, planted: Planted) {
        self.planted = planted;
    }

    /// Index of the last applied request (0 before any).
    pub fn last_index(&self) -> u64 {
        self.last_index
    }

    pub fn tables(&self) -> TableIndexes {
        self.tables
    }

    /// Applies one request at Raft index `index`. Indexes must increase; a request never
    /// panics on its content (bad content is an [`ApplyError`] and changes nothing).
    pub fn apply(&mut self, index: u64, request: &Request) -> Response {
        assert!(index > self.last_index, "apply index {index} not above {}", self.last_index);
        self.last_index = index;
        let now_ms = request.now_ms;
        let response = match &request.command {
            Command::Register(reg) => self.apply_register(index, now_ms, reg),
            Command::Deregister(dereg) => self.apply_deregister(index, now_ms, dereg),
            Command::Kv(op) => self.apply_kv(index, now_ms, op),
            Command::SessionCreate(session) => self.apply_session_create(index, session),
            Command::SessionDestroy { id } => {
                self.invalidate_session(index, now_ms, id);
                Response::Done
            }
            Command::Txn(ops) => self.apply_txn(index, now_ms, ops),
            Command::ReapTombstones { age_ms } => {
                self.reap(now_ms.saturating_sub(*age_ms), now_ms);
                Response::Done
            }
            Command::Restore(snap) => self.apply_restore(index, snap),
            Command::PreparedQuery(op) => self.apply_prepared_query(index, op),
        };
        #[cfg(debug_assertions)]
        self.check_invariants();
        response
    }

    /// Records that Raft applied an entry with no catalog effect (a blank or membership
    /// entry), so that `last_index` follows the log.
    pub fn apply_noop(&mut self, index: u64) {
        // Raft's very first entry (the initial membership) sits at index 0.
        assert!(index > self.last_index || index == 0, "apply index {index} not above {}", self.last_index);
        self.last_index = index;
    }

    /// Drains the watch keys changed by applies since the last call.
    pub fn take_touched(&mut self) -> Vec<WatchKey> {
        std::mem::take(&mut self.touched)
    }

    fn touch(&mut self, key: WatchKey) {
        self.touched.push(key);
    }

    fn reap(&mut self, before_ms: u64, now_ms: u64) {
        self.tombstones.retain(|_, t| t.at_ms >= before_ms);
        self.lock_delays.retain(|_, until| *until > now_ms);
    }

    /// Asserts the relations between the primary maps and the derived indexes.
    pub fn check_invariants(&self) {
        if let Err(violation) = self.verify() {
            panic!("catalog invariant violated: {violation}");
        }
    }

    /// Checks the relations between the primary maps and the derived indexes.
    pub fn verify(&self) -> Result<(), String> {
        macro_rules! ensure {
            ($cond:expr, $($msg:tt)+) => {
                if !$cond {
                    return Err(format!($($msg)+));
                }
            };
        }
        for ((nk, id), svc) in &self.services {
            ensure!(self.nodes.contains_key(nk), "service {id} on unknown node {nk}");
            ensure!(&svc.id == id, "service key {id} holds {}", svc.id);
            ensure!(
                self.services_by_name
                    .get(&name_key(&svc.service))
                    .is_some_and(|s| s.contains(&(nk.clone(), id.clone()))),
                "service {id} missing from the name index"
            );
            ensure!(
                svc.create_index <= svc.modify_index && svc.modify_index <= self.last_index,
                "service {id} has indexes {}/{}",
                svc.create_index,
                svc.modify_index
            );
        }
        let by_name: usize = self.services_by_name.values().map(|s| s.len()).sum();
        ensure!(by_name == self.services.len(), "name index holds {by_name} of {} services", self.services.len());
        for ((nk, id), check) in &self.checks {
            ensure!(self.nodes.contains_key(nk), "check {id} on unknown node {nk}");
            ensure!(
                check.service_id.is_empty() || self.services.contains_key(&(nk.clone(), check.service_id.clone())),
                "check {id} of unknown service {}",
                check.service_id
            );
        }
        for (key, entry) in &self.kv {
            ensure!(&entry.key == key, "kv key {key} holds {}", entry.key);
            ensure!(
                entry.create_index <= entry.modify_index && entry.modify_index <= self.last_index,
                "key {key} has indexes {}/{}",
                entry.create_index,
                entry.modify_index
            );
            ensure!(entry.modify_index <= self.tables.kv, "key {key} newer than the kv table");
            if let Some(sid) = &entry.session {
                ensure!(self.sessions.contains_key(sid), "key {key} held by dead session {sid}");
                ensure!(
                    self.session_locks.get(sid).is_some_and(|k| k.contains(key)),
                    "lock of {key} by {sid} not indexed"
                );
            }
        }
        for (sid, keys) in &self.session_locks {
            ensure!(!keys.is_empty(), "empty lock set for {sid}");
            for key in keys {
                ensure!(
                    self.kv.get(key).and_then(|e| e.session.as_ref()) == Some(sid),
                    "lock index says {sid} holds {key}"
                );
            }
        }
        for (sid, session) in &self.sessions {
            let nk = name_key(&session.node);
            ensure!(self.nodes.contains_key(&nk), "session {sid} on unknown node");
            ensure!(
                self.sessions_by_node.get(&nk).is_some_and(|s| s.contains(sid)),
                "session {sid} missing from the node index"
            );
        }
        let by_node: usize = self.sessions_by_node.values().map(|s| s.len()).sum();
        ensure!(by_node == self.sessions.len(), "node index holds {by_node} of {} sessions", self.sessions.len());
        for (key, t) in &self.tombstones {
            ensure!(t.index <= self.tables.kv, "tombstone {key} newer than the kv table");
        }
        self.verify_prepared_queries()
    }
}

#[cfg(test)]
mod tests;
