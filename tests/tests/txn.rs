//! `/v1/txn`: commit, rollback, the operation limit, and read-only transactions.

use legate_tests::Agent;
use serde_json::{json, Value};

fn kv_op(verb: &str, key: &str, value: Option<&str>) -> Value {
    let mut kv = json!({ "Verb": verb, "Key": key });
    if let Some(v) = value {
        kv["Value"] = json!(v);
    }
    json!({ "KV": kv })
}

#[test]
fn a_successful_txn_commits_every_op() {
    let agent = Agent::start_dev(&[]);
    // "MQ==" = "1", "Mg==" = "2".
    let ops = json!([kv_op("set", "t/a", Some("MQ==")), kv_op("set", "t/b", Some("Mg==")), kv_op("get", "t/a", None)]);

    let r = agent.put("/v1/txn", ops.to_string());

    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.json();
    assert_eq!(body["Errors"], Value::Null, "{body}");
    let results = body["Results"].as_array().unwrap_or_else(|| panic!("Results is a list: {body}"));
    assert_eq!(results.len(), 3, "{body}");
    assert_eq!(results[0]["KV"]["Key"], json!("t/a"));
    assert_eq!(results[0]["KV"]["Value"], Value::Null, "set results carry no value");
    assert_eq!(results[1]["KV"]["Key"], json!("t/b"));
    assert_eq!(results[2]["KV"]["Value"], json!("MQ=="), "get returns the value");
    assert!(results[0]["KV"]["ModifyIndex"].as_u64().is_some_and(|i| i >= 1), "{body}");
    assert_eq!(agent.get("/v1/kv/t/b?raw").text(), "2");
}

#[test]
fn a_failing_op_rolls_back_the_whole_txn() {
    let agent = Agent::start_dev(&[]);
    assert_eq!(agent.put("/v1/kv/t/a", "old").text(), "true");
    let modify = agent.get("/v1/kv/t/a").json()[0]["ModifyIndex"].as_u64().expect("ModifyIndex");
    let mut cas = kv_op("cas", "t/a", Some("bmV3"));
    cas["KV"]["Index"] = json!(modify + 1000);
    let ops = json!([kv_op("set", "t/c", Some("Yw==")), cas]);

    let r = agent.put("/v1/txn", ops.to_string());

    assert_eq!(r.status, 409, "{}", r.text());
    let body = r.json();
    assert_eq!(body["Results"], Value::Null, "{body}");
    let errors = body["Errors"].as_array().unwrap_or_else(|| panic!("Errors is a list: {body}"));
    assert_eq!(errors.len(), 1, "{body}");
    assert_eq!(errors[0]["OpIndex"], json!(1));
    assert!(errors[0]["What"].as_str().is_some_and(|w| !w.is_empty()), "{body}");
    assert_eq!(agent.get("/v1/kv/t/c").status, 404, "the earlier set did not take effect");
    assert_eq!(agent.get("/v1/kv/t/a?raw").text(), "old");
}

#[test]
fn more_than_128_ops_is_413() {
    let agent = Agent::start_dev(&[]);
    let ops: Vec<Value> = (0..129).map(|i| kv_op("set", &format!("many/{i}"), Some("eA=="))).collect();

    let r = agent.put("/v1/txn", Value::Array(ops).to_string());

    assert_eq!(r.status, 413, "{}", r.text());
    assert!(r.text().contains("Transaction contains too many operations (129 > 128)"), "{:?}", r.text());
    assert_eq!(agent.get("/v1/kv/many/?keys").status, 404, "nothing written");
}

#[test]
fn a_read_only_txn_answers_the_values() {
    let agent = Agent::start_dev(&[]);
    assert_eq!(agent.put("/v1/kv/r/a", "1").text(), "true");
    assert_eq!(agent.put("/v1/kv/r/b", "2").text(), "true");
    let ops = json!([kv_op("get", "r/a", None), kv_op("get", "r/b", None)]);

    let r = agent.put("/v1/txn", ops.to_string());

    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.json();
    assert_eq!(body["Errors"], Value::Null);
    let values: Vec<Value> =
        body["Results"].as_array().expect("Results").iter().map(|x| x["KV"]["Value"].clone()).collect();
    assert_eq!(values, [json!("MQ=="), json!("Mg==")]);
    assert!(r.index() >= 1, "a read-only txn carries the read headers");
}
