//! openraft's oneshot channel, over `futures::channel::oneshot`.

use futures::channel::oneshot;
use openraft_rt::{Oneshot, OneshotSender, OptionalSend};

/// The oneshot family.
pub struct SimOneshot;

/// Sends the one value.
pub struct SimOneshotSender<T>(oneshot::Sender<T>);

impl Oneshot for SimOneshot {
    type Sender<T: OptionalSend> = SimOneshotSender<T>;
    type Receiver<T: OptionalSend> = oneshot::Receiver<T>;
    type ReceiverError = oneshot::Canceled;

    fn channel<T: OptionalSend>() -> (Self::Sender<T>, Self::Receiver<T>) {
        let (tx, rx) = oneshot::channel();
        (SimOneshotSender(tx), rx)
    }
}

impl<T: OptionalSend> OneshotSender<T> for SimOneshotSender<T> {
    fn send(self, t: T) -> Result<(), T> {
        self.0.send(t)
    }
}
