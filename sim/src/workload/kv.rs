//! The CAS-register KV workload (Jepsen's Consul test): clients read, write and compare-and-set
//! a few keys, each key a register; values are unique per key so that a read names the write
//! it saw.
//!
//! Checked by `linearizability` (per key, consistent reads only), `durability` (the final
//! reads after healing, see [`KvRun::settle`]) and `monotonic` (the `X-Consul-Index` of
//! consistent reads never goes backwards per client and key).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use legate_core::catalog::{Command, KvOp, KvVerb, Query, QueryValue, Response};
use legate_runtime::server::{Consistency, QueryOptions, ServerResponse, WriteError};
use madsim::rand::{thread_rng, Rng};

use super::{Ctx, End, Outcome};
use crate::check::{
    self, FinalRead, IndexEvent, Outcome as OpOutcome, Recorder, RegisterInput, RegisterOp, RegisterOutput, Verdict,
};
use crate::scenario::{KvWorkload, ReadMode};
use crate::world::net::ClientCall;

/// The KV workload of one run. Clones share its history.
#[derive(Clone)]
pub struct KvRun {
    spec: KvWorkload,
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    history: Recorder<RegisterInput, RegisterOutput>,
    next_value: BTreeMap<String, u64>,
    index_events: Vec<IndexEvent>,
    final_reads: Option<Vec<FinalRead>>,
}

/// What the KV workload found: its [`Outcome`] plus the linearizability verdict, which may
/// also be "unknown" (the search ran out of budget).
pub struct KvOutcome {
    pub outcome: Outcome,
    pub linearizability: Verdict,
}

impl KvRun {
    pub fn new(spec: &KvWorkload) -> KvRun {
        KvRun { spec: *spec, state: Arc::new(Mutex::new(State::default())) }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn consistency(&self) -> Consistency {
        match self.spec.read_mode {
            ReadMode::Consistent => Consistency::Consistent,
            ReadMode::Default => Consistency::Default,
            ReadMode::Stale => Consistency::Stale,
        }
    }

    /// One client's loop: read, write or CAS (after a read, with the index it returned), in
    /// the spec's proportions, until the run stops.
    pub async fn client(&self, ctx: Ctx) {
        while !ctx.stopped() {
            self.one_op(&ctx).await;
            let think = ctx.think.as_nanos() as u64;
            madsim::time::sleep(Duration::from_nanos(thread_rng().gen_range(0..=2 * think))).await;
        }
    }

    async fn one_op(&self, ctx: &Ctx) {
        let key = key_name(thread_rng().gen_range(0..self.spec.keys as usize));
        let server = ctx.pick_server();
        let mix = self.spec.mix;
        let roll = thread_rng().gen_range(0..mix.read + mix.write + mix.cas);
        let id = ctx.client_id;
        if roll < mix.read {
            let op = self.lock().history.invoke(id, key.clone(), RegisterInput::Read, ctx.now());
            let outcome = match self.read(ctx, server, &key, ctx.call_timeout).await {
                Ok(Some((value, _))) => OpOutcome::Ok(RegisterOutput::Read(value)),
                Ok(None) => OpOutcome::Failed,
                Err(()) => OpOutcome::Indeterminate,
            };
            self.lock().history.complete(op, outcome, ctx.now());
        } else if roll < mix.read + mix.write {
            let value = self.fresh(&key);
            let op = self.lock().history.invoke(id, key.clone(), RegisterInput::Write(value), ctx.now());
            let kv = KvOp { value: value.to_le_bytes().to_vec(), ..KvOp::new(KvVerb::Set, key.clone()) };
            let answer = ctx.client.call(server, ClientCall::Write(Command::Kv(kv)), ctx.call_timeout).await;
            self.lock().history.complete(op, write_outcome(answer), ctx.now());
        } else {
            // Consul's CAS compares ModifyIndex; values are unique per key, so "ModifyIndex i"
            // and "the value the write at i produced" name the same state.
            let Ok(Some((expected, modify_index))) = self.read(ctx, server, &key, ctx.call_timeout).await else {
                return;
            };
            let new = self.fresh(&key);
            let input = RegisterInput::Cas { expected, new };
            let op = self.lock().history.invoke(id, key.clone(), input, ctx.now());
            let mut kv = KvOp { value: new.to_le_bytes().to_vec(), ..KvOp::new(KvVerb::Cas, key.clone()) };
            kv.index = modify_index;
            let answer = ctx.client.call(server, ClientCall::Write(Command::Kv(kv)), ctx.call_timeout).await;
            self.lock().history.complete(op, write_outcome(answer), ctx.now());
        }
    }

    fn fresh(&self, key: &str) -> u64 {
        let mut state = self.lock();
        let v = state.next_value.entry(key.to_string()).or_insert(0);
        *v += 1;
        *v
    }

    /// `Ok(Some((value, modify_index)))`: read; `Ok(None)`: the server refused (no effect);
    /// `Err`: no answer.
    async fn read(
        &self,
        ctx: &Ctx,
        server: usize,
        key: &str,
        timeout: Duration,
    ) -> Result<Option<(Option<u64>, u64)>, ()> {
        let consistency = self.consistency();
        let call = ClientCall::Read {
            opts: QueryOptions { consistency, min_index: 0, wait_ms: None },
            query: Query::KvGet { key: key.to_string() },
        };
        match ctx.client.call(server, call, timeout).await {
            Ok(ServerResponse::Read(r)) => {
                if consistency == Consistency::Consistent {
                    let event = IndexEvent::Observed {
                        client: ctx.client_id,
                        query: format!("kv/{key}"),
                        at: ctx.now(),
                        index: r.answer.index,
                    };
                    self.lock().index_events.push(event);
                }
                match r.answer.value {
                    QueryValue::Kv(Some(entry)) => Ok(Some((Some(decode(&entry.value)), entry.modify_index))),
                    QueryValue::Kv(None) => Ok(Some((None, 0))),
                    _ => Ok(None),
                }
            }
            Ok(_) => Ok(None),
            Err(_) => Err(()),
        }
    }

    /// After the clients stopped and the cluster healed: one consistent read of every key,
    /// retried across servers, for the durability checker.
    pub async fn settle(&self, ctx: Ctx) {
        let reader =
            KvRun { spec: KvWorkload { read_mode: ReadMode::Consistent, ..self.spec }, state: self.state.clone() };
        let mut reads = Vec::new();
        for k in 0..self.spec.keys as usize {
            let key = key_name(k);
            for attempt in 0..20 {
                let invoke = ctx.now();
                if let Ok(Some((value, _))) = reader.read(&ctx, attempt % ctx.servers, &key, ctx.call_timeout).await {
                    reads.push(FinalRead { key: key.clone(), value, invoke });
                    break;
                }
                madsim::time::sleep(Duration::from_millis(500)).await;
            }
        }
        self.lock().final_reads = Some(reads);
    }

    /// Runs the KV checkers over the history.
    pub fn finish(self, end: &End) -> KvOutcome {
        let mut state = self.lock();
        let ops: Vec<RegisterOp> = std::mem::take(&mut state.history).finish(end.observed_until);
        let mut outcome = Outcome { ops: ops.len(), ..Outcome::default() };
        outcome.trace =
            ops.iter().map(|op| format!("{:>10.3}s c{} kv {op}", op.invoke.as_secs_f64(), op.client)).collect();
        outcome.index_events = std::mem::take(&mut state.index_events);
        outcome.liveness_writes =
            super::writes_after_heal(&ops, end.healed_at, |input| !matches!(input, RegisterInput::Read));
        let writes = check::durability::writes_from_register_history(&ops);
        match &state.final_reads {
            Some(reads) if reads.len() == self.spec.keys as usize => {
                outcome.violations.extend(check::durability::check(&writes, reads));
            }
            _ => outcome.violations.push(check::Violation {
                checker: "durability",
                message: "the final reads did not complete after healing".into(),
            }),
        }
        let linearizability =
            if self.spec.read_mode == ReadMode::Consistent { check::linearizability::check(&ops) } else { Verdict::Ok };
        KvOutcome { outcome, linearizability }
    }
}

/// The name of register `i`.
pub fn key_name(i: usize) -> String {
    format!("register/{i}")
}

fn decode(bytes: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = bytes.len().min(8);
    b[..n].copy_from_slice(&bytes[..n]);
    u64::from_le_bytes(b)
}

/// Maps a write's answer to an outcome: only answers that prove nothing was applied are
/// `Failed`; lost answers and errors after a proposal are indeterminate.
pub fn write_outcome(answer: Result<ServerResponse, String>) -> OpOutcome<RegisterOutput> {
    match answer {
        Ok(ServerResponse::Written(Response::Bool(true))) => OpOutcome::Ok(RegisterOutput::Written),
        Ok(ServerResponse::Written(Response::Bool(false))) => OpOutcome::Failed,
        Ok(ServerResponse::WriteFailed(WriteError::NoLeader)) => OpOutcome::Failed,
        Ok(_) | Err(_) => OpOutcome::Indeterminate,
    }
}
