//! openraft's watch channel: the latest value plus a version, receivers woken in FIFO order.
//!
//! Written here rather than borrowed from tokio because tokio's watch spreads its waiters
//! over eight notifiers chosen by a thread-local RNG that madsim does not seed.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard};

use event_listener::Event;
use openraft_rt::watch::SendError;
use openraft_rt::{OptionalSend, OptionalSync, RecvError, Watch, WatchReceiver, WatchSender};

/// The watch family.
pub struct SimWatch;

struct Shared<T> {
    value: RwLock<T>,
    /// Bumped, while `value` is write-locked, for every change receivers must hear about.
    version: AtomicU64,
    senders: AtomicUsize,
    receivers: AtomicUsize,
    /// Set when the last sender is dropped.
    closed: AtomicBool,
    /// Fired after every bump of `version` and on close.
    changed: Event,
}

impl<T> Shared<T> {
    fn read(&self) -> RwLockReadGuard<'_, T> {
        self.value.read().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Publishes values. Clones share the channel; it closes when the last one is dropped.
pub struct SimWatchSender<T> {
    shared: Arc<Shared<T>>,
}

/// Observes the latest value, and waits for newer ones.
pub struct SimWatchReceiver<T> {
    shared: Arc<Shared<T>>,
    /// The version this receiver has marked seen.
    seen: u64,
}

impl Watch for SimWatch {
    type Sender<T: OptionalSend + OptionalSync> = SimWatchSender<T>;
    type Receiver<T: OptionalSend + OptionalSync> = SimWatchReceiver<T>;
    type Ref<'a, T: OptionalSend + 'a> = RwLockReadGuard<'a, T>;

    fn channel<T: OptionalSend + OptionalSync>(init: T) -> (Self::Sender<T>, Self::Receiver<T>) {
        let shared = Arc::new(Shared {
            value: RwLock::new(init),
            version: AtomicU64::new(0),
            senders: AtomicUsize::new(1),
            receivers: AtomicUsize::new(1),
            closed: AtomicBool::new(false),
            changed: Event::new(),
        });
        (SimWatchSender { shared: shared.clone() }, SimWatchReceiver { shared, seen: 0 })
    }
}

impl<T> Clone for SimWatchSender<T> {
    fn clone(&self) -> Self {
        self.shared.senders.fetch_add(1, Ordering::SeqCst);
        SimWatchSender { shared: self.shared.clone() }
    }
}

impl<T> Drop for SimWatchSender<T> {
    fn drop(&mut self) {
        if self.shared.senders.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.shared.closed.store(true, Ordering::SeqCst);
            self.shared.changed.notify(usize::MAX);
        }
    }
}

impl<T> Clone for SimWatchReceiver<T> {
    fn clone(&self) -> Self {
        self.shared.receivers.fetch_add(1, Ordering::SeqCst);
        SimWatchReceiver { shared: self.shared.clone(), seen: self.seen }
    }
}

impl<T> Drop for SimWatchReceiver<T> {
    fn drop(&mut self) {
        let before = self.shared.receivers.fetch_sub(1, Ordering::SeqCst);
        assert!(before > 0, "watch receiver count underflow");
    }
}

impl<T: OptionalSend + OptionalSync> WatchSender<SimWatch, T> for SimWatchSender<T> {
    /// Fails, leaving the value as it was, when no receiver is left (as tokio's does).
    fn send(&self, value: T) -> Result<(), SendError<T>> {
        if self.shared.receivers.load(Ordering::SeqCst) == 0 {
            return Err(SendError(value));
        }
        self.send_if_modified(|current| {
            *current = value;
            true
        });
        Ok(())
    }

    fn send_if_modified<F>(&self, modify: F) -> bool
    where
        F: FnOnce(&mut T) -> bool,
    {
        let modified = {
            let mut value = self.shared.value.write().unwrap_or_else(PoisonError::into_inner);
            let modified = modify(&mut value);
            if modified {
                self.shared.version.fetch_add(1, Ordering::SeqCst);
            }
            modified
        };
        if modified {
            self.shared.changed.notify(usize::MAX);
        }
        modified
    }

    fn borrow_watched(&self) -> RwLockReadGuard<'_, T> {
        self.shared.read()
    }

    /// The new receiver has seen the current value.
    fn subscribe(&self) -> SimWatchReceiver<T> {
        self.shared.receivers.fetch_add(1, Ordering::SeqCst);
        let seen = {
            let _value = self.shared.read();
            self.shared.version.load(Ordering::SeqCst)
        };
        SimWatchReceiver { shared: self.shared.clone(), seen }
    }
}

impl<T: OptionalSend + OptionalSync> WatchReceiver<SimWatch, T> for SimWatchReceiver<T> {
    /// An unseen value wins over a closed channel, as in tokio.
    async fn changed(&mut self) -> Result<(), RecvError> {
        loop {
            // Listen before looking, so a send between the look and the wait is not lost.
            let listener = self.shared.changed.listen();
            let version = self.shared.version.load(Ordering::SeqCst);
            if version != self.seen {
                self.seen = version;
                return Ok(());
            }
            if self.shared.closed.load(Ordering::SeqCst) {
                return Err(RecvError(()));
            }
            listener.await;
        }
    }

    fn borrow_watched(&self) -> RwLockReadGuard<'_, T> {
        self.shared.read()
    }

    fn borrow_and_update(&mut self) -> RwLockReadGuard<'_, T> {
        let value = self.shared.read();
        // Stable while the read lock is held: writers bump it under the write lock.
        self.seen = self.shared.version.load(Ordering::SeqCst);
        value
    }
}
