//! What the Raft log carries ([`Request`]) and what applying it answers ([`Response`]).

use std::fmt;

use serde::{Deserialize, Serialize};

use super::types::{HealthCheck, KvEntry, Node, Service, Session};

/// One Raft log payload: a command plus the wall-clock time (Unix ms) the leader stamped on
/// it when proposing. Everything time-based in `apply` (lock-delay, tombstone ages) reads this
/// stamp and never a clock, so every replica computes the same state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub now_ms: u64,
    pub command: Command,
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.command.name(), self.now_ms)
    }
}

/// A state change of the catalog.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Upsert a node and optionally one service and some checks (`/v1/catalog/register`,
    /// and the agent's sync of its local services and checks).
    Register(Box<Registration>),
    /// Remove a node, or one of its services, or one of its checks.
    Deregister(Deregistration),
    /// One KV operation (`PUT`/`DELETE /v1/kv/...`).
    Kv(KvOp),
    /// Create a session whose ID the proposer chose.
    SessionCreate(Session),
    /// Destroy (invalidate) a session, releasing or deleting its locks.
    SessionDestroy { id: String },
    /// Several operations, all or nothing (`/v1/txn`).
    Txn(Vec<TxnOp>),
    /// Forget KV tombstones (and expired lock-delays) older than `age_ms` at the request's
    /// stamp.
    ReapTombstones { age_ms: u64 },
    /// Replace the whole catalog with a snapshot's (`PUT /v1/snapshot`). Everything restored
    /// gets the restore's index as its create and modify index.
    Restore(Box<super::CatalogSnapshot>),
    /// Create, update or delete a prepared query (`/v1/query`).
    PreparedQuery(Box<super::PreparedQueryOp>),
}

impl Command {
    pub fn name(&self) -> &'static str {
        match self {
            Command::Register(_) => "register",
            Command::Deregister(_) => "deregister",
            Command::Kv(_) => "kv",
            Command::SessionCreate(_) => "session-create",
            Command::SessionDestroy { .. } => "session-destroy",
            Command::Txn(_) => "txn",
            Command::ReapTombstones { .. } => "reap-tombstones",
            Command::Restore(_) => "restore",
            Command::PreparedQuery(_) => "prepared-query",
        }
    }
}

/// A catalog registration (Consul's `RegisterRequest`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    /// The node; its indexes are ignored.
    pub node: Node,
    /// Leave an existing node record as it is.
    pub skip_node_update: bool,
    pub service: Option<Service>,
    pub checks: Vec<HealthCheck>,
}

/// A catalog deregistration (Consul's `DeregisterRequest`): the whole node unless a service
/// or check is named.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deregistration {
    pub node: String,
    pub service_id: Option<String>,
    pub check_id: Option<String>,
}

/// The KV verbs of `/v1/txn` (the plain KV endpoint uses a subset).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvVerb {
    Set,
    Cas,
    Lock,
    Unlock,
    Get,
    GetOrEmpty,
    GetTree,
    CheckIndex,
    CheckSession,
    CheckNotExists,
    Delete,
    DeleteTree,
    DeleteCas,
}

impl KvVerb {
    /// Parses the API spelling (`set`, `delete-cas`, ...).
    pub fn parse(s: &str) -> Option<KvVerb> {
        Some(match s {
            "set" => KvVerb::Set,
            "cas" => KvVerb::Cas,
            "lock" => KvVerb::Lock,
            "unlock" => KvVerb::Unlock,
            "get" => KvVerb::Get,
            "get-or-empty" => KvVerb::GetOrEmpty,
            "get-tree" => KvVerb::GetTree,
            "check-index" => KvVerb::CheckIndex,
            "check-session" => KvVerb::CheckSession,
            "check-not-exists" => KvVerb::CheckNotExists,
            "delete" => KvVerb::Delete,
            "delete-tree" => KvVerb::DeleteTree,
            "delete-cas" => KvVerb::DeleteCas,
            _ => return None,
        })
    }

    /// Whether the verb can change state (a txn of only reads needs no Raft round).
    pub fn is_write(self) -> bool {
        matches!(
            self,
            KvVerb::Set
                | KvVerb::Cas
                | KvVerb::Lock
                | KvVerb::Unlock
                | KvVerb::Delete
                | KvVerb::DeleteTree
                | KvVerb::DeleteCas
        )
    }
}

/// One KV operation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvOp {
    pub verb: KvVerb,
    pub key: String,
    pub value: Vec<u8>,
    pub flags: u64,
    /// The CAS / check index (`cas=`, `Index`).
    pub index: u64,
    /// The session of `lock`, `unlock` and `check-session`.
    pub session: String,
}

impl KvOp {
    pub fn new(verb: KvVerb, key: impl Into<String>) -> Self {
        KvOp { verb, key: key.into(), value: Vec::new(), flags: 0, index: 0, session: String::new() }
    }
}

/// One operation of a transaction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnOp {
    Kv(KvOp),
}

/// One result of a successful transaction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnResult {
    Kv(KvEntry),
}

/// Why one operation of a transaction failed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnError {
    pub op_index: usize,
    pub what: String,
}

/// What a transaction did: all of it, or none of it and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnOutcome {
    Committed(Vec<TxnResult>),
    RolledBack(Vec<TxnError>),
}

/// Why a command could not be applied. The texts are Consul's, which clients parse.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ApplyError {
    #[error("invalid session {0:?}")]
    InvalidSession(String),
    #[error("Missing node registration")]
    MissingNode,
    #[error("Missing service registration")]
    MissingService,
    #[error("Missing check '{0}' registration")]
    MissingCheck(String),
    #[error("Check '{0}' is in critical state")]
    CheckCritical(String),
    #[error("Session ID {0:?} already exists")]
    SessionExists(String),
    #[error("{0}")]
    Invalid(String),
}

/// The answer of applying one [`Request`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// Applied; nothing to report (also the answer to Raft's own blank and membership entries).
    Done,
    /// A conditional operation's outcome (`PUT /v1/kv` answers `true`/`false`).
    Bool(bool),
    /// A transaction's outcome.
    Txn(TxnOutcome),
    /// Rejected; nothing changed.
    Error(ApplyError),
}
