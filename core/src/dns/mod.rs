//! The DNS interface's decisions: which names mean what, and the answers built from catalog
//! data. Sans-IO: the agent owns the sockets, reads the catalog, and calls in here.
//!
//! # Contract
//!
//! For every datagram (UDP) or length-framed message (TCP) the driver:
//!
//! 1. calls [`parse`]. A [`Reject`] is hostile or broken input: send its packet back (FORMERR,
//!    NOTIMP, REFUSED) or drop it silently, and count it either way.
//! 2. matches the [`Request`]'s [`Lookup`]: [`Lookup::OutsideDomain`] goes to the recursors
//!    when there are some ([`relay`] turns the upstream answer into ours) and gets
//!    [`refused`] otherwise. Anything else asks [`Request::catalog_read`] which read the
//!    answer needs, performs it, and hands the result to [`answer`] as [`CatalogData`].
//!    The read goes to the datacenter the name points at ([`CatalogRead::datacenter`]):
//!    this one, or another one through its servers.
//! 3. answers [`failure`]`(req, Failure::UnknownDatacenter)` when no server knows that
//!    datacenter (`No path to datacenter`), and [`failure`]`(req, Failure::ServFail)` when the
//!    read failed otherwise.
//!
//! Answers about another datacenter name it in SRV targets (`<node>.node.<dc>.<domain>`,
//! `<hex>.addr.<dc>.<domain>`), and with `translate_wan_addrs` show its nodes' and services'
//! WAN addresses (see `translate`).
//!
//! Every response built here fits the size the client can take ([`Request::size_max`]):
//! records are dropped whole, additional section first, and TC is set whenever something was
//! left out, so a UDP client knows to retry over TCP.
//!
//! `<name>.query[.<dc>].<domain>` is a prepared query's execution: the instances its rules
//! (and its failover) chose, all shown, named in the datacenter that had them, with its
//! `DNS.TTL`. No such query: NXDOMAIN.
//!
//! Deferred: hostname addresses give no CNAME, WAN translation uses the `wan` tagged address
//! only (not `wan_ipv4`/`wan_ipv6` by query type), EDNS versions other than 0 are not refused
//! with BADVERS.

mod name;
mod records;
mod translate;
mod wire;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::net::IpAddr;

/// The wire-format crate, for drivers and tests that inspect packets.
pub use hickory_proto as proto;

pub use wire::{answer, failure, parse, refused, relay};

/// A DNS message can never be bigger than its TCP length prefix allows.
pub const TCP_MESSAGE_SIZE_MAX: usize = 65_535;

/// The UDP size every client takes (RFC 1035 §4.2.1), the floor of an EDNS advertisement.
pub const UDP_PLAIN_SIZE_MAX: usize = 512;

/// The most we send over UDP whatever a client advertises: bigger datagrams fragment, and
/// fragments get lost or spoofed (the DNS flag day 2020 recommendation is lower still).
pub const UDP_EDNS_SIZE_MAX: usize = 4096;

/// Records one answer may hold before size fitting: a 64 KiB TCP message holds at most about
/// 4,000 of the smallest record (a compressed A is 16 bytes), so more is never sent anyway.
pub const ANSWER_RECORDS_MAX: usize = 4096;

/// Additional records a query may carry (an OPT, perhaps a TSIG or a cookie-bearing SIG);
/// more is not a query anyone sends, and hickory would allocate for the claimed count.
pub const QUERY_ADDITIONALS_MAX: u16 = 4;

/// Consul's SOA timers (`dns_config.soa`), in seconds.
pub const SOA_REFRESH_S: i32 = 3600;
pub const SOA_RETRY_S: i32 = 600;
pub const SOA_EXPIRE_S: i32 = 86_400;
pub const SOA_MIN_TTL_S: u32 = 0;

/// The SOA serial. Consul stamps the current time; core has no clock and caches gain nothing
/// from a moving serial of a zone nobody transfers, so it is a constant.
pub const SOA_SERIAL: u32 = 1;

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
    /// Answers about another datacenter show its nodes' and services' WAN addresses
    /// (Consul's top-level `translate_wan_addrs`; default false), for clients that reach
    /// that datacenter over the WAN rather than its LAN.
    pub translate_wan_addrs: bool,
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
            translate_wan_addrs: false,
        }
    }
}

impl DnsConfig {
    /// The TTL of a service's answers: its own `service_ttl`, else `"*"`, else 0.
    pub fn service_ttl(&self, service: &str) -> u32 {
        let own = self.service_ttl_s.get(&service.to_ascii_lowercase());
        own.or_else(|| self.service_ttl_s.get("*")).copied().unwrap_or(0)
    }

    /// Whether `dc` names this agent's datacenter (datacenter names are case-insensitive).
    pub fn is_local(&self, dc: &str) -> bool {
        dc.eq_ignore_ascii_case(&self.datacenter)
    }

    /// Whether answers about datacenter `dc` show WAN addresses: `translate_wan_addrs` is on
    /// and `dc` is another datacenter (an agent's own datacenter always sees LAN addresses).
    pub fn wan_addresses_for(&self, dc: &str) -> bool {
        self.translate_wan_addrs && !self.is_local(dc)
    }
}

/// How the query arrived; it decides how big the answer may be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// What a query name asks for. Names are lower case; the datacenter is filled in with this
/// agent's when the name has none.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// `[tag.]svc.service[.dc]`, `_svc._tag.service[.dc]` (`_tcp`: no tag filter).
    Service { name: String, tag: Option<String>, dc: String },
    /// `node.node[.dc]`.
    Node { name: String, dc: String },
    /// `<hex>.addr[.dc]`: the address spelled in hex (8 digits IPv4, 32 digits IPv6).
    Addr { ip: IpAddr, dc: String },
    /// `name.query[.dc]`: a prepared query (not implemented: NXDOMAIN).
    PreparedQuery { name: String, dc: String },
    /// The domain itself (`consul.`): its SOA.
    Apex,
    /// A name outside the domain: the recursors' business.
    OutsideDomain,
    /// A name inside the domain that means nothing: NXDOMAIN.
    Unknown,
}

impl Lookup {
    /// The datacenter the name points at, if it points at one.
    pub fn datacenter(&self) -> Option<&str> {
        match self {
            Lookup::Service { dc, .. }
            | Lookup::Node { dc, .. }
            | Lookup::Addr { dc, .. }
            | Lookup::PreparedQuery { dc, .. } => Some(dc),
            Lookup::Apex | Lookup::OutsideDomain | Lookup::Unknown => None,
        }
    }
}

/// A query that parsed: the question and what the client can take back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub id: u16,
    /// RD, echoed in the answer.
    pub recursion_desired: bool,
    /// The question as asked (its name's case is echoed back).
    pub query: proto::op::Query,
    pub lookup: Lookup,
    pub transport: Transport,
    /// The UDP payload size the client advertised in an EDNS OPT record, if it sent one.
    pub edns_payload: Option<u16>,
}

impl Request {
    /// The query type asked.
    pub fn qtype(&self) -> proto::rr::RecordType {
        self.query.query_type()
    }

    /// The most bytes the response may take: 64 KiB over TCP; over UDP the EDNS size
    /// (floored at 512, capped at [`UDP_EDNS_SIZE_MAX`]) or 512 without EDNS.
    pub fn size_max(&self) -> usize {
        match (self.transport, self.edns_payload) {
            (Transport::Tcp, _) => TCP_MESSAGE_SIZE_MAX,
            (Transport::Udp, None) => UDP_PLAIN_SIZE_MAX,
            (Transport::Udp, Some(size)) => usize::from(size).clamp(UDP_PLAIN_SIZE_MAX, UDP_EDNS_SIZE_MAX),
        }
    }

    /// The catalog read the answer needs, or `None` when it is answered without one (an
    /// address, an unknown name, a name outside the domain). The
    /// read is of the datacenter the name points at, this one or another.
    pub fn catalog_read(&self, cfg: &DnsConfig) -> Option<CatalogRead> {
        match &self.lookup {
            Lookup::Service { name, tag, dc } => Some(CatalogRead::ServiceHealth {
                name: name.clone(),
                tag: tag.clone(),
                dc: dc.clone(),
                wan_addresses: cfg.wan_addresses_for(dc),
            }),
            Lookup::Node { name, dc } => Some(CatalogRead::Node { name: name.clone(), dc: dc.clone() }),
            Lookup::PreparedQuery { name, dc } => {
                Some(CatalogRead::PreparedQuery { name: name.clone(), dc: dc.clone() })
            }
            // `<hex>.addr[.dc]` spells its answer whatever the datacenter, as Consul's does.
            Lookup::Addr { .. } | Lookup::Apex | Lookup::OutsideDomain | Lookup::Unknown => None,
        }
    }
}

/// A catalog read the driver performs for [`answer`] (ordered, so a driver can cache by it:
/// the datacenter is part of the key). Datacenter names are lower case.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum CatalogRead {
    /// Every instance of the service with its checks (node checks included), filtered by tag,
    /// in datacenter `dc`. Health filtering is done here, not by the read: critical and (with
    /// `only_passing`) warning instances are left out by [`answer`].
    ///
    /// With `wan_addresses` the answer shows WAN addresses, which only the instances in full
    /// carry: read them as [`CatalogData::ServicesFull`]; without, the lean
    /// [`CatalogData::Services`] is enough.
    ServiceHealth { name: String, tag: Option<String>, dc: String, wan_addresses: bool },
    /// The node by name, in datacenter `dc`.
    Node { name: String, dc: String },
    /// The execution of the prepared query with this ID or name, stored in datacenter `dc`
    /// (its failover may take the instances from another): [`CatalogData::Prepared`].
    PreparedQuery { name: String, dc: String },
}

impl CatalogRead {
    /// The datacenter read.
    pub fn datacenter(&self) -> &str {
        match self {
            CatalogRead::ServiceHealth { dc, .. }
            | CatalogRead::Node { dc, .. }
            | CatalogRead::PreparedQuery { dc, .. } => dc,
        }
    }
}

/// What the driver read for the [`CatalogRead`], handed to [`answer`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CatalogData {
    /// No read was asked for.
    Nothing,
    /// The instances of a service ([`CatalogRead::ServiceHealth`]).
    Services(Vec<crate::catalog::query::Endpoint>),
    /// The instances of a service in full, tagged addresses included
    /// ([`CatalogRead::ServiceHealth`] with `wan_addresses`).
    ServicesFull(Vec<crate::catalog::query::ServiceHealth>),
    /// The node, if it exists ([`CatalogRead::Node`]).
    Node(Option<crate::catalog::Node>),
    /// A prepared query's execution ([`CatalogRead::PreparedQuery`]); `None`: no such query.
    Prepared(Option<PreparedAnswer>),
}

/// What a prepared query's execution gives DNS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreparedAnswer {
    /// The service the query selects (its TTL is the default).
    pub service: String,
    /// The instances its rules kept: all are shown, `only_passing` does not apply.
    pub instances: Vec<crate::catalog::query::ServiceHealth>,
    /// The datacenter the instances are in (another one after a failover).
    pub datacenter: String,
    /// The query's own `DNS.TTL`, when it sets one.
    pub ttl_s: Option<u32>,
}

/// Why a packet got no normal answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reject {
    /// Send this response back (FORMERR, NOTIMP or REFUSED with the query's id).
    Answer { packet: Vec<u8>, reason: &'static str },
    /// Say nothing: there is no id to answer, or the packet is itself a response (answering
    /// would let two servers bounce packets forever).
    Drop { reason: &'static str },
}

impl Reject {
    pub fn reason(&self) -> &'static str {
        match self {
            Reject::Answer { reason, .. } | Reject::Drop { reason } => reason,
        }
    }
}

/// Errors answered without data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The catalog read failed (no leader, no server).
    ServFail,
    /// No server knows the datacenter the name points at (`No path to datacenter`): NXDOMAIN
    /// with the SOA, authoritative, as Consul answers (its `rCodeFromError` maps
    /// `ErrNoDCPath` to NXDOMAIN, and every NXDOMAIN carries the SOA).
    UnknownDatacenter,
    /// Not ours to answer (outside the domain with no recursors).
    Refused,
}
