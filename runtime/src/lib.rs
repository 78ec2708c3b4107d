//! Legate's server and agent logic over real I/O, plus its tokio shell.
//!
//! No protocol decision lives here: what to propose, when a session expires, what a blocking
//! query waits on — all of that is decided in `legate-core`. This crate supplies the async
//! plumbing around it:
//!
//! * [`server::Server`] — a Raft server: the write path (stamp, propose, forward to the
//!   leader), the read path (consistency modes, blocking queries) and the leader's duties.
//! * [`local::LocalSync`] — the agent's own services and checks, synced into the catalog.
//!
//! Both are generic over openraft's `AsyncRuntime` and a [`server::Transport`], so the
//! simulator runs them on madsim exactly as the agent runs them on tokio. The tokio-only parts
//! are [`dev`] (a `-dev` server) and the clock.

pub mod clock;
pub mod dev;
pub mod disk;
pub mod local;
pub mod server;

pub use server::{Consistency, QueryOptions, QueryResult, ReadError, Server, ServerConfig, WriteError};
