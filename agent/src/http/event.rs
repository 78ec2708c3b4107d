//! `/v1/event/*`: firing user events into the LAN pool and listing those this agent received
//! (Consul's event endpoints; see `crate::events` for the filters and the index).

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderValue;
use base64::Engine as _;
use legate_core::gossip::{UserEvent, UserEventError};
use legate_core::limits::{BLOCKING_WAIT_DEFAULT_MS, BLOCKING_WAIT_MAX_MS};
use legate_runtime::gossip::{EventFilters, FireError};
use serde::Serialize;

use super::error::{HttpError, HttpResult};
use super::params::Params;
use super::{reply, Shared};
use crate::events;

/// An event as Consul renders it (`structs.UserEvent`).
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct EventJson<'a> {
    #[serde(rename = "ID")]
    id: &'a str,
    name: &'a str,
    /// Base64, as Go renders a byte slice; `null` when empty.
    payload: Option<String>,
    node_filter: &'a str,
    service_filter: &'a str,
    tag_filter: &'a str,
    version: u8,
    #[serde(rename = "LTime")]
    ltime: u64,
}

fn render(e: &UserEvent, ltime: u64) -> EventJson<'_> {
    EventJson {
        id: &e.id,
        name: &e.name,
        payload: (!e.payload.is_empty()).then(|| base64::engine::general_purpose::STANDARD.encode(&e.payload)),
        node_filter: &e.node_filter,
        service_filter: &e.service_filter,
        tag_filter: &e.tag_filter,
        version: 1,
        ltime,
    }
}

/// `PUT /v1/event/fire/` without a name.
pub async fn fire_unnamed() -> HttpError {
    HttpError::bad_request("Missing name")
}

/// `PUT /v1/event/fire/:name?node=&service=&tag=`, the body being the payload: the event as
/// fired (its `LTime` is 0 here, as in Consul's answer).
pub async fn fire(State(state): State<Shared>, params: Params, Path(name): Path<String>, body: Bytes) -> HttpResult {
    if name.is_empty() {
        return Err(HttpError::bad_request("Missing name"));
    }
    if !state.routes.is_local(params.get("dc")) {
        return Err(HttpError::internal("user events cannot be fired in another datacenter yet"));
    }
    let filters = EventFilters {
        node: params.get("node").unwrap_or_default().to_string(),
        service: params.get("service").unwrap_or_default().to_string(),
        tag: params.get("tag").unwrap_or_default().to_string(),
    };
    if !filters.tag.is_empty() && filters.service.is_empty() {
        return Err(HttpError::bad_request("Cannot provide tag filter without service filter"));
    }
    for (what, expr) in [("node", &filters.node), ("service", &filters.service), ("tag", &filters.tag)] {
        events::check_filter(what, expr).map_err(HttpError::bad_request)?;
    }
    let event = state.pools.lan.fire_event(&name, body.to_vec(), filters).await.map_err(|e| match e {
        FireError::Refused(UserEventError::Busy) => {
            HttpError::new(axum::http::StatusCode::TOO_MANY_REQUESTS, e.to_string())
        }
        FireError::Refused(_) => HttpError::bad_request(e.to_string()),
        FireError::Stopped(_) => HttpError::internal(e.to_string()),
    })?;
    reply::ok(&params, &render(&event, 0))
}

/// `GET /v1/event/list[?name=]`: the events received, oldest first, with Consul's index (the
/// last event's folded ID). A blocking query (`?index=`) waits until the index differs from
/// the one given, or `wait` passes.
pub async fn list(State(state): State<Shared>, params: Params) -> HttpResult {
    let name = params.get("name").filter(|n| !n.is_empty()).map(str::to_string);
    let opts = params.query_options()?;
    let wait_ms = opts.wait_ms.unwrap_or(BLOCKING_WAIT_DEFAULT_MS).min(BLOCKING_WAIT_MAX_MS);
    let deadline = tokio::time::Instant::now() + Duration::from_millis(wait_ms);
    let mut changed = state.events.subscribe();
    loop {
        changed.borrow_and_update();
        let list = state.events.list(name.as_deref());
        let index = events::index_of(&list);
        if opts.min_index == 0 || index != opts.min_index || tokio::time::Instant::now() >= deadline {
            let body: Vec<EventJson> = list.iter().map(|e| render(e, e.ltime)).collect();
            let mut response = reply::ok(&params, &body)?;
            response.headers_mut().insert("X-Consul-Index", HeaderValue::from(index));
            return Ok(response);
        }
        tokio::select! {
            r = changed.changed() => {
                if r.is_err() {
                    return Err(HttpError::internal("the agent is shutting down"));
                }
            }
            _ = tokio::time::sleep_until(deadline) => {}
        }
    }
}
