//! Legate's tokio shell: it drives the sans-IO core with a real clock, real randomness and
//! openraft on tokio, and carries out the core's outputs. No protocol decision lives here:
//! what to propose, when a session expires, what a blocking query waits on — all of that is
//! decided in `legate-core`; this crate only supplies time, tasks and I/O.
//!
//! * [`server::Server`] — a Raft server: the write path (stamp, propose, wait), the read path
//!   (consistency modes, blocking queries) and the leader's timer-driven duties.
//! * [`local::LocalSync`] — the agent's own services and checks, synced into the catalog.

pub mod clock;
pub mod local;
pub mod server;

pub use server::{Consistency, QueryOptions, QueryResult, ReadError, Server, ServerConfig, WriteError};
