//! The fast tier of the CAS-register run: three servers under random partitions, crashes and
//! pauses, three clients reading, writing and CASing, then a healed liveness phase; every
//! checker must stay green, and a seed must replay to the same trace hash.
//!
//! Replay one seed: `SIM_SEED=<n> cargo test -p sim --test kv_register`.
//! Run a range: `SIM_SEEDS=100..200 cargo test -p sim --release --test kv_register`.

use sim::run::{replay_command, run_seed, RunConfig, RunReport};

const FAST_SEEDS: std::ops::Range<u64> = 0..12;

fn seeds() -> Vec<u64> {
    if let Ok(s) = std::env::var("SIM_SEED") {
        return vec![s.parse().expect("SIM_SEED must be a u64")];
    }
    if let Ok(range) = std::env::var("SIM_SEEDS") {
        let (a, b) = range.split_once("..").expect("SIM_SEEDS must look like 100..200");
        return (a.parse().expect("range start")..b.parse().expect("range end")).collect();
    }
    FAST_SEEDS.collect()
}

fn report(r: &RunReport) -> String {
    format!(
        "seed {} trace {:016x}: {} ops, {} faults, {:?} virtual, linearizability {:?}, violations {:?}",
        r.seed, r.trace_hash, r.ops, r.faults, r.virtual_time, r.linearizability, r.violations
    )
}

#[test]
fn cas_register_stays_linearizable_under_faults() {
    let mut batch = Vec::new();
    for seed in seeds() {
        println!("seed {seed} (replay: {})", replay_command(seed, "kv_register"));
        let r = run_seed(seed, RunConfig::default());
        println!("{}", report(&r));
        assert!(r.is_ok(), "seed {seed} failed: {}\nreplay: {}", report(&r), replay_command(seed, "kv_register"));
        assert!(r.ops > 50, "seed {seed} ran too few operations to mean anything: {}", r.ops);
        batch.push(r);
    }
    // The first seed again, alone after the batch: the same trace.
    let first = &batch[0];
    let again = run_seed(first.seed, RunConfig::default());
    assert_eq!(again.trace_hash, first.trace_hash, "seed {} did not replay", first.seed);
}

/// The checker can see a real anomaly: stale reads (any server answers from its own state) are
/// not linearizable under partitions, and some seed within the budget must show it.
#[test]
fn stale_reads_are_caught_as_not_linearizable() {
    const BUDGET: u64 = 20;
    let config = RunConfig { read_consistency: legate_runtime::server::Consistency::Stale, ..RunConfig::default() };
    for seed in 1_000..1_000 + BUDGET {
        let r = run_seed(seed, config.clone());
        if r.linearizability.is_violation() {
            println!("seed {seed} caught stale reads: {:?}", r.linearizability);
            return;
        }
    }
    panic!("{BUDGET} seeds of stale reads under partitions found no linearizability violation");
}
