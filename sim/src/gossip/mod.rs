//! Gossip membership at scale: SWIM + Lifeguard ([`legate_core::gossip`]) proven on a fast
//! discrete-event simulator.
//!
//! The rest of this crate runs openraft and the servers on madsim tasks; a gossip pool of
//! 1,000 members would be far too slow that way. The gossip state machine is sans-IO (bytes in,
//! bytes out, time as an argument), so this module drives it directly: one [`World`] holds N
//! [`Gossip`](legate_core::gossip::Gossip) instances, one event queue ordered by
//! `(time_ms, sequence number)` and one `ChaCha8Rng` seeded from the run's seed (each member's
//! `Gossip` is seeded from it too). Nothing else is random, nothing reads a clock, and every
//! table whose order reaches behaviour is a `BTreeMap` or a `Vec` indexed by member: a seed
//! replays bit for bit, alone or in a batch, and [`World::trace_hash`] proves it.
//!
//! # The model
//!
//! - **Network** ([`NetParams`]): a uniform one-way latency per message (1–5 ms by default),
//!   independent datagram loss, and symmetric partitions into islands that can heal. Streams
//!   (push-pull, joins, the fallback probe) are request and reply over TCP: they are not lost,
//!   but fail when the peer is down (refused), partitioned or slower than the stream timeout.
//! - **Members** ([`Action`]): start (join 1–3 running members), crash, restart (a fresh
//!   process, incarnation 0, same name and address), graceful leave, and *slowed* — every input
//!   processed 1–3 s late, Lifeguard's CPU-starved member.
//! - **Beliefs**: what each member believes about each other, from its own events, the way
//!   `legate members` shows it. Convergence, detection and false positives are read off them.
//!
//! # Measurements and checkers
//!
//! [`Experiment`] runs the standard phases (form, steady, joins, crashes and restarts, leaves,
//! partition and heal, liveness) and returns a [`Report`]: join convergence, failure detection
//! and rejoin times, heal time, false positives, and message load per member. The checkers in
//! [`check`] judge it: completeness, accuracy, join, rejoin, leave and convergence bounds.
//! `Failed` events about slowed members are counted and reported, not asserted: they are what
//! Lifeguard reduces, not something SWIM promises to avoid.
//!
//! ```text
//! cargo run -p sim --release -- gossip --nodes 1000 --seeds 0..3 --loss 0.2
//! cargo run -p sim --release -- gossip --nodes 100 --slow 5 --lifeguard both
//! ```

pub mod check;
pub mod cli;
pub mod experiment;
pub mod history;
pub mod load;
mod net;
mod queue;
pub mod record;
pub mod report;
pub mod seeds;
pub mod setup;
mod views;
pub mod world;

pub use experiment::Experiment;
pub use history::Cause;
pub use report::{Distribution, Report, Summary};
pub use seeds::{for_each_seed, replay_command, seeds};
pub use setup::{node_addr, node_name, MsRange, NetParams, NodeId, Setup, Slowness};
pub use views::Belief;
pub use world::{Action, Status, World};
