//! Response shapes that differ from the catalog's records.

use std::collections::BTreeMap;

use legate_core::catalog::query::{ServiceHealth, ServiceInstance};
use legate_core::catalog::{HealthCheck, Node, Service, ServiceAddress, Weights};
use serde::Serialize;

/// `/v1/catalog/service/:name` entries: node and service flattened.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CatalogServiceEntry<'a> {
    #[serde(rename = "ID")]
    pub id: &'a str,
    pub node: &'a str,
    pub address: &'a str,
    pub datacenter: &'a str,
    pub tagged_addresses: &'a BTreeMap<String, String>,
    pub node_meta: &'a BTreeMap<String, String>,
    pub service_kind: &'a str,
    #[serde(rename = "ServiceID")]
    pub service_id: &'a str,
    pub service_name: &'a str,
    pub service_tags: &'a [String],
    pub service_address: &'a str,
    pub service_tagged_addresses: &'a BTreeMap<String, ServiceAddress>,
    pub service_weights: Weights,
    pub service_meta: &'a BTreeMap<String, String>,
    pub service_port: u16,
    pub service_enable_tag_override: bool,
    pub create_index: u64,
    pub modify_index: u64,
}

impl<'a> From<&'a ServiceInstance> for CatalogServiceEntry<'a> {
    fn from(i: &'a ServiceInstance) -> Self {
        let (n, s) = (&i.node, &i.service);
        CatalogServiceEntry {
            id: &n.id,
            node: &n.node,
            address: &n.address,
            datacenter: &n.datacenter,
            tagged_addresses: &n.tagged_addresses,
            node_meta: &n.meta,
            service_kind: &s.kind,
            service_id: &s.id,
            service_name: &s.service,
            service_tags: &s.tags,
            service_address: &s.address,
            service_tagged_addresses: &s.tagged_addresses,
            service_weights: s.weights,
            service_meta: &s.meta,
            service_port: s.port,
            service_enable_tag_override: s.enable_tag_override,
            create_index: s.create_index,
            modify_index: s.modify_index,
        }
    }
}

/// `/v1/health/service/:name` entries.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct HealthEntry<'a> {
    pub node: &'a Node,
    pub service: &'a Service,
    pub checks: &'a [HealthCheck],
}

impl<'a> From<&'a ServiceHealth> for HealthEntry<'a> {
    fn from(h: &'a ServiceHealth) -> Self {
        HealthEntry { node: &h.node, service: &h.service, checks: &h.checks }
    }
}

/// A service as the agent endpoints show it: the record plus its datacenter.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AgentService<'a> {
    #[serde(flatten)]
    pub service: &'a Service,
    pub datacenter: &'a str,
}

/// `/v1/catalog/node/:node`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct NodeServices<'a> {
    pub node: &'a Node,
    pub services: BTreeMap<&'a str, &'a Service>,
}

/// `/v1/catalog/node-services/:node`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct NodeServiceList<'a> {
    pub node: &'a Node,
    pub services: &'a [Service],
}
