use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use legate_core::catalog::Query;
use legate_core::raft::ServerNode;

use super::*;
use crate::boot::TokioTc;
use crate::rpc::{Rpc, RpcReply, WireError};
use crate::server::QueryOptions;

/// Servers by RPC address: up ones answer every client call with a read failure naming
/// themselves (so a test sees who served); down ones refuse the connection.
#[derive(Clone, Default)]
struct FakeWire {
    up: Arc<Mutex<BTreeMap<String, bool>>>,
    calls: Arc<Mutex<Vec<(String, ClientCall)>>>,
}

impl FakeWire {
    fn server(&self, name: &str, up: bool) -> ServerNode {
        let addr = format!("{name}:8300");
        self.up.lock().unwrap().insert(addr.clone(), up);
        ServerNode { name: name.into(), rpc_addr: addr }
    }

    fn served(&self) -> Vec<String> {
        self.calls.lock().unwrap().iter().map(|(name, _)| name.clone()).collect()
    }
}

impl Wire for FakeWire {
    type C = TokioTc;

    async fn call(
        &self,
        target: &ServerNode,
        rpc: Rpc<TokioTc>,
        _timeout: Duration,
    ) -> Result<RpcReply<TokioTc>, WireError> {
        if !self.up.lock().unwrap().get(&target.rpc_addr).copied().unwrap_or(false) {
            return Err(WireError::not_delivered("connection refused"));
        }
        let Rpc::Client(call) = rpc else { return Err(WireError::maybe_delivered("not a client call")) };
        self.calls.lock().unwrap().push((target.name.clone(), call));
        Ok(RpcReply::Client(ServerResponse::ReadFailed(ReadError::Internal(format!("served by {}", target.name)))))
    }
}

fn read() -> ClientCall {
    ClientCall::Read { opts: QueryOptions::default(), query: Query::SessionList }
}

fn write() -> ClientCall {
    ClientCall::RenewSession("s".into())
}

fn route(dc: &str, servers: Vec<ServerNode>) -> Route {
    Route { datacenter: dc.into(), servers }
}

#[tokio::test]
async fn an_unknown_datacenter_has_no_path() {
    let federation = Federation::new("dc1", FakeWire::default());
    assert_eq!(federation.serve("dc9", read()).await, ServerResponse::ReadFailed(ReadError::NoPath));
    assert_eq!(federation.serve("dc9", write()).await, ServerResponse::WriteFailed(WriteError::NoPath));
    assert_eq!(NoRemote.serve("dc2", read()).await, ServerResponse::ReadFailed(ReadError::NoPath));
    assert_eq!(ReadError::NoPath.to_string(), "No path to datacenter");
}

#[tokio::test]
async fn routes_keep_the_given_order_and_skip_the_local_and_empty_datacenters() {
    let wire = FakeWire::default();
    let federation = Federation::new("dc1", wire.clone());
    let (a, b) = (wire.server("a", true), wire.server("b", true));
    federation.set_routes(vec![
        route("dc3", vec![a.clone()]),
        route("DC1", vec![b.clone()]),
        route("dc4", vec![]),
        route("dc2", vec![b.clone()]),
    ]);
    assert_eq!(federation.all_datacenters(), ["dc1", "dc3", "dc2"]);
    assert_eq!(Remote::datacenters(&federation), ["dc3", "dc2"]);
    assert!(federation.route("dc1").is_none() && federation.route("dc4").is_none());
    // Datacenter names match whatever their case.
    assert_eq!(federation.route("DC2").map(|f| f.servers()), Some(vec![b]));
    federation.set_known(vec!["dc5".into(), "dc3".into(), "dc1".into(), "dc2".into()]);
    assert_eq!(federation.all_datacenters(), ["dc1", "dc3", "dc2", "dc5"], "known but unrouted ones last, by name");
    federation.set_routes(vec![route("dc2", vec![a])]);
    assert!(federation.route("dc3").is_none(), "a datacenter that is gone has no route");
    assert_eq!(federation.serve("dc3", read()).await, ServerResponse::ReadFailed(ReadError::NoPath));
}

#[tokio::test]
async fn a_call_goes_to_the_first_server_that_answers_as_a_plain_call() {
    let wire = FakeWire::default();
    let federation = Federation::new("dc1", wire.clone());
    let servers = vec![wire.server("down", false), wire.server("up", true)];
    federation.set_routes(vec![route("dc2", servers)]);
    let answer = federation.serve("dc2", read()).await;
    assert_eq!(answer, ServerResponse::ReadFailed(ReadError::Internal("served by up".into())));
    // The remote server gets the call itself, to serve as its own client's.
    assert_eq!(wire.calls.lock().unwrap()[0].1, read());
    // The next call starts with the server that answered.
    federation.serve("dc2", write()).await;
    assert_eq!(wire.served(), ["up", "up"]);
}

#[tokio::test]
async fn a_datacenter_whose_servers_are_all_down_fails_fast_with_the_reason() {
    let wire = FakeWire::default();
    let federation = Federation::new("dc1", wire.clone());
    federation.set_routes(vec![route("dc2", vec![wire.server("x", false), wire.server("y", false)])]);
    match federation.serve("dc2", read()).await {
        ServerResponse::ReadFailed(ReadError::NoServer(why)) => {
            assert!(why.contains("connection refused") && why.contains("datacenter \"dc2\""), "{why}")
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(wire.served().is_empty());
}

#[tokio::test]
async fn a_client_agent_wraps_its_calls_for_its_own_servers() {
    let wire = FakeWire::default();
    let own = wire.server("own", true);
    let servers = Forwarder::new(wire.clone(), vec![own]);
    let _ = crate::api::Api::read(&servers.via("dc2"), &QueryOptions::default(), Query::SessionList).await;
    let calls = wire.calls.lock().unwrap().clone();
    assert_eq!(calls, [("own".to_string(), ClientCall::Forward { dc: "dc2".into(), call: Box::new(read()) })]);
}
