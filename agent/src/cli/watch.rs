//! `legate watch` and the agent's `watches`: follow one view of the data (a key, a key prefix,
//! the services, the nodes, a service's instances, health checks) with blocking queries, and
//! hand each new result to a handler, as `consul watch` and Consul's watch plans do; or the
//! user events this agent received (`event`), each delivered once.
//!
//! The contract, shared by the command and the agent:
//! - the view is read with [`Blocking`] (Consul's index rules, rate limit, error backoff);
//! - a result is delivered only when it differs from the last one delivered (an index can move
//!   while the watched data stays the same, e.g. another instance of a service with the same
//!   tags); the first result is always delivered;
//! - a handler gets the result as JSON on stdin and `CONSUL_INDEX` in its environment; its
//!   failure is reported and the watch goes on;
//! - an unreachable agent or an error status is reported and retried after the backoff.
//!
//! Unlike `consul watch`, which prints the first result and exits, `legate watch` without a
//! handler keeps printing every new result, and a failing handler does not end it.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::ControlFlow;
use std::process::{Command, Stdio};

use serde::Serialize as _;
use serde_json::{Map, Value};

use super::blocking::Blocking;
use super::client::{CallError, Client};
use super::{client_options, parse};

/// The watch types `-type` knows.
pub const TYPES: &[&str] = &["key", "keyprefix", "services", "nodes", "service", "checks", "event"];

/// The check states a `checks` watch may filter on.
const CHECK_STATES: &[&str] = &["any", "passing", "warning", "critical"];

/// How much of a handler's output the agent logs (its tail), as Consul does.
pub const HANDLER_OUTPUT_LOG_MAX_BYTES: usize = 4096;

const USAGE: &str = "Usage: legate watch [options] [child...]

  Watches a view of the data with blocking queries. On every change the child (run with
  `sh -c`, or directly with -shell=false) gets the view as JSON on stdin and CONSUL_INDEX in
  its environment; without a child every new view is printed as JSON.

  -type is required:
    key        -key KEY                            a KV entry (null when missing)
    keyprefix  -prefix PREFIX                      the KV entries under a prefix
    services                                       service names and their tags
    nodes                                          the catalog's nodes
    service    -service NAME [-tag T] [-passing]   /v1/health/service/NAME
    checks     [-service NAME | -state STATE]      health checks (default: every state)
    event      [-name NAME]                        user events this agent received (new ones)";

/// A watch's parameters as given (flags or a config entry), before they are checked against
/// its type. Unset parameters are `None` (or empty), so that one a type does not take can be
/// told from one that was left out.
#[derive(Clone, Debug, Default)]
pub struct Params {
    pub kind: String,
    pub key: Option<String>,
    pub prefix: Option<String>,
    pub service: Option<String>,
    pub tags: Vec<String>,
    pub passing: Option<bool>,
    pub state: Option<String>,
    pub name: Option<String>,
    /// Name parameters as flags (`-key`) rather than config keys (`"key"`) in errors.
    pub flags: bool,
}

impl Params {
    fn named(&self, param: &str) -> String {
        match (self.flags, param) {
            (true, "passingonly") => "-passing".into(),
            (true, _) => format!("-{param}"),
            (false, _) => format!("{param:?}"),
        }
    }

    /// The parameters that were given, by their config names.
    fn given(&self) -> Vec<&'static str> {
        let mut given = Vec::new();
        for (set, name) in [
            (self.key.is_some(), "key"),
            (self.prefix.is_some(), "prefix"),
            (self.service.is_some(), "service"),
            (!self.tags.is_empty(), "tag"),
            (self.passing.is_some(), "passingonly"),
            (self.state.is_some(), "state"),
            (self.name.is_some(), "name"),
        ] {
            if set {
                given.push(name);
            }
        }
        given
    }

    fn required(&self, value: &Option<String>, param: &str, what: &str) -> Result<String, String> {
        match value.as_deref() {
            Some(v) if !v.is_empty() => Ok(v.to_string()),
            _ => Err(format!("a {} watch needs {} ({what})", self.kind, self.named(param))),
        }
    }
}

/// A view of the data a watch follows: one of Consul's watch types with its parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum View {
    /// `/v1/kv/<key>`: the entry, or `null`.
    Key(String),
    /// `/v1/kv/<prefix>?recurse`: the entries, or `null` when none.
    KeyPrefix(String),
    /// `/v1/catalog/services`: service name → tags.
    Services,
    /// `/v1/catalog/nodes`.
    Nodes,
    /// `/v1/health/service/<name>`, all tags required, optionally passing instances only.
    Service { name: String, tags: Vec<String>, passing: bool },
    /// `/v1/health/checks/<service>`.
    ServiceChecks(String),
    /// `/v1/health/state/<state>`, optionally only checks of services with all the tags.
    ChecksInState { state: String, tags: Vec<String> },
    /// `/v1/event/list[?name=]`: the user events received since the last delivery.
    Event(Option<String>),
}

impl View {
    /// Checks the parameters against the type: required ones present, none the type does not
    /// take (Consul's "Invalid parameters").
    pub fn from_params(p: &Params) -> Result<View, String> {
        let takes: &[&str] = match p.kind.as_str() {
            "key" => &["key"],
            "keyprefix" => &["prefix"],
            "services" | "nodes" => &[],
            "service" => &["service", "tag", "passingonly"],
            "checks" => &["service", "state", "tag"],
            "event" => &["name"],
            "" => return Err(format!("a watch type is required ({}): one of {}", p.named("type"), TYPES.join(", "))),
            other => return Err(format!("unsupported watch type {other:?}: want one of {}", TYPES.join(", "))),
        };
        let extra: Vec<String> = p.given().into_iter().filter(|g| !takes.contains(g)).map(|g| p.named(g)).collect();
        if !extra.is_empty() {
            let article = if p.kind.starts_with(['a', 'e', 'i', 'o', 'u']) { "an" } else { "a" };
            return Err(format!("{} does not apply to {article} {} watch", extra.join(", "), p.kind));
        }
        Ok(match p.kind.as_str() {
            "key" => View::Key(p.required(&p.key, "key", "the key to watch")?),
            "keyprefix" => View::KeyPrefix(p.required(&p.prefix, "prefix", "the key prefix to watch")?),
            "services" => View::Services,
            "nodes" => View::Nodes,
            "event" => View::Event(p.name.clone().filter(|n| !n.is_empty())),
            "service" => View::Service {
                name: p.required(&p.service, "service", "the service to watch")?,
                tags: p.tags.clone(),
                passing: p.passing.unwrap_or(false),
            },
            _ => match (&p.service, &p.state) {
                (Some(_), Some(_)) => {
                    return Err(format!(
                        "a checks watch takes {} or {}, not both",
                        p.named("service"),
                        p.named("state")
                    ))
                }
                (Some(_), None) => View::ServiceChecks(p.required(&p.service, "service", "the service")?),
                (None, state) => {
                    let state = state.clone().unwrap_or_else(|| "any".into());
                    if !CHECK_STATES.contains(&state.as_str()) {
                        return Err(format!(
                            "invalid {} {state:?}: want one of {}",
                            p.named("state"),
                            CHECK_STATES.join(", ")
                        ));
                    }
                    View::ChecksInState { state, tags: p.tags.clone() }
                }
            },
        })
    }

    /// The watch type's name.
    pub fn kind(&self) -> &'static str {
        match self {
            View::Key(_) => "key",
            View::KeyPrefix(_) => "keyprefix",
            View::Services => "services",
            View::Nodes => "nodes",
            View::Service { .. } => "service",
            View::ServiceChecks(_) | View::ChecksInState { .. } => "checks",
            View::Event(_) => "event",
        }
    }

    /// The blocking read that follows the view: path and query (without `index`/`wait`).
    pub fn request(&self) -> (String, Vec<(&'static str, String)>) {
        let tagged = |tags: &[String]| tags.iter().map(|t| ("tag", t.clone())).collect::<Vec<_>>();
        match self {
            View::Key(key) => (format!("/v1/kv/{}", escape_path(key.trim_start_matches('/'))), Vec::new()),
            View::KeyPrefix(prefix) => {
                (format!("/v1/kv/{}", escape_path(prefix.trim_start_matches('/'))), vec![("recurse", String::new())])
            }
            View::Services => ("/v1/catalog/services".into(), Vec::new()),
            View::Nodes => ("/v1/catalog/nodes".into(), Vec::new()),
            View::Service { name, tags, passing } => {
                let mut query = tagged(tags);
                if *passing {
                    query.push(("passing", "1".into()));
                }
                (format!("/v1/health/service/{}", escape_path(name)), query)
            }
            View::ServiceChecks(service) => (format!("/v1/health/checks/{}", escape_path(service)), Vec::new()),
            View::ChecksInState { state, tags } => (format!("/v1/health/state/{}", escape_path(state)), tagged(tags)),
            View::Event(name) => ("/v1/event/list".into(), name.iter().map(|n| ("name", n.clone())).collect()),
        }
    }

    /// What a handler gets for an answer's body (`None`: 404), in the shape Consul's watch
    /// hands over: a `key` watch the entry itself, KV entries with Consul's fields and order.
    pub fn result(&self, body: Option<Value>) -> Value {
        match (self, body) {
            (_, None) => Value::Null,
            (View::Key(_), Some(Value::Array(entries))) => entries.into_iter().next().map_or(Value::Null, kv_pair),
            (View::KeyPrefix(_), Some(Value::Array(entries))) => {
                Value::Array(entries.into_iter().map(kv_pair).collect())
            }
            (_, Some(other)) => other,
        }
    }
}

/// A KV entry as Consul's Go client encodes it: `Key, CreateIndex, ModifyIndex, LockIndex,
/// Flags, Value, Session` (`""` when unheld), then anything else the agent sent.
fn kv_pair(entry: Value) -> Value {
    let Value::Object(mut fields) = entry else { return entry };
    let mut out = Map::new();
    for name in ["Key", "CreateIndex", "ModifyIndex", "LockIndex", "Flags", "Value"] {
        if let Some(v) = fields.remove(name) {
            out.insert(name.into(), v);
        }
    }
    out.insert("Session".into(), fields.remove("Session").unwrap_or_else(|| Value::String(String::new())));
    out.extend(fields);
    Value::Object(out)
}

/// Percent-encodes a path segment's bytes other than unreserved ones and `/`, so that keys
/// holding `?`, `#`, `%` or spaces reach the agent intact.
fn escape_path(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for b in raw.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Consul's event watch: of an event list, only the events after the one whose ID folds to
/// `last_index` (the index of the last delivery); the whole list when that one is gone.
fn events_after(result: Value, last_index: Option<u64>) -> Value {
    let (Some(last), Value::Array(events)) = (last_index, &result) else { return result };
    let id_index = |e: &Value| e["ID"].as_str().map(crate::events::id_to_index);
    match events.iter().position(|e| id_index(e) == Some(last)) {
        Some(i) => Value::Array(events[i + 1..].to_vec()),
        None => result,
    }
}

/// Consul's rule: a result equal to the last one delivered is not delivered again.
#[derive(Debug, Default)]
pub struct Changes {
    last: Option<Value>,
}

impl Changes {
    /// Whether `result` differs from the last one seen; remembers it.
    pub fn is_new(&mut self, result: &Value) -> bool {
        if self.last.as_ref() == Some(result) {
            return false;
        }
        self.last = Some(result.clone());
        true
    }
}

/// Follows `view` until `deliver` breaks: each answer whose index moved and whose result
/// differs from the last one delivered goes to `deliver` with its index; each failed read goes
/// to `report`, and the next read waits out the backoff.
pub fn follow(
    view: &View,
    client: Client,
    mut deliver: impl FnMut(u64, &Value) -> ControlFlow<()>,
    mut report: impl FnMut(&CallError),
) {
    let (path, query) = view.request();
    let mut blocking = Blocking::new(client, path, query);
    let mut changes = Changes::default();
    // An event watch: the index of the last delivery, so that each event is delivered once.
    let mut last_event_index = None;
    loop {
        match blocking.next() {
            Ok(answer) => {
                let mut result = view.result(answer.body);
                if let View::Event(_) = view {
                    result = events_after(result, last_event_index);
                    if last_event_index.is_some() && result.as_array().is_some_and(Vec::is_empty) {
                        continue;
                    }
                    last_event_index = Some(answer.index);
                }
                if changes.is_new(&result) && deliver(answer.index.max(1), &result).is_break() {
                    return;
                }
            }
            Err(e) => report(&e),
        }
    }
}

/// A script handler: a shell command (`handler`, the CLI's child) or a program and its
/// arguments run directly (`args`, `-shell=false`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Handler {
    Shell(String),
    Args(Vec<String>),
}

impl Handler {
    fn command(&self) -> Result<Command, String> {
        match self {
            Handler::Shell(script) => {
                let mut c = Command::new("sh");
                c.arg("-c").arg(script);
                Ok(c)
            }
            Handler::Args(args) => {
                let (program, rest) = args.split_first().ok_or("the handler's args are empty")?;
                let mut c = Command::new(program);
                c.args(rest);
                Ok(c)
            }
        }
    }

    /// Runs the handler once, `result` as JSON on its stdin and `CONSUL_INDEX=index` in its
    /// environment, and waits for it. With `capture` the tail of its stdout and stderr is
    /// returned (the agent logs it, also in the error); otherwise they are the caller's.
    pub fn invoke(&self, index: u64, result: &Value, capture: bool) -> Result<String, String> {
        let mut command = self.command()?;
        command.env("CONSUL_INDEX", index.to_string()).stdin(Stdio::piped());
        if capture {
            command.stdout(Stdio::piped()).stderr(Stdio::piped());
        }
        let mut child = command.spawn().map_err(|e| format!("cannot start the handler: {e}"))?;
        // Like Go's json.Encoder: compact, one trailing newline.
        let mut input = serde_json::to_vec(result).map_err(|e| format!("encoding the result: {e}"))?;
        input.push(b'\n');
        // Threads feed stdin and drain the output, so a handler that writes much before reading
        // cannot deadlock us; one that never reads its stdin just closes the pipe.
        let stdin = child.stdin.take();
        let writer = std::thread::spawn(move || {
            if let Some(mut stdin) = stdin {
                let _ = stdin.write_all(&input);
            }
        });
        let stdout = child.stdout.take().map(|s| std::thread::spawn(move || Tail::read(s)));
        let stderr = child.stderr.take().map(|s| std::thread::spawn(move || Tail::read(s)));
        let status = child.wait().map_err(|e| format!("waiting for the handler: {e}"));
        let _ = writer.join();
        let mut output = Tail::default();
        for reader in [stdout, stderr].into_iter().flatten() {
            output.append(reader.join().unwrap_or_default());
        }
        let status = status?;
        let output = output.text();
        match (status.success(), output.is_empty()) {
            (true, _) => Ok(output),
            (false, true) => Err(format!("the handler failed ({status})")),
            (false, false) => Err(format!("the handler failed ({status}); its output: {output}")),
        }
    }
}

/// The end of a handler's output: its last [`HANDLER_OUTPUT_LOG_MAX_BYTES`], and how much
/// there was.
#[derive(Debug, Default)]
struct Tail {
    kept: Vec<u8>,
    total: usize,
}

impl Tail {
    fn push(&mut self, bytes: &[u8]) {
        self.total += bytes.len();
        self.kept.extend_from_slice(bytes);
        let excess = self.kept.len().saturating_sub(HANDLER_OUTPUT_LOG_MAX_BYTES);
        self.kept.drain(..excess);
    }

    fn append(&mut self, other: Tail) {
        let dropped = other.total - other.kept.len();
        self.push(&other.kept);
        self.total += dropped;
    }

    /// Reads `stream` to its end.
    fn read(mut stream: impl Read) -> Tail {
        let mut tail = Tail::default();
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf) {
                Ok(0) => return tail,
                Ok(n) => tail.push(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return tail,
            }
        }
    }

    /// The kept bytes as text, marked when cut as Consul marks them.
    fn text(&self) -> String {
        let text = String::from_utf8_lossy(&self.kept);
        if self.total > self.kept.len() {
            format!("Captured {} of {} bytes\n...\n{text}", self.kept.len(), self.total)
        } else {
            text.into_owned()
        }
    }
}

/// A watch from the agent's config: the view, its handler, and the client settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchConfig {
    pub view: View,
    pub handler: Handler,
    pub datacenter: Option<String>,
    pub token: Option<String>,
    pub stale: bool,
}

/// The address at which the agent reaches its own HTTP API (a wildcard listen address is
/// reached on loopback).
pub fn local_http_addr(listen: SocketAddr) -> SocketAddr {
    match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => SocketAddr::new(Ipv4Addr::LOCALHOST.into(), listen.port()),
        IpAddr::V6(ip) if ip.is_unspecified() => SocketAddr::new(Ipv6Addr::LOCALHOST.into(), listen.port()),
        _ => listen,
    }
}

/// Starts each configured watch on its own thread, against the agent's HTTP API at
/// `http_addr`. They run for the life of the process; handler output and errors go to the log.
pub fn start_agent_watches(watches: &[WatchConfig], http_addr: SocketAddr) -> Result<(), String> {
    let addr = local_http_addr(http_addr).to_string();
    for (i, watch) in watches.iter().enumerate() {
        let label = format!("watches[{i}] ({})", watch.view.kind());
        tracing::info!(watch = %label, agent = %addr, "starting watch");
        let watch = watch.clone();
        let client = Client::from_flags(Some(addr.clone()), watch.token.clone(), watch.datacenter.clone(), watch.stale);
        std::thread::Builder::new()
            .name(format!("watch-{i}"))
            .spawn(move || run_agent_watch(&label, &watch, client))
            .map_err(|e| format!("cannot start watch {i}: {e}"))?;
    }
    Ok(())
}

fn run_agent_watch(label: &str, watch: &WatchConfig, client: Client) {
    follow(
        &watch.view,
        client,
        |index, result| {
            match watch.handler.invoke(index, result, true) {
                Ok(output) => tracing::debug!(watch = label, index, output = %output, "watch handler ran"),
                Err(e) => tracing::error!(watch = label, index, error = %e, "watch handler failed"),
            }
            ControlFlow::Continue(())
        },
        |e| tracing::warn!(watch = label, error = %e, "watch query failed; retrying after a backoff"),
    );
}

/// Go's `strconv.ParseBool`, which Consul's `-passingonly` and `-shell` take.
fn parse_go_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// Prints `result` as Consul's watch does (indented by four spaces) and flushes.
fn print_result(out: &mut impl Write, result: &Value) -> std::io::Result<()> {
    let mut ser =
        serde_json::Serializer::with_formatter(&mut *out, serde_json::ser::PrettyFormatter::with_indent(b"    "));
    result.serialize(&mut ser).map_err(std::io::Error::other)?;
    out.write_all(b"\n")?;
    out.flush()
}

/// `legate watch`.
pub fn run(args: &[String]) -> i32 {
    let mut o = client_options();
    o.optopt("", "type", "Watch type: key, keyprefix, services, nodes, service, checks, event.", "TYPE");
    o.optopt("", "key", "Key to watch (type key).", "KEY");
    o.optopt("", "prefix", "Key prefix to watch (type keyprefix).", "PREFIX");
    o.optopt("", "service", "Service to watch (required for type service; optional for checks).", "NAME");
    o.optmulti("", "tag", "Service tag to filter on (type service; checks with -state). Repeatable.", "TAG");
    o.optflag("", "passing", "Only instances whose checks all pass (type service).");
    o.optopt("", "passingonly", "Consul's spelling of -passing: true or false.", "BOOL");
    o.optopt("", "state", "Check state to filter on: any, passing, warning, critical (type checks).", "STATE");
    o.optopt("", "name", "Only events of this name (type event).", "NAME");
    o.optflagopt("", "shell", "Run the child with `sh -c` (default true; -shell=false runs it directly).", "BOOL");
    let (m, client) = match parse(&o, args, USAGE) {
        Ok(v) => v,
        Err(code) => return code,
    };
    let Some(kind) = m.opt_str("type") else {
        eprintln!("Watch type must be specified (-type)\n\n{}", o.usage(USAGE));
        return 1;
    };
    let bool_flag = |name: &str| -> Result<Option<bool>, String> {
        match m.opt_str(name) {
            None => Ok(None),
            Some(v) => parse_go_bool(&v).map(Some).ok_or_else(|| format!("invalid -{name} {v:?}: want true or false")),
        }
    };
    let passing = match bool_flag("passingonly") {
        Ok(v) => v.or(m.opt_present("passing").then_some(true)),
        Err(e) => return fail(&e),
    };
    // `-shell` alone keeps the default; `-shell=false` runs the child directly.
    let shell = match bool_flag("shell") {
        Ok(v) => v.unwrap_or(true),
        Err(e) => return fail(&e),
    };
    let params = Params {
        kind,
        key: m.opt_str("key"),
        prefix: m.opt_str("prefix"),
        service: m.opt_str("service"),
        tags: m.opt_strs("tag"),
        passing,
        state: m.opt_str("state"),
        name: m.opt_str("name"),
        flags: true,
    };
    let view = match View::from_params(&params) {
        Ok(v) => v,
        Err(e) => return fail(&e),
    };
    let handler = match (m.free.is_empty(), shell) {
        (true, _) => None,
        (false, true) => Some(Handler::Shell(m.free.join(" "))),
        (false, false) => Some(Handler::Args(m.free.clone())),
    };
    let report = |e: &CallError| eprintln!("Error: {e} (retrying)");
    match handler {
        None => follow(
            &view,
            client,
            |_, result| match print_result(&mut std::io::stdout().lock(), result) {
                Ok(()) => ControlFlow::Continue(()),
                // Stdout is gone (a closed pipe): nobody reads the watch any more.
                Err(_) => ControlFlow::Break(()),
            },
            report,
        ),
        Some(handler) => follow(
            &view,
            client,
            |index, result| {
                if let Err(e) = handler.invoke(index, result, false) {
                    eprintln!("Error executing handler: {e}");
                }
                ControlFlow::Continue(())
            },
            report,
        ),
    }
    0
}

fn fail(message: &str) -> i32 {
    eprintln!("Error: {message}");
    1
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn params(kind: &str) -> Params {
        Params { kind: kind.into(), flags: true, ..Params::default() }
    }

    #[test]
    fn each_type_maps_to_its_endpoint() {
        let key = View::from_params(&Params { key: Some("/app/a b?".into()), ..params("key") }).unwrap();
        assert_eq!(key.request(), ("/v1/kv/app/a%20b%3F".to_string(), vec![]));
        let prefix = View::from_params(&Params { prefix: Some("app/".into()), ..params("keyprefix") }).unwrap();
        assert_eq!(prefix.request(), ("/v1/kv/app/".to_string(), vec![("recurse", String::new())]));
        assert_eq!(View::from_params(&params("services")).unwrap().request().0, "/v1/catalog/services");
        assert_eq!(View::from_params(&params("nodes")).unwrap().request().0, "/v1/catalog/nodes");
        let service = View::from_params(&Params {
            service: Some("web".into()),
            tags: vec!["v1".into(), "eu".into()],
            passing: Some(true),
            ..params("service")
        })
        .unwrap();
        assert_eq!(
            service.request(),
            (
                "/v1/health/service/web".to_string(),
                vec![("tag", "v1".to_string()), ("tag", "eu".to_string()), ("passing", "1".to_string())]
            )
        );
        let checks = View::from_params(&params("checks")).unwrap();
        assert_eq!(checks, View::ChecksInState { state: "any".into(), tags: vec![] });
        assert_eq!(checks.request().0, "/v1/health/state/any");
        let of_service = View::from_params(&Params { service: Some("web".into()), ..params("checks") }).unwrap();
        assert_eq!(of_service.request().0, "/v1/health/checks/web");
        assert_eq!(of_service.kind(), "checks");
        let events = View::from_params(&params("event")).unwrap();
        assert_eq!((events.request(), events.kind()), (("/v1/event/list".to_string(), vec![]), "event"));
        let named = View::from_params(&Params { name: Some("deploy".into()), ..params("event") }).unwrap();
        assert_eq!(named.request(), ("/v1/event/list".to_string(), vec![("name", "deploy".to_string())]));
    }

    #[test]
    fn an_event_watch_delivers_only_the_events_after_the_last_delivery() {
        let a = "00000000-0000-0001-0000-000000000002";
        let b = "00000000-0000-0003-0000-000000000004";
        let list = json!([{"ID": a, "Name": "deploy"}, {"ID": b, "Name": "deploy"}]);
        assert_eq!(events_after(list.clone(), None), list, "the first delivery has them all");
        assert_eq!(events_after(list.clone(), Some(1 ^ 2)), json!([{"ID": b, "Name": "deploy"}]));
        assert_eq!(events_after(list.clone(), Some(3 ^ 4)), json!([]));
        assert_eq!(events_after(list.clone(), Some(99)), list, "the last one delivered was forgotten");
    }

    #[test]
    fn bad_parameters_are_rejected_with_their_names() {
        let err = |p: Params| View::from_params(&p).unwrap_err();
        assert!(err(params("key")).contains("needs -key"), "{}", err(params("key")));
        assert!(err(Params { key: Some(String::new()), ..params("key") }).contains("needs -key"));
        assert!(err(params("keyprefix")).contains("-prefix"));
        assert!(err(params("service")).contains("needs -service"));
        assert!(err(params("bogus")).contains("unsupported watch type \"bogus\""));
        assert!(err(params("")).contains("watch type is required"));
        let on_event = err(Params { key: Some("k".into()), ..params("event") });
        assert!(on_event.contains("-key does not apply to an event watch"), "{on_event}");
        let extra = err(Params { key: Some("k".into()), ..params("services") });
        assert!(extra.contains("-key does not apply to a services watch"), "{extra}");
        let both = err(Params { service: Some("w".into()), state: Some("passing".into()), ..params("checks") });
        assert!(both.contains("not both"), "{both}");
        assert!(err(Params { state: Some("sad".into()), ..params("checks") }).contains("invalid -state"));
        let config = Params { kind: "key".into(), ..Params::default() };
        assert!(err(config).contains("needs \"key\""), "config entries name keys, not flags");
    }

    #[test]
    fn results_take_consul_watch_shapes() {
        let key = View::Key("k".into());
        assert_eq!(key.result(None), Value::Null, "a missing key is null");
        let entry =
            json!({"LockIndex": 0, "Key": "k", "Flags": 0, "Value": "dg==", "CreateIndex": 5, "ModifyIndex": 7});
        let shaped = key.result(Some(json!([entry])));
        let names: Vec<&String> = shaped.as_object().unwrap().keys().collect();
        assert_eq!(names, ["Key", "CreateIndex", "ModifyIndex", "LockIndex", "Flags", "Value", "Session"]);
        assert_eq!((shaped["Session"].as_str(), shaped["ModifyIndex"].as_u64()), (Some(""), Some(7)));
        let held = key.result(Some(json!([{"Key": "k", "Session": "s1"}])));
        assert_eq!(held["Session"], "s1");
        let prefix = View::KeyPrefix("p/".into());
        assert_eq!(prefix.result(None), Value::Null, "no entries under the prefix");
        assert_eq!(prefix.result(Some(json!([{"Key": "p/a"}, {"Key": "p/b"}])))[1]["Key"], "p/b");
        let services = json!({"web": ["v1"]});
        assert_eq!(View::Services.result(Some(services.clone())), services);
    }

    #[test]
    fn an_unchanged_result_is_not_delivered_again() {
        let mut changes = Changes::default();
        assert!(changes.is_new(&Value::Null), "the first result, even null, is delivered");
        assert!(!changes.is_new(&Value::Null), "the index moved, the data did not");
        assert!(changes.is_new(&json!({"web": []})));
        assert!(!changes.is_new(&json!({"web": []})));
        assert!(changes.is_new(&json!({"web": ["v2"]})));
        assert!(changes.is_new(&Value::Null), "going back to an earlier value is a change");
    }

    #[test]
    fn handlers_get_the_json_and_the_index_and_report_failure() {
        let echo = Handler::Shell("printf '%s ' \"$CONSUL_INDEX\"; cat".into());
        let out = echo.invoke(42, &json!({"a": [1]}), true).unwrap();
        assert_eq!(out, "42 {\"a\":[1]}\n");
        let direct = Handler::Args(vec!["sh".into(), "-c".into(), "cat >/dev/null; exit 3".into()]);
        let err = direct.invoke(1, &Value::Null, true).unwrap_err();
        assert!(err.contains("failed") && err.contains('3'), "{err}");
        let missing = Handler::Args(vec!["/nonexistent/legate-handler".into()]);
        assert!(missing.invoke(1, &Value::Null, true).unwrap_err().contains("cannot start"));
        assert!(Handler::Args(vec![]).invoke(1, &Value::Null, true).is_err());
    }

    #[test]
    fn printing_indents_like_consul() {
        let mut out = Vec::new();
        print_result(&mut out, &json!({"web": ["v1"]})).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "{\n    \"web\": [\n        \"v1\"\n    ]\n}\n");
        let mut out = Vec::new();
        print_result(&mut out, &Value::Null).unwrap();
        assert_eq!(out, b"null\n");
    }

    #[test]
    fn wildcard_listen_addresses_are_reached_on_loopback() {
        let any: SocketAddr = "0.0.0.0:8500".parse().unwrap();
        assert_eq!(local_http_addr(any), "127.0.0.1:8500".parse().unwrap());
        let any6: SocketAddr = "[::]:8500".parse().unwrap();
        assert_eq!(local_http_addr(any6), "[::1]:8500".parse().unwrap());
        let fixed: SocketAddr = "10.0.0.1:8500".parse().unwrap();
        assert_eq!(local_http_addr(fixed), fixed);
    }

    #[test]
    fn captured_output_keeps_a_bounded_tail() {
        let mut tail = Tail::default();
        tail.push(&vec![b'x'; HANDLER_OUTPUT_LOG_MAX_BYTES]);
        tail.push(b"end");
        assert_eq!(tail.kept.len(), HANDLER_OUTPUT_LOG_MAX_BYTES);
        assert!(tail.text().starts_with("Captured 4096 of 4099 bytes") && tail.text().ends_with("xend"));
        let mut short = Tail::default();
        short.push(b"out ");
        short.append(Tail { kept: b"err".to_vec(), total: 3 });
        assert_eq!(short.text(), "out err");
        let chatty = Handler::Shell("head -c 100000 /dev/zero | tr '\\0' y; cat >/dev/null; echo done >&2".into());
        let out = chatty.invoke(1, &json!([1, 2]), true).unwrap();
        assert!(out.starts_with("Captured 4096 of 100005 bytes") && out.ends_with("yyydone\n"), "{}", &out[..40]);
    }
}
