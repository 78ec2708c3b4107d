//! Real clusters on loopback: servers with data dirs and client agents, each a `legate agent`
//! process that a test can SIGKILL and restart from its data dir.
//!
//! Every process gets free ports and a directory under the temp dir; a [`Cluster`] kills its
//! processes on drop and prints their logs when the test failed.

use std::fs::OpenOptions;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{free_ports, legate_bin, unique_node_name, wait_for, wait_until, Http, Reply};

/// How long a cluster may take to elect its first leader.
pub const CLUSTER_START_TIMEOUT: Duration = Duration::from_secs(30);

/// One `legate agent` process (server or client) that can be killed and started again.
pub struct Proc {
    pub name: String,
    pub http_port: u16,
    pub rpc_port: u16,
    /// The LAN gossip port (UDP and TCP).
    pub lan_port: u16,
    /// The WAN gossip port (servers).
    pub wan_port: u16,
    pub data_dir: PathBuf,
    pub log_path: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
    http: Http,
}

impl Proc {
    fn new(name: &str, dir: &std::path::Path, args: Vec<String>, ports: Ports) -> Proc {
        Proc {
            name: name.to_string(),
            http_port: ports.http,
            rpc_port: ports.rpc,
            lan_port: ports.lan,
            wan_port: ports.wan,
            data_dir: dir.join(name),
            log_path: dir.join(format!("{name}.log")),
            args,
            child: None,
            http: Http::new(Duration::from_secs(30)),
        }
    }

    /// Starts the process (appending to its log).
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "{} is already running", self.name);
        let log = OpenOptions::new().create(true).append(true).open(&self.log_path).expect("open the log");
        let child = Command::new(legate_bin())
            .arg("agent")
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log handle"))
            .stderr(log)
            .env_remove("CONSUL_HTTP_ADDR")
            .spawn()
            .expect("spawn legate");
        self.child = Some(child);
    }

    /// SIGKILL: no shutdown, no flush — what a power cut leaves of the process.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => child.try_wait().expect("try_wait").is_none(),
            None => false,
        }
    }

    /// Waits for the process to exit on its own; its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let child = self.child.as_mut()?;
        let status = wait_for(timeout, || child.try_wait().expect("try_wait"))?;
        self.child = None;
        Some(status.code().unwrap_or(-1))
    }

    pub fn rpc_addr(&self) -> String {
        format!("127.0.0.1:{}", self.rpc_port)
    }

    /// The LAN gossip address, as `-retry-join` and `legate join` take it.
    pub fn lan_addr(&self) -> String {
        format!("127.0.0.1:{}", self.lan_port)
    }

    /// The WAN gossip address, as `legate join -wan` takes it.
    pub fn wan_addr(&self) -> String {
        format!("127.0.0.1:{}", self.wan_port)
    }

    pub fn http_addr(&self) -> String {
        format!("127.0.0.1:{}", self.http_port)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.http_port)
    }

    /// Any request; `Err` on a transport failure (a dead process).
    pub fn try_request(&self, method: &str, path: &str, body: Option<&[u8]>) -> Result<Reply, String> {
        self.http.request(method, &self.url(path), body)
    }

    pub fn get(&self, path: &str) -> Reply {
        self.try_request("GET", path, None).unwrap_or_else(|e| panic!("{}: GET {path}: {e}", self.name))
    }

    pub fn put(&self, path: &str, body: impl AsRef<[u8]>) -> Reply {
        self.try_request("PUT", path, Some(body.as_ref())).unwrap_or_else(|e| panic!("{}: PUT {path}: {e}", self.name))
    }

    /// The leader's RPC address as this agent reports it (`None`: none, or no answer).
    pub fn leader(&self) -> Option<String> {
        let r = Http::new(Duration::from_secs(5)).request("GET", &self.url("/v1/status/leader"), None).ok()?;
        let addr = (r.status == 200).then(|| r.json().as_str().map(str::to_string)).flatten()?;
        (!addr.is_empty()).then_some(addr)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The ports of one agent of a test cluster.
#[derive(Clone, Copy, Debug)]
struct Ports {
    http: u16,
    rpc: u16,
    lan: u16,
    wan: u16,
}

impl Ports {
    fn free() -> Ports {
        let [http, rpc, lan, wan] = free_ports::<4>();
        Ports { http, rpc, lan, wan }
    }
}

/// The arguments every agent of a test cluster takes: its name, loopback, its ports (DNS
/// off) and its data dir under `dir`.
fn base_args(name: &str, dir: &std::path::Path, ports: Ports) -> Vec<String> {
    let data_dir = dir.join(name).display().to_string();
    let port_flags = [
        ("-http-port", ports.http),
        ("-server-port", ports.rpc),
        ("-serf-lan-port", ports.lan),
        ("-serf-wan-port", ports.wan),
    ];
    ["-node", name, "-bind", "127.0.0.1", "-dns-port", "-1", "-data-dir", &data_dir]
        .into_iter()
        .map(str::to_string)
        .chain(port_flags.into_iter().flat_map(|(flag, port)| [flag.to_string(), port.to_string()]))
        .collect()
}

/// Servers (and client agents) on loopback, in one temp dir.
pub struct Cluster {
    pub dir: PathBuf,
    pub servers: Vec<Proc>,
    pub clients: Vec<Proc>,
}

impl Cluster {
    /// Starts `n` servers with `-bootstrap-expect n` and fast Raft timers, each joining the
    /// others, and waits until all of them report the same leader.
    pub fn start(n: usize) -> Cluster {
        Self::start_with(n, &[])
    }

    /// Like [`Cluster::start`], with extra agent arguments for every server.
    pub fn start_with(n: usize, extra: &[&str]) -> Cluster {
        let dir = std::env::temp_dir().join("legate-e2e").join(format!("cluster-{}", unique_node_name()));
        std::fs::create_dir_all(&dir).expect("create the cluster dir");
        let ports: Vec<Ports> = (0..n).map(|_| Ports::free()).collect();
        let mut servers = Vec::new();
        for (i, p) in ports.iter().enumerate() {
            let name = format!("s{}", i + 1);
            let mut args = base_args(&name, &dir, *p);
            args.extend(["-server", "-bootstrap-expect", &n.to_string(), "-raft-multiplier", "1"].map(String::from));
            // Each server joins the others' LAN gossip; gossip tells them who the servers are.
            for (j, other) in ports.iter().enumerate() {
                if j != i {
                    args.push("-retry-join".into());
                    args.push(format!("127.0.0.1:{}", other.lan));
                }
            }
            args.extend(extra.iter().map(|s| s.to_string()));
            servers.push(Proc::new(&name, &dir, args, *p));
        }
        let mut cluster = Cluster { dir, servers, clients: Vec::new() };
        for s in &mut cluster.servers {
            s.start();
        }
        cluster.wait_agreed_leader(CLUSTER_START_TIMEOUT).expect("the cluster elects a leader");
        cluster
    }

    /// Waits until every running server reports the same leader, which is one of them; its
    /// index.
    pub fn wait_agreed_leader(&mut self, timeout: Duration) -> Result<usize, String> {
        let deadline = Instant::now() + timeout;
        let mut last = String::new();
        while Instant::now() < deadline {
            let running: Vec<usize> = (0..self.servers.len()).filter(|&i| self.servers[i].is_running()).collect();
            let leaders: Vec<Option<String>> = running.iter().map(|&i| self.servers[i].leader()).collect();
            last = format!("{leaders:?}");
            if let Some(Some(first)) = leaders.first() {
                if leaders.iter().all(|l| l.as_deref() == Some(first.as_str())) {
                    if let Some(&i) = running.iter().find(|&&i| &self.servers[i].rpc_addr() == first) {
                        return Ok(i);
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!("no agreed leader within {timeout:?}; leaders seen: {last}"))
    }

    /// Starts a server of datacenter `dc` (expecting two servers, so it never bootstraps alone)
    /// that joins the LAN gossip at `join`.
    pub fn start_foreign_server(&self, dc: &str, join: &str) -> Proc {
        let ports = Ports::free();
        let name = format!("foreign-{dc}");
        let mut args = base_args(&name, &self.dir, ports);
        args.extend(["-server", "-bootstrap-expect", "2", "-datacenter", dc, "-retry-join", join].map(String::from));
        let mut p = Proc::new(&name, &self.dir, args, ports);
        p.start();
        p
    }

    /// Starts a client agent joined to the given servers; waits until it answers with a leader.
    pub fn start_client(&mut self, join: &[usize]) -> usize {
        self.start_client_with(join, &[])
    }

    /// Starts a client agent that joins nobody (until `legate join`), with extra agent
    /// arguments; waits until its HTTP API answers.
    pub fn start_client_unjoined(&mut self, extra: &[&str]) -> usize {
        let ports = Ports::free();
        let name = format!("c{}", self.clients.len() + 1);
        let mut args = base_args(&name, &self.dir, ports);
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut client = Proc::new(&name, &self.dir, args, ports);
        client.start();
        assert!(wait_until(CLUSTER_START_TIMEOUT, || client.try_request("GET", "/v1/agent/self", None).is_ok()));
        self.clients.push(client);
        self.clients.len() - 1
    }

    /// Like [`Cluster::start_client`], with extra agent arguments; a `-dns-port` among them
    /// replaces the default `-dns-port -1`.
    pub fn start_client_with(&mut self, join: &[usize], extra: &[&str]) -> usize {
        let ports = Ports::free();
        let name = format!("c{}", self.clients.len() + 1);
        let mut args = base_args(&name, &self.dir, ports);
        if extra.contains(&"-dns-port") {
            let at = args.iter().position(|a| a == "-dns-port").expect("base args disable DNS");
            args.drain(at..at + 2);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        for &i in join {
            args.push("-retry-join".into());
            args.push(self.servers[i].lan_addr());
        }
        let mut client = Proc::new(&name, &self.dir, args, ports);
        client.start();
        let ready = wait_for(CLUSTER_START_TIMEOUT, || client.leader());
        assert!(ready.is_some(), "client {name} never reported a leader:\n{}", client.log());
        self.clients.push(client);
        self.clients.len() - 1
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for p in self.servers.iter_mut().chain(self.clients.iter_mut()) {
            p.kill9();
        }
        if std::thread::panicking() {
            for p in self.servers.iter().chain(self.clients.iter()) {
                eprintln!("--- log of {} ({}) ---\n{}", p.name, p.log_path.display(), p.log());
            }
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
