//! Two halves cut apart for longer than any suspicion declare each other failed; once the cut
//! heals, reconnection and refutation make the pool whole again: no lasting split brain.
//!
//! Replay one seed: `SIM_SEED=<n> cargo test -p sim --test gossip_partition -- --nocapture`.

use sim::gossip::check;
use sim::gossip::{for_each_seed, Action, Belief, NodeId, Setup, World};

const TEST: &str = "gossip_partition";
const MEMBERS: usize = 20;

fn split_and_heal(seed: u64) {
    let mut setup = Setup::lan(MEMBERS);
    setup.net.loss = 0.05;
    let gossip_to_dead_ms = setup.gossip.gossip_to_dead_ms;
    let (mut world, bounds) = World::formed(seed, setup).expect("the pool formed");

    // Act: even members on one side, odd on the other, until each side has failed the other
    // and stopped gossiping to it; then heal.
    let (evens, odds): (Vec<NodeId>, Vec<NodeId>) = (0..MEMBERS).partition(|n| n % 2 == 0);
    world.act(Action::Split(vec![evens.clone()]));
    let failed_across = |w: &World| {
        evens
            .iter()
            .all(|&e| odds.iter().all(|&o| w.belief(e, o) == Belief::Failed && w.belief(o, e) == Belief::Failed))
    };
    let took = world.run_until_true(bounds.detect_ms(), failed_across);
    assert!(took.is_some(), "each side failed the other within {} ms", bounds.detect_ms());
    world.run_until(world.now_ms() + gossip_to_dead_ms);
    assert!(failed_across(&world), "still split");
    world.act(Action::Heal);

    // Assert: whole again within the heal bound; every failure was the partition's doing.
    let healed = world.run_until_true(bounds.heal_ms(), World::converged);
    println!("seed {seed}: failed across in {took:?} ms, healed in {healed:?} ms after the cut ended");
    check::converged_within("the partition healed", healed, bounds.heal_ms()).unwrap();
    check::accuracy(world.observations()).unwrap();
    check::rejoin([], world.observations(), 0).unwrap();
}

#[test]
fn gossip_pool_split_for_longer_than_any_suspicion_heals() {
    for_each_seed(TEST, &[0, 1, 2], split_and_heal);
}
