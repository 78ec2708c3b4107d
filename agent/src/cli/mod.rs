//! The command line: `legate agent`, and the client commands that talk to an agent's HTTP
//! API (`kv`, `catalog`, `members`). Flags follow Consul's (and Go's flag package): single
//! dash, `-flag value` or `-flag=value`, and flags end at the first positional argument.

pub mod blocking;
mod catalog;
mod client;
mod event;
mod keyring;
mod kv;
mod lock;
mod maint;
mod members;
mod operator;
mod snapshot;
mod template;
pub mod watch;

use getopts::{Matches, Options, ParsingStyle};

pub use client::{CallError, Client, Indexed};

/// The top-level usage text.
pub const USAGE: &str = "Usage: legate [--version] [--help] <command> [<args>]

Available commands are:
    agent       Runs a Legate agent
    catalog     Interact with the catalog (services, nodes)
    event       Fires a user event to the agents of the datacenter
    force-leave Marks a failed member as having left the cluster
    join        Tells the agent to join a cluster through another agent
    keygen      Generates a new gossip encryption key
    keyring     Manages gossip encryption keys on every member
    kv          Interact with the key-value store (get, put, delete)
    leave       Gracefully leaves the cluster and shuts the agent down
    lock        Runs a command while holding a lock (or one of N semaphore slots)
    maint       Puts a node or service into maintenance mode (or lists what is)
    members     Lists the members of the cluster
    operator    Cluster operator tools (raft list-peers, raft remove-peer)
    reload      Makes the agent read its config files again (services and checks)
    snapshot    Saves, restores and inspects snapshots of the cluster's state
    template    Renders templates from Legate data, re-rendering on change
    version     Prints the Legate version
    watch       Watches a view of the data and runs a handler on each change
";

/// Runs a CLI command; returns the process exit code.
pub fn run(args: &[String]) -> i32 {
    let Some(command) = args.first() else {
        eprint!("{USAGE}");
        return 1;
    };
    let rest = &args[1..];
    match command.as_str() {
        "kv" => kv::run(rest),
        "lock" => lock::run(rest),
        "catalog" => catalog::run(rest),
        "members" => members::run(rest),
        "event" => event::run(rest),
        "join" => members::run_join(rest),
        "force-leave" => members::run_force_leave(rest),
        "keygen" => keyring::run_keygen(rest),
        "keyring" => keyring::run(rest),
        "operator" => operator::run_operator(rest),
        "leave" => operator::run_leave(rest),
        "reload" => maint::run_reload(rest),
        "maint" => maint::run_maint(rest),
        "snapshot" => snapshot::run(rest),
        "template" => template::run(rest),
        "watch" => watch::run(rest),
        "version" | "-v" | "-version" | "--version" => {
            println!("Legate v{}", crate::VERSION);
            println!("Speaks the Consul v{} API", crate::CONSUL_API_VERSION);
            0
        }
        "help" | "-h" | "-help" | "--help" => {
            print!("{USAGE}");
            0
        }
        other => {
            eprintln!("Unknown command: {other:?}\n\n{USAGE}");
            1
        }
    }
}

/// Options of a client command, with the HTTP flags every client command takes.
pub(crate) fn client_options() -> Options {
    let mut o = Options::new();
    o.long_only(true).parsing_style(ParsingStyle::StopAtFirstFree);
    o.optopt(
        "",
        "http-addr",
        "Address of the agent's HTTP API (env CONSUL_HTTP_ADDR; default 127.0.0.1:8500).",
        "ADDR",
    );
    o.optopt("", "token", "ACL token (env CONSUL_HTTP_TOKEN); accepted, unused.", "TOKEN");
    o.optopt("", "datacenter", "Datacenter to query (default: the agent's).", "DC");
    o.optflag("", "stale", "Allow any server to answer reads.");
    o.optflag("h", "help", "Show this help.");
    o
}

/// Parses a client command's flags; prints usage and returns the exit code on error or help.
pub(crate) fn parse(options: &Options, args: &[String], usage: &str) -> Result<(Matches, Client), i32> {
    let m = match options.parse(args) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("{e}\n\n{}", options.usage(usage));
            return Err(1);
        }
    };
    if m.opt_present("help") {
        print!("{}", options.usage(usage));
        return Err(0);
    }
    let client =
        Client::from_flags(m.opt_str("http-addr"), m.opt_str("token"), m.opt_str("datacenter"), m.opt_present("stale"));
    Ok((m, client))
}

/// Formats rows as left-aligned columns separated by two spaces (Consul's `columnize`).
pub(crate) fn columns(rows: &[Vec<String>]) -> String {
    let width = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0; width];
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}
