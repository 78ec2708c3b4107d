//! `/v1/session/*`.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use legate_core::catalog::{Behavior, Command, ServiceCheckRef, Session};
use legate_core::duration;
use legate_core::leader::SERF_CHECK_ID;
use legate_core::limits;
use serde::Deserialize;
use serde_json::Value;

use legate_core::catalog::Query;

use legate_runtime::api::Api as _;

use super::error::{HttpError, HttpResult};
use super::json::{self, lenient};
use super::params::Params;
use super::{api, pick, read, reply, Shared};

#[derive(Deserialize, Default)]
#[serde(default)]
struct CreateBody {
    #[serde(deserialize_with = "lenient::string")]
    name: String,
    #[serde(deserialize_with = "lenient::string")]
    node: String,
    lockdelay: Option<Value>,
    #[serde(deserialize_with = "lenient::string")]
    behavior: String,
    #[serde(deserialize_with = "lenient::string")]
    ttl: String,
    checks: Option<Vec<String>>,
    nodechecks: Option<Vec<String>>,
    servicechecks: Option<Vec<ServiceCheckBody>>,
    namespace: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ServiceCheckBody {
    #[serde(deserialize_with = "lenient::string")]
    id: String,
    #[serde(deserialize_with = "lenient::string")]
    namespace: String,
}

/// Consul's lock-delay rules: a number below 1000 is seconds, else nanoseconds; a string is a
/// Go duration. Returns nanoseconds.
fn lock_delay_ns(value: Option<&Value>) -> Result<u64, HttpError> {
    let ns = match value {
        None | Some(Value::Null) => return Ok(limits::SESSION_LOCK_DELAY_DEFAULT_NS),
        Some(Value::Number(n)) => {
            let v = n
                .as_f64()
                .filter(|v| *v >= 0.0)
                .ok_or_else(|| HttpError::bad_request(format!("Invalid LockDelay: {n}")))?;
            if v < 1000.0 {
                (v * 1e9) as u64
            } else {
                v as u64
            }
        }
        Some(Value::String(s)) => {
            duration::parse_ns(s).map_err(|e| HttpError::bad_request(format!("Request decode failed: {e}")))?
        }
        Some(other) => return Err(HttpError::bad_request(format!("Invalid LockDelay: {other}"))),
    };
    if ns > limits::SESSION_LOCK_DELAY_MAX_NS {
        return Err(HttpError::bad_request(format!(
            "Session lock delay cannot exceed {}",
            duration::format_ns(limits::SESSION_LOCK_DELAY_MAX_NS)
        )));
    }
    Ok(ns)
}

pub async fn create(State(state): State<Shared>, params: Params, body: Bytes) -> HttpResult {
    let raw: Value = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Object(Default::default())
    } else {
        serde_json::from_slice(&body).map_err(|e| HttpError::bad_request(format!("Request decode failed: {e}")))?
    };
    let b: CreateBody = json::decode_value(raw)?;
    if b.namespace.as_deref().is_some_and(|ns| !ns.is_empty() && ns != "default") {
        return Err(HttpError::bad_request("Namespaces are a Consul Enterprise feature"));
    }
    let behavior = Behavior::parse(&b.behavior)
        .ok_or_else(|| HttpError::bad_request(format!("Invalid Behavior setting '{}'", b.behavior)))?;
    if !b.ttl.is_empty() {
        let ttl_ms =
            duration::parse_ms(&b.ttl).map_err(|e| HttpError::bad_request(format!("Request decode failed: {e}")))?;
        let min_ms = state.config.session_ttl_min_ms;
        if ttl_ms != 0 && (ttl_ms < min_ms || ttl_ms > limits::SESSION_TTL_MAX_MS) {
            return Err(HttpError::internal(format!(
                "Invalid Session TTL '{}', must be between [{}={}]",
                duration::format_ms(ttl_ms),
                duration::format_ms(min_ms),
                duration::format_ms(limits::SESSION_TTL_MAX_MS)
            )));
        }
    }
    // Without any check list the session is tied to serfHealth; an explicit list (even
    // empty) replaces that.
    let explicit = b.checks.is_some() || b.nodechecks.is_some() || b.servicechecks.is_some();
    let mut node_checks: Vec<String> = b.checks.unwrap_or_default();
    for c in b.nodechecks.unwrap_or_default() {
        if !node_checks.contains(&c) {
            node_checks.push(c);
        }
    }
    if !explicit {
        node_checks.push(SERF_CHECK_ID.to_string());
    }
    let service_checks = b
        .servicechecks
        .unwrap_or_default()
        .into_iter()
        .map(|c| ServiceCheckRef {
            id: c.id,
            namespace: if c.namespace.is_empty() { "default".into() } else { c.namespace },
        })
        .collect();
    let session = Session {
        id: String::new(),
        name: b.name,
        node: if b.node.is_empty() { state.config.node_name.clone() } else { b.node },
        lock_delay: lock_delay_ns(b.lockdelay.as_ref())?,
        behavior,
        ttl: b.ttl,
        node_checks,
        service_checks,
        create_index: 0,
        modify_index: 0,
    };
    match api(&state, &params)?.create_session(session).await? {
        Ok(s) => reply::ok(&params, &serde_json::json!({ "ID": s.id })),
        Err(e) => Err(HttpError::internal(e.to_string())),
    }
}

pub async fn destroy(State(state): State<Shared>, params: Params, Path(id): Path<String>) -> HttpResult {
    api(&state, &params)?.write(Command::SessionDestroy { id }).await?;
    Ok(reply::boolean(true))
}

pub async fn renew(State(state): State<Shared>, params: Params, Path(id): Path<String>) -> HttpResult {
    match api(&state, &params)?.renew_session(&id).await? {
        Some(session) => reply::ok(&params, &[session]),
        None => Err(HttpError::new(StatusCode::NOT_FOUND, format!("Session id '{id}' not found"))),
    }
}

pub async fn info(State(state): State<Shared>, params: Params, Path(id): Path<String>) -> HttpResult {
    let opts = params.query_options()?;
    let result = read(&api(&state, &params)?, &opts, Query::SessionInfo { id }, pick!(Session)).await?;
    let body: Vec<&Session> = result.answer.value.iter().collect();
    reply::read(&params, &result, &body)
}

pub async fn node(State(state): State<Shared>, params: Params, Path(node): Path<String>) -> HttpResult {
    let opts = params.query_options()?;
    let result = read(&api(&state, &params)?, &opts, Query::NodeSessions { node }, pick!(Sessions)).await?;
    reply::read(&params, &result, &result.answer.value)
}

pub async fn list(State(state): State<Shared>, params: Params) -> HttpResult {
    let opts = params.query_options()?;
    let result = read(&api(&state, &params)?, &opts, Query::SessionList, pick!(Sessions)).await?;
    reply::read(&params, &result, &result.answer.value)
}
