//! Where an agent's requests go: its own server (a server agent, `-dev` included) or the
//! servers it forwards to (a client agent). Both are the runtime's [`Api`].

use legate_core::catalog::{ApplyError, Command, Query, QueryValue, Response, Session};
use legate_core::raft::NodeId;
use legate_runtime::api::Api;
use legate_runtime::boot::{AgentServer, AgentWire};
use legate_runtime::client::Forwarder;
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
