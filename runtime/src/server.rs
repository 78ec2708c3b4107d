//! A Raft server on tokio: openraft with the catalog state machine, the write path, the read
//! path with Consul's consistency modes and blocking queries, and the leader's duties.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use legate_core::catalog::{Answer, ApplyError, Catalog, Command, Node, Request, Response, Session};
use legate_core::leader::{LeaderDuties, LeaderOutput};
use legate_core::limits;
use legate_core::raft::{CatalogStore, MemLogStore, NoPeers, ServerNode, TypeConfig, Watched};
use openraft::errors::{ClientWriteError, RaftError};
use openraft::{ReadPolicy, ServerState};
use openraft_rt::WatchReceiver;
use openraft_rt_tokio::TokioRuntime;
use tokio::sync::Notify;

use crate::clock::Clock;

/// openraft's type configuration on tokio.
pub type Tc = TypeConfig<TokioRuntime>;
/// The catalog state machine on tokio.
pub type Store = CatalogStore<Tc>;
type Raft = openraft::Raft<Tc, Store>;

/// How long a request waits for a leader before failing with `No cluster leader` (Consul's).
pub const LEADER_WAIT_MS: u64 = 7_000;

/// What a server needs to start.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// The Raft node id.
    pub raft_id: u64,
    /// This server's own catalog record (registered with `serfHealth` when it leads).
    pub node: Node,
    /// `host:port` of the server RPC listener, as `/v1/status/leader` reports it.
    pub rpc_addr: String,
    pub heartbeat_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
}

impl ServerConfig {
    /// The port of the RPC address (8300 when it cannot be read).
    pub fn server_port(&self) -> u16 {
        self.rpc_addr.rsplit_once(':').and_then(|(_, p)| p.parse().ok()).unwrap_or(8300)
    }

    /// Fast timers for a single `-dev` server.
    pub fn dev(node: Node, rpc_addr: String) -> Self {
        ServerConfig {
            raft_id: 1,
            node,
            rpc_addr,
            heartbeat_ms: 50,
            election_timeout_min_ms: 150,
            election_timeout_max_ms: 300,
        }
    }
}

/// Consul's read consistency modes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
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
#[derive(Clone, Copy, Debug, Default)]
pub struct QueryOptions {
    pub consistency: Consistency,
    /// Block until the result's index exceeds this (0: answer at once).
    pub min_index: u64,
    /// How long to block at most (before jitter); `None` for Consul's default.
    pub wait_ms: Option<u64>,
}

/// A read's answer with what the `X-Consul-*` headers report.
#[derive(Clone, Debug)]
pub struct QueryResult<T> {
    pub answer: Answer<T>,
    pub known_leader: bool,
    pub last_contact_ms: u64,
    pub consistency: Consistency,
}

/// Why a write failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    #[error("No cluster leader")]
    NoLeader,
    #[error("{0}")]
    Internal(String),
}

/// Why a read failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    #[error("No cluster leader")]
    NoLeader,
    #[error("{0}")]
    Internal(String),
}

/// A running Raft server. Clones share it.
#[derive(Clone)]
pub struct Server {
    inner: Arc<Inner>,
}

struct Inner {
    raft: Raft,
    store: Store,
    duties: Mutex<LeaderDuties>,
    duties_kick: Notify,
    clock: Clock,
    config: ServerConfig,
}

impl Server {
    /// Starts a single-voter server that keeps its log in memory (`-dev`), and bootstraps it.
    pub async fn start_dev(config: ServerConfig, clock: Clock) -> Result<Server, String> {
        let raft_config = openraft::Config {
            cluster_name: "legate".into(),
            heartbeat_interval: config.heartbeat_ms,
            election_timeout_min: config.election_timeout_min_ms,
            election_timeout_max: config.election_timeout_max_ms,
            ..Default::default()
        }
        .validate()
        .map_err(|e| format!("invalid Raft configuration: {e}"))?;
        let store = Store::new();
        let raft =
            Raft::new(config.raft_id, Arc::new(raft_config), NoPeers, MemLogStore::<Tc>::default(), store.clone())
                .await
                .map_err(|e| format!("starting Raft: {e}"))?;
        let me = ServerNode { name: config.node.node.clone(), rpc_addr: config.rpc_addr.clone() };
        let mut members = BTreeMap::new();
        members.insert(config.raft_id, me);
        raft.initialize(members).await.map_err(|e| format!("bootstrapping Raft: {e}"))?;
        let server = Server {
            inner: Arc::new(Inner {
                raft,
                store,
                duties: Mutex::new(LeaderDuties::new(config.node.clone(), config.server_port())),
                duties_kick: Notify::new(),
                clock,
                config,
            }),
        };
        tokio::spawn(server.clone().run_duties());
        Ok(server)
    }

    pub fn store(&self) -> &Store {
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
        let metrics = self.inner.raft.metrics();
        let m = metrics.borrow_watched();
        let membership = m.membership_config.membership();
        let mut peers: Vec<String> =
            membership.voter_ids().filter_map(|id| membership.get_node(&id).map(|n| n.rpc_addr.clone())).collect();
        peers.sort();
        peers
    }

    /// Waits up to [`LEADER_WAIT_MS`] for this server to lead. (Forwarding to a remote
    /// leader arrives with multi-server clusters.)
    async fn wait_for_leadership(&self) -> bool {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(LEADER_WAIT_MS);
        let mut metrics = self.inner.raft.metrics();
        loop {
            if self.is_leader() {
                return true;
            }
            match tokio::time::timeout_at(deadline, metrics.changed()).await {
                Ok(Ok(())) => continue,
                Ok(Err(_)) | Err(_) => return self.is_leader(),
            }
        }
    }

    /// Proposes a command (stamped with the wall clock) and waits until it is applied.
    pub async fn write(&self, command: Command) -> Result<Response, WriteError> {
        if !self.wait_for_leadership().await {
            return Err(WriteError::NoLeader);
        }
        let request = Request { now_ms: self.inner.clock.wall_ms(), command };
        match self.inner.raft.client_write(request).await {
            Ok(resp) => Ok(resp.data),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => Err(WriteError::NoLeader),
            Err(e) => Err(WriteError::Internal(e.to_string())),
        }
    }

    /// A replicated read with Consul's consistency modes, blocking on `min_index`.
    pub async fn read<T>(
        &self,
        opts: &QueryOptions,
        f: impl Fn(&Catalog) -> Answer<T>,
    ) -> Result<QueryResult<T>, ReadError> {
        match opts.consistency {
            Consistency::Stale => {}
            Consistency::Default => {
                if !self.wait_for_leadership().await {
                    return Err(ReadError::NoLeader);
                }
            }
            Consistency::Consistent => {
                if !self.wait_for_leadership().await {
                    return Err(ReadError::NoLeader);
                }
                self.inner.raft.ensure_linearizable(ReadPolicy::ReadIndex).await.map_err(|_| ReadError::NoLeader)?;
            }
        }
        let answer = self.block(opts, &f).await;
        let known_leader = self.leader().is_some();
        Ok(QueryResult { answer, known_leader, last_contact_ms: 0, consistency: opts.consistency })
    }

    async fn block<T>(&self, opts: &QueryOptions, f: &impl Fn(&Catalog) -> Answer<T>) -> Answer<T> {
        let wait_ms = opts.wait_ms.unwrap_or(limits::BLOCKING_WAIT_DEFAULT_MS).min(limits::BLOCKING_WAIT_MAX_MS);
        let jitter_ms = if wait_ms >= limits::BLOCKING_JITTER_FRACTION {
            rand::random_range(0..wait_ms / limits::BLOCKING_JITTER_FRACTION)
        } else {
            0
        };
        let deadline = tokio::time::Instant::now() + Duration::from_millis(wait_ms + jitter_ms);
        loop {
            match self.inner.store.watch(opts.min_index, f) {
                Watched::Ready(answer) => return answer,
                Watched::Pending(answer, mut guard) => {
                    tokio::select! {
                        biased;
                        _ = guard.fired() => continue,
                        _ = tokio::time::sleep_until(deadline) => return answer,
                    }
                }
            }
        }
    }

    /// Creates a session with a fresh ID; starts its TTL timer if it has a TTL.
    pub async fn create_session(&self, mut session: Session) -> Result<Result<Session, ApplyError>, WriteError> {
        session.id = uuid::Builder::from_random_bytes(rand::random()).into_uuid().to_string();
        match self.write(Command::SessionCreate(session.clone())).await? {
            Response::Done => {
                self.lock_duties().handle_session_renewed(self.inner.clock.mono_ms(), &session);
                self.inner.duties_kick.notify_one();
                Ok(Ok(session))
            }
            Response::Error(e) => Ok(Err(e)),
            other => Err(WriteError::Internal(format!("unexpected answer to session create: {other:?}"))),
        }
    }

    /// Renews a TTL session on the leader. `None`: no such session.
    pub async fn renew_session(&self, id: &str) -> Result<Option<Session>, WriteError> {
        if !self.wait_for_leadership().await {
            return Err(WriteError::NoLeader);
        }
        let session = self.inner.store.read(|c| c.session(id).cloned());
        let mut duties = self.lock_duties();
        match &session {
            Some(s) => duties.handle_session_renewed(self.inner.clock.mono_ms(), s),
            None => duties.handle_session_gone(id),
        }
        drop(duties);
        self.inner.duties_kick.notify_one();
        Ok(session)
    }

    fn lock_duties(&self) -> std::sync::MutexGuard<'_, LeaderDuties> {
        self.inner.duties.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Drives [`LeaderDuties`]: follows leadership changes, fires its timers, proposes its
    /// outputs.
    async fn run_duties(self) {
        let mut metrics = self.inner.raft.metrics();
        let mut was_leader = false;
        loop {
            let leading = self.is_leader();
            if leading && !was_leader {
                // Apply everything committed before reading the sessions whose timers restart.
                if self.inner.raft.ensure_linearizable(ReadPolicy::ReadIndex).await.is_ok() {
                    let now = self.inner.clock.mono_ms();
                    let sessions: Vec<Session> = self.inner.store.read(|c| c.sessions().cloned().collect());
                    self.lock_duties().handle_became_leader(now, &sessions);
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
                tokio::spawn(async move {
                    let name = command.name();
                    if let Err(e) = server.write(command).await {
                        tracing::warn!(command = name, error = %e, "leader duty not applied");
                    }
                });
            }
            let next = self.lock_duties().poll_timeout().map(|(at, _)| at);
            let mut sleep_ms = next.map_or(60_000, |at| at.saturating_sub(self.inner.clock.mono_ms()));
            if leading && !was_leader {
                // Leadership not confirmed yet: look again soon.
                sleep_ms = sleep_ms.min(100);
            }
            tokio::select! {
                biased;
                changed = metrics.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
                _ = self.inner.duties_kick.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(sleep_ms)) => {
                    let now = self.inner.clock.mono_ms();
                    self.lock_duties().handle_timeout(now);
                }
            }
        }
    }

    /// Waits until this server's own node is in the catalog with its `serfHealth` check, so
    /// that the first sessions (tied to `serfHealth` by default) can be created.
    pub async fn wait_registered(&self, node: &str) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(LEADER_WAIT_MS);
        let mut min_index = 0;
        loop {
            let opts = QueryOptions { consistency: Consistency::Stale, min_index, wait_ms: Some(1_000) };
            let result = self.read(&opts, |c| c.node_checks(node)).await.map_err(|e| e.to_string())?;
            if result.answer.value.iter().any(|c| c.check_id == legate_core::leader::SERF_CHECK_ID) {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(format!("this server did not register itself within {LEADER_WAIT_MS} ms"));
            }
            min_index = result.answer.index;
        }
    }

    /// Stops Raft.
    pub async fn shutdown(&self) {
        let _ = self.inner.raft.shutdown().await;
    }
}
