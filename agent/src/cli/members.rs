//! `legate members`, `legate join` and `legate force-leave`: the gossip pools.

use serde_json::Value;

use super::{client_options, columns, parse};

pub fn run(args: &[String]) -> i32 {
    let mut o = client_options();
    o.optflag("", "detailed", "Show every member tag.");
    o.optflag("", "wan", "List the WAN (server) pool.");
    let (m, client) = match parse(&o, args, "Usage: legate members [options]") {
        Ok(v) => v,
        Err(code) => return code,
    };
    let query: Vec<(&str, String)> = if m.opt_present("wan") { vec![("wan", "1".into())] } else { vec![] };
    let members = match client.get_json("/v1/agent/members", &query) {
        Ok(Some(Value::Array(m))) => m,
        Ok(_) => Vec::new(),
        Err(e) => {
            eprintln!("Error retrieving members: {e}");
            return 1;
        }
    };
    let detailed = m.opt_present("detailed");
    let mut rows = vec![if detailed {
        vec!["Node", "Address", "Status", "Tags"]
    } else {
        vec!["Node", "Address", "Status", "Type", "Build", "Protocol", "DC", "Partition", "Segment"]
    }
    .into_iter()
    .map(str::to_string)
    .collect::<Vec<_>>()];
    for member in members {
        let status = match member["Status"].as_u64() {
            Some(1) => "alive",
            Some(2) => "leaving",
            Some(3) => "left",
            Some(4) => "failed",
            _ => "none",
        };
        let addr = format!("{}:{}", member["Addr"].as_str().unwrap_or_default(), member["Port"]);
        let tags = member["Tags"].as_object().cloned().unwrap_or_default();
        let tag = |k: &str| tags.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
        let name = member["Name"].as_str().unwrap_or_default().to_string();
        if detailed {
            let all = tags
                .iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(",");
            rows.push(vec![name, addr, status.into(), all]);
        } else {
            let kind = if tag("role") == "consul" { "server" } else { "client" };
            let build = tag("build").split(':').next().unwrap_or_default().to_string();
            rows.push(vec![
                name,
                addr,
                status.into(),
                kind.into(),
                build,
                tag("vsn"),
                tag("dc"),
                "default".into(),
                "<all>".into(),
            ]);
        }
    }
    print!("{}", columns(&rows));
    0
}

/// `legate join [-wan] address...`: asks the agent to join a pool through these agents.
pub fn run_join(args: &[String]) -> i32 {
    let mut o = client_options();
    o.optflag("", "wan", "Join the WAN pool (servers of other datacenters).");
    let (m, client) = match parse(&o, args, "Usage: legate join [options] address ...") {
        Ok(v) => v,
        Err(code) => return code,
    };
    if m.free.is_empty() {
        eprintln!("At least one address to join must be specified.");
        return 1;
    }
    let query: Vec<(&str, String)> = if m.opt_present("wan") { vec![("wan", "1".into())] } else { vec![] };
    let mut joined = 0;
    for addr in &m.free {
        match client.call("PUT", &format!("/v1/agent/join/{addr}"), &query, None) {
            Ok(_) => joined += 1,
            Err(e) => eprintln!("Error joining address '{addr}': {e}"),
        }
    }
    if joined == 0 {
        eprintln!("Failed to join any nodes.");
        return 1;
    }
    println!("Successfully joined cluster by contacting {joined} nodes.");
    0
}

/// `legate force-leave [-wan] node`: a failed member is marked as having left.
pub fn run_force_leave(args: &[String]) -> i32 {
    let mut o = client_options();
    o.optflag("", "wan", "The member is in the WAN pool.");
    o.optflag("", "prune", "Accepted for Consul compatibility (members are reaped on their own).");
    let (m, client) = match parse(&o, args, "Usage: legate force-leave [options] name") {
        Ok(v) => v,
        Err(code) => return code,
    };
    let [node] = m.free.as_slice() else {
        eprintln!("A single node name must be specified to force leave.");
        return 1;
    };
    let query: Vec<(&str, String)> = if m.opt_present("wan") { vec![("wan", "1".into())] } else { vec![] };
    match client.call("PUT", &format!("/v1/agent/force-leave/{node}"), &query, None) {
        Ok(_) => 0,
        Err(e) => {
            eprintln!("Error force leaving: {e}");
            1
        }
    }
}
