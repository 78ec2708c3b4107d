//! The `legate` command line against a running agent: `kv`, `catalog`, `members`, the
//! `CONSUL_HTTP_ADDR` variable, and `legate agent`'s flag errors.

use std::time::Duration;

use legate_tests::{free_port, run_cli, run_cli_with, wait_until, Agent};

#[test]
fn kv_put_get_cas_delete_and_recurse() {
    let agent = Agent::start_dev(&[]);
    let addr = agent.http_addr();

    let (code, out, err) = run_cli(&["kv", "put", "foo", "bar"], &addr);
    assert_eq!(code, 0, "stderr: {err}");
    assert_eq!(out.trim_end(), "Success! Data written to: foo");

    let (code, out, err) = run_cli(&["kv", "get", "foo"], &addr);
    assert_eq!(code, 0, "stderr: {err}");
    assert_eq!(out, "bar\n");

    let (code, _, err) = run_cli(&["kv", "get", "missing"], &addr);
    assert_eq!(code, 1);
    assert!(err.contains("Error! No key exists at: missing"), "stderr: {err}");

    // CAS with a stale index fails; with the current one it succeeds.
    let modify = agent.get("/v1/kv/foo").json()[0]["ModifyIndex"].as_u64().expect("ModifyIndex");
    assert_ne!(modify, 1, "the test needs index 1 to be stale");
    let (code, _, err) = run_cli(&["kv", "put", "-cas", "-modify-index", "1", "foo", "x"], &addr);
    assert_ne!(code, 0);
    assert!(err.contains("CAS failed"), "stderr: {err}");
    assert_eq!(agent.get("/v1/kv/foo?raw").text(), "bar");
    let (code, out, err) = run_cli(&["kv", "put", "-cas", &format!("-modify-index={modify}"), "foo", "baz"], &addr);
    assert_eq!(code, 0, "stderr: {err}");
    assert!(out.contains("Success! Data written to: foo"), "{out}");
    assert_eq!(agent.get("/v1/kv/foo?raw").text(), "baz");

    // delete.
    let (code, out, err) = run_cli(&["kv", "delete", "foo"], &addr);
    assert_eq!(code, 0, "stderr: {err}");
    assert!(out.contains("Success! Deleted key: foo"), "{out}");
    assert_eq!(agent.get("/v1/kv/foo").status, 404);

    // get -recurse prints key:value lines in key order.
    for (k, v) in [("app/b", "2"), ("app/a", "1"), ("other", "x")] {
        let (code, _, err) = run_cli(&["kv", "put", k, v], &addr);
        assert_eq!(code, 0, "put {k}: {err}");
    }
    let (code, out, err) = run_cli(&["kv", "get", "-recurse", "app/"], &addr);
    assert_eq!(code, 0, "stderr: {err}");
    assert_eq!(out, "app/a:1\napp/b:2\n");

    // delete -recurse.
    let (code, _, err) = run_cli(&["kv", "delete", "-recurse", "app/"], &addr);
    assert_eq!(code, 0, "stderr: {err}");
    assert_eq!(agent.get("/v1/kv/app/?recurse").status, 404);
    assert_eq!(agent.get("/v1/kv/other?raw").text(), "x");
}

#[test]
fn catalog_services_nodes_and_members() {
    let agent = Agent::start_dev(&[]);
    let addr = agent.http_addr();
    let reg = agent.put("/v1/agent/service/register", r#"{"Name":"billing","Tags":["v2"],"Port":7000}"#);
    assert_eq!(reg.status, 200, "{}", reg.text());
    assert!(
        wait_until(Duration::from_secs(10), || agent.get("/v1/catalog/services").json().get("billing").is_some()),
        "billing reaches the catalog"
    );

    let (code, out, err) = run_cli(&["catalog", "services"], &addr);
    assert_eq!(code, 0, "stderr: {err}");
    assert!(out.lines().any(|l| l.trim() == "billing"), "{out}");

    let (code, out, err) = run_cli(&["catalog", "services", "-tags"], &addr);
    assert_eq!(code, 0, "stderr: {err}");
    assert!(out.lines().any(|l| l.starts_with("billing") && l.contains("v2")), "{out}");

    let (code, out, err) = run_cli(&["catalog", "nodes"], &addr);
    assert_eq!(code, 0, "stderr: {err}");
    assert!(out.lines().next().is_some_and(|h| h.starts_with("Node")), "a header line: {out}");
    assert!(out.lines().any(|l| l.split_whitespace().next() == Some(agent.node.as_str())), "{out}");

    let (code, out, err) = run_cli(&["members"], &addr);
    assert_eq!(code, 0, "stderr: {err}");
    let row = out
        .lines()
        .find(|l| l.split_whitespace().next() == Some(agent.node.as_str()))
        .unwrap_or_else(|| panic!("no row for {} in {out}", agent.node));
    assert!(row.split_whitespace().any(|w| w == "alive"), "{row}");
}

#[test]
fn consul_http_addr_is_honoured() {
    let agent = Agent::start_dev(&[]);
    assert_eq!(agent.put("/v1/kv/envkey", "from-env").text(), "true");

    let plain = run_cli_with(&["kv", "get", "envkey"], None, &[("CONSUL_HTTP_ADDR", &agent.http_addr())]);
    let with_scheme =
        run_cli_with(&["kv", "get", "envkey"], None, &[("CONSUL_HTTP_ADDR", &format!("http://{}", agent.http_addr()))]);

    assert_eq!(plain.code, 0, "stderr: {}", plain.stderr);
    assert_eq!(plain.stdout, "from-env\n");
    assert_eq!(with_scheme.code, 0, "stderr: {}", with_scheme.stderr);
    assert_eq!(with_scheme.stdout, "from-env\n");
}

#[test]
fn the_http_addr_flag_wins_over_the_environment() {
    let agent = Agent::start_dev(&[]);
    assert_eq!(agent.put("/v1/kv/k", "v").text(), "true");
    let nowhere = format!("127.0.0.1:{}", free_port());

    let out = run_cli_with(&["kv", "get", "k"], Some(&agent.http_addr()), &[("CONSUL_HTTP_ADDR", &nowhere)]);
    let unreachable = run_cli_with(&["kv", "get", "k"], Some(&nowhere), &[]);

    assert_eq!((out.code, out.stdout.as_str()), (0, "v\n"), "stderr: {}", out.stderr);
    assert_ne!(unreachable.code, 0, "nothing listens on {nowhere}");
    assert!(!unreachable.stderr.trim().is_empty(), "an unreachable agent is reported");
}

#[test]
fn agent_rejects_unknown_flags_and_requires_dev() {
    let port = free_port().to_string();

    let bogus = run_cli_with(&["agent", "-dev", "-http-port", &port, "-bogus"], None, &[]);
    let no_dev = run_cli_with(&["agent", "-http-port", &port, "-node", "nodev"], None, &[]);

    assert_ne!(bogus.code, 0, "stdout: {}", bogus.stdout);
    assert!(bogus.stderr.contains("bogus"), "names the bad flag: {}", bogus.stderr);
    assert_ne!(no_dev.code, 0, "stdout: {}", no_dev.stdout);
    assert!(no_dev.stderr.contains("-dev"), "mentions -dev: {}", no_dev.stderr);
}
