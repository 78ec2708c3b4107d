//! openraft's async mutex, over `futures::lock::Mutex` (no hidden randomness in who wakes).

use std::future::Future;

use openraft_rt::OptionalSend;

/// An async mutex.
pub struct SimMutex<T>(futures::lock::Mutex<T>);

impl<T: OptionalSend + 'static> openraft_rt::Mutex<T> for SimMutex<T> {
    type Guard<'a> = futures::lock::MutexGuard<'a, T>;

    fn new(value: T) -> Self {
        SimMutex(futures::lock::Mutex::new(value))
    }

    fn lock(&self) -> impl Future<Output = Self::Guard<'_>> + OptionalSend {
        self.0.lock()
    }
}
