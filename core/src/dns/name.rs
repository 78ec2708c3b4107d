//! Query names to [`Lookup`]s: `[tag.]svc.service[.dc]`, `_svc._tag.service[.dc]`,
//! `node.node[.dc]`, `<hex>.addr[.dc]`, `name.query[.dc]`, under the configured domain.
//!
//! The kind label is searched from the right: the last label before the domain, or the one
//! before it (then the last is the datacenter). Names are case-insensitive: everything is
//! lowered here and the catalog compares names case-insensitively too.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hickory_proto::rr::Name;

use super::{DnsConfig, Lookup};

/// The RFC 2782 protocol label meaning "any tag".
const RFC2782_ANY_TAG: &str = "tcp";

/// What `name` asks for under `cfg.domain`.
pub(super) fn lookup(name: &Name, cfg: &DnsConfig) -> Lookup {
    let Some(labels) = lowered_labels(name) else {
        // Labels that are not UTF-8 name nothing we store; inside our domain or not?
        return if in_domain_bytes(name, cfg) { Lookup::Unknown } else { Lookup::OutsideDomain };
    };
    let domain: Vec<&str> = cfg.domain.trim_end_matches('.').split('.').filter(|l| !l.is_empty()).collect();
    if labels.len() < domain.len() || labels[labels.len() - domain.len()..] != domain[..] {
        return Lookup::OutsideDomain;
    }
    let inner = &labels[..labels.len() - domain.len()];
    if inner.is_empty() {
        return Lookup::Apex;
    }
    let (kind_at, dc) = match kind_position(inner) {
        Some(found) => found,
        None => return Lookup::Unknown,
    };
    let dc = dc.map(str::to_string).unwrap_or_else(|| cfg.datacenter.to_ascii_lowercase());
    let prefix = &inner[..kind_at];
    match inner[kind_at].as_str() {
        "service" => service(prefix, dc),
        "node" => match prefix {
            [name] => Lookup::Node { name: name.clone(), dc },
            _ => Lookup::Unknown,
        },
        "addr" => match prefix {
            [hex] => hex_ip(hex).map_or(Lookup::Unknown, |ip| Lookup::Addr { ip, dc }),
            _ => Lookup::Unknown,
        },
        "query" => match prefix {
            [name] => Lookup::PreparedQuery { name: name.clone(), dc },
            [name, proto] if name.starts_with('_') && proto.starts_with('_') => {
                Lookup::PreparedQuery { name: name[1..].to_string(), dc }
            }
            _ => Lookup::Unknown,
        },
        _ => Lookup::Unknown,
    }
}

/// Where the kind label is, and the datacenter label after it if any.
fn kind_position(inner: &[String]) -> Option<(usize, Option<&str>)> {
    let is_kind = |l: &str| matches!(l, "service" | "node" | "addr" | "query");
    let last = inner.len() - 1;
    // A kind needs at least one label before it.
    if last >= 1 && is_kind(&inner[last]) {
        return Some((last, None));
    }
    if last >= 2 && is_kind(&inner[last - 1]) {
        return Some((last - 1, Some(inner[last].as_str())));
    }
    None
}

fn service(prefix: &[String], dc: String) -> Lookup {
    match prefix {
        [name] => Lookup::Service { name: name.clone(), tag: None, dc },
        [svc, proto] if svc.len() > 1 && proto.len() > 1 && svc.starts_with('_') && proto.starts_with('_') => {
            let tag = &proto[1..];
            let tag = (tag != RFC2782_ANY_TAG).then(|| tag.to_string());
            Lookup::Service { name: svc[1..].to_string(), tag, dc }
        }
        [tag, name] => Lookup::Service { name: name.clone(), tag: Some(tag.clone()), dc },
        _ => Lookup::Unknown,
    }
}

/// `7f000001` → 127.0.0.1; 32 hex digits → an IPv6 address; anything else → `None`.
fn hex_ip(hex: &str) -> Option<IpAddr> {
    if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    match hex.len() {
        8 => u32::from_str_radix(hex, 16).ok().map(|v| IpAddr::V4(Ipv4Addr::from(v))),
        32 => u128::from_str_radix(hex, 16).ok().map(|v| IpAddr::V6(Ipv6Addr::from(v))),
        _ => None,
    }
}

/// The address spelled as an `.addr.` label (the inverse of [`hex_ip`]).
pub(super) fn ip_hex(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => format!("{:08x}", u32::from(v4)),
        IpAddr::V6(v6) => format!("{:032x}", u128::from(v6)),
    }
}

fn lowered_labels(name: &Name) -> Option<Vec<String>> {
    name.iter().map(|l| String::from_utf8(l.to_ascii_lowercase()).ok()).collect()
}

fn in_domain_bytes(name: &Name, cfg: &DnsConfig) -> bool {
    Name::from_ascii(&cfg.domain).is_ok_and(|domain| domain.zone_of(name))
}
