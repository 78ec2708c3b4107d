//! Sessions: creation against live node checks, and invalidation that releases locks.

use super::{name_key, ApplyError, Behavior, Catalog, Response, Session, Status};
use crate::limits;
use crate::watch::WatchKey;

impl Catalog {
    /// Creates a session if its node exists and none of its checks is missing or critical.
    pub(super) fn apply_session_create(&mut self, index: u64, session: &Session) -> Response {
        if session.id.is_empty() {
            return Response::Error(ApplyError::Invalid("Must provide session ID".into()));
        }
        if self.sessions.contains_key(&session.id) {
            return Response::Error(ApplyError::SessionExists(session.id.clone()));
        }
        if session.lock_delay > limits::SESSION_LOCK_DELAY_MAX_NS {
            return Response::Error(ApplyError::Invalid("Lock delay exceeds the maximum".into()));
        }
        let nk = name_key(&session.node);
        let Some(node) = self.nodes.get(&nk) else {
            return Response::Error(ApplyError::MissingNode);
        };
        let check_ids = session.node_checks.iter().chain(session.service_checks.iter().map(|c| &c.id));
        for check_id in check_ids {
            match self.checks.get(&(nk.clone(), check_id.clone())) {
                None => return Response::Error(ApplyError::MissingCheck(check_id.clone())),
                Some(c) if c.status == Status::Critical => {
                    return Response::Error(ApplyError::CheckCritical(check_id.clone()))
                }
                Some(_) => {}
            }
        }
        let mut new = session.clone();
        new.node = node.node.clone();
        new.create_index = index;
        new.modify_index = index;
        self.sessions.insert(new.id.clone(), new);
        self.sessions_by_node.entry(nk.clone()).or_default().insert(session.id.clone());
        self.tables.sessions = index;
        self.touch(WatchKey::Sessions);
        self.touch(WatchKey::Session(session.id.clone()));
        self.touch(WatchKey::NodeSessions(nk));
        Response::Done
    }

    /// Destroys a session: its locks are released (or their keys deleted, for behavior
    /// `delete`) and enter lock-delay, and the prepared queries bound to it are deleted.
    /// Unknown sessions are a no-op (destroy is idempotent).
    pub(super) fn invalidate_session(&mut self, index: u64, now_ms: u64, sid: &str) {
        let Some(session) = self.sessions.remove(sid) else {
            return;
        };
        let nk = name_key(&session.node);
        if let Some(set) = self.sessions_by_node.get_mut(&nk) {
            set.remove(sid);
            if set.is_empty() {
                self.sessions_by_node.remove(&nk);
            }
        }
        let lock_delay_ms = session.lock_delay / 1_000_000;
        self.release_session_locks(index, now_ms, sid, session.behavior == Behavior::Delete, lock_delay_ms);
        self.delete_session_queries(index, sid);
        self.tables.sessions = index;
        self.touch(WatchKey::Sessions);
        self.touch(WatchKey::Session(sid.to_string()));
        self.touch(WatchKey::NodeSessions(nk));
    }

    /// Invalidates the sessions of node `nk` that are tied to `check_id`.
    pub(super) fn invalidate_sessions_of_check(&mut self, index: u64, now_ms: u64, nk: &str, check_id: &str) {
        let doomed: Vec<String> = self
            .sessions_by_node
            .get(nk)
            .into_iter()
            .flatten()
            .filter(|sid| self.sessions[*sid].watches_check(check_id))
            .cloned()
            .collect();
        for sid in doomed {
            self.invalidate_session(index, now_ms, &sid);
        }
    }

    /// All sessions, for the leader's TTL timers.
    pub fn sessions(&self) -> impl Iterator<Item = &Session> {
        self.sessions.values()
    }

    pub fn session(&self, id: &str) -> Option<&Session> {
        self.sessions.get(id)
    }
}
