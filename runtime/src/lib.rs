//! Legate's server and agent logic over real I/O, plus its tokio shell.
//!
//! No protocol decision lives here: what to propose, when a session expires, what a blocking
//! query waits on — all of that is decided in `legate-core`. This crate supplies the async
//! plumbing around it:
//!
//! * [`server::Server`] — a Raft server: the write path (stamp, propose, forward to the
//!   leader), the read path (consistency modes, blocking queries) and the leader's duties.
//! * [`local::LocalSync`] — the agent's own services and checks, synced into the catalog.
//! * [`rpc`] — every message between processes, served by [`rpc::dispatch`], and openraft's
//!   network over any [`rpc::Wire`]; [`client::Forwarder`] — a client agent's [`api::Api`].
//! * [`federation`] — the routes to other datacenters' servers.
//! * [`storage`] — opening a server's log and snapshots on a disk; [`join`] — bootstrap.
//!
//! All of these are generic over openraft's `AsyncRuntime` and the wire, so the simulator runs
//! them on madsim exactly as the agent runs them on tokio. The tokio-only parts are [`tcp`]
//! (the wire over TCP), [`boot`] (starting `-dev` and real servers, bootstrap), [`disk`] (the
//! file system) and the clock.

pub mod api;
pub mod boot;
pub mod checks;
pub mod client;
pub mod clock;
pub mod disk;
pub mod federation;
pub mod gossip;
pub mod join;
pub mod local;
pub mod rpc;
pub mod server;
pub mod storage;
pub mod tcp;

pub use server::{Consistency, QueryOptions, QueryResult, ReadError, Server, ServerConfig, WriteError};
