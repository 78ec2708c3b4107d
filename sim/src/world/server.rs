//! A simulated server process: the production [`Server`] on madsim, answering RPCs.

use std::collections::BTreeMap;
use std::io::Cursor;
use std::net::SocketAddr;
use std::sync::Arc;

use legate_core::catalog::Node;
use legate_core::raft::{CatalogStore, MemLogStore, ServerNode};
use legate_runtime::clock::Clock;
use legate_runtime::server::{Server, ServerConfig, ServerResponse};
use madsim::net::Endpoint;
use openraft::Snapshot;

use super::net::{ClientCall, Rpc, RpcReply, SimNetwork, SimTransport, Tc};
use super::Observer;
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
}

/// What a server keeps across a crash and restart. The log is held in memory outside the
/// process, so it survives a restart whole (a perfect disk); the state machine does not and
/// is rebuilt from the log.
#[derive(Clone, Default)]
pub struct Durable {
    pub log: MemLogStore<Tc>,
}

/// Runs one server until the simulator kills it. Restarts run it again with the same
/// [`Durable`] state.
pub async fn server_main(spec: ServerSpec, durable: Durable, observer: Observer) {
    let endpoint = Arc::new(Endpoint::bind(spec.addr).await.expect("a fresh node can bind its address"));
    let store = CatalogStore::<Tc>::new();
    let network = SimNetwork { endpoint: endpoint.clone() };
    let raft = SimRaft::new(spec.raft_id, spec.raft_config.clone(), network, durable.log.clone(), store.clone())
        .await
        .expect("Raft starts on a valid config");
    // Every server bootstraps with the same voter set; one that already has a log refuses,
    // which is what a restarted server must do.
    let _ = raft.initialize(spec.members.clone()).await;

    let ip = spec.addr.ip().to_string();
    let node = Node {
        id: format!("00000000-0000-0000-0000-{:012}", spec.raft_id),
        node: spec.name.clone(),
        address: ip.clone(),
        datacenter: "dc1".into(),
        tagged_addresses: BTreeMap::from([("lan".to_string(), ip.clone()), ("wan".to_string(), ip)]),
        meta: BTreeMap::new(),
        create_index: 0,
        modify_index: 0,
    };
    let config = ServerConfig { raft_id: spec.raft_id, node, rpc_addr: spec.addr.to_string() };
    let server =
        SimServer::new(raft.clone(), store, config, Clock::default(), SimTransport { endpoint: endpoint.clone() });
    madsim::task::spawn(server.clone().run_duties());
    observer.started(spec.raft_id, server.clone());

    endpoint.add_rpc_handler(move |rpc: Rpc| {
        let raft = raft.clone();
        let server = server.clone();
        async move { dispatch(&raft, &server, rpc).await }
    });
    futures::future::pending::<()>().await;
}

async fn dispatch(raft: &SimRaft, server: &SimServer, rpc: Rpc) -> RpcReply {
    match rpc {
        Rpc::Append(r) => RpcReply::Append(raft.append_entries(r).await.map_err(|e| e.to_string())),
        Rpc::Vote(r) => RpcReply::Vote(raft.vote(r).await.map_err(|e| e.to_string())),
        Rpc::PreVote(r) => RpcReply::Vote(raft.pre_vote(r).await.map_err(|e| e.to_string())),
        Rpc::Snapshot { vote, meta, data } => {
            let snapshot = Snapshot { meta, snapshot: Cursor::new(data) };
            RpcReply::Snapshot(raft.install_full_snapshot(vote, snapshot).await.map_err(|e| e.to_string()))
        }
        Rpc::Server(request) => RpcReply::Server(server.handle(request).await),
        Rpc::Client(call) => RpcReply::Client(client_call(server, call).await),
    }
}

/// A client's call, served exactly as the agent's HTTP handlers serve it.
async fn client_call(server: &SimServer, call: ClientCall) -> ServerResponse {
    match call {
        ClientCall::Write(command) => match server.write(command).await {
            Ok(r) => ServerResponse::Written(r),
            Err(e) => ServerResponse::WriteFailed(e),
        },
        ClientCall::Read { opts, query } => match server.read(&opts, query).await {
            Ok(r) => ServerResponse::Read(r),
            Err(e) => ServerResponse::ReadFailed(e),
        },
        ClientCall::CreateSession(session) => match server.create_session(session).await {
            Ok(r) => ServerResponse::SessionCreated(r),
            Err(e) => ServerResponse::WriteFailed(e),
        },
        ClientCall::RenewSession(id) => match server.renew_session(&id).await {
            Ok(r) => ServerResponse::SessionRenewed(r),
            Err(e) => ServerResponse::WriteFailed(e),
        },
    }
}
