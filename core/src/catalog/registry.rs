//! Nodes, services and checks: registration and deregistration.

use super::{
    name_key, ApplyError, Catalog, Deregistration, HealthCheck, Node, Registration, Response, Service, Status,
};
use crate::limits;
use crate::watch::WatchKey;

impl Catalog {
    /// Upserts a node, a service and checks, all or nothing (Consul's `EnsureRegistration`).
    pub(super) fn apply_register(&mut self, index: u64, now_ms: u64, reg: &Registration) -> Response {
        if let Err(e) = self.validate_registration(reg) {
            return Response::Error(e);
        }
        let nk = name_key(&reg.node.node);
        if !reg.skip_node_update || !self.nodes.contains_key(&nk) {
            self.ensure_node(index, &reg.node);
        }
        if let Some(service) = &reg.service {
            self.ensure_service(index, &nk, service);
        }
        for check in &reg.checks {
            self.ensure_check(index, now_ms, &nk, check);
        }
        Response::Done
    }

    fn validate_registration(&self, reg: &Registration) -> Result<(), ApplyError> {
        let node = &reg.node;
        if node.node.is_empty() {
            return Err(ApplyError::Invalid("Must provide node".into()));
        }
        let nk = name_key(&node.node);
        let node_exists = self.nodes.contains_key(&nk);
        if node.address.is_empty() && (!node_exists || !reg.skip_node_update) {
            return Err(ApplyError::Invalid("Must provide address if SkipNodeUpdate is not set".into()));
        }
        if !node.id.is_empty() {
            if let Some(owner) = self.node_ids.get(&node.id.to_ascii_lowercase()) {
                if owner != &nk {
                    return Err(ApplyError::Invalid(format!(
                        "Failed inserting node: node ID {:?} for node {:?} aliases existing node {:?}",
                        node.id, node.node, self.nodes[owner].node
                    )));
                }
            }
        }
        validate_meta(&node.meta)?;
        if let Some(svc) = &reg.service {
            if svc.service.is_empty() {
                return Err(ApplyError::Invalid("Must provide service name".into()));
            }
            if svc.id.is_empty() {
                return Err(ApplyError::Invalid("Must provide service ID".into()));
            }
            validate_meta(&svc.meta)?;
        }
        if reg.checks.len() > limits::REGISTRATION_CHECKS_MAX {
            return Err(ApplyError::Invalid("Too many checks".into()));
        }
        for check in &reg.checks {
            if check.check_id.is_empty() {
                return Err(ApplyError::Invalid("Must provide check ID".into()));
            }
            if !check.node.is_empty() && name_key(&check.node) != nk {
                return Err(ApplyError::Invalid("Check node does not match node".into()));
            }
            if !check.service_id.is_empty() {
                let in_request = reg.service.as_ref().is_some_and(|s| s.id == check.service_id);
                if !in_request && !self.services.contains_key(&(nk.clone(), check.service_id.clone())) {
                    return Err(ApplyError::MissingService);
                }
            }
        }
        Ok(())
    }

    fn ensure_node(&mut self, index: u64, node: &Node) {
        let nk = name_key(&node.node);
        let mut new = node.clone();
        let existing = self.nodes.get(&nk);
        if new.id.is_empty() {
            new.id = existing.map(|n| n.id.clone()).unwrap_or_default();
        }
        new.create_index = existing.map_or(index, |n| n.create_index);
        new.modify_index = existing.map_or(index, |n| n.modify_index);
        if existing == Some(&new) {
            return;
        }
        if let Some(old) = existing {
            if !old.id.is_empty() {
                self.node_ids.remove(&old.id.to_ascii_lowercase());
            }
        }
        if !new.id.is_empty() {
            self.node_ids.insert(new.id.to_ascii_lowercase(), nk.clone());
        }
        new.modify_index = index;
        self.nodes.insert(nk.clone(), new);
        self.tables.nodes = index;
        self.touch(WatchKey::Nodes);
        self.node_changed(index, &nk);
        // Every service answer on this node shows the node's address and meta.
        for name in self.service_names_on(&nk) {
            self.service_changed(index, &name);
        }
    }

    fn ensure_service(&mut self, index: u64, nk: &str, service: &Service) {
        let key = (nk.to_string(), service.id.clone());
        let existing = self.services.get(&key);
        let mut new = service.clone();
        new.create_index = existing.map_or(index, |s| s.create_index);
        new.modify_index = existing.map_or(index, |s| s.modify_index);
        if existing == Some(&new) {
            return;
        }
        let old_name = existing.map(|s| name_key(&s.service));
        new.modify_index = index;
        let name = name_key(&new.service);
        if let Some(old) = &old_name {
            if old != &name {
                self.unindex_service(old, &key);
                self.service_changed(index, old);
            }
        }
        self.services_by_name.entry(name.clone()).or_default().insert(key.clone());
        let (display_name, tags) = (new.service.clone(), new.tags.clone());
        self.services.insert(key, new);
        // Service checks show the service's name and tags.
        let check_keys: Vec<_> = self
            .checks
            .range((nk.to_string(), String::new())..)
            .take_while(|((n, _), _)| n == nk)
            .filter(|(_, c)| c.service_id == service.id)
            .map(|(k, _)| k.clone())
            .collect();
        for ck in check_keys {
            let c = self.checks.get_mut(&ck).expect("listed above");
            if c.service_name != display_name || c.service_tags != tags {
                c.service_name = display_name.clone();
                c.service_tags = tags.clone();
                c.modify_index = index;
                self.tables.checks = index;
                self.touch(WatchKey::Checks);
            }
        }
        self.tables.services = index;
        self.touch(WatchKey::Services);
        self.node_changed(index, nk);
        self.service_changed(index, &name);
    }

    fn ensure_check(&mut self, index: u64, now_ms: u64, nk: &str, check: &HealthCheck) {
        let key = (nk.to_string(), check.check_id.clone());
        let mut new = check.clone();
        new.node = self.nodes[nk].node.clone();
        if !new.service_id.is_empty() {
            let svc = &self.services[&(nk.to_string(), new.service_id.clone())];
            new.service_name = svc.service.clone();
            new.service_tags = svc.tags.clone();
        } else {
            new.service_name.clear();
            new.service_tags.clear();
        }
        if new.output.len() > limits::CHECK_OUTPUT_SIZE_MAX_BYTES {
            let mut end = limits::CHECK_OUTPUT_SIZE_MAX_BYTES;
            while !new.output.is_char_boundary(end) {
                end -= 1;
            }
            new.output.truncate(end);
        }
        let existing = self.checks.get(&key);
        new.create_index = existing.map_or(index, |c| c.create_index);
        new.modify_index = existing.map_or(index, |c| c.modify_index);
        if existing == Some(&new) {
            return;
        }
        let old_service = existing.map(|c| c.service_id.clone());
        new.modify_index = index;
        let critical = new.status == Status::Critical;
        let service_id = new.service_id.clone();
        self.checks.insert(key, new);
        self.tables.checks = index;
        self.touch(WatchKey::Checks);
        self.node_changed(index, nk);
        self.check_scope_changed(index, nk, &service_id);
        if let Some(old) = old_service.filter(|o| o != &service_id) {
            self.check_scope_changed(index, nk, &old);
        }
        if critical {
            self.invalidate_sessions_of_check(index, now_ms, nk, &check.check_id);
        }
    }

    /// Removes a node, a service, or a check (Consul's `Deregister`). Missing targets are a
    /// no-op, as in Consul.
    pub(super) fn apply_deregister(&mut self, index: u64, now_ms: u64, dereg: &Deregistration) -> Response {
        let nk = name_key(&dereg.node);
        if !self.nodes.contains_key(&nk) {
            return Response::Done;
        }
        match (&dereg.service_id, &dereg.check_id) {
            (Some(service_id), _) => self.delete_service(index, now_ms, &nk, service_id),
            (None, Some(check_id)) => self.delete_check(index, now_ms, &nk, check_id),
            (None, None) => self.delete_node(index, now_ms, &nk),
        }
        Response::Done
    }

    fn delete_node(&mut self, index: u64, now_ms: u64, nk: &str) {
        let sessions: Vec<String> =
            self.sessions_by_node.get(nk).map(|s| s.iter().cloned().collect()).unwrap_or_default();
        for sid in sessions {
            self.invalidate_session(index, now_ms, &sid);
        }
        let service_ids: Vec<String> = self
            .services
            .range((nk.to_string(), String::new())..)
            .take_while(|((n, _), _)| n == nk)
            .map(|((_, id), _)| id.clone())
            .collect();
        for id in service_ids {
            self.delete_service(index, now_ms, nk, &id);
        }
        let check_ids: Vec<String> = self.node_check_ids(nk);
        for id in check_ids {
            self.delete_check(index, now_ms, nk, &id);
        }
        let node = self.nodes.remove(nk).expect("caller checked");
        if !node.id.is_empty() {
            self.node_ids.remove(&node.id.to_ascii_lowercase());
        }
        self.tables.nodes = index;
        self.touch(WatchKey::Nodes);
        self.node_changed(index, nk);
    }

    fn delete_service(&mut self, index: u64, now_ms: u64, nk: &str, service_id: &str) {
        let key = (nk.to_string(), service_id.to_string());
        let Some(svc) = self.services.get(&key) else {
            return;
        };
        let name = name_key(&svc.service);
        let check_ids: Vec<String> = self
            .checks
            .range((nk.to_string(), String::new())..)
            .take_while(|((n, _), _)| n == nk)
            .filter(|(_, c)| c.service_id == service_id)
            .map(|((_, id), _)| id.clone())
            .collect();
        for id in check_ids {
            self.delete_check(index, now_ms, nk, &id);
        }
        self.services.remove(&key);
        self.unindex_service(&name, &key);
        self.tables.services = index;
        self.touch(WatchKey::Services);
        self.node_changed(index, nk);
        self.service_changed(index, &name);
    }

    fn delete_check(&mut self, index: u64, now_ms: u64, nk: &str, check_id: &str) {
        let Some(check) = self.checks.remove(&(nk.to_string(), check_id.to_string())) else {
            return;
        };
        self.tables.checks = index;
        self.touch(WatchKey::Checks);
        self.node_changed(index, nk);
        self.check_scope_changed(index, nk, &check.service_id);
        self.invalidate_sessions_of_check(index, now_ms, nk, check_id);
    }

    fn unindex_service(&mut self, name: &str, key: &(String, String)) {
        if let Some(set) = self.services_by_name.get_mut(name) {
            set.remove(key);
            if set.is_empty() {
                self.services_by_name.remove(name);
            }
        }
    }

    /// A check of `service_id` (or a node check, when empty) changed: wake the answers it shows in.
    fn check_scope_changed(&mut self, index: u64, nk: &str, service_id: &str) {
        if service_id.is_empty() {
            for name in self.service_names_on(nk) {
                self.service_changed(index, &name);
            }
        } else if let Some(svc) = self.services.get(&(nk.to_string(), service_id.to_string())) {
            let name = name_key(&svc.service);
            self.service_changed(index, &name);
        }
    }

    fn node_changed(&mut self, index: u64, nk: &str) {
        self.node_index.insert(nk.to_string(), index);
        self.touch(WatchKey::Node(nk.to_string()));
    }

    fn service_changed(&mut self, index: u64, name: &str) {
        self.service_index.insert(name.to_string(), index);
        self.touch(WatchKey::Service(name.to_string()));
    }

    /// The distinct service names (lookup keys) registered on a node.
    pub(super) fn service_names_on(&self, nk: &str) -> Vec<String> {
        let mut names: Vec<String> = self
            .services
            .range((nk.to_string(), String::new())..)
            .take_while(|((n, _), _)| n == nk)
            .map(|(_, s)| name_key(&s.service))
            .collect();
        names.sort();
        names.dedup();
        names
    }

    pub(super) fn node_check_ids(&self, nk: &str) -> Vec<String> {
        self.checks
            .range((nk.to_string(), String::new())..)
            .take_while(|((n, _), _)| n == nk)
            .map(|((_, id), _)| id.clone())
            .collect()
    }
}

pub(super) fn validate_meta(meta: &std::collections::BTreeMap<String, String>) -> Result<(), ApplyError> {
    if meta.len() > limits::META_PAIRS_MAX {
        return Err(ApplyError::Invalid(format!(
            "Node metadata cannot contain more than {} key/value pairs",
            limits::META_PAIRS_MAX
        )));
    }
    for (k, v) in meta {
        if k.is_empty() {
            return Err(ApplyError::Invalid("Key cannot be blank".into()));
        }
        if k.len() > limits::META_KEY_SIZE_MAX_BYTES {
            return Err(ApplyError::Invalid(format!(
                "Key is too long (limit: {} characters)",
                limits::META_KEY_SIZE_MAX_BYTES
            )));
        }
        if v.len() > limits::META_VALUE_SIZE_MAX_BYTES {
            return Err(ApplyError::Invalid(format!(
                "Value is too long (limit: {} characters)",
                limits::META_VALUE_SIZE_MAX_BYTES
            )));
        }
    }
    Ok(())
}
