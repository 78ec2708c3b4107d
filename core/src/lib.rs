//! Legate's sans-IO core.
//!
//! Nothing here reads a clock, draws OS randomness, spawns a task or touches a socket or file
//! (`clippy.toml` forbids it). Time and randomness are inputs, so the same code runs under the
//! deterministic simulator (`sim`) and the real tokio shell (`legate-runtime`).
//!
//! # Shapes
//!
//! * [`catalog::Catalog`] is the state machine Raft applies: a pure
//!   `apply(index, &Request) -> Response`. Timestamps it needs are stamped into the request by
//!   the leader. Reads return an [`catalog::Answer`] with the blocking index and watch set.
//! * [`watch::Watchers`] is the blocking-query registry: register a watch set, and each apply's
//!   touched keys fire exactly the watchers whose results may have changed.
//! * Timer-driven machines ([`leader::LeaderDuties`], [`agent::LocalAgent`]) follow the
//!   quinn/str0m contract: feed inputs with `handle_*(now_ms, …)`, call
//!   `handle_timeout(now_ms)` when `poll_timeout()` says, then drain `poll_output()` until it
//!   returns `None`. A spurious `handle_timeout` is a no-op. `now_ms` is a monotonic
//!   millisecond clock chosen by the driver.
//! * [`raft`] holds the openraft type configuration (generic over the async runtime, so the
//!   runtime plugs in tokio and the simulator plugs in madsim) and the log and state-machine
//!   storage that both drive.

pub mod agent;
pub mod catalog;
pub mod dns;
pub mod duration;
pub mod gossip;
pub mod leader;
pub mod limits;
pub mod lock;
pub mod plant;
pub mod raft;
pub mod reconcile;
pub mod storage;
pub mod watch;
