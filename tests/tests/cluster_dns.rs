//! Health and DNS in a real cluster: a client agent's checks reach the servers' catalog, its
//! DNS answers from them, an instance whose check fails leaves the answers, and DNS keeps
//! answering (a stale read from a surviving server) after the leader is SIGKILLed.

use std::collections::BTreeSet;
use std::time::Duration;

use legate_tests::cluster::Cluster;
use legate_tests::{dig_short, free_port, wait_until};

const DEADLINE: Duration = Duration::from_secs(15);

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[test]
fn a_client_agents_checks_drive_dns_and_dns_survives_the_leader() {
    let mut cluster = Cluster::start(3);
    let dns = free_port();
    let c = cluster.start_client_with(&[0, 1, 2], &["-dns-port", &dns.to_string()]);
    let client = &cluster.clients[c];
    for n in 1..=2 {
        let body = serde_json::json!({"ID": format!("api{n}"), "Name": "api", "Address": format!("10.9.0.{n}"),
            "Port": 9000, "Check": {"CheckID": format!("api{n}-ttl"), "TTL": "1h", "Status": "passing"}});
        let r = client.put("/v1/agent/service/register", body.to_string());
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let mut seen = BTreeSet::new();
    let both = set(&["10.9.0.1", "10.9.0.2"]);
    assert!(
        wait_until(DEADLINE, || {
            seen = dig_short(dns, "api.service.consul");
            seen == both
        }),
        "{seen:?}"
    );

    // A failing check: the instance leaves the answers (and the servers' ?passing).
    let r = client.put("/v1/agent/check/fail/api2-ttl?note=down", "");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        wait_until(DEADLINE, || {
            seen = dig_short(dns, "api.service.consul");
            seen == set(&["10.9.0.1"])
        }),
        "{seen:?}"
    );
    let passing = cluster.servers[0].get("/v1/health/service/api?passing").json();
    assert_eq!(passing.as_array().map(Vec::len), Some(1), "{passing}");

    // The leader dies: DNS (stale reads by default) answers from the servers left, and a
    // recovered check shows once a new leader commits it.
    let leader = cluster.wait_agreed_leader(DEADLINE).expect("a leader");
    cluster.servers[leader].kill9();
    assert!(
        wait_until(DEADLINE, || {
            seen = dig_short(dns, "api.service.consul");
            seen == set(&["10.9.0.1"])
        }),
        "{seen:?}"
    );
    let client = &cluster.clients[c];
    assert!(wait_until(DEADLINE, || client.put("/v1/agent/check/pass/api2-ttl", "").status == 200));
    assert!(
        wait_until(DEADLINE, || {
            seen = dig_short(dns, "api.service.consul");
            seen == both
        }),
        "{seen:?}"
    );
}
