//! Packets in and out: parsing a query, building a response that fits.

use hickory_proto::op::{Edns, Message, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, Record, RecordType};
use rand_core::RngCore;

use super::records::{self, Records};
use super::{name, translate, CatalogData, DnsConfig, Failure, Lookup, Reject, Request, Transport};
use super::{QUERY_ADDITIONALS_MAX, UDP_EDNS_SIZE_MAX};
use crate::catalog::query::Endpoint;

/// DNS header length (RFC 1035 §4.1.1).
const HEADER_BYTES: usize = 12;

/// The header's QR bit (byte 2): set in responses.
const FLAG_QR: u8 = 0x80;

/// The header's RA bit (byte 3): set when the server recurses.
const FLAG_RA: u8 = 0x80;

/// Parses one query. Never panics, whatever the bytes.
pub fn parse(packet: &[u8], transport: Transport, cfg: &DnsConfig) -> Result<Request, Reject> {
    if packet.len() < HEADER_BYTES {
        return Err(Reject::Drop { reason: "shorter than a DNS header" });
    }
    let id = u16::from_be_bytes([packet[0], packet[1]]);
    if packet[2] & FLAG_QR != 0 {
        return Err(Reject::Drop { reason: "a response, not a query" });
    }
    let opcode = OpCode::from_u8((packet[2] >> 3) & 0x0f);
    let rd = packet[2] & 0x01 != 0;
    let count = |at: usize| u16::from_be_bytes([packet[at], packet[at + 1]]);
    let (questions, answers, authorities, additionals) = (count(4), count(6), count(8), count(10));
    if opcode != OpCode::Query {
        return Err(header_only(id, opcode, rd, ResponseCode::NotImp, "an opcode other than QUERY"));
    }
    // Checked before decoding: hickory allocates for the counts the header claims.
    if questions != 1 {
        return Err(header_only(id, opcode, rd, ResponseCode::FormErr, "not exactly one question"));
    }
    if answers != 0 || authorities != 0 || additionals > QUERY_ADDITIONALS_MAX {
        return Err(header_only(id, opcode, rd, ResponseCode::FormErr, "records in a query"));
    }
    let Ok(message) = Message::from_vec(packet) else {
        return Err(header_only(id, opcode, rd, ResponseCode::FormErr, "undecodable query"));
    };
    let Some(query) = message.queries.first().cloned() else {
        return Err(header_only(id, opcode, rd, ResponseCode::FormErr, "no question"));
    };
    if !matches!(query.query_class(), DNSClass::IN | DNSClass::ANY) {
        return Err(header_only(id, opcode, rd, ResponseCode::Refused, "a class other than IN"));
    }
    let lookup = name::lookup(query.name(), cfg);
    let edns_payload = message.edns.as_ref().map(Edns::max_payload);
    Ok(Request { id, recursion_desired: rd, query, lookup, transport, edns_payload })
}

/// A response with only a header: there is no question we trust enough to echo.
fn header_only(id: u16, op_code: OpCode, rd: bool, code: ResponseCode, reason: &'static str) -> Reject {
    let mut msg = Message::error_msg(id, op_code, code);
    msg.metadata.recursion_desired = rd;
    match msg.to_vec() {
        Ok(packet) => Reject::Answer { packet, reason },
        Err(_) => Reject::Drop { reason },
    }
}

/// The response to a parsed in-domain query, from what the driver read for
/// [`Request::catalog_read`]. `rng` shuffles the instances.
pub fn answer(req: &Request, data: CatalogData, cfg: &DnsConfig, rng: &mut impl RngCore) -> Vec<u8> {
    let qtype = req.qtype();
    let owner = req.query.name().clone();
    let found: Option<Records> = match (&req.lookup, data) {
        (Lookup::OutsideDomain, _) => return failure(req, Failure::Refused, cfg),
        (Lookup::Service { name, dc, .. }, CatalogData::Services(instances)) => {
            service_records(&owner, name, dc, instances, qtype, cfg, rng)
        }
        (Lookup::Service { name, dc, .. }, CatalogData::ServicesFull(instances)) => {
            let translate = cfg.wan_addresses_for(dc);
            let instances = instances.iter().map(|h| translate::endpoint(h, translate)).collect();
            service_records(&owner, name, dc, instances, qtype, cfg, rng)
        }
        (Lookup::PreparedQuery { .. }, CatalogData::Prepared(Some(p))) => {
            let translate = cfg.wan_addresses_for(&p.datacenter);
            let instances = p.instances.iter().map(|h| translate::endpoint(h, translate)).collect();
            let shown = records::shuffled(instances, rng);
            let ttl = p.ttl_s.unwrap_or_else(|| cfg.service_ttl(&p.service));
            match qtype {
                _ if shown.is_empty() => None,
                RecordType::SRV => Some(records::service_srv(&owner, &shown, &p.datacenter, cfg, ttl)),
                _ => Some(records::service_addresses(&owner, &shown, qtype, ttl)),
            }
        }
        (Lookup::Node { dc, .. }, CatalogData::Node(Some(node))) => {
            let address = translate::node_address(&node, cfg.wan_addresses_for(dc));
            Some(records::node_records(&owner, &node, address, qtype, cfg.node_ttl_s))
        }
        (Lookup::Addr { ip, .. }, _) => {
            let answers = records::address_record(&owner, *ip, qtype, cfg.node_ttl_s).into_iter().collect();
            Some(Records { answers, additionals: Vec::new() })
        }
        (Lookup::Apex, _) => {
            let wants_soa = matches!(qtype, RecordType::SOA | RecordType::ANY);
            let answers = records::soa(cfg).filter(|_| wants_soa).into_iter().collect();
            Some(Records { answers, additionals: Vec::new() })
        }
        // Unknown names, unknown prepared queries, and data that does not match the
        // lookup (the driver read nothing, or something else): the name does not exist.
        _ => None,
    };
    let mut msg = response(req, cfg);
    match found {
        None => name_error(&mut msg, cfg),
        Some(Records { answers, additionals }) if answers.is_empty() => {
            // The name exists but has no records of this type (NODATA): NOERROR with the SOA,
            // so resolvers cache the absence (RFC 2308).
            drop(additionals);
            msg.authorities.extend(records::soa(cfg));
        }
        Some(Records { answers, additionals }) => {
            msg.answers = answers;
            msg.additionals = additionals;
        }
    }
    encode_fitted(msg, req, cfg)
}

/// The records of a service's instances in datacenter `dc`, or `None` when none is healthy
/// (the name does not exist). A prepared query's answer is built here too, with the
/// datacenter that answered it.
fn service_records(
    owner: &Name,
    name: &str,
    dc: &str,
    instances: Vec<Endpoint>,
    qtype: RecordType,
    cfg: &DnsConfig,
    rng: &mut impl RngCore,
) -> Option<Records> {
    let shown = records::healthy_shuffled(instances, cfg, rng);
    let ttl = cfg.service_ttl(name);
    match qtype {
        _ if shown.is_empty() => None,
        RecordType::SRV => Some(records::service_srv(owner, &shown, dc, cfg, ttl)),
        _ => Some(records::service_addresses(owner, &shown, qtype, ttl)),
    }
}

/// NXDOMAIN with the zone's SOA in authority, so resolvers cache the absence (RFC 2308).
fn name_error(msg: &mut Message, cfg: &DnsConfig) {
    msg.metadata.response_code = ResponseCode::NXDomain;
    msg.authorities.extend(records::soa(cfg));
}

/// A response carrying only an error code and the question; for an unknown datacenter, the
/// authoritative NXDOMAIN (with the SOA) of a name that does not exist.
pub fn failure(req: &Request, failure: Failure, cfg: &DnsConfig) -> Vec<u8> {
    let mut msg = response(req, cfg);
    let code = match failure {
        Failure::ServFail => ResponseCode::ServFail,
        Failure::Refused => ResponseCode::Refused,
        Failure::UnknownDatacenter => {
            name_error(&mut msg, cfg);
            return encode_fitted(msg, req, cfg);
        }
    };
    msg.metadata.authoritative = false;
    msg.metadata.response_code = code;
    encode_fitted(msg, req, cfg)
}

/// REFUSED: a name outside the domain and nowhere to send it.
pub fn refused(req: &Request, cfg: &DnsConfig) -> Vec<u8> {
    failure(req, Failure::Refused, cfg)
}

/// A recursor's answer relayed to our client: the client's id, RA set. `None` when the
/// upstream bytes are not a response (then the next recursor is tried).
///
/// The query was forwarded as the client sent it (EDNS size included), so the upstream
/// answer already fits what the client takes; one that would not is cut to a TC header.
pub fn relay(req: &Request, upstream: &[u8]) -> Option<Vec<u8>> {
    if upstream.len() < HEADER_BYTES || upstream[2] & FLAG_QR == 0 {
        return None;
    }
    let mut out = upstream.to_vec();
    out[..2].copy_from_slice(&req.id.to_be_bytes());
    out[3] |= FLAG_RA;
    if out.len() > req.size_max() {
        let mut msg = Message::from_vec(&out).ok()?;
        msg.answers.clear();
        msg.authorities.clear();
        msg.additionals.clear();
        msg.metadata.truncation = true;
        return msg.to_vec().ok().filter(|p| p.len() <= req.size_max());
    }
    Some(out)
}

/// The response skeleton: id, question, flags, and an OPT record when the query had one.
fn response(req: &Request, cfg: &DnsConfig) -> Message {
    let mut metadata = Metadata::new(req.id, MessageType::Response, OpCode::Query);
    metadata.authoritative = true;
    metadata.recursion_desired = req.recursion_desired;
    metadata.recursion_available = !cfg.recursors.is_empty();
    let mut msg = Message::new(req.id, MessageType::Response, OpCode::Query);
    msg.metadata = metadata;
    msg.queries.push(req.query.clone());
    if req.edns_payload.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(UDP_EDNS_SIZE_MAX as u16);
        msg.set_edns(edns);
    }
    msg
}

/// Encodes `msg` within the request's size, leaving records out when it must: whole
/// records, the additional section first, then answers, then the authority section. TC is
/// set when anything was left out, including answers cut by `udp_answer_limit`.
fn encode_fitted(mut msg: Message, req: &Request, cfg: &DnsConfig) -> Vec<u8> {
    let limit = req.size_max();
    let answer_limit = match (req.transport, req.edns_payload) {
        (Transport::Udp, None) => cfg.udp_answer_limit,
        _ => None,
    };
    if let Some(cap) = answer_limit {
        if msg.answers.len() > cap {
            msg.answers.truncate(cap);
            msg.additionals.clear(); // They may describe answers cut above; none is needed.
            msg.metadata.truncation = true;
        }
    }
    msg.answers.truncate(super::ANSWER_RECORDS_MAX);
    // The common case: everything fits, encoded once with nothing copied.
    if let Ok(packet) = msg.to_vec() {
        if packet.len() <= limit {
            return packet;
        }
    }
    let (answers, authorities, additionals) =
        (std::mem::take(&mut msg.answers), std::mem::take(&mut msg.authorities), std::mem::take(&mut msg.additionals));
    // Records in the order they are kept; a prefix of this list is what gets sent.
    let ordered: Vec<(Section, Record)> = answers
        .into_iter()
        .map(|r| (Section::Answer, r))
        .chain(authorities.into_iter().map(|r| (Section::Authority, r)))
        .chain(additionals.into_iter().map(|r| (Section::Additional, r)))
        .collect();
    let total = ordered.len();
    msg.metadata.truncation = true;
    let with_prefix = |kept: usize| -> Option<Vec<u8>> {
        let mut m = msg.clone();
        for (section, record) in &ordered[..kept] {
            match section {
                Section::Answer => m.answers.push(record.clone()),
                Section::Authority => m.authorities.push(record.clone()),
                Section::Additional => m.additionals.push(record.clone()),
            }
        }
        m.to_vec().ok().filter(|p| p.len() <= limit)
    };
    // Not everything fits, so TC is set whatever is kept. Size grows with the prefix, so the
    // longest prefix that fits is found by bisection: `fits` always fits (or is 0), `over`
    // never does.
    let (mut fits, mut over) = (0usize, total);
    while over - fits > 1 {
        let mid = fits + (over - fits) / 2;
        if with_prefix(mid).is_some() {
            fits = mid;
        } else {
            over = mid;
        }
    }
    with_prefix(fits).unwrap_or_else(|| bare_failure(req))
}

/// The last resort when not even the empty response encodes within the limit (it cannot
/// happen for a question that decoded, but no input may panic): a SERVFAIL header.
fn bare_failure(req: &Request) -> Vec<u8> {
    let mut msg = Message::error_msg(req.id, OpCode::Query, ResponseCode::ServFail);
    msg.metadata.recursion_desired = req.recursion_desired;
    msg.to_vec().unwrap_or_default()
}

#[derive(Clone, Copy)]
enum Section {
    Answer,
    Authority,
    Additional,
}

/// The name a query of `name` asks, for tests and drivers that build queries.
#[cfg(test)]
pub(super) fn query_packet(id: u16, name: &str, qtype: RecordType, edns: Option<u16>) -> Vec<u8> {
    use hickory_proto::op::Query;
    let mut msg = Message::new(id, MessageType::Query, OpCode::Query);
    msg.metadata.recursion_desired = true;
    msg.add_query(Query::query(Name::from_ascii(name).expect("test names are valid"), qtype));
    if let Some(size) = edns {
        let mut e = Edns::new();
        e.set_max_payload(size);
        msg.set_edns(e);
    }
    msg.to_vec().expect("test queries encode")
}
