//! `legate catalog services|nodes`.

use serde_json::Value;

use super::{client_options, columns, parse};

pub fn run(args: &[String]) -> i32 {
    match args.first().map(String::as_str) {
        Some("services") => services(&args[1..]),
        Some("nodes") => nodes(&args[1..]),
        Some("datacenters") => datacenters(&args[1..]),
        _ => {
            eprintln!("Usage: legate catalog <subcommand> [options]\n\n  datacenters  List datacenters\n  nodes        List nodes\n  services     List services");
            1
        }
    }
}

fn datacenters(args: &[String]) -> i32 {
    let (_, client) = match parse(&client_options(), args, "Usage: legate catalog datacenters [options]") {
        Ok(v) => v,
        Err(code) => return code,
    };
    match client.get_json("/v1/catalog/datacenters", &[]) {
        Ok(Some(Value::Array(dcs))) => {
            for dc in dcs {
                println!("{}", dc.as_str().unwrap_or_default());
            }
            0
        }
        Ok(_) => 0,
        Err(e) => fail(&format!("Error listing datacenters: {e}")),
    }
}

fn services(args: &[String]) -> i32 {
    let mut o = client_options();
    o.optflag("", "tags", "Show each service's tags.");
    o.optopt("", "node", "List the services of this node only.", "NAME");
    let (m, client) = match parse(&o, args, "Usage: legate catalog services [options]") {
        Ok(v) => v,
        Err(code) => return code,
    };
    let mut list: Vec<(String, Vec<String>)> = Vec::new();
    if let Some(node) = m.opt_str("node") {
        match client.get_json(&format!("/v1/catalog/node/{node}"), &[]) {
            Ok(Some(Value::Object(obj))) => {
                if let Some(Value::Object(services)) = obj.get("Services") {
                    for s in services.values() {
                        let tags = s["Tags"]
                            .as_array()
                            .map(|t| t.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
                            .unwrap_or_default();
                        list.push((s["Service"].as_str().unwrap_or_default().to_string(), tags));
                    }
                }
            }
            Ok(_) => return fail(&format!("No node with name {node:?} in the catalog")),
            Err(e) => return fail(&format!("Error listing services for node: {e}")),
        }
    } else {
        match client.get_json("/v1/catalog/services", &[]) {
            Ok(Some(Value::Object(services))) => {
                for (name, tags) in services {
                    let tags = tags
                        .as_array()
                        .map(|t| t.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
                        .unwrap_or_default();
                    list.push((name, tags));
                }
            }
            Ok(_) => {}
            Err(e) => return fail(&format!("Error listing services: {e}")),
        }
    }
    list.sort();
    list.dedup_by(|a, b| a.0 == b.0);
    if m.opt_present("tags") {
        let rows: Vec<Vec<String>> = list.into_iter().map(|(n, t)| vec![n, t.join(",")]).collect();
        print!("{}", columns(&rows));
    } else {
        for (name, _) in list {
            println!("{name}");
        }
    }
    0
}

fn nodes(args: &[String]) -> i32 {
    let mut o = client_options();
    o.optflag("", "detailed", "Show tagged addresses and meta.");
    o.optopt("", "service", "List only nodes that provide this service.", "NAME");
    let (m, client) = match parse(&o, args, "Usage: legate catalog nodes [options]") {
        Ok(v) => v,
        Err(code) => return code,
    };
    let nodes: Vec<Value> = match m.opt_str("service") {
        Some(svc) => match client.get_json(&format!("/v1/catalog/service/{svc}"), &[]) {
            Ok(Some(Value::Array(entries))) => {
                let mut seen = std::collections::BTreeSet::new();
                entries
                    .into_iter()
                    .filter(|e| seen.insert(e["Node"].as_str().unwrap_or_default().to_string()))
                    .map(|e| {
                        serde_json::json!({"Node": e["Node"], "ID": e["ID"], "Address": e["Address"], "Datacenter": e["Datacenter"],
                            "TaggedAddresses": e["TaggedAddresses"], "Meta": e["NodeMeta"]})
                    })
                    .collect()
            }
            Ok(_) => Vec::new(),
            Err(e) => return fail(&format!("Error listing nodes: {e}")),
        },
        None => match client.get_json("/v1/catalog/nodes", &[]) {
            Ok(Some(Value::Array(n))) => n,
            Ok(_) => Vec::new(),
            Err(e) => return fail(&format!("Error listing nodes: {e}")),
        },
    };
    if nodes.is_empty() {
        return 0;
    }
    let detailed = m.opt_present("detailed");
    let mut rows = vec![if detailed {
        vec!["Node", "ID", "Address", "DC", "TaggedAddresses", "Meta"]
    } else {
        vec!["Node", "ID", "Address", "DC"]
    }
    .into_iter()
    .map(str::to_string)
    .collect::<Vec<_>>()];
    for n in nodes {
        let id = n["ID"].as_str().unwrap_or_default();
        let id = if detailed { id.to_string() } else { id.chars().take(8).collect() };
        let mut row = vec![
            n["Node"].as_str().unwrap_or_default().to_string(),
            id,
            n["Address"].as_str().unwrap_or_default().to_string(),
            n["Datacenter"].as_str().unwrap_or_default().to_string(),
        ];
        if detailed {
            row.push(pairs(&n["TaggedAddresses"]));
            row.push(pairs(&n["Meta"]));
        }
        rows.push(row);
    }
    print!("{}", columns(&rows));
    0
}

fn pairs(v: &Value) -> String {
    v.as_object()
        .map(|o| {
            o.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default())).collect::<Vec<_>>().join(", ")
        })
        .unwrap_or_default()
}

fn fail(message: &str) -> i32 {
    eprintln!("{message}");
    1
}
