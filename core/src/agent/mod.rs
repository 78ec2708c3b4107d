//! The local agent's own services and checks, and the TTL timers of its TTL checks.
//!
//! The agent is authoritative for what it registered: every change it makes to its local
//! state is emitted as [`AgentOutput::Sync`] — the catalog command that mirrors it — for the
//! driver to propose. Only status or output changes are synced; a TTL check renewed with the
//! same status and output sends nothing.
//!
//! Drain contract: after any `handle_*`/mutating call, drain [`LocalAgent::poll_output`] until
//! `None`, and arm a timer for [`LocalAgent::poll_timeout`].

use std::collections::{BTreeMap, VecDeque};

pub mod run;
pub use run::{CheckKind, CheckResult, CheckRun};

use crate::catalog::{Command, Deregistration, HealthCheck, Node, Registration, Service, Status};
use crate::limits;

/// A check as the agent holds it: the catalog record plus how it is kept alive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalCheck {
    pub check: HealthCheck,
    /// TTL checks go critical when not updated within this many ms.
    pub ttl_ms: Option<u64>,
    ttl_deadline_ms: Option<u64>,
}

/// A check to register: the record (ID and name may be empty, to be defaulted) and its TTL.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckSpec {
    pub check: HealthCheck,
    pub ttl_ms: Option<u64>,
}

/// What the driver must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AgentOutput {
    /// Propose this catalog command so the catalog mirrors the agent's state.
    Sync(Command),
}

/// Why a local change was refused. Texts are Consul's.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AgentError {
    #[error("CheckID {0:?} does not have associated TTL")]
    NotTtl(String),
    #[error("ServiceID {0:?} does not exist")]
    UnknownService(String),
    #[error("{0}")]
    Invalid(String),
}

/// The agent's local state.
#[derive(Debug)]
pub struct LocalAgent {
    node: Node,
    services: BTreeMap<String, Service>,
    checks: BTreeMap<String, LocalCheck>,
    outputs: VecDeque<AgentOutput>,
}

impl LocalAgent {
    /// An agent for `node`; its first output registers the node.
    pub fn new(node: Node) -> Self {
        let mut agent =
            LocalAgent { node, services: BTreeMap::new(), checks: BTreeMap::new(), outputs: VecDeque::new() };
        agent.sync(Registration { node: agent.node.clone(), ..Default::default() });
        agent
    }

    pub fn node(&self) -> &Node {
        &self.node
    }

    pub fn services(&self) -> &BTreeMap<String, Service> {
        &self.services
    }

    pub fn service(&self, id: &str) -> Option<&Service> {
        self.services.get(id)
    }

    pub fn checks(&self) -> impl Iterator<Item = &LocalCheck> {
        self.checks.values()
    }

    pub fn check(&self, id: &str) -> Option<&LocalCheck> {
        self.checks.get(id)
    }

    /// Registers (or replaces) a service with its checks. Checks without an ID get
    /// `service:<id>` (or `service:<id>:<n>` when there are several), as in Consul.
    pub fn register_service(
        &mut self,
        now_ms: u64,
        mut service: Service,
        checks: Vec<CheckSpec>,
        replace_existing_checks: bool,
    ) -> Result<(), AgentError> {
        if service.service.is_empty() {
            return Err(AgentError::Invalid("Missing service name".into()));
        }
        if service.id.is_empty() {
            service.id = service.service.clone();
        }
        if checks.len() > limits::REGISTRATION_CHECKS_MAX {
            return Err(AgentError::Invalid("Too many checks".into()));
        }
        let several = checks.len() > 1;
        let mut prepared = Vec::with_capacity(checks.len());
        for (i, mut spec) in checks.into_iter().enumerate() {
            if spec.check.check_id.is_empty() {
                spec.check.check_id = if several {
                    format!("service:{}:{}", service.id, i + 1)
                } else {
                    format!("service:{}", service.id)
                };
            }
            if spec.check.name.is_empty() {
                spec.check.name = format!("Service '{}' check", service.service);
            }
            spec.check.service_id = service.id.clone();
            prepared.push(spec);
        }
        if replace_existing_checks {
            let stale: Vec<String> = self
                .checks
                .values()
                .filter(|c| {
                    c.check.service_id == service.id && !prepared.iter().any(|p| p.check.check_id == c.check.check_id)
                })
                .map(|c| c.check.check_id.clone())
                .collect();
            for id in stale {
                self.deregister_check(&id);
            }
        }
        self.services.insert(service.id.clone(), service.clone());
        let mut synced = Vec::new();
        for spec in prepared {
            synced.push(self.insert_check(now_ms, spec, &service));
        }
        self.sync(Registration {
            node: self.node.clone(),
            skip_node_update: false,
            service: Some(service),
            checks: synced,
        });
        Ok(())
    }

    /// Removes a service and its checks. Returns whether it existed.
    pub fn deregister_service(&mut self, id: &str) -> bool {
        if self.services.remove(id).is_none() {
            return false;
        }
        self.checks.retain(|_, c| c.check.service_id != id);
        self.outputs.push_back(AgentOutput::Sync(Command::Deregister(Deregistration {
            node: self.node.node.clone(),
            service_id: Some(id.to_string()),
            check_id: None,
        })));
        true
    }

    /// Registers (or replaces) a check, node-level or of a local service.
    pub fn register_check(&mut self, now_ms: u64, spec: CheckSpec) -> Result<(), AgentError> {
        if spec.check.check_id.is_empty() && spec.check.name.is_empty() {
            return Err(AgentError::Invalid("Missing check name".into()));
        }
        let service = if spec.check.service_id.is_empty() {
            Service::default()
        } else {
            self.services
                .get(&spec.check.service_id)
                .cloned()
                .ok_or_else(|| AgentError::UnknownService(spec.check.service_id.clone()))?
        };
        let mut spec = spec;
        if spec.check.check_id.is_empty() {
            spec.check.check_id = spec.check.name.clone();
        }
        let check = self.insert_check(now_ms, spec, &service);
        self.sync(Registration {
            node: self.node.clone(),
            skip_node_update: false,
            service: None,
            checks: vec![check],
        });
        Ok(())
    }

    /// Removes a check. Returns whether it existed.
    pub fn deregister_check(&mut self, id: &str) -> bool {
        if self.checks.remove(id).is_none() {
            return false;
        }
        self.outputs.push_back(AgentOutput::Sync(Command::Deregister(Deregistration {
            node: self.node.node.clone(),
            service_id: None,
            check_id: Some(id.to_string()),
        })));
        true
    }

    /// Sets a TTL check's status (`/v1/agent/check/pass|warn|fail|update`) and restarts its TTL.
    pub fn update_ttl(&mut self, now_ms: u64, id: &str, status: Status, output: String) -> Result<(), AgentError> {
        let local =
            self.checks.get_mut(id).filter(|c| c.ttl_ms.is_some()).ok_or_else(|| AgentError::NotTtl(id.to_string()))?;
        local.ttl_deadline_ms = local.ttl_ms.map(|ttl| now_ms.saturating_add(ttl));
        let output = truncate(output);
        if local.check.status == status && local.check.output == output {
            return Ok(());
        }
        local.check.status = status;
        local.check.output = output;
        let check = local.check.clone();
        self.sync(Registration {
            node: self.node.clone(),
            skip_node_update: false,
            service: None,
            checks: vec![check],
        });
        Ok(())
    }

    /// Expires TTL checks whose deadline passed: they turn critical.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        let expired: Vec<String> = self
            .checks
            .values()
            .filter(|c| c.ttl_deadline_ms.is_some_and(|d| d <= now_ms))
            .map(|c| c.check.check_id.clone())
            .collect();
        for id in expired {
            let local = self.checks.get_mut(&id).expect("listed above");
            local.ttl_deadline_ms = None;
            if local.check.status == Status::Critical && local.check.output.starts_with("TTL expired") {
                continue;
            }
            local.check.status = Status::Critical;
            local.check.output = "TTL expired".to_string();
            let check = local.check.clone();
            self.sync(Registration {
                node: self.node.clone(),
                skip_node_update: false,
                service: None,
                checks: vec![check],
            });
        }
    }

    /// The earliest TTL deadline.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.checks.values().filter_map(|c| c.ttl_deadline_ms).min()
    }

    pub fn poll_output(&mut self) -> Option<AgentOutput> {
        self.outputs.pop_front()
    }

    fn insert_check(&mut self, now_ms: u64, spec: CheckSpec, service: &Service) -> HealthCheck {
        let mut check = spec.check;
        check.node = self.node.node.clone();
        check.service_name = service.service.clone();
        check.service_tags = service.tags.clone();
        check.output = truncate(check.output);
        if spec.ttl_ms.is_some() && check.kind.is_empty() {
            check.kind = "ttl".to_string();
        }
        let ttl_deadline_ms = spec.ttl_ms.map(|ttl| now_ms.saturating_add(ttl));
        self.checks
            .insert(check.check_id.clone(), LocalCheck { check: check.clone(), ttl_ms: spec.ttl_ms, ttl_deadline_ms });
        check
    }

    fn sync(&mut self, reg: Registration) {
        self.outputs.push_back(AgentOutput::Sync(Command::Register(Box::new(reg))));
    }
}

fn truncate(mut output: String) -> String {
    if output.len() > limits::CHECK_OUTPUT_SIZE_MAX_BYTES {
        let mut end = limits::CHECK_OUTPUT_SIZE_MAX_BYTES;
        while !output.is_char_boundary(end) {
            end -= 1;
        }
        output.truncate(end);
    }
    output
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent() -> LocalAgent {
        let mut a = LocalAgent::new(Node { node: "n1".into(), address: "127.0.0.1".into(), ..Default::default() });
        assert!(matches!(a.poll_output(), Some(AgentOutput::Sync(Command::Register(_)))));
        a
    }

    fn ttl_check(ttl_ms: u64) -> CheckSpec {
        CheckSpec { check: HealthCheck::default(), ttl_ms: Some(ttl_ms) }
    }

    #[test]
    fn service_checks_get_consul_ids_and_a_ttl_expires_to_critical() {
        let mut a = agent();
        let svc = Service { service: "web".into(), ..Default::default() };
        a.register_service(0, svc, vec![ttl_check(1_000), ttl_check(5_000)], false).unwrap();
        let Some(AgentOutput::Sync(Command::Register(reg))) = a.poll_output() else { panic!() };
        let ids: Vec<_> = reg.checks.iter().map(|c| c.check_id.as_str()).collect();
        assert_eq!(ids, ["service:web:1", "service:web:2"]);
        assert!(reg.checks.iter().all(|c| c.status == Status::Critical && c.name == "Service 'web' check"));

        a.update_ttl(500, "service:web:1", Status::Passing, "ok".into()).unwrap();
        assert!(a.poll_output().is_some());
        // Same status and output again: nothing to sync.
        a.update_ttl(900, "service:web:1", Status::Passing, "ok".into()).unwrap();
        assert_eq!(a.poll_output(), None);
        assert_eq!(a.poll_timeout(), Some(1_900));
        a.handle_timeout(1_900);
        let Some(AgentOutput::Sync(Command::Register(reg))) = a.poll_output() else { panic!() };
        assert_eq!(reg.checks[0].status, Status::Critical);
        assert_eq!(reg.checks[0].output, "TTL expired");
    }

    #[test]
    fn only_ttl_checks_take_ttl_updates() {
        let mut a = agent();
        let spec = CheckSpec { check: HealthCheck { name: "mem".into(), ..Default::default() }, ttl_ms: None };
        a.register_check(0, spec).unwrap();
        assert_eq!(a.update_ttl(0, "mem", Status::Passing, String::new()), Err(AgentError::NotTtl("mem".into())));
        assert_eq!(a.update_ttl(0, "nope", Status::Passing, String::new()), Err(AgentError::NotTtl("nope".into())));
    }

    #[test]
    fn deregistering_a_service_drops_its_checks() {
        let mut a = agent();
        a.register_service(0, Service { service: "db".into(), ..Default::default() }, vec![ttl_check(10)], false)
            .unwrap();
        assert!(a.deregister_service("db"));
        assert_eq!(a.checks().count(), 0);
        assert!(!a.deregister_service("db"));
    }
}
