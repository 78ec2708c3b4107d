//! The DNS rules, one test each, and properties over random input.

use std::net::{IpAddr, Ipv4Addr};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, RecordType};
use proptest::prelude::*;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::wire::query_packet;
use super::*;
use crate::catalog::query::{Endpoint, ServiceHealth};
use crate::catalog::{HealthCheck, Node, Service, ServiceAddress, Status, Weights};

fn cfg() -> DnsConfig {
    DnsConfig::default()
}

fn node(name: &str, address: &str) -> Node {
    Node { node: name.into(), address: address.into(), datacenter: "dc1".into(), ..Node::default() }
}

fn check(node: &str, service_id: &str, status: Status) -> HealthCheck {
    HealthCheck {
        node: node.into(),
        check_id: format!("{service_id}-check"),
        status,
        service_id: service_id.into(),
        ..HealthCheck::default()
    }
}

/// An instance of `web` on node `n<i>` at 10.0.0.<i>, port 8000+i, with one check.
fn endpoints(instances: &[ServiceHealth]) -> Vec<Endpoint> {
    instances.iter().map(Endpoint::from).collect()
}

fn web(i: u8, status: Status) -> ServiceHealth {
    let name = format!("n{i}");
    let service = Service {
        id: format!("web-{i}"),
        service: "web".into(),
        tags: vec!["v1".into()],
        port: 8000 + u16::from(i),
        weights: Weights { passing: 10, warning: 3 },
        ..Service::default()
    };
    let checks = vec![check(&name, &service.id, status)];
    ServiceHealth { node: node(&name, &format!("10.0.0.{i}")), service, checks }
}

fn rng() -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(7)
}

fn ask(name: &str, qtype: RecordType, transport: Transport, edns: Option<u16>, cfg: &DnsConfig) -> Request {
    parse(&query_packet(0x1234, name, qtype, edns), transport, cfg).expect("a valid query parses")
}

fn udp(name: &str, qtype: RecordType) -> Request {
    ask(name, qtype, Transport::Udp, None, &cfg())
}

fn decode(packet: &[u8]) -> Message {
    Message::from_vec(packet).expect("our responses decode")
}

fn answer_services(req: &Request, instances: Vec<ServiceHealth>, cfg: &DnsConfig) -> Message {
    decode(&answer(req, CatalogData::Services(endpoints(&instances)), cfg, &mut rng()))
}

/// Answers with the instances in full, as the driver reads them for `wan_addresses`.
fn answer_full(req: &Request, instances: Vec<ServiceHealth>, cfg: &DnsConfig) -> Message {
    decode(&answer(req, CatalogData::ServicesFull(instances), cfg, &mut rng()))
}

/// SRV answers as (priority, weight, port, target), sorted.
fn srv_records(msg: &Message) -> Vec<(u16, u16, u16, String)> {
    let mut srvs: Vec<(u16, u16, u16, String)> = msg
        .answers
        .iter()
        .map(|r| match &r.data {
            RData::SRV(s) => (s.priority, s.weight, s.port, s.target.to_ascii()),
            other => panic!("only SRV answers, got {other:?}"),
        })
        .collect();
    srvs.sort();
    srvs
}

/// Additional A records as (owner, address), sorted.
fn additional_a(msg: &Message) -> Vec<(String, String)> {
    let mut extra: Vec<(String, String)> = msg
        .additionals
        .iter()
        .map(|r| match &r.data {
            RData::A(a) => (r.name.to_ascii(), a.0.to_string()),
            other => panic!("only A additionals, got {other:?}"),
        })
        .collect();
    extra.sort();
    extra
}

/// `web(i)` whose node also has the WAN address 203.0.113.<i>.
fn web_wan(i: u8) -> ServiceHealth {
    let mut h = web(i, Status::Passing);
    h.node.tagged_addresses.insert("lan".into(), h.node.address.clone());
    h.node.tagged_addresses.insert("wan".into(), format!("203.0.113.{i}"));
    h.node.datacenter = "dc2".into();
    h
}

fn translating() -> DnsConfig {
    DnsConfig { translate_wan_addrs: true, ..cfg() }
}

fn ips(list: &[&str]) -> Vec<Ipv4Addr> {
    list.iter().map(|s| s.parse().unwrap()).collect()
}

fn a_records(msg: &Message) -> Vec<Ipv4Addr> {
    let mut ips: Vec<Ipv4Addr> = msg
        .answers
        .iter()
        .filter_map(|r| match r.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect();
    ips.sort();
    ips
}

// ---- names ----

#[test]
fn name_forms_parse_into_lookups() {
    let c = cfg();
    let lookup = |n: &str| udp(n, RecordType::A).lookup;
    let svc = |name: &str, tag: Option<&str>, dc: &str| Lookup::Service {
        name: name.into(),
        tag: tag.map(Into::into),
        dc: dc.into(),
    };
    assert_eq!(lookup("web.service.consul."), svc("web", None, "dc1"));
    assert_eq!(lookup("WEB.Service.CONSUL."), svc("web", None, "dc1"));
    assert_eq!(lookup("v1.web.service.consul."), svc("web", Some("v1"), "dc1"));
    assert_eq!(lookup("web.service.dc2.consul."), svc("web", None, "dc2"));
    assert_eq!(lookup("_web._v1.service.consul."), svc("web", Some("v1"), "dc1"));
    assert_eq!(lookup("_web._tcp.service.dc1.consul."), svc("web", None, "dc1"));
    assert_eq!(lookup("db1.node.consul."), Lookup::Node { name: "db1".into(), dc: "dc1".into() });
    assert_eq!(lookup("7f000001.addr.consul."), Lookup::Addr { ip: IpAddr::V4(Ipv4Addr::LOCALHOST), dc: "dc1".into() });
    assert_eq!(
        lookup("00000000000000000000000000000001.addr.consul."),
        Lookup::Addr { ip: "::1".parse().unwrap(), dc: "dc1".into() }
    );
    assert_eq!(lookup("geo.query.consul."), Lookup::PreparedQuery { name: "geo".into(), dc: "dc1".into() });
    assert_eq!(lookup("consul."), Lookup::Apex);
    assert_eq!(lookup("example.com."), Lookup::OutsideDomain);
    assert_eq!(lookup("consul.example.com."), Lookup::OutsideDomain);
    for unknown in
        ["service.consul.", "a.b.c.service.consul.", "xyz.addr.consul.", "web.nothing.consul.", "foo.consul."]
    {
        assert_eq!(lookup(unknown), Lookup::Unknown, "{unknown}");
    }
    let custom = DnsConfig { domain: "corp.example.".into(), ..c };
    let req = ask("web.service.corp.example.", RecordType::A, Transport::Udp, None, &custom);
    assert_eq!(req.lookup, svc("web", None, "dc1"));
    assert_eq!(ask("web.service.consul.", RecordType::A, Transport::Udp, None, &custom).lookup, Lookup::OutsideDomain);
}

#[test]
fn catalog_read_names_the_datacenter_of_the_name() {
    let c = cfg();
    let read = |n: &str| udp(n, RecordType::A).catalog_read(&c);
    let svc = |tag: Option<&str>, dc: &str| {
        Some(CatalogRead::ServiceHealth {
            name: "web".into(),
            tag: tag.map(Into::into),
            dc: dc.into(),
            wan_addresses: false,
        })
    };
    assert_eq!(read("v1.web.service.consul."), svc(Some("v1"), "dc1"));
    assert_eq!(read("web.service.DC1.consul."), svc(None, "dc1"), "the local dc named explicitly, any case");
    assert_eq!(read("web.service.dc2.consul."), svc(None, "dc2"));
    assert_eq!(read("web.service.Dc2.consul."), svc(None, "dc2"), "datacenter labels are lowered");
    assert_eq!(read("db.node.consul."), Some(CatalogRead::Node { name: "db".into(), dc: "dc1".into() }));
    assert_eq!(read("db.node.dc2.consul."), Some(CatalogRead::Node { name: "db".into(), dc: "dc2".into() }));
    assert_eq!(read("db.node.dc2.consul.").unwrap().datacenter(), "dc2");
    // The cache keys by the read: one name in two datacenters is two entries.
    assert_ne!(read("web.service.consul."), read("web.service.dc2.consul."));
    assert_eq!(read("7f000001.addr.consul."), None);
    assert_eq!(read("7f000001.addr.dc2.consul."), None);
    assert_eq!(
        read("geo.query.dc2.consul."),
        Some(CatalogRead::PreparedQuery { name: "geo".into(), dc: "dc2".into() })
    );
    assert_eq!(read("geo.query.consul.").unwrap().datacenter(), "dc1");
}

#[test]
fn wan_addresses_are_read_only_for_another_datacenter_with_translation_on() {
    let wan = |c: &DnsConfig, n: &str| match udp(n, RecordType::A).catalog_read(c) {
        Some(CatalogRead::ServiceHealth { wan_addresses, .. }) => wan_addresses,
        other => panic!("a service read, got {other:?}"),
    };
    assert!(!wan(&cfg(), "web.service.dc2.consul."), "translation is off by default");
    assert!(wan(&translating(), "web.service.dc2.consul."));
    assert!(wan(&translating(), "web.service.DC2.consul."));
    assert!(!wan(&translating(), "web.service.consul."));
    assert!(!wan(&translating(), "web.service.dc1.consul."));
    assert!(!wan(&translating(), "web.service.DC1.consul."));
    let upper_local = DnsConfig { datacenter: "DC1".into(), ..translating() };
    assert!(!wan(&upper_local, "web.service.dc1.consul."), "datacenter names compare case-insensitively");
}

// ---- rejects ----

#[test]
fn short_packets_and_responses_are_dropped() {
    let c = cfg();
    assert!(matches!(parse(&[1, 2, 3], Transport::Udp, &c), Err(Reject::Drop { .. })));
    let mut response = query_packet(1, "web.service.consul.", RecordType::A, None);
    response[2] |= 0x80;
    assert!(matches!(parse(&response, Transport::Udp, &c), Err(Reject::Drop { .. })));
}

#[test]
fn broken_queries_get_formerr_with_their_id() {
    let c = cfg();
    let full = query_packet(0xbeef, "web.service.consul.", RecordType::A, None);
    let truncated = &full[..full.len() - 3];
    let Err(Reject::Answer { packet, .. }) = parse(truncated, Transport::Udp, &c) else {
        panic!("a truncated question is answered")
    };
    let msg = decode(&packet);
    assert_eq!((msg.metadata.id, msg.metadata.response_code), (0xbeef, ResponseCode::FormErr));
    let mut two_questions = full.clone();
    two_questions[5] = 2;
    let Err(Reject::Answer { packet, .. }) = parse(&two_questions, Transport::Udp, &c) else { panic!("answered") };
    assert_eq!(decode(&packet).metadata.response_code, ResponseCode::FormErr);
}

#[test]
fn other_opcodes_get_notimp() {
    let mut packet = query_packet(9, "web.service.consul.", RecordType::A, None);
    packet[2] |= 2 << 3; // STATUS
    let Err(Reject::Answer { packet, .. }) = parse(&packet, Transport::Udp, &cfg()) else { panic!("answered") };
    assert_eq!(decode(&packet).metadata.response_code, ResponseCode::NotImp);
}

// ---- services ----

#[test]
fn a_query_answers_each_healthy_instance_authoritatively() {
    let req = udp("web.service.consul.", RecordType::A);
    let msg =
        answer_services(&req, vec![web(1, Status::Passing), web(2, Status::Warning), web(3, Status::Passing)], &cfg());
    assert_eq!(msg.metadata.response_code, ResponseCode::NoError);
    assert!(msg.metadata.authoritative && !msg.metadata.truncation);
    assert_eq!(msg.metadata.id, 0x1234);
    assert_eq!(a_records(&msg), ["10.0.0.1", "10.0.0.2", "10.0.0.3"].map(|s| s.parse::<Ipv4Addr>().unwrap()));
    assert!(msg.answers.iter().all(|r| r.ttl == 0 && r.name.to_ascii() == "web.service.consul."));
}

#[test]
fn critical_instances_and_critical_nodes_are_omitted() {
    let req = udp("web.service.consul.", RecordType::A);
    let mut node_down = web(3, Status::Passing);
    node_down.checks.push(check("n3", "", Status::Critical)); // A node-level check.
    let msg = answer_services(&req, vec![web(1, Status::Passing), web(2, Status::Critical), node_down], &cfg());
    assert_eq!(a_records(&msg), ["10.0.0.1".parse::<Ipv4Addr>().unwrap()]);
}

#[test]
fn only_passing_omits_warning_too() {
    let c = DnsConfig { only_passing: true, ..cfg() };
    let req = udp("web.service.consul.", RecordType::A);
    let msg = answer_services(&req, vec![web(1, Status::Passing), web(2, Status::Warning)], &c);
    assert_eq!(a_records(&msg), ["10.0.0.1".parse::<Ipv4Addr>().unwrap()]);
}

#[test]
fn no_healthy_instance_is_nxdomain_with_soa() {
    let req = udp("web.service.consul.", RecordType::A);
    for instances in [vec![], vec![web(1, Status::Critical)]] {
        let msg = answer_services(&req, instances, &cfg());
        assert_eq!(msg.metadata.response_code, ResponseCode::NXDomain);
        assert!(msg.answers.is_empty());
        let RData::SOA(soa) = &msg.authorities[0].data else { panic!("an SOA in authority") };
        assert_eq!((soa.mname.to_ascii(), soa.rname.to_ascii()), ("ns.consul.".into(), "hostmaster.consul.".into()));
    }
}

#[test]
fn srv_has_weights_ports_node_targets_and_additional_addresses() {
    let req = udp("_web._tcp.service.consul.", RecordType::SRV);
    let mut own_ip = web(3, Status::Passing);
    own_ip.service.address = "192.168.1.3".into();
    let msg = answer_services(&req, vec![web(1, Status::Passing), web(2, Status::Warning), own_ip], &cfg());
    assert_eq!(
        srv_records(&msg),
        vec![
            (1, 3, 8002, "n2.node.dc1.consul.".into()),
            (1, 10, 8001, "n1.node.dc1.consul.".into()),
            (1, 10, 8003, "c0a80103.addr.dc1.consul.".into()),
        ]
    );
    let mut extra: Vec<(String, String)> = msg
        .additionals
        .iter()
        .map(|r| match &r.data {
            RData::A(a) => (r.name.to_ascii(), a.0.to_string()),
            other => panic!("only A additionals, got {other:?}"),
        })
        .collect();
    extra.sort();
    assert_eq!(extra[2], ("n2.node.dc1.consul.".into(), "10.0.0.2".into()));
    assert_eq!(extra[0], ("c0a80103.addr.dc1.consul.".into(), "192.168.1.3".into()));
}

#[test]
fn hostname_addresses_give_no_a_record_but_an_srv_to_the_host() {
    let mut h = web(1, Status::Passing);
    h.service.address = "db.example.com".into();
    let a = answer_services(&udp("web.service.consul.", RecordType::A), vec![h.clone()], &cfg());
    assert_eq!((a.metadata.response_code, a.answers.len()), (ResponseCode::NoError, 0));
    let srv = answer_services(&udp("web.service.consul.", RecordType::SRV), vec![h], &cfg());
    let RData::SRV(s) = &srv.answers[0].data else { panic!("an SRV") };
    assert_eq!(s.target.to_ascii(), "db.example.com.");
    assert!(srv.additionals.is_empty());
}

#[test]
fn known_name_without_that_type_is_noerror_with_soa() {
    let msg = answer_services(&udp("web.service.consul.", RecordType::AAAA), vec![web(1, Status::Passing)], &cfg());
    assert_eq!(msg.metadata.response_code, ResponseCode::NoError);
    assert!(msg.answers.is_empty());
    assert!(matches!(msg.authorities[0].data, RData::SOA(_)));
}

#[test]
fn service_ttl_by_name_then_star() {
    let mut c = cfg();
    c.service_ttl_s.insert("*".into(), 5);
    c.service_ttl_s.insert("web".into(), 30);
    let web_msg = answer_services(&udp("web.service.consul.", RecordType::A), vec![web(1, Status::Passing)], &c);
    assert_eq!(web_msg.answers[0].ttl, 30);
    let mut other = web(1, Status::Passing);
    other.service.service = "api".into();
    let api_msg = answer_services(&udp("api.service.consul.", RecordType::A), vec![other], &c);
    assert_eq!(api_msg.answers[0].ttl, 5);
}

#[test]
fn answers_are_shuffled_by_the_rng() {
    let req = udp("web.service.consul.", RecordType::A);
    let instances: Vec<ServiceHealth> = (1..=20).map(|i| web(i, Status::Passing)).collect();
    let order = |seed| {
        let packet =
            answer(&req, CatalogData::Services(endpoints(&instances)), &cfg(), &mut ChaCha8Rng::seed_from_u64(seed));
        decode(&packet).answers.iter().map(|r| r.data.clone()).collect::<Vec<_>>()
    };
    assert_eq!(order(1), order(1), "one seed, one order");
    assert_ne!(order(1), order(2));
}

// ---- other datacenters ----

#[test]
fn another_datacenters_service_answers_its_instances() {
    let req = udp("web.service.dc2.consul.", RecordType::A);
    let msg = answer_services(&req, vec![web(1, Status::Passing), web(2, Status::Critical)], &cfg());
    assert_eq!(msg.metadata.response_code, ResponseCode::NoError);
    assert!(msg.metadata.authoritative);
    assert_eq!(a_records(&msg), ips(&["10.0.0.1"]));
    assert!(msg.answers.iter().all(|r| r.name.to_ascii() == "web.service.dc2.consul."));
}

fn prepared(instances: Vec<ServiceHealth>, datacenter: &str, ttl_s: Option<u32>) -> CatalogData {
    CatalogData::Prepared(Some(PreparedAnswer {
        service: "web".into(),
        instances,
        datacenter: datacenter.into(),
        ttl_s,
    }))
}

#[test]
fn a_prepared_query_shows_what_its_rules_chose_named_in_the_answering_datacenter() {
    // Its rules kept a warning instance and one whose only critical check it ignores: both
    // show, even with only_passing (the query decides, as in Consul).
    let c = DnsConfig { only_passing: true, ..cfg() };
    let chosen = vec![web(1, Status::Warning), web(2, Status::Critical)];
    let req = ask("geo.query.consul.", RecordType::A, Transport::Udp, None, &c);
    let msg = decode(&answer(&req, prepared(chosen.clone(), "dc2", Some(30)), &c, &mut rng()));
    assert_eq!(a_records(&msg), ips(&["10.0.0.1", "10.0.0.2"]));
    assert!(msg.answers.iter().all(|r| r.ttl == 30), "the query's DNS TTL");
    // After a failover the targets name the datacenter that answered.
    let req = ask("geo.query.consul.", RecordType::SRV, Transport::Udp, None, &c);
    let msg = decode(&answer(&req, prepared(chosen, "dc2", None), &c, &mut rng()));
    let targets: Vec<String> = srv_records(&msg).into_iter().map(|(.., t)| t).collect();
    assert_eq!(targets, ["n1.node.dc2.consul.", "n2.node.dc2.consul."]);
    // With translate_wan_addrs, another datacenter's answer shows WAN addresses.
    let req = ask("geo.query.consul.", RecordType::A, Transport::Udp, None, &translating());
    let msg = decode(&answer(&req, prepared(vec![web_wan(4)], "dc2", None), &translating(), &mut rng()));
    assert_eq!(a_records(&msg), ips(&["203.0.113.4"]));
}

#[test]
fn an_unknown_or_empty_prepared_query_is_nxdomain() {
    let req = udp("geo.query.consul.", RecordType::A);
    for data in [CatalogData::Prepared(None), prepared(Vec::new(), "dc1", None)] {
        let msg = decode(&answer(&req, data, &cfg(), &mut rng()));
        assert_eq!(msg.metadata.response_code, ResponseCode::NXDomain);
        assert!(!msg.authorities.is_empty(), "with the SOA");
    }
}

#[test]
fn srv_targets_name_the_datacenter_looked_up() {
    let mut own_ip = web(3, Status::Passing);
    own_ip.service.address = "192.168.1.3".into();
    for name in ["_web._tcp.service.dc2.consul.", "web.service.DC2.consul."] {
        let req = udp(name, RecordType::SRV);
        let msg = answer_services(&req, vec![web(1, Status::Passing), own_ip.clone()], &cfg());
        assert_eq!(
            srv_records(&msg),
            vec![(1, 10, 8001, "n1.node.dc2.consul.".into()), (1, 10, 8003, "c0a80103.addr.dc2.consul.".into())],
            "{name}"
        );
        assert_eq!(
            additional_a(&msg),
            vec![
                ("c0a80103.addr.dc2.consul.".into(), "192.168.1.3".into()),
                ("n1.node.dc2.consul.".into(), "10.0.0.1".into()),
            ]
        );
    }
    // The local datacenter, named or not, keeps its own name in targets.
    for name in ["web.service.consul.", "web.service.DC1.consul."] {
        let msg = answer_services(&udp(name, RecordType::SRV), vec![web(1, Status::Passing)], &cfg());
        assert_eq!(srv_records(&msg), vec![(1, 10, 8001, "n1.node.dc1.consul.".into())], "{name}");
    }
}

#[test]
fn node_lookup_in_another_datacenter() {
    let n = web_wan(4).node;
    let c = cfg();
    let msg = decode(&answer(&udp("n4.node.dc2.consul.", RecordType::A), CatalogData::Node(Some(n)), &c, &mut rng()));
    assert_eq!(msg.metadata.response_code, ResponseCode::NoError);
    assert_eq!(a_records(&msg), ips(&["10.0.0.4"]), "no translation without translate_wan_addrs");
    let missing = decode(&answer(&udp("n9.node.dc2.consul.", RecordType::A), CatalogData::Node(None), &c, &mut rng()));
    assert_eq!(missing.metadata.response_code, ResponseCode::NXDomain);
}

#[test]
fn addr_names_answer_in_any_datacenter() {
    // SRV targets of another datacenter point at these names, so they must resolve.
    let msg =
        decode(&answer(&udp("0a000001.addr.dc2.consul.", RecordType::A), CatalogData::Nothing, &cfg(), &mut rng()));
    assert_eq!(a_records(&msg), ips(&["10.0.0.1"]));
}

#[test]
fn translate_wan_addrs_shows_node_wan_addresses_for_another_datacenter() {
    let c = translating();
    let instances = vec![web_wan(1), web_wan(2)];
    let a = answer_full(&udp("web.service.dc2.consul.", RecordType::A), instances.clone(), &c);
    assert_eq!(a_records(&a), ips(&["203.0.113.1", "203.0.113.2"]));
    // Reached at an address that is not the node's own, the instance is named by it, as
    // Consul does; the additional record carries the WAN address.
    let srv = answer_full(&udp("web.service.dc2.consul.", RecordType::SRV), instances, &c);
    assert_eq!(
        srv_records(&srv),
        vec![(1, 10, 8001, "cb007101.addr.dc2.consul.".into()), (1, 10, 8002, "cb007102.addr.dc2.consul.".into())]
    );
    assert_eq!(
        additional_a(&srv),
        vec![
            ("cb007101.addr.dc2.consul.".into(), "203.0.113.1".into()),
            ("cb007102.addr.dc2.consul.".into(), "203.0.113.2".into()),
        ]
    );
    let node = decode(&answer(
        &udp("n1.node.dc2.consul.", RecordType::A),
        CatalogData::Node(Some(web_wan(1).node)),
        &c,
        &mut rng(),
    ));
    assert_eq!(a_records(&node), ips(&["203.0.113.1"]));
}

#[test]
fn translate_wan_addrs_prefers_the_services_own_wan_address_and_port() {
    let c = translating();
    let mut tagged = web_wan(1);
    tagged.service.address = "10.1.0.1".into();
    tagged.service.tagged_addresses.insert("wan".into(), ServiceAddress { address: "198.51.100.1".into(), port: 443 });
    let mut own_address = web_wan(2);
    own_address.service.address = "10.1.0.2".into(); // No WAN address of its own: kept.
    let mut no_wan = web(3, Status::Passing); // A node without a WAN address: its own.
    no_wan.node.datacenter = "dc2".into();
    let instances = vec![tagged, own_address, no_wan];
    let a = answer_full(&udp("web.service.dc2.consul.", RecordType::A), instances.clone(), &c);
    assert_eq!(a_records(&a), ips(&["10.0.0.3", "10.1.0.2", "198.51.100.1"]));
    let srv = answer_full(&udp("web.service.dc2.consul.", RecordType::SRV), instances, &c);
    assert_eq!(
        srv_records(&srv),
        vec![
            (1, 10, 443, "c6336401.addr.dc2.consul.".into()),
            (1, 10, 8002, "0a010002.addr.dc2.consul.".into()),
            (1, 10, 8003, "n3.node.dc2.consul.".into()),
        ]
    );
    let node = decode(&answer(
        &udp("n3.node.dc2.consul.", RecordType::A),
        CatalogData::Node(Some(web(3, Status::Passing).node)),
        &c,
        &mut rng(),
    ));
    assert_eq!(a_records(&node), ips(&["10.0.0.3"]), "a node without a WAN address shows its address");
}

#[test]
fn translate_wan_addrs_off_or_local_shows_lan_addresses() {
    let instances = vec![web_wan(1)];
    let cases = [
        (cfg(), "web.service.dc2.consul.", "n1.node.dc2.consul."),
        (translating(), "web.service.consul.", "n1.node.dc1.consul."),
        (translating(), "web.service.DC1.consul.", "n1.node.dc1.consul."),
    ];
    for (c, name, target) in cases {
        let a = answer_full(&udp(name, RecordType::A), instances.clone(), &c);
        assert_eq!(a_records(&a), ips(&["10.0.0.1"]), "{name}");
        let srv = answer_full(&udp(name, RecordType::SRV), instances.clone(), &c);
        assert_eq!(srv_records(&srv), vec![(1, 10, 8001, target.to_string())], "{name}");
        assert_eq!(additional_a(&srv), vec![(target.to_string(), "10.0.0.1".to_string())]);
        let node_name = format!("n1.node.{}", name.trim_start_matches("web.service."));
        let node =
            decode(&answer(&udp(&node_name, RecordType::A), CatalogData::Node(Some(web_wan(1).node)), &c, &mut rng()));
        assert_eq!(a_records(&node), ips(&["10.0.0.1"]), "{node_name}");
    }
}

#[test]
fn unknown_datacenter_is_an_authoritative_nxdomain_with_soa() {
    let req = udp("web.service.dc9.consul.", RecordType::A);
    let msg = decode(&failure(&req, Failure::UnknownDatacenter, &cfg()));
    assert_eq!((msg.metadata.id, msg.metadata.response_code), (0x1234, ResponseCode::NXDomain));
    assert!(msg.metadata.authoritative);
    assert!(msg.answers.is_empty());
    assert_eq!(msg.queries.len(), 1);
    let RData::SOA(soa) = &msg.authorities[0].data else { panic!("an SOA in authority") };
    assert_eq!(soa.mname.to_ascii(), "ns.consul.");
}

// ---- nodes, addresses, the rest ----

#[test]
fn node_lookup_answers_address_and_meta_txt() {
    let mut n = node("db1", "10.1.2.3");
    n.meta.insert("rack".into(), "r7".into());
    n.meta.insert("rfc1035-note".into(), "hello".into());
    let c = DnsConfig { node_ttl_s: 10, ..cfg() };
    let a =
        decode(&answer(&udp("db1.node.consul.", RecordType::A), CatalogData::Node(Some(n.clone())), &c, &mut rng()));
    assert_eq!(a_records(&a), ["10.1.2.3".parse::<Ipv4Addr>().unwrap()]);
    assert_eq!(a.answers[0].ttl, 10);
    let txt = decode(&answer(&udp("db1.node.consul.", RecordType::TXT), CatalogData::Node(Some(n)), &c, &mut rng()));
    let texts: Vec<String> = txt.answers.iter().map(|r| r.data.to_string()).collect();
    assert_eq!(texts.len(), 2);
    assert!(texts[0].contains("rack=r7") && texts[1].contains("hello") && !texts[1].contains("rfc1035"), "{texts:?}");
    let missing = decode(&answer(&udp("db9.node.consul.", RecordType::A), CatalogData::Node(None), &c, &mut rng()));
    assert_eq!(missing.metadata.response_code, ResponseCode::NXDomain);
}

#[test]
fn addr_lookup_answers_the_spelled_address() {
    let a = decode(&answer(&udp("0a000001.addr.consul.", RecordType::A), CatalogData::Nothing, &cfg(), &mut rng()));
    assert_eq!(a_records(&a), ["10.0.0.1".parse::<Ipv4Addr>().unwrap()]);
    let six = decode(&answer(
        &udp("fd000000000000000000000000000001.addr.consul.", RecordType::AAAA),
        CatalogData::Nothing,
        &cfg(),
        &mut rng(),
    ));
    assert!(
        matches!(six.answers[0].data, RData::AAAA(aaaa) if aaaa.0 == "fd00::1".parse::<std::net::Ipv6Addr>().unwrap())
    );
}

#[test]
fn prepared_queries_and_unknown_names_are_nxdomain() {
    for name in ["geo.query.consul.", "foo.consul."] {
        let msg = decode(&answer(&udp(name, RecordType::A), CatalogData::Nothing, &cfg(), &mut rng()));
        assert_eq!(msg.metadata.response_code, ResponseCode::NXDomain, "{name}");
        assert!(matches!(msg.authorities[0].data, RData::SOA(_)));
    }
}

#[test]
fn outside_the_domain_is_refused_and_relay_sets_id_and_ra() {
    let req = udp("example.com.", RecordType::A);
    let msg = decode(&refused(&req, &cfg()));
    assert_eq!((msg.metadata.id, msg.metadata.response_code), (0x1234, ResponseCode::Refused));
    let mut upstream = query_packet(0x9999, "example.com.", RecordType::A, None);
    upstream[2] |= 0x80;
    let relayed = decode(&relay(&req, &upstream).expect("a response relays"));
    assert_eq!(relayed.metadata.id, 0x1234);
    assert!(relayed.metadata.recursion_available);
    assert_eq!(relay(&req, &query_packet(1, "example.com.", RecordType::A, None)), None, "a query is no answer");
}

#[test]
fn servfail_keeps_the_question() {
    let req = udp("web.service.consul.", RecordType::A);
    let msg = decode(&failure(&req, Failure::ServFail, &cfg()));
    assert_eq!(msg.metadata.response_code, ResponseCode::ServFail);
    assert_eq!(msg.queries.len(), 1);
}

// ---- sizes ----

fn many(n: u8) -> Vec<ServiceHealth> {
    (1..=n).map(|i| web(i, Status::Passing)).collect()
}

#[test]
fn udp_without_edns_fits_512_and_sets_tc() {
    let req = udp("web.service.consul.", RecordType::A);
    let packet = answer(&req, CatalogData::Services(endpoints(&many(60))), &cfg(), &mut rng());
    assert!(packet.len() <= 512, "{}", packet.len());
    let msg = decode(&packet);
    assert!(msg.metadata.truncation && !msg.answers.is_empty() && msg.answers.len() < 60);
    assert!(msg.edns.is_none());
}

#[test]
fn edns_size_is_honoured_and_opt_echoed() {
    let c = cfg();
    let req = ask("web.service.consul.", RecordType::A, Transport::Udp, Some(4096), &c);
    let msg = decode(&answer(&req, CatalogData::Services(endpoints(&many(60))), &c, &mut rng()));
    assert!(!msg.metadata.truncation && msg.answers.len() == 60 && msg.edns.is_some());
    let small = ask("web.service.consul.", RecordType::A, Transport::Udp, Some(100), &c);
    assert_eq!(small.size_max(), 512, "an advertisement below 512 means 512");
    let huge = ask("web.service.consul.", RecordType::A, Transport::Udp, Some(65_000), &c);
    assert_eq!(huge.size_max(), UDP_EDNS_SIZE_MAX);
}

#[test]
fn tcp_takes_everything() {
    let c = cfg();
    let req = ask("web.service.consul.", RecordType::A, Transport::Tcp, None, &c);
    let msg = decode(&answer(&req, CatalogData::Services(endpoints(&many(200))), &c, &mut rng()));
    assert_eq!((msg.answers.len(), msg.metadata.truncation), (200, false));
}

#[test]
fn srv_drops_additionals_before_answers() {
    let req = udp("web.service.consul.", RecordType::SRV);
    let msg = answer_services(&req, many(12), &cfg());
    assert!(msg.metadata.truncation);
    // Answers all stay (12 SRVs fit in 512 bytes with compression); additionals do not.
    assert_eq!(msg.answers.len(), 12);
    assert!(msg.additionals.len() < 12);
}

#[test]
fn udp_answer_limit_cuts_and_sets_tc() {
    let c = DnsConfig { udp_answer_limit: Some(3), ..cfg() };
    let req = ask("web.service.consul.", RecordType::A, Transport::Udp, None, &c);
    let msg = answer_services(&req, many(5), &c);
    assert_eq!((msg.answers.len(), msg.metadata.truncation), (3, true));
    let tcp = ask("web.service.consul.", RecordType::A, Transport::Tcp, None, &c);
    assert_eq!(answer_services(&tcp, many(5), &c).answers.len(), 5);
}

// ---- properties ----

/// The name forms, with random labels, tags, datacenters and cases.
fn name_strategy() -> impl Strategy<Value = String> {
    let label = "[a-zA-Z0-9][a-zA-Z0-9-]{0,19}";
    prop_oneof![
        (label, proptest::option::of(label)).prop_map(|(s, t)| match t {
            Some(t) => format!("{t}.{s}.service.consul."),
            None => format!("{s}.service.consul."),
        }),
        (label, label).prop_map(|(s, t)| format!("_{s}._{t}.service.consul.")),
        (label, label).prop_map(|(s, dc)| format!("{s}.service.{dc}.consul.")),
        label.prop_map(|n| format!("{n}.node.CONSUL.")),
        any::<u32>().prop_map(|ip| format!("{ip:08x}.addr.consul.")),
        any::<u128>().prop_map(|ip| format!("{ip:032x}.addr.dc1.consul.")),
        label.prop_map(|q| format!("{q}.query.consul.")),
        label.prop_map(|x| format!("{x}.example.org.")),
    ]
}

fn qtype_strategy() -> impl Strategy<Value = RecordType> {
    prop_oneof![
        Just(RecordType::A),
        Just(RecordType::AAAA),
        Just(RecordType::SRV),
        Just(RecordType::TXT),
        Just(RecordType::ANY),
        Just(RecordType::MX),
    ]
}

/// Instances with random health, address forms and meta.
fn instances_strategy() -> impl Strategy<Value = Vec<ServiceHealth>> {
    let one = (any::<u8>(), 0u8..3, 0u8..4, "[a-z]{0,300}").prop_map(|(i, health, addr, meta)| {
        let status = [Status::Passing, Status::Warning, Status::Critical][usize::from(health)];
        let mut h = web(i, status);
        h.service.address = match addr {
            0 => String::new(),
            1 => format!("fd00::{i:x}"),
            2 => format!("host{i}.example.com"),
            _ => format!("172.16.0.{i}"),
        };
        h.node.meta.insert("long".into(), meta);
        if i % 2 == 0 {
            h.node.tagged_addresses.insert("wan".into(), format!("198.51.100.{i}"));
        }
        if i % 3 == 0 {
            h.service
                .tagged_addresses
                .insert("wan".into(), ServiceAddress { address: format!("fd01::{i:x}"), port: 443 });
        }
        h
    });
    proptest::collection::vec(one, 0..120)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600), tcp in any::<bool>()) {
        let transport = if tcp { Transport::Tcp } else { Transport::Udp };
        match parse(&bytes, transport, &cfg()) {
            Ok(req) => {
                let packet = answer(&req, CatalogData::Nothing, &cfg(), &mut rng());
                prop_assert!(packet.len() <= req.size_max());
            }
            Err(Reject::Answer { packet, .. }) => prop_assert!(Message::from_vec(&packet).is_ok()),
            Err(Reject::Drop { .. }) => {}
        }
    }

    #[test]
    fn mutated_queries_never_panic(
        name in name_strategy(),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
    ) {
        let mut packet = query_packet(1, &name, RecordType::A, Some(1232));
        for (at, byte) in flips {
            let len = packet.len();
            packet[at % len] = byte;
        }
        let _ = parse(&packet, Transport::Udp, &cfg());
        let cut = packet.len() / 2;
        let _ = parse(&packet[..cut], Transport::Udp, &cfg());
    }

    #[test]
    fn well_formed_queries_round_trip_within_the_limit(
        name in name_strategy(),
        qtype in qtype_strategy(),
        edns in proptest::option::of(0u16..=u16::MAX),
        tcp in any::<bool>(),
        instances in instances_strategy(),
        seed in any::<u64>(),
        translate in any::<bool>(),
    ) {
        let c = DnsConfig { translate_wan_addrs: translate, ..cfg() };
        let transport = if tcp { Transport::Tcp } else { Transport::Udp };
        let req = parse(&query_packet(42, &name, qtype, edns), transport, &c).expect("well-formed queries parse");
        let data = match req.catalog_read(&c) {
            Some(CatalogRead::ServiceHealth { wan_addresses: false, .. }) => {
                CatalogData::Services(endpoints(&instances))
            }
            Some(CatalogRead::ServiceHealth { wan_addresses: true, .. }) => CatalogData::ServicesFull(instances),
            Some(CatalogRead::Node { .. }) => CatalogData::Node(instances.into_iter().next().map(|h| h.node)),
            Some(CatalogRead::PreparedQuery { .. }) => CatalogData::Prepared(Some(PreparedAnswer {
                service: "web".into(),
                instances,
                datacenter: "dc2".into(),
                ttl_s: None,
            })),
            None => CatalogData::Nothing,
        };
        let packet = answer(&req, data, &c, &mut ChaCha8Rng::seed_from_u64(seed));
        prop_assert!(packet.len() <= req.size_max(), "{} > {}", packet.len(), req.size_max());
        let msg = Message::from_vec(&packet).expect("hickory parses our answer back");
        prop_assert_eq!(msg.metadata.id, 42);
        prop_assert_eq!(msg.queries.len(), 1);
        prop_assert_eq!(msg.edns.is_some(), edns.is_some());
        if req.lookup == Lookup::OutsideDomain {
            prop_assert_eq!(msg.metadata.response_code, ResponseCode::Refused);
        } else {
            prop_assert!(msg.metadata.authoritative);
        }
    }
}
