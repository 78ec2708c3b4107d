//! The local agent's own services and checks: when its checks run, what their runs mean,
//! and what the catalog must be told.
//!
//! The agent is authoritative for what it registered. Its outputs are plain data:
//! [`AgentOutput::Sync`] (propose this catalog command), [`AgentOutput::Run`] (run this check,
//! then report with [`LocalAgent::handle_check_result`]) and [`AgentOutput::FullSync`] (read
//! the catalog's view of this node and hand it to [`LocalAgent::handle_catalog_view`]).
//!
//! Anti-entropy, as in Consul: a status change is synced at once (edge-triggered); a change
//! of output alone waits up to `check_update_interval`; a full sync every `sync_interval`
//! (scaled with the cluster's size, staggered) repairs any drift. A healthy steady state
//! sends nothing.
//!
//! Drain contract: after any `handle_*`/mutating call, drain [`LocalAgent::poll_output`] until
//! `None`, and arm a timer for [`LocalAgent::poll_timeout`]. A spurious `handle_timeout` is a
//! no-op.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::catalog::{Command, Deregistration, HealthCheck, Node, Registration, Service, Status};
use crate::limits;

pub mod run;
pub mod status;
pub mod sync;
pub use run::{CheckKind, CheckResult, CheckRun};
pub use status::Thresholds;
pub use sync::CatalogView;

/// The check ID of node maintenance mode (Consul's).
pub const NODE_MAINTENANCE_CHECK: &str = "_node_maintenance";

/// The check ID prefix of a service's maintenance mode (Consul's).
pub const SERVICE_MAINTENANCE_PREFIX: &str = "_service_maintenance:";

/// The agent's timing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AgentSettings {
    /// Seeds the staggering of check runs and syncs.
    pub seed: u64,
    /// How long an output-only change may wait before it is synced (Consul's
    /// `check_update_interval`); 0 syncs it at once.
    pub check_update_interval_ms: u64,
    /// The full anti-entropy sync's period before scaling and stagger (Consul's 1 min).
    pub sync_interval_ms: u64,
}

impl Default for AgentSettings {
    fn default() -> Self {
        AgentSettings { seed: 0, check_update_interval_ms: 5 * 60_000, sync_interval_ms: 60_000 }
    }
}

/// A check as the agent holds it: the catalog record plus how it is kept up to date.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalCheck {
    pub check: HealthCheck,
    /// TTL checks go critical when not updated within this many ms.
    pub ttl_ms: Option<u64>,
    ttl_deadline_ms: Option<u64>,
    /// How a script, HTTP or TCP check is run, and when next.
    plan: Option<RunPlan>,
    thresholds: Thresholds,
    /// An output-only change waits until then to be synced.
    output_sync_at_ms: Option<u64>,
    /// While critical: since when.
    critical_since_ms: Option<u64>,
    /// Deregister the check's service after it has been critical this long.
    deregister_after_ms: Option<u64>,
    /// Output beyond this is cut (`OutputMaxSize`).
    output_max_bytes: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct RunPlan {
    kind: CheckKind,
    interval_ms: u64,
    timeout_ms: u64,
    output_max_bytes: usize,
    /// `None` while a run is in flight.
    next_run_ms: Option<u64>,
}

/// A check to register: the record (ID and name may be empty, to be defaulted), its TTL or
/// how it runs, and its thresholds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckSpec {
    pub check: HealthCheck,
    pub ttl_ms: Option<u64>,
    pub thresholds: Thresholds,
    /// `OutputMaxSize`; `None` for the 4 KiB default.
    pub output_max_bytes: Option<usize>,
    /// If a check with this ID exists, keep its status and output (a config reload
    /// re-registers every check from the files and must not make them flap).
    pub keep_status: bool,
}

/// What the driver must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AgentOutput {
    /// Propose this catalog command so the catalog mirrors the agent's state.
    Sync(Command),
    /// Run this check and report the result with this token through
    /// [`LocalAgent::handle_check_result`]. The check is not run again until then.
    Run { token: u64, run: CheckRun },
    /// Read the catalog's view of this node (its record, services and checks) and hand it to
    /// [`LocalAgent::handle_catalog_view`].
    FullSync,
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
    settings: AgentSettings,
    rng: ChaCha8Rng,
    services: BTreeMap<String, Service>,
    checks: BTreeMap<String, LocalCheck>,
    /// Runs in flight: token → check ID.
    running: BTreeMap<u64, String>,
    next_token: u64,
    next_full_sync_ms: u64,
    /// Members of the cluster, for scaling the full sync's period.
    cluster_size: usize,
    outputs: VecDeque<AgentOutput>,
}

impl LocalAgent {
    /// An agent for `node` with Consul's default timing; its first output registers the node.
    pub fn new(node: Node) -> Self {
        Self::with_settings(0, node, AgentSettings::default())
    }

    /// An agent for `node`; its first output registers the node, and its first full sync is
    /// due at once (to remove what a previous run of this agent left in the catalog).
    pub fn with_settings(now_ms: u64, node: Node, settings: AgentSettings) -> Self {
        let mut agent = LocalAgent {
            node,
            settings,
            rng: ChaCha8Rng::seed_from_u64(settings.seed),
            services: BTreeMap::new(),
            checks: BTreeMap::new(),
            running: BTreeMap::new(),
            next_token: 1,
            next_full_sync_ms: now_ms,
            cluster_size: 1,
            outputs: VecDeque::new(),
        };
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

    /// Tells the agent how many members the cluster has; the full sync slows down in big
    /// clusters so the servers' load stays flat.
    pub fn set_cluster_size(&mut self, members: usize) {
        self.cluster_size = members.max(1);
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
                    c.check.service_id == service.id
                        && !c.check.check_id.starts_with(SERVICE_MAINTENANCE_PREFIX)
                        && !prepared.iter().any(|p| p.check.check_id == c.check.check_id)
                })
                .map(|c| c.check.check_id.clone())
                .collect();
            for id in stale {
                self.deregister_check(&id);
            }
        }
        self.services.insert(service.id.clone(), service.clone());
        // A service's maintenance check carries its name and tags; keep them current.
        let maintenance = format!("{SERVICE_MAINTENANCE_PREFIX}{}", service.id);
        if let Some(m) = self.checks.get_mut(&maintenance) {
            m.check.service_name = service.service.clone();
            m.check.service_tags = service.tags.clone();
        }
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
        let gone: Vec<String> =
            self.checks.values().filter(|c| c.check.service_id == id).map(|c| c.check.check_id.clone()).collect();
        for check_id in gone {
            self.forget_check(&check_id);
        }
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
        self.sync_check(check);
        Ok(())
    }

    /// Removes a check. Returns whether it existed.
    pub fn deregister_check(&mut self, id: &str) -> bool {
        if !self.forget_check(id) {
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
        self.set_status(now_ms, id, status, output);
        Ok(())
    }

    /// Puts the node in maintenance mode (a critical `_node_maintenance` check, which takes
    /// every service of the node out of DNS and `?passing`), or takes it out.
    pub fn set_node_maintenance(&mut self, now_ms: u64, enable: bool, reason: &str) {
        if !enable {
            self.deregister_check(NODE_MAINTENANCE_CHECK);
            return;
        }
        let notes = if reason.is_empty() {
            "Maintenance mode is enabled for this node, but no reason was provided. This is a default message."
        } else {
            reason
        };
        let spec = maintenance_check(NODE_MAINTENANCE_CHECK, "Node Maintenance Mode", notes, "");
        self.register_check(now_ms, spec).expect("a node-level check with an ID is always accepted");
    }

    /// Puts one service in maintenance mode (a critical `_service_maintenance:<id>` check), or
    /// takes it out.
    pub fn set_service_maintenance(
        &mut self,
        now_ms: u64,
        service_id: &str,
        enable: bool,
        reason: &str,
    ) -> Result<(), AgentError> {
        if !self.services.contains_key(service_id) {
            return Err(AgentError::UnknownService(service_id.to_string()));
        }
        let id = format!("{SERVICE_MAINTENANCE_PREFIX}{service_id}");
        if !enable {
            self.deregister_check(&id);
            return Ok(());
        }
        let notes = if reason.is_empty() {
            "Maintenance mode is enabled for this service, but no reason was provided. This is a default message."
        } else {
            reason
        };
        self.register_check(now_ms, maintenance_check(&id, "Service Maintenance Mode", notes, service_id))
    }

    /// Reports what a run found. A token that is no longer current (the check was removed or
    /// re-registered meanwhile) is ignored.
    pub fn handle_check_result(&mut self, now_ms: u64, token: u64, result: CheckResult) {
        let Some(id) = self.running.remove(&token) else { return };
        let Some(local) = self.checks.get_mut(&id) else { return };
        let Some(plan) = local.plan.as_mut() else { return };
        debug_assert!(plan.next_run_ms.is_none(), "a run was in flight");
        plan.next_run_ms = Some(now_ms.saturating_add(plan.interval_ms));
        let output = result.output;
        if let Some(status) = local.thresholds.observe(result.status) {
            self.set_status(now_ms, &id, status, output);
        }
    }

    /// Hands over the catalog's view of this node for a full sync; emits what repairs it.
    pub fn handle_catalog_view(&mut self, view: &CatalogView) {
        let deferred: BTreeSet<&str> =
            self.checks.values().filter(|c| c.output_sync_at_ms.is_some()).map(|c| c.check.check_id.as_str()).collect();
        let commands =
            sync::diff(&self.node, self.services.values(), self.checks.values().map(|c| &c.check), &deferred, view);
        self.outputs.extend(commands.into_iter().map(AgentOutput::Sync));
    }

    /// Fires what is due: TTL expiries, check runs, deferred output syncs, reaping of services
    /// critical for too long, and the full sync.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        let ids: Vec<String> = self.checks.keys().cloned().collect();
        for id in ids {
            self.check_timers(now_ms, &id);
        }
        if self.next_full_sync_ms <= now_ms {
            let scaled = self.settings.sync_interval_ms.saturating_mul(scale_factor(self.cluster_size));
            self.next_full_sync_ms =
                now_ms.saturating_add(self.settings.sync_interval_ms).saturating_add(self.stagger(scaled));
            self.outputs.push_back(AgentOutput::FullSync);
        }
    }

    /// The earliest timer.
    pub fn poll_timeout(&self) -> Option<u64> {
        let checks = self.checks.values().flat_map(|c| {
            [
                c.ttl_deadline_ms,
                c.plan.as_ref().and_then(|p| p.next_run_ms),
                c.output_sync_at_ms,
                c.critical_since_ms.zip(c.deregister_after_ms).map(|(since, after)| since.saturating_add(after)),
            ]
        });
        checks.flatten().chain([self.next_full_sync_ms]).min()
    }

    pub fn poll_output(&mut self) -> Option<AgentOutput> {
        self.outputs.pop_front()
    }

    fn check_timers(&mut self, now_ms: u64, id: &str) {
        let Some(local) = self.checks.get_mut(id) else { return };
        if local.ttl_deadline_ms.is_some_and(|d| d <= now_ms) {
            local.ttl_deadline_ms = None;
            if !(local.check.status == Status::Critical && local.check.output.starts_with("TTL expired")) {
                self.set_status(now_ms, id, Status::Critical, "TTL expired".to_string());
            }
        }
        let Some(local) = self.checks.get_mut(id) else { return };
        if let Some(plan) = local.plan.as_mut().filter(|p| p.next_run_ms.is_some_and(|at| at <= now_ms)) {
            plan.next_run_ms = None;
            let token = self.next_token;
            self.next_token += 1;
            self.running.insert(token, id.to_string());
            let run = CheckRun {
                check_id: id.to_string(),
                kind: plan.kind.clone(),
                timeout_ms: plan.timeout_ms,
                output_max_bytes: plan.output_max_bytes,
            };
            self.outputs.push_back(AgentOutput::Run { token, run });
        }
        if local.output_sync_at_ms.is_some_and(|at| at <= now_ms) {
            local.output_sync_at_ms = None;
            let check = local.check.clone();
            self.sync_check(check);
        }
        let local = &self.checks[id];
        let reap =
            local.critical_since_ms.zip(local.deregister_after_ms).is_some_and(|(s, a)| s.saturating_add(a) <= now_ms);
        if reap && !local.check.service_id.is_empty() {
            let service_id = local.check.service_id.clone();
            self.deregister_service(&service_id);
        }
    }

    /// A check's status and output from a run or a TTL update: a status change is synced at
    /// once; an output-only change waits for `check_update_interval` (staggered).
    fn set_status(&mut self, now_ms: u64, id: &str, status: Status, output: String) {
        let interval = self.settings.check_update_interval_ms;
        let stagger = self.stagger(interval);
        let Some(local) = self.checks.get_mut(id) else { return };
        let output = truncate(output, local.output_max_bytes);
        if local.check.status == status && local.check.output == output {
            return;
        }
        if local.check.status == status && interval > 0 {
            local.check.output = output;
            if local.output_sync_at_ms.is_none() {
                local.output_sync_at_ms = Some(now_ms.saturating_add(interval / 2).saturating_add(stagger));
            }
            return;
        }
        local.critical_since_ms = match (status, local.critical_since_ms) {
            (Status::Critical, Some(since)) => Some(since),
            (Status::Critical, None) => Some(now_ms),
            _ => None,
        };
        local.check.status = status;
        local.check.output = output;
        local.output_sync_at_ms = None;
        let check = local.check.clone();
        self.sync_check(check);
    }

    fn insert_check(&mut self, now_ms: u64, spec: CheckSpec, service: &Service) -> HealthCheck {
        let output_max_bytes = spec
            .output_max_bytes
            .unwrap_or(limits::CHECK_OUTPUT_SIZE_MAX_BYTES)
            .min(limits::CHECK_OUTPUT_SIZE_LIMIT_BYTES);
        let mut check = spec.check;
        check.node = self.node.node.clone();
        check.service_name = service.service.clone();
        check.service_tags = service.tags.clone();
        check.output = truncate(check.output, output_max_bytes);
        if spec.ttl_ms.is_some() && check.kind.is_empty() {
            check.kind = "ttl".to_string();
        }
        let plan = self.plan_of(now_ms, &check, output_max_bytes);
        let def = &check.definition;
        let deregister_after_ms = (def.deregister_critical_service_after > 0)
            .then_some(def.deregister_critical_service_after / 1_000_000)
            .filter(|_| !check.service_id.is_empty());
        let mut critical_since_ms = (check.status == Status::Critical).then_some(now_ms);
        if let Some(old) = self.checks.get(&check.check_id).filter(|_| spec.keep_status) {
            check.status = old.check.status;
            check.output = old.check.output.clone();
            critical_since_ms = old.critical_since_ms;
        }
        self.forget_check(&check.check_id);
        self.checks.insert(
            check.check_id.clone(),
            LocalCheck {
                check: check.clone(),
                ttl_ms: spec.ttl_ms,
                ttl_deadline_ms: spec.ttl_ms.map(|ttl| now_ms.saturating_add(ttl)),
                plan,
                thresholds: spec.thresholds,
                output_sync_at_ms: None,
                critical_since_ms,
                deregister_after_ms,
                output_max_bytes,
            },
        );
        check
    }

    /// How a check runs, if it is a script, HTTP or TCP check with an interval. The first run
    /// is staggered across one interval so checks registered together do not run in lockstep.
    fn plan_of(&mut self, now_ms: u64, check: &HealthCheck, output_max_bytes: usize) -> Option<RunPlan> {
        let def = &check.definition;
        let interval_ms = def.interval / 1_000_000;
        if interval_ms == 0 {
            return None;
        }
        let (kind, default_timeout_ms) = match check.kind.as_str() {
            "script" if !def.script_args.is_empty() => {
                (CheckKind::Script { args: def.script_args.clone() }, limits::CHECK_SCRIPT_TIMEOUT_DEFAULT_MS)
            }
            "http" => (
                CheckKind::Http {
                    url: def.http.clone(),
                    method: def.method.clone(),
                    header: def.header.clone(),
                    body: def.body.clone(),
                    tls_skip_verify: def.tls_skip_verify,
                    tls_server_name: def.tls_server_name.clone(),
                },
                limits::CHECK_NETWORK_TIMEOUT_DEFAULT_MS,
            ),
            "tcp" => (CheckKind::Tcp { addr: def.tcp.clone() }, limits::CHECK_NETWORK_TIMEOUT_DEFAULT_MS),
            _ => return None,
        };
        let timeout_ms = match def.timeout / 1_000_000 {
            0 => default_timeout_ms,
            t => t,
        };
        let first_run_ms = now_ms.saturating_add(self.stagger(interval_ms));
        Some(RunPlan { kind, interval_ms, timeout_ms, output_max_bytes, next_run_ms: Some(first_run_ms) })
    }

    /// Removes a check locally (no sync), dropping any run in flight. Returns whether it existed.
    fn forget_check(&mut self, id: &str) -> bool {
        self.running.retain(|_, check_id| check_id != id);
        self.checks.remove(id).is_some()
    }

    /// A random duration in `[0, max_ms)`.
    fn stagger(&mut self, max_ms: u64) -> u64 {
        if max_ms == 0 {
            0
        } else {
            self.rng.next_u64() % max_ms
        }
    }

    /// Syncs one check's record.
    fn sync_check(&mut self, check: HealthCheck) {
        self.sync(Registration {
            node: self.node.clone(),
            skip_node_update: false,
            service: None,
            checks: vec![check],
        });
    }

    fn sync(&mut self, reg: Registration) {
        self.outputs.push_back(AgentOutput::Sync(Command::Register(Box::new(reg))));
    }
}

/// Consul's scaling of periodic work with the cluster's size: 1 up to 128 members, then one
/// more for every doubling.
fn scale_factor(members: usize) -> u64 {
    const THRESHOLD: usize = 128;
    if members <= THRESHOLD {
        return 1;
    }
    let doublings = (members as f64 / THRESHOLD as f64).log2().ceil() as u64;
    doublings + 1
}

fn maintenance_check(id: &str, name: &str, notes: &str, service_id: &str) -> CheckSpec {
    CheckSpec {
        check: HealthCheck {
            check_id: id.to_string(),
            name: name.to_string(),
            notes: notes.to_string(),
            status: Status::Critical,
            service_id: service_id.to_string(),
            kind: "maintenance".to_string(),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn truncate(mut output: String, max_bytes: usize) -> String {
    if output.len() > max_bytes {
        let mut end = max_bytes;
        while !output.is_char_boundary(end) {
            end -= 1;
        }
        output.truncate(end);
    }
    output
}

#[cfg(test)]
mod tests;
