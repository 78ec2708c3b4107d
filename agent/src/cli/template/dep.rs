//! What a template depends on: one [`Dependency`] per distinct query, the HTTP request that
//! follows it, and the decoding of its answer into the values templates see.
//!
//! Two template calls that ask the same thing (`service "web"` twice, or `ls "app"` and
//! `tree "app"`, which read the same prefix) are one dependency, so one blocking-query loop
//! serves them all.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use base64::Engine as _;
use gtmpl::Value;
use serde_json::Value as Json;

/// A health status a `service` query may keep, as consul-template spells them.
pub const STATUSES: [&str; 4] = ["passing", "warning", "critical", "maintenance"];

/// One distinct query a template reads.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Dependency {
    /// `service "[tag.]name[|statuses]"`: `/v1/health/service/<name>`.
    Service {
        name: String,
        tag: Option<String>,
        /// The aggregated statuses kept; `None`: every instance (`|any`).
        statuses: Option<BTreeSet<String>>,
    },
    /// `services`: `/v1/catalog/services`.
    Services,
    /// `key`, `keyOrDefault`: `/v1/kv/<key>`.
    Key(String),
    /// `ls`, `tree`: `/v1/kv/<prefix>?recurse`.
    KeyPrefix(String),
    /// `nodes`: `/v1/catalog/nodes`.
    Nodes,
}

impl fmt::Display for Dependency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dependency::Service { name, tag, statuses } => {
                let tag = tag.as_ref().map(|t| format!("{t}.")).unwrap_or_default();
                let filter = match statuses {
                    None => "|any".to_string(),
                    Some(s) if s.len() == 1 && s.contains("passing") => String::new(),
                    Some(s) => format!("|{}", s.iter().cloned().collect::<Vec<_>>().join(",")),
                };
                write!(f, "service \"{tag}{name}{filter}\"")
            }
            Dependency::Services => write!(f, "services"),
            Dependency::Key(k) => write!(f, "key \"{k}\""),
            Dependency::KeyPrefix(p) => write!(f, "tree \"{p}\""),
            Dependency::Nodes => write!(f, "nodes"),
        }
    }
}

impl Dependency {
    /// Parses `service`'s argument: `[tag.]name[|filter]`, the filter being `any` or a
    /// comma-separated list of statuses; the default keeps passing instances only. A tag may
    /// hold dots, a name may not (the last dot splits them, as in consul-template).
    pub fn service(query: &str) -> Result<Dependency, String> {
        let (target, filter) = match query.split_once('|') {
            Some((t, f)) => (t.trim(), Some(f.trim())),
            None => (query.trim(), None),
        };
        if target.contains('@') || target.contains('~') {
            return Err(format!("service {query:?}: datacenter (@dc) and near (~node) are not supported"));
        }
        let (tag, name) = match target.rsplit_once('.') {
            Some((tag, name)) => (Some(tag), name),
            None => (None, target),
        };
        let valid_name = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_alphanumeric() || "_-/".contains(c));
        if !valid_name(name) {
            return Err(format!("service {query:?}: invalid service name {name:?}"));
        }
        if tag.is_some_and(|t| t.is_empty()) {
            return Err(format!("service {query:?}: empty tag before the dot"));
        }
        let statuses = match filter {
            None => Some(BTreeSet::from(["passing".to_string()])),
            Some("any") => None,
            Some(list) => {
                let mut set = BTreeSet::new();
                for s in list.split(',').map(str::trim) {
                    if !STATUSES.contains(&s) {
                        return Err(format!(
                            "service {query:?}: unknown health filter {s:?} (any, passing, warning, critical, maintenance)"
                        ));
                    }
                    set.insert(s.to_string());
                }
                Some(set)
            }
        };
        Ok(Dependency::Service { name: name.to_string(), tag: tag.map(str::to_string), statuses })
    }

    /// The request that reads it: path and query (without `index`/`wait`).
    pub fn request(&self) -> (String, Vec<(&'static str, String)>) {
        match self {
            Dependency::Service { name, tag, statuses } => {
                let mut query = Vec::new();
                if let Some(t) = tag {
                    query.push(("tag", t.clone()));
                }
                if statuses.as_ref().is_some_and(|s| s.len() == 1 && s.contains("passing")) {
                    query.push(("passing", String::new()));
                }
                (format!("/v1/health/service/{}", encode_path(name)), query)
            }
            Dependency::Services => ("/v1/catalog/services".to_string(), Vec::new()),
            Dependency::Key(k) => (format!("/v1/kv/{}", encode_path(k.trim_start_matches('/'))), Vec::new()),
            Dependency::KeyPrefix(p) => {
                (format!("/v1/kv/{}", encode_path(p.trim_start_matches('/'))), vec![("recurse", String::new())])
            }
            Dependency::Nodes => ("/v1/catalog/nodes".to_string(), Vec::new()),
        }
    }

    /// Turns an answer (`None`: 404) into the value templates see.
    pub fn decode(&self, body: Option<Json>) -> Result<Value, String> {
        match self {
            Dependency::Service { statuses, .. } => decode_health(body, statuses.as_ref()),
            Dependency::Services => decode_services(body),
            Dependency::Key(_) => decode_key(body),
            Dependency::KeyPrefix(prefix) => decode_pairs(prefix, body),
            Dependency::Nodes => decode_nodes(body),
        }
    }
}

/// Percent-encodes what may not stand in a URL path (slashes stay: keys are paths).
fn encode_path(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/:@!$&'()*+,;=".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn array(body: Option<Json>, what: &str) -> Result<Vec<Json>, String> {
    match body {
        None | Some(Json::Null) => Ok(Vec::new()),
        Some(Json::Array(a)) => Ok(a),
        Some(other) => Err(format!("{what}: expected a JSON array, got {other}")),
    }
}

fn text(v: &Json) -> String {
    v.as_str().unwrap_or_default().to_string()
}

fn number(v: &Json) -> Value {
    v.as_u64().map(Value::from).or_else(|| v.as_i64().map(Value::from)).unwrap_or_else(|| Value::from(0u64))
}

/// Sorted, deduplicated tags (consul-template's `ServiceTags`).
fn tags(v: &Json) -> Value {
    let set: BTreeSet<String> =
        v.as_array().into_iter().flatten().filter_map(|t| t.as_str().map(str::to_string)).collect();
    Value::Array(set.into_iter().map(Value::String).collect())
}

/// A JSON value as a template value; JSON objects become maps (missing keys read as empty).
pub fn from_json(v: &Json) -> Value {
    match v {
        Json::Null => Value::Nil,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) if n.is_f64() => Value::from(n.as_f64().unwrap_or_default()),
        Json::Number(_) => number(v),
        Json::String(s) => Value::String(s.clone()),
        Json::Array(a) => Value::Array(a.iter().map(from_json).collect()),
        Json::Object(o) => Value::Map(o.iter().map(|(k, v)| (k.clone(), from_json(v))).collect()),
    }
}

/// A record with fixed fields (a Go struct): reading a misspelt field is an error.
fn object(fields: Vec<(&str, Value)>) -> Value {
    Value::Object(fields.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

/// The status consul-template reports for an instance: maintenance if a maintenance check is
/// there, else the worst of its checks.
fn aggregated_status(checks: &Json) -> &'static str {
    let checks = checks.as_array().map(Vec::as_slice).unwrap_or_default();
    let id = |c: &Json| c["CheckID"].as_str().unwrap_or_default().to_string();
    if checks.iter().any(|c| id(c) == "_node_maintenance" || id(c).starts_with("_service_maintenance:")) {
        return "maintenance";
    }
    let has = |s: &str| checks.iter().any(|c| c["Status"].as_str() == Some(s));
    if has("critical") {
        "critical"
    } else if has("warning") {
        "warning"
    } else {
        "passing"
    }
}

fn decode_health(body: Option<Json>, statuses: Option<&BTreeSet<String>>) -> Result<Value, String> {
    let mut entries: Vec<(String, String, Value)> = Vec::new();
    for entry in array(body, "health service")? {
        let (node, service) = (&entry["Node"], &entry["Service"]);
        let status = aggregated_status(&entry["Checks"]);
        if statuses.is_some_and(|s| !s.contains(status)) {
            continue;
        }
        let node_address = text(&node["Address"]);
        let address = match text(&service["Address"]) {
            a if a.is_empty() => node_address.clone(),
            a => a,
        };
        let (node_name, id) = (text(&node["Node"]), text(&service["ID"]));
        let value = object(vec![
            ("Node", Value::String(node_name.clone())),
            ("NodeID", Value::String(text(&node["ID"]))),
            ("NodeAddress", Value::String(node_address)),
            ("NodeDatacenter", Value::String(text(&node["Datacenter"]))),
            ("NodeTaggedAddresses", from_json(&node["TaggedAddresses"])),
            ("NodeMeta", from_json(&node["Meta"])),
            ("ServiceMeta", from_json(&service["Meta"])),
            ("Address", Value::String(address)),
            ("ID", Value::String(id.clone())),
            ("Name", Value::String(text(&service["Service"]))),
            ("Kind", Value::String(text(&service["Kind"]))),
            ("Tags", tags(&service["Tags"])),
            ("Port", number(&service["Port"])),
            ("Status", Value::String(status.to_string())),
        ]);
        entries.push((node_name, id, value));
    }
    // By node, then ID, as consul-template sorts them: the order must not depend on the server.
    entries.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    Ok(Value::Array(entries.into_iter().map(|(_, _, v)| v).collect()))
}

fn decode_services(body: Option<Json>) -> Result<Value, String> {
    let map = match body {
        None | Some(Json::Null) => serde_json::Map::new(),
        Some(Json::Object(m)) => m,
        Some(other) => return Err(format!("catalog services: expected a JSON object, got {other}")),
    };
    let sorted: BTreeMap<&String, &Json> = map.iter().collect();
    Ok(Value::Array(
        sorted
            .into_iter()
            .map(|(name, t)| object(vec![("Name", Value::String(name.clone())), ("Tags", tags(t))]))
            .collect(),
    ))
}

fn decode_nodes(body: Option<Json>) -> Result<Value, String> {
    let mut nodes: Vec<(String, String, Value)> = array(body, "catalog nodes")?
        .iter()
        .map(|n| {
            let (name, address) = (text(&n["Node"]), text(&n["Address"]));
            let value = object(vec![
                ("ID", Value::String(text(&n["ID"]))),
                ("Node", Value::String(name.clone())),
                ("Address", Value::String(address.clone())),
                ("Datacenter", Value::String(text(&n["Datacenter"]))),
                ("TaggedAddresses", from_json(&n["TaggedAddresses"])),
                ("Meta", from_json(&n["Meta"])),
            ]);
            (name, address, value)
        })
        .collect();
    nodes.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    Ok(Value::Array(nodes.into_iter().map(|(_, _, v)| v).collect()))
}

/// A KV entry's value as text (`Value` is base64; `null` is empty).
fn kv_value(entry: &Json) -> Result<String, String> {
    let Some(encoded) = entry["Value"].as_str() else { return Ok(String::new()) };
    let raw = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|e| format!("the value of {} is not base64: {e}", entry["Key"]))?;
    Ok(String::from_utf8_lossy(&raw).into_owned())
}

/// A key's value, or `Nil` while the key does not exist.
fn decode_key(body: Option<Json>) -> Result<Value, String> {
    match array(body, "kv")?.first() {
        None => Ok(Value::Nil),
        Some(entry) => Ok(Value::String(kv_value(entry)?)),
    }
}

/// Every pair under the prefix, each `Key` relative to it (what `ls` and `tree` filter).
fn decode_pairs(prefix: &str, body: Option<Json>) -> Result<Value, String> {
    let base = prefix.trim_start_matches('/').trim_end_matches('/');
    let mut pairs = Vec::new();
    for entry in array(body, "kv")? {
        let path = text(&entry["Key"]);
        let relative = path.strip_prefix(base).unwrap_or(&path).trim_start_matches('/').to_string();
        pairs.push((
            path.clone(),
            object(vec![
                ("Key", Value::String(relative)),
                ("Path", Value::String(path)),
                ("Value", Value::String(kv_value(&entry)?)),
                ("Flags", number(&entry["Flags"])),
                ("CreateIndex", number(&entry["CreateIndex"])),
                ("ModifyIndex", number(&entry["ModifyIndex"])),
                ("LockIndex", number(&entry["LockIndex"])),
                ("Session", Value::String(text(&entry["Session"]))),
            ]),
        ));
    }
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(Value::Array(pairs.into_iter().map(|(_, v)| v).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn field(v: &Value, name: &str) -> Value {
        match v {
            Value::Object(o) | Value::Map(o) => o.get(name).cloned().unwrap_or(Value::NoValue),
            other => panic!("{other:?} has no fields"),
        }
    }

    #[test]
    fn service_queries_parse_tag_name_and_filter_like_consul_template() {
        let passing = Some(BTreeSet::from(["passing".to_string()]));
        assert_eq!(
            Dependency::service("web").unwrap(),
            Dependency::Service { name: "web".into(), tag: None, statuses: passing.clone() }
        );
        assert_eq!(
            Dependency::service("v1.2.web|any").unwrap(),
            Dependency::Service { name: "web".into(), tag: Some("v1.2".into()), statuses: None }
        );
        assert_eq!(
            Dependency::service("web|warning,passing").unwrap(),
            Dependency::Service {
                name: "web".into(),
                tag: None,
                statuses: Some(BTreeSet::from(["passing".to_string(), "warning".to_string()]))
            }
        );
        for bad in ["", ".web", "web|sick", "web@dc2", "we b"] {
            assert!(Dependency::service(bad).is_err(), "{bad:?} is rejected");
        }
    }

    #[test]
    fn the_request_follows_the_query() {
        let web = Dependency::service("prod.web").unwrap();
        assert_eq!(
            web.request(),
            ("/v1/health/service/web".to_string(), vec![("tag", "prod".to_string()), ("passing", String::new())])
        );
        assert_eq!(Dependency::service("web|any").unwrap().request().1, vec![]);
        assert_eq!(Dependency::Key("/a b/c".into()).request().0, "/v1/kv/a%20b/c");
        assert_eq!(Dependency::KeyPrefix("app/".into()).request().1, vec![("recurse", String::new())]);
        assert_eq!(web.to_string(), "service \"prod.web\"");
    }

    #[test]
    fn health_entries_fall_back_to_the_node_address_and_are_filtered_and_sorted() {
        let entry = |node: &str, id: &str, addr: &str, status: &str| {
            json!({"Node": {"Node": node, "Address": "192.0.2.1"},
                   "Service": {"ID": id, "Service": "web", "Address": addr, "Port": 80, "Tags": ["b", "a", "b"]},
                   "Checks": [{"CheckID": "serfHealth", "Status": "passing"}, {"CheckID": "c", "Status": status}]})
        };
        let body = json!([
            entry("n2", "web1", "", "passing"),
            entry("n1", "web2", "10.0.0.2", "warning"),
            entry("n1", "web1", "10.0.0.1", "critical")
        ]);
        let warning_or_passing = BTreeSet::from(["passing".to_string(), "warning".to_string()]);

        let all = decode_health(Some(body.clone()), None).unwrap();
        let kept = decode_health(Some(body), Some(&warning_or_passing)).unwrap();

        let Value::Array(all) = all else { panic!() };
        let ids: Vec<String> = all.iter().map(|e| format!("{}/{}", field(e, "Node"), field(e, "ID"))).collect();
        assert_eq!(ids, ["n1/web1", "n1/web2", "n2/web1"]);
        assert_eq!(field(&all[2], "Address"), Value::from("192.0.2.1"), "no service address: the node's");
        assert_eq!(field(&all[0], "Address"), Value::from("10.0.0.1"));
        assert_eq!(field(&all[0], "Status"), Value::from("critical"));
        assert_eq!(field(&all[0], "Tags"), Value::from(vec!["a", "b"]));
        let Value::Array(kept) = kept else { panic!() };
        assert_eq!(kept.len(), 2, "the critical instance is filtered out");
    }

    #[test]
    fn a_maintenance_check_wins_the_aggregated_status() {
        let checks = json!([{"CheckID": "_service_maintenance:web", "Status": "critical"}]);
        assert_eq!(aggregated_status(&checks), "maintenance");
        assert_eq!(aggregated_status(&json!([])), "passing");
    }

    #[test]
    fn pairs_are_relative_to_the_prefix_and_keys_decode_base64() {
        let body = json!([
            {"Key": "app/", "Value": null, "ModifyIndex": 3},
            {"Key": "app/b/c", "Value": "Mw==", "ModifyIndex": 5},
            {"Key": "app/a", "Value": "MQ==", "ModifyIndex": 4},
        ]);
        let Value::Array(pairs) = decode_pairs("app/", Some(body)).unwrap() else { panic!() };
        let keys: Vec<String> = pairs.iter().map(|p| field(p, "Key").to_string()).collect();
        assert_eq!(keys, ["", "a", "b/c"]);
        assert_eq!(field(&pairs[1], "Value"), Value::from("1"));
        assert_eq!(decode_key(None).unwrap(), Value::Nil, "missing");
        assert_eq!(decode_key(Some(json!([{"Key": "k", "Value": "YmFy"}]))).unwrap(), Value::from("bar"));
    }
}
