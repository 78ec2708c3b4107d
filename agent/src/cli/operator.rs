//! `legate operator raft list-peers | remove-peer` and `legate leave`.

use super::{client_options, columns, parse};

const OPERATOR_USAGE: &str = "Usage: legate operator raft <subcommand> [options]

Subcommands:
    list-peers     Display the current Raft peer configuration
    remove-peer    Remove a server from the Raft configuration (-id=ID or -address=IP:port)
";

pub fn run_operator(args: &[String]) -> i32 {
    match (args.first().map(String::as_str), args.get(1).map(String::as_str)) {
        (Some("raft"), Some("list-peers")) => list_peers(&args[2..]),
        (Some("raft"), Some("remove-peer")) => remove_peer(&args[2..]),
        (Some("-h" | "-help" | "--help"), _) | (Some("raft"), Some("-h" | "-help" | "--help")) => {
            print!("{OPERATOR_USAGE}");
            0
        }
        _ => {
            eprint!("{OPERATOR_USAGE}");
            1
        }
    }
}

fn list_peers(args: &[String]) -> i32 {
    let (_, client) = match parse(&client_options(), args, "Usage: legate operator raft list-peers [options]") {
        Ok(v) => v,
        Err(code) => return code,
    };
    let config = match client.get_json("/v1/operator/raft/configuration", &[]) {
        Ok(Some(v)) => v,
        Ok(None) => {
            eprintln!("Error getting peers: the agent has no Raft configuration endpoint");
            return 1;
        }
        Err(e) => {
            eprintln!("Error getting peers: {e}");
            return 1;
        }
    };
    let mut rows: Vec<Vec<String>> =
        vec![["Node", "ID", "Address", "State", "Voter", "RaftProtocol"].iter().map(|s| s.to_string()).collect()];
    for s in config["Servers"].as_array().cloned().unwrap_or_default() {
        let text = |k: &str| s[k].as_str().unwrap_or_default().to_string();
        let state = if s["Leader"].as_bool() == Some(true) { "leader" } else { "follower" };
        let voter = s["Voter"].as_bool().unwrap_or(false).to_string();
        rows.push(vec![text("Node"), text("ID"), text("Address"), state.into(), voter, text("ProtocolVersion")]);
    }
    print!("{}", columns(&rows));
    0
}

fn remove_peer(args: &[String]) -> i32 {
    let mut o = client_options();
    o.optopt("", "id", "The Raft ID (or node ID) of the server to remove.", "ID");
    o.optopt("", "address", "The IP:port of the server to remove.", "ADDR");
    let (m, client) = match parse(&o, args, "Usage: legate operator raft remove-peer [options]") {
        Ok(v) => v,
        Err(code) => return code,
    };
    let query: Vec<(&str, String)> = match (m.opt_str("id"), m.opt_str("address")) {
        (Some(id), None) => vec![("id", id)],
        (None, Some(addr)) => vec![("address", addr)],
        _ => {
            eprintln!("Error: exactly one of -id or -address is required");
            return 1;
        }
    };
    match client.call("DELETE", "/v1/operator/raft/peer", &query, None) {
        Ok(Some(_)) => {
            let (what, value) = &query[0];
            println!("Removed peer with {what} {value:?}");
            0
        }
        Ok(None) => {
            eprintln!("Error removing peer: not found in the Raft configuration");
            1
        }
        Err(e) => {
            eprintln!("Error removing peer: {e}");
            1
        }
    }
}

/// `legate leave`: the agent leaves gracefully and shuts down.
pub fn run_leave(args: &[String]) -> i32 {
    let (_, client) = match parse(&client_options(), args, "Usage: legate leave [options]") {
        Ok(v) => v,
        Err(code) => return code,
    };
    match client.call("PUT", "/v1/agent/leave", &[], None) {
        Ok(_) => {
            println!("Graceful leave complete");
            0
        }
        Err(e) => {
            eprintln!("Error leaving: {e}");
            1
        }
    }
}
