//! `/v1/kv/*`: get (single, recurse, keys, raw), put (flags, cas, acquire, release), delete.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use legate_core::catalog::{Command, KvOp, KvVerb, Response};
use legate_core::limits;

use legate_core::catalog::Query;

use legate_runtime::api::Api as _;

use super::error::{HttpError, HttpResult};
use super::params::Params;
use super::{api, pick, read, reply, Shared};

/// The key of the request path; overlong keys are the client's error.
fn key_of(path: Option<Path<String>>) -> Result<String, HttpError> {
    let key = path.map(|Path(k)| k).unwrap_or_default();
    if key.len() > limits::KV_KEY_SIZE_MAX_BYTES {
        return Err(HttpError::bad_request(format!(
            "Key is too long ({} > {} bytes)",
            key.len(),
            limits::KV_KEY_SIZE_MAX_BYTES
        )));
    }
    Ok(key)
}

pub async fn get(State(state): State<Shared>, params: Params, path: Option<Path<String>>) -> HttpResult {
    let key = key_of(path)?;
    let opts = params.query_options()?;
    if params.has("keys") {
        let separator = params.get("separator").map(str::to_string);
        let result =
            read(&api(&state, &params)?, &opts, Query::KvKeys { prefix: key.clone(), separator }, pick!(Keys)).await?;
        if result.answer.value.is_empty() && !key.is_empty() {
            return Ok(reply::not_found(&result));
        }
        return reply::read(&params, &result, &result.answer.value);
    }
    if params.has("recurse") {
        let result = read(&api(&state, &params)?, &opts, Query::KvList { prefix: key.clone() }, pick!(KvList)).await?;
        if result.answer.value.is_empty() {
            return Ok(reply::not_found(&result));
        }
        return reply::read(&params, &result, &result.answer.value);
    }
    if key.is_empty() {
        return Err(HttpError::bad_request("Missing key name"));
    }
    let result = read(&api(&state, &params)?, &opts, Query::KvGet { key: key.clone() }, pick!(Kv)).await?;
    let Some(entry) = &result.answer.value else {
        return Ok(reply::not_found(&result));
    };
    if params.has("raw") {
        let response = (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], entry.value.clone())
            .into_response();
        return Ok(reply::with_meta(response, &result));
    }
    reply::read(&params, &result, &[entry])
}

pub async fn put(
    State(state): State<Shared>,
    params: Params,
    headers: HeaderMap,
    path: Option<Path<String>>,
    body: Bytes,
) -> HttpResult {
    let key = key_of(path)?;
    if key.is_empty() {
        return Err(HttpError::bad_request("Missing key name"));
    }
    let modes = ["cas", "acquire", "release"].iter().filter(|m| params.has(m)).count();
    if modes > 1 {
        return Err(HttpError::bad_request("Conflicting flags: cas, acquire and release are mutually exclusive"));
    }
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    let length = declared.unwrap_or(body.len()).max(body.len());
    if length > limits::KV_VALUE_SIZE_MAX_BYTES {
        return Err(HttpError::too_large(format!(
            "Request body({length} bytes) too large, max size: {} bytes. See https://developer.hashicorp.com/docs/agent/config/config-files#kv_max_value_size.",
            limits::KV_VALUE_SIZE_MAX_BYTES
        )));
    }
    let mut op = KvOp::new(KvVerb::Set, key);
    op.value = body.to_vec();
    op.flags = params.u64("flags", "flags")?.unwrap_or(0);
    if params.has("cas") {
        op.verb = KvVerb::Cas;
        op.index = params.u64("cas", "cas index")?.unwrap_or(0);
    } else if params.has("acquire") {
        op.verb = KvVerb::Lock;
        op.session = params.get("acquire").unwrap_or_default().to_string();
    } else if params.has("release") {
        op.verb = KvVerb::Unlock;
        op.session = params.get("release").unwrap_or_default().to_string();
    }
    apply(&state, &params, op).await
}

pub async fn delete(State(state): State<Shared>, params: Params, path: Option<Path<String>>) -> HttpResult {
    let key = key_of(path)?;
    let recurse = params.has("recurse");
    if key.is_empty() && !recurse {
        return Err(HttpError::bad_request("Missing key name"));
    }
    let mut op = KvOp::new(if recurse { KvVerb::DeleteTree } else { KvVerb::Delete }, key);
    if params.has("cas") {
        if recurse {
            return Err(HttpError::bad_request("Conflicting flags: cas cannot be used with recurse"));
        }
        op.verb = KvVerb::DeleteCas;
        op.index = params.u64("cas", "cas index")?.unwrap_or(0);
    }
    apply(&state, &params, op).await
}

async fn apply(state: &Shared, params: &Params, op: KvOp) -> HttpResult {
    match api(state, params)?.write(Command::Kv(op)).await? {
        Response::Bool(b) => Ok(reply::boolean(b)),
        Response::Error(e) => Err(HttpError::internal(e.to_string())),
        other => Err(HttpError::internal(format!("unexpected answer {other:?}"))),
    }
}
