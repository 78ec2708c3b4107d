//! openraft's [`AsyncRuntime`] on madsim: the same Raft engine the tokio shell runs, driven by
//! madsim's seeded scheduler, virtual clock and RNG.
//!
//! Each piece and where it comes from:
//!
//! | openraft piece | here |
//! |---|---|
//! | `spawn`, `JoinHandle`, `JoinError`, `is_panic` | `madsim::task` (a panicking task fails the whole run, so `is_panic` is only ever false) |
//! | `Instant` | [`SimInstant`]: the current node's local monotonic time, madsim's virtual clock with that node's drift applied ([`clock`]) |
//! | `sleep`, `sleep_until` | [`SimSleep`]: a madsim sleep to the real instant the node's clock reads the deadline (madsim sleeps at least 1 ms, as tokio does) |
//! | `timeout`, `timeout_at` | [`Timeout`]: the future first, then a [`SimSleep`] (biased) |
//! | `thread_rng` | [`MadsimRng`]: madsim's seeded global RNG, never the OS |
//! | `Mpsc` | [`SimMpsc`]: `async-channel`, bounded, with weak senders |
//! | `Watch` | [`SimWatch`]: a small lock + version + `event-listener` channel |
//! | `Oneshot` | [`SimOneshot`]: `futures::channel::oneshot` |
//! | `Mutex` | [`SimMutex`]: `futures::lock::Mutex` |
//! | `new`, `block_on` | a `madsim::runtime::Runtime` |
//!
//! Why not reuse `openraft-rt-tokio`'s channel wrappers: tokio's watch channel picks which of
//! its eight notifiers a receiver waits on with a thread-local RNG seeded from a process-wide
//! counter, so the order receivers wake in (and so madsim's schedule) would differ between a
//! seed run alone and the same seed run in a batch. Every channel here wakes in FIFO order.
//!
//! Clock skew: [`clock::set_skew`] gives a node an offset (wall clock only) and a drift (every
//! timer and clock of that node: openraft's, the server's routing deadlines, and the
//! [`clock::node_clock`] the server's duties and command stamps read). A node without skew
//! reads madsim's clock unchanged, with the same timer deadlines as before skew existed. See
//! [`clock`] for the model.

pub mod clock;
mod instant;
mod mpsc;
mod mutex;
mod oneshot;
mod rng;
mod timeout;
mod watch;

use std::fmt;
use std::future::Future;
use std::io;
use std::time::Duration;

use openraft_rt::{AsyncRuntime, OptionalSend};

pub use clock::{node_clock, set_skew, skew_of, Skew};
pub use instant::{SimInstant, SimSleep};
pub use mpsc::{SimMpsc, SimMpscReceiver, SimMpscSender, SimMpscWeakSender};
pub use mutex::SimMutex;
pub use oneshot::{SimOneshot, SimOneshotSender};
pub use rng::MadsimRng;
pub use timeout::Timeout;
pub use watch::{SimWatch, SimWatchReceiver, SimWatchSender};

/// The seed [`AsyncRuntime::new`] uses. Simulations choose their own seed with
/// [`MadsimRuntime::with_seed_and_config`]; this one only serves openraft's generic tests.
pub const DEFAULT_SEED: u64 = 0;

/// A madsim world that openraft can run on. One per simulated run (and per seed).
pub struct MadsimRuntime {
    rt: madsim::runtime::Runtime,
}

impl MadsimRuntime {
    /// A fresh world whose whole behaviour (schedule, clock start, RNG) follows from `seed`.
    /// Every node starts without clock skew (this thread's skew table is cleared).
    pub fn with_seed_and_config(seed: u64, config: madsim::Config) -> Self {
        clock::reset();
        MadsimRuntime { rt: madsim::runtime::Runtime::with_seed_and_config(seed, config) }
    }

    /// The madsim runtime, for what openraft does not need (nodes, time limits, the network).
    pub fn madsim(&mut self) -> &mut madsim::runtime::Runtime {
        &mut self.rt
    }
}

impl fmt::Debug for MadsimRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MadsimRuntime").field("seed", &self.rt.handle().seed()).finish()
    }
}

impl AsyncRuntime for MadsimRuntime {
    type JoinError = madsim::task::JoinError;
    type JoinHandle<T: OptionalSend + 'static> = madsim::task::JoinHandle<T>;
    type Sleep = SimSleep;
    type Instant = SimInstant;
    type TimeoutError = madsim::time::error::Elapsed;
    type Timeout<R, T: Future<Output = R> + OptionalSend> = Timeout<T>;
    type ThreadLocalRng = MadsimRng;

    fn spawn<T>(future: T) -> Self::JoinHandle<T::Output>
    where
        T: Future + OptionalSend + 'static,
        T::Output: OptionalSend + 'static,
    {
        madsim::task::spawn(future)
    }

    fn sleep(duration: Duration) -> Self::Sleep {
        SimSleep::new(duration)
    }

    fn sleep_until(deadline: Self::Instant) -> Self::Sleep {
        SimSleep::until(deadline)
    }

    fn timeout<R, F: Future<Output = R> + OptionalSend>(duration: Duration, future: F) -> Self::Timeout<R, F> {
        Timeout::new(future, SimSleep::new(duration))
    }

    fn timeout_at<R, F: Future<Output = R> + OptionalSend>(deadline: Self::Instant, future: F) -> Self::Timeout<R, F> {
        Timeout::new(future, SimSleep::until(deadline))
    }

    fn is_panic(join_error: &Self::JoinError) -> bool {
        join_error.is_panic()
    }

    fn thread_rng() -> Self::ThreadLocalRng {
        MadsimRng::current()
    }

    type Mpsc = SimMpsc;
    type Watch = SimWatch;
    type Oneshot = SimOneshot;
    type Mutex<T: OptionalSend + 'static> = SimMutex<T>;

    /// madsim runs one thread per world, so `threads` is ignored.
    fn new(_threads: usize) -> Self {
        MadsimRuntime::with_seed_and_config(DEFAULT_SEED, madsim::Config::default())
    }

    fn block_on<F, T>(&mut self, future: F) -> T
    where
        F: Future<Output = T>,
    {
        self.rt.block_on(future)
    }

    /// The default runs `f` on an OS thread, which madsim forbids (and which would escape the
    /// schedule). Here it is a madsim task: blocking costs no virtual time anyway.
    fn spawn_blocking<F, T>(f: F) -> impl Future<Output = Result<T, io::Error>> + Send
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let handle = madsim::task::spawn(async move { f() });
        async move { handle.await.map_err(io::Error::from) }
    }
}
