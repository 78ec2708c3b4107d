//! A `-dev` server on tokio: one voter, in-memory log, no peers.

use std::collections::BTreeMap;
use std::sync::Arc;

use legate_core::catalog::Node;
use legate_core::raft::{MemLogStore, NoPeers, ServerNode, TypeConfig};
use openraft_rt_tokio::TokioRuntime;

use crate::clock::Clock;
use crate::local::LocalSync;
use crate::server::{NoTransport, Raft, Server, ServerConfig, Store};

/// The server of a `-dev` agent.
pub type DevServer = Server<TokioRuntime, NoTransport>;
/// The local agent state of a `-dev` agent.
pub type DevLocal = LocalSync<TokioRuntime, NoTransport>;

/// Fast Raft timers for a single in-memory server.
const HEARTBEAT_MS: u64 = 50;
const ELECTION_TIMEOUT_MIN_MS: u64 = 150;
const ELECTION_TIMEOUT_MAX_MS: u64 = 300;

/// Starts and bootstraps a single-voter server, and spawns its duties.
pub async fn start_dev_server(node: Node, rpc_addr: String, clock: Clock) -> Result<DevServer, String> {
    let raft_config = openraft::Config {
        cluster_name: "legate".into(),
        heartbeat_interval: HEARTBEAT_MS,
        election_timeout_min: ELECTION_TIMEOUT_MIN_MS,
        election_timeout_max: ELECTION_TIMEOUT_MAX_MS,
        ..Default::default()
    }
    .validate()
    .map_err(|e| format!("invalid Raft configuration: {e}"))?;
    let store = Store::<TokioRuntime>::new();
    let raft_id = 1;
    let raft = Raft::<TokioRuntime>::new(
        raft_id,
        Arc::new(raft_config),
        NoPeers,
        MemLogStore::<TypeConfig<TokioRuntime>>::default(),
        store.clone(),
    )
    .await
    .map_err(|e| format!("starting Raft: {e}"))?;
    let me = ServerNode { name: node.node.clone(), rpc_addr: rpc_addr.clone() };
    raft.initialize(BTreeMap::from([(raft_id, me)])).await.map_err(|e| format!("bootstrapping Raft: {e}"))?;
    let config = ServerConfig { raft_id, node, rpc_addr, planted: Default::default() };
    let server = Server::new(raft, store, config, clock, NoTransport);
    tokio::spawn(server.clone().run_duties());
    Ok(server)
}

/// Starts the local agent state of `node` on `server`, and spawns its timers.
pub fn start_local(node: Node, server: DevServer, clock: Clock) -> DevLocal {
    let local = LocalSync::new(node, server, clock);
    tokio::spawn(local.clone().run());
    local
}
