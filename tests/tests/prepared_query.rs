//! Prepared queries (`/v1/query`) on one datacenter: create, list, read, update, delete,
//! explain; execution's health, `OnlyPassing`, `IgnoreCheckIDs`, tag and meta filters and
//! limit; a query bound to a session going with it; failover with no other datacenter; and
//! Consul's error texts for bad input. (Failover across two datacenters is in federation.rs.)

use legate_tests::{Agent, Reply};
use serde_json::{json, Value};

fn ok_json(r: &Reply, what: &str) -> Value {
    assert_eq!(r.status, 200, "{what}: {}", r.text());
    r.json()
}

fn create(agent: &Agent, definition: &Value) -> String {
    let r = agent.request("POST", "/v1/query", Some(definition.to_string().as_bytes()));
    let body = ok_json(&r, "create");
    let id = body["ID"].as_str().unwrap_or_else(|| panic!("no ID in {body}")).to_string();
    assert_eq!(id.len(), 36, "a UUID: {id}");
    id
}

fn expect_error(r: &Reply, status: u16, fragment: &str, what: &str) {
    assert_eq!(r.status, status, "{what}: {}", r.text());
    assert!(r.text().contains(fragment), "{what}: {:?} lacks {fragment:?}", r.text());
}

/// Registers instance `id` of `service` on external node `node` with a service check in
/// `status` (and, optionally, a node-level check).
fn register(agent: &Agent, node: &str, id: &str, service: &str, tags: &[&str], status: &str, node_check: Option<&str>) {
    let mut checks = vec![json!({"CheckID": format!("svc:{id}"), "Name": "svc", "Status": status, "ServiceID": id})];
    if let Some(node_status) = node_check {
        checks.push(json!({"CheckID": "host", "Name": "host", "Status": node_status}));
    }
    let body = json!({
        "Node": node,
        "Address": "10.1.0.1",
        "NodeMeta": {"rack": node},
        "Service": {"ID": id, "Service": service, "Tags": tags, "Port": 80, "Meta": {"owner": id}},
        "Checks": checks,
    });
    let r = agent.put("/v1/catalog/register", body.to_string());
    assert_eq!((r.status, r.text().as_str()), (200, "true"), "register {id}");
}

/// Node names of an `/execute` answer, sorted (the answer is shuffled).
fn executed_nodes(body: &Value) -> Vec<String> {
    let mut names: Vec<String> = body["Nodes"]
        .as_array()
        .unwrap_or_else(|| panic!("no Nodes list in {body}"))
        .iter()
        .map(|e| e["Node"]["Node"].as_str().expect("node name").to_string())
        .collect();
    names.sort();
    names
}

fn execute(agent: &Agent, id_or_name: &str) -> Value {
    ok_json(&agent.get(&format!("/v1/query/{id_or_name}/execute")), "execute")
}

#[test]
fn a_query_is_created_listed_read_updated_explained_and_deleted() {
    // Set up.
    let agent = Agent::start_dev(&[]);
    let definition = json!({
        "Name": "web-q",
        "Service": {
            "Service": "web",
            "Failover": {"NearestN": 2, "Datacenters": ["dc2"]},
            "OnlyPassing": true,
            "IgnoreCheckIDs": ["flaky"],
            "Tags": ["primary", "!canary"],
            "NodeMeta": {"rack": "r1"},
            "ServiceMeta": {"env": "prod"},
        },
        "DNS": {"TTL": "10s"},
    });

    // Create, then list.
    let id = create(&agent, &definition);
    let list = agent.get("/v1/query");
    let queries = ok_json(&list, "list");
    assert!(list.index() >= 1);
    assert_eq!(list.header("X-Consul-KnownLeader"), Some("true"));
    assert_eq!(queries.as_array().map(Vec::len), Some(1), "{queries}");
    let q = &queries[0];
    assert_eq!((q["ID"].as_str(), q["Name"].as_str()), (Some(id.as_str()), Some("web-q")));
    assert_eq!(q["Service"]["Failover"], json!({"NearestN": 2, "Datacenters": ["dc2"]}));
    assert_eq!(q["Service"]["OnlyPassing"], json!(true));
    assert_eq!(q["Service"]["IgnoreCheckIDs"], json!(["flaky"]));
    assert_eq!(q["Service"]["Tags"], json!(["primary", "!canary"]));
    assert_eq!(q["Service"]["NodeMeta"], json!({"rack": "r1"}));
    assert_eq!(q["Service"]["ServiceMeta"], json!({"env": "prod"}));
    assert_eq!(q["DNS"]["TTL"], json!("10s"));
    let created = q["CreateIndex"].as_u64().expect("CreateIndex");
    assert_eq!(q["ModifyIndex"].as_u64(), Some(created));

    // Read by ID: a one-element list.
    let one = ok_json(&agent.get(&format!("/v1/query/{id}")), "get");
    assert_eq!(one, queries);

    // Update replaces the definition and keeps CreateIndex.
    let update = json!({"Name": "web-q2", "Service": {"Service": "api"}});
    let r = agent.put(&format!("/v1/query/{id}"), update.to_string());
    assert_eq!(r.status, 200, "update: {}", r.text());
    let q = ok_json(&agent.get(&format!("/v1/query/{id}")), "get after update")[0].clone();
    assert_eq!((q["Name"].as_str(), q["Service"]["Service"].as_str()), (Some("web-q2"), Some("api")));
    assert_eq!(q["Service"]["Tags"], json!([]));
    assert_eq!(q["CreateIndex"].as_u64(), Some(created));
    assert!(q["ModifyIndex"].as_u64().expect("ModifyIndex") > created);

    // Explain resolves by name, case-insensitively.
    let explained = ok_json(&agent.get("/v1/query/WEB-Q2/explain"), "explain");
    assert_eq!(explained["Query"]["ID"].as_str(), Some(id.as_str()));

    // Delete.
    let r = agent.delete(&format!("/v1/query/{id}"));
    assert_eq!(r.status, 200, "delete: {}", r.text());
    expect_error(&agent.get(&format!("/v1/query/{id}")), 404, "Query not found", "get after delete");
    expect_error(&agent.get("/v1/query/web-q2/execute"), 404, "Query not found", "execute after delete");
    expect_error(&agent.get("/v1/query/web-q2/explain"), 404, "Query not found", "explain after delete");
    assert_eq!(ok_json(&agent.get("/v1/query"), "list after delete"), json!([]));
}

#[test]
fn execute_drops_critical_instances_and_warning_ones_with_only_passing() {
    // Set up: web passing on a, warning on b, critical on c, and passing on d whose node
    // check is critical.
    let agent = Agent::start_dev(&[]);
    register(&agent, "a", "web-a", "web", &[], "passing", None);
    register(&agent, "b", "web-b", "web", &[], "warning", None);
    register(&agent, "c", "web-c", "web", &[], "critical", None);
    register(&agent, "d", "web-d", "web", &[], "passing", Some("critical"));
    create(&agent, &json!({"Name": "any", "Service": {"Service": "web"}, "DNS": {"TTL": "30s"}}));
    create(&agent, &json!({"Name": "strict", "Service": {"Service": "web", "OnlyPassing": true}}));
    let ignoring = json!({"Name": "lenient", "Service": {"Service": "web", "IgnoreCheckIDs": ["svc:web-c", "host"]}});
    create(&agent, &ignoring);

    // Act.
    let r = agent.get("/v1/query/any/execute");
    let any = ok_json(&r, "execute any");
    let strict = execute(&agent, "strict");
    let lenient = execute(&agent, "lenient");

    // Assert: Consul's response shape, then each filter.
    assert!(r.index() >= 1);
    assert_eq!(r.header("X-Consul-Effective-Consistency"), Some("leader"));
    assert!(r.header("X-Consul-LastContact").is_some());
    assert_eq!(any["Service"], json!("web"));
    assert_eq!(any["DNS"], json!({"TTL": "30s"}));
    assert_eq!(any["Datacenter"], json!("dc1"));
    assert_eq!(any["Failovers"], json!(0));
    assert_eq!(executed_nodes(&any), ["a", "b"]);
    let entry = any["Nodes"].as_array().unwrap().iter().find(|e| e["Node"]["Node"] == "a").unwrap();
    assert_eq!(entry["Service"]["ID"], json!("web-a"));
    assert_eq!(entry["Checks"][0]["Status"], json!("passing"));
    assert_eq!(executed_nodes(&strict), ["a"]);
    assert_eq!(executed_nodes(&lenient), ["a", "b", "c", "d"]);

    // ?limit cuts the (shuffled) answer.
    let limited = ok_json(&agent.get("/v1/query/any/execute?limit=1&near=_agent"), "limit");
    assert_eq!(limited["Nodes"].as_array().map(Vec::len), Some(1));
}

#[test]
fn execute_filters_by_tags_with_negation_and_by_meta() {
    // Set up.
    let agent = Agent::start_dev(&[]);
    register(&agent, "a", "db-a", "db", &["primary"], "passing", None);
    register(&agent, "b", "db-b", "db", &["primary", "canary"], "passing", None);
    register(&agent, "c", "db-c", "db", &["replica"], "passing", None);
    let tagged = json!({"Name": "primaries", "Service": {"Service": "db", "Tags": ["PRIMARY", "!canary"]}});
    let id = create(&agent, &tagged);
    create(&agent, &json!({"Name": "rack-c", "Service": {"Service": "db", "NodeMeta": {"rack": "c"}}}));
    create(&agent, &json!({"Name": "owned-b", "Service": {"Service": "db", "ServiceMeta": {"owner": "db-b"}}}));

    // Act and assert: by ID and by name alike.
    assert_eq!(executed_nodes(&execute(&agent, &id)), ["a"]);
    assert_eq!(executed_nodes(&execute(&agent, "primaries")), ["a"]);
    assert_eq!(executed_nodes(&execute(&agent, "rack-c")), ["c"]);
    assert_eq!(executed_nodes(&execute(&agent, "owned-b")), ["b"]);
}

#[test]
fn a_query_bound_to_a_session_is_deleted_with_the_session() {
    // Set up: a session, a query bound to it (unnamed: allowed because it is bound), and a
    // free one.
    let agent = Agent::start_dev(&[]);
    let session = ok_json(&agent.put("/v1/session/create", r#"{"Name":"owner"}"#), "session")["ID"]
        .as_str()
        .expect("session ID")
        .to_string();
    let bound = create(&agent, &json!({"Session": session, "Service": {"Service": "web"}}));
    let free = create(&agent, &json!({"Name": "free", "Service": {"Service": "web"}}));
    assert_eq!(ok_json(&agent.get(&format!("/v1/query/{bound}")), "bound")[0]["Session"], json!(session));

    // Act.
    let r = agent.put(&format!("/v1/session/destroy/{session}"), "");
    assert_eq!(r.status, 200, "destroy: {}", r.text());

    // Assert.
    expect_error(&agent.get(&format!("/v1/query/{bound}")), 404, "Query not found", "bound query after destroy");
    let left = ok_json(&agent.get("/v1/query"), "list");
    let ids: Vec<&str> = left.as_array().unwrap().iter().filter_map(|q| q["ID"].as_str()).collect();
    assert_eq!(ids, [free.as_str()]);
}

#[test]
fn failover_with_no_other_datacenter_answers_empty_from_this_one() {
    // Set up: nothing healthy here, failover to datacenters nobody knows.
    let agent = Agent::start_dev(&[]);
    register(&agent, "a", "web-a", "web", &[], "critical", None);
    let definition = json!({
        "Name": "fo",
        "Service": {"Service": "web", "Failover": {"NearestN": 3, "Datacenters": ["dc-nowhere", "dc1"]}},
    });
    create(&agent, &definition);

    // Act.
    let body = execute(&agent, "fo");

    // Assert: no datacenter to try, so none counted; an unknown ?dc= is Consul's 500.
    assert_eq!(body["Nodes"], json!([]));
    assert_eq!((body["Datacenter"].as_str(), body["Failovers"].as_u64()), (Some("dc1"), Some(0)));
    expect_error(&agent.get("/v1/query/fo/execute?dc=dc-nowhere"), 500, "No path to datacenter", "unknown dc");
}

#[test]
fn bad_definitions_and_requests_get_consuls_errors_and_the_agent_survives() {
    let agent = Agent::start_dev(&[]);
    let post = |body: &str| agent.request("POST", "/v1/query", Some(body.as_bytes()));
    create(&agent, &json!({"Name": "taken", "Service": {"Service": "web"}}));

    // Malformed bodies: 400.
    expect_error(&post("{not json"), 400, "Request decode failed", "malformed JSON");
    expect_error(&post(r#"{"Name":"x","Service":{"Service":"w","Tags":"a"}}"#), 400, "Request decode failed", "tags");
    expect_error(&post(r#"{"Template":{"Type":"name_prefix_match"}}"#), 400, "templates", "template");

    // Definitions Consul refuses: 500 with its texts.
    let refused = [
        (r#"{"Name":"x","Service":{}}"#, "Invalid prepared query: Must provide a Service name to query"),
        (r#"{"Service":{"Service":"web"}}"#, "Invalid prepared query: Must be bound to a session"),
        (r#"{"Name":"TAKEN","Service":{"Service":"web"}}"#, "name 'TAKEN' aliases an existing query name"),
        (r#"{"Name":"x","Session":"nope","Service":{"Service":"web"}}"#, r#"invalid session "nope""#),
        (r#"{"Name":"x","Service":{"Service":"web"},"DNS":{"TTL":"soon"}}"#, "Bad DNS TTL 'soon'"),
        (r#"{"Name":"x","Service":{"Service":"web","Failover":{"NearestN":-1}}}"#, "Bad NearestN '-1', must be >= 0"),
        (
            r#"{"ID":"11111111-2222-3333-4444-555555555555","Name":"x","Service":{"Service":"web"}}"#,
            "ID must be empty when creating a new prepared query",
        ),
    ];
    for (body, text) in refused {
        expect_error(&post(body), 500, text, body);
    }
    let unknown = "11111111-2222-3333-4444-555555555555";
    expect_error(
        &agent.put(&format!("/v1/query/{unknown}"), r#"{"Name":"x","Service":{"Service":"web"}}"#),
        500,
        &format!("Cannot modify non-existent prepared query: '{unknown}'"),
        "update of an unknown query",
    );
    expect_error(&agent.delete(&format!("/v1/query/{unknown}")), 500, "Cannot modify non-existent", "delete unknown");

    // Bad requests.
    expect_error(&agent.get("/v1/query/taken/execute?limit=many"), 400, "Bad limit", "limit");
    expect_error(&agent.get("/v1/query/nothing/execute"), 404, "Query not found", "execute unknown");
    expect_error(&agent.get(&format!("/v1/query/{unknown}")), 404, "Query not found", "get unknown");
    assert_eq!(agent.request("POST", "/v1/query/taken/execute", None).status, 405, "POST on execute");
    assert_eq!(agent.request("PATCH", "/v1/query", None).status, 405, "PATCH on /v1/query");

    // Only the first query exists, and the agent still answers.
    assert_eq!(ok_json(&agent.get("/v1/query"), "list").as_array().map(Vec::len), Some(1));
}
