//! The CAS-register KV workload (Jepsen's Consul test): clients read, write and compare-and-set
//! a few keys, each key a register; values are unique per key so that a read names the write
//! it saw.
//!
//! Checked by `linearizability` (per key, consistent reads only), `durability` (the final
//! reads after healing, see [`KvRun::settle`]) and `monotonic` (the `X-Consul-Index` of
//! consistent reads never goes backwards per client and key).
//!
//! # Several datacenters
//!
//! Each datacenter's KV is its own set of registers: the key `register/0` of `dc1` and that of
//! `dc2` are two registers, which the histories name `dc1:register/0` and `dc2:register/0`, so
//! every per-key checker keeps working. A client lives in one datacenter and sends every request
//! to one of its servers; a share of its requests (`remote`) are for another datacenter and
//! travel as [`ClientCall::Forward`], as a client agent sends `?dc=`. Values are unique per
//! datacenter: the datacenter's index is in their high 32 bits (0 for the first, so a lone
//! datacenter's values are those it always wrote). Every request is also recorded with its
//! home, target and exact answer ([`DcOp`]) for `dc_isolation`, `local_availability` and
//! `wan_fail_fast`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use legate_core::catalog::{Command, KvOp, KvVerb, Query, QueryValue, Response};
use legate_runtime::server::{Consistency, QueryOptions, ReadError, ServerResponse, WriteError};
use madsim::rand::{thread_rng, Rng};

use super::{Ctx, End, Outcome, WanFacts};
use crate::check::{
    self, DcAnswer, DcIndex, DcOp, DcRequest, FinalRead, IndexEvent, Outcome as OpOutcome, Recorder, RegisterInput,
    RegisterOp, RegisterOutput, Verdict, Violation,
};
use crate::scenario::{KvWorkload, ReadMode};
use crate::world::net::ClientCall;

/// The KV workload of one run. Clones share its history.
#[derive(Clone)]
pub struct KvRun {
    spec: KvWorkload,
    state: Arc<Mutex<State>>,
    /// The datacenters' names, in topology order (`["dc1"]` with one).
    datacenters: Arc<Vec<String>>,
}

#[derive(Default)]
struct State {
    history: Recorder<RegisterInput, RegisterOutput>,
    next_value: BTreeMap<String, u64>,
    index_events: Vec<IndexEvent>,
    final_reads: Option<Vec<FinalRead>>,
    /// Every request with its datacenters (several datacenters only), in completion order.
    dc_ops: Vec<DcOp>,
}

/// A read's answer as the workload needs it.
enum ReadAnswer {
    /// The value (`None`: absent) and its ModifyIndex (0 when absent).
    Value(Option<u64>, u64),
    /// The server answered without a value: nothing happened.
    Refused(DcAnswer),
    /// No answer in time.
    Lost(String),
}

impl ReadAnswer {
    fn to_dc(&self) -> DcAnswer {
        match self {
            ReadAnswer::Value(v, _) => DcAnswer::Read(*v),
            ReadAnswer::Refused(answer) => answer.clone(),
            ReadAnswer::Lost(e) => DcAnswer::Lost(e.clone()),
        }
    }
}

/// What the KV workload found: its [`Outcome`] plus the linearizability verdict, which may
/// also be "unknown" (the search ran out of budget).
pub struct KvOutcome {
    pub outcome: Outcome,
    pub linearizability: Verdict,
}

impl KvRun {
    /// The workload in one datacenter.
    pub fn new(spec: &KvWorkload) -> KvRun {
        KvRun::in_datacenters(spec, &["dc1".to_string()])
    }

    /// The workload over the datacenters `names` (topology order).
    pub fn in_datacenters(spec: &KvWorkload, names: &[String]) -> KvRun {
        assert!(!names.is_empty(), "at least one datacenter");
        KvRun { spec: *spec, state: Arc::new(Mutex::new(State::default())), datacenters: Arc::new(names.to_vec()) }
    }

    fn federated(&self) -> bool {
        self.datacenters.len() > 1
    }

    /// How histories name key `i` of datacenter `dc`: the key itself with one datacenter.
    fn history_key(&self, dc: DcIndex, i: usize) -> String {
        if self.federated() {
            format!("{}:{}", self.datacenters[dc], key_name(i))
        } else {
            key_name(i)
        }
    }

    /// The datacenter the next request is for: another one with chance `remote`.
    fn pick_target(&self, ctx: &Ctx) -> DcIndex {
        let dcs = self.datacenters.len();
        if dcs == 1 || self.spec.remote <= 0.0 || !thread_rng().gen_bool(self.spec.remote) {
            return ctx.home;
        }
        let other = thread_rng().gen_range(0..dcs - 1);
        if other >= ctx.home {
            other + 1
        } else {
            other
        }
    }

    /// `call`, for datacenter `target`: as is for the client's own, forwarded otherwise.
    fn for_datacenter(&self, ctx: &Ctx, target: DcIndex, call: ClientCall) -> ClientCall {
        if target == ctx.home {
            call
        } else {
            ClientCall::Forward { dc: self.datacenters[target].clone(), call: Box::new(call) }
        }
    }

    /// Records a request with its datacenters (several datacenters only).
    fn record(&self, ctx: &Ctx, target: DcIndex, key: &str, request: DcRequest, invoke: Duration, answer: DcAnswer) {
        if !self.federated() {
            return;
        }
        let op = DcOp {
            client: ctx.client_id,
            home: ctx.home,
            target,
            key: key.to_string(),
            request,
            invoke,
            complete: ctx.now(),
            answer,
        };
        self.lock().dc_ops.push(op);
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
        let k = thread_rng().gen_range(0..self.spec.keys as usize);
        let server = ctx.pick_server();
        let mix = self.spec.mix;
        let roll = thread_rng().gen_range(0..mix.read + mix.write + mix.cas);
        let target = self.pick_target(ctx);
        let (key, register) = (key_name(k), self.history_key(target, k));
        let id = ctx.client_id;
        if roll < mix.read {
            let invoke = ctx.now();
            let op = self.lock().history.invoke(id, register.clone(), RegisterInput::Read, invoke);
            let answer = self.read(ctx, server, target, k, ctx.call_timeout).await;
            let outcome = match &answer {
                ReadAnswer::Value(value, _) => OpOutcome::Ok(RegisterOutput::Read(*value)),
                ReadAnswer::Refused(_) => OpOutcome::Failed,
                ReadAnswer::Lost(_) => OpOutcome::Indeterminate,
            };
            self.lock().history.complete(op, outcome, ctx.now());
            self.record(ctx, target, &key, DcRequest::Read, invoke, answer.to_dc());
        } else if roll < mix.read + mix.write {
            let value = self.fresh(&register, target);
            let invoke = ctx.now();
            let op = self.lock().history.invoke(id, register.clone(), RegisterInput::Write(value), invoke);
            let kv = KvOp { value: value.to_le_bytes().to_vec(), ..KvOp::new(KvVerb::Set, key.clone()) };
            let call = self.for_datacenter(ctx, target, ClientCall::Write(Command::Kv(kv)));
            let answer = ctx.client.call(server, call, ctx.call_timeout).await;
            let dc_answer = write_answer(&answer);
            self.lock().history.complete(op, write_outcome(answer), ctx.now());
            self.record(ctx, target, &key, DcRequest::Write(value), invoke, dc_answer);
        } else {
            // Consul's CAS compares ModifyIndex; values are unique per key, so "ModifyIndex i"
            // and "the value the write at i produced" name the same state.
            let invoke = ctx.now();
            let answer = self.read(ctx, server, target, k, ctx.call_timeout).await;
            self.record(ctx, target, &key, DcRequest::Read, invoke, answer.to_dc());
            let ReadAnswer::Value(expected, modify_index) = answer else {
                return;
            };
            let new = self.fresh(&register, target);
            let input = RegisterInput::Cas { expected, new };
            let invoke = ctx.now();
            let op = self.lock().history.invoke(id, register.clone(), input, invoke);
            let mut kv = KvOp { value: new.to_le_bytes().to_vec(), ..KvOp::new(KvVerb::Cas, key.clone()) };
            kv.index = modify_index;
            let call = self.for_datacenter(ctx, target, ClientCall::Write(Command::Kv(kv)));
            let answer = ctx.client.call(server, call, ctx.call_timeout).await;
            let dc_answer = write_answer(&answer);
            self.lock().history.complete(op, cas_outcome(answer), ctx.now());
            self.record(ctx, target, &key, DcRequest::Cas(new), invoke, dc_answer);
        }
    }

    /// A value never written before to `register` (of datacenter `dc`): a counter per
    /// register, with the datacenter's index in the high 32 bits.
    fn fresh(&self, register: &str, dc: DcIndex) -> u64 {
        let mut state = self.lock();
        let v = state.next_value.entry(register.to_string()).or_insert(0);
        *v += 1;
        assert!(*v < 1 << 32, "a register's counter stays below 2^32");
        ((dc as u64) << 32) | *v
    }

    /// Reads key `k` of datacenter `target` through `server` (of the client's own).
    async fn read(&self, ctx: &Ctx, server: usize, target: DcIndex, k: usize, timeout: Duration) -> ReadAnswer {
        let consistency = self.consistency();
        let call = ClientCall::Read {
            opts: QueryOptions { consistency, min_index: 0, wait_ms: None },
            query: Query::KvGet { key: key_name(k) },
        };
        let call = self.for_datacenter(ctx, target, call);
        match ctx.client.call(server, call, timeout).await {
            Ok(ServerResponse::Read(r)) => {
                if consistency == Consistency::Consistent {
                    // Per register: each datacenter's indexes are its own Raft log's.
                    let event = IndexEvent::Observed {
                        client: ctx.client_id,
                        query: format!("kv/{}", self.history_key(target, k)),
                        at: ctx.now(),
                        index: r.answer.index,
                    };
                    self.lock().index_events.push(event);
                }
                match r.answer.value {
                    QueryValue::Kv(Some(entry)) => ReadAnswer::Value(Some(decode(&entry.value)), entry.modify_index),
                    QueryValue::Kv(None) => ReadAnswer::Value(None, 0),
                    other => ReadAnswer::Refused(unexpected(&other)),
                }
            }
            Ok(ServerResponse::ReadFailed(e)) => {
                ReadAnswer::Refused(DcAnswer::Error { no_path: e == ReadError::NoPath, text: e.to_string() })
            }
            Ok(other) => ReadAnswer::Refused(unexpected(&other)),
            Err(e) => ReadAnswer::Lost(e),
        }
    }

    /// After the clients stopped and the cluster healed: one consistent read of every key of
    /// the client's datacenter, retried across its servers, for the durability checker. With
    /// several datacenters, the runner settles each one with a client of its own.
    pub async fn settle(&self, ctx: Ctx) {
        let reader = KvRun {
            spec: KvWorkload { read_mode: ReadMode::Consistent, ..self.spec },
            state: self.state.clone(),
            datacenters: self.datacenters.clone(),
        };
        let mut reads = Vec::new();
        for k in 0..self.spec.keys as usize {
            let key = key_name(k);
            for attempt in 0..20 {
                let invoke = ctx.now();
                let answer = reader.read(&ctx, attempt % ctx.servers, ctx.home, k, ctx.call_timeout).await;
                if let ReadAnswer::Value(value, _) = answer {
                    reads.push(FinalRead { key: self.history_key(ctx.home, k), value, invoke });
                    self.record(&ctx, ctx.home, &key, DcRequest::Read, invoke, DcAnswer::Read(value));
                    break;
                }
                madsim::time::sleep(Duration::from_millis(500)).await;
            }
        }
        self.lock().final_reads.get_or_insert_with(Vec::new).extend(reads);
    }

    /// Runs the KV checkers over the history.
    pub fn finish(self, end: &End) -> KvOutcome {
        let mut state = self.lock();
        let ops: Vec<RegisterOp> = std::mem::take(&mut state.history).finish(end.observed_until);
        let mut outcome = Outcome { ops: ops.len(), ..Outcome::default() };
        if self.federated() {
            let mut dc_ops: Vec<&DcOp> = state.dc_ops.iter().collect();
            dc_ops.sort_by_key(|op| (op.invoke, op.client));
            outcome.trace = dc_ops.iter().map(|op| self.trace_line(op)).collect();
        } else {
            outcome.trace =
                ops.iter().map(|op| format!("{:>10.3}s c{} kv {op}", op.invoke.as_secs_f64(), op.client)).collect();
        }
        outcome.index_events = std::mem::take(&mut state.index_events);
        outcome.liveness_writes =
            super::writes_after_heal(&ops, end.healed_at, |input| !matches!(input, RegisterInput::Read));
        let writes = check::durability::writes_from_register_history(&ops);
        let registers = self.spec.keys as usize * self.datacenters.len();
        match &state.final_reads {
            Some(reads) if reads.len() == registers => {
                outcome.violations.extend(check::durability::check(&writes, reads));
            }
            _ => outcome.violations.push(check::Violation {
                checker: "durability",
                message: "the final reads did not complete after healing".into(),
            }),
        }
        if let (true, Some(wan)) = (self.federated(), &end.wan) {
            let (violations, lines) = wan_checks(&state.dc_ops, wan, end);
            outcome.violations.extend(violations);
            outcome.trace.extend(lines);
        }
        let linearizability =
            if self.spec.read_mode == ReadMode::Consistent { check::linearizability::check(&ops) } else { Verdict::Ok };
        KvOutcome { outcome, linearizability }
    }

    fn trace_line(&self, op: &DcOp) -> String {
        format!(
            "{:>10.3}s c{} kv {}->{} {:?} {:?} [{:?}, {:?}] {:?}",
            op.invoke.as_secs_f64(),
            op.client,
            self.datacenters[op.home],
            self.datacenters[op.target],
            op.key,
            op.request,
            op.invoke,
            op.complete,
            op.answer
        )
    }
}

/// The multi-datacenter checkers over the requests, and one trace line each saying what they
/// judged.
fn wan_checks(ops: &[DcOp], wan: &WanFacts, end: &End) -> (Vec<Violation>, Vec<String>) {
    let names = &wan.datacenters;
    let mut violations = check::dc_isolation::check(ops, names);
    let (more, available) = check::local_availability::check(ops, &wan.faults, names, &wan.availability);
    violations.extend(more);
    let (more, fast) = check::wan_fail_fast::check(ops, &wan.faults, names, end.healed_at, &wan.fail_fast);
    violations.extend(more);
    let remote = ops.iter().filter(|op| op.is_remote()).count();
    let lines = vec![
        format!("kv requests: {} ({remote} for another datacenter)", ops.len()),
        format!(
            "local availability: {} windows ({} of {:?} or more), {} requests judged, {} served",
            available.windows,
            available.long_windows,
            wan.availability.judged_span_min,
            available.judged,
            available.served
        ),
        format!(
            "wan fail fast: {} requests judged (slowest {:?}); after the heal {} judged, {} served",
            fast.fail_fast_judged, fast.fail_fast_slowest, fast.after_heal_judged, fast.after_heal_served
        ),
    ];
    (violations, lines)
}

fn unexpected<T: std::fmt::Debug>(answer: &T) -> DcAnswer {
    DcAnswer::Error { text: format!("unexpected answer: {answer:?}"), no_path: false }
}

/// A write's answer as [`DcOp`] records it.
fn write_answer(answer: &Result<ServerResponse, String>) -> DcAnswer {
    match answer {
        Ok(ServerResponse::Written(Response::Bool(b))) => DcAnswer::Written(*b),
        Ok(ServerResponse::WriteFailed(e)) => {
            DcAnswer::Error { no_path: *e == WriteError::NoPath, text: e.to_string() }
        }
        Ok(other) => unexpected(other),
        Err(e) => DcAnswer::Lost(e.clone()),
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
        // The forwarding server knew no server of the datacenter: it sent nothing.
        Ok(ServerResponse::WriteFailed(WriteError::NoPath)) => OpOutcome::Failed,
        Ok(_) | Err(_) => OpOutcome::Indeterminate,
    }
}

/// [`write_outcome`] for a CAS. The checkers read a failed CAS as an answer `false`: the state
/// machine compared and the value differed. A CAS refused with "No path to datacenter" was never
/// compared, and the register history cannot say "not applied, nothing observed", so it is
/// recorded as indeterminate (sound: it may or may not have happened; in truth it did not).
pub fn cas_outcome(answer: Result<ServerResponse, String>) -> OpOutcome<RegisterOutput> {
    match answer {
        Ok(ServerResponse::WriteFailed(WriteError::NoPath)) => OpOutcome::Indeterminate,
        answer => write_outcome(answer),
    }
}
