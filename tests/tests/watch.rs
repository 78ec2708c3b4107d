//! `legate watch` and the agent's `watches`: blocking-query loops that print each new view as
//! JSON or hand it to a handler (stdin JSON, `CONSUL_INDEX`), skip results equal to the last
//! one, reject bad input with exit 1, and retry an unreachable agent.
//!
//! The watch runs as a child process whose stdout goes to a file; the tests read the JSON
//! documents printed so far. "Nothing more was printed" is asserted over a short window after
//! a write that moved the index, since an absence has no event to wait for.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use legate_tests::{free_port, legate_bin, run_cli_with, temp_file, unique_node_name, wait_for, wait_until, Agent};
use serde_json::Value;

/// How long a change may take to reach a watch on a loaded machine.
const DEADLINE: Duration = Duration::from_secs(10);

/// How long a watch gets to (wrongly) print after a write that must not show.
const QUIET_WINDOW: Duration = Duration::from_secs(1);

/// A running `legate watch`, killed on drop (printing its stderr when the test failed).
struct Watch {
    child: Child,
    args: Vec<String>,
    out: PathBuf,
    err: PathBuf,
}

impl Watch {
    /// Starts `legate watch -http-addr=<addr> <args…>`.
    fn start(http_addr: &str, args: &[&str]) -> Watch {
        let dir = std::env::temp_dir().join("legate-e2e");
        std::fs::create_dir_all(&dir).expect("create temp dir");
        let tag = unique_node_name();
        let (out, err) = (dir.join(format!("watch-{tag}.out")), dir.join(format!("watch-{tag}.err")));
        let mut full = vec!["watch".to_string(), format!("-http-addr={http_addr}")];
        full.extend(args.iter().map(|a| a.to_string()));
        let child = Command::new(legate_bin())
            .args(&full)
            .stdin(Stdio::null())
            .stdout(File::create(&out).expect("create stdout file"))
            .stderr(File::create(&err).expect("create stderr file"))
            .env_remove("CONSUL_HTTP_ADDR")
            .env_remove("CONSUL_HTTP_TOKEN")
            .spawn()
            .expect("spawn legate watch");
        Watch { child, args: full, out, err }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    /// The complete JSON documents printed so far.
    fn docs(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        serde_json::Deserializer::from_str(&text).into_iter::<Value>().map_while(Result::ok).collect()
    }

    /// Waits until at least `n` documents were printed; returns them all.
    fn wait_docs(&self, n: usize) -> Vec<Value> {
        wait_for(DEADLINE, || Some(self.docs()).filter(|d| d.len() >= n)).unwrap_or_else(|| {
            panic!(
                "`legate {}` printed {} documents, want {n}:\n{:#?}\nstderr: {}",
                self.args.join(" "),
                self.docs().len(),
                self.docs(),
                self.stderr()
            )
        })
    }

    /// The first document printed.
    fn first(&self) -> Value {
        self.wait_docs(1).swap_remove(0)
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- stderr of `legate {}` ---\n{}", self.args.join(" "), self.stderr());
        }
        let _ = std::fs::remove_file(&self.out);
        let _ = std::fs::remove_file(&self.err);
    }
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn put_ok(agent: &Agent, path: &str, body: &str) {
    let r = agent.put(path, body);
    assert_eq!(r.status, 200, "PUT {path}: {}", r.text());
}

fn register(agent: &Agent, body: &str) {
    put_ok(agent, "/v1/agent/service/register", body);
}

/// Waits until `GET path` answers 200 with JSON for which `ok` holds.
fn wait_json(agent: &Agent, path: &str, ok: impl Fn(&Value) -> bool) {
    let met = wait_until(DEADLINE, || {
        let r = agent.get(path);
        r.status == 200 && ok(&r.json())
    });
    assert!(met, "GET {path} never matched; last: {}", agent.get(path).text());
}

/// An empty file under the temp dir for a handler to append to.
fn output_file(name: &str) -> PathBuf {
    temp_file(name, "")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// A handler's records, as written by `printf 'INDEX=%s\n' "$CONSUL_INDEX"; cat`: (index, JSON).
fn handler_records(path: &Path) -> Vec<(u64, Value)> {
    let text = read(path);
    let mut lines = text.lines();
    let mut records = Vec::new();
    while let (Some(head), Some(body)) = (lines.next(), lines.next()) {
        let index = head.strip_prefix("INDEX=").and_then(|i| i.parse().ok());
        let index = index.unwrap_or_else(|| panic!("bad record header {head:?} in {text}"));
        let Ok(json) = serde_json::from_str(body) else { break }; // still being written
        records.push((index, json));
    }
    records
}

#[test]
fn key_watch_prints_null_then_each_new_entry() {
    // Set up.
    let agent = Agent::start_dev(&[]);
    let watch = Watch::start(&agent.http_addr(), &["-type", "key", "-key", "app/k"]);
    assert_eq!(watch.first(), Value::Null, "a missing key prints null");

    // Act: a write elsewhere, then two writes of the key.
    put_ok(&agent, "/v1/kv/app/other", "x");
    put_ok(&agent, "/v1/kv/app/k", "v1");
    let docs = watch.wait_docs(2);
    put_ok(&agent, "/v1/kv/app/k", "v2");
    let docs_after = watch.wait_docs(3);

    // Assert: null, v1, v2 — the write elsewhere printed nothing.
    assert_eq!(docs.len(), 2, "{docs:#?}");
    let (v1, v2) = (&docs_after[1], &docs_after[2]);
    assert_eq!((v1["Key"].as_str(), v1["Value"].as_str()), (Some("app/k"), Some(b64("v1").as_str())), "{v1}");
    assert_eq!(v1["Session"], "", "Consul's KVPair always carries Session: {v1}");
    assert_eq!(v2["Value"].as_str(), Some(b64("v2").as_str()), "{v2}");
    assert!(v2["ModifyIndex"].as_u64() > v1["ModifyIndex"].as_u64(), "{v1} then {v2}");
    assert_eq!(docs_after.len(), 3, "{docs_after:#?}");
}

#[test]
fn services_watch_skips_an_index_move_that_leaves_the_view_unchanged() {
    // Set up: web with tag v1, and a watch that has printed it.
    let agent = Agent::start_dev(&[]);
    register(&agent, r#"{"Name":"web","ID":"web1","Tags":["v1"],"Port":8001}"#);
    wait_json(&agent, "/v1/catalog/services", |s| s.get("web").is_some());
    let watch = Watch::start(&agent.http_addr(), &["-type", "services"]);
    let shown = wait_until(DEADLINE, || watch.docs().last().is_some_and(|d| d.get("web").is_some()));
    assert!(shown, "web never printed: {:#?}\n{}", watch.docs(), watch.stderr());
    let before = agent.get("/v1/catalog/services");

    // Act: a second web instance with the same tags moves the index, not the view; then db.
    register(&agent, r#"{"Name":"web","ID":"web2","Tags":["v1"],"Port":8002}"#);
    let moved = wait_until(DEADLINE, || agent.get("/v1/catalog/services").index() > before.index());
    assert!(moved, "registering web2 must move the services index for this test to mean anything");
    assert_eq!(agent.get("/v1/catalog/services").json(), before.json(), "the view itself is unchanged");
    let printed = watch.docs().len();
    std::thread::sleep(QUIET_WINDOW);
    let after_window = watch.docs();
    register(&agent, r#"{"Name":"db","ID":"db1","Port":5432}"#);
    let with_db = wait_for(DEADLINE, || Some(watch.docs()).filter(|d| d.last().is_some_and(|l| l.get("db").is_some())));

    // Assert.
    assert_eq!(after_window.len(), printed, "an unchanged view was printed again: {after_window:#?}");
    let docs = with_db.unwrap_or_else(|| panic!("db never printed: {:#?}\n{}", watch.docs(), watch.stderr()));
    assert_eq!(docs.last().unwrap()["web"], serde_json::json!(["v1"]), "services print as name → tags");
    for pair in docs.windows(2) {
        assert_ne!(pair[0], pair[1], "two equal views in a row: {docs:#?}");
    }
}

#[test]
fn service_handler_runs_on_each_health_change_with_the_list_and_the_index() {
    // Set up: a handler appending $CONSUL_INDEX and its stdin.
    let agent = Agent::start_dev(&[]);
    let out = output_file("service-handler.out");
    let script = temp_file(
        "service-handler.sh",
        &format!("printf 'INDEX=%s\\n' \"$CONSUL_INDEX\" >> {0}; cat >> {0}\n", out.display()),
    );
    let handler = format!("sh {}", script.display());
    let _watch = Watch::start(&agent.http_addr(), &["-type", "service", "-service", "web", "-passing", &handler]);
    let met = wait_until(DEADLINE, || !handler_records(&out).is_empty());
    assert!(met, "the handler never ran: {:?}", read(&out));

    // Act: a web instance whose TTL check starts critical, then passes, then fails.
    register(&agent, r#"{"Name":"web","ID":"web1","Port":8001,"Check":{"TTL":"60s"}}"#);
    wait_json(&agent, "/v1/health/checks/web", |c| c.as_array().is_some_and(|c| !c.is_empty()));
    put_ok(&agent, "/v1/agent/check/pass/service:web1", "");
    let passing = wait_until(DEADLINE, || handler_records(&out).len() >= 2);
    put_ok(&agent, "/v1/agent/check/fail/service:web1", "");
    let failing = wait_until(DEADLINE, || handler_records(&out).len() >= 3);

    // Assert: [], [web1], [] — each with a growing index; the critical registration ran nothing.
    let records = handler_records(&out);
    assert!(passing && failing, "want 3 handler runs: {records:#?}");
    assert_eq!(records.len(), 3, "{records:#?}");
    assert_eq!(records[0].1, serde_json::json!([]), "no passing web yet");
    let instances = records[1].1.as_array().expect("a list");
    assert_eq!(instances.len(), 1, "{records:#?}");
    assert_eq!(instances[0]["Service"]["ID"], "web1");
    assert!(instances[0]["Checks"].as_array().is_some_and(|c| c.iter().all(|c| c["Status"] == "passing")));
    assert_eq!(records[2].1, serde_json::json!([]), "web1 failed");
    assert!(records[0].0 >= 1 && records[0].0 < records[1].0 && records[1].0 < records[2].0, "{records:#?}");
}

#[test]
fn each_type_prints_its_json_shape() {
    // Set up.
    let agent = Agent::start_dev(&[]);
    let addr = agent.http_addr();
    put_ok(&agent, "/v1/kv/app/a", "1");
    put_ok(&agent, "/v1/kv/app/b", "2");
    register(&agent, r#"{"Name":"web","ID":"web1","Tags":["v1"],"Port":8001,"Check":{"TTL":"60s"}}"#);
    wait_json(&agent, "/v1/health/checks/web", |c| c.as_array().is_some_and(|c| !c.is_empty()));

    // Act.
    let keyprefix = Watch::start(&addr, &["-type", "keyprefix", "-prefix", "app/"]).first();
    let empty_prefix = Watch::start(&addr, &["-type", "keyprefix", "-prefix", "nothing/"]).first();
    let services = Watch::start(&addr, &["-type", "services"]).first();
    let nodes = Watch::start(&addr, &["-type", "nodes"]).first();
    let checks = Watch::start(&addr, &["-type", "checks"]).first();
    let web_checks = Watch::start(&addr, &["-type", "checks", "-service", "web"]).first();
    let critical = Watch::start(&addr, &["-type", "checks", "-state", "critical"]).first();
    let service = Watch::start(&addr, &["-type", "service", "-service", "web", "-tag", "v1"]).first();

    // Assert.
    let keys: Vec<&str> = keyprefix.as_array().expect("a list").iter().filter_map(|e| e["Key"].as_str()).collect();
    assert_eq!(keys, ["app/a", "app/b"], "{keyprefix}");
    assert_eq!(keyprefix[0]["Value"].as_str(), Some(b64("1").as_str()));
    assert_eq!(empty_prefix, Value::Null, "no entries under a prefix is null, as in Consul");
    assert_eq!(services["web"], serde_json::json!(["v1"]), "{services}");
    let node = nodes.as_array().and_then(|n| n.iter().find(|n| n["Node"] == agent.node.as_str()));
    assert!(node.is_some_and(|n| n["Address"].is_string()), "{nodes}");
    let check_ids: Vec<&str> =
        checks.as_array().expect("a list").iter().filter_map(|c| c["CheckID"].as_str()).collect();
    assert!(check_ids.contains(&"serfHealth") && check_ids.contains(&"service:web1"), "{checks}");
    assert_eq!(web_checks.as_array().map(Vec::len), Some(1), "{web_checks}");
    assert_eq!(web_checks[0]["CheckID"], "service:web1");
    assert!(critical.as_array().is_some_and(|c| c.iter().all(|c| c["Status"] == "critical")), "{critical}");
    assert!(critical.as_array().is_some_and(|c| c.iter().any(|c| c["CheckID"] == "service:web1")), "{critical}");
    assert_eq!(service.as_array().map(Vec::len), Some(1), "{service}");
    assert_eq!(
        (service[0]["Node"]["Node"].as_str(), service[0]["Service"]["ID"].as_str()),
        (Some(agent.node.as_str()), Some("web1"))
    );
}

#[test]
fn bad_input_exits_1_with_a_clear_message() {
    // Set up: nothing needs to listen; validation comes first.
    let nowhere = format!("127.0.0.1:{}", free_port());
    let run = |args: &[&str]| run_cli_with(args, Some(&nowhere), &[]);

    // Act.
    let unknown = run(&["watch", "-type", "bogus"]);
    let no_key = run(&["watch", "-type", "key"]);
    let no_service = run(&["watch", "-type", "service", "cat"]);
    let event = run(&["watch", "-type", "event", "-name", "deploy", "-key", "k"]);
    let no_type = run(&["watch", "-key", "k"]);
    let wrong_param = run(&["watch", "-type", "nodes", "-key", "k"]);
    let both = run(&["watch", "-type", "checks", "-service", "web", "-state", "passing"]);

    // Assert.
    for (out, want) in [
        (&unknown, "unsupported watch type \"bogus\""),
        (&no_key, "needs -key"),
        (&no_service, "needs -service"),
        (&event, "-key does not apply to an event watch"),
        (&no_type, "Watch type must be specified"),
        (&wrong_param, "-key does not apply to a nodes watch"),
        (&both, "not both"),
    ] {
        assert_eq!(out.code, 1, "want exit 1 for {want:?}; stdout {:?} stderr {:?}", out.stdout, out.stderr);
        assert!(out.stderr.contains(want), "want {want:?} in stderr: {}", out.stderr);
        assert!(out.stdout.is_empty(), "nothing on stdout: {}", out.stdout);
    }
}

#[test]
fn an_unreachable_agent_is_reported_and_retried() {
    // Set up.
    let nowhere = format!("127.0.0.1:{}", free_port());

    // Act.
    let mut watch = Watch::start(&nowhere, &["-type", "nodes"]);
    let reported = wait_until(DEADLINE, || watch.stderr().matches("retrying").count() >= 2);

    // Assert: two reports (a retry happened), still running, no panic.
    assert!(reported, "stderr: {}", watch.stderr());
    assert!(watch.child.try_wait().expect("try_wait").is_none(), "the watch exited: {}", watch.stderr());
    assert!(!watch.stderr().contains("panicked"), "{}", watch.stderr());
    assert!(watch.docs().is_empty());
}

#[test]
fn config_watches_run_their_handler_on_change() {
    // Set up: an agent whose config file holds a key watch with args.
    let out = output_file("config-watch.out");
    let handler = format!("printf 'INDEX=%s\\n' \"$CONSUL_INDEX\" >> {0}; cat >> {0}", out.display());
    let config = serde_json::json!({"watches": [
        {"type": "key", "key": "cfg/k", "args": ["sh", "-c", handler]}
    ]});
    let config_path = temp_file("watches.json", &config.to_string());
    let agent = Agent::start_dev(&["-config-file", config_path.to_str().expect("utf-8 path")]);
    let first = wait_until(DEADLINE, || !handler_records(&out).is_empty());
    assert!(first, "the configured watch never ran its handler: {:?}\n{}", read(&out), agent.log());

    // Act.
    put_ok(&agent, "/v1/kv/cfg/k", "hello");
    let updated = wait_until(DEADLINE, || handler_records(&out).len() >= 2);

    // Assert.
    let records = handler_records(&out);
    assert!(updated, "no second run after the put: {records:#?}\n{}", agent.log());
    assert_eq!(records[0].1, Value::Null, "the key was missing at first");
    assert_eq!(records[1].1["Value"].as_str(), Some(b64("hello").as_str()), "{records:#?}");
    assert_eq!(records[1].0, records[1].1["ModifyIndex"].as_u64().unwrap(), "CONSUL_INDEX is the key's index");
}

#[test]
fn a_bad_config_watch_stops_the_agent_naming_the_entry() {
    // Set up.
    let config = r#"{"watches": [{"type": "key", "args": ["true"]}]}"#;
    let config_path = temp_file("bad-watches.json", config);
    let port = free_port().to_string();

    // Act.
    let out = run_cli_with(
        &["agent", "-dev", "-http-port", &port, "-config-file", config_path.to_str().expect("utf-8 path")],
        None,
        &[],
    );

    // Assert.
    assert_eq!(out.code, 1, "stdout: {}\nstderr: {}", out.stdout, out.stderr);
    assert!(out.stderr.contains("watches[0] (type \"key\")") && out.stderr.contains("needs \"key\""), "{}", out.stderr);
}
