//! [`SimInstant`], the runtime's `Instant`: the current node's local monotonic time, and
//! [`SimSleep`], a madsim sleep towards a deadline on that time line. See [`super::clock`] for
//! the model.

use std::fmt;
use std::future::Future;
use std::ops::{Add, AddAssign, Sub, SubAssign};
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use madsim::task::NodeId;

use super::clock;

/// An instant on the local monotonic time line of the node that took it.
///
/// It is a `std::time::Instant` underneath: for a node without drift it *is* the real
/// (madsim virtual) instant, so a run without skew sees the same values as before. Instants
/// from different nodes must not be compared (nothing in openraft or the server does).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SimInstant(Instant);

impl SimInstant {
    /// The current node's local time (real time outside a madsim task).
    pub fn now() -> SimInstant {
        clock::local_now()
    }

    /// Local time elapsed since `self` on the current node (zero if `self` is later).
    pub fn elapsed(&self) -> Duration {
        SimInstant::now().saturating_duration_since(*self)
    }

    /// `self - earlier`, or zero if `earlier` is later.
    pub fn saturating_duration_since(&self, earlier: SimInstant) -> Duration {
        self.0.saturating_duration_since(earlier.0)
    }

    /// `self - earlier`, or `None` if `earlier` is later.
    pub fn checked_duration_since(&self, earlier: SimInstant) -> Option<Duration> {
        self.0.checked_duration_since(earlier.0)
    }

    pub fn checked_add(&self, d: Duration) -> Option<SimInstant> {
        self.0.checked_add(d).map(SimInstant)
    }

    pub fn checked_sub(&self, d: Duration) -> Option<SimInstant> {
        self.0.checked_sub(d).map(SimInstant)
    }

    /// The same point of the local time line as a `std::time::Instant` (not converted to
    /// real time: see [`clock::real_at`] for that).
    pub fn into_std(self) -> Instant {
        self.0
    }

    /// A local-time-line point given as a `std::time::Instant`.
    pub fn from_std(local: Instant) -> SimInstant {
        SimInstant(local)
    }
}

/// Prints as the `Instant` it wraps, so traces read as they did with `std::time::Instant`.
impl fmt::Debug for SimInstant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Add<Duration> for SimInstant {
    type Output = SimInstant;
    fn add(self, d: Duration) -> SimInstant {
        SimInstant(self.0 + d)
    }
}

impl AddAssign<Duration> for SimInstant {
    fn add_assign(&mut self, d: Duration) {
        self.0 += d;
    }
}

impl Sub<Duration> for SimInstant {
    type Output = SimInstant;
    fn sub(self, d: Duration) -> SimInstant {
        SimInstant(self.0 - d)
    }
}

impl SubAssign<Duration> for SimInstant {
    fn sub_assign(&mut self, d: Duration) {
        self.0 -= d;
    }
}

/// Saturates at zero, as `std::time::Instant`'s does.
impl Sub<SimInstant> for SimInstant {
    type Output = Duration;
    fn sub(self, earlier: SimInstant) -> Duration {
        self.0 - earlier.0
    }
}

impl openraft_rt::Instant for SimInstant {
    fn now() -> Self {
        SimInstant::now()
    }
}

/// Completes once the local clock of the node that created it reads its deadline.
///
/// It arms a madsim timer at the real instant the node's clock is expected to read the
/// deadline (for a node without skew: the deadline itself, and madsim's at-least-1 ms rule
/// applies as before). If the node's drift slowed down meanwhile, it re-arms on waking, so it
/// never completes early in local terms.
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct SimSleep {
    node: Option<NodeId>,
    deadline: SimInstant,
    inner: madsim::time::Sleep,
}

impl SimSleep {
    /// Sleeps until the current node's local clock reads `deadline`.
    pub fn until(deadline: SimInstant) -> SimSleep {
        let node = clock::current_node();
        SimSleep { node, deadline, inner: madsim::time::sleep_until(clock::real_at(node, deadline)) }
    }

    /// Sleeps for `duration` of the current node's local time.
    pub fn new(duration: Duration) -> SimSleep {
        SimSleep::until(SimInstant::now() + duration)
    }

    /// The local deadline.
    pub fn deadline(&self) -> SimInstant {
        self.deadline
    }

    /// The real (madsim) instant the timer is armed for now.
    pub fn real_deadline(&self) -> Instant {
        self.inner.deadline()
    }

    fn local_now(&self) -> SimInstant {
        match self.node {
            Some(node) => clock::local_now_on(node),
            None => SimInstant(Instant::now()),
        }
    }
}

impl Future for SimSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            ready!(Pin::new(&mut self.inner).poll(cx));
            if self.local_now() >= self.deadline {
                return Poll::Ready(());
            }
            // The node's clock slowed down since the timer was armed: wait for the rest.
            // (madsim sleeps at least 1 ms, so this loop always ends.)
            self.inner = madsim::time::sleep_until(clock::real_at(self.node, self.deadline));
        }
    }
}

impl fmt::Debug for SimSleep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimSleep").field("deadline", &self.deadline).field("real", &self.inner.deadline()).finish()
    }
}
