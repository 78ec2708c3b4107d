//! Service and check definitions as clients write them — in `/v1/agent/service/register`,
//! `/v1/agent/check/register`, `/v1/catalog/register` and config files — decoded from
//! key-normalised JSON (see [`crate::http::json`]) into the catalog's records.

use std::collections::BTreeMap;

use legate_core::agent::{CheckSpec, Thresholds};
use legate_core::catalog::{CheckDefinition, HealthCheck, Service, ServiceAddress, Status, Weights};
use serde::Deserialize;

use crate::http::json::lenient;

/// A check definition (Consul's `CheckType` / `AgentCheckRegistration`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct CheckDef {
    pub id: Option<String>,
    pub checkid: Option<String>,
    #[serde(deserialize_with = "lenient::string")]
    pub name: String,
    #[serde(deserialize_with = "lenient::string")]
    pub notes: String,
    #[serde(deserialize_with = "lenient::string")]
    pub serviceid: String,
    pub status: Option<String>,
    #[serde(deserialize_with = "lenient::string")]
    pub output: String,
    #[serde(deserialize_with = "lenient::duration_ns")]
    pub interval: Option<u64>,
    #[serde(deserialize_with = "lenient::duration_ns")]
    pub timeout: Option<u64>,
    #[serde(deserialize_with = "lenient::duration_ns")]
    pub ttl: Option<u64>,
    #[serde(deserialize_with = "lenient::list")]
    pub args: Vec<String>,
    #[serde(deserialize_with = "lenient::list")]
    pub scriptargs: Vec<String>,
    #[serde(deserialize_with = "lenient::string")]
    pub http: String,
    #[serde(deserialize_with = "lenient::string")]
    pub method: String,
    #[serde(deserialize_with = "lenient::map")]
    pub header: BTreeMap<String, Vec<String>>,
    #[serde(deserialize_with = "lenient::string")]
    pub body: String,
    pub tlsskipverify: bool,
    #[serde(deserialize_with = "lenient::string")]
    pub tlsservername: String,
    #[serde(deserialize_with = "lenient::string")]
    pub tcp: String,
    #[serde(deserialize_with = "lenient::duration_ns")]
    pub deregistercriticalserviceafter: Option<u64>,
    pub successbeforepassing: u32,
    pub failuresbeforewarning: u32,
    pub failuresbeforecritical: u32,
    pub outputmaxsize: Option<u32>,
    /// `/v1/catalog/register` checks carry their definition nested.
    pub definition: Option<Box<CheckDef>>,
    /// `/v1/catalog/register` checks name their node.
    #[serde(deserialize_with = "lenient::string")]
    pub node: String,
    #[serde(rename = "type", deserialize_with = "lenient::string")]
    pub kind: String,
}

/// A service definition (Consul's `AgentServiceRegistration`, and the `Service` of a catalog
/// registration, which names the service `Service` rather than `Name`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct ServiceDef {
    #[serde(deserialize_with = "lenient::string")]
    pub id: String,
    #[serde(deserialize_with = "lenient::string")]
    pub name: String,
    #[serde(deserialize_with = "lenient::string")]
    pub service: String,
    #[serde(deserialize_with = "lenient::list")]
    pub tags: Vec<String>,
    #[serde(deserialize_with = "lenient::string")]
    pub address: String,
    #[serde(deserialize_with = "lenient::map")]
    pub taggedaddresses: BTreeMap<String, ServiceAddressDef>,
    #[serde(deserialize_with = "lenient::map")]
    pub meta: BTreeMap<String, String>,
    pub port: Option<i64>,
    #[serde(deserialize_with = "lenient::string")]
    pub kind: String,
    pub weights: Option<WeightsDef>,
    pub enabletagoverride: bool,
    pub check: Option<CheckDef>,
    #[serde(deserialize_with = "lenient::list")]
    pub checks: Vec<CheckDef>,
    pub namespace: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct ServiceAddressDef {
    #[serde(deserialize_with = "lenient::string")]
    pub address: String,
    pub port: i64,
}

#[derive(Clone, Copy, Debug, Default, Deserialize)]
#[serde(default)]
pub struct WeightsDef {
    pub passing: Option<i64>,
    pub warning: Option<i64>,
}

fn port(p: i64, what: &str) -> Result<u16, String> {
    u16::try_from(p).map_err(|_| format!("Invalid {what} {p}: must be between 0 and 65535"))
}

impl ServiceDef {
    /// The catalog record (indexes zero) and the checks to register with it.
    pub fn into_parts(self) -> Result<(Service, Vec<CheckDef>), String> {
        if let Some(ns) = &self.namespace {
            if !ns.is_empty() && ns != "default" {
                return Err("Namespaces are a Consul Enterprise feature".into());
            }
        }
        let name = if self.name.is_empty() { self.service } else { self.name };
        let mut tagged = BTreeMap::new();
        for (k, a) in self.taggedaddresses {
            tagged.insert(k, ServiceAddress { address: a.address, port: port(a.port, "tagged address port")? });
        }
        let weights = match self.weights {
            None => Weights::default(),
            Some(w) => {
                let passing = w.passing.unwrap_or(1);
                let warning = w.warning.unwrap_or(1);
                if passing < 1 {
                    return Err(format!("Passing must be greater than 0: {passing}"));
                }
                if warning < 0 {
                    return Err(format!("Warning must be greater or equal than 0: {warning}"));
                }
                Weights { passing: passing.min(u32::MAX as i64) as u32, warning: warning.min(u32::MAX as i64) as u32 }
            }
        };
        let service = Service {
            kind: self.kind,
            id: self.id,
            service: name,
            tags: self.tags,
            address: self.address,
            tagged_addresses: tagged,
            meta: self.meta,
            port: port(self.port.unwrap_or(0), "port")?,
            weights,
            enable_tag_override: self.enabletagoverride,
            create_index: 0,
            modify_index: 0,
        };
        let mut checks = self.checks;
        if let Some(c) = self.check {
            checks.insert(0, c);
        }
        Ok((service, checks))
    }
}

/// What an agent may run.
#[derive(Clone, Copy, Debug, Default)]
pub struct CheckPolicy {
    pub enable_script_checks: bool,
}

impl CheckDef {
    fn merged(self) -> CheckDef {
        match self.definition {
            None => self,
            Some(def) => {
                let def = *def;
                CheckDef {
                    interval: self.interval.or(def.interval),
                    timeout: self.timeout.or(def.timeout),
                    deregistercriticalserviceafter: self
                        .deregistercriticalserviceafter
                        .or(def.deregistercriticalserviceafter),
                    http: if self.http.is_empty() { def.http } else { self.http },
                    method: if self.method.is_empty() { def.method } else { self.method },
                    header: if self.header.is_empty() { def.header } else { self.header },
                    body: if self.body.is_empty() { def.body } else { self.body },
                    tcp: if self.tcp.is_empty() { def.tcp } else { self.tcp },
                    tlsskipverify: self.tlsskipverify || def.tlsskipverify,
                    tlsservername: if self.tlsservername.is_empty() { def.tlsservername } else { self.tlsservername },
                    scriptargs: if self.scriptargs.is_empty() { def.scriptargs } else { self.scriptargs },
                    definition: None,
                    ..self
                }
            }
        }
    }

    /// Turns the definition into the agent's check spec, validating its type the way Consul
    /// does. `catalog` relaxes the "must say how it is run" rule (catalog checks are records,
    /// run by nobody).
    pub fn into_spec(self, policy: CheckPolicy, catalog: bool) -> Result<CheckSpec, String> {
        let d = self.merged();
        let status = match d.status.as_deref() {
            None | Some("") => Status::Critical,
            Some(s) => Status::parse(s).ok_or_else(|| format!("Invalid check status: {s:?}"))?,
        };
        let script: Vec<String> = if d.args.is_empty() { d.scriptargs.clone() } else { d.args.clone() };
        let kind = if !d.kind.is_empty() {
            d.kind.clone()
        } else if d.ttl.is_some() {
            "ttl".into()
        } else if !d.http.is_empty() {
            "http".into()
        } else if !d.tcp.is_empty() {
            "tcp".into()
        } else if !script.is_empty() {
            "script".into()
        } else {
            String::new()
        };
        if !catalog {
            match kind.as_str() {
                "ttl" => {}
                "http" | "tcp" | "script" => {
                    if d.interval.unwrap_or(0) == 0 {
                        return Err(format!("Interval must be > 0 for {} checks", kind.to_uppercase()));
                    }
                }
                _ => return Err("Must provide TTL or Script/HTTP/TCP and interval".into()),
            }
            if kind == "script" && !policy.enable_script_checks {
                return Err("Scripts are disabled on this agent; to enable, configure 'enable_script_checks' or 'enable_local_script_checks' to true".into());
            }
        }
        if let Some(after) = d.deregistercriticalserviceafter {
            if after > 0 && after < 60_000_000_000 {
                return Err("DeregisterCriticalServiceAfter must be at least 1m".into());
            }
        }
        let id = d.id.or(d.checkid).unwrap_or_default();
        let check = HealthCheck {
            node: d.node,
            check_id: id,
            name: d.name,
            status,
            notes: d.notes,
            output: d.output,
            service_id: d.serviceid,
            kind,
            definition: CheckDefinition {
                http: d.http,
                header: d.header,
                method: d.method,
                body: d.body,
                tls_server_name: d.tlsservername,
                tls_skip_verify: d.tlsskipverify,
                tcp: d.tcp,
                interval: d.interval.unwrap_or(0),
                timeout: d.timeout.unwrap_or(0),
                deregister_critical_service_after: d.deregistercriticalserviceafter.unwrap_or(0),
                script_args: script,
            },
            ..Default::default()
        };
        Ok(CheckSpec {
            check,
            ttl_ms: d.ttl.map(|ns| (ns / 1_000_000).max(1)),
            thresholds: Thresholds::new(d.successbeforepassing, d.failuresbeforewarning, d.failuresbeforecritical),
            output_max_bytes: d.outputmaxsize.filter(|n| *n > 0).map(|n| n as usize),
            keep_status: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::json::decode;

    #[test]
    fn the_talks_check_formats_decode() {
        let def: CheckDef =
            decode(br#"{"id": "mem-util", "name": "Memory utilization", "args": ["/bin/true"], "interval": "10s"}"#)
                .unwrap();
        let spec = def.clone().into_spec(CheckPolicy { enable_script_checks: true }, false).unwrap();
        assert_eq!(spec.check.check_id, "mem-util");
        assert_eq!(spec.check.kind, "script");
        assert_eq!(spec.check.definition.interval, 10_000_000_000);
        let err = def.into_spec(CheckPolicy::default(), false).unwrap_err();
        assert!(err.starts_with("Scripts are disabled"), "{err}");

        let http: CheckDef =
            decode(br#"{"id": "api", "name": "HTTP API on port 5000", "http": "http://localhost:5000/health", "interval": "10s", "timeout": "1s"}"#)
                .unwrap();
        let spec = http.into_spec(CheckPolicy::default(), false).unwrap();
        assert_eq!((spec.check.kind.as_str(), spec.check.definition.timeout), ("http", 1_000_000_000));
    }

    #[test]
    fn ttl_checks_and_bad_definitions() {
        let ttl: CheckDef = decode(br#"{"Name": "t", "TTL": "15s", "Status": "passing"}"#).unwrap();
        let spec = ttl.into_spec(CheckPolicy::default(), false).unwrap();
        assert_eq!((spec.ttl_ms, spec.check.status), (Some(15_000), Status::Passing));
        let none: CheckDef = decode(br#"{"Name": "t"}"#).unwrap();
        assert!(none.into_spec(CheckPolicy::default(), false).is_err());
        let bad: CheckDef = decode(br#"{"Name": "t", "TTL": "10s", "Status": "sick"}"#).unwrap();
        assert!(bad.into_spec(CheckPolicy::default(), false).is_err());
    }

    #[test]
    fn services_take_snake_and_pascal_case() {
        let def: ServiceDef = decode(
            br#"{"Name": "web", "Port": 80, "Tags": ["v1"], "enable_tag_override": true, "Meta": {"Version": "1"}, "Weights": {"Passing": 5}}"#,
        )
        .unwrap();
        let (svc, checks) = def.into_parts().unwrap();
        assert_eq!((svc.service.as_str(), svc.port, svc.enable_tag_override), ("web", 80, true));
        assert_eq!(svc.meta["Version"], "1");
        assert_eq!(svc.weights, Weights { passing: 5, warning: 1 });
        assert!(checks.is_empty());
        let bad: ServiceDef = decode(br#"{"Name": "web", "Port": 70000}"#).unwrap();
        assert!(bad.into_parts().is_err());
    }
}
