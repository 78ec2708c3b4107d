//! Prepared queries against Consul's semantics (its `/v1/query` documentation and the state
//! store's integrity rules): validation texts, name and ID resolution, session-bound deletion,
//! snapshots, instance selection and the failover order.
//!
//! Each test is one behaviour, written as set-up / act / assert.

use std::collections::BTreeMap;

use super::*;
use crate::catalog::query::ServiceHealth;
use crate::catalog::{
    Command, Deregistration, HealthCheck, Node, Query, QueryValue, Registration, Request, Service, Session,
    TableIndexes,
};

const NODE: &str = "n1";
const ID1: &str = "11111111-2222-3333-4444-555555555555";
const ID2: &str = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee";

/// A catalog with its own apply index, node `n1` registered.
struct Fsm {
    catalog: Catalog,
    index: u64,
}

impl Fsm {
    fn new() -> Self {
        let mut fsm = Fsm { catalog: Catalog::new(), index: 0 };
        let node = Node { node: NODE.into(), address: "10.0.0.1".into(), ..Default::default() };
        assert_eq!(fsm.apply(Command::Register(Box::new(Registration { node, ..Default::default() }))), Response::Done);
        fsm.catalog.take_touched();
        fsm
    }

    fn apply(&mut self, command: Command) -> Response {
        self.index += 1;
        self.catalog.apply(self.index, &Request { now_ms: 1_700_000_000_000, command })
    }

    fn op(&mut self, op: PreparedQueryOp) -> Response {
        self.apply(Command::PreparedQuery(Box::new(op)))
    }

    fn create(&mut self, query: PreparedQuery) -> Response {
        self.op(PreparedQueryOp::Create(query))
    }

    fn session(&mut self, id: &str) {
        let session = Session { id: id.into(), node: NODE.into(), ..Default::default() };
        assert_eq!(self.apply(Command::SessionCreate(session)), Response::Done);
    }

    /// Registers instance `id` of `name` on node `node` with tags and one service check.
    fn instance(&mut self, node: &str, id: &str, name: &str, tags: &[&str], status: Status) {
        let service = Service {
            id: id.into(),
            service: name.into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            port: 80,
            ..Default::default()
        };
        let check =
            HealthCheck { check_id: format!("service:{id}"), service_id: id.into(), status, ..Default::default() };
        let reg = Registration {
            node: Node { node: node.into(), address: "10.0.0.2".into(), ..Default::default() },
            skip_node_update: false,
            service: Some(service),
            checks: vec![check],
        };
        assert_eq!(self.apply(Command::Register(Box::new(reg))), Response::Done);
    }

    fn ids(&self) -> Vec<String> {
        self.catalog.prepared_query_list().value.into_iter().map(|q| q.id).collect()
    }
}

fn query(id: &str, name: &str, service: &str) -> PreparedQuery {
    PreparedQuery {
        id: id.into(),
        name: name.into(),
        service: ServiceQuery { service: service.into(), ..Default::default() },
        ..Default::default()
    }
}

fn error_text(response: Response) -> String {
    match response {
        Response::Error(e) => e.to_string(),
        other => panic!("expected an error, got {other:?}"),
    }
}

fn health(tags: &[&str], checks: &[(&str, Status)]) -> ServiceHealth {
    ServiceHealth {
        node: Node { node: NODE.into(), ..Default::default() },
        service: Service {
            id: "web".into(),
            service: "web".into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            ..Default::default()
        },
        checks: checks
            .iter()
            .map(|(id, status)| HealthCheck { check_id: id.to_string(), status: *status, ..Default::default() })
            .collect(),
    }
}

// ---------------------------------------------------------------------------------------------
// Create, update, delete

#[test]
fn create_stores_the_query_under_its_lower_cased_id_with_its_indexes() {
    let mut fsm = Fsm::new();

    let response = fsm.create(query(&ID1.to_uppercase(), "web-q", "web"));

    assert_eq!(response, Response::Done);
    let stored = fsm.catalog.prepared_query_get(ID1).value.expect("stored");
    assert_eq!((stored.id.as_str(), stored.name.as_str()), (ID1, "web-q"));
    assert_eq!((stored.create_index, stored.modify_index), (fsm.index, fsm.index));
    assert_eq!(fsm.catalog.tables().prepared_queries, fsm.index);
    assert_eq!(fsm.catalog.prepared_query_list().index, fsm.index);
    assert_eq!(fsm.catalog.take_touched(), vec![crate::watch::WatchKey::PreparedQueries]);
}

#[test]
fn create_rejects_bad_definitions_with_consuls_texts_and_changes_nothing() {
    let mut fsm = Fsm::new();
    let bad = [
        (query(ID1, "q", ""), "Invalid prepared query: Must provide a Service name to query"),
        (query(ID1, "", "web"), "Invalid prepared query: Must be bound to a session"),
        (
            PreparedQuery { dns: QueryDns { ttl: "soon".into() }, ..query(ID1, "q", "web") },
            "Invalid prepared query: Bad DNS TTL 'soon': ",
        ),
        (
            PreparedQuery { token: REDACTED_TOKEN.into(), ..query(ID1, "q", "web") },
            "Invalid prepared query: Bad Token '<hidden>', it looks like a query definition with a redacted token",
        ),
        (PreparedQuery { session: "nope".into(), ..query(ID1, "q", "web") }, "invalid session \"nope\""),
        (query("not-a-uuid", "q", "web"), "is not a UUID"),
    ];
    for (definition, expected) in bad {
        let text = error_text(fsm.create(definition.clone()));
        assert!(text.starts_with(expected) || text.contains(expected), "{definition:?}: {text}");
    }
    assert!(fsm.ids().is_empty());
    assert_eq!(fsm.catalog.tables().prepared_queries, 0);
}

#[test]
fn a_good_dns_ttl_is_accepted_and_read_in_seconds() {
    let mut fsm = Fsm::new();

    let q = PreparedQuery { dns: QueryDns { ttl: "1m30s".into() }, ..query(ID1, "q", "web") };

    assert_eq!(fsm.create(q), Response::Done);
    assert_eq!(fsm.catalog.prepared_query_get(ID1).value.unwrap().dns_ttl_s(), Some(90));
    assert_eq!(query(ID2, "r", "web").dns_ttl_s(), None);
}

#[test]
fn names_are_unique_case_insensitively_and_never_alias_an_id() {
    let mut fsm = Fsm::new();
    assert_eq!(fsm.create(query(ID1, "Web", "web")), Response::Done);

    let same_name = fsm.create(query(ID2, "wEB", "web"));
    let id_as_name = fsm.create(query(ID2, &ID1.to_uppercase(), "web"));
    let same_id = fsm.create(query(ID1, "other", "web"));

    assert_eq!(error_text(same_name), "name 'wEB' aliases an existing query name");
    assert_eq!(error_text(id_as_name), format!("name '{}' aliases an existing query ID", ID1.to_uppercase()));
    assert!(error_text(same_id).contains("already exists"));
    assert_eq!(fsm.ids(), vec![ID1.to_string()]);
}

#[test]
fn update_replaces_the_definition_and_keeps_the_create_index() {
    let mut fsm = Fsm::new();
    fsm.create(query(ID1, "q", "web"));
    let created = fsm.index;

    let response = fsm.op(PreparedQueryOp::Update(PreparedQuery {
        service: ServiceQuery { service: "api".into(), only_passing: true, ..Default::default() },
        ..query(ID1, "Q", "")
    }));

    assert_eq!(response, Response::Done);
    let stored = fsm.catalog.prepared_query_get(ID1).value.unwrap();
    assert_eq!((stored.name.as_str(), stored.service.service.as_str()), ("Q", "api"));
    assert!(stored.service.only_passing);
    assert_eq!((stored.create_index, stored.modify_index), (created, fsm.index));
    assert_eq!(fsm.catalog.prepared_query_resolve("q").value.map(|q| q.id), Some(ID1.to_string()));
}

#[test]
fn a_rename_frees_the_old_name() {
    let mut fsm = Fsm::new();
    fsm.create(query(ID1, "old", "web"));

    fsm.op(PreparedQueryOp::Update(query(ID1, "new", "web")));

    assert_eq!(fsm.create(query(ID2, "old", "web")), Response::Done);
    assert_eq!(fsm.catalog.prepared_query_resolve("new").value.map(|q| q.id), Some(ID1.to_string()));
}

#[test]
fn update_and_delete_of_an_unknown_query_are_errors() {
    let mut fsm = Fsm::new();

    let update = fsm.op(PreparedQueryOp::Update(query(ID1, "q", "web")));
    let delete = fsm.op(PreparedQueryOp::Delete { id: ID2.into() });

    assert_eq!(error_text(update), format!("Cannot modify non-existent prepared query: '{ID1}'"));
    assert_eq!(error_text(delete), format!("Cannot modify non-existent prepared query: '{ID2}'"));
}

#[test]
fn delete_removes_the_query_and_its_name() {
    let mut fsm = Fsm::new();
    fsm.create(query(ID1, "q", "web"));
    fsm.catalog.take_touched();

    let response = fsm.op(PreparedQueryOp::Delete { id: ID1.to_uppercase() });

    assert_eq!(response, Response::Done);
    assert!(fsm.ids().is_empty());
    assert_eq!(fsm.catalog.prepared_query_resolve("q").value, None);
    assert_eq!(fsm.catalog.tables().prepared_queries, fsm.index);
    assert_eq!(fsm.catalog.take_touched(), vec![crate::watch::WatchKey::PreparedQueries]);
}

// ---------------------------------------------------------------------------------------------
// Resolution

#[test]
fn resolve_tries_the_id_then_the_exact_name() {
    let mut fsm = Fsm::new();
    fsm.create(query(ID1, "web-q", "web"));
    let uuid_name = "99999999-9999-9999-9999-999999999999";
    fsm.create(query(ID2, uuid_name, "web"));

    let resolve = |s: &str| fsm.catalog.prepared_query_resolve(s).value.map(|q| q.id);

    assert_eq!(resolve(ID1), Some(ID1.to_string()));
    assert_eq!(resolve(&ID1.to_uppercase()), Some(ID1.to_string()));
    assert_eq!(resolve("WEB-Q"), Some(ID1.to_string()));
    assert_eq!(resolve(uuid_name), Some(ID2.to_string()), "a UUID-shaped name matching no ID");
    assert_eq!(resolve("web"), None, "names match exactly, not by prefix");
    assert_eq!(resolve(""), None);
    assert_eq!(fsm.catalog.prepared_query_get("web-q").value, None, "get is by ID only");
}

// ---------------------------------------------------------------------------------------------
// Sessions

#[test]
fn destroying_the_bound_session_deletes_the_query_and_only_it() {
    let mut fsm = Fsm::new();
    fsm.session("s1");
    fsm.create(PreparedQuery { session: "s1".into(), ..query(ID1, "", "web") });
    fsm.create(query(ID2, "kept", "web"));
    fsm.catalog.take_touched();

    assert_eq!(fsm.apply(Command::SessionDestroy { id: "s1".into() }), Response::Done);

    assert_eq!(fsm.ids(), vec![ID2.to_string()]);
    assert_eq!(fsm.catalog.tables().prepared_queries, fsm.index);
    assert!(fsm.catalog.take_touched().contains(&crate::watch::WatchKey::PreparedQueries));
}

#[test]
fn deregistering_the_sessions_node_deletes_its_bound_queries() {
    let mut fsm = Fsm::new();
    fsm.session("s1");
    fsm.create(PreparedQuery { session: "s1".into(), ..query(ID1, "bound", "web") });

    let dereg = Deregistration { node: NODE.into(), service_id: None, check_id: None };
    assert_eq!(fsm.apply(Command::Deregister(dereg)), Response::Done);

    assert!(fsm.ids().is_empty());
    assert_eq!(fsm.catalog.prepared_query_resolve("bound").value, None);
}

// ---------------------------------------------------------------------------------------------
// Snapshots

#[test]
fn snapshots_carry_queries_and_restore_rebuilds_names_and_session_bindings() {
    let mut fsm = Fsm::new();
    fsm.session("s1");
    fsm.create(PreparedQuery { session: "s1".into(), ..query(ID1, "bound", "web") });
    fsm.create(query(ID2, "free", "api"));
    let snap = fsm.catalog.snapshot();
    assert_eq!(snap.prepared_queries.len(), 2);

    let mut restored = Fsm { catalog: Catalog::restore(snap.clone()).expect("consistent"), index: fsm.index };

    assert_eq!(restored.catalog.snapshot(), snap);
    assert_eq!(restored.catalog.prepared_query_resolve("FREE").value.map(|q| q.id), Some(ID2.to_string()));
    restored.apply(Command::SessionDestroy { id: "s1".into() });
    assert_eq!(restored.ids(), vec![ID2.to_string()]);
}

#[test]
fn restore_refuses_a_query_bound_to_a_missing_session() {
    let mut fsm = Fsm::new();
    fsm.create(query(ID1, "q", "web"));
    let mut snap = fsm.catalog.snapshot();
    snap.prepared_queries[0].session = "ghost".into();

    let err = Catalog::restore(snap).expect_err("inconsistent");

    assert!(err.contains("dead session"), "{err}");
}

#[test]
fn table_indexes_written_before_prepared_queries_still_decode() {
    #[derive(serde::Serialize)]
    struct OldTables {
        nodes: u64,
        services: u64,
        checks: u64,
        kv: u64,
        sessions: u64,
    }
    let bytes =
        crate::storage::codec::encode(&OldTables { nodes: 1, services: 2, checks: 3, kv: 4, sessions: 5 }).unwrap();

    let tables: TableIndexes = crate::storage::codec::decode(&bytes).expect("old tables decode");

    assert_eq!((tables.sessions, tables.prepared_queries), (5, 0));
}

#[test]
fn a_restore_command_reindexes_queries() {
    let mut fsm = Fsm::new();
    fsm.create(query(ID1, "q", "web"));
    let snap = fsm.catalog.snapshot();

    assert_eq!(fsm.apply(Command::Restore(Box::new(snap))), Response::Done);

    let q = fsm.catalog.prepared_query_get(ID1).value.unwrap();
    assert_eq!(
        (q.create_index, q.modify_index, fsm.catalog.tables().prepared_queries),
        (fsm.index, fsm.index, fsm.index)
    );
}

// ---------------------------------------------------------------------------------------------
// Selection

#[test]
fn critical_instances_go_and_warning_ones_stay_unless_only_passing() {
    let mut sq = ServiceQuery { service: "web".into(), ..Default::default() };
    let passing = health(&[], &[("serfHealth", Status::Passing), ("service:web", Status::Passing)]);
    let warning = health(&[], &[("serfHealth", Status::Passing), ("service:web", Status::Warning)]);
    let critical = health(&[], &[("serfHealth", Status::Critical), ("service:web", Status::Passing)]);

    assert!(sq.admits(&passing) && sq.admits(&warning) && !sq.admits(&critical));
    sq.only_passing = true;
    assert!(sq.admits(&passing) && !sq.admits(&warning) && !sq.admits(&critical));
}

#[test]
fn ignored_checks_do_not_count() {
    let sq = ServiceQuery {
        service: "web".into(),
        only_passing: true,
        ignore_check_ids: vec!["flaky".into()],
        ..Default::default()
    };

    assert!(sq.admits(&health(&[], &[("flaky", Status::Critical), ("other", Status::Passing)])));
    assert!(!sq.admits(&health(&[], &[("flaky", Status::Passing), ("other", Status::Warning)])));
}

#[test]
fn tags_must_all_be_present_and_negated_ones_absent_case_insensitively() {
    let sq =
        ServiceQuery { service: "web".into(), tags: vec!["Primary".into(), "!canary".into()], ..Default::default() };

    assert!(sq.admits(&health(&["primary", "v2"], &[])));
    assert!(!sq.admits(&health(&["v2"], &[])), "required tag missing");
    assert!(!sq.admits(&health(&["primary", "CANARY"], &[])), "banned tag present");
}

#[test]
fn node_and_service_meta_must_match() {
    let sq = ServiceQuery {
        service: "web".into(),
        node_meta: BTreeMap::from([("rack".to_string(), "r1".to_string())]),
        service_meta: BTreeMap::from([("env".to_string(), "prod".to_string())]),
        ..Default::default()
    };
    let mut h = health(&[], &[]);
    h.node.meta.insert("rack".into(), "r1".into());
    h.service.meta.insert("env".into(), "prod".into());
    assert!(sq.admits(&h));

    h.service.meta.insert("env".into(), "dev".into());
    assert!(!sq.admits(&h));
}

#[test]
fn execute_selects_admitted_instances_and_watches_the_service_and_the_table() {
    let mut fsm = Fsm::new();
    fsm.instance("a", "web-a", "web", &["primary"], Status::Passing);
    fsm.instance("b", "web-b", "web", &["primary"], Status::Critical);
    fsm.instance("c", "web-c", "web", &["canary"], Status::Warning);
    fsm.create(PreparedQuery {
        service: ServiceQuery { service: "web".into(), tags: vec!["primary".into()], ..Default::default() },
        ..query(ID1, "web-q", "")
    });

    let answer = fsm.catalog.prepared_query_execute("web-q");

    let execution = answer.value.expect("resolved");
    let ids: Vec<&str> = execution.nodes.iter().map(|h| h.service.id.as_str()).collect();
    assert_eq!(ids, ["web-a"]);
    assert_eq!(execution.query.id, ID1);
    assert_eq!(answer.index, fsm.index);
    assert!(answer.watch.contains(&crate::watch::WatchKey::PreparedQueries));
    assert!(answer.watch.contains(&crate::watch::WatchKey::Service("web".into())));
    assert_eq!(fsm.catalog.prepared_query_execute("nope").value, None);
}

#[test]
fn run_applies_a_definition_this_catalog_does_not_store() {
    let mut fsm = Fsm::new();
    fsm.instance("a", "web-a", "web", &[], Status::Warning);
    let definition = PreparedQuery {
        service: ServiceQuery { service: "web".into(), only_passing: true, ..Default::default() },
        ..query(ID1, "remote", "")
    };

    let strict = fsm.catalog.query(&Query::PreparedQueryRun { query: Box::new(definition.clone()) });
    let relaxed = fsm.catalog.prepared_query_run(&query(ID1, "remote", "web"));

    assert!(matches!(strict.value, QueryValue::ServiceHealth(ref v) if v.is_empty()));
    assert_eq!(relaxed.value.len(), 1);
}

// ---------------------------------------------------------------------------------------------
// Failover order

fn dcs(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

#[test]
fn failover_tries_the_nearest_n_others_then_the_listed_known_ones_each_once() {
    let failover = QueryFailover { nearest_n: 2, datacenters: dcs(&["dc4", "dc2", "dc9", "dc1", "dc4"]) };
    let known = dcs(&["dc1", "dc3", "dc2", "dc4"]);

    let plan = failover.plan("dc1", &known);

    assert_eq!(plan.targets, dcs(&["dc3", "dc2", "dc4"]));
    assert_eq!(plan.skipped, dcs(&["dc9", "dc1"]));
}

#[test]
fn failover_without_nearest_n_keeps_the_listed_order() {
    let failover = QueryFailover { nearest_n: 0, datacenters: dcs(&["dc3", "dc2"]) };

    let plan = failover.plan("dc1", &dcs(&["dc1", "dc2", "dc3"]));

    assert_eq!(plan.targets, dcs(&["dc3", "dc2"]));
    assert!(failover.is_set() && !QueryFailover::default().is_set());
    assert!(QueryFailover::default().plan("dc1", &dcs(&["dc1", "dc2"])).targets.is_empty());
}

#[test]
fn a_large_nearest_n_takes_every_other_datacenter() {
    let failover = QueryFailover { nearest_n: u32::MAX, datacenters: vec![] };

    let plan = failover.plan("dc2", &dcs(&["dc1", "dc2", "dc3"]));

    assert_eq!(plan.targets, dcs(&["dc1", "dc3"]));
}

#[test]
fn the_json_shape_is_consuls() {
    let q = PreparedQuery {
        service: ServiceQuery {
            failover: QueryFailover { nearest_n: 3, datacenters: dcs(&["dc2"]) },
            ignore_check_ids: vec!["c".into()],
            ..ServiceQuery::default()
        },
        dns: QueryDns { ttl: "10s".into() },
        ..query(ID1, "q", "web")
    };

    let json = serde_json::to_value(&q).unwrap();

    assert_eq!(json["ID"], ID1);
    assert_eq!(json["Service"]["Failover"]["NearestN"], 3);
    assert_eq!(json["Service"]["Failover"]["Datacenters"][0], "dc2");
    assert_eq!(json["Service"]["IgnoreCheckIDs"][0], "c");
    assert_eq!(json["Service"]["OnlyPassing"], false);
    assert_eq!(json["DNS"]["TTL"], "10s");
    assert!(json["CreateIndex"].is_u64() && json["ModifyIndex"].is_u64());
}
