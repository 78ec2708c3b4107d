//! Catalog and health: agent service registration through to the catalog, TTL check states,
//! external nodes, filters, node health, and the agent/status endpoints.

use std::time::{Duration, Instant};

use legate_tests::{wait_for, wait_until, Agent};
use serde_json::{json, Value};

const SYNC_DEADLINE: Duration = Duration::from_secs(10);

fn get_json(agent: &Agent, path: &str) -> Value {
    let r = agent.get(path);
    assert_eq!(r.status, 200, "GET {path}: {}", r.text());
    r.json()
}

fn len(v: &Value) -> usize {
    v.as_array().unwrap_or_else(|| panic!("expected a list, got {v}")).len()
}

/// The status of `check_id` in `/v1/health/service/<svc>`'s first entry, if present.
fn health_check_status(agent: &Agent, svc: &str, check_id: &str) -> Option<String> {
    let body = get_json(agent, &format!("/v1/health/service/{svc}"));
    body[0]["Checks"].as_array()?.iter().find(|c| c["CheckID"] == check_id)?["Status"].as_str().map(str::to_string)
}

fn put_ok(agent: &Agent, path: &str, body: &str) {
    let r = agent.put(path, body);
    assert_eq!(r.status, 200, "PUT {path}: {}", r.text());
}

#[test]
fn agent_service_with_ttl_check_flows_through_catalog_and_health() {
    // Set up: register web with a TTL check.
    let agent = Agent::start_dev(&[]);
    put_ok(
        &agent,
        "/v1/agent/service/register",
        r#"{"Name":"web","Tags":["v1","primary"],"Port":8080,"Meta":{"team":"a"},"Check":{"TTL":"30s"}}"#,
    );

    // The agent's own view is immediate.
    let services = get_json(&agent, "/v1/agent/services");
    assert_eq!(services["web"]["Service"], json!("web"), "{services}");
    assert_eq!(services["web"]["Port"], json!(8080));
    assert_eq!(services["web"]["Tags"], json!(["v1", "primary"]));
    let checks = get_json(&agent, "/v1/agent/checks");
    assert_eq!(checks["service:web"]["Status"], json!("critical"), "{checks}");
    assert_eq!(checks["service:web"]["ServiceID"], json!("web"));

    // The catalog follows.
    assert!(
        wait_until(SYNC_DEADLINE, || health_check_status(&agent, "web", "service:web").is_some()),
        "web and its check reach the catalog"
    );
    let catalog = get_json(&agent, "/v1/catalog/services");
    // Tags across instances, deduplicated; Consul promises no order.
    let mut tags: Vec<&str> = catalog["web"].as_array().expect("tag list").iter().filter_map(Value::as_str).collect();
    tags.sort_unstable();
    assert_eq!(tags, ["primary", "v1"], "{catalog}");
    let instances = get_json(&agent, "/v1/catalog/service/web");
    assert_eq!(len(&instances), 1, "{instances}");
    let i = &instances[0];
    assert_eq!(i["ServiceID"], json!("web"));
    assert_eq!(i["ServiceName"], json!("web"));
    assert_eq!(i["ServicePort"], json!(8080));
    assert_eq!(i["ServiceTags"], json!(["v1", "primary"]));
    assert_eq!(i["ServiceMeta"], json!({"team": "a"}));
    assert_eq!(i["Node"], json!(agent.node));
    assert_eq!(i["Datacenter"], json!("dc1"));

    // Health: critical by default, so ?passing drops it.
    let health = get_json(&agent, "/v1/health/service/web");
    assert_eq!(len(&health), 1);
    assert_eq!(health[0]["Service"]["ID"], json!("web"));
    assert_eq!(health[0]["Node"]["Node"], json!(agent.node));
    assert_eq!(health_check_status(&agent, "web", "service:web").as_deref(), Some("critical"));
    assert_eq!(health_check_status(&agent, "web", "serfHealth").as_deref(), Some("passing"));
    assert_eq!(len(&get_json(&agent, "/v1/health/service/web?passing")), 0);
    let critical = get_json(&agent, "/v1/health/state/critical");
    assert!(critical.as_array().expect("list").iter().any(|c| c["CheckID"] == "service:web"), "{critical}");

    // Tag filters: every tag must match.
    assert_eq!(len(&get_json(&agent, "/v1/health/service/web?tag=v1")), 1);
    assert_eq!(len(&get_json(&agent, "/v1/health/service/web?tag=nope")), 0);
    assert_eq!(len(&get_json(&agent, "/v1/catalog/service/web?tag=v1&tag=primary")), 1);
    assert_eq!(len(&get_json(&agent, "/v1/catalog/service/web?tag=v1&tag=nope")), 0);

    // pass → appears in ?passing.
    put_ok(&agent, "/v1/agent/check/pass/service:web?note=ok", "");
    assert!(
        wait_until(SYNC_DEADLINE, || len(&get_json(&agent, "/v1/health/service/web?passing")) == 1),
        "web is passing after check/pass"
    );
    let critical = get_json(&agent, "/v1/health/state/critical");
    assert!(!critical.as_array().expect("list").iter().any(|c| c["CheckID"] == "service:web"), "{critical}");

    // fail → vanishes from ?passing.
    put_ok(&agent, "/v1/agent/check/fail/service:web", "");
    assert!(
        wait_until(SYNC_DEADLINE, || len(&get_json(&agent, "/v1/health/service/web?passing")) == 0),
        "web is filtered out after check/fail"
    );

    // deregister → gone everywhere.
    put_ok(&agent, "/v1/agent/service/deregister/web", "");
    assert!(get_json(&agent, "/v1/agent/services").get("web").is_none());
    assert!(
        wait_until(SYNC_DEADLINE, || len(&get_json(&agent, "/v1/catalog/service/web")) == 0),
        "web leaves the catalog"
    );
    assert!(get_json(&agent, "/v1/catalog/services").get("web").is_none());
    assert_eq!(len(&get_json(&agent, "/v1/health/service/web")), 0);
    assert!(get_json(&agent, "/v1/agent/checks").get("service:web").is_none());
}

#[test]
fn catalog_register_and_deregister_an_external_node() {
    let agent = Agent::start_dev(&[]);
    let body = json!({
        "Node": "ext1",
        "Address": "10.0.0.5",
        "NodeMeta": {"rack": "r1"},
        "Service": {"Service": "db", "Port": 5432, "Tags": ["pg"]},
    });

    let reg = agent.put("/v1/catalog/register", body.to_string());

    assert_eq!((reg.status, reg.text().as_str()), (200, "true"), "register");
    let nodes = get_json(&agent, "/v1/catalog/nodes");
    let names: Vec<&str> = nodes.as_array().expect("list").iter().filter_map(|n| n["Node"].as_str()).collect();
    assert!(names.contains(&"ext1") && names.contains(&agent.node.as_str()), "{names:?}");
    let ext = nodes.as_array().expect("list").iter().find(|n| n["Node"] == "ext1").expect("ext1");
    assert_eq!(ext["Address"], json!("10.0.0.5"));
    assert_eq!(ext["Meta"]["rack"], json!("r1"));

    // node-meta filters.
    let by_meta = get_json(&agent, "/v1/catalog/nodes?node-meta=rack:r1");
    let names: Vec<&str> = by_meta.as_array().expect("list").iter().filter_map(|n| n["Node"].as_str()).collect();
    assert_eq!(names, ["ext1"]);
    assert_eq!(len(&get_json(&agent, "/v1/catalog/nodes?node-meta=rack:r2")), 0);
    assert_eq!(len(&get_json(&agent, "/v1/catalog/service/db?node-meta=rack:r1")), 1);
    assert_eq!(len(&get_json(&agent, "/v1/catalog/service/db?node-meta=rack:r2")), 0);

    let db = get_json(&agent, "/v1/catalog/service/db");
    assert_eq!(len(&db), 1);
    assert_eq!(db[0]["Node"], json!("ext1"));
    assert_eq!(db[0]["ServicePort"], json!(5432));
    assert_eq!(db[0]["Address"], json!("10.0.0.5"));

    // Deregister the whole node.
    let dereg = agent.put("/v1/catalog/deregister", r#"{"Node":"ext1"}"#);
    assert_eq!((dereg.status, dereg.text().as_str()), (200, "true"), "deregister");
    let nodes = get_json(&agent, "/v1/catalog/nodes");
    assert!(!nodes.as_array().expect("list").iter().any(|n| n["Node"] == "ext1"), "{nodes}");
    assert_eq!(len(&get_json(&agent, "/v1/catalog/service/db")), 0);
    assert!(get_json(&agent, "/v1/catalog/services").get("db").is_none());
}

#[test]
fn node_health_status_and_agent_endpoints() {
    let agent = Agent::start_dev(&[]);

    // The agent's node is in the catalog with serfHealth passing.
    let nodes = get_json(&agent, "/v1/catalog/nodes");
    assert!(nodes.as_array().expect("list").iter().any(|n| n["Node"] == json!(agent.node)), "{nodes}");
    let checks = get_json(&agent, &format!("/v1/health/node/{}", agent.node));
    let serf = checks.as_array().expect("list").iter().find(|c| c["CheckID"] == "serfHealth").expect("serfHealth");
    assert_eq!(serf["Status"], json!("passing"));
    assert_eq!(serf["Node"], json!(agent.node));

    // Datacenters and status.
    assert_eq!(get_json(&agent, "/v1/catalog/datacenters"), json!(["dc1"]));
    let leader = get_json(&agent, "/v1/status/leader");
    assert!(leader.as_str().is_some_and(|s| !s.is_empty()), "{leader}");
    let peers = get_json(&agent, "/v1/status/peers");
    assert!(len(&peers) >= 1 && peers.as_array().expect("list").iter().all(Value::is_string), "{peers}");
    assert!(peers.as_array().expect("list").contains(&leader), "the leader is a peer: {peers}");

    // agent/self.
    let me = get_json(&agent, "/v1/agent/self");
    assert_eq!(me["Config"]["Datacenter"], json!("dc1"));
    assert_eq!(me["Config"]["NodeName"], json!(agent.node));
    let version = me["Config"]["Version"].as_str().expect("Version");
    let mut parts = version.split('.').map(|p| p.parse::<u64>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    assert!((major, minor) >= (1, 20), "Version {version} is at least 1.20");
    assert_eq!(me["Config"]["SessionTTLMin"], json!(10_000_000_000u64), "10 s in ns");

    // agent/members.
    let members = get_json(&agent, "/v1/agent/members");
    assert_eq!(len(&members), 1, "{members}");
    assert_eq!(members[0]["Name"], json!(agent.node));
    assert_eq!(members[0]["Status"], json!(1));
}

#[test]
fn an_unrenewed_ttl_check_turns_critical() {
    // Set up: a passing TTL check of 1 s.
    let agent = Agent::start_dev(&[]);
    put_ok(&agent, "/v1/agent/service/register", r#"{"Name":"api","Port":9000,"Check":{"TTL":"1s"}}"#);
    let passed_at = Instant::now();
    put_ok(&agent, "/v1/agent/check/pass/service:api", "");
    let seen_passing = wait_for(SYNC_DEADLINE, || {
        (health_check_status(&agent, "api", "service:api").as_deref() == Some("passing")).then(Instant::now)
    });
    assert!(seen_passing.is_some(), "the check passes in the catalog first");

    // Act: stop renewing.
    let critical =
        wait_until(SYNC_DEADLINE, || health_check_status(&agent, "api", "service:api").as_deref() == Some("critical"));

    // Assert: critical by itself, not before its TTL.
    let after = passed_at.elapsed();
    assert!(critical, "still not critical {after:?} after the last pass");
    assert!(after >= Duration::from_millis(900), "critical after {after:?}, before the 1 s TTL");
    assert_eq!(get_json(&agent, "/v1/agent/checks")["service:api"]["Status"], json!("critical"));
}

#[test]
fn agent_local_health_answers_by_aggregate_status() {
    // Set up: one instance of api with a TTL check, critical at registration.
    let agent = Agent::start_dev(&[]);
    put_ok(&agent, "/v1/agent/service/register", r#"{"Name":"api","ID":"api-1","Check":{"TTL":"30s"}}"#);

    // Act and assert: 503 while critical, 429 on warning (text form), 200 once passing.
    let critical = agent.get("/v1/agent/health/service/name/api");
    assert_eq!(critical.status, 503, "{}", critical.text());
    assert_eq!(critical.json()[0]["AggregatedStatus"], json!("critical"));

    put_ok(&agent, "/v1/agent/check/warn/service:api-1", "");
    let warning = agent.get("/v1/agent/health/service/id/api-1?format=text");
    assert_eq!((warning.status, warning.text().as_str()), (429, "warning"));

    put_ok(&agent, "/v1/agent/check/pass/service:api-1", "");
    let passing = agent.get("/v1/agent/health/service/id/api-1");
    assert_eq!(passing.status, 200, "{}", passing.text());
    assert_eq!(passing.json()["Service"]["ID"], json!("api-1"));

    assert_eq!(agent.get("/v1/agent/health/service/name/nope").status, 404);
}
