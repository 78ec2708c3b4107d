//! Executing prepared queries, for `GET /v1/query/:id/execute` and for DNS
//! (`<name>.query.consul`): one entry point, [`execute`], that takes only the agent's
//! [`Routes`], so any front end can call it.
//!
//! An execution resolves the query in its own datacenter (`dc`, or this one) and selects the
//! instances of its service there, in one read ([`Query::PreparedQueryExecute`]): critical
//! instances go, warning ones too with `OnlyPassing`, `IgnoreCheckIDs` do not count, tags
//! (`!tag` banned), node and service meta filter (the decisions are core's,
//! [`legate_core::catalog::ServiceQuery::admits`]). When nothing is left and the query has a
//! failover policy, the datacenters of [`legate_core::catalog::QueryFailover::plan`] are tried
//! in order — the `NearestN` nearest others from [`Routes::datacenters`], then the listed ones
//! that are known — each with the definition itself ([`Query::PreparedQueryRun`], Consul's
//! `ExecuteRemote`: the other datacenter does not store the query), through
//! [`Routes::backend`]. A failover datacenter that cannot be reached is logged and skipped;
//! the first with instances answers. As Consul does, the instances are then shuffled (there
//! are no network coordinates to sort by) and cut to the limit.

use legate_core::catalog::query::ServiceHealth;
use legate_core::catalog::{Answer, PreparedQuery, Query, QueryDns, QueryExecution, QueryValue};
use legate_runtime::api::Api as _;
use legate_runtime::{QueryOptions, QueryResult, ReadError};
use rand::seq::SliceRandom as _;

use crate::backend::Routes;

/// How to execute.
#[derive(Clone, Debug, Default)]
pub struct ExecuteOptions {
    /// Consistency and blocking of the read in the query's own datacenter. Failover reads
    /// keep the consistency and never block (another datacenter's index means nothing here).
    pub read: QueryOptions,
    /// Keep at most this many instances, after shuffling (Consul's `?limit=`); 0 keeps all.
    pub limit: usize,
}

/// What an execution found (Consul's `PreparedQueryExecuteResponse`, plus the read's meta).
#[derive(Clone, Debug)]
pub struct Executed {
    /// The query as resolved in its own datacenter.
    pub query: PreparedQuery,
    /// The service name the query selects (also when `nodes` is empty).
    pub service: String,
    /// The instances, shuffled, with their node and checks, as `/v1/health/service` has them.
    pub nodes: Vec<ServiceHealth>,
    /// The query's DNS options (`DNS.TTL`; empty for the agent's default).
    pub dns: QueryDns,
    /// The datacenter that answered: the query's own, or the failover datacenter that
    /// provided `nodes` (with no instances anywhere, the last one that answered).
    pub datacenter: String,
    /// How many failover datacenters were tried, unreachable ones included (0 when the
    /// query's own datacenter had instances).
    pub failovers: u32,
    /// The read in the query's own datacenter, for `X-Consul-Index` and the other headers.
    pub meta: QueryResult<()>,
}

/// Why an execution has no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExecuteError {
    /// No query has this ID or name (Consul's text; `/execute` answers it with a 404).
    #[error("Query not found")]
    NotFound,
    /// The query's own datacenter could not be read (`No path to datacenter`, no leader, ...).
    #[error(transparent)]
    Read(#[from] ReadError),
}

/// Executes the prepared query `id_or_name` (its ID, or its exact name) of datacenter `dc`
/// (`None`, empty or this agent's: this datacenter), failing over as its definition says.
/// Errors only when the query's own datacenter cannot answer or has no such query; failover
/// trouble is logged and shows as fewer instances.
pub async fn execute(
    routes: &Routes,
    id_or_name: &str,
    dc: Option<&str>,
    opts: &ExecuteOptions,
) -> Result<Executed, ExecuteError> {
    let own = match dc {
        Some(dc) if !routes.is_local(Some(dc)) => dc.to_string(),
        _ => routes.datacenter.clone(),
    };
    let backend = routes.backend(dc)?;
    let result = backend.read(&opts.read, Query::PreparedQueryExecute { id_or_name: id_or_name.to_string() }).await?;
    let QueryResult { answer, known_leader, last_contact_ms, consistency } = result;
    let execution = match answer.value {
        QueryValue::PreparedQueryExecution(execution) => execution,
        other => return Err(unexpected(&other).into()),
    };
    let meta = QueryResult {
        answer: Answer { index: answer.index, value: (), watch: answer.watch },
        known_leader,
        last_contact_ms,
        consistency,
    };
    let QueryExecution { query, mut nodes } = *execution.ok_or(ExecuteError::NotFound)?;
    let mut datacenter = own;
    let mut failovers = 0;
    if nodes.is_empty() && query.service.failover.is_set() {
        let found = fail_over(routes, &query, &datacenter, &opts.read).await;
        failovers = found.tried;
        if let Some(dc) = found.answered_by {
            datacenter = dc;
        }
        nodes = found.nodes;
    }
    nodes.shuffle(&mut rand::rng());
    if opts.limit > 0 {
        nodes.truncate(opts.limit);
    }
    Ok(Executed {
        service: query.service.service.clone(),
        dns: query.dns.clone(),
        query,
        nodes,
        datacenter,
        failovers,
        meta,
    })
}

/// What the failover datacenters gave.
struct Failover {
    nodes: Vec<ServiceHealth>,
    /// The last datacenter that answered (the one with `nodes`, when there are any).
    answered_by: Option<String>,
    tried: u32,
}

/// Tries the failover datacenters of `query` (whose own datacenter is `own`) in order until
/// one has instances.
async fn fail_over(routes: &Routes, query: &PreparedQuery, own: &str, read: &QueryOptions) -> Failover {
    let mut found = Failover { nodes: Vec::new(), answered_by: None, tried: 0 };
    let known = match routes.datacenters().await {
        Ok(known) => known,
        Err(e) => {
            tracing::warn!(query = %query.id, error = %e, "prepared query failover: datacenters unknown");
            return found;
        }
    };
    let plan = query.service.failover.plan(own, &known);
    for dc in &plan.skipped {
        tracing::debug!(query = %query.id, datacenter = %dc, "prepared query failover skips an unknown datacenter");
    }
    let read = QueryOptions { consistency: read.consistency, min_index: 0, wait_ms: None };
    for dc in plan.targets {
        found.tried += 1;
        match run_in(routes, &dc, query, &read).await {
            Ok(nodes) => {
                found.answered_by = Some(dc);
                if !nodes.is_empty() {
                    found.nodes = nodes;
                    return found;
                }
            }
            Err(e) => tracing::warn!(
                query = %query.id,
                service = %query.service.service,
                datacenter = %dc,
                error = %e,
                "prepared query failover: datacenter not queried"
            ),
        }
    }
    found
}

/// The instances `query` selects in datacenter `dc`.
async fn run_in(
    routes: &Routes,
    dc: &str,
    query: &PreparedQuery,
    read: &QueryOptions,
) -> Result<Vec<ServiceHealth>, ReadError> {
    let backend = routes.backend(Some(dc))?;
    let result = backend.read(read, Query::PreparedQueryRun { query: Box::new(query.clone()) }).await?;
    match result.answer.value {
        QueryValue::ServiceHealth(nodes) => Ok(nodes),
        other => Err(unexpected(&other)),
    }
}

fn unexpected(_value: &QueryValue) -> ReadError {
    ReadError::Internal("the server answered another kind of query".into())
}
