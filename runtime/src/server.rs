//! A Legate server: openraft with the catalog state machine, the write path (stamp, propose,
//! forward to the leader), the read path (Consul's consistency modes, blocking queries,
//! forwarding) and the leader's timer-driven duties.
//!
//! Generic over openraft's [`AsyncRuntime`] and a [`Transport`] to the other servers, so the
//! tokio agent and the madsim simulator run this same code: the simulator is not a model of the
//! server, it *is* the server on a virtual clock and network. Nothing here touches tokio or a
//! socket; the driver builds the Raft instance (with its log store and network), supplies the
//! transport, and spawns [`Server::run_duties`].

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::channel::mpsc;
use futures::StreamExt as _;
use legate_core::catalog::{Answer, ApplyError, Command, Query, QueryValue, Request, Response, Session};
use legate_core::leader::{LeaderDuties, LeaderOutput, SERF_CHECK_ID};
use legate_core::limits;
use legate_core::raft::{CatalogStore, NodeId, ServerNode, TypeConfig, Watched};
use openraft::errors::{ClientWriteError, RaftError};
use openraft::{ChangeMembers, ReadPolicy, ServerState};
use openraft_rt::{AsyncRuntime, Instant as _, Select3, WatchReceiver};
use rand_core010::Rng as _;
use serde::{Deserialize, Serialize};

use crate::clock::Clock;
use crate::rpc::WireError;
use legate_core::plant::Planted;

/// The catalog state machine for runtime `Rt`.
pub type Store<Rt> = CatalogStore<TypeConfig<Rt>>;
/// The openraft instance for runtime `Rt`.
pub type Raft<Rt> = openraft::Raft<TypeConfig<Rt>, Store<Rt>>;

/// How long a request waits for a leader before failing with `No cluster leader` (Consul's).
pub const LEADER_WAIT_MS: u64 = 7_000;

/// How long a forwarded request may take beyond its own blocking wait.
pub const FORWARD_TIMEOUT_MS: u64 = 10_000;

/// Pause between attempts while the leader is unknown or moving.
const ROUTE_RETRY_MS: u64 = 50;

/// What a server needs to know about itself.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// The Raft node id.
    pub raft_id: u64,
    /// This server's own catalog record (registered with `serfHealth` when it leads).
    pub node: legate_core::catalog::Node,
    /// `host:port` of the server RPC listener, as `/v1/status/leader` reports it.
    pub rpc_addr: String,
    /// Bugs planted for the simulator's negative scenarios (none in production).
    pub planted: Planted,
}

impl ServerConfig {
    /// The port of the RPC address (8300 when it cannot be read).
    pub fn server_port(&self) -> u16 {
        self.rpc_addr.rsplit_once(':').and_then(|(_, p)| p.parse().ok()).unwrap_or(8300)
    }
}

/// Consul's read consistency modes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Consistency {
    /// The leader answers from its state.
    #[default]
    Default,
    /// The leader confirms it still leads (a quorum round) before answering.
    Consistent,
    /// Any server answers from its state, leader or not.
    Stale,
}

impl Consistency {
    /// The `X-Consul-Effective-Consistency` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Consistency::Default => "leader",
            Consistency::Consistent => "consistent",
            Consistency::Stale => "stale",
        }
    }
}

/// Options of a replicated read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryOptions {
    pub consistency: Consistency,
    /// Block until the result's index exceeds this (0: answer at once).
    pub min_index: u64,
    /// How long to block at most (before jitter); `None` for Consul's default.
    pub wait_ms: Option<u64>,
}

/// A read's answer with what the `X-Consul-*` headers report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryResult<T> {
    pub answer: Answer<T>,
    pub known_leader: bool,
    pub last_contact_ms: u64,
    pub consistency: Consistency,
}

/// Why a write failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum WriteError {
    #[error("No cluster leader")]
    NoLeader,
    /// No server could be reached (nothing was sent); the text says which and why.
    #[error("{0}")]
    NoServer(String),
    /// The request may or may not have been applied (a lost forward, a leader change after
    /// the entry was appended).
    #[error("rpc error: {0}")]
    Unknown(String),
    /// The request names a datacenter no known server belongs to.
    #[error("No path to datacenter")]
    NoPath,
    #[error("{0}")]
    Internal(String),
}

/// Why a read failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum ReadError {
    #[error("No cluster leader")]
    NoLeader,
    /// No server could be reached; the text says which and why.
    #[error("{0}")]
    NoServer(String),
    #[error("rpc error: {0}")]
    Rpc(String),
    /// The request names a datacenter no known server belongs to.
    #[error("No path to datacenter")]
    NoPath,
    #[error("{0}")]
    Internal(String),
}

/// A request one server forwards to another (to the leader, mostly).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServerRequest {
    Write(Command),
    CreateSession(Session),
    RenewSession(String),
    Read {
        opts: QueryOptions,
        query: Query,
    },
    /// Adds a server as a voter (a server joining an existing cluster).
    AddServer {
        id: NodeId,
        node: ServerNode,
    },
    /// Removes a server from the configuration (`legate leave`, `operator raft remove-peer`).
    RemoveServer {
        id: NodeId,
    },
}

/// The answer to a [`ServerRequest`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServerResponse {
    Written(Response),
    SessionCreated(Result<Session, ApplyError>),
    SessionRenewed(Option<Session>),
    Read(QueryResult<QueryValue>),
    Status(RaftStatus),
    /// Every datacenter the server knows, its own first, then nearest first.
    Datacenters(Vec<String>),
    MembershipChanged,
    /// The receiver does not lead (any more); nothing was done.
    NotLeader,
    WriteFailed(WriteError),
    ReadFailed(ReadError),
}

/// One server of the Raft configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaftServer {
    pub id: NodeId,
    pub node: ServerNode,
    /// A voter (else a learner, catching up before it may vote).
    pub voter: bool,
}

/// What a server knows of the Raft cluster: `/v1/status/*` and
/// `/v1/operator/raft/configuration`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaftStatus {
    /// The server that answered.
    pub id: NodeId,
    pub leader: Option<NodeId>,
    pub term: u64,
    /// Every server of the configuration, by id.
    pub servers: Vec<RaftServer>,
    /// The index of the latest configuration entry.
    pub config_index: u64,
    pub last_log_index: u64,
}

impl RaftStatus {
    /// The leader's record, if one is known and in the configuration.
    pub fn leader_node(&self) -> Option<&ServerNode> {
        let leader = self.leader?;
        self.servers.iter().find(|s| s.id == leader).map(|s| &s.node)
    }

    /// Every voter's RPC address, sorted.
    pub fn peers(&self) -> Vec<String> {
        let mut peers: Vec<String> = self.servers.iter().filter(|s| s.voter).map(|s| s.node.rpc_addr.clone()).collect();
        peers.sort();
        peers
    }
}

/// Reaches other servers. An error says whether the call may have been carried out.
pub trait Transport: Send + Sync + 'static {
    fn call(
        &self,
        target: &ServerNode,
        request: ServerRequest,
        timeout: Duration,
    ) -> impl Future<Output = Result<ServerResponse, WireError>> + Send;
}

/// The transport of a server with no peers (`-dev`).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoTransport;

impl Transport for NoTransport {
    async fn call(&self, target: &ServerNode, _: ServerRequest, _: Duration) -> Result<ServerResponse, WireError> {
        Err(WireError::not_delivered(format!("no route to {target}: this server has no peers")))
    }
}

/// Where a request goes.
enum Route {
    Local,
    Remote(ServerNode),
}

/// A running server. Clones share it.
pub struct Server<Rt: AsyncRuntime, T: Transport> {
    inner: Arc<Inner<Rt, T>>,
}

impl<Rt: AsyncRuntime, T: Transport> Clone for Server<Rt, T> {
    fn clone(&self) -> Self {
        Server { inner: self.inner.clone() }
    }
}

struct Inner<Rt: AsyncRuntime, T: Transport> {
    raft: Raft<Rt>,
    store: Store<Rt>,
    duties: Mutex<LeaderDuties>,
    duties_kick: Mutex<mpsc::Sender<()>>,
    duties_wake: Mutex<Option<mpsc::Receiver<()>>>,
    clock: Clock,
    config: ServerConfig,
    transport: T,
    /// When the leader last replicated to (or heartbeat) this server.
    leader_contact: Mutex<Option<Rt::Instant>>,
}

impl<Rt: AsyncRuntime, T: Transport> Server<Rt, T> {
    /// Wraps a built (and, if new, bootstrapped) Raft instance. The caller spawns
    /// [`Server::run_duties`].
    pub fn new(raft: Raft<Rt>, store: Store<Rt>, config: ServerConfig, clock: Clock, transport: T) -> Self {
        let (kick, wake) = mpsc::channel(1);
        Server {
            inner: Arc::new(Inner {
                raft,
                store,
                duties: Mutex::new({
                    let mut duties = LeaderDuties::new(config.node.clone(), config.server_port());
                    duties.set_planted(config.planted);
                    duties
                }),
                duties_kick: Mutex::new(kick),
                duties_wake: Mutex::new(Some(wake)),
                clock,
                config,
                transport,
                leader_contact: Mutex::new(None),
            }),
        }
    }

    pub fn raft(&self) -> &Raft<Rt> {
        &self.inner.raft
    }

    pub fn store(&self) -> &Store<Rt> {
        &self.inner.store
    }

    pub fn clock(&self) -> Clock {
        self.inner.clock
    }

    pub fn config(&self) -> &ServerConfig {
        &self.inner.config
    }

    /// The current leader's id and address, if one is known.
    pub fn leader(&self) -> Option<(u64, ServerNode)> {
        let metrics = self.inner.raft.metrics();
        let m = metrics.borrow_watched();
        let id = m.current_leader?;
        let node = m.membership_config.membership().get_node(&id)?.clone();
        Some((id, node))
    }

    pub fn is_leader(&self) -> bool {
        let metrics = self.inner.raft.metrics();
        let m = metrics.borrow_watched();
        m.state == ServerState::Leader && m.current_leader == Some(self.inner.config.raft_id)
    }

    /// Every voter's RPC address, sorted.
    pub fn peers(&self) -> Vec<String> {
        self.status().peers()
    }

    /// Records that the leader just replicated to this server (an AppendEntries arrived).
    pub fn note_leader_contact(&self) {
        *self.inner.leader_contact.lock().unwrap_or_else(|p| p.into_inner()) = Some(Rt::Instant::now());
    }

    /// `X-Consul-LastContact`: 0 on the leader; on a follower, the time since the leader last
    /// replicated to it (0 before it ever did).
    pub fn last_contact_ms(&self) -> u64 {
        if self.is_leader() {
            return 0;
        }
        let contact = *self.inner.leader_contact.lock().unwrap_or_else(|p| p.into_inner());
        contact.map_or(0, |at| Rt::Instant::now().saturating_duration_since(at).as_millis() as u64)
    }

    /// The Raft status as this server sees it.
    pub fn status(&self) -> RaftStatus {
        let metrics = self.inner.raft.metrics();
        let m = metrics.borrow_watched();
        let stored = &m.membership_config;
        let membership = stored.membership();
        let voters: std::collections::BTreeSet<NodeId> = membership.voter_ids().collect();
        let servers = membership
            .nodes()
            .map(|(id, node)| RaftServer { id: *id, node: node.clone(), voter: voters.contains(id) })
            .collect();
        RaftStatus {
            id: self.inner.config.raft_id,
            leader: m.current_leader,
            term: m.current_term,
            servers,
            config_index: stored.log_id().as_ref().map_or(0, |l| l.index()),
            last_log_index: m.last_log_index.unwrap_or(0),
        }
    }

    /// Adds a server to the configuration as a voter (through the leader): first as a learner
    /// that catches up, then as a voter. Adding a server already a voter changes nothing.
    pub async fn add_server(&self, id: NodeId, node: ServerNode) -> Result<(), WriteError> {
        match self.leader_call(ServerRequest::AddServer { id, node }).await? {
            ServerResponse::MembershipChanged => Ok(()),
            other => Err(WriteError::Internal(format!("unexpected answer to add-server: {other:?}"))),
        }
    }

    /// Removes a server from the configuration (through the leader).
    pub async fn remove_server(&self, id: NodeId) -> Result<(), WriteError> {
        match self.leader_call(ServerRequest::RemoveServer { id }).await? {
            ServerResponse::MembershipChanged => Ok(()),
            other => Err(WriteError::Internal(format!("unexpected answer to remove-server: {other:?}"))),
        }
    }

    async fn change_membership_local(&self, change: ServerRequest) -> ServerResponse {
        let raft = &self.inner.raft;
        let status = self.status();
        let result = match change {
            ServerRequest::AddServer { id, node } => {
                if status.servers.iter().any(|s| s.id == id && s.voter && s.node == node) {
                    return ServerResponse::MembershipChanged;
                }
                match raft.add_learner(id, node, true).await {
                    Ok(_) => raft.change_membership(ChangeMembers::AddVoterIds([id].into()), false).await,
                    Err(e) => Err(e),
                }
            }
            ServerRequest::RemoveServer { id } => {
                if !status.servers.iter().any(|s| s.id == id) {
                    return ServerResponse::WriteFailed(WriteError::Internal(format!(
                        "no server with id {id} in the Raft configuration"
                    )));
                }
                if status.servers.iter().filter(|s| s.voter).count() == 1
                    && status.servers.iter().any(|s| s.id == id && s.voter)
                {
                    return ServerResponse::WriteFailed(WriteError::Internal(
                        "cannot remove the last voter of the Raft configuration".into(),
                    ));
                }
                let voter = status.servers.iter().any(|s| s.id == id && s.voter);
                // `retain = false`: a removed voter leaves the configuration altogether.
                let change = if voter {
                    ChangeMembers::RemoveVoters([id].into())
                } else {
                    ChangeMembers::RemoveNodes([id].into())
                };
                raft.change_membership(change, false).await
            }
            _ => return ServerResponse::WriteFailed(WriteError::Internal("not a membership change".into())),
        };
        match result {
            Ok(_) => ServerResponse::MembershipChanged,
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => ServerResponse::NotLeader,
            Err(e) => ServerResponse::WriteFailed(WriteError::Internal(e.to_string())),
        }
    }

    fn deadline_in(ms: u64) -> Rt::Instant {
        Rt::Instant::now() + Duration::from_millis(ms)
    }

    /// Finds where a leader-only request goes, waiting for a leader until `deadline`.
    async fn route(&self, deadline: Rt::Instant) -> Option<Route> {
        let mut metrics = self.inner.raft.metrics();
        loop {
            if self.is_leader() {
                return Some(Route::Local);
            }
            if let Some((id, node)) = self.leader() {
                if id != self.inner.config.raft_id {
                    return Some(Route::Remote(node));
                }
            }
            if Rt::Instant::now() >= deadline {
                return None;
            }
            match Rt::timeout_at(deadline, metrics.changed()).await {
                Ok(Ok(())) => continue,
                Ok(Err(_)) | Err(_) => return None,
            }
        }
    }

    async fn pause_before_retry(deadline: Rt::Instant) -> bool {
        let next = Self::deadline_in(ROUTE_RETRY_MS);
        if next >= deadline {
            return false;
        }
        Rt::sleep_until(next).await;
        true
    }

    /// Proposes a command — here if this server leads, else through the leader — and waits
    /// until it is applied. The leader stamps it with its wall clock.
    pub async fn write(&self, command: Command) -> Result<Response, WriteError> {
        match self.leader_call(ServerRequest::Write(command)).await? {
            ServerResponse::Written(r) => Ok(r),
            other => Err(WriteError::Internal(format!("unexpected answer to a write: {other:?}"))),
        }
    }

    /// Runs a leader-only request here or on the leader. Retries only when the request was
    /// certainly not carried out (no leader known, or the target no longer leads).
    async fn leader_call(&self, request: ServerRequest) -> Result<ServerResponse, WriteError> {
        let deadline = Self::deadline_in(LEADER_WAIT_MS);
        loop {
            let answer = match self.route(deadline).await {
                None => return Err(WriteError::NoLeader),
                Some(Route::Local) => self.handle_leader_request(request.clone()).await,
                Some(Route::Remote(node)) => {
                    let timeout = Duration::from_millis(FORWARD_TIMEOUT_MS);
                    match self.inner.transport.call(&node, request.clone(), timeout).await {
                        Ok(answer) => answer,
                        // Never delivered (the leader we knew is gone): safe to route again.
                        Err(e) if !e.delivered => ServerResponse::NotLeader,
                        Err(e) => return Err(WriteError::Unknown(e.text)),
                    }
                }
            };
            match answer {
                ServerResponse::NotLeader => {
                    if !Self::pause_before_retry(deadline).await {
                        return Err(WriteError::NoLeader);
                    }
                }
                ServerResponse::WriteFailed(e) => return Err(e),
                other => return Ok(other),
            }
        }
    }

    /// Carries out a leader-only request on this server; `NotLeader` if it does not lead.
    async fn handle_leader_request(&self, request: ServerRequest) -> ServerResponse {
        if !self.is_leader() {
            return ServerResponse::NotLeader;
        }
        match request {
            ServerRequest::Write(command) => {
                let restore = matches!(command, Command::Restore(_));
                match self.write_local(command).await {
                    Ok(r) => {
                        if restore && r == Response::Done {
                            // The sessions were replaced: their TTL timers restart from the
                            // restored set, as on a leader change.
                            self.restart_duties();
                            self.kick_duties();
                        }
                        ServerResponse::Written(r)
                    }
                    Err(None) => ServerResponse::NotLeader,
                    Err(Some(e)) => ServerResponse::WriteFailed(e),
                }
            }
            ServerRequest::CreateSession(session) => self.create_session_local(session).await,
            ServerRequest::RenewSession(id) => self.renew_session_local(&id),
            ServerRequest::Read { opts, query } => match self.read_local(&opts, &query).await {
                Ok(r) => ServerResponse::Read(r),
                Err(e) => ServerResponse::ReadFailed(e),
            },
            change @ (ServerRequest::AddServer { .. } | ServerRequest::RemoveServer { .. }) => {
                self.change_membership_local(change).await
            }
        }
    }

    /// Serves a request forwarded by another server.
    pub async fn handle(&self, request: ServerRequest) -> ServerResponse {
        match request {
            ServerRequest::Read { opts, query } if opts.consistency == Consistency::Stale => {
                match self.read_local(&opts, &query).await {
                    Ok(r) => ServerResponse::Read(r),
                    Err(e) => ServerResponse::ReadFailed(e),
                }
            }
            other => self.handle_leader_request(other).await,
        }
    }

    /// `Err(None)`: rejected before it was appended (no longer leader): safe to retry.
    async fn write_local(&self, command: Command) -> Result<Response, Option<WriteError>> {
        let request = Request { now_ms: self.inner.clock.wall_ms(), command };
        match self.inner.raft.client_write(request).await {
            Ok(resp) => Ok(resp.data),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => Err(None),
            Err(RaftError::APIError(e @ ClientWriteError::LogEntryDiscarded(_))) => {
                Err(Some(WriteError::Unknown(e.to_string())))
            }
            Err(e) => Err(Some(WriteError::Internal(e.to_string()))),
        }
    }

    /// A replicated read with Consul's consistency modes, blocking on `min_index`; default and
    /// consistent reads are answered by the leader (forwarded when it is another server).
    pub async fn read(&self, opts: &QueryOptions, query: Query) -> Result<QueryResult<QueryValue>, ReadError> {
        if opts.consistency == Consistency::Stale {
            return self.read_local(opts, &query).await;
        }
        let request = ServerRequest::Read { opts: *opts, query };
        match self.leader_call(request).await {
            Ok(ServerResponse::Read(r)) => Ok(r),
            Ok(ServerResponse::ReadFailed(e)) => Err(e),
            Ok(other) => Err(ReadError::Internal(format!("unexpected answer to a read: {other:?}"))),
            Err(WriteError::NoLeader) => Err(ReadError::NoLeader),
            Err(WriteError::Unknown(e)) => Err(ReadError::Rpc(e)),
            Err(WriteError::NoServer(e)) => Err(ReadError::NoServer(e)),
            Err(WriteError::NoPath) => Err(ReadError::NoPath),
            Err(WriteError::Internal(e)) => Err(ReadError::Internal(e)),
        }
    }

    async fn read_local(&self, opts: &QueryOptions, query: &Query) -> Result<QueryResult<QueryValue>, ReadError> {
        if opts.consistency == Consistency::Consistent && !self.inner.config.planted.stale_consistent_read {
            self.inner.raft.ensure_linearizable(ReadPolicy::ReadIndex).await.map_err(|_| ReadError::NoLeader)?;
        }
        let answer = self.block(opts, |c| c.query(query)).await;
        let known_leader = self.leader().is_some();
        Ok(QueryResult { answer, known_leader, last_contact_ms: self.last_contact_ms(), consistency: opts.consistency })
    }

    async fn block<V>(
        &self,
        opts: &QueryOptions,
        f: impl Fn(&legate_core::catalog::Catalog) -> Answer<V>,
    ) -> Answer<V> {
        let wait_ms = opts.wait_ms.unwrap_or(limits::BLOCKING_WAIT_DEFAULT_MS).min(limits::BLOCKING_WAIT_MAX_MS);
        let jitter_span_ms = wait_ms / limits::BLOCKING_JITTER_FRACTION;
        let jitter_ms = if jitter_span_ms > 0 { random_u64::<Rt>() % jitter_span_ms } else { 0 };
        let deadline = Self::deadline_in(wait_ms + jitter_ms);
        loop {
            match self.inner.store.watch(opts.min_index, &f) {
                Watched::Ready(answer) => return answer,
                Watched::Pending(answer, mut guard) => {
                    if Rt::timeout_at(deadline, guard.fired()).await.is_err() {
                        return answer;
                    }
                }
            }
        }
    }

    /// Creates a session with a fresh ID (chosen by the leader); starts its TTL timer.
    pub async fn create_session(&self, session: Session) -> Result<Result<Session, ApplyError>, WriteError> {
        match self.leader_call(ServerRequest::CreateSession(session)).await? {
            ServerResponse::SessionCreated(r) => Ok(r),
            other => Err(WriteError::Internal(format!("unexpected answer to session create: {other:?}"))),
        }
    }

    async fn create_session_local(&self, mut session: Session) -> ServerResponse {
        let bits = (u128::from(random_u64::<Rt>()) << 64) | u128::from(random_u64::<Rt>());
        session.id = uuid::Builder::from_random_bytes(bits.to_le_bytes()).into_uuid().to_string();
        match self.write_local(Command::SessionCreate(session.clone())).await {
            Ok(Response::Done) => {
                self.lock_duties().handle_session_renewed(self.inner.clock.mono_ms(), &session);
                self.kick_duties();
                ServerResponse::SessionCreated(Ok(session))
            }
            Ok(Response::Error(e)) => ServerResponse::SessionCreated(Err(e)),
            Ok(other) => ServerResponse::WriteFailed(WriteError::Internal(format!("unexpected answer {other:?}"))),
            Err(None) => ServerResponse::NotLeader,
            Err(Some(e)) => ServerResponse::WriteFailed(e),
        }
    }

    /// Renews a TTL session on the leader. `None`: no such session.
    pub async fn renew_session(&self, id: &str) -> Result<Option<Session>, WriteError> {
        match self.leader_call(ServerRequest::RenewSession(id.to_string())).await? {
            ServerResponse::SessionRenewed(s) => Ok(s),
            other => Err(WriteError::Internal(format!("unexpected answer to session renew: {other:?}"))),
        }
    }

    fn renew_session_local(&self, id: &str) -> ServerResponse {
        let session = self.inner.store.read(|c| c.session(id).cloned());
        let mut duties = self.lock_duties();
        match &session {
            Some(s) => duties.handle_session_renewed(self.inner.clock.mono_ms(), s),
            None => duties.handle_session_gone(id),
        }
        drop(duties);
        self.kick_duties();
        ServerResponse::SessionRenewed(session)
    }

    /// Waits until this server's own node is in its catalog with `serfHealth`, so that the
    /// first sessions (tied to `serfHealth` by default) can be created.
    pub async fn wait_registered(&self, node: &str) -> Result<(), String> {
        let deadline = Self::deadline_in(LEADER_WAIT_MS);
        let mut min_index = 0;
        loop {
            let opts = QueryOptions { consistency: Consistency::Stale, min_index, wait_ms: Some(1_000) };
            let result = self
                .read_local(&opts, &Query::NodeChecks { node: node.to_string() })
                .await
                .map_err(|e| e.to_string())?;
            if let QueryValue::Checks(checks) = &result.answer.value {
                if checks.iter().any(|c| c.check_id == SERF_CHECK_ID) {
                    return Ok(());
                }
            }
            if Rt::Instant::now() >= deadline {
                return Err(format!("this server did not register itself within {LEADER_WAIT_MS} ms"));
            }
            min_index = result.answer.index;
        }
    }

    fn lock_duties(&self) -> MutexGuard<'_, LeaderDuties> {
        self.inner.duties.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts the leader's duties afresh: every session's TTL timer from now, and its own
    /// registration again (on becoming leader, and after a restore replaced the sessions).
    fn restart_duties(&self) {
        let now = self.inner.clock.mono_ms();
        let sessions: Vec<Session> = self.inner.store.read(|c| c.sessions().cloned().collect());
        self.lock_duties().handle_became_leader(now, &sessions);
    }

    fn kick_duties(&self) {
        let _ = self.inner.duties_kick.lock().unwrap_or_else(|p| p.into_inner()).try_send(());
    }

    /// Drives [`LeaderDuties`]: follows leadership changes, fires its timers, proposes its
    /// outputs. Runs until Raft shuts down; spawn it once.
    pub async fn run_duties(self) {
        let Some(mut wake) = self.inner.duties_wake.lock().unwrap_or_else(|p| p.into_inner()).take() else {
            return;
        };
        let mut metrics = self.inner.raft.metrics();
        let mut was_leader = false;
        loop {
            let leading = self.is_leader();
            if leading && !was_leader {
                // Apply everything committed before reading the sessions whose timers restart.
                if self.inner.raft.ensure_linearizable(ReadPolicy::ReadIndex).await.is_ok() {
                    self.restart_duties();
                    was_leader = true;
                }
            } else if !leading && was_leader {
                self.lock_duties().handle_lost_leadership();
                was_leader = false;
            }
            let outputs: Vec<LeaderOutput> = {
                let mut duties = self.lock_duties();
                std::iter::from_fn(|| duties.poll_output()).collect()
            };
            for LeaderOutput::Propose(command) in outputs {
                let server = self.clone();
                drop(Rt::spawn(async move {
                    let name = command.name();
                    if let Err(e) = server.write(command).await {
                        tracing::warn!(command = name, error = %e, "leader duty not applied");
                    }
                }));
            }
            let next = self.lock_duties().poll_timeout().map(|(at, _)| at);
            let mut sleep_ms = next.map_or(60_000, |at| at.saturating_sub(self.inner.clock.mono_ms()));
            if leading && !was_leader {
                // Leadership not confirmed yet: look again soon.
                sleep_ms = sleep_ms.min(100);
            }
            match Rt::select3(metrics.changed(), wake.next(), Rt::sleep(Duration::from_millis(sleep_ms))).await {
                Select3::First(Err(_)) | Select3::Second(None) => return,
                Select3::First(Ok(())) | Select3::Second(Some(())) => {}
                Select3::Third(()) => {
                    let now = self.inner.clock.mono_ms();
                    self.lock_duties().handle_timeout(now);
                }
            }
        }
    }

    /// Stops Raft.
    pub async fn shutdown(&self) {
        let _ = self.inner.raft.shutdown().await;
    }
}

/// One draw from the runtime's RNG (madsim's seeded one in the simulator). The RNG handle is
/// not `Send`, so it never lives across an await.
fn random_u64<Rt: AsyncRuntime>() -> u64 {
    Rt::thread_rng().next_u64()
}
