//! `legate reload` and `legate maint`: the agent's config reload and maintenance mode.

use super::{client_options, parse};

/// `legate reload`: the agent reads its config files again.
pub fn run_reload(args: &[String]) -> i32 {
    let (_, client) = match parse(&client_options(), args, "Usage: legate reload [options]") {
        Ok(v) => v,
        Err(code) => return code,
    };
    match client.call("PUT", "/v1/agent/reload", &[], None) {
        Ok(_) => {
            println!("Configuration reload triggered");
            0
        }
        Err(e) => {
            eprintln!("Error reloading: {e}");
            1
        }
    }
}

const MAINT_USAGE: &str = "Usage: legate maint [options]

  Places a node or service into maintenance mode, which takes it out of DNS and ?passing
  answers. Without -enable or -disable, lists what is in maintenance on the agent.";

/// `legate maint [-enable|-disable] [-reason R] [-service ID]`.
pub fn run_maint(args: &[String]) -> i32 {
    let mut o = client_options();
    o.optflag("", "enable", "Enable maintenance mode.");
    o.optflag("", "disable", "Disable maintenance mode.");
    o.optopt("", "reason", "Why (shown in the maintenance check's notes).", "TEXT");
    o.optopt("", "service", "A service ID to put in maintenance instead of the whole node.", "ID");
    let (m, client) = match parse(&o, args, MAINT_USAGE) {
        Ok(v) => v,
        Err(code) => return code,
    };
    let (enable, disable) = (m.opt_present("enable"), m.opt_present("disable"));
    if enable && disable {
        eprintln!("Only one of -enable or -disable may be provided");
        return 1;
    }
    if !enable && !disable {
        if m.opt_present("reason") || m.opt_present("service") {
            eprintln!("Error: -reason and -service need -enable or -disable");
            return 1;
        }
        return list(&client);
    }
    let mut query = vec![("enable", enable.to_string())];
    if let Some(reason) = m.opt_str("reason") {
        query.push(("reason", reason));
    }
    let state = if enable { "enabled" } else { "disabled" };
    let (path, done) = match m.opt_str("service") {
        Some(id) => {
            (format!("/v1/agent/service/maintenance/{id}"), format!("Service maintenance is now {state} for {id:?}"))
        }
        None => ("/v1/agent/maintenance".to_string(), format!("Node maintenance is now {state}")),
    };
    match client.call("PUT", &path, &query, None) {
        Ok(Some(_)) => {
            println!("{done}");
            0
        }
        Ok(None) => {
            eprintln!("Error: no such service: {}", m.opt_str("service").unwrap_or_default());
            1
        }
        Err(e) => {
            eprintln!("Error: {e}");
            1
        }
    }
}

fn list(client: &super::Client) -> i32 {
    let checks = match client.get_json("/v1/agent/checks", &[]) {
        Ok(Some(v)) => v,
        Ok(None) => return 0,
        Err(e) => {
            eprintln!("Error: {e}");
            return 1;
        }
    };
    let Some(map) = checks.as_object() else { return 0 };
    for (id, check) in map {
        let text = |k: &str| check[k].as_str().unwrap_or_default().to_string();
        if id == legate_core::agent::NODE_MAINTENANCE_CHECK {
            println!("Node:\n  Name:   {}\n  Reason: {}", text("Node"), text("Notes"));
        } else if let Some(service) = id.strip_prefix(legate_core::agent::SERVICE_MAINTENANCE_PREFIX) {
            println!("Service:\n  ID:     {service}\n  Reason: {}", text("Notes"));
        }
    }
    0
}
