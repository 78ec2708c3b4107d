//! A gossip pool over real sockets: the tokio driver of [`legate_core::gossip::Gossip`].
//!
//! One task owns the state machine. It reads datagrams from the pool's UDP socket, commands
//! from [`Pool`] handles and stream traffic, fires its timers, and carries out its outputs:
//! datagrams go out on the same socket, streams (push-pull, joins and the fallback probe) on
//! short-lived TCP connections to the peer's gossip port. A stream carries one frame each way:
//! a 4-byte big-endian length and the message. Every stream has the pool's stream timeout.
//!
//! With a keyring ([`keyring`]) every datagram and frame is sealed with AES-GCM, and stream
//! frames also carry keyring operations (`legate keyring`) from one agent to every member.
//!
//! The member list is published on a watch channel (refreshed on every membership event and
//! at least once a second) and events go out on a broadcast channel, so the HTTP API, the
//! leader's reconciliation and server discovery read membership without locking the loop.

pub mod keyring;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use legate_core::gossip::{self, Config, Event, Gossip, Member, Output, StreamKind, UserEvent, UserEventError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::time::Instant;

pub use keyring::Keyring;

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
#[derive(Debug)]
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
    /// Encrypts the pool's traffic when set.
    pub keyring: Option<Keyring>,
}

/// A change to every member's keyring, or a listing of them (`legate keyring`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum KeyringOp {
    List,
    Install(String),
    Use(String),
    Remove(String),
}

/// What the members answered to a keyring operation (Consul's `KeyringResponse`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyringResponse {
    /// Members that answered (this one included).
    pub num_nodes: usize,
    /// Each key and how many of them hold it.
    pub keys: BTreeMap<String, usize>,
    /// Each primary key and how many of them use it.
    pub primary_keys: BTreeMap<String, usize>,
    /// Members that failed, and why.
    pub messages: BTreeMap<String, String>,
}

/// One member's answer to a keyring operation.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct KeyringReply {
    keys: Vec<String>,
    error: Option<String>,
}

/// The keyring shared by the loop, the stream tasks and the handles; `None`: plain gossip.
#[derive(Clone, Default)]
struct Crypt(Option<Arc<Mutex<Keyring>>>);

impl Crypt {
    fn seal(&self, plain: Vec<u8>) -> Result<Vec<u8>, String> {
        match &self.0 {
            Some(ring) => ring.lock().unwrap_or_else(|e| e.into_inner()).encrypt(&plain),
            None => Ok(plain),
        }
    }

    fn open(&self, sealed: &[u8]) -> Option<Vec<u8>> {
        match &self.0 {
            Some(ring) => ring.lock().unwrap_or_else(|e| e.into_inner()).decrypt(sealed),
            None => Some(sealed.to_vec()),
        }
    }

    /// Applies a keyring operation here; this member's keys after it.
    fn apply(&self, op: &KeyringOp) -> KeyringReply {
        let Some(ring) = &self.0 else {
            return KeyringReply { keys: Vec::new(), error: Some(NOT_ENCRYPTED.to_string()) };
        };
        let mut ring = ring.lock().unwrap_or_else(|e| e.into_inner());
        let result = match op {
            KeyringOp::List => Ok(()),
            KeyringOp::Install(k) => ring.install(k),
            KeyringOp::Use(k) => ring.use_key(k),
            KeyringOp::Remove(k) => ring.remove(k),
        };
        KeyringReply { keys: ring.keys(), error: result.err() }
    }
}

/// The error of a keyring operation on a pool without encryption (Consul's text).
pub const NOT_ENCRYPTED: &str = "Keyring operations are not available: encryption is not enabled";

/// What a stream frame carries, in its first byte (inside the encryption).
const FRAME_GOSSIP: u8 = 0;
const FRAME_KEYRING: u8 = 1;

/// The filters of a user event: regular expressions its receivers match (empty: all).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventFilters {
    pub node: String,
    pub service: String,
    pub tag: String,
}

/// Why a user event was not fired.
#[derive(Debug, thiserror::Error)]
pub enum FireError {
    /// The event breaks a limit (the caller's fault).
    #[error("{0}")]
    Refused(UserEventError),
    /// The pool is not running.
    #[error("{0}")]
    Stopped(String),
}

/// A handle on a running pool; cheap to clone.
#[derive(Clone)]
pub struct Pool {
    commands: mpsc::Sender<Command>,
    members: watch::Receiver<Arc<Vec<Member>>>,
    events: broadcast::Sender<Event>,
    status: Arc<Mutex<PoolStatus>>,
    rtt_ms: Arc<Mutex<BTreeMap<String, u64>>>,
    local_addr: SocketAddr,
    default_port: u16,
    name: String,
    crypt: Crypt,
    stream_timeout: Duration,
}

/// Counters published by the loop.
#[derive(Clone, Copy, Debug, Default)]
pub struct PoolStatus {
    pub stats: gossip::Stats,
    pub health_score: u32,
    pub leaving: bool,
    /// Datagrams and frames dropped because no key opened them (or they were not sealed).
    pub undecryptable: u64,
}

enum Command {
    Join { addrs: Vec<SocketAddr>, reply: oneshot::Sender<usize> },
    Leave { reply: oneshot::Sender<()> },
    ForceLeave { name: String, reply: oneshot::Sender<Result<(), String>> },
    SetTags { tags: BTreeMap<String, String>, reply: oneshot::Sender<Result<(), String>> },
    UserEvent { event: UserEvent, reply: oneshot::Sender<Result<UserEvent, UserEventError>> },
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
        let mut config = opts.config;
        if opts.keyring.is_some() {
            // Sealed datagrams must still fit the same MTU.
            config.packet_max_bytes = config.packet_max_bytes.saturating_sub(keyring::OVERHEAD_BYTES);
        }
        let gossip = Gossip::new(0, config.clone(), &opts.name, advertise, opts.tags.clone(), opts.seed)
            .map_err(|e| e.to_string())?;
        let (commands, rx) = mpsc::channel(COMMAND_QUEUE_MAX);
        let (members_tx, members) = watch::channel(Arc::new(gossip.members().cloned().collect::<Vec<_>>()));
        let (events, _) = broadcast::channel(EVENT_QUEUE_MAX);
        let status = Arc::new(Mutex::new(PoolStatus::default()));
        let rtt_ms = Arc::new(Mutex::new(BTreeMap::new()));
        let crypt = Crypt(opts.keyring.map(|k| Arc::new(Mutex::new(k))));
        let stream_timeout = Duration::from_millis(config.stream_timeout_ms);
        let pool = Pool {
            commands: commands.clone(),
            members,
            events: events.clone(),
            status: status.clone(),
            rtt_ms: rtt_ms.clone(),
            local_addr,
            default_port: opts.default_port,
            name: opts.name.clone(),
            crypt: crypt.clone(),
            stream_timeout,
        };
        tokio::spawn(accept_streams(tcp, commands.clone(), crypt.clone(), stream_timeout, status.clone()));
        let driver = Driver {
            gossip,
            start,
            udp: Arc::new(udp),
            commands,
            members: members_tx,
            events,
            status,
            rtt_ms,
            joins: Vec::new(),
            leave: None,
            crypt,
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

    /// The smoothed round-trip time of direct probes to each member that answered one (ms).
    pub fn rtt_ms(&self) -> BTreeMap<String, u64> {
        self.rtt_ms.lock().unwrap_or_else(|e| e.into_inner()).clone()
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

    /// Fires a user event at the pool under a fresh random ID (a UUID v4): it is delivered to
    /// every member's [`Pool::subscribe`]rs as [`Event::User`], this one's included. The
    /// event as sent (ID and Lamport time set) comes back; bad events are refused by the core.
    pub async fn fire_event(
        &self,
        name: &str,
        payload: Vec<u8>,
        filters: EventFilters,
    ) -> Result<UserEvent, FireError> {
        let event = UserEvent {
            id: uuid::Builder::from_random_bytes(rand::random()).into_uuid().to_string(),
            name: name.to_string(),
            payload,
            node_filter: filters.node,
            service_filter: filters.service,
            tag_filter: filters.tag,
            ltime: 0,
        };
        event.check().map_err(FireError::Refused)?;
        let (reply, rx) = oneshot::channel();
        self.send(Command::UserEvent { event, reply }).await.map_err(FireError::Stopped)?;
        rx.await.map_err(|_| FireError::Stopped("the gossip pool stopped".to_string()))?.map_err(FireError::Refused)
    }

    /// Whether the pool's traffic is encrypted.
    pub fn encrypted(&self) -> bool {
        self.crypt.0.is_some()
    }

    /// Runs a keyring operation on every live member (each over a stream sealed with our
    /// primary key), then here: the others first, so that `Use` never makes us send under a
    /// key they cannot open yet.
    pub async fn keyring(&self, op: KeyringOp) -> Result<KeyringResponse, String> {
        if !self.encrypted() {
            return Err(NOT_ENCRYPTED.to_string());
        }
        let body = serde_json::to_vec(&op).map_err(|e| e.to_string())?;
        let others: Vec<Member> =
            self.members().iter().filter(|m| m.is_live() && m.name != self.name).cloned().collect();
        let asks = others.iter().map(|m| {
            let (crypt, body) = (self.crypt.clone(), body.clone());
            let timeout = self.stream_timeout;
            async move {
                let reply = exchange(m.addr, &crypt, FRAME_KEYRING, &body, timeout).await.and_then(|(kind, bytes)| {
                    if kind != FRAME_KEYRING {
                        return Err("unexpected answer".to_string());
                    }
                    serde_json::from_slice::<KeyringReply>(&bytes).map_err(|e| e.to_string())
                });
                (m.name.clone(), reply)
            }
        });
        let answers = futures::future::join_all(asks).await;
        let mut response = KeyringResponse::default();
        let mine = self.crypt.apply(&op);
        for (name, reply) in answers.into_iter().chain(std::iter::once((self.name.clone(), Ok(mine)))) {
            match reply {
                Ok(reply) => {
                    response.num_nodes += 1;
                    if let Some(primary) = reply.keys.first() {
                        *response.primary_keys.entry(primary.clone()).or_default() += 1;
                    }
                    for key in reply.keys {
                        *response.keys.entry(key).or_default() += 1;
                    }
                    if let Some(e) = reply.error {
                        response.messages.insert(name, e);
                    }
                }
                Err(e) => {
                    response.messages.insert(name, e);
                }
            }
        }
        Ok(response)
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
    rtt_ms: Arc<Mutex<BTreeMap<String, u64>>>,
    joins: Vec<PendingJoin>,
    leave: Option<oneshot::Sender<()>>,
    crypt: Crypt,
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
                    Ok((n, from)) => match self.crypt.open(&buf[..n]) {
                        Some(packet) => {
                            let now = self.now_ms();
                            self.gossip.handle_packet(now, from, &packet);
                        }
                        None => {
                            self.status.lock().unwrap_or_else(|e| e.into_inner()).undecryptable += 1;
                            tracing::debug!(%from, "dropped a gossip packet no key opens");
                        }
                    },
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
            Command::UserEvent { event, reply } => {
                let _ = reply.send(self.gossip.user_event(now, event));
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
                Output::Packet { to, bytes } => match self.crypt.seal(bytes) {
                    Ok(packet) => {
                        if let Err(e) = self.udp.send_to(&packet, to).await {
                            tracing::debug!(%to, error = %e, "gossip send failed");
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot seal a gossip packet"),
                },
                Output::Stream { to, token, kind, bytes } => {
                    let timeout = Duration::from_millis(self.gossip.config().stream_timeout_ms);
                    let (crypt, commands) = (self.crypt.clone(), self.commands.clone());
                    tokio::spawn(open_stream(to, token, kind, bytes, timeout, crypt, commands));
                }
                Output::Event(event) => {
                    log_event(&event);
                    changed |= !matches!(event, Event::User(_));
                    let _ = self.events.send(event);
                }
            }
        }
        changed
    }

    fn publish(&self) {
        let members: Vec<Member> = self.gossip.members().cloned().collect();
        self.members.send_replace(Arc::new(members));
        let mut status = self.status.lock().unwrap_or_else(|e| e.into_inner());
        status.stats = self.gossip.stats();
        status.health_score = self.gossip.health_score();
        status.leaving = self.gossip.is_leaving();
        drop(status);
        *self.rtt_ms.lock().unwrap_or_else(|e| e.into_inner()) = self.gossip.rtt_ms().clone();
    }
}

fn log_event(event: &Event) {
    match event {
        Event::Joined(m) => tracing::info!(member = %m.name, addr = %m.addr, "gossip: member joined"),
        Event::Updated(m) => tracing::info!(member = %m.name, "gossip: member updated"),
        Event::Failed(m) => tracing::warn!(member = %m.name, addr = %m.addr, "gossip: member failed"),
        Event::Left(m) => tracing::info!(member = %m.name, "gossip: member left"),
        Event::Reaped(m) => tracing::info!(member = %m.name, "gossip: member reaped"),
        Event::User(e) => tracing::debug!(id = %e.id, name = %e.name, ltime = e.ltime, "gossip: user event"),
    }
}

/// One outgoing gossip stream: its reply (or failure) goes back to the loop.
async fn open_stream(
    to: SocketAddr,
    token: u64,
    kind: StreamKind,
    bytes: Vec<u8>,
    timeout: Duration,
    crypt: Crypt,
    commands: mpsc::Sender<Command>,
) {
    let reply = match exchange(to, &crypt, FRAME_GOSSIP, &bytes, timeout).await {
        Ok((FRAME_GOSSIP, reply)) => Some(reply),
        Ok(_) => None,
        Err(e) => {
            tracing::debug!(%to, ?kind, error = %e, "gossip stream failed");
            None
        }
    };
    let _ = commands.send(Command::StreamOut { token, reply }).await;
}

/// Connects, sends one frame and reads one back, within `timeout`.
async fn exchange(
    to: SocketAddr,
    crypt: &Crypt,
    kind: u8,
    body: &[u8],
    timeout: Duration,
) -> Result<(u8, Vec<u8>), String> {
    let talk = async {
        let mut conn = TcpStream::connect(to).await.map_err(|e| e.to_string())?;
        write_frame(&mut conn, crypt, kind, body).await?;
        read_frame(&mut conn, crypt).await
    };
    tokio::time::timeout(timeout, talk).await.map_err(|_| format!("no answer within {timeout:?}"))?
}

async fn accept_streams(
    listener: TcpListener,
    commands: mpsc::Sender<Command>,
    crypt: Crypt,
    timeout: Duration,
    status: Arc<Mutex<PoolStatus>>,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(STREAMS_IN_MAX));
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
        let (commands, crypt, status) = (commands.clone(), crypt.clone(), status.clone());
        tokio::spawn(async move {
            match tokio::time::timeout(timeout, serve_stream(conn, from, commands, &crypt)).await {
                Ok(Err(e)) => {
                    if e == UNDECRYPTABLE {
                        status.lock().unwrap_or_else(|e| e.into_inner()).undecryptable += 1;
                    }
                    tracing::debug!(%from, error = %e, "bad gossip stream");
                }
                Ok(Ok(())) => {}
                Err(_) => tracing::debug!(%from, "gossip stream timed out"),
            }
            drop(slot);
        });
    }
}

async fn serve_stream(
    mut conn: TcpStream,
    from: SocketAddr,
    commands: mpsc::Sender<Command>,
    crypt: &Crypt,
) -> Result<(), String> {
    let (kind, body) = read_frame(&mut conn, crypt).await?;
    let answer = match kind {
        FRAME_GOSSIP => {
            let (reply, rx) = oneshot::channel();
            commands.send(Command::StreamIn { from, bytes: body, reply }).await.map_err(|_| "the pool stopped")?;
            match rx.await {
                Ok(Some(answer)) => answer,
                _ => return Ok(()),
            }
        }
        FRAME_KEYRING => {
            let op: KeyringOp = serde_json::from_slice(&body).map_err(|e| format!("bad keyring operation: {e}"))?;
            tracing::info!(%from, ?op, "keyring operation");
            serde_json::to_vec(&crypt.apply(&op)).map_err(|e| e.to_string())?
        }
        other => return Err(format!("unknown frame kind {other}")),
    };
    write_frame(&mut conn, crypt, kind, &answer).await
}

/// The error of a frame that no key opens.
const UNDECRYPTABLE: &str = "a frame no key opens";

/// A frame: a 4-byte big-endian length, then `[kind][body]`, sealed when the pool is encrypted.
async fn write_frame(conn: &mut TcpStream, crypt: &Crypt, kind: u8, body: &[u8]) -> Result<(), String> {
    let mut plain = Vec::with_capacity(body.len() + 1);
    plain.push(kind);
    plain.extend_from_slice(body);
    let bytes = crypt.seal(plain)?;
    let io = async {
        conn.write_all(&(bytes.len() as u32).to_be_bytes()).await?;
        conn.write_all(&bytes).await?;
        conn.flush().await
    };
    io.await.map_err(|e| e.to_string())
}

async fn read_frame(conn: &mut TcpStream, crypt: &Crypt) -> Result<(u8, Vec<u8>), String> {
    let mut len = [0u8; 4];
    conn.read_exact(&mut len).await.map_err(|e| e.to_string())?;
    let len = u32::from_be_bytes(len) as usize;
    if len > gossip::STREAM_SIZE_MAX_BYTES + keyring::OVERHEAD_BYTES + 1 {
        return Err(format!("gossip frame of {len} bytes"));
    }
    let mut bytes = vec![0u8; len];
    conn.read_exact(&mut bytes).await.map_err(|e| e.to_string())?;
    let mut plain = crypt.open(&bytes).ok_or(UNDECRYPTABLE)?;
    if plain.is_empty() {
        return Err("an empty gossip frame".into());
    }
    let kind = plain.remove(0);
    Ok((kind, plain))
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
            keyring: None,
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

    fn encrypted(name: &str, key: &str) -> PoolOptions {
        PoolOptions { keyring: Some(Keyring::new(&[key.to_string()]).unwrap()), ..options(name) }
    }

    #[tokio::test]
    async fn encrypted_pools_talk_only_to_holders_of_a_key_and_rotate_keys_together() {
        let (k1, k2) = (keyring::generate_key().unwrap(), keyring::generate_key().unwrap());
        let a = Pool::start(encrypted("a", &k1)).await.unwrap();
        let b = Pool::start(encrypted("bb", &k1)).await.unwrap();
        let c = Pool::start(encrypted("ccc", &k1)).await.unwrap();
        assert_eq!(b.join(&[a.local_addr().to_string()]).await, Ok(1));
        assert_eq!(c.join(&[a.local_addr().to_string()]).await, Ok(1));
        assert!(wait_until(|| [&a, &b, &c].iter().all(|p| p.members().len() == 3)).await);

        // Another key, or no key at all: nothing gets through either way.
        let stranger = Pool::start(encrypted("stranger", &k2)).await.unwrap();
        assert!(stranger.join(&[a.local_addr().to_string()]).await.is_err());
        let plain = Pool::start(options("plain")).await.unwrap();
        assert!(plain.join(&[a.local_addr().to_string()]).await.is_err());
        assert!(a.status().undecryptable >= 2, "the refused frames are counted");
        assert_eq!(plain.keyring(KeyringOp::List).await.unwrap_err(), NOT_ENCRYPTED);

        // Rotation through one member reaches all three.
        let r = a.keyring(KeyringOp::Install(k2.clone())).await.unwrap();
        assert_eq!((r.num_nodes, r.keys[&k2], r.messages.len()), (3, 3, 0), "{r:?}");
        let r = b.keyring(KeyringOp::Use(k2.clone())).await.unwrap();
        assert_eq!(r.primary_keys.get(&k2), Some(&3), "{r:?}");
        let r = c.keyring(KeyringOp::Remove(k1.clone())).await.unwrap();
        assert_eq!((r.keys.get(&k1), r.keys.get(&k2)), (None, Some(&3)), "{r:?}");
        let r = a.keyring(KeyringOp::Remove(k2.clone())).await.unwrap();
        assert_eq!(r.messages.len(), 3, "the primary key cannot be removed anywhere: {r:?}");
        // The pool still gossips under the new key: a leave reaches everyone.
        c.leave(Duration::from_secs(2)).await;
        let left = |p: &Pool| p.members().iter().any(|m| m.name == "ccc" && m.status() == gossip::MemberStatus::Left);
        assert!(wait_until(|| left(&a) && left(&b)).await);
    }
}
