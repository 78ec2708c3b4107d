//! The catalog as one serialisable value, for Raft snapshots and `/v1/snapshot`.

use serde::{Deserialize, Serialize};

use super::{name_key, Catalog, HealthCheck, KvEntry, Node, Service, Session, TableIndexes, Tombstone};

/// Everything replicated, in a form serde can write. Derived indexes are not stored; they
/// are rebuilt by [`Catalog::restore`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogSnapshot {
    pub last_index: u64,
    pub nodes: Vec<Node>,
    /// (node name, service)
    pub services: Vec<(String, Service)>,
    pub checks: Vec<HealthCheck>,
    pub kv: Vec<KvEntry>,
    pub tombstones: Vec<(String, Tombstone)>,
    pub lock_delays: Vec<(String, u64)>,
    pub sessions: Vec<Session>,
    pub tables: TableIndexes,
    pub service_index: Vec<(String, u64)>,
    pub node_index: Vec<(String, u64)>,
}

impl Catalog {
    pub fn snapshot(&self) -> CatalogSnapshot {
        CatalogSnapshot {
            last_index: self.last_index,
            nodes: self.nodes.values().cloned().collect(),
            services: self.services.iter().map(|((nk, _), s)| (self.nodes[nk].node.clone(), s.clone())).collect(),
            checks: self.checks.values().cloned().collect(),
            kv: self.kv.values().cloned().collect(),
            tombstones: self.tombstones.iter().map(|(k, t)| (k.clone(), *t)).collect(),
            lock_delays: self.lock_delays.iter().map(|(k, d)| (k.clone(), *d)).collect(),
            sessions: self.sessions.values().cloned().collect(),
            tables: self.tables,
            service_index: self.service_index.iter().map(|(k, i)| (k.clone(), *i)).collect(),
            node_index: self.node_index.iter().map(|(k, i)| (k.clone(), *i)).collect(),
        }
    }

    /// Rebuilds a catalog from a snapshot, checking that it is self-consistent.
    pub fn restore(snap: CatalogSnapshot) -> Result<Catalog, String> {
        let mut c = Catalog { last_index: snap.last_index, tables: snap.tables, ..Catalog::default() };
        for node in snap.nodes {
            let nk = name_key(&node.node);
            if !node.id.is_empty() {
                c.node_ids.insert(node.id.to_ascii_lowercase(), nk.clone());
            }
            c.nodes.insert(nk, node);
        }
        for (node, svc) in snap.services {
            let key = (name_key(&node), svc.id.clone());
            c.services_by_name.entry(name_key(&svc.service)).or_default().insert(key.clone());
            c.services.insert(key, svc);
        }
        for check in snap.checks {
            c.checks.insert((name_key(&check.node), check.check_id.clone()), check);
        }
        for session in snap.sessions {
            c.sessions_by_node.entry(name_key(&session.node)).or_default().insert(session.id.clone());
            c.sessions.insert(session.id.clone(), session);
        }
        for entry in snap.kv {
            if let Some(sid) = &entry.session {
                c.session_locks.entry(sid.clone()).or_default().insert(entry.key.clone());
            }
            c.kv.insert(entry.key.clone(), entry);
        }
        c.tombstones = snap.tombstones.into_iter().collect();
        c.lock_delays = snap.lock_delays.into_iter().collect();
        c.service_index = snap.service_index.into_iter().collect();
        c.node_index = snap.node_index.into_iter().collect();
        c.verify().map_err(|v| format!("snapshot is not self-consistent: {v}"))?;
        Ok(c)
    }
}
