//! KV verbs: set, CAS, lock/unlock with lock-delay, deletes with tombstones.

use std::collections::BTreeSet;

use super::{ApplyError, Catalog, KvEntry, KvOp, KvVerb, Response, Tombstone};
use crate::limits;
use crate::watch::WatchKey;

/// A key's state before a transaction first changed it: entry, tombstone, lock-delay end.
type SavedKey = (String, Option<KvEntry>, Option<Tombstone>, Option<u64>);

/// The saved state of KV keys a transaction changed, to undo them if it rolls back.
#[derive(Clone, Debug, Default)]
pub(super) struct KvJournal {
    saved: BTreeSet<String>,
    prior: Vec<SavedKey>,
    tables_kv: u64,
    touched_len: usize,
}

impl Catalog {
    /// The plain KV endpoint: every verb answers a bool, except an unknown session.
    pub(super) fn apply_kv(&mut self, index: u64, now_ms: u64, op: &KvOp) -> Response {
        if let Err(e) = validate_kv_op(op) {
            return Response::Error(e);
        }
        match op.verb {
            KvVerb::Set => {
                self.kv_set(index, op);
                Response::Bool(true)
            }
            KvVerb::Cas => Response::Bool(self.kv_cas(index, op).is_some()),
            KvVerb::Lock => match self.kv_lock(index, now_ms, op) {
                Ok(entry) => Response::Bool(entry.is_some()),
                Err(e) => Response::Error(e),
            },
            KvVerb::Unlock => Response::Bool(self.kv_unlock(index, op).is_some()),
            KvVerb::Delete => {
                self.kv_remove(index, now_ms, &op.key);
                Response::Bool(true)
            }
            KvVerb::DeleteCas => Response::Bool(self.kv_delete_cas(index, now_ms, &op.key, op.index)),
            KvVerb::DeleteTree => {
                self.kv_delete_tree(index, now_ms, &op.key);
                Response::Bool(true)
            }
            KvVerb::Get
            | KvVerb::GetOrEmpty
            | KvVerb::GetTree
            | KvVerb::CheckIndex
            | KvVerb::CheckSession
            | KvVerb::CheckNotExists => Response::Error(ApplyError::Invalid(format!("{:?} is not a write", op.verb))),
        }
    }

    /// Writes `op`'s value and flags, keeping any lock. Returns the stored entry.
    pub(super) fn kv_set(&mut self, index: u64, op: &KvOp) -> KvEntry {
        let (create_index, lock_index, session) = match self.kv.get(&op.key) {
            Some(e) => (e.create_index, e.lock_index, e.session.clone()),
            None => (index, 0, None),
        };
        self.kv_store(index, op, create_index, lock_index, session)
    }

    /// Sets only if absent (`index == 0`) or unchanged since `index`.
    pub(super) fn kv_cas(&mut self, index: u64, op: &KvOp) -> Option<KvEntry> {
        let current = self.kv.get(&op.key).map(|e| e.modify_index);
        let matches = match (op.index, current) {
            (0, None) => true,
            (cas, Some(modify)) => cas != 0 && cas == modify,
            (_, None) => false,
        };
        matches.then(|| self.kv_set(index, op))
    }

    /// Acquires the key's lock for `op.session`. `Ok(None)`: held by another session, or the
    /// key is in lock-delay.
    pub(super) fn kv_lock(&mut self, index: u64, now_ms: u64, op: &KvOp) -> Result<Option<KvEntry>, ApplyError> {
        if op.session.is_empty() {
            return Err(ApplyError::Invalid("missing session".into()));
        }
        if !self.sessions.contains_key(&op.session) {
            return Err(ApplyError::InvalidSession(op.session.clone()));
        }
        let (create_index, lock_index) = match self.kv.get(&op.key) {
            Some(e) if e.session.as_deref() == Some(op.session.as_str()) => (e.create_index, e.lock_index),
            Some(e) if e.session.is_some() => return Ok(None),
            Some(e) => {
                if self.in_lock_delay(&op.key, now_ms) && !self.planted.ignore_lock_delay {
                    return Ok(None);
                }
                (e.create_index, e.lock_index + 1)
            }
            None => {
                if self.in_lock_delay(&op.key, now_ms) && !self.planted.ignore_lock_delay {
                    return Ok(None);
                }
                (index, 1)
            }
        };
        Ok(Some(self.kv_store(index, op, create_index, lock_index, Some(op.session.clone()))))
    }

    /// Releases the key's lock if `op.session` holds it, writing the value.
    pub(super) fn kv_unlock(&mut self, index: u64, op: &KvOp) -> Option<KvEntry> {
        let e = self.kv.get(&op.key)?;
        if op.session.is_empty() || e.session.as_deref() != Some(op.session.as_str()) {
            return None;
        }
        let (create_index, lock_index) = (e.create_index, e.lock_index);
        Some(self.kv_store(index, op, create_index, lock_index, None))
    }

    /// Deletes if absent-or-unchanged since `cas` (Consul: a missing key counts as deleted).
    pub(super) fn kv_delete_cas(&mut self, index: u64, now_ms: u64, key: &str, cas: u64) -> bool {
        match self.kv.get(key) {
            None => true,
            Some(e) if e.modify_index != cas => false,
            Some(_) => {
                self.kv_remove(index, now_ms, key);
                true
            }
        }
    }

    pub(super) fn kv_delete_tree(&mut self, index: u64, now_ms: u64, prefix: &str) {
        let keys: Vec<String> = self
            .kv
            .range(prefix.to_string()..)
            .map(|(k, _)| k)
            .take_while(|k| k.starts_with(prefix))
            .cloned()
            .collect();
        for key in keys {
            self.kv_remove(index, now_ms, &key);
        }
    }

    pub(super) fn in_lock_delay(&self, key: &str, now_ms: u64) -> bool {
        self.lock_delays.get(key).is_some_and(|until| now_ms < *until)
    }

    /// Stores an entry built from `op`; a write that changes nothing keeps the old indexes
    /// and wakes nobody (as Consul does).
    fn kv_store(
        &mut self,
        index: u64,
        op: &KvOp,
        create_index: u64,
        lock_index: u64,
        session: Option<String>,
    ) -> KvEntry {
        let mut entry = KvEntry {
            lock_index,
            key: op.key.clone(),
            flags: op.flags,
            value: op.value.clone(),
            session,
            create_index,
            modify_index: index,
        };
        if let Some(old) = self.kv.get(&op.key) {
            let unchanged = KvEntry { modify_index: old.modify_index, ..entry.clone() };
            if &unchanged == old {
                return unchanged;
            }
        }
        self.journal_save(&op.key);
        let old_session = self.kv.get(&op.key).and_then(|e| e.session.clone());
        if old_session != entry.session {
            if let Some(sid) = &old_session {
                self.unlink_lock(sid, &op.key);
            }
            if let Some(sid) = &entry.session {
                self.session_locks.entry(sid.clone()).or_default().insert(op.key.clone());
            }
        }
        entry.modify_index = index;
        self.kv.insert(op.key.clone(), entry.clone());
        self.tables.kv = index;
        self.touch(WatchKey::Kv(op.key.clone()));
        entry
    }

    /// Removes a key, leaving a tombstone. A missing key is a no-op.
    pub(super) fn kv_remove(&mut self, index: u64, now_ms: u64, key: &str) {
        if !self.kv.contains_key(key) {
            return;
        }
        self.journal_save(key);
        let old = self.kv.remove(key).expect("checked above");
        if let Some(sid) = &old.session {
            self.unlink_lock(sid, key);
        }
        self.tombstones.insert(key.to_string(), Tombstone { index, at_ms: now_ms });
        self.tables.kv = index;
        self.touch(WatchKey::Kv(key.to_string()));
    }

    fn unlink_lock(&mut self, sid: &str, key: &str) {
        if let Some(keys) = self.session_locks.get_mut(sid) {
            keys.remove(key);
            if keys.is_empty() {
                self.session_locks.remove(sid);
            }
        }
    }

    /// Releases (or deletes) the keys a session holds and starts their lock-delay.
    pub(super) fn release_session_locks(
        &mut self,
        index: u64,
        now_ms: u64,
        sid: &str,
        delete: bool,
        lock_delay_ms: u64,
    ) {
        let keys: Vec<String> = self.session_locks.get(sid).map(|k| k.iter().cloned().collect()).unwrap_or_default();
        for key in keys {
            if delete {
                self.kv_remove(index, now_ms, &key);
            } else {
                let e = self.kv.get(&key).expect("session_locks points at live keys").clone();
                let op = KvOp {
                    verb: KvVerb::Set,
                    key: key.clone(),
                    value: e.value,
                    flags: e.flags,
                    index: 0,
                    session: String::new(),
                };
                self.kv_store(index, &op, e.create_index, e.lock_index, None);
            }
            if lock_delay_ms > 0 {
                self.journal_save(&key);
                self.lock_delays.insert(key, now_ms.saturating_add(lock_delay_ms));
            }
        }
    }

    /// Starts recording KV changes so that [`Catalog::journal_rollback`] can undo them.
    pub(super) fn journal_begin(&mut self) {
        assert!(self.journal.is_none(), "nested KV journal");
        self.journal =
            Some(KvJournal { tables_kv: self.tables.kv, touched_len: self.touched.len(), ..Default::default() });
    }

    pub(super) fn journal_commit(&mut self) {
        self.journal.take().expect("journal_commit without journal_begin");
    }

    /// Restores every key the journal saw to its state at `journal_begin`.
    pub(super) fn journal_rollback(&mut self) {
        let journal = self.journal.take().expect("journal_rollback without journal_begin");
        for (key, entry, tombstone, delay) in journal.prior.into_iter().rev() {
            if let Some(sid) = self.kv.get(&key).and_then(|e| e.session.clone()) {
                self.unlink_lock(&sid, &key);
            }
            match entry {
                Some(e) => {
                    if let Some(sid) = &e.session {
                        self.session_locks.entry(sid.clone()).or_default().insert(key.clone());
                    }
                    self.kv.insert(key.clone(), e);
                }
                None => {
                    self.kv.remove(&key);
                }
            }
            match tombstone {
                Some(t) => self.tombstones.insert(key.clone(), t),
                None => self.tombstones.remove(&key),
            };
            match delay {
                Some(d) => self.lock_delays.insert(key, d),
                None => self.lock_delays.remove(&key),
            };
        }
        self.tables.kv = journal.tables_kv;
        self.touched.truncate(journal.touched_len);
    }

    fn journal_save(&mut self, key: &str) {
        let Some(journal) = self.journal.as_mut() else {
            return;
        };
        if journal.saved.insert(key.to_string()) {
            journal.prior.push((
                key.to_string(),
                self.kv.get(key).cloned(),
                self.tombstones.get(key).copied(),
                self.lock_delays.get(key).copied(),
            ));
        }
    }
}

/// Rejects operations no client should send, before anything changes.
pub(super) fn validate_kv_op(op: &KvOp) -> Result<(), ApplyError> {
    if op.key.len() > limits::KV_KEY_SIZE_MAX_BYTES {
        return Err(ApplyError::Invalid(format!(
            "Key is too long ({} > {} bytes)",
            op.key.len(),
            limits::KV_KEY_SIZE_MAX_BYTES
        )));
    }
    if op.value.len() > limits::KV_VALUE_SIZE_MAX_BYTES {
        return Err(ApplyError::Invalid(format!(
            "Value for key {:?} is too large ({} > {} bytes)",
            op.key,
            op.value.len(),
            limits::KV_VALUE_SIZE_MAX_BYTES
        )));
    }
    if op.key.is_empty() && !matches!(op.verb, KvVerb::DeleteTree | KvVerb::GetTree) {
        return Err(ApplyError::Invalid("Missing key name".to_string()));
    }
    Ok(())
}
