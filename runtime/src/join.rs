//! Forming a cluster: how a server with no Raft state finds the others and bootstraps, or
//! joins the cluster that exists. Generic over the runtime and the wire, so the simulator runs
//! it (servers started with a bootstrap expectation rather than a fixed voter set).
//!
//! A server with no Raft state says hello ([`Rpc::Hello`]) to every server it knows of once a
//! second: the agent passes the servers its LAN gossip pool has seen (members tagged
//! `role=consul` of its datacenter), the simulator a fixed list. When a server it reaches is already in a cluster, it waits for that cluster's
//! leader to replicate to it, asking the leader to add it as a voter if it is not in the
//! configuration yet. Otherwise, once it has seen `bootstrap_expect` servers (itself included),
//! it initializes Raft with all of them as voters; the others do the same with the same set,
//! which openraft accepts (the same first configuration entry everywhere). A server with Raft
//! state — a restart, or a cluster that already formed — never bootstraps again.

use std::collections::BTreeMap;
use std::time::Duration;

use legate_core::raft::{ServerNode, TypeConfig};
use openraft::AsyncRuntime;

use crate::rpc::{Rpc, RpcReply, ServerInfo, Wire};
use crate::server::{Server, ServerRequest, ServerResponse, Transport};

/// How often an unbootstrapped server says hello to its join addresses.
pub const JOIN_INTERVAL: Duration = Duration::from_secs(1);
/// How long one hello may take.
const HELLO_TIMEOUT: Duration = Duration::from_secs(2);

/// Says hello to the servers `discover` names until this server is in a cluster (see the
/// module docs). `discover` is asked again every round.
pub async fn join_loop<Rt, T, W, D>(server: Server<Rt, T>, wire: W, bootstrap_expect: u32, discover: D)
where
    Rt: AsyncRuntime,
    T: Transport,
    W: Wire<C = TypeConfig<Rt>>,
    D: Fn() -> Vec<ServerNode> + Send + 'static,
{
    let raft_id = server.config().raft_id;
    let me = ServerInfo::of(&server, bootstrap_expect).node;
    let mut asked_to_join = false;
    loop {
        let status = server.status();
        if status.servers.iter().any(|s| s.id == raft_id) {
            tracing::info!(servers = status.servers.len(), "in the Raft configuration");
            return;
        }
        if !status.servers.is_empty() && !asked_to_join {
            tracing::info!("a leader contacted this server; waiting to be added as a voter");
        }
        let hello = Box::new(ServerInfo::of(&server, bootstrap_expect));
        let mut seen: BTreeMap<u64, ServerNode> = BTreeMap::from([(raft_id, me.clone())]);
        let mut cluster: Option<ServerInfo> = None;
        for target in &discover() {
            let addr = &target.rpc_addr;
            match wire.call(target, Rpc::Hello(hello.clone()), HELLO_TIMEOUT).await {
                Ok(RpcReply::Hello(info)) => {
                    if info.raft_id == raft_id {
                        continue;
                    }
                    seen.insert(info.raft_id, info.node.clone());
                    if info.initialized {
                        cluster = Some(*info);
                    }
                }
                Ok(_) => tracing::warn!(%addr, "join: mismatched answer to hello"),
                Err(e) => tracing::debug!(%addr, error = %e, "join: no answer yet"),
            }
        }
        if let Some(info) = cluster {
            // A cluster exists: be added to it by its leader (never bootstrap a second one).
            if let Some(leader) = info.status.leader_node().cloned() {
                let request = ServerRequest::AddServer { id: raft_id, node: me.clone() };
                let timeout = Duration::from_millis(crate::server::FORWARD_TIMEOUT_MS);
                match wire.call(&leader, Rpc::Server(request), timeout).await {
                    Ok(RpcReply::Server(ServerResponse::MembershipChanged)) => {
                        asked_to_join = true;
                        tracing::info!(%leader, "joined the cluster");
                    }
                    Ok(RpcReply::Server(other)) => tracing::info!(%leader, answer = ?other, "join: not added yet"),
                    Ok(_) => tracing::warn!(%leader, "join: mismatched answer"),
                    Err(e) => tracing::info!(%leader, error = %e, "join: leader unreachable"),
                }
            }
        } else if bootstrap_expect > 0 && seen.len() >= bootstrap_expect as usize {
            let names: Vec<String> = seen.values().map(ToString::to_string).collect();
            tracing::info!(servers = ?names, "bootstrap_expect reached; bootstrapping the cluster");
            if let Err(e) = server.raft().initialize(seen).await {
                tracing::warn!(error = %e, "bootstrap refused");
            }
        } else if bootstrap_expect > 0 {
            tracing::info!(seen = seen.len(), expect = bootstrap_expect, "waiting for servers to bootstrap");
        }
        Rt::sleep(JOIN_INTERVAL).await;
    }
}
