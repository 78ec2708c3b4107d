//! What a gossip world is made of: how many members, their gossip configuration, the network
//! between them and how late a slowed member processes its input.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};

use legate_core::gossip::Config;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// Most members one world holds (the driver keeps every member's belief about every other:
/// 100 MB at this size).
pub const MEMBERS_MAX: usize = 10_000;

/// A node's index in its world: names, addresses and every per-member table use it.
pub type NodeId = usize;

/// An inclusive range of milliseconds, drawn uniformly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsRange {
    pub min_ms: u64,
    pub max_ms: u64,
}

impl MsRange {
    pub fn new(min_ms: u64, max_ms: u64) -> MsRange {
        assert!(min_ms <= max_ms, "an empty range {min_ms}..={max_ms} ms");
        MsRange { min_ms, max_ms }
    }

    pub(super) fn draw(&self, rng: &mut ChaCha8Rng) -> u64 {
        rng.random_range(self.min_ms..=self.max_ms)
    }
}

/// The network between members.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NetParams {
    /// One-way latency of every datagram and every stream message.
    pub latency: MsRange,
    /// Probability that a datagram is lost (streams are TCP: they arrive or time out).
    pub loss: f64,
}

impl Default for NetParams {
    /// A LAN: 1–5 ms one way, nothing lost.
    fn default() -> NetParams {
        NetParams { latency: MsRange::new(1, 5), loss: 0.0 }
    }
}

/// Everything a world is built from; the seed decides the rest.
#[derive(Clone, Debug)]
pub struct Setup {
    /// Member slots: nodes `0..members`, started (or not) by the driver's actions.
    pub members: usize,
    /// Every member's gossip configuration (`Config::lan()` unless a test says otherwise).
    pub gossip: Config,
    pub net: NetParams,
    /// How late a slowed member processes its input.
    pub slow: Slowness,
}

/// How late a slowed (CPU-starved) member processes its input; each input draws its own delay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slowness {
    /// Datagrams, stream requests and stream replies.
    pub input_delay: MsRange,
    /// Its own timers (probes, suspicions, gossip rounds): the input delay for a starved
    /// process; zero when only its receive path stalls, as in Lifeguard's experiments, where
    /// timers kept firing while incoming messages waited.
    pub timer_delay: MsRange,
}

impl Slowness {
    /// Inputs and timers alike `min_ms..=max_ms` late.
    pub fn starved(min_ms: u64, max_ms: u64) -> Slowness {
        Slowness { input_delay: MsRange::new(min_ms, max_ms), timer_delay: MsRange::new(min_ms, max_ms) }
    }

    /// The longest delay of any input.
    pub fn max_ms(&self) -> u64 {
        self.input_delay.max_ms.max(self.timer_delay.max_ms)
    }
}

impl Setup {
    /// `members` slots of Consul LAN members on a 1–5 ms network; slowed members process
    /// everything (input and timers) 1–3 s late.
    pub fn lan(members: usize) -> Setup {
        Setup { members, gossip: Config::lan(), net: NetParams::default(), slow: Slowness::starved(1_000, 3_000) }
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.members == 0 || self.members > MEMBERS_MAX {
            return Err(format!("members must be 1..={MEMBERS_MAX} (got {})", self.members));
        }
        if !(0.0..1.0).contains(&self.net.loss) {
            return Err(format!("loss must be at least 0 and below 1 (got {})", self.net.loss));
        }
        Ok(())
    }
}

/// Node `id`'s name.
pub fn node_name(id: NodeId) -> String {
    format!("node-{id:04}")
}

/// Node `id`'s gossip address: `10.x.y.z:8301`, `x.y.z` being `id + 1` in base 256.
pub fn node_addr(id: NodeId) -> SocketAddr {
    let [_, x, y, z] = (id as u32 + 1).to_be_bytes();
    SocketAddr::from((Ipv4Addr::new(10, x, y, z), 8301))
}

/// The tags a Consul client agent gossips (as `agent/src/http/agent.rs` sets them), with a
/// random node ID: they make alive messages as large as real ones, so load figures are too.
pub(super) fn agent_tags(rng: &mut ChaCha8Rng) -> BTreeMap<String, String> {
    let id: [u8; 16] = rng.random();
    let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
    let uuid = format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32]);
    [
        ("role", "node"),
        ("dc", "dc1"),
        ("build", "1.21.0:legate-0.1.0"),
        ("vsn", "2"),
        ("vsn_min", "2"),
        ("vsn_max", "3"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .chain([("id".to_string(), uuid)])
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_distinct_and_in_ten_slash_eight() {
        assert_eq!(node_addr(0).to_string(), "10.0.0.1:8301");
        assert_eq!(node_addr(255).to_string(), "10.0.1.0:8301");
        assert_eq!(node_addr(MEMBERS_MAX - 1).to_string(), "10.0.39.16:8301");
        assert_eq!(node_name(7), "node-0007");
    }
}
