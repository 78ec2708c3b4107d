//! `/v1/txn`: KV operations applied atomically; read-only transactions skip Raft.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use base64::Engine as _;
use legate_core::catalog::{Command, KvOp, KvVerb, Query, Response, TxnOp, TxnOutcome, TxnResult};
use legate_core::limits;
use serde::Deserialize;
use serde_json::{json, Value};

use legate_runtime::api::Api as _;

use super::error::{HttpError, HttpResult};
use super::json::{self, lenient};
use super::params::Params;
use super::{api, pick, read, reply, Shared};

#[derive(Deserialize, Default)]
#[serde(default)]
struct OpBody {
    kv: Option<KvBody>,
    node: Option<Value>,
    service: Option<Value>,
    check: Option<Value>,
    session: Option<Value>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct KvBody {
    #[serde(deserialize_with = "lenient::string")]
    verb: String,
    #[serde(deserialize_with = "lenient::string")]
    key: String,
    value: Option<String>,
    flags: u64,
    index: u64,
    #[serde(deserialize_with = "lenient::string")]
    session: String,
}

fn too_large_body(length: usize) -> HttpError {
    HttpError::too_large(format!(
        "Request body({length} bytes) too large, max size: {} bytes. See https://www.consul.io/docs/agent/config/config-files#txn_max_req_len.",
        limits::TXN_BODY_SIZE_MAX_BYTES
    ))
}

fn parse_ops(body: &[u8]) -> Result<Vec<TxnOp>, HttpError> {
    let raw: Vec<OpBody> =
        json::decode(body).map_err(|e| HttpError::bad_request(format!("Failed to parse body: {}", e.message)))?;
    if raw.len() > limits::TXN_OPS_MAX {
        return Err(HttpError::too_large(format!(
            "Transaction contains too many operations ({} > {})",
            raw.len(),
            limits::TXN_OPS_MAX
        )));
    }
    let mut ops = Vec::with_capacity(raw.len());
    for op in raw {
        let Some(kv) = op.kv else {
            let what = if op.node.is_some() {
                "Node"
            } else if op.service.is_some() {
                "Service"
            } else if op.check.is_some() {
                "Check"
            } else if op.session.is_some() {
                "Session"
            } else {
                return Err(HttpError::bad_request(
                    "Failed to parse body: an operation has no KV, Node, Service or Check",
                ));
            };
            return Err(HttpError::bad_request(format!(
                "{what} operations in transactions are not supported by Legate yet; only KV operations are"
            )));
        };
        let verb = KvVerb::parse(&kv.verb)
            .ok_or_else(|| HttpError::bad_request(format!("Failed to parse body: unknown KV verb {:?}", kv.verb)))?;
        let value = match kv.value {
            None => Vec::new(),
            Some(b64) => base64::engine::general_purpose::STANDARD
                .decode(b64.as_bytes())
                .map_err(|e| HttpError::bad_request(format!("Failed to parse body: failed to decode value: {e}")))?,
        };
        if value.len() > limits::KV_VALUE_SIZE_MAX_BYTES {
            return Err(HttpError::too_large(format!(
                "Value for key {:?} is too large ({} > {} bytes)",
                kv.key,
                value.len(),
                limits::KV_VALUE_SIZE_MAX_BYTES
            )));
        }
        ops.push(TxnOp::Kv(KvOp { verb, key: kv.key, value, flags: kv.flags, index: kv.index, session: kv.session }));
    }
    Ok(ops)
}

fn render(params: &Params, outcome: &TxnOutcome) -> HttpResult {
    match outcome {
        TxnOutcome::Committed(results) => {
            let results: Vec<Value> = results.iter().map(|TxnResult::Kv(e)| json!({ "KV": e })).collect();
            reply::ok(params, &json!({ "Results": results, "Errors": null }))
        }
        TxnOutcome::RolledBack(errors) => {
            let errors: Vec<Value> = errors.iter().map(|e| json!({ "OpIndex": e.op_index, "What": e.what })).collect();
            reply::json(params, StatusCode::CONFLICT, &json!({ "Results": null, "Errors": errors }))
        }
    }
}

pub async fn txn(State(state): State<Shared>, params: Params, headers: HeaderMap, body: Bytes) -> HttpResult {
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    let length = declared.unwrap_or(0).max(body.len());
    if length > limits::TXN_BODY_SIZE_MAX_BYTES {
        return Err(too_large_body(length));
    }
    let ops = parse_ops(&body)?;
    let writes = ops.iter().any(|TxnOp::Kv(op)| op.verb.is_write());
    if !writes {
        let mut opts = params.query_options()?;
        opts.min_index = 0;
        let result = read(&api(&state, &params)?, &opts, Query::ReadTxn { ops }, pick!(Txn)).await?;
        let response = render(&params, &result.answer.value)?;
        return Ok(reply::with_meta(response, &result));
    }
    match api(&state, &params)?.write(Command::Txn(ops)).await? {
        Response::Txn(outcome) => render(&params, &outcome),
        Response::Error(e) => Err(HttpError::internal(e.to_string())),
        other => Err(HttpError::internal(format!("unexpected answer {other:?}"))),
    }
}
