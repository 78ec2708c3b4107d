//! The lock, service and txn workloads on three simulated servers, driven directly (without a
//! scenario file): short runs on fixed seeds record plenty of operations and find nothing wrong,
//! including across a leader crash; with a bug planted, the checker meant to see it does.
//!
//! Replay one seed: `SIM_SEED=<n> cargo test -p sim --test workloads -- --nocapture`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use legate_core::plant::Planted;
use sim::check::{self, Violation};
use sim::scenario::{
    Fault, FaultKind, LockClient, LockWorkload, Partition, RandomNemesis, ServiceWorkload, TxnWorkload,
};
use sim::workload::lock::LockRun;
use sim::workload::service::ServiceRun;
use sim::workload::txn::TxnRun;
use sim::workload::{think_time, Ctx, End, Outcome};
use sim::world::client::SimClient;
use sim::world::faults::FaultDriver;
use sim::world::skew::Skew;
use sim::world::{client_ip, Cluster, ClusterOptions, Observer};
use sim::MadsimRuntime;

const CALL_TIMEOUT: Duration = Duration::from_secs(2);
const SERVERS: usize = 3;

fn seeds(default: &[u64]) -> Vec<u64> {
    match std::env::var("SIM_SEED") {
        Ok(s) => vec![s.parse().expect("SIM_SEED must be a u64")],
        Err(_) => default.to_vec(),
    }
}

/// One workload of a run.
#[derive(Clone)]
enum Run {
    Lock(LockRun),
    Service(ServiceRun),
    Txn(TxnRun),
}

impl Run {
    async fn client(&self, ctx: Ctx) {
        match self {
            Run::Lock(r) => r.client(ctx).await,
            Run::Service(r) => r.client(ctx).await,
            Run::Txn(r) => r.client(ctx).await,
        }
    }

    async fn observe(&self, observer: Observer, ctx: Ctx) {
        match self {
            Run::Lock(r) => r.observe(observer, ctx).await,
            Run::Service(r) => r.observe(observer, ctx).await,
            Run::Txn(r) => r.observe(observer, ctx).await,
        }
    }

    fn finish(self, end: &End) -> Outcome {
        match self {
            Run::Lock(r) => r.finish(end),
            Run::Service(r) => r.finish(end),
            Run::Txn(r) => r.finish(end),
        }
    }
}

/// A run: workloads (with their client count and rate), planted bugs, faults, and for how long.
#[derive(Clone)]
struct Setup {
    workloads: Vec<(Run, u32, u32)>,
    planted: Planted,
    /// (start, duration, fault), in start order; all end before `safety`.
    faults: Vec<(Duration, Duration, Fault)>,
    /// Faults drawn from the seed during the safety phase, after the scheduled ones.
    nemesis: Option<RandomNemesis>,
    /// Faults happen before this; then everything heals.
    safety: Duration,
    /// The whole run.
    total: Duration,
}

/// What a run found: per workload, its outcome; plus the index-monotonicity verdict.
struct Found {
    outcomes: Vec<Outcome>,
    monotonic: Vec<Violation>,
}

impl Found {
    fn violations(&self) -> Vec<String> {
        let mut out: Vec<String> =
            self.outcomes.iter().flat_map(|o| o.violations.iter()).map(ToString::to_string).collect();
        out.extend(self.monotonic.iter().map(ToString::to_string));
        out
    }

    fn caught_by(&self, checker: &str) -> bool {
        self.outcomes.iter().flat_map(|o| o.violations.iter()).any(|v| v.checker == checker)
    }

    /// Operations of workload `i` that completed `ok`.
    fn ok_ops(&self, i: usize) -> usize {
        self.outcomes[i].trace.iter().filter(|line| line.contains("] ok ")).count()
    }
}

/// Runs `setup` on `seed` in a fresh world on a fresh thread.
fn run(seed: u64, setup: Setup) -> Found {
    std::thread::Builder::new()
        .name(format!("seed-{seed}"))
        .stack_size(64 << 20)
        .spawn(move || {
            let mut rt = MadsimRuntime::with_seed_and_config(seed, madsim::Config::default());
            rt.madsim().set_time_limit(setup.total + Duration::from_secs(120));
            openraft_rt::AsyncRuntime::block_on(&mut rt, drive(setup))
        })
        .expect("a thread for the seed")
        .join()
        .unwrap_or_else(|panic| {
            eprintln!("seed {seed} panicked; replay: SIM_SEED={seed} cargo test -p sim --test workloads");
            std::panic::resume_unwind(panic)
        })
}

async fn drive(setup: Setup) -> Found {
    let start = Instant::now();
    let start_unix_ms = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    let cluster = Cluster::start_with(SERVERS, ClusterOptions { planted: setup.planted, ..ClusterOptions::default() });
    let addrs = cluster.addrs();
    let stop = Arc::new(AtomicBool::new(false));
    let mut nodes = Vec::new();
    let mut tasks = Vec::new();
    let mut next_id = 1u64;
    for (workload, clients, rate) in &setup.workloads {
        let think = think_time(*rate, *clients);
        for _ in 0..*clients {
            let id = next_id;
            next_id += 1;
            let node = cluster.handle.create_node().name(format!("c{id}")).ip(client_ip(id as usize - 1)).build();
            nodes.push(node.id());
            let (addrs, stop, workload) = (addrs.clone(), stop.clone(), workload.clone());
            tasks.push(node.spawn(async move {
                let client = SimClient::connect(addrs).await;
                workload.client(Ctx::new(client, id, CALL_TIMEOUT, think, start, stop)).await;
            }));
        }
    }
    let oracle = cluster.handle.create_node().name("oracle").ip(client_ip(next_id as usize - 1)).build();
    nodes.push(oracle.id());
    for (workload, _, _) in &setup.workloads {
        let (addrs, stop, workload, observer) =
            (addrs.clone(), stop.clone(), workload.clone(), cluster.observer.clone());
        let id = next_id;
        tasks.push(oracle.spawn(async move {
            let client = SimClient::connect(addrs).await;
            workload
                .observe(observer, Ctx::new(client, id, CALL_TIMEOUT, Duration::from_millis(10), start, stop))
                .await;
        }));
    }

    let mut driver = FaultDriver::new(vec![Skew::default(); SERVERS]);
    for (at, duration, fault) in &setup.faults {
        wait_until(&cluster, &mut driver, start, *at).await;
        driver.apply(&cluster, fault, start.elapsed(), *duration);
    }
    if let Some(spec) = &setup.nemesis {
        loop {
            let next = start.elapsed() + Duration::from_nanos(spec.interval_ns);
            if next >= setup.safety {
                break;
            }
            wait_until(&cluster, &mut driver, start, next).await;
            driver.draw(&cluster, spec, (0, 0), start.elapsed());
        }
    }
    wait_until(&cluster, &mut driver, start, setup.safety).await;
    driver.heal(&cluster, start.elapsed());
    sim::world::net::clear_link_faults();
    let healed_at = start.elapsed();
    madsim::time::sleep(setup.total.saturating_sub(start.elapsed())).await;
    stop.store(true, Ordering::SeqCst);
    for task in tasks {
        let _ = task.await;
    }
    let end = End {
        healed_at,
        observed_until: start.elapsed(),
        clock_offset_max: Duration::ZERO,
        start,
        start_unix_ms,
        wan: None,
    };
    let outcomes: Vec<Outcome> = setup.workloads.into_iter().map(|(w, _, _)| w.finish(&end)).collect();
    let events: Vec<_> = outcomes.iter().flat_map(|o| o.index_events.iter().cloned()).collect();
    let monotonic = check::monotonic::check(&events);
    for line in &driver.events {
        println!("{line}");
    }
    // Kill every node, as the runner does: it breaks the reference cycles of the world.
    cluster.observer.clear();
    for slot in &cluster.servers {
        cluster.handle.kill(slot.node.id());
    }
    for node in nodes {
        cluster.handle.kill(node);
    }
    Found { outcomes, monotonic }
}

/// Waits until `until` (since `start`), ending faults as their time comes.
async fn wait_until(cluster: &Cluster, driver: &mut FaultDriver, start: Instant, until: Duration) {
    while start.elapsed() < until {
        driver.expire(cluster, start.elapsed());
        madsim::time::sleep(Duration::from_millis(50).min(until - start.elapsed())).await;
    }
    driver.expire(cluster, start.elapsed());
}

fn lock_spec() -> LockWorkload {
    LockWorkload {
        locks: 2,
        clients: 4,
        rate_per_s: 20,
        session_ttl_ns: 2_000_000_000,
        lock_delay_ns: 1_000_000_000,
        hold_ns: 500_000_000,
        abandon: 0.1,
        client: LockClient::Api,
        limit: 1,
    }
}

fn service_spec() -> ServiceWorkload {
    ServiceWorkload { services: 2, instances: 3, clients: 3, rate_per_s: 20, flap_interval_ns: 1_000_000_000 }
}

fn txn_spec() -> TxnWorkload {
    TxnWorkload { keys: 6, clients: 3, rate_per_s: 20, ops_per_txn: 3 }
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// The leader crashes at 6 s and comes back at 9 s.
fn leader_crash() -> Vec<(Duration, Duration, Fault)> {
    let crash = Fault::Crash { target: sim::scenario::Target::Leader, torn_write: true, bit_flip: false };
    vec![(secs(6), secs(3), crash)]
}

fn assert_clean(seed: u64, name: &str, found: &Found, min_ok: usize) {
    let violations = found.violations();
    assert!(
        violations.is_empty(),
        "seed {seed}: the {name} workload found violations (replay: SIM_SEED={seed} cargo test -p sim --test \
         workloads):\n{}",
        violations.join("\n")
    );
    let (ops, ok) = (found.outcomes[0].ops, found.ok_ops(0));
    println!("seed {seed}: {name}: {ops} ops, {ok} ok");
    assert!(ok >= min_ok, "seed {seed}: only {ok} of {ops} {name} ops completed ok (want ≥ {min_ok})");
}

#[test]
fn the_lock_workload_finds_nothing_wrong_with_a_correct_cluster() {
    for seed in seeds(&[1, 2]) {
        let setup = Setup {
            workloads: vec![(Run::Lock(LockRun::new(&lock_spec())), 4, 20)],
            planted: Planted::default(),
            faults: Vec::new(),
            nemesis: None,
            safety: Duration::ZERO,
            total: secs(20),
        };
        let found = run(seed, setup);
        assert_clean(seed, "lock", &found, 40);
    }
}

#[test]
fn the_lock_workload_catches_an_ignored_lock_delay() {
    // As scenarios/negative/ignore-lock-delay.toml: one lock, long holds, many walk away.
    let spec = LockWorkload {
        locks: 1,
        clients: 4,
        rate_per_s: 20,
        session_ttl_ns: 2_000_000_000,
        lock_delay_ns: 3_000_000_000,
        hold_ns: 4_000_000_000,
        abandon: 0.3,
        client: LockClient::Api,
        limit: 1,
    };
    let budget = seeds(&[0, 1, 2, 3, 4, 5, 6, 7]);
    for &seed in &budget {
        let setup = Setup {
            workloads: vec![(Run::Lock(LockRun::new(&spec)), spec.clients, spec.rate_per_s)],
            planted: Planted { ignore_lock_delay: true, ..Planted::default() },
            faults: Vec::new(),
            nemesis: None,
            safety: Duration::ZERO,
            total: secs(20),
        };
        let found = run(seed, setup);
        if found.caught_by("lock_safety") {
            println!("seed {seed}: lock_safety caught the ignored lock-delay:\n{}", found.violations().join("\n"));
            return;
        }
        println!("seed {seed}: not caught ({} ops)", found.outcomes[0].ops);
    }
    panic!("lock_safety never caught the planted ignore-lock-delay bug on seeds {budget:?}");
}

#[test]
fn the_service_workload_finds_nothing_wrong_across_a_leader_crash() {
    for seed in seeds(&[1, 2]) {
        let spec = service_spec();
        let setup = Setup {
            workloads: vec![(Run::Service(ServiceRun::new(&spec)), spec.clients, spec.rate_per_s)],
            planted: Planted::default(),
            faults: leader_crash(),
            nemesis: None,
            safety: secs(10),
            total: secs(20),
        };
        let found = run(seed, setup);
        assert_clean(seed, "service", &found, 150);
    }
}

#[test]
fn the_txn_workload_finds_nothing_wrong_across_a_leader_crash() {
    for seed in seeds(&[1, 2]) {
        let spec = txn_spec();
        let setup = Setup {
            workloads: vec![(Run::Txn(TxnRun::new(&spec)), spec.clients, spec.rate_per_s)],
            planted: Planted::default(),
            faults: leader_crash(),
            nemesis: None,
            safety: secs(10),
            total: secs(20),
        };
        let found = run(seed, setup);
        assert_clean(seed, "txn", &found, 150);
    }
}

#[test]
fn the_service_and_txn_checkers_catch_stale_consistent_reads() {
    // As scenarios/negative/stale-consistent-read.toml: an isolated leader that skips the
    // quorum check keeps answering `?consistent` reads from its old state.
    let isolate = Fault::Partition(Partition::IsolateLeader);
    let faults = vec![(secs(3), secs(4), isolate.clone()), (secs(10), secs(4), isolate)];
    let (mut service_caught, mut txn_caught) = (false, false);
    let budget = seeds(&[0, 1, 2, 3, 4, 5]);
    for &seed in &budget {
        let service = ServiceWorkload { clients: 4, rate_per_s: 60, flap_interval_ns: 500_000_000, ..service_spec() };
        let txn = TxnWorkload { clients: 4, rate_per_s: 60, ..txn_spec() };
        let setup = Setup {
            workloads: vec![
                (Run::Service(ServiceRun::new(&service)), service.clients, service.rate_per_s),
                (Run::Txn(TxnRun::new(&txn)), txn.clients, txn.rate_per_s),
            ],
            planted: Planted { stale_consistent_read: true, ..Planted::default() },
            faults: faults.clone(),
            nemesis: None,
            safety: secs(15),
            total: secs(17),
        };
        let found = run(seed, setup);
        for checker in ["service_health", "txn_realtime"] {
            if let Some(v) = found.outcomes.iter().flat_map(|o| o.violations.iter()).find(|v| v.checker == checker) {
                println!("seed {seed}: {v}");
            }
        }
        service_caught |= found.caught_by("service_health");
        txn_caught |= found.caught_by("txn_realtime");
        if service_caught && txn_caught {
            return;
        }
    }
    panic!(
        "stale consistent reads went unseen on seeds {budget:?}: service_health caught them: {service_caught}, \
         txn_realtime: {txn_caught}"
    );
}

#[test]
fn the_three_workloads_find_nothing_wrong_under_random_faults() {
    // Crashes, pauses, partitions and message faults for 20 s, then 10 s healed: every
    // indeterminate outcome and leader change the checkers must tolerate.
    let nemesis = RandomNemesis {
        faults: vec![
            FaultKind::Partition,
            FaultKind::Crash,
            FaultKind::Pause,
            FaultKind::Drop,
            FaultKind::Delay,
            FaultKind::Duplicate,
            FaultKind::Reorder,
        ],
        interval_ns: 1_000_000_000,
        probability: 0.6,
        duration_max_ns: 3_000_000_000,
        active_max: 2,
        shapes: Vec::new(),
        torn_writes: true,
        bit_flips: false,
    };
    for seed in seeds(&[1, 2, 3]) {
        let (lock, service, txn) = (lock_spec(), service_spec(), txn_spec());
        let setup = Setup {
            workloads: vec![
                (Run::Lock(LockRun::new(&lock)), lock.clients, lock.rate_per_s),
                (Run::Service(ServiceRun::new(&service)), service.clients, service.rate_per_s),
                (Run::Txn(TxnRun::new(&txn)), txn.clients, txn.rate_per_s),
            ],
            planted: Planted::default(),
            faults: Vec::new(),
            nemesis: Some(nemesis.clone()),
            safety: secs(20),
            total: secs(30),
        };
        let found = run(seed, setup);
        let violations = found.violations();
        assert!(
            violations.is_empty(),
            "seed {seed}: violations under random faults (replay: SIM_SEED={seed} cargo test -p sim --test \
             workloads random_faults -- --nocapture):\n{}",
            violations.join("\n")
        );
        // Lock acquires contend (most answer `false`), so fewer lock ops complete `ok`.
        for (i, (name, min_ok)) in [("lock", 20), ("service", 100), ("txn", 100)].into_iter().enumerate() {
            println!("seed {seed}: {name}: {} ops, {} ok", found.outcomes[i].ops, found.ok_ops(i));
            assert!(found.ok_ops(i) >= min_ok, "seed {seed}: too few {name} ops completed ok");
        }
    }
}
