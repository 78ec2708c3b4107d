//! Lifeguard against plain SWIM, with a tenth of 100 members slowed (every input and timer
//! processed 1–3 s late). With Lifeguard, a slowed member stretches its own probing instead of
//! accusing healthy members, so the pool starts fewer suspicions, and no healthy member is
//! declared failed. `Failed` events about the slowed members are reported, not asserted: too
//! rare under this load to compare (see `scenarios/README.md` for release figures).
//!
//! Replay one seed: `SIM_SEED=<n> cargo test -p sim --test gossip_lifeguard -- --nocapture`.

use sim::gossip::{for_each_seed, Experiment, Report};

const TEST: &str = "gossip_lifeguard";

fn slowed_pool(lifeguard: bool) -> Experiment {
    let mut exp = Experiment {
        joins: 0,
        crashes: 0,
        leaves: 0,
        slow: 10,
        partition: false,
        steady_ms: 60_000,
        ..Experiment::lan(100)
    };
    exp.setup.gossip.lifeguard = lifeguard;
    exp
}

fn compare(seed: u64) {
    let (on, off): (Report, Report) = std::thread::scope(|s| {
        let on = s.spawn(|| slowed_pool(true).run(seed));
        let off = s.spawn(|| slowed_pool(false).run(seed));
        (on.join().expect("runs").expect("valid"), off.join().expect("runs").expect("valid"))
    });
    println!("lifeguard on:  {on}\nlifeguard off: {off}");
    let fp = |r: &Report| r.false_positives.total();
    println!("seed {seed}: false positives without / with Lifeguard: {} / {}", fp(&off), fp(&on));
    // Every checker, accuracy included: no healthy member failed.
    assert!(on.is_ok(), "with Lifeguard: {:#?}", on.violations);
    assert!(
        on.suspicions < off.suspicions,
        "Lifeguard started {} suspicions, plain SWIM {}",
        on.suspicions,
        off.suspicions
    );
}

#[test]
fn gossip_with_lifeguard_raises_fewer_suspicions_than_swim_around_slowed_members() {
    for_each_seed(TEST, &[0, 1], compare);
}
