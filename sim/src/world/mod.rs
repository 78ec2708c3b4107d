//! The simulated world: server processes running the production server code on madsim's
//! virtual network and clock, client processes calling them, and the handles the nemesis
//! and the checkers use.
//!
//! A [`Cluster`] is built inside a madsim runtime (one per seed, on a fresh thread). Servers
//! are madsim nodes at `10.0.0.<i>:8300`; clients at `10.0.1.<i>`. Killing a node drops all
//! its tasks; restarting it runs [`server::server_main`] again with the same durable state.
//!
//! A [`World`] holds one cluster per datacenter. Datacenter `d` (0-based, in topology order)
//! has its own Raft cluster, Raft ids from 1, servers at `10.d.0.<i>:8300` and clients at
//! `10.d.1.<i>`, so the first datacenter of a world is addressed exactly as a lone cluster. Its
//! servers federate with the others' (see [`wan`]); the WAN between them has its own latency
//! ([`net::set_wan`]).

pub mod client;
pub mod faults;
pub mod net;
pub mod server;
pub mod skew;
pub mod wan;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use madsim::rand::Rng as _;

use legate_core::raft::ServerNode;
use madsim::runtime::{Handle, NodeHandle};
use openraft::ServerState;
use openraft_rt::WatchReceiver as _;

use legate_core::plant::Planted;
use rand::SeedableRng;

use legate_runtime::federation::Route;
use server::{Durable, ServerSpec, SimLog, SimServer};
use wan::WanProbe;

/// The server RPC port (Consul's 8300).
pub const SERVER_PORT: u16 = 8300;

/// Raft timing in the simulator (Consul's `raft_multiplier = 1` is of this order).
#[derive(Clone, Copy, Debug)]
pub struct RaftTiming {
    pub heartbeat_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// Build a snapshot (and purge the log) every this many applied entries.
    pub snapshot_every_entries: u64,
}

impl Default for RaftTiming {
    fn default() -> Self {
        RaftTiming {
            heartbeat_ms: 100,
            election_timeout_min_ms: 500,
            election_timeout_max_ms: 1_000,
            snapshot_every_entries: 200,
        }
    }
}

/// The running servers, as the checkers and the nemesis see them.
#[derive(Clone, Default)]
pub struct Observer {
    servers: Arc<Mutex<BTreeMap<u64, (SimServer, SimLog)>>>,
    refusals: Arc<Mutex<Vec<(u64, String)>>>,
    session_destroys: Arc<Mutex<BTreeMap<String, SessionDestroyed>>>,
}

/// When a session's destroy (TTL expiry or a client's destroy) was first applied anywhere.
#[derive(Clone, Copy, Debug)]
pub struct SessionDestroyed {
    /// The first moment any server applied it (virtual time).
    pub first_applied: std::time::Instant,
    /// The wall-clock stamp (Unix ms) the proposing leader put on the command.
    pub stamped_ms: u64,
}

impl Observer {
    fn started(&self, raft_id: u64, server: SimServer, log: SimLog) {
        self.servers.lock().unwrap_or_else(|p| p.into_inner()).insert(raft_id, (server, log));
    }

    fn stopped(&self, raft_id: u64) {
        self.servers.lock().unwrap_or_else(|p| p.into_inner()).remove(&raft_id);
    }

    fn refused(&self, raft_id: u64, error: String) {
        self.refusals.lock().unwrap_or_else(|p| p.into_inner()).push((raft_id, error));
    }

    /// Forgets every server. The servers' apply hooks hold this observer, so the world is a
    /// reference cycle until a run clears it: call at the end of a run, or memory leaks per seed.
    pub fn clear(&self) {
        self.servers.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// The servers currently running, by Raft id.
    pub fn servers(&self) -> BTreeMap<u64, SimServer> {
        let servers = self.servers.lock().unwrap_or_else(|p| p.into_inner());
        servers.iter().map(|(id, (server, _))| (*id, server.clone())).collect()
    }

    /// The Raft logs of the servers currently running, by Raft id.
    pub fn logs(&self) -> BTreeMap<u64, SimLog> {
        let servers = self.servers.lock().unwrap_or_else(|p| p.into_inner());
        servers.iter().map(|(id, (_, log))| (*id, log.clone())).collect()
    }

    fn session_destroyed(&self, id: &str, stamped_ms: u64) {
        let mut m = self.session_destroys.lock().unwrap_or_else(|p| p.into_inner());
        m.entry(id.to_string()).or_insert(SessionDestroyed { first_applied: std::time::Instant::now(), stamped_ms });
    }

    /// Every session destroy applied so far, by session ID.
    pub fn session_destroys(&self) -> BTreeMap<String, SessionDestroyed> {
        self.session_destroys.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Servers that refused to start because recovery found corruption: (Raft id, error).
    pub fn refusals(&self) -> Vec<(u64, String)> {
        self.refusals.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The ids of running servers that believe they lead.
    pub fn leaders(&self) -> Vec<u64> {
        self.servers().into_iter().filter(|(_, s)| s.is_leader()).map(|(id, _)| id).collect()
    }

    /// (Raft id, current term, state) of every running server.
    pub fn states(&self) -> Vec<(u64, u64, ServerState)> {
        self.servers()
            .into_iter()
            .map(|(id, s)| {
                let metrics = s.raft().metrics();
                let m = metrics.borrow_watched();
                (id, m.current_term, m.state)
            })
            .collect()
    }
}

/// One simulated server: its madsim node and its durable state.
pub struct ServerSlot {
    pub raft_id: u64,
    pub addr: SocketAddr,
    pub node: NodeHandle,
    pub durable: Durable,
}

/// A cluster of simulated servers: one datacenter.
pub struct Cluster {
    pub handle: Handle,
    pub servers: Vec<ServerSlot>,
    pub observer: Observer,
    /// Its name (`Node.datacenter`).
    pub datacenter: String,
}

/// The address of server `i` (0-based).
pub fn server_addr(i: usize) -> SocketAddr {
    server_addr_in(0, i)
}

/// The address of client `i` (0-based).
pub fn client_ip(i: usize) -> IpAddr {
    client_ip_in(0, i)
}

/// The address of server `i` of datacenter `dc` (both 0-based).
pub fn server_addr_in(dc: usize, i: usize) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, dc as u8, 0, i as u8 + 1)), SERVER_PORT)
}

/// The address of client `i` of datacenter `dc` (both 0-based).
pub fn client_ip_in(dc: usize, i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, dc as u8, 1, i as u8 + 1))
}

/// How a cluster's servers are built.
#[derive(Clone, Copy, Debug)]
pub struct ClusterOptions {
    pub timing: RaftTiming,
    /// Bugs planted for negative scenarios.
    pub planted: Planted,
    /// Log segments roll at this size: small, so that runs roll, purge and recover many.
    pub segment_max_bytes: u64,
    /// Servers start empty and form the cluster with the agent's join loop
    /// (`bootstrap_expect` = the server count), instead of starting with the voter set.
    pub bootstrap_expect: bool,
    /// How servers watch the other datacenters' servers (several datacenters only).
    pub wan_probe: WanProbe,
    /// Planted bug (simulator only): servers apply writes forwarded for another datacenter to
    /// their own datacenter's KV.
    pub forward_writes_locally: bool,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            timing: RaftTiming::default(),
            planted: Planted::default(),
            segment_max_bytes: 16 * 1024,
            bootstrap_expect: false,
            wan_probe: wan::WAN_PROBE,
            forward_writes_locally: false,
        }
    }
}

/// The datacenters of a run, each its own cluster, federated over a simulated WAN.
pub struct World {
    pub handle: Handle,
    /// One cluster per datacenter, in topology order.
    pub datacenters: Vec<Cluster>,
}

impl World {
    /// Starts `n` servers in each datacenter of `names`, the WAN between them with
    /// `wan_latency` per hop. With one name this is [`Cluster::start_with`] (datacenter
    /// `names[0]`), node for node. Call inside a madsim runtime.
    pub fn start(names: &[String], n: usize, options: ClusterOptions, wan_latency: Duration) -> World {
        assert!((1..=5).contains(&names.len()), "1 to 5 datacenters");
        net::set_wan(names.len() > 1, wan_latency);
        let routes: Vec<Route> = names
            .iter()
            .enumerate()
            .map(|(dc, name)| Route {
                datacenter: name.clone(),
                servers: (0..n).map(|i| server_node(names, dc, i)).collect(),
            })
            .collect();
        let datacenters = names
            .iter()
            .enumerate()
            .map(|(dc, _)| {
                let remotes = routes.iter().enumerate().filter(|(d, _)| *d != dc).map(|(_, r)| r.clone()).collect();
                Cluster::start_in(names, dc, n, options, remotes)
            })
            .collect();
        World { handle: Handle::current(), datacenters }
    }

    /// Whether there is more than one datacenter.
    pub fn is_federated(&self) -> bool {
        self.datacenters.len() > 1
    }

    /// How traces name server `i` of datacenter `dc` (see [`server_label`]).
    pub fn label(&self, dc: usize, i: usize) -> String {
        server_label(&self.datacenters, dc, i)
    }
}

/// How traces name server `i` (0-based) of datacenter `dc`: `s<i>` in a lone cluster (as they
/// always have), `<dc>/s<i>` when there are several.
pub fn server_label(datacenters: &[Cluster], dc: usize, i: usize) -> String {
    if datacenters.len() > 1 {
        format!("{}/s{i}", datacenters[dc].datacenter)
    } else {
        format!("s{i}")
    }
}

/// Server `i` of datacenter `dc` as Raft and routes name it: `s<i+1>` in the first datacenter
/// (as a lone cluster has always named it), `<dc>-s<i+1>` in the others.
fn server_node(names: &[String], dc: usize, i: usize) -> ServerNode {
    let name = if dc == 0 { format!("s{}", i + 1) } else { format!("{}-s{}", names[dc], i + 1) };
    ServerNode { name, rpc_addr: server_addr_in(dc, i).to_string() }
}

impl Cluster {
    /// Starts `n` servers that bootstrap together. Call inside a madsim runtime.
    pub fn start(n: usize, timing: RaftTiming) -> Cluster {
        Cluster::start_with(n, ClusterOptions { timing, ..ClusterOptions::default() })
    }

    /// [`Cluster::start`] with every option: one datacenter, `dc1`.
    pub fn start_with(n: usize, options: ClusterOptions) -> Cluster {
        net::set_wan(false, Duration::ZERO);
        Cluster::start_in(&["dc1".to_string()], 0, n, options, Vec::new())
    }

    /// The servers of datacenter `dc` of `names`, federating with `remotes`.
    fn start_in(names: &[String], dc: usize, n: usize, options: ClusterOptions, remotes: Vec<Route>) -> Cluster {
        let timing = options.timing;
        assert!((1..=7).contains(&n), "1 to 7 servers");
        let handle = Handle::current();
        let raft_config = Arc::new(
            openraft::Config {
                cluster_name: "legate-sim".into(),
                heartbeat_interval: timing.heartbeat_ms,
                election_timeout_min: timing.election_timeout_min_ms,
                election_timeout_max: timing.election_timeout_max_ms,
                // Snapshot and compact often, so that runs exercise snapshot building, log
                // purging and snapshot installation on lagging or restarted servers.
                snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(timing.snapshot_every_entries),
                max_in_snapshot_log_to_keep: timing.snapshot_every_entries / 4,
                ..Default::default()
            }
            .validate()
            .expect("valid Raft timing"),
        );
        let members: BTreeMap<u64, ServerNode> = (0..n).map(|i| (i as u64 + 1, server_node(names, dc, i))).collect();
        let observer = Observer::default();
        let mut servers = Vec::with_capacity(n);
        for i in 0..n {
            let raft_id = i as u64 + 1;
            let node_name = server_node(names, dc, i).name;
            let spec = ServerSpec {
                raft_id,
                name: node_name.clone(),
                addr: server_addr_in(dc, i),
                members: members.clone(),
                raft_config: raft_config.clone(),
                planted: options.planted,
                segment_max_bytes: options.segment_max_bytes,
                bootstrap_expect: options.bootstrap_expect.then_some(n as u32),
                datacenter: names[dc].clone(),
                remotes: remotes.clone(),
                wan_probe: options.wan_probe,
                forward_writes_locally: options.forward_writes_locally,
            };
            let durable = Durable::default();
            let (d, o) = (durable.clone(), observer.clone());
            let node = handle
                .create_node()
                .name(node_name)
                .ip(spec.addr.ip())
                .init(move || server::server_main(spec.clone(), d.clone(), o.clone()))
                .build();
            servers.push(ServerSlot { raft_id, addr: server_addr_in(dc, i), node, durable });
        }
        Cluster { handle, servers, observer, datacenter: names[dc].clone() }
    }

    /// Every server's address, in order.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.servers.iter().map(|s| s.addr).collect()
    }

    /// Crashes server `i`: all its tasks stop, and its disk loses what was not synced (the
    /// last write may be torn, by the seed).
    pub fn kill(&self, i: usize) {
        self.kill_with(i, true);
    }

    /// Crashes server `i`; `torn_write` allows the crash to tear the last unsynced write.
    pub fn kill_with(&self, i: usize, torn_write: bool) {
        self.handle.kill(self.servers[i].node.id());
        self.observer.stopped(self.servers[i].raft_id);
        let disk = &self.servers[i].durable.disk;
        if torn_write {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(madsim::rand::thread_rng().gen::<u64>());
            disk.crash(&mut rng);
        } else {
            disk.crash_without_tear();
        }
    }

    /// Restarts a killed server from its durable state.
    pub fn restart(&self, i: usize) {
        self.handle.restart(self.servers[i].node.id());
    }

    /// Waits until exactly one running server leads and the others agree; returns its index.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Option<usize> {
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            let leaders = self.observer.leaders();
            if let [id] = leaders[..] {
                return Some(id as usize - 1);
            }
            madsim::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }
}
