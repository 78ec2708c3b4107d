//! Safety of Consul-style locks: mutual exclusion, LockIndex fencing, lock-delay.
//!
//! Properties:
//!
//! - **Mutual exclusion** (the safety property of a lock service; Jepsen's lock tests, e.g. its
//!   etcd and Consul analyses): a lock key never has two live holders at once. "Holder" means the
//!   server's truth — the key's `Session` field — not a client's belief: a paused client may
//!   still *believe* it holds an expired lock, which Consul permits and which fencing tokens and
//!   lock-delay exist to tame (Kleppmann, "How to do distributed locking", 2016).
//! - **Fencing by LockIndex** (Kleppmann's *fencing tokens*; Chubby's sequencers, Burrows 2006):
//!   successive acquisitions of a lock by different sessions, ordered in real time, carry
//!   strictly increasing `LockIndex`; no two sessions' acquisitions share one.
//! - **Lock-delay** (Consul's session semantics, after Chubby's lock-delay): after a session is
//!   invalidated, its keys cannot be acquired for the session's lock-delay.
//!
//! # The holding interval
//!
//! Clients never see the moment a lock changes hands, only requests with intervals. The checker
//! therefore computes, for each holding, a *certain interval*: times at which the holding
//! demonstrably existed, as far as any observer could tell. Two certain intervals of different
//! sessions that overlap are a violation that no correct server can produce; a correct server
//! never fails the check (soundness), and a real double holder is caught whenever the clients'
//! observations pin it down.
//!
//! Per (session `S`, key `L`), the session's acquire and release requests on `L` cut time into
//! *segments*: a segment starts at one such request's invocation and ends at the next one's
//! invocation (or never). Only a segment started by an acquire that answered `true` or was
//! indeterminate can hold a certain interval:
//!
//! - *Proofs* of the holding are requests whose linearization point lies in it: the acquire itself
//!   if it answered `true`; every consistent read of `L` that showed `Session == S` and lies
//!   entirely inside the segment; and the next request if it is a release that answered `true`
//!   (`S` held the lock just before it).
//! - From proofs alone: if the holding contains a point in each proof's interval, it contains
//!   `[min completion, max invocation)` of the proofs. This is the whole rule when session ends
//!   are [`SessionEnds::Unknown`].
//! - With [`SessionEnds::Complete`], a holding that started lasts until `S` releases it or the
//!   session ends, so the certain interval extends to the earliest of: the next acquire or
//!   release request of `S` on `L` (its invocation: it cannot take effect earlier), and the
//!   session's recorded end (see [`SessionEnd`](super::history::SessionEnd) for why its `at`
//!   bounds any observation of the end). Deleting a lock key also frees it: the lock workload
//!   must not delete lock keys.
//!
//! So for an acquire answered `true` with no later confirmation, the certain interval is
//! `[acquire completion, min(release invocation, session end))`. Its start is the completion,
//! not the invocation, because the acquire may take effect as late as its completion; its end
//! is the release's invocation, not its completion, because the release may take effect as
//! early as that.
//!
//! This reasoning needs each session's acquire/release requests on a key to be sequential (one
//! invoked after the previous completed) and to have definite effects. From the first request
//! that breaks this — one invoked before the previous completed, or any request after an
//! indeterminate acquire or release (its effect may land anywhere later) — the session's later
//! segments on that key are not trusted: they yield no certain interval. Workloads should
//! abandon a session after a timeout, as Jepsen replaces a crashed process.
//!
//! A read that shows any other holder (or none) while lying entirely inside a certain interval is
//! reported too: it contradicts the same facts. Reads must be `?consistent`.
//!
//! # Fencing
//!
//! Acquisitions with a known LockIndex ([`LockOutput::Acquired`]): if one completed before
//! another was invoked, the later index is `>` the earlier for different sessions (`≥` for the
//! same session, which keeps its index on re-acquiring while holding); two sessions never share an
//! index. Sound because the key's LockIndex only grows (the workload must use Behavior `release`,
//! since a deleted and re-created key starts again from 1).
//!
//! # Lock-delay
//!
//! Given windows in which a key must not be acquired, an acquire answered `true` whose whole
//! interval lies inside a window of its key is reported. The window must be stated in the same
//! clock as the op times and be conservative for clock skew (Consul measures lock-delay on the
//! leader's clock): e.g. start at the completion of the request that observed the invalidation,
//! and shorten the length by the largest skew the scenario allows.

use std::collections::BTreeMap;
use std::time::Duration;

use super::history::{LockInput, LockOp, LockOutput, Outcome, SessionEnds};
use super::{Violation, Violations};

const CHECKER: &str = "lock_safety";

/// A span of time in which `key` must not be acquired (a lock-delay after its holder's session
/// was invalidated).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockDelayWindow {
    pub key: String,
    pub start: Duration,
    pub length: Duration,
}

/// Runs all three lock checks.
pub fn check(ops: &[LockOp], session_ends: &SessionEnds, lock_delays: &[LockDelayWindow]) -> Vec<Violation> {
    let mut out = check_mutual_exclusion(ops, session_ends);
    out.extend(check_fencing(ops));
    out.extend(check_lock_delay(ops, lock_delays));
    out
}

/// A span in which `session` demonstrably held `key`.
#[derive(Clone, Debug)]
struct Holding<'a> {
    key: &'a str,
    session: &'a str,
    /// The acquire that started the segment (index in the history).
    acquire: usize,
    /// The proofs (indices in the history), for reports.
    proofs: Vec<usize>,
    start: Duration,
    /// `None`: to the end of time.
    end: Option<Duration>,
}

impl Holding<'_> {
    fn describe(&self, ops: &[LockOp]) -> String {
        let end = self.end.map_or("∞".to_string(), |e| format!("{e:?}"));
        let proofs: Vec<String> = self.proofs.iter().map(|p| format!("#{p}")).collect();
        format!(
            "session {:?} certainly held it during [{:?}, {end}) (acquire op #{} {}; proofs {})",
            self.session,
            self.start,
            self.acquire,
            ops[self.acquire],
            proofs.join(", ")
        )
    }

    /// Whether `[from, to]` lies entirely inside the certain interval.
    fn covers(&self, from: Duration, to: Duration) -> bool {
        self.start <= from && self.end.is_none_or(|end| to < end)
    }
}

fn session_of(op: &LockOp) -> Option<&str> {
    match &op.input {
        LockInput::Acquire { session } | LockInput::Release { session } => Some(session),
        LockInput::Read => None,
    }
}

/// Computes every certain holding interval (see the module docs).
fn holdings<'a>(ops: &'a [LockOp], session_ends: &SessionEnds) -> Vec<Holding<'a>> {
    let ends: Option<BTreeMap<&str, Duration>> = match session_ends {
        SessionEnds::Unknown => None,
        SessionEnds::Complete(list) => {
            let mut map: BTreeMap<&str, Duration> = BTreeMap::new();
            for end in list {
                let at = map.entry(end.session.as_str()).or_insert(end.at);
                *at = (*at).min(end.at);
            }
            Some(map)
        }
    };
    // (key, session) → that session's acquire/release ops on the key.
    let mut boundaries: BTreeMap<(&str, &str), Vec<usize>> = BTreeMap::new();
    // key → reads of the key.
    let mut reads: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, op) in ops.iter().enumerate() {
        assert!(op.invoke <= op.complete, "op #{i} completes before its invocation: {op}");
        match session_of(op) {
            Some(session) => boundaries.entry((op.key.as_str(), session)).or_default().push(i),
            None => reads.entry(op.key.as_str()).or_default().push(i),
        }
    }
    let mut out = Vec::new();
    for ((key, session), mut list) in boundaries {
        list.sort_by_key(|&i| (ops[i].invoke, i));
        let key_reads = reads.get(key).map_or(&[][..], |r| r.as_slice());
        for (n, &b) in list.iter().enumerate() {
            let next = list.get(n + 1).copied();
            // Untrusted from here on if the previous request was indeterminate or is overlapped by
            // this one (earlier pairs were checked in earlier iterations).
            if let Some(prev) = n.checked_sub(1).map(|p| list[p]) {
                if ops[prev].is_indeterminate() || ops[b].invoke < ops[prev].complete {
                    break;
                }
            }
            let op = &ops[b];
            if !matches!(op.input, LockInput::Acquire { .. }) || op.is_failed() {
                continue;
            }
            let segment_end = next.map(|x| ops[x].invoke);
            let mut proofs: Vec<usize> = Vec::new();
            if op.is_ok() {
                proofs.push(b);
            }
            for &r in key_reads {
                let read = &ops[r];
                let shows_session = matches!(
                    read.ok(),
                    Some(LockOutput::Read { holder: Some(holder), .. }) if holder == session
                );
                let inside = op.invoke <= read.invoke && segment_end.is_none_or(|end| read.complete <= end);
                if shows_session && inside {
                    proofs.push(r);
                }
            }
            if let Some(x) = next {
                if matches!(ops[x].input, LockInput::Release { .. }) && ops[x].is_ok() {
                    proofs.push(x);
                }
            }
            if proofs.is_empty() {
                continue;
            }
            let start = proofs.iter().map(|&p| ops[p].complete).min().expect("not empty");
            let proven_to = proofs.iter().map(|&p| ops[p].invoke).max().expect("not empty");
            let end = match &ends {
                None => Some(proven_to),
                Some(ends) => {
                    let lasts_to = match (segment_end, ends.get(session)) {
                        (Some(a), Some(&b)) => Some(a.min(b)),
                        (a, b) => a.or(b.copied()),
                    };
                    lasts_to.map(|t| t.max(proven_to))
                }
            };
            if end.is_some_and(|end| end <= start) {
                continue;
            }
            proofs.sort_unstable();
            out.push(Holding { key, session, acquire: b, proofs, start, end });
        }
    }
    out.sort_by(|a, b| (a.key, a.start, a.session, a.acquire).cmp(&(b.key, b.start, b.session, b.acquire)));
    out
}

/// Mutual exclusion: no two sessions' certain intervals on one key overlap, and no consistent
/// read inside a certain interval shows another holder.
pub fn check_mutual_exclusion(ops: &[LockOp], session_ends: &SessionEnds) -> Vec<Violation> {
    let mut violations = Violations::new(CHECKER);
    let holdings = holdings(ops, session_ends);
    // Sorted by (key, start): each holding only needs comparing with the ones starting before it
    // ends. In a correct history those are none, so the inner loop is short.
    for (i, a) in holdings.iter().enumerate() {
        for b in holdings[i + 1..].iter().take_while(|b| b.key == a.key && a.end.is_none_or(|end| b.start < end)) {
            if b.session != a.session {
                violations.push(format!(
                    "two live holders of lock {:?}: {}; and {}",
                    a.key,
                    a.describe(ops),
                    b.describe(ops)
                ));
            }
        }
    }
    for (r, read) in ops.iter().enumerate() {
        let Some(LockOutput::Read { holder, .. }) = read.ok() else { continue };
        for h in holdings.iter().filter(|h| h.key == read.key && h.covers(read.invoke, read.complete)) {
            if holder.as_deref() != Some(h.session) {
                violations.push(format!(
                    "read op #{r} {read} saw holder {holder:?} of lock {:?} while {}",
                    h.key,
                    h.describe(ops)
                ));
            }
        }
    }
    violations.finish()
}

/// Fencing: LockIndex strictly increases across sessions in real-time order and is never shared
/// by two sessions.
pub fn check_fencing(ops: &[LockOp]) -> Vec<Violation> {
    let mut violations = Violations::new(CHECKER);
    // key → acquisitions with a known LockIndex: (op index, session, lock index).
    let mut by_key: BTreeMap<&str, Vec<(usize, &str, u64)>> = BTreeMap::new();
    for (i, op) in ops.iter().enumerate() {
        if let (LockInput::Acquire { session }, Some(LockOutput::Acquired { lock_index: Some(index) })) =
            (&op.input, op.ok())
        {
            by_key.entry(op.key.as_str()).or_default().push((i, session, *index));
        }
    }
    for (key, acquisitions) in &by_key {
        // Shared indexes.
        let mut by_index: BTreeMap<u64, Vec<(usize, &str)>> = BTreeMap::new();
        for &(i, session, index) in acquisitions {
            by_index.entry(index).or_default().push((i, session));
        }
        for (index, list) in &by_index {
            let (first, first_session) = list[0];
            if let Some(&(other, other_session)) = list.iter().find(|(_, s)| *s != first_session) {
                violations.push(format!(
                    "lock {key:?}: sessions {first_session:?} and {other_session:?} both acquired it with LockIndex \
                     {index}: op #{first} {} and op #{other} {}",
                    ops[first], ops[other]
                ));
            }
        }
        // Real-time order. Sweep the acquisitions by invocation, folding in those that completed
        // strictly before: keep the highest index seen, and the highest of any other session.
        let mut by_complete: Vec<(usize, &str, u64)> = acquisitions.clone();
        by_complete.sort_by_key(|&(i, _, _)| (ops[i].complete, i));
        let mut by_invoke: Vec<(usize, &str, u64)> = acquisitions.clone();
        by_invoke.sort_by_key(|&(i, _, _)| (ops[i].invoke, i));
        let mut folded = 0;
        let mut best: Option<(usize, &str, u64)> = None;
        let mut best_other: Option<(usize, &str, u64)> = None;
        for &(later, session, index) in &by_invoke {
            while folded < by_complete.len() && ops[by_complete[folded].0].complete < ops[later].invoke {
                let candidate = by_complete[folded];
                folded += 1;
                match best {
                    Some(b) if candidate.2 <= b.2 => {
                        if candidate.1 != b.1 && best_other.is_none_or(|o| candidate.2 > o.2) {
                            best_other = Some(candidate);
                        }
                    }
                    _ => {
                        if let Some(b) = best {
                            if b.1 != candidate.1 {
                                best_other = Some(b);
                            }
                        }
                        best = Some(candidate);
                    }
                }
            }
            // The earlier acquisition from another session with the highest index.
            let rival = match best {
                Some(b) if b.1 != session => Some(b),
                _ => best_other.filter(|o| o.1 != session),
            };
            let same = best.filter(|b| b.1 == session);
            if let Some((earlier, earlier_session, earlier_index)) = rival {
                if index <= earlier_index {
                    violations.push(format!(
                        "lock {key:?}: LockIndex did not increase: op #{earlier} by {earlier_session:?} got \
                         {earlier_index} and completed before op #{later} by {session:?} began, which got {index} \
                         ({} then {})",
                        ops[earlier], ops[later]
                    ));
                }
            }
            if let Some((earlier, _, earlier_index)) = same {
                if index < earlier_index {
                    violations.push(format!(
                        "lock {key:?}: LockIndex went backwards for session {session:?}: op #{earlier} got \
                         {earlier_index}, the later op #{later} got {index}"
                    ));
                }
            }
        }
    }
    violations.finish()
}

/// Lock-delay: no acquire answered `true` entirely inside a lock-delay window of its key.
pub fn check_lock_delay(ops: &[LockOp], windows: &[LockDelayWindow]) -> Vec<Violation> {
    let mut violations = Violations::new(CHECKER);
    for window in windows {
        let window_end = window.start.saturating_add(window.length);
        for (i, op) in ops.iter().enumerate() {
            let acquired = matches!(op.input, LockInput::Acquire { .. }) && matches!(op.outcome, Outcome::Ok(_));
            if acquired && op.key == window.key && window.start <= op.invoke && op.complete < window_end {
                violations.push(format!(
                    "lock {:?} acquired inside its lock-delay [{:?}, {window_end:?}): op #{i} {op}",
                    window.key, window.start
                ));
            }
        }
    }
    violations.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::history::{Op, SessionEnd};

    fn t(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn lock_op(client: u64, input: LockInput, span: (u64, u64), outcome: Outcome<LockOutput>) -> LockOp {
        Op { client, key: "L".into(), input, invoke: t(span.0), complete: t(span.1), outcome }
    }

    fn acquire(session: &str, span: (u64, u64), lock_index: Option<u64>) -> LockOp {
        let input = LockInput::Acquire { session: session.into() };
        lock_op(0, input, span, Outcome::Ok(LockOutput::Acquired { lock_index }))
    }

    fn acquire_with(session: &str, span: (u64, u64), outcome: Outcome<LockOutput>) -> LockOp {
        lock_op(0, LockInput::Acquire { session: session.into() }, span, outcome)
    }

    fn release(session: &str, span: (u64, u64)) -> LockOp {
        lock_op(0, LockInput::Release { session: session.into() }, span, Outcome::Ok(LockOutput::Released))
    }

    fn read(holder: Option<&str>, span: (u64, u64)) -> LockOp {
        let output = LockOutput::Read { holder: holder.map(str::to_string), lock_index: 1 };
        lock_op(9, LockInput::Read, span, Outcome::Ok(output))
    }

    fn ended(list: &[(&str, u64)]) -> SessionEnds {
        SessionEnds::Complete(list.iter().map(|&(s, at)| SessionEnd { session: s.into(), at: t(at) }).collect())
    }

    fn none_ended() -> SessionEnds {
        SessionEnds::Complete(Vec::new())
    }

    #[test]
    fn handing_a_lock_over_through_release_is_safe() {
        let history = [
            acquire("a", (0, 10), Some(1)),
            read(Some("a"), (12, 14)),
            release("a", (20, 30)),
            // b's acquire overlaps a's release: it may have taken effect just after it.
            acquire("b", (25, 35), Some(2)),
            read(Some("b"), (36, 37)),
            release("b", (40, 41)),
            read(None, (42, 43)),
        ];
        assert_eq!(check(&history, &none_ended(), &[]), Vec::new());
        assert_eq!(check(&history, &SessionEnds::Unknown, &[]), Vec::new());
    }

    #[test]
    fn handing_a_lock_over_through_session_invalidation_is_safe() {
        // a never releases; its session is invalidated at 50 (first applied anywhere), and b's
        // acquire completes after that.
        let history = [acquire("a", (0, 10), Some(1)), acquire("b", (40, 55), Some(2)), read(Some("b"), (56, 57))];
        assert_eq!(check(&history, &ended(&[("a", 50)]), &[]), Vec::new());
    }

    #[test]
    fn a_second_holder_before_the_first_released_is_caught() {
        let history = [
            acquire("a", (0, 10), Some(1)),
            acquire("b", (20, 30), Some(2)),
            release("a", (40, 50)),
            release("b", (60, 70)),
        ];
        let violations = check_mutual_exclusion(&history, &none_ended());
        assert_eq!(violations.len(), 1, "{violations:?}");
        let text = &violations[0].message;
        assert!(text.starts_with("two live holders of lock \"L\""), "{text}");
        assert!(text.contains("session \"a\" certainly held it during [10ms, 40ms)"), "{text}");
        assert!(text.contains("session \"b\" certainly held it during [30ms, 60ms)"), "{text}");
        // Without session ends, the proofs alone still pin it: a's release answered true at
        // [40, 50], so a held at least [10, 40).
        assert_eq!(check_mutual_exclusion(&history, &SessionEnds::Unknown).len(), 1);
    }

    #[test]
    fn an_unreleased_holder_whose_session_lives_on_blocks_everyone() {
        let history = [acquire("a", (0, 10), None), acquire("b", (100, 110), None)];
        assert_eq!(check_mutual_exclusion(&history, &none_ended()).len(), 1);
        // But if session ends are unknown, a may have expired in between: nothing is certain.
        assert_eq!(check_mutual_exclusion(&history, &SessionEnds::Unknown), Vec::new());
        // Same if a's session ended before b acquired.
        assert_eq!(check_mutual_exclusion(&history, &ended(&[("a", 100)])), Vec::new());
    }

    #[test]
    fn confirmation_reads_prove_a_holding_when_session_ends_are_unknown() {
        let history = [
            acquire("a", (0, 10), None),
            read(Some("a"), (50, 60)),
            acquire("b", (20, 30), None),
            read(Some("b"), (35, 36)),
        ];
        // a held during [10, 50); b during [30, 35).
        let violations = check(&history, &SessionEnds::Unknown, &[]);
        assert!(!violations.is_empty());
        assert!(
            violations[0].message.contains("session \"a\" certainly held it during [10ms, 50ms)"),
            "{violations:?}"
        );
        // And a read showing b inside a's certain interval is itself reported.
        assert!(violations.iter().any(|v| v.message.starts_with("read op #3")), "{violations:?}");
    }

    #[test]
    fn a_read_showing_the_lock_free_while_certainly_held_is_caught() {
        let history = [acquire("a", (0, 10), None), read(None, (20, 21)), release("a", (30, 31))];
        let violations = check_mutual_exclusion(&history, &none_ended());
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert!(violations[0].message.contains("saw holder None"), "{violations:?}");
        // A read overlapping the release may already see it free.
        let overlapping = [acquire("a", (0, 10), None), read(None, (30, 32)), release("a", (30, 31))];
        assert_eq!(check_mutual_exclusion(&overlapping, &none_ended()), Vec::new());
    }

    #[test]
    fn an_indeterminate_acquire_counts_only_once_confirmed() {
        let lost = Outcome::Indeterminate;
        let history = [acquire_with("a", (0, 5), lost.clone()), acquire("b", (20, 30), None), release("b", (40, 41))];
        assert_eq!(check_mutual_exclusion(&history, &none_ended()), Vec::new());
        // Confirmed by a read at [10, 12] and never released: a holds from 12 on.
        let confirmed = [
            acquire_with("a", (0, 5), lost),
            read(Some("a"), (10, 12)),
            acquire("b", (20, 30), None),
            release("b", (40, 41)),
        ];
        let violations = check_mutual_exclusion(&confirmed, &none_ended());
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert!(violations[0].message.contains("session \"a\" certainly held it during [12ms, ∞)"), "{violations:?}");
    }

    #[test]
    fn a_failed_acquire_holds_nothing_and_requests_after_a_timeout_are_not_trusted() {
        let failed = [acquire_with("a", (0, 5), Outcome::Failed), acquire("b", (10, 20), None)];
        assert_eq!(check_mutual_exclusion(&failed, &none_ended()), Vec::new());
        // a's release timed out (it may take effect any time later), then a acquired again: that
        // second holding may be cut short by the late release, so it is not trusted.
        let late_release = [
            acquire("a", (0, 5), None),
            lock_op(0, LockInput::Release { session: "a".into() }, (10, 15), Outcome::Indeterminate),
            acquire("a", (20, 25), None),
            acquire("b", (40, 50), None),
        ];
        assert_eq!(check_mutual_exclusion(&late_release, &none_ended()), Vec::new());
        // The first holding is still trusted up to the release's invocation.
        let overlap = [
            acquire("a", (0, 5), None),
            acquire("b", (6, 8), None),
            lock_op(0, LockInput::Release { session: "a".into() }, (10, 15), Outcome::Indeterminate),
        ];
        assert_eq!(check_mutual_exclusion(&overlap, &none_ended()).len(), 1);
    }

    #[test]
    fn fencing_tokens_must_increase_in_real_time_order() {
        let good = [
            acquire("a", (0, 10), Some(1)),
            release("a", (11, 12)),
            acquire("b", (13, 14), Some(2)),
            // Concurrent with b's acquire: any order.
            acquire("c", (13, 20), Some(3)),
            // Same session again, keeps its index while holding.
            acquire("c", (21, 22), Some(3)),
        ];
        assert_eq!(check_fencing(&good), Vec::new());

        let backwards = [acquire("a", (0, 10), Some(5)), acquire("b", (20, 30), Some(4))];
        let violations = check_fencing(&backwards);
        assert_eq!(violations.len(), 1);
        assert!(violations[0].message.contains("LockIndex did not increase"), "{violations:?}");

        let equal = [acquire("a", (0, 10), Some(5)), acquire("b", (20, 30), Some(5))];
        let violations = check_fencing(&equal);
        assert!(violations.iter().any(|v| v.message.contains("both acquired it with LockIndex 5")), "{violations:?}");

        let shared_concurrently = [acquire("a", (0, 10), Some(7)), acquire("b", (5, 15), Some(7))];
        assert_eq!(check_fencing(&shared_concurrently).len(), 1);

        // The highest earlier index of *another* session counts even when the same session
        // holds the overall highest.
        let hidden = [
            acquire("a", (0, 1), Some(3)),
            acquire("b", (2, 3), Some(8)),
            acquire("b", (4, 5), Some(9)),
            acquire("a", (6, 7), Some(8)),
        ];
        let violations = check_fencing(&hidden);
        assert!(violations.iter().any(|v| v.message.contains("op #2 by \"b\" got 9")), "{violations:?}");
    }

    #[test]
    fn acquiring_inside_a_lock_delay_is_reported() {
        let window = LockDelayWindow { key: "L".into(), start: t(100), length: t(15_000) };
        let inside = [acquire("b", (200, 210), None)];
        let violations = check_lock_delay(&inside, std::slice::from_ref(&window));
        assert_eq!(violations.len(), 1);
        assert!(violations[0].message.contains("lock-delay [100ms, 15.1s)"), "{violations:?}");
        // After the window, straddling its end, refused, or another key: fine.
        let fine = [
            acquire("b", (15_100, 15_110), None),
            acquire("b", (15_000, 15_200), None),
            acquire_with("b", (200, 210), Outcome::Failed),
            Op { key: "other".into(), ..acquire("b", (200, 210), None) },
        ];
        assert_eq!(check_lock_delay(&fine, &[window]), Vec::new());
    }

    /// A lock server and its clients, simulated step by step: four contenders (one session each,
    /// replaced when invalidated) and one reader. Every request takes effect at one point inside
    /// its interval; an indeterminate one takes effect never or at any later time, possibly after
    /// its client moved on. With `buggy`, an acquire sometimes steals a held lock.
    /// Returns the history, the session ends, and whether a steal happened.
    fn simulate(seed: u64, steps: u64, buggy: bool) -> (Vec<LockOp>, Vec<SessionEnd>, bool) {
        use rand::{Rng, SeedableRng};
        use rand_chacha::ChaCha8Rng;

        struct Pending {
            op: usize,
            effect_at: Option<u64>,
            complete_at: u64,
            indeterminate: bool,
            result: Option<Outcome<LockOutput>>,
        }
        struct Client {
            session: String,
            busy: bool,
            believes_held: bool,
        }
        const CONTENDERS: usize = 4;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut ops: Vec<LockOp> = Vec::new();
        let mut ends: Vec<SessionEnd> = Vec::new();
        let mut pending: Vec<Pending> = Vec::new();
        let mut clients: Vec<Client> = (0..=CONTENDERS)
            .map(|c| Client { session: format!("s{c}.0"), busy: false, believes_held: false })
            .collect();
        let mut dead: Vec<String> = Vec::new();
        let (mut holder, mut lock_index, mut stolen) = (None::<String>, 0u64, false);

        for now in 0..steps {
            // Effects due now, in invocation order.
            for p in pending.iter_mut().filter(|p| p.effect_at == Some(now)) {
                let result = match &ops[p.op].input {
                    LockInput::Acquire { session } if dead.contains(session) => Outcome::Failed,
                    LockInput::Acquire { session } => match &holder {
                        Some(h) if h == session => Outcome::Ok(LockOutput::Acquired { lock_index: Some(lock_index) }),
                        Some(_) if !(buggy && rng.random_bool(0.2)) => Outcome::Failed,
                        other => {
                            stolen |= other.is_some();
                            holder = Some(session.clone());
                            lock_index += 1;
                            Outcome::Ok(LockOutput::Acquired { lock_index: Some(lock_index) })
                        }
                    },
                    LockInput::Release { session } if holder.as_ref() == Some(session) => {
                        holder = None;
                        Outcome::Ok(LockOutput::Released)
                    }
                    LockInput::Release { .. } => Outcome::Failed,
                    LockInput::Read => Outcome::Ok(LockOutput::Read { holder: holder.clone(), lock_index }),
                };
                p.result = Some(result);
            }
            // The server invalidates a session now and then (TTL, failed health check).
            if rng.random_bool(0.01) {
                let victim = clients[rng.random_range(0..CONTENDERS)].session.clone();
                if !dead.contains(&victim) {
                    if holder.as_ref() == Some(&victim) {
                        holder = None;
                    }
                    ends.push(SessionEnd { session: victim.clone(), at: t(now) });
                    dead.push(victim);
                }
            }
            // Answers due now.
            for p in pending.iter_mut().filter(|p| p.complete_at == now) {
                let op = &mut ops[p.op];
                op.complete = t(now);
                op.outcome = if p.indeterminate {
                    Outcome::Indeterminate
                } else {
                    p.result.take().expect("a determinate request took effect before its answer")
                };
                let client = &mut clients[op.client as usize];
                client.busy = false;
                client.believes_held = match (&op.input, &op.outcome) {
                    (_, Outcome::Indeterminate) => rng.random_bool(0.5),
                    (LockInput::Acquire { .. }, outcome) => matches!(outcome, Outcome::Ok(_)),
                    (LockInput::Release { .. }, _) => false,
                    (LockInput::Read, _) => false,
                };
                if dead.contains(&client.session) && op.is_failed() {
                    client.session = format!("s{}.{now}", op.client);
                }
            }
            pending.retain(|p| p.complete_at > now || p.effect_at.is_some_and(|at| at > now));
            // New requests from idle clients.
            for (c, client) in clients.iter_mut().enumerate() {
                // Holders keep the lock a while; others keep trying.
                let rate = if client.believes_held { 0.05 } else { 0.3 };
                if client.busy || !rng.random_bool(rate) {
                    continue;
                }
                let input = if c == CONTENDERS {
                    LockInput::Read
                } else if client.believes_held {
                    LockInput::Release { session: client.session.clone() }
                } else {
                    LockInput::Acquire { session: client.session.clone() }
                };
                let indeterminate = rng.random_bool(0.1);
                let (effect_at, complete_at) = if indeterminate {
                    let effect_at = rng.random_bool(0.5).then(|| now + rng.random_range(1..=40));
                    (effect_at, now + rng.random_range(1..=6))
                } else {
                    let effect_at = now + rng.random_range(1..=3);
                    (Some(effect_at), effect_at + rng.random_range(0..=3))
                };
                let op = ops.len();
                ops.push(Op {
                    client: c as u64,
                    key: "L".into(),
                    input,
                    invoke: t(now),
                    complete: t(now),
                    outcome: Outcome::Indeterminate,
                });
                pending.push(Pending { op, effect_at, complete_at, indeterminate, result: None });
                client.busy = true;
            }
        }
        // Requests still in flight at the end are indeterminate.
        for p in &pending {
            if p.complete_at >= steps {
                ops[p.op].complete = t(steps);
                ops[p.op].outcome = Outcome::Indeterminate;
            }
        }
        (ops, ends, stolen)
    }

    #[test]
    fn randomized_histories_of_a_correct_lock_server_pass() {
        let mut holdings_checked = 0;
        for seed in 0..200 {
            let (ops, ends, stolen) = simulate(seed, 500, false);
            assert!(!stolen);
            holdings_checked += holdings(&ops, &SessionEnds::Complete(ends.clone())).len();
            let violations = check(&ops, &SessionEnds::Complete(ends), &[]);
            assert_eq!(violations, Vec::new(), "seed {seed}: {ops:#?}");
            assert_eq!(check(&ops, &SessionEnds::Unknown, &[]), Vec::new(), "seed {seed}");
        }
        assert!(holdings_checked > 1_000, "only {holdings_checked} holdings");
    }

    #[test]
    fn randomized_histories_of_a_lock_server_that_steals_locks_are_caught() {
        let (mut runs_with_steals, mut caught) = (0, 0);
        for seed in 0..150 {
            let (ops, ends, stolen) = simulate(seed, 400, true);
            let violations = check(&ops, &SessionEnds::Complete(ends), &[]);
            if stolen {
                runs_with_steals += 1;
                caught += usize::from(!violations.is_empty());
            } else {
                assert_eq!(violations, Vec::new(), "seed {seed}: a false alarm");
            }
        }
        assert!(runs_with_steals > 100, "only {runs_with_steals} runs stole a lock");
        assert!(caught * 10 >= runs_with_steals * 9, "caught {caught} of {runs_with_steals} runs with stolen locks");
    }
}
