//! Where an agent's requests go: its own server (a server agent, `-dev` included) or the
//! servers it forwards to (a client agent). Both are the runtime's [`Api`]. [`Routes`] picks
//! the backend of a request's datacenter: requests for another datacenter go, from a server,
//! straight to that datacenter's servers and, from a client agent, through its own servers.

use legate_core::catalog::{ApplyError, Command, Query, QueryValue, Response, Session};
use legate_core::raft::NodeId;
use legate_runtime::api::Api;
use legate_runtime::boot::{AgentServer, AgentWire};
use legate_runtime::client::Forwarder;
use legate_runtime::federation::Federation;
use legate_runtime::server::RaftStatus;
use legate_runtime::{QueryOptions, QueryResult, ReadError, WriteError};

/// An agent's way to the replicated state.
#[derive(Clone)]
pub enum Backend {
    /// This agent is a server.
    Server(AgentServer),
    /// This agent is a client: every call goes to a server.
    Client(Forwarder<AgentWire>),
}

impl Backend {
    /// The server, on a server agent.
    pub fn server(&self) -> Option<&AgentServer> {
        match self {
            Backend::Server(s) => Some(s),
            Backend::Client(_) => None,
        }
    }
}

/// The backend of each datacenter, as this agent reaches it.
#[derive(Clone)]
pub struct Routes {
    /// This datacenter.
    pub local: Backend,
    pub datacenter: String,
    /// A server's routes to the other datacenters (a client agent asks its servers).
    pub federation: Option<Federation<AgentWire>>,
}

impl Routes {
    /// Routes of an agent that knows no other datacenter (`-dev` without a WAN join, tests).
    pub fn local_only(local: Backend, datacenter: &str) -> Routes {
        Routes { local, datacenter: datacenter.to_string(), federation: None }
    }

    /// Whether `dc` names this datacenter (no name does too).
    pub fn is_local(&self, dc: Option<&str>) -> bool {
        dc.is_none_or(|dc| dc.is_empty() || dc.eq_ignore_ascii_case(&self.datacenter))
    }

    /// The backend for datacenter `dc` (`None` or empty: this one). A server that knows no
    /// server of `dc` answers `No path to datacenter` at once; a client agent cannot know, so
    /// its servers answer that.
    pub fn backend(&self, dc: Option<&str>) -> Result<Backend, ReadError> {
        let Some(dc) = dc.filter(|_| !self.is_local(dc)) else {
            return Ok(self.local.clone());
        };
        match &self.local {
            Backend::Client(servers) => Ok(Backend::Client(servers.via(dc))),
            Backend::Server(_) => {
                let route = self.federation.as_ref().and_then(|f| f.route(dc));
                route.map(Backend::Client).ok_or(ReadError::NoPath)
            }
        }
    }

    /// Every datacenter known: this one first, then the others nearest first. A server knows
    /// them from its WAN pool; a client agent asks its servers.
    pub async fn datacenters(&self) -> Result<Vec<String>, ReadError> {
        match (&self.local, &self.federation) {
            (Backend::Client(servers), _) => servers.datacenters().await,
            (Backend::Server(_), Some(f)) => Ok(f.all_datacenters()),
            (Backend::Server(_), None) => Ok(vec![self.datacenter.clone()]),
        }
    }
}

impl Api for Backend {
    async fn write(&self, command: Command) -> Result<Response, WriteError> {
        match self {
            Backend::Server(s) => s.write(command).await,
            Backend::Client(c) => c.write(command).await,
        }
    }

    async fn read(&self, opts: &QueryOptions, query: Query) -> Result<QueryResult<QueryValue>, ReadError> {
        match self {
            Backend::Server(s) => s.read(opts, query).await,
            Backend::Client(c) => c.read(opts, query).await,
        }
    }

    async fn create_session(&self, session: Session) -> Result<Result<Session, ApplyError>, WriteError> {
        match self {
            Backend::Server(s) => s.create_session(session).await,
            Backend::Client(c) => c.create_session(session).await,
        }
    }

    async fn renew_session(&self, id: &str) -> Result<Option<Session>, WriteError> {
        match self {
            Backend::Server(s) => s.renew_session(id).await,
            Backend::Client(c) => c.renew_session(id).await,
        }
    }

    async fn status(&self) -> Result<RaftStatus, ReadError> {
        match self {
            Backend::Server(s) => Api::status(s).await,
            Backend::Client(c) => c.status().await,
        }
    }

    async fn remove_server(&self, id: NodeId) -> Result<(), WriteError> {
        match self {
            Backend::Server(s) => s.remove_server(id).await,
            Backend::Client(c) => c.remove_server(id).await,
        }
    }
}
