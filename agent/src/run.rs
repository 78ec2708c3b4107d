//! Starting an agent: its server (`-dev`, or a real one with a data dir) or, on a client
//! agent, the forwarder to the servers; the local agent state, config-file services, the HTTP
//! API.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use legate_core::agent::AgentSettings;
use legate_core::catalog::Node;
use legate_runtime::boot::{self, AgentWire, ServerOptions};
use legate_runtime::client::Forwarder;
use legate_runtime::clock::Clock;
use legate_runtime::federation::Federation;
use legate_runtime::local::{CheckExecutor, LocalSync};

use crate::backend::{Backend, Routes};
use crate::config::AgentConfig;
use crate::gossip;
use crate::http::{self, AppState};
use crate::reload::{self, ConfigOwned};

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

/// How long a graceful leave waits for its news to spread.
pub const LEAVE_PROPAGATE_MAX: Duration = Duration::from_secs(5);

/// Runs the agent until SIGINT, SIGTERM or a graceful leave.
pub async fn run_agent(mut cfg: AgentConfig) -> Result<(), String> {
    let _lock = match &cfg.data_dir {
        Some(dir) if !cfg.dev => Some(lock_data_dir(dir)?),
        _ => None,
    };
    cfg.node_id = settle_node_id(&cfg)?;
    let clock = Clock::default();
    let node = self_node(&cfg);
    let rpc_addr = SocketAddr::new(cfg.advertise_addr, cfg.server_port).to_string();
    let pools = gossip::start(&cfg).await?;
    let federation = pools.wan.as_ref().map(|wan| {
        let wire = AgentWire::new(&cfg.datacenter);
        let federation = Federation::new(&cfg.datacenter, wire.clone());
        tokio::spawn(gossip::follow_wan(federation.clone(), wire, wan.clone()));
        federation
    });
    let api = if cfg.dev {
        let server = boot::start_dev_server(node.clone(), rpc_addr, clock).await?;
        server.wait_registered(&node.node).await?;
        Backend::Server(server)
    } else if cfg.server {
        let data_dir = cfg.data_dir.clone().ok_or("a server needs -data-dir for its Raft log and snapshots")?;
        let opts = ServerOptions {
            node: node.clone(),
            raft_id: boot::raft_id_of(&cfg.node_id)?,
            rpc_bind: SocketAddr::new(cfg.bind_addr, cfg.server_port),
            rpc_advertise: rpc_addr,
            raft_dir: data_dir.join("raft"),
            bootstrap_expect: cfg.bootstrap_expect,
            discover: {
                let (lan, dc) = (pools.lan.clone(), cfg.datacenter.clone());
                Arc::new(move || gossip::servers_of(&lan.members(), &dc))
            },
            tuning: boot::RaftTuning {
                multiplier: cfg.raft_multiplier,
                snapshot_threshold: cfg.raft_snapshot_threshold,
                trailing_logs: cfg.raft_trailing_logs,
                segment_bytes: cfg.raft_log_segment_bytes,
            },
            federation: federation.clone().ok_or("a server has a WAN pool")?,
        };
        Backend::Server(boot::start_server(opts, clock).await?)
    } else {
        let forwarder = Forwarder::new(AgentWire::new(&cfg.datacenter), Vec::new());
        tokio::spawn(gossip::follow_servers(forwarder.clone(), pools.lan.clone(), cfg.datacenter.clone()));
        Backend::Client(forwarder)
    };
    if let Some(server) = api.server() {
        tokio::spawn(gossip::reconcile_loop(server.clone(), pools.lan.clone(), cfg.datacenter.clone()));
    }
    tokio::spawn(gossip::warn_foreign_servers(pools.lan.clone(), cfg.datacenter.clone()));
    tokio::spawn(gossip::retry_join(pools.lan.clone(), cfg.retry_join.clone()));
    if let Some(wan) = &pools.wan {
        tokio::spawn(gossip::retry_join(wan.clone(), cfg.retry_join_wan.clone()));
    }
    let settings = AgentSettings {
        seed: rand::random(),
        check_update_interval_ms: cfg.check_update_interval_ms,
        sync_interval_ms: cfg.anti_entropy_interval_ms,
    };
    let executor: Arc<dyn CheckExecutor> = Arc::new(legate_runtime::checks::Executor::new());
    let local = LocalSync::new(node, api.clone(), clock, settings, executor);
    tokio::spawn(local.clone().run());
    let events = crate::events::start(&pools.lan, cfg.node_name.clone(), local.clone());

    let http_listener = match cfg.http_port {
        Some(port) => {
            let addr = SocketAddr::new(cfg.client_addr, port);
            Some((addr, http::bind(addr).await.map_err(|e| format!("cannot listen for HTTP on {addr}: {e}"))?))
        }
        None => None,
    };
    let routes = Routes { local: api.clone(), datacenter: cfg.datacenter.clone(), federation };
    // DNS serves from here on; its bind error is a startup error like HTTP's.
    let (dns_addr, dns_stats) = match cfg.dns_port {
        Some(port) => {
            let server = crate::dns::DnsServer::bind(SocketAddr::new(cfg.client_addr, port), &cfg.dns).await?;
            let (addr, stats) = (server.local_addr(), server.stats());
            tokio::spawn(server.serve(routes.clone()));
            (Some(addr), Some(stats))
        }
        None => (None, None),
    };

    let owned = futures::lock::Mutex::new(ConfigOwned::default());
    reload::apply(&local, &cfg, &owned).await?;

    let leave = Arc::new(tokio::sync::Notify::new());
    let state = Arc::new(AppState {
        api: api.clone(),
        routes: routes.clone(),
        local,
        config: Arc::new(cfg.clone()),
        leave: leave.clone(),
        owned,
        dns_stats,
        pools: pools.clone(),
        events,
    });
    println!("==> Legate agent running!");
    println!("           Version: {} (Consul API {})", crate::VERSION, crate::CONSUL_API_VERSION);
    println!("         Node name: '{}'", cfg.node_name);
    println!("           Node ID: '{}'", cfg.node_id);
    println!("        Datacenter: '{}'", cfg.datacenter);
    match &pools.wan {
        Some(wan) => println!("     Gossip (LAN/WAN): {} / {}", pools.lan.local_addr(), wan.local_addr()),
        None => println!("      Gossip (LAN): {}", pools.lan.local_addr()),
    }
    println!("            Server: {} (dev mode: {}, bootstrap-expect: {})", cfg.server, cfg.dev, cfg.bootstrap_expect);
    match &http_listener {
        Some((addr, _)) => println!("          HTTP API: http://{addr}"),
        None => println!("          HTTP API: disabled"),
    }
    match dns_addr {
        Some(addr) => println!("               DNS: udp+tcp://{addr}"),
        None => println!("               DNS: disabled"),
    }
    if cfg.server && !cfg.dev {
        println!("        Server RPC: {}", SocketAddr::new(cfg.bind_addr, cfg.server_port));
    }
    if let Some(dir) = &cfg.data_dir {
        println!("          Data dir: {}", dir.display());
    }
    println!();
    println!("==> Log data will now stream in as it occurs:");

    if let Some((addr, listener)) = http_listener {
        let state = state.clone();
        let local_addr = listener.local_addr().unwrap_or(addr);
        tokio::spawn(async move {
            if let Err(e) = http::serve(listener, state).await {
                tracing::error!(%addr, error = %e, "HTTP server stopped");
            }
        });
        // Consul's `watches` query this agent over HTTP, so they start once it serves.
        crate::cli::watch::start_agent_watches(&cfg.watches, local_addr)?;
    }

    tokio::spawn(reload_on_hangup(state.clone()));
    tokio::select! {
        biased;
        _ = wait_for_signal() => {
            tracing::info!("caught signal; shutting down");
            if !cfg.server && !cfg.dev {
                // Consul's leave_on_terminate for client agents: the cluster sees `left`, not
                // `failed`, and deregisters the node instead of marking it critical.
                pools.lan.leave(LEAVE_PROPAGATE_MAX).await;
            }
        }
        _ = leave.notified() => {}
    }
    if let Some(server) = api.server() {
        server.shutdown().await;
    }
    Ok(())
}

/// Holds an exclusive lock on the data dir for the life of the process, so that two agents
/// never share one.
fn lock_data_dir(dir: &Path) -> Result<std::fs::File, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("data dir {}: {e}", dir.display()))?;
    let path = dir.join("LOCK");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| format!("data dir {}: {e}", dir.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(format!("data dir {} is in use by another agent", dir.display())),
        Err(std::fs::TryLockError::Error(e)) => Err(format!("data dir {}: cannot lock it: {e}", dir.display())),
    }
}

/// The node ID: the one in the data dir (written on first start), else `-node-id`, else a new
/// random one. A data dir's ID and a different `-node-id` conflict.
fn settle_node_id(cfg: &AgentConfig) -> Result<String, String> {
    let file = cfg.data_dir.as_ref().filter(|_| !cfg.dev).map(|d| d.join("node-id"));
    let stored = match &file {
        Some(path) => match std::fs::read_to_string(path) {
            Ok(text) => Some(text.trim().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(format!("reading {}: {e}", path.display())),
        },
        None => None,
    };
    let id = match (stored, cfg.node_id.is_empty()) {
        (Some(stored), true) => stored,
        (Some(stored), false) if stored == cfg.node_id => stored,
        (Some(stored), false) => {
            return Err(format!("-node-id {} differs from the data dir's node ID {stored}", cfg.node_id));
        }
        (None, false) => cfg.node_id.clone(),
        (None, true) => uuid_v4(),
    };
    uuid::Uuid::parse_str(&id).map_err(|e| format!("node ID {id:?} is not a UUID: {e}"))?;
    if let Some(path) = &file {
        if !path.exists() {
            std::fs::write(path, &id).map_err(|e| format!("writing {}: {e}", path.display()))?;
        }
    }
    Ok(id)
}

/// SIGHUP reloads the config files' services and checks, as in Consul.
async fn reload_on_hangup(state: crate::http::Shared) {
    let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP; use `legate reload`");
        return;
    };
    while hup.recv().await.is_some() {
        tracing::info!("caught SIGHUP; reloading");
        if let Err(e) = reload::reload(&state.local, &state.config, &state.owned).await {
            tracing::error!(error = %e, "reload failed; the running config stands");
        }
    }
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
