//! The event queue: events in order of virtual time, ties in the order they were scheduled, so
//! a run never depends on how a heap happens to order equal keys.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

/// Most events pending at once: a guard against a driver bug that schedules without end
/// (a 1,000-member pool keeps a few tens of thousands pending).
pub const QUEUE_EVENTS_MAX: usize = 50_000_000;

/// Events keyed by `(time_ms, sequence number)`.
pub(super) struct Queue<E> {
    heap: BinaryHeap<Reverse<Entry<E>>>,
    next_seq: u64,
}

struct Entry<E> {
    at_ms: u64,
    seq: u64,
    event: E,
}

impl<E> Entry<E> {
    fn key(&self) -> (u64, u64) {
        (self.at_ms, self.seq)
    }
}

impl<E> PartialEq for Entry<E> {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl<E> Eq for Entry<E> {}

impl<E> PartialOrd for Entry<E> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<E> Ord for Entry<E> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key().cmp(&other.key())
    }
}

impl<E> Queue<E> {
    pub(super) fn new() -> Queue<E> {
        Queue { heap: BinaryHeap::new(), next_seq: 0 }
    }

    pub(super) fn push(&mut self, at_ms: u64, event: E) {
        assert!(self.heap.len() < QUEUE_EVENTS_MAX, "more than {QUEUE_EVENTS_MAX} events pending: a scheduling loop");
        self.heap.push(Reverse(Entry { at_ms, seq: self.next_seq, event }));
        self.next_seq += 1;
    }

    /// The earliest event, if it is due at or before `until_ms`.
    pub(super) fn pop_until(&mut self, until_ms: u64) -> Option<(u64, E)> {
        if self.heap.peek()?.0.at_ms > until_ms {
            return None;
        }
        self.heap.pop().map(|Reverse(e)| (e.at_ms, e.event))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_come_out_by_time_then_in_scheduling_order() {
        let mut q = Queue::new();
        q.push(5, "late");
        q.push(1, "first");
        q.push(3, "tie-a");
        q.push(3, "tie-b");
        assert_eq!(q.pop_until(0), None, "nothing due yet");
        let order: Vec<_> = std::iter::from_fn(|| q.pop_until(4)).collect();
        assert_eq!(order, vec![(1, "first"), (3, "tie-a"), (3, "tie-b")]);
        assert_eq!(q.pop_until(u64::MAX), Some((5, "late")));
        assert_eq!(q.pop_until(u64::MAX), None);
    }
}
