//! Three simulated datacenters on a WAN line (dc1 - dc2 - dc3): each server lists the
//! datacenters nearest first from its own probes, a write forwarded to another datacenter lands
//! in that datacenter's KV only, an unknown datacenter has no path, and a datacenter cut off by
//! a WAN partition is answered "No path to datacenter" once the servers have noticed.
//!
//! Replay one seed: `SIM_SEED=<n> cargo test -p sim --test federation`.

use std::time::Duration;

use legate_core::catalog::{Command, KvOp, KvVerb, Query, QueryValue, Response};
use legate_runtime::server::{Consistency, QueryOptions, ReadError, ServerResponse, WriteError};
use madsim::net::NetSim;
use sim::world::client::SimClient;
use sim::world::net::ClientCall;
use sim::world::{client_ip_in, ClusterOptions, World};
use sim::MadsimRuntime;

const SEEDS: [u64; 2] = [1, 2];
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

fn seeds() -> Vec<u64> {
    match std::env::var("SIM_SEED") {
        Ok(s) => vec![s.parse().expect("SIM_SEED must be a u64")],
        Err(_) => SEEDS.to_vec(),
    }
}

fn names() -> Vec<String> {
    ["dc1", "dc2", "dc3"].iter().map(|s| s.to_string()).collect()
}

fn forward(dc: &str, call: ClientCall) -> ClientCall {
    ClientCall::Forward { dc: dc.to_string(), call: Box::new(call) }
}

fn set(key: &str, value: &str) -> ClientCall {
    ClientCall::Write(Command::Kv(KvOp { value: value.as_bytes().to_vec(), ..KvOp::new(KvVerb::Set, key) }))
}

fn get(key: &str) -> ClientCall {
    let opts = QueryOptions { consistency: Consistency::Consistent, min_index: 0, wait_ms: None };
    ClientCall::Read { opts, query: Query::KvGet { key: key.to_string() } }
}

async fn value(client: &SimClient, call: ClientCall) -> Option<String> {
    match client.call(0, call, CALL_TIMEOUT).await {
        Ok(ServerResponse::Read(r)) => match r.answer.value {
            QueryValue::Kv(entry) => entry.map(|e| String::from_utf8_lossy(&e.value).into_owned()),
            other => panic!("a KV read answered {other:?}"),
        },
        other => panic!("read: {other:?}"),
    }
}

fn run(seed: u64) {
    println!("seed {seed} (replay: SIM_SEED={seed} cargo test -p sim --test federation)");
    let run = std::thread::spawn(move || {
        let mut rt = MadsimRuntime::with_seed_and_config(seed, madsim::Config::default());
        rt.madsim().set_time_limit(Duration::from_secs(600));
        openraft_rt::AsyncRuntime::block_on(&mut rt, federation())
    });
    if let Err(panic) = run.join() {
        eprintln!("seed {seed} failed; replay: SIM_SEED={seed} cargo test -p sim --test federation");
        std::panic::resume_unwind(panic);
    }
}

async fn federation() {
    // Set up: one server per datacenter, 40 ms per WAN hop; clients in dc1 and dc3.
    let world = World::start(&names(), 1, ClusterOptions::default(), Duration::from_millis(40));
    let probe = sim::world::wan::WAN_PROBE;
    madsim::time::sleep(probe.recover_max() + Duration::from_secs(2)).await;
    let client_in = |dc: usize| {
        let ip = client_ip_in(dc, 0);
        let node = world.handle.create_node().name(format!("client-{dc}")).ip(ip).build();
        let addrs = world.datacenters[dc].addrs();
        (node, ip, addrs)
    };
    let (east, east_ip, east_addrs) = client_in(0);
    let (west, west_ip, west_addrs) = client_in(2);

    // Act and assert: each server lists itself, then the others nearest first.
    let (dc1_list, dc3_list) = (
        east.spawn(async move {
            let client = SimClient::connect_from(east_ip, east_addrs).await;
            client.call(0, ClientCall::Datacenters, CALL_TIMEOUT).await
        })
        .await
        .expect("the dc1 client runs"),
        west.spawn({
            let addrs = west_addrs.clone();
            async move {
                let client = SimClient::connect_from(west_ip, addrs).await;
                client.call(0, ClientCall::Datacenters, CALL_TIMEOUT).await
            }
        })
        .await
        .expect("the dc3 client runs"),
    );
    assert_eq!(dc1_list, Ok(ServerResponse::Datacenters(vec!["dc1".into(), "dc2".into(), "dc3".into()])));
    assert_eq!(dc3_list, Ok(ServerResponse::Datacenters(vec!["dc3".into(), "dc2".into(), "dc1".into()])));

    // A write forwarded from dc3 to dc1 is in dc1's KV and not in dc3's; dc9 does not exist.
    let addrs = west_addrs.clone();
    west.spawn(async move {
        let client = SimClient::connect_from(west_ip, addrs).await;
        let written = client.call(0, forward("dc1", set("app/colour", "blue")), CALL_TIMEOUT).await;
        assert_eq!(written, Ok(ServerResponse::Written(Response::Bool(true))));
        assert_eq!(value(&client, forward("dc1", get("app/colour"))).await.as_deref(), Some("blue"));
        assert_eq!(value(&client, get("app/colour")).await, None, "dc3's own KV is untouched");
        let unknown = client.call(0, forward("dc9", set("app/colour", "red")), CALL_TIMEOUT).await;
        assert_eq!(unknown, Ok(ServerResponse::WriteFailed(WriteError::NoPath)));
    })
    .await
    .expect("the dc3 client runs");

    // A WAN partition cuts dc1 off: once detected, dc3's requests for dc1 fail at once.
    let net = NetSim::current();
    let dc1 = world.datacenters[0].servers[0].node.id();
    for other in [&world.datacenters[1], &world.datacenters[2]] {
        net.clog_link(dc1, other.servers[0].node.id());
        net.clog_link(other.servers[0].node.id(), dc1);
    }
    madsim::time::sleep(probe.detect_max()).await;
    let addrs = west_addrs.clone();
    west.spawn(async move {
        let client = SimClient::connect_from(west_ip, addrs).await;
        let sent = std::time::Instant::now();
        let answer = client.call(0, forward("dc1", get("app/colour")), CALL_TIMEOUT).await;
        assert_eq!(answer, Ok(ServerResponse::ReadFailed(ReadError::NoPath)));
        assert!(sent.elapsed() < Duration::from_millis(100), "answered in {:?}", sent.elapsed());
    })
    .await
    .expect("the dc3 client runs");

    // Tear down: kill every node (breaks the world's reference cycles).
    for cluster in &world.datacenters {
        cluster.observer.clear();
        for slot in &cluster.servers {
            world.handle.kill(slot.node.id());
        }
    }
    world.handle.kill(east.id());
    world.handle.kill(west.id());
}

#[test]
fn datacenters_route_nearest_first_keep_their_own_kv_and_fail_fast_when_cut_off() {
    for seed in seeds() {
        run(seed);
    }
}
