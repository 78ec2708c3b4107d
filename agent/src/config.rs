//! Agent configuration: Consul's flags (`-flag value` and `-flag=value`) and JSON config
//! files (`-config-file`, `-config-dir`), merged in Consul's order — files in the order given
//! (a directory's `.json` files sorted by name), then flags on top.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use getopts::{Options, ParsingStyle};
use serde::Deserialize;
use serde_json::Value;

use legate_core::dns::DnsConfig;

use crate::cli::watch::{self, Handler, View, WatchConfig};
use crate::defs::{CheckDef, CheckPolicy, ServiceDef};
use crate::http::json;

/// The agent's settled configuration.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    pub dev: bool,
    pub server: bool,
    pub bootstrap_expect: u32,
    pub node_name: String,
    pub node_id: String,
    pub datacenter: String,
    pub bind_addr: IpAddr,
    pub client_addr: IpAddr,
    pub advertise_addr: IpAddr,
    /// `None`: the listener is disabled (`ports.http = -1`).
    pub http_port: Option<u16>,
    pub dns_port: Option<u16>,
    pub server_port: u16,
    pub serf_lan_port: u16,
    pub serf_wan_port: u16,
    pub data_dir: Option<PathBuf>,
    pub session_ttl_min_ms: u64,
    pub enable_script_checks: bool,
    pub enable_local_script_checks: bool,
    pub node_meta: BTreeMap<String, String>,
    pub services: Vec<ServiceDef>,
    pub checks: Vec<CheckDef>,
    /// Watches the agent runs against its own HTTP API (`watches`, Consul's format).
    pub watches: Vec<WatchConfig>,
    pub log_level: String,
    /// LAN gossip addresses to join (`-join`, `-retry-join`; port 8301 unless given).
    pub retry_join: Vec<String>,
    /// The gossip encryption key (`encrypt`, `-encrypt`; base64, 16 or 32 bytes). A keyring
    /// saved in the data dir wins over it.
    pub encrypt: Option<String>,
    /// Overrides of the LAN and WAN pools' timers (`gossip_lan`, `gossip_wan`).
    pub gossip_lan: GossipTuning,
    pub gossip_wan: GossipTuning,
    /// WAN gossip addresses of other datacenters' servers (`-join-wan`, `-retry-join-wan`;
    /// port 8302 unless given).
    pub retry_join_wan: Vec<String>,
    /// Scales Raft's timers (1 fastest; Consul's default 5).
    pub raft_multiplier: u32,
    /// Snapshot (and compact the log) every this many applied entries.
    pub raft_snapshot_threshold: u64,
    /// Entries kept behind a snapshot.
    pub raft_trailing_logs: u64,
    /// Size at which a Raft log segment file rolls (a Legate setting; Consul has none).
    pub raft_log_segment_bytes: u64,
    /// The DNS interface's settings (`domain`, `recursors`, `dns_config`).
    pub dns: DnsConfig,
    /// How long an output-only change of a check may wait before it is synced to the
    /// catalog (`check_update_interval`; Consul's 5 min). 0 syncs every change at once.
    pub check_update_interval_ms: u64,
    /// The period of the full anti-entropy sync before scaling and stagger (a Legate
    /// setting, `anti_entropy_interval`; Consul fixes it at 1 min).
    pub anti_entropy_interval_ms: u64,
    /// The files and directories the config came from.
    pub config_sources: Vec<ConfigSource>,
    /// The arguments and host name this config was parsed from, so `legate reload` (and
    /// SIGHUP) can read the same files again.
    pub args: Vec<String>,
    pub hostname: String,
}

/// Where config was read from, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigSource {
    File(PathBuf),
    Dir(PathBuf),
}

impl AgentConfig {
    /// What check definitions may run: `enable_script_checks` allows script checks from
    /// anywhere, `enable_local_script_checks` only from the agent's own config files.
    pub fn check_policy(&self, from_config_file: bool) -> CheckPolicy {
        let local = from_config_file && self.enable_local_script_checks;
        CheckPolicy { enable_script_checks: self.enable_script_checks || local }
    }
}

/// The keys of a config file we understand (normalised: lower case, no underscores). Unknown
/// keys are reported and ignored, so a Consul config with features Legate lacks still loads.
#[derive(Deserialize, Default, Debug)]
#[serde(default)]
struct FileConfig {
    nodename: Option<String>,
    nodeid: Option<String>,
    datacenter: Option<String>,
    bindaddr: Option<String>,
    clientaddr: Option<String>,
    advertiseaddr: Option<String>,
    datadir: Option<String>,
    server: Option<bool>,
    bootstrapexpect: Option<u32>,
    ports: Option<BTreeMap<String, i64>>,
    sessionttlmin: Option<String>,
    enablescriptchecks: Option<bool>,
    enablelocalscriptchecks: Option<bool>,
    nodemeta: Option<BTreeMap<String, String>>,
    loglevel: Option<String>,
    retryjoin: Option<Vec<String>>,
    retryjoinwan: Option<Vec<String>>,
    encrypt: Option<String>,
    performance: Option<Performance>,
    raftsnapshotthreshold: Option<u64>,
    rafttrailinglogs: Option<u64>,
    raftlogsegmentbytes: Option<u64>,
    service: Option<Value>,
    services: Option<Vec<Value>>,
    check: Option<Value>,
    checks: Option<Vec<Value>>,
    watches: Option<Vec<Value>>,
    domain: Option<String>,
    recursors: Option<Vec<String>>,
    dnsconfig: Option<DnsFileConfig>,
    translatewanaddrs: Option<bool>,
    gossiplan: Option<GossipFileConfig>,
    gossipwan: Option<GossipFileConfig>,
    checkupdateinterval: Option<String>,
    antientropyinterval: Option<String>,
}

/// A `gossip_lan` / `gossip_wan` block: each set field replaces the pool's default.
#[derive(Default, Debug, Clone, PartialEq, Eq)]
pub struct GossipTuning {
    pub probe_interval_ms: Option<u64>,
    pub probe_timeout_ms: Option<u64>,
    pub gossip_interval_ms: Option<u64>,
    pub gossip_nodes: Option<usize>,
    pub retransmit_mult: Option<u32>,
    pub suspicion_mult: Option<u32>,
}

impl GossipTuning {
    /// Applies the overrides to a pool's configuration.
    pub fn apply(&self, c: &mut legate_core::gossip::Config) {
        let set = |field: &mut u64, v: Option<u64>| {
            if let Some(v) = v {
                *field = v;
            }
        };
        set(&mut c.probe_interval_ms, self.probe_interval_ms);
        set(&mut c.probe_timeout_ms, self.probe_timeout_ms);
        set(&mut c.gossip_interval_ms, self.gossip_interval_ms);
        if let Some(v) = self.gossip_nodes {
            c.gossip_nodes = v;
        }
        if let Some(v) = self.retransmit_mult {
            c.retransmit_mult = v;
        }
        if let Some(v) = self.suspicion_mult {
            c.suspicion_mult = v;
        }
    }
}

/// A `gossip_lan` / `gossip_wan` block as written (durations as strings).
#[derive(Deserialize, Default, Debug)]
#[serde(default)]
struct GossipFileConfig {
    probeinterval: Option<String>,
    probetimeout: Option<String>,
    gossipinterval: Option<String>,
    gossipnodes: Option<usize>,
    retransmitmult: Option<u32>,
    suspicionmult: Option<u32>,
}

fn apply_gossip(t: &mut GossipTuning, g: GossipFileConfig, block: &str) -> Result<(), String> {
    let ms = |v: Option<String>, what: &str| -> Result<Option<u64>, String> {
        let Some(v) = v else { return Ok(None) };
        let ms = legate_core::duration::parse_ms(&v).map_err(|e| format!("{block}.{what}: {e}"))?;
        if ms == 0 {
            return Err(format!("{block}.{what} must be positive"));
        }
        Ok(Some(ms))
    };
    t.probe_interval_ms = ms(g.probeinterval, "probe_interval")?.or(t.probe_interval_ms);
    t.probe_timeout_ms = ms(g.probetimeout, "probe_timeout")?.or(t.probe_timeout_ms);
    t.gossip_interval_ms = ms(g.gossipinterval, "gossip_interval")?.or(t.gossip_interval_ms);
    for (v, what) in [
        (g.gossipnodes.map(|v| v as u64), "gossip_nodes"),
        (g.retransmitmult.map(u64::from), "retransmit_mult"),
        (g.suspicionmult.map(u64::from), "suspicion_mult"),
    ] {
        if v == Some(0) {
            return Err(format!("{block}.{what} must be at least 1"));
        }
    }
    t.gossip_nodes = g.gossipnodes.or(t.gossip_nodes);
    t.retransmit_mult = g.retransmitmult.or(t.retransmit_mult);
    t.suspicion_mult = g.suspicionmult.or(t.suspicion_mult);
    Ok(())
}

/// The `dns_config` block of a config file.
#[derive(Deserialize, Default, Debug)]
#[serde(default)]
struct DnsFileConfig {
    allowstale: Option<bool>,
    maxstale: Option<String>,
    nodettl: Option<String>,
    servicettl: Option<BTreeMap<String, String>>,
    onlypassing: Option<bool>,
    udpanswerlimit: Option<usize>,
}

const KNOWN_FILE_KEYS: &[&str] = &[
    "nodename",
    "nodeid",
    "datacenter",
    "bindaddr",
    "clientaddr",
    "advertiseaddr",
    "datadir",
    "server",
    "bootstrapexpect",
    "ports",
    "sessionttlmin",
    "enablescriptchecks",
    "enablelocalscriptchecks",
    "nodemeta",
    "loglevel",
    "retryjoin",
    "retryjoinwan",
    "encrypt",
    "performance",
    "raftsnapshotthreshold",
    "rafttrailinglogs",
    "raftlogsegmentbytes",
    "service",
    "services",
    "check",
    "checks",
    "watches",
    "domain",
    "recursors",
    "dnsconfig",
    "translatewanaddrs",
    "gossiplan",
    "gossipwan",
    "checkupdateinterval",
    "antientropyinterval",
];

/// The `performance` block of a config file.
#[derive(Deserialize, Default, Debug)]
#[serde(default)]
struct Performance {
    raftmultiplier: Option<u32>,
}

/// Flags of `legate agent`, Consul's names.
fn agent_options() -> Options {
    let mut o = Options::new();
    o.long_only(true).parsing_style(ParsingStyle::FloatingFrees);
    o.optflag("", "dev", "Start a single in-memory server with fast timers, for development.");
    o.optflag("", "server", "Run as a server.");
    o.optopt("", "bootstrap-expect", "Servers to wait for before bootstrapping.", "N");
    o.optopt("", "node", "Node name (default: the hostname).", "NAME");
    o.optopt("", "node-id", "Node ID (a UUID; default: random).", "ID");
    o.optopt("", "datacenter", "Datacenter name (default dc1).", "DC");
    o.optopt("", "bind", "Address to bind cluster communication to.", "ADDR");
    o.optopt("", "client", "Address to bind client interfaces (HTTP, DNS) to.", "ADDR");
    o.optopt("", "advertise", "Address to advertise to other nodes.", "ADDR");
    o.optopt("", "http-port", "HTTP API port (default 8500; -1 disables).", "PORT");
    o.optopt("", "dns-port", "DNS port (default 8600; -1 disables).", "PORT");
    o.optopt("", "server-port", "Server RPC port (default 8300).", "PORT");
    o.optopt("", "serf-lan-port", "LAN gossip port (default 8301).", "PORT");
    o.optopt("", "serf-wan-port", "WAN gossip port (default 8302).", "PORT");
    o.optopt("", "data-dir", "Directory for the agent's state.", "PATH");
    o.optmulti("", "config-file", "A JSON config file to load (repeatable).", "FILE");
    o.optmulti("", "config-dir", "A directory of JSON config files to load (repeatable).", "DIR");
    o.optmulti("", "join", "Address of an agent to join at start (repeatable).", "ADDR");
    o.optopt("", "encrypt", "Gossip encryption key (base64; `legate keygen` makes one).", "KEY");
    o.optmulti("", "join-wan", "Address of another datacenter's server to join over the WAN (repeatable).", "ADDR");
    o.optmulti("", "retry-join-wan", "Like -join-wan, retrying until it succeeds (repeatable).", "ADDR");
    o.optmulti("", "retry-join", "Address of an agent to join, retrying (repeatable).", "ADDR");
    o.optopt("", "domain", "DNS domain to serve (default consul.).", "DOMAIN");
    o.optmulti("", "recursor", "Upstream DNS server for names outside the domain (repeatable).", "ADDR");
    o.optmulti("", "node-meta", "key:value metadata of this node (repeatable).", "KEY:VALUE");
    o.optflag("", "enable-script-checks", "Allow script checks.");
    o.optflag("", "enable-local-script-checks", "Allow script checks from local config files.");
    o.optopt("", "raft-multiplier", "Scale of Raft's timers, 1 (fastest) to 10 (default 5).", "N");
    o.optopt("", "log-level", "Log level: trace, debug, info, warn, err.", "LEVEL");
    o.optflag("", "ui", "Accepted for compatibility; Legate has no web UI.");
    o.optflag("h", "help", "Show this help.");
    o
}

/// Usage text of `legate agent`.
pub fn agent_usage() -> String {
    agent_options().usage("Usage: legate agent [options]\n\n  Starts a Legate agent (Consul's flags).")
}

/// Parses `legate agent` arguments (without the `agent` word). `Ok(None)`: help was asked.
pub fn parse_agent_args(args: &[String], hostname: &str) -> Result<Option<AgentConfig>, String> {
    let m = agent_options().parse(args).map_err(|e| format!("{e}\n\n{}", agent_usage()))?;
    if m.opt_present("help") {
        return Ok(None);
    }
    if let Some(extra) = m.free.first() {
        return Err(format!("unexpected argument {extra:?}\n\n{}", agent_usage()));
    }
    let dev = m.opt_present("dev");
    let mut cfg = AgentConfig {
        dev,
        server: dev,
        bootstrap_expect: if dev { 1 } else { 0 },
        node_name: hostname.to_string(),
        node_id: String::new(),
        datacenter: "dc1".into(),
        bind_addr: if dev { [127, 0, 0, 1].into() } else { [0, 0, 0, 0].into() },
        client_addr: [127, 0, 0, 1].into(),
        advertise_addr: [127, 0, 0, 1].into(),
        http_port: Some(8500),
        dns_port: Some(8600),
        server_port: 8300,
        serf_lan_port: 8301,
        serf_wan_port: 8302,
        data_dir: None,
        session_ttl_min_ms: legate_core::limits::SESSION_TTL_MIN_DEFAULT_MS,
        enable_script_checks: false,
        enable_local_script_checks: false,
        node_meta: BTreeMap::new(),
        services: Vec::new(),
        checks: Vec::new(),
        watches: Vec::new(),
        log_level: "info".into(),
        retry_join: Vec::new(),
        retry_join_wan: Vec::new(),
        encrypt: None,
        gossip_lan: GossipTuning::default(),
        gossip_wan: GossipTuning::default(),
        raft_multiplier: legate_runtime::boot::RAFT_MULTIPLIER_DEFAULT,
        raft_snapshot_threshold: legate_runtime::boot::SNAPSHOT_THRESHOLD,
        raft_trailing_logs: legate_runtime::boot::TRAILING_LOGS,
        raft_log_segment_bytes: legate_core::limits::LOG_SEGMENT_MAX_BYTES,
        dns: DnsConfig::default(),
        check_update_interval_ms: CHECK_UPDATE_INTERVAL_DEFAULT_MS,
        anti_entropy_interval_ms: ANTI_ENTROPY_INTERVAL_DEFAULT_MS,
        config_sources: Vec::new(),
        args: args.to_vec(),
        hostname: hostname.to_string(),
    };
    let mut advertise_set = false;

    cfg.config_sources = m.opt_strs("config-file").into_iter().map(|f| ConfigSource::File(f.into())).collect();
    cfg.config_sources.extend(m.opt_strs("config-dir").into_iter().map(|d| ConfigSource::Dir(d.into())));
    for file in source_files(&cfg.config_sources)? {
        advertise_set |= apply_file(&mut cfg, &file)?;
    }

    if let Some(v) = m.opt_str("node") {
        cfg.node_name = v;
    }
    if let Some(v) = m.opt_str("node-id") {
        cfg.node_id = v;
    }
    if let Some(v) = m.opt_str("datacenter") {
        cfg.datacenter = v;
    }
    if let Some(v) = m.opt_str("bind") {
        cfg.bind_addr = parse_ip(&v, "-bind")?;
    }
    if let Some(v) = m.opt_str("client") {
        cfg.client_addr = parse_ip(v.split_whitespace().next().unwrap_or(""), "-client")?;
    }
    if let Some(v) = m.opt_str("advertise") {
        cfg.advertise_addr = parse_ip(&v, "-advertise")?;
        advertise_set = true;
    }
    if let Some(v) = m.opt_str("http-port") {
        cfg.http_port = parse_port(&v, "-http-port")?;
    }
    if let Some(v) = m.opt_str("dns-port") {
        cfg.dns_port = parse_port(&v, "-dns-port")?;
    }
    if let Some(v) = m.opt_str("server-port") {
        cfg.server_port = parse_port(&v, "-server-port")?.ok_or("-server-port cannot be disabled")?;
    }
    if let Some(v) = m.opt_str("serf-lan-port") {
        cfg.serf_lan_port = parse_port(&v, "-serf-lan-port")?.ok_or("-serf-lan-port cannot be disabled")?;
    }
    if let Some(v) = m.opt_str("serf-wan-port") {
        cfg.serf_wan_port = parse_port(&v, "-serf-wan-port")?.ok_or("-serf-wan-port cannot be disabled")?;
    }
    if let Some(v) = m.opt_str("data-dir") {
        cfg.data_dir = Some(PathBuf::from(v));
    }
    if m.opt_present("server") {
        cfg.server = true;
    }
    if let Some(v) = m.opt_str("bootstrap-expect") {
        cfg.bootstrap_expect = v.parse().map_err(|_| format!("invalid -bootstrap-expect {v:?}"))?;
    }
    if m.opt_present("enable-script-checks") {
        cfg.enable_script_checks = true;
    }
    if m.opt_present("enable-local-script-checks") {
        cfg.enable_local_script_checks = true;
    }
    if let Some(v) = m.opt_str("raft-multiplier") {
        cfg.raft_multiplier = v.parse().map_err(|_| format!("invalid -raft-multiplier {v:?}"))?;
    }
    if let Some(v) = m.opt_str("log-level") {
        cfg.log_level = v;
    }
    for pair in m.opt_strs("node-meta") {
        let (k, v) = pair.split_once(':').ok_or_else(|| format!("invalid -node-meta {pair:?}: want key:value"))?;
        cfg.node_meta.insert(k.to_string(), v.to_string());
    }
    if let Some(v) = m.opt_str("domain") {
        cfg.dns.domain = v;
    }
    cfg.dns.recursors.extend(m.opt_strs("recursor"));
    cfg.retry_join.extend(m.opt_strs("join"));
    cfg.retry_join.extend(m.opt_strs("retry-join"));
    if let Some(v) = m.opt_str("encrypt") {
        cfg.encrypt = Some(v);
    }
    cfg.retry_join_wan.extend(m.opt_strs("join-wan"));
    cfg.retry_join_wan.extend(m.opt_strs("retry-join-wan"));

    if !advertise_set && !cfg.bind_addr.is_unspecified() {
        cfg.advertise_addr = cfg.bind_addr;
    }
    cfg.dns.datacenter = cfg.datacenter.clone();
    cfg.dns.domain = dns_domain(&cfg.dns.domain)?;
    validate(&cfg)?;
    Ok(Some(cfg))
}

fn validate(cfg: &AgentConfig) -> Result<(), String> {
    if cfg.node_name.is_empty() {
        return Err("node name is empty; set -node".into());
    }
    if cfg.datacenter.is_empty() || !cfg.datacenter.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return Err(format!("invalid datacenter name {:?}: use letters, digits, '-' and '_'", cfg.datacenter));
    }
    if !(1..=legate_runtime::boot::RAFT_MULTIPLIER_MAX).contains(&cfg.raft_multiplier) {
        return Err(format!(
            "invalid raft_multiplier {}: want 1 to {}",
            cfg.raft_multiplier,
            legate_runtime::boot::RAFT_MULTIPLIER_MAX
        ));
    }
    if cfg.raft_snapshot_threshold == 0 {
        return Err("raft_snapshot_threshold must be at least 1".into());
    }
    let segment = legate_core::limits::LOG_SEGMENT_MAX_BYTES;
    if !(4096..=segment).contains(&cfg.raft_log_segment_bytes) {
        return Err(format!("raft_log_segment_bytes must be between 4096 and {segment}"));
    }
    if !cfg.watches.is_empty() && cfg.http_port.is_none() {
        return Err("watches need the HTTP API (they query the agent through it); enable ports.http".into());
    }
    if cfg.dev {
        return Ok(());
    }
    if cfg.data_dir.is_none() {
        return Err("data_dir is required: set -data-dir (or run `legate agent -dev`)".into());
    }
    if !cfg.server && cfg.bootstrap_expect > 0 {
        return Err("-bootstrap-expect is a server setting: add -server".into());
    }
    if cfg.server && cfg.bootstrap_expect == 0 && cfg.retry_join.is_empty() {
        return Err("a server needs -bootstrap-expect N (to form a cluster) or -retry-join (to join one)".into());
    }
    Ok(())
}

fn parse_ip(v: &str, flag: &str) -> Result<IpAddr, String> {
    v.trim().parse().map_err(|_| format!("invalid {flag} address {v:?}: want an IP address"))
}

fn parse_port(v: &str, what: &str) -> Result<Option<u16>, String> {
    let n: i64 = v.trim().parse().map_err(|_| format!("invalid {what} {v:?}"))?;
    port_of(n, what)
}

fn port_of(n: i64, what: &str) -> Result<Option<u16>, String> {
    match n {
        -1 => Ok(None),
        0..=65535 => Ok(Some(n as u16)),
        _ => Err(format!("invalid {what} {n}: want 0-65535, or -1 to disable")),
    }
}

/// Consul's period of the full anti-entropy sync.
pub const ANTI_ENTROPY_INTERVAL_DEFAULT_MS: u64 = 60_000;

/// Consul's default `check_update_interval`.
pub const CHECK_UPDATE_INTERVAL_DEFAULT_MS: u64 = 5 * 60_000;

/// A domain as the DNS server matches it: lower case, one trailing dot, valid labels.
fn dns_domain(v: &str) -> Result<String, String> {
    let trimmed = v.trim().trim_end_matches('.').to_ascii_lowercase();
    let ok = !trimmed.is_empty()
        && trimmed.len() < 254
        && trimmed.split('.').all(|l| {
            !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if !ok {
        return Err(format!("invalid domain {v:?}: want DNS labels such as consul."));
    }
    Ok(format!("{trimmed}."))
}

/// The config files of `sources`, in load order (a directory's `.json` files by name).
pub fn source_files(sources: &[ConfigSource]) -> Result<Vec<PathBuf>, String> {
    let mut files = Vec::new();
    for source in sources {
        match source {
            ConfigSource::File(f) => files.push(f.clone()),
            ConfigSource::Dir(d) => files.extend(json_files_in(d)?),
        }
    }
    Ok(files)
}

fn json_files_in(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("reading config dir {}: {e}", dir.display()))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json") && p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

/// Applies one config file; returns whether it set the advertise address.
fn apply_file(cfg: &mut AgentConfig, path: &Path) -> Result<bool, String> {
    let text = std::fs::read(path).map_err(|e| format!("reading config file {}: {e}", path.display()))?;
    let raw: Value = serde_json::from_slice(&text).map_err(|e| format!("config file {}: {e}", path.display()))?;
    apply_value(cfg, raw).map_err(|e| format!("config file {}: {e}", path.display()))
}

/// Applies one parsed config document; returns whether it set the advertise address.
pub fn apply_value(cfg: &mut AgentConfig, raw: Value) -> Result<bool, String> {
    let normalised = json::normalise(raw);
    if let Some(obj) = normalised.as_object() {
        for key in obj.keys().filter(|k| !KNOWN_FILE_KEYS.contains(&k.as_str())) {
            tracing::warn!(key, "config key not supported by Legate; ignored");
        }
    }
    let f: FileConfig = serde_json::from_value(normalised).map_err(|e| e.to_string())?;
    if let Some(v) = f.nodename {
        cfg.node_name = v;
    }
    if let Some(v) = f.nodeid {
        cfg.node_id = v;
    }
    if let Some(v) = f.datacenter {
        cfg.datacenter = v;
    }
    if let Some(v) = f.bindaddr {
        cfg.bind_addr = parse_ip(&v, "bind_addr")?;
    }
    if let Some(v) = f.clientaddr {
        cfg.client_addr = parse_ip(v.split_whitespace().next().unwrap_or(""), "client_addr")?;
    }
    let advertise_set = f.advertiseaddr.is_some();
    if let Some(v) = f.advertiseaddr {
        cfg.advertise_addr = parse_ip(&v, "advertise_addr")?;
    }
    if let Some(v) = f.datadir {
        cfg.data_dir = Some(PathBuf::from(v));
    }
    if let Some(v) = f.server {
        cfg.server = v;
    }
    if let Some(v) = f.bootstrapexpect {
        cfg.bootstrap_expect = v;
    }
    if let Some(v) = f.performance.and_then(|p| p.raftmultiplier) {
        cfg.raft_multiplier = v;
    }
    if let Some(v) = f.raftsnapshotthreshold {
        cfg.raft_snapshot_threshold = v;
    }
    if let Some(v) = f.rafttrailinglogs {
        cfg.raft_trailing_logs = v;
    }
    if let Some(v) = f.raftlogsegmentbytes {
        cfg.raft_log_segment_bytes = v;
    }
    for (name, port) in f.ports.unwrap_or_default() {
        let what = format!("ports.{name}");
        match name.as_str() {
            "http" => cfg.http_port = port_of(port, &what)?,
            "dns" => cfg.dns_port = port_of(port, &what)?,
            "server" => cfg.server_port = port_of(port, &what)?.ok_or("ports.server cannot be disabled")?,
            "serflan" => cfg.serf_lan_port = port_of(port, &what)?.ok_or("ports.serf_lan cannot be disabled")?,
            "serfwan" => cfg.serf_wan_port = port_of(port, &what)?.ok_or("ports.serf_wan cannot be disabled")?,
            _ => tracing::warn!(port = name, "port setting not supported by Legate; ignored"),
        }
    }
    if let Some(v) = f.sessionttlmin {
        cfg.session_ttl_min_ms = legate_core::duration::parse_ms(&v).map_err(|e| format!("session_ttl_min: {e}"))?;
    }
    if let Some(v) = f.enablescriptchecks {
        cfg.enable_script_checks = v;
    }
    if let Some(v) = f.enablelocalscriptchecks {
        cfg.enable_local_script_checks = v;
    }
    if let Some(v) = f.nodemeta {
        cfg.node_meta.extend(v);
    }
    if let Some(v) = f.loglevel {
        cfg.log_level = v;
    }
    if let Some(v) = f.retryjoin {
        cfg.retry_join.extend(v);
    }
    if let Some(v) = f.retryjoinwan {
        cfg.retry_join_wan.extend(v);
    }
    if let Some(v) = f.encrypt {
        cfg.encrypt = Some(v);
    }
    if let Some(v) = f.domain {
        cfg.dns.domain = v;
    }
    if let Some(v) = f.recursors {
        cfg.dns.recursors.extend(v);
    }
    if let Some(d) = f.dnsconfig {
        apply_dns(&mut cfg.dns, d)?;
    }
    if let Some(v) = f.translatewanaddrs {
        cfg.dns.translate_wan_addrs = v;
    }
    if let Some(g) = f.gossiplan {
        apply_gossip(&mut cfg.gossip_lan, g, "gossip_lan")?;
    }
    if let Some(g) = f.gossipwan {
        apply_gossip(&mut cfg.gossip_wan, g, "gossip_wan")?;
    }
    if let Some(v) = f.checkupdateinterval {
        cfg.check_update_interval_ms =
            legate_core::duration::parse_ms(&v).map_err(|e| format!("check_update_interval: {e}"))?;
    }
    if let Some(v) = f.antientropyinterval {
        let ms = legate_core::duration::parse_ms(&v).map_err(|e| format!("anti_entropy_interval: {e}"))?;
        if ms < 1_000 {
            return Err("anti_entropy_interval must be at least 1s".into());
        }
        cfg.anti_entropy_interval_ms = ms;
    }
    for svc in f.service.into_iter().chain(f.services.unwrap_or_default()) {
        cfg.services.push(json::decode_value(svc).map_err(|e| format!("service: {}", e.message))?);
    }
    for check in f.check.into_iter().chain(f.checks.unwrap_or_default()) {
        cfg.checks.push(json::decode_value(check).map_err(|e| format!("check: {}", e.message))?);
    }
    for (i, entry) in f.watches.unwrap_or_default().into_iter().enumerate() {
        let kind = entry.get("type").and_then(Value::as_str).map(|t| format!(" (type {t:?})")).unwrap_or_default();
        cfg.watches.push(parse_watch(entry).map_err(|e| format!("watches[{i}]{kind}: {e}"))?);
    }
    Ok(advertise_set)
}

/// One `watches` entry (keys normalised), Consul's format: `type` and its parameters, a
/// script handler (`args` run directly, or `handler` run with `sh -c`), and optionally
/// `handler_type` (only `script`), `datacenter`, `token`, `stale`.
fn parse_watch(entry: Value) -> Result<WatchConfig, String> {
    let Value::Object(mut fields) = entry else { return Err("a watch must be an object".into()) };
    let mut take = |name: &str| fields.remove(name);
    let string = |v: Option<Value>, name: &str| -> Result<Option<String>, String> {
        match v {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(format!("{name} must be a string")),
        }
    };
    let boolean = |v: Option<Value>, name: &str| -> Result<Option<bool>, String> {
        match v {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(b)),
            Some(_) => Err(format!("{name} must be a boolean")),
        }
    };
    let tags = match take("tag") {
        None => Vec::new(),
        Some(Value::String(t)) => vec![t],
        Some(Value::Array(items)) => items
            .into_iter()
            .map(|t| t.as_str().map(str::to_string).ok_or("tag must be a string or a list of strings"))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err("tag must be a string or a list of strings".into()),
    };
    let passing_only = boolean(take("passingonly"), "passingonly")?;
    let passing = boolean(take("passing"), "passing")?;
    let params = watch::Params {
        kind: string(take("type"), "type")?.unwrap_or_default(),
        key: string(take("key"), "key")?,
        prefix: string(take("prefix"), "prefix")?,
        service: string(take("service"), "service")?,
        tags,
        passing: passing_only.or(passing),
        state: string(take("state"), "state")?,
        name: string(take("name"), "name")?,
        flags: false,
    };
    let handler_type = string(take("handlertype"), "handler_type")?;
    let handler = string(take("handler"), "handler")?;
    let args = match take("args") {
        None => None,
        Some(Value::Array(items)) => Some(
            items
                .into_iter()
                .map(|a| a.as_str().map(str::to_string).ok_or("args must be a list of strings"))
                .collect::<Result<Vec<_>, _>>()?,
        ),
        Some(_) => return Err("args must be a list of strings".into()),
    };
    let datacenter = string(take("datacenter"), "datacenter")?.filter(|d| !d.is_empty());
    let token = string(take("token"), "token")?.filter(|t| !t.is_empty());
    let stale = boolean(take("stale"), "stale")?.unwrap_or(false);
    match handler_type.as_deref() {
        None | Some("script") => {}
        Some("http") => {
            return Err("handler_type \"http\" is not supported by Legate yet; use a script handler (args)".into())
        }
        Some(other) => return Err(format!("handler type {other:?} not recognized: want \"script\"")),
    }
    let unknown: Vec<String> = fields.keys().cloned().collect();
    if !unknown.is_empty() {
        return Err(format!("invalid parameters: {}", unknown.join(", ")));
    }
    let view = View::from_params(&params)?;
    let handler = match (args, handler) {
        (Some(_), Some(_)) => return Err("give args or handler, not both".into()),
        (Some(args), None) if !args.is_empty() && !args[0].is_empty() => Handler::Args(args),
        (None, Some(script)) if !script.trim().is_empty() => Handler::Shell(script),
        (Some(_), None) | (None, Some(_)) => return Err("the watch handler is empty".into()),
        (None, None) => return Err("a watch needs a handler: args (a command and its arguments) or handler".into()),
    };
    Ok(WatchConfig { view, handler, datacenter, token, stale })
}

fn apply_dns(dns: &mut DnsConfig, d: DnsFileConfig) -> Result<(), String> {
    let seconds = |v: &str, what: &str| -> Result<u32, String> {
        let ms = legate_core::duration::parse_ms(v).map_err(|e| format!("dns_config.{what}: {e}"))?;
        u32::try_from(ms / 1000).map_err(|_| format!("dns_config.{what}: too long"))
    };
    if let Some(v) = d.allowstale {
        dns.allow_stale = v;
    }
    if let Some(v) = d.maxstale {
        dns.max_stale_ms = legate_core::duration::parse_ms(&v).map_err(|e| format!("dns_config.max_stale: {e}"))?;
    }
    if let Some(v) = d.nodettl {
        dns.node_ttl_s = seconds(&v, "node_ttl")?;
    }
    for (service, ttl) in d.servicettl.unwrap_or_default() {
        dns.service_ttl_s.insert(service.to_ascii_lowercase(), seconds(&ttl, "service_ttl")?);
    }
    if let Some(v) = d.onlypassing {
        dns.only_passing = v;
    }
    if let Some(v) = d.udpanswerlimit {
        if v == 0 {
            return Err("dns_config.udp_answer_limit must be at least 1".into());
        }
        dns.udp_answer_limit = Some(v);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn consul_flag_forms() {
        let c = parse_agent_args(&args("-dev -node=alpha -datacenter dc2 -http-port 18500 -client=127.0.0.1"), "host")
            .unwrap()
            .unwrap();
        assert_eq!((c.node_name.as_str(), c.datacenter.as_str(), c.http_port), ("alpha", "dc2", Some(18500)));
        assert!(c.dev && c.server);
        let c = parse_agent_args(&args("-dev"), "myhost").unwrap().unwrap();
        assert_eq!(c.node_name, "myhost");
        assert!(parse_agent_args(&args("-dev -no-such-flag"), "h").is_err());
        assert!(parse_agent_args(&args("-dev -http-port 99999"), "h").is_err());
        assert!(parse_agent_args(&args("-server"), "h").unwrap_err().contains("-dev"));
    }

    #[test]
    fn config_files_set_ports_and_services() {
        let mut c = parse_agent_args(&args("-dev"), "h").unwrap().unwrap();
        apply_value(
            &mut c,
            serde_json::json!({
                "node_name": "fromfile",
                "ports": {"http": -1, "dns": 8653},
                "session_ttl_min": "1s",
                "enable_script_checks": true,
                "services": [{"name": "web", "port": 80, "check": {"http": "http://localhost/", "interval": "10s"}}],
                "check": {"id": "mem-util", "name": "Memory utilization", "args": ["/bin/true"], "interval": "10s"}
            }),
        )
        .unwrap();
        assert_eq!(
            (c.node_name.as_str(), c.http_port, c.dns_port, c.session_ttl_min_ms),
            ("fromfile", None, Some(8653), 1000)
        );
        assert_eq!(c.services.len(), 1);
        assert_eq!(c.checks.len(), 1);
        assert!(c.enable_script_checks);
    }

    #[test]
    fn gossip_blocks_override_the_pools_timers() {
        let mut c = parse_agent_args(&args("-dev"), "h").unwrap().unwrap();
        let block = serde_json::json!({"gossip_lan": {"probe_interval": "200ms", "suspicion_mult": 2},
            "gossip_wan": {"gossip_nodes": 2}});
        apply_value(&mut c, block).unwrap();
        let mut lan = legate_core::gossip::Config::lan();
        c.gossip_lan.apply(&mut lan);
        assert_eq!((lan.probe_interval_ms, lan.suspicion_mult, lan.probe_timeout_ms), (200, 2, 500));
        assert_eq!(c.gossip_wan.gossip_nodes, Some(2));
        let err = apply_value(&mut c, serde_json::json!({"gossip_lan": {"retransmit_mult": 0}})).unwrap_err();
        assert!(err.contains("gossip_lan.retransmit_mult"), "{err}");
        let err = apply_value(&mut c, serde_json::json!({"gossip_wan": {"probe_timeout": "soon"}})).unwrap_err();
        assert!(err.contains("gossip_wan.probe_timeout"), "{err}");
    }

    #[test]
    fn cluster_flags_are_checked() {
        let c = parse_agent_args(
            &args(
                "-server -bootstrap-expect 3 -data-dir /tmp/x -retry-join 10.0.0.2 -join 10.0.0.3 -raft-multiplier 1",
            ),
            "h",
        )
        .unwrap()
        .unwrap();
        assert_eq!((c.server, c.bootstrap_expect, c.raft_multiplier), (true, 3, 1));
        assert_eq!(c.retry_join, ["10.0.0.3", "10.0.0.2"]);
        let err = |a: &str| parse_agent_args(&args(a), "h").unwrap_err();
        assert!(err("-server -bootstrap-expect 3").contains("data_dir is required"));
        let client = parse_agent_args(&args("-data-dir /tmp/x"), "h").unwrap().unwrap();
        assert!(client.retry_join.is_empty(), "a client agent may start alone and be joined later");
        assert!(err("-data-dir /tmp/x -bootstrap-expect 3 -retry-join a").contains("add -server"));
        assert!(err("-server -data-dir /tmp/x").contains("-bootstrap-expect"));
        assert!(err("-dev -raft-multiplier 11").contains("raft_multiplier"));
        assert!(err("-dev -raft-multiplier x").contains("-raft-multiplier"));

        let mut c = parse_agent_args(&args("-dev"), "h").unwrap().unwrap();
        apply_value(
            &mut c,
            serde_json::json!({"performance": {"raft_multiplier": 2}, "raft_snapshot_threshold": 100,
                               "raft_trailing_logs": 50, "raft_log_segment_bytes": 65536}),
        )
        .unwrap();
        assert_eq!(
            (c.raft_multiplier, c.raft_snapshot_threshold, c.raft_trailing_logs, c.raft_log_segment_bytes),
            (2, 100, 50, 65536)
        );
    }

    #[test]
    fn dns_settings_and_check_update_interval() {
        let c = parse_agent_args(&args("-dev -domain Example.Org -recursor 9.9.9.9:53"), "h").unwrap().unwrap();
        assert_eq!(
            (c.dns.domain.as_str(), c.dns.recursors.as_slice()),
            ("example.org.", &["9.9.9.9:53".to_string()][..])
        );
        assert_eq!(c.dns.datacenter, "dc1");
        assert!(parse_agent_args(&args("-dev -domain a..b"), "h").unwrap_err().contains("invalid domain"));
        let mut c = parse_agent_args(&args("-dev"), "h").unwrap().unwrap();
        apply_value(
            &mut c,
            serde_json::json!({"recursors": ["1.1.1.1"], "check_update_interval": "0s",
                "dns_config": {"only_passing": true, "node_ttl": "10s", "service_ttl": {"*": "5s", "Web": "30s"},
                               "allow_stale": false, "max_stale": "5s", "udp_answer_limit": 3}}),
        )
        .unwrap();
        assert_eq!(c.check_update_interval_ms, 0);
        assert!(c.dns.only_passing && !c.dns.allow_stale);
        assert_eq!((c.dns.node_ttl_s, c.dns.max_stale_ms, c.dns.udp_answer_limit), (10, 5_000, Some(3)));
        assert_eq!((c.dns.service_ttl_s["*"], c.dns.service_ttl_s["web"]), (5, 30));
        assert!(!c.dns.translate_wan_addrs, "off by default, as Consul's");
        apply_value(&mut c, serde_json::json!({"translate_wan_addrs": true})).unwrap();
        assert!(c.dns.translate_wan_addrs);
        let bad = apply_value(&mut c, serde_json::json!({"dns_config": {"node_ttl": "soon"}}));
        assert!(bad.unwrap_err().contains("node_ttl"));
    }

    #[test]
    fn watches_parse_consul_entries() {
        let mut c = parse_agent_args(&args("-dev"), "h").unwrap().unwrap();
        apply_value(
            &mut c,
            serde_json::json!({"watches": [
                {"type": "key", "key": "app/config", "args": ["/usr/bin/reload", "-q"]},
                {"type": "service", "service": "web", "tag": ["v1", "eu"], "passingonly": true,
                 "handler": "cat >> /tmp/web.log", "handler_type": "script", "datacenter": "dc2", "token": "t"},
                {"type": "checks", "state": "critical", "Args": ["notify"]}
            ]}),
        )
        .unwrap();
        assert_eq!(c.watches.len(), 3);
        assert_eq!(c.watches[0].view, View::Key("app/config".into()));
        assert_eq!(c.watches[0].handler, Handler::Args(vec!["/usr/bin/reload".into(), "-q".into()]));
        assert_eq!(
            c.watches[1].view,
            View::Service { name: "web".into(), tags: vec!["v1".into(), "eu".into()], passing: true }
        );
        assert_eq!(c.watches[1].handler, Handler::Shell("cat >> /tmp/web.log".into()));
        assert_eq!((c.watches[1].datacenter.as_deref(), c.watches[1].token.as_deref()), (Some("dc2"), Some("t")));
        assert_eq!(c.watches[2].view, View::ChecksInState { state: "critical".into(), tags: vec![] });
        apply_value(&mut c, serde_json::json!({"watches": [{"type": "nodes", "args": ["true"]}]})).unwrap();
        assert_eq!(c.watches.len(), 4, "watches from several files add up");
    }

    #[test]
    fn bad_watches_are_config_errors_naming_the_entry() {
        let err = |entry: serde_json::Value| {
            let mut c = parse_agent_args(&args("-dev"), "h").unwrap().unwrap();
            apply_value(&mut c, serde_json::json!({"watches": [{"type": "nodes", "args": ["true"]}, entry]}))
                .unwrap_err()
        };
        let e = err(serde_json::json!({"type": "key", "args": ["true"]}));
        assert!(e.starts_with("watches[1] (type \"key\"): ") && e.contains("needs \"key\""), "{e}");
        let e = err(serde_json::json!({"type": "key", "key": "k"}));
        assert!(e.contains("needs a handler"), "{e}");
        let e = err(serde_json::json!({"type": "key", "key": "k", "args": ["a"], "handler": "b"}));
        assert!(e.contains("not both"), "{e}");
        let e = err(serde_json::json!({"type": "key", "key": "k", "handler_type": "http",
            "http_handler_config": {"path": "http://x/"}}));
        assert!(e.contains("\"http\" is not supported"), "{e}");
        let e = err(serde_json::json!({"type": "event", "name": "deploy", "key": "k", "args": ["true"]}));
        assert!(e.contains("\"key\" does not apply to an event watch"), "{e}");
        let e = err(serde_json::json!({"type": "services", "key": "k", "args": ["true"]}));
        assert!(e.contains("\"key\" does not apply to a services watch"), "{e}");
        let e = err(serde_json::json!({"type": "key", "key": "k", "args": ["true"], "colour": "red"}));
        assert!(e.contains("invalid parameters: colour"), "{e}");
        let e = err(serde_json::json!({"type": "key", "key": "k", "args": "true"}));
        assert!(e.contains("args must be a list"), "{e}");
        let e = err(serde_json::json!({"type": "bogus", "args": ["true"]}));
        assert!(e.contains("unsupported watch type"), "{e}");
        let e = err(serde_json::json!(["key"]));
        assert!(e.starts_with("watches[1]: ") && e.contains("object"), "{e}");

        let mut c = parse_agent_args(&args("-dev"), "h").unwrap().unwrap();
        apply_value(&mut c, serde_json::json!({"watches": [{"type": "nodes", "args": ["true"]}]})).unwrap();
        c.http_port = None;
        assert!(validate(&c).unwrap_err().contains("watches need the HTTP API"));
    }
}
