//! The agent's gossip: its LAN pool (every agent) and WAN pool (servers), the tags that make
//! servers discoverable, joins with retries, following the servers a client agent forwards
//! to, and the leader's reconciliation of members into the catalog.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use legate_core::catalog::{Query, QueryValue};
use legate_core::gossip::{Config, Event, Member, MemberStatus};
use legate_core::leader::{SERF_CHECK_ID, SERVER_SERVICE};
use legate_core::raft::ServerNode;
use legate_core::reconcile::{self, CatalogNode, MemberView};
use legate_runtime::boot::TokioRuntime;
use legate_runtime::boot::{AgentServer, AgentWire};
use legate_runtime::client::Forwarder;
use legate_runtime::federation::probe::{self, Candidate, ProbeConfig};
use legate_runtime::federation::Federation;
use legate_runtime::gossip::{Keyring, Pool, PoolOptions};
use legate_runtime::{Consistency, QueryOptions};
use tokio::sync::broadcast;

use crate::config::AgentConfig;

/// Gossip tag names (Consul's).
pub const TAG_ROLE: &str = "role";
pub const ROLE_SERVER: &str = "consul";
pub const ROLE_CLIENT: &str = "node";
pub const TAG_DC: &str = "dc";
pub const TAG_ID: &str = "id";
pub const TAG_PORT: &str = "port";
pub const TAG_EXPECT: &str = "expect";

/// Default ports of a join address without one.
pub const LAN_PORT: u16 = 8301;
pub const WAN_PORT: u16 = 8302;

/// The leader reconciles every member at least this often (Consul's `reconcile_interval`).
const RECONCILE_INTERVAL: Duration = Duration::from_secs(60);
/// Retry-join pacing: every second for the first attempts (agents of a cluster started all
/// at once come up within seconds of each other), then backing off to Consul's 30 s.
const RETRY_JOIN_FAST: Duration = Duration::from_secs(1);
const RETRY_JOIN_FAST_ATTEMPTS: u32 = 15;
const RETRY_JOIN_MAX: Duration = Duration::from_secs(30);

/// The agent's pools.
#[derive(Clone)]
pub struct Pools {
    pub lan: Pool,
    /// Servers only.
    pub wan: Option<Pool>,
}

/// Consul's defaults (the fast local ones in `-dev`) with the `gossip_lan`/`gossip_wan`
/// overrides.
fn pool_config(cfg: &AgentConfig, wan: bool) -> Config {
    let mut config = match (cfg.dev, wan) {
        (true, _) => Config::local(),
        (false, false) => Config::lan(),
        (false, true) => Config::wan(),
    };
    if wan { &cfg.gossip_wan } else { &cfg.gossip_lan }.apply(&mut config);
    config
}

/// The tags this agent carries in gossip.
pub fn tags(cfg: &AgentConfig) -> BTreeMap<String, String> {
    let mut t = BTreeMap::new();
    let role = if cfg.server || cfg.dev { ROLE_SERVER } else { ROLE_CLIENT };
    t.insert(TAG_ROLE.to_string(), role.to_string());
    t.insert(TAG_DC.to_string(), cfg.datacenter.clone());
    t.insert(TAG_ID.to_string(), cfg.node_id.clone());
    t.insert("segment".to_string(), String::new());
    t.insert("vsn".to_string(), "2".to_string());
    t.insert("build".to_string(), format!("{}:legate", crate::VERSION));
    if cfg.server || cfg.dev {
        t.insert(TAG_PORT.to_string(), cfg.server_port.to_string());
        if cfg.bootstrap_expect > 0 {
            t.insert(TAG_EXPECT.to_string(), cfg.bootstrap_expect.to_string());
        }
    }
    t
}

/// A pool's keyring: the one saved in the data dir (`serf/local.keyring` or
/// `serf/remote.keyring`), else the `encrypt` key; none means plain gossip.
fn keyring(cfg: &AgentConfig, file: &str) -> Result<Option<Keyring>, String> {
    let path = cfg.data_dir.as_ref().filter(|_| !cfg.dev).map(|d| d.join("serf").join(file));
    Keyring::open(path.as_deref(), cfg.encrypt.as_deref()).map_err(|e| format!("gossip encryption: {e}"))
}

/// Binds and starts the pools.
pub async fn start(cfg: &AgentConfig) -> Result<Pools, String> {
    let tags = tags(cfg);
    let lan = Pool::start(PoolOptions {
        config: pool_config(cfg, false),
        name: cfg.node_name.clone(),
        bind: SocketAddr::new(cfg.bind_addr, cfg.serf_lan_port),
        advertise: SocketAddr::new(cfg.advertise_addr, cfg.serf_lan_port),
        tags: tags.clone(),
        default_port: LAN_PORT,
        seed: rand::random(),
        keyring: keyring(cfg, "local.keyring")?,
    })
    .await?;
    let wan = if cfg.server || cfg.dev {
        Some(
            Pool::start(PoolOptions {
                config: pool_config(cfg, true),
                name: format!("{}.{}", cfg.node_name, cfg.datacenter),
                bind: SocketAddr::new(cfg.bind_addr, cfg.serf_wan_port),
                advertise: SocketAddr::new(cfg.advertise_addr, cfg.serf_wan_port),
                tags,
                default_port: WAN_PORT,
                seed: rand::random(),
                keyring: keyring(cfg, "remote.keyring")?,
            })
            .await?,
        )
    } else {
        None
    };
    Ok(Pools { lan, wan })
}

/// Joins through `addrs` until one answers, backing off between rounds.
pub async fn retry_join(pool: Pool, addrs: Vec<String>) {
    if addrs.is_empty() {
        return;
    }
    let mut wait = RETRY_JOIN_FAST;
    for attempt in 1.. {
        match pool.join(&addrs).await {
            Ok(n) => {
                tracing::info!(pool = pool.name(), joined = n, "join completed");
                return;
            }
            Err(e) => tracing::warn!(error = %e, retry_in = ?wait, "join failed; retrying"),
        }
        tokio::time::sleep(wait).await;
        if attempt >= RETRY_JOIN_FAST_ATTEMPTS {
            wait = (wait * 2).min(RETRY_JOIN_MAX);
        }
    }
}

/// The alive servers of `datacenter` among `members`, by their RPC addresses.
pub fn servers_of(members: &[Member], datacenter: &str) -> Vec<ServerNode> {
    members
        .iter()
        .filter(|m| m.status() == MemberStatus::Alive)
        .filter(|m| tag(m, TAG_ROLE) == Some(ROLE_SERVER) && tag(m, TAG_DC) == Some(datacenter))
        .filter_map(|m| {
            let port: u16 = tag(m, TAG_PORT)?.parse().ok()?;
            Some(ServerNode { name: m.name.clone(), rpc_addr: SocketAddr::new(m.addr.ip(), port).to_string() })
        })
        .collect()
}

fn tag<'a>(m: &'a Member, key: &str) -> Option<&'a str> {
    m.tags.get(key).map(String::as_str)
}

/// Keeps a client agent's server list on the alive servers gossip knows.
pub async fn follow_servers(forwarder: Forwarder<AgentWire>, pool: Pool, datacenter: String) {
    let mut members = pool.watch_members();
    loop {
        let servers = servers_of(&members.borrow_and_update(), &datacenter);
        if !servers.is_empty() {
            forwarder.set_servers(servers);
        }
        if members.changed().await.is_err() {
            return;
        }
    }
}

/// The other datacenters' alive servers in the WAN pool, with the round-trip time of gossip's
/// probes to them where measured: the candidates of a server's routes.
pub fn candidates_of(members: &[Member], rtt_ms: &BTreeMap<String, u64>, own_dc: &str) -> Vec<Candidate> {
    members
        .iter()
        .filter(|m| m.status() == MemberStatus::Alive && tag(m, TAG_ROLE) == Some(ROLE_SERVER))
        .filter_map(|m| {
            let dc = tag(m, TAG_DC).filter(|dc| !dc.eq_ignore_ascii_case(own_dc))?;
            let port: u16 = tag(m, TAG_PORT)?.parse().ok()?;
            let node = ServerNode { name: m.name.clone(), rpc_addr: SocketAddr::new(m.addr.ip(), port).to_string() };
            Some(Candidate { datacenter: dc.to_string(), node, rtt_ms: rtt_ms.get(&m.name).copied() })
        })
        .collect()
}

/// Keeps a server's routes to the other datacenters on the WAN pool's alive servers that
/// answer probes (see [`probe::follow`]).
pub async fn follow_wan(federation: Federation<AgentWire>, wire: AgentWire, wan: Pool) {
    let own = federation.local().to_string();
    let candidates = move || candidates_of(&wan.members(), &wan.rtt_ms(), &own);
    probe::follow::<TokioRuntime, _>(federation, wire, candidates, ProbeConfig::AGENT).await;
}

/// Logs LAN members that are servers of another datacenter: they are ignored (never
/// bootstrapped with, forwarded to, or registered), as Consul ignores them.
pub async fn warn_foreign_servers(pool: Pool, datacenter: String) {
    let mut events = pool.subscribe();
    loop {
        match events.recv().await {
            Ok(Event::Joined(m)) if tag(&m, TAG_ROLE) == Some(ROLE_SERVER) => {
                if let Some(dc) = tag(&m, TAG_DC).filter(|dc| *dc != datacenter) {
                    tracing::warn!(member = %m.name, "member is a server of datacenter {dc:?}, not {datacenter:?}; ignoring it");
                }
            }
            Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// On the leader: reconciles the LAN members into the catalog whenever membership changes,
/// and every [`RECONCILE_INTERVAL`].
pub async fn reconcile_loop(server: AgentServer, pool: Pool, datacenter: String) {
    let mut members = pool.watch_members();
    let mut last: Option<Vec<MemberView>> = None;
    let mut last_full = tokio::time::Instant::now();
    loop {
        let views = views_of(&members.borrow_and_update(), &datacenter);
        let due = last_full.elapsed() >= RECONCILE_INTERVAL;
        if server.is_leader() && (last.as_ref() != Some(&views) || due) {
            match reconcile_once(&server, &datacenter, &views).await {
                Ok(()) => {
                    last = Some(views);
                    last_full = tokio::time::Instant::now();
                }
                Err(e) => tracing::warn!(error = %e, "member reconciliation failed; retrying"),
            }
        } else if !server.is_leader() {
            last = None;
        }
        // Wake on a membership change, or in a second to notice leadership changes.
        let _ = tokio::time::timeout(Duration::from_secs(1), members.changed()).await;
    }
}

/// Members of our datacenter, as reconciliation sees them.
fn views_of(members: &[Member], datacenter: &str) -> Vec<MemberView> {
    members
        .iter()
        .filter(|m| tag(m, TAG_DC).is_none_or(|dc| dc == datacenter))
        .map(|m| MemberView {
            name: m.name.clone(),
            id: tag(m, TAG_ID).unwrap_or_default().to_string(),
            address: m.addr.ip().to_string(),
            status: m.status(),
            server_port: (tag(m, TAG_ROLE) == Some(ROLE_SERVER)).then(|| tag(m, TAG_PORT)?.parse().ok()).flatten(),
        })
        .collect()
}

async fn reconcile_once(server: &AgentServer, datacenter: &str, members: &[MemberView]) -> Result<(), String> {
    let opts = QueryOptions { consistency: Consistency::Stale, min_index: 0, wait_ms: None };
    let read = |query| async { server.read(&opts, query).await.map(|r| r.answer.value).map_err(|e| e.to_string()) };
    let QueryValue::Nodes(nodes) = read(Query::Nodes { filter: Default::default() }).await? else {
        return Err("unexpected answer to a node list".into());
    };
    let QueryValue::Checks(checks) = read(Query::ChecksInState { state: None, filter: Default::default() }).await?
    else {
        return Err("unexpected answer to a check list".into());
    };
    let QueryValue::ServiceNodes(servers) =
        read(Query::ServiceNodes { name: SERVER_SERVICE.to_string(), filter: Default::default() }).await?
    else {
        return Err("unexpected answer to a service list".into());
    };
    let mut catalog: BTreeMap<String, CatalogNode> = nodes
        .into_iter()
        .map(|n| (n.node, CatalogNode { address: n.address, serf_health: None, has_server_service: false }))
        .collect();
    for c in checks.into_iter().filter(|c| c.check_id == SERF_CHECK_ID && c.service_id.is_empty()) {
        if let Some(n) = catalog.get_mut(&c.node) {
            n.serf_health = Some(c.status);
        }
    }
    for s in servers {
        if let Some(n) = catalog.get_mut(&s.node.node) {
            n.has_server_service = true;
        }
    }
    let leader = &server.config().node.node;
    for command in reconcile::reconcile(datacenter, leader, members, &catalog) {
        tracing::debug!(command = command.name(), "reconciling a member");
        server.write(command).await.map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Shown by `legate members` as the member's status when we are leaving.
pub fn display_status(m: &Member, pool: &Pool) -> MemberStatus {
    if m.name == pool.name() && pool.status().leaving {
        return MemberStatus::Leaving;
    }
    m.status()
}

#[cfg(test)]
mod tests {
    use legate_core::gossip::MemberState;

    use super::*;

    fn server(name: &str, dc: &str, ip: u8, state: MemberState) -> Member {
        let tags = [(TAG_ROLE, ROLE_SERVER), (TAG_DC, dc), (TAG_PORT, "8300")];
        Member {
            name: format!("{name}.{dc}"),
            addr: SocketAddr::from(([10, 0, 0, ip], 8302)),
            tags: tags.into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            incarnation: 1,
            state,
            state_change_ms: 0,
        }
    }

    #[test]
    fn candidates_are_the_other_datacenters_alive_servers_with_gossips_round_trip_times() {
        let members = vec![
            server("a", "dc1", 1, MemberState::Alive),
            server("b", "dc2", 2, MemberState::Alive),
            server("c", "dc2", 3, MemberState::Suspect),
            server("d", "dc2", 4, MemberState::Dead),
            server("e", "dc3", 5, MemberState::Alive),
        ];
        let rtt: BTreeMap<String, u64> = [("b.dc2".to_string(), 90)].into_iter().collect();
        let found: Vec<(String, String, Option<u64>)> = candidates_of(&members, &rtt, "DC1")
            .into_iter()
            .map(|c| (c.datacenter, c.node.rpc_addr, c.rtt_ms))
            .collect();
        // Not our own datacenter (any case), not the failed server; a suspect is still alive.
        let expected =
            [("dc2", "10.0.0.2:8300", Some(90)), ("dc2", "10.0.0.3:8300", None), ("dc3", "10.0.0.5:8300", None)];
        let expected: Vec<(String, String, Option<u64>)> =
            expected.iter().map(|(dc, addr, rtt)| (dc.to_string(), addr.to_string(), *rtt)).collect();
        assert_eq!(found, expected);
    }
}
