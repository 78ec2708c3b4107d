//! Health checks the agent runs itself: script checks from a config dir (and `legate reload`
//! / SIGHUP replacing them), HTTP and TCP checks through the API, maintenance mode, and a
//! quiet agent that sends the catalog nothing while its checks keep passing.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Duration;

use legate_tests::tiny_http::TinyHttp;
use legate_tests::{run_cli, unique_node_name, wait_until, Agent};
use serde_json::Value;

const DEADLINE: Duration = Duration::from_secs(15);

fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join("legate-e2e").join(unique_node_name());
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

fn json(agent: &Agent, path: &str) -> Value {
    let r = agent.get(path);
    assert_eq!(r.status, 200, "GET {path}: {}", r.text());
    r.json()
}

fn count(agent: &Agent, path: &str) -> usize {
    json(agent, path).as_array().map_or(0, Vec::len)
}

/// The catalog's status and output of a check, if it is there.
fn catalog_check(agent: &Agent, service: &str, check_id: &str) -> Option<(String, String)> {
    let checks = json(agent, &format!("/v1/health/checks/{service}"));
    let c = checks.as_array()?.iter().find(|c| c["CheckID"] == check_id)?.clone();
    Some((c["Status"].as_str()?.to_string(), c["Output"].as_str()?.to_string()))
}

fn wait_status(agent: &Agent, service: &str, check_id: &str, want: &str) -> (String, String) {
    let mut last = None;
    let ok = wait_until(DEADLINE, || {
        last = catalog_check(agent, service, check_id);
        last.as_ref().is_some_and(|(s, _)| s == want)
    });
    assert!(ok, "check {check_id} of {service} never became {want}; last seen {last:?}");
    last.expect("seen")
}

fn script_service(name: &str, dir: &Path) -> String {
    // Exit 2 (critical) without the `up` file, 1 (warning) with a `warn` file, else 0.
    let script =
        format!("echo checked {name}; test -e {d}/up || exit 2; test -e {d}/warn && exit 1; exit 0", d = dir.display());
    serde_json::json!({"service": {"name": name, "port": 8080,
        "check": {"id": format!("{name}-alive"), "name": format!("{name} alive"),
                  "args": ["/bin/sh", "-c", script], "interval": "300ms"}}})
    .to_string()
}

#[test]
fn script_checks_from_a_config_dir_follow_their_script_and_reload_replaces_them() {
    let dir = temp_dir();
    let conf = dir.join("conf");
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::write(dir.join("up"), "").unwrap();
    std::fs::write(conf.join("web.json"), script_service("web", &dir)).unwrap();
    let agent = Agent::start_dev(&["-config-dir", conf.to_str().unwrap(), "-enable-local-script-checks"]);

    // Passing: listed by ?passing, with the script's output.
    let (_, output) = wait_status(&agent, "web", "web-alive", "passing");
    assert_eq!(output.trim(), "checked web");
    assert_eq!(count(&agent, "/v1/health/service/web?passing"), 1);

    // Exit 1 → warning; exit 2 → critical, gone from ?passing.
    std::fs::write(dir.join("warn"), "").unwrap();
    wait_status(&agent, "web", "web-alive", "warning");
    std::fs::remove_file(dir.join("warn")).unwrap();
    std::fs::remove_file(dir.join("up")).unwrap();
    wait_status(&agent, "web", "web-alive", "critical");
    assert_eq!(count(&agent, "/v1/health/service/web?passing"), 0);
    std::fs::write(dir.join("up"), "").unwrap();
    wait_status(&agent, "web", "web-alive", "passing");

    // Only local script checks are enabled: the HTTP API may not register one.
    let r = agent.put("/v1/agent/check/register", r#"{"Name":"sneaky","Args":["/bin/true"],"Interval":"1s"}"#);
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("Scripts are disabled"), "{}", r.text());

    // `legate reload`: web's file is gone and api's is new.
    std::fs::remove_file(conf.join("web.json")).unwrap();
    std::fs::write(conf.join("api.json"), script_service("api", &dir)).unwrap();
    let (code, out, err) = run_cli(&["reload"], &agent.http_addr());
    assert_eq!(code, 0, "{out}{err}");
    wait_status(&agent, "api", "api-alive", "passing");
    assert!(
        wait_until(DEADLINE, || json(&agent, "/v1/catalog/services").get("web").is_none()),
        "web leaves the catalog"
    );
    assert!(json(&agent, "/v1/agent/services").get("web").is_none());

    // SIGHUP does the same; a check the files still define keeps its status (no flap).
    std::fs::write(conf.join("web.json"), script_service("web", &dir)).unwrap();
    let writes_before = gauge(&agent, "legate.agent.catalog_writes");
    let hup = std::process::Command::new("sh").args(["-c", &format!("kill -HUP {}", agent.pid())]).status().unwrap();
    assert!(hup.success());
    wait_status(&agent, "web", "web-alive", "passing");
    assert_eq!(catalog_check(&agent, "api", "api-alive").map(|c| c.0).as_deref(), Some("passing"));
    assert!(gauge(&agent, "legate.agent.catalog_writes") > writes_before);

    // A broken file: reload fails with the reason, and the running config stands.
    std::fs::write(conf.join("broken.json"), "{ not json").unwrap();
    let (code, _, err) = run_cli(&["reload"], &agent.http_addr());
    assert_ne!(code, 0);
    assert!(err.contains("broken.json"), "{err}");
    assert!(json(&agent, "/v1/agent/services").get("api").is_some());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn http_and_tcp_checks_follow_their_server() {
    let mut server = TinyHttp::start();
    let agent = Agent::start_dev(&[]);
    let body = serde_json::json!({"Name": "api", "Port": server.port, "Checks": [
        {"CheckID": "api-http", "HTTP": server.url("/health"), "Interval": "300ms", "Timeout": "1s",
         "Header": {"X-Probe": ["legate"]}},
        {"CheckID": "api-tcp", "TCP": format!("127.0.0.1:{}", server.port), "Interval": "300ms"},
    ]});
    let r = agent.put("/v1/agent/service/register", body.to_string());
    assert_eq!(r.status, 200, "{}", r.text());
    let (_, output) = wait_status(&agent, "api", "api-http", "passing");
    assert!(output.contains("200") && output.contains("status 200"), "{output}");
    wait_status(&agent, "api", "api-tcp", "passing");
    assert_eq!(count(&agent, "/v1/health/service/api?passing"), 1);

    // 429 is a warning; other errors are critical.
    server.status.store(429, Ordering::SeqCst);
    wait_status(&agent, "api", "api-http", "warning");
    server.status.store(503, Ordering::SeqCst);
    wait_status(&agent, "api", "api-http", "critical");
    server.status.store(200, Ordering::SeqCst);
    wait_status(&agent, "api", "api-http", "passing");

    // The server stops: both checks go critical, and the instance leaves ?passing.
    server.stop();
    wait_status(&agent, "api", "api-http", "critical");
    wait_status(&agent, "api", "api-tcp", "critical");
    assert_eq!(count(&agent, "/v1/health/service/api?passing"), 0);
    server.resume();
    wait_status(&agent, "api", "api-http", "passing");
    wait_status(&agent, "api", "api-tcp", "passing");
    assert_eq!(count(&agent, "/v1/health/service/api?passing"), 1);
}

#[test]
fn maintenance_mode_takes_a_node_or_a_service_out_of_passing() {
    let agent = Agent::start_dev(&[]);
    let r = agent.put("/v1/agent/service/register", r#"{"Name":"db","Port":5432}"#);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(wait_until(DEADLINE, || count(&agent, "/v1/health/service/db?passing") == 1));

    let (code, out, err) = run_cli(&["maint", "-enable", "-reason", "kernel upgrade"], &agent.http_addr());
    assert_eq!(code, 0, "{out}{err}");
    assert!(wait_until(DEADLINE, || count(&agent, "/v1/health/service/db?passing") == 0));
    let (code, out, _) = run_cli(&["maint"], &agent.http_addr());
    assert_eq!(code, 0);
    assert!(out.contains("kernel upgrade"), "{out}");
    let (code, _, _) = run_cli(&["maint", "-disable"], &agent.http_addr());
    assert_eq!(code, 0);
    assert!(wait_until(DEADLINE, || count(&agent, "/v1/health/service/db?passing") == 1));

    let r = agent.put("/v1/agent/service/maintenance/db?enable=true&reason=migrating", "");
    assert_eq!(r.status, 200, "{}", r.text());
    let (status, _) = wait_status(&agent, "db", "_service_maintenance:db", "critical");
    assert_eq!(status, "critical");
    assert_eq!(count(&agent, "/v1/health/service/db?passing"), 0);
    assert_eq!(agent.put("/v1/agent/service/maintenance/nope?enable=true", "").status, 404);
    assert_eq!(agent.put("/v1/agent/service/maintenance/db", "").status, 400, "enable is required");
    assert_eq!(agent.put("/v1/agent/service/maintenance/db?enable=false", "").status, 200);
    assert!(wait_until(DEADLINE, || count(&agent, "/v1/health/service/db?passing") == 1));
}

fn gauge(agent: &Agent, name: &str) -> u64 {
    let metrics = json(agent, "/v1/agent/metrics");
    let found = metrics["Gauges"].as_array().and_then(|g| g.iter().find(|g| g["Name"] == name).cloned());
    found.and_then(|g| g["Value"].as_u64()).unwrap_or_else(|| panic!("no gauge {name} in {metrics}"))
}

#[test]
fn passing_checks_send_the_catalog_nothing() {
    // 100 TCP checks against the agent's own HTTP port, every second; full anti-entropy
    // syncs every 2-4 s instead of every 1-2 min, so the window sees them too.
    let conf = legate_tests::temp_file("ae.json", r#"{"anti_entropy_interval": "2s"}"#);
    let agent = Agent::start_dev(&["-config-file", conf.to_str().unwrap()]);
    let addr = agent.http_addr();
    for i in 0..100 {
        let body = serde_json::json!({"Name": format!("svc{i}"), "Port": 80,
            "Check": {"TCP": addr, "Interval": "1s"}});
        assert_eq!(agent.put("/v1/agent/service/register", body.to_string()).status, 200);
    }
    assert!(
        wait_until(Duration::from_secs(30), || {
            let checks = json(&agent, "/v1/health/state/passing");
            checks.as_array().map_or(0, |c| c.iter().filter(|c| c["ServiceID"] != "").count()) == 100
        }),
        "all 100 checks pass"
    );
    // An observation window, not a wait: every check runs about ten times in it, and the
    // agent compares its state with the catalog's two or three times.
    let (before, syncs_before) =
        (gauge(&agent, "legate.agent.catalog_writes"), gauge(&agent, "legate.agent.full_syncs"));
    std::thread::sleep(Duration::from_secs(10));
    let (after, syncs_after) = (gauge(&agent, "legate.agent.catalog_writes"), gauge(&agent, "legate.agent.full_syncs"));
    assert_eq!(after - before, 0, "catalog writes while 100 checks kept passing");
    assert!(syncs_after - syncs_before >= 2, "full syncs in the window: {}", syncs_after - syncs_before);
}
