//! openraft's own conformance suite for `AsyncRuntime` implementations, run on madsim.

use openraft_rt::testing::Suite;
use sim::MadsimRuntime;

#[test]
fn madsim_runtime_passes_openraft_suite() {
    Suite::<MadsimRuntime>::test_all();
}

/// The runtime's `Instant` (`SimInstant`, over `std::time::Instant`) follows madsim's clock, not the OS's.
#[test]
fn the_runtime_instant_is_virtual() {
    use openraft_rt::AsyncRuntime;
    use std::time::{Duration, Instant};

    let hour = Duration::from_secs(3600);
    let real_start = Instant::now();
    let mut rt = MadsimRuntime::with_seed_and_config(1, madsim::Config::default());
    let virtual_elapsed = rt.block_on(async move {
        let t0 = <MadsimRuntime as AsyncRuntime>::Instant::now();
        MadsimRuntime::sleep(hour).await;
        t0.elapsed()
    });
    assert!(virtual_elapsed >= hour, "virtual clock advanced only {virtual_elapsed:?}");
    assert!(real_start.elapsed() < Duration::from_secs(60), "an hour of virtual sleep took real time");
}
