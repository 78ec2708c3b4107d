//! Benchmarks of the catalog state machine and of blocking-query wake-ups.
//!
//! * `apply/kv_set`: one KV set applied to a catalog of 10,000 keys.
//! * `apply/txn_64_sets`: one transaction of 64 KV sets on the same catalog.
//! * `wake/exact/N`, `wake/prefix/N`: with N watchers waiting on distinct keys (or distinct
//!   prefixes), one KV write to a watched key, `take_touched` and `Watchers::fire`. Exactly one
//!   watcher wakes; the figures should stay flat as N grows, because `fire` never visits
//!   unrelated watchers (see `legate_core::watch`).
//!
//! Every write changes its key's value (a write that changes nothing wakes nobody) and is
//! applied at a strictly increasing index kept outside the measured closure. The catalog is the
//! same for every N, and the writes cycle over the same number of keys ([`WAKE_TARGETS`]), so
//! only the number of watchers varies: cycling over all N keys would also grow the working set
//! of catalog nodes, and measure the CPU cache rather than the registry.
//!
//! Run with `cargo bench -p legate-core --bench fsm`; `cargo test --benches` runs each once.

use std::cell::RefCell;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use legate_core::catalog::{Catalog, Command, KvOp, KvVerb, Request, Response, TxnOp, TxnOutcome};
use legate_core::limits;
use legate_core::watch::{WatchKey, WatcherId, Watchers};

/// Keys in the catalog before any measured write.
const CATALOG_KEYS: usize = 10_000;
/// Operations in the benchmarked transaction.
const TXN_OPS: usize = 64;
/// Watcher counts of the wake-up groups.
const WATCHER_COUNTS: [usize; 3] = [10, 1_000, 10_000];
/// Watched keys the wake-up writes cycle over, spread evenly among the N watched ones.
const WAKE_TARGETS: usize = 10;
/// The leader's stamp on every request; nothing here is time-dependent.
const NOW_MS: u64 = 1_700_000_000_000;

const _: () = assert!(TXN_OPS <= limits::TXN_OPS_MAX);
const _: () = assert!(WATCHER_COUNTS[WATCHER_COUNTS.len() - 1] <= CATALOG_KEYS);
const _: () = assert!(WATCHER_COUNTS[0] >= WAKE_TARGETS);

/// The `i`th key of the catalog; each lives under its own prefix ([`prefix_name`]).
fn key_name(i: usize) -> String {
    format!("app/{i:05}/config")
}

/// A prefix holding exactly one catalog key, `key_name(i)`, and no other.
fn prefix_name(i: usize) -> String {
    format!("app/{i:05}/")
}

/// A set of `key` to a value that differs for every `write`, so that the write is never a no-op.
fn set_op(key: String, write: u64) -> KvOp {
    KvOp { verb: KvVerb::Set, key, value: write.to_le_bytes().to_vec(), flags: 0, index: 0, session: String::new() }
}

fn request(command: Command) -> Request {
    Request { now_ms: NOW_MS, command }
}

/// A catalog holding `key_name(i)` for every `i < CATALOG_KEYS`, filled by the largest
/// transactions allowed (so debug builds check invariants only once per transaction).
fn filled_catalog() -> Catalog {
    let mut catalog = Catalog::new();
    let keys: Vec<usize> = (0..CATALOG_KEYS).collect();
    for chunk in keys.chunks(limits::TXN_OPS_MAX) {
        let ops = chunk.iter().map(|&i| TxnOp::Kv(set_op(key_name(i), 0))).collect();
        let index = catalog.last_index() + 1;
        let response = catalog.apply(index, &request(Command::Txn(ops)));
        assert!(matches!(response, Response::Txn(TxnOutcome::Committed(_))), "prefill failed: {response:?}");
    }
    catalog.take_touched();
    assert_eq!(catalog.kv_list("app/").value.len(), CATALOG_KEYS);
    catalog
}

fn bench_apply(c: &mut Criterion) {
    let filled = filled_catalog();
    let mut group = c.benchmark_group("apply");

    group.throughput(Throughput::Elements(1));
    group.bench_function("kv_set", |b| {
        let mut catalog = filled.clone();
        let mut index = catalog.last_index();
        let mut write: u64 = 0;
        b.iter_batched(
            || {
                index += 1;
                write += 1;
                let key = key_name(write as usize % CATALOG_KEYS);
                (index, request(Command::Kv(set_op(key, write))))
            },
            |(index, request)| {
                let response = catalog.apply(index, &request);
                assert!(matches!(response, Response::Bool(true)));
                // Returned so that dropping them falls outside the measurement.
                (response, catalog.take_touched())
            },
            BatchSize::SmallInput,
        );
    });

    group.throughput(Throughput::Elements(TXN_OPS as u64));
    group.bench_function(format!("txn_{TXN_OPS}_sets"), |b| {
        let mut catalog = filled.clone();
        let mut index = catalog.last_index();
        let mut write: u64 = 0;
        b.iter_batched(
            || {
                index += 1;
                write += 1;
                let first = write as usize * TXN_OPS;
                let ops =
                    (0..TXN_OPS).map(|j| TxnOp::Kv(set_op(key_name((first + j) % CATALOG_KEYS), write))).collect();
                (index, request(Command::Txn(ops)))
            },
            |(index, request)| {
                let response = catalog.apply(index, &request);
                assert!(matches!(&response, Response::Txn(TxnOutcome::Committed(r)) if r.len() == TXN_OPS));
                (response, catalog.take_touched())
            },
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

/// What the watchers of a wake-up bench wait on.
#[derive(Clone, Copy, Debug)]
enum WatchOn {
    /// `kv_get(key_name(i))`: an exact key.
    Key,
    /// `kv_list(prefix_name(i))`: a prefix holding one key.
    Prefix,
}

/// N watchers, each on its own target, and the catalog whose writes wake them.
struct WakeBench {
    catalog: Catalog,
    watchers: Watchers,
    /// Per target `i < N`: the watch set a blocking query on it registers.
    watch_sets: Vec<Vec<WatchKey>>,
    /// Per target: the watcher currently waiting on it.
    ids: Vec<WatcherId>,
    /// The target whose watcher the last write woke; it waits again before the next write.
    woken: Option<usize>,
    index: u64,
    writes: u64,
}

impl WakeBench {
    fn new(catalog: Catalog, watch_on: WatchOn, n: usize) -> Self {
        let watch_sets: Vec<Vec<WatchKey>> = (0..n)
            .map(|i| match watch_on {
                WatchOn::Key => catalog.kv_get(&key_name(i)).watch,
                WatchOn::Prefix => catalog.kv_list(&prefix_name(i)).watch,
            })
            .collect();
        let mut watchers = Watchers::new();
        let ids = watch_sets.iter().map(|set| watchers.register(set.clone()).expect("below WATCHERS_MAX")).collect();
        watchers.check_invariants();
        assert_eq!(watchers.len(), n);
        let index = catalog.last_index();
        WakeBench { catalog, watchers, watch_sets, ids, woken: None, index, writes: 0 }
    }

    /// Unmeasured: the last woken query waits again, and the next write is built.
    fn prepare(&mut self) -> (u64, usize, Request) {
        if let Some(i) = self.woken.take() {
            self.ids[i] = self.watchers.register(self.watch_sets[i].clone()).expect("below WATCHERS_MAX");
        }
        assert_eq!(self.watchers.len(), self.ids.len(), "every target has one watcher waiting");
        self.index += 1;
        self.writes += 1;
        let n = self.ids.len();
        let target = (self.writes as usize % WAKE_TARGETS) * (n / WAKE_TARGETS);
        (self.index, target, request(Command::Kv(set_op(key_name(target), self.writes))))
    }

    /// Measured: apply the write, drain what it touched, wake whoever waits on it.
    fn write_and_wake(
        &mut self,
        index: u64,
        target: usize,
        request: &Request,
    ) -> (Response, Vec<WatchKey>, Vec<WatcherId>) {
        let response = self.catalog.apply(index, request);
        let touched = self.catalog.take_touched();
        let woken = self.watchers.fire(&touched);
        assert_eq!(woken, [self.ids[target]], "exactly the target's watcher wakes");
        self.woken = Some(target);
        (response, touched, woken)
    }
}

fn bench_wake(c: &mut Criterion) {
    let filled = filled_catalog();
    for (name, watch_on) in [("exact", WatchOn::Key), ("prefix", WatchOn::Prefix)] {
        let mut group = c.benchmark_group(format!("wake/{name}"));
        for n in WATCHER_COUNTS {
            group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| {
                // Setup and routine both need the state; they never run at the same time.
                let state = RefCell::new(WakeBench::new(filled.clone(), watch_on, n));
                b.iter_batched(
                    || state.borrow_mut().prepare(),
                    |(index, target, request)| state.borrow_mut().write_and_wake(index, target, &request),
                    // One setup per routine: the woken watcher must wait again before the
                    // next write, which may target it.
                    BatchSize::PerIteration,
                );
            });
        }
        group.finish();
    }
}

fn config() -> Criterion {
    Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3)).sample_size(50)
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_apply, bench_wake
}
criterion_main!(benches);
