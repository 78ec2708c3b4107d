//! Sessions and locks: defaults, acquire/release and LockIndex, lock-delay after destroy,
//! renew, TTL limits and expiry, and the `delete` behavior.

use std::time::{Duration, Instant};

use legate_tests::{temp_file, wait_until, Agent, Reply};
use serde_json::{json, Value};

fn create_session(agent: &Agent, body: &str) -> String {
    let r = agent.put("/v1/session/create", body);
    assert_eq!(r.status, 200, "create {body}: {}", r.text());
    r.json()["ID"].as_str().unwrap_or_else(|| panic!("no ID in {}", r.text())).to_string()
}

fn kv_entry(agent: &Agent, key: &str) -> Value {
    let r = agent.get(&format!("/v1/kv/{key}"));
    assert_eq!(r.status, 200, "GET {key}: {}", r.text());
    r.json()[0].clone()
}

fn bool_reply(r: &Reply, what: &str) -> bool {
    assert_eq!(r.status, 200, "{what}: {}", r.text());
    match r.text().as_str() {
        "true" => true,
        "false" => false,
        other => panic!("{what}: expected true/false, got {other:?}"),
    }
}

fn acquire(agent: &Agent, key: &str, session: &str, value: &str) -> bool {
    bool_reply(&agent.put(&format!("/v1/kv/{key}?acquire={session}"), value), "acquire")
}

fn release(agent: &Agent, key: &str, session: &str) -> bool {
    bool_reply(&agent.put(&format!("/v1/kv/{key}?release={session}"), ""), "release")
}

fn session_exists(agent: &Agent, id: &str) -> bool {
    let r = agent.get(&format!("/v1/session/info/{id}"));
    assert_eq!(r.status, 200, "{}", r.text());
    !r.json().as_array().expect("info is a list").is_empty()
}

#[test]
fn create_defaults_to_this_node_and_serf_health() {
    let agent = Agent::start_dev(&[]);

    let id = create_session(&agent, "");

    let info = agent.get(&format!("/v1/session/info/{id}"));
    assert_eq!(info.status, 200);
    let s = &info.json()[0];
    assert_eq!(s["ID"], json!(id));
    assert_eq!(s["Node"], json!(agent.node));
    assert_eq!(s["NodeChecks"], json!(["serfHealth"]));
    assert_eq!(s["Behavior"], json!("release"));
    assert_eq!(s["LockDelay"], json!(15_000_000_000u64), "15 s in ns");
    let list = agent.get("/v1/session/list").json();
    assert!(list.as_array().expect("list").iter().any(|x| x["ID"] == json!(id)), "{list}");
}

#[test]
fn acquire_release_and_lock_index() {
    let agent = Agent::start_dev(&[]);
    let s1 = create_session(&agent, "");
    let s2 = create_session(&agent, "");

    // First acquire: LockIndex 1, Session set.
    assert!(acquire(&agent, "lock", &s1, "one"), "s1 acquires a free key");
    let e = kv_entry(&agent, "lock");
    assert_eq!((e["LockIndex"].clone(), e["Session"].clone()), (json!(1), json!(s1)));

    // Another session is refused; the holder may update the value, LockIndex unchanged.
    assert!(!acquire(&agent, "lock", &s2, "two"), "s2 cannot take a held lock");
    assert!(acquire(&agent, "lock", &s1, "one-again"), "the holder re-acquires");
    let e = kv_entry(&agent, "lock");
    assert_eq!(e["LockIndex"], json!(1));
    assert_eq!(e["Value"], json!("b25lLWFnYWlu"), "value updated: {e}");

    // A plain PUT keeps the lock.
    assert_eq!(agent.put("/v1/kv/lock", "plain").text(), "true");
    assert_eq!(kv_entry(&agent, "lock")["Session"], json!(s1));

    // Release needs the holder; it clears Session and keeps LockIndex.
    assert!(!release(&agent, "lock", &s2), "s2 does not hold it");
    assert!(release(&agent, "lock", &s1), "s1 releases");
    let e = kv_entry(&agent, "lock");
    assert!(e.get("Session").is_none_or(Value::is_null), "no holder: {e}");
    assert_eq!(e["LockIndex"], json!(1));

    // The next holder bumps LockIndex.
    assert!(acquire(&agent, "lock", &s2, "two"), "s2 acquires the released key");
    let e = kv_entry(&agent, "lock");
    assert_eq!((e["LockIndex"].clone(), e["Session"].clone()), (json!(2), json!(s2)));
}

#[test]
fn acquire_with_unknown_session_is_500_invalid_session() {
    let agent = Agent::start_dev(&[]);
    let unknown = "8d8a9ba4-0d8c-4a8f-9d3c-1b2c3d4e5f60";

    let r = agent.put(&format!("/v1/kv/lock?acquire={unknown}"), "x");

    assert_eq!(r.status, 500, "{}", r.text());
    assert_eq!(r.text(), format!("invalid session \"{unknown}\""));
    assert_eq!(agent.get("/v1/kv/lock").status, 404, "nothing written");
}

#[test]
fn destroy_releases_and_lock_delay_refuses_then_allows() {
    // Set up: s1 holds the lock with a 1 s lock-delay.
    let agent = Agent::start_dev(&[]);
    let s1 = create_session(&agent, r#"{"LockDelay":"1s"}"#);
    let s2 = create_session(&agent, "");
    assert!(acquire(&agent, "lock", &s1, "held"));
    let before = kv_entry(&agent, "lock")["ModifyIndex"].as_u64().expect("ModifyIndex");

    // Act: destroy s1.
    let destroyed_at = Instant::now();
    assert!(bool_reply(&agent.put(&format!("/v1/session/destroy/{s1}"), ""), "destroy"));

    // Assert: the key is released (value kept, ModifyIndex bumped) and lock-delay refuses s2.
    let e = kv_entry(&agent, "lock");
    assert!(e.get("Session").is_none_or(Value::is_null), "released: {e}");
    assert_eq!(e["Value"], json!("aGVsZA=="));
    assert!(e["ModifyIndex"].as_u64().expect("ModifyIndex") > before, "{e}");
    assert!(!session_exists(&agent, &s1));
    assert!(!acquire(&agent, "lock", &s2, "mine"), "refused during lock-delay");
    // ... and allows it once the delay has passed.
    assert!(wait_until(Duration::from_secs(10), || acquire(&agent, "lock", &s2, "mine")), "s2 acquires eventually");
    let waited = destroyed_at.elapsed();
    assert!(waited >= Duration::from_millis(900), "acquired after {waited:?}, inside the 1 s lock-delay");
    assert_eq!(kv_entry(&agent, "lock")["Session"], json!(s2));

    // Destroy is idempotent.
    assert!(bool_reply(&agent.put(&format!("/v1/session/destroy/{s1}"), ""), "destroy again"));
}

#[test]
fn renew_returns_the_session_and_unknown_is_404() {
    let agent = Agent::start_dev(&[]);
    let id = create_session(&agent, r#"{"TTL":"10s","Name":"renewed"}"#);

    let r = agent.put(&format!("/v1/session/renew/{id}"), "");
    let unknown = "0b1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d";
    let missing = agent.put(&format!("/v1/session/renew/{unknown}"), "");

    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.json();
    let list = body.as_array().expect("renew answers a list");
    assert_eq!(list.len(), 1, "{body}");
    assert_eq!(list[0]["ID"], json!(id));
    assert_eq!(list[0]["Name"], json!("renewed"));
    assert_eq!(list[0]["TTL"], json!("10s"));
    assert_eq!(missing.status, 404, "{}", missing.text());
    assert_eq!(missing.text(), format!("Session id '{unknown}' not found"));
}

#[test]
fn ttl_below_the_minimum_is_500_invalid_session_ttl() {
    let agent = Agent::start_dev(&[]);

    let r = agent.put("/v1/session/create", r#"{"TTL":"5s"}"#);

    assert_eq!(r.status, 500, "{}", r.text());
    assert!(r.text().starts_with("Invalid Session TTL"), "{:?}", r.text());
}

#[test]
fn behavior_delete_deletes_held_keys() {
    let agent = Agent::start_dev(&[]);
    let id = create_session(&agent, r#"{"Behavior":"delete","LockDelay":"0s"}"#);
    assert!(acquire(&agent, "ephemeral", &id, "x"));
    assert_eq!(agent.put("/v1/kv/other", "y").text(), "true");

    assert!(bool_reply(&agent.put(&format!("/v1/session/destroy/{id}"), ""), "destroy"));

    assert_eq!(agent.get("/v1/kv/ephemeral").status, 404, "held key deleted");
    assert_eq!(agent.get("/v1/kv/other").status, 200, "unheld key kept");
}

#[test]
fn ttl_session_expires_by_itself_when_not_renewed() {
    // Set up: allow a 1 s TTL.
    let config = temp_file("ttl.json", r#"{"session_ttl_min": "1s"}"#);
    let agent = Agent::start_dev(&["-config-file", config.to_str().expect("utf-8 path")]);
    let self_info = agent.get("/v1/agent/self").json();
    assert_eq!(self_info["Config"]["SessionTTLMin"], json!(1_000_000_000u64), "config file applied");
    let created_at = Instant::now();
    let id = create_session(&agent, r#"{"TTL":"1s","LockDelay":"0s"}"#);
    assert!(acquire(&agent, "ttl-lock", &id, "x"));

    // Act: do not renew; wait for the server to invalidate it.
    let expired = wait_until(Duration::from_secs(15), || !session_exists(&agent, &id));

    // Assert: gone after about 2×TTL (never before the TTL), and its lock released.
    let after = created_at.elapsed();
    assert!(expired, "the session still exists after {after:?}");
    assert!(after >= Duration::from_millis(1500), "expired after {after:?}, before 2×TTL");
    let e = kv_entry(&agent, "ttl-lock");
    assert!(e.get("Session").is_none_or(Value::is_null), "released: {e}");
    let _ = std::fs::remove_file(config);
}
