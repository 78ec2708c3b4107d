//! One seeded run, VOPR-style: a cluster, a CAS-register workload, the nemesis during a safety
//! phase, then a liveness phase with every fault healed, and the checkers over what happened.
//!
//! Everything in a run — topology timing, which faults strike when, which client sends what to
//! which server, every network delay — is drawn from the one seed, so [`run_seed`] is a
//! function of `(seed, config)`: it returns the same [`RunReport`] (same trace hash) whether
//! the seed runs alone or inside a batch, in this process or another.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use legate_core::catalog::{Command, KvOp, KvVerb, Query, QueryValue, Response};
use legate_runtime::server::{Consistency, QueryOptions, ServerResponse, WriteError};
use madsim::rand::{thread_rng, Rng};
use openraft::storage::{RaftLogReader as _, RaftLogStorage as _};
use openraft::ServerState;

use crate::check::{
    self, Applied, FinalRead, LeaderObserved, Outcome, Recorder, RegisterInput, RegisterOp, RegisterOutput, Verdict,
    Violation,
};
use crate::check::{LivenessBounds, LivenessObservations, WriteAfterHeal};
use crate::world::client::SimClient;
use crate::world::nemesis::{FaultMix, Nemesis};
use crate::world::net::ClientCall;
use crate::world::{client_ip, Cluster, RaftTiming};
use crate::MadsimRuntime;

/// What a run does.
#[derive(Clone, Debug)]
pub struct RunConfig {
    pub servers: usize,
    pub clients: usize,
    pub keys: usize,
    /// Virtual time with faults.
    pub safety: Duration,
    /// Virtual time after healing.
    pub liveness: Duration,
    pub faults: FaultMix,
    /// The nemesis strikes every `nemesis_interval_ms.0 ..= .1` ms.
    pub nemesis_interval_ms: (u64, u64),
    /// Consistency of the workload's reads (linearizability needs `Consistent`).
    pub read_consistency: Consistency,
    /// How long a client waits for an answer before recording the op as indeterminate.
    pub call_timeout: Duration,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            servers: 3,
            clients: 3,
            keys: 3,
            safety: Duration::from_secs(30),
            liveness: Duration::from_secs(20),
            faults: FaultMix::default(),
            nemesis_interval_ms: (1_000, 4_000),
            read_consistency: Consistency::Consistent,
            call_timeout: Duration::from_secs(5),
        }
    }
}

/// What a run found.
#[derive(Clone, Debug)]
pub struct RunReport {
    pub seed: u64,
    /// Client operations recorded.
    pub ops: usize,
    /// Faults the nemesis applied.
    pub faults: usize,
    /// Virtual time the run covered.
    pub virtual_time: Duration,
    pub linearizability: Verdict,
    pub violations: Vec<Violation>,
    /// A digest of everything observable about the run (history, faults, logs).
    pub trace_hash: u64,
}

impl RunReport {
    /// No checker found a violation (linearizability may still be `Unknown`: too costly).
    pub fn is_ok(&self) -> bool {
        self.violations.is_empty() && !self.linearizability.is_violation()
    }
}

/// The command that replays one seed of the default run.
pub fn replay_command(seed: u64, test: &str) -> String {
    format!("SIM_SEED={seed} cargo test -p sim --test {test}")
}

/// Runs one seed on a fresh thread with a fresh madsim runtime (madsim seeds std's hash keys
/// once per thread, so a thread per seed keeps a seed's run independent of its batch).
pub fn run_seed(seed: u64, config: RunConfig) -> RunReport {
    let run = std::thread::Builder::new()
        .name(format!("seed-{seed}"))
        .spawn(move || {
            let mut rt = MadsimRuntime::with_seed_and_config(seed, madsim::Config::default());
            rt.madsim().set_time_limit(config.safety + config.liveness + Duration::from_secs(600));
            let mut report = openraft_rt::AsyncRuntime::block_on(&mut rt, run(config));
            report.seed = seed;
            report
        })
        .expect("a thread for the seed");
    match run.join() {
        Ok(report) => report,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// A stable 64-bit FNV-1a digest (std's hasher is only stable within one build).
#[derive(Clone, Copy)]
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
    fn write_str(&mut self, s: &str) {
        self.write(&(s.len() as u64).to_le_bytes());
        self.write(s.as_bytes());
    }
}

type Shared<T> = Arc<Mutex<T>>;

fn lock<T>(m: &Shared<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

async fn run(config: RunConfig) -> RunReport {
    let start = Instant::now();
    let now = move || start.elapsed();
    let cluster = Cluster::start(config.servers, RaftTiming::default());
    let addrs = cluster.addrs();
    let history: Shared<Recorder<RegisterInput, RegisterOutput>> = Arc::new(Mutex::new(Recorder::new()));
    let stop = Arc::new(Mutex::new(false));
    let next_value = Arc::new(Mutex::new(BTreeMap::<String, u64>::new()));

    // Clients run the CAS-register workload until told to stop.
    let mut client_tasks = Vec::new();
    for c in 0..config.clients {
        let node = cluster.handle.create_node().name(format!("c{}", c + 1)).ip(client_ip(c)).build();
        let (addrs, history, stop, next_value, cfg) =
            (addrs.clone(), history.clone(), stop.clone(), next_value.clone(), config.clone());
        client_tasks.push(node.spawn(async move {
            let client = SimClient::connect(addrs).await;
            while !*lock(&stop) {
                register_op(&client, c as u64, &cfg, &history, &next_value, now).await;
                madsim::time::sleep(Duration::from_millis(thread_rng().gen_range(0..100))).await;
            }
        }));
    }

    // Safety phase: faults, while observing leaders for election safety.
    let mut nemesis = Nemesis::new(config.faults.clone());
    let mut leaders: Vec<LeaderObserved> = Vec::new();
    let safety_end = Instant::now() + config.safety;
    while Instant::now() < safety_end {
        let (lo, hi) = config.nemesis_interval_ms;
        let wait = Duration::from_millis(thread_rng().gen_range(lo..=hi));
        observe_leaders(&cluster, &mut leaders, wait.min(safety_end.saturating_duration_since(Instant::now()))).await;
        if Instant::now() < safety_end {
            nemesis.step(&cluster);
        }
    }

    // Liveness phase: everything healed; the clients keep going.
    nemesis.heal(&cluster);
    let healed_at = now();
    let mut first_leader_at = None;
    let liveness_end = Instant::now() + config.liveness;
    while Instant::now() < liveness_end {
        if first_leader_at.is_none() && !cluster.observer.leaders().is_empty() {
            first_leader_at = Some(now());
        }
        observe_leaders(&cluster, &mut leaders, Duration::from_millis(50)).await;
    }
    *lock(&stop) = true;
    for task in client_tasks {
        let _ = task.await;
    }
    let observed_until = now();
    let ops: Vec<RegisterOp> = std::mem::take(&mut *lock(&history)).finish(observed_until);

    // Final reads (durability), through a fresh client, once everything has settled.
    let final_node = cluster.handle.create_node().name("final").ip(client_ip(config.clients)).build();
    let keys: Vec<String> = (0..config.keys).map(key_name).collect();
    let (addrs2, timeout) = (addrs.clone(), config.call_timeout);
    let final_reads = final_node
        .spawn(async move {
            let client = SimClient::connect(addrs2).await;
            let mut reads = Vec::new();
            for key in keys {
                if let Some(read) = final_read(&client, &key, timeout, now).await {
                    reads.push(read);
                }
            }
            reads
        })
        .await
        .expect("final reader runs");

    let applied = applied_entries(&cluster).await;
    let liveness_writes: Vec<WriteAfterHeal> = ops
        .iter()
        .filter(|op| op.invoke >= healed_at && matches!(op.input, RegisterInput::Write(_)))
        .map(|op| WriteAfterHeal {
            client: op.client,
            key: op.key.clone(),
            invoke: op.invoke,
            acked_at: if op.is_indeterminate() { None } else { Some(op.complete) },
        })
        .collect();

    let mut violations = Vec::new();
    violations.extend(check::raft_safety::check(&leaders, &applied));
    let writes = check::durability::writes_from_register_history(&ops);
    if final_reads.len() == config.keys {
        violations.extend(check::durability::check(&writes, &final_reads));
    } else {
        violations.push(Violation {
            checker: "durability",
            message: "the final reads did not complete after healing".into(),
        });
    }
    let observations = LivenessObservations { healed_at, first_leader_at, writes: liveness_writes, observed_until };
    let bounds =
        LivenessBounds { leader_after_heal_max: Duration::from_secs(15), write_latency_max: Duration::from_secs(15) };
    violations.extend(check::liveness::check(&observations, &bounds));
    let linearizability = check::linearizability::check(&ops);

    let mut hash = Fnv::new();
    for op in &ops {
        hash.write_str(&op.to_string());
    }
    for fault in &nemesis.log {
        hash.write_str(&fault.to_string());
    }
    for a in &applied {
        hash.write(&[a.node as u8]);
        hash.write(&a.index.to_le_bytes());
        hash.write(&a.digest.to_le_bytes());
    }
    RunReport {
        seed: 0,
        ops: ops.len(),
        faults: nemesis.log.len(),
        virtual_time: start.elapsed(),
        linearizability,
        violations,
        trace_hash: hash.0,
    }
}

fn key_name(i: usize) -> String {
    format!("register/{i}")
}

async fn observe_leaders(cluster: &Cluster, leaders: &mut Vec<LeaderObserved>, for_time: Duration) {
    let end = Instant::now() + for_time;
    loop {
        for (id, term, state) in cluster.observer.states() {
            if state == ServerState::Leader && !leaders.iter().any(|l| l.node == id && l.term == term) {
                leaders.push(LeaderObserved { node: id, term });
            }
        }
        if Instant::now() >= end {
            return;
        }
        madsim::time::sleep(Duration::from_millis(10).min(end - Instant::now())).await;
    }
}

/// One register operation: read, write, or CAS (after a read, with the index it returned).
async fn register_op(
    client: &SimClient,
    id: u64,
    cfg: &RunConfig,
    history: &Shared<Recorder<RegisterInput, RegisterOutput>>,
    next_value: &Shared<BTreeMap<String, u64>>,
    now: impl Fn() -> Duration,
) {
    let key = key_name(thread_rng().gen_range(0..cfg.keys));
    let server = thread_rng().gen_range(0..cfg.servers);
    let fresh = || {
        let mut values = lock(next_value);
        let v = values.entry(key.clone()).or_insert(0);
        *v += 1;
        *v
    };
    match thread_rng().gen_range(0..3) {
        0 => {
            let op = lock(history).invoke(id, key.clone(), RegisterInput::Read, now());
            let outcome = match read(client, server, &key, cfg).await {
                Ok(Some((value, _))) => Outcome::Ok(RegisterOutput::Read(value)),
                Ok(None) => Outcome::Failed,
                Err(()) => Outcome::Indeterminate,
            };
            lock(history).complete(op, outcome, now());
        }
        1 => {
            let value = fresh();
            let op = lock(history).invoke(id, key.clone(), RegisterInput::Write(value), now());
            let call = ClientCall::Write(Command::Kv(KvOp {
                value: value.to_le_bytes().to_vec(),
                ..KvOp::new(KvVerb::Set, key.clone())
            }));
            let outcome = write_outcome(client.call(server, call, cfg.call_timeout).await);
            lock(history).complete(op, outcome, now());
        }
        _ => {
            // Read the current value and its ModifyIndex, then CAS on that index. Values are
            // unique per key, so "ModifyIndex i" and "the value that write produced" name the
            // same state: the checker models cas(expected value -> new value).
            let Ok(Some((expected, modify_index))) = read(client, server, &key, cfg).await else {
                return;
            };
            let new = fresh();
            let op = lock(history).invoke(id, key.clone(), RegisterInput::Cas { expected, new }, now());
            let mut kv = KvOp { value: new.to_le_bytes().to_vec(), ..KvOp::new(KvVerb::Cas, key.clone()) };
            kv.index = modify_index;
            let outcome =
                write_outcome(client.call(server, ClientCall::Write(Command::Kv(kv)), cfg.call_timeout).await);
            lock(history).complete(op, outcome, now());
        }
    }
}

/// `Ok(Some((value, modify_index)))` read; `Ok(None)`: the server refused (no effect);
/// `Err`: no answer.
async fn read(client: &SimClient, server: usize, key: &str, cfg: &RunConfig) -> Result<Option<(Option<u64>, u64)>, ()> {
    let call = ClientCall::Read {
        opts: QueryOptions { consistency: cfg.read_consistency, min_index: 0, wait_ms: None },
        query: Query::KvGet { key: key.to_string() },
    };
    match client.call(server, call, cfg.call_timeout).await {
        Ok(ServerResponse::Read(r)) => match r.answer.value {
            QueryValue::Kv(Some(entry)) => Ok(Some((Some(decode(&entry.value)), entry.modify_index))),
            QueryValue::Kv(None) => Ok(Some((None, 0))),
            other => panic!("a KV read answered {other:?}"),
        },
        Ok(_) => Ok(None),
        Err(_) => Err(()),
    }
}

fn decode(bytes: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[..8]);
    u64::from_le_bytes(b)
}

/// Maps a write's answer to an outcome: only answers that prove nothing was applied are
/// `Failed`; lost answers and errors after a proposal are indeterminate.
fn write_outcome(answer: Result<ServerResponse, String>) -> Outcome<RegisterOutput> {
    match answer {
        Ok(ServerResponse::Written(Response::Bool(true))) => Outcome::Ok(RegisterOutput::Written),
        Ok(ServerResponse::Written(Response::Bool(false))) => Outcome::Failed,
        Ok(ServerResponse::WriteFailed(WriteError::NoLeader)) => Outcome::Failed,
        Ok(_) | Err(_) => Outcome::Indeterminate,
    }
}

async fn final_read(client: &SimClient, key: &str, timeout: Duration, now: impl Fn() -> Duration) -> Option<FinalRead> {
    let cfg = RunConfig { call_timeout: timeout, ..RunConfig::default() };
    for attempt in 0..20 {
        let invoke = now();
        if let Ok(Some((value, _))) = read(client, attempt % client.servers().len(), key, &cfg).await {
            return Some(FinalRead { key: key.to_string(), value, invoke });
        }
        madsim::time::sleep(Duration::from_millis(500)).await;
    }
    None
}

/// Every running server's applied log entries, for State Machine Safety.
async fn applied_entries(cluster: &Cluster) -> Vec<Applied> {
    let mut out = Vec::new();
    let logs = cluster.observer.logs();
    for (id, server) in cluster.observer.servers() {
        let last_applied = server.store().applied_index();
        let Some(mut log) = logs.get(&id).cloned() else {
            continue;
        };
        // Entries up to the purge point live only in the snapshot now.
        let Ok(state) = log.get_log_state().await else {
            continue;
        };
        let first = state.last_purged_log_id.map_or(0, |id| id.index() + 1);
        let Ok(entries) = log.try_get_log_entries(first..=last_applied).await else {
            continue;
        };
        for e in entries {
            let mut h = Fnv::new();
            h.write(&serde_json::to_vec(&e.payload).unwrap_or_default());
            out.push(Applied { node: id, index: e.log_id.index(), term: e.log_id.leader_id.term, digest: h.0 });
        }
    }
    out
}
