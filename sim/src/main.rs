//! The simulator's command line: run scenario files over seed ranges.
//!
//! ```text
//! cargo run -p sim --release -- run scenarios/slow/partition-kv.toml --seeds 0..5000
//! cargo run -p sim --release -- run scenarios/fast/locks.toml --seed 17 --trace
//! cargo run -p sim --release -- check scenarios/**/*.toml
//! cargo run -p sim --release -- gossip --nodes 1000 --seeds 0..3 --loss 0.2
//! ```

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sim::run::{parse_seeds, replay_command, run_seed, tally, RunReport};
use sim::scenario::Scenario;

const USAGE: &str = "\
usage:
  sim run <scenario.toml> [--seeds A..B | --seed N] [--jobs N] [--trace] [--quiet]
  sim check <scenario.toml>...
  sim gossip [--nodes N] [--seeds A..B] [--loss P] [--lifeguard on|off|both] [--slow K] ...

run     runs the scenario once per seed (default seeds 0..100) and checks every run.
        A negative scenario (one with [plant]) passes when its planted bug is caught.
        --trace prints each run's trace (virtual time, node, event).
        --jobs  runs that many seeds at once (default: the number of CPUs).
check   parses and validates scenario files, printing the first error of each.
gossip  runs the gossip membership experiment at scale; `sim gossip --help` lists its flags.";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("run") => match RunArgs::parse(&args[1..]) {
            Ok(run) => run.execute(),
            Err(e) => usage_error(&e),
        },
        Some("check") if args.len() > 1 => check(&args[1..]),
        Some("gossip") => sim::gossip::cli::main(&args[1..]),
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Some(other) => usage_error(&format!("unknown command {other:?}")),
        None => usage_error("a command is required"),
    }
}

fn usage_error(message: &str) -> ExitCode {
    eprintln!("error: {message}\n\n{USAGE}");
    ExitCode::from(2)
}

fn check(files: &[String]) -> ExitCode {
    let mut failed = false;
    for file in files {
        match Scenario::parse(file) {
            Ok(s) => println!("{file}: ok ({})", s.name),
            Err(e) => {
                failed = true;
                eprintln!("{e}");
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

struct RunArgs {
    file: PathBuf,
    seeds: std::ops::Range<u64>,
    jobs: usize,
    trace: bool,
    quiet: bool,
}

impl RunArgs {
    fn parse(args: &[String]) -> Result<RunArgs, String> {
        let mut file = None;
        let mut seeds = 0..100;
        let mut jobs = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut trace = false;
        let mut quiet = false;
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let mut value = |name: &str| it.next().cloned().ok_or_else(|| format!("{name} needs a value"));
            match arg.as_str() {
                "--seeds" => seeds = parse_seeds(&value("--seeds")?)?,
                "--seed" => {
                    let v = value("--seed")?;
                    let n: u64 = v.parse().map_err(|_| format!("--seed must be a number (got {v:?})"))?;
                    seeds = n..n + 1;
                }
                "--jobs" => {
                    let v = value("--jobs")?;
                    jobs = v
                        .parse()
                        .ok()
                        .filter(|j| *j > 0)
                        .ok_or_else(|| format!("--jobs must be above 0 (got {v:?})"))?;
                }
                "--trace" => trace = true,
                "--quiet" => quiet = true,
                flag if flag.starts_with('-') => return Err(format!("unknown flag {flag:?}")),
                path if file.is_none() => file = Some(PathBuf::from(path)),
                extra => return Err(format!("unexpected argument {extra:?}")),
            }
        }
        let file = file.ok_or("run needs a scenario file")?;
        Ok(RunArgs { file, seeds, jobs, trace, quiet })
    }

    fn execute(self) -> ExitCode {
        let scenario = match Scenario::parse(&self.file) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(2);
            }
        };
        let path = self.file.display().to_string();
        let total = self.seeds.end - self.seeds.start;
        let next = Arc::new(AtomicU64::new(self.seeds.start));
        let done = Arc::new(AtomicUsize::new(0));
        let reports: Arc<Mutex<Vec<RunReport>>> = Arc::new(Mutex::new(Vec::new()));
        let started = Instant::now();
        let workers: Vec<_> = (0..self.jobs.min(total as usize))
            .map(|_| {
                let (next, done, reports, scenario, end) =
                    (next.clone(), done.clone(), reports.clone(), scenario.clone(), self.seeds.end);
                let (trace, quiet, path) = (self.trace, self.quiet, path.clone());
                std::thread::spawn(move || loop {
                    let seed = next.fetch_add(1, Ordering::SeqCst);
                    if seed >= end {
                        return;
                    }
                    let mut report = run_seed(seed, &scenario);
                    let mut out = String::new();
                    if trace {
                        out.push_str(&format!("--- trace of {} seed {seed}\n", scenario.name));
                        for line in &report.trace {
                            out.push_str(line);
                            out.push('\n');
                        }
                    }
                    if !report.is_ok() && !scenario.expects_failure() {
                        out.push_str(&format!("FAILED seed {seed}: replay with `{}`\n", replay_command(seed, &path)));
                        for f in report.failures() {
                            out.push_str(&format!("  {f}\n"));
                        }
                    }
                    if !quiet || !out.is_empty() {
                        let line = if quiet { String::new() } else { format!("{}\n", report.summary()) };
                        let mut stdout = std::io::stdout().lock();
                        let _ = write!(stdout, "\r\x1b[2K{out}{line}");
                    }
                    // The summary needs the counts, not the trace: keep a batch's memory flat.
                    report.trace = Vec::new();
                    reports.lock().unwrap_or_else(|p| p.into_inner()).push(report);
                    let d = done.fetch_add(1, Ordering::SeqCst) + 1;
                    progress(d, total as usize, started);
                })
            })
            .collect();
        for w in workers {
            let _ = w.join();
        }
        eprint!("\r\x1b[2K");
        let mut reports = std::mem::take(&mut *reports.lock().unwrap_or_else(|p| p.into_inner()));
        reports.sort_by_key(|r| r.seed);
        summarise(&scenario, &path, &reports, started.elapsed())
    }
}

fn progress(done: usize, total: usize, started: Instant) {
    let width = 30;
    let filled = done * width / total.max(1);
    let rate = done as f64 / started.elapsed().as_secs_f64().max(1e-9);
    eprint!("\r[{}{}] {done}/{total} seeds, {rate:.1} seeds/s", "#".repeat(filled), "-".repeat(width - filled));
}

fn summarise(scenario: &Scenario, path: &str, reports: &[RunReport], wall: Duration) -> ExitCode {
    let seeds = reports.len();
    let ops: usize = reports.iter().map(|r| r.ops).sum();
    let faults: usize = reports.iter().map(|r| r.faults).sum();
    let virtual_time: Duration = reports.iter().map(|r| r.virtual_time).sum();
    let failed: Vec<&RunReport> = reports.iter().filter(|r| !r.is_ok()).collect();
    let unknown = reports.iter().filter(|r| r.linearizability.is_unknown()).count();
    let refusals: usize = reports.iter().map(|r| r.refusals.len()).sum();
    println!("scenario {} ({path})", scenario.name);
    println!(
        "  {seeds} seeds in {:.1}s wall: {:.2} seeds/s, {:.0}x faster than real time ({:.0}s simulated)",
        wall.as_secs_f64(),
        seeds as f64 / wall.as_secs_f64().max(1e-9),
        virtual_time.as_secs_f64() / wall.as_secs_f64().max(1e-9),
        virtual_time.as_secs_f64()
    );
    println!("  {faults} faults injected, {ops} operations checked, {refusals} servers refused to start on a corrupt disk (detected bit flips)");
    if unknown > 0 {
        println!("  linearizability undecided (search budget) on {unknown} seeds");
    }
    let by_checker = tally(reports);
    println!(
        "  violations: {} seeds{}",
        failed.len(),
        if by_checker.is_empty() {
            String::new()
        } else {
            format!(" ({})", by_checker.iter().map(|(c, n)| format!("{c}: {n}")).collect::<Vec<_>>().join(", "))
        }
    );
    match scenario.plant {
        Some(plant) => {
            let caught: Vec<u64> = reports.iter().filter(|r| r.caught_by(plant.caught_by)).map(|r| r.seed).collect();
            if let Some(first) = caught.first() {
                println!(
                    "  planted bug {} caught by {} on {} of {seeds} seeds (first: seed {first}): PASS",
                    plant.bug.name(),
                    plant.caught_by.name(),
                    caught.len()
                );
                ExitCode::SUCCESS
            } else {
                println!("  planted bug {} was NOT caught by {}: FAIL", plant.bug.name(), plant.caught_by.name());
                ExitCode::FAILURE
            }
        }
        None if failed.is_empty() => {
            println!("  all checkers green: PASS");
            ExitCode::SUCCESS
        }
        None => {
            println!("  FAIL; replay the first failure with:\n    {}", replay_command(failed[0].seed, path));
            ExitCode::FAILURE
        }
    }
}
