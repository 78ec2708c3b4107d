//! The DNS interface end to end: a real agent, queried with `dig` (dnsutils) over UDP and TCP.

use std::net::UdpSocket;
use std::process::Command;
use std::time::Duration;

use legate_tests::{wait_for, wait_until, Agent};
use serde_json::json;

/// How long a registration may take to show in DNS answers (anti-entropy sync included).
const SYNC_DEADLINE: Duration = Duration::from_secs(10);

/// How long the test's own sockets wait for an answer.
const SOCKET_TIMEOUT: Duration = Duration::from_secs(3);

/// One record of a dig section: owner, type, data.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rr {
    name: String,
    rtype: String,
    data: String,
}

/// What dig printed, parsed.
#[derive(Debug, Default)]
struct Dig {
    status: String,
    flags: Vec<String>,
    answer: Vec<Rr>,
    authority: Vec<Rr>,
    additional: Vec<Rr>,
    /// "UDP" or "TCP", from the `;; SERVER:` line.
    transport: String,
    raw: String,
}

impl Dig {
    fn of_type(&self, rtype: &str) -> Vec<&Rr> {
        self.answer.iter().filter(|r| r.rtype == rtype).collect()
    }

    fn datas(&self, rtype: &str) -> Vec<String> {
        let mut v: Vec<String> = self.of_type(rtype).into_iter().map(|r| r.data.clone()).collect();
        v.sort();
        v
    }
}

/// Runs `dig @127.0.0.1 -p <port> <args…>` with short timeouts and parses its output.
fn dig(port: u16, args: &[&str]) -> Dig {
    let out = Command::new("dig")
        .args(["@127.0.0.1", "-p", &port.to_string(), "+time=2", "+tries=1"])
        .args(args)
        .output()
        .expect("dig runs (install dnsutils)");
    parse_dig(&String::from_utf8_lossy(&out.stdout))
}

fn parse_dig(text: &str) -> Dig {
    let mut d = Dig { raw: text.to_string(), ..Dig::default() };
    let mut section = "";
    for line in text.lines() {
        if let Some(rest) = line.split("status: ").nth(1) {
            d.status = rest.split(',').next().unwrap_or("").to_string();
        } else if let Some(rest) = line.strip_prefix(";; flags: ") {
            d.flags = rest.split(';').next().unwrap_or("").split_whitespace().map(str::to_string).collect();
        } else if let Some(rest) = line.strip_prefix(";; SERVER: ") {
            d.transport = rest.rsplit('(').next().unwrap_or("").trim_end_matches(')').to_string();
        } else if line.starts_with(";; ") && line.ends_with(" SECTION:") {
            section = line;
        } else if line.trim().is_empty() {
            section = "";
        } else if !line.starts_with(';') && !section.is_empty() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 5 {
                continue;
            }
            let rr = Rr { name: fields[0].to_lowercase(), rtype: fields[3].to_string(), data: fields[4..].join(" ") };
            match section {
                ";; ANSWER SECTION:" => d.answer.push(rr),
                ";; AUTHORITY SECTION:" => d.authority.push(rr),
                ";; ADDITIONAL SECTION:" => d.additional.push(rr),
                _ => {}
            }
        }
    }
    d
}

fn put_ok(agent: &Agent, path: &str, body: &str) {
    let r = agent.put(path, body);
    assert_eq!(r.status, 200, "PUT {path}: {}", r.text());
}

/// Registers `web1..web3` on the agent at 127.0.0.11-13 (web1 tagged v1, the others v2),
/// each with a TTL check, and passes the checks.
fn register_web(agent: &Agent) {
    for i in 1..=3 {
        let tag = if i == 1 { "v1" } else { "v2" };
        let body = json!({
            "Name": "web", "ID": format!("web{i}"), "Port": 8000 + i, "Address": format!("127.0.0.1{i}"),
            "Tags": [tag], "Check": {"TTL": "60s"},
        });
        put_ok(agent, "/v1/agent/service/register", &body.to_string());
        put_ok(agent, &format!("/v1/agent/check/pass/service:web{i}"), "");
    }
}

fn a_count(port: u16, name: &str) -> usize {
    dig(port, &[name, "A"]).of_type("A").len()
}

#[test]
fn service_node_and_addr_lookups() {
    // Set up: three healthy web instances and an external node with meta.
    let agent = Agent::start_dev(&[]);
    let port = agent.dns_port;
    register_web(&agent);
    let ext = json!({"Node": "ext1", "Address": "10.9.8.7", "NodeMeta": {"rack": "r1", "rfc1035-note": "hi there"}});
    put_ok(&agent, "/v1/catalog/register", &ext.to_string());
    assert!(wait_until(SYNC_DEADLINE, || a_count(port, "web.service.consul") == 3), "three A records for web");

    // A: one record per instance, authoritative, TTL 0.
    let a = dig(port, &["web.service.consul", "A"]);
    assert_eq!(
        (a.status.as_str(), a.datas("A")),
        ("NOERROR", vec!["127.0.0.11".into(), "127.0.0.12".into(), "127.0.0.13".into()])
    );
    assert!(a.flags.contains(&"aa".to_string()) && !a.flags.contains(&"tc".to_string()), "{}", a.raw);

    // Case does not matter; the tag form filters.
    assert_eq!(dig(port, &["WEB.Service.CONSUL", "A"]).of_type("A").len(), 3);
    assert_eq!(dig(port, &["v1.web.service.consul"]).datas("A"), vec!["127.0.0.11".to_string()]);
    assert_eq!(dig(port, &["v2.web.service.dc1.consul"]).of_type("A").len(), 2);

    // RFC 2782 SRV: priority 1, weight 1, the port, a target resolved in the additional section.
    let srv = dig(port, &["_web._v1.service.consul", "SRV"]);
    assert_eq!(srv.of_type("SRV").len(), 1, "{}", srv.raw);
    let fields: Vec<&str> = srv.of_type("SRV")[0].data.split(' ').collect();
    assert_eq!(&fields[..3], ["1", "1", "8001"]);
    let target = fields[3].to_lowercase();
    assert!(srv.additional.iter().any(|r| r.name == target && r.rtype == "A" && r.data == "127.0.0.11"), "{}", srv.raw);
    let all = dig(port, &["_web._tcp.service.consul", "SRV"]);
    assert_eq!((all.of_type("SRV").len(), all.additional.iter().filter(|r| r.rtype == "A").count()), (3, 3));

    // Over TCP.
    let tcp = dig(port, &["+tcp", "web.service.consul"]);
    assert_eq!((tcp.transport.as_str(), tcp.of_type("A").len()), ("TCP", 3), "{}", tcp.raw);

    // A known name without that type: NOERROR, no answer, the SOA.
    let aaaa = dig(port, &["web.service.consul", "AAAA"]);
    assert_eq!((aaaa.status.as_str(), aaaa.answer.len()), ("NOERROR", 0));
    assert_eq!(aaaa.authority.first().map(|r| r.rtype.as_str()), Some("SOA"));

    // An unknown name: NXDOMAIN with the SOA in authority.
    let nx = dig(port, &["nope.service.consul"]);
    assert_eq!(nx.status, "NXDOMAIN");
    let soa = nx.authority.first().unwrap_or_else(|| panic!("an SOA: {}", nx.raw));
    assert_eq!(soa.rtype, "SOA");
    assert!(soa.data.starts_with("ns.consul. hostmaster.consul."), "{}", soa.data);

    // A node: its address, and its meta as TXT.
    let node = dig(port, &["ext1.node.consul"]);
    assert_eq!(node.datas("A"), vec!["10.9.8.7".to_string()]);
    let txt = dig(port, &["ext1.node.dc1.consul", "TXT"]);
    assert_eq!(txt.datas("TXT"), vec!["\"hi there\"".to_string(), "\"rack=r1\"".to_string()], "{}", txt.raw);

    // An address spelled in hex.
    assert_eq!(dig(port, &["7f00000b.addr.consul"]).datas("A"), vec!["127.0.0.11".to_string()]);

    // Failing one instance's check takes it out of the answers.
    put_ok(&agent, "/v1/agent/check/fail/service:web2", "");
    assert!(wait_until(SYNC_DEADLINE, || a_count(port, "web.service.consul") == 2), "a critical instance is omitted");
    assert_eq!(dig(port, &["web.service.consul"]).datas("A"), vec!["127.0.0.11".to_string(), "127.0.0.13".to_string()]);

    // A datacenter no server knows: NXDOMAIN with the SOA, authoritative, as Consul answers
    // `No path to datacenter` (names with this agent's own datacenter are served, above).
    for name in ["web.service.dc9.consul", "ext1.node.DC9.consul"] {
        let unknown_dc = dig(port, &[name]);
        assert_eq!(unknown_dc.status, "NXDOMAIN", "{}", unknown_dc.raw);
        assert!(unknown_dc.flags.contains(&"aa".to_string()), "{}", unknown_dc.raw);
        assert_eq!(unknown_dc.authority.first().map(|r| r.rtype.as_str()), Some("SOA"), "{}", unknown_dc.raw);
    }
    // An address name needs no datacenter to answer it.
    assert_eq!(dig(port, &["7f00000b.addr.dc9.consul"]).datas("A"), vec!["127.0.0.11".to_string()]);

    // A name outside the domain with no recursor is refused.
    assert_eq!(dig(port, &["example.com"]).status, "REFUSED");
}

#[test]
fn forty_instances_truncate_over_udp_and_come_whole_over_tcp() {
    // Set up: 40 instances of `big` on 40 external nodes.
    let agent = Agent::start_dev(&[]);
    let port = agent.dns_port;
    for i in 1..=40 {
        let body = json!({
            "Node": format!("big{i}"), "Address": format!("10.0.1.{i}"),
            "Service": {"Service": "big", "Port": 9000},
        });
        put_ok(&agent, "/v1/catalog/register", &body.to_string());
    }

    // UDP without EDNS: what fits in 512 bytes, and TC.
    let udp = dig(port, &["+noedns", "+ignore", "big.service.consul"]);
    assert!(udp.flags.contains(&"tc".to_string()), "{}", udp.raw);
    let kept = udp.of_type("A").len();
    assert!(kept > 0 && kept < 40, "{}", udp.raw);

    // dig sees TC and retries over TCP, which carries all 40.
    let retried = dig(port, &["+noedns", "big.service.consul"]);
    assert_eq!((retried.transport.as_str(), retried.of_type("A").len()), ("TCP", 40), "{}", retried.raw);
    assert!(!retried.flags.contains(&"tc".to_string()));

    // With EDNS the advertised 4096 bytes hold them all over UDP.
    let edns = dig(port, &["+bufsize=4096", "+ignore", "big.service.consul"]);
    assert_eq!((edns.transport.as_str(), edns.of_type("A").len()), ("UDP", 40), "{}", edns.raw);
}

/// A one-answer upstream resolver: every query gets `192.0.2.7` for its name.
fn spawn_fake_recursor() -> u16 {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind the fake recursor");
    let port = socket.local_addr().expect("local addr").port();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while let Ok((len, peer)) = socket.recv_from(&mut buf) {
            if let Some(reply) = fixed_answer(&buf[..len]) {
                let _ = socket.send_to(&reply, peer);
            }
        }
    });
    port
}

/// The query's header and question, flagged as a response, with one A record pointing back at
/// the question's name (compression pointer to offset 12).
fn fixed_answer(query: &[u8]) -> Option<Vec<u8>> {
    let mut at = 12;
    while *query.get(at)? != 0 {
        at += 1 + usize::from(query[at]);
    }
    let question_end = at + 1 + 4;
    let mut out = query.get(..question_end)?.to_vec();
    out[2] |= 0x80; // QR
    out[3] = 0; // No RA from the upstream: the relay must set it.
    out[6..12].copy_from_slice(&[0, 1, 0, 0, 0, 0]);
    out.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 7]);
    Some(out)
}

#[test]
fn custom_domain_and_recursor() {
    // Set up: an agent serving `legate.test.` that forwards the rest to a fake recursor.
    let upstream = spawn_fake_recursor();
    let recursor = format!("127.0.0.1:{upstream}");
    let agent = Agent::start_dev(&["-domain", "legate.test", "-recursor", &recursor]);
    let port = agent.dns_port;

    // Our own node answers under the custom domain.
    let own = format!("{}.node.legate.test", agent.node);
    let found = wait_for(SYNC_DEADLINE, || {
        let d = dig(port, &[&own]);
        (!d.of_type("A").is_empty()).then_some(d)
    });
    let found = found.expect("the agent's node resolves under the custom domain");
    assert_eq!(found.datas("A"), vec!["127.0.0.1".to_string()]);
    let soa = dig(port, &["nothing.legate.test"]);
    assert_eq!(soa.status, "NXDOMAIN");
    assert!(soa.authority[0].data.starts_with("ns.legate.test. hostmaster.legate.test."), "{}", soa.raw);

    // Everything else, `consul.` included now, goes to the recursor: its answer, with RA.
    for name in ["www.example.com", "web.service.consul"] {
        let relayed = dig(port, &[name]);
        assert_eq!(
            (relayed.status.as_str(), relayed.datas("A")),
            ("NOERROR", vec!["192.0.2.7".to_string()]),
            "{}",
            relayed.raw
        );
        assert!(relayed.flags.contains(&"ra".to_string()), "{}", relayed.raw);
    }
}

#[test]
fn garbage_does_not_stop_the_server() {
    let agent = Agent::start_dev(&[]);
    let port = agent.dns_port;
    let own = format!("{}.node.consul", agent.node);
    assert!(wait_until(SYNC_DEADLINE, || a_count(port, &own) == 1), "the agent's node resolves");

    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket.set_read_timeout(Some(SOCKET_TIMEOUT)).expect("timeout");
    let server = format!("127.0.0.1:{port}");
    // Too short to answer, random bytes, a response packet: dropped or FORMERR, never a crash.
    for junk in [
        &[0xffu8][..],
        &[0u8; 11][..],
        &[0xde, 0xad, 0xbe, 0xef, 0, 1, 0, 0, 0, 0, 0, 0, 0x3f, 0x41][..],
        &[0x55; 700][..],
    ] {
        socket.send_to(junk, &server).expect("send junk");
    }
    // A query cut in the middle of its question: FORMERR with its id.
    let mut cut = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    cut.extend_from_slice(b"\x03web\x07serv");
    socket.send_to(&cut, &server).expect("send a cut query");
    let formerr = wait_for(SOCKET_TIMEOUT, || {
        let mut buf = [0u8; 512];
        let (len, _) = socket.recv_from(&mut buf).ok()?;
        (len >= 12 && buf[..2] == [0x12, 0x34]).then(|| buf[3] & 0x0f)
    });
    assert_eq!(formerr, Some(1), "a cut query gets FORMERR");

    // The server still answers, over both transports, and counted what it refused.
    assert_eq!(a_count(port, &own), 1);
    assert_eq!(dig(port, &["+tcp", &own]).of_type("A").len(), 1);
    let metrics = agent.get("/v1/agent/metrics").json();
    let malformed = metrics["Gauges"]
        .as_array()
        .and_then(|g| g.iter().find(|g| g["Name"] == "legate.dns.malformed"))
        .and_then(|g| g["Value"].as_u64());
    assert!(malformed.is_some_and(|n| n >= 4), "malformed packets counted: {metrics}");
}
