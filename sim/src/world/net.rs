//! Raft and server-to-server RPCs over madsim's simulated network.
//!
//! One request type ([`Rpc`]) and one answer type ([`RpcReply`]) carry every message between
//! simulated processes: Raft's AppendEntries / Vote / PreVote / full snapshot, the servers'
//! forwarding ([`ServerRequest`]), and client calls into a server's API ([`ClientCall`]).
//! madsim delivers them as typed values (no serialisation) with its seeded latency, loss and
//! partitions. Every call has a timeout: a partitioned peer answers nothing.

use std::future::Future;
use std::io::Cursor;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use legate_core::catalog::{Command, Query, Session};
use legate_core::raft::{NodeId, ServerNode, TypeConfig};
use legate_runtime::server::{QueryOptions, ServerRequest, ServerResponse, Transport};
use madsim::net::Endpoint;
use openraft::alias::{SnapshotMetaOf, SnapshotOf, VoteOf};
use openraft::errors::{RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse};
use openraft::{AnyError, OptionalSend};
use serde::{Deserialize, Serialize};

use crate::MadsimRuntime;

/// openraft's type configuration in the simulator.
pub type Tc = TypeConfig<MadsimRuntime>;

/// A call a client makes to a server's API — what the HTTP handlers do in the agent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientCall {
    Write(Command),
    Read { opts: QueryOptions, query: Query },
    CreateSession(Session),
    RenewSession(String),
}

/// Every message between simulated processes.
#[derive(Serialize, Deserialize)]
pub enum Rpc {
    Append(AppendEntriesRequest<Tc>),
    Vote(VoteRequest<Tc>),
    PreVote(VoteRequest<Tc>),
    Snapshot { vote: VoteOf<Tc>, meta: SnapshotMetaOf<Tc>, data: Vec<u8> },
    Server(ServerRequest),
    Client(ClientCall),
}

/// The answer to an [`Rpc`]; `Err` carries a remote failure as text.
#[derive(Serialize, Deserialize)]
pub enum RpcReply {
    Append(Result<AppendEntriesResponse<Tc>, String>),
    Vote(Result<VoteResponse<Tc>, String>),
    Snapshot(Result<SnapshotResponse<Tc>, String>),
    Server(ServerResponse),
    Client(ServerResponse),
}

impl madsim::net::rpc::Request for Rpc {
    type Response = RpcReply;
    const ID: u64 = 0x4c45_4741_5445; // "LEGATE"
}

/// Parses a server's `host:port`.
pub fn addr_of(node: &ServerNode) -> Result<SocketAddr, String> {
    node.rpc_addr.parse().map_err(|e| format!("bad address {:?}: {e}", node.rpc_addr))
}

fn unreachable(e: impl std::fmt::Display) -> Unreachable<Tc> {
    Unreachable::new(&AnyError::error(e.to_string()))
}

/// Calls `target` with a timeout.
pub async fn call(endpoint: &Endpoint, target: SocketAddr, rpc: Rpc, timeout: Duration) -> Result<RpcReply, String> {
    endpoint.call_timeout(target, rpc, timeout).await.map_err(|e| format!("{target}: {e}"))
}

/// openraft's network factory: one [`Peer`] per target, all sharing this node's endpoint.
#[derive(Clone)]
pub struct SimNetwork {
    pub endpoint: Arc<Endpoint>,
}

/// A connection to one peer.
pub struct Peer {
    endpoint: Arc<Endpoint>,
    target: ServerNode,
}

impl RaftNetworkFactory<Tc> for SimNetwork {
    type Network = Peer;

    async fn new_client(&mut self, _target: NodeId, node: &ServerNode) -> Peer {
        Peer { endpoint: self.endpoint.clone(), target: node.clone() }
    }
}

impl Peer {
    async fn call(&self, rpc: Rpc, timeout: Duration) -> Result<RpcReply, Unreachable<Tc>> {
        let addr = addr_of(&self.target).map_err(unreachable)?;
        call(&self.endpoint, addr, rpc, timeout).await.map_err(unreachable)
    }
}

impl RaftNetworkV2<Tc> for Peer {
    type SnapshotData = Cursor<Vec<u8>>;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<Tc>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<Tc>, RPCError<Tc>> {
        match self.call(Rpc::Append(rpc), option.soft_ttl()).await? {
            RpcReply::Append(Ok(r)) => Ok(r),
            RpcReply::Append(Err(e)) => Err(RPCError::Unreachable(unreachable(e))),
            _ => Err(RPCError::Unreachable(unreachable("mismatched reply"))),
        }
    }

    async fn vote(&mut self, rpc: VoteRequest<Tc>, option: RPCOption) -> Result<VoteResponse<Tc>, RPCError<Tc>> {
        match self.call(Rpc::Vote(rpc), option.soft_ttl()).await? {
            RpcReply::Vote(Ok(r)) => Ok(r),
            RpcReply::Vote(Err(e)) => Err(RPCError::Unreachable(unreachable(e))),
            _ => Err(RPCError::Unreachable(unreachable("mismatched reply"))),
        }
    }

    async fn pre_vote(&mut self, rpc: VoteRequest<Tc>, option: RPCOption) -> Result<VoteResponse<Tc>, RPCError<Tc>> {
        match self.call(Rpc::PreVote(rpc), option.soft_ttl()).await? {
            RpcReply::Vote(Ok(r)) => Ok(r),
            RpcReply::Vote(Err(e)) => Err(RPCError::Unreachable(unreachable(e))),
            _ => Err(RPCError::Unreachable(unreachable("mismatched reply"))),
        }
    }

    async fn full_snapshot(
        &mut self,
        vote: VoteOf<Tc>,
        snapshot: SnapshotOf<Tc, Self::SnapshotData>,
        _cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<Tc>, StreamingError<Tc>> {
        let rpc = Rpc::Snapshot { vote, meta: snapshot.meta, data: snapshot.snapshot.into_inner() };
        match self.call(rpc, option.hard_ttl()).await.map_err(StreamingError::Unreachable)? {
            RpcReply::Snapshot(Ok(r)) => Ok(r),
            RpcReply::Snapshot(Err(e)) => Err(StreamingError::Unreachable(unreachable(e))),
            _ => Err(StreamingError::Unreachable(unreachable("mismatched reply"))),
        }
    }
}

/// Server-to-server forwarding over the same endpoint.
#[derive(Clone)]
pub struct SimTransport {
    pub endpoint: Arc<Endpoint>,
}

impl Transport for SimTransport {
    async fn call(
        &self,
        target: &ServerNode,
        request: ServerRequest,
        timeout: Duration,
    ) -> Result<ServerResponse, String> {
        let addr = addr_of(target)?;
        match call(&self.endpoint, addr, Rpc::Server(request), timeout).await? {
            RpcReply::Server(r) => Ok(r),
            _ => Err("mismatched reply".into()),
        }
    }
}
