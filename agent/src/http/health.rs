//! `/v1/health/*`.

use axum::extract::{Path, State};
use legate_core::catalog::Status;

use legate_core::catalog::Query;

use super::error::{HttpError, HttpResult};
use super::params::Params;
use super::views::HealthEntry;
use super::{api, pick, read, reply, Shared};

pub async fn service(State(state): State<Shared>, params: Params, Path(name): Path<String>) -> HttpResult {
    let opts = params.query_options()?;
    let filter = params.filter()?;
    let passing = params.bool("passing")?;
    let result = read(
        &api(&state, &params)?,
        &opts,
        Query::ServiceHealth { name, filter, passing_only: passing },
        pick!(ServiceHealth),
    )
    .await?;
    let body: Vec<HealthEntry> = result.answer.value.iter().map(HealthEntry::from).collect();
    reply::read(&params, &result, &body)
}

pub async fn checks(State(state): State<Shared>, params: Params, Path(name): Path<String>) -> HttpResult {
    let opts = params.query_options()?;
    let filter = params.filter()?;
    let result = read(&api(&state, &params)?, &opts, Query::ServiceChecks { name, filter }, pick!(Checks)).await?;
    reply::read(&params, &result, &result.answer.value)
}

pub async fn node(State(state): State<Shared>, params: Params, Path(node): Path<String>) -> HttpResult {
    let opts = params.query_options()?;
    let result = read(&api(&state, &params)?, &opts, Query::NodeChecks { node }, pick!(Checks)).await?;
    reply::read(&params, &result, &result.answer.value)
}

pub async fn state(State(state): State<Shared>, params: Params, Path(which): Path<String>) -> HttpResult {
    let wanted = match which.as_str() {
        "any" => None,
        other => Some(Status::parse(other).ok_or_else(|| HttpError::bad_request("Invalid check state"))?),
    };
    let opts = params.query_options()?;
    let filter = params.filter()?;
    let result =
        read(&api(&state, &params)?, &opts, Query::ChecksInState { state: wanted, filter }, pick!(Checks)).await?;
    reply::read(&params, &result, &result.answer.value)
}
