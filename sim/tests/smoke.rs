//! One openraft node on madsim: it elects itself, applies a KV write, and a seed replays to the
//! same trace.
//!
//! Replay one seed: `SIM_SEED=1234 cargo test -p sim --test smoke`.

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use legate_core::catalog::{Command, KvOp, KvVerb, Request, Response};
use legate_core::raft::{CatalogStore, MemLogStore, NoPeers, ServerNode, TypeConfig};
use openraft::storage::RaftLogReader;
use openraft::ServerState;
use sim::MadsimRuntime;

type Tc = TypeConfig<MadsimRuntime>;
type Store = CatalogStore<Tc>;
type Raft = openraft::Raft<Tc, Store>;

/// The seeds every `cargo test` runs (unless `SIM_SEED` names one).
const SEEDS: [u64; 4] = [0, 1, 7, 0x5eed];
/// Virtual time a run may take before madsim fails it.
const RUN_LIMIT_S: u64 = 60;
/// How long the sole voter may take to become leader (virtual).
const ELECTION_WAIT_S: u64 = 10;

const KEY: &str = "foo";
const VALUE: &[u8] = b"bar";

fn seeds() -> Vec<u64> {
    match std::env::var("SIM_SEED") {
        Ok(s) => vec![s.parse().expect("SIM_SEED must be a u64")],
        Err(_) => SEEDS.to_vec(),
    }
}

fn replay_hint(seed: u64) -> String {
    format!("replay: SIM_SEED={seed} cargo test -p sim --test smoke")
}

/// Runs one seed in a fresh world on a fresh thread (madsim seeds `std`'s hash keys once per
/// thread), and returns the run's trace hash.
fn run_seed(seed: u64) -> u64 {
    println!("seed {seed} ({})", replay_hint(seed));
    let run = std::thread::spawn(move || {
        let mut rt = MadsimRuntime::with_seed_and_config(seed, madsim::Config::default());
        rt.madsim().set_time_limit(Duration::from_secs(RUN_LIMIT_S));
        openraft_rt::AsyncRuntime::block_on(&mut rt, single_node_write())
    });
    match run.join() {
        Ok(hash) => hash,
        Err(panic) => {
            eprintln!("seed {seed} failed; {}", replay_hint(seed));
            std::panic::resume_unwind(panic)
        }
    }
}

/// Bootstraps a sole voter, writes `KEY`, checks it, and hashes what happened.
async fn single_node_write() -> u64 {
    let start = Instant::now();
    let mut trace = DefaultHasher::new();

    // Set up: one voter, in-memory log, the catalog state machine, a network nobody calls.
    let config = openraft::Config {
        cluster_name: "legate-sim".into(),
        heartbeat_interval: 50,
        election_timeout_min: 150,
        election_timeout_max: 300,
        ..Default::default()
    }
    .validate()
    .expect("valid Raft config");
    let log = MemLogStore::<Tc>::default();
    let store = Store::new();
    let raft = Raft::new(1, Arc::new(config), NoPeers, log.clone(), store.clone()).await.expect("Raft starts");
    let me = ServerNode { name: "s1".into(), rpc_addr: "10.0.0.1:8300".into() };
    raft.initialize(BTreeMap::from([(1, me)])).await.expect("bootstrap");

    let metrics = raft
        .wait(Some(Duration::from_secs(ELECTION_WAIT_S)))
        .state(ServerState::Leader, "sole voter leads")
        .await
        .expect("sole voter becomes leader");
    assert_eq!(metrics.current_leader, Some(1));
    start.elapsed().hash(&mut trace);

    // Act: one KV set, stamped with the (virtual) wall clock as a leader would.
    let now_ms = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).expect("after 1970").as_millis() as u64;
    let op =
        KvOp { verb: KvVerb::Set, key: KEY.into(), value: VALUE.to_vec(), flags: 0, index: 0, session: String::new() };
    let written = raft.client_write(Request { now_ms, command: Command::Kv(op) }).await.expect("write commits");
    start.elapsed().hash(&mut trace);

    // Assert: applied exactly at the write's log index, and nowhere else.
    assert_eq!(written.data, Response::Bool(true));
    let index = written.log_id.index();
    let answer = store.read(|c| c.kv_get(KEY));
    let entry = answer.value.expect("key is set");
    assert_eq!(entry.value, VALUE);
    assert_eq!(entry.modify_index, index);
    assert_eq!(entry.create_index, index);
    assert_eq!(answer.index, index);
    assert_eq!(store.applied_index(), index);
    assert!(store.read(|c| c.kv_get("other")).value.is_none(), "only the written key exists");

    // Trace: every log entry, the applied position, and the final catalog.
    let entries = log.clone().try_get_log_entries(..).await.expect("log readable");
    assert_eq!(entries.last().map(|e| e.log_id.index()), Some(index), "the write is the last entry");
    for e in &entries {
        serde_json::to_vec(e).expect("entry serialises").hash(&mut trace);
    }
    store.applied_index().hash(&mut trace);
    store.read(Store::encode_catalog).expect("catalog encodes").hash(&mut trace);

    raft.shutdown().await.expect("clean shutdown");
    trace.finish()
}

#[test]
fn sole_voter_applies_a_write_and_replays() {
    let seeds = seeds();
    let batch: Vec<(u64, u64)> = seeds.iter().map(|&seed| (seed, run_seed(seed))).collect();
    for &(seed, hash) in &batch {
        println!("seed {seed} trace {hash:016x}");
        let again = run_seed(seed);
        assert_eq!(again, hash, "seed {seed} did not replay; {}", replay_hint(seed));
    }
}

/// madsim's own check: the second run must draw the same random numbers at the same virtual
/// times as the first, which catches divergence where it starts rather than at the end.
#[test]
fn rng_draws_replay_exactly() {
    let seed = seeds()[0];
    println!("seed {seed} ({})", replay_hint(seed));
    madsim::runtime::Runtime::check_determinism(seed, madsim::Config::default(), single_node_write);
}
