//! The catalog as one serialisable value, for Raft snapshots and `/v1/snapshot`.
//!
//! `/v1/snapshot`'s archive is [`ARCHIVE_MAGIC`], the body's length (8 bytes, big-endian), its
//! CRC-32C (4 bytes, big-endian) and the body: the snapshot in MessagePack
//! ([`crate::storage::codec`]). A restore checks all of it, then that the catalog is
//! self-consistent, before anything is proposed.

use serde::{Deserialize, Serialize};

use super::{
    name_key, ApplyError, Catalog, HealthCheck, KvEntry, Node, PreparedQuery, Response, Service, Session, TableIndexes,
    Tombstone,
};

/// The first bytes of a `/v1/snapshot` archive.
pub const ARCHIVE_MAGIC: &[u8; 16] = b"LEGATE-SNAPSHOT1";

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
    /// Absent from archives written before prepared queries existed.
    #[serde(default)]
    pub prepared_queries: Vec<PreparedQuery>,
}

impl CatalogSnapshot {
    /// The `/v1/snapshot` archive of this snapshot.
    pub fn to_archive(&self) -> Result<Vec<u8>, String> {
        let body = crate::storage::codec::encode(self).map_err(|e| e.to_string())?;
        let mut out = Vec::with_capacity(ARCHIVE_MAGIC.len() + 12 + body.len());
        out.extend_from_slice(ARCHIVE_MAGIC);
        out.extend_from_slice(&(body.len() as u64).to_be_bytes());
        out.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// Reads an archive written by [`CatalogSnapshot::to_archive`], checking its framing,
    /// checksum and contents.
    pub fn from_archive(bytes: &[u8]) -> Result<CatalogSnapshot, String> {
        let head = ARCHIVE_MAGIC.len() + 12;
        if bytes.len() < head || &bytes[..ARCHIVE_MAGIC.len()] != ARCHIVE_MAGIC {
            return Err("not a Legate snapshot archive (bad magic)".into());
        }
        let field = |at: usize, n: usize| bytes[at..at + n].iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
        let len = field(ARCHIVE_MAGIC.len(), 8);
        let crc = field(ARCHIVE_MAGIC.len() + 8, 4) as u32;
        let body = &bytes[head..];
        if body.len() as u64 != len {
            return Err(format!(
                "snapshot archive is truncated or padded: {} body bytes, header says {len}",
                body.len()
            ));
        }
        if crc32c::crc32c(body) != crc {
            return Err("snapshot archive checksum mismatch: the file is corrupt".into());
        }
        let snap: CatalogSnapshot =
            crate::storage::codec::decode(body).map_err(|e| format!("snapshot archive: {e}"))?;
        Catalog::restore(snap.clone())?;
        Ok(snap)
    }

    /// Gives every record the index `index` (a restore writes everything at once).
    fn reindex(&mut self, index: u64) {
        self.last_index = index;
        for n in &mut self.nodes {
            (n.create_index, n.modify_index) = (index, index);
        }
        for (_, s) in &mut self.services {
            (s.create_index, s.modify_index) = (index, index);
        }
        for c in &mut self.checks {
            (c.create_index, c.modify_index) = (index, index);
        }
        for e in &mut self.kv {
            (e.create_index, e.modify_index) = (index, index);
        }
        for s in &mut self.sessions {
            (s.create_index, s.modify_index) = (index, index);
        }
        for (_, t) in &mut self.tombstones {
            t.index = index;
        }
        for q in &mut self.prepared_queries {
            (q.create_index, q.modify_index) = (index, index);
        }
        self.tables = TableIndexes {
            nodes: index,
            services: index,
            checks: index,
            kv: index,
            sessions: index,
            prepared_queries: index,
        };
        for (_, i) in self.service_index.iter_mut().chain(self.node_index.iter_mut()) {
            *i = index;
        }
    }
}

impl Catalog {
    /// Replaces this catalog with `snap` at Raft index `index`; a snapshot that is not
    /// self-consistent changes nothing.
    pub(super) fn apply_restore(&mut self, index: u64, snap: &CatalogSnapshot) -> Response {
        let mut snap = snap.clone();
        snap.reindex(index);
        match Catalog::restore(snap) {
            Ok(mut restored) => {
                restored.planted = self.planted;
                *self = restored;
                Response::Done
            }
            Err(e) => Response::Error(ApplyError::Invalid(e)),
        }
    }

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
            prepared_queries: self.prepared_queries.values().cloned().collect(),
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
        c.restore_prepared_queries(snap.prepared_queries)
            .map_err(|v| format!("snapshot is not self-consistent: {v}"))?;
        c.verify().map_err(|v| format!("snapshot is not self-consistent: {v}"))?;
        Ok(c)
    }
}
