//! Three simulated servers running the production server code: followers forward writes to
//! the leader, consistent reads are answered through the leader, a killed leader is replaced,
//! and a restarted server catches up.
//!
//! Replay one seed: `SIM_SEED=<n> cargo test -p sim --test cluster`.

use std::time::Duration;

use legate_core::catalog::{Command, KvOp, KvVerb, Query, QueryValue, Response};
use legate_runtime::server::{Consistency, QueryOptions, ServerResponse};
use sim::world::client::SimClient;
use sim::world::net::ClientCall;
use sim::world::{client_ip, Cluster, RaftTiming};
use sim::MadsimRuntime;

const SEEDS: [u64; 3] = [1, 2, 3];
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

fn seeds() -> Vec<u64> {
    match std::env::var("SIM_SEED") {
        Ok(s) => vec![s.parse().expect("SIM_SEED must be a u64")],
        Err(_) => SEEDS.to_vec(),
    }
}

fn run_seed(seed: u64, test: fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>) {
    println!("seed {seed} (replay: SIM_SEED={seed} cargo test -p sim --test cluster)");
    let run = std::thread::spawn(move || {
        let mut rt = MadsimRuntime::with_seed_and_config(seed, madsim::Config::default());
        rt.madsim().set_time_limit(Duration::from_secs(600));
        openraft_rt::AsyncRuntime::block_on(&mut rt, test())
    });
    if let Err(panic) = run.join() {
        eprintln!("seed {seed} failed; replay: SIM_SEED={seed} cargo test -p sim --test cluster");
        std::panic::resume_unwind(panic);
    }
}

fn set(key: &str, value: &str) -> ClientCall {
    ClientCall::Write(Command::Kv(KvOp { value: value.as_bytes().to_vec(), ..KvOp::new(KvVerb::Set, key) }))
}

fn get(key: &str, consistency: Consistency) -> ClientCall {
    ClientCall::Read {
        opts: QueryOptions { consistency, min_index: 0, wait_ms: None },
        query: Query::KvGet { key: key.to_string() },
    }
}

async fn read_value(client: &SimClient, server: usize, key: &str, consistency: Consistency) -> Option<Vec<u8>> {
    match client.call(server, get(key, consistency), CALL_TIMEOUT).await {
        Ok(ServerResponse::Read(r)) => match r.answer.value {
            QueryValue::Kv(entry) => entry.map(|e| e.value),
            other => panic!("a KV read answered {other:?}"),
        },
        other => panic!("read of {key} on server {server}: {other:?}"),
    }
}

async fn write_through(client: &SimClient, server: usize, key: &str, value: &str) {
    let answer = client.call(server, set(key, value), CALL_TIMEOUT).await;
    assert!(
        matches!(answer, Ok(ServerResponse::Written(Response::Bool(true)))),
        "write {key} via {server}: {answer:?}"
    );
}

fn forwarding_and_failover() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>> {
    Box::pin(async {
        // Set up: three servers elect a leader.
        let cluster = Cluster::start(3, RaftTiming::default());
        let leader = cluster.wait_for_leader(Duration::from_secs(30)).await.expect("a leader is elected");
        let addrs = cluster.addrs();
        let client_node = cluster.handle.create_node().name("c1").ip(client_ip(0)).build();

        // Act 1: writes through every server, leader and followers alike.
        let written = client_node
            .spawn(async move {
                let client = SimClient::connect(addrs).await;
                for i in 0..9 {
                    write_through(&client, i % 3, &format!("k{i}"), &format!("v{i}")).await;
                }
                // Assert: consistent reads through every server see every write.
                for i in 0..9 {
                    for server in 0..3 {
                        let v = read_value(&client, server, &format!("k{i}"), Consistency::Consistent).await;
                        assert_eq!(v.as_deref(), Some(format!("v{i}").as_bytes()));
                    }
                }
                client
            })
            .await
            .expect("client runs");

        // Act 2: crash the leader; the other two elect a new one and keep taking writes.
        cluster.kill(leader);
        let new_leader = cluster.wait_for_leader(Duration::from_secs(30)).await.expect("a new leader is elected");
        assert_ne!(new_leader, leader);
        let survivor = (0..3).find(|i| *i != leader).expect("two survivors");
        let client = written.clone();
        client_node
            .spawn(async move { write_through(&client, survivor, "after-failover", "yes").await })
            .await
            .expect("client runs");

        // Assert: the restarted server catches up on everything (read from its own state).
        cluster.restart(leader);
        let client = written.clone();
        client_node
            .spawn(async move {
                let deadline = std::time::Instant::now() + Duration::from_secs(30);
                loop {
                    // A call that reaches the server before it is back up times out: try again.
                    let probe = |key: &'static str| {
                        let client = client.clone();
                        async move {
                            matches!(
                                client.call(leader, get(key, Consistency::Stale), Duration::from_secs(1)).await,
                                Ok(ServerResponse::Read(r)) if matches!(r.answer.value, QueryValue::Kv(Some(_)))
                            )
                        }
                    };
                    let caught_up = probe("after-failover").await && probe("k8").await;
                    if caught_up {
                        break;
                    }
                    assert!(std::time::Instant::now() < deadline, "the restarted server never caught up");
                    madsim::time::sleep(Duration::from_millis(100)).await;
                }
            })
            .await
            .expect("client runs");
    })
}

#[test]
fn followers_forward_and_a_killed_leader_is_replaced() {
    for seed in seeds() {
        run_seed(seed, forwarding_and_failover);
    }
}
