//! Datacenters: how a server reaches the servers of the other datacenters it federates with.
//!
//! Each datacenter is its own Raft cluster. A request for another datacenter (`?dc=dc2`) goes
//! to one of that datacenter's servers as a plain [`ClientCall`], which serves it as it serves
//! its own clients (forwarding to its leader when needed), blocking queries and consistency
//! modes included; the answer comes back as is, with its index and leader headers. A client
//! agent never talks to another datacenter: it wraps the call in [`ClientCall::Forward`] and
//! sends it to its own servers (see [`crate::client::Forwarder::via`]).
//!
//! The routes — which datacenters exist, nearest first, and each one's servers, best first —
//! are kept by [`probe::follow`]: candidates from outside (the agent's WAN gossip pool, the
//! simulator's topology), kept only while they answer probes. Per datacenter the routes keep one
//! [`Forwarder`], so a remote server that stops answering is skipped just as a client agent
//! skips one of its own servers.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use legate_core::raft::ServerNode;

use crate::client::Forwarder;
use crate::rpc::{serve_call, ClientCall, Wire};
use crate::server::{ReadError, ServerResponse, WriteError};

/// Serves calls meant for another datacenter.
pub trait Remote: Send + Sync {
    /// Serves `call` in datacenter `dc` (not this one); an unknown datacenter fails with
    /// [`ReadError::NoPath`] / [`WriteError::NoPath`].
    fn serve(&self, dc: &str, call: ClientCall) -> impl Future<Output = ServerResponse> + Send;
    /// The other datacenters known, nearest first.
    fn datacenters(&self) -> Vec<String>;
}

/// No federation: every other datacenter is unknown.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoRemote;

impl Remote for NoRemote {
    async fn serve(&self, _dc: &str, call: ClientCall) -> ServerResponse {
        call.failed(ReadError::NoPath, WriteError::NoPath)
    }

    fn datacenters(&self) -> Vec<String> {
        Vec::new()
    }
}

/// One datacenter as the routes know it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub datacenter: String,
    /// Its alive servers, best (nearest) first.
    pub servers: Vec<ServerNode>,
}

/// A server's routes to the other datacenters. Clones share them.
pub struct Federation<W: Wire> {
    inner: Arc<Inner<W>>,
}

impl<W: Wire> Clone for Federation<W> {
    fn clone(&self) -> Self {
        Federation { inner: self.inner.clone() }
    }
}

struct Inner<W: Wire> {
    local: String,
    wire: W,
    routes: Mutex<Routes<W>>,
}

struct Routes<W: Wire> {
    /// Remote datacenters with a route, nearest first.
    order: Vec<String>,
    /// Every remote datacenter with a known server (in the WAN pool), reachable or not.
    known: Vec<String>,
    /// Keyed by lowercase name (datacenter names match case-insensitively).
    by_name: BTreeMap<String, Forwarder<W>>,
}

impl<W: Wire> Federation<W> {
    /// Routes for a server of datacenter `local`, knowing no other datacenter yet.
    pub fn new(local: &str, wire: W) -> Self {
        let routes = Routes { order: Vec::new(), known: Vec::new(), by_name: BTreeMap::new() };
        Federation { inner: Arc::new(Inner { local: local.to_string(), wire, routes: Mutex::new(routes) }) }
    }

    /// This server's datacenter.
    pub fn local(&self) -> &str {
        &self.inner.local
    }

    fn routes(&self) -> std::sync::MutexGuard<'_, Routes<W>> {
        self.inner.routes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Replaces the routes with `routes` (nearest datacenter first). The local datacenter and
    /// datacenters without servers are left out. A datacenter that stays keeps its forwarder
    /// (and the server it prefers, when that server is still listed).
    pub fn set_routes(&self, routes: Vec<Route>) {
        let mut current = self.routes();
        let mut order = Vec::new();
        let mut by_name = BTreeMap::new();
        for route in routes {
            let key = route.datacenter.to_ascii_lowercase();
            if route.servers.is_empty() || key == self.inner.local.to_ascii_lowercase() || by_name.contains_key(&key) {
                continue;
            }
            let forwarder = match current.by_name.remove(&key) {
                Some(f) => {
                    f.set_servers(route.servers);
                    f
                }
                None => {
                    tracing::info!(datacenter = %route.datacenter, "a route to a new datacenter");
                    Forwarder::remote(self.inner.wire.clone(), route.servers, &route.datacenter)
                }
            };
            order.push(route.datacenter);
            by_name.insert(key, forwarder);
        }
        for gone in current.by_name.keys() {
            tracing::info!(datacenter = %gone, "no route to datacenter any more");
        }
        current.order = order;
        current.by_name = by_name;
    }

    /// Names every remote datacenter that has a known server, reachable or not (what
    /// [`Federation::all_datacenters`] lists after the routed ones).
    pub fn set_known(&self, mut datacenters: Vec<String>) {
        datacenters.retain(|dc| !dc.eq_ignore_ascii_case(&self.inner.local));
        datacenters.sort();
        datacenters.dedup();
        self.routes().known = datacenters;
    }

    /// Remote datacenters: those with a route, nearest first, then the other known ones by
    /// name.
    fn remote_datacenters(&self) -> Vec<String> {
        let routes = self.routes();
        let unrouted = routes.known.iter().filter(|dc| !routes.order.iter().any(|o| o.eq_ignore_ascii_case(dc)));
        routes.order.iter().chain(unrouted).cloned().collect()
    }

    /// Every known datacenter: this one first, then those reachable nearest first, then the
    /// others known (in the WAN pool but not answering) by name, as Consul lists every
    /// datacenter of its WAN pool.
    pub fn all_datacenters(&self) -> Vec<String> {
        std::iter::once(self.inner.local.clone()).chain(self.remote_datacenters()).collect()
    }

    /// The way to datacenter `dc`'s servers (`None`: no known server of it). `dc` must not be
    /// this datacenter.
    pub fn route(&self, dc: &str) -> Option<Forwarder<W>> {
        self.routes().by_name.get(&dc.to_ascii_lowercase()).cloned()
    }
}

impl<W: Wire> Remote for Federation<W> {
    async fn serve(&self, dc: &str, call: ClientCall) -> ServerResponse {
        match self.route(dc) {
            Some(forwarder) => serve_call(&forwarder, call).await,
            None => call.failed(ReadError::NoPath, WriteError::NoPath),
        }
    }

    fn datacenters(&self) -> Vec<String> {
        self.remote_datacenters()
    }
}

pub mod probe;
#[cfg(test)]
mod tests;
