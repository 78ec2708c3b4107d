//! A nameable timeout future over [`SimSleep`] (madsim's own timeout returns an opaque type).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use madsim::time::error::Elapsed;

use super::SimSleep;

pin_project_lite::pin_project! {
    /// Resolves to the future's output, or to [`Elapsed`] once the sleep ends first.
    ///
    /// Biased: the future is polled before the deadline, so a future that is ready at the
    /// deadline wins, the same on every run.
    #[must_use = "futures do nothing unless you `.await` or poll them"]
    pub struct Timeout<F> {
        #[pin]
        future: F,
        sleep: SimSleep,
    }
}

impl<F> Timeout<F> {
    pub(super) fn new(future: F, sleep: SimSleep) -> Self {
        Timeout { future, sleep }
    }
}

impl<F: Future> Future for Timeout<F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(output) = this.future.poll(cx) {
            return Poll::Ready(Ok(output));
        }
        match Pin::new(this.sleep).poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(Elapsed)),
            Poll::Pending => Poll::Pending,
        }
    }
}
