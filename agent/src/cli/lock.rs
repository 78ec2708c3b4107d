//! `legate lock [options] prefix child...`: runs `child` while holding a lock (or, with `-n N`,
//! one of N semaphore slots) under `prefix`, as `consul lock` does.
//!
//! The protocol (which keys, which flags, what each answer means) is
//! [`legate_core::lock`]'s, the same machines the simulator checks; this file is the driver:
//! HTTP requests, the session and its renewal, the child process, signals.
//!
//! 1. Create a session (TTL 15 s; Behavior `release` for a lock, `delete` for a semaphore) and
//!    renew it every 7.5 s on a thread.
//! 2. Acquire (blocking reads while another holds it), within `-timeout` if given.
//! 3. Run the child with `CONSUL_LOCK_HELD=true` and, for a lock, `LEGATE_LOCK_INDEX=<n>`: the
//!    key's LockIndex for this acquisition, a fencing token (see the README).
//! 4. Monitor with blocking `?consistent` reads; on loss, SIGTERM the child's process group and
//!    SIGKILL it 5 s later. SIGINT/SIGTERM to `legate lock` do the same.
//! 5. When the child exits, release and destroy the session.

use std::os::unix::process::CommandExt as _;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use legate_core::lock::{self, Lock, Pair, Reply, Request, Semaphore, Step};
use serde_json::{json, Value};

use super::client::{CallError, Client};
use super::kv::kv_path;
use super::{client_options, parse};

const USAGE: &str = "Usage: legate lock [options] prefix child...

  Acquires a lock or semaphore at a given path, and invokes a child process when successful.
  The child process can assume the lock is held while it executes. If the lock is lost or
  communication is disrupted the child process will be sent a SIGTERM signal and given time to
  gracefully exit. After the grace period expires the process will be hard terminated.

  For a lock (the default, -n=1) the child gets CONSUL_LOCK_HELD=true and LEGATE_LOCK_INDEX, the
  lock key's LockIndex for this acquisition: a fencing token that only grows.

  When -n=1, only a single lock holder is allowed and the lock key is <prefix>/.lock. When -n>1,
  a semaphore of that many holders is used instead (the Go client's layout).";

/// How long the child has between SIGTERM and SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(5);
/// Retries of a session create that failed with a server error, a second apart.
const SESSION_RETRIES: u32 = 10;
/// How often the waiting loops look at the flags.
const TICK: Duration = Duration::from_millis(50);

/// Flags set by the signal thread, the monitor and the renewer.
#[derive(Default)]
struct Flags {
    /// SIGINT or SIGTERM reached `legate lock`.
    interrupted: AtomicBool,
    /// The monitor found the lock lost.
    lost: AtomicBool,
    /// The child runs in this process group (0: none yet).
    child_pgid: AtomicI32,
    /// The renewer and monitor should stop.
    done: AtomicBool,
}

struct Opts {
    prefix: String,
    child: Vec<String>,
    limit: u32,
    timeout: Option<Duration>,
    shell: bool,
    pass_stdin: bool,
    child_exit_code: bool,
    monitor_retry: u32,
    name: Option<String>,
    verbose: bool,
}

/// The lock or the semaphore slot being taken.
#[derive(Clone)]
enum Machine {
    Lock(Lock),
    Semaphore(Semaphore),
}

impl Machine {
    fn acquire(&mut self) -> Request {
        match self {
            Machine::Lock(l) => l.acquire(),
            Machine::Semaphore(s) => s.acquire(),
        }
    }

    fn monitor(&mut self) -> Request {
        match self {
            Machine::Lock(l) => l.monitor(),
            Machine::Semaphore(s) => s.monitor(),
        }
    }

    fn release(&mut self) -> Request {
        match self {
            Machine::Lock(l) => l.release(),
            Machine::Semaphore(s) => s.release(),
        }
    }

    fn handle(&mut self, reply: Reply) -> Step {
        match self {
            Machine::Lock(l) => l.handle(reply),
            Machine::Semaphore(s) => s.handle(reply),
        }
    }
}

pub(super) fn run(args: &[String]) -> i32 {
    let opts = match options(args) {
        Ok(o) => o,
        Err(code) => return code,
    };
    let (opts, client) = opts;
    let flags = Arc::new(Flags::default());
    watch_signals(flags.clone());

    let session = match create_session_retrying(&client, &opts) {
        Ok(id) => id,
        Err(e) => return fail(&format!("Error creating session: {e}")),
    };
    if opts.verbose {
        eprintln!("Created session {session}");
    }
    let renewer = spawn_renewer(client.clone(), session.clone(), flags.clone());
    let code = hold_and_run(&client, &opts, &session, &flags);
    flags.done.store(true, Ordering::SeqCst);
    if let Err(e) = client.call("PUT", &format!("/v1/session/destroy/{session}"), &[], None) {
        eprintln!("Error destroying session {session}: {e}");
    }
    drop(renewer);
    code
}

fn options(args: &[String]) -> Result<(Opts, Client), i32> {
    let mut o = client_options();
    o.optopt("n", "", "Number of holders allowed at once (default 1: a lock; more: a semaphore).", "N");
    o.optopt("", "timeout", "Maximum time to wait for the lock (e.g. 10s; default: forever).", "DURATION");
    o.optflagopt("", "shell", "Run the child through a shell (default true; -shell=false to exec it).", "BOOL");
    o.optflag("", "pass-stdin", "Pass stdin to the child.");
    o.optflag("", "child-exit-code", "Exit 2 if the child exits with an error.");
    o.optopt("", "monitor-retry", "Retries of the lock monitor on server errors (default 3).", "N");
    o.optopt("", "name", "The session's name (default: Consul lock for '<child>' at '<prefix>').", "NAME");
    o.optflag("", "verbose", "Print what the lock does.");
    // getopts wants one-letter options short: `-n=2` becomes `-n 2` (before the first
    // positional argument, where flags end).
    let mut normalized: Vec<String> = Vec::new();
    let mut in_flags = true;
    for a in args {
        if in_flags && !a.starts_with('-') {
            in_flags = false;
        }
        match a.strip_prefix("-n=").or_else(|| a.strip_prefix("--n=")) {
            Some(v) if in_flags => normalized.extend(["-n".to_string(), v.to_string()]),
            _ => normalized.push(a.clone()),
        }
    }
    let (m, client) = parse(&o, &normalized, USAGE)?;
    let bad = |e: String| {
        eprintln!("{e}");
        1
    };
    let (prefix, child) = match m.free.split_first() {
        Some((p, c)) if !c.is_empty() => (p.clone(), c.to_vec()),
        _ => return Err(bad("Error! Missing prefix and child (legate lock [options] prefix child...)".into())),
    };
    let prefix = prefix.trim_start_matches('/').trim_end_matches('/').to_string();
    if prefix.is_empty() {
        return Err(bad("Error! The prefix must not be empty".into()));
    }
    let limit = match m.opt_str("n").map(|n| n.parse::<u32>()) {
        None => 1,
        Some(Ok(n)) if n >= 1 => n,
        Some(_) => return Err(bad("Error! -n must be a whole number of at least 1".into())),
    };
    let timeout = match m.opt_str("timeout") {
        None => None,
        Some(t) => match legate_core::duration::parse_ms(&t) {
            Ok(0) => None,
            Ok(ms) => Some(Duration::from_millis(ms)),
            Err(e) => return Err(bad(format!("Error! Invalid -timeout {t:?}: {e}"))),
        },
    };
    let shell = match m.opt_str("shell").as_deref() {
        None | Some("true" | "1" | "t" | "T" | "TRUE" | "True") => true,
        Some("false" | "0" | "f" | "F" | "FALSE" | "False") => false,
        Some(other) => return Err(bad(format!("Error! Invalid -shell value {other:?} (true or false)"))),
    };
    let monitor_retry = match m.opt_str("monitor-retry").map(|n| n.parse::<u32>()) {
        None => 3,
        Some(Ok(n)) => n,
        Some(Err(_)) => return Err(bad("Error! -monitor-retry must be a whole number".into())),
    };
    let opts = Opts {
        prefix,
        child,
        limit,
        timeout,
        shell,
        pass_stdin: m.opt_present("pass-stdin"),
        child_exit_code: m.opt_present("child-exit-code"),
        monitor_retry,
        name: m.opt_str("name"),
        verbose: m.opt_present("verbose"),
    };
    Ok((opts, client))
}

fn fail(message: &str) -> i32 {
    eprintln!("{message}");
    1
}

/// Acquires, runs the child, monitors, releases: the exit code.
fn hold_and_run(client: &Client, opts: &Opts, session: &str, flags: &Arc<Flags>) -> i32 {
    let mut machine = if opts.limit == 1 {
        Machine::Lock(Lock::new(&opts.prefix, session, Vec::new(), opts.monitor_retry))
    } else {
        Machine::Semaphore(Semaphore::new(&opts.prefix, session, Vec::new(), opts.limit, opts.monitor_retry))
    };
    let deadline = opts.timeout.map(|t| Instant::now() + t);
    if opts.verbose {
        eprintln!("Attempting lock acquisition");
    }
    let first = machine.acquire();
    let lock_index = match drive(client, &mut machine, first, deadline, flags) {
        Ok(Step::Held { lock_index }) => lock_index,
        Ok(Step::Failed(e)) => return fail(&format!("Lock acquisition failed: {e}")),
        Ok(other) => return fail(&format!("Lock acquisition failed: unexpected {other:?}")),
        Err(Stop::Timeout) => return fail("Lock acquisition failed: timed out waiting for the lock"),
        Err(Stop::Interrupted) => return fail("Shutdown triggered during lock acquisition"),
    };
    let held = match (&machine, lock_index) {
        (Machine::Lock(l), Some(i)) => format!("Lock acquired: {} (LockIndex {i})", l.key()),
        (_, _) => format!("Semaphore slot acquired: {}/ ({} holders at most)", opts.prefix, opts.limit),
    };
    eprintln!("{held}");

    let mut child = match start_child(opts, lock_index) {
        Ok(c) => c,
        Err(e) => {
            release(client, &mut machine, opts.verbose);
            return fail(&format!("Error running handler: {e}"));
        }
    };
    flags.child_pgid.store(child.id() as i32, Ordering::SeqCst);
    let monitor = spawn_monitor(client.clone(), machine.clone(), flags.clone());
    let status = wait_child(&mut child, flags);
    flags.child_pgid.store(0, Ordering::SeqCst);
    flags.done.store(true, Ordering::SeqCst);
    drop(monitor);

    if flags.lost.load(Ordering::SeqCst) {
        return fail("Lock lost, killed child");
    }
    release(client, &mut machine, opts.verbose);
    if flags.interrupted.load(Ordering::SeqCst) {
        return fail("Shutdown triggered, killed child");
    }
    match status {
        Ok(s) if !s.success() && opts.child_exit_code => {
            eprintln!("Child exited with {s}");
            2
        }
        Ok(_) => 0,
        Err(e) => fail(&format!("Error waiting for child: {e}")),
    }
}

fn release(client: &Client, machine: &mut Machine, verbose: bool) {
    let first = machine.release();
    // A release must not be cut short by a signal; it is quick.
    let calm = Flags::default();
    match drive(client, machine, first, Some(Instant::now() + Duration::from_secs(30)), &calm) {
        Ok(Step::Released) if verbose => eprintln!("Lock released"),
        Ok(Step::Released) => {}
        Ok(Step::Failed(e)) => eprintln!("Lock release failed: {e}"),
        other => eprintln!("Lock release failed: {other:?}"),
    }
}

#[derive(Debug)]
enum Stop {
    Timeout,
    Interrupted,
}

/// Runs the machine from `request` until it reaches an outcome, the deadline passes or a
/// signal arrives.
fn drive(
    client: &Client,
    machine: &mut Machine,
    mut request: Request,
    deadline: Option<Instant>,
    flags: &Flags,
) -> Result<Step, Stop> {
    loop {
        if flags.interrupted.load(Ordering::SeqCst) {
            return Err(Stop::Interrupted);
        }
        let remaining = match deadline {
            Some(d) => match d.checked_duration_since(Instant::now()) {
                Some(r) if !r.is_zero() => Some(r),
                _ => return Err(Stop::Timeout),
            },
            None => None,
        };
        let reply = match &request {
            Request::Sleep { ms } => {
                let mut left = Duration::from_millis(*ms).min(remaining.unwrap_or(Duration::MAX));
                while !left.is_zero() {
                    if flags.interrupted.load(Ordering::SeqCst) {
                        return Err(Stop::Interrupted);
                    }
                    let step = left.min(TICK);
                    std::thread::sleep(step);
                    left -= step;
                }
                Reply::Slept
            }
            other => execute(client, other, remaining),
        };
        match machine.handle(reply) {
            Step::Send(next) => request = next,
            outcome => return Ok(outcome),
        }
    }
}

/// Sends one request over HTTP. Blocking reads wait at most `remaining`.
fn execute(client: &Client, request: &Request, remaining: Option<Duration>) -> Reply {
    let blocking = |index: u64, wait_ms: u64, consistent: bool| {
        let mut q: Vec<(&str, String)> = Vec::new();
        if index > 0 {
            let wait = remaining.map_or(wait_ms, |r| (r.as_millis() as u64).clamp(1, wait_ms));
            q.push(("index", index.to_string()));
            q.push(("wait", format!("{wait}ms")));
        }
        if consistent {
            q.push(("consistent", String::new()));
        }
        q
    };
    let result = match request {
        Request::Get { key, index, wait_ms, consistent } => {
            let q = blocking(*index, *wait_ms, *consistent);
            client.get_indexed(&kv_path(key), &q).and_then(|a| {
                let entry = match a.body {
                    Some(Value::Array(entries)) => entries.first().map(pair).transpose()?,
                    _ => None,
                };
                Ok(Reply::Entry { entry, index: a.index })
            })
        }
        Request::List { prefix, index, wait_ms, consistent } => {
            let mut q = blocking(*index, *wait_ms, *consistent);
            q.push(("recurse", String::new()));
            client.get_indexed(&kv_path(prefix), &q).and_then(|a| {
                let entries = match a.body {
                    Some(Value::Array(entries)) => entries.iter().map(pair).collect::<Result<Vec<_>, _>>()?,
                    _ => Vec::new(),
                };
                Ok(Reply::Entries { entries, index: a.index })
            })
        }
        Request::Acquire { key, value, flags, session } => {
            let q = [("acquire", session.clone()), ("flags", flags.to_string())];
            put_bool(client, &kv_path(key), &q, value)
        }
        Request::Release { key, value, flags, session } => {
            let q = [("release", session.clone()), ("flags", flags.to_string())];
            put_bool(client, &kv_path(key), &q, value)
        }
        Request::Cas { key, value, flags, modify_index } => {
            let q = [("cas", modify_index.to_string()), ("flags", flags.to_string())];
            put_bool(client, &kv_path(key), &q, value)
        }
        Request::Delete { key } => client.call("DELETE", &kv_path(key), &[], None).map(|_| Reply::Done(true)),
        Request::Sleep { .. } => Ok(Reply::Slept),
    };
    result.unwrap_or_else(|e| {
        let server = match &e {
            CallError::Status(code, _) => *code >= 500,
            CallError::Transport(_) => true,
        };
        Reply::Error { message: e.to_string(), server }
    })
}

fn put_bool(client: &Client, path: &str, query: &[(&str, String)], value: &[u8]) -> Result<Reply, CallError> {
    let body = client.call("PUT", path, query, Some(value))?.unwrap_or_default();
    Ok(Reply::Done(String::from_utf8_lossy(&body).trim() == "true"))
}

/// A KV entry of the HTTP API as the lock protocol sees it.
fn pair(v: &Value) -> Result<Pair, CallError> {
    use base64::Engine as _;
    let bad = |what: &str| CallError::Transport(format!("bad KV entry from agent ({what}): {v}"));
    let value = match v.get("Value") {
        Some(Value::String(s)) => {
            base64::engine::general_purpose::STANDARD.decode(s).map_err(|_| bad("Value is not base64"))?
        }
        _ => Vec::new(),
    };
    Ok(Pair {
        key: v.get("Key").and_then(Value::as_str).ok_or_else(|| bad("no Key"))?.to_string(),
        value,
        flags: v.get("Flags").and_then(Value::as_u64).unwrap_or(0),
        session: v.get("Session").and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string),
        lock_index: v.get("LockIndex").and_then(Value::as_u64).unwrap_or(0),
        modify_index: v.get("ModifyIndex").and_then(Value::as_u64).unwrap_or(0),
    })
}

/// Creates the session, retrying server errors for a while: a freshly started agent's node
/// is not in the catalog (with its `serfHealth` check) until the leader reconciles it.
fn create_session_retrying(client: &Client, opts: &Opts) -> Result<String, CallError> {
    let mut attempts = 0;
    loop {
        match create_session(client, opts) {
            Err(CallError::Status(code, body)) if code >= 500 && attempts < SESSION_RETRIES => {
                attempts += 1;
                if opts.verbose {
                    eprintln!("Session creation failed ({code}: {}); retrying", body.trim());
                }
                std::thread::sleep(Duration::from_secs(1));
            }
            other => return other,
        }
    }
}

fn create_session(client: &Client, opts: &Opts) -> Result<String, CallError> {
    let name =
        opts.name.clone().unwrap_or_else(|| format!("Consul lock for '{}' at '{}'", opts.child.join(" "), opts.prefix));
    let behavior = if opts.limit == 1 { "release" } else { "delete" };
    let body = json!({"Name": name, "TTL": format!("{}s", lock::SESSION_TTL_S), "Behavior": behavior});
    let reply = client.call("PUT", "/v1/session/create", &[], Some(body.to_string().as_bytes()))?;
    let v: Value = serde_json::from_slice(&reply.unwrap_or_default())
        .map_err(|e| CallError::Transport(format!("bad JSON from agent: {e}")))?;
    v.get("ID")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| CallError::Transport(format!("no session ID in {v}")))
}

/// Renews the session every TTL/2 until told to stop. A session the servers no longer know
/// cannot be renewed: the monitor sees the lock go and acts.
fn spawn_renewer(client: Client, session: String, flags: Arc<Flags>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let period = Duration::from_secs(lock::SESSION_TTL_S) / 2;
        let mut next = Instant::now() + period;
        while !flags.done.load(Ordering::SeqCst) {
            if Instant::now() < next {
                std::thread::sleep(TICK);
                continue;
            }
            match client.call("PUT", &format!("/v1/session/renew/{session}"), &[], None) {
                Ok(Some(_)) => next = Instant::now() + period,
                Ok(None) => {
                    eprintln!("Session {session} is gone; the lock will be lost");
                    return;
                }
                // Retry soon: the TTL leaves room for a few failures.
                Err(e) => {
                    eprintln!("Error renewing session {session}: {e}");
                    next = Instant::now() + Duration::from_secs(1);
                }
            }
        }
    })
}

/// Watches the held lock; on loss, marks it lost and stops the child.
fn spawn_monitor(client: Client, mut machine: Machine, flags: Arc<Flags>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let first = machine.monitor();
        // The monitor is not cut short by signals: the main thread handles those.
        let calm = Flags::default();
        let outcome = drive(&client, &mut machine, first, None, &calm);
        if flags.done.load(Ordering::SeqCst) {
            return;
        }
        if matches!(outcome, Ok(Step::Lost) | Ok(Step::Failed(_))) {
            flags.lost.store(true, Ordering::SeqCst);
            eprintln!("Lock lost, killing child");
            terminate(&flags);
        }
    })
}

fn start_child(opts: &Opts, lock_index: Option<u64>) -> std::io::Result<Child> {
    let mut cmd = if opts.shell {
        let mut c = Command::new("/bin/sh");
        c.arg("-c").arg(opts.child.join(" "));
        c
    } else {
        let mut c = Command::new(&opts.child[0]);
        c.args(&opts.child[1..]);
        c
    };
    cmd.env("CONSUL_LOCK_HELD", "true");
    if let Some(i) = lock_index {
        cmd.env("LEGATE_LOCK_INDEX", i.to_string());
    }
    cmd.stdin(if opts.pass_stdin { Stdio::inherit() } else { Stdio::null() });
    // Its own process group, so that stopping it stops what a shell started too.
    cmd.process_group(0);
    cmd.spawn()
}

/// Waits for the child; on a signal to `legate lock`, stops it first (SIGTERM, then SIGKILL
/// after the grace period).
fn wait_child(child: &mut Child, flags: &Flags) -> std::io::Result<std::process::ExitStatus> {
    let pgid = child.id() as i32;
    let mut term_sent: Option<Instant> = None;
    let mut killed = false;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if term_sent.is_none() && flags.interrupted.load(Ordering::SeqCst) {
            eprintln!("Shutdown triggered, killing child");
            signal_group(pgid, libc::SIGTERM);
            term_sent = Some(Instant::now());
        }
        if !killed && term_sent.is_some_and(|t| t.elapsed() >= KILL_GRACE) {
            signal_group(pgid, libc::SIGKILL);
            killed = true;
        }
        std::thread::sleep(TICK);
    }
}

fn signal_group(pgid: i32, signal: i32) {
    if pgid > 0 {
        // SAFETY: kill(2) with a negative pid signals a process group; no memory is involved.
        unsafe { libc::kill(-pgid, signal) };
    }
}

/// SIGTERM to the child's process group, SIGKILL after the grace period if it still runs
/// (the main thread, waiting for the child, clears `child_pgid` when it exits).
fn terminate(flags: &Flags) {
    let pgid = flags.child_pgid.load(Ordering::SeqCst);
    signal_group(pgid, libc::SIGTERM);
    let until = Instant::now() + KILL_GRACE;
    while Instant::now() < until {
        if flags.child_pgid.load(Ordering::SeqCst) != pgid {
            return;
        }
        std::thread::sleep(TICK);
    }
    if flags.child_pgid.load(Ordering::SeqCst) == pgid {
        signal_group(pgid, libc::SIGKILL);
    }
}

/// SIGINT and SIGTERM set `interrupted` (the waiting loops act on it).
fn watch_signals(flags: Arc<Flags>) {
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
        rt.block_on(async move {
            use tokio::signal::unix::{signal, SignalKind};
            let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
                return;
            };
            tokio::select! {
                biased;
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            flags.interrupted.store(true, Ordering::SeqCst);
        });
    });
}
