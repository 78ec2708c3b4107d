use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant as StdInstant;

use legate_core::agent::{CheckKind, CheckRun};
use legate_core::catalog::Status;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject as _;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::http::go_op;
use super::script::{go_duration, tail_text, Tail};
use super::tcp::split_host_port;
use super::{critical, execute, result, Executor, REAP_GRACE_MS};

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
    for (code, status) in [(0, Status::Passing), (1, Status::Warning), (2, Status::Critical), (255, Status::Critical)] {
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
    let run =
        |args: &[&str]| check(CheckKind::Script { args: args.iter().map(|a| a.to_string()).collect() }, 5_000, 4096);
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
    for (ms, text) in cases.into_iter().chain([(90_000, "1m30s"), (3_600_000, "1h0m0s"), (3_661_001, "1h1m1.001s")]) {
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
