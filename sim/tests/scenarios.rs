//! The scenario tiers in `cargo test -p sim`: every file in `scenarios/fast/` over a range of
//! seeds with all its checkers green, every file in `scenarios/negative/` caught by the checker
//! it names, and a seed's trace hash equal alone, in a batch and in another process.
//!
//! - `SIM_SEEDS=100..200 cargo test -p sim --test scenarios` runs another seed range.
//! - `SIM_SEED=7 cargo test -p sim --test scenarios -- --nocapture` replays one seed and prints
//!   its trace (virtual time, node, event); `SIM_SCENARIO=locks` limits it to one file.
//! - The release runner does the same for thousands of seeds:
//!   `cargo run -p sim --release -- run scenarios/slow/partition-kv.toml --seeds 0..5000`.

use std::path::{Path, PathBuf};
use std::process::Command;

use sim::run::{parse_seeds, replay_command, run_seed, RunReport};
use sim::scenario::Scenario;

/// Seeds each fast scenario runs in every `cargo test -p sim` (sized for CI's budget).
const FAST_SEEDS: std::ops::Range<u64> = 0..6;

/// Seeds that once failed, kept as regressions: (scenario, seed, what the simulator found).
const REGRESSIONS: &[(&str, u64, &str)] = &[(
    "kv-partition",
    3,
    "two leaders in term 1: openraft's default 'advanced' leader ids allow several leaders per term; \
     Legate now uses standard Raft leader ids",
)];

fn scenarios(tier: &str) -> Vec<(PathBuf, Scenario)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("scenarios").join(tier);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    let only = std::env::var("SIM_SCENARIO").ok();
    files
        .into_iter()
        .map(|p| {
            let s = Scenario::parse(&p).unwrap_or_else(|e| panic!("{e}"));
            (p, s)
        })
        .filter(|(_, s)| only.as_ref().is_none_or(|o| *o == s.name))
        .collect()
}

fn relative(path: &Path) -> String {
    let text = path.display().to_string();
    match text.find("scenarios/") {
        Some(i) => text[i..].to_string(),
        None => text,
    }
}

fn seeds() -> (Vec<u64>, bool) {
    if let Ok(s) = std::env::var("SIM_SEED") {
        return (vec![s.parse().expect("SIM_SEED must be a number")], true);
    }
    if let Ok(r) = std::env::var("SIM_SEEDS") {
        return (parse_seeds(&r).unwrap_or_else(|e| panic!("SIM_SEEDS: {e}")).collect(), false);
    }
    (FAST_SEEDS.collect(), false)
}

fn failure_text(path: &Path, r: &RunReport) -> String {
    let mut text = format!(
        "seed {} of {} FAILED\nreplay: SIM_SEED={} SIM_SCENARIO={} cargo test -p sim --test scenarios -- --nocapture\n   or: {}\n",
        r.seed,
        r.scenario,
        r.seed,
        r.scenario,
        replay_command(r.seed, &relative(path))
    );
    for f in r.failures() {
        text.push_str(&format!("  {f}\n"));
    }
    text
}

#[test]
fn fast_scenarios_stay_green_over_their_seeds() {
    let (seeds, replay) = seeds();
    let mut failures = Vec::new();
    for (path, scenario) in scenarios("fast") {
        let mut list = seeds.clone();
        if !replay && std::env::var("SIM_SEEDS").is_err() {
            list.extend(REGRESSIONS.iter().filter(|(n, ..)| *n == scenario.name).map(|(_, s, _)| *s));
            list.sort_unstable();
            list.dedup();
        }
        for seed in list {
            let r = run_seed(seed, &scenario);
            if replay {
                println!("--- trace of {} seed {seed}", scenario.name);
                for line in &r.trace {
                    println!("{line}");
                }
            }
            println!("{}", r.summary());
            if !r.is_ok() {
                let text = failure_text(&path, &r);
                eprintln!("{text}");
                failures.push(text);
            } else {
                assert!(r.ops >= 50, "{}: seed {seed} ran only {} operations", scenario.name, r.ops);
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_negative_scenario_is_caught_by_its_checker() {
    let mut missed = Vec::new();
    for (path, scenario) in scenarios("negative") {
        let plant = scenario.plant.expect("a negative scenario has a [plant]");
        let caught = (0..u64::from(plant.seed_budget)).find_map(|seed| {
            let r = run_seed(seed, &scenario);
            r.caught_by(plant.caught_by).then_some(r)
        });
        match caught {
            Some(r) => println!(
                "{}: planted {} caught by {} on seed {}: {}",
                scenario.name,
                plant.bug.name(),
                plant.caught_by.name(),
                r.seed,
                r.failures().first().map(String::as_str).unwrap_or("")
            ),
            None => missed.push(format!(
                "{}: planted {} was not caught by {} within seeds 0..{}",
                relative(&path),
                plant.bug.name(),
                plant.caught_by.name(),
                plant.seed_budget
            )),
        }
    }
    assert!(missed.is_empty(), "{}", missed.join("\n"));
}

const HASH_CHILD: &str = "SIM_HASH_CHILD";

/// The same seed gives the same trace hash alone, after other seeds in the same process, and
/// in a second process: for the first fast scenario, and for the first with several
/// datacenters (its WAN and routes are per-run state too).
#[test]
fn a_seed_gives_one_trace_hash_alone_in_a_batch_and_in_another_process() {
    let fast = scenarios("fast");
    let first = fast.first().expect("a fast scenario").clone();
    let federated = fast.iter().find(|(_, s)| s.topology.is_federated()).expect("a fast multi-datacenter scenario");
    for ((path, scenario), seed) in [(first, 5), (federated.clone(), 1)] {
        let alone = run_seed(seed, &scenario);
        let batch: Vec<RunReport> = (seed.saturating_sub(2)..=seed).map(|s| run_seed(s, &scenario)).collect();
        let name = &scenario.name;
        assert_eq!(
            batch.last().map(|r| r.trace_hash),
            Some(alone.trace_hash),
            "{name} seed {seed} alone vs in a batch"
        );
        assert_eq!(run_seed(seed, &scenario).trace, alone.trace, "{name}: the trace itself replays");

        let child = Command::new(std::env::current_exe().expect("the test binary"))
            .args(["--exact", "trace_hash_child_process", "--nocapture", "--test-threads", "1"])
            .env(HASH_CHILD, format!("{}#{seed}", path.display()))
            .output()
            .expect("the test binary runs again");
        let stdout = String::from_utf8_lossy(&child.stdout);
        let line = stdout.lines().find_map(|l| l.split("trace-hash ").nth(1)).map(str::trim).unwrap_or_else(|| {
            panic!("the child printed no hash:\n{stdout}\n{}", String::from_utf8_lossy(&child.stderr))
        });
        assert_eq!(line, format!("{:016x}", alone.trace_hash), "{name} seed {seed} in another process");
    }
}

/// Only does something when the test above starts it in a child process.
#[test]
fn trace_hash_child_process() {
    let Ok(spec) = std::env::var(HASH_CHILD) else {
        return;
    };
    let (path, seed) = spec.rsplit_once('#').expect("path#seed");
    let scenario = Scenario::parse(path).unwrap_or_else(|e| panic!("{e}"));
    let r = run_seed(seed.parse().expect("a seed"), &scenario);
    println!("trace-hash {:016x}", r.trace_hash);
}
