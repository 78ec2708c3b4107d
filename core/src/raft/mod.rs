//! Consensus plumbing: the openraft type configuration and the storage both drivers use.
//!
//! [`TypeConfig`] is generic over the async runtime: the tokio shell instantiates it with
//! openraft's tokio runtime, the simulator with its madsim runtime. Everything else —
//! payloads, log storage, the catalog state machine — is the same code in both.

mod log_store;
mod no_peers;
mod state_machine;

use std::fmt;
use std::marker::PhantomData;

use serde::{Deserialize, Serialize};

pub use log_store::MemLogStore;
pub use no_peers::{NoPeer, NoPeers};
pub use state_machine::{ApplyHook, CatalogStore, PersistSnapshot, WatchGuard, Watched};

use crate::catalog::{Request, Response};

/// A server's Raft identity: a stable numeric id plus what peers need to reach it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerNode {
    /// The node name (as in the catalog).
    pub name: String,
    /// `host:port` of its server RPC listener (Consul's port 8300).
    pub rpc_addr: String,
}

impl fmt::Display for ServerNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.rpc_addr)
    }
}

/// Any openraft configuration with Legate's payload, node and entry types (whatever the
/// runtime): what the storage code is generic over.
pub trait LegateConfig:
    openraft::RaftTypeConfig<
    D = Request,
    R = Response,
    NodeId = NodeId,
    Node = ServerNode,
    Payload = openraft::EntryPayload<Request, NodeId, ServerNode>,
    Entry = openraft::alias::DefaultEntryOf<Self>,
>
{
}

impl<C> LegateConfig for C where
    C: openraft::RaftTypeConfig<
        D = Request,
        R = Response,
        NodeId = NodeId,
        Node = ServerNode,
        Payload = openraft::EntryPayload<Request, NodeId, ServerNode>,
        Entry = openraft::alias::DefaultEntryOf<C>,
    >
{
}

/// Raft node ids are `u64`.
pub type NodeId = u64;

/// The openraft type configuration, over an async runtime `Rt`.
pub struct TypeConfig<Rt>(PhantomData<fn() -> Rt>);

impl<Rt> Clone for TypeConfig<Rt> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<Rt> Copy for TypeConfig<Rt> {}
impl<Rt> Default for TypeConfig<Rt> {
    fn default() -> Self {
        TypeConfig(PhantomData)
    }
}
impl<Rt> PartialEq for TypeConfig<Rt> {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl<Rt> Eq for TypeConfig<Rt> {}
impl<Rt> PartialOrd for TypeConfig<Rt> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<Rt> Ord for TypeConfig<Rt> {
    fn cmp(&self, _: &Self) -> std::cmp::Ordering {
        std::cmp::Ordering::Equal
    }
}
impl<Rt> fmt::Debug for TypeConfig<Rt> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TypeConfig")
    }
}

/// Standard Raft leader ids: at most one leader per term, as in hashicorp/raft (Consul).
/// openraft's default "advanced" ids allow several leaders in one term, ordered by node id.
type LeaderIdOf = openraft::impls::leader_id_std::LeaderId<u64, NodeId>;

impl<Rt: openraft::AsyncRuntime> openraft::RaftTypeConfig for TypeConfig<Rt> {
    type D = Request;
    type R = Response;
    type NodeId = NodeId;
    type Node = ServerNode;
    type Term = u64;
    type LeaderId = LeaderIdOf;
    type Vote = openraft::impls::Vote<LeaderIdOf>;
    type Payload = openraft::EntryPayload<Request, NodeId, ServerNode>;
    type Entry = openraft::Entry<<LeaderIdOf as openraft::vote::RaftLeaderId>::Committed, Self::Payload>;
    type AsyncRuntime = Rt;
    type Responder<T>
        = openraft::impls::ProgressResponder<Self, T>
    where
        T: openraft::OptionalSend + 'static;
    type Batch<T>
        = openraft::impls::InlineBatch<T>
    where
        T: openraft::OptionalSend + 'static;
    type ErrorSource = openraft::impls::BoxedErrorSource;
}
