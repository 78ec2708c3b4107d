//! Unit tests of the catalog state machine against Consul's semantics
//! (`/work/shared/consul-compat.md`: KV, Session, Txn, Sessions and locks, Blocking queries).
//!
//! Each test is one behaviour, written as set-up / act / assert.

use super::query::{Endpoint, Filter};
use super::*;
use crate::watch::Watchers;

/// A catalog with its own apply index and leader clock.
struct Fsm {
    catalog: Catalog,
    index: u64,
    now_ms: u64,
}

const NODE: &str = "n1";
const T0_MS: u64 = 1_700_000_000_000;

impl Fsm {
    fn new() -> Self {
        Fsm { catalog: Catalog::new(), index: 0, now_ms: T0_MS }
    }

    /// A catalog with node `n1` registered and no touched keys pending.
    fn with_node() -> Self {
        let mut fsm = Fsm::new();
        fsm.register_node(NODE);
        fsm.catalog.take_touched();
        fsm
    }

    fn apply(&mut self, command: Command) -> Response {
        self.index += 1;
        self.catalog.apply(self.index, &Request { now_ms: self.now_ms, command })
    }

    fn kv(&mut self, op: KvOp) -> Response {
        self.apply(Command::Kv(op))
    }

    fn set(&mut self, key: &str, value: &str) -> Response {
        self.kv(op(KvVerb::Set, key, value))
    }

    fn cas(&mut self, key: &str, value: &str, index: u64) -> Response {
        self.kv(KvOp { index, ..op(KvVerb::Cas, key, value) })
    }

    fn lock(&mut self, key: &str, value: &str, session: &str) -> Response {
        self.kv(KvOp { session: session.into(), ..op(KvVerb::Lock, key, value) })
    }

    fn unlock(&mut self, key: &str, value: &str, session: &str) -> Response {
        self.kv(KvOp { session: session.into(), ..op(KvVerb::Unlock, key, value) })
    }

    fn delete(&mut self, key: &str) -> Response {
        self.kv(op(KvVerb::Delete, key, ""))
    }

    fn delete_tree(&mut self, prefix: &str) -> Response {
        self.kv(op(KvVerb::DeleteTree, prefix, ""))
    }

    fn delete_cas(&mut self, key: &str, index: u64) -> Response {
        self.kv(KvOp { index, ..op(KvVerb::DeleteCas, key, "") })
    }

    fn txn(&mut self, ops: Vec<KvOp>) -> TxnOutcome {
        match self.apply(Command::Txn(ops.into_iter().map(TxnOp::Kv).collect())) {
            Response::Txn(outcome) => outcome,
            other => panic!("a txn answered {other:?}"),
        }
    }

    fn register(&mut self, reg: Registration) -> Response {
        self.apply(Command::Register(Box::new(reg)))
    }

    fn register_node(&mut self, name: &str) {
        let response = self.register(Registration { node: node(name), ..Default::default() });
        assert_eq!(response, Response::Done);
    }

    fn register_service(&mut self, node_name: &str, id: &str, name: &str) {
        let service = Service { id: id.into(), service: name.into(), port: 8080, ..Default::default() };
        let reg =
            Registration { node: node(node_name), skip_node_update: true, service: Some(service), checks: vec![] };
        assert_eq!(self.register(reg), Response::Done);
    }

    fn register_check(&mut self, node_name: &str, id: &str, service_id: &str, status: Status) {
        let check = HealthCheck {
            check_id: id.into(),
            name: id.into(),
            service_id: service_id.into(),
            status,
            ..Default::default()
        };
        let reg = Registration { node: node(node_name), skip_node_update: true, service: None, checks: vec![check] };
        assert_eq!(self.register(reg), Response::Done);
    }

    fn deregister(&mut self, node_name: &str, service_id: Option<&str>, check_id: Option<&str>) {
        let dereg = Deregistration {
            node: node_name.into(),
            service_id: service_id.map(String::from),
            check_id: check_id.map(String::from),
        };
        assert_eq!(self.apply(Command::Deregister(dereg)), Response::Done);
    }

    fn create_session(&mut self, session: Session) -> Response {
        self.apply(Command::SessionCreate(session))
    }

    /// Creates session `id` on `n1` with no checks, behavior release, no lock-delay.
    fn session(&mut self, id: &str) {
        assert_eq!(self.create_session(session(id)), Response::Done);
    }

    fn destroy(&mut self, id: &str) {
        assert_eq!(self.apply(Command::SessionDestroy { id: id.into() }), Response::Done);
    }

    fn get(&self, key: &str) -> Option<KvEntry> {
        self.catalog.kv_get(key).value
    }

    fn entry(&self, key: &str) -> KvEntry {
        self.get(key).unwrap_or_else(|| panic!("key {key} is missing"))
    }

    fn healthy_instances(&self, service: &str) -> Vec<String> {
        let answer = self.catalog.service_health(service, &Filter::default(), true);
        answer.value.iter().map(|h| format!("{}/{}", h.node.node, h.service.id)).collect()
    }
}

fn op(verb: KvVerb, key: &str, value: &str) -> KvOp {
    KvOp { value: value.as_bytes().to_vec(), ..KvOp::new(verb, key) }
}

fn node(name: &str) -> Node {
    Node { node: name.into(), address: "10.0.0.1".into(), ..Default::default() }
}

fn session(id: &str) -> Session {
    Session { id: id.into(), node: NODE.into(), ..Default::default() }
}

fn lock_delay_session(id: &str, lock_delay_ms: u64, behavior: Behavior) -> Session {
    Session { lock_delay: lock_delay_ms * 1_000_000, behavior, ..session(id) }
}

fn value(entry: &KvEntry) -> &str {
    std::str::from_utf8(&entry.value).expect("test values are text")
}

fn kv_result(entry: &KvEntry) -> TxnResult {
    TxnResult::Kv(entry.clone())
}

// ---------------------------------------------------------------------------------------------
// KV: set and CAS

#[test]
fn set_creates_a_key_then_updates_it_keeping_its_create_index() {
    let mut fsm = Fsm::new();
    assert_eq!(fsm.set("a", "1"), Response::Bool(true));
    let created = fsm.entry("a");

    assert_eq!(fsm.set("a", "2"), Response::Bool(true));

    let updated = fsm.entry("a");
    assert_eq!(value(&updated), "2");
    assert_eq!(updated.create_index, created.create_index);
    assert_eq!(updated.modify_index, fsm.index);
    assert!(updated.modify_index > created.modify_index);
    assert_eq!((updated.lock_index, updated.session.clone()), (0, None));
}

#[test]
fn set_stores_flags_as_given() {
    let mut fsm = Fsm::new();

    fsm.kv(KvOp { flags: 0xe0f6_9a2b_aa41_4de0, ..op(KvVerb::Set, "a", "1") });

    assert_eq!(fsm.entry("a").flags, 0xe0f6_9a2b_aa41_4de0);
}

#[test]
fn an_unchanged_set_keeps_the_modify_index_and_touches_nothing() {
    let mut fsm = Fsm::new();
    fsm.set("a", "1");
    let before = fsm.entry("a");
    fsm.catalog.take_touched();

    assert_eq!(fsm.set("a", "1"), Response::Bool(true));

    assert_eq!(fsm.entry("a"), before);
    assert!(fsm.catalog.take_touched().is_empty());
}

#[test]
fn cas_zero_writes_only_if_the_key_is_absent() {
    let mut fsm = Fsm::new();

    assert_eq!(fsm.cas("a", "1", 0), Response::Bool(true));
    assert_eq!(fsm.cas("a", "2", 0), Response::Bool(false));

    assert_eq!(value(&fsm.entry("a")), "1");
}

#[test]
fn cas_n_writes_only_if_modify_index_equals_n() {
    let mut fsm = Fsm::new();
    fsm.set("a", "1");
    let modify = fsm.entry("a").modify_index;

    assert_eq!(fsm.cas("a", "stale", modify + 1), Response::Bool(false));
    assert_eq!(fsm.cas("a", "stale", modify - 1), Response::Bool(false));
    assert_eq!(value(&fsm.entry("a")), "1");
    assert_eq!(fsm.cas("a", "2", modify), Response::Bool(true));

    assert_eq!(value(&fsm.entry("a")), "2");
    assert_eq!(fsm.entry("a").modify_index, fsm.index);
}

#[test]
fn cas_n_on_a_missing_key_fails() {
    let mut fsm = Fsm::new();
    fsm.set("a", "1");
    let old = fsm.entry("a").modify_index;
    fsm.delete("a");

    assert_eq!(fsm.cas("a", "2", old), Response::Bool(false));

    assert_eq!(fsm.get("a"), None);
}

#[test]
fn oversized_values_and_empty_keys_are_rejected_without_change() {
    let mut fsm = Fsm::new();
    let big = KvOp { value: vec![0; crate::limits::KV_VALUE_SIZE_MAX_BYTES + 1], ..KvOp::new(KvVerb::Set, "a") };

    assert!(matches!(fsm.kv(big), Response::Error(ApplyError::Invalid(_))));
    assert!(matches!(fsm.set("", "x"), Response::Error(ApplyError::Invalid(_))));

    assert_eq!(fsm.get("a"), None);
    assert_eq!(fsm.catalog.tables().kv, 0);
}

// ---------------------------------------------------------------------------------------------
// KV: locks

#[test]
fn lock_with_an_unknown_session_is_an_invalid_session_error() {
    let mut fsm = Fsm::with_node();
    fsm.set("a", "1");
    let before = fsm.entry("a");

    let response = fsm.lock("a", "2", "nope");

    assert_eq!(response, Response::Error(ApplyError::InvalidSession("nope".into())));
    assert_eq!(ApplyError::InvalidSession("nope".into()).to_string(), r#"invalid session "nope""#);
    assert_eq!(fsm.entry("a"), before);
}

#[test]
fn lock_without_a_session_is_a_missing_session_error() {
    let mut fsm = Fsm::with_node();

    let response = fsm.lock("a", "1", "");

    assert_eq!(response, Response::Error(ApplyError::Invalid("missing session".into())));
    assert!(fsm.catalog.kv_get("a").value.is_none());
}

#[test]
fn an_empty_address_cannot_blank_an_existing_node() {
    let mut fsm = Fsm::with_node();
    let blank = Node { address: String::new(), ..node(NODE) };

    let refused = fsm.register(Registration { node: blank.clone(), ..Default::default() });
    let skipped = fsm.register(Registration { node: blank, skip_node_update: true, ..Default::default() });

    assert!(matches!(refused, Response::Error(ApplyError::Invalid(m)) if m.starts_with("Must provide address")));
    assert_eq!(skipped, Response::Done);
    assert_eq!(fsm.catalog.nodes(&Filter::default()).value[0].address, "10.0.0.1");
}

#[test]
fn lock_on_a_fresh_key_sets_the_session_and_lock_index_one() {
    let mut fsm = Fsm::with_node();
    fsm.session("s1");

    assert_eq!(fsm.lock("a", "v", "s1"), Response::Bool(true));

    let e = fsm.entry("a");
    assert_eq!((e.session.as_deref(), e.lock_index, value(&e)), (Some("s1"), 1, "v"));
    assert_eq!((e.create_index, e.modify_index), (fsm.index, fsm.index));
}

#[test]
fn lock_on_an_unlocked_existing_key_increments_its_lock_index() {
    let mut fsm = Fsm::with_node();
    fsm.session("s1");
    fsm.set("a", "1");
    fsm.lock("a", "1", "s1");
    fsm.unlock("a", "1", "s1");
    assert_eq!(fsm.entry("a").lock_index, 1);

    assert_eq!(fsm.lock("a", "2", "s1"), Response::Bool(true));

    let e = fsm.entry("a");
    assert_eq!((e.session.as_deref(), e.lock_index, value(&e)), (Some("s1"), 2, "2"));
}

#[test]
fn lock_held_by_another_session_fails_and_changes_nothing() {
    let mut fsm = Fsm::with_node();
    fsm.session("s1");
    fsm.session("s2");
    fsm.lock("a", "mine", "s1");
    let before = fsm.entry("a");

    assert_eq!(fsm.lock("a", "theirs", "s2"), Response::Bool(false));

    assert_eq!(fsm.entry("a"), before);
}

#[test]
fn lock_by_the_holder_updates_the_value_and_keeps_the_lock_index() {
    let mut fsm = Fsm::with_node();
    fsm.session("s1");
    fsm.lock("a", "1", "s1");
    let before = fsm.entry("a");

    assert_eq!(fsm.lock("a", "2", "s1"), Response::Bool(true));

    let e = fsm.entry("a");
    assert_eq!(value(&e), "2");
    assert_eq!(e.lock_index, before.lock_index);
    assert_eq!(e.session.as_deref(), Some("s1"));
    assert_eq!(e.modify_index, fsm.index);
}

#[test]
fn unlock_by_the_holder_clears_the_session_and_keeps_the_lock_index() {
    let mut fsm = Fsm::with_node();
    fsm.session("s1");
    fsm.lock("a", "1", "s1");

    assert_eq!(fsm.unlock("a", "2", "s1"), Response::Bool(true));

    let e = fsm.entry("a");
    assert_eq!((e.session.clone(), e.lock_index, value(&e)), (None, 1, "2"));
    assert_eq!(e.modify_index, fsm.index);
}

#[test]
fn unlock_by_another_session_or_of_an_unheld_key_fails() {
    let mut fsm = Fsm::with_node();
    fsm.session("s1");
    fsm.session("s2");
    fsm.lock("a", "1", "s1");
    fsm.set("b", "1");
    let (a, b) = (fsm.entry("a"), fsm.entry("b"));

    assert_eq!(fsm.unlock("a", "x", "s2"), Response::Bool(false));
    assert_eq!(fsm.unlock("b", "x", "s1"), Response::Bool(false));
    assert_eq!(fsm.unlock("missing", "x", "s1"), Response::Bool(false));

    assert_eq!((fsm.entry("a"), fsm.entry("b")), (a, b));
    assert_eq!(fsm.get("missing"), None);
}

#[test]
fn a_plain_set_keeps_an_existing_lock() {
    let mut fsm = Fsm::with_node();
    fsm.session("s1");
    fsm.lock("a", "1", "s1");

    assert_eq!(fsm.set("a", "2"), Response::Bool(true));

    let e = fsm.entry("a");
    assert_eq!((e.session.as_deref(), e.lock_index, value(&e)), (Some("s1"), 1, "2"));
    // The lock still belongs to s1: its destruction releases the key.
    fsm.destroy("s1");
    assert_eq!(fsm.entry("a").session, None);
}

#[test]
fn deleting_a_locked_key_drops_the_lock() {
    let mut fsm = Fsm::with_node();
    fsm.session("s1");
    fsm.lock("a", "1", "s1");

    fsm.delete("a");
    fsm.set("a", "2");
    fsm.destroy("s1");

    let e = fsm.entry("a");
    assert_eq!((e.session.clone(), e.lock_index, value(&e)), (None, 0, "2"));
    assert_eq!(e.modify_index, fsm.index - 1, "destroying s1 must not touch a key it no longer holds");
}

// ---------------------------------------------------------------------------------------------
// KV: deletes and tombstones

#[test]
fn delete_leaves_a_tombstone_so_the_prefix_index_does_not_go_back() {
    let mut fsm = Fsm::new();
    fsm.set("app/a", "1");
    fsm.set("app/b", "1");
    fsm.set("zzz", "1");
    let before = fsm.catalog.kv_list("app/").index;

    fsm.delete("app/b");
    let deleted_at = fsm.index;
    fsm.set("zzz", "2");

    let after = fsm.catalog.kv_list("app/");
    assert_eq!(after.value.len(), 1);
    assert!(after.index >= before);
    assert_eq!(after.index, deleted_at);
}

#[test]
fn delete_of_a_missing_key_is_true_and_changes_nothing() {
    let mut fsm = Fsm::new();
    fsm.set("a", "1");
    let kv_index = fsm.catalog.tables().kv;
    fsm.catalog.take_touched();

    assert_eq!(fsm.delete("b"), Response::Bool(true));

    assert_eq!(fsm.catalog.tables().kv, kv_index);
    assert!(fsm.catalog.take_touched().is_empty());
}

#[test]
fn delete_tree_removes_only_the_prefix_and_keeps_its_index() {
    let mut fsm = Fsm::new();
    for key in ["a", "a/b", "a/c", "ab", "b"] {
        fsm.set(key, "1");
    }

    assert_eq!(fsm.delete_tree("a/"), Response::Bool(true));
    let deleted_at = fsm.index;
    fsm.set("b", "2");

    let keys: Vec<String> = fsm.catalog.kv_list("").value.into_iter().map(|e| e.key).collect();
    assert_eq!(keys, ["a", "ab", "b"]);
    let listing = fsm.catalog.kv_list("a/");
    assert!(listing.value.is_empty());
    assert_eq!(listing.index, deleted_at);
}

#[test]
fn delete_cas_of_a_missing_key_is_true() {
    let mut fsm = Fsm::new();

    assert_eq!(fsm.delete_cas("a", 7), Response::Bool(true));

    assert_eq!(fsm.get("a"), None);
}

#[test]
fn delete_cas_with_a_mismatched_index_is_false_and_keeps_the_key() {
    let mut fsm = Fsm::new();
    fsm.set("a", "1");
    let modify = fsm.entry("a").modify_index;

    assert_eq!(fsm.delete_cas("a", modify + 1), Response::Bool(false));
    assert!(fsm.get("a").is_some());
    assert_eq!(fsm.delete_cas("a", modify), Response::Bool(true));

    assert_eq!(fsm.get("a"), None);
}

#[test]
fn reap_forgets_old_tombstones_only() {
    let mut fsm = Fsm::new();
    fsm.set("p/live", "1");
    let live_at = fsm.index;
    fsm.set("p/old", "1");
    fsm.set("q/new", "1");
    fsm.delete("p/old");
    fsm.now_ms += 10_000;
    fsm.delete("q/new");
    let new_tombstone_at = fsm.index;
    fsm.now_ms += 5_000;

    assert_eq!(fsm.apply(Command::ReapTombstones { age_ms: 10_000 }), Response::Done);

    let tombstones: Vec<String> = fsm.catalog.snapshot().tombstones.into_iter().map(|(k, _)| k).collect();
    assert_eq!(tombstones, ["q/new"]);
    assert_eq!(fsm.catalog.kv_list("p/").index, live_at, "p/ falls back to its live entries");
    assert_eq!(fsm.catalog.kv_list("q/").index, new_tombstone_at);
}

// ---------------------------------------------------------------------------------------------
// Sessions: invalidation, lock-delay, behavior

#[test]
fn destroying_a_session_releases_its_locks_and_bumps_their_modify_index() {
    let mut fsm = Fsm::with_node();
    fsm.session("s1");
    fsm.lock("a", "1", "s1");
    let before = fsm.entry("a");

    fsm.destroy("s1");

    let e = fsm.entry("a");
    assert_eq!((e.session.clone(), e.lock_index, value(&e)), (None, before.lock_index, "1"));
    assert_eq!(e.modify_index, fsm.index);
    assert!(fsm.catalog.session("s1").is_none());
}

#[test]
fn destroying_an_unknown_session_is_a_no_op() {
    let mut fsm = Fsm::with_node();
    let tables = fsm.catalog.tables();

    fsm.destroy("nope");

    assert_eq!(fsm.catalog.tables(), tables);
    assert!(fsm.catalog.take_touched().is_empty());
}

#[test]
fn acquire_is_refused_until_the_lock_delay_ends() {
    let mut fsm = Fsm::with_node();
    assert_eq!(fsm.create_session(lock_delay_session("s1", 15_000, Behavior::Release)), Response::Done);
    fsm.session("s2");
    fsm.lock("a", "1", "s1");
    fsm.now_ms += 1_000;
    let destroyed_at_ms = fsm.now_ms;
    fsm.destroy("s1");

    fsm.now_ms = destroyed_at_ms + 14_999;
    assert_eq!(fsm.lock("a", "2", "s2"), Response::Bool(false));
    assert_eq!(fsm.entry("a").session, None);
    fsm.now_ms = destroyed_at_ms + 15_000;
    assert_eq!(fsm.lock("a", "2", "s2"), Response::Bool(true));

    assert_eq!(fsm.entry("a").lock_index, 2);
}

#[test]
fn the_planted_ignore_lock_delay_bug_grants_a_lock_in_its_delay() {
    let mut fsm = Fsm::with_node();
    fsm.catalog.set_planted(crate::plant::Planted { ignore_lock_delay: true, ..Default::default() });
    assert_eq!(fsm.create_session(lock_delay_session("s1", 15_000, Behavior::Release)), Response::Done);
    fsm.session("s2");
    fsm.lock("a", "1", "s1");
    fsm.destroy("s1");
    fsm.now_ms += 1;
    assert_eq!(fsm.lock("a", "2", "s2"), Response::Bool(true), "granted at once: the bug is live");
}

#[test]
fn lock_delay_also_guards_a_deleted_key() {
    let mut fsm = Fsm::with_node();
    assert_eq!(fsm.create_session(lock_delay_session("s1", 5_000, Behavior::Delete)), Response::Done);
    fsm.session("s2");
    fsm.lock("a", "1", "s1");
    fsm.destroy("s1");

    assert_eq!(fsm.lock("a", "2", "s2"), Response::Bool(false));
    fsm.now_ms += 5_000;
    assert_eq!(fsm.lock("a", "2", "s2"), Response::Bool(true));

    assert_eq!(fsm.entry("a").lock_index, 1);
}

#[test]
fn a_zero_lock_delay_allows_acquire_at_once() {
    let mut fsm = Fsm::with_node();
    fsm.session("s1");
    fsm.session("s2");
    fsm.lock("a", "1", "s1");
    fsm.destroy("s1");

    assert_eq!(fsm.lock("a", "2", "s2"), Response::Bool(true));
}

#[test]
fn lock_delay_leaves_other_keys_and_plain_writes_alone() {
    let mut fsm = Fsm::with_node();
    assert_eq!(fsm.create_session(lock_delay_session("s1", 15_000, Behavior::Release)), Response::Done);
    fsm.session("s2");
    fsm.lock("a", "1", "s1");
    fsm.destroy("s1");

    assert_eq!(fsm.set("a", "2"), Response::Bool(true));
    assert_eq!(fsm.lock("b", "1", "s2"), Response::Bool(true));
}

#[test]
fn behavior_delete_deletes_held_keys_on_invalidation() {
    let mut fsm = Fsm::with_node();
    assert_eq!(fsm.create_session(lock_delay_session("s1", 0, Behavior::Delete)), Response::Done);
    fsm.lock("app/a", "1", "s1");
    fsm.lock("app/b", "1", "s1");
    fsm.set("app/c", "1");

    fsm.destroy("s1");

    let keys: Vec<String> = fsm.catalog.kv_list("app/").value.into_iter().map(|e| e.key).collect();
    assert_eq!(keys, ["app/c"]);
    assert_eq!(fsm.catalog.kv_list("app/").index, fsm.index);
}

#[test]
fn deregistering_the_node_invalidates_its_sessions() {
    let mut fsm = Fsm::with_node();
    fsm.register_node("n2");
    fsm.session("s1");
    assert_eq!(fsm.create_session(Session { node: "n2".into(), ..session("s2") }), Response::Done);
    fsm.lock("a", "1", "s1");

    fsm.deregister(NODE, None, None);

    assert!(fsm.catalog.session("s1").is_none());
    assert!(fsm.catalog.session("s2").is_some());
    assert_eq!(fsm.entry("a").session, None);
    assert!(!fsm.catalog.has_node(NODE));
}

#[test]
fn a_node_check_turning_critical_invalidates_sessions_tied_to_it() {
    let mut fsm = Fsm::with_node();
    fsm.register_check(NODE, "serfHealth", "", Status::Passing);
    fsm.register_check(NODE, "disk", "", Status::Passing);
    let tied = Session { node_checks: vec!["serfHealth".into()], ..session("tied") };
    let other = Session { node_checks: vec!["disk".into()], ..session("other") };
    assert_eq!(fsm.create_session(tied), Response::Done);
    assert_eq!(fsm.create_session(other), Response::Done);
    fsm.lock("a", "1", "tied");

    fsm.register_check(NODE, "serfHealth", "", Status::Critical);

    assert!(fsm.catalog.session("tied").is_none());
    assert!(fsm.catalog.session("other").is_some());
    assert_eq!(fsm.entry("a").session, None);
}

#[test]
fn a_warning_check_does_not_invalidate_sessions() {
    let mut fsm = Fsm::with_node();
    fsm.register_check(NODE, "serfHealth", "", Status::Passing);
    assert_eq!(fsm.create_session(Session { node_checks: vec!["serfHealth".into()], ..session("s1") }), Response::Done);

    fsm.register_check(NODE, "serfHealth", "", Status::Warning);

    assert!(fsm.catalog.session("s1").is_some());
}

#[test]
fn a_service_check_turning_critical_invalidates_sessions_tied_to_it() {
    let mut fsm = Fsm::with_node();
    fsm.register_service(NODE, "web1", "web");
    fsm.register_check(NODE, "service:web1", "web1", Status::Passing);
    let refs = vec![ServiceCheckRef { id: "service:web1".into(), namespace: String::new() }];
    assert_eq!(fsm.create_session(Session { service_checks: refs, ..session("s1") }), Response::Done);

    fsm.register_check(NODE, "service:web1", "web1", Status::Critical);

    assert!(fsm.catalog.session("s1").is_none());
}

#[test]
fn deregistering_a_check_invalidates_sessions_tied_to_it() {
    let mut fsm = Fsm::with_node();
    fsm.register_check(NODE, "serfHealth", "", Status::Passing);
    assert_eq!(fsm.create_session(Session { node_checks: vec!["serfHealth".into()], ..session("s1") }), Response::Done);
    fsm.session("s2");

    fsm.deregister(NODE, None, Some("serfHealth"));

    assert!(fsm.catalog.session("s1").is_none());
    assert!(fsm.catalog.session("s2").is_some());
}

#[test]
fn deregistering_a_service_invalidates_sessions_tied_to_its_checks() {
    let mut fsm = Fsm::with_node();
    fsm.register_service(NODE, "web1", "web");
    fsm.register_check(NODE, "service:web1", "web1", Status::Passing);
    let refs = vec![ServiceCheckRef { id: "service:web1".into(), namespace: String::new() }];
    assert_eq!(fsm.create_session(Session { service_checks: refs, ..session("s1") }), Response::Done);

    fsm.deregister(NODE, Some("web1"), None);

    assert!(fsm.catalog.session("s1").is_none());
}

#[test]
fn session_create_needs_a_known_node() {
    let mut fsm = Fsm::new();

    let response = fsm.create_session(session("s1"));

    assert_eq!(response, Response::Error(ApplyError::MissingNode));
    assert!(fsm.catalog.session("s1").is_none());
}

#[test]
fn session_create_needs_its_checks_registered() {
    let mut fsm = Fsm::with_node();
    fsm.register_check(NODE, "serfHealth", "", Status::Passing);
    let missing_node_check = Session { node_checks: vec!["serfHealth".into(), "gone".into()], ..session("s1") };
    let refs = vec![ServiceCheckRef { id: "service:web1".into(), namespace: String::new() }];
    let missing_service_check = Session { service_checks: refs, ..session("s2") };

    let r1 = fsm.create_session(missing_node_check);
    let r2 = fsm.create_session(missing_service_check);

    assert_eq!(r1, Response::Error(ApplyError::MissingCheck("gone".into())));
    assert_eq!(r2, Response::Error(ApplyError::MissingCheck("service:web1".into())));
    assert_eq!(fsm.catalog.session_list().value, vec![]);
}

#[test]
fn session_create_is_refused_while_a_check_is_critical() {
    let mut fsm = Fsm::with_node();
    fsm.register_check(NODE, "serfHealth", "", Status::Critical);

    let response = fsm.create_session(Session { node_checks: vec!["serfHealth".into()], ..session("s1") });

    assert_eq!(response, Response::Error(ApplyError::CheckCritical("serfHealth".into())));
    assert!(fsm.catalog.session("s1").is_none());
}

#[test]
fn session_create_refuses_a_duplicate_id() {
    let mut fsm = Fsm::with_node();
    fsm.session("s1");
    let first = fsm.catalog.session("s1").cloned();

    let response = fsm.create_session(Session { name: "again".into(), ..session("s1") });

    assert_eq!(response, Response::Error(ApplyError::SessionExists("s1".into())));
    assert_eq!(fsm.catalog.session("s1").cloned(), first);
}

#[test]
fn session_create_stamps_indexes_and_the_node_spelling() {
    let mut fsm = Fsm::with_node();

    assert_eq!(fsm.create_session(Session { node: "N1".into(), ..session("s1") }), Response::Done);

    let s = fsm.catalog.session("s1").expect("created");
    assert_eq!((s.create_index, s.modify_index, s.node.as_str()), (fsm.index, fsm.index, NODE));
    assert_eq!(fsm.catalog.node_sessions(NODE).value.len(), 1);
}

// ---------------------------------------------------------------------------------------------
// Transactions

#[test]
fn txn_results_show_values_only_for_get_verbs() {
    let mut fsm = Fsm::with_node();
    fsm.session("s1");
    fsm.set("old", "x");
    fsm.set("tree/1", "t1");
    fsm.set("tree/2", "t2");

    let outcome = fsm.txn(vec![
        op(KvVerb::Set, "a", "1"),
        KvOp { session: "s1".into(), ..op(KvVerb::Lock, "b", "2") },
        op(KvVerb::Get, "a", ""),
        op(KvVerb::GetTree, "tree/", ""),
        op(KvVerb::Delete, "old", ""),
        op(KvVerb::CheckNotExists, "old", ""),
    ]);

    let (a, b) = (fsm.entry("a"), fsm.entry("b"));
    let stripped = |e: &KvEntry| TxnResult::Kv(KvEntry { value: vec![], ..e.clone() });
    let expected = vec![
        stripped(&a),
        stripped(&b),
        kv_result(&a),
        kv_result(&fsm.entry("tree/1")),
        kv_result(&fsm.entry("tree/2")),
    ];
    assert_eq!(outcome, TxnOutcome::Committed(expected));
    assert_eq!(fsm.get("old"), None);
    assert_eq!((b.session.as_deref(), b.lock_index), (Some("s1"), 1));
}

#[test]
fn a_failing_op_rolls_back_every_earlier_op() {
    let mut fsm = Fsm::with_node();
    fsm.session("s1");
    fsm.set("kept", "1");
    fsm.set("doomed", "1");
    let before = fsm.catalog.snapshot();
    let (kv_before, kept_list) = (fsm.catalog.kv_list("").value, fsm.catalog.kv_list("kept").index);
    fsm.catalog.take_touched();

    let outcome = fsm.txn(vec![
        op(KvVerb::Set, "kept", "2"),
        op(KvVerb::Set, "new", "1"),
        KvOp { session: "s1".into(), ..op(KvVerb::Lock, "kept", "3") },
        op(KvVerb::Delete, "doomed", ""),
        KvOp { index: 1, ..op(KvVerb::Cas, "new", "x") },
    ]);

    assert!(matches!(outcome, TxnOutcome::RolledBack(ref e) if e.len() == 1 && e[0].op_index == 4));
    assert_eq!(fsm.catalog.kv_list("").value, kv_before);
    assert_eq!(fsm.catalog.kv_list("kept").index, kept_list);
    assert!(fsm.catalog.take_touched().is_empty(), "a rolled-back txn wakes nobody");
    let after = fsm.catalog.snapshot();
    assert_eq!(CatalogSnapshot { last_index: before.last_index, ..after }, before);
    // s1 does not hold "kept": destroying it leaves the key alone.
    let kept = fsm.entry("kept");
    fsm.destroy("s1");
    assert_eq!(fsm.entry("kept"), kept);
}

#[test]
fn a_rolled_back_unlock_keeps_the_lock() {
    let mut fsm = Fsm::with_node();
    fsm.session("s1");
    fsm.lock("a", "1", "s1");
    let before = fsm.entry("a");

    let outcome =
        fsm.txn(vec![KvOp { session: "s1".into(), ..op(KvVerb::Unlock, "a", "2") }, op(KvVerb::Get, "missing", "")]);

    assert!(matches!(outcome, TxnOutcome::RolledBack(_)));
    assert_eq!(fsm.entry("a"), before);
    fsm.destroy("s1");
    assert_eq!(fsm.entry("a").session, None, "the rolled-back unlock left the lock indexed");
}

#[test]
fn txn_reports_every_failure_with_its_op_index_and_consul_text() {
    let mut fsm = Fsm::with_node();
    fsm.session("s1");
    fsm.session("s2");
    fsm.lock("held", "1", "s2");
    fsm.set("a", "1");
    let a = fsm.entry("a").modify_index;

    let outcome = fsm.txn(vec![
        KvOp { index: a + 100, ..op(KvVerb::Cas, "a", "x") },
        KvOp { session: "s1".into(), ..op(KvVerb::Lock, "held", "x") },
        KvOp { session: "s1".into(), ..op(KvVerb::Unlock, "a", "x") },
        KvOp { index: a + 100, ..op(KvVerb::DeleteCas, "a", "") },
        op(KvVerb::Get, "missing", ""),
        KvOp { index: a + 100, ..op(KvVerb::CheckIndex, "a", "") },
        KvOp { session: "s1".into(), ..op(KvVerb::CheckSession, "held", "") },
        op(KvVerb::CheckNotExists, "a", ""),
        KvOp { session: "ghost".into(), ..op(KvVerb::Lock, "b", "x") },
        op(KvVerb::Set, "ok", "fine"),
    ]);

    let expected = [
        r#"failed to set key "a", index is stale"#.to_string(),
        r#"failed to lock key "held", lock is already held"#.to_string(),
        r#"failed to unlock key "a", lock isn't held, or is held by another session"#.to_string(),
        r#"failed to delete key "a", index is stale"#.to_string(),
        r#"key "missing" doesn't exist"#.to_string(),
        format!(r#"failed index check for key "a", current modify index {a} != {}"#, a + 100),
        r#"failed session check for key "held", current session "s2" != "s1""#.to_string(),
        r#"key "a" exists"#.to_string(),
        r#"invalid session "ghost""#.to_string(),
    ];
    let TxnOutcome::RolledBack(errors) = outcome else { panic!("expected a rollback, got {outcome:?}") };
    let got: Vec<(usize, String)> = errors.into_iter().map(|e| (e.op_index, e.what)).collect();
    let want: Vec<(usize, String)> = expected.into_iter().enumerate().collect();
    assert_eq!(got, want);
    assert_eq!(fsm.get("ok"), None);
}

#[test]
fn txn_lock_inside_lock_delay_fails_with_consuls_text() {
    let mut fsm = Fsm::with_node();
    assert_eq!(fsm.create_session(lock_delay_session("s1", 15_000, Behavior::Release)), Response::Done);
    fsm.session("s2");
    fsm.lock("a", "1", "s1");
    fsm.destroy("s1");

    let outcome = fsm.txn(vec![KvOp { session: "s2".into(), ..op(KvVerb::Lock, "a", "2") }]);

    let error = TxnError { op_index: 0, what: r#"failed to lock key "a" due to lock delay"#.into() };
    assert_eq!(outcome, TxnOutcome::RolledBack(vec![error]));
}

#[test]
fn txn_with_too_many_ops_is_refused_whole() {
    let mut fsm = Fsm::new();
    let ops = (0..=crate::limits::TXN_OPS_MAX).map(|i| op(KvVerb::Set, &format!("k{i}"), "v")).collect();

    let outcome = fsm.txn(ops);

    assert!(matches!(outcome, TxnOutcome::RolledBack(ref e) if e.len() == 1 && e[0].op_index == 0));
    assert!(fsm.catalog.kv_list("").value.is_empty());
}

#[test]
fn a_read_only_txn_refuses_writes() {
    let mut fsm = Fsm::new();
    fsm.set("a", "1");

    let reads = fsm.catalog.read_txn(&[TxnOp::Kv(op(KvVerb::Get, "a", ""))]);
    let writes = fsm.catalog.read_txn(&[TxnOp::Kv(op(KvVerb::Get, "a", "")), TxnOp::Kv(op(KvVerb::Set, "a", "2"))]);

    assert_eq!(reads, TxnOutcome::Committed(vec![kv_result(&fsm.entry("a"))]));
    assert!(matches!(writes, TxnOutcome::RolledBack(ref e) if e.len() == 1 && e[0].op_index == 1));
}

// ---------------------------------------------------------------------------------------------
// Nodes, services, checks

#[test]
fn registration_creates_node_service_and_check() {
    let mut fsm = Fsm::new();
    let check = HealthCheck { check_id: "service:web1".into(), service_id: "web1".into(), ..Default::default() };
    let service = Service { id: "web1".into(), service: "Web".into(), tags: vec!["v1".into()], ..Default::default() };

    let response = fsm.register(Registration {
        node: node(NODE),
        service: Some(service),
        checks: vec![check],
        ..Default::default()
    });

    assert_eq!(response, Response::Done);
    assert_eq!(fsm.catalog.nodes(&Filter::default()).value.len(), 1);
    let instances = fsm.catalog.service_nodes("web", &Filter::default()).value;
    assert_eq!(instances.len(), 1);
    assert_eq!((instances[0].node.node.as_str(), instances[0].service.id.as_str()), (NODE, "web1"));
    let checks = fsm.catalog.node_checks(NODE).value;
    assert_eq!(checks.len(), 1);
    assert_eq!((checks[0].node.as_str(), checks[0].service_name.as_str()), (NODE, "Web"));
    assert_eq!(checks[0].status, Status::Critical, "a check starts critical by default");
}

#[test]
fn an_unchanged_registration_keeps_indexes_and_wakes_nobody() {
    let mut fsm = Fsm::with_node();
    fsm.register_service(NODE, "web1", "web");
    let (tables, health_index) =
        (fsm.catalog.tables(), fsm.catalog.service_health("web", &Filter::default(), false).index);
    fsm.catalog.take_touched();

    fsm.register_service(NODE, "web1", "web");

    assert_eq!(fsm.catalog.tables(), tables);
    assert_eq!(fsm.catalog.service_health("web", &Filter::default(), false).index, health_index);
    assert!(fsm.catalog.take_touched().is_empty());
}

#[test]
fn a_check_of_an_unknown_service_is_refused() {
    let mut fsm = Fsm::with_node();
    let check = HealthCheck { check_id: "c".into(), service_id: "ghost".into(), ..Default::default() };

    let response = fsm.register(Registration { node: node(NODE), checks: vec![check], ..Default::default() });

    assert_eq!(response, Response::Error(ApplyError::MissingService));
    assert!(fsm.catalog.node_checks(NODE).value.is_empty());
}

#[test]
fn a_node_id_cannot_alias_another_node() {
    let mut fsm = Fsm::new();
    let id = "8d4c4a52-6b8c-4a8e-9d3f-3a8c9a1f2b11";
    fsm.register(Registration { node: Node { id: id.into(), ..node("n1") }, ..Default::default() });

    let response = fsm.register(Registration { node: Node { id: id.into(), ..node("n2") }, ..Default::default() });

    assert!(matches!(response, Response::Error(ApplyError::Invalid(_))));
    assert!(!fsm.catalog.has_node("n2"));
}

#[test]
fn deregistering_a_service_drops_its_checks_only() {
    let mut fsm = Fsm::with_node();
    fsm.register_service(NODE, "web1", "web");
    fsm.register_check(NODE, "service:web1", "web1", Status::Passing);
    fsm.register_check(NODE, "serfHealth", "", Status::Passing);

    fsm.deregister(NODE, Some("web1"), None);

    assert!(fsm.catalog.service_nodes("web", &Filter::default()).value.is_empty());
    let checks: Vec<String> = fsm.catalog.node_checks(NODE).value.into_iter().map(|c| c.check_id).collect();
    assert_eq!(checks, ["serfHealth"]);
    assert!(fsm.catalog.has_node(NODE));
}

#[test]
fn deregistering_a_node_drops_its_services_and_checks() {
    let mut fsm = Fsm::with_node();
    fsm.register_node("n2");
    fsm.register_service(NODE, "web1", "web");
    fsm.register_service("n2", "web2", "web");
    fsm.register_check(NODE, "serfHealth", "", Status::Passing);

    fsm.deregister(NODE, None, None);

    let instances = fsm.catalog.service_nodes("web", &Filter::default()).value;
    assert_eq!(instances.iter().map(|i| i.service.id.as_str()).collect::<Vec<_>>(), ["web2"]);
    assert!(fsm.catalog.node_checks(NODE).value.is_empty());
    assert!(fsm.catalog.node_services(NODE).value.is_none());
    assert_eq!(fsm.catalog.checks_in_state(None, &Filter::default()).value, vec![]);
}

#[test]
fn deregistering_something_missing_is_a_no_op() {
    let mut fsm = Fsm::with_node();
    let tables = fsm.catalog.tables();

    fsm.deregister("ghost", None, None);
    fsm.deregister(NODE, Some("ghost"), None);
    fsm.deregister(NODE, None, Some("ghost"));

    assert_eq!(fsm.catalog.tables(), tables);
    assert!(fsm.catalog.take_touched().is_empty());
}

#[test]
fn passing_only_drops_an_instance_whose_node_check_is_critical() {
    let mut fsm = Fsm::with_node();
    fsm.register_node("n2");
    fsm.register_service(NODE, "web1", "web");
    fsm.register_service("n2", "web2", "web");
    for n in [NODE, "n2"] {
        fsm.register_check(n, "serfHealth", "", Status::Passing);
    }
    fsm.register_check(NODE, "service:web1", "web1", Status::Passing);
    assert_eq!(fsm.healthy_instances("web"), ["n1/web1", "n2/web2"]);

    fsm.register_check(NODE, "serfHealth", "", Status::Critical);

    assert_eq!(fsm.healthy_instances("web"), ["n2/web2"]);
    assert_eq!(fsm.catalog.service_health("web", &Filter::default(), false).value.len(), 2);
}

#[test]
fn service_health_shows_node_checks_and_only_its_own_service_checks() {
    let mut fsm = Fsm::with_node();
    fsm.register_service(NODE, "web1", "web");
    fsm.register_service(NODE, "db1", "db");
    fsm.register_check(NODE, "serfHealth", "", Status::Passing);
    fsm.register_check(NODE, "service:web1", "web1", Status::Passing);
    fsm.register_check(NODE, "service:db1", "db1", Status::Critical);

    let health = fsm.catalog.service_health("web", &Filter::default(), true).value;

    assert_eq!(health.len(), 1);
    let checks: Vec<&str> = health[0].checks.iter().map(|c| c.check_id.as_str()).collect();
    assert_eq!(checks, ["serfHealth", "service:web1"]);
    assert_eq!(health[0].status(), Status::Passing);
}

// ---------------------------------------------------------------------------------------------
// Snapshots

#[test]
fn snapshot_and_restore_round_trip() {
    let mut fsm = Fsm::with_node();
    fsm.register_service(NODE, "web1", "Web");
    fsm.register_check(NODE, "serfHealth", "", Status::Passing);
    fsm.register_check(NODE, "service:web1", "web1", Status::Warning);
    assert_eq!(fsm.create_session(lock_delay_session("s1", 10_000, Behavior::Release)), Response::Done);
    assert_eq!(fsm.create_session(Session { node_checks: vec!["serfHealth".into()], ..session("s2") }), Response::Done);
    fsm.lock("locked", "1", "s2");
    fsm.lock("delayed", "1", "s1");
    fsm.destroy("s1");
    fsm.set("gone", "1");
    fsm.delete("gone");
    let before = fsm.catalog.snapshot();

    let restored = Catalog::restore(before.clone()).expect("a live catalog's snapshot restores");

    assert_eq!(restored.snapshot(), before);
    assert_eq!(restored.kv_list("").value, fsm.catalog.kv_list("").value);
    let json = serde_json::to_string(&before).expect("snapshots serialise");
    let parsed: CatalogSnapshot = serde_json::from_str(&json).expect("and parse back");
    assert_eq!(parsed, before);
}

#[test]
fn a_restored_catalog_behaves_like_the_original() {
    let mut original = Fsm::with_node();
    original.session("s1");
    original.lock("a", "1", "s1");
    let catalog = Catalog::restore(original.catalog.snapshot()).expect("restores");
    let mut restored = Fsm { catalog, index: original.index, now_ms: original.now_ms };

    original.destroy("s1");
    restored.destroy("s1");

    assert_eq!(restored.catalog.snapshot(), original.catalog.snapshot());
    assert_eq!(restored.entry("a").session, None);
}

#[test]
fn restore_rejects_an_inconsistent_snapshot() {
    let mut fsm = Fsm::with_node();
    fsm.session("s1");
    fsm.lock("a", "1", "s1");
    let mut snap = fsm.catalog.snapshot();
    snap.sessions.clear();

    let restored = Catalog::restore(snap);

    assert!(restored.is_err());
}

// ---------------------------------------------------------------------------------------------
// Query indexes and watch precision

#[test]
fn query_indexes_are_at_least_one_on_an_empty_catalog() {
    let c = Catalog::new();
    let f = Filter::default();

    let indexes = [
        c.kv_get("a").index,
        c.kv_list("").index,
        c.kv_list("a/").index,
        c.kv_keys("", Some("/")).index,
        c.nodes(&f).index,
        c.services(&f).index,
        c.service_nodes("web", &f).index,
        c.service_health("web", &f, true).index,
        c.service_checks("web", &f).index,
        c.node_services("n1").index,
        c.node_checks("n1").index,
        c.checks_in_state(None, &f).index,
        c.session_info("s").index,
        c.session_list().index,
        c.node_sessions("n1").index,
    ];

    assert!(indexes.iter().all(|i| *i >= 1), "{indexes:?}");
}

#[test]
fn kv_answers_carry_their_modify_index() {
    let mut fsm = Fsm::new();
    fsm.set("a/1", "1");
    let a1 = fsm.index;
    fsm.set("a/2", "1");
    let a2 = fsm.index;
    fsm.set("b", "1");

    assert_eq!(fsm.catalog.kv_get("a/1").index, a1);
    assert_eq!(fsm.catalog.kv_list("a/").index, a2);
    assert_eq!(fsm.catalog.kv_list("").index, fsm.index);
    assert_eq!(fsm.catalog.kv_get("missing").index, fsm.index);
}

#[test]
fn a_kv_write_wakes_only_watchers_of_that_key_and_its_prefixes() {
    let mut fsm = Fsm::with_node();
    fsm.set("a", "0");
    fsm.set("b", "0");
    fsm.catalog.take_touched();
    let mut watchers = Watchers::new();
    let on_a = watchers.register(fsm.catalog.kv_get("a").watch).unwrap();
    let on_b = watchers.register(fsm.catalog.kv_get("b").watch).unwrap();
    let on_root = watchers.register(fsm.catalog.kv_list("").watch).unwrap();
    let on_b_prefix = watchers.register(fsm.catalog.kv_list("b").watch).unwrap();
    let on_web = watchers.register(fsm.catalog.service_health("web", &Filter::default(), false).watch).unwrap();

    fsm.set("a", "1");
    let woken = watchers.fire(&fsm.catalog.take_touched());

    assert_eq!(woken, vec![on_a, on_root]);
    for id in [on_b, on_b_prefix, on_web] {
        assert!(!woken.contains(&id));
    }
}

#[test]
fn deletes_wake_watchers_of_the_deleted_keys_only() {
    let mut fsm = Fsm::new();
    for key in ["a", "t/1", "t/2", "u"] {
        fsm.set(key, "1");
    }
    fsm.catalog.take_touched();
    let mut watchers = Watchers::new();
    let on_a = watchers.register(fsm.catalog.kv_get("a").watch).unwrap();
    let on_t1 = watchers.register(fsm.catalog.kv_get("t/1").watch).unwrap();
    let on_t = watchers.register(fsm.catalog.kv_list("t/").watch).unwrap();
    let on_u = watchers.register(fsm.catalog.kv_get("u").watch).unwrap();

    fsm.delete("a");
    let after_delete = watchers.fire(&fsm.catalog.take_touched());
    fsm.delete_tree("t/");
    let after_delete_tree = watchers.fire(&fsm.catalog.take_touched());

    assert_eq!(after_delete, vec![on_a]);
    assert_eq!(after_delete_tree, vec![on_t1, on_t]);
    assert!(!after_delete.contains(&on_u) && !after_delete_tree.contains(&on_u));
}

#[test]
fn destroying_a_session_wakes_the_keys_it_held() {
    let mut fsm = Fsm::with_node();
    fsm.session("s1");
    fsm.lock("a", "1", "s1");
    fsm.set("b", "1");
    fsm.catalog.take_touched();
    let mut watchers = Watchers::new();
    let on_a = watchers.register(fsm.catalog.kv_get("a").watch).unwrap();
    let on_b = watchers.register(fsm.catalog.kv_get("b").watch).unwrap();
    let on_info = watchers.register(fsm.catalog.session_info("s1").watch).unwrap();

    fsm.destroy("s1");
    let woken = watchers.fire(&fsm.catalog.take_touched());

    assert_eq!(woken, vec![on_a, on_info]);
    assert!(!woken.contains(&on_b));
}

#[test]
fn a_check_change_wakes_the_services_of_its_node_only() {
    let mut fsm = Fsm::with_node();
    fsm.register_node("n2");
    fsm.register_service(NODE, "web1", "web");
    fsm.register_service("n2", "db1", "db");
    fsm.catalog.take_touched();
    let mut watchers = Watchers::new();
    let on_web = watchers.register(fsm.catalog.service_health("web", &Filter::default(), false).watch).unwrap();
    let on_db = watchers.register(fsm.catalog.service_health("db", &Filter::default(), false).watch).unwrap();
    let on_kv = watchers.register(fsm.catalog.kv_list("").watch).unwrap();
    let web_index = fsm.catalog.service_health("web", &Filter::default(), false).index;
    let db_index = fsm.catalog.service_health("db", &Filter::default(), false).index;

    fsm.register_check(NODE, "serfHealth", "", Status::Passing);
    let woken = watchers.fire(&fsm.catalog.take_touched());

    assert_eq!(woken, vec![on_web]);
    assert!(!woken.contains(&on_db) && !woken.contains(&on_kv));
    assert!(fsm.catalog.service_health("web", &Filter::default(), false).index > web_index);
    assert_eq!(fsm.catalog.service_health("db", &Filter::default(), false).index, db_index);
}

#[test]
fn a_node_meta_change_wakes_meta_filtered_lists() {
    let mut fsm = Fsm::with_node();
    fsm.register_service(NODE, "web1", "web");
    fsm.register_check(NODE, "serfHealth", "", Status::Passing);
    fsm.catalog.take_touched();
    let filter = Filter { node_meta: vec![("rack".into(), "r1".into())], ..Default::default() };
    let services = fsm.catalog.services(&filter);
    let checks = fsm.catalog.checks_in_state(None, &filter);
    assert!(services.value.is_empty() && checks.value.is_empty());
    let mut watchers = Watchers::new();
    let on_services = watchers.register(services.watch.clone()).unwrap();
    let on_checks = watchers.register(checks.watch.clone()).unwrap();

    let meta = [("rack".to_string(), "r1".to_string())].into_iter().collect();
    fsm.register(Registration { node: Node { meta, ..node(NODE) }, ..Default::default() });
    let woken = watchers.fire(&fsm.catalog.take_touched());

    let (services_after, checks_after) = (fsm.catalog.services(&filter), fsm.catalog.checks_in_state(None, &filter));
    assert_eq!((services_after.value.len(), checks_after.value.len()), (1, 1));
    assert_eq!(woken, vec![on_services, on_checks], "both answers changed, both must wake");
    assert!(services_after.index > services.index && checks_after.index > checks.index, "and their indexes move");
}

#[test]
#[should_panic(expected = "apply index")]
fn apply_indexes_must_increase() {
    let mut fsm = Fsm::new();
    fsm.set("a", "1");

    fsm.catalog.apply(fsm.index, &Request { now_ms: fsm.now_ms, command: Command::Kv(op(KvVerb::Set, "a", "2")) });
}

#[test]
fn a_snapshot_archive_round_trips_and_a_damaged_one_is_refused() {
    let mut fsm = Fsm::with_node();
    fsm.set("a", "1");
    fsm.register_service(NODE, "web1", "web");
    let snap = fsm.catalog.snapshot();
    let archive = snap.to_archive().unwrap();
    assert_eq!(CatalogSnapshot::from_archive(&archive).unwrap(), snap);

    let mut flipped = archive.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x01;
    assert!(CatalogSnapshot::from_archive(&flipped).unwrap_err().contains("checksum"));
    assert!(CatalogSnapshot::from_archive(&archive[..archive.len() - 3]).unwrap_err().contains("truncated"));
    assert!(CatalogSnapshot::from_archive(b"hello").unwrap_err().contains("magic"));
}

#[test]
fn a_restore_replaces_everything_at_its_own_index_and_later_writes_go_on() {
    let mut fsm = Fsm::with_node();
    fsm.set("a", "1");
    fsm.set("b", "1");
    let saved = fsm.catalog.snapshot();
    fsm.set("a", "2");
    fsm.delete("b");
    fsm.set("c", "new");

    assert_eq!(fsm.apply(Command::Restore(Box::new(saved))), Response::Done);
    let restore_index = fsm.index;
    let a = fsm.catalog.kv_get("a").value.unwrap();
    assert_eq!(a.value, b"1");
    assert_eq!((a.create_index, a.modify_index), (restore_index, restore_index));
    assert!(fsm.catalog.kv_get("b").value.is_some());
    assert!(fsm.catalog.kv_get("c").value.is_none());
    assert_eq!(fsm.catalog.last_index(), restore_index);
    assert!(fsm.catalog.node_services(NODE).value.is_some(), "nodes are restored too");

    fsm.set("a", "3");
    assert_eq!(fsm.catalog.kv_get("a").value.unwrap().modify_index, restore_index + 1);
    fsm.catalog.check_invariants();
}

#[test]
fn dns_endpoints_are_the_health_answer_without_the_clones() {
    let mut fsm = Fsm::new();
    for n in ["n1", "n2", "n3"] {
        fsm.register_node(n);
        fsm.register_service(n, "web", "web");
    }
    fsm.register_check("n1", "w1", "web", Status::Passing);
    fsm.register_check("n2", "w2", "web", Status::Warning);
    fsm.register_check("n3", "w3", "web", Status::Passing);
    fsm.register_check("n3", "node-down", "", Status::Critical);
    let filter = Filter::default();
    let health = fsm.catalog.service_health("web", &filter, false);
    let endpoints = fsm.catalog.service_endpoints("web", &filter);
    assert_eq!(endpoints.index, health.index);
    assert_eq!(endpoints.value, health.value.iter().map(Endpoint::from).collect::<Vec<_>>());
    let statuses: Vec<Status> = endpoints.value.iter().map(|e| e.status).collect();
    assert_eq!(statuses, [Status::Passing, Status::Warning, Status::Critical]);
}
