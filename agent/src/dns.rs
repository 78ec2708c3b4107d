//! The DNS server: UDP and TCP sockets around `legate_core::dns`.
//!
//! Every decision (names, health filtering, address translation, sizes, truncation) is core's;
//! this file moves bytes, reads the catalog of the datacenter each name points at through the
//! agent's [`Routes`], and forwards names outside the domain to the recursors. Hostile input
//! is counted in [`DnsStats`] and logged at debug level, never a panic; every wait has a
//! timeout and every resource a limit.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use legate_core::catalog::query::Filter;
use legate_core::catalog::{Query, QueryValue};
use legate_core::dns::{
    self, CatalogData, CatalogRead, DnsConfig, Failure, Lookup, PreparedAnswer, Reject, Request, Transport,
};
use legate_runtime::api::Api as _;
use legate_runtime::{Consistency, QueryOptions, ReadError};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;

use crate::backend::Routes;
use crate::dns_cache::DnsCache;
use crate::prepared::{self, ExecuteError, ExecuteOptions};

/// Queries being answered at once, over both transports; a UDP query beyond this is dropped
/// (the client retries), a TCP one waits for [`PERMIT_WAIT`].
pub const CONCURRENT_QUERIES_MAX: usize = 256;

/// Open TCP connections; one more is closed at once.
pub const TCP_CONNECTIONS_MAX: usize = 128;

/// A TCP connection with no query for this long is closed (RFC 7766 suggests seconds).
pub const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a TCP client may take to send the rest of a query, or to take our answer.
pub const TCP_IO_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a TCP query waits for a free query permit.
pub const PERMIT_WAIT: Duration = Duration::from_secs(2);

/// How long one catalog read may take before the client gets SERVFAIL.
pub const CATALOG_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// How long each recursor has to answer before the next is tried.
pub const RECURSOR_TIMEOUT: Duration = Duration::from_secs(2);

/// How long sending one UDP datagram may take (it only blocks when the socket buffer is full).
pub const UDP_SEND_TIMEOUT: Duration = Duration::from_secs(1);

/// Bytes read per UDP datagram; a query is far smaller, a longer datagram is cut (and then
/// fails to parse, and is counted).
pub const UDP_QUERY_BYTES_MAX: usize = 4096;

/// The recursors' port when a `recursors` entry has none.
const RECURSOR_DEFAULT_PORT: u16 = 53;

/// Counters of what the server saw.
#[derive(Debug, Default)]
pub struct DnsStats {
    /// Queries answered (including error answers).
    pub answered: AtomicU64,
    /// Packets that were not a usable query: answered FORMERR/NOTIMP/REFUSED, or dropped.
    pub malformed: AtomicU64,
    /// UDP queries dropped and TCP connections closed because a limit was reached.
    pub shed: AtomicU64,
    /// Catalog reads that failed (answered SERVFAIL). A datacenter no server knows is not
    /// one: it is answered NXDOMAIN, as a name that does not exist.
    pub read_errors: AtomicU64,
    /// Queries answered from the cache, without a catalog read.
    pub cache_hits: AtomicU64,
}

/// Bound sockets, before serving.
pub struct DnsServer {
    udp: UdpSocket,
    tcp: TcpListener,
    addr: SocketAddr,
    cfg: DnsConfig,
    recursors: Vec<SocketAddr>,
    stats: Arc<DnsStats>,
}

impl DnsServer {
    /// Binds UDP and TCP on `addr` and checks the recursors. The error is the startup error.
    pub async fn bind(addr: SocketAddr, cfg: &DnsConfig) -> Result<DnsServer, String> {
        let recursors = cfg.recursors.iter().map(|r| recursor_addr(r)).collect::<Result<Vec<_>, _>>()?;
        let tcp = TcpListener::bind(addr).await.map_err(|e| format!("cannot listen for DNS on {addr}: {e}"))?;
        // Port 0 picks a port for TCP; UDP then takes the same one.
        let addr = tcp.local_addr().map_err(|e| format!("cannot listen for DNS on {addr}: {e}"))?;
        let udp = UdpSocket::bind(addr).await.map_err(|e| format!("cannot listen for DNS on {addr}/udp: {e}"))?;
        Ok(DnsServer { udp, tcp, addr, cfg: cfg.clone(), recursors, stats: Arc::default() })
    }

    /// The address both sockets listen on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn stats(&self) -> Arc<DnsStats> {
        self.stats.clone()
    }

    /// Serves until the process ends, reading each name's datacenter through `routes`.
    pub async fn serve(self, routes: Routes) {
        let ctx = Arc::new(Ctx {
            routes,
            cache: DnsCache::new(self.cfg.max_stale_ms),
            cfg: self.cfg,
            recursors: self.recursors,
            stats: self.stats,
            queries: Arc::new(Semaphore::new(CONCURRENT_QUERIES_MAX)),
            connections: Arc::new(Semaphore::new(TCP_CONNECTIONS_MAX)),
        });
        tokio::join!(serve_udp(ctx.clone(), Arc::new(self.udp)), serve_tcp(ctx, self.tcp));
    }
}

/// `1.2.3.4`, `1.2.3.4:5353`, `[::1]:53` or `::1`.
fn recursor_addr(entry: &str) -> Result<SocketAddr, String> {
    let entry = entry.trim();
    if let Ok(addr) = entry.parse::<SocketAddr>() {
        return Ok(addr);
    }
    entry
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, RECURSOR_DEFAULT_PORT))
        .map_err(|_| format!("invalid recursor {entry:?}: expected an IP address, with an optional port"))
}

struct Ctx {
    routes: Routes,
    cfg: DnsConfig,
    cache: DnsCache,
    recursors: Vec<SocketAddr>,
    stats: Arc<DnsStats>,
    queries: Arc<Semaphore>,
    connections: Arc<Semaphore>,
}

async fn serve_udp(ctx: Arc<Ctx>, socket: Arc<UdpSocket>) {
    let mut buf = vec![0u8; UDP_QUERY_BYTES_MAX];
    loop {
        let (len, peer) = match socket.recv_from(&mut buf).await {
            Ok(got) => got,
            Err(e) => {
                // ICMP errors from earlier sends surface here on some systems; keep serving.
                tracing::debug!(error = %e, "DNS UDP receive failed");
                continue;
            }
        };
        let Ok(permit) = ctx.queries.clone().try_acquire_owned() else {
            ctx.stats.shed.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%peer, "DNS query dropped: too many in flight");
            continue;
        };
        let packet = buf[..len].to_vec();
        let (ctx, socket) = (ctx.clone(), socket.clone());
        tokio::spawn(async move {
            let _permit = permit;
            if let Some(response) = respond(&ctx, &packet, Transport::Udp).await {
                match tokio::time::timeout(UDP_SEND_TIMEOUT, socket.send_to(&response, peer)).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "DNS UDP send failed"),
                    Err(_) => tracing::debug!(%peer, "DNS UDP send timed out"),
                }
            }
        });
    }
}

async fn serve_tcp(ctx: Arc<Ctx>, listener: TcpListener) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(got) => got,
            Err(e) => {
                // Out of file descriptors, mostly: back off instead of spinning.
                tracing::warn!(error = %e, "DNS TCP accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = ctx.connections.clone().try_acquire_owned() else {
            ctx.stats.shed.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%peer, "DNS TCP connection refused: too many open");
            continue; // Dropping the stream closes it.
        };
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(why) = serve_connection(&ctx, stream).await {
                tracing::debug!(%peer, why, "DNS TCP connection closed");
            }
        });
    }
}

/// Queries on one connection, answered in order, each framed by a 2-byte length.
async fn serve_connection(ctx: &Ctx, mut stream: TcpStream) -> Result<(), &'static str> {
    loop {
        let mut len = [0u8; 2];
        match tokio::time::timeout(TCP_IDLE_TIMEOUT, stream.read_exact(&mut len)).await {
            Err(_) => return Err("idle"),
            Ok(Err(_)) => return Ok(()), // The client closed the connection.
            Ok(Ok(_)) => {}
        }
        let len = usize::from(u16::from_be_bytes(len));
        let mut packet = vec![0u8; len];
        match tokio::time::timeout(TCP_IO_TIMEOUT, stream.read_exact(&mut packet)).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return Err("closed within a query"),
            Err(_) => return Err("too slow to send a query"),
        }
        let permit = tokio::time::timeout(PERMIT_WAIT, ctx.queries.acquire()).await;
        let Ok(Ok(_permit)) = permit else {
            ctx.stats.shed.fetch_add(1, Ordering::Relaxed);
            return Err("too many queries in flight");
        };
        let Some(response) = respond(ctx, &packet, Transport::Tcp).await else {
            return Err("not a query");
        };
        let Ok(framed_len) = u16::try_from(response.len()) else {
            return Err("response over 64 KiB"); // core never builds one; stay safe anyway.
        };
        let mut framed = Vec::with_capacity(response.len() + 2);
        framed.extend_from_slice(&framed_len.to_be_bytes());
        framed.extend_from_slice(&response);
        match tokio::time::timeout(TCP_IO_TIMEOUT, stream.write_all(&framed)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err("write failed"),
            Err(_) => return Err("too slow to take an answer"),
        }
    }
}

/// The response to one packet, or `None` to say nothing.
async fn respond(ctx: &Ctx, packet: &[u8], transport: Transport) -> Option<Vec<u8>> {
    let req = match dns::parse(packet, transport, &ctx.cfg) {
        Ok(req) => req,
        Err(reject) => {
            ctx.stats.malformed.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(reason = reject.reason(), bytes = packet.len(), "malformed DNS packet");
            return match reject {
                Reject::Answer { packet, .. } => Some(packet),
                Reject::Drop { .. } => None,
            };
        }
    };
    ctx.stats.answered.fetch_add(1, Ordering::Relaxed);
    if req.lookup == Lookup::OutsideDomain {
        if ctx.recursors.is_empty() {
            return Some(dns::refused(&req, &ctx.cfg));
        }
        let relayed = recurse(&ctx.recursors, packet, &req).await;
        return Some(relayed.unwrap_or_else(|| dns::failure(&req, Failure::ServFail, &ctx.cfg)));
    }
    let data = match req.catalog_read(&ctx.cfg) {
        None => CatalogData::Nothing,
        Some(read) => match catalog_data(ctx, read).await {
            Ok(data) => data,
            Err(ReadError::NoPath) => {
                tracing::debug!(name = %req.query.name(), "DNS name in a datacenter no server knows");
                return Some(dns::failure(&req, Failure::UnknownDatacenter, &ctx.cfg));
            }
            Err(e) => {
                ctx.stats.read_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, name = %req.query.name(), "DNS catalog read failed");
                return Some(dns::failure(&req, Failure::ServFail, &ctx.cfg));
            }
        },
    };
    Some(dns::answer(&req, data, &ctx.cfg, &mut rand::rng()))
}

/// What a read found: the data, the index to block on for its next change, and how long ago
/// the answering server heard from its leader.
pub(crate) struct DataRead {
    pub data: CatalogData,
    pub index: u64,
    pub last_contact_ms: u64,
}

/// Performs `read` in the datacenter it names, as this agent reaches it (its own servers, or
/// another datacenter's through them). The one place that knows how each kind of read is
/// done, for direct reads and cache refreshes alike: a prepared query's execution is one
/// more arm here.
pub(crate) async fn read_data(routes: &Routes, opts: &QueryOptions, read: &CatalogRead) -> Result<DataRead, ReadError> {
    let backend = routes.backend(Some(read.datacenter()))?;
    let tags = |tag: &Option<String>| Filter { tags: tag.iter().cloned().collect(), ..Filter::default() };
    let query = match read {
        CatalogRead::ServiceHealth { name, tag, wan_addresses: false, .. } => {
            Query::ServiceEndpoints { name: name.clone(), filter: tags(tag) }
        }
        // WAN addresses are tagged addresses, which only the instances in full carry.
        CatalogRead::ServiceHealth { name, tag, wan_addresses: true, .. } => {
            Query::ServiceHealth { name: name.clone(), filter: tags(tag), passing_only: false }
        }
        CatalogRead::Node { name, .. } => Query::NodeServices { node: name.clone() },
        CatalogRead::PreparedQuery { name, dc } => return execute_prepared(routes, opts, name, dc).await,
    };
    let result = backend.read(opts, query).await?;
    let data = data_of(result.answer.value)?;
    Ok(DataRead { data, index: result.answer.index, last_contact_ms: result.last_contact_ms })
}

/// Executes a prepared query (failover included) for `<name>.query[.<dc>]`.
async fn execute_prepared(routes: &Routes, opts: &QueryOptions, name: &str, dc: &str) -> Result<DataRead, ReadError> {
    let options = ExecuteOptions { read: *opts, limit: 0 };
    match prepared::execute(routes, name, Some(dc), &options).await {
        Ok(executed) => {
            let (index, last_contact_ms) = (executed.meta.answer.index, executed.meta.last_contact_ms);
            let answer = PreparedAnswer {
                ttl_s: executed.query.dns_ttl_s(),
                service: executed.service,
                instances: executed.nodes,
                datacenter: executed.datacenter,
            };
            Ok(DataRead { data: CatalogData::Prepared(Some(answer)), index, last_contact_ms })
        }
        Err(ExecuteError::NotFound) => Ok(DataRead { data: CatalogData::Prepared(None), index: 0, last_contact_ms: 0 }),
        Err(ExecuteError::Read(e)) => Err(e),
    }
}

/// The catalog's answer as core's DNS takes it.
fn data_of(value: QueryValue) -> Result<CatalogData, ReadError> {
    match value {
        QueryValue::Endpoints(instances) => Ok(CatalogData::Services(instances)),
        QueryValue::ServiceHealth(instances) => Ok(CatalogData::ServicesFull(instances)),
        QueryValue::NodeServices(found) => Ok(CatalogData::Node(found.map(|(node, _)| node))),
        _ => Err(ReadError::Internal("the catalog answered another kind of read".into())),
    }
}

/// What core asked for: from the cache when stale reads are allowed and the name was asked
/// recently, else read (and, with stale reads allowed, cached and kept current from then on).
async fn catalog_data(ctx: &Ctx, read: CatalogRead) -> Result<CatalogData, ReadError> {
    // A prepared query's answer depends on other datacenters (its failover): never cached.
    let cacheable = !matches!(read, CatalogRead::PreparedQuery { .. });
    if ctx.cfg.allow_stale && cacheable {
        if let Some(data) = ctx.cache.get(&read) {
            ctx.stats.cache_hits.fetch_add(1, Ordering::Relaxed);
            return Ok(data);
        }
    }
    let found = read_catalog(ctx, &read).await?;
    if ctx.cfg.allow_stale && cacheable {
        ctx.cache.insert(&ctx.routes, read, found.data.clone(), found.index);
    }
    Ok(found.data)
}

/// Reads what core asked for. With `allow_stale` any server answers, unless its data is
/// older than `max_stale`: then the leader is asked.
async fn read_catalog(ctx: &Ctx, read: &CatalogRead) -> Result<DataRead, ReadError> {
    let consistency = if ctx.cfg.allow_stale { Consistency::Stale } else { Consistency::Default };
    let found = read_once(ctx, consistency, read).await?;
    if consistency == Consistency::Stale && found.last_contact_ms > ctx.cfg.max_stale_ms {
        return read_once(ctx, Consistency::Default, read).await;
    }
    Ok(found)
}

async fn read_once(ctx: &Ctx, consistency: Consistency, read: &CatalogRead) -> Result<DataRead, ReadError> {
    let opts = QueryOptions { consistency, min_index: 0, wait_ms: None };
    match tokio::time::timeout(CATALOG_READ_TIMEOUT, read_data(&ctx.routes, &opts, read)).await {
        Ok(result) => result,
        Err(_) => Err(ReadError::Internal(format!("no answer within {CATALOG_READ_TIMEOUT:?}"))),
    }
}

/// Asks each recursor in turn, over UDP, and relays the first real answer.
async fn recurse(recursors: &[SocketAddr], packet: &[u8], req: &Request) -> Option<Vec<u8>> {
    for &upstream in recursors {
        match ask_recursor(upstream, packet, req).await {
            Ok(response) => return Some(response),
            Err(why) => tracing::debug!(%upstream, why, "recursor failed"),
        }
    }
    None
}

async fn ask_recursor(upstream: SocketAddr, packet: &[u8], req: &Request) -> Result<Vec<u8>, String> {
    let local: SocketAddr = if upstream.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0u16; 8], 0).into() };
    let socket = UdpSocket::bind(local).await.map_err(|e| format!("bind: {e}"))?;
    socket.connect(upstream).await.map_err(|e| format!("connect: {e}"))?;
    let exchange = async {
        socket.send(packet).await.map_err(|e| format!("send: {e}"))?;
        let mut buf = vec![0u8; dns::UDP_EDNS_SIZE_MAX];
        loop {
            let len = socket.recv(&mut buf).await.map_err(|e| format!("receive: {e}"))?;
            // Only the answer to our query counts: same id, and a response.
            if len >= 2 && buf[..2] == packet[..2] {
                if let Some(relayed) = dns::relay(req, &buf[..len]) {
                    return Ok(relayed);
                }
            }
        }
    };
    tokio::time::timeout(RECURSOR_TIMEOUT, exchange)
        .await
        .map_err(|_| format!("no answer within {RECURSOR_TIMEOUT:?}"))?
}

#[cfg(test)]
mod tests {
    use super::recursor_addr;

    #[test]
    fn recursor_entries() {
        assert_eq!(recursor_addr("8.8.8.8").unwrap(), "8.8.8.8:53".parse().unwrap());
        assert_eq!(recursor_addr("127.0.0.1:5353").unwrap(), "127.0.0.1:5353".parse().unwrap());
        assert_eq!(recursor_addr("::1").unwrap(), "[::1]:53".parse().unwrap());
        assert_eq!(recursor_addr("[::1]:54").unwrap(), "[::1]:54".parse().unwrap());
        assert!(recursor_addr("dns.google").is_err());
    }
}
