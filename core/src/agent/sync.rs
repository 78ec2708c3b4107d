//! Anti-entropy: what the catalog must be told so that it mirrors the agent's own node,
//! services and checks. The agent is authoritative; anything of this node the catalog holds
//! that the agent does not (a service from before a restart, a check removed while the
//! servers were unreachable) is removed, except the checks the servers own.

use std::collections::BTreeSet;

use crate::catalog::{Command, Deregistration, HealthCheck, Node, Registration, Service};

/// The catalog's view of this agent's node, as read for a full sync.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CatalogView {
    /// `None`: the catalog does not know the node.
    pub node: Option<Node>,
    pub services: Vec<Service>,
    pub checks: Vec<HealthCheck>,
}

/// Checks of a node that the servers maintain, never removed by an agent's sync.
pub const SERVER_OWNED_CHECKS: &[&str] = &["serfHealth"];

/// The commands that bring the catalog from `view` to the agent's state. `deferred` names
/// checks whose output-only change is deliberately not synced yet: their output is not
/// compared.
pub fn diff<'a>(
    node: &Node,
    services: impl Iterator<Item = &'a Service> + Clone,
    checks: impl Iterator<Item = &'a HealthCheck> + Clone,
    deferred: &BTreeSet<&str>,
    view: &CatalogView,
) -> Vec<Command> {
    let mut out = Vec::new();
    let register = |service: Option<Service>, checks: Vec<HealthCheck>| {
        Command::Register(Box::new(Registration { node: node.clone(), skip_node_update: false, service, checks }))
    };
    if view.node.as_ref().is_none_or(|n| !same_node(n, node)) {
        out.push(register(None, Vec::new()));
    }
    for svc in services.clone() {
        let current = view.services.iter().find(|s| s.id == svc.id);
        if current.is_none_or(|c| !same_service(c, svc)) {
            out.push(register(Some(svc.clone()), Vec::new()));
        }
    }
    let mut gone_services = BTreeSet::new();
    for svc in &view.services {
        if !services.clone().any(|s| s.id == svc.id) {
            gone_services.insert(svc.id.as_str());
            out.push(Command::Deregister(Deregistration {
                node: node.node.clone(),
                service_id: Some(svc.id.clone()),
                check_id: None,
            }));
        }
    }
    let changed: Vec<HealthCheck> = checks
        .clone()
        .filter(|c| {
            let current = view.checks.iter().find(|v| v.check_id == c.check_id);
            current.is_none_or(|v| !same_check(v, c, deferred.contains(c.check_id.as_str())))
        })
        .cloned()
        .collect();
    if !changed.is_empty() {
        out.push(register(None, changed));
    }
    for check in &view.checks {
        let owned_by_servers = SERVER_OWNED_CHECKS.contains(&check.check_id.as_str());
        let goes_with_service = gone_services.contains(check.service_id.as_str());
        if !owned_by_servers && !goes_with_service && !checks.clone().any(|c| c.check_id == check.check_id) {
            out.push(Command::Deregister(Deregistration {
                node: node.node.clone(),
                service_id: None,
                check_id: Some(check.check_id.clone()),
            }));
        }
    }
    out
}

fn same_node(a: &Node, b: &Node) -> bool {
    a.node == b.node
        && a.id == b.id
        && a.address == b.address
        && a.tagged_addresses == b.tagged_addresses
        && a.meta == b.meta
}

fn same_service(a: &Service, b: &Service) -> bool {
    Service { create_index: 0, modify_index: 0, ..a.clone() }
        == Service { create_index: 0, modify_index: 0, ..b.clone() }
}

fn same_check(catalog: &HealthCheck, local: &HealthCheck, ignore_output: bool) -> bool {
    let normal = |c: &HealthCheck| HealthCheck {
        create_index: 0,
        modify_index: 0,
        node: String::new(),
        output: if ignore_output { String::new() } else { c.output.clone() },
        ..c.clone()
    };
    normal(catalog) == normal(local)
}
