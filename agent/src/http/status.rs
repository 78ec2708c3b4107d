//! `/v1/status/*`.

use axum::extract::State;

use super::error::HttpResult;
use super::params::Params;
use super::{reply, Shared};

pub async fn leader(State(state): State<Shared>, params: Params) -> HttpResult {
    let addr = state.server.leader().map(|(_, node)| node.rpc_addr).unwrap_or_default();
    reply::ok(&params, &addr)
}

pub async fn peers(State(state): State<Shared>, params: Params) -> HttpResult {
    reply::ok(&params, &state.server.peers())
}
