//! A thousand members pass every checker of the standard gossip experiment. Forming the pool
//! alone costs minutes of CPU (every member relays every join sixteen times), far beyond the
//! dev profile's budget, so this test is ignored by default; run it in release:
//!
//! ```text
//! cargo test -p sim --release --test gossip_scale -- --ignored --nocapture
//! ```
//!
//! Replay one seed: `SIM_SEED=<n> cargo test -p sim --release --test gossip_scale -- --include-ignored --nocapture`.

use sim::gossip::{for_each_seed, Experiment};

const TEST: &str = "gossip_scale";

fn thousand_members(seed: u64) {
    let report = Experiment::lan(1_000).run(seed).expect("a valid experiment");
    println!("{report}");
    assert!(report.is_ok(), "seed {seed}: {:#?}", report.violations);
}

#[test]
#[ignore = "minutes of CPU even in release: cargo test -p sim --release --test gossip_scale -- --ignored"]
fn gossip_of_a_thousand_members_passes_every_checker() {
    for_each_seed(TEST, &[0], thousand_members);
}
