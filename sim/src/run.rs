//! One seeded run of a scenario, VOPR-style: a cluster, the scenario's workloads, the nemesis
//! during a safety phase, then a liveness phase with every fault healed, and the checkers over
//! what happened.
//!
//! Everything in a run — clock skews, which faults strike when, which client sends what to
//! which server, every network delay — is drawn from the one seed, so [`run_seed`] is a
//! function of `(seed, scenario)`: it returns the same [`RunReport`] (same trace hash) whether
//! the seed runs alone or inside a batch, in this process or another.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use legate_core::plant::Planted;
use madsim::rand::{thread_rng, Rng};
use openraft::storage::{RaftLogReader as _, RaftLogStorage as _};
use openraft::ServerState;

use crate::check::local_availability::AvailabilityBounds;
use crate::check::wan_fail_fast::FailFastBounds;
use crate::check::{self, Applied, IndexEvent, LeaderObserved, Verdict, Violation, WriteAfterHeal};
use crate::check::{LivenessBounds, LivenessObservations};
use crate::scenario::{Bootstrap, Checker, Nemesis, Plant, Scenario};
use crate::workload::kv::KvRun;
use crate::workload::lock::LockRun;
use crate::workload::service::ServiceRun;
use crate::workload::txn::TxnRun;
use crate::workload::{think_time, Ctx, End, Outcome, WanFacts};
use crate::world::client::SimClient;
use crate::world::faults::FaultDriver;
use crate::world::skew::{set_skew, Skew};
use crate::world::{client_ip, client_ip_in, Cluster, ClusterOptions, RaftTiming, World};
use crate::MadsimRuntime;

/// How long a client waits for an answer before recording its op as indeterminate.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// What a run found.
#[derive(Clone, Debug)]
pub struct RunReport {
    pub seed: u64,
    /// The scenario's name.
    pub scenario: String,
    /// Client operations recorded.
    pub ops: usize,
    /// Faults the nemesis injected.
    pub faults: usize,
    /// Virtual time the run covered.
    pub virtual_time: Duration,
    /// The KV linearizability verdict (`Ok` without a KV workload).
    pub linearizability: Verdict,
    /// Violations of the checkers the scenario enables.
    pub violations: Vec<Violation>,
    /// Servers that refused to start on a corrupt disk (detected bit flips): (Raft id, error).
    pub refusals: Vec<(u64, String)>,
    /// The run's trace: one line per event (virtual time, node, event).
    pub trace: Vec<String>,
    /// A digest of the trace (stable across processes and builds).
    pub trace_hash: u64,
}

impl RunReport {
    /// No enabled checker found a violation (linearizability may still be "unknown").
    pub fn is_ok(&self) -> bool {
        self.violations.is_empty() && !self.linearizability.is_violation()
    }

    /// Whether `checker` (a scenario checker) reported a violation.
    pub fn caught_by(&self, checker: Checker) -> bool {
        let name = checker_module(checker);
        self.violations.iter().any(|v| v.checker == name)
            || (checker == Checker::Linearizability && self.linearizability.is_violation())
    }

    /// One line: seed, hash, counts and the verdict.
    pub fn summary(&self) -> String {
        let verdict = if self.is_ok() { "ok".to_string() } else { format!("{} violation(s)", self.failures().len()) };
        format!(
            "{} seed {} trace {:016x}: {} ops, {} faults, {:.1}s virtual, linearizability {}, {verdict}",
            self.scenario,
            self.seed,
            self.trace_hash,
            self.ops,
            self.faults,
            self.virtual_time.as_secs_f64(),
            match &self.linearizability {
                Verdict::Ok => "ok".to_string(),
                Verdict::Violation(_) => "VIOLATED".to_string(),
                Verdict::Unknown { .. } => "unknown (search budget)".to_string(),
            }
        )
    }

    /// Every failure as text.
    pub fn failures(&self) -> Vec<String> {
        let mut out: Vec<String> = self.violations.iter().map(ToString::to_string).collect();
        if let Verdict::Violation(v) = &self.linearizability {
            out.push(v.to_string());
        }
        out
    }
}

/// The violation name (`Violation::checker`) each scenario checker reports under.
pub fn checker_module(checker: Checker) -> &'static str {
    match checker {
        Checker::Linearizability => "linearizability",
        Checker::LockSafety => "lock_safety",
        Checker::Durability => "durability",
        Checker::IndexMonotonicity => "monotonic",
        Checker::RaftSafety => "raft_safety",
        Checker::Liveness => "liveness",
        Checker::DcIsolation => "dc_isolation",
        Checker::LocalAvailability => "local_availability",
        Checker::WanFailFast => "wan_fail_fast",
    }
}

/// The command that replays one seed of a scenario file, printing its trace.
pub fn replay_command(seed: u64, scenario_path: &str) -> String {
    format!("cargo run -p sim --release -- run {scenario_path} --seed {seed} --trace")
}

/// Runs one seed on a fresh thread with a fresh madsim runtime (madsim seeds std's hash keys
/// once per thread, so a thread per seed keeps a seed's run independent of its batch).
pub fn run_seed(seed: u64, scenario: &Scenario) -> RunReport {
    let name = scenario.name.clone();
    let scenario = scenario.clone();
    let run = std::thread::Builder::new()
        .name(format!("seed-{seed}"))
        .stack_size(64 << 20)
        .spawn(move || {
            let mut rt = MadsimRuntime::with_seed_and_config(seed, madsim::Config::default());
            let limit = Duration::from_nanos(scenario.run_ns()) + Duration::from_secs(600);
            rt.madsim().set_time_limit(limit);
            let mut report = openraft_rt::AsyncRuntime::block_on(&mut rt, run(scenario));
            report.seed = seed;
            report
        })
        .expect("a thread for the seed");
    match run.join() {
        Ok(report) => report,
        Err(panic) => {
            // A panic anywhere in the simulated world (an assertion in server code, say) is a
            // failed run like any other: reported with its seed, replayable.
            let message = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("a panic without a message");
            RunReport {
                seed,
                scenario: name,
                ops: 0,
                faults: 0,
                virtual_time: Duration::ZERO,
                linearizability: Verdict::Ok,
                violations: vec![Violation { checker: "panic", message: message.to_string() }],
                refusals: Vec::new(),
                trace: vec![format!("panicked: {message}")],
                trace_hash: 0,
            }
        }
    }
}

/// A stable 64-bit FNV-1a digest (std's hasher is only stable within one build).
#[derive(Clone, Copy)]
pub struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    pub fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
    pub fn write_str(&mut self, s: &str) {
        self.write(&(s.len() as u64).to_le_bytes());
        self.write(s.as_bytes());
    }
    pub fn finish(&self) -> u64 {
        self.0
    }
}

fn planted(scenario: &Scenario) -> Planted {
    let mut p = Planted::default();
    if let Some(plant) = scenario.plant {
        match plant.bug {
            Plant::AckBeforeSync => p.ack_before_sync = true,
            Plant::StaleConsistentRead => p.stale_consistent_read = true,
            Plant::IgnoreLockDelay => p.ignore_lock_delay = true,
            Plant::ForgetSessionInvalidation => p.forget_session_invalidation = true,
            // Planted in the simulator's federation layer (see `ClusterOptions`), not in core.
            Plant::ForwardWriteLocally => {}
        }
    }
    p
}

/// The workloads of one run.
struct Workloads {
    kv: Option<KvRun>,
    lock: Option<LockRun>,
    service: Option<ServiceRun>,
    txn: Option<TxnRun>,
}

async fn run(scenario: Scenario) -> RunReport {
    let start = Instant::now();
    let start_unix_ms =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    let now = move || start.elapsed();
    let servers = scenario.topology.servers as usize;
    let timing = RaftTiming::default();
    let options = ClusterOptions {
        timing,
        planted: planted(&scenario),
        bootstrap_expect: scenario.topology.bootstrap == Bootstrap::Expect,
        forward_writes_locally: scenario.plant.is_some_and(|p| p.bug == Plant::ForwardWriteLocally),
        ..Default::default()
    };
    let names = scenario.topology.datacenters.clone();
    let wan_latency = Duration::from_nanos(scenario.topology.wan_latency_ns);
    let world = World::start(&names, servers, options, wan_latency);
    let federated = world.is_federated();
    let mut trace: Vec<String> = Vec::new();

    // Every server's clock error for the whole run.
    let clocks = scenario.clocks;
    let mut base_skews = Vec::with_capacity(servers * names.len());
    for (dc, cluster) in world.datacenters.iter().enumerate() {
        for (i, slot) in cluster.servers.iter().enumerate() {
            let offset = clocks.offset_max_ns as i64;
            let drift = clocks.drift_max_ppm as i32;
            let skew = Skew {
                offset_ns: if offset > 0 { thread_rng().gen_range(-offset..=offset) } else { 0 },
                drift_ppm: if drift > 0 { thread_rng().gen_range(-drift..=drift) } else { 0 },
            };
            set_skew(slot.node.id(), skew);
            if skew != Skew::default() {
                let (label, offset, drift) = (world.label(dc, i), skew.offset_ns, skew.drift_ppm);
                trace.push(format!("{:>10.3}s {label} clock offset {offset}ns drift {drift}ppm", 0.0));
            }
            base_skews.push(skew);
        }
    }

    let workloads = Workloads {
        kv: scenario.kv().map(|kv| KvRun::in_datacenters(kv, &names)),
        lock: scenario.lock().map(LockRun::new),
        service: scenario.service().map(ServiceRun::new),
        txn: scenario.txn().map(TxnRun::new),
    };

    // Client processes, one madsim node each. KV clients take the datacenters in turn; the
    // other workloads run in one datacenter.
    let stop = Arc::new(AtomicBool::new(false));
    let mut plans: Vec<(&'static str, u64, Duration, usize)> = Vec::new();
    let mut plan = |kind: &'static str, clients: u32, rate: u32| {
        for k in 0..clients as usize {
            let id = plans.len() as u64 + 1;
            plans.push((kind, id, think_time(rate, clients), k % names.len()));
        }
    };
    if let Some(spec) = scenario.kv() {
        plan("kv", spec.clients, spec.rate_per_s);
    }
    if let Some(spec) = scenario.lock() {
        plan("lock", spec.clients, spec.rate_per_s);
    }
    if let Some(spec) = scenario.service() {
        plan("service", spec.clients, spec.rate_per_s);
    }
    if let Some(spec) = scenario.txn() {
        plan("txn", spec.clients, spec.rate_per_s);
    }
    let mut tasks = Vec::new();
    // Every node this run creates, killed at the end (see below).
    let mut nodes = Vec::new();
    for (kind, id, think, home) in plans.iter().copied() {
        let ip = client_address(federated, home, id);
        let node = world.handle.create_node().name(format!("c{id}-{kind}")).ip(ip).build();
        nodes.push(node.id());
        let cluster = &world.datacenters[home];
        let (addrs, stop, observer) = (cluster.addrs(), stop.clone(), cluster.observer.clone());
        let (kv, lock, service, txn) =
            (workloads.kv.clone(), workloads.lock.clone(), workloads.service.clone(), workloads.txn.clone());
        tasks.push(node.spawn(async move {
            let client = connect(federated, ip, addrs).await;
            let ctx =
                Ctx::new(client, id, CALL_TIMEOUT, think, start, stop).skipping_refused(observer).in_datacenter(home);
            match kind {
                "kv" => kv.expect("kv workload").client(ctx).await,
                "lock" => lock.expect("lock workload").client(ctx).await,
                "service" => service.expect("service workload").client(ctx).await,
                _ => txn.expect("txn workload").client(ctx).await,
            }
        }));
    }
    // Observers (server-side oracles), on their own node.
    let observer_id = plans.len() as u64 + 1;
    let observer_node = world.handle.create_node().name("oracle").ip(client_address(federated, 0, observer_id)).build();
    nodes.push(observer_node.id());
    let mut observer_tasks = Vec::new();
    {
        let first = &world.datacenters[0];
        let (addrs, stop) = (first.addrs(), stop.clone());
        let lock = workloads.lock.clone();
        let observer = first.observer.clone();
        observer_tasks.push(observer_node.spawn(async move {
            let client = SimClient::connect(addrs).await;
            let ctx = Ctx::new(client, observer_id, CALL_TIMEOUT, Duration::from_millis(10), start, stop);
            if let Some(l) = &lock {
                l.observe(observer, ctx).await;
            }
        }));
    }

    // Safety phase: faults, while observing leaders for election safety.
    let mut driver = FaultDriver::new(base_skews);
    let mut leaders = Leaders::new(names.len());
    let safety_end = Duration::from_nanos(scenario.phases.safety_ns);
    let clock_max = (clocks.offset_max_ns, clocks.drift_max_ppm);
    match &scenario.nemesis {
        Nemesis::None => observe_leaders(&world, &mut leaders, start, safety_end).await,
        Nemesis::Random(spec) => {
            let mut next_draw = Duration::from_nanos(spec.interval_ns);
            while now() < safety_end {
                let until = next_draw.min(safety_end);
                observe_until(&world, &mut driver, &mut leaders, start, until).await;
                if now() >= next_draw && now() < safety_end {
                    driver.draw(&world, spec, clock_max, now());
                    // Jitter the next draw by up to half an interval either way.
                    let jitter = thread_rng().gen_range(0..=spec.interval_ns);
                    next_draw = now() + Duration::from_nanos(spec.interval_ns / 2 + jitter);
                }
            }
        }
        Nemesis::Schedule(entries) => {
            for entry in entries {
                let at = Duration::from_nanos(entry.at_ns);
                observe_until(&world, &mut driver, &mut leaders, start, at).await;
                let duration = Duration::from_nanos(entry.duration_ns);
                driver.apply_in(&world, &entry.fault, entry.datacenter, now(), duration);
            }
            observe_until(&world, &mut driver, &mut leaders, start, safety_end).await;
        }
    }

    // Liveness phase: everything healed (crashed servers restarted); the clients keep going.
    driver.heal(&world, now());
    crate::world::net::clear_link_faults();
    crate::world::net::clear_wan_spikes();
    let healed_at = now();
    let liveness_end = safety_end + Duration::from_nanos(scenario.phases.liveness_ns);
    // When each datacenter was first seen with a leader after the heal.
    let mut first_leaders: Vec<Option<Duration>> = vec![None; names.len()];
    while now() < liveness_end {
        for (dc, cluster) in world.datacenters.iter().enumerate() {
            if first_leaders[dc].is_none() && !cluster.observer.leaders().is_empty() {
                first_leaders[dc] = Some(now());
            }
        }
        let until = (now() + Duration::from_millis(50)).min(liveness_end);
        observe_leaders(&world, &mut leaders, start, until).await;
    }
    // Every datacenter has had a leader since the heal from this moment on.
    let first_leader_at = first_leaders.iter().copied().collect::<Option<Vec<_>>>().and_then(|t| t.into_iter().max());
    stop.store(true, Ordering::SeqCst);
    for task in tasks {
        let _ = task.await;
    }
    for task in observer_tasks {
        let _ = task.await;
    }
    let observed_until = now();

    // The KV workload's final reads (durability), through a fresh client per datacenter once
    // all settled.
    if let Some(kv) = &workloads.kv {
        for (dc, cluster) in world.datacenters.iter().enumerate() {
            let id = observer_id + 1 + dc as u64;
            let name = if dc == 0 { "final".to_string() } else { format!("final-{}", cluster.datacenter) };
            let ip = client_address(federated, dc, id);
            let node = world.handle.create_node().name(name).ip(ip).build();
            nodes.push(node.id());
            let (kv, addrs) = (kv.clone(), cluster.addrs());
            let stop = Arc::new(AtomicBool::new(true));
            node.spawn(async move {
                let client = connect(federated, ip, addrs).await;
                kv.settle(Ctx::new(client, id, CALL_TIMEOUT, Duration::ZERO, start, stop).in_datacenter(dc)).await;
            })
            .await
            .expect("the final reader runs");
        }
    }

    // Checkers.
    let wan = federated.then(|| WanFacts {
        datacenters: names.clone(),
        faults: driver.spans.clone(),
        availability: AvailabilityBounds {
            grace: Duration::from_millis(timing.election_timeout_max_ms),
            settle: DISTURBANCE_SETTLE,
            call_timeout: CALL_TIMEOUT,
            judged_span_min: Duration::from_secs(5),
        },
        fail_fast: FailFastBounds {
            detect_max: options.wan_probe.detect_max(),
            recover_max: options.wan_probe.recover_max(),
            fail_fast_max: FAIL_FAST_MAX,
            settle: DISTURBANCE_SETTLE,
            edge: Duration::from_millis(100),
        },
    });
    let end =
        End { healed_at, observed_until, clock_offset_max: clock_error_max(&scenario), start, start_unix_ms, wan };
    let mut outcomes: Vec<Outcome> = Vec::new();
    let mut linearizability = Verdict::Ok;
    if let Some(kv) = workloads.kv {
        let kv = kv.finish(&end);
        linearizability = kv.linearizability;
        outcomes.push(kv.outcome);
    }
    if let Some(lock) = workloads.lock {
        outcomes.push(lock.finish(&end));
    }
    if let Some(service) = workloads.service {
        outcomes.push(service.finish(&end));
    }
    if let Some(txn) = workloads.txn {
        outcomes.push(txn.finish(&end));
    }

    let enabled = |name: &str| {
        // Checkers outside the scenario format's (a workload's own: service_health,
        // txn_atomicity, txn_realtime; or a panic) always count; the format's only when the
        // scenario lists them.
        let general = [
            Checker::Linearizability,
            Checker::LockSafety,
            Checker::Durability,
            Checker::IndexMonotonicity,
            Checker::RaftSafety,
            Checker::Liveness,
            Checker::DcIsolation,
            Checker::LocalAvailability,
            Checker::WanFailFast,
        ];
        match general.iter().find(|c| checker_module(**c) == name) {
            Some(c) => scenario.checkers.contains(c),
            None => true,
        }
    };
    let mut violations: Vec<Violation> = Vec::new();
    // Raft safety per datacenter: each is its own Raft cluster, with its own terms and log.
    let mut applied_all: Vec<Applied> = Vec::new();
    for (dc, cluster) in world.datacenters.iter().enumerate() {
        let applied = applied_entries(cluster).await;
        for mut v in check::raft_safety::check(&leaders.by_dc[dc], &applied) {
            if federated {
                v.message = format!("{}: {}", cluster.datacenter, v.message);
            }
            violations.push(v);
        }
        applied_all.extend(applied);
    }
    let index_events: Vec<IndexEvent> = outcomes.iter().flat_map(|o| o.index_events.iter().cloned()).collect();
    violations.extend(check::monotonic::check(&index_events));
    let writes: Vec<WriteAfterHeal> = outcomes.iter().flat_map(|o| o.liveness_writes.iter().cloned()).collect();
    let observations = LivenessObservations { healed_at, first_leader_at, writes, observed_until };
    let bounds =
        LivenessBounds { leader_after_heal_max: Duration::from_secs(15), write_latency_max: Duration::from_secs(15) };
    violations.extend(check::liveness::check(&observations, &bounds));
    for o in &mut outcomes {
        violations.append(&mut o.violations);
    }
    violations.retain(|v| enabled(v.checker));
    if !scenario.checkers.contains(&Checker::Linearizability) {
        linearizability = Verdict::Ok;
    }

    // The trace: nemesis events, leaders, refusals, then each workload's operations.
    // A server that refuses to start does so on every restart: keep the first refusal of each.
    let mut refusals = Vec::new();
    let mut refusal_lines = Vec::new();
    for (dc, cluster) in world.datacenters.iter().enumerate() {
        let mut seen = std::collections::BTreeSet::new();
        for (id, error) in cluster.observer.refusals() {
            if seen.insert(id) {
                refusal_lines.push(format!("{} refused to start: {error}", world.label(dc, id as usize - 1)));
                refusals.push((id, if federated { format!("{}: {error}", cluster.datacenter) } else { error }));
            }
        }
    }
    let mut timed: Vec<(Duration, String)> = driver.events.iter().map(|e| (e.at, e.to_string())).collect();
    for (at, dc, id, term) in &leaders.log {
        timed.push((
            *at,
            format!("{:>10.3}s {} leader term {term}", at.as_secs_f64(), world.label(*dc, *id as usize - 1)),
        ));
    }
    timed.sort_by_key(|e| e.0);
    trace.extend(timed.into_iter().map(|(_, line)| line));
    trace.extend(refusal_lines);
    let ops: usize = outcomes.iter().map(|o| o.ops).sum();
    for o in &outcomes {
        trace.extend(o.trace.iter().cloned());
    }
    // Kill every node before the runtime goes: killing drops each node's tasks, which breaks
    // the reference cycles between pending tasks (channels, Raft's workers, the observer);
    // dropping the runtime alone would leak the whole world, some 160 MB per seed.
    for cluster in &world.datacenters {
        cluster.observer.clear();
        for slot in &cluster.servers {
            world.handle.kill(slot.node.id());
        }
    }
    for node in nodes {
        world.handle.kill(node);
    }
    let mut hash = Fnv::default();
    for line in &trace {
        hash.write_str(line);
    }
    for a in &applied_all {
        hash.write(&a.node.to_le_bytes());
        hash.write(&a.index.to_le_bytes());
        hash.write(&a.digest.to_le_bytes());
    }
    RunReport {
        seed: 0,
        scenario: scenario.name.clone(),
        ops,
        faults: driver.injected,
        virtual_time: start.elapsed(),
        linearizability,
        violations,
        refusals,
        trace,
        trace_hash: hash.finish(),
    }
}

/// How long after a fault on a datacenter's own servers its clients may still lawfully see
/// errors: a restarted server catching up, an election after a crash.
const DISTURBANCE_SETTLE: Duration = Duration::from_secs(5);

/// The slowest a "No path to datacenter" answer may be: a round trip to the client's own
/// server, far inside the call timeout.
const FAIL_FAST_MAX: Duration = Duration::from_millis(500);

/// The address of client process `id` (1-based) of datacenter `home`: `10.0.1.<id>` with one
/// datacenter (as always), `10.<home>.1.<id>` with several.
fn client_address(federated: bool, home: usize, id: u64) -> std::net::IpAddr {
    if federated {
        client_ip_in(home, id as usize - 1)
    } else {
        client_ip(id as usize - 1)
    }
}

/// A client endpoint: bound to its own address with several datacenters, so the network
/// knows where it is.
async fn connect(federated: bool, ip: std::net::IpAddr, addrs: Vec<std::net::SocketAddr>) -> SimClient {
    if federated {
        SimClient::connect_from(ip, addrs).await
    } else {
        SimClient::connect(addrs).await
    }
}

/// The leaders seen so far, per datacenter (each its own Raft cluster, Raft ids from 1).
struct Leaders {
    by_dc: Vec<Vec<LeaderObserved>>,
    /// (when, datacenter, Raft id, term), in the order seen.
    log: Vec<(Duration, usize, u64, u64)>,
}

impl Leaders {
    fn new(datacenters: usize) -> Leaders {
        Leaders { by_dc: vec![Vec::new(); datacenters], log: Vec::new() }
    }
}

/// The largest error any server's wall clock can have during the run: its `[clocks]` offset,
/// plus the largest offset a clock fault adds, plus the drift of both accumulated over the
/// whole run (a fault's drift leaves its accumulated error behind when it ends). Lock-delay
/// windows are shortened by twice this, which keeps them sound.
fn clock_error_max(scenario: &Scenario) -> Duration {
    use crate::scenario::{Fault, FaultKind};
    let clocks = scenario.clocks;
    let (fault_offset_ns, fault_drift_ppm) = match &scenario.nemesis {
        Nemesis::Random(r) if r.faults.contains(&FaultKind::Clock) => {
            // What `FaultDriver::draw` can pick.
            (clocks.offset_max_ns.max(1_000_000_000), u64::from(clocks.drift_max_ppm.max(5_000)))
        }
        Nemesis::Schedule(entries) => entries.iter().fold((0, 0), |(o, d), e| match e.fault {
            Fault::Clock { offset_ns, drift_ppm, .. } => {
                (o.max(offset_ns.unsigned_abs()), d.max(u64::from(drift_ppm.unsigned_abs())))
            }
            _ => (o, d),
        }),
        _ => (0, 0),
    };
    let drift_ppm = u64::from(clocks.drift_max_ppm) + fault_drift_ppm;
    let drift_ns = (u128::from(scenario.run_ns()) * u128::from(drift_ppm) / 1_000_000) as u64;
    Duration::from_nanos(clocks.offset_max_ns + fault_offset_ns + drift_ns)
}

/// Observes leaders until `until` (time since `start`), expiring faults as their time comes.
async fn observe_until(
    world: &World,
    driver: &mut FaultDriver,
    leaders: &mut Leaders,
    start: Instant,
    until: Duration,
) {
    while start.elapsed() < until {
        driver.expire(world, start.elapsed());
        let step = (start.elapsed() + Duration::from_millis(50)).min(until);
        observe_leaders(world, leaders, start, step).await;
    }
    driver.expire(world, start.elapsed());
}

async fn observe_leaders(world: &World, leaders: &mut Leaders, start: Instant, until: Duration) {
    loop {
        for (dc, cluster) in world.datacenters.iter().enumerate() {
            for (id, term, state) in cluster.observer.states() {
                let seen = &mut leaders.by_dc[dc];
                if state == ServerState::Leader && !seen.iter().any(|l| l.node == id && l.term == term) {
                    seen.push(LeaderObserved { node: id, term });
                    leaders.log.push((start.elapsed(), dc, id, term));
                }
            }
        }
        let now = start.elapsed();
        if now >= until {
            return;
        }
        madsim::time::sleep(Duration::from_millis(10).min(until - now)).await;
    }
}

/// Every running server's applied log entries still in its log, for State Machine Safety.
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
            let mut h = Fnv::default();
            h.write(&serde_json::to_vec(&e.payload).unwrap_or_default());
            out.push(Applied { node: id, index: e.log_id.index(), term: e.log_id.leader_id.term, digest: h.0 });
        }
    }
    out
}

/// Parses `a..b` (or a single seed `a`) into a seed range.
pub fn parse_seeds(text: &str) -> Result<std::ops::Range<u64>, String> {
    let bad = || format!("seeds must look like 100..200 or 7 (got {text:?})");
    match text.split_once("..") {
        Some((a, b)) => {
            let a: u64 = a.trim().parse().map_err(|_| bad())?;
            let b: u64 = b.trim().parse().map_err(|_| bad())?;
            if a >= b {
                return Err(format!("the seed range {text:?} is empty"));
            }
            Ok(a..b)
        }
        None => {
            let a: u64 = text.trim().parse().map_err(|_| bad())?;
            Ok(a..a + 1)
        }
    }
}

/// Counts per checker, for batch summaries.
pub fn tally(reports: &[RunReport]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for r in reports {
        for v in &r.violations {
            *out.entry(v.checker.to_string()).or_insert(0) += 1;
        }
        if r.linearizability.is_violation() {
            *out.entry("linearizability".to_string()).or_insert(0) += 1;
        }
    }
    out
}
