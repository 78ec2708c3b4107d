//! A gossip run is a function of its seed: the same seed gives the same trace hash alone, on
//! another thread, and inside a batch; different seeds give different traces.
//!
//! Replay one seed: `SIM_SEED=<n> cargo test -p sim --test gossip_replay -- --nocapture`.

use sim::gossip::{replay_command, seeds, Experiment};

const TEST: &str = "gossip_replay";

/// Every random draw in play: loss, slowed members, crashes and restarts, a leave, a partition.
fn experiment() -> Experiment {
    let mut exp = Experiment { slow: 2, steady_ms: 5_000, ..Experiment::lan(20) };
    exp.setup.net.loss = 0.1;
    exp
}

fn trace_hash(seed: u64) -> u64 {
    experiment().run(seed).expect("a valid experiment").trace_hash
}

#[test]
fn gossip_seed_replays_alone_and_inside_a_batch() {
    let seeds = seeds(&[3, 4, 5]).expect("SIM_SEED");
    let batch: Vec<(u64, u64)> = seeds.iter().map(|&seed| (seed, trace_hash(seed))).collect();
    for &(seed, hash) in &batch {
        println!("seed {seed} trace {hash:016x} (replay: {})", replay_command(TEST, seed));
        let alone = std::thread::spawn(move || trace_hash(seed)).join().expect("the run completes");
        assert_eq!(alone, hash, "seed {seed} did not replay; {}", replay_command(TEST, seed));
    }
    let mut hashes: Vec<u64> = batch.iter().map(|(_, h)| *h).collect();
    hashes.sort_unstable();
    hashes.dedup();
    assert_eq!(hashes.len(), batch.len(), "different seeds, different runs: {batch:?}");
}
