//! The standard gossip experiment — a pool forms, members join, crash and restart, one leaves,
//! the pool splits in two halves and heals — passes every checker at 5 and 100 members, and
//! gossip, not the anti-entropy backstop, does the bulk of the work.
//!
//! Replay one seed: `SIM_SEED=<n> cargo test -p sim --test gossip_experiment -- --nocapture`.

use sim::gossip::{replay_command, seeds, Distribution, Experiment, Report, Summary};

const TEST: &str = "gossip_experiment";

/// Runs every seed, asserting each run's checkers.
fn run_checked(exp: &Experiment, defaults: &[u64]) -> Vec<Report> {
    let seeds = seeds(defaults).expect("SIM_SEED");
    seeds
        .into_iter()
        .map(|seed| {
            println!("seed {seed} (replay: {})", replay_command(TEST, seed));
            let report = exp.run(seed).expect("a valid experiment");
            println!("{report}");
            assert!(report.is_ok(), "seed {seed}: {:#?}\nreplay: {}", report.violations, replay_command(TEST, seed));
            report
        })
        .collect()
}

/// Nine updates in ten reach everyone by gossip alone, within the spread bounds (the checkers
/// only hold each one to the looser anti-entropy bound).
fn assert_gossip_does_the_bulk(exp: &Experiment, reports: &[Report]) {
    let summary = Summary::of(reports);
    let bounds = exp.bounds();
    println!("{summary}");
    let p90 = |d: &Distribution| d.percentile_ms(90.0).unwrap_or(u64::MAX);
    assert!(p90(&summary.joins) <= bounds.spread_ms, "joins {} (spread bound {} ms)", summary.joins, bounds.spread_ms);
    let detect_ms = bounds.detect_by_gossip_ms();
    assert!(p90(&summary.detections) <= detect_ms, "detections {} (gossip bound {detect_ms} ms)", summary.detections);
}

#[test]
fn gossip_of_five_members_on_a_lossy_network_passes_every_checker() {
    let mut exp = Experiment::lan(5);
    exp.setup.net.loss = 0.1;
    let reports = run_checked(&exp, &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    assert_gossip_does_the_bulk(&exp, &reports);
}

#[test]
fn gossip_of_a_hundred_members_passes_every_checker() {
    let exp = Experiment { steady_ms: 10_000, ..Experiment::lan(100) };
    let reports = run_checked(&exp, &[0, 1]);
    assert_gossip_does_the_bulk(&exp, &reports);
}
