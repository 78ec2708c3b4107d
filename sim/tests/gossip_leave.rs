//! A member that leaves gracefully is `Left` everywhere, and never `Failed`, even long after it
//! stopped answering probes.
//!
//! Replay one seed: `SIM_SEED=<n> cargo test -p sim --test gossip_leave -- --nocapture`.

use sim::gossip::check;
use sim::gossip::world::LEAVE_PROPAGATE_MAX_MS;
use sim::gossip::{for_each_seed, Action, Belief, Setup, Status, World};

const TEST: &str = "gossip_leave";
const MEMBERS: usize = 10;
const LEAVER: usize = 4;

fn leave(seed: u64) {
    let mut setup = Setup::lan(MEMBERS);
    setup.net.loss = 0.05;
    let (mut world, bounds) = World::formed(seed, setup).expect("the pool formed");

    world.act(Action::Leave(LEAVER));
    let left_everywhere = |w: &World| w.running().all(|o| w.belief(o, LEAVER) == Belief::Left);
    let bound_ms = LEAVE_PROPAGATE_MAX_MS + bounds.join_ms();
    let took = world.run_until_true(bound_ms, |w| w.status(LEAVER) == Status::Left && left_everywhere(w));
    println!("seed {seed}: left everywhere after {took:?} ms");
    assert!(took.is_some(), "stopped and left everywhere within {bound_ms} ms");

    // Long enough for any suspicion of the silent member to have run its course.
    world.run_until(world.now_ms() + bounds.detect_ms());
    assert!(left_everywhere(&world), "still left everywhere");
    let obs = world.observations();
    check::graceful_leave(&obs.leaves, obs, bound_ms).unwrap();
    check::accuracy(obs).unwrap();
}

#[test]
fn gossip_graceful_leave_is_left_everywhere_and_never_failed() {
    for_each_seed(TEST, &[0, 1, 2, 3], leave);
}
