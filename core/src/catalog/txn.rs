//! Transactions: KV operations applied all or nothing, each failure reported by op index.

use super::kv::validate_kv_op;
use super::{Catalog, KvEntry, KvOp, KvVerb, Response, TxnError, TxnOp, TxnOutcome, TxnResult};
use crate::limits;

impl Catalog {
    /// Runs every op (as Consul does, to report every failure), then keeps the changes only if
    /// none failed.
    pub(super) fn apply_txn(&mut self, index: u64, now_ms: u64, ops: &[TxnOp]) -> Response {
        if ops.len() > limits::TXN_OPS_MAX {
            return Response::Txn(TxnOutcome::RolledBack(vec![TxnError {
                op_index: 0,
                what: format!("Transaction contains too many operations ({} > {})", ops.len(), limits::TXN_OPS_MAX),
            }]));
        }
        self.journal_begin();
        let mut results = Vec::new();
        let mut errors = Vec::new();
        for (op_index, op) in ops.iter().enumerate() {
            let TxnOp::Kv(kv_op) = op;
            match self.txn_kv(index, now_ms, kv_op) {
                Ok(mut entries) => results.append(&mut entries),
                Err(what) => errors.push(TxnError { op_index, what }),
            }
        }
        if errors.is_empty() {
            self.journal_commit();
            Response::Txn(TxnOutcome::Committed(results))
        } else {
            self.journal_rollback();
            Response::Txn(TxnOutcome::RolledBack(errors))
        }
    }

    /// Read-only transactions (no Raft round): the same verbs against the current state.
    pub fn read_txn(&self, ops: &[TxnOp]) -> TxnOutcome {
        let mut results = Vec::new();
        let mut errors = Vec::new();
        for (op_index, op) in ops.iter().enumerate() {
            let TxnOp::Kv(kv_op) = op;
            match self.txn_kv_read(kv_op) {
                Ok(mut entries) => results.append(&mut entries),
                Err(what) => errors.push(TxnError { op_index, what }),
            }
        }
        if errors.is_empty() {
            TxnOutcome::Committed(results)
        } else {
            TxnOutcome::RolledBack(errors)
        }
    }

    fn txn_kv(&mut self, index: u64, now_ms: u64, op: &KvOp) -> Result<Vec<TxnResult>, String> {
        validate_kv_op(op).map_err(|e| e.to_string())?;
        let key = &op.key;
        let entry = match op.verb {
            KvVerb::Set => self.kv_set(index, op),
            KvVerb::Cas => {
                self.kv_cas(index, op).ok_or_else(|| format!("failed to set key {key:?}, index is stale"))?
            }
            KvVerb::Lock => match self.kv_lock(index, now_ms, op) {
                Err(e) => return Err(e.to_string()),
                Ok(None) if self.in_lock_delay(key, now_ms) => {
                    return Err(format!("failed to lock key {key:?} due to lock delay"))
                }
                Ok(None) => return Err(format!("failed to lock key {key:?}, lock is already held")),
                Ok(Some(entry)) => entry,
            },
            KvVerb::Unlock => self.kv_unlock(index, op).ok_or_else(|| {
                format!("failed to unlock key {key:?}, lock isn't held, or is held by another session")
            })?,
            KvVerb::Delete => {
                self.kv_remove(index, now_ms, key);
                return Ok(Vec::new());
            }
            KvVerb::DeleteTree => {
                self.kv_delete_tree(index, now_ms, key);
                return Ok(Vec::new());
            }
            KvVerb::DeleteCas => {
                if !self.kv_delete_cas(index, now_ms, key, op.index) {
                    return Err(format!("failed to delete key {key:?}, index is stale"));
                }
                return Ok(Vec::new());
            }
            _ => return self.txn_kv_read(op),
        };
        Ok(vec![TxnResult::Kv(KvEntry { value: Vec::new(), ..entry })])
    }

    fn txn_kv_read(&self, op: &KvOp) -> Result<Vec<TxnResult>, String> {
        let key = &op.key;
        let strip = |e: &KvEntry| TxnResult::Kv(KvEntry { value: Vec::new(), ..e.clone() });
        match op.verb {
            KvVerb::Get => {
                let e = self.kv.get(key).ok_or_else(|| format!("key {key:?} doesn't exist"))?;
                Ok(vec![TxnResult::Kv(e.clone())])
            }
            KvVerb::GetOrEmpty => Ok(vec![TxnResult::Kv(
                self.kv.get(key).cloned().unwrap_or_else(|| KvEntry { key: key.clone(), ..Default::default() }),
            )]),
            KvVerb::GetTree => Ok(self
                .kv
                .range(key.clone()..)
                .take_while(|(k, _)| k.starts_with(key.as_str()))
                .map(|(_, e)| TxnResult::Kv(e.clone()))
                .collect()),
            KvVerb::CheckIndex => {
                let e = self.kv.get(key).ok_or_else(|| format!("failed to check index, key {key:?} doesn't exist"))?;
                if e.modify_index != op.index {
                    return Err(format!(
                        "failed index check for key {key:?}, current modify index {} != {}",
                        e.modify_index, op.index
                    ));
                }
                Ok(vec![strip(e)])
            }
            KvVerb::CheckSession => {
                let e =
                    self.kv.get(key).ok_or_else(|| format!("failed to check session, key {key:?} doesn't exist"))?;
                let current = e.session.clone().unwrap_or_default();
                if current != op.session {
                    return Err(format!(
                        "failed session check for key {key:?}, current session {current:?} != {:?}",
                        op.session
                    ));
                }
                Ok(vec![strip(e)])
            }
            KvVerb::CheckNotExists => match self.kv.get(key) {
                Some(_) => Err(format!("key {key:?} exists")),
                None => Ok(Vec::new()),
            },
            verb => Err(format!("{verb:?} is a write and cannot run in a read-only transaction")),
        }
    }
}
