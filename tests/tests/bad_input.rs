//! Hostile or malformed requests get a 4xx/5xx with a message, never a crash.

use legate_tests::{Agent, Reply};

fn expect(r: &Reply, status: u16, what: &str) -> String {
    assert_eq!(r.status, status, "{what}: {:?}", r.text());
    r.text()
}

fn expect_message(r: &Reply, status: u16, what: &str) -> String {
    let text = expect(r, status, what);
    assert!(!text.trim().is_empty(), "{what}: a {status} with an empty message");
    text
}

#[test]
fn bad_requests_get_clear_errors_and_the_agent_survives() {
    let agent = Agent::start_dev(&[]);
    assert_eq!(agent.put("/v1/kv/x", "v").text(), "true");

    // Malformed JSON bodies → 400 with a message, on every endpoint that parses one.
    for path in [
        "/v1/agent/service/register",
        "/v1/agent/check/register",
        "/v1/session/create",
        "/v1/catalog/register",
        "/v1/catalog/deregister",
        "/v1/txn",
        "/v1/agent/check/update/whatever",
    ] {
        expect_message(&agent.put(path, "{not json"), 400, &format!("malformed JSON to {path}"));
    }
    expect_message(&agent.put("/v1/agent/service/register", "[1,2,3]"), 400, "a list for a service");
    expect_message(&agent.put("/v1/agent/service/register", r#"{"Name": 5}"#), 400, "a number for a name");

    // Conflicting KV flags.
    let text = expect(&agent.put("/v1/kv/x?cas=0&acquire=abc", "v"), 400, "cas with acquire");
    assert!(text.starts_with("Conflicting flags"), "{text:?}");
    let text = expect(&agent.put("/v1/kv/x?acquire=abc&release=abc", "v"), 400, "acquire with release");
    assert!(text.starts_with("Conflicting flags"), "{text:?}");

    // Routing.
    expect(&agent.get("/v1/no/such/endpoint"), 404, "unknown path");
    expect(&agent.get("/nothing"), 404, "outside /v1");
    expect(&agent.request("POST", "/v1/kv/x", Some(b"v")), 405, "POST on /v1/kv");
    expect(&agent.request("DELETE", "/v1/status/leader", None), 405, "DELETE on status/leader");

    // Query parameters.
    expect_message(&agent.get("/v1/kv/x?stale&consistent"), 400, "stale with consistent");
    expect_message(&agent.get("/v1/kv/x?ns=other"), 400, "another namespace");
    expect_message(&agent.get("/v1/catalog/nodes?ns=other"), 400, "another namespace on the catalog");
    let text = expect(&agent.get("/v1/kv/x?dc=other"), 500, "another datacenter");
    assert!(text.contains("No path to datacenter"), "{text:?}");
    expect_message(&agent.get("/v1/kv/x?index=abc"), 400, "a non-numeric index");
    expect_message(&agent.get("/v1/kv/x?index=1&wait=soon"), 400, "an invalid wait");
    expect_message(&agent.get("/v1/kv/x?index=-1"), 400, "a negative index");
    expect_message(&agent.put("/v1/kv/x?flags=-1", "v"), 400, "negative flags");
    expect_message(&agent.put("/v1/kv/x?flags=18446744073709551616", "v"), 400, "flags above u64");
    expect_message(&agent.get("/v1/health/service/web?passing=maybe"), 400, "passing=maybe");

    // Registrations.
    expect_message(&agent.put("/v1/agent/service/register", r#"{"Name":"web","Port":70000}"#), 400, "port 70000");
    expect_message(&agent.put("/v1/agent/service/register", r#"{"Port":80}"#), 400, "no service name");
    expect_message(
        &agent.put("/v1/agent/service/register", r#"{"Name":"web","Check":{"TTL":"soon"}}"#),
        400,
        "bad TTL",
    );
    let reg = agent.put("/v1/agent/service/register", r#"{"Name":"web","Check":{"TTL":"30s"}}"#);
    assert_eq!(reg.status, 200, "{}", reg.text());
    expect_message(
        &agent.put("/v1/agent/check/update/service:web", r#"{"Status":"bogus"}"#),
        400,
        "check update with a bad Status",
    );
    expect_message(&agent.put("/v1/agent/check/pass/unknown", ""), 404, "pass an unknown check");
    expect_message(&agent.put("/v1/agent/check/update/unknown", r#"{"Status":"passing"}"#), 404, "update unknown");
    expect_message(&agent.put("/v1/agent/service/deregister/unknown", ""), 404, "deregister unknown");
    expect_message(
        &agent.put("/v1/catalog/register", r#"{"Address":"10.0.0.1"}"#),
        400,
        "catalog register without node",
    );

    // Sessions and transactions.
    expect_message(&agent.put("/v1/session/create", r#"{"Behavior":"explode"}"#), 400, "unknown behavior");
    expect_message(&agent.put("/v1/session/create", r#"{"LockDelay":"forever"}"#), 400, "bad lock delay");
    expect_message(&agent.put("/v1/txn", r#"[{"KV":{"Verb":"frobnicate","Key":"k"}}]"#), 400, "unknown txn verb");
    expect_message(&agent.put("/v1/txn", r#"[{"KV":{"Verb":"set","Key":"k","Value":"!!"}}]"#), 400, "bad base64");

    // The agent is still alive and its data intact.
    let leader = agent.get("/v1/status/leader");
    assert_eq!(leader.status, 200);
    assert!(leader.json().as_str().is_some_and(|s| !s.is_empty()));
    assert_eq!(agent.get("/v1/kv/x?raw").text(), "v", "no bad request changed the key");
}

#[test]
fn an_oversized_key_is_a_client_error() {
    let agent = Agent::start_dev(&[]);
    let long_key = "k".repeat(10 * 1024);

    let r = agent.put(&format!("/v1/kv/{long_key}"), "v");

    let text = expect_message(&r, 400, "a 10 KiB key");
    assert!(text.contains("too long"), "{text:?}");
    assert_eq!(agent.get("/v1/status/leader").status, 200);
}
