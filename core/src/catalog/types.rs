//! The catalog's records, shaped as Consul's JSON shows them.
//!
//! These types are the data model both of the replicated state and of the HTTP API: their
//! serde form is Consul's (PascalCase names, `[]` rather than `null` for lists, base64 values).

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// A node of the catalog (`/v1/catalog/nodes`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Node {
    #[serde(rename = "ID")]
    pub id: String,
    pub node: String,
    pub address: String,
    pub datacenter: String,
    pub tagged_addresses: BTreeMap<String, String>,
    pub meta: BTreeMap<String, String>,
    pub create_index: u64,
    pub modify_index: u64,
}

/// A service's address for one purpose (`lan`, `wan`, `lan_ipv4`, ...).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceAddress {
    pub address: String,
    pub port: u16,
}

/// DNS SRV weights of an instance by its health.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Weights {
    pub passing: u32,
    pub warning: u32,
}

impl Default for Weights {
    fn default() -> Self {
        Weights { passing: 1, warning: 1 }
    }
}

/// A service instance registered on a node (Consul's `NodeService`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Service {
    pub kind: String,
    #[serde(rename = "ID")]
    pub id: String,
    pub service: String,
    pub tags: Vec<String>,
    pub address: String,
    pub tagged_addresses: BTreeMap<String, ServiceAddress>,
    pub meta: BTreeMap<String, String>,
    pub port: u16,
    pub weights: Weights,
    pub enable_tag_override: bool,
    pub create_index: u64,
    pub modify_index: u64,
}

/// A health status. Consul orders them passing < warning < critical when aggregating.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Passing,
    Warning,
    #[default]
    Critical,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Passing => "passing",
            Status::Warning => "warning",
            Status::Critical => "critical",
        }
    }

    /// Parses the API's spelling; anything else is not a status.
    pub fn parse(s: &str) -> Option<Status> {
        match s {
            "passing" => Some(Status::Passing),
            "warning" => Some(Status::Warning),
            "critical" => Some(Status::Critical),
            _ => None,
        }
    }
}

/// How a check is run, kept with the check so that `Definition` shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CheckDefinition {
    #[serde(rename = "HTTP")]
    pub http: String,
    pub header: BTreeMap<String, Vec<String>>,
    pub method: String,
    pub body: String,
    #[serde(rename = "TLSServerName")]
    pub tls_server_name: String,
    #[serde(rename = "TLSSkipVerify")]
    pub tls_skip_verify: bool,
    #[serde(rename = "TCP")]
    pub tcp: String,
    #[serde(with = "crate::duration::serde_go_ns")]
    pub interval: u64,
    #[serde(with = "crate::duration::serde_go_ns")]
    pub timeout: u64,
    #[serde(with = "crate::duration::serde_go_ns")]
    pub deregister_critical_service_after: u64,
    pub script_args: Vec<String>,
}

/// A health check (`/v1/health/*`). Node-level checks have an empty `ServiceID`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HealthCheck {
    pub node: String,
    #[serde(rename = "CheckID")]
    pub check_id: String,
    pub name: String,
    pub status: Status,
    pub notes: String,
    pub output: String,
    #[serde(rename = "ServiceID")]
    pub service_id: String,
    pub service_name: String,
    pub service_tags: Vec<String>,
    #[serde(rename = "Type")]
    pub kind: String,
    pub definition: CheckDefinition,
    pub create_index: u64,
    pub modify_index: u64,
}

/// A KV entry (Consul's `DirEntry`). An empty value shows as `null`, as Consul's does.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct KvEntry {
    pub lock_index: u64,
    pub key: String,
    pub flags: u64,
    #[serde(with = "base64_value")]
    pub value: Vec<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    pub create_index: u64,
    pub modify_index: u64,
}

/// What happens to a session's locks when it is invalidated.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Behavior {
    #[default]
    Release,
    Delete,
}

impl Behavior {
    pub fn parse(s: &str) -> Option<Behavior> {
        match s {
            "release" | "" => Some(Behavior::Release),
            "delete" => Some(Behavior::Delete),
            _ => None,
        }
    }
}

/// A service check a session is tied to.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceCheckRef {
    #[serde(rename = "ID")]
    pub id: String,
    pub namespace: String,
}

/// A session (`/v1/session/*`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Session {
    #[serde(rename = "ID")]
    pub id: String,
    pub name: String,
    pub node: String,
    /// Lock-delay in nanoseconds, as Consul's JSON carries it.
    pub lock_delay: u64,
    pub behavior: Behavior,
    /// The TTL as given (a Go duration string), or empty for none.
    #[serde(rename = "TTL")]
    pub ttl: String,
    pub node_checks: Vec<String>,
    pub service_checks: Vec<ServiceCheckRef>,
    pub create_index: u64,
    pub modify_index: u64,
}

impl Session {
    /// The TTL in milliseconds, if the session has one.
    pub fn ttl_ms(&self) -> Option<u64> {
        if self.ttl.is_empty() {
            return None;
        }
        crate::duration::parse_ms(&self.ttl).ok().filter(|ms| *ms > 0)
    }

    /// Whether this session is tied to the check `check_id` (on its own node).
    pub fn watches_check(&self, check_id: &str) -> bool {
        self.node_checks.iter().any(|c| c == check_id) || self.service_checks.iter().any(|c| c.id == check_id)
    }
}

mod base64_value {
    use super::*;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &[u8], s: S) -> Result<S::Ok, S::Error> {
        if value.is_empty() {
            s.serialize_none()
        } else {
            s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(value))
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text: Option<String> = Option::deserialize(d)?;
        match text {
            None => Ok(Vec::new()),
            Some(t) => base64::engine::general_purpose::STANDARD.decode(t.as_bytes()).map_err(serde::de::Error::custom),
        }
    }
}

/// Lower-cases a node or service name for lookups: Consul matches them case-insensitively.
pub fn name_key(name: &str) -> String {
    name.to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kv_entry_json_matches_consul() {
        let e = KvEntry {
            lock_index: 0,
            key: "foo".into(),
            flags: 0,
            value: b"bar".to_vec(),
            session: None,
            create_index: 5,
            modify_index: 5,
        };
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(json, r#"{"LockIndex":0,"Key":"foo","Flags":0,"Value":"YmFy","CreateIndex":5,"ModifyIndex":5}"#);
        let empty = KvEntry { value: vec![], ..e };
        assert!(serde_json::to_string(&empty).unwrap().contains(r#""Value":null"#));
    }

    #[test]
    fn flags_hold_the_go_semaphore_value() {
        let e = KvEntry { flags: 0xe0f69a2baa414de0, ..Default::default() };
        let back: KvEntry = serde_json::from_str(&serde_json::to_string(&e).unwrap()).unwrap();
        assert_eq!(back.flags, 0xe0f69a2baa414de0);
    }
}
