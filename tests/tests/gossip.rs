//! Gossip membership across real processes: five agents on loopback (3 servers, 2 clients)
//! find each other and the servers through the LAN pool; a SIGKILLed client is `failed` in
//! `legate members`, its services leave DNS and `?passing`, and the sessions tied to its
//! `serfHealth` are invalidated (its lock is released); restarted, it is alive again with its
//! services back. Also `legate join`, `legate leave` (left, deregistered) and `force-leave`.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use legate_tests::cluster::{Cluster, Proc};
use legate_tests::{dig_short, free_port, run_cli, run_cli_with, temp_file, wait_until, Agent};
use serde_json::Value;

/// Consul's LAN timers with 5 members: every member is probed within a round of 5 probe
/// intervals (1 s), and a suspicion lasts at most 6 × 4 s (less with confirmations from the
/// other members). The bound adds slack for a busy CI machine.
const DETECTION_MAX: Duration = Duration::from_secs(45);
const DEADLINE: Duration = Duration::from_secs(30);

/// `legate members` at `agent`: name → (status, type).
fn members(agent: &Proc) -> Vec<(String, String, String)> {
    let (code, out, err) = run_cli(&["members"], &agent.http_addr());
    assert_eq!(code, 0, "{err}");
    out.lines()
        .skip(1)
        .map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            (cols[0].to_string(), cols[2].to_string(), cols[3].to_string())
        })
        .collect()
}

fn status_of(agent: &Proc, node: &str) -> Option<String> {
    members(agent).into_iter().find(|(n, _, _)| n == node).map(|(_, s, _)| s)
}

fn passing_nodes(agent: &Proc, service: &str) -> BTreeSet<String> {
    let r = agent.get(&format!("/v1/health/service/{service}?passing"));
    r.json()
        .as_array()
        .map(|a| a.iter().map(|e| e["Node"]["Node"].as_str().unwrap_or("").to_string()).collect())
        .unwrap_or_default()
}

#[test]
fn five_agents_discover_each_other_and_a_killed_client_fails_out_of_dns_and_sessions() {
    let mut cluster = Cluster::start(3);
    // c1 owns a `web` service from its config dir (so a restart brings it back); c2 runs DNS.
    let config =
        temp_file("web.json", r#"{"service": {"name": "web", "id": "web1", "address": "10.8.0.1", "port": 80}}"#);
    let config_arg = config.display().to_string();
    let c1 = cluster.start_client_with(&[0], &["-config-file", &config_arg]);
    let dns = free_port();
    let c2 = cluster.start_client_with(&[1], &["-dns-port", &dns.to_string()]);
    let (c1_name, c2_name) = (cluster.clients[c1].name.clone(), cluster.clients[c2].name.clone());

    // Everyone sees everyone, servers as servers, through gossip only (c2 joined s2 alone).
    let all_alive = |agent: &Proc| {
        let m = members(agent);
        m.len() == 5 && m.iter().all(|(_, s, _)| s == "alive")
    };
    assert!(wait_until(DEADLINE, || all_alive(&cluster.clients[c2]) && all_alive(&cluster.servers[2])));
    let m = members(&cluster.clients[c2]);
    assert_eq!(m.iter().filter(|(_, _, t)| t == "server").count(), 3, "{m:?}");
    let wan = cluster.servers[0].get("/v1/agent/members?wan=1").json();
    assert!(
        wan.as_array().is_some_and(|a| a.iter().any(|m| m["Name"] == "s1.dc1")),
        "servers are in the WAN pool: {wan}"
    );

    // The service is in DNS (asked at c2) and passing; c1 holds a lock with a default session.
    assert!(wait_until(DEADLINE, || dig_short(dns, "web.service.consul").contains("10.8.0.1")));
    assert!(passing_nodes(&cluster.servers[0], "web").contains(&c1_name));
    let session = cluster.clients[c1].put("/v1/session/create", "{}").json()["ID"].as_str().unwrap().to_string();
    assert_eq!(cluster.clients[c1].put(&format!("/v1/kv/leader?acquire={session}"), "c1").text(), "true");

    // SIGKILL c1: failed everywhere within the detection bound; out of DNS and ?passing;
    // its session invalidated and the lock free.
    cluster.clients[c1].kill9();
    let killed = Instant::now();
    let failed = wait_until(DETECTION_MAX, || status_of(&cluster.servers[1], &c1_name).as_deref() == Some("failed"));
    let detected_in = killed.elapsed();
    assert!(failed, "c1 is failed within {DETECTION_MAX:?}: {:?}", members(&cluster.servers[1]));
    eprintln!("failure detected in {detected_in:?}");
    assert!(wait_until(DEADLINE, || status_of(&cluster.clients[c2], &c1_name).as_deref() == Some("failed")));
    assert!(wait_until(DEADLINE, || !passing_nodes(&cluster.servers[0], "web").contains(&c1_name)));
    assert!(wait_until(DEADLINE, || dig_short(dns, "web.service.consul").is_empty()), "out of DNS");
    let serf = cluster.servers[0].get(&format!("/v1/health/node/{c1_name}")).json();
    let serf = serf.as_array().unwrap().iter().find(|c| c["CheckID"] == "serfHealth").cloned().unwrap_or(Value::Null);
    assert_eq!(serf["Status"], "critical", "{serf}");
    assert!(wait_until(DEADLINE, || cluster.servers[0].get(&format!("/v1/session/info/{session}")).json()
        == Value::Array(vec![])));
    let lock = cluster.servers[0].get("/v1/kv/leader").json();
    assert!(lock[0].get("Session").is_none_or(Value::is_null), "the lock was released: {lock}");

    // Restarted from its data dir: alive again, its service back in DNS and ?passing.
    cluster.clients[c1].start();
    assert!(wait_until(DEADLINE, || status_of(&cluster.servers[1], &c1_name).as_deref() == Some("alive")));
    assert!(wait_until(DEADLINE, || passing_nodes(&cluster.servers[0], "web").contains(&c1_name)));
    assert!(wait_until(DEADLINE, || dig_short(dns, "web.service.consul").contains("10.8.0.1")));

    // A graceful leave: `left` (not failed) and the node deregistered.
    let (code, out, err) = run_cli(&["leave"], &cluster.clients[c2].http_addr());
    assert_eq!(code, 0, "{out}{err}");
    assert!(wait_until(DEADLINE, || status_of(&cluster.servers[0], &c2_name).as_deref() == Some("left")));
    assert!(wait_until(DEADLINE, || cluster.servers[0].get(&format!("/v1/catalog/node/{c2_name}")).json().is_null()));
}

#[test]
fn join_and_force_leave_from_the_cli() {
    let mut cluster = Cluster::start(1);
    // A client started without -retry-join is alone until `legate join`.
    let c = cluster.start_client_unjoined(&[]);
    let client = &cluster.clients[c];
    let (code, out, err) = run_cli(&["join", &cluster.servers[0].lan_addr()], &client.http_addr());
    assert_eq!((code, out.trim()), (0, "Successfully joined cluster by contacting 1 nodes."), "{err}");
    assert!(wait_until(DEADLINE, || client.leader().is_some()), "the client found the server through gossip");
    let (code, _, err) = run_cli(&["join", "127.0.0.1:1"], &client.http_addr());
    assert_eq!(code, 1);
    assert!(err.contains("Error joining address '127.0.0.1:1'"), "{err}");

    let name = client.name.clone();
    let (code, _, err) = run_cli(&["force-leave", &name], &cluster.servers[0].http_addr());
    assert_eq!(code, 1, "an alive member cannot be forced out");
    assert!(err.contains("not failed"), "{err}");
    let (code, _, err) = run_cli(&["force-leave", "nobody"], &cluster.servers[0].http_addr());
    assert_eq!(code, 1);
    assert!(err.contains("No node found with name 'nobody'"), "{err}");

    cluster.clients[c].kill9();
    let server = &cluster.servers[0];
    assert!(wait_until(DETECTION_MAX, || status_of(server, &name).as_deref() == Some("failed")));
    let (code, _, err) = run_cli(&["force-leave", &name], &server.http_addr());
    assert_eq!(code, 0, "{err}");
    assert_eq!(status_of(server, &name).as_deref(), Some("left"));
    assert!(wait_until(DEADLINE, || server.get(&format!("/v1/catalog/node/{name}")).json().is_null()), "deregistered");
}

#[test]
fn servers_of_two_datacenters_federate_over_the_wan_pool() {
    let a = Agent::start_dev(&[]);
    let b = Agent::start_dev(&["-datacenter", "dc2"]);
    let (code, out, err) = run_cli(&["join", "-wan", &format!("127.0.0.1:{}", b.wan_port)], &a.http_addr());
    assert_eq!(code, 0, "{out}{err}");
    let wan_names = |agent: &Agent| -> BTreeSet<String> {
        let (_, out, _) = run_cli(&["members", "-wan"], &agent.http_addr());
        out.lines()
            .skip(1)
            .filter(|l| l.contains("alive"))
            .filter_map(|l| l.split_whitespace().next())
            .map(str::to_string)
            .collect()
    };
    let both: BTreeSet<String> = [format!("{}.dc1", a.node), format!("{}.dc2", b.node)].into_iter().collect();
    assert!(wait_until(DEADLINE, || wan_names(&a) == both && wan_names(&b) == both), "{:?}", wan_names(&b));
    // The list follows the WAN pool within a probe round; own datacenter first.
    let lists = |agent: &Agent, expected: serde_json::Value| {
        wait_until(DEADLINE, || agent.get("/v1/catalog/datacenters").json() == expected)
    };
    assert!(lists(&a, serde_json::json!(["dc1", "dc2"])), "{}", a.get("/v1/catalog/datacenters").text());
    assert!(lists(&b, serde_json::json!(["dc2", "dc1"])), "{}", b.get("/v1/catalog/datacenters").text());
    // The LAN pools stay apart.
    assert_eq!(a.get("/v1/agent/members").json().as_array().map(Vec::len), Some(1));
}

/// `legate keyring -list` at `agent`: (pool, key, holders/total) lines.
fn keyring_list(agent: &Proc) -> Vec<String> {
    let (code, out, err) = run_cli(&["keyring", "-list"], &agent.http_addr());
    assert_eq!(code, 0, "{err}");
    out.lines().map(str::trim).filter(|l| l.ends_with(']') || l.ends_with(':')).map(str::to_string).collect()
}

#[test]
fn encrypted_gossip_refuses_strangers_and_rotates_keys_across_restarts() {
    let key = || {
        let out = run_cli_with(&["keygen"], None, &[]);
        assert_eq!(out.code, 0, "{}", out.stderr);
        out.stdout.trim().to_string()
    };
    let (k1, k2, other) = (key(), key(), key());
    assert_ne!(k1, k2);
    let mut cluster = Cluster::start_with(1, &["-encrypt", &k1]);
    let c = cluster.start_client_with(&[0], &["-encrypt", &k1]);
    let server = &cluster.servers[0];
    let two_alive = |agent: &Proc| members(agent).iter().filter(|(_, s, _)| s == "alive").count() == 2;
    assert!(wait_until(DEADLINE, || two_alive(server)));
    assert_eq!(keyring_list(server), ["WAN:", &format!("{k1} [1/1]"), "dc1 (LAN):", &format!("{k1} [2/2]")]);

    // An agent with another key cannot join, nor can one without a key.
    let stranger = cluster.start_client_unjoined(&["-encrypt", &other]);
    let plain = cluster.start_client_unjoined(&[]);
    for i in [stranger, plain] {
        let (code, _, err) = run_cli(&["join", &cluster.servers[0].lan_addr()], &cluster.clients[i].http_addr());
        assert_eq!(code, 1, "{err}");
    }
    let (code, _, err) = run_cli(&["keyring", "-list"], &cluster.clients[plain].http_addr());
    assert_eq!(code, 1);
    assert!(err.contains("encryption is not enabled"), "{err}");
    assert_eq!(members(&cluster.servers[0]).len(), 2, "neither got in");

    // Rotate from the server: install, use, remove — every member follows.
    let server = &cluster.servers[0];
    for args in [["keyring", "-install", &k2], ["keyring", "-use", &k2], ["keyring", "-remove", &k1]] {
        let (code, out, err) = run_cli(&args, &server.http_addr());
        assert_eq!(code, 0, "{args:?}: {out}{err}");
    }
    assert_eq!(keyring_list(server), ["WAN:", &format!("{k2} [1/1]"), "dc1 (LAN):", &format!("{k2} [2/2]")]);
    let (code, _, err) = run_cli(&["keyring", "-remove", &k2], &server.http_addr());
    assert_eq!(code, 1, "the primary key cannot be removed");
    assert!(err.contains("primary key"), "{err}");

    // The client restarts with `-encrypt k1` on its command line: its saved keyring (k2) wins,
    // so it gets back in although the cluster no longer knows k1.
    let name = cluster.clients[c].name.clone();
    cluster.clients[c].kill9();
    assert!(wait_until(DETECTION_MAX, || status_of(&cluster.servers[0], &name).as_deref() == Some("failed")));
    cluster.clients[c].start();
    assert!(wait_until(DEADLINE, || status_of(&cluster.servers[0], &name).as_deref() == Some("alive")));
}
