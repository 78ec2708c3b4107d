//! Three servers under random partitions, crashes and pauses while a client writes; after the
//! faults heal, a leader is elected and writes complete again. Also asserts Raft's election
//! safety (one leader per term) from periodic observations.
//!
//! Replay one seed: `SIM_SEED=<n> cargo test -p sim --test chaos_smoke`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use legate_core::catalog::{Command, KvOp, KvVerb, Response};
use legate_runtime::server::ServerResponse;
use openraft::ServerState;
use sim::world::client::SimClient;
use sim::world::nemesis::{FaultMix, Nemesis};
use sim::world::net::ClientCall;
use sim::world::{client_ip, Cluster, RaftTiming};
use sim::MadsimRuntime;

const SEEDS: std::ops::Range<u64> = 0..8;
const SAFETY_PHASE: Duration = Duration::from_secs(30);
const LIVENESS_BOUND: Duration = Duration::from_secs(30);

fn seeds() -> Vec<u64> {
    match std::env::var("SIM_SEED") {
        Ok(s) => vec![s.parse().expect("SIM_SEED must be a u64")],
        Err(_) => SEEDS.collect(),
    }
}

fn write(key: &str, value: u64) -> ClientCall {
    ClientCall::Write(Command::Kv(KvOp { value: value.to_le_bytes().to_vec(), ..KvOp::new(KvVerb::Set, key) }))
}

async fn chaos_then_heal() {
    let cluster = Cluster::start(3, RaftTiming::default());
    cluster.wait_for_leader(Duration::from_secs(30)).await.expect("a first leader");
    let addrs = cluster.addrs();
    let client_node = cluster.handle.create_node().name("c1").ip(client_ip(0)).build();

    // Safety phase: a client writes continuously while the nemesis strikes every 1-3 s.
    let stop = Arc::new(Mutex::new(false));
    let stop_c = stop.clone();
    let writer = client_node.spawn(async move {
        let client = SimClient::connect(addrs).await;
        let mut acked = 0u64;
        let mut i = 0u64;
        while !*stop_c.lock().unwrap() {
            i += 1;
            let server = (i % 3) as usize;
            if let Ok(ServerResponse::Written(Response::Bool(true))) =
                client.call(server, write("chaos", i), Duration::from_secs(5)).await
            {
                acked += 1;
            }
            madsim::time::sleep(Duration::from_millis(50)).await;
        }
        (client, acked)
    });
    let mut nemesis = Nemesis::new(FaultMix::default());
    let mut leaders_by_term: BTreeMap<u64, u64> = BTreeMap::new();
    let end = Instant::now() + SAFETY_PHASE;
    while Instant::now() < end {
        nemesis.step(&cluster);
        let pause = Duration::from_millis(madsim::rand::random::<u64>() % 2_000 + 1_000);
        let until = Instant::now() + pause;
        while Instant::now() < until {
            for (id, term, state) in cluster.observer.states() {
                if state == ServerState::Leader {
                    let first = *leaders_by_term.entry(term).or_insert(id);
                    assert_eq!(first, id, "two leaders in term {term}: {first} and {id}; faults {:?}", nemesis.log);
                }
            }
            madsim::time::sleep(Duration::from_millis(10)).await;
        }
    }
    *stop.lock().unwrap() = true;
    let (client, _acked) = writer.await.expect("writer runs");

    // Liveness phase: heal everything; a leader appears and a write completes within the bound.
    nemesis.heal(&cluster);
    let healed_at = Instant::now();
    cluster
        .wait_for_leader(LIVENESS_BOUND)
        .await
        .unwrap_or_else(|| panic!("no leader after healing; faults {:?}", nemesis.log));
    let done = client_node
        .spawn(async move {
            loop {
                for server in 0..3 {
                    if let Ok(ServerResponse::Written(Response::Bool(true))) =
                        client.call(server, write("after-heal", 1), Duration::from_secs(2)).await
                    {
                        return Instant::now();
                    }
                }
                madsim::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await
        .expect("client runs");
    assert!(done - healed_at <= LIVENESS_BOUND, "a write took {:?} after healing", done - healed_at);
}

#[test]
fn chaos_then_heal_elects_and_writes() {
    for seed in seeds() {
        println!("seed {seed} (replay: SIM_SEED={seed} cargo test -p sim --test chaos_smoke)");
        let run = std::thread::spawn(move || {
            let mut rt = MadsimRuntime::with_seed_and_config(seed, madsim::Config::default());
            rt.madsim().set_time_limit(Duration::from_secs(600));
            openraft_rt::AsyncRuntime::block_on(&mut rt, chaos_then_heal())
        });
        if let Err(panic) = run.join() {
            eprintln!("seed {seed} failed; replay: SIM_SEED={seed} cargo test -p sim --test chaos_smoke");
            std::panic::resume_unwind(panic);
        }
    }
}
