//! Index monotonicity as clients observe it.
//!
//! Property: **monotonic reads** of `X-Consul-Index` (session guarantees, Terry et al., "Session
//! Guarantees for Weakly Consistent Replicated Data", 1994), in the form Consul's blocking-query
//! contract needs: for one client repeating one query, successive responses never carry a lower
//! `X-Consul-Index`. A client's next blocking query passes the last index it saw; an index that
//! went backwards makes it wait for changes it has already seen, or miss them. Consul documents
//! two lawful exceptions, which the workload records as [`IndexEvent::Reset`]: KV tombstones
//! reaped (a recurse query's max ModifyIndex can drop) and a snapshot restore. Also checked:
//! the index is never 0 (Consul answers at least 1, and clients treat 0 as "don't block").
//!
//! Rule: for each (client, query), order its observations by receipt time (ties: recording
//! order). Each observation's index must be ≥ the previous one's, unless a reset for that query
//! (or for all queries) happened in `(previous receipt, this receipt]`. Comparing neighbours is
//! enough: a non-decreasing chain between resets is non-decreasing throughout.
//!
//! Stale reads (`?stale`) served by different servers can lawfully go backwards; a workload that
//! switches servers with stale reads must record a reset at the switch, or not use this checker.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::time::Duration;

use super::history::{ClientId, IndexEvent};
use super::{Violation, Violations};

const CHECKER: &str = "monotonic";

/// One response of a (client, query): (receipt time, event number, X-Consul-Index).
type Observation = (Duration, usize, u64);

/// Checks every (client, query)'s observed indexes.
pub fn check(events: &[IndexEvent]) -> Vec<Violation> {
    let mut violations = Violations::new(CHECKER);
    // query (None: all queries) → reset times.
    let mut resets: BTreeMap<Option<&str>, BTreeSet<Duration>> = BTreeMap::new();
    let mut observed: BTreeMap<(ClientId, &str), Vec<Observation>> = BTreeMap::new();
    for (i, event) in events.iter().enumerate() {
        match event {
            IndexEvent::Observed { client, query, at, index } => {
                if *index == 0 {
                    violations.push(format!(
                        "client {client} query {query:?}: X-Consul-Index 0 at {at:?} (event #{i}); Consul answers \
                         at least 1"
                    ));
                }
                observed.entry((*client, query.as_str())).or_default().push((*at, i, *index));
            }
            IndexEvent::Reset { query, at } => {
                resets.entry(query.as_deref()).or_default().insert(*at);
            }
        }
    }
    let reset_between = |query: &str, after: Duration, until: Duration| {
        let range = (Bound::Excluded(after), Bound::Included(until));
        [None, Some(query)]
            .iter()
            .any(|scope| resets.get(scope).is_some_and(|times| times.range(range).next().is_some()))
    };
    for ((client, query), mut list) in observed {
        list.sort_unstable();
        for pair in list.windows(2) {
            let ((at_before, event_before, before), (at, event, index)) = (pair[0], pair[1]);
            if index < before && !reset_between(query, at_before, at) {
                violations.push(format!(
                    "client {client} query {query:?}: X-Consul-Index went backwards from {before} (at {at_before:?}, \
                     event #{event_before}) to {index} (at {at:?}, event #{event}) with no reset in between"
                ));
            }
        }
    }
    violations.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn seen(client: ClientId, query: &str, at: u64, index: u64) -> IndexEvent {
        IndexEvent::Observed { client, query: query.into(), at: t(at), index }
    }

    fn reset(query: Option<&str>, at: u64) -> IndexEvent {
        IndexEvent::Reset { query: query.map(str::to_string), at: t(at) }
    }

    #[test]
    fn non_decreasing_indexes_pass() {
        let events = [seen(1, "kv/a", 1, 3), seen(1, "kv/a", 2, 3), seen(1, "kv/a", 3, 9), seen(1, "kv/b", 4, 1)];
        assert_eq!(check(&events), Vec::new());
        assert_eq!(check(&[]), Vec::new());
    }

    #[test]
    fn an_index_going_backwards_is_reported() {
        let events = [seen(1, "kv/a", 1, 5), seen(1, "kv/a", 2, 7), seen(1, "kv/a", 3, 6)];
        let violations = check(&events);
        assert_eq!(violations.len(), 1);
        assert_eq!(
            violations[0].message,
            "client 1 query \"kv/a\": X-Consul-Index went backwards from 7 (at 2ms, event #1) to 6 (at 3ms, \
             event #2) with no reset in between"
        );
    }

    #[test]
    fn observations_are_ordered_by_receipt_time_not_recording_order() {
        let events = [seen(1, "q", 5, 9), seen(1, "q", 1, 2)];
        assert_eq!(check(&events), Vec::new());
    }

    #[test]
    fn clients_and_queries_are_independent() {
        // A stale follower answers client 2 with a lower index than the leader gave client 1.
        let events = [seen(1, "q", 1, 10), seen(2, "q", 2, 4), seen(1, "other", 3, 1)];
        assert_eq!(check(&events), Vec::new());
    }

    #[test]
    fn a_reset_in_between_excuses_going_backwards() {
        let global = [seen(1, "q", 1, 10), reset(None, 2), seen(1, "q", 3, 4)];
        assert_eq!(check(&global), Vec::new());
        let scoped = [seen(1, "q", 1, 10), reset(Some("q"), 2), seen(1, "q", 3, 4)];
        assert_eq!(check(&scoped), Vec::new());
        // A reset exactly at the later receipt counts; one at the earlier receipt does not.
        let at_end = [seen(1, "q", 1, 10), reset(None, 3), seen(1, "q", 3, 4)];
        assert_eq!(check(&at_end), Vec::new());
        let at_start = [seen(1, "q", 1, 10), reset(None, 1), seen(1, "q", 3, 4)];
        assert_eq!(check(&at_start).len(), 1);
    }

    #[test]
    fn a_reset_elsewhere_or_at_another_time_excuses_nothing() {
        let other_query = [seen(1, "q", 1, 10), reset(Some("other"), 2), seen(1, "q", 3, 4)];
        assert_eq!(check(&other_query).len(), 1);
        let too_late = [seen(1, "q", 1, 10), seen(1, "q", 3, 4), reset(None, 5)];
        assert_eq!(check(&too_late).len(), 1);
        // A reset excuses one drop, not a later one.
        let twice = [seen(1, "q", 1, 10), reset(None, 2), seen(1, "q", 3, 4), seen(1, "q", 4, 5), seen(1, "q", 5, 3)];
        assert_eq!(check(&twice).len(), 1);
    }

    #[test]
    fn index_zero_is_reported() {
        let violations = check(&[seen(3, "q", 1, 0)]);
        assert_eq!(violations.len(), 1);
        assert!(violations[0].message.contains("X-Consul-Index 0"), "{violations:?}");
    }
}
