//! Prepared queries (`/v1/query`): stored service queries that clients execute by ID or name,
//! with health and tag filters, and a failover policy to other datacenters.
//!
//! This room holds the definition ([`PreparedQuery`], Consul's JSON shape), its validation
//! (Consul's error texts), the decisions an execution makes — which instances a query admits
//! ([`ServiceQuery::admits`]) and which datacenters it fails over to, in what order
//! ([`QueryFailover::plan`]) — and the catalog's table: apply, reads and invariants.
//!
//! An execution's I/O (reading another datacenter's servers) is not here: the agent drives it
//! (`legate_agent::prepared::execute`) with [`super::Query::PreparedQueryExecute`] in the
//! query's own datacenter and [`super::Query::PreparedQueryRun`] in each failover datacenter,
//! which does not store the definition (Consul's `ExecuteRemote`).
//!
//! IDs are UUIDs chosen by the proposer (the agent, at random) and stored lower-cased; names are
//! unique and match case-insensitively, as Consul's name index does. A query bound to a
//! session is deleted when that session is invalidated. Templates (`name_prefix_match`) are not
//! supported: the agent rejects them at the edge.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::query::{Answer, ServiceHealth};
use super::{name_key, ApplyError, Catalog, Response, Status};
use crate::watch::WatchKey;

/// What Consul shows instead of a token to readers who may not see it; a definition carrying
/// it was copied from such an answer and would silently lose its token.
pub const REDACTED_TOKEN: &str = "<hidden>";

/// A prepared query (Consul's `PreparedQuery`, without templates).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PreparedQuery {
    #[serde(rename = "ID")]
    pub id: String,
    /// Optional; unique among queries (case-insensitively). An unnamed query must be bound
    /// to a session.
    pub name: String,
    /// A session whose invalidation deletes this query; empty for none.
    pub session: String,
    /// The ACL token executions use (kept and shown; Legate has no ACLs yet).
    pub token: String,
    pub service: ServiceQuery,
    #[serde(rename = "DNS")]
    pub dns: QueryDns,
    pub create_index: u64,
    pub modify_index: u64,
}

/// What a prepared query selects (Consul's `ServiceQuery`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceQuery {
    pub service: String,
    pub failover: QueryFailover,
    /// Drop instances with a warning check too (critical ones always go).
    pub only_passing: bool,
    /// Checks that do not count when judging health.
    #[serde(rename = "IgnoreCheckIDs")]
    pub ignore_check_ids: Vec<String>,
    /// Kept and shown; Legate has no network coordinates, so results are shuffled instead.
    pub near: String,
    /// Every tag must be present and no `!tag` may be (case-insensitive).
    pub tags: Vec<String>,
    pub node_meta: BTreeMap<String, String>,
    pub service_meta: BTreeMap<String, String>,
    /// Kept and shown; Legate has no Connect, so it selects nothing different.
    pub connect: bool,
}

/// Where an execution goes when its own datacenter has no instance left.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct QueryFailover {
    /// How many of the nearest other datacenters to try first.
    #[serde(rename = "NearestN")]
    pub nearest_n: u32,
    /// Datacenters to try after those, in this order.
    pub datacenters: Vec<String>,
}

/// DNS options of a prepared query.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryDns {
    /// A Go duration, or empty for the agent's default.
    #[serde(rename = "TTL")]
    pub ttl: String,
}

/// A change of the prepared-query table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PreparedQueryOp {
    /// Stores a new query under the (proposer-chosen, UUID) ID it carries.
    Create(PreparedQuery),
    /// Replaces the definition of an existing query, keeping its create index.
    Update(PreparedQuery),
    /// Removes a query.
    Delete { id: String },
}

/// A query resolved in its own datacenter with the instances it selects there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryExecution {
    pub query: PreparedQuery,
    pub nodes: Vec<ServiceHealth>,
}

/// The datacenters an execution fails over to, and the listed ones nobody knows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FailoverPlan {
    /// In the order to try them; each once, never the query's own.
    pub targets: Vec<String>,
    /// Entries of `Datacenters` that are not known (or are the query's own): skipped.
    pub skipped: Vec<String>,
}

/// Whether `s` has a UUID's shape (Consul only looks a query up by ID when it does).
pub fn looks_like_uuid(s: &str) -> bool {
    s.len() == 36
        && s.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

impl PreparedQuery {
    /// Consul's checks of a definition before it is stored (`parseQuery`), with its texts.
    /// Uniqueness and the session's existence depend on the table and are checked by apply.
    pub fn validate(&self) -> Result<(), ApplyError> {
        let invalid = |why: String| Err(ApplyError::Invalid(format!("Invalid prepared query: {why}")));
        if self.name.is_empty() && self.session.is_empty() {
            return invalid("Must be bound to a session".into());
        }
        if self.token == REDACTED_TOKEN {
            return invalid(format!(
                "Bad Token '{REDACTED_TOKEN}', it looks like a query definition with a redacted token was submitted"
            ));
        }
        if self.service.service.is_empty() {
            return invalid("Must provide a Service name to query".into());
        }
        if let Err(e) = super::registry::validate_meta(&self.service.node_meta) {
            return invalid(e.to_string());
        }
        if !self.dns.ttl.is_empty() {
            if let Err(e) = crate::duration::parse_ns(&self.dns.ttl) {
                return invalid(format!("Bad DNS TTL '{}': {e}", self.dns.ttl));
            }
        }
        Ok(())
    }

    /// The DNS TTL in seconds, if the query sets one.
    pub fn dns_ttl_s(&self) -> Option<u32> {
        if self.dns.ttl.is_empty() {
            return None;
        }
        let ns = crate::duration::parse_ns(&self.dns.ttl).ok()?;
        Some(u32::try_from(ns / 1_000_000_000).unwrap_or(u32::MAX))
    }
}

impl ServiceQuery {
    /// Whether an instance belongs in an execution's answer: no check (but the ignored ones)
    /// critical, nor warning with `OnlyPassing`; node and service meta as asked; every tag
    /// present and no `!tag`.
    pub fn admits(&self, instance: &ServiceHealth) -> bool {
        self.healthy(instance)
            && meta_matches(&self.node_meta, &instance.node.meta)
            && meta_matches(&self.service_meta, &instance.service.meta)
            && self.tags_match(&instance.service.tags)
    }

    fn healthy(&self, instance: &ServiceHealth) -> bool {
        instance.checks.iter().filter(|c| !self.ignore_check_ids.contains(&c.check_id)).all(|c| match c.status {
            Status::Passing => true,
            Status::Warning => !self.only_passing,
            Status::Critical => false,
        })
    }

    fn tags_match(&self, tags: &[String]) -> bool {
        let has = |want: &str| tags.iter().any(|t| t.eq_ignore_ascii_case(want));
        self.tags.iter().all(|want| match want.strip_prefix('!') {
            Some(banned) => !has(banned),
            None => has(want),
        })
    }
}

fn meta_matches(want: &BTreeMap<String, String>, have: &BTreeMap<String, String>) -> bool {
    want.iter().all(|(k, v)| have.get(k) == Some(v))
}

impl QueryFailover {
    /// Whether the query fails over at all.
    pub fn is_set(&self) -> bool {
        self.nearest_n > 0 || !self.datacenters.is_empty()
    }

    /// The datacenters to try, in order, for a query of datacenter `own`, given every known
    /// datacenter nearest first: the `NearestN` nearest others, then the listed ones that are
    /// known and not yet in the plan. Consul's order; each datacenter at most once.
    pub fn plan(&self, own: &str, known_nearest_first: &[String]) -> FailoverPlan {
        let others: Vec<&String> = known_nearest_first.iter().filter(|dc| !dc.eq_ignore_ascii_case(own)).collect();
        let mut plan = FailoverPlan::default();
        for dc in others.iter().take(usize::try_from(self.nearest_n).unwrap_or(usize::MAX)) {
            if !plan.targets.contains(dc) {
                plan.targets.push((*dc).clone());
            }
        }
        for dc in &self.datacenters {
            if !others.contains(&dc) {
                plan.skipped.push(dc.clone());
            } else if !plan.targets.contains(dc) {
                plan.targets.push(dc.clone());
            }
        }
        plan
    }
}

impl Catalog {
    /// Applies a create, update or delete of a prepared query; a rejected one changes nothing.
    pub(super) fn apply_prepared_query(&mut self, index: u64, op: &PreparedQueryOp) -> Response {
        let result = match op {
            PreparedQueryOp::Create(query) => self.prepared_query_create(index, query),
            PreparedQueryOp::Update(query) => self.prepared_query_update(index, query),
            PreparedQueryOp::Delete { id } => self.prepared_query_delete(index, id),
        };
        match result {
            Ok(()) => Response::Done,
            Err(e) => Response::Error(e),
        }
    }

    fn prepared_query_create(&mut self, index: u64, query: &PreparedQuery) -> Result<(), ApplyError> {
        if !looks_like_uuid(&query.id) {
            return Err(ApplyError::Invalid(format!("Prepared query ID {:?} is not a UUID", query.id)));
        }
        let id = query.id.to_ascii_lowercase();
        if self.prepared_queries.contains_key(&id) {
            return Err(ApplyError::Invalid(format!("Prepared query ID {id:?} already exists")));
        }
        query.validate()?;
        self.check_query_references(&id, query)?;
        let new = PreparedQuery { id, create_index: index, modify_index: index, ..query.clone() };
        self.insert_prepared_query(index, new);
        Ok(())
    }

    fn prepared_query_update(&mut self, index: u64, query: &PreparedQuery) -> Result<(), ApplyError> {
        let id = query.id.to_ascii_lowercase();
        let Some(old) = self.prepared_queries.get(&id) else {
            return Err(non_existent(&query.id));
        };
        let create_index = old.create_index;
        query.validate()?;
        self.check_query_references(&id, query)?;
        self.remove_prepared_query(&id);
        let new = PreparedQuery { id, create_index, modify_index: index, ..query.clone() };
        self.insert_prepared_query(index, new);
        Ok(())
    }

    fn prepared_query_delete(&mut self, index: u64, id: &str) -> Result<(), ApplyError> {
        if self.remove_prepared_query(&id.to_ascii_lowercase()).is_none() {
            return Err(non_existent(id));
        }
        self.prepared_queries_changed(index);
        Ok(())
    }

    /// Consul's integrity checks: the name is no other query's name nor any query's ID, and
    /// the session exists.
    fn check_query_references(&self, id: &str, query: &PreparedQuery) -> Result<(), ApplyError> {
        if !query.name.is_empty() {
            if self.query_names.get(&name_key(&query.name)).is_some_and(|other| other != id) {
                return Err(ApplyError::Invalid(format!("name '{}' aliases an existing query name", query.name)));
            }
            if looks_like_uuid(&query.name) && self.prepared_queries.contains_key(&query.name.to_ascii_lowercase()) {
                return Err(ApplyError::Invalid(format!("name '{}' aliases an existing query ID", query.name)));
            }
        }
        if !query.session.is_empty() && !self.sessions.contains_key(&query.session) {
            return Err(ApplyError::InvalidSession(query.session.clone()));
        }
        Ok(())
    }

    fn insert_prepared_query(&mut self, index: u64, query: PreparedQuery) {
        assert!(!self.prepared_queries.contains_key(&query.id), "prepared query {} inserted twice", query.id);
        if !query.name.is_empty() {
            self.query_names.insert(name_key(&query.name), query.id.clone());
        }
        if !query.session.is_empty() {
            self.queries_by_session.entry(query.session.clone()).or_default().insert(query.id.clone());
        }
        self.prepared_queries.insert(query.id.clone(), query);
        self.prepared_queries_changed(index);
    }

    /// Removes a query and its derived entries; the caller records the change.
    fn remove_prepared_query(&mut self, id: &str) -> Option<PreparedQuery> {
        let query = self.prepared_queries.remove(id)?;
        if !query.name.is_empty() {
            self.query_names.remove(&name_key(&query.name));
        }
        if let Some(ids) = self.queries_by_session.get_mut(&query.session) {
            ids.remove(id);
            if ids.is_empty() {
                self.queries_by_session.remove(&query.session);
            }
        }
        Some(query)
    }

    fn prepared_queries_changed(&mut self, index: u64) {
        self.tables.prepared_queries = index;
        self.touch(WatchKey::PreparedQueries);
    }

    /// Deletes the queries bound to session `sid` (it is being invalidated), as Consul does.
    pub(super) fn delete_session_queries(&mut self, index: u64, sid: &str) {
        let Some(ids) = self.queries_by_session.remove(sid) else {
            return;
        };
        for id in &ids {
            self.remove_prepared_query(id);
        }
        self.prepared_queries_changed(index);
    }

    /// Every prepared query (`GET /v1/query`), by ID.
    pub fn prepared_query_list(&self) -> Answer<Vec<PreparedQuery>> {
        let value = self.prepared_queries.values().cloned().collect();
        Answer::new(self.tables.prepared_queries, value, vec![WatchKey::PreparedQueries])
    }

    /// One prepared query by ID (`GET /v1/query/:id`).
    pub fn prepared_query_get(&self, id: &str) -> Answer<Option<PreparedQuery>> {
        let value = self.prepared_queries.get(&id.to_ascii_lowercase()).cloned();
        Answer::new(self.tables.prepared_queries, value, vec![WatchKey::PreparedQueries])
    }

    /// The query an ID or a name resolves to: by ID when it has a UUID's shape, else (or when
    /// no ID matches) by exact name, case-insensitively. Empty resolves to nothing.
    pub fn prepared_query_resolve(&self, id_or_name: &str) -> Answer<Option<PreparedQuery>> {
        let value = self.resolve_prepared_query(id_or_name).cloned();
        Answer::new(self.tables.prepared_queries, value, vec![WatchKey::PreparedQueries])
    }

    fn resolve_prepared_query(&self, id_or_name: &str) -> Option<&PreparedQuery> {
        if id_or_name.is_empty() {
            return None;
        }
        if looks_like_uuid(id_or_name) {
            if let Some(query) = self.prepared_queries.get(&id_or_name.to_ascii_lowercase()) {
                return Some(query);
            }
        }
        self.query_names.get(&name_key(id_or_name)).map(|id| &self.prepared_queries[id])
    }

    /// The instances `query` selects in this catalog, in the catalog's order (the executor
    /// shuffles). Used for failover datacenters, which do not store the definition.
    pub fn prepared_query_run(&self, query: &PreparedQuery) -> Answer<Vec<ServiceHealth>> {
        let mut answer = self.service_health(&query.service.service, &super::query::Filter::default(), false);
        answer.value.retain(|instance| query.service.admits(instance));
        answer
    }

    /// Resolves `id_or_name` and runs it here; its index moves with the query table and with
    /// the service.
    pub fn prepared_query_execute(&self, id_or_name: &str) -> Answer<Option<QueryExecution>> {
        let Some(query) = self.resolve_prepared_query(id_or_name) else {
            return Answer::new(self.tables.prepared_queries, None, vec![WatchKey::PreparedQueries]);
        };
        let run = self.prepared_query_run(query);
        let mut watch = run.watch;
        watch.push(WatchKey::PreparedQueries);
        let execution = QueryExecution { query: query.clone(), nodes: run.value };
        Answer::new(run.index.max(self.tables.prepared_queries), Some(execution), watch)
    }

    /// Checks the prepared-query table against its derived indexes and the sessions.
    pub(super) fn verify_prepared_queries(&self) -> Result<(), String> {
        let mut named = 0;
        for (id, query) in &self.prepared_queries {
            if &query.id != id || !looks_like_uuid(id) || id.to_ascii_lowercase() != *id {
                return Err(format!("prepared query key {id} holds {}", query.id));
            }
            if query.create_index > query.modify_index || query.modify_index > self.tables.prepared_queries {
                return Err(format!("prepared query {id} has indexes {}/{}", query.create_index, query.modify_index));
            }
            if !query.name.is_empty() {
                named += 1;
                if self.query_names.get(&name_key(&query.name)) != Some(id) {
                    return Err(format!("prepared query {id} missing from the name index"));
                }
            }
            if !query.session.is_empty() {
                if !self.sessions.contains_key(&query.session) {
                    return Err(format!("prepared query {id} bound to dead session {}", query.session));
                }
                if !self.queries_by_session.get(&query.session).is_some_and(|ids| ids.contains(id)) {
                    return Err(format!("prepared query {id} missing from the session index"));
                }
            }
        }
        if named != self.query_names.len() {
            return Err(format!("name index holds {} of {named} named queries", self.query_names.len()));
        }
        let bound: usize = self.queries_by_session.values().map(BTreeSet::len).sum();
        let expected = self.prepared_queries.values().filter(|q| !q.session.is_empty()).count();
        if bound != expected || self.queries_by_session.values().any(BTreeSet::is_empty) {
            return Err(format!("session index holds {bound} of {expected} bound queries"));
        }
        Ok(())
    }

    /// Loads queries from a snapshot (derived indexes included); a second query with the same
    /// name is an inconsistency.
    pub(super) fn restore_prepared_queries(&mut self, queries: Vec<PreparedQuery>) -> Result<(), String> {
        for query in queries {
            if !query.name.is_empty() && self.query_names.contains_key(&name_key(&query.name)) {
                return Err(format!("two prepared queries are named {:?}", query.name));
            }
            if self.prepared_queries.contains_key(&query.id) {
                return Err(format!("two prepared queries have the ID {}", query.id));
            }
            if !query.name.is_empty() {
                self.query_names.insert(name_key(&query.name), query.id.clone());
            }
            if !query.session.is_empty() {
                self.queries_by_session.entry(query.session.clone()).or_default().insert(query.id.clone());
            }
            self.prepared_queries.insert(query.id.clone(), query);
        }
        Ok(())
    }
}

fn non_existent(id: &str) -> ApplyError {
    ApplyError::Invalid(format!("Cannot modify non-existent prepared query: '{id}'"))
}

#[cfg(test)]
#[path = "prepared_tests.rs"]
mod tests;
