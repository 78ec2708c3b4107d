//! Blocking-query bookkeeping: who is waiting on what, and whom an apply wakes.
//!
//! A query reports the [`WatchKey`]s its result was computed from (its *watch set*). A waiting
//! query registers that set and gets a [`WatcherId`]. Every apply reports the keys it changed
//! (`touched`); [`Watchers::fire`] returns exactly the watchers whose sets intersect them — a
//! write to `kv/a` wakes watchers of `kv/a` and of its prefixes, never a watcher of `kv/b` or
//! of an unrelated service. This is the precision Consul's per-table wake-ups lack.
//!
//! The cost of [`Watchers::fire`] is `O(touched · (key length + woken) · log W)`; it does not
//! grow with the number of unrelated watchers `W`.

use std::collections::{BTreeMap, BTreeSet};

/// The client's side of the index rules: the index to send after an answer carrying
/// `returned`, the previous one being `previous`. An index that went backwards (a restore, a
/// new leader with a shorter log) resets to 0, an immediate read; otherwise an answer's index
/// of 0 is sent as 1, so that no blocking read sends 0.
pub fn next_index(previous: u64, returned: u64) -> u64 {
    if returned < previous {
        0
    } else {
        returned.max(1)
    }
}

use crate::limits;

/// One thing a query's result depends on. Names are the lower-cased lookup keys.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub enum WatchKey {
    /// One KV key (also what a KV write touches).
    Kv(String),
    /// Every key under a prefix (only ever watched; a write touches `Kv`).
    KvPrefix(String),
    /// The node list.
    Nodes,
    /// One node: its record, services and checks.
    Node(String),
    /// The list of service names and tags.
    Services,
    /// One service name: its instances, their nodes and health.
    Service(String),
    /// Any check anywhere (`/v1/health/state/*`).
    Checks,
    /// The session list.
    Sessions,
    /// One session.
    Session(String),
    /// The sessions of one node.
    NodeSessions(String),
    /// The prepared-query table (`/v1/query`): any create, update or delete.
    PreparedQueries,
}

/// Identifies one registered blocking query.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WatcherId(pub u64);

/// Returned when the registry is full; the caller answers at once instead of waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many blocking queries are waiting")]
pub struct WatchersFull;

/// The registry of waiting queries. One-shot: a fired watcher is removed.
#[derive(Debug, Default)]
pub struct Watchers {
    next_id: u64,
    exact: BTreeMap<WatchKey, BTreeSet<WatcherId>>,
    prefixes: BTreeMap<String, BTreeSet<WatcherId>>,
    sets: BTreeMap<WatcherId, Vec<WatchKey>>,
}

impl Watchers {
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of waiting queries.
    pub fn len(&self) -> usize {
        self.sets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sets.is_empty()
    }

    /// Registers a query waiting on `keys`.
    pub fn register(&mut self, keys: Vec<WatchKey>) -> Result<WatcherId, WatchersFull> {
        if self.sets.len() >= limits::WATCHERS_MAX {
            return Err(WatchersFull);
        }
        self.next_id += 1;
        let id = WatcherId(self.next_id);
        for key in &keys {
            match key {
                WatchKey::KvPrefix(p) => self.prefixes.entry(p.clone()).or_default().insert(id),
                other => self.exact.entry(other.clone()).or_default().insert(id),
            };
        }
        self.sets.insert(id, keys);
        Ok(id)
    }

    /// Removes a watcher (its wait timed out or its client went away). Unknown ids are a no-op.
    pub fn cancel(&mut self, id: WatcherId) {
        let Some(keys) = self.sets.remove(&id) else {
            return;
        };
        for key in keys {
            match key {
                WatchKey::KvPrefix(p) => remove_from(&mut self.prefixes, &p, id),
                other => remove_from(&mut self.exact, &other, id),
            }
        }
    }

    /// Returns (and unregisters) every watcher whose set a change to `touched` may affect,
    /// in ascending id order, each once.
    pub fn fire(&mut self, touched: &[WatchKey]) -> Vec<WatcherId> {
        let mut woken = BTreeSet::new();
        for key in touched {
            if let Some(ids) = self.exact.get(key) {
                woken.extend(ids.iter().copied());
            }
            if let WatchKey::Kv(k) = key {
                if self.prefixes.is_empty() {
                    continue;
                }
                for end in (0..=k.len()).filter(|i| k.is_char_boundary(*i)) {
                    if let Some(ids) = self.prefixes.get(&k[..end]) {
                        woken.extend(ids.iter().copied());
                    }
                }
            }
        }
        for id in &woken {
            self.cancel(*id);
        }
        woken.into_iter().collect()
    }

    /// Debug check: every index entry points at a registered watcher that lists that key.
    pub fn check_invariants(&self) {
        for (key, ids) in &self.exact {
            assert!(!ids.is_empty(), "empty exact bucket for {key:?}");
            for id in ids {
                assert!(self.sets.get(id).is_some_and(|s| s.contains(key)));
            }
        }
        for (prefix, ids) in &self.prefixes {
            assert!(!ids.is_empty(), "empty prefix bucket for {prefix:?}");
            for id in ids {
                let key = WatchKey::KvPrefix(prefix.clone());
                assert!(self.sets.get(id).is_some_and(|s| s.contains(&key)));
            }
        }
    }
}

fn remove_from<K: Ord>(map: &mut BTreeMap<K, BTreeSet<WatcherId>>, key: &K, id: WatcherId) {
    if let Some(ids) = map.get_mut(key) {
        ids.remove(&id);
        if ids.is_empty() {
            map.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_resets_when_it_goes_backwards_and_is_never_zero_after_an_answer() {
        assert_eq!(next_index(0, 17), 17, "the first answer's index");
        assert_eq!(next_index(17, 17), 17, "nothing changed");
        assert_eq!(next_index(17, 20), 20);
        assert_eq!(next_index(20, 5), 0, "backwards: start over with an immediate read");
        assert_eq!(next_index(0, 0), 1, "a zero index is sent as 1");
        assert_eq!(next_index(3, 0), 0, "zero after a real index is going backwards");
    }

    fn kv(k: &str) -> WatchKey {
        WatchKey::Kv(k.to_string())
    }

    #[test]
    fn a_write_wakes_its_key_and_prefixes_only() {
        let mut w = Watchers::new();
        let a = w.register(vec![kv("app/a")]).unwrap();
        let b = w.register(vec![kv("app/b")]).unwrap();
        let app = w.register(vec![WatchKey::KvPrefix("app/".into())]).unwrap();
        let root = w.register(vec![WatchKey::KvPrefix(String::new())]).unwrap();
        let other = w.register(vec![WatchKey::KvPrefix("other/".into())]).unwrap();
        let svc = w.register(vec![WatchKey::Service("web".into())]).unwrap();

        assert_eq!(w.fire(&[kv("app/a")]), vec![a, app, root]);
        w.check_invariants();
        assert_eq!(w.len(), 3);
        assert_eq!(w.fire(&[kv("app/a")]), vec![]);
        assert_eq!(w.fire(&[WatchKey::Service("web".into())]), vec![svc]);
        w.cancel(b);
        assert_eq!(w.fire(&[kv("app/b"), kv("other/x")]), vec![other]);
        assert!(w.is_empty());
        w.check_invariants();
    }

    #[test]
    fn a_watcher_with_many_keys_fires_once() {
        let mut w = Watchers::new();
        let id = w.register(vec![kv("a"), kv("b"), WatchKey::KvPrefix("a".into())]).unwrap();
        assert_eq!(w.fire(&[kv("a"), kv("b")]), vec![id]);
        assert!(w.is_empty());
        w.check_invariants();
    }

    #[test]
    fn prefixes_respect_char_boundaries() {
        let mut w = Watchers::new();
        let id = w.register(vec![WatchKey::KvPrefix("é".into())]).unwrap();
        assert_eq!(w.fire(&[kv("éa")]), vec![id]);
    }
}
