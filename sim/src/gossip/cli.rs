//! `sim gossip`: the standard gossip [`Experiment`] over a range of seeds, with its figures.

use std::ops::Range;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use super::experiment::Experiment;
use super::report::{Report, Summary};
use super::setup::{MsRange, Slowness};
use crate::run::parse_seeds;

pub const USAGE: &str = "\
usage:
  sim gossip [--nodes N] [--seeds A..B | --seed N] [--loss P] [--latency MIN..MAX]
             [--lifeguard on|off|both] [--slow K] [--slow-delay MIN..MAX]
             [--slow-timer-delay MIN..MAX]
             [--joins N] [--crashes N] [--leaves N] [--restart on|off] [--partition on|off]
             [--steady SECONDS] [--jobs N] [--quiet] [--trace]

gossip  runs the gossip experiment (SWIM + Lifeguard on the discrete-event simulator) once
        per seed: the pool forms, load is measured over a steady window, members join, crash
        and restart, leave, the pool splits in two halves and heals. Prints join convergence,
        failure detection, rejoin and heal times, false positives and load per member.
        Defaults: 100 nodes, seeds 0..4, no loss, latency 1..5 ms, lifeguard on, nothing
        slowed (a slowed member processes each input 1000..3000 ms late, and its timers as
        late as its input unless --slow-timer-delay says otherwise: 0..0 stalls only its
        receive path), 3 joins, 2 crashes, 1 leave, restart on, partition on, 30 s steady
        window. `--lifeguard both` runs every seed with and
        without Lifeguard and compares their false positives. `--trace` prints each run's
        actions and membership events; a failed run prints the command that replays it.";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lifeguard {
    On,
    Off,
    Both,
}

impl Lifeguard {
    fn modes(self) -> Vec<bool> {
        match self {
            Lifeguard::On => vec![true],
            Lifeguard::Off => vec![false],
            Lifeguard::Both => vec![true, false],
        }
    }
}

/// The parsed command line.
#[derive(Clone, Debug)]
pub struct GossipArgs {
    nodes: usize,
    seeds: Range<u64>,
    loss: f64,
    latency: MsRange,
    lifeguard: Lifeguard,
    slow: usize,
    slow_delay: MsRange,
    /// `None`: the same as `slow_delay`.
    slow_timer_delay: Option<MsRange>,
    joins: usize,
    crashes: usize,
    leaves: usize,
    restart: bool,
    partition: bool,
    steady_s: u64,
    jobs: usize,
    quiet: bool,
    trace: bool,
}

impl GossipArgs {
    pub fn parse(args: &[String]) -> Result<GossipArgs, String> {
        let defaults = Experiment::lan(100);
        let mut out = GossipArgs {
            nodes: defaults.setup.members,
            seeds: 0..4,
            loss: defaults.setup.net.loss,
            latency: defaults.setup.net.latency,
            lifeguard: Lifeguard::On,
            slow: defaults.slow,
            slow_delay: defaults.setup.slow.input_delay,
            slow_timer_delay: None,
            joins: defaults.joins,
            crashes: defaults.crashes,
            leaves: defaults.leaves,
            restart: defaults.restart,
            partition: defaults.partition,
            steady_s: defaults.steady_ms / 1_000,
            jobs: std::thread::available_parallelism().map_or(1, |n| n.get()),
            quiet: false,
            trace: false,
        };
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            match flag.as_str() {
                "--quiet" => out.quiet = true,
                "--trace" => out.trace = true,
                _ => {
                    let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
                    out.set(flag, value)?;
                }
            }
        }
        out.experiment(true).validate()?;
        Ok(out)
    }

    /// Sets the flag that takes a value.
    fn set(&mut self, flag: &str, value: &str) -> Result<(), String> {
        match flag {
            "--nodes" => self.nodes = number(flag, value)?,
            "--seeds" => self.seeds = parse_seeds(value)?,
            "--seed" => {
                let seed: u64 = number(flag, value)?;
                self.seeds = seed..seed + 1;
            }
            "--loss" => {
                self.loss = value.parse().map_err(|_| format!("--loss must be a probability (got {value:?})"))?
            }
            "--latency" => self.latency = ms_range(flag, value)?,
            "--lifeguard" => {
                self.lifeguard = match value {
                    "on" => Lifeguard::On,
                    "off" => Lifeguard::Off,
                    "both" => Lifeguard::Both,
                    _ => return Err(format!("--lifeguard must be on, off or both (got {value:?})")),
                }
            }
            "--slow" => self.slow = number(flag, value)?,
            "--slow-delay" => self.slow_delay = ms_range(flag, value)?,
            "--slow-timer-delay" => self.slow_timer_delay = Some(ms_range(flag, value)?),
            "--joins" => self.joins = number(flag, value)?,
            "--crashes" => self.crashes = number(flag, value)?,
            "--leaves" => self.leaves = number(flag, value)?,
            "--restart" => self.restart = on_off(flag, value)?,
            "--partition" => self.partition = on_off(flag, value)?,
            "--steady" => self.steady_s = number(flag, value)?,
            "--jobs" => self.jobs = number::<usize>(flag, value)?.max(1),
            _ => return Err(format!("unknown flag {flag:?}")),
        }
        Ok(())
    }

    fn experiment(&self, lifeguard: bool) -> Experiment {
        let mut exp = Experiment::lan(self.nodes);
        exp.setup.gossip.lifeguard = lifeguard;
        exp.setup.net.loss = self.loss;
        exp.setup.net.latency = self.latency;
        exp.setup.slow = Slowness { input_delay: self.slow_delay, timer_delay: self.timer_delay() };
        exp.joins = self.joins;
        exp.crashes = self.crashes;
        exp.restart = self.restart;
        exp.leaves = self.leaves;
        exp.slow = self.slow;
        exp.partition = self.partition;
        exp.steady_ms = self.steady_s * 1_000;
        exp.trace = self.trace;
        exp
    }

    fn timer_delay(&self) -> MsRange {
        self.slow_timer_delay.unwrap_or(self.slow_delay)
    }

    /// The command that replays one seed of one mode, every setting spelled out.
    fn replay_command(&self, seed: u64, lifeguard: bool) -> String {
        let on_off = |b: bool| if b { "on" } else { "off" };
        format!(
            "cargo run -p sim --release -- gossip --nodes {} --seed {seed} --loss {} --latency {}..{} \
             --lifeguard {} --slow {} --slow-delay {}..{} --slow-timer-delay {}..{} --joins {} --crashes {} --leaves {} --restart {} \
             --partition {} --steady {} --trace",
            self.nodes,
            self.loss,
            self.latency.min_ms,
            self.latency.max_ms,
            on_off(lifeguard),
            self.slow,
            self.slow_delay.min_ms,
            self.slow_delay.max_ms,
            self.timer_delay().min_ms,
            self.timer_delay().max_ms,
            self.joins,
            self.crashes,
            self.leaves,
            on_off(self.restart),
            on_off(self.partition),
            self.steady_s
        )
    }
}

fn number<T: std::str::FromStr>(flag: &str, value: &str) -> Result<T, String> {
    value.parse().map_err(|_| format!("{flag} must be a whole number (got {value:?})"))
}

fn on_off(flag: &str, value: &str) -> Result<bool, String> {
    match value {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(format!("{flag} must be on or off (got {value:?})")),
    }
}

fn ms_range(flag: &str, value: &str) -> Result<MsRange, String> {
    let bad = || format!("{flag} must look like 1..5 (milliseconds, inclusive; got {value:?})");
    let (a, b) = value.split_once("..").ok_or_else(bad)?;
    let (a, b): (u64, u64) = (a.trim().parse().map_err(|_| bad())?, b.trim().parse().map_err(|_| bad())?);
    if a > b {
        return Err(bad());
    }
    Ok(MsRange::new(a, b))
}

/// Runs the experiment for every seed (and mode), prints each run and the summaries.
pub fn main(args: &[String]) -> ExitCode {
    if args.iter().any(|a| matches!(a.as_str(), "-h" | "--help")) {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let args = match GossipArgs::parse(args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runs: Vec<(u64, bool)> =
        args.seeds.clone().flat_map(|seed| args.lifeguard.modes().into_iter().map(move |lg| (seed, lg))).collect();
    let reports = in_parallel(args.jobs, &runs, |&(seed, lifeguard)| {
        // A panic in the state machine (an assertion) is a failed run like any other.
        let report = std::panic::catch_unwind(|| args.experiment(lifeguard).run(seed))
            .unwrap_or_else(|panic| Err(format!("panicked: {}", panic_message(&*panic))));
        let mut out = String::new();
        match &report {
            Ok(r) if !args.quiet || !r.is_ok() => {
                for line in &r.trace {
                    out.push_str(&format!("{line}\n"));
                }
                out.push_str(&format!("lifeguard {}: {r}\n", if lifeguard { "on" } else { "off" }));
                for v in r.violations.iter().chain(&r.notes) {
                    out.push_str(&format!("  {v}\n"));
                }
            }
            Ok(_) => {}
            Err(e) => out.push_str(&format!("seed {seed}: {e}\n")),
        }
        if report.as_ref().map_or(true, |r| !r.is_ok()) {
            out.push_str(&format!("  replay: {}\n", args.replay_command(seed, lifeguard)));
        }
        print!("{out}");
        report
    });
    let mut failed = false;
    let mut summaries = Vec::new();
    for lifeguard in args.lifeguard.modes() {
        let batch: Vec<Report> = runs
            .iter()
            .zip(&reports)
            .filter(|((_, lg), _)| *lg == lifeguard)
            .filter_map(|(_, r)| r.as_ref().ok().cloned())
            .collect();
        let summary = Summary::of(&batch);
        failed |= summary.failed_runs > 0 || batch.len() < args.seeds.clone().count();
        println!(
            "gossip: {} members, loss {}, lifeguard {}, {} slowed, seeds {}..{}",
            args.nodes,
            args.loss,
            if lifeguard { "on" } else { "off" },
            args.slow,
            args.seeds.start,
            args.seeds.end
        );
        println!("{summary}");
        summaries.push(summary);
    }
    if let [on, off] = &summaries[..] {
        compare("false positives", off.false_positives.total(), on.false_positives.total());
        compare("suspicions started", off.suspicions, on.suspicions);
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic.downcast_ref::<String>().map(String::as_str).or_else(|| panic.downcast_ref::<&str>().copied()).unwrap_or("?")
}

/// Prints a figure without and with Lifeguard, and their ratio.
fn compare(what: &str, off: u64, on: u64) {
    let ratio =
        if on == 0 { "undefined (none with Lifeguard)".to_string() } else { format!("{:.2}", off as f64 / on as f64) };
    println!("{what} without / with Lifeguard: {off} / {on} = {ratio}");
}

/// `f` over `items` on `jobs` threads; results in the items' order.
fn in_parallel<T: Sync, R: Send>(jobs: usize, items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<R>>> = Mutex::new(items.iter().map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..jobs.min(items.len()) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(item) = items.get(i) else { return };
                let r = f(item);
                results.lock().unwrap_or_else(|p| p.into_inner())[i] = Some(r);
            });
        }
    });
    results.into_inner().unwrap_or_else(|p| p.into_inner()).into_iter().flatten().collect()
}
