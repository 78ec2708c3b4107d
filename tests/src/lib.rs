//! End-to-end harness: start the real `legate` binary on free ports and talk HTTP to it.
//!
//! - [`legate_bin`] finds the binary: `LEGATE_BIN` if set, else one `cargo build` of the `agent`
//!   package per test process (a no-op when it is up to date).
//! - [`Agent::start_dev`] spawns `legate agent -dev` on free ports with a unique node name,
//!   waits until it has a leader, and kills it on drop (printing its log when the test failed).
//! - [`Agent::get`], [`Agent::put`], [`Agent::delete`] answer a [`Reply`] for every status:
//!   an HTTP error status is a normal answer here, never an `Err`.
//! - [`wait_until`] and [`wait_for`] poll a condition until a deadline; tests never sleep
//!   blindly.
//! - [`run_cli`] runs a client command (`legate kv get …`) against an agent.

pub mod cluster;
pub mod tiny_http;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long an agent may take from spawn to having a leader.
pub const AGENT_START_TIMEOUT: Duration = Duration::from_secs(20);

/// How long one HTTP call may take; blocking queries in the tests wait at most a few seconds.
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a CLI command may run before the harness kills it.
const CLI_TIMEOUT: Duration = Duration::from_secs(30);

/// Spawn attempts when the ports we picked were taken by someone else in the meantime.
const SPAWN_ATTEMPTS_MAX: u32 = 3;

/// Pause between two polls of a condition.
const POLL_INTERVAL: Duration = Duration::from_millis(25);

/// The workspace root (this crate lives in `<root>/tests`).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().expect("tests/ has a parent directory").to_path_buf()
}

/// The `legate` binary under test.
///
/// `LEGATE_BIN` wins when set. Otherwise the binary is built once per test process with the
/// cargo that runs the tests (`$CARGO`), from the workspace root, and its path is read from
/// cargo's `compiler-artifact` message. This is safe under `cargo test`: cargo releases the
/// build-directory lock once compilation ends, before it runs any test binary, so the nested
/// build neither deadlocks nor rebuilds what the outer one just built.
pub fn legate_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| match std::env::var_os("LEGATE_BIN") {
        Some(path) if !path.is_empty() => {
            let path = PathBuf::from(path);
            assert!(path.is_file(), "LEGATE_BIN={} is not a file", path.display());
            path
        }
        _ => build_legate(),
    })
    .clone()
}

fn build_legate() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let output = Command::new(&cargo)
        .current_dir(workspace_root())
        .args(["build", "-p", "agent", "--bin", "legate", "--message-format=json-render-diagnostics"])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cargo}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "`cargo build -p agent --bin legate` failed ({}):\n{stderr}", output.status);
    let executable = stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "legate")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from));
    let path = executable
        .unwrap_or_else(|| panic!("cargo reported no executable for the `legate` binary:\n{stdout}\n{stderr}"));
    assert!(path.is_file(), "cargo reported {} but it is not a file", path.display());
    path
}

/// A port on 127.0.0.1 free for both TCP and UDP: bind, read the port, let it go.
pub fn free_port() -> u16 {
    free_ports::<1>()[0]
}

/// `N` distinct ports free for both TCP and UDP (gossip and DNS bind both on one port), held
/// together while they are picked so they differ.
pub fn free_ports<const N: usize>() -> [u16; N] {
    let mut held: Vec<(TcpListener, std::net::UdpSocket)> = Vec::with_capacity(N);
    while held.len() < N {
        let tcp = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = tcp.local_addr().expect("local addr").port();
        // A port some process holds for UDP only (a DNS client's, say) is skipped.
        if let Ok(udp) = std::net::UdpSocket::bind(("127.0.0.1", port)) {
            held.push((tcp, udp));
        }
    }
    let mut ports = [0u16; N];
    for (port, (tcp, _)) in ports.iter_mut().zip(&held) {
        *port = tcp.local_addr().expect("local addr").port();
    }
    ports
}

/// A node name no other agent of this test run uses.
pub fn unique_node_name() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!("e2e-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Polls `condition` until it holds or `timeout` passes; returns whether it held.
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    wait_for(timeout, || condition().then_some(())).is_some()
}

/// Polls `probe` until it yields a value or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// One HTTP answer, whatever its status.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    /// Header names in lower case.
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics with the body when it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("status {} body is not JSON ({e}): {:?}", self.status, self.text()))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(&name.to_ascii_lowercase()).map(String::as_str)
    }

    /// `X-Consul-Index` as a number; panics when missing or malformed.
    pub fn index(&self) -> u64 {
        let raw = self.header("X-Consul-Index").unwrap_or_else(|| panic!("no X-Consul-Index in {:?}", self.headers));
        raw.parse().unwrap_or_else(|_| panic!("X-Consul-Index {raw:?} is not a u64"))
    }
}

/// A plain HTTP client that treats every status as an answer.
#[derive(Clone)]
pub struct Http {
    agent: ureq::Agent,
}

impl Default for Http {
    fn default() -> Self {
        Http::new(HTTP_TIMEOUT)
    }
}

impl Http {
    pub fn new(timeout: Duration) -> Http {
        let agent = ureq::AgentBuilder::new().timeout_connect(Duration::from_secs(5)).timeout(timeout).build();
        Http { agent }
    }

    /// Sends a request; `Err` only for transport failures (refused, reset, timeout).
    pub fn request(&self, method: &str, url: &str, body: Option<&[u8]>) -> Result<Reply, String> {
        let req = self.agent.request(method, url);
        let result = match body {
            Some(b) => req.send_bytes(b),
            None => req.call(),
        };
        let response = match result {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(ureq::Error::Transport(t)) => return Err(t.to_string()),
        };
        let status = response.status();
        let headers = response
            .headers_names()
            .into_iter()
            .filter_map(|name| response.header(&name).map(|v| (name.to_ascii_lowercase(), v.to_string())))
            .collect();
        let mut body = Vec::new();
        response
            .into_reader()
            .take(64 * 1024 * 1024)
            .read_to_end(&mut body)
            .map_err(|e| format!("reading the body: {e}"))?;
        Ok(Reply { status, headers, body })
    }
}

/// A running `legate agent -dev`, killed on drop.
pub struct Agent {
    child: Child,
    pub port: u16,
    /// The DNS port (UDP and TCP).
    pub dns_port: u16,
    /// The WAN gossip port (UDP and TCP).
    pub wan_port: u16,
    pub node: String,
    pub log_path: PathBuf,
    http: Http,
}

/// How [`Agent::start_dev`] learns that another agent answered on the HTTP port it picked.
const PORT_TAKEN_BY_ANOTHER: &str = "another agent holds the port";

impl Agent {
    /// Starts `legate agent -dev -http-port P -node <unique> <extra_args…>` and waits until it
    /// reports a leader.
    pub fn start_dev(extra_args: &[&str]) -> Agent {
        let bin = legate_bin();
        let log_dir = std::env::temp_dir().join("legate-e2e");
        std::fs::create_dir_all(&log_dir).expect("create log dir");
        let node = unique_node_name();
        let log_path = log_dir.join(format!("{node}.log"));
        for attempt in 1..=SPAWN_ATTEMPTS_MAX {
            // Every port the agent may bind gets a free one, so agents run in parallel.
            let [http, dns, server, lan, wan] = free_ports::<5>();
            let log = File::create(&log_path).expect("create agent log");
            let mut cmd = Command::new(&bin);
            cmd.arg("agent").arg("-dev").arg("-node").arg(&node);
            for (flag, port) in [
                ("-http-port", http),
                ("-dns-port", dns),
                ("-server-port", server),
                ("-serf-lan-port", lan),
                ("-serf-wan-port", wan),
            ] {
                cmd.arg(flag).arg(port.to_string());
            }
            cmd.args(extra_args)
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("clone log handle"))
                .stderr(log)
                .env_remove("CONSUL_HTTP_ADDR");
            let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
            let mut agent = Agent {
                child,
                port: http,
                dns_port: dns,
                wan_port: wan,
                node: node.clone(),
                log_path: log_path.clone(),
                http: Http::default(),
            };
            match agent.wait_ready() {
                Ok(()) => return agent,
                Err(why) => {
                    let log = agent.log();
                    let port_taken = log.contains("in use") || why.starts_with(PORT_TAKEN_BY_ANOTHER);
                    if port_taken && attempt < SPAWN_ATTEMPTS_MAX {
                        continue; // `agent` is dropped here, which kills the child.
                    }
                    // Quietly kill before panicking so the log is not printed twice.
                    let _ = agent.child.kill();
                    let _ = agent.child.wait();
                    panic!("agent {node} did not start: {why}\n--- agent log ---\n{log}");
                }
            }
        }
        unreachable!("the last attempt either returns or panics")
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let probe = Http::new(Duration::from_secs(2));
        let url = self.url("/v1/status/leader");
        let deadline = Instant::now() + AGENT_START_TIMEOUT;
        let mut last = String::from("no answer yet");
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Err(format!("the process exited early with {status}"));
            }
            match probe.request("GET", &url, None) {
                Ok(r) if r.status == 200 && r.json().as_str().is_some_and(|s| !s.is_empty()) => {
                    // Another test's agent may hold the port we picked (it was free when we
                    // looked): only our own node name proves the answer is ours.
                    let me = probe.request("GET", &self.url("/v1/agent/self"), None)?;
                    let name = me.json()["Config"]["NodeName"].as_str().unwrap_or_default().to_string();
                    if name != self.node {
                        return Err(format!("{PORT_TAKEN_BY_ANOTHER}: node {name:?} answers on port {}", self.port));
                    }
                    return Ok(());
                }
                Ok(r) => last = format!("{} {}", r.status, r.text()),
                Err(e) => last = e,
            }
            std::thread::sleep(POLL_INTERVAL);
        }
        Err(format!("no leader within {AGENT_START_TIMEOUT:?}; last answer: {last}"))
    }

    /// `127.0.0.1:<http port>`, as `-http-addr` and `CONSUL_HTTP_ADDR` take it.
    pub fn http_addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    /// Any method; panics on a transport error (the agent must always answer).
    pub fn request(&self, method: &str, path: &str, body: Option<&[u8]>) -> Reply {
        self.http
            .request(method, &self.url(path), body)
            .unwrap_or_else(|e| panic!("{method} {path}: transport error: {e}"))
    }

    pub fn get(&self, path: &str) -> Reply {
        self.request("GET", path, None)
    }

    pub fn put(&self, path: &str, body: impl AsRef<[u8]>) -> Reply {
        self.request("PUT", path, Some(body.as_ref()))
    }

    pub fn delete(&self, path: &str) -> Reply {
        self.request("DELETE", path, None)
    }

    /// A fresh client for use from another thread (e.g. a blocking query).
    pub fn client(&self) -> Http {
        self.http.clone()
    }

    /// The agent's process ID (to signal it).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the agent wrote to stdout and stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- log of agent {} ({}) ---\n{}", self.node, self.log_path.display(), self.log());
        } else {
            let _ = std::fs::remove_file(&self.log_path);
        }
    }
}

/// What a CLI command did.
#[derive(Clone, Debug)]
pub struct CliOutput {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `legate <args>` against the agent at `http_addr` (`-http-addr` goes right after the
/// command words, since flags end at the first positional argument); returns (code, stdout,
/// stderr).
pub fn run_cli(args: &[&str], http_addr: &str) -> (i32, String, String) {
    let out = run_cli_with(args, Some(http_addr), &[]);
    (out.code, out.stdout, out.stderr)
}

/// Like [`run_cli`] with an optional `-http-addr` and extra environment variables.
/// `CONSUL_HTTP_ADDR` and `CONSUL_HTTP_TOKEN` are cleared unless given in `envs`.
pub fn run_cli_with(args: &[&str], http_addr: Option<&str>, envs: &[(&str, &str)]) -> CliOutput {
    let command_words = match args.first().copied() {
        Some("kv") | Some("catalog") => 2.min(args.len()),
        Some("operator") => 3.min(args.len()),
        Some("snapshot") => 2.min(args.len()),
        Some(_) => 1,
        None => 0,
    };
    let mut full: Vec<String> = args[..command_words].iter().map(|s| s.to_string()).collect();
    if let Some(addr) = http_addr {
        full.push(format!("-http-addr={addr}"));
    }
    full.extend(args[command_words..].iter().map(|s| s.to_string()));

    let dir = std::env::temp_dir().join("legate-e2e");
    std::fs::create_dir_all(&dir).expect("create temp dir");
    let tag = unique_node_name();
    let (out_path, err_path) = (dir.join(format!("cli-{tag}.out")), dir.join(format!("cli-{tag}.err")));
    let mut cmd = Command::new(legate_bin());
    cmd.args(&full)
        .stdin(Stdio::null())
        .stdout(File::create(&out_path).expect("create stdout file"))
        .stderr(File::create(&err_path).expect("create stderr file"))
        .env_remove("CONSUL_HTTP_ADDR")
        .env_remove("CONSUL_HTTP_TOKEN");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn legate");
    let status = wait_for(CLI_TIMEOUT, || child.try_wait().expect("try_wait"));
    let status = match status {
        Some(s) => s,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`legate {}` did not finish within {CLI_TIMEOUT:?}", full.join(" "));
        }
    };
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    let _ = std::fs::remove_file(&out_path);
    let _ = std::fs::remove_file(&err_path);
    CliOutput { code: status.code().unwrap_or(-1), stdout, stderr }
}

/// `dig +short name` against the DNS server on 127.0.0.1:`port`: the answer lines.
pub fn dig_short(port: u16, name: &str) -> std::collections::BTreeSet<String> {
    let out = Command::new("dig")
        .args(["@127.0.0.1", "-p", &port.to_string(), "+time=2", "+tries=1", "+short", name])
        .output()
        .expect("run dig (Debian's dnsutils)");
    String::from_utf8_lossy(&out.stdout).lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_string).collect()
}

/// Writes `contents` to a fresh file under the temp dir (for `-config-file`).
pub fn temp_file(name: &str, contents: &str) -> PathBuf {
    let dir = std::env::temp_dir().join("legate-e2e");
    std::fs::create_dir_all(&dir).expect("create temp dir");
    let path = dir.join(format!("{}-{name}", unique_node_name()));
    std::fs::write(&path, contents).expect("write temp file");
    path
}
