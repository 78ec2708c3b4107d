//! `legate kv get|put|delete`, with `consul kv`'s flags and messages.

use std::io::Read as _;

use base64::Engine as _;
use serde_json::Value;

use super::{client_options, parse};

pub fn run(args: &[String]) -> i32 {
    match args.first().map(String::as_str) {
        Some("get") => get(&args[1..]),
        Some("put") => put(&args[1..]),
        Some("delete") => delete(&args[1..]),
        _ => {
            eprintln!("Usage: legate kv <subcommand> [options] [args]\n\n  get     Retrieve or list data\n  put     Set data\n  delete  Remove data");
            1
        }
    }
}

pub(super) fn kv_path(key: &str) -> String {
    format!("/v1/kv/{}", key.trim_start_matches('/'))
}

fn one_key(free: &[String], usage: &str) -> Result<String, i32> {
    match free {
        [key] => Ok(key.clone()),
        [] => Ok(String::new()),
        _ => {
            eprintln!("Too many arguments (expected 1, got {})\n\n{usage}", free.len());
            Err(1)
        }
    }
}

fn get(args: &[String]) -> i32 {
    let usage = "Usage: legate kv get [options] [KEY_OR_PREFIX]";
    let mut o = client_options();
    o.optflag("", "recurse", "Print every key under the prefix as key:value.");
    o.optflag("", "keys", "List keys under the prefix instead of values.");
    o.optopt("", "separator", "With -keys, list only up to this separator (default /).", "SEP");
    o.optflag("", "detailed", "Print all of the entry's fields.");
    o.optflag("", "base64", "Print values base64-encoded.");
    let (m, client) = match parse(&o, args, usage) {
        Ok(v) => v,
        Err(code) => return code,
    };
    let key = match one_key(&m.free, usage) {
        Ok(k) => k,
        Err(code) => return code,
    };
    let b64 = m.opt_present("base64");
    let show = |v: &Value| -> String {
        let raw = v.as_str().and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok()).unwrap_or_default();
        if b64 {
            base64::engine::general_purpose::STANDARD.encode(&raw)
        } else {
            String::from_utf8_lossy(&raw).into_owned()
        }
    };
    if m.opt_present("keys") {
        let sep = m.opt_str("separator").unwrap_or_else(|| "/".into());
        return match client.get_json(&kv_path(&key), &[("keys", String::new()), ("separator", sep)]) {
            Ok(Some(Value::Array(keys))) => {
                for k in keys {
                    println!("{}", k.as_str().unwrap_or_default());
                }
                0
            }
            Ok(_) => 0,
            Err(e) => fail(&format!("Error querying Legate agent: {e}")),
        };
    }
    if m.opt_present("recurse") {
        return match client.get_json(&kv_path(&key), &[("recurse", String::new())]) {
            Ok(Some(Value::Array(entries))) => {
                for (i, e) in entries.iter().enumerate() {
                    if m.opt_present("detailed") {
                        if i > 0 {
                            println!();
                        }
                        print_detailed(e, &show);
                    } else {
                        println!("{}:{}", e["Key"].as_str().unwrap_or_default(), show(&e["Value"]));
                    }
                }
                0
            }
            Ok(_) => 0,
            Err(e) => fail(&format!("Error querying Legate agent: {e}")),
        };
    }
    if key.is_empty() {
        return fail("Error! Missing KEY argument");
    }
    match client.get_json(&kv_path(&key), &[]) {
        Ok(Some(Value::Array(entries))) if !entries.is_empty() => {
            if m.opt_present("detailed") {
                print_detailed(&entries[0], &show);
            } else {
                println!("{}", show(&entries[0]["Value"]));
            }
            0
        }
        Ok(_) => fail(&format!("Error! No key exists at: {key}")),
        Err(e) => fail(&format!("Error querying Legate agent: {e}")),
    }
}

fn print_detailed(e: &Value, show: &dyn Fn(&Value) -> String) {
    let session = e.get("Session").and_then(Value::as_str).unwrap_or("-").to_string();
    let rows = vec![
        vec!["CreateIndex".to_string(), e["CreateIndex"].to_string()],
        vec!["Flags".to_string(), e["Flags"].to_string()],
        vec!["Key".to_string(), e["Key"].as_str().unwrap_or_default().to_string()],
        vec!["LockIndex".to_string(), e["LockIndex"].to_string()],
        vec!["ModifyIndex".to_string(), e["ModifyIndex"].to_string()],
        vec!["Session".to_string(), session],
        vec!["Value".to_string(), show(&e["Value"])],
    ];
    print!("{}", super::columns(&rows));
}

fn put(args: &[String]) -> i32 {
    let usage =
        "Usage: legate kv put [options] KEY [DATA]\n\n  DATA may be '-' to read stdin, or '@file' to read a file.";
    let mut o = client_options();
    o.optopt("", "flags", "Unsigned integer flags stored with the key.", "N");
    o.optflag("", "cas", "Check-and-set: write only if -modify-index matches (0: only if absent).");
    o.optopt("", "modify-index", "The ModifyIndex for -cas.", "N");
    o.optflag("", "acquire", "Acquire the key's lock with -session.");
    o.optflag("", "release", "Release the key's lock held by -session.");
    o.optopt("", "session", "Session for -acquire/-release.", "ID");
    o.optflag("", "base64", "DATA is base64-encoded.");
    let (m, client) = match parse(&o, args, usage) {
        Ok(v) => v,
        Err(code) => return code,
    };
    let (key, data) = match m.free.as_slice() {
        [key] => (key.clone(), Vec::new()),
        [key, data] => {
            let bytes = if data == "-" {
                let mut buf = Vec::new();
                if let Err(e) = std::io::stdin().read_to_end(&mut buf) {
                    return fail(&format!("Failed to read stdin: {e}"));
                }
                buf
            } else if let Some(path) = data.strip_prefix('@') {
                match std::fs::read(path) {
                    Ok(b) => b,
                    Err(e) => return fail(&format!("Failed to read file {path:?}: {e}")),
                }
            } else {
                data.clone().into_bytes()
            };
            (key.clone(), bytes)
        }
        [] => return fail(&format!("Missing KEY argument\n\n{usage}")),
        more => return fail(&format!("Too many arguments (expected 1 or 2, got {})\n\n{usage}", more.len())),
    };
    let data = if m.opt_present("base64") {
        match base64::engine::general_purpose::STANDARD.decode(&data) {
            Ok(d) => d,
            Err(e) => return fail(&format!("Failed to base64 decode data: {e}")),
        }
    } else {
        data
    };
    let mut query: Vec<(&str, String)> = Vec::new();
    if let Some(f) = m.opt_str("flags") {
        if f.parse::<u64>().is_err() {
            return fail(&format!("Invalid -flags {f:?}: want an unsigned integer"));
        }
        query.push(("flags", f));
    }
    let modes = ["cas", "acquire", "release"].iter().filter(|f| m.opt_present(f)).count();
    if modes > 1 {
        return fail("Cannot combine -cas, -acquire and -release");
    }
    let action;
    if m.opt_present("cas") {
        let Some(idx) = m.opt_str("modify-index") else {
            return fail("Must specify -modify-index with -cas!");
        };
        query.push(("cas", idx));
        action = "cas";
    } else if m.opt_present("acquire") || m.opt_present("release") {
        let Some(session) = m.opt_str("session") else {
            return fail("Must specify -session with -acquire or -release");
        };
        action = if m.opt_present("acquire") { "acquire" } else { "release" };
        query.push((action, session));
    } else {
        action = "set";
    }
    match client.call("PUT", &kv_path(&key), &query, Some(&data)) {
        Ok(Some(body)) if body.trim_ascii() == b"true" => {
            match action {
                "acquire" => println!("Success! Lock acquired on: {key}"),
                "release" => println!("Success! Lock released on: {key}"),
                _ => println!("Success! Data written to: {key}"),
            }
            0
        }
        Ok(_) => match action {
            "cas" => fail(&format!("Error! Did not write to {key}: CAS failed")),
            "acquire" => fail(&format!("Error! Failed to acquire lock on {key}")),
            "release" => fail(&format!("Error! Failed to release lock on {key}")),
            _ => fail(&format!("Error! Failed writing data to {key}")),
        },
        Err(e) => fail(&format!("Error! Failed writing data: {e}")),
    }
}

fn delete(args: &[String]) -> i32 {
    let usage = "Usage: legate kv delete [options] KEY_OR_PREFIX";
    let mut o = client_options();
    o.optflag("", "recurse", "Delete every key under the prefix.");
    o.optflag("", "cas", "Delete only if -modify-index matches.");
    o.optopt("", "modify-index", "The ModifyIndex for -cas.", "N");
    let (m, client) = match parse(&o, args, usage) {
        Ok(v) => v,
        Err(code) => return code,
    };
    let key = match one_key(&m.free, usage) {
        Ok(k) => k,
        Err(code) => return code,
    };
    let recurse = m.opt_present("recurse");
    if key.is_empty() && !recurse {
        return fail("Error! Missing KEY argument");
    }
    let mut query: Vec<(&str, String)> = Vec::new();
    if recurse {
        if m.opt_present("cas") {
            return fail("Cannot specify both -cas and -recurse!");
        }
        query.push(("recurse", String::new()));
    }
    if m.opt_present("cas") {
        let Some(idx) = m.opt_str("modify-index") else {
            return fail("Must specify -modify-index with -cas!");
        };
        query.push(("cas", idx));
    }
    match client.call("DELETE", &kv_path(&key), &query, None) {
        Ok(Some(body)) if body.trim_ascii() == b"true" => {
            if recurse {
                println!("Success! Deleted keys with prefix: {key}");
            } else {
                println!("Success! Deleted key: {key}");
            }
            0
        }
        Ok(_) => fail(&format!("Error! Did not delete key {key}: CAS failed")),
        Err(e) => fail(&format!("Error! Failed to delete: {e}")),
    }
}

fn fail(message: &str) -> i32 {
    eprintln!("{message}");
    1
}
