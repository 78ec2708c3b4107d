//! A simulated client: calls a server's API over the simulated network, as an HTTP client
//! calls an agent's.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use legate_runtime::server::ServerResponse;
use madsim::net::Endpoint;

use super::net::{call, ClientCall, Rpc, RpcReply};

/// A client process's connection to the servers.
#[derive(Clone)]
pub struct SimClient {
    endpoint: Arc<Endpoint>,
    servers: Vec<SocketAddr>,
}

impl SimClient {
    /// Binds a client endpoint on the current madsim node.
    pub async fn connect(servers: Vec<SocketAddr>) -> SimClient {
        let endpoint = Arc::new(Endpoint::bind("0.0.0.0:0").await.expect("a client can bind"));
        SimClient { endpoint, servers }
    }

    /// Binds a client endpoint at `ip` (the current node's address), so that the network
    /// knows its datacenter (see [`super::net::datacenter_of`]).
    pub async fn connect_from(ip: std::net::IpAddr, servers: Vec<SocketAddr>) -> SimClient {
        let endpoint = Arc::new(Endpoint::bind(SocketAddr::new(ip, 0)).await.expect("a client can bind"));
        SimClient { endpoint, servers }
    }

    pub fn servers(&self) -> &[SocketAddr] {
        &self.servers
    }

    /// Calls server `i`. `Err`: no answer within `timeout` — the call may or may not have
    /// taken effect.
    pub async fn call(&self, i: usize, request: ClientCall, timeout: Duration) -> Result<ServerResponse, String> {
        match call(&self.endpoint, self.servers[i], Rpc::Client(request), timeout).await? {
            RpcReply::Client(r) => Ok(r),
            _ => Err("mismatched reply".into()),
        }
    }
}
