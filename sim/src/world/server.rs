//! A simulated server process: the production [`Server`] on madsim, answering RPCs.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use legate_core::catalog::{Command, Node, Request};
use legate_core::plant::Planted;
use legate_core::raft::{CatalogStore, ServerNode};
use legate_core::storage::{DiskLogStore, LogOptions};
use legate_runtime::federation::{Federation, Remote, Route};
use legate_runtime::rpc::{dispatch, serve_call, ClientCall, RpcNetwork, RpcTransport};
use legate_runtime::server::{Server, ServerConfig, ServerResponse};
use madsim::net::Endpoint;

use super::net::{Envelope, ReplyEnvelope, SimTransport, SimWire, Tc};
use super::wan::{follow_wan, WanProbe};
use super::Observer;
use crate::disk::SimDisk;
use crate::MadsimRuntime;

/// A server as the simulator runs it.
pub type SimServer = Server<MadsimRuntime, SimTransport>;
/// The simulator's openraft instance.
pub type SimRaft = openraft::Raft<Tc, CatalogStore<Tc>>;

/// Who a server is and who its peers are.
#[derive(Clone, Debug)]
pub struct ServerSpec {
    pub raft_id: u64,
    pub name: String,
    pub addr: SocketAddr,
    pub members: BTreeMap<u64, ServerNode>,
    pub raft_config: Arc<openraft::Config>,
    /// Bugs planted for negative scenarios (none by default).
    pub planted: Planted,
    /// Log segments roll at this size (small, so runs roll and purge segments).
    pub segment_max_bytes: u64,
    /// `Some(n)`: start empty and form the cluster with the agent's join loop, expecting `n`
    /// servers (the other members are the join addresses); `None`: start with `members`.
    pub bootstrap_expect: Option<u32>,
    /// The server's datacenter (`Node.datacenter`).
    pub datacenter: String,
    /// Every other datacenter's servers, in topology order: the members of the WAN pool the
    /// server probes for its routes (empty with one datacenter: no routes, no probes).
    pub remotes: Vec<Route>,
    /// How it probes them.
    pub wan_probe: WanProbe,
    /// Planted bug: writes forwarded for another datacenter are applied here instead.
    pub forward_writes_locally: bool,
}

/// The simulator's Raft log: the production segment log on the simulated disk.
pub type SimLog = DiskLogStore<Tc, SimDisk>;

/// What a server keeps across a crash and restart: its simulated disk (Raft log segments, the
/// meta file, the snapshot file). A crash keeps only what was synced (see [`SimDisk::crash`]);
/// the state machine restarts from the snapshot file and openraft replays the log after it.
#[derive(Clone, Default)]
pub struct Durable {
    pub disk: SimDisk,
}

/// Runs one server until the simulator kills it. Restarts run it again with the same
/// [`Durable`] state. A server whose disk fails recovery (corruption a crash cannot explain)
/// refuses to start, as the real agent does: it reports the error and stays down.
pub async fn server_main(spec: ServerSpec, durable: Durable, observer: Observer) {
    let endpoint = Arc::new(Endpoint::bind(spec.addr).await.expect("a fresh node can bind its address"));
    let (log, store) = match open_storage(&spec, &durable) {
        Ok(opened) => opened,
        Err(e) => {
            observer.refused(spec.raft_id, e);
            futures::future::pending::<()>().await;
            unreachable!("a pending future never completes");
        }
    };
    {
        let observer = observer.clone();
        store.set_apply_hook(Arc::new(move |request: &Request| {
            if let Command::SessionDestroy { id } = &request.command {
                observer.session_destroyed(id, request.now_ms);
            }
        }));
    }
    let network = RpcNetwork(SimWire { endpoint: endpoint.clone() });
    // openraft replays the committed log on start; a log that lost committed entries (only a
    // planted bug can do that) makes it fail, and the server refuses to start.
    let raft = match SimRaft::new(spec.raft_id, spec.raft_config.clone(), network, log.clone(), store.clone()).await {
        Ok(raft) => raft,
        Err(e) => {
            observer.refused(spec.raft_id, format!("raft: {e}"));
            futures::future::pending::<()>().await;
            unreachable!("a pending future never completes");
        }
    };
    if spec.bootstrap_expect.is_none() {
        // Every server bootstraps with the same voter set; one that already has a log
        // refuses, which is what a restarted server must do.
        let _ = raft.initialize(spec.members.clone()).await;
    }

    let ip = spec.addr.ip().to_string();
    let node = Node {
        id: format!("00000000-0000-0000-0000-{:012}", spec.raft_id),
        node: spec.name.clone(),
        address: ip.clone(),
        datacenter: spec.datacenter.clone(),
        tagged_addresses: BTreeMap::from([("lan".to_string(), ip.clone()), ("wan".to_string(), ip)]),
        meta: BTreeMap::new(),
        create_index: 0,
        modify_index: 0,
    };
    let config = ServerConfig { raft_id: spec.raft_id, node, rpc_addr: spec.addr.to_string(), planted: spec.planted };
    let server = SimServer::new(
        raft.clone(),
        store,
        config,
        crate::runtime::node_clock(),
        RpcTransport(SimWire { endpoint: endpoint.clone() }),
    );
    madsim::task::spawn(server.clone().run_duties());
    if let Some(expect) = spec.bootstrap_expect {
        let join: Vec<_> = spec.members.values().filter(|m| m.name != spec.name).cloned().collect();
        let wire = SimWire { endpoint: endpoint.clone() };
        madsim::task::spawn(legate_runtime::join::join_loop(server.clone(), wire, expect, move || join.clone()));
    }
    let federation = Federation::new(&spec.datacenter, SimWire { endpoint: endpoint.clone() });
    if !spec.remotes.is_empty() {
        let wire = SimWire { endpoint: endpoint.clone() };
        madsim::task::spawn(follow_wan(federation.clone(), wire, spec.remotes.clone(), spec.wan_probe));
    }
    let remote = SimRemote { federation, planted_local: spec.forward_writes_locally.then(|| server.clone()) };
    observer.started(spec.raft_id, server.clone(), log);

    let expect = spec.bootstrap_expect.unwrap_or(0);
    endpoint.add_rpc_handler(move |Envelope(rpc)| {
        let (server, remote) = (server.clone(), remote.clone());
        async move { ReplyEnvelope(dispatch(&server, rpc, expect, &remote).await) }
    });
    futures::future::pending::<()>().await;
}

/// The server's way to other datacenters: the production [`Federation`], or — with the
/// `forward-write-locally` plant — a broken one that applies forwarded writes to this server's
/// own datacenter (reads still go where they should, so only the writes land in the wrong KV).
#[derive(Clone)]
struct SimRemote {
    federation: Federation<SimWire>,
    planted_local: Option<SimServer>,
}

impl Remote for SimRemote {
    async fn serve(&self, dc: &str, call: ClientCall) -> ServerResponse {
        match &self.planted_local {
            Some(local) if !call.is_read() => serve_call(local, call).await,
            _ => self.federation.serve(dc, call).await,
        }
    }

    fn datacenters(&self) -> Vec<String> {
        self.federation.datacenters()
    }
}

/// Recovers the log and the snapshot from the disk: what a restarted agent does first.
fn open_storage(spec: &ServerSpec, durable: &Durable) -> Result<(SimLog, CatalogStore<Tc>), String> {
    let options =
        LogOptions { segment_max_bytes: spec.segment_max_bytes, planted_ack_before_sync: spec.planted.ack_before_sync };
    legate_runtime::storage::open_storage(durable.disk.clone(), options, spec.planted)
}
