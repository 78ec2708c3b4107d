//! `/v1/operator/keyring`: list, install, use and remove gossip encryption keys on every
//! member. The operation runs over this agent's pools: the LAN pool always, the WAN pool on a
//! server (so run it on a server to rotate both, as Consul's servers do for you).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::response::IntoResponse;
use legate_runtime::gossip::{KeyringOp, KeyringResponse, Pool};
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::{HttpError, HttpResult};
use super::json::{self, lenient};
use super::params::Params;
use super::{reply, Shared};

#[derive(Deserialize, Default)]
#[serde(default)]
struct KeyBody {
    #[serde(deserialize_with = "lenient::string")]
    key: String,
}

/// `GET` lists; `POST` installs, `PUT` makes primary and `DELETE` removes the body's `Key`.
pub async fn keyring(State(state): State<Shared>, method: Method, params: Params, body: Bytes) -> HttpResult {
    let op = if method == Method::GET {
        KeyringOp::List
    } else {
        let KeyBody { key } = json::decode::<KeyBody>(&body)?;
        if key.is_empty() {
            return Err(HttpError::bad_request("Request body must contain a Key"));
        }
        match method {
            Method::POST => KeyringOp::Install(key),
            Method::PUT => KeyringOp::Use(key),
            _ => KeyringOp::Remove(key),
        }
    };
    let mut pools: Vec<(bool, &Pool)> = Vec::new();
    if let Some(wan) = &state.pools.wan {
        pools.push((true, wan));
    }
    pools.push((false, &state.pools.lan));
    let mut answers = Vec::new();
    let mut failures = Vec::new();
    for (wan, pool) in pools {
        let r = pool.keyring(op.clone()).await.map_err(HttpError::internal)?;
        for (node, message) in &r.messages {
            failures.push(format!("{node}: {message}"));
        }
        answers.push(response_json(&state.config.datacenter, wan, &r));
    }
    if op == KeyringOp::List {
        return reply::ok(&params, &answers);
    }
    if !failures.is_empty() {
        return Err(HttpError::internal(failures.join("\n")));
    }
    Ok(StatusCode::OK.into_response())
}

fn response_json(datacenter: &str, wan: bool, r: &KeyringResponse) -> Value {
    json!({
        "WAN": wan,
        "Datacenter": datacenter,
        "Segment": "",
        "Messages": r.messages,
        "Keys": r.keys,
        "PrimaryKeys": r.primary_keys,
        "NumNodes": r.num_nodes,
    })
}
