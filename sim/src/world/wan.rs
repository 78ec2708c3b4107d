//! A server's routes to the other datacenters, kept as the agent keeps them from its WAN gossip
//! pool: the alive servers of each datacenter, nearest datacenter first.
//!
//! The agent (`agent::gossip::follow_wan`) feeds [`Federation::set_routes`] from the WAN pool's
//! members (alive servers, by datacenter tag) and the smoothed round-trip times of its direct
//! probes. The simulator runs no WAN gossip inside madsim, so each simulated server runs the
//! part that matters for routing itself: it probes every server of the other datacenters (a
//! `Status` client call, the one kind of call a foreign server accepts) over the simulated
//! network — partitions, crashed servers, WAN latency and spikes included — and declares a
//! server failed after [`WanProbe::failed_after_misses`] missed probes in a row and alive again
//! at its first answer, as a failure detector would. The routes it derives follow the agent's
//! `routes_of` rule. The production [`Federation`] then does the rest: an unknown or
//! serverless datacenter is "No path to datacenter" at once, a known one is reached through a
//! forwarder that moves on from a server that cannot be reached.
//!
//! Timing is the model's, not Consul's WAN pool's (probe every 5 s, suspicion of tens of
//! seconds): [`WanProbe::default`] detects within a few seconds so that a fast scenario can
//! judge what happens once a datacenter is known to be unreachable. The checkers take their
//! bounds from [`WanProbe::detect_max`] and [`WanProbe::recover_max`].

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use legate_core::raft::ServerNode;
use legate_runtime::federation::{Federation, Route};
use legate_runtime::rpc::Wire as _;
use legate_runtime::server::ServerResponse;

use super::net::{ClientCall, Rpc, RpcReply, SimWire};

/// How a server watches the other datacenters' servers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WanProbe {
    /// A probe round starts this long after the previous one started (or when it ends, if
    /// later).
    pub interval: Duration,
    /// A probe unanswered after this long is missed.
    pub timeout: Duration,
    /// Missed probes in a row after which a server is failed (left out of the routes).
    pub failed_after_misses: u32,
}

impl Default for WanProbe {
    fn default() -> Self {
        WanProbe { interval: Duration::from_secs(1), timeout: Duration::from_millis(800), failed_after_misses: 2 }
    }
}

impl WanProbe {
    /// How long one round can take.
    fn round_max(&self) -> Duration {
        self.interval.max(self.timeout)
    }

    /// The longest time from a datacenter becoming unreachable until every running server of
    /// the others has dropped it from its routes: the round in flight when it happened, then
    /// `failed_after_misses` missed rounds, plus a margin for scheduling.
    pub fn detect_max(&self) -> Duration {
        self.round_max().saturating_mul(self.failed_after_misses.saturating_add(1)).saturating_add(self.interval / 2)
    }

    /// The longest time from a datacenter becoming reachable again until every running server
    /// of the others routes to it: the round in flight, then one answered probe.
    pub fn recover_max(&self) -> Duration {
        self.round_max().saturating_mul(2).saturating_add(self.interval / 2)
    }
}

/// One remote server as this server sees it.
struct Peer {
    datacenter: String,
    node: ServerNode,
    /// Probes missed in a row.
    misses: u32,
    /// Smoothed round-trip time of answered probes, in ms (`None` until one is answered).
    rtt_ms: Option<u64>,
}

/// Probes `remotes` (every other datacenter's servers) for as long as the server runs and keeps
/// `federation`'s routes on the ones that answer. Every server starts believing all of them
/// alive, as a WAN pool that has just been joined does.
pub async fn follow_wan(federation: Federation<SimWire>, wire: SimWire, remotes: Vec<Route>, probe: WanProbe) {
    let mut peers: Vec<Peer> = remotes
        .into_iter()
        .flat_map(|route| {
            let dc = route.datacenter;
            route.servers.into_iter().map(move |node| Peer { datacenter: dc.clone(), node, misses: 0, rtt_ms: None })
        })
        .collect();
    let mut last: Option<Vec<Route>> = None;
    loop {
        let started = Instant::now();
        let answers = futures::future::join_all(peers.iter().map(|p| probe_one(&wire, &p.node, probe.timeout))).await;
        for (peer, answer) in peers.iter_mut().zip(answers) {
            match answer {
                Some(rtt) => {
                    peer.misses = 0;
                    let sample = rtt.as_millis() as u64;
                    // Gossip smooths round-trip times too; an eighth of each new sample.
                    peer.rtt_ms = Some(peer.rtt_ms.map_or(sample, |old| (old * 7 + sample) / 8));
                }
                None => peer.misses = peer.misses.saturating_add(1),
            }
        }
        let routes = routes_of(&peers, probe.failed_after_misses);
        if last.as_ref() != Some(&routes) {
            federation.set_routes(routes.clone());
            last = Some(routes);
        }
        madsim::time::sleep(probe.interval.saturating_sub(started.elapsed())).await;
    }
}

/// One probe: the round-trip time, or `None` when no answer came in time.
async fn probe_one(wire: &SimWire, node: &ServerNode, timeout: Duration) -> Option<Duration> {
    let sent = Instant::now();
    match wire.call(node, Rpc::Client(ClientCall::Status), timeout).await {
        Ok(RpcReply::Client(ServerResponse::Status(_))) => Some(sent.elapsed()),
        _ => None,
    }
}

/// The agent's rule (`agent::gossip::routes_of`) over the peers not failed: servers by their
/// round-trip time (unmeasured last, then by name); datacenters by the median round-trip time
/// of their servers (unmeasured last, then by name). A datacenter with no alive server is left
/// out, so the federation answers "No path to datacenter" for it.
fn routes_of(peers: &[Peer], failed_after_misses: u32) -> Vec<Route> {
    let unknown_last = |rtt: Option<u64>| (rtt.is_none(), rtt.unwrap_or(0));
    let mut by_dc: BTreeMap<&str, Vec<(Option<u64>, ServerNode)>> = BTreeMap::new();
    for peer in peers.iter().filter(|p| p.misses < failed_after_misses) {
        by_dc.entry(&peer.datacenter).or_default().push((peer.rtt_ms, peer.node.clone()));
    }
    let mut routes: Vec<(Option<u64>, Route)> = by_dc
        .into_iter()
        .map(|(dc, mut servers)| {
            servers.sort_by(|(a, x), (b, y)| unknown_last(*a).cmp(&unknown_last(*b)).then_with(|| x.name.cmp(&y.name)));
            let measured: Vec<u64> = servers.iter().filter_map(|(rtt, _)| *rtt).collect();
            let distance = (!measured.is_empty()).then(|| measured[measured.len() / 2]);
            let servers = servers.into_iter().map(|(_, node)| node).collect();
            (distance, Route { datacenter: dc.to_string(), servers })
        })
        .collect();
    routes.sort_by(|(a, x), (b, y)| {
        unknown_last(*a).cmp(&unknown_last(*b)).then_with(|| x.datacenter.cmp(&y.datacenter))
    });
    routes.into_iter().map(|(_, route)| route).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(dc: &str, name: &str, misses: u32, rtt_ms: Option<u64>) -> Peer {
        let node = ServerNode { name: name.into(), rpc_addr: format!("{name}:8300") };
        Peer { datacenter: dc.into(), node, misses, rtt_ms }
    }

    fn names(routes: &[Route]) -> Vec<(String, Vec<String>)> {
        routes.iter().map(|r| (r.datacenter.clone(), r.servers.iter().map(|s| s.name.clone()).collect())).collect()
    }

    #[test]
    fn routes_put_the_nearest_datacenter_and_server_first_and_leave_failed_ones_out() {
        let peers = [
            peer("dc3", "c1", 0, Some(40)),
            peer("dc3", "c2", 0, Some(42)),
            peer("dc2", "b1", 0, Some(25)),
            peer("dc2", "b2", 0, Some(21)),
            peer("dc2", "b3", 2, Some(1)),
            peer("dc4", "d1", 0, None),
        ];
        let routes = routes_of(&peers, 2);
        let expected = [("dc2", vec!["b2", "b1"]), ("dc3", vec!["c1", "c2"]), ("dc4", vec!["d1"])];
        let expected: Vec<(String, Vec<String>)> =
            expected.iter().map(|(dc, s)| (dc.to_string(), s.iter().map(|n| n.to_string()).collect())).collect();
        assert_eq!(names(&routes), expected);
    }

    #[test]
    fn a_datacenter_whose_servers_all_failed_has_no_route() {
        let peers = [peer("dc2", "b1", 2, Some(5)), peer("dc2", "b2", 3, None), peer("dc3", "c1", 1, None)];
        assert_eq!(names(&routes_of(&peers, 2)), [("dc3".to_string(), vec!["c1".to_string()])]);
    }

    #[test]
    fn bounds_cover_the_rounds_of_the_failure_detector() {
        let probe = WanProbe::default();
        assert_eq!(probe.detect_max(), Duration::from_millis(3_500));
        assert_eq!(probe.recover_max(), Duration::from_millis(2_500));
        assert!(probe.timeout <= probe.interval);
    }
}
