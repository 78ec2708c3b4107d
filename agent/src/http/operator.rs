//! `/v1/operator/raft/*`: the Raft configuration, and removing a server from it.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use legate_runtime::api::Api as _;
use serde_json::json;

use super::error::{HttpError, HttpResult};
use super::params::Params;
use super::{api, reply, Shared};

/// `GET /v1/operator/raft/configuration`: Consul's shape. `ID` is the Raft id (derived from
/// the server's node ID).
pub async fn configuration(State(state): State<Shared>, params: Params) -> HttpResult {
    let status = api(&state, &params)?.status().await?;
    let servers: Vec<_> = status
        .servers
        .iter()
        .map(|s| {
            json!({
                "ID": s.id.to_string(),
                "Node": s.node.name,
                "Address": s.node.rpc_addr,
                "Leader": status.leader == Some(s.id),
                "ProtocolVersion": "3",
                "Voter": s.voter,
                "LastIndex": if s.id == status.id { status.last_log_index } else { 0 },
            })
        })
        .collect();
    reply::ok(&params, &json!({ "Servers": servers, "Index": status.config_index }))
}

/// `DELETE /v1/operator/raft/peer?id=…` or `?address=host:port`: removes a server from the
/// Raft configuration. `id` is the Raft id or the server's node ID (a UUID).
pub async fn remove_peer(State(state): State<Shared>, params: Params) -> HttpResult {
    let status = api(&state, &params)?.status().await?;
    let target = match (params.get("id"), params.get("address")) {
        (Some(id), None) if !id.is_empty() => {
            let raft_id = id.parse::<u64>().ok().or_else(|| legate_runtime::boot::raft_id_of(id).ok());
            status.servers.iter().find(|s| Some(s.id) == raft_id)
        }
        (None, Some(addr)) if !addr.is_empty() => status.servers.iter().find(|s| s.node.rpc_addr == addr),
        _ => {
            return Err(HttpError::bad_request(
                "Must specify either ?id with the server's ID or ?address with IP:port of peer to remove",
            ))
        }
    };
    let Some(target) = target else {
        return Err(HttpError::new(StatusCode::NOT_FOUND, "address/id not found in the Raft configuration"));
    };
    api(&state, &params)?.remove_server(target.id).await?;
    Ok(StatusCode::OK.into_response())
}
