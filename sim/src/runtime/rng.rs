//! openraft's per-thread RNG, backed by madsim's seeded one.

use std::convert::Infallible;

use madsim::rand::RngCore as _;

/// A handle on madsim's global RNG, implementing rand 0.10's `Rng` (what openraft asks for).
///
/// Every draw advances the one generator of the simulation, so openraft's election timeouts
/// interleave with madsim's own scheduling draws in a seed-determined order.
#[derive(Clone)]
pub struct MadsimRng {
    inner: madsim::rand::GlobalRng,
}

impl MadsimRng {
    /// The RNG of the current madsim world. Panics outside one: there is no seed to use.
    pub fn current() -> Self {
        MadsimRng { inner: madsim::rand::thread_rng() }
    }
}

impl rand_core010::TryRng for MadsimRng {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        Ok(self.inner.next_u32())
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        Ok(self.inner.next_u64())
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        self.inner.fill_bytes(dst);
        Ok(())
    }
}
