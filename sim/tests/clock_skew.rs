//! Per-node clock offset and drift: a drifting node's runtime sleeps and instants follow its
//! local clock, a drift change keeps that clock continuous, the skewed `Clock` shows the offset,
//! and a cluster whose servers all disagree about time still elects a leader and takes writes,
//! the same way every time for a seed.
//!
//! Replay one seed: `SIM_SEED=<n> cargo test -p sim --test clock_skew`.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use legate_core::catalog::{Command, KvOp, KvVerb, Query, QueryValue, Response};
use legate_runtime::server::{Consistency, QueryOptions, ServerResponse};
use madsim::runtime::Handle;
use openraft_rt::AsyncRuntime;
use sim::runtime::clock::{local_now_on, node_clock, set_skew, skew_of, Skew};
use sim::runtime::SimInstant;
use sim::world::client::SimClient;
use sim::world::net::ClientCall;
use sim::world::{client_ip, Cluster, RaftTiming};
use sim::MadsimRuntime;

const SEEDS: [u64; 2] = [1, 2];
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

fn seeds() -> Vec<u64> {
    match std::env::var("SIM_SEED") {
        Ok(s) => vec![s.parse().expect("SIM_SEED must be a u64")],
        Err(_) => SEEDS.to_vec(),
    }
}

type Test<T> = fn() -> Pin<Box<dyn Future<Output = T>>>;

/// Runs one seed in a fresh world on a fresh thread.
fn run_seed<T: Send + 'static>(seed: u64, test: Test<T>) -> T {
    println!("seed {seed} (replay: SIM_SEED={seed} cargo test -p sim --test clock_skew)");
    let run = std::thread::spawn(move || {
        let mut rt = MadsimRuntime::with_seed_and_config(seed, madsim::Config::default());
        rt.madsim().set_time_limit(Duration::from_secs(600));
        rt.block_on(test())
    });
    match run.join() {
        Ok(out) => out,
        Err(panic) => {
            eprintln!("seed {seed} failed; replay: SIM_SEED={seed} cargo test -p sim --test clock_skew");
            std::panic::resume_unwind(panic)
        }
    }
}

fn ms_between(a: Duration, b: Duration) -> f64 {
    (a.as_secs_f64() - b.as_secs_f64()) * 1e3
}

/// How far `node`'s local monotonic clock is ahead of real time (negative: behind).
fn local_ahead_ns(node: madsim::task::NodeId) -> i128 {
    let (local, real) = (local_now_on(node).into_std(), Instant::now());
    match local.checked_duration_since(real) {
        Some(ahead) => ahead.as_nanos() as i128,
        None => -((real - local).as_nanos() as i128),
    }
}

fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_millis() as u64
}

/// (a) +10% drift: a 10 s runtime sleep takes 10/1.1 s of real time and reads 10 s locally;
/// a node without skew reads real time exactly.
fn drifting_sleep() -> Pin<Box<dyn Future<Output = ()>>> {
    Box::pin(async {
        let handle = Handle::current();
        let fast = handle.create_node().name("fast").build();
        let plain = handle.create_node().name("plain").build();
        set_skew(fast.id(), Skew { offset_ns: 0, drift_ppm: 100_000 });
        assert_eq!(skew_of(fast.id()), Skew { offset_ns: 0, drift_ppm: 100_000 });
        assert_eq!(skew_of(plain.id()), Skew::default());

        let sleep = |node: &madsim::runtime::NodeHandle| {
            node.spawn(async {
                let (real0, local0) = (Instant::now(), SimInstant::now());
                MadsimRuntime::sleep(Duration::from_secs(10)).await;
                (real0.elapsed(), local0.elapsed())
            })
        };
        let (fast, plain) = (sleep(&fast), sleep(&plain));
        let (real, local) = fast.await.expect("the fast node's task");
        let expected_real = Duration::from_secs_f64(10.0 / 1.1);
        assert!(
            real >= expected_real && real < expected_real + Duration::from_micros(1),
            "real time slept on a +10% node: {real:?}, expected {expected_real:?}"
        );
        assert!(
            local >= Duration::from_secs(10) && local < Duration::from_secs(10) + Duration::from_micros(1),
            "local time slept on a +10% node: {local:?}"
        );

        let (real, local) = plain.await.expect("the plain node's task");
        assert_eq!(real, local, "a node without skew reads real time");
        assert!(real >= Duration::from_secs(10) && real < Duration::from_secs(10) + Duration::from_micros(1));
    })
}

/// A node without drift arms its timers at exactly the deadlines madsim's own sleeps get, so a
/// run without skew keeps its schedule (and its trace hashes).
fn unskewed_deadlines() -> Pin<Box<dyn Future<Output = ()>>> {
    Box::pin(async {
        let handle = Handle::current();
        let never = handle.create_node().name("never").build();
        let zeroed = handle.create_node().name("zeroed").build();
        let offset_only = handle.create_node().name("offset").build();
        let back = handle.create_node().name("back").build();
        set_skew(zeroed.id(), Skew::default());
        set_skew(offset_only.id(), Skew { offset_ns: -3_000_000_000, drift_ppm: 0 });
        set_skew(back.id(), Skew { offset_ns: 0, drift_ppm: 300 });
        madsim::time::sleep(Duration::from_secs(1)).await;
        set_skew(back.id(), Skew::default());
        for node in [&never, &zeroed, &offset_only] {
            node.spawn(async {
                for d in [0, 1, 999_999, 1_000_000, 1_234_567_891] {
                    let d = Duration::from_nanos(d);
                    let now = SimInstant::now();
                    assert_eq!(now.into_std(), Instant::now(), "local time is real time");
                    assert_eq!(MadsimRuntime::sleep(d).real_deadline(), madsim::time::sleep(d).deadline());
                    let (local, real) = (now + d, Instant::now() + d);
                    assert_eq!(
                        MadsimRuntime::sleep_until(local).real_deadline(),
                        madsim::time::sleep_until(real).deadline()
                    );
                    MadsimRuntime::sleep(d).await;
                }
            })
            .await
            .expect("the node's task");
        }
        // Drift back to zero after 1 s at +300 ppm: 300 µs ahead for good, timers shifted by
        // exactly that, no rounding.
        back.spawn(async {
            let ahead = SimInstant::now().into_std() - Instant::now();
            assert_eq!(ahead, Duration::from_micros(300));
            let d = Duration::from_nanos(1_234_567_891);
            assert_eq!(MadsimRuntime::sleep(d).real_deadline(), madsim::time::sleep(d).deadline());
        })
        .await
        .expect("the node's task");
    })
}

#[test]
fn no_drift_keeps_madsim_deadlines() {
    for seed in seeds() {
        run_seed(seed, unskewed_deadlines);
    }
}

#[test]
fn drift_scales_sleeps_and_instants() {
    for seed in seeds() {
        run_seed(seed, drifting_sleep);
    }
}

/// (b) Drift changes mid-run: the local clock never jumps or goes back, and runs at each
/// piece's rate. A sleep armed before the clock slowed down still lasts its full local length.
fn drift_changes() -> Pin<Box<dyn Future<Output = ()>>> {
    Box::pin(async {
        let handle = Handle::current();
        let node = handle.create_node().name("n").build().id();
        let mut last = local_now_on(node);
        for drift_ppm in [50_000, -50_000, 0, 200, -999_000, 999_999, 0, -200] {
            // Continuity: the same real instant reads the same before and after the change.
            let before = local_now_on(node);
            set_skew(node, Skew { offset_ns: 7, drift_ppm });
            assert_eq!(local_now_on(node), before, "drift {drift_ppm} ppm moved the local clock");
            assert!(before >= last, "the local clock went back");
            // Rate: one real second is 1 s × (1 + drift) locally, to the ns.
            madsim::time::sleep(Duration::from_secs(1)).await;
            let now = local_now_on(node);
            let expected = 1_000_000_000i128 * (1_000_000 + i128::from(drift_ppm)) / 1_000_000;
            let got = (now.saturating_duration_since(before)).as_nanos() as i128;
            // madsim adds 50 ns to each timer it fires.
            let slack = 50 * (1_000_000 + i128::from(drift_ppm)) / 1_000_000 + 1;
            assert!(
                (got - expected).abs() <= slack,
                "drift {drift_ppm} ppm: 1 s real read {got} ns locally, expected {expected}"
            );
            last = now;
        }

        // A 10 s sleep on a +10% node whose clock drops to -10% after 1 s real: the timer
        // armed for 9.09 s real wakes with the local clock short of 10 s and re-arms.
        set_skew(node, Skew { offset_ns: 0, drift_ppm: 100_000 });
        let sleeper = handle.get_node(node).expect("the node").spawn(async {
            let (real0, local0) = (Instant::now(), SimInstant::now());
            MadsimRuntime::sleep(Duration::from_secs(10)).await;
            (real0.elapsed(), local0.elapsed())
        });
        madsim::time::sleep(Duration::from_secs(1)).await;
        set_skew(node, Skew { offset_ns: 0, drift_ppm: -100_000 });
        let (real, local) = sleeper.await.expect("the sleeper");
        assert!(local >= Duration::from_secs(10), "woke early: {local:?} local");
        assert!(local < Duration::from_secs(10) + Duration::from_millis(1), "woke late: {local:?} local");
        // 1 s at +10% reads 1.1 s; the other 8.9 s local at -10% take 8.9/0.9 s real.
        let expected = 1.0 + 8.9 / 0.9;
        assert!((real.as_secs_f64() - expected).abs() < 1e-3, "real {real:?}, expected {expected} s");
    })
}

#[test]
fn drift_changes_keep_the_local_clock_continuous() {
    for seed in seeds() {
        run_seed(seed, drift_changes);
    }
}

/// (c) `node_clock()` shows the offset and the accumulated drift on its wall clock, an offset
/// change steps the wall clock, and its monotonic clock follows the drift.
fn wall_clock() -> Pin<Box<dyn Future<Output = ()>>> {
    Box::pin(async {
        let handle = Handle::current();
        let node = handle.create_node().name("n").build();
        let plain = handle.create_node().name("plain").build();
        set_skew(node.id(), Skew { offset_ns: 250_000_000, drift_ppm: 0 });

        let clocks = node.spawn(async { node_clock() }).await.expect("node_clock on the node");
        let plain_clock = plain.spawn(async { node_clock() }).await.expect("node_clock on the plain node");
        let real_ms = unix_ms();
        assert!(clocks.wall_ms().abs_diff(real_ms + 250) <= 1, "offset +250 ms: {} vs {real_ms}", clocks.wall_ms());
        assert!(plain_clock.wall_ms().abs_diff(real_ms) <= 1);

        // +10% drift for 10 s real: the wall clock gains 1 s on top of the offset.
        let mono0 = clocks.mono_ms();
        set_skew(node.id(), Skew { offset_ns: 250_000_000, drift_ppm: 100_000 });
        madsim::time::sleep(Duration::from_secs(10)).await;
        let real_ms = unix_ms();
        assert!(clocks.wall_ms().abs_diff(real_ms + 1_250) <= 1, "{} vs {real_ms} + 1250", clocks.wall_ms());
        assert!(clocks.mono_ms().abs_diff(mono0 + 11_000) <= 1, "mono {} from {mono0}", clocks.mono_ms());
        assert!(plain_clock.wall_ms().abs_diff(real_ms) <= 1);

        // An NTP-like step back by 2 s: the wall clock jumps, the monotonic one does not.
        let mono1 = clocks.mono_ms();
        set_skew(node.id(), Skew { offset_ns: -750_000_000, drift_ppm: 100_000 });
        assert!(clocks.wall_ms().abs_diff(real_ms + 250) <= 1, "after the step: {}", clocks.wall_ms());
        assert_eq!(clocks.mono_ms(), mono1);

        // instant_at: the real instant at which the node's monotonic clock reads a value.
        let at = clocks.instant_at(clocks.mono_ms() + 1_100);
        let ahead = at.saturating_duration_since(Instant::now());
        assert!(
            ms_between(ahead, Duration::from_millis(1_000)).abs() <= 1.0,
            "1.1 s local at +10% is 1 s real away, got {ahead:?}"
        );
        madsim::time::sleep_until(at).await;
        assert!(clocks.mono_ms() >= mono1 + 1_100);

        // The same clock read from another node's task still reads its own node: offset
        // -750 ms, plus 1.1 s gained over 11 s real at +10%.
        let from_elsewhere = plain.spawn(async move { clocks.wall_ms() }).await.expect("the plain node's task");
        assert!(from_elsewhere.abs_diff(unix_ms() + 350) <= 1, "{from_elsewhere} vs {}", unix_ms());
    })
}

#[test]
fn node_clock_shows_offset_and_drift() {
    for seed in seeds() {
        run_seed(seed, wall_clock);
    }
}

fn set(key: &str, value: &str) -> ClientCall {
    ClientCall::Write(Command::Kv(KvOp { value: value.as_bytes().to_vec(), ..KvOp::new(KvVerb::Set, key) }))
}

async fn write_through(client: &SimClient, server: usize, key: &str, value: &str) {
    let answer = client.call(server, set(key, value), CALL_TIMEOUT).await;
    assert!(
        matches!(answer, Ok(ServerResponse::Written(Response::Bool(true)))),
        "write {key} via {server}: {answer:?}"
    );
}

async fn read_consistent(client: &SimClient, server: usize, key: &str) -> Option<Vec<u8>> {
    let call = ClientCall::Read {
        opts: QueryOptions { consistency: Consistency::Consistent, min_index: 0, wait_ms: None },
        query: Query::KvGet { key: key.to_string() },
    };
    match client.call(server, call, CALL_TIMEOUT).await {
        Ok(ServerResponse::Read(r)) => match r.answer.value {
            QueryValue::Kv(entry) => entry.map(|e| e.value),
            other => panic!("a KV read answered {other:?}"),
        },
        other => panic!("read of {key} on server {server}: {other:?}"),
    }
}

/// (d) Three servers that disagree about time (offsets ±100 ms, drift ±200 ppm, one at ±5%)
/// elect one leader and take writes through every server. Returns what happened, for (e).
async fn skewed_cluster(extreme_ppm: i32) -> String {
    let start = Instant::now();
    let cluster = Cluster::start(3, RaftTiming::default());
    // No server task has run yet: every server's clocks are skewed from its first instant.
    let skews = [
        Skew { offset_ns: 100_000_000, drift_ppm: 200 },
        Skew { offset_ns: -100_000_000, drift_ppm: -200 },
        Skew { offset_ns: 0, drift_ppm: extreme_ppm },
    ];
    for (slot, skew) in cluster.servers.iter().zip(skews) {
        set_skew(slot.node.id(), skew);
    }
    let leader = cluster.wait_for_leader(Duration::from_secs(30)).await.expect("a leader is elected");
    let addrs = cluster.addrs();
    let client_node = cluster.handle.create_node().name("c1").ip(client_ip(0)).build();
    let log = client_node
        .spawn(async move {
            let client = SimClient::connect(addrs).await;
            for i in 0..9 {
                write_through(&client, i % 3, &format!("k{i}"), &format!("v{i}")).await;
            }
            let mut log = Vec::new();
            for i in 0..9 {
                for server in 0..3 {
                    let v = read_consistent(&client, server, &format!("k{i}")).await;
                    assert_eq!(v.as_deref(), Some(format!("v{i}").as_bytes()));
                    log.push(format!("k{i}@s{server}"));
                }
            }
            log
        })
        .await
        .expect("client runs");
    // Twenty more seconds of heartbeats on clocks that run apart, then one more write.
    madsim::time::sleep(Duration::from_secs(20)).await;
    let later = cluster.wait_for_leader(Duration::from_secs(30)).await.expect("still a leader");
    let addrs = cluster.addrs();
    client_node
        .spawn(async move {
            let client = SimClient::connect(addrs).await;
            write_through(&client, 0, "later", "yes").await;
            assert_eq!(read_consistent(&client, 2, "later").await.as_deref(), Some(&b"yes"[..]));
        })
        .await
        .expect("client runs");
    // The servers' clocks did run apart (openraft ran on them all along).
    let ahead_ns: Vec<i128> = cluster.servers.iter().map(|s| local_ahead_ns(s.node.id())).collect();
    let expected_ms = |ppm: i32| Instant::now().duration_since(start).as_secs_f64() * f64::from(ppm) / 1e3;
    for (ahead, skew) in ahead_ns.iter().zip(skews) {
        let expected = expected_ms(skew.drift_ppm);
        assert!((*ahead as f64 / 1e6 - expected).abs() < 1.0, "ahead {ahead} ns, expected {expected} ms");
    }
    format!(
        "leader s{} then s{} at {:?}; reads {}; local clocks ahead (ns) {ahead_ns:?}",
        leader + 1,
        later + 1,
        Instant::now(),
        log.join(",")
    )
}

fn cluster_fast_outlier() -> Pin<Box<dyn Future<Output = String>>> {
    Box::pin(skewed_cluster(50_000))
}

fn cluster_slow_outlier() -> Pin<Box<dyn Future<Output = String>>> {
    Box::pin(skewed_cluster(-50_000))
}

#[test]
fn skewed_cluster_elects_and_writes() {
    for seed in seeds() {
        println!("{}", run_seed(seed, cluster_fast_outlier));
        println!("{}", run_seed(seed, cluster_slow_outlier));
    }
}

/// (e) A seed replays: the same run twice gives the same result, to the virtual nanosecond.
#[test]
fn skewed_seed_replays() {
    let seed = seeds()[0];
    let first = run_seed(seed, cluster_fast_outlier);
    let second = run_seed(seed, cluster_fast_outlier);
    assert_eq!(first, second);
}
