//! Reads of the catalog. Each returns an [`Answer`]: the result, the index a client should
//! block on next (`X-Consul-Index`, never below 1) and the watch set the result came from.
//!
//! Index rules follow Consul's: a single KV entry answers its `ModifyIndex`; a KV prefix
//! answers the greatest `ModifyIndex` of its entries and tombstones; anything empty answers
//! the table's index. Service and node answers use per-name indexes, so they move only when
//! something they show changed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{name_key, Catalog, HealthCheck, KvEntry, Node, Service, Session, Status, TxnOp, TxnOutcome};
use crate::watch::WatchKey;

/// A query result with its blocking index and watch set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer<T> {
    pub index: u64,
    pub value: T,
    pub watch: Vec<WatchKey>,
}

impl<T> Answer<T> {
    pub(super) fn new(index: u64, value: T, watch: Vec<WatchKey>) -> Self {
        Answer { index: index.max(1), value, watch }
    }

    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Answer<U> {
        Answer { index: self.index, value: f(self.value), watch: self.watch }
    }
}

/// A service instance with its node (`/v1/catalog/service/:name`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceInstance {
    pub node: Node,
    pub service: Service,
}

/// A service instance with its node and every check that bears on it, node checks included
/// (`/v1/health/service/:name`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceHealth {
    pub node: Node,
    pub service: Service,
    pub checks: Vec<HealthCheck>,
}

impl ServiceHealth {
    /// The worst status among the checks (passing when there are none).
    pub fn status(&self) -> Status {
        self.checks.iter().map(|c| c.status).max().unwrap_or(Status::Passing)
    }
}

/// One instance of a service as DNS needs it: where it is reached and how healthy it is, with
/// nothing else cloned (`ServiceHealth` carries every check and both records in full).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub node: String,
    pub node_address: String,
    /// Empty when the service uses the node's address.
    pub service_address: String,
    pub port: u16,
    pub weights: super::Weights,
    /// The worst status of the instance's checks, node-level ones included.
    pub status: Status,
}

impl From<&ServiceHealth> for Endpoint {
    fn from(h: &ServiceHealth) -> Self {
        Endpoint {
            node: h.node.node.clone(),
            node_address: h.node.address.clone(),
            service_address: h.service.address.clone(),
            port: h.service.port,
            weights: h.service.weights,
            status: h.status(),
        }
    }
}

/// Filters shared by catalog and health reads.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filter {
    /// Every tag must be present on the service (case-insensitive).
    pub tags: Vec<String>,
    /// Every pair must be present in the node's meta.
    pub node_meta: Vec<(String, String)>,
}

impl Filter {
    fn node_matches(&self, node: &Node) -> bool {
        self.node_meta.iter().all(|(k, v)| node.meta.get(k) == Some(v))
    }

    fn service_matches(&self, svc: &Service) -> bool {
        self.tags.iter().all(|want| svc.tags.iter().any(|t| t.eq_ignore_ascii_case(want)))
    }
}

impl Catalog {
    pub fn kv_get(&self, key: &str) -> Answer<Option<KvEntry>> {
        let watch = vec![WatchKey::Kv(key.to_string())];
        match self.kv.get(key) {
            Some(e) => Answer::new(e.modify_index, Some(e.clone()), watch),
            None => Answer::new(self.tables.kv, None, watch),
        }
    }

    pub fn kv_list(&self, prefix: &str) -> Answer<Vec<KvEntry>> {
        let entries: Vec<KvEntry> = self.kv_range(prefix).map(|(_, e)| e.clone()).collect();
        let index = self.prefix_index(prefix, entries.iter().map(|e| e.modify_index).max());
        Answer::new(index, entries, vec![WatchKey::KvPrefix(prefix.to_string())])
    }

    /// Keys under `prefix`; with a separator, each key is cut after the first separator that
    /// follows the prefix, and duplicates are dropped (`a/b`, `a/c/`).
    pub fn kv_keys(&self, prefix: &str, separator: Option<&str>) -> Answer<Vec<String>> {
        let mut keys: Vec<String> = Vec::new();
        let mut max_modify = None;
        for (key, entry) in self.kv_range(prefix) {
            max_modify = max_modify.max(Some(entry.modify_index));
            let shown = match separator.filter(|s| !s.is_empty()) {
                Some(sep) => match key[prefix.len()..].find(sep) {
                    Some(at) => &key[..prefix.len() + at + sep.len()],
                    None => key.as_str(),
                },
                None => key.as_str(),
            };
            if keys.last().map(String::as_str) != Some(shown) {
                keys.push(shown.to_string());
            }
        }
        let index = self.prefix_index(prefix, max_modify);
        Answer::new(index, keys, vec![WatchKey::KvPrefix(prefix.to_string())])
    }

    fn kv_range<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (&'a String, &'a KvEntry)> + 'a {
        self.kv.range(prefix.to_string()..).take_while(move |(k, _)| k.starts_with(prefix))
    }

    fn prefix_index(&self, prefix: &str, entries_max: Option<u64>) -> u64 {
        if prefix.is_empty() {
            return self.tables.kv;
        }
        let tomb_max = self
            .tombstones
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, t)| t.index)
            .max();
        match entries_max.max(tomb_max) {
            Some(i) if i > 0 => i,
            _ => self.tables.kv,
        }
    }

    pub fn nodes(&self, filter: &Filter) -> Answer<Vec<Node>> {
        let nodes = self.nodes.values().filter(|n| filter.node_matches(n)).cloned().collect();
        Answer::new(self.tables.nodes, nodes, vec![WatchKey::Nodes])
    }

    /// Service names with the union of their tags (`/v1/catalog/services`).
    pub fn services(&self, filter: &Filter) -> Answer<BTreeMap<String, Vec<String>>> {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for ((nk, _), svc) in &self.services {
            if !filter.node_meta.is_empty() && !filter.node_matches(&self.nodes[nk]) {
                continue;
            }
            let tags = out.entry(svc.service.clone()).or_default();
            for tag in &svc.tags {
                if !tags.contains(tag) {
                    tags.push(tag.clone());
                }
            }
        }
        for tags in out.values_mut() {
            tags.sort();
        }
        let (index, watch) = self.with_node_meta(filter, self.tables.services, WatchKey::Services);
        Answer::new(index, out, watch)
    }

    pub fn service_nodes(&self, name: &str, filter: &Filter) -> Answer<Vec<ServiceInstance>> {
        let sk = name_key(name);
        let value = self
            .instances(&sk, filter)
            .map(|(node, service)| ServiceInstance { node: node.clone(), service: service.clone() })
            .collect();
        Answer::new(self.service_index_of(&sk), value, vec![WatchKey::Service(sk)])
    }

    /// `/v1/health/service/:name`; with `passing`, entries with any non-passing check go.
    pub fn service_health(&self, name: &str, filter: &Filter, passing_only: bool) -> Answer<Vec<ServiceHealth>> {
        let sk = name_key(name);
        let value = self
            .instances(&sk, filter)
            .map(|(node, service)| {
                let nk = name_key(&node.node);
                let checks = self
                    .checks_of_node(&nk)
                    .filter(|c| c.service_id.is_empty() || c.service_id == service.id)
                    .cloned()
                    .collect();
                ServiceHealth { node: node.clone(), service: service.clone(), checks }
            })
            .filter(|h| !passing_only || h.checks.iter().all(|c| c.status == Status::Passing))
            .collect();
        Answer::new(self.service_index_of(&sk), value, vec![WatchKey::Service(sk)])
    }

    /// A service's instances as DNS answers them; the same instances and status as
    /// [`Catalog::service_health`], without cloning checks.
    pub fn service_endpoints(&self, name: &str, filter: &Filter) -> Answer<Vec<Endpoint>> {
        let sk = name_key(name);
        let value = self
            .instances(&sk, filter)
            .map(|(node, service)| {
                let nk = name_key(&node.node);
                let status = self
                    .checks_of_node(&nk)
                    .filter(|c| c.service_id.is_empty() || c.service_id == service.id)
                    .map(|c| c.status)
                    .max()
                    .unwrap_or(Status::Passing);
                Endpoint {
                    node: node.node.clone(),
                    node_address: node.address.clone(),
                    service_address: service.address.clone(),
                    port: service.port,
                    weights: service.weights,
                    status,
                }
            })
            .collect();
        Answer::new(self.service_index_of(&sk), value, vec![WatchKey::Service(sk)])
    }

    /// Checks of every instance of a service (`/v1/health/checks/:service`).
    pub fn service_checks(&self, name: &str, filter: &Filter) -> Answer<Vec<HealthCheck>> {
        let sk = name_key(name);
        let mut value = Vec::new();
        for (node, service) in self.instances(&sk, filter) {
            let nk = name_key(&node.node);
            value.extend(self.checks_of_node(&nk).filter(|c| c.service_id == service.id).cloned());
        }
        Answer::new(self.service_index_of(&sk), value, vec![WatchKey::Service(sk)])
    }

    /// A node and its services (`/v1/catalog/node/:node`).
    pub fn node_services(&self, node: &str) -> Answer<Option<(Node, Vec<Service>)>> {
        let nk = name_key(node);
        let value = self.nodes.get(&nk).map(|n| {
            let services = self
                .services
                .range((nk.clone(), String::new())..)
                .take_while(|((n, _), _)| n == &nk)
                .map(|(_, s)| s.clone())
                .collect();
            (n.clone(), services)
        });
        let index = self.node_index.get(&nk).copied().unwrap_or(self.tables.nodes);
        Answer::new(index, value, vec![WatchKey::Node(nk)])
    }

    /// Every check of a node (`/v1/health/node/:node`).
    pub fn node_checks(&self, node: &str) -> Answer<Vec<HealthCheck>> {
        let nk = name_key(node);
        let value = self.checks_of_node(&nk).cloned().collect();
        let index = self.node_index.get(&nk).copied().unwrap_or(self.tables.checks);
        Answer::new(index, value, vec![WatchKey::Node(nk)])
    }

    /// Checks in a state, or all of them (`/v1/health/state/:state`).
    pub fn checks_in_state(&self, state: Option<Status>, filter: &Filter) -> Answer<Vec<HealthCheck>> {
        let value = self
            .checks
            .iter()
            .filter(|(_, c)| state.is_none_or(|s| c.status == s))
            .filter(|((nk, _), _)| filter.node_meta.is_empty() || filter.node_matches(&self.nodes[nk]))
            .map(|(_, c)| c.clone())
            .collect();
        let (index, watch) = self.with_node_meta(filter, self.tables.checks, WatchKey::Checks);
        Answer::new(index, value, watch)
    }

    pub fn session_info(&self, id: &str) -> Answer<Option<Session>> {
        let value = self.sessions.get(id).cloned();
        Answer::new(self.tables.sessions, value, vec![WatchKey::Session(id.to_string())])
    }

    pub fn session_list(&self) -> Answer<Vec<Session>> {
        let value = self.sessions.values().cloned().collect();
        Answer::new(self.tables.sessions, value, vec![WatchKey::Sessions])
    }

    pub fn node_sessions(&self, node: &str) -> Answer<Vec<Session>> {
        let nk = name_key(node);
        let value =
            self.sessions_by_node.get(&nk).into_iter().flatten().map(|sid| self.sessions[sid].clone()).collect();
        Answer::new(self.tables.sessions, value, vec![WatchKey::NodeSessions(nk)])
    }

    /// Whether a node is registered.
    pub fn has_node(&self, node: &str) -> bool {
        self.nodes.contains_key(&name_key(node))
    }

    fn instances<'a>(&'a self, sk: &str, filter: &'a Filter) -> impl Iterator<Item = (&'a Node, &'a Service)> + 'a {
        self.services_by_name
            .get(sk)
            .into_iter()
            .flatten()
            .map(move |key| (&self.nodes[&key.0], &self.services[key]))
            .filter(move |(node, svc)| filter.node_matches(node) && filter.service_matches(svc))
    }

    fn checks_of_node<'a>(&'a self, nk: &str) -> impl Iterator<Item = &'a HealthCheck> + 'a {
        self.checks
            .range((nk.to_string(), String::new())..)
            .take_while({
                let nk = nk.to_string();
                move |((n, _), _)| *n == nk
            })
            .map(|(_, c)| c)
    }

    /// A list filtered by node meta also changes when a node's meta does, which touches only
    /// [`WatchKey::Nodes`]: such a list watches it too and answers the later of both tables.
    fn with_node_meta(&self, filter: &Filter, table_index: u64, key: WatchKey) -> (u64, Vec<WatchKey>) {
        if filter.node_meta.is_empty() {
            (table_index, vec![key])
        } else {
            (table_index.max(self.tables.nodes), vec![key, WatchKey::Nodes])
        }
    }

    fn service_index_of(&self, sk: &str) -> u64 {
        self.service_index.get(sk).copied().unwrap_or(self.tables.services)
    }
}

/// A read, as data: what a server forwards to its leader (or a client agent to a server) and
/// answers with [`Catalog::query`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Query {
    KvGet {
        key: String,
    },
    KvList {
        prefix: String,
    },
    KvKeys {
        prefix: String,
        separator: Option<String>,
    },
    Nodes {
        filter: Filter,
    },
    Services {
        filter: Filter,
    },
    ServiceNodes {
        name: String,
        filter: Filter,
    },
    ServiceHealth {
        name: String,
        filter: Filter,
        passing_only: bool,
    },
    ServiceChecks {
        name: String,
        filter: Filter,
    },
    /// A service's instances for DNS (lean [`Endpoint`]s).
    ServiceEndpoints {
        name: String,
        filter: Filter,
    },
    NodeServices {
        node: String,
    },
    NodeChecks {
        node: String,
    },
    ChecksInState {
        state: Option<Status>,
        filter: Filter,
    },
    SessionInfo {
        id: String,
    },
    SessionList,
    NodeSessions {
        node: String,
    },
    /// A transaction of read verbs only (no blocking: its answer watches nothing).
    ReadTxn {
        ops: Vec<TxnOp>,
    },
    /// The whole catalog (`GET /v1/snapshot`).
    Snapshot,
    /// Every prepared query (`GET /v1/query`).
    PreparedQueryList,
    /// One prepared query by ID (`GET /v1/query/:id`).
    PreparedQueryGet {
        id: String,
    },
    /// The prepared query an ID or a name resolves to (`/v1/query/:id/explain`).
    PreparedQueryResolve {
        id_or_name: String,
    },
    /// Resolves a prepared query and selects its instances here, in its own datacenter
    /// (`/v1/query/:id/execute`).
    PreparedQueryExecute {
        id_or_name: String,
    },
    /// Selects the instances of the given definition here: a failover datacenter, which does
    /// not store the query (Consul's `ExecuteRemote`). Answers [`QueryValue::ServiceHealth`].
    PreparedQueryRun {
        query: Box<super::PreparedQuery>,
    },
}

/// The answer to a [`Query`]; the variant follows the query's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum QueryValue {
    Kv(Option<KvEntry>),
    KvList(Vec<KvEntry>),
    Keys(Vec<String>),
    Nodes(Vec<Node>),
    Services(BTreeMap<String, Vec<String>>),
    ServiceNodes(Vec<ServiceInstance>),
    ServiceHealth(Vec<ServiceHealth>),
    Endpoints(Vec<Endpoint>),
    Checks(Vec<HealthCheck>),
    NodeServices(Option<(Node, Vec<Service>)>),
    Session(Option<Session>),
    Sessions(Vec<Session>),
    Txn(TxnOutcome),
    Snapshot(Box<super::CatalogSnapshot>),
    PreparedQueries(Vec<super::PreparedQuery>),
    PreparedQuery(Option<Box<super::PreparedQuery>>),
    PreparedQueryExecution(Option<Box<super::QueryExecution>>),
}

impl Catalog {
    /// Answers a [`Query`].
    pub fn query(&self, q: &Query) -> Answer<QueryValue> {
        match q {
            Query::KvGet { key } => self.kv_get(key).map(QueryValue::Kv),
            Query::KvList { prefix } => self.kv_list(prefix).map(QueryValue::KvList),
            Query::KvKeys { prefix, separator } => self.kv_keys(prefix, separator.as_deref()).map(QueryValue::Keys),
            Query::Nodes { filter } => self.nodes(filter).map(QueryValue::Nodes),
            Query::Services { filter } => self.services(filter).map(QueryValue::Services),
            Query::ServiceNodes { name, filter } => self.service_nodes(name, filter).map(QueryValue::ServiceNodes),
            Query::ServiceHealth { name, filter, passing_only } => {
                self.service_health(name, filter, *passing_only).map(QueryValue::ServiceHealth)
            }
            Query::ServiceChecks { name, filter } => self.service_checks(name, filter).map(QueryValue::Checks),
            Query::ServiceEndpoints { name, filter } => self.service_endpoints(name, filter).map(QueryValue::Endpoints),
            Query::NodeServices { node } => self.node_services(node).map(QueryValue::NodeServices),
            Query::NodeChecks { node } => self.node_checks(node).map(QueryValue::Checks),
            Query::ChecksInState { state, filter } => self.checks_in_state(*state, filter).map(QueryValue::Checks),
            Query::SessionInfo { id } => self.session_info(id).map(QueryValue::Session),
            Query::SessionList => self.session_list().map(QueryValue::Sessions),
            Query::NodeSessions { node } => self.node_sessions(node).map(QueryValue::Sessions),
            Query::ReadTxn { ops } => Answer::new(self.last_index(), QueryValue::Txn(self.read_txn(ops)), Vec::new()),
            Query::Snapshot => {
                Answer::new(self.last_index(), QueryValue::Snapshot(Box::new(self.snapshot())), Vec::new())
            }
            Query::PreparedQueryList => self.prepared_query_list().map(QueryValue::PreparedQueries),
            Query::PreparedQueryGet { id } => {
                self.prepared_query_get(id).map(|q| QueryValue::PreparedQuery(q.map(Box::new)))
            }
            Query::PreparedQueryResolve { id_or_name } => {
                self.prepared_query_resolve(id_or_name).map(|q| QueryValue::PreparedQuery(q.map(Box::new)))
            }
            Query::PreparedQueryExecute { id_or_name } => {
                self.prepared_query_execute(id_or_name).map(|e| QueryValue::PreparedQueryExecution(e.map(Box::new)))
            }
            Query::PreparedQueryRun { query } => self.prepared_query_run(query).map(QueryValue::ServiceHealth),
        }
    }
}
