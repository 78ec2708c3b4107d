//! Starting an agent: the server, the local agent state, config-file services, the HTTP API.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use legate_core::catalog::Node;
use legate_runtime::clock::Clock;
use legate_runtime::dev;

use crate::config::AgentConfig;
use crate::http::{self, AppState};

/// This agent's catalog record.
fn self_node(cfg: &AgentConfig) -> Node {
    let addr = cfg.advertise_addr.to_string();
    let mut tagged = BTreeMap::new();
    tagged.insert("lan".to_string(), addr.clone());
    tagged.insert("wan".to_string(), addr.clone());
    let family = if cfg.advertise_addr.is_ipv4() { "ipv4" } else { "ipv6" };
    tagged.insert(format!("lan_{family}"), addr.clone());
    tagged.insert(format!("wan_{family}"), addr.clone());
    let mut meta = cfg.node_meta.clone();
    meta.entry("consul-network-segment".into()).or_default();
    meta.insert("consul-version".into(), crate::CONSUL_API_VERSION.into());
    Node {
        id: cfg.node_id.clone(),
        node: cfg.node_name.clone(),
        address: addr,
        datacenter: cfg.datacenter.clone(),
        tagged_addresses: tagged,
        meta,
        create_index: 0,
        modify_index: 0,
    }
}

/// Runs the agent until SIGINT or SIGTERM.
pub async fn run_agent(mut cfg: AgentConfig) -> Result<(), String> {
    if cfg.node_id.is_empty() {
        cfg.node_id = uuid_v4();
    }
    let clock = Clock::default();
    let node = self_node(&cfg);
    let rpc_addr = SocketAddr::new(cfg.advertise_addr, cfg.server_port).to_string();
    let server = dev::start_dev_server(node.clone(), rpc_addr, clock).await?;
    server.wait_registered(&node.node).await?;
    let local = dev::start_local(node, server.clone(), clock);

    let http_listener = match cfg.http_port {
        Some(port) => {
            let addr = SocketAddr::new(cfg.client_addr, port);
            Some((addr, http::bind(addr).await.map_err(|e| format!("cannot listen for HTTP on {addr}: {e}"))?))
        }
        None => None,
    };

    let policy = cfg.check_policy();
    for def in cfg.services.clone() {
        let (service, check_defs) = def.into_parts()?;
        let checks = check_defs.into_iter().map(|d| d.into_spec(policy, false)).collect::<Result<Vec<_>, _>>()?;
        let name = service.service.clone();
        local
            .change(|a, now| a.register_service(now, service, checks, false))
            .await
            .map_err(|e| format!("service {name:?} from config: {e}"))?;
    }
    for def in cfg.checks.clone() {
        let spec = def.into_spec(policy, false)?;
        local.change(|a, now| a.register_check(now, spec)).await.map_err(|e| format!("check from config: {e}"))?;
    }

    let state = Arc::new(AppState { server: server.clone(), local, config: Arc::new(cfg.clone()) });
    println!("==> Legate agent running!");
    println!("           Version: {} (Consul API {})", crate::VERSION, crate::CONSUL_API_VERSION);
    println!("         Node name: '{}'", cfg.node_name);
    println!("        Datacenter: '{}'", cfg.datacenter);
    println!("            Server: {} (dev mode: {})", cfg.server, cfg.dev);
    match &http_listener {
        Some((addr, _)) => println!("          HTTP API: http://{addr}"),
        None => println!("          HTTP API: disabled"),
    }
    println!();
    println!("==> Log data will now stream in as it occurs:");

    if let Some((addr, listener)) = http_listener {
        let state = state.clone();
        tokio::spawn(async move {
            if let Err(e) = http::serve(listener, state).await {
                tracing::error!(%addr, error = %e, "HTTP server stopped");
            }
        });
    }

    wait_for_signal().await;
    tracing::info!("caught signal; shutting down");
    server.shutdown().await;
    Ok(())
}

async fn wait_for_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        biased;
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

fn uuid_v4() -> String {
    uuid::Builder::from_random_bytes(rand::random()).into_uuid().to_string()
}
