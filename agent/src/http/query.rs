//! `/v1/query`: prepared queries — create, list, read, update, delete, execute, explain.
//!
//! Definitions are parsed at the edge into [`PreparedQuery`] (keys case-insensitive, `null`
//! lists and maps allowed) and checked by core on apply, with Consul's texts (a rejected
//! definition is a 500, as Consul's RPC errors are). Features Legate lacks are refused with a
//! 400 rather than silently ignored: templates, cluster-peering targets, namespaces and
//! partitions. `Near` and `Connect` are stored and shown but change nothing.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::IntoResponse as _;
use legate_core::catalog::{
    Command, PreparedQuery, PreparedQueryOp, Query, QueryDns, QueryFailover, Response, ServiceQuery,
};
use legate_runtime::api::Api as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::{HttpError, HttpResult};
use super::json::{self, lenient};
use super::params::Params;
use super::views::HealthEntry;
use super::{api, pick, read, reply, Shared};
use crate::backend::Backend;
use crate::prepared::{self, ExecuteError, ExecuteOptions};

/// Consul's text for an unknown query (`/execute`, `/explain` and reads by ID).
const NOT_FOUND: &str = "Query not found";

#[derive(Deserialize, Default)]
#[serde(default)]
struct QueryBody {
    #[serde(deserialize_with = "lenient::string")]
    id: String,
    #[serde(deserialize_with = "lenient::string")]
    name: String,
    #[serde(deserialize_with = "lenient::string")]
    session: String,
    #[serde(deserialize_with = "lenient::string")]
    token: String,
    service: Option<ServiceBody>,
    dns: Option<DnsBody>,
    template: Option<TemplateBody>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ServiceBody {
    #[serde(deserialize_with = "lenient::string")]
    service: String,
    #[serde(deserialize_with = "lenient::string")]
    namespace: String,
    #[serde(deserialize_with = "lenient::string")]
    partition: String,
    #[serde(deserialize_with = "lenient::string")]
    peer: String,
    #[serde(deserialize_with = "lenient::string")]
    samenessgroup: String,
    failover: Option<FailoverBody>,
    onlypassing: Option<bool>,
    #[serde(deserialize_with = "lenient::list")]
    ignorecheckids: Vec<String>,
    #[serde(deserialize_with = "lenient::string")]
    near: String,
    #[serde(deserialize_with = "lenient::list")]
    tags: Vec<String>,
    #[serde(deserialize_with = "lenient::map")]
    nodemeta: std::collections::BTreeMap<String, String>,
    #[serde(deserialize_with = "lenient::map")]
    servicemeta: std::collections::BTreeMap<String, String>,
    connect: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct FailoverBody {
    nearestn: Option<i64>,
    #[serde(deserialize_with = "lenient::list")]
    datacenters: Vec<String>,
    #[serde(deserialize_with = "lenient::list")]
    targets: Vec<Value>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct DnsBody {
    #[serde(deserialize_with = "lenient::string")]
    ttl: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct TemplateBody {
    #[serde(rename = "type", deserialize_with = "lenient::string")]
    kind: String,
    #[serde(deserialize_with = "lenient::string")]
    regexp: String,
}

/// A query as Consul shows it: the definition plus an (always empty) `Template`.
#[derive(Serialize)]
struct QueryView<'a> {
    #[serde(flatten)]
    query: &'a PreparedQuery,
    #[serde(rename = "Template")]
    template: TemplateView,
}

#[derive(Serialize, Default)]
#[serde(rename_all = "PascalCase")]
struct TemplateView {
    #[serde(rename = "Type")]
    kind: &'static str,
    regexp: &'static str,
    remove_empty_tags: bool,
}

impl<'a> From<&'a PreparedQuery> for QueryView<'a> {
    fn from(query: &'a PreparedQuery) -> Self {
        QueryView { query, template: TemplateView::default() }
    }
}

/// `/execute`'s answer (Consul's `PreparedQueryExecuteResponse`).
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ExecuteView<'a> {
    service: &'a str,
    nodes: Vec<HealthEntry<'a>>,
    #[serde(rename = "DNS")]
    dns: &'a QueryDns,
    datacenter: &'a str,
    failovers: u32,
}

/// Turns a request body into a definition (ID left empty), refusing what Legate lacks.
fn definition(body: QueryBody) -> Result<PreparedQuery, HttpError> {
    if body.template.as_ref().is_some_and(|t| !t.kind.is_empty() || !t.regexp.is_empty()) {
        return Err(HttpError::bad_request("Prepared query templates are not supported by Legate yet"));
    }
    let svc = body.service.unwrap_or_default();
    if !svc.namespace.is_empty() && svc.namespace != "default" {
        return Err(HttpError::bad_request("Namespaces are a Consul Enterprise feature"));
    }
    if !svc.partition.is_empty() && svc.partition != "default" {
        return Err(HttpError::bad_request("Partitions are a Consul Enterprise feature"));
    }
    if !svc.peer.is_empty() || !svc.samenessgroup.is_empty() {
        return Err(HttpError::bad_request("Cluster peering (Peer, SamenessGroup) is not supported by Legate"));
    }
    let failover = svc.failover.unwrap_or_default();
    if !failover.targets.is_empty() {
        return Err(HttpError::bad_request(
            "Failover Targets (cluster peering) are not supported by Legate; use NearestN and Datacenters",
        ));
    }
    let nearest_n = failover.nearestn.unwrap_or(0);
    if nearest_n < 0 {
        return Err(HttpError::internal(format!("Invalid prepared query: Bad NearestN '{nearest_n}', must be >= 0")));
    }
    Ok(PreparedQuery {
        id: String::new(),
        name: body.name,
        session: body.session,
        token: body.token,
        service: ServiceQuery {
            service: svc.service,
            failover: QueryFailover {
                nearest_n: u32::try_from(nearest_n).unwrap_or(u32::MAX),
                datacenters: failover.datacenters,
            },
            only_passing: svc.onlypassing.unwrap_or(false),
            ignore_check_ids: svc.ignorecheckids,
            near: svc.near,
            tags: svc.tags,
            node_meta: svc.nodemeta,
            service_meta: svc.servicemeta,
            connect: svc.connect.unwrap_or(false),
        },
        dns: QueryDns { ttl: body.dns.unwrap_or_default().ttl },
        create_index: 0,
        modify_index: 0,
    })
}

/// A fresh query ID. The agent chooses it (at random, like a node ID); core refuses a
/// duplicate, which a 122-bit random ID makes a non-event.
fn new_id() -> String {
    uuid::Builder::from_random_bytes(rand::random()).into_uuid().to_string()
}

async fn write(api: &Backend, op: PreparedQueryOp) -> Result<(), HttpError> {
    match api.write(Command::PreparedQuery(Box::new(op))).await? {
        Response::Error(e) => Err(HttpError::internal(e.to_string())),
        _ => Ok(()),
    }
}

/// `POST /v1/query` → `{"ID": "..."}`.
pub async fn create(State(state): State<Shared>, params: Params, body: Bytes) -> HttpResult {
    let body: QueryBody = json::decode(&body)?;
    if !body.id.is_empty() {
        return Err(HttpError::internal("ID must be empty when creating a new prepared query"));
    }
    let mut query = definition(body)?;
    query.validate().map_err(|e| HttpError::internal(e.to_string()))?;
    query.id = new_id();
    write(&api(&state, &params)?, PreparedQueryOp::Create(query.clone())).await?;
    reply::ok(&params, &serde_json::json!({ "ID": query.id }))
}

/// `GET /v1/query`.
pub async fn list(State(state): State<Shared>, params: Params) -> HttpResult {
    let opts = params.query_options()?;
    let result = read(&api(&state, &params)?, &opts, Query::PreparedQueryList, pick!(PreparedQueries)).await?;
    let body: Vec<QueryView> = result.answer.value.iter().map(QueryView::from).collect();
    reply::read(&params, &result, &body)
}

/// `GET /v1/query/:id` → a one-element list, or 404 `Query not found`.
pub async fn get(State(state): State<Shared>, params: Params, Path(id): Path<String>) -> HttpResult {
    let opts = params.query_options()?;
    let result = read(&api(&state, &params)?, &opts, Query::PreparedQueryGet { id }, pick!(PreparedQuery)).await?;
    match result.answer.value.as_deref() {
        Some(query) => reply::read(&params, &result, &[QueryView::from(query)]),
        None => Ok(reply::with_meta(HttpError::not_found(NOT_FOUND).into_response(), &result)),
    }
}

/// `PUT /v1/query/:id`: replaces the definition (the ID in the URL wins over the body's).
pub async fn update(State(state): State<Shared>, params: Params, Path(id): Path<String>, body: Bytes) -> HttpResult {
    let body: QueryBody = json::decode(&body)?;
    let query = PreparedQuery { id, ..definition(body)? };
    write(&api(&state, &params)?, PreparedQueryOp::Update(query)).await?;
    Ok(axum::http::StatusCode::OK.into_response())
}

/// `DELETE /v1/query/:id`.
pub async fn delete(State(state): State<Shared>, params: Params, Path(id): Path<String>) -> HttpResult {
    write(&api(&state, &params)?, PreparedQueryOp::Delete { id }).await?;
    Ok(axum::http::StatusCode::OK.into_response())
}

/// `GET /v1/query/:id_or_name/execute` (`dc`, `limit`, consistency; `near` and `connect`
/// accepted and ignored).
pub async fn execute(State(state): State<Shared>, params: Params, Path(id_or_name): Path<String>) -> HttpResult {
    let read = params.query_options()?;
    let limit = match params.get("limit") {
        None | Some("") => 0,
        Some(v) => {
            let n: i64 = v.trim().parse().map_err(|e| HttpError::bad_request(format!("Bad limit: {e}")))?;
            usize::try_from(n).unwrap_or(0)
        }
    };
    let opts = ExecuteOptions { read, limit };
    let executed = match prepared::execute(&state.routes, &id_or_name, params.get("dc"), &opts).await {
        Ok(executed) => executed,
        Err(ExecuteError::NotFound) => return Err(HttpError::not_found(NOT_FOUND)),
        Err(ExecuteError::Read(e)) => return Err(e.into()),
    };
    let body = ExecuteView {
        service: &executed.service,
        nodes: executed.nodes.iter().map(HealthEntry::from).collect(),
        dns: &executed.dns,
        datacenter: &executed.datacenter,
        failovers: executed.failovers,
    };
    reply::read(&params, &executed.meta, &body)
}

/// `GET /v1/query/:id_or_name/explain` → `{"Query": {...}}`.
pub async fn explain(State(state): State<Shared>, params: Params, Path(id_or_name): Path<String>) -> HttpResult {
    let opts = params.query_options()?;
    let query = Query::PreparedQueryResolve { id_or_name };
    let result = read(&api(&state, &params)?, &opts, query, pick!(PreparedQuery)).await?;
    match result.answer.value.as_deref() {
        Some(query) => reply::read(&params, &result, &serde_json::json!({ "Query": QueryView::from(query) })),
        None => Ok(reply::with_meta(HttpError::not_found(NOT_FOUND).into_response(), &result)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<PreparedQuery, HttpError> {
        definition(json::decode(body.as_bytes())?)
    }

    #[test]
    fn keys_match_in_any_case_and_user_maps_keep_theirs() {
        let q = parse(
            r#"{"name":"q","Service":{"service":"web","only_passing":true,"IgnoreCheckIDs":["c"],
                "Tags":["a","!b"],"NodeMeta":{"Rack":"r1"},"ServiceMeta":{"Env":"p"},
                "Failover":{"NearestN":2,"Datacenters":["dc2"]}},"DNS":{"TTL":"10s"}}"#,
        )
        .unwrap();
        assert_eq!((q.name.as_str(), q.service.service.as_str()), ("q", "web"));
        assert!(q.service.only_passing);
        assert_eq!(q.service.ignore_check_ids, ["c"]);
        assert_eq!(q.service.tags, ["a", "!b"]);
        assert_eq!(q.service.node_meta.get("Rack").map(String::as_str), Some("r1"));
        assert_eq!(q.service.service_meta.get("Env").map(String::as_str), Some("p"));
        assert_eq!((q.service.failover.nearest_n, q.service.failover.datacenters.as_slice()), (2, &["dc2".into()][..]));
        assert_eq!(q.dns.ttl, "10s");
    }

    #[test]
    fn nulls_are_empty_and_unknown_keys_are_ignored() {
        let q = parse(r#"{"Name":null,"Service":{"Service":"web","Tags":null,"NodeMeta":null,"Failover":null},"X":1}"#)
            .unwrap();
        assert!(q.name.is_empty() && q.service.tags.is_empty() && q.service.node_meta.is_empty());
        assert!(!q.service.failover.is_set());
    }

    #[test]
    fn what_legate_lacks_or_cannot_be_is_refused() {
        let bad = [
            (r#"{"Service":{"Service":"w","Failover":{"NearestN":-1}}}"#, 500, "Bad NearestN '-1'"),
            (r#"{"Template":{"Type":"name_prefix_match"}}"#, 400, "templates"),
            (r#"{"Service":{"Service":"w","Failover":{"Targets":[{"Peer":"p"}]}}}"#, 400, "Targets"),
            (r#"{"Service":{"Service":"w","Namespace":"team"}}"#, 400, "Enterprise"),
            (r#"{"Service":{"Service":"w","Failover":{"NearestN":"two"}}}"#, 400, "Request decode failed"),
            (r#"{"Service":"#, 400, "Request decode failed"),
        ];
        for (body, status, text) in bad {
            let e = parse(body).expect_err(body);
            assert_eq!(e.status.as_u16(), status, "{body}: {}", e.message);
            assert!(e.message.contains(text), "{body}: {}", e.message);
        }
    }

    #[test]
    fn ids_are_fresh_uuids() {
        let (a, b) = (new_id(), new_id());
        assert!(legate_core::catalog::prepared::looks_like_uuid(&a), "{a}");
        assert_ne!(a, b);
    }

    #[test]
    fn the_view_adds_an_empty_template() {
        let q = PreparedQuery { id: "x".into(), ..Default::default() };
        let json = serde_json::to_value(QueryView::from(&q)).unwrap();
        assert_eq!(json["ID"], "x");
        assert_eq!(json["Template"]["Type"], "");
        assert!(json["Service"]["Failover"].is_object());
    }
}
