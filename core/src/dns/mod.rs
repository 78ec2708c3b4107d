//! The DNS interface's decisions: which names mean what, and the answers built from catalog
//! data. Sans-IO: the runtime owns the sockets, reads the catalog, and calls in here.

use std::collections::BTreeMap;

/// `dns_config` and the DNS settings around it, as Consul names them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsConfig {
    /// The domain served, lower case with a trailing dot (`consul.`).
    pub domain: String,
    /// This agent's datacenter (names without a dc label mean it).
    pub datacenter: String,
    /// TTL in seconds of node answers (`dns_config.node_ttl`; default 0).
    pub node_ttl_s: u32,
    /// TTL in seconds of service answers, by service name; `"*"` is the default for every
    /// service not listed (`dns_config.service_ttl`; default 0).
    pub service_ttl_s: BTreeMap<String, u32>,
    /// Leave out warning instances too, not only critical ones (`dns_config.only_passing`).
    pub only_passing: bool,
    /// Serve reads from any server, even without a leader (`dns_config.allow_stale`;
    /// default true, as Consul's).
    pub allow_stale: bool,
    /// How stale a read may be before the leader is asked (`dns_config.max_stale`; 10 years
    /// by default in Consul, meaning "always").
    pub max_stale_ms: u64,
    /// Most answers in a UDP response without EDNS (`dns_config.udp_answer_limit`). Consul
    /// caps at 3 by default; Legate fills the 512 bytes unless this is set. Either way the TC
    /// bit is set whenever records were left out, so the client can retry over TCP.
    pub udp_answer_limit: Option<usize>,
    /// Upstream resolvers for names outside the domain (`recursors`); empty: REFUSED.
    pub recursors: Vec<String>,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            domain: "consul.".into(),
            datacenter: "dc1".into(),
            node_ttl_s: 0,
            service_ttl_s: BTreeMap::new(),
            only_passing: false,
            allow_stale: true,
            max_stale_ms: 10 * 365 * 24 * 3_600_000,
            udp_answer_limit: None,
            recursors: Vec::new(),
        }
    }
}
