//! Blocking queries: `?index=&wait=` returns when *its* result changes, or after `wait`.
//!
//! The blocking call runs in a thread and reports on a channel; "still pending" is asserted
//! by a `recv_timeout` that must time out, and the wake-up by one that must not.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use legate_tests::{wait_for, wait_until, Agent, Reply};
use serde_json::json;

/// How long a blocking call must stay pending to count as "not woken".
const PENDING_CHECK: Duration = Duration::from_millis(400);

/// How long a woken blocking call may take to answer.
const WAKE_DEADLINE: Duration = Duration::from_secs(10);

/// Starts `GET path` in a thread; the answer and its elapsed time arrive on the channel.
fn spawn_get(agent: &Agent, path: &str) -> Receiver<(Reply, Duration)> {
    let (tx, rx) = mpsc::channel();
    let client = agent.client();
    let url = agent.url(path);
    thread::spawn(move || {
        let start = Instant::now();
        let reply = client.request("GET", &url, None).unwrap_or_else(|e| panic!("GET {url}: {e}"));
        let _ = tx.send((reply, start.elapsed()));
    });
    rx
}

fn assert_pending(rx: &Receiver<(Reply, Duration)>, why: &str) {
    match rx.recv_timeout(PENDING_CHECK) {
        Err(RecvTimeoutError::Timeout) => {}
        Ok((r, _)) => {
            panic!("the blocking call returned {why}: {} index {:?} {}", r.status, r.header("X-Consul-Index"), r.text())
        }
        Err(RecvTimeoutError::Disconnected) => panic!("the blocking thread died {why}"),
    }
}

fn assert_put(agent: &Agent, path: &str, body: &str) {
    let r = agent.put(path, body);
    assert_eq!((r.status, r.text().as_str()), (200, "true"), "PUT {path}");
}

#[test]
fn key_watch_wakes_on_its_key_only() {
    // Set up.
    let agent = Agent::start_dev(&[]);
    assert_put(&agent, "/v1/kv/A", "a1");
    let first = agent.get("/v1/kv/A");
    let index = first.index();

    // Act: block on A, write B, then A.
    let rx = spawn_get(&agent, &format!("/v1/kv/A?index={index}&wait=5s"));
    assert_pending(&rx, "before any write");
    assert_put(&agent, "/v1/kv/B", "b1");
    assert_pending(&rx, "after a write to another key");
    assert_put(&agent, "/v1/kv/A", "a2");

    // Assert: it returns with A's new value and a higher index.
    let (r, _) = rx.recv_timeout(WAKE_DEADLINE).expect("the blocking call returns after A's write");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.index() > index, "index {} > {index}", r.index());
    assert_eq!(r.json()[0]["Value"], json!("YTI="), "A's new value `a2`");
}

#[test]
fn wait_without_change_returns_the_same_index_after_the_wait() {
    let agent = Agent::start_dev(&[]);
    assert_put(&agent, "/v1/kv/quiet", "q");
    let index = agent.get("/v1/kv/quiet").index();

    let rx = spawn_get(&agent, &format!("/v1/kv/quiet?index={index}&wait=1s"));
    let (r, elapsed) = rx.recv_timeout(WAKE_DEADLINE).expect("returns once the wait passes");

    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.index(), index, "nothing changed");
    assert!(elapsed >= Duration::from_millis(900), "returned after {elapsed:?}, before the 1s wait");
}

#[test]
fn recurse_watch_wakes_on_a_write_under_the_prefix() {
    let agent = Agent::start_dev(&[]);
    assert_put(&agent, "/v1/kv/p/x", "1");
    let index = agent.get("/v1/kv/p/?recurse").index();

    let rx = spawn_get(&agent, &format!("/v1/kv/p/?recurse&index={index}&wait=5s"));
    assert_pending(&rx, "before any write");
    assert_put(&agent, "/v1/kv/q", "outside");
    assert_pending(&rx, "after a write outside the prefix");
    assert_put(&agent, "/v1/kv/p/y", "2");

    let (r, _) = rx.recv_timeout(WAKE_DEADLINE).expect("wakes on p/y");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.index() > index);
    let keys: Vec<String> =
        r.json().as_array().expect("array").iter().filter_map(|e| e["Key"].as_str().map(str::to_string)).collect();
    assert_eq!(keys, ["p/x", "p/y"]);
}

#[test]
fn health_watch_wakes_on_check_status_not_on_kv() {
    // Set up: a service with a TTL check (critical at first), visible in the catalog.
    let agent = Agent::start_dev(&[]);
    let reg = agent.put("/v1/agent/service/register", r#"{"Name":"web","Port":8080,"Check":{"TTL":"30s"}}"#);
    assert_eq!(reg.status, 200, "{}", reg.text());
    let index = wait_for(Duration::from_secs(10), || {
        let r = agent.get("/v1/health/service/web");
        let body = r.json();
        let synced = body[0]["Checks"].as_array().is_some_and(|c| c.iter().any(|c| c["CheckID"] == "service:web"));
        synced.then(|| r.index())
    })
    .expect("the service and its check reach the catalog");

    // Act.
    let rx = spawn_get(&agent, &format!("/v1/health/service/web?index={index}&wait=5s"));
    assert_pending(&rx, "before any write");
    assert_put(&agent, "/v1/kv/unrelated", "x");
    assert_pending(&rx, "after a KV write");
    let other = agent.put("/v1/agent/service/register", r#"{"Name":"api","Port":9090}"#);
    assert_eq!(other.status, 200, "{}", other.text());
    assert!(
        wait_until(Duration::from_secs(10), || agent.get("/v1/catalog/services").json().get("api").is_some()),
        "api reaches the catalog"
    );
    assert_pending(&rx, "after another service was registered");
    let pass = agent.put("/v1/agent/check/pass/service:web", "");
    assert_eq!(pass.status, 200, "{}", pass.text());

    // Assert.
    let (r, _) = rx.recv_timeout(WAKE_DEADLINE).expect("wakes on the check status change");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.index() > index);
    let body = r.json();
    let check = body[0]["Checks"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["CheckID"] == "service:web"))
        .unwrap_or_else(|| panic!("no service:web check in {body}"));
    assert_eq!(check["Status"], json!("passing"));
}

#[test]
fn recurse_watch_wakes_on_a_delete_under_the_prefix() {
    let agent = Agent::start_dev(&[]);
    assert_put(&agent, "/v1/kv/d/x", "1");
    assert_put(&agent, "/v1/kv/d/y", "2");
    let index = agent.get("/v1/kv/d/?recurse").index();

    let rx = spawn_get(&agent, &format!("/v1/kv/d/?recurse&index={index}&wait=5s"));
    assert_pending(&rx, "before the delete");
    let del = agent.delete("/v1/kv/d/y");
    assert_eq!(del.text(), "true");

    let (r, _) = rx.recv_timeout(WAKE_DEADLINE).expect("wakes on the delete of d/y");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.index() > index, "a delete moves the prefix's index (tombstone): {} > {index}", r.index());
    let keys: Vec<String> =
        r.json().as_array().expect("array").iter().filter_map(|e| e["Key"].as_str().map(str::to_string)).collect();
    assert_eq!(keys, ["d/x"]);
}

#[test]
fn a_watch_on_a_missing_key_wakes_when_it_is_created() {
    let agent = Agent::start_dev(&[]);
    let missing = agent.get("/v1/kv/later");
    assert_eq!(missing.status, 404);
    let index = missing.index();

    let rx = spawn_get(&agent, &format!("/v1/kv/later?index={index}&wait=5s"));
    assert_pending(&rx, "before the key exists");
    assert_put(&agent, "/v1/kv/unrelated", "x");
    assert_pending(&rx, "after a write to another key");
    assert_put(&agent, "/v1/kv/later", "now");

    let (r, _) = rx.recv_timeout(WAKE_DEADLINE).expect("wakes when the key is created");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.index() > index);
    assert_eq!(r.json()[0]["Value"], json!("bm93"), "`now`");
}
