//! A gossip pool over real sockets: the tokio driver of [`legate_core::gossip::Gossip`].
//!
//! One task owns the state machine. It reads datagrams from the pool's UDP socket, commands
//! from [`Pool`] handles and stream traffic, fires its timers, and carries out its outputs:
//! datagrams go out on the same socket, streams (push-pull, joins and the fallback probe) on
//! short-lived TCP connections to the peer's gossip port. A stream carries one frame each way:
//! a 4-byte big-endian length and the message. Every stream has the pool's stream timeout.
//!
//! The member list is published on a watch channel (refreshed on every membership event and
//! at least once a second) and events go out on a broadcast channel, so the HTTP API, the
//! leader's reconciliation and server discovery read membership without locking the loop.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use legate_core::gossip::{self, Config, Event, Gossip, Member, Output, StreamKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::time::Instant;

/// Largest datagram we read (a pool's packets are smaller; see `Config::packet_max_bytes`).
const DATAGRAM_MAX_BYTES: usize = 65_536;
/// Commands waiting for the loop.
const COMMAND_QUEUE_MAX: usize = 1_024;
/// Events a slow subscriber may fall behind by before it misses some.
const EVENT_QUEUE_MAX: usize = 4_096;
/// Incoming streams served at once.
const STREAMS_IN_MAX: usize = 256;
/// The member list is republished at least this often (suspicions and incarnations change
/// without an event).
const SNAPSHOT_INTERVAL: Duration = Duration::from_secs(1);

/// How to start a pool.
#[derive(Clone, Debug)]
pub struct PoolOptions {
    pub config: Config,
    /// This member's name (`<node>` on the LAN, `<node>.<dc>` on the WAN).
    pub name: String,
    /// Where the UDP socket and the TCP listener bind.
    pub bind: SocketAddr,
    /// The address other members reach us at (port 0 in `bind`: the bound port is used).
    pub advertise: SocketAddr,
    pub tags: BTreeMap<String, String>,
    /// The port a join address without one gets (8301 LAN, 8302 WAN).
    pub default_port: u16,
    pub seed: u64,
}

/// A handle on a running pool; cheap to clone.
#[derive(Clone)]
pub struct Pool {
    commands: mpsc::Sender<Command>,
    members: watch::Receiver<Arc<Vec<Member>>>,
    events: broadcast::Sender<Event>,
    status: Arc<Mutex<PoolStatus>>,
    local_addr: SocketAddr,
    default_port: u16,
    name: String,
}

/// Counters published by the loop.
#[derive(Clone, Copy, Debug, Default)]
pub struct PoolStatus {
    pub stats: gossip::Stats,
    pub health_score: u32,
    pub leaving: bool,
}

enum Command {
    Join { addrs: Vec<SocketAddr>, reply: oneshot::Sender<usize> },
    Leave { reply: oneshot::Sender<()> },
    ForceLeave { name: String, reply: oneshot::Sender<Result<(), String>> },
    SetTags { tags: BTreeMap<String, String>, reply: oneshot::Sender<Result<(), String>> },
    StreamIn { from: SocketAddr, bytes: Vec<u8>, reply: oneshot::Sender<Option<Vec<u8>>> },
    StreamOut { token: u64, reply: Option<Vec<u8>> },
}

impl Pool {
    /// Binds the pool's UDP socket and TCP listener and starts its loop.
    pub async fn start(opts: PoolOptions) -> Result<Pool, String> {
        let udp = UdpSocket::bind(opts.bind).await.map_err(|e| format!("cannot bind gossip UDP {}: {e}", opts.bind))?;
        let local_addr = udp.local_addr().map_err(|e| e.to_string())?;
        let tcp =
            TcpListener::bind(local_addr).await.map_err(|e| format!("cannot bind gossip TCP {local_addr}: {e}"))?;
        let mut advertise = opts.advertise;
        if advertise.port() == 0 {
            advertise.set_port(local_addr.port());
        }
        let start = Instant::now();
        let gossip = Gossip::new(0, opts.config.clone(), &opts.name, advertise, opts.tags.clone(), opts.seed)
            .map_err(|e| e.to_string())?;
        let (commands, rx) = mpsc::channel(COMMAND_QUEUE_MAX);
        let (members_tx, members) = watch::channel(Arc::new(gossip.members().cloned().collect::<Vec<_>>()));
        let (events, _) = broadcast::channel(EVENT_QUEUE_MAX);
        let status = Arc::new(Mutex::new(PoolStatus::default()));
        let pool = Pool {
            commands: commands.clone(),
            members,
            events: events.clone(),
            status: status.clone(),
            local_addr,
            default_port: opts.default_port,
            name: opts.name.clone(),
        };
        tokio::spawn(accept_streams(tcp, commands.clone(), opts.config.stream_timeout_ms));
        let driver = Driver {
            gossip,
            start,
            udp: Arc::new(udp),
            commands,
            members: members_tx,
            events,
            status,
            joins: Vec::new(),
            leave: None,
        };
        tokio::spawn(driver.run(rx));
        Ok(pool)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The bound address of the UDP socket and TCP listener.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Every member known, this one included.
    pub fn members(&self) -> Arc<Vec<Member>> {
        self.members.borrow().clone()
    }

    /// A receiver that sees every republished member list.
    pub fn watch_members(&self) -> watch::Receiver<Arc<Vec<Member>>> {
        self.members.clone()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    pub fn status(&self) -> PoolStatus {
        *self.status.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Joins through each address (`host`, `host:port`, `ip`, `ip:port`): how many answered.
    /// An error when none did.
    pub async fn join(&self, addrs: &[String]) -> Result<usize, String> {
        let mut resolved = Vec::new();
        let mut errors = Vec::new();
        for a in addrs {
            match resolve(a, self.default_port).await {
                Ok(addr) => resolved.push(addr),
                Err(e) => errors.push(e),
            }
        }
        let joined = if resolved.is_empty() {
            0
        } else {
            let (reply, rx) = oneshot::channel();
            self.send(Command::Join { addrs: resolved.clone(), reply }).await?;
            rx.await.map_err(|_| "the gossip pool stopped".to_string())?
        };
        if joined == 0 {
            let mut why = errors;
            if !resolved.is_empty() {
                why.push(format!("no answer from {}", list(&resolved)));
            }
            return Err(format!("failed to join any of {}: {}", addrs.join(", "), why.join("; ")));
        }
        Ok(joined)
    }

    /// Leaves gracefully: returns once the news went out (or `timeout` passed).
    pub async fn leave(&self, timeout: Duration) {
        let (reply, rx) = oneshot::channel();
        if self.send(Command::Leave { reply }).await.is_ok() {
            let _ = tokio::time::timeout(timeout, rx).await;
        }
    }

    pub async fn force_leave(&self, name: &str) -> Result<(), String> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::ForceLeave { name: name.to_string(), reply }).await?;
        rx.await.map_err(|_| "the gossip pool stopped".to_string())?
    }

    pub async fn set_tags(&self, tags: BTreeMap<String, String>) -> Result<(), String> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::SetTags { tags, reply }).await?;
        rx.await.map_err(|_| "the gossip pool stopped".to_string())?
    }

    async fn send(&self, command: Command) -> Result<(), String> {
        self.commands.send(command).await.map_err(|_| "the gossip pool stopped".to_string())
    }
}

fn list(addrs: &[SocketAddr]) -> String {
    addrs.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

/// `host[:port]` or `ip[:port]` (IPv6 in brackets with a port) to one socket address.
async fn resolve(addr: &str, default_port: u16) -> Result<SocketAddr, String> {
    if let Ok(a) = addr.parse::<SocketAddr>() {
        return Ok(a);
    }
    if let Ok(ip) = addr.trim_start_matches('[').trim_end_matches(']').parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, default_port));
    }
    let with_port = match addr.rsplit_once(':') {
        Some((_, p)) if p.parse::<u16>().is_ok() => addr.to_string(),
        _ => format!("{addr}:{default_port}"),
    };
    let mut found = tokio::net::lookup_host(&with_port).await.map_err(|e| format!("cannot resolve {addr}: {e}"))?;
    found.next().ok_or_else(|| format!("{addr} resolves to no address"))
}

/// A join waiting for its streams.
struct PendingJoin {
    tokens: Vec<u64>,
    answered: usize,
    reply: oneshot::Sender<usize>,
}

struct Driver {
    gossip: Gossip,
    start: Instant,
    udp: Arc<UdpSocket>,
    commands: mpsc::Sender<Command>,
    members: watch::Sender<Arc<Vec<Member>>>,
    events: broadcast::Sender<Event>,
    status: Arc<Mutex<PoolStatus>>,
    joins: Vec<PendingJoin>,
    leave: Option<oneshot::Sender<()>>,
}

impl Driver {
    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let mut buf = vec![0u8; DATAGRAM_MAX_BYTES];
        let mut next_snapshot = Instant::now() + SNAPSHOT_INTERVAL;
        loop {
            let timer = self.gossip.poll_timeout().map(|ms| self.start + Duration::from_millis(ms));
            let wake = timer.map_or(next_snapshot, |t| t.min(next_snapshot));
            let udp = self.udp.clone();
            tokio::select! {
                biased;
                command = commands.recv() => match command {
                    Some(c) => self.command(c),
                    None => return,
                },
                received = udp.recv_from(&mut buf) => match received {
                    Ok((n, from)) => {
                        let now = self.now_ms();
                        self.gossip.handle_packet(now, from, &buf[..n]);
                    }
                    // ICMP errors from earlier sends surface here on some systems; keep going.
                    Err(e) => tracing::debug!(error = %e, "gossip receive failed"),
                },
                _ = tokio::time::sleep_until(wake) => {
                    let now = self.now_ms();
                    self.gossip.handle_timeout(now);
                }
            }
            let changed = self.carry_out().await;
            if changed || Instant::now() >= next_snapshot {
                self.publish();
                next_snapshot = Instant::now() + SNAPSHOT_INTERVAL;
            }
            if self.gossip.leave_propagated() {
                if let Some(reply) = self.leave.take() {
                    let _ = reply.send(());
                }
            }
        }
    }

    fn command(&mut self, command: Command) {
        let now = self.now_ms();
        match command {
            Command::Join { addrs, reply } => {
                let tokens = self.gossip.join(now, &addrs);
                self.joins.push(PendingJoin { tokens, answered: 0, reply });
            }
            Command::Leave { reply } => {
                self.gossip.leave(now);
                self.leave = Some(reply);
            }
            Command::ForceLeave { name, reply } => {
                let _ = reply.send(self.gossip.force_leave(now, &name));
            }
            Command::SetTags { tags, reply } => {
                let _ = reply.send(self.gossip.set_tags(now, tags).map_err(|e| e.to_string()));
            }
            Command::StreamIn { from, bytes, reply } => {
                let _ = reply.send(self.gossip.handle_stream(now, from, &bytes));
            }
            Command::StreamOut { token, reply } => {
                let ok = self.gossip.handle_stream_reply(now, token, reply.as_deref());
                self.join_answered(token, ok);
            }
        }
    }

    fn join_answered(&mut self, token: u64, ok: bool) {
        let Some(i) = self.joins.iter().position(|j| j.tokens.contains(&token)) else { return };
        let join = &mut self.joins[i];
        join.tokens.retain(|t| *t != token);
        join.answered += usize::from(ok);
        if join.tokens.is_empty() {
            let join = self.joins.swap_remove(i);
            let _ = join.reply.send(join.answered);
        }
    }

    /// Sends what the state machine asks for; `true` if membership changed.
    async fn carry_out(&mut self) -> bool {
        let mut changed = false;
        while let Some(out) = self.gossip.poll_output() {
            match out {
                Output::Packet { to, bytes } => {
                    if let Err(e) = self.udp.send_to(&bytes, to).await {
                        tracing::debug!(%to, error = %e, "gossip send failed");
                    }
                }
                Output::Stream { to, token, kind, bytes } => {
                    let timeout = Duration::from_millis(self.gossip.config().stream_timeout_ms);
                    tokio::spawn(open_stream(to, token, kind, bytes, timeout, self.commands.clone()));
                }
                Output::Event(event) => {
                    log_event(&event);
                    let _ = self.events.send(event);
                    changed = true;
                }
            }
        }
        changed
    }

    fn publish(&self) {
        let members: Vec<Member> = self.gossip.members().cloned().collect();
        self.members.send_replace(Arc::new(members));
        let mut status = self.status.lock().unwrap_or_else(|e| e.into_inner());
        *status = PoolStatus {
            stats: self.gossip.stats(),
            health_score: self.gossip.health_score(),
            leaving: self.gossip.is_leaving(),
        };
    }
}

fn log_event(event: &Event) {
    match event {
        Event::Joined(m) => tracing::info!(member = %m.name, addr = %m.addr, "gossip: member joined"),
        Event::Updated(m) => tracing::info!(member = %m.name, "gossip: member updated"),
        Event::Failed(m) => tracing::warn!(member = %m.name, addr = %m.addr, "gossip: member failed"),
        Event::Left(m) => tracing::info!(member = %m.name, "gossip: member left"),
        Event::Reaped(m) => tracing::info!(member = %m.name, "gossip: member reaped"),
    }
}

/// One outgoing stream: connect, send, read the reply, report it (or its failure).
async fn open_stream(
    to: SocketAddr,
    token: u64,
    kind: StreamKind,
    bytes: Vec<u8>,
    timeout: Duration,
    commands: mpsc::Sender<Command>,
) {
    let exchange = async {
        let mut conn = TcpStream::connect(to).await?;
        write_frame(&mut conn, &bytes).await?;
        read_frame(&mut conn).await
    };
    let reply = match tokio::time::timeout(timeout, exchange).await {
        Ok(Ok(reply)) => Some(reply),
        Ok(Err(e)) => {
            tracing::debug!(%to, ?kind, error = %e, "gossip stream failed");
            None
        }
        Err(_) => {
            tracing::debug!(%to, ?kind, "gossip stream timed out");
            None
        }
    };
    let _ = commands.send(Command::StreamOut { token, reply }).await;
}

async fn accept_streams(listener: TcpListener, commands: mpsc::Sender<Command>, timeout_ms: u64) {
    let slots = Arc::new(tokio::sync::Semaphore::new(STREAMS_IN_MAX));
    let timeout = Duration::from_millis(timeout_ms);
    loop {
        let (conn, from) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "gossip accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%from, "too many gossip streams; dropping one");
            continue;
        };
        let commands = commands.clone();
        tokio::spawn(async move {
            if tokio::time::timeout(timeout, serve_stream(conn, from, commands)).await.is_err() {
                tracing::debug!(%from, "gossip stream timed out");
            }
            drop(slot);
        });
    }
}

async fn serve_stream(mut conn: TcpStream, from: SocketAddr, commands: mpsc::Sender<Command>) {
    let bytes = match read_frame(&mut conn).await {
        Ok(b) => b,
        Err(e) => {
            tracing::debug!(%from, error = %e, "bad gossip stream");
            return;
        }
    };
    let (reply, rx) = oneshot::channel();
    if commands.send(Command::StreamIn { from, bytes, reply }).await.is_err() {
        return;
    }
    if let Ok(Some(answer)) = rx.await {
        let _ = write_frame(&mut conn, &answer).await;
    }
}

async fn write_frame(conn: &mut TcpStream, bytes: &[u8]) -> std::io::Result<()> {
    conn.write_all(&(bytes.len() as u32).to_be_bytes()).await?;
    conn.write_all(bytes).await?;
    conn.flush().await
}

async fn read_frame(conn: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    conn.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > gossip::STREAM_SIZE_MAX_BYTES {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("gossip frame of {len} bytes")));
    }
    let mut bytes = vec![0u8; len];
    conn.read_exact(&mut bytes).await?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(name: &str) -> PoolOptions {
        let bind: SocketAddr = "127.0.0.1:0".parse().unwrap();
        PoolOptions {
            config: Config::local(),
            name: name.into(),
            bind,
            advertise: bind,
            tags: BTreeMap::from([("role".into(), "node".into())]),
            default_port: 8301,
            seed: name.len() as u64,
        }
    }

    async fn wait_until(mut cond: impl FnMut() -> bool) -> bool {
        for _ in 0..200 {
            if cond() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    #[tokio::test]
    async fn three_pools_on_loopback_join_and_see_a_leave() {
        let a = Pool::start(options("a")).await.unwrap();
        let b = Pool::start(options("bb")).await.unwrap();
        let c = Pool::start(options("ccc")).await.unwrap();
        assert_eq!(b.join(&[a.local_addr().to_string()]).await, Ok(1));
        assert_eq!(c.join(&[a.local_addr().to_string()]).await, Ok(1));
        let all_alive =
            |p: &Pool| p.members().iter().filter(|m| m.status() == gossip::MemberStatus::Alive).count() == 3;
        assert!(wait_until(|| all_alive(&a) && all_alive(&b) && all_alive(&c)).await, "all three see each other");

        let mut events = a.subscribe();
        c.leave(Duration::from_secs(2)).await;
        let left = |p: &Pool| p.members().iter().any(|m| m.name == "ccc" && m.status() == gossip::MemberStatus::Left);
        assert!(wait_until(|| left(&a) && left(&b)).await, "the leave reached everyone");
        let mut saw_left = false;
        while let Ok(e) = events.try_recv() {
            saw_left |= matches!(e, Event::Left(m) if m.name == "ccc");
        }
        assert!(saw_left);
    }

    #[tokio::test]
    async fn joining_nobody_is_an_error_naming_the_address() {
        let a = Pool::start(options("a")).await.unwrap();
        // A bound but silent TCP port refuses nothing and answers nothing; a closed one refuses.
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let err = a.join(&[closed.to_string()]).await.unwrap_err();
        assert!(err.contains(&closed.to_string()), "{err}");
        let err = a.join(&["no-such-host.invalid".into()]).await.unwrap_err();
        assert!(err.contains("cannot resolve"), "{err}");
    }
}
