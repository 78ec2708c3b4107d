//! openraft's bounded MPSC channel, over `async-channel` (FIFO wake-ups, weak senders).

use std::future::Future;

use futures::{FutureExt as _, TryFutureExt as _};
use openraft_rt::{Mpsc, MpscReceiver, MpscSender, MpscWeakSender, OptionalSend, SendError, TryRecvError};

/// The MPSC family.
pub struct SimMpsc;

/// Sends with back-pressure: waits while the channel is full.
pub struct SimMpscSender<T>(async_channel::Sender<T>);

/// The single consumer.
pub struct SimMpscReceiver<T>(async_channel::Receiver<T>);

/// A sender that does not keep the channel open.
pub struct SimMpscWeakSender<T>(async_channel::WeakSender<T>);

impl<T> Clone for SimMpscSender<T> {
    fn clone(&self) -> Self {
        SimMpscSender(self.0.clone())
    }
}

impl<T> Clone for SimMpscWeakSender<T> {
    fn clone(&self) -> Self {
        SimMpscWeakSender(self.0.clone())
    }
}

impl Mpsc for SimMpsc {
    type Sender<T: OptionalSend> = SimMpscSender<T>;
    type Receiver<T: OptionalSend> = SimMpscReceiver<T>;
    type WeakSender<T: OptionalSend> = SimMpscWeakSender<T>;

    /// Panics on a zero `buffer`, as tokio's does.
    fn channel<T: OptionalSend>(buffer: usize) -> (Self::Sender<T>, Self::Receiver<T>) {
        let (tx, rx) = async_channel::bounded(buffer);
        (SimMpscSender(tx), SimMpscReceiver(rx))
    }
}

impl<T: OptionalSend> MpscSender<SimMpsc, T> for SimMpscSender<T> {
    fn send(&self, msg: T) -> impl Future<Output = Result<(), SendError<T>>> + OptionalSend {
        self.0.send(msg).map_err(|e| SendError(e.0))
    }

    fn downgrade(&self) -> SimMpscWeakSender<T> {
        SimMpscWeakSender(self.0.downgrade())
    }
}

impl<T: OptionalSend> MpscReceiver<T> for SimMpscReceiver<T> {
    /// `None` once every sender is gone and the buffer is drained.
    fn recv(&mut self) -> impl Future<Output = Option<T>> + OptionalSend {
        self.0.recv().map(Result::ok)
    }

    fn try_recv(&mut self) -> Result<T, TryRecvError> {
        self.0.try_recv().map_err(|e| match e {
            async_channel::TryRecvError::Empty => TryRecvError::Empty,
            async_channel::TryRecvError::Closed => TryRecvError::Disconnected,
        })
    }
}

impl<T: OptionalSend> MpscWeakSender<SimMpsc, T> for SimMpscWeakSender<T> {
    fn upgrade(&self) -> Option<SimMpscSender<T>> {
        self.0.upgrade().map(SimMpscSender)
    }
}
