//! The messages between Legate processes, and the Raft network and forwarding transport built
//! on any carrier of them.
//!
//! One request type ([`Rpc`]) and one answer type ([`RpcReply`]) carry everything: Raft's
//! AppendEntries / Vote / PreVote / full snapshot, the servers' forwarding
//! ([`ServerRequest`]), a client agent's calls into a server ([`ClientCall`]) and the
//! discovery a server does before it bootstraps ([`Rpc::Hello`]).
//!
//! A [`Wire`] delivers one `Rpc` to a server and returns its `RpcReply` within a timeout: the
//! simulator's wire is madsim's network with its faults, the agent's is TCP
//! ([`crate::tcp`]). Given a wire, [`RpcNetwork`] is openraft's network and [`RpcTransport`]
//! the server's forwarding transport; [`dispatch`] serves an `Rpc` on the receiving server.
//! So the simulator and the agent share every message and every handler.

use std::future::Future;
use std::io::Cursor;
use std::time::Duration;

use legate_core::catalog::{Command, Query, Session};
use legate_core::raft::{NodeId, ServerNode, TypeConfig};
use openraft::alias::{SnapshotMetaOf, SnapshotOf, VoteOf};
use openraft::errors::{RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse};
use openraft::{AnyError, AsyncRuntime, OptionalSend, Snapshot};
use serde::{Deserialize, Serialize};

use crate::api::Api;
use crate::federation::Remote;
use crate::server::{
    QueryOptions, RaftStatus, ReadError, Server, ServerRequest, ServerResponse, Transport, WriteError,
};

/// A call a client makes to a server's API: what the HTTP handlers of an agent do, locally
/// on a server agent, over the wire on a client agent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientCall {
    Write(Command),
    Read {
        opts: QueryOptions,
        query: Query,
    },
    CreateSession(Session),
    RenewSession(String),
    /// The Raft status: leader, voters (`/v1/status/*`, `/v1/operator/raft/configuration`).
    Status,
    /// Removes a server from the Raft configuration (`DELETE /v1/operator/raft/peer`).
    RemoveServer {
        id: NodeId,
    },
    /// The datacenters the server knows: its own, then the others nearest first.
    Datacenters,
    /// `call`, served in datacenter `dc`: a client agent asks its own server, which forwards
    /// `call` to a server of `dc` (see [`crate::federation`]). Never nested.
    Forward {
        dc: String,
        call: Box<ClientCall>,
    },
}

impl ClientCall {
    /// Whether the call only reads: answering it twice does no harm.
    pub fn is_read(&self) -> bool {
        match self {
            ClientCall::Read { .. } | ClientCall::Status | ClientCall::Datacenters => true,
            ClientCall::Forward { call, .. } => call.is_read(),
            _ => false,
        }
    }

    /// What the caller sees when the call cannot be served: a failed read or a failed write.
    pub fn failed(&self, read: ReadError, write: WriteError) -> ServerResponse {
        if self.is_read() {
            ServerResponse::ReadFailed(read)
        } else {
            ServerResponse::WriteFailed(write)
        }
    }
}

/// Who a server is, and whether it already belongs to a cluster: the answer to
/// [`Rpc::Hello`], which servers exchange until `bootstrap_expect` of them have been seen.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerInfo {
    pub raft_id: NodeId,
    pub node: ServerNode,
    pub datacenter: String,
    /// How many servers this one waits for before bootstrapping (0: it never bootstraps).
    pub bootstrap_expect: u32,
    /// Whether it has Raft state (a log, a vote or a membership): it is in a cluster already.
    pub initialized: bool,
    pub status: RaftStatus,
}

impl ServerInfo {
    /// What `server` says about itself. It is initialized once it has a Raft configuration
    /// (bootstrapped, or contacted by a leader).
    pub fn of<Rt: AsyncRuntime, T: Transport>(server: &Server<Rt, T>, bootstrap_expect: u32) -> ServerInfo {
        let config = server.config();
        let status = server.status();
        ServerInfo {
            raft_id: config.raft_id,
            node: ServerNode { name: config.node.node.clone(), rpc_addr: config.rpc_addr.clone() },
            datacenter: config.node.datacenter.clone(),
            bootstrap_expect,
            initialized: !status.servers.is_empty(),
            status,
        }
    }
}

/// Every message between Legate processes.
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub enum Rpc<C: openraft::RaftTypeConfig> {
    Append(AppendEntriesRequest<C>),
    Vote(VoteRequest<C>),
    PreVote(VoteRequest<C>),
    Snapshot {
        vote: VoteOf<C>,
        meta: SnapshotMetaOf<C>,
        data: Vec<u8>,
    },
    Server(ServerRequest),
    Client(ClientCall),
    /// "Who are you?" — carries the caller's own info.
    Hello(Box<ServerInfo>),
}

/// The answer to an [`Rpc`]; `Err` carries a remote failure as text.
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub enum RpcReply<C: openraft::RaftTypeConfig> {
    Append(Result<AppendEntriesResponse<C>, String>),
    Vote(Result<VoteResponse<C>, String>),
    Snapshot(Result<SnapshotResponse<C>, String>),
    Server(ServerResponse),
    Client(ServerResponse),
    Hello(Box<ServerInfo>),
}

impl<C: openraft::RaftTypeConfig> Rpc<C> {
    /// The kind of message, for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Rpc::Append(_) => "append",
            Rpc::Vote(_) => "vote",
            Rpc::PreVote(_) => "pre-vote",
            Rpc::Snapshot { .. } => "snapshot",
            Rpc::Server(_) => "server",
            Rpc::Client(_) => "client",
            Rpc::Hello(_) => "hello",
        }
    }
}

/// Why a [`Wire`] call got no answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WireError {
    pub text: String,
    /// Whether the request may have reached the server (and taken effect). `false` only when
    /// it certainly did not: no connection, handshake refused, nothing sent.
    pub delivered: bool,
}

impl WireError {
    /// A failure after the request may have been delivered.
    pub fn maybe_delivered(text: impl Into<String>) -> WireError {
        WireError { text: text.into(), delivered: true }
    }

    /// A failure before anything was sent.
    pub fn not_delivered(text: impl Into<String>) -> WireError {
        WireError { text: text.into(), delivered: false }
    }
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// Delivers one [`Rpc`] to a server and returns its answer within `timeout`.
pub trait Wire: Clone + Send + Sync + 'static {
    type C: openraft::RaftTypeConfig;

    fn call(
        &self,
        target: &ServerNode,
        rpc: Rpc<Self::C>,
        timeout: Duration,
    ) -> impl Future<Output = Result<RpcReply<Self::C>, WireError>> + Send;
}

fn unreachable<C: openraft::RaftTypeConfig>(e: impl std::fmt::Display) -> Unreachable<C> {
    Unreachable::new(&AnyError::error(e.to_string()))
}

/// openraft's network factory over a [`Wire`]: one [`RpcPeer`] per target.
#[derive(Clone)]
pub struct RpcNetwork<W: Wire>(pub W);

/// openraft's connection to one peer.
pub struct RpcPeer<W: Wire> {
    wire: W,
    target: ServerNode,
}

impl<W: Wire> RaftNetworkFactory<W::C> for RpcNetwork<W>
where
    W::C: openraft::RaftTypeConfig<Node = ServerNode>,
{
    type Network = RpcPeer<W>;

    async fn new_client(
        &mut self,
        _target: <W::C as openraft::RaftTypeConfig>::NodeId,
        node: &ServerNode,
    ) -> RpcPeer<W> {
        RpcPeer { wire: self.0.clone(), target: node.clone() }
    }
}

impl<W: Wire> RpcPeer<W> {
    async fn call(&self, rpc: Rpc<W::C>, timeout: Duration) -> Result<RpcReply<W::C>, Unreachable<W::C>> {
        self.wire.call(&self.target, rpc, timeout).await.map_err(unreachable)
    }

    /// A vote or pre-vote (both answered with a vote reply).
    async fn vote_call(&self, rpc: Rpc<W::C>, option: RPCOption) -> Result<VoteResponse<W::C>, RPCError<W::C>> {
        match self.call(rpc, option.soft_ttl()).await? {
            RpcReply::Vote(Ok(r)) => Ok(r),
            RpcReply::Vote(Err(e)) => Err(RPCError::Unreachable(unreachable(e))),
            _ => Err(RPCError::Unreachable(unreachable("mismatched reply"))),
        }
    }
}

impl<W: Wire> RaftNetworkV2<W::C> for RpcPeer<W>
where
    W::C: openraft::RaftTypeConfig<Node = ServerNode>,
{
    type SnapshotData = Cursor<Vec<u8>>;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<W::C>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<W::C>, RPCError<W::C>> {
        match self.call(Rpc::Append(rpc), option.soft_ttl()).await? {
            RpcReply::Append(Ok(r)) => Ok(r),
            RpcReply::Append(Err(e)) => Err(RPCError::Unreachable(unreachable(e))),
            _ => Err(RPCError::Unreachable(unreachable("mismatched reply"))),
        }
    }

    async fn vote(&mut self, rpc: VoteRequest<W::C>, option: RPCOption) -> Result<VoteResponse<W::C>, RPCError<W::C>> {
        self.vote_call(Rpc::Vote(rpc), option).await
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<W::C>,
        option: RPCOption,
    ) -> Result<VoteResponse<W::C>, RPCError<W::C>> {
        self.vote_call(Rpc::PreVote(rpc), option).await
    }

    async fn full_snapshot(
        &mut self,
        vote: VoteOf<W::C>,
        snapshot: SnapshotOf<W::C, Self::SnapshotData>,
        _cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<W::C>, StreamingError<W::C>> {
        let rpc = Rpc::Snapshot { vote, meta: snapshot.meta, data: snapshot.snapshot.into_inner() };
        match self.call(rpc, option.hard_ttl()).await.map_err(StreamingError::Unreachable)? {
            RpcReply::Snapshot(Ok(r)) => Ok(r),
            RpcReply::Snapshot(Err(e)) => Err(StreamingError::Unreachable(unreachable(e))),
            _ => Err(StreamingError::Unreachable(unreachable("mismatched reply"))),
        }
    }
}

/// Server-to-server forwarding over a [`Wire`].
#[derive(Clone)]
pub struct RpcTransport<W: Wire>(pub W);

impl<W: Wire> Transport for RpcTransport<W> {
    async fn call(
        &self,
        target: &ServerNode,
        request: ServerRequest,
        timeout: Duration,
    ) -> Result<ServerResponse, WireError> {
        match self.0.call(target, Rpc::Server(request), timeout).await? {
            RpcReply::Server(r) => Ok(r),
            _ => Err(WireError::maybe_delivered("mismatched reply")),
        }
    }
}

/// Serves one [`Rpc`] on `server`, which bootstraps once it has seen `bootstrap_expect`
/// servers (what it answers a [`Rpc::Hello`] with) and forwards calls for other datacenters
/// through `remote`.
pub async fn dispatch<Rt: AsyncRuntime, T: Transport, R: Remote>(
    server: &Server<Rt, T>,
    rpc: Rpc<TypeConfig<Rt>>,
    bootstrap_expect: u32,
    remote: &R,
) -> RpcReply<TypeConfig<Rt>> {
    let raft = server.raft();
    match rpc {
        Rpc::Append(r) => {
            let answer = raft.append_entries(r).await.map_err(|e| e.to_string());
            if answer.is_ok() {
                server.note_leader_contact();
            }
            RpcReply::Append(answer)
        }
        Rpc::Vote(r) => RpcReply::Vote(raft.vote(r).await.map_err(|e| e.to_string())),
        Rpc::PreVote(r) => RpcReply::Vote(raft.pre_vote(r).await.map_err(|e| e.to_string())),
        Rpc::Snapshot { vote, meta, data } => {
            let snapshot = Snapshot { meta, snapshot: Cursor::new(data) };
            RpcReply::Snapshot(raft.install_full_snapshot(vote, snapshot).await.map_err(|e| e.to_string()))
        }
        Rpc::Server(request) => RpcReply::Server(server.handle(request).await),
        Rpc::Client(ClientCall::Forward { dc, call }) => {
            let own = &server.config().node.datacenter;
            RpcReply::Client(if matches!(*call, ClientCall::Forward { .. }) {
                let e = "a forwarded call cannot be forwarded again";
                call.failed(ReadError::Internal(e.into()), WriteError::Internal(e.into()))
            } else if dc.eq_ignore_ascii_case(own) {
                serve_call(server, *call).await
            } else {
                remote.serve(&dc, *call).await
            })
        }
        Rpc::Client(ClientCall::Datacenters) => {
            let own = server.config().node.datacenter.clone();
            RpcReply::Client(ServerResponse::Datacenters(std::iter::once(own).chain(remote.datacenters()).collect()))
        }
        Rpc::Client(call) => RpcReply::Client(serve_call(server, call).await),
        Rpc::Hello(caller) => {
            tracing::debug!(caller = %caller.node, initialized = caller.initialized, "hello");
            RpcReply::Hello(Box::new(ServerInfo::of(server, bootstrap_expect)))
        }
    }
}

/// A client's call, served by `api` — a server, exactly as a server agent's HTTP handlers
/// are, or the forwarder to another datacenter's servers.
pub async fn serve_call<A: Api>(api: &A, call: ClientCall) -> ServerResponse {
    match call {
        ClientCall::Write(command) => match api.write(command).await {
            Ok(r) => ServerResponse::Written(r),
            Err(e) => ServerResponse::WriteFailed(e),
        },
        ClientCall::Read { opts, query } => match api.read(&opts, query).await {
            Ok(r) => ServerResponse::Read(r),
            Err(e) => ServerResponse::ReadFailed(e),
        },
        ClientCall::CreateSession(session) => match api.create_session(session).await {
            Ok(r) => ServerResponse::SessionCreated(r),
            Err(e) => ServerResponse::WriteFailed(e),
        },
        ClientCall::RenewSession(id) => match api.renew_session(&id).await {
            Ok(r) => ServerResponse::SessionRenewed(r),
            Err(e) => ServerResponse::WriteFailed(e),
        },
        ClientCall::Status => match api.status().await {
            Ok(status) => ServerResponse::Status(status),
            Err(e) => ServerResponse::ReadFailed(e),
        },
        ClientCall::RemoveServer { id } => match api.remove_server(id).await {
            Ok(()) => ServerResponse::MembershipChanged,
            Err(e) => ServerResponse::WriteFailed(e),
        },
        call @ (ClientCall::Forward { .. } | ClientCall::Datacenters) => {
            let e = "a call for a server's own dispatch reached an API";
            call.failed(ReadError::Internal(e.into()), WriteError::Internal(e.into()))
        }
    }
}
