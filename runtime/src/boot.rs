//! Starting servers on tokio: a `-dev` server (one voter, in memory, no peers) and a real one
//! (its log and snapshots in the data dir, Raft and forwarding over TCP, bootstrapped once
//! `bootstrap_expect` servers have met — see [`crate::join`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use legate_core::catalog::Node;
use legate_core::raft::{MemLogStore, ServerNode, TypeConfig};
use legate_core::storage::LogOptions;
pub use openraft_rt_tokio::TokioRuntime;

use crate::clock::Clock;
use crate::disk::FsDisk;
use crate::federation::Federation;
use crate::rpc::{dispatch, Rpc, RpcNetwork, RpcTransport};
use crate::server::{Raft, Server, ServerConfig, Store};
use crate::tcp::{self, Handshake, TcpWire};

/// openraft's type configuration on tokio.
pub type TokioTc = TypeConfig<TokioRuntime>;
/// The agent's wire: TCP.
pub type AgentWire = TcpWire<TokioTc>;
/// A server as the agent runs it (`-dev` or not).
pub type AgentServer = Server<TokioRuntime, RpcTransport<AgentWire>>;

/// Consul's default `raft_multiplier`: production timing is 5× the fastest.
pub const RAFT_MULTIPLIER_DEFAULT: u32 = 5;
/// The largest multiplier Consul accepts.
pub const RAFT_MULTIPLIER_MAX: u32 = 10;

/// Compact the log into a snapshot every this many applied entries (Consul's
/// `raft_snapshot_threshold`).
pub const SNAPSHOT_THRESHOLD: u64 = 16_384;
/// Entries kept behind a snapshot, so a briefly lagging follower catches up from the log
/// rather than by a snapshot transfer (Consul's `raft_trailing_logs`).
pub const TRAILING_LOGS: u64 = 10_240;

/// Raft timing and compaction of a server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RaftTuning {
    /// Timers for a multiplier (Consul's scaling): with 1, a 100 ms heartbeat and a 1–2 s
    /// election timeout; Consul's default of 5 is five times that.
    pub multiplier: u32,
    pub snapshot_threshold: u64,
    pub trailing_logs: u64,
    /// Log segment files roll at this size; only whole segments behind a snapshot are purged.
    pub segment_bytes: u64,
}

impl Default for RaftTuning {
    fn default() -> Self {
        RaftTuning {
            multiplier: RAFT_MULTIPLIER_DEFAULT,
            snapshot_threshold: SNAPSHOT_THRESHOLD,
            trailing_logs: TRAILING_LOGS,
            segment_bytes: legate_core::limits::LOG_SEGMENT_MAX_BYTES,
        }
    }
}

/// openraft's configuration for a server of `cluster`.
pub fn raft_config(tuning: RaftTuning, cluster: &str) -> Result<openraft::Config, String> {
    let m = u64::from(tuning.multiplier.clamp(1, RAFT_MULTIPLIER_MAX));
    openraft::Config {
        cluster_name: cluster.into(),
        heartbeat_interval: 100 * m,
        election_timeout_min: 1_000 * m,
        election_timeout_max: 2_000 * m,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(tuning.snapshot_threshold.max(1)),
        max_in_snapshot_log_to_keep: tuning.trailing_logs,
        ..Default::default()
    }
    .validate()
    .map_err(|e| format!("invalid Raft configuration: {e}"))
}

/// Fast Raft timers for the single in-memory `-dev` server.
fn dev_raft_config() -> Result<openraft::Config, String> {
    openraft::Config {
        cluster_name: "legate-dev".into(),
        heartbeat_interval: 50,
        election_timeout_min: 150,
        election_timeout_max: 300,
        ..Default::default()
    }
    .validate()
    .map_err(|e| format!("invalid Raft configuration: {e}"))
}

/// A server's Raft id, derived from its node ID (a UUID): the first eight bytes, so that the
/// same data dir and node ID always give the same id (never 0).
pub fn raft_id_of(node_id: &str) -> Result<u64, String> {
    let uuid = uuid::Uuid::parse_str(node_id).map_err(|e| format!("node ID {node_id:?} is not a UUID: {e}"))?;
    let bytes = uuid.as_bytes();
    let id = u64::from_be_bytes(bytes[..8].try_into().expect("a UUID has 16 bytes"));
    Ok(id.max(1))
}

fn server_node(node: &Node, rpc_addr: &str) -> ServerNode {
    ServerNode { name: node.node.clone(), rpc_addr: rpc_addr.to_string() }
}

/// Starts and bootstraps a single-voter in-memory server with no RPC listener, and spawns its
/// duties.
pub async fn start_dev_server(node: Node, rpc_addr: String, clock: Clock) -> Result<AgentServer, String> {
    let store = Store::<TokioRuntime>::new();
    let raft_id = 1;
    let wire = AgentWire::new(&node.datacenter);
    let raft = Raft::<TokioRuntime>::new(
        raft_id,
        Arc::new(dev_raft_config()?),
        RpcNetwork(wire.clone()),
        MemLogStore::<TokioTc>::default(),
        store.clone(),
    )
    .await
    .map_err(|e| format!("starting Raft: {e}"))?;
    let me = server_node(&node, &rpc_addr);
    raft.initialize(BTreeMap::from([(raft_id, me)])).await.map_err(|e| format!("bootstrapping Raft: {e}"))?;
    let config = ServerConfig { raft_id, node, rpc_addr, planted: Default::default() };
    let server = Server::new(raft, store, config, clock, RpcTransport(wire));
    tokio::spawn(server.clone().run_duties());
    Ok(server)
}

/// The servers of this datacenter a server knows of right now.
pub type Discover = Arc<dyn Fn() -> Vec<ServerNode> + Send + Sync>;

/// What a real server needs.
#[derive(Clone)]
pub struct ServerOptions {
    /// Its catalog record (the node name is also its Raft name).
    pub node: Node,
    /// Its Raft id (derived from the node ID, stable across restarts).
    pub raft_id: u64,
    /// Where the RPC listener binds.
    pub rpc_bind: SocketAddr,
    /// `host:port` the other servers reach it at.
    pub rpc_advertise: String,
    /// The Raft log and snapshots live here.
    pub raft_dir: PathBuf,
    /// Bootstrap once this many servers have met (0: never bootstrap; join a cluster).
    pub bootstrap_expect: u32,
    /// The other servers known right now (from gossip), asked again each bootstrap round.
    pub discover: Discover,
    pub tuning: RaftTuning,
    /// The routes to other datacenters, for the calls its clients send there.
    pub federation: Federation<AgentWire>,
}

/// Opens the data dir (refusing a corrupt one), starts Raft, serves RPC, spawns the duties and
/// the bootstrap/join loop.
pub async fn start_server(opts: ServerOptions, clock: Clock) -> Result<AgentServer, String> {
    let disk = FsDisk::open(&opts.raft_dir).map_err(|e| format!("data dir {}: {e}", opts.raft_dir.display()))?;
    let log_options = LogOptions { segment_max_bytes: opts.tuning.segment_bytes, ..LogOptions::default() };
    let (log, store) = crate::storage::open_storage::<TokioTc, _>(disk, log_options, Default::default())
        .map_err(|e| format!("data dir {}: {e}", opts.raft_dir.display()))?;
    let listener = tokio::net::TcpListener::bind(opts.rpc_bind)
        .await
        .map_err(|e| format!("cannot listen for RPC on {}: {e}", opts.rpc_bind))?;
    let datacenter = opts.node.datacenter.clone();
    let wire = AgentWire::new(&datacenter);
    let raft = Raft::<TokioRuntime>::new(
        opts.raft_id,
        Arc::new(raft_config(opts.tuning, &format!("legate-{datacenter}"))?),
        RpcNetwork(wire.clone()),
        log,
        store.clone(),
    )
    .await
    .map_err(|e| format!("data dir {}: cannot start Raft from it: {e}", opts.raft_dir.display()))?;
    let config = ServerConfig {
        raft_id: opts.raft_id,
        node: opts.node.clone(),
        rpc_addr: opts.rpc_advertise.clone(),
        planted: Default::default(),
    };
    let server = Server::new(raft, store, config, clock, RpcTransport(wire.clone()));
    tokio::spawn(server.clone().run_duties());

    let expect = opts.bootstrap_expect;
    let handler = {
        let (server, federation) = (server.clone(), opts.federation.clone());
        move |rpc: Rpc<TokioTc>| {
            let (server, federation) = (server.clone(), federation.clone());
            async move { dispatch(&server, rpc, expect, &federation).await }
        }
    };
    tokio::spawn(tcp::serve(listener, Handshake::new(&datacenter), handler));
    let discover = opts.discover.clone();
    tokio::spawn(crate::join::join_loop(server.clone(), wire, opts.bootstrap_expect, move || discover()));
    Ok(server)
}
