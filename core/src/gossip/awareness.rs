//! Lifeguard's local health awareness: a score that grows when this node misses acks and nacks
//! or has to refute a suspicion of itself, and stretches its own probe timers.

#[derive(Clone, Debug)]
pub(super) struct Awareness {
    max: u32,
    score: u32,
}

impl Awareness {
    /// `max_multiplier` bounds the stretch: the score stays below it.
    pub(super) fn new(max_multiplier: u32) -> Awareness {
        Awareness { max: max_multiplier.max(1), score: 0 }
    }

    pub(super) fn apply(&mut self, delta: i64) {
        let score = (self.score as i64 + delta).clamp(0, self.max as i64 - 1);
        self.score = score as u32;
    }

    /// 0 is healthy.
    pub(super) fn score(&self) -> u32 {
        self.score
    }

    pub(super) fn scale(&self, ms: u64) -> u64 {
        ms * (self.score as u64 + 1)
    }
}
