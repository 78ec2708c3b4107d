//! The agent's own services and checks ([`LocalAgent`]), synced into the catalog through a
//! server, in the order the changes were made. Generic over the async runtime and over where
//! the server is ([`Api`]: in-process or across the network); the driver spawns
//! [`LocalSync::run`].

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::channel::mpsc;
use futures::StreamExt as _;
use legate_core::agent::{AgentOutput, LocalAgent};
use legate_core::catalog::{Command, Node, Response};
use openraft_rt::{AsyncRuntime, Select2};

use crate::api::Api;
use crate::clock::Clock;

/// How long a failed sync waits before it is tried again.
const SYNC_RETRY_MS: u64 = 1_000;

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
    kick: Mutex<mpsc::Sender<()>>,
    wake: Mutex<Option<mpsc::Receiver<()>>>,
    server: A,
    clock: Clock,
    _rt: std::marker::PhantomData<fn() -> Rt>,
}

impl<Rt: AsyncRuntime, A: Api> LocalSync<Rt, A> {
    /// The agent for `node`; its first sync registers the node. Spawn [`LocalSync::run`].
    pub fn new(node: Node, server: A, clock: Clock) -> Self {
        let (kick, wake) = mpsc::channel(1);
        LocalSync {
            inner: Arc::new(Inner {
                agent: Mutex::new(LocalAgent::new(node)),
                pending: futures::lock::Mutex::new(VecDeque::new()),
                kick: Mutex::new(kick),
                wake: Mutex::new(Some(wake)),
                server,
                clock,
                _rt: std::marker::PhantomData,
            }),
        }
    }

    /// The monotonic time the agent's timers run on.
    pub fn now_ms(&self) -> u64 {
        self.inner.clock.mono_ms()
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
        let _ = self.inner.kick.lock().unwrap_or_else(|p| p.into_inner()).try_send(());
        result
    }

    fn lock(&self) -> MutexGuard<'_, LocalAgent> {
        self.inner.agent.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Moves the agent's outputs to the pending queue and proposes them in order. Returns
    /// whether everything pending was applied.
    async fn flush(&self) -> bool {
        let mut pending = self.inner.pending.lock().await;
        {
            let mut agent = self.lock();
            while let Some(AgentOutput::Sync(command)) = agent.poll_output() {
                pending.push_back(command);
            }
        }
        while let Some(command) = pending.front() {
            match self.inner.server.write(command.clone()).await {
                Ok(Response::Error(e)) => {
                    tracing::warn!(command = command.name(), error = %e, "catalog refused a local change");
                    pending.pop_front();
                }
                Ok(_) => {
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

    /// Fires TTL timers and retries failed syncs. Runs forever; spawn it once.
    pub async fn run(self) {
        let Some(mut wake) = self.inner.wake.lock().unwrap_or_else(|p| p.into_inner()).take() else {
            return;
        };
        loop {
            let synced = self.flush().await;
            let now = self.inner.clock.mono_ms();
            let next = self.lock().poll_timeout();
            let mut sleep_ms = next.map_or(60_000, |at| at.saturating_sub(now));
            if !synced {
                sleep_ms = sleep_ms.min(SYNC_RETRY_MS);
            }
            if let Select2::First(None) = Rt::select2(wake.next(), Rt::sleep(Duration::from_millis(sleep_ms))).await {
                return;
            }
            let now = self.inner.clock.mono_ms();
            self.lock().handle_timeout(now);
        }
    }
}
