//! The agent's own services and checks ([`LocalAgent`]), synced into the catalog through a
//! server, in the order the changes were made, with their checks run by a
//! [`CheckExecutor`]. Generic over the async runtime and over where the server is ([`Api`]:
//! in-process or across the network); the driver spawns [`LocalSync::run`].

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::channel::mpsc;
use futures::StreamExt as _;
use legate_core::agent::{AgentOutput, AgentSettings, CatalogView, CheckResult, CheckRun, LocalAgent};
use legate_core::catalog::{Command, Node, Query, QueryValue, Response, Status};
use openraft_rt::{AsyncRuntime, Select2};

use crate::api::Api;
use crate::clock::Clock;
use crate::server::QueryOptions;

/// How long a failed sync waits before it is tried again.
const SYNC_RETRY_MS: u64 = 1_000;

/// How long past its own timeout a check run may take before the agent gives up on it (an
/// executor must answer within the timeout; this only guards against one that does not).
const CHECK_RUN_GRACE_MS: u64 = 5_000;

/// Runs one check. The runtime's executor runs real scripts, HTTP requests and TCP
/// connects; tests and the simulator plug in their own.
pub trait CheckExecutor: Send + Sync + 'static {
    fn execute(&self, run: CheckRun) -> Pin<Box<dyn Future<Output = CheckResult> + Send>>;
}

/// The local agent state and its sync to the catalog. Clones share.
pub struct LocalSync<Rt: AsyncRuntime, A: Api> {
    inner: Arc<Inner<Rt, A>>,
}

impl<Rt: AsyncRuntime, A: Api> Clone for LocalSync<Rt, A> {
    fn clone(&self) -> Self {
        LocalSync { inner: self.inner.clone() }
    }
}

struct Inner<Rt: AsyncRuntime, A: Api> {
    agent: Mutex<LocalAgent>,
    /// Commands not yet applied, oldest first; held across the proposals so syncs never
    /// reorder.
    pending: futures::lock::Mutex<VecDeque<Command>>,
    /// A full sync was asked for and not yet done.
    full_sync_due: AtomicBool,
    kick: Mutex<mpsc::Sender<()>>,
    wake: Mutex<Option<mpsc::Receiver<()>>>,
    server: A,
    executor: Arc<dyn CheckExecutor>,
    clock: Clock,
    /// Catalog writes made by this agent's syncs (to show that a quiet cluster sends none).
    catalog_writes: AtomicU64,
    /// Full syncs that read the catalog's view.
    full_syncs: AtomicU64,
    _rt: std::marker::PhantomData<fn() -> Rt>,
}

impl<Rt: AsyncRuntime, A: Api> LocalSync<Rt, A> {
    /// The agent for `node`; its first sync registers the node. Spawn [`LocalSync::run`].
    pub fn new(node: Node, server: A, clock: Clock, settings: AgentSettings, executor: Arc<dyn CheckExecutor>) -> Self {
        let (kick, wake) = mpsc::channel(1);
        let agent = LocalAgent::with_settings(clock.mono_ms(), node, settings);
        LocalSync {
            inner: Arc::new(Inner {
                agent: Mutex::new(agent),
                pending: futures::lock::Mutex::new(VecDeque::new()),
                full_sync_due: AtomicBool::new(false),
                kick: Mutex::new(kick),
                wake: Mutex::new(Some(wake)),
                server,
                executor,
                clock,
                catalog_writes: AtomicU64::new(0),
                full_syncs: AtomicU64::new(0),
                _rt: std::marker::PhantomData,
            }),
        }
    }

    /// The monotonic time the agent's timers run on.
    pub fn now_ms(&self) -> u64 {
        self.inner.clock.mono_ms()
    }

    /// Catalog writes this agent has made so far.
    pub fn catalog_writes(&self) -> u64 {
        self.inner.catalog_writes.load(Ordering::Relaxed)
    }

    /// Full anti-entropy syncs done so far.
    pub fn full_syncs(&self) -> u64 {
        self.inner.full_syncs.load(Ordering::Relaxed)
    }

    /// Reads the local state.
    pub fn read<R>(&self, f: impl FnOnce(&LocalAgent) -> R) -> R {
        f(&self.lock())
    }

    /// Changes the local state, then syncs what changed to the catalog before returning (so
    /// a client reads its own registration back). A failed sync is retried in the background;
    /// the local change stands either way, as in Consul.
    pub async fn change<R>(&self, f: impl FnOnce(&mut LocalAgent, u64) -> R) -> R {
        let result = {
            let mut agent = self.lock();
            f(&mut agent, self.inner.clock.mono_ms())
        };
        self.flush().await;
        self.kick();
        result
    }

    fn kick(&self) {
        let _ = self.inner.kick.lock().unwrap_or_else(|p| p.into_inner()).try_send(());
    }

    fn lock(&self) -> MutexGuard<'_, LocalAgent> {
        self.inner.agent.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Carries out the agent's outputs: check runs are started, a full sync is noted for the
    /// run loop, catalog commands are queued in order.
    fn take_outputs(&self, pending: &mut VecDeque<Command>) {
        let mut agent = self.lock();
        while let Some(output) = agent.poll_output() {
            match output {
                AgentOutput::Sync(command) => pending.push_back(command),
                AgentOutput::Run { token, run } => self.start_run(token, run),
                AgentOutput::FullSync => self.inner.full_sync_due.store(true, Ordering::Relaxed),
            }
        }
    }

    fn start_run(&self, token: u64, run: CheckRun) {
        let this = self.clone();
        let limit = Duration::from_millis(run.timeout_ms.saturating_add(CHECK_RUN_GRACE_MS));
        let timeout_ms = run.timeout_ms;
        let work = self.inner.executor.execute(run);
        drop(Rt::spawn(async move {
            let result = match Rt::timeout(limit, work).await {
                Ok(result) => result,
                Err(_) => CheckResult {
                    status: Status::Critical,
                    output: format!("Timed out ({timeout_ms}ms) running check"),
                },
            };
            let now = this.now_ms();
            this.lock().handle_check_result(now, token, result);
            this.kick();
        }));
    }

    /// Moves the agent's outputs to the pending queue and proposes them in order. Returns
    /// whether everything pending was applied.
    async fn flush(&self) -> bool {
        let mut pending = self.inner.pending.lock().await;
        self.take_outputs(&mut pending);
        while let Some(command) = pending.front() {
            match self.inner.server.write(command.clone()).await {
                Ok(Response::Error(e)) => {
                    tracing::warn!(command = command.name(), error = %e, "catalog refused a local change");
                    pending.pop_front();
                }
                Ok(_) => {
                    self.inner.catalog_writes.fetch_add(1, Ordering::Relaxed);
                    pending.pop_front();
                }
                Err(e) => {
                    tracing::warn!(command = command.name(), error = %e, "sync failed; will retry");
                    return false;
                }
            }
        }
        true
    }

    /// Reads the catalog's view of this node and hands it to the agent, which emits what
    /// repairs any drift.
    async fn full_sync(&self) {
        let node = self.lock().node().node.clone();
        let opts = QueryOptions::default();
        let services = self.inner.server.read(&opts, Query::NodeServices { node: node.clone() }).await;
        let checks = self.inner.server.read(&opts, Query::NodeChecks { node }).await;
        let view = match (services, checks) {
            (Ok(s), Ok(c)) => match (s.answer.value, c.answer.value) {
                (QueryValue::NodeServices(found), QueryValue::Checks(checks)) => {
                    let (node, services) = match found {
                        Some((node, services)) => (Some(node), services),
                        None => (None, Vec::new()),
                    };
                    CatalogView { node, services, checks }
                }
                _ => {
                    tracing::error!("full sync: the server answered the wrong query");
                    return;
                }
            },
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(error = %e, "full sync: cannot read the catalog; will try at the next one");
                return;
            }
        };
        self.lock().handle_catalog_view(&view);
        self.inner.full_syncs.fetch_add(1, Ordering::Relaxed);
    }

    /// Fires the agent's timers, runs full syncs and retries failed syncs. Runs forever; spawn
    /// it once.
    pub async fn run(self) {
        let Some(mut wake) = self.inner.wake.lock().unwrap_or_else(|p| p.into_inner()).take() else {
            return;
        };
        loop {
            let mut synced = self.flush().await;
            if self.inner.full_sync_due.swap(false, Ordering::Relaxed) {
                self.full_sync().await;
                synced = self.flush().await;
            }
            let now = self.inner.clock.mono_ms();
            let next = self.lock().poll_timeout();
            let mut sleep_ms = next.map_or(60_000, |at| at.saturating_sub(now));
            if !synced {
                sleep_ms = sleep_ms.min(SYNC_RETRY_MS);
            }
            if sleep_ms > 0 {
                if let Select2::First(None) = Rt::select2(wake.next(), Rt::sleep(Duration::from_millis(sleep_ms))).await
                {
                    return;
                }
            }
            let now = self.inner.clock.mono_ms();
            self.lock().handle_timeout(now);
        }
    }
}
