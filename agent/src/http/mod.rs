//! Consul's HTTP API (port 8500, prefix `/v1`) over axum.
//!
//! Handlers parse and validate at the edge (bad input is a 4xx with Consul's text, never a
//! panic), call the runtime (`Server` for replicated state, `LocalSync` for the agent's own
//! services and checks) and render Consul's JSON.

mod agent;
mod catalog;
mod error;
mod event;
mod health;
pub mod json;
mod keyring;
mod kv;
mod operator;
pub mod params;
mod query;
mod reply;
mod session;
mod snapshot;
mod status;
mod txn;
mod views;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::Router;
use legate_core::catalog::{Query, QueryValue};
use legate_runtime::api::Api as _;
use legate_runtime::{QueryOptions, QueryResult};
use tower::ServiceExt as _;

pub use error::HttpError;
use params::Params;

use crate::backend::{Backend, Routes};
use crate::config::AgentConfig;

/// What every handler can reach.
pub struct AppState {
    /// The replicated state: this agent's server, or the servers a client agent forwards to.
    pub api: Backend,
    /// The backends of every datacenter (`?dc=`).
    pub routes: Routes,
    pub local: AgentLocal,
    pub config: Arc<AgentConfig>,
    /// Notified by `PUT /v1/agent/leave`: the agent shuts down.
    pub leave: Arc<tokio::sync::Notify>,
    /// The services and checks the config files registered (a reload replaces them).
    pub owned: futures::lock::Mutex<crate::reload::ConfigOwned>,
    /// The DNS server's counters, when it runs.
    pub dns_stats: Option<Arc<crate::dns::DnsStats>>,
    /// The gossip pools (LAN; WAN on servers).
    pub pools: crate::gossip::Pools,
    /// The user events this agent received (`/v1/event/list`).
    pub events: Arc<crate::events::UserEvents>,
}

/// The agent's own services and checks, synced through its [`Backend`].
pub type AgentLocal = legate_runtime::local::LocalSync<legate_runtime::boot::TokioRuntime, Backend>;

pub type Shared = Arc<AppState>;

/// The backend of the request's datacenter (`?dc=`; this one without it).
pub(crate) fn api(state: &Shared, params: &Params) -> Result<Backend, HttpError> {
    Ok(state.routes.backend(params.get("dc"))?)
}

/// A replicated read through `api`; `pick` takes the answer's expected variant.
pub(crate) async fn read<T>(
    api: &Backend,
    opts: &QueryOptions,
    query: Query,
    pick: fn(QueryValue) -> Option<T>,
) -> Result<QueryResult<T>, HttpError> {
    let result = api.read(opts, query).await?;
    let QueryResult { answer, known_leader, last_contact_ms, consistency } = result;
    let index = answer.index;
    let watch = answer.watch;
    let value = pick(answer.value).ok_or_else(|| HttpError::internal("the server answered another kind of query"))?;
    let answer = legate_core::catalog::Answer { index, value, watch };
    Ok(QueryResult { answer, known_leader, last_contact_ms, consistency })
}

/// `pick!(Kv)`: the closure that takes `QueryValue::Kv` out of an answer.
macro_rules! pick {
    ($variant:ident) => {
        |v| match v {
            legate_core::catalog::QueryValue::$variant(x) => Some(x),
            _ => None,
        }
    };
}
pub(crate) use pick;

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Params::from_uri(&parts.uri))
    }
}

/// All routes of the API.
pub fn router(state: Shared) -> Router {
    let v1 = Router::new()
        .route("/kv", get(kv::get).put(kv::put).delete(kv::delete))
        .route("/kv/", get(kv::get).put(kv::put).delete(kv::delete))
        .route("/kv/{*key}", get(kv::get).put(kv::put).delete(kv::delete))
        .route("/txn", put(txn::txn).post(txn::txn))
        .route("/catalog/datacenters", get(catalog::datacenters))
        .route("/catalog/nodes", get(catalog::nodes))
        .route("/catalog/services", get(catalog::services))
        .route("/catalog/service/{name}", get(catalog::service))
        .route("/catalog/node/{node}", get(catalog::node))
        .route("/catalog/node-services/{node}", get(catalog::node_services))
        .route("/catalog/register", put(catalog::register).post(catalog::register))
        .route("/catalog/deregister", put(catalog::deregister).post(catalog::deregister))
        .route("/health/service/{name}", get(health::service))
        .route("/health/checks/{name}", get(health::checks))
        .route("/health/node/{node}", get(health::node))
        .route("/health/state/{state}", get(health::state))
        .route("/session/create", put(session::create).post(session::create))
        .route("/session/destroy/{id}", put(session::destroy).post(session::destroy))
        .route("/session/renew/{id}", put(session::renew).post(session::renew))
        .route("/session/info/{id}", get(session::info))
        .route("/session/node/{node}", get(session::node))
        .route("/session/list", get(session::list))
        .route("/query", get(query::list).post(query::create))
        .route("/query/{id}", get(query::get).put(query::update).delete(query::delete))
        .route("/query/{id}/execute", get(query::execute))
        .route("/query/{id}/explain", get(query::explain))
        .route("/status/leader", get(status::leader))
        .route("/status/peers", get(status::peers))
        .route("/operator/raft/configuration", get(operator::configuration))
        .route("/operator/raft/peer", axum::routing::delete(operator::remove_peer))
        .route("/agent/leave", put(agent::leave).post(agent::leave))
        .route("/event/fire", put(event::fire_unnamed))
        .route("/event/fire/", put(event::fire_unnamed))
        .route("/event/fire/{name}", put(event::fire))
        .route("/event/list", get(event::list))
        .route(
            "/operator/keyring",
            get(keyring::keyring).post(keyring::keyring).put(keyring::keyring).delete(keyring::keyring),
        )
        .route(
            "/snapshot",
            get(snapshot::save)
                .put(snapshot::restore)
                .layer(axum::extract::DefaultBodyLimit::max(snapshot::RESTORE_MAX_BYTES + 1)),
        )
        .route("/agent/self", get(agent::self_info))
        .route("/agent/reload", put(agent::reload).post(agent::reload))
        .route("/agent/maintenance", put(agent::node_maintenance).post(agent::node_maintenance))
        .route("/agent/service/maintenance/{*id}", put(agent::service_maintenance).post(agent::service_maintenance))
        .route("/agent/metrics", get(agent::metrics))
        .route("/agent/members", get(agent::members))
        .route("/agent/join/{address}", put(agent::join).post(agent::join))
        .route("/agent/force-leave/{node}", put(agent::force_leave).post(agent::force_leave))
        .route("/agent/services", get(agent::services))
        .route("/agent/service/{*id}", get(agent::service))
        .route("/agent/checks", get(agent::checks))
        .route("/agent/service/register", put(agent::register_service).post(agent::register_service))
        .route("/agent/service/deregister/{*id}", put(agent::deregister_service).post(agent::deregister_service))
        .route("/agent/check/register", put(agent::register_check).post(agent::register_check))
        .route("/agent/check/deregister/{*id}", put(agent::deregister_check).post(agent::deregister_check))
        .route("/agent/check/pass/{*id}", put(agent::check_pass).post(agent::check_pass))
        .route("/agent/check/warn/{*id}", put(agent::check_warn).post(agent::check_warn))
        .route("/agent/check/fail/{*id}", put(agent::check_fail).post(agent::check_fail))
        .route("/agent/check/update/{*id}", put(agent::check_update).post(agent::check_update))
        .route("/agent/health/service/name/{name}", get(agent::health_by_name))
        .route("/agent/health/service/id/{*id}", get(agent::health_by_id))
        .layer(axum::middleware::from_fn(scope));
    Router::new()
        .nest("/v1", v1)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::extract::DefaultBodyLimit::max(legate_core::limits::REQUEST_BODY_SIZE_MAX_BYTES))
        .with_state(state)
}

/// Rejects other namespaces and partitions before any handler runs (`dc` is each handler's).
async fn scope(request: Request, next: Next) -> Response {
    let params = Params::from_uri(request.uri());
    match params::check_scope(&params, request.headers()) {
        Ok(()) => next.run(request).await,
        Err(e) => e.into_response(),
    }
}

async fn not_found() -> HttpError {
    HttpError::new(StatusCode::NOT_FOUND, "404 page not found")
}

async fn method_not_allowed(request: Request) -> HttpError {
    HttpError::new(StatusCode::METHOD_NOT_ALLOWED, format!("method {} not allowed", request.method()))
}

/// Collapses repeated slashes in the path (a Go client sends `/v1/kv//a` for key `/a`'s
/// neighbour `a`), keeping a trailing slash, which is part of a KV key.
pub fn clean_path(uri: &Uri) -> Option<Uri> {
    let path = uri.path();
    if !path.contains("//") {
        return None;
    }
    let mut cleaned = String::with_capacity(path.len());
    for c in path.chars() {
        if c == '/' && cleaned.ends_with('/') {
            continue;
        }
        cleaned.push(c);
    }
    let pq = match uri.query() {
        Some(q) => format!("{cleaned}?{q}"),
        None => cleaned,
    };
    pq.parse().ok()
}

/// Serves the API on `addr` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, state: Shared) -> std::io::Result<()> {
    let app = router(state);
    let app = tower::service_fn(move |mut request: Request| {
        if let Some(uri) = clean_path(request.uri()) {
            *request.uri_mut() = uri;
        }
        app.clone().oneshot(request)
    });
    axum::serve(listener, tower::make::Shared::new(app)).await
}

/// Binds the HTTP listener.
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn double_slashes_collapse_and_trailing_slash_stays() {
        let u: Uri = "/v1/kv//a/b/?recurse".parse().unwrap();
        assert_eq!(clean_path(&u).unwrap().to_string(), "/v1/kv/a/b/?recurse");
        assert!(clean_path(&"/v1/kv/a".parse().unwrap()).is_none());
    }
}
