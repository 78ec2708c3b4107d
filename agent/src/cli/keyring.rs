//! `legate keygen` and `legate keyring`: gossip encryption keys.

use serde_json::Value;

use super::{client_options, parse};

/// `legate keygen`: a new random 32-byte key for `encrypt`.
pub fn run_keygen(args: &[String]) -> i32 {
    if !args.is_empty() {
        eprintln!("Usage: legate keygen (takes no arguments)");
        return 1;
    }
    match legate_runtime::gossip::keyring::generate_key() {
        Ok(key) => {
            println!("{key}");
            0
        }
        Err(e) => {
            eprintln!("Error generating a key: {e}");
            1
        }
    }
}

const USAGE: &str = "Usage: legate keyring [options]

  Lists, installs, makes primary (-use) or removes gossip encryption keys on every member of
  the agent's pools (LAN, and WAN when run on a server). Rotate a key with -install, then
  -use, then -remove of the old one. Exactly one operation per run.";

/// `legate keyring -list | -install KEY | -use KEY | -remove KEY`.
pub fn run(args: &[String]) -> i32 {
    let mut o = client_options();
    o.optflag("", "list", "List the keys in use and how many members hold each.");
    o.optopt("", "install", "Install a new key on every member.", "KEY");
    o.optopt("", "use", "Make an installed key the primary everywhere.", "KEY");
    o.optopt("", "remove", "Remove a key from every member.", "KEY");
    let (m, client) = match parse(&o, args, USAGE) {
        Ok(v) => v,
        Err(code) => return code,
    };
    let ops: Vec<(&str, Option<String>)> =
        [("list", None), ("install", m.opt_str("install")), ("use", m.opt_str("use")), ("remove", m.opt_str("remove"))]
            .into_iter()
            .filter(|(name, key)| key.is_some() || (*name == "list" && m.opt_present("list")))
            .collect();
    let [(op, key)] = ops.as_slice() else {
        eprintln!("Exactly one of -list, -install, -use, or -remove must be provided\n\n{USAGE}");
        return 1;
    };
    let Some(key) = key else { return list(&client) };
    let (method, doing) = match *op {
        "install" => ("POST", "Installing new gossip encryption key..."),
        "use" => ("PUT", "Changing primary gossip encryption key..."),
        _ => ("DELETE", "Removing gossip encryption key..."),
    };
    println!("==> {doing}");
    let body = serde_json::json!({ "Key": key }).to_string();
    match client.call(method, "/v1/operator/keyring", &[], Some(body.as_bytes())) {
        Ok(_) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

fn list(client: &super::Client) -> i32 {
    println!("==> Gathering installed encryption keys...");
    let pools = match client.get_json("/v1/operator/keyring", &[]) {
        Ok(Some(Value::Array(p))) => p,
        Ok(_) => Vec::new(),
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    for pool in pools {
        let total = pool["NumNodes"].as_u64().unwrap_or(0);
        println!();
        if pool["WAN"].as_bool() == Some(true) {
            println!("WAN:");
        } else {
            println!("{} (LAN):", pool["Datacenter"].as_str().unwrap_or_default());
        }
        for (key, count) in pool["Keys"].as_object().into_iter().flatten() {
            println!("  {key} [{}/{total}]", count.as_u64().unwrap_or(0));
        }
        for (node, message) in pool["Messages"].as_object().into_iter().flatten() {
            println!("  {node}: {}", message.as_str().unwrap_or_default());
        }
    }
    0
}
