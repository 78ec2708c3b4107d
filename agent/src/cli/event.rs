//! `legate event -name NAME [-node RE] [-service RE] [-tag RE] [payload]`: fires a user event
//! through the agent (Consul's `consul event`).

use super::{client_options, parse};

const USAGE: &str = "Usage: legate event [options] [payload]

  Dispatches a custom user event across the datacenter. An event has a name and an
  optional payload of up to 512 bytes (name, payload and filters together). Filters are
  regular expressions: only agents whose node name, or a local service (and its tags),
  matches keep the event.";

pub fn run(args: &[String]) -> i32 {
    let mut o = client_options();
    o.optopt("", "name", "Name of the event (required).", "NAME");
    o.optopt("", "node", "Regular expression to filter on node names.", "RE");
    o.optopt("", "service", "Regular expression to filter on service names.", "RE");
    o.optopt("", "tag", "Regular expression to filter on service tags. Must be used with -service.", "RE");
    let (m, client) = match parse(&o, args, USAGE) {
        Ok(v) => v,
        Err(code) => return code,
    };
    let name = m.opt_str("name").unwrap_or_default();
    if name.is_empty() {
        eprintln!("Event name must be specified");
        return 1;
    }
    let (service, tag) = (m.opt_str("service").unwrap_or_default(), m.opt_str("tag").unwrap_or_default());
    if !tag.is_empty() && service.is_empty() {
        eprintln!("Cannot provide tag filter without service filter.");
        return 1;
    }
    if m.free.len() > 1 {
        eprintln!("Too many command line arguments.");
        return 1;
    }
    let payload = m.free.first().map(|p| p.as_bytes().to_vec()).unwrap_or_default();
    let mut query: Vec<(&str, String)> = Vec::new();
    for (key, value) in [("node", m.opt_str("node").unwrap_or_default()), ("service", service), ("tag", tag)] {
        if !value.is_empty() {
            query.push((key, value));
        }
    }
    let path = format!("/v1/event/fire/{}", encode_segment(&name));
    let body = match client.call("PUT", &path, &query, Some(&payload)) {
        Ok(Some(body)) => body,
        Ok(None) => {
            eprintln!("Error firing event: the agent does not know /v1/event/fire");
            return 1;
        }
        Err(e) => {
            eprintln!("Error firing event: {e}");
            return 1;
        }
    };
    match serde_json::from_slice::<serde_json::Value>(&body).ok().and_then(|v| v["ID"].as_str().map(str::to_string)) {
        Some(id) => {
            println!("Event ID: {id}");
            0
        }
        None => {
            eprintln!("Error firing event: the agent's answer has no event ID");
            1
        }
    }
}

/// Percent-encodes an event name for one path segment.
fn encode_segment(name: &str) -> String {
    form_urlencoded::byte_serialize(name.as_bytes()).collect::<String>().replace('+', "%20")
}
