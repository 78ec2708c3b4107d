//! A client agent's way to the servers: every call of the [`Api`] goes to a server over a
//! [`Wire`], which serves it as it serves its own HTTP handlers (forwarding to its leader when
//! needed). The client runs no Raft.
//!
//! The forwarder keeps the list of known servers (seeded from `-retry-join`, refreshed from
//! the servers' own Raft configuration) and a preferred one. A call that could not reach its
//! server — connection refused, handshake failed: certainly not delivered — moves on to the
//! next server at once; so does a read whose answer was lost (reads have no effects). A write
//! whose answer was lost is not retried (it may have been applied): the caller gets the error
//! and the next call goes to another server.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use legate_core::catalog::{ApplyError, Command, Query, QueryValue, Response, Session};
use legate_core::limits;
use legate_core::raft::{NodeId, ServerNode};

use crate::api::Api;
use crate::rpc::{ClientCall, Rpc, RpcReply, Wire};
use crate::server::{
    QueryOptions, QueryResult, RaftStatus, ReadError, ServerResponse, WriteError, FORWARD_TIMEOUT_MS, LEADER_WAIT_MS,
};

/// How long a status call may take.
const STATUS_TIMEOUT_MS: u64 = 5_000;

/// A client agent's connection to the servers. Clones share it.
pub struct Forwarder<W: Wire> {
    inner: Arc<Inner<W>>,
    /// Calls are for this datacenter, not the servers' own: they travel as
    /// [`ClientCall::Forward`] and the server forwards them (see [`Forwarder::via`]).
    dc: Option<Arc<str>>,
}

impl<W: Wire> Clone for Forwarder<W> {
    fn clone(&self) -> Self {
        Forwarder { inner: self.inner.clone(), dc: self.dc.clone() }
    }
}

struct Inner<W: Wire> {
    wire: W,
    /// The datacenter of the servers, when they are another datacenter's (for error texts).
    remote: Option<String>,
    servers: Mutex<Vec<ServerNode>>,
    preferred: AtomicUsize,
}

/// Why a forwarded call failed.
enum Failure {
    /// Every server was tried and none could be reached.
    Unreachable(String),
    /// The call reached a server but its answer was lost: it may have taken effect.
    Unknown(String),
}

impl<W: Wire> Forwarder<W> {
    /// A forwarder to `servers` (their RPC addresses).
    pub fn new(wire: W, servers: Vec<ServerNode>) -> Self {
        Forwarder {
            inner: Arc::new(Inner { wire, remote: None, servers: Mutex::new(servers), preferred: AtomicUsize::new(0) }),
            dc: None,
        }
    }

    /// A forwarder to the servers of another datacenter, `dc` (a server's route there).
    pub fn remote(wire: W, servers: Vec<ServerNode>, dc: &str) -> Self {
        let inner =
            Inner { wire, remote: Some(dc.to_string()), servers: Mutex::new(servers), preferred: AtomicUsize::new(0) };
        Forwarder { inner: Arc::new(inner), dc: None }
    }

    /// The same servers, asked to serve every call in datacenter `dc` (they forward it to a
    /// server of `dc`). The answers need one more hop, so the timeouts allow for it.
    pub fn via(&self, dc: &str) -> Self {
        Forwarder { inner: self.inner.clone(), dc: Some(dc.into()) }
    }

    /// The servers this client knows.
    pub fn servers(&self) -> Vec<ServerNode> {
        self.inner.servers.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replaces the known servers (a client agent follows the servers its gossip pool sees).
    pub fn set_servers(&self, servers: Vec<ServerNode>) {
        let mut known = self.inner.servers.lock().unwrap_or_else(|p| p.into_inner());
        if *known != servers {
            tracing::info!(servers = ?servers.iter().map(|s| s.to_string()).collect::<Vec<_>>(), "servers changed");
            *known = servers;
            self.inner.preferred.store(0, Ordering::Relaxed);
        }
    }

    /// Replaces the known servers with the voters of `status` (when it names any).
    pub fn learn(&self, status: &RaftStatus) {
        let voters: Vec<ServerNode> = status.servers.iter().filter(|s| s.voter).map(|s| s.node.clone()).collect();
        if voters.is_empty() {
            return;
        }
        let mut servers = self.inner.servers.lock().unwrap_or_else(|p| p.into_inner());
        if *servers != voters {
            tracing::info!(servers = ?voters.iter().map(|s| s.to_string()).collect::<Vec<_>>(), "learned the servers");
            *servers = voters;
            self.inner.preferred.store(0, Ordering::Relaxed);
        }
    }

    /// Sends `call` to the preferred server, moving on to the next ones while the call was
    /// certainly not delivered (or, with `idempotent`, whatever the failure).
    async fn call(&self, call: ClientCall, mut timeout_ms: u64, idempotent: bool) -> Result<ServerResponse, Failure> {
        let call = match &self.dc {
            Some(dc) => {
                timeout_ms += FORWARD_TIMEOUT_MS;
                ClientCall::Forward { dc: dc.to_string(), call: Box::new(call) }
            }
            None => call,
        };
        let servers = self.servers();
        if servers.is_empty() {
            return Err(Failure::Unreachable(match &self.inner.remote {
                Some(dc) => format!("No known servers of datacenter {dc:?}"),
                None => "No known Consul servers (join the cluster with -retry-join or `legate join`)".into(),
            }));
        }
        let first = self.inner.preferred.load(Ordering::Relaxed);
        let mut errors = Vec::new();
        for k in 0..servers.len() {
            let i = (first + k) % servers.len();
            let server = &servers[i];
            let rpc = Rpc::Client(call.clone());
            match self.inner.wire.call(server, rpc, Duration::from_millis(timeout_ms)).await {
                Ok(RpcReply::Client(answer)) => {
                    self.inner.preferred.store(i, Ordering::Relaxed);
                    return Ok(answer);
                }
                Ok(_) => return Err(Failure::Unknown(format!("{server}: mismatched reply"))),
                Err(e) => {
                    self.inner.preferred.store((i + 1) % servers.len(), Ordering::Relaxed);
                    if e.delivered && !idempotent {
                        return Err(Failure::Unknown(e.text));
                    }
                    tracing::debug!(%server, error = %e.text, "server unreachable; trying the next");
                    errors.push(e.text);
                }
            }
        }
        let errors = errors.join("; ");
        Err(Failure::Unreachable(match &self.inner.remote {
            Some(dc) => format!("rpc error: no server of datacenter {dc:?} answered: {errors}"),
            None => format!("No known Consul servers: {errors}"),
        }))
    }

    async fn leader_call(&self, call: ClientCall) -> Result<ServerResponse, WriteError> {
        match self.call(call, LEADER_WAIT_MS + FORWARD_TIMEOUT_MS, false).await {
            Ok(ServerResponse::WriteFailed(e)) => Err(e),
            Ok(answer) => Ok(answer),
            Err(Failure::Unreachable(e)) => Err(WriteError::NoServer(e)),
            Err(Failure::Unknown(e)) => Err(WriteError::Unknown(e)),
        }
    }
}

impl<W: Wire> Forwarder<W> {
    /// Every datacenter the servers know: theirs first, then the others nearest first.
    pub async fn datacenters(&self) -> Result<Vec<String>, ReadError> {
        match self.call(ClientCall::Datacenters, STATUS_TIMEOUT_MS, true).await {
            Ok(ServerResponse::Datacenters(list)) => Ok(list),
            Ok(ServerResponse::ReadFailed(e)) => Err(e),
            Ok(other) => Err(ReadError::Internal(format!("unexpected answer to a datacenter list: {other:?}"))),
            Err(Failure::Unreachable(e)) => Err(ReadError::NoServer(e)),
            Err(Failure::Unknown(e)) => Err(ReadError::Rpc(e)),
        }
    }
}

fn unexpected<T>(what: &str, answer: ServerResponse) -> Result<T, WriteError> {
    Err(WriteError::Internal(format!("unexpected answer to {what}: {answer:?}")))
}

impl<W: Wire> Api for Forwarder<W> {
    async fn write(&self, command: Command) -> Result<Response, WriteError> {
        match self.leader_call(ClientCall::Write(command)).await? {
            ServerResponse::Written(r) => Ok(r),
            other => unexpected("a write", other),
        }
    }

    async fn read(&self, opts: &QueryOptions, query: Query) -> Result<QueryResult<QueryValue>, ReadError> {
        let wait_ms = if opts.min_index > 0 {
            let wait = opts.wait_ms.unwrap_or(limits::BLOCKING_WAIT_DEFAULT_MS).min(limits::BLOCKING_WAIT_MAX_MS);
            wait + wait / limits::BLOCKING_JITTER_FRACTION
        } else {
            0
        };
        let call = ClientCall::Read { opts: *opts, query };
        match self.call(call, wait_ms + LEADER_WAIT_MS + FORWARD_TIMEOUT_MS, true).await {
            Ok(ServerResponse::Read(r)) => Ok(r),
            Ok(ServerResponse::ReadFailed(e)) => Err(e),
            Ok(other) => Err(ReadError::Internal(format!("unexpected answer to a read: {other:?}"))),
            Err(Failure::Unreachable(e)) => Err(ReadError::NoServer(e)),
            Err(Failure::Unknown(e)) => Err(ReadError::Rpc(e)),
        }
    }

    async fn create_session(&self, session: Session) -> Result<Result<Session, ApplyError>, WriteError> {
        match self.leader_call(ClientCall::CreateSession(session)).await? {
            ServerResponse::SessionCreated(r) => Ok(r),
            other => unexpected("session create", other),
        }
    }

    async fn renew_session(&self, id: &str) -> Result<Option<Session>, WriteError> {
        match self.leader_call(ClientCall::RenewSession(id.to_string())).await? {
            ServerResponse::SessionRenewed(r) => Ok(r),
            other => unexpected("session renew", other),
        }
    }

    async fn status(&self) -> Result<RaftStatus, ReadError> {
        match self.call(ClientCall::Status, STATUS_TIMEOUT_MS, true).await {
            Ok(ServerResponse::Status(status)) => {
                if self.dc.is_none() {
                    self.learn(&status);
                }
                Ok(status)
            }
            Ok(ServerResponse::ReadFailed(e)) => Err(e),
            Ok(other) => Err(ReadError::Internal(format!("unexpected answer to a status call: {other:?}"))),
            Err(Failure::Unreachable(e)) => Err(ReadError::NoServer(e)),
            Err(Failure::Unknown(e)) => Err(ReadError::Rpc(e)),
        }
    }

    async fn remove_server(&self, id: NodeId) -> Result<(), WriteError> {
        match self.leader_call(ClientCall::RemoveServer { id }).await? {
            ServerResponse::MembershipChanged => Ok(()),
            other => unexpected("remove-server", other),
        }
    }
}
