//! The agent's [`Wire`]: [`Rpc`]s over TCP (Consul's server port, 8300).
//!
//! # Framing
//! Every frame is a 4-byte big-endian length, then that many bytes: an 8-byte big-endian
//! request id and a MessagePack body ([`legate_core::storage::codec`], the log's encoding). A
//! frame longer than [`FRAME_MAX_BYTES`] is refused before its body is read.
//!
//! # Connections
//! The caller opens a connection and sends a [`Handshake`] (id 0): protocol name and version
//! and its datacenter. The listener answers with a [`HandshakeReply`] and closes the
//! connection if the protocol differs: another program or garbage never reaches a handler, and
//! the rejection is logged. A server of another datacenter is accepted for client calls only
//! (a federated request); anything else it sends closes the connection. After the handshake the connection
//! multiplexes calls: requests carry ids, answers come back with the same id in any order, so
//! a slow call never holds up the others.
//!
//! # Bounds
//! Every call has a timeout. A connection's send queue holds at most [`SEND_QUEUE_MAX`]
//! frames; a caller waits for room within its own timeout, so a slow peer makes calls fail,
//! never memory grow. The listener serves at most [`INFLIGHT_PER_CONN_MAX`] requests of one
//! connection at a time and [`CONNECTIONS_MAX`] connections. A connection that fails is
//! dropped with every call on it failed; the next call reconnects, after a backoff that
//! doubles from [`BACKOFF_MIN`] to [`BACKOFF_MAX`] while connecting keeps failing.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use legate_core::raft::ServerNode;
use legate_core::storage::codec;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::rpc::{ClientCall, Rpc, RpcReply, Wire, WireError};

/// The largest frame either side accepts (a full snapshot travels in one frame).
pub const FRAME_MAX_BYTES: usize = 256 * 1024 * 1024;
/// Frames waiting to be written on one connection.
pub const SEND_QUEUE_MAX: usize = 1_024;
/// Requests of one connection served at once.
pub const INFLIGHT_PER_CONN_MAX: usize = 1_024;
/// Connections a listener serves at once.
pub const CONNECTIONS_MAX: usize = 4_096;
/// How long a new connection has to complete its handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Reconnect backoff bounds.
pub const BACKOFF_MIN: Duration = Duration::from_millis(50);
pub const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// The protocol name every handshake carries.
pub const PROTOCOL: &str = "legate-rpc";
/// The protocol version; a listener refuses any other.
pub const PROTOCOL_VERSION: u32 = 1;

/// The first frame of a connection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Handshake {
    pub protocol: String,
    pub version: u32,
    pub datacenter: String,
}

impl Handshake {
    pub fn new(datacenter: &str) -> Handshake {
        Handshake { protocol: PROTOCOL.into(), version: PROTOCOL_VERSION, datacenter: datacenter.into() }
    }

    /// Why a listener with `ours` refuses this handshake, if it does. A peer of another
    /// datacenter is accepted, but only for client calls (see [`foreign_refusal`]).
    pub fn refusal(&self, ours: &Handshake) -> Option<String> {
        if self.protocol != ours.protocol {
            return Some(format!("not a Legate peer (protocol {:?})", self.protocol));
        }
        if self.version != ours.version {
            return Some(format!("protocol version {} is not ours ({})", self.version, ours.version));
        }
        None
    }
}

/// Why a request from a server of another datacenter is refused, if it is: such a peer may
/// only make client calls (a request for this datacenter). Raft, forwarding within the cluster,
/// bootstrap discovery and calls to be forwarded again are for this datacenter's own servers.
pub fn foreign_refusal<C: openraft::RaftTypeConfig>(rpc: &Rpc<C>, theirs: &Handshake) -> Option<String> {
    match rpc {
        Rpc::Client(ClientCall::Forward { .. }) => {
            Some(format!("a server of datacenter {:?} may not have calls forwarded again", theirs.datacenter))
        }
        Rpc::Client(_) => None,
        other => Some(format!(
            "a peer of datacenter {:?} may only make client calls, not {}",
            theirs.datacenter,
            other.kind()
        )),
    }
}

/// The listener's answer to a [`Handshake`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandshakeReply(pub Result<(), String>);

/// Writes one frame (not flushed).
pub async fn write_frame<W: AsyncWrite + Unpin>(w: &mut W, id: u64, body: &[u8]) -> io::Result<()> {
    let len = body.len() + 8;
    if len > FRAME_MAX_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("frame of {len} bytes exceeds the limit of {FRAME_MAX_BYTES}"),
        ));
    }
    w.write_all(&(len as u32).to_be_bytes()).await?;
    w.write_all(&id.to_be_bytes()).await?;
    w.write_all(body).await
}

/// Reads one frame: `Ok(None)` at a clean end of stream.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> io::Result<Option<(u64, Vec<u8>)>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(len) as usize;
    if !(8..=FRAME_MAX_BYTES).contains(&len) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame length {len} is outside 8..={FRAME_MAX_BYTES}"),
        ));
    }
    let mut id = [0u8; 8];
    r.read_exact(&mut id).await?;
    // Read what actually arrives rather than allocating what the header claims.
    let mut body = Vec::with_capacity((len - 8).min(64 * 1024));
    (&mut *r).take((len - 8) as u64).read_to_end(&mut body).await?;
    if body.len() != len - 8 {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed inside a frame"));
    }
    Ok(Some((u64::from_be_bytes(id), body)))
}

fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Vec<u8>>>>>;

/// One open connection to a peer.
struct Conn {
    queue: mpsc::Sender<(u64, Vec<u8>)>,
    pending: Pending,
    alive: Arc<AtomicBool>,
}

/// Connect state of one peer address.
#[derive(Default)]
struct PeerState {
    conn: Option<Arc<Conn>>,
    /// When connecting may be tried again, and the backoff that led there.
    retry_at: Option<(Instant, Duration)>,
}

struct WireInner {
    handshake: Handshake,
    peers: Mutex<HashMap<String, Arc<tokio::sync::Mutex<PeerState>>>>,
    next_id: AtomicU64,
}

/// Calls servers over TCP, one multiplexed connection per peer. Clones share connections.
#[derive(Clone)]
pub struct TcpWire<C> {
    inner: Arc<WireInner>,
    _c: std::marker::PhantomData<fn() -> C>,
}

impl<C> TcpWire<C> {
    /// A wire whose handshakes claim `datacenter`.
    pub fn new(datacenter: &str) -> Self {
        TcpWire {
            inner: Arc::new(WireInner {
                handshake: Handshake::new(datacenter),
                peers: Mutex::new(HashMap::new()),
                next_id: AtomicU64::new(1),
            }),
            _c: std::marker::PhantomData,
        }
    }

    fn peer(&self, addr: &str) -> Arc<tokio::sync::Mutex<PeerState>> {
        let mut peers = self.inner.peers.lock().unwrap_or_else(|p| p.into_inner());
        peers.entry(addr.to_string()).or_default().clone()
    }

    /// The open connection to `addr`, connecting (within `timeout`) if there is none.
    async fn conn(&self, addr: &str, timeout: Duration) -> Result<Arc<Conn>, String> {
        let peer = self.peer(addr);
        let mut state = peer.lock().await;
        if let Some(conn) = &state.conn {
            if conn.alive.load(Ordering::Acquire) {
                return Ok(conn.clone());
            }
            state.conn = None;
        }
        if let Some((at, _)) = state.retry_at {
            if Instant::now() < at {
                return Err(format!("{addr}: not reconnecting yet (backing off after a failed connect)"));
            }
        }
        match tokio::time::timeout(timeout, self.connect(addr)).await {
            Ok(Ok(conn)) => {
                state.retry_at = None;
                state.conn = Some(conn.clone());
                Ok(conn)
            }
            Ok(Err(e)) => {
                Self::back_off(&mut state);
                Err(format!("{addr}: {e}"))
            }
            Err(_) => {
                Self::back_off(&mut state);
                Err(format!("{addr}: connect timed out"))
            }
        }
    }

    fn back_off(state: &mut PeerState) {
        let backoff = state.retry_at.map_or(BACKOFF_MIN, |(_, b)| (b * 2).min(BACKOFF_MAX));
        state.retry_at = Some((Instant::now() + backoff, backoff));
    }

    async fn connect(&self, addr: &str) -> io::Result<Arc<Conn>> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (read, write) = stream.into_split();
        let mut read = BufReader::new(read);
        let mut write = BufWriter::new(write);
        let hello = codec::encode(&self.inner.handshake)?;
        write_frame(&mut write, 0, &hello).await?;
        write.flush().await?;
        let (_, body) = read_frame(&mut read).await?.ok_or_else(|| invalid("closed during the handshake"))?;
        let HandshakeReply(answer) = codec::decode(&body).map_err(invalid)?;
        answer.map_err(|e| io::Error::new(io::ErrorKind::PermissionDenied, format!("refused: {e}")))?;

        let (queue, mut outbox) = mpsc::channel::<(u64, Vec<u8>)>(SEND_QUEUE_MAX);
        let pending: Pending = Arc::default();
        let alive = Arc::new(AtomicBool::new(true));
        let conn = Arc::new(Conn { queue, pending: pending.clone(), alive: alive.clone() });
        let closed = {
            let (pending, alive) = (pending.clone(), alive.clone());
            move || {
                alive.store(false, Ordering::Release);
                // Dropping the senders fails every call still waiting on this connection.
                pending.lock().unwrap_or_else(|p| p.into_inner()).clear();
            }
        };
        let close_writer = closed.clone();
        tokio::spawn(async move {
            while let Some((id, body)) = outbox.recv().await {
                if write_frame(&mut write, id, &body).await.is_err() {
                    break;
                }
                // Flush once the queue is drained: a burst of calls shares a write.
                if outbox.is_empty() && write.flush().await.is_err() {
                    break;
                }
            }
            close_writer();
        });
        tokio::spawn(async move {
            while let Ok(Some((id, body))) = read_frame(&mut read).await {
                let waiter = pending.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
                if let Some(waiter) = waiter {
                    let _ = waiter.send(body);
                }
            }
            closed();
        });
        Ok(conn)
    }

    /// Sends `body` to `addr` and waits for the answer's body, all within `timeout`.
    async fn round_trip(&self, addr: &str, body: Vec<u8>, timeout: Duration) -> Result<Vec<u8>, WireError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let conn = self.conn(addr, timeout).await.map_err(WireError::not_delivered)?;
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        conn.pending.lock().unwrap_or_else(|p| p.into_inner()).insert(id, tx);
        let forget = || {
            conn.pending.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
        };
        match tokio::time::timeout_at(deadline, conn.queue.send((id, body))).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => {
                forget();
                return Err(WireError::not_delivered(format!("{addr}: connection closed")));
            }
            Err(_) => {
                forget();
                return Err(WireError::not_delivered(format!("{addr}: send queue full for {timeout:?}")));
            }
        }
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(_)) => Err(WireError::maybe_delivered(format!("{addr}: connection closed before the answer"))),
            Err(_) => {
                forget();
                Err(WireError::maybe_delivered(format!("{addr}: no answer within {timeout:?}")))
            }
        }
    }
}

impl<C: openraft::RaftTypeConfig> Wire for TcpWire<C> {
    type C = C;

    async fn call(&self, target: &ServerNode, rpc: Rpc<C>, timeout: Duration) -> Result<RpcReply<C>, WireError> {
        let body = codec::encode(&rpc)
            .map_err(|e| WireError::not_delivered(format!("encoding a {} call: {e}", rpc.kind())))?;
        let answer = self.round_trip(&target.rpc_addr, body, timeout).await?;
        codec::decode(&answer)
            .map_err(|e| WireError::maybe_delivered(format!("{}: undecodable answer: {e}", target.rpc_addr)))
    }
}

/// Serves [`Rpc`]s on `listener` until the process ends: each connection's handshake is checked
/// against `ours`, then each request is answered by `handler`.
pub async fn serve<C, F, Fut>(listener: TcpListener, ours: Handshake, handler: F)
where
    C: openraft::RaftTypeConfig,
    F: Fn(Rpc<C>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = RpcReply<C>> + Send + 'static,
{
    let connections = Arc::new(Semaphore::new(CONNECTIONS_MAX));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "accepting an RPC connection failed");
                tokio::time::sleep(BACKOFF_MIN).await;
                continue;
            }
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "too many RPC connections; refusing one");
            continue;
        };
        let (ours, handler) = (ours.clone(), handler.clone());
        tokio::spawn(async move {
            if let Err(e) = serve_conn(stream, peer, &ours, handler).await {
                tracing::warn!(%peer, error = %e, "RPC connection dropped");
            }
            drop(permit);
        });
    }
}

async fn serve_conn<C, F, Fut>(stream: TcpStream, peer: SocketAddr, ours: &Handshake, handler: F) -> io::Result<()>
where
    C: openraft::RaftTypeConfig,
    F: Fn(Rpc<C>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = RpcReply<C>> + Send + 'static,
{
    stream.set_nodelay(true)?;
    let (read, write) = stream.into_split();
    let mut read = BufReader::new(read);
    let mut write = BufWriter::new(write);

    let first = tokio::time::timeout(HANDSHAKE_TIMEOUT, read_frame(&mut read))
        .await
        .map_err(|_| invalid("no handshake within the timeout"))??
        .ok_or_else(|| invalid("closed before the handshake"))?;
    let theirs: Handshake = codec::decode(&first.1).map_err(|e| invalid(format!("bad handshake: {e}")))?;
    let refusal = theirs.refusal(ours);
    let reply = codec::encode(&HandshakeReply(refusal.clone().map_or(Ok(()), Err)))?;
    write_frame(&mut write, 0, &reply).await?;
    write.flush().await?;
    if let Some(why) = refusal {
        return Err(io::Error::new(io::ErrorKind::PermissionDenied, format!("handshake refused: {why}")));
    }

    let (answers, mut outbox) = mpsc::channel::<(u64, Vec<u8>)>(SEND_QUEUE_MAX);
    let writer = tokio::spawn(async move {
        while let Some((id, body)) = outbox.recv().await {
            write_frame(&mut write, id, &body).await?;
            if outbox.is_empty() {
                write.flush().await?;
            }
        }
        io::Result::Ok(())
    });
    let inflight = Arc::new(Semaphore::new(INFLIGHT_PER_CONN_MAX));
    let result = loop {
        let (id, body) = match read_frame(&mut read).await {
            Ok(Some(frame)) => frame,
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        };
        let rpc: Rpc<C> = match codec::decode(&body) {
            Ok(rpc) => rpc,
            Err(e) => break Err(invalid(format!("undecodable request from {peer}: {e}"))),
        };
        if theirs.datacenter != ours.datacenter {
            if let Some(why) = foreign_refusal(&rpc, &theirs) {
                break Err(io::Error::new(io::ErrorKind::PermissionDenied, why));
            }
        }
        let Ok(permit) = inflight.clone().acquire_owned().await else {
            break Ok(());
        };
        let (handler, answers) = (handler.clone(), answers.clone());
        tokio::spawn(async move {
            let kind = rpc.kind();
            let reply = handler(rpc).await;
            match codec::encode(&reply) {
                Ok(body) => {
                    let _ = answers.send((id, body)).await;
                }
                Err(e) => tracing::error!(kind, error = %e, "cannot encode an RPC answer"),
            }
            drop(permit);
        });
    };
    drop(answers);
    // Answers already computed still go out; the writer ends when the last one is sent.
    let _ = writer.await;
    result
}

#[cfg(test)]
mod tests {
    use legate_core::catalog::Query;

    use super::*;
    use crate::boot::TokioTc;
    use crate::server::QueryOptions;

    #[test]
    fn handshakes_of_other_datacenters_are_accepted_for_client_calls_only() {
        let ours = Handshake::new("dc1");
        let theirs = Handshake::new("dc2");
        assert_eq!(theirs.refusal(&ours), None, "a server of dc2 may connect");
        let other = Handshake { protocol: "http".into(), ..Handshake::new("dc1") };
        assert!(other.refusal(&ours).is_some(), "another program may not");
        let newer = Handshake { version: PROTOCOL_VERSION + 1, ..Handshake::new("dc1") };
        assert!(newer.refusal(&ours).is_some(), "nor another protocol version");

        let read = ClientCall::Read { opts: QueryOptions::default(), query: Query::SessionList };
        let client: Rpc<TokioTc> = Rpc::Client(read.clone());
        assert_eq!(foreign_refusal(&client, &theirs), None, "it may read and write in dc1");
        let forward: Rpc<TokioTc> = Rpc::Client(ClientCall::Forward { dc: "dc3".into(), call: Box::new(read) });
        assert!(foreign_refusal(&forward, &theirs).is_some(), "but not have its call forwarded again");
        let hello: Rpc<TokioTc> = Rpc::Hello(Box::new(crate::rpc::ServerInfo {
            raft_id: 7,
            node: ServerNode { name: "s1".into(), rpc_addr: "127.0.0.1:1".into() },
            datacenter: "dc2".into(),
            bootstrap_expect: 1,
            initialized: false,
            status: Default::default(),
        }));
        let why = foreign_refusal(&hello, &theirs).expect("nor join dc1's Raft cluster");
        assert!(why.contains("\"dc2\"") && why.contains("hello"), "{why}");
    }
}
