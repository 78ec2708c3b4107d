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

use crate::check::local_availability::AvailabilityBounds;
use crate::check::wan_fail_fast::FailFastBounds;
use crate::check::{DcIndex, FaultSpan, IndexEvent, Op, Violation, WriteAfterHeal};
use crate::world::client::SimClient;

/// What one client process of a workload gets.
#[derive(Clone)]
pub struct Ctx {
    /// Connected to every server (of its datacenter, when there are several).
    pub client: SimClient,
    /// The client's datacenter (0 with one datacenter).
    pub home: DcIndex,
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
    /// Servers that refused to start (a corrupt disk): out of service for good, so clients
    /// stop sending to them, as a client library fails over among agents.
    out_of_service: Option<crate::world::Observer>,
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
        Ctx { client, client_id, servers, home: 0, call_timeout, think, start, stop, out_of_service: None }
    }

    /// Places the client in datacenter `home` (its `client` must be connected to that
    /// datacenter's servers).
    pub fn in_datacenter(mut self, home: DcIndex) -> Ctx {
        self.home = home;
        self
    }

    /// Makes [`Ctx::pick_server`] skip the servers `observer` saw refuse to start.
    pub fn skipping_refused(mut self, observer: crate::world::Observer) -> Ctx {
        self.out_of_service = Some(observer);
        self
    }

    /// A random server to send the next request to, among those in service.
    pub fn pick_server(&self) -> usize {
        use madsim::rand::{thread_rng, Rng};
        let refused: Vec<usize> = match &self.out_of_service {
            Some(o) => o.refusals().iter().map(|(id, _)| *id as usize - 1).collect(),
            None => Vec::new(),
        };
        let usable: Vec<usize> = (0..self.servers).filter(|i| !refused.contains(i)).collect();
        if usable.is_empty() {
            return thread_rng().gen_range(0..self.servers);
        }
        usable[thread_rng().gen_range(0..usable.len())]
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
    /// The run's start (virtual), as an `Instant` and as Unix ms: converts oracle instants
    /// and leader wall-clock stamps into history times.
    pub start: Instant,
    pub start_unix_ms: u64,
    /// With several datacenters: what the multi-datacenter checkers need besides the requests.
    pub wan: Option<WanFacts>,
}

/// What a run with several datacenters knows when workloads finish.
#[derive(Clone, Debug)]
pub struct WanFacts {
    /// The datacenters' names, in topology order.
    pub datacenters: Vec<String>,
    /// Every fault the nemesis injected, with its scope and time span.
    pub faults: Vec<FaultSpan>,
    pub availability: AvailabilityBounds,
    pub fail_fast: FailFastBounds,
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

/// The write-like operations (`is_write`) invoked after the heal, for the liveness checker:
/// each must be answered (ok or refused) within the bound; indeterminate ones never were.
pub fn writes_after_heal<I, R>(
    ops: &[Op<I, R>],
    healed_at: Duration,
    is_write: impl Fn(&I) -> bool,
) -> Vec<WriteAfterHeal> {
    ops.iter()
        .filter(|op| op.invoke >= healed_at && is_write(&op.input))
        .map(|op| WriteAfterHeal {
            client: op.client,
            key: op.key.clone(),
            invoke: op.invoke,
            acked_at: if op.is_indeterminate() { None } else { Some(op.complete) },
        })
        .collect()
}
