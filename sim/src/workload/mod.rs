//! Workloads: simulated clients that drive the servers through the real command paths (the
//! same `Server::write` / `Server::read` / session calls the HTTP handlers make), record what
//! they observe, and hand their histories to the checkers.
//!
//! Every workload follows one shape, so the scenario runner can mix them:
//!
//! - a `...Run` value, cheap to clone (its state is shared), made from the scenario's spec;
//! - `client(&self, ctx)`: one client process's loop, run on its own madsim node until
//!   [`Ctx::stopped`] says the run is over;
//! - optional `observe(&self, observer, stop)`: a task the runner starts that may watch the
//!   servers (an oracle of server-side facts, e.g. when a session ended);
//! - `finish(self, end) -> Outcome`: after the clients stopped, the recorded operations, the
//!   checkers' verdicts and a digest of the history for the trace hash.

pub mod kv;
pub mod lock;
pub mod service;
pub mod txn;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::check::{IndexEvent, Violation, WriteAfterHeal};
use crate::world::client::SimClient;

/// What one client process of a workload gets.
#[derive(Clone)]
pub struct Ctx {
    /// Connected to every server.
    pub client: SimClient,
    /// Unique across all workloads of a run.
    pub client_id: u64,
    /// Number of servers (`client.call(i, ..)` with `i < servers`).
    pub servers: usize,
    /// How long a client waits for an answer before recording the op as indeterminate.
    pub call_timeout: Duration,
    /// Mean pause between one client's operations (the spec's rate spread over its clients).
    pub think: Duration,
    /// The run's start: history times are `start.elapsed()` (virtual time).
    pub start: Instant,
    stop: Arc<AtomicBool>,
}

impl Ctx {
    pub fn new(
        client: SimClient,
        client_id: u64,
        call_timeout: Duration,
        think: Duration,
        start: Instant,
        stop: Arc<AtomicBool>,
    ) -> Ctx {
        let servers = client.servers().len();
        Ctx { client, client_id, servers, call_timeout, think, start, stop }
    }

    /// Virtual time since the run started.
    pub fn now(&self) -> Duration {
        self.start.elapsed()
    }

    /// True once the runner has ended the run: finish the current operation and return.
    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
}

/// The think time for `clients` clients sharing `rate_per_s` operations per second.
pub fn think_time(rate_per_s: u32, clients: u32) -> Duration {
    let rate = rate_per_s.max(1);
    Duration::from_nanos(1_000_000_000 * u64::from(clients.max(1)) / u64::from(rate))
}

/// What the run knows when workloads finish.
#[derive(Clone, Debug)]
pub struct End {
    /// When the nemesis healed everything (the liveness phase began).
    pub healed_at: Duration,
    /// When the clients stopped: in-flight ops are indeterminate from here.
    pub observed_until: Duration,
    /// The largest clock offset any server may have (for conservative lock-delay windows).
    pub clock_offset_max: Duration,
}

/// What a workload hands back to the runner.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Operations recorded.
    pub ops: usize,
    /// Violations found, each tagged with its checker's name (`Violation::checker`); the
    /// runner keeps those of the checkers the scenario enables.
    pub violations: Vec<Violation>,
    /// `X-Consul-Index` observations for the index-monotonicity checker.
    pub index_events: Vec<IndexEvent>,
    /// Write-like requests invoked after the heal, for the liveness checker.
    pub liveness_writes: Vec<WriteAfterHeal>,
    /// One line per recorded operation (its `Display`), hashed into the trace.
    pub trace: Vec<String>,
}
