//! `/v1/catalog/*`.

use axum::body::Bytes;
use axum::extract::{Path, State};
use legate_core::catalog::{Command, Deregistration, Node, Registration, Response};
use serde::Deserialize;

use legate_core::catalog::Query;

use legate_runtime::api::Api as _;

use super::error::{HttpError, HttpResult};
use super::json::{self, lenient};
use super::params::Params;
use super::views::{CatalogServiceEntry, NodeServiceList, NodeServices};
use super::{api, pick, read, reply, Shared};
use crate::backend::Backend;
use crate::defs::{CheckDef, CheckPolicy, ServiceDef};

/// This agent's datacenter first, then every other datacenter with a live server in the WAN
/// pool, nearest first (by the round-trip time of gossip probes to its servers). Works without
/// a leader: it is a server's own knowledge (a client agent asks its servers).
pub async fn datacenters(State(state): State<Shared>, params: Params) -> HttpResult {
    reply::ok(&params, &state.routes.datacenters().await?)
}

pub async fn nodes(State(state): State<Shared>, params: Params) -> HttpResult {
    let opts = params.query_options()?;
    let filter = params.filter()?;
    let result = read(&api(&state, &params)?, &opts, Query::Nodes { filter }, pick!(Nodes)).await?;
    reply::read(&params, &result, &result.answer.value)
}

pub async fn services(State(state): State<Shared>, params: Params) -> HttpResult {
    let opts = params.query_options()?;
    let filter = params.filter()?;
    let result = read(&api(&state, &params)?, &opts, Query::Services { filter }, pick!(Services)).await?;
    reply::read(&params, &result, &result.answer.value)
}

pub async fn service(State(state): State<Shared>, params: Params, Path(name): Path<String>) -> HttpResult {
    let opts = params.query_options()?;
    let filter = params.filter()?;
    let result = read(&api(&state, &params)?, &opts, Query::ServiceNodes { name, filter }, pick!(ServiceNodes)).await?;
    let body: Vec<CatalogServiceEntry> = result.answer.value.iter().map(CatalogServiceEntry::from).collect();
    reply::read(&params, &result, &body)
}

pub async fn node(State(state): State<Shared>, params: Params, Path(node): Path<String>) -> HttpResult {
    let opts = params.query_options()?;
    let result = read(&api(&state, &params)?, &opts, Query::NodeServices { node }, pick!(NodeServices)).await?;
    match &result.answer.value {
        None => reply::read(&params, &result, &serde_json::Value::Null),
        Some((n, services)) => {
            let services = services.iter().map(|s| (s.id.as_str(), s)).collect();
            reply::read(&params, &result, &NodeServices { node: n, services })
        }
    }
}

pub async fn node_services(State(state): State<Shared>, params: Params, Path(node): Path<String>) -> HttpResult {
    let opts = params.query_options()?;
    let result = read(&api(&state, &params)?, &opts, Query::NodeServices { node }, pick!(NodeServices)).await?;
    match &result.answer.value {
        None => reply::read(&params, &result, &serde_json::Value::Null),
        Some((n, services)) => reply::read(&params, &result, &NodeServiceList { node: n, services }),
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RegisterBody {
    #[serde(deserialize_with = "lenient::string")]
    id: String,
    #[serde(deserialize_with = "lenient::string")]
    node: String,
    #[serde(deserialize_with = "lenient::string")]
    address: String,
    #[serde(deserialize_with = "lenient::string")]
    datacenter: String,
    #[serde(deserialize_with = "lenient::map")]
    taggedaddresses: std::collections::BTreeMap<String, String>,
    #[serde(deserialize_with = "lenient::map")]
    nodemeta: std::collections::BTreeMap<String, String>,
    service: Option<ServiceDef>,
    check: Option<CheckDef>,
    #[serde(deserialize_with = "lenient::list")]
    checks: Vec<CheckDef>,
    skipnodeupdate: bool,
}

/// The datacenter a catalog write is for: the body's `Datacenter`, else `?dc=`, else ours.
fn write_target(state: &Shared, params: &Params, body_dc: &str) -> Result<(Backend, String), HttpError> {
    let dc = Some(body_dc).filter(|dc| !dc.is_empty()).or(params.get("dc"));
    let name = match dc {
        Some(dc) if !state.routes.is_local(Some(dc)) => dc.to_string(),
        _ => state.config.datacenter.clone(),
    };
    Ok((state.routes.backend(dc)?, name))
}

pub async fn register(State(state): State<Shared>, params: Params, body: Bytes) -> HttpResult {
    let body: RegisterBody = json::decode(&body)?;
    if body.node.is_empty() {
        return Err(HttpError::bad_request("Must provide node"));
    }
    if body.address.is_empty() && !body.skipnodeupdate {
        return Err(HttpError::bad_request("Must provide address if SkipNodeUpdate is not set"));
    }
    let (api, datacenter) = write_target(&state, &params, &body.datacenter)?;
    let service = match body.service {
        None => None,
        Some(def) => {
            let (mut svc, _) = def.into_parts().map_err(HttpError::bad_request)?;
            if svc.service.is_empty() {
                return Err(HttpError::bad_request("Must provide service name"));
            }
            if svc.id.is_empty() {
                svc.id = svc.service.clone();
            }
            Some(svc)
        }
    };
    let mut checks = Vec::new();
    for def in body.check.into_iter().chain(body.checks) {
        let mut spec = def.into_spec(CheckPolicy::default(), true).map_err(HttpError::bad_request)?;
        if spec.check.check_id.is_empty() {
            spec.check.check_id = spec.check.name.clone();
        }
        if spec.check.check_id.is_empty() {
            return Err(HttpError::bad_request("Must provide a CheckID or Name for each check"));
        }
        checks.push(spec.check);
    }
    let node = Node {
        id: body.id,
        node: body.node,
        address: body.address,
        datacenter,
        tagged_addresses: body.taggedaddresses,
        meta: body.nodemeta,
        create_index: 0,
        modify_index: 0,
    };
    let reg = Registration { node, skip_node_update: body.skipnodeupdate, service, checks };
    write(&api, Command::Register(Box::new(reg))).await
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct DeregisterBody {
    #[serde(deserialize_with = "lenient::string")]
    node: String,
    serviceid: Option<String>,
    checkid: Option<String>,
    #[serde(deserialize_with = "lenient::string")]
    datacenter: String,
}

pub async fn deregister(State(state): State<Shared>, params: Params, body: Bytes) -> HttpResult {
    let body: DeregisterBody = json::decode(&body)?;
    if body.node.is_empty() {
        return Err(HttpError::bad_request("Must provide node"));
    }
    let (api, _) = write_target(&state, &params, &body.datacenter)?;
    let dereg = Deregistration {
        node: body.node,
        service_id: body.serviceid.filter(|s| !s.is_empty()),
        check_id: body.checkid.filter(|s| !s.is_empty()),
    };
    write(&api, Command::Deregister(dereg)).await
}

async fn write(api: &Backend, command: Command) -> HttpResult {
    match api.write(command).await? {
        Response::Error(e) => Err(HttpError::internal(e.to_string())),
        _ => Ok(reply::boolean(true)),
    }
}
