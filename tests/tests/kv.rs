//! `/v1/kv`: flags, check-and-set, listings, missing keys, raw reads, deletes, path cleaning
//! and the value-size limit, as Consul answers them.

use legate_tests::{Agent, Reply};
use serde_json::{json, Value};

/// The single entry of a `GET /v1/kv/<key>` answer; panics when the key is missing.
fn entry(agent: &Agent, key: &str) -> Value {
    let r = agent.get(&format!("/v1/kv/{key}"));
    assert_eq!(r.status, 200, "GET {key}: {}", r.text());
    let body = r.json();
    assert_eq!(body.as_array().map(Vec::len), Some(1), "{body}");
    body[0].clone()
}

fn assert_true(r: &Reply, what: &str) {
    assert_eq!((r.status, r.text().as_str()), (200, "true"), "{what}");
}

fn assert_false(r: &Reply, what: &str) {
    assert_eq!((r.status, r.text().as_str()), (200, "false"), "{what}");
}

#[test]
fn flags_are_unsigned_64_bit() {
    let agent = Agent::start_dev(&[]);
    // The Go semaphore's flag value, above i64::MAX.
    let flags: u64 = 0xe0f6_9a2b_aa41_4de0;
    assert_eq!(flags, 16_210_313_421_097_356_768);

    let put = agent.put(&format!("/v1/kv/sem?flags={flags}"), "x");

    assert_true(&put, "put with u64 flags");
    assert_eq!(entry(&agent, "sem")["Flags"].as_u64(), Some(flags));
}

#[test]
fn cas_zero_writes_only_if_absent_and_cas_n_needs_the_modify_index() {
    let agent = Agent::start_dev(&[]);

    // cas=0: the first write creates, the second is refused.
    assert_true(&agent.put("/v1/kv/c?cas=0", "first"), "cas=0 on an absent key");
    assert_false(&agent.put("/v1/kv/c?cas=0", "second"), "cas=0 on an existing key");
    let e = entry(&agent, "c");
    assert_eq!(e["Value"], json!("Zmlyc3Q="), "still `first`: {e}");

    // cas=N: a stale index is refused, the current one wins and bumps ModifyIndex.
    let modify = e["ModifyIndex"].as_u64().expect("ModifyIndex");
    assert_false(&agent.put(&format!("/v1/kv/c?cas={}", modify + 1000), "stale"), "cas with a wrong index");
    assert_true(&agent.put(&format!("/v1/kv/c?cas={modify}"), "third"), "cas with the current index");
    let e = entry(&agent, "c");
    assert_eq!(e["Value"], json!("dGhpcmQ="), "now `third`: {e}");
    assert!(e["ModifyIndex"].as_u64().expect("ModifyIndex") > modify, "{e}");
    assert_false(&agent.put(&format!("/v1/kv/c?cas={modify}"), "again"), "the old index is stale now");
}

#[test]
fn recurse_and_keys_listings() {
    let agent = Agent::start_dev(&[]);

    // An empty store: keys at the root is an empty list, not a 404.
    let root = agent.get("/v1/kv/?keys");
    assert_eq!(root.status, 200, "{}", root.text());
    assert_eq!(root.json(), json!([]));

    for (k, v) in [("a/b", "1"), ("a/c/d", "2"), ("a/c/e", "3"), ("ab", "4")] {
        assert_true(&agent.put(&format!("/v1/kv/{k}"), v), k);
    }

    // keys with a separator stop at the separator.
    let keys = agent.get("/v1/kv/a/?keys&separator=/");
    assert_eq!(keys.status, 200, "{}", keys.text());
    assert_eq!(keys.json(), json!(["a/b", "a/c/"]));
    let all = agent.get("/v1/kv/?keys");
    assert_eq!(all.json(), json!(["a/b", "a/c/d", "a/c/e", "ab"]));

    // recurse returns every entry under the prefix, in key order, with the max ModifyIndex.
    let rec = agent.get("/v1/kv/a/?recurse");
    assert_eq!(rec.status, 200, "{}", rec.text());
    let body = rec.json();
    let listed: Vec<&str> = body.as_array().expect("array").iter().filter_map(|e| e["Key"].as_str()).collect();
    assert_eq!(listed, ["a/b", "a/c/d", "a/c/e"]);
    let max_modify = body.as_array().expect("array").iter().filter_map(|e| e["ModifyIndex"].as_u64()).max();
    assert_eq!(Some(rec.index()), max_modify, "the list's index is its max ModifyIndex");

    // No match: 404 for both, with the index headers.
    let none = agent.get("/v1/kv/zz?recurse");
    assert_eq!(none.status, 404, "{}", none.text());
    assert!(none.index() >= 1);
    let none = agent.get("/v1/kv/zz?keys");
    assert_eq!(none.status, 404, "{}", none.text());
}

#[test]
fn missing_key_is_404_with_empty_body_and_index() {
    let agent = Agent::start_dev(&[]);
    assert_true(&agent.put("/v1/kv/present", "x"), "put");

    let r = agent.get("/v1/kv/missing");

    assert_eq!(r.status, 404);
    assert!(r.body.is_empty(), "body {:?}", r.text());
    assert!(r.index() >= 1);
    assert_eq!(r.header("X-Consul-KnownLeader"), Some("true"));
    assert!(r.header("X-Consul-LastContact").is_some());
}

#[test]
fn raw_returns_the_bytes() {
    let agent = Agent::start_dev(&[]);
    let value: Vec<u8> = vec![0, 1, 2, 0xff, b'h', b'i', b'\n'];
    assert_true(&agent.put("/v1/kv/bin", &value), "put binary");

    let r = agent.get("/v1/kv/bin?raw");

    assert_eq!(r.status, 200);
    assert_eq!(r.body, value);
    assert!(r.index() >= 1);
}

#[test]
fn delete_recurse_and_delete_cas() {
    let agent = Agent::start_dev(&[]);
    for k in ["d/1", "d/2/x", "dd", "keep"] {
        assert_true(&agent.put(&format!("/v1/kv/{k}"), "v"), k);
    }

    // delete ?recurse removes the prefix's keys only.
    assert_true(&agent.delete("/v1/kv/d/?recurse"), "delete recurse");
    assert_eq!(agent.get("/v1/kv/d/1").status, 404);
    assert_eq!(agent.get("/v1/kv/d/2/x").status, 404);
    assert_eq!(agent.get("/v1/kv/dd").status, 200, "`dd` is not under `d/`");
    assert_eq!(agent.get("/v1/kv/keep").status, 200);

    // delete ?cas compares the ModifyIndex.
    let modify = entry(&agent, "keep")["ModifyIndex"].as_u64().expect("ModifyIndex");
    assert_false(&agent.delete(&format!("/v1/kv/keep?cas={}", modify + 1000)), "delete cas with a wrong index");
    assert_eq!(agent.get("/v1/kv/keep").status, 200, "still there");
    assert_true(&agent.delete(&format!("/v1/kv/keep?cas={modify}")), "delete cas with the index");
    assert_eq!(agent.get("/v1/kv/keep").status, 404);

    // A plain delete of a missing key still answers true.
    assert_true(&agent.delete("/v1/kv/never"), "delete missing");
}

#[test]
fn double_slash_reaches_the_clean_key() {
    let agent = Agent::start_dev(&[]);

    let put = agent.put("/v1/kv//a", "via-double-slash");

    assert_true(&put, "put via //a");
    let e = entry(&agent, "a");
    assert_eq!(e["Key"], json!("a"));
    let r = agent.get("/v1/kv//a");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()[0]["Key"], json!("a"));
}

#[test]
fn values_up_to_512_kib_are_accepted_and_larger_is_413() {
    let agent = Agent::start_dev(&[]);
    let max = 512 * 1024;

    let ok = agent.put("/v1/kv/big", vec![b'a'; max]);
    let too_big = agent.put("/v1/kv/big2", vec![b'a'; max + 1]);

    assert_true(&ok, "512 KiB value");
    let raw = agent.get("/v1/kv/big?raw");
    assert_eq!(raw.body.len(), max);
    assert_eq!(too_big.status, 413, "{}", too_big.text());
    let text = too_big.text();
    assert!(
        text.starts_with("Request body(524289 bytes) too large, max size: 524288 bytes"),
        "Consul's text, got {text:?}"
    );
    assert_eq!(agent.get("/v1/kv/big2").status, 404, "the large value was not stored");
}

#[test]
fn consistency_modes_are_reported_in_the_header() {
    let agent = Agent::start_dev(&[]);
    assert_true(&agent.put("/v1/kv/c", "v"), "put");

    let default = agent.get("/v1/kv/c");
    let stale = agent.get("/v1/kv/c?stale=");
    let consistent = agent.get("/v1/kv/c?consistent");

    assert_eq!(default.header("X-Consul-Effective-Consistency"), Some("leader"));
    assert_eq!(stale.status, 200, "{}", stale.text());
    assert_eq!(stale.header("X-Consul-Effective-Consistency"), Some("stale"), "`stale=` is a presence flag");
    assert_eq!(consistent.status, 200, "{}", consistent.text());
    assert_eq!(consistent.header("X-Consul-Effective-Consistency"), Some("consistent"));
}
