//! Blocking-query wake-ups are complete and precise (`/work/shared/consul-compat.md`,
//! "Blocking queries": wake a watcher only when *its* result may have changed).
//!
//! A watcher waits on every `kv_get` of a key and every `kv_list` of a prefix, registered with
//! its answer's watch set. After each step of a random workload, the keys the apply touched
//! fire the [`Watchers`]. Then:
//! * no missed wake-up: every query whose answer changed was fired;
//! * no wake for nothing: every fired query's answer (value or index) changed, and a
//!   `kv_get` watcher fires only if the step could write its key;
//! * watchers of services and nodes never fire on KV and session steps.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{Driver, KvStep, Op, KEYS, PREFIXES, SESSIONS};
use legate_core::catalog::{Answer, Catalog, KvEntry, KvVerb, Response, TxnOutcome};
use legate_core::watch::{WatchKey, WatcherId, Watchers};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Query {
    Get(&'static str),
    List(&'static str),
}

impl Query {
    fn ask(self, c: &Catalog) -> Answer<Vec<KvEntry>> {
        match self {
            Query::Get(key) => c.kv_get(key).map(|e| e.into_iter().collect()),
            Query::List(prefix) => c.kv_list(prefix),
        }
    }
}

/// A registered query and the answer it waits to see change.
struct Waiting {
    id: WatcherId,
    seen: Answer<Vec<KvEntry>>,
}

fn wait(watchers: &mut Watchers, c: &Catalog, query: Query) -> Waiting {
    let seen = query.ask(c);
    let id = watchers.register(seen.watch.clone()).expect("far below the watcher limit");
    Waiting { id, seen }
}

/// Whether a KV step can change `key`.
fn writes(step: &KvStep, key: &str) -> bool {
    match step.verb {
        KvVerb::DeleteTree => key.starts_with(PREFIXES[step.prefix]),
        verb if verb.is_write() => key == KEYS[step.key],
        _ => false,
    }
}

/// Whether the step can change `key`, given who held each key before it.
fn may_write(op: &Op, response: &Option<Response>, holders: &BTreeMap<String, String>, key: &str) -> bool {
    match op {
        Op::Kv(step) => writes(step, key),
        Op::Txn(steps) => {
            let committed = matches!(response, Some(Response::Txn(TxnOutcome::Committed(_))));
            committed && steps.iter().any(|s| writes(s, key))
        }
        Op::SessionDestroy { session } => holders.get(key).map(String::as_str) == Some(SESSIONS[*session]),
        Op::SessionCreate { .. } | Op::Advance { .. } | Op::ReapTombstones { .. } | Op::Noop => false,
    }
}

fn run(ops: &[Op]) -> Result<(), TestCaseError> {
    let mut fsm = Driver::new();
    let mut watchers = Watchers::new();
    let queries = KEYS.map(Query::Get).into_iter().chain(PREFIXES.map(Query::List));
    let mut waiting: BTreeMap<Query, Waiting> = queries.map(|q| (q, wait(&mut watchers, &fsm.catalog, q))).collect();
    let bystanders: Vec<WatcherId> = [WatchKey::Service("web".into()), WatchKey::Nodes, WatchKey::Node("n1".into())]
        .into_iter()
        .map(|key| watchers.register(vec![key]).expect("room"))
        .collect();

    for (n, op) in ops.iter().enumerate() {
        let step = op.resolve(&|key| fsm.modify_of(key));
        let holders: BTreeMap<String, String> =
            fsm.catalog.kv_list("").value.into_iter().filter_map(|e| Some((e.key, e.session?))).collect();

        let response = fsm.step(&step);
        let fired: BTreeSet<WatcherId> = watchers.fire(&fsm.catalog.take_touched()).into_iter().collect();

        watchers.check_invariants();
        for id in &bystanders {
            prop_assert!(!fired.contains(id), "step {} {:?} woke a service or node watcher", n, op);
        }
        for (query, w) in waiting.iter_mut() {
            let now = query.ask(&fsm.catalog);
            let woken = fired.contains(&w.id);
            if now.value != w.seen.value {
                prop_assert!(woken, "missed wake-up of {:?} at step {} {:?}: {:?} -> {:?}", query, n, op, w.seen, now);
            }
            if !woken {
                continue;
            }
            prop_assert!(
                now.value != w.seen.value || now.index != w.seen.index,
                "{:?} woken for nothing at step {} {:?}",
                query,
                n,
                op
            );
            if let Query::Get(key) = query {
                prop_assert!(
                    may_write(op, &response, &holders, key),
                    "kv_get({:?}) woken by step {} {:?}, which cannot write it",
                    key,
                    n,
                    op
                );
            }
            *w = wait(&mut watchers, &fsm.catalog, *query);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn every_changed_answer_wakes_and_no_other(ops in common::workload()) {
        run(&ops)?;
    }
}
