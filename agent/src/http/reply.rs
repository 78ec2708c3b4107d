//! Building answers: JSON bodies (optionally pretty), the `X-Consul-*` headers of replicated
//! reads, and bare `true`/`false`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use legate_runtime::QueryResult;
use serde::Serialize;

use super::error::HttpError;
use super::params::Params;

/// Serialises `body` as JSON, pretty when `?pretty` is present.
pub fn json<T: Serialize>(params: &Params, status: StatusCode, body: &T) -> Result<Response, HttpError> {
    let bytes = if params.has("pretty") { serde_json::to_vec_pretty(body) } else { serde_json::to_vec(body) }
        .map_err(|e| HttpError::internal(format!("encoding response: {e}")))?;
    Ok((status, [(header::CONTENT_TYPE, "application/json")], bytes).into_response())
}

/// A `200` JSON answer.
pub fn ok<T: Serialize>(params: &Params, body: &T) -> Result<Response, HttpError> {
    json(params, StatusCode::OK, body)
}

/// The bare JSON `true`/`false` that Consul's writes answer.
pub fn boolean(value: bool) -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], if value { "true" } else { "false" }).into_response()
}

/// Adds the four headers of a replicated read.
pub fn with_meta<T>(mut response: Response, result: &QueryResult<T>) -> Response {
    let headers = response.headers_mut();
    headers.insert("X-Consul-Index", HeaderValue::from(result.answer.index.max(1)));
    headers
        .insert("X-Consul-KnownLeader", HeaderValue::from_static(if result.known_leader { "true" } else { "false" }));
    headers.insert("X-Consul-LastContact", HeaderValue::from(result.last_contact_ms));
    headers.insert("X-Consul-Effective-Consistency", HeaderValue::from_static(result.consistency.as_str()));
    response
}

/// A replicated read's JSON answer with its headers.
pub fn read<T, B: Serialize>(params: &Params, result: &QueryResult<T>, body: &B) -> Result<Response, HttpError> {
    Ok(with_meta(ok(params, body)?, result))
}

/// A replicated read's `404` (empty body) with its headers.
pub fn not_found<T>(result: &QueryResult<T>) -> Response {
    with_meta(StatusCode::NOT_FOUND.into_response(), result)
}
