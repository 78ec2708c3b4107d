//! A server's routes to the other datacenters, kept by the production prober
//! ([`legate_runtime::federation::probe::follow`]): every server probes the other datacenters'
//! servers with a `Status` call over the simulated network — partitions, crashed servers, WAN
//! latency and spikes included — leaves out those that miss probes and orders the rest nearest
//! first. The agent runs the same prober; its candidates come from its WAN gossip pool, here
//! from the topology (every remote server is a candidate for as long as the run lasts).
//!
//! The timing is the simulator's ([`WAN_PROBE`], faster than the agent's
//! [`ProbeConfig::AGENT`]) so that a fast scenario sees several detections; the checkers take
//! their bounds from [`ProbeConfig::detect_max`] and [`ProbeConfig::recover_max`].

use std::time::Duration;

pub use legate_runtime::federation::probe::ProbeConfig as WanProbe;
use legate_runtime::federation::probe::{self, Candidate, ProbeConfig};
use legate_runtime::federation::{Federation, Route};

use super::net::SimWire;
use crate::MadsimRuntime;

/// The simulator's probe timing: a round every second, 800 ms to answer, two misses.
pub const WAN_PROBE: ProbeConfig =
    ProbeConfig { interval: Duration::from_secs(1), timeout: Duration::from_millis(800), failed_after_misses: 2 };

/// Probes `remotes` (every other datacenter's servers) for as long as the server runs and keeps
/// `federation`'s routes on the ones that answer. Every server starts believing all of them
/// alive, as a WAN pool that has just been joined does.
pub async fn follow_wan(federation: Federation<SimWire>, wire: SimWire, remotes: Vec<Route>, config: ProbeConfig) {
    let candidates: Vec<Candidate> = remotes
        .into_iter()
        .flat_map(|route| {
            let dc = route.datacenter;
            route.servers.into_iter().map(move |node| Candidate { datacenter: dc.clone(), node, rtt_ms: None })
        })
        .collect();
    probe::follow::<MadsimRuntime, _>(federation, wire, move || candidates.clone(), config).await;
}
