//! `legate snapshot save | restore | inspect FILE`.

use legate_core::catalog::CatalogSnapshot;

use super::{client_options, parse, Client};

const USAGE: &str = "Usage: legate snapshot <subcommand> [options] FILE

Subcommands:
    save       Saves a consistent snapshot of the cluster's state to FILE
    restore    Restores the cluster's state from FILE (replacing all of it)
    inspect    Describes the snapshot in FILE
";

pub fn run(args: &[String]) -> i32 {
    let Some(sub) = args.first().map(String::as_str) else {
        eprint!("{USAGE}");
        return 1;
    };
    match sub {
        "save" => save(&args[1..]),
        "restore" => restore(&args[1..]),
        "inspect" => inspect(&args[1..]),
        "-h" | "-help" | "--help" => {
            print!("{USAGE}");
            0
        }
        other => {
            eprintln!("Unknown subcommand {other:?}\n\n{USAGE}");
            1
        }
    }
}

/// Parses a subcommand's flags and its one FILE argument.
fn file_command(args: &[String], usage: &str) -> Result<(String, Client), i32> {
    let (m, client) = parse(&client_options(), args, usage)?;
    match &m.free[..] {
        [file] => Ok((file.clone(), client)),
        _ => {
            eprintln!("Error: exactly one FILE argument is required\n\n{usage}");
            Err(1)
        }
    }
}

fn save(args: &[String]) -> i32 {
    let (file, client) = match file_command(args, "Usage: legate snapshot save [options] FILE") {
        Ok(v) => v,
        Err(code) => return code,
    };
    let archive = match client.call("GET", "/v1/snapshot", &[], None) {
        Ok(Some(bytes)) => bytes,
        Ok(None) => {
            eprintln!("Error saving snapshot: the agent has no snapshot endpoint");
            return 1;
        }
        Err(e) => {
            eprintln!("Error saving snapshot: {e}");
            return 1;
        }
    };
    let snapshot = match CatalogSnapshot::from_archive(&archive) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("Error verifying snapshot: {e}");
            return 1;
        }
    };
    // Write beside the target and rename, so a failed save never leaves half a file.
    let tmp = format!("{file}.tmp");
    if let Err(e) = std::fs::write(&tmp, &archive).and_then(|()| std::fs::rename(&tmp, &file)) {
        let _ = std::fs::remove_file(&tmp);
        eprintln!("Error writing {file}: {e}");
        return 1;
    }
    println!("Saved and verified snapshot to index {}", snapshot.last_index);
    0
}

fn restore(args: &[String]) -> i32 {
    let (file, client) = match file_command(args, "Usage: legate snapshot restore [options] FILE") {
        Ok(v) => v,
        Err(code) => return code,
    };
    let archive = match std::fs::read(&file) {
        Ok(bytes) => bytes,
        Err(e) => {
            eprintln!("Error reading {file}: {e}");
            return 1;
        }
    };
    if let Err(e) = CatalogSnapshot::from_archive(&archive) {
        eprintln!("Error: {file} is not a valid snapshot: {e}");
        return 1;
    }
    match client.call("PUT", "/v1/snapshot", &[], Some(&archive)) {
        Ok(_) => {
            println!("Restored snapshot");
            0
        }
        Err(e) => {
            eprintln!("Error restoring snapshot: {e}");
            1
        }
    }
}

fn inspect(args: &[String]) -> i32 {
    let (file, _) = match file_command(args, "Usage: legate snapshot inspect FILE") {
        Ok(v) => v,
        Err(code) => return code,
    };
    let snapshot = match std::fs::read(&file).map_err(|e| e.to_string()).and_then(|b| CatalogSnapshot::from_archive(&b))
    {
        Ok(s) => s,
        Err(e) => {
            eprintln!("Error reading {file}: {e}");
            return 1;
        }
    };
    let rows = vec![
        vec!["Index".to_string(), snapshot.last_index.to_string()],
        vec!["Nodes".to_string(), snapshot.nodes.len().to_string()],
        vec!["Services".to_string(), snapshot.services.len().to_string()],
        vec!["Checks".to_string(), snapshot.checks.len().to_string()],
        vec!["KV entries".to_string(), snapshot.kv.len().to_string()],
        vec!["Sessions".to_string(), snapshot.sessions.len().to_string()],
    ];
    print!("{}", super::columns(&rows));
    0
}
