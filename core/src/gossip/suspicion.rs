//! Lifeguard's dynamic suspicion timeout: it starts at its maximum and shrinks, on a log scale,
//! as independent members confirm the suspicion, down to its minimum at `k` confirmations.

use std::collections::BTreeSet;

#[derive(Clone, Debug)]
pub(super) struct Suspicion {
    /// The incarnation suspected.
    pub(super) incarnation: u32,
    /// Members that suspected it (the first one included).
    from: BTreeSet<String>,
    /// Confirmations that bring the timeout to its minimum.
    k: u32,
    start_ms: u64,
    min_ms: u64,
    max_ms: u64,
    pub(super) deadline_ms: u64,
}

impl Suspicion {
    pub(super) fn new(now_ms: u64, incarnation: u32, from: &str, k: u32, min_ms: u64, max_ms: u64) -> Suspicion {
        let max_ms = if k == 0 { min_ms } else { max_ms.max(min_ms) };
        Suspicion {
            incarnation,
            from: BTreeSet::from([from.to_string()]),
            k,
            start_ms: now_ms,
            min_ms,
            max_ms,
            deadline_ms: now_ms + max_ms,
        }
    }

    /// A new, independent confirmation: `true` if it counted (and the deadline moved).
    pub(super) fn confirm(&mut self, from: &str) -> bool {
        let confirmations = self.from.len() as u32 - 1;
        if confirmations >= self.k || self.from.contains(from) {
            return false;
        }
        self.from.insert(from.to_string());
        self.deadline_ms = self.start_ms + timeout_ms(self.from.len() as u32 - 1, self.k, self.min_ms, self.max_ms);
        true
    }
}

/// The timeout after `n` of `k` confirmations.
pub(super) fn timeout_ms(n: u32, k: u32, min_ms: u64, max_ms: u64) -> u64 {
    if k == 0 {
        return min_ms;
    }
    let frac = ((n as f64) + 1.0).ln() / ((k as f64) + 1.0).ln();
    let t = max_ms as f64 - frac * (max_ms - min_ms) as f64;
    (t.floor() as u64).max(min_ms)
}
