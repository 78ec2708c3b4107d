//! `translate_wan_addrs`: answers about another datacenter show where its nodes and services
//! are reached over the WAN, so a client outside that datacenter's network can reach them.
//!
//! Consul's rules (its agent's `TranslateAddress`, `TranslateServiceAddress`,
//! `TranslateServicePort`): a node's address becomes its `wan` tagged address when it has
//! one; a service's address becomes its own `wan` tagged address, and its port that address's
//! port when not 0; a service without an address of its own is reached at its node's,
//! translated. Callers translate only for another datacenter with the option on
//! ([`super::DnsConfig::wan_addresses_for`]).

use crate::catalog::query::{Endpoint, ServiceHealth};
use crate::catalog::Node;

/// The tagged address a node or service is reached at over the WAN.
const TAGGED_WAN: &str = "wan";

/// Where `node` is reached: its WAN address when translating and it has one, else its address.
pub(super) fn node_address(node: &Node, translate: bool) -> &str {
    match node.tagged_addresses.get(TAGGED_WAN) {
        Some(wan) if translate && !wan.is_empty() => wan,
        _ => &node.address,
    }
}

/// The instance as DNS shows it, its WAN address and port in place when translating.
///
/// An instance reached at its node's WAN address gets that address as one of its own: the
/// node's catalog address is not where it is reached, and SRV then names it
/// `<hex>.addr.<dc>` rather than `<node>.node.<dc>`, as Consul does ("do not CNAME node
/// address in case of WAN address").
pub(super) fn endpoint(h: &ServiceHealth, translate: bool) -> Endpoint {
    let mut e = Endpoint::from(h);
    if !translate {
        return e;
    }
    if let Some(wan) = h.service.tagged_addresses.get(TAGGED_WAN) {
        if !wan.address.is_empty() {
            e.service_address = wan.address.clone();
        }
        if wan.port != 0 {
            e.port = wan.port;
        }
    }
    if e.service_address.is_empty() {
        let node_wan = node_address(&h.node, true);
        if node_wan != h.node.address {
            e.service_address = node_wan.to_string();
        }
    }
    e
}
