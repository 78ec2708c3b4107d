//! The services and checks of the config files (`-config-file`, `-config-dir`): registered at
//! start, and replaced on `legate reload` or SIGHUP. What was registered through the HTTP API
//! is left alone; what a file no longer defines is removed; a check a file still defines keeps
//! its status, so a reload never makes healthy instances flap.

use std::collections::BTreeSet;

use legate_core::agent::CheckSpec;
use legate_core::catalog::Service;

use crate::config::{self, AgentConfig};
use crate::http::AgentLocal;

/// What the config files registered, by ID.
#[derive(Debug, Default)]
pub struct ConfigOwned {
    services: BTreeSet<String>,
    checks: BTreeSet<String>,
}

/// The services and node-level checks of `cfg`, validated.
struct Definitions {
    services: Vec<(Service, Vec<CheckSpec>)>,
    checks: Vec<CheckSpec>,
}

fn definitions(cfg: &AgentConfig) -> Result<Definitions, String> {
    let policy = cfg.check_policy(true);
    let spec_of = |d: crate::defs::CheckDef| d.into_spec(policy, false).map(|s| CheckSpec { keep_status: true, ..s });
    let mut services = Vec::new();
    for def in cfg.services.clone() {
        let (mut service, check_defs) = def.into_parts()?;
        if service.service.is_empty() {
            return Err("service without a name in config".into());
        }
        if service.id.is_empty() {
            service.id = service.service.clone();
        }
        let name = service.service.clone();
        let checks = check_defs
            .into_iter()
            .map(spec_of)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("service {name:?}: check: {e}"))?;
        services.push((service, checks));
    }
    let checks = cfg.checks.clone().into_iter().map(spec_of).collect::<Result<Vec<_>, _>>()?;
    Ok(Definitions { services, checks })
}

/// Registers `cfg`'s services and checks, removing those an earlier config registered and
/// this one does not. Nothing changes unless every definition is valid.
pub async fn apply(
    local: &AgentLocal,
    cfg: &AgentConfig,
    owned: &futures::lock::Mutex<ConfigOwned>,
) -> Result<(), String> {
    let defs = definitions(cfg)?;
    let mut owned = owned.lock().await;
    let new_services: BTreeSet<String> = defs.services.iter().map(|(s, _)| s.id.clone()).collect();
    for gone in owned.services.difference(&new_services) {
        let gone = gone.clone();
        local.change(|a, _| a.deregister_service(&gone)).await;
    }
    let mut new_checks = BTreeSet::new();
    for spec in &defs.checks {
        new_checks.insert(if spec.check.check_id.is_empty() {
            spec.check.name.clone()
        } else {
            spec.check.check_id.clone()
        });
    }
    for gone in owned.checks.difference(&new_checks) {
        let gone = gone.clone();
        local.change(|a, _| a.deregister_check(&gone)).await;
    }
    for (service, checks) in defs.services {
        let name = service.service.clone();
        local
            .change(|a, now| a.register_service(now, service, checks, true))
            .await
            .map_err(|e| format!("service {name:?} from config: {e}"))?;
    }
    for spec in defs.checks {
        local.change(|a, now| a.register_check(now, spec)).await.map_err(|e| format!("check from config: {e}"))?;
    }
    *owned = ConfigOwned { services: new_services, checks: new_checks };
    Ok(())
}

/// Reads the config files again (with the agent's original flags) and applies their
/// services and checks. Other settings need a restart; a change to one is logged.
pub async fn reload(
    local: &AgentLocal,
    running: &AgentConfig,
    owned: &futures::lock::Mutex<ConfigOwned>,
) -> Result<(), String> {
    let fresh = config::parse_agent_args(&running.args, &running.hostname)?
        .ok_or("the agent's arguments ask for help; nothing to reload")?;
    if fresh.node_name != running.node_name
        || fresh.datacenter != running.datacenter
        || fresh.http_port != running.http_port
        || fresh.dns_port != running.dns_port
        || fresh.server != running.server
        || fresh.data_dir != running.data_dir
        || fresh.dns != running.dns
    {
        tracing::warn!("reload: settings other than services and checks changed; they take effect at the next restart");
    }
    apply(local, &fresh, owned).await?;
    tracing::info!(services = fresh.services.len(), checks = fresh.checks.len(), "reloaded the config files");
    Ok(())
}
