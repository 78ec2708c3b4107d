//! The agent's own services and checks ([`LocalAgent`]), synced into the catalog through a
//! server, in the order the changes were made.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use legate_core::agent::{AgentOutput, LocalAgent};
use legate_core::catalog::{Command, Node, Response};

use crate::clock::Clock;
use crate::server::Server;

/// How long a failed sync waits before it is tried again.
const SYNC_RETRY_MS: u64 = 1_000;

/// The local agent state and its sync to the catalog. Clones share.
#[derive(Clone)]
pub struct LocalSync {
    inner: Arc<Inner>,
}

struct Inner {
    agent: Mutex<LocalAgent>,
    /// Commands not yet applied, oldest first; held across the proposals so syncs never
    /// reorder.
    pending: tokio::sync::Mutex<VecDeque<Command>>,
    kick: tokio::sync::Notify,
    server: Server,
    clock: Clock,
}

impl LocalSync {
    /// Starts the agent for `node` (its first sync registers the node) and its timer task.
    pub fn start(node: Node, server: Server, clock: Clock) -> LocalSync {
        let sync = LocalSync {
            inner: Arc::new(Inner {
                agent: Mutex::new(LocalAgent::new(node)),
                pending: tokio::sync::Mutex::new(VecDeque::new()),
                kick: tokio::sync::Notify::new(),
                server,
                clock,
            }),
        };
        tokio::spawn(sync.clone().run());
        sync
    }

    /// The monotonic time the agent's timers run on.
    pub fn now_ms(&self) -> u64 {
        self.inner.clock.mono_ms()
    }

    /// Reads the local state.
    pub fn read<T>(&self, f: impl FnOnce(&LocalAgent) -> T) -> T {
        f(&self.lock())
    }

    /// Changes the local state, then syncs what changed to the catalog before returning (so
    /// a client reads its own registration back). A failed sync is retried in the background;
    /// the local change stands either way, as in Consul.
    pub async fn change<T>(&self, f: impl FnOnce(&mut LocalAgent, u64) -> T) -> T {
        let result = {
            let mut agent = self.lock();
            f(&mut agent, self.inner.clock.mono_ms())
        };
        self.flush().await;
        self.inner.kick.notify_one();
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

    /// Fires TTL timers and retries failed syncs.
    async fn run(self) {
        loop {
            let synced = self.flush().await;
            let now = self.inner.clock.mono_ms();
            let next = self.lock().poll_timeout();
            let mut sleep_ms = next.map_or(60_000, |at| at.saturating_sub(now));
            if !synced {
                sleep_ms = sleep_ms.min(SYNC_RETRY_MS);
            }
            tokio::select! {
                biased;
                _ = self.inner.kick.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(sleep_ms)) => {}
            }
            let now = self.inner.clock.mono_ms();
            self.lock().handle_timeout(now);
        }
    }
}
