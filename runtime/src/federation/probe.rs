//! Which other-datacenter servers answer: the routes a server keeps, for the agent and the
//! simulator alike.
//!
//! WAN gossip says which servers exist (and roughly how far they are), but it declares a
//! server failed only after tens of seconds (Consul's WAN timers), and a request for a
//! datacenter cut off in between would wait out its whole timeout on every server. So a server
//! also probes every candidate server of the other datacenters with a [`ClientCall::Status`]
//! (the one kind of call a foreign server takes that never waits for a leader) every
//! [`ProbeConfig::interval`]: a server that misses [`ProbeConfig::failed_after_misses`] probes
//! in a row leaves the routes, and comes back at its first answer. A datacenter without an
//! answering server has no route: its requests fail at once with `No path to datacenter`.
//! The probes' round-trip times order the routes ([`order_routes`]), gossip's where no probe
//! has answered yet.

use std::collections::BTreeMap;
use std::time::Duration;

use legate_core::raft::ServerNode;
use openraft::{AsyncRuntime, Instant as _};

use super::{Federation, Route};
use crate::rpc::{ClientCall, Rpc, RpcReply, Wire};
use crate::server::ServerResponse;

/// How a server watches the other datacenters' servers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbeConfig {
    /// A probe round starts this long after the previous one started (or when it ends, if
    /// later).
    pub interval: Duration,
    /// A probe unanswered after this long is missed.
    pub timeout: Duration,
    /// Missed probes in a row after which a server leaves the routes.
    pub failed_after_misses: u32,
}

impl ProbeConfig {
    /// The agent's: a WAN round trip well above a second is a failure, and a datacenter cut
    /// off is out of the routes within [`ProbeConfig::detect_max`] (about 7 s).
    pub const AGENT: ProbeConfig =
        ProbeConfig { interval: Duration::from_secs(2), timeout: Duration::from_millis(1_500), failed_after_misses: 2 };

    /// How long one round can take.
    fn round_max(&self) -> Duration {
        self.interval.max(self.timeout)
    }

    /// The longest time from a datacenter becoming unreachable until a running server has
    /// dropped it from its routes: the round in flight when it happened, then
    /// `failed_after_misses` missed rounds, plus a margin for scheduling.
    pub fn detect_max(&self) -> Duration {
        self.round_max().saturating_mul(self.failed_after_misses.saturating_add(1)).saturating_add(self.interval / 2)
    }

    /// The longest time from a datacenter becoming reachable again until a running server
    /// routes to it: the round in flight, then one answered probe.
    pub fn recover_max(&self) -> Duration {
        self.round_max().saturating_mul(2).saturating_add(self.interval / 2)
    }
}

/// A server of another datacenter that gossip (or the simulator's topology) knows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub datacenter: String,
    pub node: ServerNode,
    /// What gossip measured, if anything (ms); a probe's measure takes over once it answers.
    pub rtt_ms: Option<u64>,
}

/// Routes from servers with their round-trip times: within a datacenter, servers by
/// round-trip time (unmeasured last, then by name); datacenters by the median round-trip time
/// of their servers (the upper one of an even count; unmeasured last, then by name).
pub fn order_routes(servers: Vec<Candidate>) -> Vec<Route> {
    let unknown_last = |rtt: Option<u64>| (rtt.is_none(), rtt.unwrap_or(0));
    let mut by_dc: BTreeMap<String, Vec<(Option<u64>, ServerNode)>> = BTreeMap::new();
    for c in servers {
        by_dc.entry(c.datacenter).or_default().push((c.rtt_ms, c.node));
    }
    let mut routes: Vec<(Option<u64>, Route)> = by_dc
        .into_iter()
        .map(|(datacenter, mut servers)| {
            servers.sort_by(|(a, x), (b, y)| unknown_last(*a).cmp(&unknown_last(*b)).then_with(|| x.name.cmp(&y.name)));
            let measured: Vec<u64> = servers.iter().filter_map(|(rtt, _)| *rtt).collect();
            let distance = (!measured.is_empty()).then(|| measured[measured.len() / 2]);
            let servers = servers.into_iter().map(|(_, node)| node).collect();
            (distance, Route { datacenter, servers })
        })
        .collect();
    routes.sort_by(|(a, x), (b, y)| {
        unknown_last(*a).cmp(&unknown_last(*b)).then_with(|| x.datacenter.cmp(&y.datacenter))
    });
    routes.into_iter().map(|(_, route)| route).collect()
}

/// What a server has seen of one candidate's probes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Seen {
    /// Probes missed in a row.
    misses: u32,
    /// Smoothed round-trip time of answered probes (ms).
    rtt_ms: Option<u64>,
}

/// The routes from `candidates` and what their probes showed: the failed ones left out, probe
/// round-trip times preferred to gossip's.
fn routes_of(candidates: &[Candidate], seen: &BTreeMap<(String, String), Seen>, probe: &ProbeConfig) -> Vec<Route> {
    let alive = candidates.iter().filter_map(|c| {
        let s = seen.get(&(c.datacenter.clone(), c.node.rpc_addr.clone())).copied().unwrap_or_default();
        (s.misses < probe.failed_after_misses).then(|| Candidate { rtt_ms: s.rtt_ms.or(c.rtt_ms), ..c.clone() })
    });
    order_routes(alive.collect())
}

/// Probes the candidates `candidates()` names, round after round for as long as the server
/// runs, and keeps `federation`'s routes on the ones that answer. A new candidate counts as
/// alive until its probes say otherwise (as a server just joined through gossip is).
pub async fn follow<Rt, W>(
    federation: Federation<W>,
    wire: W,
    mut candidates: impl FnMut() -> Vec<Candidate> + Send,
    probe: ProbeConfig,
) where
    Rt: AsyncRuntime,
    W: Wire,
{
    let mut seen: BTreeMap<(String, String), Seen> = BTreeMap::new();
    let mut last: Option<Vec<Route>> = None;
    loop {
        let started = Rt::Instant::now();
        let round = candidates();
        federation.set_known(round.iter().map(|c| c.datacenter.clone()).collect());
        let answers =
            futures::future::join_all(round.iter().map(|c| probe_one::<Rt, W>(&wire, &c.node, probe.timeout))).await;
        let mut next = BTreeMap::new();
        for (c, answer) in round.iter().zip(answers) {
            let key = (c.datacenter.clone(), c.node.rpc_addr.clone());
            let mut s = seen.get(&key).copied().unwrap_or_default();
            match answer {
                Some(rtt) => {
                    s.misses = 0;
                    let sample = u64::try_from(rtt.as_millis()).unwrap_or(u64::MAX);
                    // Smoothed as gossip smooths its own: a new sample weighs an eighth.
                    s.rtt_ms = Some(s.rtt_ms.map_or(sample, |old| (old * 7 + sample) / 8));
                }
                None => s.misses = s.misses.saturating_add(1),
            }
            next.insert(key, s);
        }
        // Candidates gossip no longer names are forgotten.
        seen = next;
        let routes = routes_of(&round, &seen, &probe);
        if last.as_ref() != Some(&routes) {
            federation.set_routes(routes.clone());
            last = Some(routes);
        }
        let spent = Rt::Instant::now() - started;
        Rt::sleep(probe.interval.saturating_sub(spent)).await;
    }
}

/// One probe: the round-trip time, or `None` when no status came back in time.
async fn probe_one<Rt: AsyncRuntime, W: Wire>(wire: &W, node: &ServerNode, timeout: Duration) -> Option<Duration> {
    let sent = Rt::Instant::now();
    match wire.call(node, Rpc::Client(ClientCall::Status), timeout).await {
        Ok(RpcReply::Client(ServerResponse::Status(_))) => Some(Rt::Instant::now() - sent),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(dc: &str, name: &str, rtt_ms: Option<u64>) -> Candidate {
        Candidate {
            datacenter: dc.into(),
            node: ServerNode { name: name.into(), rpc_addr: format!("{name}:8300") },
            rtt_ms,
        }
    }

    fn names(routes: &[Route]) -> Vec<(String, Vec<String>)> {
        routes.iter().map(|r| (r.datacenter.clone(), r.servers.iter().map(|s| s.name.clone()).collect())).collect()
    }

    fn expect(list: &[(&str, &[&str])]) -> Vec<(String, Vec<String>)> {
        list.iter().map(|(dc, s)| (dc.to_string(), s.iter().map(|n| n.to_string()).collect())).collect()
    }

    #[test]
    fn routes_put_the_nearest_datacenter_and_server_first() {
        let servers = vec![
            candidate("dc3", "c1", Some(40)),
            candidate("dc3", "c2", Some(42)),
            candidate("dc2", "b1", Some(25)),
            candidate("dc2", "b2", Some(21)),
            candidate("dc4", "d1", None),
            candidate("dc5", "e2", Some(90)),
            candidate("dc5", "e1", Some(10)),
        ];
        // dc5's median of 10 and 90 is the upper one: 90, behind dc3's 42.
        let expected: &[(&str, &[&str])] =
            &[("dc2", &["b2", "b1"]), ("dc3", &["c1", "c2"]), ("dc5", &["e1", "e2"]), ("dc4", &["d1"])];
        assert_eq!(names(&order_routes(servers)), expect(expected));
    }

    #[test]
    fn failed_servers_leave_the_routes_and_probe_times_win_over_gossip() {
        let probe = ProbeConfig { failed_after_misses: 2, ..ProbeConfig::AGENT };
        let round =
            vec![candidate("dc2", "b1", Some(5)), candidate("dc2", "b2", Some(50)), candidate("dc3", "c1", None)];
        let mut seen = BTreeMap::new();
        let key = |dc: &str, name: &str| (dc.to_string(), format!("{name}:8300"));
        seen.insert(key("dc2", "b1"), Seen { misses: 0, rtt_ms: Some(80) });
        seen.insert(key("dc3", "c1"), Seen { misses: 1, rtt_ms: None });
        let expected: &[(&str, &[&str])] = &[("dc2", &["b2", "b1"]), ("dc3", &["c1"])];
        assert_eq!(names(&routes_of(&round, &seen, &probe)), expect(expected), "b1's probes measured 80 ms");
        seen.insert(key("dc3", "c1"), Seen { misses: 2, rtt_ms: None });
        seen.insert(key("dc2", "b2"), Seen { misses: 3, rtt_ms: Some(1) });
        let expected: &[(&str, &[&str])] = &[("dc2", &["b1"])];
        assert_eq!(names(&routes_of(&round, &seen, &probe)), expect(expected), "dc3 has no answering server");
    }

    #[test]
    fn bounds_cover_the_rounds_of_the_failure_detector() {
        let sim = ProbeConfig {
            interval: Duration::from_secs(1),
            timeout: Duration::from_millis(800),
            failed_after_misses: 2,
        };
        assert_eq!(sim.detect_max(), Duration::from_millis(3_500));
        assert_eq!(sim.recover_max(), Duration::from_millis(2_500));
        assert_eq!(ProbeConfig::AGENT.detect_max(), Duration::from_secs(7));
        assert!(ProbeConfig::AGENT.timeout <= ProbeConfig::AGENT.interval);
    }
}
