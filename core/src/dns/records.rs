//! Records from catalog data: which instances show, in which order, as which records.

use std::collections::BTreeSet;
use std::net::IpAddr;

use hickory_proto::rr::rdata::{A, AAAA, SOA, SRV, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use rand_core::RngCore;

use super::name::ip_hex;
use super::{DnsConfig, SOA_EXPIRE_S, SOA_MIN_TTL_S, SOA_REFRESH_S, SOA_RETRY_S, SOA_SERIAL};
use crate::catalog::query::Endpoint;
use crate::catalog::{Node, Status};

/// Bytes of one character-string in a TXT record (its length is one byte).
const TXT_STRING_BYTES_MAX: usize = 255;

/// Node meta keys with this prefix show only their value in TXT records (Consul's rule for
/// meta written to be read as RFC 1035 text).
const RFC1035_META_PREFIX: &str = "rfc1035-";

/// The records of one answer before size fitting.
#[derive(Debug, Default)]
pub(super) struct Records {
    pub answers: Vec<Record>,
    pub additionals: Vec<Record>,
}

/// The instances a DNS answer shows: not critical (a critical node check makes every
/// instance on the node critical, since [`Endpoint::status`] includes node checks), and
/// not warning either under `only_passing`. Shuffled so that clients spread their load.
pub(super) fn healthy_shuffled(
    instances: Vec<Endpoint>,
    cfg: &DnsConfig,
    rng: &mut impl RngCore,
) -> Vec<(Endpoint, Status)> {
    let healthy = instances.into_iter().filter(|h| match h.status {
        Status::Passing => true,
        Status::Warning => !cfg.only_passing,
        Status::Critical => false,
    });
    shuffled(healthy.collect(), rng)
}

/// Every instance, shuffled: a prepared query's answer, whose instances its own rules chose.
pub(super) fn shuffled(instances: Vec<Endpoint>, rng: &mut impl RngCore) -> Vec<(Endpoint, Status)> {
    let mut shown: Vec<(Endpoint, Status)> = instances
        .into_iter()
        .map(|h| {
            let status = h.status;
            (h, status)
        })
        .collect();
    shuffle(&mut shown, rng);
    // More than this never fits a message; cutting after the shuffle keeps the choice fair.
    shown.truncate(super::ANSWER_RECORDS_MAX);
    shown
}

/// Fisher-Yates with the caller's RNG (the modulo bias over a u64 draw is negligible here).
fn shuffle<T>(items: &mut [T], rng: &mut impl RngCore) {
    for i in (1..items.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
}

/// Where an instance is reached: the service address if set, else the node's.
fn instance_address(h: &Endpoint) -> &str {
    if h.service_address.is_empty() {
        &h.node_address
    } else {
        &h.service_address
    }
}

/// An A or AAAA record for `ip` if the query type wants that family.
pub(super) fn address_record(owner: &Name, ip: IpAddr, qtype: RecordType, ttl: u32) -> Option<Record> {
    let data = match ip {
        IpAddr::V4(v4) if matches!(qtype, RecordType::A | RecordType::ANY) => RData::A(A(v4)),
        IpAddr::V6(v6) if matches!(qtype, RecordType::AAAA | RecordType::ANY) => RData::AAAA(AAAA(v6)),
        _ => return None,
    };
    Some(Record::from_rdata(owner.clone(), ttl, data))
}

/// A, AAAA (and ANY: both) of a service's instances. Instances on the same address give one
/// record: a resolver would collapse duplicates of an RRset anyway. Addresses that are
/// hostnames give nothing (Consul answers a CNAME there; deferred).
pub(super) fn service_addresses(owner: &Name, shown: &[(Endpoint, Status)], qtype: RecordType, ttl: u32) -> Records {
    let mut seen = BTreeSet::new();
    let mut out = Records::default();
    for (h, _) in shown {
        let Ok(ip) = instance_address(h).parse::<IpAddr>() else { continue };
        if seen.insert(ip) {
            out.answers.extend(address_record(owner, ip, qtype, ttl));
        }
    }
    out
}

/// SRV records of a service's instances in datacenter `dc`, with the targets' addresses as
/// additionals.
///
/// The target names where the instance is reached: `<node>.node.<dc>.<domain>` when the
/// service uses the node's address (none of its own, or the same),
/// `<hex>.addr.<dc>.<domain>` when it has an IP of its own (so two instances on one node with
/// different IPs keep them apart), and the hostname itself when the address is a hostname
/// (without an additional record: it is not ours). `dc` is the datacenter the instances are
/// in, so the targets resolve there when looked up again.
pub(super) fn service_srv(owner: &Name, shown: &[(Endpoint, Status)], dc: &str, cfg: &DnsConfig, ttl: u32) -> Records {
    let mut seen_srv = BTreeSet::new();
    let mut seen_target = BTreeSet::new();
    let mut out = Records::default();
    for (h, status) in shown {
        let Some((target, ip)) = srv_target(h, dc, cfg) else { continue };
        let weight = match status {
            Status::Warning => h.weights.warning,
            _ => h.weights.passing,
        };
        let weight = u16::try_from(weight).unwrap_or(u16::MAX);
        if !seen_srv.insert((target.clone(), h.port)) {
            continue;
        }
        let srv = SRV::new(1, weight, h.port, target.clone());
        out.answers.push(Record::from_rdata(owner.clone(), ttl, RData::SRV(srv)));
        if let Some(ip) = ip {
            if seen_target.insert(target.clone()) {
                out.additionals.extend(address_record(&target, ip, RecordType::ANY, ttl));
            }
        }
    }
    out
}

fn srv_target(h: &Endpoint, dc: &str, cfg: &DnsConfig) -> Option<(Name, Option<IpAddr>)> {
    let address = instance_address(h);
    match address.parse::<IpAddr>() {
        Ok(ip) if h.service_address.is_empty() || h.service_address == h.node_address => {
            Some((under_domain(&[&h.node, "node", dc], cfg)?, Some(ip)))
        }
        Ok(ip) => Some((under_domain(&[&ip_hex(ip), "addr", dc], cfg)?, Some(ip))),
        Err(_) => {
            let mut host = Name::from_ascii(address).ok()?;
            host.set_fqdn(true);
            Some((host, None))
        }
    }
}

/// `labels…​.<domain>`, or `None` when a label is not a DNS label (a node name with a dot,
/// or longer than 63 bytes): such an instance cannot be named, so it is left out.
pub(super) fn under_domain(labels: &[&str], cfg: &DnsConfig) -> Option<Name> {
    let mut name = Name::from_ascii(&cfg.domain).ok()?;
    for label in labels.iter().rev() {
        if label.is_empty() || label.contains('.') {
            return None;
        }
        name = name.prepend_label(*label).ok()?;
    }
    name.set_fqdn(true);
    Some(name)
}

/// A node's records: `address` (the node's, or its WAN address when translated; A/AAAA as
/// asked), and its meta as TXT records, in the answer for TXT and ANY queries and as
/// additionals for A/AAAA (as Consul does).
pub(super) fn node_records(owner: &Name, node: &Node, address: &str, qtype: RecordType, ttl: u32) -> Records {
    let mut out = Records::default();
    if let Ok(ip) = address.parse::<IpAddr>() {
        out.answers.extend(address_record(owner, ip, qtype, ttl));
    }
    let txt = node_txt(owner, node, ttl);
    match qtype {
        RecordType::TXT | RecordType::ANY => out.answers.extend(txt),
        RecordType::A | RecordType::AAAA if !out.answers.is_empty() => out.additionals.extend(txt),
        _ => {}
    }
    out
}

/// One TXT record per meta entry: `key=value`, or only the value for `rfc1035-` keys.
/// Long texts are split into 255-byte strings, which clients concatenate.
fn node_txt(owner: &Name, node: &Node, ttl: u32) -> Vec<Record> {
    node.meta
        .iter()
        .map(|(key, value)| {
            let text = match key.strip_prefix(RFC1035_META_PREFIX) {
                Some(_) => value.clone(),
                None => format!("{key}={value}"),
            };
            let mut strings: Vec<&[u8]> = text.as_bytes().chunks(TXT_STRING_BYTES_MAX).collect();
            if strings.is_empty() {
                strings.push(b""); // A TXT record holds at least one string, maybe empty.
            }
            Record::from_rdata(owner.clone(), ttl, RData::TXT(TXT::from_bytes(strings)))
        })
        .collect()
}

/// The zone's SOA, for the authority section of negative answers (and SOA queries).
pub(super) fn soa(cfg: &DnsConfig) -> Option<Record> {
    let zone = Name::from_ascii(&cfg.domain).ok()?;
    let mname = zone.prepend_label("ns").ok()?;
    let rname = zone.prepend_label("hostmaster").ok()?;
    let soa = SOA::new(mname, rname, SOA_SERIAL, SOA_REFRESH_S, SOA_RETRY_S, SOA_EXPIRE_S, SOA_MIN_TTL_S);
    Some(Record::from_rdata(zone, SOA_MIN_TTL_S, RData::SOA(soa)))
}
