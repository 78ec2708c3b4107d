//! The transaction workload (`/v1/txn`): clients send write transactions of `ops_per_txn`
//! `set` operations on distinct random keys `txn/<i>`, and read-only transactions that `get`
//! every key (`get-or-empty`, so that absent keys read as empty rather than failing the whole
//! transaction; at most the server's 128 operations, a random window of the keys when there
//! are more), `?consistent`.
//!
//! Every write transaction writes one value to all its keys, `t<n>`, unique to the
//! transaction, so a read names the transaction whose write it shows. The workload never
//! deletes a key, so a key's `ModifyIndex` only grows.
//!
//! # What the checkers assert, and why they are sound
//!
//! `txn_atomicity` (all or nothing, one Raft entry per transaction):
//!
//! - A committed write transaction answers one result per `set`, for the keys asked, all with
//!   the same `ModifyIndex`: the whole transaction is one log entry, applied at one index.
//! - In a read, key `a` showing transaction `T`'s value at index `i`: `T` must exist, must not
//!   have been answered as failed (a rolled-back transaction, a refusal by the catalog or `No
//!   cluster leader` from the router applies nothing), must have written `a`, and `i` must be
//!   `T`'s index (its answer's, and the same in every read that shows `T`). Every other key `b`
//!   of `T` in the same read must show `ModifyIndex ≥ i` — after entry `i` is applied, `b` was
//!   last written at `i` or later, and indexes never go down — and if exactly `i`, `T`'s value
//!   (entry `i` is `T` alone). A read-only transaction reads one state of the catalog, so a key
//!   of `T` with an older index means `T` was seen half applied.
//!
//! `txn_realtime` (read transactions are `?consistent`, hence linearizable):
//!
//! - A read shows no transaction invoked after the read completed.
//! - Per key, a read invoked after some operation completed — a committed write transaction of
//!   that key (index known from its answer) or another read of it — shows a `ModifyIndex` at
//!   least that operation's: the state the read sees contains every entry applied before it
//!   began, and a key's index never decreases.
//!
//! Each rule states a fact of every correct execution (including indeterminate writes, which
//! only ever appear through reads), so a correct server never fails them; a torn transaction,
//! a visible rollback, or a stale `?consistent` read does.
//!
//! Also recorded: the `X-Consul-Index` of every read transaction (checker `monotonic`), and the
//! write transactions invoked after the heal (`liveness`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use legate_core::catalog::{Command, KvOp, KvVerb, Query, QueryValue, Response, TxnOp, TxnOutcome, TxnResult};
use legate_runtime::server::{Consistency, QueryOptions, ServerResponse, WriteError};
use madsim::rand::{thread_rng, Rng};

use super::{Ctx, End, Outcome};
use crate::check::{IndexEvent, Op, Outcome as OpOutcome, Recorder, Violation, Violations};
use crate::scenario::TxnWorkload;
use crate::world::net::ClientCall;
use crate::world::Observer;

/// Checker names of this workload's violations.
pub const ATOMICITY: &str = "txn_atomicity";
pub const REALTIME: &str = "txn_realtime";

/// The most operations of one transaction (the server's limit).
const OPS_MAX: usize = legate_core::limits::TXN_OPS_MAX;

/// A request of the txn workload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxnInput {
    /// A transaction of `set`s of value `t<txn>` on these keys (distinct).
    Write { txn: u64, keys: Vec<String> },
    /// A read-only transaction of `get-or-empty` on these keys.
    Read { keys: Vec<String> },
}

/// What a successful request returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxnOutput {
    /// Committed: (key, ModifyIndex) of each result, in order.
    Written(Vec<(String, u64)>),
    /// The entries read, in order.
    Read(Vec<ReadEntry>),
}

/// One key as a read transaction showed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadEntry {
    pub key: String,
    /// The value as text; `None` when empty (an absent key).
    pub value: Option<String>,
    pub modify_index: u64,
}

/// One request of the txn workload.
pub type TxnOpRecord = Op<TxnInput, TxnOutput>;

/// The name of key `i`.
pub fn key_name(i: usize) -> String {
    format!("txn/{i}")
}

fn value_of(txn: u64) -> String {
    format!("t{txn}")
}

fn txn_of(value: &str) -> Option<u64> {
    value.strip_prefix('t')?.parse().ok()
}

/// The txn workload of one run. Clones share its history.
#[derive(Clone)]
pub struct TxnRun {
    spec: TxnWorkload,
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    history: Recorder<TxnInput, TxnOutput>,
    next_txn: u64,
    index_events: Vec<IndexEvent>,
}

impl TxnRun {
    pub fn new(spec: &TxnWorkload) -> TxnRun {
        TxnRun { spec: *spec, state: Arc::new(Mutex::new(State::default())) }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Nothing to observe on the servers: the checkers need only the clients' history.
    pub async fn observe(&self, _observer: Observer, _ctx: Ctx) {}

    /// One client: write and read transactions, half and half, until the run stops.
    pub async fn client(&self, ctx: Ctx) {
        while !ctx.stopped() {
            if thread_rng().gen_bool(0.5) {
                self.write(&ctx).await;
            } else {
                self.read(&ctx).await;
            }
            let think = ctx.think.as_nanos() as u64;
            madsim::time::sleep(Duration::from_nanos(thread_rng().gen_range(0..=2 * think))).await;
        }
    }

    async fn write(&self, ctx: &Ctx) {
        let keys = self.spec.keys as usize;
        let n = (self.spec.ops_per_txn as usize).clamp(1, OPS_MAX).min(keys);
        // The first n of a partial Fisher–Yates shuffle: n distinct keys.
        let mut order: Vec<usize> = (0..keys).collect();
        for i in 0..n {
            let j = thread_rng().gen_range(i..keys);
            order.swap(i, j);
        }
        let keys: Vec<String> = order[..n].iter().map(|&i| key_name(i)).collect();
        let (op, txn) = {
            let mut state = self.lock();
            state.next_txn += 1;
            let txn = state.next_txn;
            let input = TxnInput::Write { txn, keys: keys.clone() };
            (state.history.invoke(ctx.client_id, "txn/write", input, ctx.now()), txn)
        };
        let value = value_of(txn).into_bytes();
        let ops = keys
            .iter()
            .map(|k| TxnOp::Kv(KvOp { value: value.clone(), ..KvOp::new(KvVerb::Set, k.clone()) }))
            .collect();
        let answer = ctx.client.call(ctx.pick_server(), ClientCall::Write(Command::Txn(ops)), ctx.call_timeout).await;
        let outcome = match answer {
            Ok(ServerResponse::Written(Response::Txn(TxnOutcome::Committed(results)))) => {
                OpOutcome::Ok(TxnOutput::Written(
                    results
                        .into_iter()
                        .map(|r| {
                            let TxnResult::Kv(e) = r;
                            (e.key, e.modify_index)
                        })
                        .collect(),
                ))
            }
            // Rolled back, refused by the catalog, or refused by the router: nothing applied.
            Ok(ServerResponse::Written(Response::Txn(TxnOutcome::RolledBack(_)))) => OpOutcome::Failed,
            Ok(ServerResponse::Written(Response::Error(_))) => OpOutcome::Failed,
            Ok(ServerResponse::WriteFailed(WriteError::NoLeader)) => OpOutcome::Failed,
            _ => OpOutcome::Indeterminate,
        };
        self.lock().history.complete(op, outcome, ctx.now());
    }

    async fn read(&self, ctx: &Ctx) {
        let total = self.spec.keys as usize;
        let keys: Vec<String> = if total <= OPS_MAX {
            (0..total).map(key_name).collect()
        } else {
            let first = thread_rng().gen_range(0..total);
            (0..OPS_MAX).map(|k| key_name((first + k) % total)).collect()
        };
        let input = TxnInput::Read { keys: keys.clone() };
        let op = self.lock().history.invoke(ctx.client_id, "txn/read", input, ctx.now());
        let ops = keys.iter().map(|k| TxnOp::Kv(KvOp::new(KvVerb::GetOrEmpty, k.clone()))).collect();
        let call = ClientCall::Read {
            opts: QueryOptions { consistency: Consistency::Consistent, min_index: 0, wait_ms: None },
            query: Query::ReadTxn { ops },
        };
        let answer = ctx.client.call(ctx.pick_server(), call, ctx.call_timeout).await;
        let now = ctx.now();
        let mut state = self.lock();
        let outcome = match answer {
            Ok(ServerResponse::Read(r)) => match r.answer.value {
                QueryValue::Txn(TxnOutcome::Committed(results)) => {
                    state.index_events.push(IndexEvent::Observed {
                        client: ctx.client_id,
                        query: "txn/read".into(),
                        at: now,
                        index: r.answer.index,
                    });
                    let entries = results
                        .into_iter()
                        .map(|r| {
                            let TxnResult::Kv(e) = r;
                            let value = (!e.value.is_empty()).then(|| String::from_utf8_lossy(&e.value).into_owned());
                            ReadEntry { key: e.key, value, modify_index: e.modify_index }
                        })
                        .collect();
                    OpOutcome::Ok(TxnOutput::Read(entries))
                }
                _ => OpOutcome::Failed,
            },
            // A read changes nothing: an unanswered or refused one is simply no observation.
            _ => OpOutcome::Failed,
        };
        state.history.complete(op, outcome, now);
    }

    /// Runs `txn_atomicity` and `txn_realtime` over the history.
    pub fn finish(self, end: &End) -> Outcome {
        let mut state = self.lock();
        let ops: Vec<TxnOpRecord> = std::mem::take(&mut state.history).finish(end.observed_until);
        let mut outcome = Outcome { ops: ops.len(), ..Outcome::default() };
        outcome.trace =
            ops.iter().map(|op| format!("{:>10.3}s c{} txn {op}", op.invoke.as_secs_f64(), op.client)).collect();
        outcome.index_events = std::mem::take(&mut state.index_events);
        outcome.liveness_writes =
            super::writes_after_heal(&ops, end.healed_at, |input| matches!(input, TxnInput::Write { .. }));
        outcome.violations = check(&ops);
        outcome
    }
}

/// Runs both txn checks (module docs).
pub fn check(ops: &[TxnOpRecord]) -> Vec<Violation> {
    let mut atomicity = Violations::new(ATOMICITY);
    let mut realtime = Violations::new(REALTIME);

    // Write transactions by number, and the index each committed one answered.
    let mut txns: BTreeMap<u64, usize> = BTreeMap::new();
    let mut index_of: BTreeMap<usize, u64> = BTreeMap::new();
    for (i, op) in ops.iter().enumerate() {
        let TxnInput::Write { txn, keys } = &op.input else {
            continue;
        };
        txns.insert(*txn, i);
        let Some(TxnOutput::Written(results)) = op.ok() else {
            continue;
        };
        let result_keys: Vec<&str> = results.iter().map(|(k, _)| k.as_str()).collect();
        let asked: Vec<&str> = keys.iter().map(String::as_str).collect();
        let indexes: BTreeSet<u64> = results.iter().map(|(_, i)| *i).collect();
        if result_keys != asked {
            atomicity.push(format!("write #{i} {op} answered results for keys {result_keys:?}, not {asked:?}"));
        }
        match indexes.iter().collect::<Vec<_>>()[..] {
            [&index] if index > 0 => {
                index_of.insert(i, index);
            }
            _ => atomicity.push(format!(
                "write #{i} {op} answered ModifyIndexes {indexes:?}: one transaction is one Raft entry, one index"
            )),
        }
    }

    // Per transaction, the indexes reads showed it at (index → first read showing it).
    let mut seen_at: BTreeMap<u64, BTreeMap<u64, usize>> = BTreeMap::new();
    for (r, read) in ops.iter().enumerate() {
        let Some(TxnOutput::Read(entries)) = read.ok() else {
            continue;
        };
        let by_key: BTreeMap<&str, &ReadEntry> = entries.iter().map(|e| (e.key.as_str(), e)).collect();
        for e in entries {
            let Some(value) = &e.value else {
                if e.modify_index != 0 {
                    atomicity.push(format!(
                        "read #{r} {read} shows key {:?} empty at ModifyIndex {}, though every write of this \
                         workload has a value",
                        e.key, e.modify_index
                    ));
                }
                continue;
            };
            let Some(&w) = txn_of(value).and_then(|t| txns.get(&t)) else {
                atomicity.push(format!(
                    "read #{r} {read} shows key {:?} = {value:?}, which no transaction of this workload wrote",
                    e.key
                ));
                continue;
            };
            let write = &ops[w];
            let TxnInput::Write { txn, keys } = &write.input else {
                unreachable!("txns maps to writes");
            };
            if write.is_failed() {
                atomicity.push(format!(
                    "read #{r} {read} shows key {:?} written by transaction #{w} {write}, which was answered as \
                     failed (nothing applied)",
                    e.key
                ));
                continue;
            }
            if write.invoke > read.complete {
                realtime.push(format!(
                    "read #{r} {read} shows key {:?} written by transaction #{w} {write}, invoked only after the \
                     read completed",
                    e.key
                ));
                continue;
            }
            if !keys.contains(&e.key) {
                atomicity.push(format!(
                    "read #{r} {read} shows key {:?} with the value of transaction #{w} {write}, which did not \
                     write it",
                    e.key
                ));
                continue;
            }
            let at = e.modify_index;
            seen_at.entry(*txn).or_default().entry(at).or_insert(r);
            if let Some(&index) = index_of.get(&w) {
                if index != at {
                    atomicity.push(format!(
                        "read #{r} {read} shows key {:?} written by transaction #{w} {write} at ModifyIndex {at}, \
                         but the transaction committed at {index}",
                        e.key
                    ));
                }
            }
            for b in keys.iter().filter(|b| **b != e.key) {
                let Some(other) = by_key.get(b.as_str()) else {
                    continue;
                };
                if other.modify_index < at || (other.modify_index == at && other.value.as_deref() != Some(value)) {
                    atomicity.push(format!(
                        "read #{r} {read} shows transaction #{w} {write} half applied: key {:?} has its value at \
                         ModifyIndex {at}, but key {b:?} shows {:?} at ModifyIndex {}",
                        e.key, other.value, other.modify_index
                    ));
                    // One report per (read, transaction) is enough.
                    break;
                }
            }
        }
    }
    for (txn, indexes) in &seen_at {
        if indexes.len() > 1 {
            let w = txns[txn];
            let shown: Vec<String> = indexes.iter().map(|(i, r)| format!("{i} (read #{r})")).collect();
            atomicity.push(format!(
                "transaction #{w} {} is shown at several ModifyIndexes: {}; one transaction is one Raft entry",
                ops[w],
                shown.join(", ")
            ));
        }
    }

    // Real time: per key, what a read shows is at least what any operation that completed
    // before the read began saw or wrote. (complete, index, op) per key.
    let mut facts: BTreeMap<&str, Vec<(Duration, u64, usize)>> = BTreeMap::new();
    for (i, op) in ops.iter().enumerate() {
        match op.ok() {
            Some(TxnOutput::Written(results)) => {
                if let Some(&index) = index_of.get(&i) {
                    for (k, _) in results {
                        facts.entry(k.as_str()).or_default().push((op.complete, index, i));
                    }
                }
            }
            Some(TxnOutput::Read(entries)) => {
                for e in entries {
                    facts.entry(e.key.as_str()).or_default().push((op.complete, e.modify_index, i));
                }
            }
            None => {}
        }
    }
    // Per key: completion times in order, and the running maximum (index, op) up to each.
    type Running = (Vec<Duration>, Vec<(u64, usize)>);
    let mut prefix_max: BTreeMap<&str, Running> = BTreeMap::new();
    for (key, mut list) in facts {
        list.sort();
        let mut best = (0, usize::MAX);
        let mut times = Vec::with_capacity(list.len());
        let mut maxima = Vec::with_capacity(list.len());
        for (complete, index, op) in list {
            if index > best.0 {
                best = (index, op);
            }
            times.push(complete);
            maxima.push(best);
        }
        prefix_max.insert(key, (times, maxima));
    }
    for (r, read) in ops.iter().enumerate() {
        let Some(TxnOutput::Read(entries)) = read.ok() else {
            continue;
        };
        for e in entries {
            let Some((times, maxima)) = prefix_max.get(e.key.as_str()) else {
                continue;
            };
            let before = times.partition_point(|t| *t < read.invoke);
            if before == 0 {
                continue;
            }
            let (index, by) = maxima[before - 1];
            if index > e.modify_index {
                realtime.push(format!(
                    "read #{r} {read} shows key {:?} at ModifyIndex {}, but op #{by} {} completed before the read \
                     began and saw or wrote it at {index}: a stale read",
                    e.key, e.modify_index, ops[by]
                ));
            }
        }
    }

    let mut out = atomicity.finish();
    out.extend(realtime.finish());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn keys(list: &[usize]) -> Vec<String> {
        list.iter().map(|&k| key_name(k)).collect()
    }

    fn write(txn: u64, on: &[usize], from: u64, to: u64, index: Option<u64>) -> TxnOpRecord {
        let outcome = match index {
            Some(i) => OpOutcome::Ok(TxnOutput::Written(keys(on).into_iter().map(|k| (k, i)).collect())),
            None => OpOutcome::Indeterminate,
        };
        Op {
            client: 1,
            key: "txn/write".into(),
            input: TxnInput::Write { txn, keys: keys(on) },
            invoke: ms(from),
            complete: ms(to),
            outcome,
        }
    }

    /// `shown`: per key 0..n, (txn, index) or None for absent.
    fn read(from: u64, to: u64, shown: &[Option<(u64, u64)>]) -> TxnOpRecord {
        let entries = shown
            .iter()
            .enumerate()
            .map(|(k, s)| ReadEntry {
                key: key_name(k),
                value: s.map(|(t, _)| value_of(t)),
                modify_index: s.map_or(0, |(_, i)| i),
            })
            .collect();
        Op {
            client: 2,
            key: "txn/read".into(),
            input: TxnInput::Read { keys: keys(&(0..shown.len()).collect::<Vec<_>>()) },
            invoke: ms(from),
            complete: ms(to),
            outcome: OpOutcome::Ok(TxnOutput::Read(entries)),
        }
    }

    #[test]
    fn atomic_fresh_reads_pass() {
        let ops = vec![
            read(0, 5, &[None, None, None]),
            write(1, &[0, 1], 0, 10, Some(5)),
            write(2, &[1, 2], 20, 100, None),
            read(30, 40, &[Some((1, 5)), Some((1, 5)), None]),
            read(50, 60, &[Some((1, 5)), Some((2, 8)), Some((2, 8))]),
            read(70, 80, &[Some((1, 5)), Some((2, 8)), Some((2, 8))]),
        ];
        assert_eq!(check(&ops), Vec::new());
    }

    #[test]
    fn a_half_applied_transaction_is_reported() {
        let ops = vec![write(1, &[0, 1], 0, 10, None), read(20, 30, &[Some((1, 5)), None])];
        let v = check(&ops);
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].checker, ATOMICITY);
        assert!(v[0].message.contains("half applied"), "{v:?}");
    }

    #[test]
    fn a_failed_transaction_must_stay_invisible() {
        let mut failed = write(1, &[0], 0, 10, None);
        failed.outcome = OpOutcome::Failed;
        let v = check(&[failed, read(20, 30, &[Some((1, 5))])]);
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].message.contains("answered as failed"), "{v:?}");
    }

    #[test]
    fn a_transaction_with_several_indexes_is_reported() {
        let mut w = write(1, &[0, 1], 0, 10, Some(5));
        w.outcome = OpOutcome::Ok(TxnOutput::Written(vec![(key_name(0), 5), (key_name(1), 6)]));
        let v = check(&[w, read(20, 30, &[Some((1, 5)), Some((1, 7))])]);
        let text: Vec<&str> = v.iter().map(|v| v.message.as_str()).collect();
        assert!(text.iter().any(|t| t.contains("answered ModifyIndexes")), "{text:#?}");
        assert!(text.iter().any(|t| t.contains("several ModifyIndexes")), "{text:#?}");
    }

    #[test]
    fn stale_reads_are_reported() {
        // After an acknowledged write, and after another read saw it.
        let after_write = vec![write(1, &[0], 0, 10, Some(5)), read(20, 30, &[None])];
        let v = check(&after_write);
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].checker, REALTIME);
        let after_read = vec![write(1, &[0], 0, 100, None), read(20, 30, &[Some((1, 5))]), read(40, 50, &[None])];
        let v = check(&after_read);
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].message.contains("read #2"), "{v:?}");
        // Overlapping reads may disagree.
        let concurrent = vec![write(1, &[0], 0, 100, None), read(20, 30, &[Some((1, 5))]), read(25, 50, &[None])];
        assert_eq!(check(&concurrent), Vec::new());
    }

    #[test]
    fn a_read_from_the_future_is_reported() {
        let v = check(&[read(0, 10, &[Some((1, 5))]), write(1, &[0], 20, 30, Some(5))]);
        assert!(v.iter().any(|v| v.checker == REALTIME && v.message.contains("invoked only after")), "{v:?}");
    }
}
