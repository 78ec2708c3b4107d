//! The health-check executors: run one script, HTTP or TCP check ([`CheckRun`]) and say what
//! it found ([`CheckResult`]). What to run and when, and what a result means for the catalog,
//! is decided in `legate_core::agent`; this module only does the I/O, the way Consul's agent
//! does it, so that scripts, endpoints and dashboards written for Consul see the same thing:
//!
//! * **Script**: `args[0]` run directly (no shell), stdin null, stdout and stderr into one pipe,
//!   in a process group of its own. Exit 0 passing, 1 warning, anything else critical. On
//!   timeout the whole group is killed: `Timed out (30s) running check`, then the output.
//! * **HTTP**: one request per run on a fresh connection (Consul disables keep-alive), Go's
//!   redirect rules, `User-Agent: Consul Health Check`. 2xx passing, 429 warning, else
//!   critical; output `HTTP GET <url>: 200 OK Output: <body>`.
//! * **TCP**: a connect: `TCP connect <addr>: Success`, or Go's dial error.
//!
//! Error texts follow Go's (`dial tcp 127.0.0.1:1: connect: connection refused`) because that
//! is what Consul puts in a check's output. Every run answers within its timeout plus
//! [`REAP_GRACE_MS`]: nothing waits on the network or a child without a deadline.
//!
//! Outputs keep the *end* of what was produced (Consul reads into a circular buffer; a
//! script's last lines say why it failed) and fit in `output_max_bytes` including the text
//! around them, so the core's own cut (which keeps the head) leaves them intact.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::OwnedFd;
use std::pin::Pin;
use std::process::Stdio;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use legate_core::agent::{CheckKind, CheckResult, CheckRun};
use legate_core::catalog::Status;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};
use tokio_rustls::rustls;
use tokio_rustls::rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use url::Url;

use crate::local::CheckExecutor;

/// Consul's script timeout when a run carries none (`timeout_ms` 0).
const SCRIPT_TIMEOUT_DEFAULT_MS: u64 = 30_000;

/// Consul's HTTP and TCP timeout when a run carries none (`timeout_ms` 0).
const NETWORK_TIMEOUT_DEFAULT_MS: u64 = 10_000;

/// After a timed-out script's group is killed: how long to wait to reap the child and to read
/// what is left in the pipe. SIGKILL cannot be caught, so this is only the kernel's time.
pub const REAP_GRACE_MS: u64 = 1_000;

/// A timeout beyond this is taken as this: deadlines stay representable on any clock.
const TIMEOUT_MAX_MS: u64 = 365 * 24 * 3_600_000;

/// Go's `http.Client` follows at most this many redirects, then fails the request.
const REDIRECTS_MAX: usize = 10;

/// Consul's `User-Agent` for HTTP checks, unless the definition sets one.
const USER_AGENT: &str = "Consul Health Check";

/// Consul's `Accept` for HTTP checks, unless the definition sets one.
const ACCEPT: &str = "text/plain, text/*, */*";

/// Size of one read from a script's pipe.
const READ_CHUNK_BYTES: usize = 8 * 1024;

/// Runs checks. Holds the TLS client configurations (built on first HTTPS use: loading the
/// system's trust roots reads a directory of certificates); connections are not pooled, as
/// Consul's checks disable keep-alive so a half-dead idle connection cannot fail a check.
/// Clones share.
#[derive(Clone, Default)]
pub struct Executor {
    tls: Arc<TlsConfigs>,
}

#[derive(Default)]
struct TlsConfigs {
    /// Certificates checked against the system's roots.
    verified: OnceLock<Result<Arc<ClientConfig>, String>>,
    /// `TLSSkipVerify`: any certificate (handshake signatures are still checked).
    unverified: OnceLock<Result<Arc<ClientConfig>, String>>,
}

/// Runs one check with a process-wide [`Executor`].
pub async fn execute(run: &CheckRun) -> CheckResult {
    static SHARED: OnceLock<Executor> = OnceLock::new();
    SHARED.get_or_init(Executor::new).execute(run).await
}

impl Executor {
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs one check; never panics, answers within the run's timeout plus
    /// [`REAP_GRACE_MS`]. A `timeout_ms` of 0 takes Consul's default for the kind.
    pub async fn execute(&self, run: &CheckRun) -> CheckResult {
        let max = run.output_max_bytes;
        match &run.kind {
            CheckKind::Script { args } => run_script(args, timeout(run, SCRIPT_TIMEOUT_DEFAULT_MS), max).await,
            CheckKind::Http { url, method, header, body, tls_skip_verify, tls_server_name } => {
                let req = HttpCheck {
                    url,
                    method: if method.is_empty() { "GET" } else { method },
                    header,
                    body,
                    tls_skip_verify: *tls_skip_verify,
                    tls_server_name,
                };
                self.run_http(&req, timeout(run, NETWORK_TIMEOUT_DEFAULT_MS), max).await
            }
            CheckKind::Tcp { addr } => run_tcp(addr, timeout(run, NETWORK_TIMEOUT_DEFAULT_MS)).await,
        }
    }
}

impl CheckExecutor for Executor {
    fn execute(&self, run: CheckRun) -> Pin<Box<dyn Future<Output = CheckResult> + Send>> {
        let this = self.clone();
        Box::pin(async move { Executor::execute(&this, &run).await })
    }
}

fn timeout(run: &CheckRun, default_ms: u64) -> Duration {
    let ms = if run.timeout_ms == 0 { default_ms } else { run.timeout_ms.min(TIMEOUT_MAX_MS) };
    Duration::from_millis(ms)
}

fn deadline_after(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout).unwrap_or(now)
}

fn result(status: Status, output: impl Into<String>) -> CheckResult {
    CheckResult { status, output: output.into() }
}

fn critical(output: impl Into<String>) -> CheckResult {
    result(Status::Critical, output)
}

// ---------------------------------------------------------------------------------------------
// Script checks

/// Kills a script's process group when dropped while armed: on timeout, and when the run is
/// abandoned (its future dropped) so no check outlives the agent's interest in it. Disarmed
/// once the child is reaped: after that its pid, and so the group id, may be reused.
struct GroupKill {
    pgid: Option<libc::pid_t>,
}

impl GroupKill {
    fn kill(&self) {
        if let Some(pgid) = self.pgid.filter(|&p| p > 0) {
            // SAFETY: killpg takes plain integers and touches no memory of ours. The group
            // id is our unreaped child's pid, so it cannot name anyone else's group.
            unsafe {
                libc::killpg(pgid, libc::SIGKILL);
            }
        }
    }

    fn disarm(&mut self) {
        self.pgid = None;
    }
}

impl Drop for GroupKill {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn run_script(args: &[String], timeout: Duration, max: usize) -> CheckResult {
    let Some((program, rest)) = args.split_first() else {
        return critical("exec: no command");
    };
    let deadline = deadline_after(timeout);
    // One pipe for both streams, as Go does when Stdout and Stderr are the same writer, so
    // the output interleaves in the order it was written.
    let (reader, writer) = match io::pipe() {
        Ok(pair) => pair,
        Err(e) => return critical(format!("pipe: {}", go_error(&e))),
    };
    let writer_err = match writer.try_clone() {
        Ok(w) => w,
        Err(e) => return critical(format!("pipe: {}", go_error(&e))),
    };
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(rest).stdin(Stdio::null()).stdout(writer).stderr(writer_err).process_group(0).kill_on_drop(true);
    let spawned = cmd.spawn();
    // The command holds our copies of the pipe's write end: without dropping it the pipe
    // never reaches end-of-file.
    drop(cmd);
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => return critical(spawn_error(program, &e)),
    };
    let mut group = GroupKill { pgid: child.id().and_then(|id| libc::pid_t::try_from(id).ok()) };

    let mut tail = Tail::new(max);
    let mut pipe = tokio::net::unix::pipe::Receiver::from_owned_fd(OwnedFd::from(reader)).ok();
    // Like Go's cmd.Wait, the run is over when the child has exited *and* the pipe is closed:
    // a background process still holding the pipe keeps the check running until the timeout,
    // which then kills it with the rest of the group. The child is reaped only after the
    // pipe closes, so until then its pid pins the group id.
    let drained = match pipe.as_mut() {
        Some(rx) => timeout_at(deadline, drain(rx, &mut tail)).await.is_ok(),
        None => true,
    };
    let exited = if drained { timeout_at(deadline, child.wait()).await.ok() } else { None };
    match exited {
        Some(Ok(status)) => {
            group.disarm();
            let output = tail.render(max);
            match status.code() {
                Some(0) => result(Status::Passing, output),
                Some(1) => result(Status::Warning, output),
                _ => result(Status::Critical, output),
            }
        }
        Some(Err(e)) => critical(format!("wait: {}", go_error(&e))),
        None => {
            group.kill();
            let grace = Duration::from_millis(REAP_GRACE_MS);
            if let Ok(Ok(_)) = tokio::time::timeout(grace, child.wait()).await {
                group.disarm();
            }
            // The group is dead, so whatever it wrote is all there is: read the rest briefly.
            if let Some(rx) = pipe.as_mut() {
                let _ = tokio::time::timeout(grace / 4, drain(rx, &mut tail)).await;
            }
            let mut msg = format!("Timed out ({}) running check", go_duration(timeout));
            let output = tail.render(max.saturating_sub(msg.len() + 2));
            if !output.is_empty() {
                msg.push_str("\n\n");
                msg.push_str(&output);
            }
            critical(msg)
        }
    }
}

/// Reads the pipe into `tail` until end-of-file (or an error, which ends the output too).
async fn drain(rx: &mut tokio::net::unix::pipe::Receiver, tail: &mut Tail) {
    let mut buf = vec![0u8; READ_CHUNK_BYTES];
    loop {
        match rx.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => tail.push(buf.get(..n).unwrap_or_default()),
        }
    }
}

/// Go's wording for a failed start: `exec: "x": executable file not found in $PATH` when a
/// bare name is not on the PATH, else `fork/exec /path: <errno text>`.
fn spawn_error(program: &str, e: &io::Error) -> String {
    if e.kind() == io::ErrorKind::NotFound && !program.contains('/') {
        format!("exec: {program:?}: executable file not found in $PATH")
    } else {
        format!("fork/exec {program}: {}", go_error(e))
    }
}

/// The last bytes written, up to a cap, and how many were written in all: Consul's circular
/// output buffer. Memory stays within the cap whatever a check prints.
struct Tail {
    buf: VecDeque<u8>,
    cap: usize,
    total: u64,
}

impl Tail {
    fn new(cap: usize) -> Self {
        Tail { buf: VecDeque::new(), cap, total: 0 }
    }

    fn push(&mut self, data: &[u8]) {
        self.total = self.total.saturating_add(data.len() as u64);
        let data = data.get(data.len().saturating_sub(self.cap)..).unwrap_or_default();
        let overflow = (self.buf.len() + data.len()).saturating_sub(self.cap);
        self.buf.drain(..overflow.min(self.buf.len()));
        self.buf.extend(data);
    }

    /// The output in at most `budget` bytes: all of it when it fits, else Consul's
    /// `Captured <kept> of <total> bytes\n...\n` and the end of it.
    fn render(&self, budget: usize) -> String {
        let bytes: Vec<u8> = self.buf.iter().copied().collect();
        if self.total <= budget as u64 && self.buf.len() as u64 == self.total {
            let text = String::from_utf8_lossy(&bytes);
            if text.len() <= budget {
                return text.into_owned();
            }
        }
        // Size the header for the largest count it may show, then grow the text while a
        // shorter count leaves room (a digit or two).
        let mut room = budget.saturating_sub(captured_header(budget, self.total).len());
        while room < budget && captured_header(room + 1, self.total).len() + room < budget {
            room += 1;
        }
        let text = tail_text(&bytes, room);
        let mut out = captured_header(text.len(), self.total);
        out.push_str(&text);
        out
    }
}

fn captured_header(kept: usize, total: u64) -> String {
    format!("Captured {kept} of {total} bytes\n...\n")
}

/// The end of `bytes` as text of at most `budget` bytes, starting on a character boundary
/// (invalid UTF-8 becomes U+FFFD).
fn tail_text(bytes: &[u8], budget: usize) -> String {
    let mut start = bytes.len().saturating_sub(budget);
    // Skip the continuation bytes of a character cut at the front.
    while bytes.get(start).is_some_and(|b| b & 0xC0 == 0x80) && start < bytes.len() {
        start += 1;
    }
    let text = String::from_utf8_lossy(bytes.get(start..).unwrap_or_default()).into_owned();
    if text.len() <= budget {
        return text;
    }
    // Replacement characters made it longer: cut again at a boundary.
    let mut cut = text.len() - budget;
    while !text.is_char_boundary(cut) {
        cut += 1;
    }
    text.get(cut..).unwrap_or_default().to_string()
}

// ---------------------------------------------------------------------------------------------
// TCP checks

async fn run_tcp(addr: &str, timeout: Duration) -> CheckResult {
    match timeout_at(deadline_after(timeout), dial_addr(addr)).await {
        Ok(Ok(_stream)) => result(Status::Passing, format!("TCP connect {addr}: Success")),
        Ok(Err(e)) => critical(e),
        Err(_) => critical(format!("dial tcp {addr}: i/o timeout")),
    }
}

/// Connects to `host:port` (`[v6]:port` for IPv6), with Go's error texts.
async fn dial_addr(addr: &str) -> Result<TcpStream, String> {
    let (host, port) =
        split_host_port(addr).ok_or_else(|| format!("dial tcp: address {addr}: missing port in address"))?;
    let port = port.parse::<u16>().map_err(|_| format!("dial tcp: address {addr}: invalid port"))?;
    dial(host, port).await
}

/// Go's `net.SplitHostPort`, without service names.
fn split_host_port(addr: &str) -> Option<(&str, &str)> {
    if let Some(rest) = addr.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        return Some((host, after.strip_prefix(':')?));
    }
    let (host, port) = addr.rsplit_once(':')?;
    if host.contains(':') {
        return None; // a bare IPv6 address needs brackets
    }
    Some((host, port))
}

/// Resolves `host` and connects to its addresses in turn; the caller bounds the time.
async fn dial(host: &str, port: u16) -> Result<TcpStream, String> {
    let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| format!("dial tcp: lookup {host}: {}", go_error(&e)))?
            .collect(),
    };
    let mut last = format!("dial tcp: lookup {host}: no such host");
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(stream) => return Ok(stream),
            Err(e) => last = format!("dial tcp {addr}: connect: {}", go_error(&e)),
        }
    }
    Err(last)
}

/// An OS error as Go prints it (`connection refused`), else the error's own text.
fn go_error(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => {
            let text = io::Error::from_raw_os_error(code).to_string();
            let text = text.split(" (os error").next().unwrap_or_default();
            let mut chars = text.chars();
            match chars.next() {
                Some(first) => first.to_lowercase().chain(chars).collect(),
                None => e.to_string(),
            }
        }
        None => e.to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP checks

struct HttpCheck<'a> {
    url: &'a str,
    method: &'a str,
    header: &'a std::collections::BTreeMap<String, Vec<String>>,
    body: &'a str,
    tls_skip_verify: bool,
    tls_server_name: &'a str,
}

/// One request of a run (the first, or one after a redirect).
struct Hop {
    url: Url,
    method: Method,
    headers: HeaderMap,
    /// A `Host` header from the definition: sent instead of the URL's host.
    host: Option<HeaderValue>,
    body: Bytes,
}

impl Executor {
    async fn run_http(&self, check: &HttpCheck<'_>, timeout: Duration, max: usize) -> CheckResult {
        let deadline = deadline_after(timeout);
        let op = go_op(check.method);
        let url = match Url::parse(check.url) {
            Ok(url) => url,
            Err(e) => return critical(format!("parse {:?}: {e}", check.url)),
        };
        let Ok(method) = Method::from_bytes(check.method.as_bytes()) else {
            return critical(format!("net/http: invalid method {:?}", check.method));
        };
        let (headers, host) = match request_headers(check.header) {
            Ok(h) => h,
            Err(e) => return critical(format!("{op} {:?}: {e}", check.url)),
        };
        let mut hop = Hop { url, method, headers, host, body: Bytes::copy_from_slice(check.body.as_bytes()) };
        let mut redirects = 0;
        let (response, conn) = loop {
            let sent = timeout_at(deadline, self.round_trip(&hop, check)).await;
            let (response, conn) = match sent {
                Ok(Ok(answer)) => answer,
                Ok(Err(e)) => return critical(format!("{} {:?}: {e}", go_op(hop.method.as_str()), hop.url.as_str())),
                Err(_) => {
                    return critical(format!(
                        "{} {:?}: context deadline exceeded (Client.Timeout exceeded while awaiting headers)",
                        go_op(hop.method.as_str()),
                        hop.url.as_str()
                    ))
                }
            };
            match redirect(&hop, &response) {
                Ok(None) => break (response, conn),
                Ok(Some(next)) => {
                    redirects += 1;
                    if redirects > REDIRECTS_MAX {
                        return critical(format!(
                            "{} {:?}: stopped after {REDIRECTS_MAX} redirects",
                            go_op(next.method.as_str()),
                            next.url.as_str()
                        ));
                    }
                    hop = next;
                }
                Err(e) => return critical(format!("{} {:?}: {e}", go_op(hop.method.as_str()), hop.url.as_str())),
            }
        };

        let status = response.status();
        let reason = match response.extensions().get::<hyper::ext::ReasonPhrase>() {
            Some(reason) => String::from_utf8_lossy(reason.as_bytes()).into_owned(),
            None => status.canonical_reason().unwrap_or_default().to_string(),
        };
        let mut out = format!("HTTP {} {}: {} {reason} Output: ", check.method, check.url, status.as_u16());
        // Like Consul: the body is read to its end (or the deadline, keeping what came), its
        // last bytes kept.
        let budget = max.saturating_sub(out.len());
        let mut tail = Tail::new(budget);
        let mut body = response.into_body();
        while let Ok(Some(Ok(frame))) = timeout_at(deadline, body.frame()).await {
            if let Some(data) = frame.data_ref() {
                tail.push(data);
            }
        }
        drop(conn);
        let bytes: Vec<u8> = tail.buf.iter().copied().collect();
        out.push_str(&tail_text(&bytes, budget));
        let status = match status.as_u16() {
            200..=299 => Status::Passing,
            429 => Status::Warning,
            _ => Status::Critical,
        };
        result(status, out)
    }

    /// Sends one request on a new connection; answers with the response head and the task
    /// driving the connection (the body still to be read through it).
    async fn round_trip(
        &self,
        hop: &Hop,
        check: &HttpCheck<'_>,
    ) -> Result<(Response<hyper::body::Incoming>, ConnTask), String> {
        let url = &hop.url;
        let tls = match url.scheme() {
            "http" => false,
            "https" => true,
            other => return Err(format!("unsupported protocol scheme {other:?}")),
        };
        let host = match url.host() {
            Some(url::Host::Domain(d)) => d.to_string(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            None => return Err("http: no Host in request URL".to_string()),
        };
        let port = url.port_or_known_default().unwrap_or(if tls { 443 } else { 80 });
        let stream = dial(&host, port).await?;
        let _ = stream.set_nodelay(true);
        let request = build_request(hop)?;
        if !tls {
            return send(stream, request).await;
        }
        let config = self.tls_config(check.tls_skip_verify)?;
        // Consul's TLSServerName is both the SNI and the name the certificate must carry.
        let name = if check.tls_server_name.is_empty() { host.as_str() } else { check.tls_server_name };
        let name = ServerName::try_from(name.to_string()).map_err(|e| format!("tls: invalid server name: {e}"))?;
        let stream = tokio_rustls::TlsConnector::from(config)
            .connect(name, stream)
            .await
            .map_err(|e| format!("tls: {}", error_chain(&e)))?;
        send(stream, request).await
    }

    fn tls_config(&self, skip_verify: bool) -> Result<Arc<ClientConfig>, String> {
        let cell = if skip_verify { &self.tls.unverified } else { &self.tls.verified };
        cell.get_or_init(|| build_tls_config(skip_verify)).clone()
    }
}

/// Aborts the task driving a connection when dropped, closing the socket.
struct ConnTask(tokio::task::JoinHandle<()>);

impl Drop for ConnTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn send<T>(io: T, request: Request<Full<Bytes>>) -> Result<(Response<hyper::body::Incoming>, ConnTask), String>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // Title-Case header names, as Go writes them: some hand-written health endpoints match
    // them case-sensitively.
    let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
        .title_case_headers(true)
        .handshake(TokioIo::new(io))
        .await
        .map_err(|e| error_chain(&e))?;
    let task = ConnTask(tokio::spawn(async move {
        let _ = conn.await;
    }));
    sender.ready().await.map_err(|e| error_chain(&e))?;
    let response = sender.send_request(request).await.map_err(|e| error_chain(&e))?;
    Ok((response, task))
}

fn build_request(hop: &Hop) -> Result<Request<Full<Bytes>>, String> {
    let url = &hop.url;
    let target = &url[url::Position::BeforePath..url::Position::AfterQuery];
    let target = if target.is_empty() { "/" } else { target };
    let mut request = Request::new(Full::new(hop.body.clone()));
    *request.method_mut() = hop.method.clone();
    *request.uri_mut() = target.parse().map_err(|e| format!("invalid request target {target:?}: {e}"))?;
    let headers = request.headers_mut();
    headers.clone_from(&hop.headers);
    let host = match &hop.host {
        Some(host) => host.clone(),
        None => {
            let authority = match (url.host_str(), url.port()) {
                (Some(h), Some(p)) => format!("{h}:{p}"),
                (Some(h), None) => h.to_string(),
                (None, _) => String::new(),
            };
            HeaderValue::from_str(&authority).map_err(|_| format!("invalid host {authority:?}"))?
        }
    };
    headers.insert(header::HOST, host);
    // Go sends the URL's user info as basic auth unless the definition has an Authorization.
    if !url.username().is_empty() && !headers.contains_key(header::AUTHORIZATION) {
        let decode = |s: &str| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned();
        let pair = format!("{}:{}", decode(url.username()), decode(url.password().unwrap_or_default()));
        let value = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair));
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(header::AUTHORIZATION, value);
        }
    }
    // Keep-alive off, as in Consul's transport.
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    Ok(request)
}

/// The definition's headers (each value of a list sent as its own header line) with Consul's
/// `User-Agent` and `Accept` where it sets none, and its `Host` apart.
fn request_headers(
    defined: &std::collections::BTreeMap<String, Vec<String>>,
) -> Result<(HeaderMap, Option<HeaderValue>), String> {
    let mut headers = HeaderMap::new();
    let mut host = None;
    for (name, values) in defined {
        let header_name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("net/http: invalid header field name {name:?}"))?;
        for value in values {
            let value = HeaderValue::from_str(value)
                .map_err(|_| format!("net/http: invalid header field value for {name:?}"))?;
            if header_name == header::HOST {
                host.get_or_insert(value);
            } else {
                headers.append(header_name.clone(), value);
            }
        }
    }
    // Go's Header.Get looks at the first value: an empty one counts as unset.
    for (name, default) in [(header::USER_AGENT, USER_AGENT), (header::ACCEPT, ACCEPT)] {
        if headers.get(&name).is_none_or(|v| v.is_empty()) {
            headers.insert(name, HeaderValue::from_static(default));
        }
    }
    Ok((headers, host.filter(|h| !h.is_empty())))
}

/// The next request if `response` is a redirect Go's client follows: 301/302/303 turn into a
/// GET without a body (HEAD stays HEAD), 307/308 repeat method and body. Credentials and
/// cookies are not sent to another host (unless a subdomain), and a `Host` override only
/// survives a relative Location.
fn redirect(hop: &Hop, response: &Response<hyper::body::Incoming>) -> Result<Option<Hop>, String> {
    let keep_method = match response.status() {
        StatusCode::MOVED_PERMANENTLY | StatusCode::FOUND | StatusCode::SEE_OTHER => false,
        StatusCode::TEMPORARY_REDIRECT | StatusCode::PERMANENT_REDIRECT => true,
        _ => return Ok(None),
    };
    let Some(location) = response.headers().get(header::LOCATION) else {
        return Ok(None);
    };
    let location = String::from_utf8_lossy(location.as_bytes()).into_owned();
    let url = hop.url.join(&location).map_err(|e| format!("failed to parse Location header {location:?}: {e}"))?;
    let (method, body) = if keep_method || hop.method == Method::GET || hop.method == Method::HEAD {
        let body = if keep_method { hop.body.clone() } else { Bytes::new() };
        (hop.method.clone(), body)
    } else {
        (Method::GET, Bytes::new())
    };
    let mut headers = hop.headers.clone();
    let same_site = match (hop.url.host_str(), url.host_str()) {
        (Some(from), Some(to)) => {
            let (from, to) = (from.to_ascii_lowercase(), to.to_ascii_lowercase());
            to == from || to.strip_suffix(&from).is_some_and(|sub| sub.ends_with('.'))
        }
        _ => false,
    };
    if !same_site {
        for name in [header::AUTHORIZATION, header::WWW_AUTHENTICATE, header::COOKIE] {
            headers.remove(name);
        }
        headers.remove("cookie2");
    }
    let relative = Url::parse(&location).is_err();
    let host = if relative { hop.host.clone() } else { None };
    Ok(Some(Hop { url, method, headers, host, body }))
}

/// The operation Go names in a request error: the method with only its first letter capital.
fn go_op(method: &str) -> String {
    let mut chars = method.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars.flat_map(char::to_lowercase)).collect(),
        None => "Get".to_string(),
    }
}

/// An error and its causes, `outer: inner: ...` (hyper's and rustls's own texts are terse).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

fn build_tls_config(skip_verify: bool) -> Result<Arc<ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("tls: {e}"))?;
    let mut config = if skip_verify {
        builder.dangerous().with_custom_certificate_verifier(Arc::new(AnyCertificate(provider))).with_no_client_auth()
    } else {
        let mut roots = rustls::RootCertStore::empty();
        // Unreadable or malformed certificates are skipped, as Go's loader does; with no
        // roots at all every verified handshake fails, which the check then reports.
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// `TLSSkipVerify`: any certificate for any name is accepted, as Go's `InsecureSkipVerify`;
/// the handshake's signatures are still checked so the session keys are the peer's.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Go's `time.Duration.String` for whole milliseconds: `300ms`, `1.5s`, `30s`, `1m30s`,
/// `1h0m0s` — the text Consul puts in `Timed out (...) running check`.
fn go_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".to_string();
    }
    if ms < 1_000 {
        return format!("{ms}ms");
    }
    let (hours, minutes, seconds, millis) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1_000 % 60, ms % 1_000);
    let mut secs = seconds.to_string();
    if millis > 0 {
        secs.push_str(format!(".{millis:03}").trim_end_matches('0'));
    }
    if hours > 0 {
        format!("{hours}h{minutes}m{secs}s")
    } else if minutes > 0 {
        format!("{minutes}m{secs}s")
    } else {
        format!("{secs}s")
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Instant as StdInstant;

    use tokio::io::AsyncWriteExt as _;
    use tokio::net::TcpListener;
    use tokio_rustls::rustls::pki_types::pem::PemObject as _;
    use tokio_rustls::rustls::pki_types::PrivateKeyDer;

    use super::*;

    fn check(kind: CheckKind, timeout_ms: u64, output_max_bytes: usize) -> CheckRun {
        CheckRun { check_id: "c".to_string(), kind, timeout_ms, output_max_bytes }
    }

    fn sh(script: &str) -> CheckKind {
        CheckKind::Script { args: vec!["sh".to_string(), "-c".to_string(), script.to_string()] }
    }

    fn http(url: String) -> CheckKind {
        CheckKind::Http {
            url,
            method: String::new(),
            header: BTreeMap::new(),
            body: String::new(),
            tls_skip_verify: false,
            tls_server_name: String::new(),
        }
    }

    // --- scripts ---------------------------------------------------------------------------

    #[tokio::test]
    async fn script_exit_codes_map_to_statuses() {
        for (code, status) in
            [(0, Status::Passing), (1, Status::Warning), (2, Status::Critical), (255, Status::Critical)]
        {
            let got = execute(&check(sh(&format!("echo out; exit {code}")), 5_000, 4096)).await;
            assert_eq!(got, result(status, "out\n"), "exit {code}");
        }
        let killed = execute(&check(sh("echo bye; kill -9 $$"), 5_000, 4096)).await;
        assert_eq!(killed, critical("bye\n"));
    }

    #[tokio::test]
    async fn script_stdout_and_stderr_interleave_in_one_output() {
        let got = execute(&check(sh("echo one; echo two >&2; echo three; echo four >&2"), 5_000, 4096)).await;
        assert_eq!(got, result(Status::Passing, "one\ntwo\nthree\nfour\n"));
    }

    #[tokio::test]
    async fn script_output_keeps_its_end_within_the_limit() {
        let got = execute(&check(sh("head -c 10000 /dev/zero | tr '\\0' a; printf END"), 5_000, 100)).await;
        assert_eq!(got.status, Status::Passing);
        assert!(got.output.len() <= 100, "{} bytes", got.output.len());
        assert!(got.output.starts_with("Captured "), "{:?}", got.output);
        assert!(got.output.contains(" of 10003 bytes\n...\n"), "{:?}", got.output);
        assert!(got.output.ends_with("aaaEND"), "{:?}", got.output);
    }

    /// Whether a process is gone (or a zombie nobody has reaped yet: it runs no more).
    fn gone(pid: u32) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            Ok(stat) => stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
        }
    }

    async fn wait_gone(pid: u32) -> bool {
        for _ in 0..40 {
            if gone(pid) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    fn first_pid(output: &str) -> u32 {
        let line = output.lines().find(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()));
        line.and_then(|l| l.parse().ok()).unwrap_or_else(|| panic!("no pid in {output:?}"))
    }

    #[tokio::test]
    async fn script_timeout_kills_the_whole_group() {
        let started = StdInstant::now();
        let got = execute(&check(sh("sleep 30 & echo $!; sleep 30"), 300, 4096)).await;
        let took = started.elapsed();
        assert_eq!(got.status, Status::Critical);
        assert!(got.output.starts_with("Timed out (300ms) running check\n\n"), "{:?}", got.output);
        assert!(took < Duration::from_millis(300 + REAP_GRACE_MS), "took {took:?}");
        let grandchild = first_pid(&got.output);
        assert!(wait_gone(grandchild).await, "grandchild {grandchild} still running");
    }

    #[tokio::test]
    async fn script_whose_background_child_holds_the_pipe_times_out_and_is_killed() {
        let started = StdInstant::now();
        let got = execute(&check(sh("sleep 30 & echo $!; exit 0"), 300, 4096)).await;
        assert!(started.elapsed() < Duration::from_millis(300 + REAP_GRACE_MS), "took {:?}", started.elapsed());
        assert_eq!(got.status, Status::Critical);
        assert!(got.output.starts_with("Timed out (300ms) running check"), "{:?}", got.output);
        let grandchild = first_pid(&got.output);
        assert!(wait_gone(grandchild).await, "background child {grandchild} still running");
    }

    #[tokio::test]
    async fn script_that_cannot_start_is_critical() {
        let run = |args: &[&str]| {
            check(CheckKind::Script { args: args.iter().map(|a| a.to_string()).collect() }, 5_000, 4096)
        };
        assert_eq!(
            execute(&run(&["/nonexistent/legate-check"])).await,
            critical("fork/exec /nonexistent/legate-check: no such file or directory")
        );
        assert_eq!(
            execute(&run(&["legate-no-such-check", "x"])).await,
            critical("exec: \"legate-no-such-check\": executable file not found in $PATH")
        );
        assert_eq!(execute(&run(&[])).await, critical("exec: no command"));
    }

    #[test]
    fn tail_cuts_on_a_character_boundary() {
        // "é" is two bytes: a budget of 4 over "aéé" cannot start inside the first "é".
        assert_eq!(tail_text("aéé".as_bytes(), 4), "éé");
        assert_eq!(tail_text("aéé".as_bytes(), 3), "é");
        assert_eq!(tail_text(b"abc", 0), "");
        let mut tail = Tail::new(8);
        tail.push(b"0123456789");
        tail.push(b"ab");
        assert_eq!(tail.total, 12);
        assert_eq!(tail.render(40), "Captured 8 of 12 bytes\n...\n456789ab");
        assert_eq!(tail.render(30), "Captured 3 of 12 bytes\n...\n9ab");
        let mut small = Tail::new(8);
        small.push(b"abc");
        assert_eq!(small.render(8), "abc");
    }

    #[test]
    fn durations_print_like_go() {
        let cases = [(0, "0s"), (300, "300ms"), (1_000, "1s"), (1_500, "1.5s"), (1_250, "1.25s"), (30_000, "30s")];
        for (ms, text) in cases.into_iter().chain([(90_000, "1m30s"), (3_600_000, "1h0m0s"), (3_661_001, "1h1m1.001s")])
        {
            assert_eq!(go_duration(Duration::from_millis(ms)), text);
        }
    }

    // --- HTTP ------------------------------------------------------------------------------

    /// Reads one HTTP/1 request (head and Content-Length body) as text.
    async fn read_request<S: AsyncRead + Unpin>(stream: &mut S) -> String {
        let mut raw = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
                let len = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                if raw.len() >= end + 4 + len {
                    return String::from_utf8_lossy(&raw).into_owned();
                }
            }
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return String::from_utf8_lossy(&raw).into_owned(),
                Ok(n) => raw.extend_from_slice(&buf[..n]),
            }
        }
    }

    /// Answers one connection per canned response, in order; yields the requests it read.
    async fn serve(responses: Vec<String>) -> (SocketAddr, tokio::task::JoinHandle<Vec<String>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            let mut requests = Vec::new();
            for response in responses {
                let (mut stream, _) = listener.accept().await.expect("accept");
                requests.push(read_request(&mut stream).await);
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.shutdown().await;
            }
            requests
        });
        (addr, task)
    }

    fn response(status: &str, body: &str) -> String {
        format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
    }

    #[tokio::test]
    async fn http_status_codes_map_to_statuses() {
        for (line, status) in [
            ("200 OK", Status::Passing),
            ("429 Too Many Requests", Status::Warning),
            ("503 Service Unavailable", Status::Critical),
        ] {
            let (addr, server) = serve(vec![response(line, "body text")]).await;
            let url = format!("http://{addr}/health?x=1");
            let got = execute(&check(http(url.clone()), 5_000, 4096)).await;
            assert_eq!(got, result(status, format!("HTTP GET {url}: {line} Output: body text")));
            let requests = server.await.expect("server");
            let request = &requests[0];
            assert!(request.starts_with("GET /health?x=1 HTTP/1.1\r\n"), "{request}");
            assert!(request.contains("\r\nUser-Agent: Consul Health Check\r\n"), "{request}");
            assert!(request.contains("\r\nAccept: text/plain, text/*, */*\r\n"), "{request}");
            assert!(request.contains(&format!("\r\nHost: {addr}\r\n")), "{request}");
        }
    }

    #[tokio::test]
    async fn http_method_headers_and_body_reach_the_server() {
        let (addr, server) = serve(vec![response("201 Created", "")]).await;
        let url = format!("http://{addr}/");
        let header = BTreeMap::from([
            ("X-Token".to_string(), vec!["a".to_string(), "b".to_string()]),
            ("User-Agent".to_string(), vec!["mine".to_string()]),
            ("Host".to_string(), vec!["svc.example".to_string()]),
        ]);
        let kind = CheckKind::Http {
            url: url.clone(),
            method: "POST".to_string(),
            header,
            body: "ping".to_string(),
            tls_skip_verify: false,
            tls_server_name: String::new(),
        };
        let got = execute(&check(kind, 5_000, 4096)).await;
        assert_eq!(got, result(Status::Passing, format!("HTTP POST {url}: 201 Created Output: ")));
        let request = server.await.expect("server").remove(0);
        assert!(request.starts_with("POST / HTTP/1.1\r\n"), "{request}");
        assert!(request.contains("\r\nX-Token: a\r\nX-Token: b\r\n"), "{request}");
        assert!(request.contains("\r\nUser-Agent: mine\r\n"), "{request}");
        assert!(!request.contains("Consul Health Check"), "{request}");
        assert!(request.contains("\r\nHost: svc.example\r\n"), "{request}");
        assert!(request.ends_with("\r\n\r\nping"), "{request}");
    }

    #[tokio::test]
    async fn http_follows_redirects_like_go() {
        let redirect = "HTTP/1.1 302 Found\r\nLocation: /ok\r\nContent-Length: 0\r\n\r\n".to_string();
        let (addr, server) = serve(vec![redirect, response("200 OK", "fine")]).await;
        let url = format!("http://{addr}/start");
        let mut kind = http(url.clone());
        if let CheckKind::Http { method, body, .. } = &mut kind {
            *method = "POST".to_string();
            *body = "data".to_string();
        }
        let got = execute(&check(kind, 5_000, 4096)).await;
        assert_eq!(got, result(Status::Passing, format!("HTTP POST {url}: 200 OK Output: fine")));
        let requests = server.await.expect("server");
        assert!(requests[0].starts_with("POST /start "), "{}", requests[0]);
        // A 302 turns a POST into a GET without a body.
        assert!(requests[1].starts_with("GET /ok "), "{}", requests[1]);
        assert!(requests[1].ends_with("\r\n\r\n"), "{}", requests[1]);
    }

    #[tokio::test]
    async fn http_body_keeps_its_end_within_the_limit() {
        let body = format!("{}END", "a".repeat(10_000));
        let (addr, _server) = serve(vec![response("200 OK", &body)]).await;
        let got = execute(&check(http(format!("http://{addr}/")), 5_000, 200)).await;
        assert_eq!(got.status, Status::Passing);
        assert_eq!(got.output.len(), 200);
        assert!(got.output.starts_with(&format!("HTTP GET http://{addr}/: 200 OK Output: aaa")), "{}", got.output);
        assert!(got.output.ends_with("aaaEND"));
    }

    #[tokio::test]
    async fn http_connection_refused_is_critical() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        let got = execute(&check(http(format!("http://{addr}/")), 5_000, 4096)).await;
        assert_eq!(got, critical(format!("Get \"http://{addr}/\": dial tcp {addr}: connect: connection refused")));
    }

    #[tokio::test]
    async fn http_server_that_never_answers_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let _holder = tokio::spawn(async move {
            let (_stream, _) = listener.accept().await.expect("accept");
            tokio::time::sleep(Duration::from_secs(30)).await;
        });
        let started = StdInstant::now();
        let got = execute(&check(http(format!("http://{addr}/")), 300, 4096)).await;
        assert!(started.elapsed() < Duration::from_millis(300 + REAP_GRACE_MS), "took {:?}", started.elapsed());
        assert_eq!(
            got,
            critical(format!(
                "Get \"http://{addr}/\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
            ))
        );
    }

    #[tokio::test]
    async fn http_bad_definitions_are_critical() {
        let got = execute(&check(http("not a url".to_string()), 5_000, 4096)).await;
        assert_eq!(got.status, Status::Critical);
        assert!(got.output.starts_with("parse \"not a url\": "), "{}", got.output);
        let got = execute(&check(http("ftp://127.0.0.1/".to_string()), 5_000, 4096)).await;
        assert_eq!(got, critical("Get \"ftp://127.0.0.1/\": unsupported protocol scheme \"ftp\""));
    }

    const TEST_CERT: &str = "-----BEGIN CERTIFICATE-----
MIIBmjCCAUGgAwIBAgIUBR+9d57X1EXy+kO5iPfehT7y8EAwCgYIKoZIzj0EAwIw
FjEUMBIGA1UEAwwLbGVnYXRlLXRlc3QwIBcNMjYxMTI5MDA0NzQ2WhgPMjEyNjEx
MDUwMDQ3NDZaMBYxFDASBgNVBAMMC2xlZ2F0ZS10ZXN0MFkwEwYHKoZIzj0CAQYI
KoZIzj0DAQcDQgAEXcVzwYUSPfv2OP8L1hlNRuEJzQt+6ATtN7tPCuRkjCJ8P/oJ
aLLFL18rXo9VdIhUS7rOu2YjMScuyRgrYZMx3KNrMGkwHQYDVR0OBBYEFPwFvLYN
vFiwmZKDueCNLMI+8RX1MB8GA1UdIwQYMBaAFPwFvLYNvFiwmZKDueCNLMI+8RX1
MA8GA1UdEwEB/wQFMAMBAf8wFgYDVR0RBA8wDYILbGVnYXRlLXRlc3QwCgYIKoZI
zj0EAwIDRwAwRAIgQrJVMcX384B6xMq+5AVa6HnQ7J+Xwu0xT2cpCQ0BvcYCIGo4
4UL5HSMxRB5UPfhTrWUog35WyKvSdPkdAPWtcu/2
-----END CERTIFICATE-----
";

    /// A key made for these tests only (self-signed `legate-test`, valid to 2126).
    const TEST_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg9W7OBdoPCYxCAcrw
6Wqs/GOjLhgPEqhTIn6Oj+eKY6ihRANCAARdxXPBhRI9+/Y4/wvWGU1G4QnNC37o
BO03u08K5GSMInw/+glossUvXytej1V0iFRLus67ZiMxJy7JGCthkzHc
-----END PRIVATE KEY-----
";

    /// An HTTPS server with a self-signed certificate: answers each connection that
    /// completes a handshake with 200, and yields the SNI names it was offered.
    async fn serve_tls(connections: usize) -> (SocketAddr, tokio::task::JoinHandle<Vec<Option<String>>>) {
        let cert = CertificateDer::from_pem_slice(TEST_CERT.as_bytes()).expect("cert");
        let key = PrivateKeyDer::from_pem_slice(TEST_KEY.as_bytes()).expect("key");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            let mut names = Vec::new();
            for _ in 0..connections {
                let (stream, _) = listener.accept().await.expect("accept");
                let Ok(mut tls) = acceptor.accept(stream).await else {
                    names.push(None);
                    continue;
                };
                names.push(tls.get_ref().1.server_name().map(str::to_string));
                read_request(&mut tls).await;
                let _ = tls.write_all(response("200 OK", "secure").as_bytes()).await;
                let _ = tls.shutdown().await;
            }
            names
        });
        (addr, task)
    }

    #[tokio::test]
    async fn https_verifies_unless_told_to_skip_and_sends_the_server_name() {
        let (addr, server) = serve_tls(3).await;
        let url = format!("https://{addr}/");
        let kind = |skip: bool, name: &str| CheckKind::Http {
            url: url.clone(),
            method: String::new(),
            header: BTreeMap::new(),
            body: String::new(),
            tls_skip_verify: skip,
            tls_server_name: name.to_string(),
        };
        let exec = Executor::new();
        let got = exec.execute(&check(kind(true, ""), 5_000, 4096)).await;
        assert_eq!(got, result(Status::Passing, format!("HTTP GET {url}: 200 OK Output: secure")));
        let got = exec.execute(&check(kind(true, "legate-test"), 5_000, 4096)).await;
        assert_eq!(got.status, Status::Passing, "{}", got.output);
        // Self-signed: not trusted by the system's roots.
        let got = exec.execute(&check(kind(false, "legate-test"), 5_000, 4096)).await;
        assert_eq!(got.status, Status::Critical);
        assert!(got.output.starts_with(&format!("Get \"{url}\": tls: ")), "{}", got.output);
        let names = server.await.expect("server");
        // An IP address is never sent as SNI; a configured server name is.
        assert_eq!(names, vec![None, Some("legate-test".to_string()), None]);
    }

    // --- TCP -------------------------------------------------------------------------------

    #[tokio::test]
    async fn tcp_connect_passes_and_refusal_is_critical() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        for addr in [format!("127.0.0.1:{port}"), format!("localhost:{port}")] {
            let got = execute(&check(CheckKind::Tcp { addr: addr.clone() }, 5_000, 4096)).await;
            assert_eq!(got, result(Status::Passing, format!("TCP connect {addr}: Success")));
        }
        drop(listener);
        let addr = format!("127.0.0.1:{port}");
        let got = execute(&check(CheckKind::Tcp { addr: addr.clone() }, 5_000, 4096)).await;
        assert_eq!(got, critical(format!("dial tcp {addr}: connect: connection refused")));
        let got = execute(&check(CheckKind::Tcp { addr: "127.0.0.1".to_string() }, 5_000, 4096)).await;
        assert_eq!(got, critical("dial tcp: address 127.0.0.1: missing port in address"));
    }

    #[test]
    fn host_port_split_like_go() {
        assert_eq!(split_host_port("a:1"), Some(("a", "1")));
        assert_eq!(split_host_port("[::1]:80"), Some(("::1", "80")));
        assert_eq!(split_host_port("::1"), None);
        assert_eq!(split_host_port("[::1]"), None);
        assert_eq!(go_op("GET"), "Get");
        assert_eq!(go_op("post"), "Post");
    }
}
