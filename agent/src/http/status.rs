//! `/v1/status/*`: the Raft leader and peers, as a server sees them (a client agent asks one).

use axum::extract::State;
use legate_runtime::api::Api as _;

use super::error::HttpResult;
use super::params::Params;
use super::{api, reply, Shared};

pub async fn leader(State(state): State<Shared>, params: Params) -> HttpResult {
    let status = api(&state, &params)?.status().await?;
    let addr = status.leader_node().map(|n| n.rpc_addr.clone()).unwrap_or_default();
    reply::ok(&params, &addr)
}

pub async fn peers(State(state): State<Shared>, params: Params) -> HttpResult {
    reply::ok(&params, &api(&state, &params)?.status().await?.peers())
}
