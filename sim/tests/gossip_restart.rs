//! A crashed member is failed everywhere. Restarted as a fresh process (incarnation 0, same
//! name and address), it learns of its own death from the members it joins, refutes it with a
//! higher incarnation, and is alive everywhere again.
//!
//! Replay one seed: `SIM_SEED=<n> cargo test -p sim --test gossip_restart -- --nocapture`.

use sim::gossip::check;
use sim::gossip::{for_each_seed, node_name, Action, Belief, Setup, World};

const TEST: &str = "gossip_restart";
const MEMBERS: usize = 10;
const VICTIM: usize = 3;

/// The incarnation at which `observer` knows the victim.
fn incarnation(world: &World, observer: usize) -> u32 {
    let gossip = world.gossip(observer).expect("running");
    gossip.member(&node_name(VICTIM)).expect("known").incarnation
}

fn crash_and_restart(seed: u64) {
    let mut setup = Setup::lan(MEMBERS);
    setup.net.loss = 0.05;
    let (mut world, bounds) = World::formed(seed, setup).expect("the pool formed");

    world.act(Action::Crash(VICTIM));
    let failed_everywhere = |w: &World| w.running().all(|o| w.belief(o, VICTIM) == Belief::Failed);
    assert!(world.run_until_true(bounds.detect_ms(), failed_everywhere).is_some(), "failed everywhere");
    let failed_at = world.running().map(|o| incarnation(&world, o)).max().expect("members run");

    // Act: a fresh process, which knows nobody and starts at incarnation 0.
    world.act(Action::Start(VICTIM));
    assert_eq!(world.gossip(VICTIM).map(|g| g.local().incarnation), Some(0));
    let back = world.run_until_true(bounds.join_ms(), |w| w.all_believe_alive(VICTIM));

    // Assert: alive everywhere, at an incarnation above the one it died at.
    println!("seed {seed}: failed at incarnation {failed_at}, alive everywhere again {back:?} ms after the restart");
    assert!(back.is_some(), "alive everywhere within {} ms", bounds.join_ms());
    let own = world.gossip(VICTIM).map(|g| g.local().incarnation).expect("running");
    assert!(own > failed_at, "refuted: incarnation {own} above {failed_at}");
    for observer in world.running().filter(|&o| o != VICTIM) {
        assert!(incarnation(&world, observer) > failed_at, "{} knows the new life", node_name(observer));
    }
    let obs = world.observations();
    check::rejoin(&obs.joins, obs, bounds.join_ms()).unwrap();
    check::completeness(&obs.crashes, bounds.detect_ms()).unwrap();
    check::accuracy(obs).unwrap();
    assert!(obs.revivals >= (MEMBERS - 1) as u64, "every member saw the victim come back");
}

#[test]
fn gossip_restarted_member_refutes_its_death_and_is_alive_again() {
    for_each_seed(TEST, &[0, 1, 2, 3], crash_and_restart);
}
