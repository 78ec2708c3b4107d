//! `/v1/snapshot`: save the whole replicated state as an archive, or restore one.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use legate_core::catalog::{CatalogSnapshot, Command, Query, Response};
use legate_runtime::api::Api as _;
use legate_runtime::Consistency;

use super::error::{HttpError, HttpResult};
use super::params::Params;
use super::{api, pick, read, reply, Shared};

/// The largest archive a restore accepts: it travels as one Raft entry.
pub const RESTORE_MAX_BYTES: usize = legate_core::limits::LOG_RECORD_MAX_BYTES as usize - 64 * 1024;

/// `GET /v1/snapshot`: a consistent snapshot (the leader confirms it leads first), or any
/// server's with `?stale`.
pub async fn save(State(state): State<Shared>, params: Params) -> HttpResult {
    let mut opts = params.query_options()?;
    opts.min_index = 0;
    if opts.consistency == Consistency::Default {
        opts.consistency = Consistency::Consistent;
    }
    let result = read(&api(&state, &params)?, &opts, Query::Snapshot, pick!(Snapshot)).await?;
    let archive = result.answer.value.to_archive().map_err(HttpError::internal)?;
    let response = (StatusCode::OK, [(header::CONTENT_TYPE, "application/octet-stream")], archive).into_response();
    Ok(reply::with_meta(response, &result))
}

/// `PUT /v1/snapshot`: replaces the whole state with an archive's (checked before anything
/// is written). Blocking queries all answer afterwards.
pub async fn restore(State(state): State<Shared>, params: Params, body: Bytes) -> HttpResult {
    if body.len() > RESTORE_MAX_BYTES {
        return Err(HttpError::too_large(format!(
            "snapshot of {} bytes exceeds the restore limit of {RESTORE_MAX_BYTES} bytes",
            body.len()
        )));
    }
    let snapshot =
        CatalogSnapshot::from_archive(&body).map_err(|e| HttpError::bad_request(format!("Invalid snapshot: {e}")))?;
    match api(&state, &params)?.write(Command::Restore(Box::new(snapshot))).await? {
        Response::Error(e) => Err(HttpError::bad_request(format!("Invalid snapshot: {e}"))),
        _ => Ok(StatusCode::OK.into_response()),
    }
}
