//! [`Api`]: what an agent's HTTP handlers and its local sync call — a server's API, served
//! in-process on a server agent ([`Server`]) or forwarded by a client agent
//! ([`crate::client::Forwarder`]).

use std::future::Future;

use legate_core::catalog::{ApplyError, Command, Query, QueryValue, Response, Session};
use legate_core::raft::NodeId;
use openraft::AsyncRuntime;

use crate::server::{QueryOptions, QueryResult, RaftStatus, ReadError, Server, Transport, WriteError};

/// A server's API, wherever the server is.
pub trait Api: Clone + Send + Sync + 'static {
    /// Proposes a command and waits until it is applied.
    fn write(&self, command: Command) -> impl Future<Output = Result<Response, WriteError>> + Send;
    /// A replicated read with Consul's consistency modes and blocking.
    fn read(
        &self,
        opts: &QueryOptions,
        query: Query,
    ) -> impl Future<Output = Result<QueryResult<QueryValue>, ReadError>> + Send;
    /// Creates a session (its ID chosen by the leader).
    fn create_session(
        &self,
        session: Session,
    ) -> impl Future<Output = Result<Result<Session, ApplyError>, WriteError>> + Send;
    /// Renews a TTL session; `None`: no such session.
    fn renew_session(&self, id: &str) -> impl Future<Output = Result<Option<Session>, WriteError>> + Send;
    /// The Raft status as a server sees it.
    fn status(&self) -> impl Future<Output = Result<RaftStatus, ReadError>> + Send;
    /// Removes a server from the Raft configuration.
    fn remove_server(&self, id: NodeId) -> impl Future<Output = Result<(), WriteError>> + Send;
}

impl<Rt: AsyncRuntime, T: Transport> Api for Server<Rt, T> {
    async fn write(&self, command: Command) -> Result<Response, WriteError> {
        Server::write(self, command).await
    }

    async fn read(&self, opts: &QueryOptions, query: Query) -> Result<QueryResult<QueryValue>, ReadError> {
        Server::read(self, opts, query).await
    }

    async fn create_session(&self, session: Session) -> Result<Result<Session, ApplyError>, WriteError> {
        Server::create_session(self, session).await
    }

    async fn renew_session(&self, id: &str) -> Result<Option<Session>, WriteError> {
        Server::renew_session(self, id).await
    }

    async fn status(&self) -> Result<RaftStatus, ReadError> {
        Ok(Server::status(self))
    }

    async fn remove_server(&self, id: NodeId) -> Result<(), WriteError> {
        Server::remove_server(self, id).await
    }
}
