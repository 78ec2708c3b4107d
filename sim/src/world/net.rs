//! Raft and server-to-server RPCs over madsim's simulated network.
//!
//! One request type ([`Rpc`]) and one answer type ([`RpcReply`]) carry every message between
//! simulated processes: Raft's AppendEntries / Vote / PreVote / full snapshot, the servers'
//! forwarding ([`ServerRequest`]), and client calls into a server's API ([`ClientCall`]).
//! madsim delivers them as typed values (no serialisation) with its seeded latency, loss and
//! partitions. Every call has a timeout: a partitioned peer answers nothing.

use std::future::Future;
use std::io::Cursor;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use legate_core::catalog::{Command, Query, Session};
use legate_core::raft::{NodeId, ServerNode, TypeConfig};
use legate_runtime::server::{QueryOptions, ServerRequest, ServerResponse, Transport};
use madsim::net::Endpoint;
use madsim::rand::{thread_rng, Rng};
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

/// Message faults on the links of one node (or of every node), drawn per message from the
/// seeded RNG. Set by the nemesis; [`LinkFaults::default`] is a perfect network.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LinkFaults {
    /// Probability that a message is lost: half the time the request (nothing happens), half
    /// the time the reply (the request took effect). Either way the caller times out.
    pub drop: f64,
    /// Extra latency, uniform in `0..=delay_max`, on every message.
    pub delay_max: Duration,
    /// Probability that a Raft message is delivered twice (the copy a little later).
    pub duplicate: f64,
    /// Probability that a message is held back by up to [`REORDER_MAX`], so that later
    /// messages overtake it.
    pub reorder: f64,
}

/// The longest a reordered message is held back.
pub const REORDER_MAX: Duration = Duration::from_millis(200);

impl LinkFaults {
    fn is_none(&self) -> bool {
        *self == LinkFaults::default()
    }

    /// The worse of two settings, field by field.
    fn worst(self, other: LinkFaults) -> LinkFaults {
        LinkFaults {
            drop: self.drop.max(other.drop),
            delay_max: self.delay_max.max(other.delay_max),
            duplicate: self.duplicate.max(other.duplicate),
            reorder: self.reorder.max(other.reorder),
        }
    }
}

thread_local! {
    /// Faults by node address (`None`: every link). One simulation runs per thread, so this is
    /// per run; a BTreeMap, so lookups never depend on hash order.
    static LINK_FAULTS: std::cell::RefCell<std::collections::BTreeMap<Option<IpAddr>, LinkFaults>> =
        const { std::cell::RefCell::new(std::collections::BTreeMap::new()) };
}

/// Sets the message faults on every link to or from `node` (`None`: on every link).
pub fn set_link_faults(node: Option<IpAddr>, faults: LinkFaults) {
    LINK_FAULTS.with(|f| {
        let mut f = f.borrow_mut();
        if faults.is_none() {
            f.remove(&node);
        } else {
            f.insert(node, faults);
        }
    });
}

/// The message faults currently set for `node` (`None`: every link).
pub fn link_faults(node: Option<IpAddr>) -> LinkFaults {
    LINK_FAULTS.with(|f| f.borrow().get(&node).copied().unwrap_or_default())
}

/// Removes every message fault.
pub fn clear_link_faults() {
    LINK_FAULTS.with(|f| f.borrow_mut().clear());
}

fn faults_between(from: IpAddr, to: IpAddr) -> LinkFaults {
    LINK_FAULTS.with(|f| {
        let f = f.borrow();
        [None, Some(from), Some(to)]
            .iter()
            .filter_map(|k| f.get(k).copied())
            .fold(LinkFaults::default(), LinkFaults::worst)
    })
}

/// Calls `target` with a timeout, through the message faults in force.
pub async fn call(
    endpoint: &Arc<Endpoint>,
    target: SocketAddr,
    rpc: Rpc,
    timeout: Duration,
) -> Result<RpcReply, String> {
    let from = endpoint.local_addr().map(|a| a.ip()).unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
    let faults = faults_between(from, target.ip());
    if faults.is_none() {
        return endpoint.call_timeout(target, rpc, timeout).await.map_err(|e| format!("{target}: {e}"));
    }
    let started = std::time::Instant::now();
    let remaining = |started: std::time::Instant| timeout.saturating_sub(started.elapsed());
    let mut delay = Duration::ZERO;
    if !faults.delay_max.is_zero() {
        delay += Duration::from_nanos(thread_rng().gen_range(0..=faults.delay_max.as_nanos() as u64));
    }
    if faults.reorder > 0.0 && thread_rng().gen_bool(faults.reorder) {
        delay += Duration::from_nanos(thread_rng().gen_range(0..=REORDER_MAX.as_nanos() as u64));
    }
    if delay >= timeout {
        madsim::time::sleep(timeout).await;
        return Err(format!("{target}: timed out (message delayed)"));
    }
    if !delay.is_zero() {
        madsim::time::sleep(delay).await;
    }
    if faults.duplicate > 0.0 && thread_rng().gen_bool(faults.duplicate) {
        if let Some(copy) = duplicate_of(&rpc) {
            let endpoint = endpoint.clone();
            let lag = Duration::from_millis(thread_rng().gen_range(0..=REORDER_MAX.as_millis() as u64));
            madsim::task::spawn(async move {
                madsim::time::sleep(lag).await;
                let _ = endpoint.call_timeout(target, copy, timeout).await;
            });
        }
    }
    if faults.drop > 0.0 && thread_rng().gen_bool(faults.drop) {
        if thread_rng().gen_bool(0.5) {
            // The reply is lost: the request arrives and takes effect.
            let _ = endpoint.call_timeout(target, rpc, remaining(started)).await;
        }
        madsim::time::sleep(remaining(started)).await;
        return Err(format!("{target}: timed out (message dropped)"));
    }
    endpoint.call_timeout(target, rpc, remaining(started)).await.map_err(|e| format!("{target}: {e}"))
}

/// A copy of a Raft message (the only ones a duplicating network may repeat harmlessly for
/// the protocol to absorb; client and forwarded requests travel over TCP-like connections).
fn duplicate_of(rpc: &Rpc) -> Option<Rpc> {
    match rpc {
        Rpc::Append(r) => Some(Rpc::Append(r.clone())),
        Rpc::Vote(r) => Some(Rpc::Vote(r.clone())),
        Rpc::PreVote(r) => Some(Rpc::PreVote(r.clone())),
        _ => None,
    }
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
