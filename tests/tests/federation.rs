//! Two datacenters on loopback, federated over WAN gossip as the README says (`legate join
//! -wan`): requests with `?dc=` reach the other datacenter (from its servers directly, from a
//! client agent through its own servers), each datacenter keeps its own KV and sessions, an
//! unknown datacenter is `No path to datacenter`, and a lost datacenter leaves the other one
//! fully working.

use std::time::Duration;

use legate_tests::cluster::{Cluster, Proc};
use legate_tests::{dig_short, free_port, run_cli, wait_for, wait_until};
use serde_json::{json, Value};

const FEDERATE_TIMEOUT: Duration = Duration::from_secs(30);

/// Registers service `web` at `address` on `agent` with a TTL check, passing.
fn register_web(agent: &Proc, address: &str) {
    let body = json!({"Name": "web", "Address": address, "Port": 80, "Check": {"TTL": "10m"}});
    assert_eq!(agent.put("/v1/agent/service/register", body.to_string()).status, 200);
    set_web(agent, "pass");
}

/// `pass`, `warn` or `fail` on the web instance's TTL check.
fn set_web(agent: &Proc, verb: &str) {
    let r = agent.put(&format!("/v1/agent/check/{verb}/service:web"), "");
    assert_eq!(r.status, 200, "{verb}: {}", r.text());
}

fn post_json(agent: &Proc, path: &str, body: &Value) -> Value {
    let r = agent.try_request("POST", path, Some(body.to_string().as_bytes())).expect("the agent answers");
    assert_eq!(r.status, 200, "POST {path}: {}", r.text());
    r.json()
}

/// `dig +short SRV`: the answer lines.
fn dig_srv(port: u16, name: &str) -> Vec<String> {
    let out = std::process::Command::new("dig")
        .args(["@127.0.0.1", "-p", &port.to_string(), "+time=2", "+tries=1", "+short", name, "SRV"])
        .output()
        .expect("run dig");
    String::from_utf8_lossy(&out.stdout).lines().map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect()
}

fn set(items: &[&str]) -> std::collections::BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// One server per datacenter, a client agent in dc1, and dc1 federated with dc2 from the CLI.
struct TwoDcs {
    dc1: Cluster,
    dc2: Cluster,
    /// The client agent's DNS port.
    dns_port: u16,
}

impl TwoDcs {
    fn start() -> TwoDcs {
        let mut dc1 = Cluster::start_with(1, &["-datacenter", "dc1"]);
        let dc2 = Cluster::start_with(1, &["-datacenter", "dc2"]);
        let dns_port = free_port();
        dc1.start_client_with(&[0], &["-dns-port", &dns_port.to_string()]);
        let (code, out, err) = run_cli(&["join", "-wan", &dc2.servers[0].wan_addr()], &dc1.servers[0].http_addr());
        assert_eq!(code, 0, "legate join -wan: {out} {err}");
        let both = TwoDcs { dc1, dc2, dns_port };
        for (agent, expected) in
            [(both.server1(), ["dc1", "dc2"]), (both.client(), ["dc1", "dc2"]), (both.server2(), ["dc2", "dc1"])]
        {
            let seen = wait_until(FEDERATE_TIMEOUT, || agent.get("/v1/catalog/datacenters").json() == json!(expected));
            assert!(seen, "{} never listed {expected:?}: {}", agent.name, agent.get("/v1/catalog/datacenters").text());
        }
        both
    }

    fn server1(&self) -> &Proc {
        &self.dc1.servers[0]
    }

    fn client(&self) -> &Proc {
        &self.dc1.clients[0]
    }

    fn server2(&self) -> &Proc {
        &self.dc2.servers[0]
    }
}

fn raw(agent: &Proc, path: &str) -> (u16, String) {
    let r = agent.get(path);
    (r.status, r.text())
}

#[test]
fn two_datacenters_federate_and_each_keeps_its_own_state() {
    let dcs = TwoDcs::start();
    let (s1, c, s2) = (dcs.server1(), dcs.client(), dcs.server2());

    // Both servers are in the WAN pool, as <node>.<dc>.
    let (code, members, err) = run_cli(&["members", "-wan"], &s1.http_addr());
    assert_eq!(code, 0, "{err}");
    assert!(members.contains("s1.dc1") && members.contains("s1.dc2"), "{members}");

    // A write from dc1's client agent for dc2 lands in dc2's KV only.
    assert_eq!(c.put("/v1/kv/app/config?dc=dc2", "for-dc2").text(), "true");
    assert_eq!(raw(s2, "/v1/kv/app/config?raw"), (200, "for-dc2".into()));
    assert_eq!(raw(s1, "/v1/kv/app/config?raw").0, 404, "dc1's KV does not have dc2's key");
    assert_eq!(c.put("/v1/kv/app/config", "for-dc1").text(), "true");
    assert_eq!(raw(s2, "/v1/kv/app/config?raw"), (200, "for-dc2".into()), "and dc1's write stays in dc1");

    // Reads for dc2, from a server and through a client agent, carry dc2's headers.
    for agent in [s1, c] {
        let r = agent.get("/v1/kv/app/config?dc=dc2");
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()[0]["Value"], json!("Zm9yLWRjMg=="), "base64 of for-dc2");
        assert_eq!(r.index(), s2.get("/v1/kv/app/config").index(), "the index is dc2's");
        assert_eq!(r.header("X-Consul-KnownLeader"), Some("true"));
        assert!(r.header("X-Consul-LastContact").is_some());
    }
    // Consistency modes travel with the request.
    let stale = c.get("/v1/kv/app/config?dc=dc2&stale");
    assert_eq!(stale.header("X-Consul-Effective-Consistency"), Some("stale"));
    let consistent = c.get("/v1/kv/app/config?dc=dc2&consistent");
    assert_eq!(consistent.header("X-Consul-Effective-Consistency"), Some("consistent"));

    // A blocking query for dc2 waits in dc2 and answers dc2's change.
    let index = c.get("/v1/kv/app/config?dc=dc2").index();
    let url = c.url(&format!("/v1/kv/app/config?dc=dc2&index={index}&wait=30s"));
    let blocked =
        std::thread::spawn(move || legate_tests::Http::new(Duration::from_secs(60)).request("GET", &url, None));
    std::thread::sleep(Duration::from_millis(500));
    assert!(!blocked.is_finished(), "the blocking query waits for a change in dc2");
    assert_eq!(s2.put("/v1/kv/app/config", "changed-in-dc2").text(), "true");
    let answer = blocked.join().expect("the blocking thread").expect("the blocking query answers");
    assert!(answer.index() > index, "answered with dc2's new index");
    assert_eq!(answer.json()[0]["Value"], json!("Y2hhbmdlZC1pbi1kYzI="), "base64 of changed-in-dc2");

    // The catalog: a registration for dc2 (body Datacenter) shows in dc2's catalog, not dc1's.
    let registration = json!({
        "Datacenter": "dc2", "Node": "ext-db", "Address": "10.2.0.9",
        "Service": {"Service": "db", "Port": 5432}
    });
    assert_eq!(c.put("/v1/catalog/register", registration.to_string()).text(), "true");
    let db = c.get("/v1/catalog/service/db?dc=dc2").json();
    assert_eq!(db[0]["Datacenter"], json!("dc2"), "{db}");
    assert_eq!(db[0]["ServiceAddress"].as_str().unwrap_or_default(), "");
    assert_eq!(db[0]["Address"], json!("10.2.0.9"));
    assert_eq!(s1.get("/v1/catalog/service/db").json(), json!([]), "dc1 has no db");
    let health = c.get("/v1/health/service/db?dc=dc2").json();
    assert_eq!(health[0]["Node"]["Node"], json!("ext-db"), "{health}");

    // Sessions are per datacenter too.
    let session = c.put("/v1/session/create?dc=dc2", r#"{"Node":"s1","TTL":"30s"}"#);
    assert_eq!(session.status, 200, "{}", session.text());
    let id = session.json()["ID"].as_str().expect("a session ID").to_string();
    assert_eq!(s2.get(&format!("/v1/session/info/{id}")).json()[0]["ID"], json!(id));
    assert_eq!(s1.get(&format!("/v1/session/info/{id}")).json(), json!([]), "dc1 has no such session");
    let acquired = c.put(&format!("/v1/kv/app/leader?dc=dc2&acquire={id}"), "me");
    assert_eq!(acquired.text(), "true", "a lock in dc2 with dc2's session");

    // Status and Raft configuration of the other datacenter.
    assert_eq!(c.get("/v1/status/leader?dc=dc2").json(), json!(s2.rpc_addr()));

    // The CLI's -datacenter flag goes the same way.
    let (code, out, err) = run_cli(&["kv", "get", "-datacenter", "dc2", "app/config"], &c.http_addr());
    assert_eq!((code, out.trim()), (0, "changed-in-dc2"), "{err}");
}

#[test]
fn an_unknown_datacenter_has_no_path() {
    let dcs = TwoDcs::start();
    for agent in [dcs.server1(), dcs.client()] {
        for (method, path) in [
            ("GET", "/v1/kv/x?dc=dc9"),
            ("PUT", "/v1/kv/x?dc=dc9"),
            ("GET", "/v1/catalog/nodes?dc=dc9"),
            ("GET", "/v1/health/service/web?dc=dc9"),
            ("PUT", "/v1/session/create?dc=dc9"),
        ] {
            let r = agent.try_request(method, path, Some(b"{}")).expect("the agent answers");
            assert_eq!(
                (r.status, r.text()),
                (500, "No path to datacenter".to_string()),
                "{} {method} {path}",
                agent.name
            );
        }
    }
    // Datacenter names match whatever their case (Consul lowercases them).
    assert_eq!(dcs.client().get("/v1/kv/x?dc=DC2").status, 404, "dc2's KV answers: no such key");
}

#[test]
fn a_lost_datacenter_leaves_the_other_fully_working_and_comes_back() {
    let mut dcs = TwoDcs::start();
    assert_eq!(dcs.client().put("/v1/kv/before?dc=dc2", "1").text(), "true");
    dcs.dc2.servers[0].kill9();

    // dc1 serves its own reads and writes as before.
    let (s1, c) = (dcs.server1(), dcs.client());
    for (i, agent) in [s1, c].into_iter().enumerate() {
        assert_eq!(agent.put(&format!("/v1/kv/local/{i}"), "v").text(), "true");
        assert_eq!(raw(agent, &format!("/v1/kv/local/{i}?raw")), (200, "v".into()));
        assert_eq!(agent.get("/v1/catalog/nodes").status, 200);
    }

    // Requests for dc2 fail with a reason, without hanging: first because its server does not
    // answer, then (once the WAN pool declares it failed) because no path is left.
    for agent in [s1, c] {
        let r = agent.get("/v1/kv/before?dc=dc2");
        assert_eq!(r.status, 500, "{}", r.text());
        let text = r.text();
        assert!(text.contains("dc2") || text == "No path to datacenter", "the error says why: {text}");
    }
    let gone = wait_until(Duration::from_secs(60), || s1.get("/v1/catalog/datacenters").json() == json!(["dc1"]));
    assert!(gone, "the failed datacenter leaves the list: {}", s1.get("/v1/catalog/datacenters").text());
    assert_eq!(raw(c, "/v1/kv/before?dc=dc2"), (500, "No path to datacenter".into()));

    // dc2 comes back from its data dir: it rejoins the WAN pool and answers again.
    dcs.dc2.servers[0].start();
    let back = wait_for(Duration::from_secs(60), || {
        let (status, body) = raw(dcs.client(), "/v1/kv/before?dc=dc2&raw");
        (status == 200).then_some(body)
    });
    assert_eq!(back.as_deref(), Some("1"), "dc2's data survived and is reachable again");
    let list: Value = dcs.server1().get("/v1/catalog/datacenters").json();
    assert_eq!(list, json!(["dc1", "dc2"]));
}

#[test]
fn dns_names_another_datacenter_and_prepared_queries_fail_over_to_it() {
    let dcs = TwoDcs::start();
    let (c, s2, dns) = (dcs.client(), dcs.server2(), dcs.dns_port);
    register_web(c, "10.1.0.1");
    register_web(s2, "10.2.0.1");

    // DNS on dc1's client agent answers for both datacenters.
    let answers = |name: &str| wait_for(FEDERATE_TIMEOUT, || Some(dig_short(dns, name)).filter(|a| !a.is_empty()));
    assert_eq!(answers("web.service.consul"), Some(set(&["10.1.0.1"])));
    assert_eq!(answers("web.service.dc2.consul"), Some(set(&["10.2.0.1"])));
    let srv = dig_srv(dns, "_web._tcp.service.dc2.consul");
    assert!(!srv.is_empty() && srv.iter().all(|r| r.ends_with(".addr.dc2.consul.")), "SRV targets name dc2: {srv:?}");
    assert!(dig_short(dns, "web.service.dc9.consul").is_empty(), "an unknown datacenter has no answer");

    // A prepared query with failover, created through the client agent.
    let created = post_json(
        c,
        "/v1/query",
        &json!({
            "Name": "web-geo",
            "Service": {"Service": "web", "Failover": {"NearestN": 1}},
            "DNS": {"TTL": "5s"}
        }),
    );
    let id = created["ID"].as_str().expect("an ID").to_string();
    let listed = post_json(
        c,
        "/v1/query",
        &json!({
            "Name": "web-listed", "Service": {"Service": "web", "Failover": {"Datacenters": ["dc9", "dc2"]}}
        }),
    );
    assert!(listed["ID"].is_string(), "{listed}");

    let execute = |query: &str| {
        let r = c.get(&format!("/v1/query/{query}/execute"));
        assert_eq!(r.status, 200, "{}", r.text());
        let body = r.json();
        let addresses: Vec<String> = body["Nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["Service"]["Address"].as_str().unwrap().to_string())
            .collect();
        (body["Datacenter"].as_str().unwrap().to_string(), body["Failovers"].as_u64().unwrap(), addresses)
    };
    assert_eq!(execute(&id), ("dc1".to_string(), 0, vec!["10.1.0.1".to_string()]));
    assert_eq!(answers("web-geo.query.consul"), Some(set(&["10.1.0.1"])));

    // dc1's only instance goes critical: the queries answer from dc2.
    set_web(c, "fail");
    assert_eq!(execute("web-geo"), ("dc2".to_string(), 1, vec!["10.2.0.1".to_string()]), "NearestN 1 is dc2");
    assert_eq!(
        execute("web-listed"),
        ("dc2".to_string(), 1, vec!["10.2.0.1".to_string()]),
        "unknown dc9 skipped uncounted, as Consul does"
    );
    let failed_over =
        wait_for(FEDERATE_TIMEOUT, || Some(dig_short(dns, "web-geo.query.consul")).filter(|a| a.contains("10.2.0.1")));
    assert_eq!(failed_over, Some(set(&["10.2.0.1"])), "DNS follows the failover");
    assert!(dig_short(dns, "web.service.consul").is_empty(), "while the plain name has no healthy dc1 instance");

    // Healthy again: back to dc1.
    set_web(c, "pass");
    assert_eq!(execute(&id).0, "dc1");
    let back =
        wait_for(FEDERATE_TIMEOUT, || Some(dig_short(dns, "web-geo.query.consul")).filter(|a| a.contains("10.1.0.1")));
    assert_eq!(back, Some(set(&["10.1.0.1"])));
    assert!(dig_short(dns, "nope.query.consul").is_empty(), "an unknown query has no answer");
}
