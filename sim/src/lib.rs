//! Legate's deterministic simulator.
//!
//! The simulator runs the same `legate-core` state machines and the same openraft engine that
//! production runs, but on [madsim]: one seeded world with a virtual clock, a virtual network and
//! one random number generator. A run is a function of its seed alone, so any failure replays
//! from the seed that produced it.
//!
//! # The contract
//!
//! - **Build with `--cfg madsim`.** The workspace's `.cargo/config.toml` sets it for every crate;
//!   madsim is the only crate that reads it, and only this crate depends on madsim, so the agent
//!   and the tokio runtime keep real time, sockets and randomness. A `RUSTFLAGS` environment
//!   variable *replaces* the config's flags: keep `--cfg madsim` in it. Without the cfg this
//!   crate refuses to compile (below), because madsim would silently fall back to real time and
//!   real threads and every "deterministic" run would be a lie.
//! - **Everything that runs inside a simulation draws time and randomness from madsim.**
//!   `std::time::Instant` and `SystemTime` are virtualised by madsim (it interposes
//!   `clock_gettime`), and [`runtime::MadsimRuntime`] hands openraft madsim's seeded RNG. Nothing
//!   may call the OS RNG, spawn an OS thread or block on real I/O.
//! - **No hidden scheduling randomness.** Every select is biased (written `biased;` or by polling
//!   in a fixed order), no `HashMap`/`HashSet` iteration reaches behaviour, and the channels given
//!   to openraft wake their waiters in FIFO order.
//! - **One seed per fresh thread.** madsim seeds `std`'s `HashMap` keys only the first time a
//!   thread builds one; a second runtime on the same thread inherits advanced keys. Run each
//!   seed on its own thread (the tests do) so that a seed run alone and the same seed inside a
//!   batch give the same trace.
//!
//! # Pieces
//!
//! - [`runtime`]: openraft's [`AsyncRuntime`](openraft_rt::AsyncRuntime) on madsim.
//! - [`check`]: the checkers, one property per file.
//! - [`disk`]: the simulated disk (unsynced writes lost on crash, torn tails, bit flips).
//! - [`gossip`]: gossip membership (SWIM + Lifeguard) on its own fast discrete-event driver,
//!   at 5 to 1,000 members (no madsim tasks: the gossip state machine is sans-IO).
//! - [`scenario`]: Jepsen-style scenario files.
//! - [`workload`]: the clients' workloads (KV register, locks, services, transactions).
//! - [`run`]: one seeded run of a scenario, and the report the checkers produce.
//! - [`world`]: simulated server and client processes running the production server code, in
//!   one datacenter or several federated over a simulated WAN.
//!
//! [madsim]: https://docs.rs/madsim

// rustdoc does not receive `build.rustflags`, so `cargo doc` and doctest collection are exempt:
// they run no simulation (a doctest still links this library as rustc built it).
#[cfg(not(any(madsim, doc, doctest)))]
compile_error!(
    "the `sim` crate must be built with `--cfg madsim`. The workspace's .cargo/config.toml sets \
     `[build] rustflags = [\"--cfg\", \"madsim\"]`; a RUSTFLAGS environment variable replaces \
     those flags entirely, so if you set RUSTFLAGS, include `--cfg madsim` in it \
     (e.g. RUSTFLAGS=\"--cfg madsim\" cargo test -p sim)."
);

// Gated too, so that a build without the cfg shows the one error above and not a cascade.
#[cfg(any(madsim, doc))]
pub mod check;
#[cfg(any(madsim, doc))]
pub mod disk;
#[cfg(any(madsim, doc))]
pub mod gossip;
#[cfg(any(madsim, doc))]
pub mod run;
#[cfg(any(madsim, doc))]
pub mod runtime;
#[cfg(any(madsim, doc))]
pub mod scenario;
#[cfg(any(madsim, doc))]
pub mod workload;
#[cfg(any(madsim, doc))]
pub mod world;

#[cfg(any(madsim, doc))]
pub use runtime::MadsimRuntime;
