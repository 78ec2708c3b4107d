//! Gossip timers and sizes: Consul's LAN and WAN defaults, and the dev-mode fast timers.

/// Everything tunable about one pool. Times are milliseconds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Time between probes of consecutive members (memberlist's `ProbeInterval`).
    pub probe_interval_ms: u64,
    /// How long a direct ping waits for its ack before indirect probes start.
    pub probe_timeout_ms: u64,
    /// Members asked to probe a silent member on our behalf.
    pub indirect_checks: usize,
    /// Probe a silent member over a stream too (memberlist's TCP fallback).
    pub stream_fallback: bool,
    /// Suspicion timeout floor: `suspicion_mult · max(1, log10 n) · probe_interval`.
    pub suspicion_mult: u32,
    /// Suspicion timeout ceiling, as a multiple of the floor (Lifeguard).
    pub suspicion_max_timeout_mult: u32,
    /// Local health awareness stretches probe interval and timeout up to this factor.
    pub awareness_max_multiplier: u32,
    /// Time between gossip rounds.
    pub gossip_interval_ms: u64,
    /// Members each gossip round sends to.
    pub gossip_nodes: usize,
    /// Dead members still receive gossip this long (so they learn of it and refute).
    pub gossip_to_dead_ms: u64,
    /// Each piece of news is sent `retransmit_mult · ⌈log10(n+1)⌉` times.
    pub retransmit_mult: u32,
    /// Time between full-state exchanges with a random member (scaled up above 32 members).
    pub push_pull_interval_ms: u64,
    /// How long the driver lets a stream take before reporting it failed.
    pub stream_timeout_ms: u64,
    /// Largest datagram (memberlist's `UDPBufferSize`: under a 1500-byte MTU).
    pub packet_max_bytes: usize,
    /// Failed members are forgotten after this long (Serf's `ReconnectTimeout`, 72 h).
    pub reconnect_timeout_ms: u64,
    /// Left members are forgotten after this long (Serf's `TombstoneTimeout`, 24 h).
    pub tombstone_timeout_ms: u64,
    /// How often failed and left members are checked for reaping.
    pub reap_interval_ms: u64,
    /// How often this member may try a full-state exchange with a random failed member
    /// (Serf's reconnect, with probability failed/alive), so that two sides of a healed
    /// partition, each believing the other dead, find each other again.
    pub reconnect_interval_ms: u64,
    /// Lifeguard's three mechanisms (dynamic suspicion with confirmations, local health
    /// awareness with nacks, buddy system). Off gives plain SWIM with a fixed suspicion
    /// timeout, for comparison in the simulator.
    pub lifeguard: bool,
}

impl Config {
    /// Consul's LAN pool (memberlist's `DefaultLANConfig`).
    pub fn lan() -> Config {
        Config {
            probe_interval_ms: 1_000,
            probe_timeout_ms: 500,
            indirect_checks: 3,
            stream_fallback: true,
            suspicion_mult: 4,
            suspicion_max_timeout_mult: 6,
            awareness_max_multiplier: 8,
            gossip_interval_ms: 200,
            gossip_nodes: 3,
            gossip_to_dead_ms: 30_000,
            retransmit_mult: 4,
            push_pull_interval_ms: 30_000,
            stream_timeout_ms: 10_000,
            packet_max_bytes: 1_400,
            reconnect_timeout_ms: 72 * 3_600_000,
            tombstone_timeout_ms: 24 * 3_600_000,
            reap_interval_ms: 15_000,
            reconnect_interval_ms: 30_000,
            lifeguard: true,
        }
    }

    /// Consul's WAN pool (memberlist's `DefaultWANConfig`).
    pub fn wan() -> Config {
        Config {
            probe_interval_ms: 5_000,
            probe_timeout_ms: 3_000,
            suspicion_mult: 6,
            gossip_interval_ms: 500,
            gossip_nodes: 4,
            gossip_to_dead_ms: 60_000,
            push_pull_interval_ms: 60_000,
            ..Config::lan()
        }
    }

    /// Fast timers for `-dev` and loopback tests (memberlist's `DefaultLocalConfig`).
    pub fn local() -> Config {
        Config {
            probe_interval_ms: 1_000,
            probe_timeout_ms: 200,
            indirect_checks: 1,
            suspicion_mult: 3,
            gossip_interval_ms: 100,
            gossip_to_dead_ms: 15_000,
            retransmit_mult: 2,
            push_pull_interval_ms: 15_000,
            stream_timeout_ms: 1_000,
            ..Config::lan()
        }
    }

    /// The shortest suspicion timeout for a pool of `n` members.
    pub fn suspicion_min_ms(&self, n: usize) -> u64 {
        let scale = (n.max(1) as f64).log10().max(1.0);
        (self.suspicion_mult as f64 * scale * self.probe_interval_ms as f64) as u64
    }

    /// How many times each piece of news is sent in a pool of `n` members.
    pub fn retransmit_limit(&self, n: usize) -> u32 {
        self.retransmit_mult * ((n as f64 + 1.0).log10().ceil() as u32).max(1)
    }

    /// The push-pull interval for `n` members (memberlist's `pushPullScale`: one more
    /// interval per doubling above 32, so big pools do not flood each other with state).
    pub fn push_pull_interval_for(&self, n: usize) -> u64 {
        const THRESHOLD: usize = 32;
        if n <= THRESHOLD {
            return self.push_pull_interval_ms;
        }
        let mult = ((n as f64).log2() - (THRESHOLD as f64).log2()).ceil() as u64 + 1;
        self.push_pull_interval_ms * mult
    }
}
