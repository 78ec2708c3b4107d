//! The talk's demo, end to end with a real `dig` (Debian's dnsutils): three `web` instances
//! with script checks answer `web.service.consul`; one fails and drops out of DNS and
//! `?passing` within an interval; it recovers and returns. The same with an HTTP check whose
//! server stops and starts, and the answers over SRV and TCP.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use legate_tests::tiny_http::TinyHttp;
use legate_tests::{unique_node_name, wait_until, Agent};

/// Checks run every 500 ms; a change shows within a few intervals.
const DEADLINE: Duration = Duration::from_secs(10);

fn dig(agent: &Agent, args: &[&str]) -> String {
    let out = Command::new("dig")
        .arg("@127.0.0.1")
        .args(["-p", &agent.dns_port.to_string(), "+time=2", "+tries=1"])
        .args(args)
        .output()
        .expect("run dig (Debian's dnsutils)");
    assert!(out.status.success(), "dig {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The addresses `dig +short` returns for web.service.consul.
fn web_addresses(agent: &Agent, extra: &[&str]) -> BTreeSet<String> {
    let mut args = vec!["web.service.consul", "+short"];
    args.extend_from_slice(extra);
    dig(agent, &args).lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_string).collect()
}

fn passing_count(agent: &Agent) -> usize {
    agent.get("/v1/health/service/web?passing").json().as_array().map_or(0, Vec::len)
}

fn expect_web(agent: &Agent, want: &[&str]) {
    let want: BTreeSet<String> = want.iter().map(|s| s.to_string()).collect();
    let mut seen = BTreeSet::new();
    let ok = wait_until(DEADLINE, || {
        seen = web_addresses(agent, &[]);
        seen == want && passing_count(agent) == want.len()
    });
    assert!(ok, "dig answered {seen:?} (and ?passing {}), want {want:?}", passing_count(agent));
}

fn register(agent: &Agent, body: serde_json::Value) {
    let r = agent.put("/v1/agent/service/register", body.to_string());
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn unhealthy_instances_vanish_from_dig_and_passing_and_come_back() {
    let dir: PathBuf = std::env::temp_dir().join("legate-e2e").join(unique_node_name());
    std::fs::create_dir_all(&dir).unwrap();
    let agent = Agent::start_dev(&["-enable-script-checks"]);
    for n in 1..=3 {
        std::fs::write(dir.join(format!("up{n}")), "").unwrap();
        // Exit 2 (critical) when the file is gone; exit 1 would be a warning, which DNS
        // keeps answering unless `only_passing` is set.
        let script = format!("test -e {}/up{n} || exit 2", dir.display());
        register(
            &agent,
            serde_json::json!({"ID": format!("web{n}"), "Name": "web", "Address": format!("10.0.1.{n}"), "Port": 8000 + n,
                "Check": {"Args": ["/bin/sh", "-c", script], "Interval": "500ms"}}),
        );
    }
    expect_web(&agent, &["10.0.1.1", "10.0.1.2", "10.0.1.3"]);

    // One check fails: two answers, two passing.
    std::fs::remove_file(dir.join("up2")).unwrap();
    expect_web(&agent, &["10.0.1.1", "10.0.1.3"]);
    // Fixed: three again.
    std::fs::write(dir.join("up2"), "").unwrap();
    expect_web(&agent, &["10.0.1.1", "10.0.1.2", "10.0.1.3"]);

    // An HTTP check whose server stops and starts.
    let mut server = TinyHttp::start();
    register(
        &agent,
        serde_json::json!({"ID": "web4", "Name": "web", "Address": "10.0.1.4", "Port": server.port,
            "Check": {"HTTP": server.url("/health"), "Interval": "500ms", "Timeout": "1s"}}),
    );
    expect_web(&agent, &["10.0.1.1", "10.0.1.2", "10.0.1.3", "10.0.1.4"]);
    server.stop();
    expect_web(&agent, &["10.0.1.1", "10.0.1.2", "10.0.1.3"]);
    server.resume();
    expect_web(&agent, &["10.0.1.1", "10.0.1.2", "10.0.1.3", "10.0.1.4"]);

    // SRV: one record per instance, with its port; an instance with an address of its own
    // gets that address's `<hex>.addr` name as target (as Consul answers), with the address
    // record in the additional section.
    let srv = dig(&agent, &["web.service.consul", "SRV"]);
    let answers: Vec<&str> = srv.lines().filter(|l| l.contains("\tSRV\t") || l.contains(" SRV ")).collect();
    assert_eq!(answers.len(), 4, "{srv}");
    for port in ["8001", "8002", "8003", &server.port.to_string()] {
        assert!(answers.iter().any(|a| a.split_whitespace().any(|w| w == port)), "port {port} in {srv}");
    }
    for n in 1..=4 {
        let target = format!("0a00010{n}.addr.dc1.consul.");
        assert!(answers.iter().any(|a| a.ends_with(&target)), "{target} in {srv}");
        let additional = srv.split("ADDITIONAL SECTION").nth(1).unwrap_or_default();
        assert!(additional.contains(&format!("10.0.1.{n}")), "10.0.1.{n} in the additional section of {srv}");
    }

    // The same over TCP.
    assert_eq!(web_addresses(&agent, &["+tcp"]).len(), 4);

    // Every change above reached DNS through its cache (kept current by blocking queries),
    // not through a catalog read per query.
    let metrics = agent.get("/v1/agent/metrics").json();
    let hits = metrics["Gauges"]
        .as_array()
        .and_then(|g| g.iter().find(|g| g["Name"] == "legate.dns.cache_hits"))
        .and_then(|g| g["Value"].as_u64());
    assert!(hits.is_some_and(|n| n > 10), "DNS cache hits: {metrics}");
    let _ = std::fs::remove_dir_all(&dir);
}
