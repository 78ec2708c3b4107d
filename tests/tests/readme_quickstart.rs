//! The README's first steps: write a key, read it back with Consul's exact shape and headers.

use legate_tests::Agent;
use serde_json::json;

#[test]
fn put_then_get_returns_consul_shape_and_headers() {
    // Set up.
    let agent = Agent::start_dev(&[]);

    // Act.
    let put = agent.put("/v1/kv/foo", "bar");
    let get = agent.get("/v1/kv/foo");

    // Assert: the write answers the bare JSON `true`.
    assert_eq!(put.status, 200, "{}", put.text());
    assert_eq!(put.text(), "true");

    // Assert: one entry with every field Consul sends.
    assert_eq!(get.status, 200, "{}", get.text());
    let body = get.json();
    let entries = body.as_array().expect("a JSON array");
    assert_eq!(entries.len(), 1, "{body}");
    let e = &entries[0];
    assert_eq!(e["Key"], json!("foo"));
    assert_eq!(e["Flags"], json!(0));
    assert_eq!(e["Value"], json!("YmFy"), "base64 of `bar`");
    assert_eq!(e["LockIndex"], json!(0));
    let create = e["CreateIndex"].as_u64().expect("CreateIndex is a number");
    let modify = e["ModifyIndex"].as_u64().expect("ModifyIndex is a number");
    assert!(create >= 1 && modify >= create, "CreateIndex {create} ModifyIndex {modify}");
    assert!(e.get("Session").is_none_or(|s| s.is_null()), "no lock holder: {e}");

    // Assert: the four headers of a replicated read.
    let index = get.index();
    assert!(index >= 1, "X-Consul-Index {index}");
    assert_eq!(index, modify, "a single key's index is its ModifyIndex");
    assert_eq!(get.header("X-Consul-KnownLeader"), Some("true"));
    let last_contact = get.header("X-Consul-LastContact").expect("X-Consul-LastContact");
    assert!(last_contact.parse::<u64>().is_ok(), "X-Consul-LastContact {last_contact:?} is integer ms");
    let consistency = get.header("X-Consul-Effective-Consistency").expect("X-Consul-Effective-Consistency");
    assert!(["leader", "stale", "consistent"].contains(&consistency), "{consistency}");
}
