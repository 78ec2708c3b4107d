//! Seeds for the gossip tests and the command that replays one (TigerBeetle's habit: print the
//! seed and its replay command first, and again on failure).

/// The seeds a test runs: the one `SIM_SEED` names (a replay), else `defaults`.
pub fn seeds(defaults: &[u64]) -> Result<Vec<u64>, String> {
    match std::env::var("SIM_SEED") {
        Ok(s) => s.parse().map(|seed| vec![seed]).map_err(|_| format!("SIM_SEED must be a u64 (got {s:?})")),
        Err(_) => Ok(defaults.to_vec()),
    }
}

/// The command that replays `seed` of the integration test file `sim/tests/<test>.rs`
/// (ignored tests included: the thousand-member one is).
pub fn replay_command(test: &str, seed: u64) -> String {
    format!("SIM_SEED={seed} cargo test -p sim --test {test} -- --include-ignored --nocapture")
}

/// Runs `run` once per seed of [`seeds`]`(defaults)`, printing each seed and its replay
/// command first, and the replay command again if the run panics (the panic then goes on).
/// For tests: a malformed `SIM_SEED` panics too.
pub fn for_each_seed(test: &str, defaults: &[u64], run: impl Fn(u64)) {
    let seeds = seeds(defaults).unwrap_or_else(|e| panic!("{e}"));
    for seed in seeds {
        println!("seed {seed} (replay: {})", replay_command(test, seed));
        if let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(seed))) {
            eprintln!("seed {seed} failed; replay: {}", replay_command(test, seed));
            std::panic::resume_unwind(panic);
        }
    }
}
