//! `/v1/agent/*`: this agent's own view — its config, members, and the services and checks
//! it is authoritative for.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use legate_core::catalog::{HealthCheck, Status};
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::{HttpError, HttpResult};
use super::json::{self, lenient};
use super::params::Params;
use super::views::AgentService;
use super::{reply, Shared};
use crate::defs::{CheckDef, ServiceDef};
use crate::gossip;
use legate_core::gossip::Member;
use legate_runtime::gossip::Pool;

pub async fn self_info(State(state): State<Shared>, params: Params) -> HttpResult {
    let c = &state.config;
    let ttl_min_ns = c.session_ttl_min_ms * 1_000_000;
    let member =
        state.pools.lan.members().iter().find(|m| m.name == c.node_name).map(|m| member_json(m, &state.pools.lan));
    let body = json!({
        "Config": {
            "Datacenter": c.datacenter,
            "PrimaryDatacenter": c.datacenter,
            "NodeName": c.node_name,
            "NodeID": c.node_id,
            "Server": c.server,
            "Revision": "legate",
            "Version": crate::CONSUL_API_VERSION,
            "BuildDate": "",
            "SessionTTLMin": ttl_min_ns,
        },
        "DebugConfig": {
            "Datacenter": c.datacenter,
            "NodeName": c.node_name,
            "NodeID": c.node_id,
            "ServerMode": c.server,
            "DevMode": c.dev,
            "SessionTTLMin": ttl_min_ns,
            "EnableScriptChecks": c.enable_script_checks,
            "ClientAddrs": [c.client_addr.to_string()],
            "HTTPPort": c.http_port,
            "ServerPort": c.server_port,
            "Version": crate::CONSUL_API_VERSION,
            "LegateVersion": crate::VERSION,
        },
        "Coord": null,
        "Member": member,
        "Meta": c.node_meta,
        "Stats": {},
    });
    reply::ok(&params, &body)
}

/// A member as `/v1/agent/members` shows it (Serf's member with Consul's protocol numbers).
fn member_json(m: &Member, pool: &Pool) -> Value {
    json!({
        "Name": m.name,
        "Addr": m.addr.ip().to_string(),
        "Port": m.addr.port(),
        "Tags": m.tags,
        "Status": gossip::display_status(m, pool) as u8,
        "ProtocolMin": 1,
        "ProtocolMax": 5,
        "ProtocolCur": 2,
        "DelegateMin": 2,
        "DelegateMax": 5,
        "DelegateCur": 4,
    })
}

/// `GET /v1/agent/members[?wan=1]`: the LAN pool, or a server's WAN pool (a client agent has
/// none: an empty list). `?segment` is accepted and ignored (one segment).
pub async fn members(State(state): State<Shared>, params: Params) -> HttpResult {
    let body: Vec<Value> = match pool_of(&state, &params) {
        Ok(pool) => pool.members().iter().map(|m| member_json(m, pool)).collect(),
        Err(_) => Vec::new(),
    };
    reply::ok(&params, &body)
}

/// The pool a request names: the WAN pool with `?wan=1` (servers only), else the LAN pool.
fn pool_of<'a>(state: &'a Shared, params: &Params) -> Result<&'a Pool, HttpError> {
    let wan = params.bool("wan").unwrap_or(false) || params.get("wan") == Some("1");
    if !wan {
        return Ok(&state.pools.lan);
    }
    state.pools.wan.as_ref().ok_or_else(|| HttpError::bad_request("Must be a server to use the WAN pool"))
}

/// `PUT /v1/agent/join/:address[?wan=1]`: joins the pool through that agent.
pub async fn join(State(state): State<Shared>, Path(address): Path<String>, params: Params) -> HttpResult {
    pool_of(&state, &params)?.join(&[address]).await.map_err(HttpError::internal)?;
    Ok(StatusCode::OK.into_response())
}

/// `PUT /v1/agent/force-leave/:node[?prune][&wan=1]`: a failed member is marked left (and,
/// once reaped, forgotten); the leader then deregisters it.
pub async fn force_leave(State(state): State<Shared>, Path(node): Path<String>, params: Params) -> HttpResult {
    match pool_of(&state, &params)?.force_leave(&node).await {
        Ok(()) => Ok(StatusCode::OK.into_response()),
        Err(e) if e.starts_with("no member") => {
            Err(HttpError::internal(format!("agent: No node found with name '{node}'")))
        }
        Err(e) => Err(HttpError::bad_request(&e)),
    }
}

/// `PUT /v1/agent/leave`: a graceful leave. A server first leaves the Raft configuration
/// (through the leader), so the remaining servers keep their quorum; then the agent stops.
pub async fn leave(State(state): State<Shared>) -> HttpResult {
    if let Some(server) = state.api.server() {
        let status = server.status();
        let id = server.config().raft_id;
        let voters = status.servers.iter().filter(|s| s.voter).count();
        if voters > 1 && status.servers.iter().any(|s| s.id == id) {
            tracing::info!("leaving the Raft configuration");
            server.remove_server(id).await?;
        }
    }
    for pool in std::iter::once(&state.pools.lan).chain(&state.pools.wan) {
        pool.leave(crate::run::LEAVE_PROPAGATE_MAX).await;
    }
    tracing::info!("graceful leave complete; shutting down");
    state.leave.notify_one();
    Ok(StatusCode::OK.into_response())
}

pub async fn services(State(state): State<Shared>, params: Params) -> HttpResult {
    let dc = state.config.datacenter.clone();
    let body: BTreeMap<String, Value> = state.local.read(|a| {
        a.services()
            .iter()
            .map(|(id, s)| {
                (id.clone(), serde_json::to_value(AgentService { service: s, datacenter: &dc }).unwrap_or(Value::Null))
            })
            .collect()
    });
    reply::ok(&params, &body)
}

pub async fn service(State(state): State<Shared>, params: Params, Path(id): Path<String>) -> HttpResult {
    let dc = state.config.datacenter.clone();
    let found = state
        .local
        .read(|a| a.service(&id).map(|s| serde_json::to_value(AgentService { service: s, datacenter: &dc })));
    match found {
        Some(Ok(v)) => reply::ok(&params, &v),
        Some(Err(e)) => Err(HttpError::internal(e.to_string())),
        None => Err(HttpError::not_found(format!("unknown service ID: {id}"))),
    }
}

pub async fn checks(State(state): State<Shared>, params: Params) -> HttpResult {
    let body: BTreeMap<String, HealthCheck> =
        state.local.read(|a| a.checks().map(|c| (c.check.check_id.clone(), c.check.clone())).collect());
    reply::ok(&params, &body)
}

pub async fn register_service(State(state): State<Shared>, params: Params, body: Bytes) -> HttpResult {
    let def: ServiceDef = json::decode(&body)?;
    let (service, check_defs) = def.into_parts().map_err(HttpError::bad_request)?;
    if service.service.is_empty() {
        return Err(HttpError::bad_request("Missing service name"));
    }
    let policy = state.config.check_policy(false);
    let mut checks = Vec::with_capacity(check_defs.len());
    for def in check_defs {
        checks.push(def.into_spec(policy, false).map_err(|e| HttpError::bad_request(format!("Invalid check: {e}")))?);
    }
    let replace = params.has("replace-existing-checks") && params.bool("replace-existing-checks").unwrap_or(true);
    state
        .local
        .change(|a, now| a.register_service(now, service, checks, replace))
        .await
        .map_err(|e| HttpError::bad_request(e.to_string()))?;
    Ok(StatusCode::OK.into_response())
}

pub async fn deregister_service(State(state): State<Shared>, Path(id): Path<String>) -> HttpResult {
    if state.local.change(|a, _| a.deregister_service(&id)).await {
        Ok(StatusCode::OK.into_response())
    } else {
        Err(HttpError::not_found(format!(
            "Unknown service ID {id:?}. Ensure that the service ID is passed, not the service name."
        )))
    }
}

pub async fn register_check(State(state): State<Shared>, body: Bytes) -> HttpResult {
    let def: CheckDef = json::decode(&body)?;
    let spec = def.into_spec(state.config.check_policy(false), false).map_err(HttpError::bad_request)?;
    state
        .local
        .change(|a, now| a.register_check(now, spec))
        .await
        .map_err(|e| HttpError::bad_request(e.to_string()))?;
    Ok(StatusCode::OK.into_response())
}

pub async fn deregister_check(State(state): State<Shared>, Path(id): Path<String>) -> HttpResult {
    if state.local.change(|a, _| a.deregister_check(&id)).await {
        Ok(StatusCode::OK.into_response())
    } else {
        Err(HttpError::not_found(format!(
            "Unknown check ID {id:?}. Ensure that the check ID is passed, not the check name."
        )))
    }
}

async fn update_ttl(state: &Shared, id: String, status: Status, output: String) -> HttpResult {
    state
        .local
        .change(|a, now| a.update_ttl(now, &id, status, output))
        .await
        .map_err(|e| HttpError::not_found(e.to_string()))?;
    Ok(StatusCode::OK.into_response())
}

pub async fn check_pass(State(state): State<Shared>, params: Params, Path(id): Path<String>) -> HttpResult {
    update_ttl(&state, id, Status::Passing, params.get("note").unwrap_or_default().to_string()).await
}

pub async fn check_warn(State(state): State<Shared>, params: Params, Path(id): Path<String>) -> HttpResult {
    update_ttl(&state, id, Status::Warning, params.get("note").unwrap_or_default().to_string()).await
}

pub async fn check_fail(State(state): State<Shared>, params: Params, Path(id): Path<String>) -> HttpResult {
    update_ttl(&state, id, Status::Critical, params.get("note").unwrap_or_default().to_string()).await
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct UpdateBody {
    #[serde(deserialize_with = "lenient::string")]
    status: String,
    #[serde(deserialize_with = "lenient::string")]
    output: String,
}

pub async fn check_update(State(state): State<Shared>, Path(id): Path<String>, body: Bytes) -> HttpResult {
    let b: UpdateBody = json::decode(&body)?;
    let status = Status::parse(&b.status)
        .ok_or_else(|| HttpError::bad_request(format!("Invalid check status: {:?}", b.status)))?;
    update_ttl(&state, id, status, b.output).await
}

/// Consul's local health endpoints answer 200/429/503 by the aggregate status, as JSON or,
/// with `?format=text`, as the bare status word.
fn health_answer<B: serde::Serialize>(params: &Params, body: &B, worst: Status) -> HttpResult {
    let code = match worst {
        Status::Passing => StatusCode::OK,
        Status::Warning => StatusCode::TOO_MANY_REQUESTS,
        Status::Critical => StatusCode::SERVICE_UNAVAILABLE,
    };
    if params.get("format") == Some("text") {
        return Ok((code, worst.as_str().to_string()).into_response());
    }
    reply::json(params, code, body)
}

fn service_health(
    state: &Shared,
    pick: impl Fn(&legate_core::catalog::Service) -> bool,
) -> (Vec<Value>, Option<Status>) {
    let dc = state.config.datacenter.clone();
    state.local.read(|a| {
        let mut worst = None;
        let mut entries = Vec::new();
        for svc in a.services().values().filter(|s| pick(s)) {
            let checks: Vec<HealthCheck> = a
                .checks()
                .filter(|c| c.check.service_id == svc.id || c.check.service_id.is_empty())
                .map(|c| c.check.clone())
                .collect();
            let status = checks.iter().map(|c| c.status).max().unwrap_or(Status::Passing);
            worst = Some(worst.map_or(status, |w: Status| w.max(status)));
            entries.push(json!({
                "AggregatedStatus": status.as_str(),
                "Service": AgentService { service: svc, datacenter: &dc },
                "Checks": checks,
            }));
        }
        (entries, worst)
    })
}

pub async fn health_by_name(State(state): State<Shared>, params: Params, Path(name): Path<String>) -> HttpResult {
    match service_health(&state, |s| s.service == name) {
        (entries, Some(worst)) => health_answer(&params, &entries, worst),
        (_, None) => Err(HttpError::not_found(format!("ServiceName {name:?} not found"))),
    }
}

pub async fn health_by_id(State(state): State<Shared>, params: Params, Path(id): Path<String>) -> HttpResult {
    match service_health(&state, |s| s.id == id) {
        (mut entries, Some(worst)) if entries.len() == 1 => health_answer(&params, &entries.remove(0), worst),
        _ => Err(HttpError::not_found(format!("ServiceID {id:?} not found"))),
    }
}

/// `PUT /v1/agent/reload`: reads the config files again and replaces their services and
/// checks (as SIGHUP does).
pub async fn reload(State(state): State<Shared>) -> HttpResult {
    crate::reload::reload(&state.local, &state.config, &state.owned).await.map_err(HttpError::bad_request)?;
    Ok(StatusCode::OK.into_response())
}

/// The `enable` and `reason` parameters of the maintenance endpoints.
fn maintenance_params(params: &Params) -> Result<(bool, String), HttpError> {
    if params.get("enable").is_none() {
        return Err(HttpError::bad_request("Missing value for enable"));
    }
    let enable = params.bool("enable")?;
    Ok((enable, params.get("reason").unwrap_or_default().to_string()))
}

/// `PUT /v1/agent/maintenance?enable=&reason=`: a critical `_node_maintenance` check takes
/// every service of this node out of DNS and `?passing`.
pub async fn node_maintenance(State(state): State<Shared>, params: Params) -> HttpResult {
    let (enable, reason) = maintenance_params(&params)?;
    state.local.change(|a, now| a.set_node_maintenance(now, enable, &reason)).await;
    Ok(StatusCode::OK.into_response())
}

/// `PUT /v1/agent/service/maintenance/:id?enable=&reason=`.
pub async fn service_maintenance(State(state): State<Shared>, params: Params, Path(id): Path<String>) -> HttpResult {
    let (enable, reason) = maintenance_params(&params)?;
    state
        .local
        .change(|a, now| a.set_service_maintenance(now, &id, enable, &reason))
        .await
        .map_err(|_| HttpError::not_found(format!("Unknown service ID: {id}")))?;
    Ok(StatusCode::OK.into_response())
}

/// `GET /v1/agent/metrics`, in the shape of Consul's (go-metrics' in-memory sink). Legate's
/// figures are cumulative since the agent started, so they are reported as gauges.
pub async fn metrics(State(state): State<Shared>, params: Params) -> HttpResult {
    let gauge = |name: &str, value: u64| json!({"Name": name, "Value": value, "Labels": {}});
    let (services, checks) = state.local.read(|a| (a.services().len(), a.checks().count()));
    let mut gauges = vec![
        gauge("legate.agent.catalog_writes", state.local.catalog_writes()),
        gauge("legate.agent.full_syncs", state.local.full_syncs()),
        gauge("legate.agent.services", services as u64),
        gauge("legate.agent.checks", checks as u64),
    ];
    for (prefix, pool) in std::iter::once(("lan", &state.pools.lan)).chain(state.pools.wan.iter().map(|p| ("wan", p))) {
        let status = pool.status();
        let alive = pool.members().iter().filter(|m| m.is_live()).count();
        gauges.push(gauge(&format!("legate.gossip.{prefix}.members_alive"), alive as u64));
        gauges.push(gauge(&format!("legate.gossip.{prefix}.health_score"), u64::from(status.health_score)));
        gauges.push(gauge(&format!("legate.gossip.{prefix}.packets_sent"), status.stats.packets_sent));
        gauges.push(gauge(&format!("legate.gossip.{prefix}.packets_received"), status.stats.packets_received));
        gauges.push(gauge(
            &format!("legate.gossip.{prefix}.bytes_sent"),
            status.stats.packet_bytes_sent + status.stats.stream_bytes_sent,
        ));
        gauges.push(gauge(&format!("legate.gossip.{prefix}.suspicions"), status.stats.suspicions_started));
    }
    if let Some(dns) = &state.dns_stats {
        let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
        gauges.push(gauge("legate.dns.answered", load(&dns.answered)));
        gauges.push(gauge("legate.dns.malformed", load(&dns.malformed)));
        gauges.push(gauge("legate.dns.shed", load(&dns.shed)));
        gauges.push(gauge("legate.dns.read_errors", load(&dns.read_errors)));
        gauges.push(gauge("legate.dns.cache_hits", load(&dns.cache_hits)));
    }
    let body = json!({
        "Timestamp": "",
        "Gauges": gauges,
        "Points": [],
        "Counters": [],
        "Samples": [],
    });
    reply::ok(&params, &body)
}
