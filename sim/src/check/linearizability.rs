//! Linearizability of Consul's KV as a per-key compare-and-set register.
//!
//! Property: **linearizability** (Herlihy & Wing, "Linearizability: A Correctness Condition for
//! Concurrent Objects", 1990): every operation appears to take effect at one instant between its
//! invocation and its completion, in an order consistent with real time, and the results are
//! those of a sequential register. This is the property Jepsen's Consul test checks with its
//! `cas-register` model (read / write / cas), and what Consul promises for KV reads in the
//! `default` and `consistent` modes (not `stale`).
//!
//! # Model
//!
//! A register over [`Value`]s: `read → Option<Value>` (`None`: the key is absent), `write(v)`,
//! `cas(expected, new)` that succeeds iff the current value is `expected`. Consul compares
//! `ModifyIndex`, not values; since workloads write values unique per key, `?cas=i` is recorded
//! with the value whose write produced index `i` (see [`RegisterInput`]), and the two
//! comparisons agree. Deletes are not modelled.
//!
//! # Outcomes
//!
//! - `Ok` ops must be linearized between invocation and completion.
//! - `Indeterminate` writes and CASes may be linearized anywhere after their invocation, or
//!   never: their completion is infinite (Jepsen's treatment of `:info`). An indeterminate read
//!   constrains nothing and is dropped.
//! - `Failed` reads and writes took no effect and are dropped. A **failed CAS is kept**, as an op
//!   that leaves the register unchanged and is only possible when the current value differs from
//!   `expected`. Consul answers `false` only after comparing indexes in the state machine, so a
//!   `false` is an observation too: a server that wrongly refuses a CAS it should have applied
//!   is caught, at the price of slightly larger searches.
//!
//! # Algorithm
//!
//! Wing & Gong's search for a linearization ("Testing and Verifying Concurrent Objects", 1993)
//! with Lowe's just-in-time linearization and memoization ("Testing for linearizability",
//! 2017), as Knossos and Porcupine implement it:
//!
//! 1. Per key, since linearizability is compositional (Herlihy & Wing's locality; Horn & Kroening's
//!    P-compositionality): each key is an independent register and is searched alone.
//! 2. The ops' call and return events form a doubly linked list in time order (a call sorts
//!    before a return at the same instant, so touching intervals count as concurrent).
//! 3. Walk the list from its head. At a call, try to linearize that op next: if the model allows
//!    it and the configuration (set of linearized ops, register value) has not been seen before,
//!    push it, remove its call and return from the list (dancing links) and restart from the head.
//!    At a return, the op that returns there was not linearized in time: pop the last choice,
//!    restore its events, and try the next call after it.
//! 4. Success when every determinate op is linearized (indeterminate ops left over "never took
//!    effect"); violation when the stack is empty at a return.
//!
//! Indeterminate ops need care: each stays a candidate until the end of the history, so the sets
//! of them linearized so far multiply the configurations (exponential in their number). The
//! search therefore only places an indeterminate write or CAS *immediately before an op that
//! needs it*: a read of the value it wrote, a CAS expecting that value, or a failed CAS expecting
//! the value it overwrote. This loses no linearization. Take any one: an indeterminate op `w`
//! (writing `v` over `s`) whose successor `x` needs none of that can be removed or moved after
//! `x` — if `x` is a write, `w` is overwritten unseen and can be dropped; if `x` is a failed CAS
//! expecting neither `s` nor `v`, `x` fails from `s` too and `w` can follow it; reads and
//! successful CASes after `w` must observe `v` and so need it; if `w` is last, drop it. Moving an
//! indeterminate op later never breaks real-time order (it completes at infinity), and each step
//! moves an op later or removes it, so the rewriting ends in a linearization of the restricted
//! form. The pending obligation (the value `w` overwrote) is part of the memoized configuration.
//! A test cross-checks the search against brute-force enumeration on random small histories.
//!
//! The memo makes the search polynomial in the number of configurations, but that number can
//! still be exponential in concurrency. The search is therefore bounded: past
//! [`SEARCH_STATES_MAX`] memoized configurations for one key the verdict is
//! [`Verdict::Unknown`], never a violation. The search uses an explicit stack (no recursion)
//! whose depth is at most the number of ops of the key.
//!
//! Cost in practice (debug build): a key of 600 ops with about ten overlapping at a time and 5%
//! indeterminate writes passes in well under a second; proving such a key *not* linearizable
//! means exhausting every alternative before the bad op and takes a few seconds. Jepsen's
//! advice holds: rotate keys so that each sees at most a few hundred ops.
//!
//! # Explanation
//!
//! A violation reports the longest linearizable prefix the search found, the op whose completion
//! could not be reached after it, and the other ops still open at that point with what each
//! would have done. That prefix is one maximal attempt, not the only one; it usually points at
//! the stale read or the duplicated CAS directly.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::hash::{BuildHasherDefault, DefaultHasher};
use std::time::Duration;

use super::history::{Outcome, RegisterInput, RegisterOp, RegisterOutput, Value};
use super::{Verdict, Violation};

const CHECKER: &str = "linearizability";

/// Memoized configurations (set of linearized ops, register value) explored for one key before
/// giving up with [`Verdict::Unknown`]. Each costs about `ops / 8` bytes, so a million on a key
/// of a few thousand ops stays well under a gigabyte.
pub const SEARCH_STATES_MAX: usize = 1_000_000;

/// Ops listed in a violation's explanation before the rest are summarised as a count.
pub const EXPLANATION_OPS_MAX: usize = 24;

/// Checks the whole history, key by key, with the default search limit.
pub fn check(ops: &[RegisterOp]) -> Verdict {
    check_bounded(ops, SEARCH_STATES_MAX)
}

/// Checks the whole history, key by key, exploring at most `search_states_max` configurations
/// per key. The first violating key (in key order) is reported; `Unknown` only when no key
/// violates and some key ran out of budget.
pub fn check_bounded(ops: &[RegisterOp], search_states_max: usize) -> Verdict {
    assert!(search_states_max > 0);
    let mut by_key: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, op) in ops.iter().enumerate() {
        by_key.entry(op.key.as_str()).or_default().push(i);
    }
    let mut unknown: Vec<String> = Vec::new();
    for (key, indices) in &by_key {
        match check_key(ops, key, indices, search_states_max) {
            KeyVerdict::Ok => {}
            KeyVerdict::Violation(message) => {
                return Verdict::Violation(Violation { checker: CHECKER, message });
            }
            KeyVerdict::Unknown(reason) => unknown.push(reason),
        }
    }
    if unknown.is_empty() {
        Verdict::Ok
    } else {
        Verdict::Unknown { checker: CHECKER, reason: unknown.join("; ") }
    }
}

enum KeyVerdict {
    Ok,
    Violation(String),
    Unknown(String),
}

/// An op as the search sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    /// A read that returned this value.
    Read(Option<Value>),
    Write(Value),
    /// A CAS that succeeded (or, if indeterminate, may have).
    Cas {
        expected: Option<Value>,
        new: Value,
    },
    /// A CAS answered `false`: the value differed from `expected` at its linearization point.
    CasFailed {
        expected: Option<Value>,
    },
}

impl Step {
    /// The register value after this op applies to `state`, or `None` if it cannot apply.
    fn apply(self, state: Option<Value>) -> Option<Option<Value>> {
        match self {
            Step::Read(value) => (value == state).then_some(state),
            Step::Write(value) => Some(Some(value)),
            Step::Cas { expected, new } => (state == expected).then_some(Some(new)),
            Step::CasFailed { expected } => (state != expected).then_some(state),
        }
    }
}

/// The op the search works with, keeping its index in the caller's history for reports.
#[derive(Clone, Copy, Debug)]
struct Candidate {
    /// Index in the checked history.
    op: usize,
    step: Step,
    invoke: Duration,
    /// `None`: indeterminate, completes at infinity.
    complete: Option<Duration>,
}

/// Turns a key's ops into search candidates, dropping those that constrain nothing.
fn candidates(ops: &[RegisterOp], indices: &[usize]) -> Vec<Candidate> {
    let mut out = Vec::with_capacity(indices.len());
    for &i in indices {
        let op = &ops[i];
        assert!(op.invoke <= op.complete, "op #{i} completes before its invocation: {op}");
        let step = match (&op.input, &op.outcome) {
            (RegisterInput::Read, Outcome::Ok(RegisterOutput::Read(value))) => Some(Step::Read(*value)),
            (RegisterInput::Read, Outcome::Failed | Outcome::Indeterminate) => None,
            (RegisterInput::Write(value), Outcome::Ok(RegisterOutput::Written) | Outcome::Indeterminate) => {
                Some(Step::Write(*value))
            }
            (RegisterInput::Write(_), Outcome::Failed) => None,
            (RegisterInput::Cas { expected, new }, Outcome::Ok(RegisterOutput::Written) | Outcome::Indeterminate) => {
                Some(Step::Cas { expected: *expected, new: *new })
            }
            (RegisterInput::Cas { expected, .. }, Outcome::Failed) => Some(Step::CasFailed { expected: *expected }),
            (_, Outcome::Ok(_)) => panic!("op #{i} has a result that does not match its request: {op}"),
        };
        if let Some(step) = step {
            out.push(Candidate { op: i, step, invoke: op.invoke, complete: op.settled_by() });
        }
    }
    out
}

const NIL: usize = usize::MAX;
const HEAD: usize = 0;

/// The call and return events of a key's candidates as a doubly linked list in time order.
/// Node 0 is the head sentinel; node `k + 1` is the `k`-th event in time order.
struct Events {
    next: Vec<usize>,
    prev: Vec<usize>,
    /// Per node: the candidate the event belongs to.
    candidate: Vec<usize>,
    /// Per node: a call (else a return).
    is_call: Vec<bool>,
    /// Per candidate: its return node.
    return_node: Vec<usize>,
}

impl Events {
    fn new(candidates: &[Candidate]) -> Events {
        // (time, return?, candidate): a call sorts before a return at the same instant, and an
        // indeterminate op returns at infinity, after every determinate one.
        let mut order: Vec<(Duration, bool, usize)> = Vec::with_capacity(candidates.len() * 2);
        for (c, candidate) in candidates.iter().enumerate() {
            order.push((candidate.invoke, false, c));
            order.push((candidate.complete.unwrap_or(Duration::MAX), true, c));
        }
        order.sort_unstable();
        let nodes = order.len() + 1;
        let mut events = Events {
            next: (1..=nodes).map(|n| if n == nodes { NIL } else { n }).collect(),
            prev: (0..nodes).map(|n| if n == 0 { NIL } else { n - 1 }).collect(),
            candidate: vec![NIL; nodes],
            is_call: vec![false; nodes],
            return_node: vec![NIL; candidates.len()],
        };
        for (k, &(_, is_return, c)) in order.iter().enumerate() {
            let node = k + 1;
            events.candidate[node] = c;
            events.is_call[node] = !is_return;
            if is_return {
                events.return_node[c] = node;
            }
        }
        events
    }

    fn unlink(&mut self, node: usize) {
        let (prev, next) = (self.prev[node], self.next[node]);
        self.next[prev] = next;
        if next != NIL {
            self.prev[next] = prev;
        }
    }

    /// Re-inserts a node removed by `unlink`; valid only in the reverse order of removal.
    fn relink(&mut self, node: usize) {
        let (prev, next) = (self.prev[node], self.next[node]);
        self.next[prev] = node;
        if next != NIL {
            self.prev[next] = node;
        }
    }

    /// Removes a linearized op's call and return.
    fn lift(&mut self, call: usize) {
        let ret = self.return_node[self.candidate[call]];
        self.unlink(call);
        self.unlink(ret);
    }

    /// Undoes `lift(call)`; lifts are undone in stack order, which keeps the links valid.
    fn unlift(&mut self, call: usize) {
        let ret = self.return_node[self.candidate[call]];
        self.relink(ret);
        self.relink(call);
    }
}

/// A set of candidates, as words of bits; part of the memo key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Bitset(Vec<u64>);

impl Bitset {
    fn new(len: usize) -> Bitset {
        Bitset(vec![0; len.div_ceil(64)])
    }

    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }

    fn clear(&mut self, i: usize) {
        self.0[i / 64] &= !(1 << (i % 64));
    }
}

/// Where the search stands, besides the set of linearized ops.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Config {
    /// The register's value.
    value: Option<Value>,
    /// Set when the last linearized op was indeterminate: the value it overwrote. The next op
    /// must need the indeterminate op to have happened (see the module docs).
    justify: Option<Option<Value>>,
}

impl Config {
    const INITIAL: Config = Config { value: None, justify: None };

    /// The configuration after `candidate`, or `None` if it cannot come next.
    fn then(self, candidate: &Candidate) -> Option<Config> {
        if let Some(overwritten) = self.justify {
            let justifies = match candidate.step {
                // Applicable only if they observe the indeterminate op's value.
                Step::Read(_) | Step::Cas { .. } => true,
                Step::CasFailed { expected } => expected == overwritten,
                Step::Write(_) => false,
            };
            if !justifies {
                return None;
            }
        }
        let value = candidate.step.apply(self.value)?;
        let justify = candidate.complete.is_none().then_some(self.value);
        Some(Config { value, justify })
    }
}

/// Membership only: this set is never iterated, so its order cannot reach a verdict. The hasher
/// is SipHash with fixed keys, so even its layout is the same on every run.
type Memo = HashSet<(Bitset, Config), BuildHasherDefault<DefaultHasher>>;

/// Where the deepest attempt got stuck.
struct Stuck {
    /// Determinate ops in the prefix: the depth compared between attempts (an indeterminate op
    /// tried last only to be rejected would make a misleading explanation).
    determinate: usize,
    /// Candidates in linearization order.
    prefix: Vec<usize>,
    /// The candidate whose return was reached before it could be linearized.
    blocked: usize,
}

fn check_key(ops: &[RegisterOp], key: &str, indices: &[usize], search_states_max: usize) -> KeyVerdict {
    let candidates = candidates(ops, indices);
    let determinate = candidates.iter().filter(|c| c.complete.is_some()).count();
    let mut events = Events::new(&candidates);
    let mut memo = Memo::default();
    let mut linearized = Bitset::new(candidates.len());
    let mut linearized_determinate = 0usize;
    // (call node, configuration before that op): the choices made, in order.
    let mut stack: Vec<(usize, Config)> = Vec::with_capacity(candidates.len());
    let mut config = Config::INITIAL;
    let mut deepest: Option<Stuck> = None;
    let mut node = events.next[HEAD];

    // Bounded: every push inserts a new memo entry (at most `search_states_max`), every pop
    // undoes a push, and between two of them the walk moves forward along a finite list.
    loop {
        if linearized_determinate == determinate {
            return KeyVerdict::Ok;
        }
        // Every determinate return is still in the list and sorts before any infinite one.
        assert!(node != NIL, "the walk passed the last determinate return");
        let c = events.candidate[node];
        if events.is_call[node] {
            if let Some(next_config) = config.then(&candidates[c]) {
                linearized.set(c);
                if memo.insert((linearized.clone(), next_config)) {
                    if memo.len() > search_states_max {
                        return KeyVerdict::Unknown(format!(
                            "key {key:?}: gave up after {search_states_max} configurations over {} ops \
                             ({} indeterminate)",
                            candidates.len(),
                            candidates.len() - determinate
                        ));
                    }
                    stack.push((node, config));
                    config = next_config;
                    if candidates[c].complete.is_some() {
                        linearized_determinate += 1;
                    }
                    events.lift(node);
                    node = events.next[HEAD];
                    continue;
                }
                linearized.clear(c);
            }
            node = events.next[node];
        } else {
            // The op returning here is not linearized: the current prefix is a dead end.
            if deepest.as_ref().is_none_or(|d| linearized_determinate > d.determinate) {
                let mut prefix: Vec<usize> = stack.iter().map(|&(call, _)| events.candidate[call]).collect();
                // Indeterminate ops at the end were only tried; they explain nothing.
                while prefix.last().is_some_and(|&last| candidates[last].complete.is_none()) {
                    prefix.pop();
                }
                deepest = Some(Stuck { determinate: linearized_determinate, prefix, blocked: c });
            }
            let Some((call, previous_config)) = stack.pop() else {
                let stuck = deepest.expect("a dead end was recorded before the stack emptied");
                return KeyVerdict::Violation(explain(ops, key, &candidates, &stuck));
            };
            let undone = events.candidate[call];
            linearized.clear(undone);
            if candidates[undone].complete.is_some() {
                linearized_determinate -= 1;
            }
            config = previous_config;
            events.unlift(call);
            node = events.next[call];
        }
    }
}

fn explain(ops: &[RegisterOp], key: &str, candidates: &[Candidate], stuck: &Stuck) -> String {
    let mut out = String::new();
    let blocked = &candidates[stuck.blocked];
    let blocked_complete = blocked.complete.expect("only determinate ops block the search");
    let _ = writeln!(
        out,
        "key {key:?} is not linearizable ({} ops searched; failed and indeterminate reads, and failed writes, \
         are dropped).",
        candidates.len()
    );
    let _ = writeln!(out, "Longest linearizable prefix found ({} ops), with the value after each:", stuck.prefix.len());
    let mut state: Option<Value> = None;
    let shown_from = stuck.prefix.len().saturating_sub(EXPLANATION_OPS_MAX);
    if shown_from > 0 {
        let _ = writeln!(out, "  ... {shown_from} earlier ops not shown");
    }
    for (position, &c) in stuck.prefix.iter().enumerate() {
        state = candidates[c].step.apply(state).expect("the prefix was applied during the search");
        if position >= shown_from {
            let op = candidates[c].op;
            let _ = writeln!(out, "  {}. op #{op} {} -> {state:?}", position + 1, ops[op]);
        }
    }
    let _ = writeln!(
        out,
        "Then op #{} {} cannot take effect by its completion at {blocked_complete:?}: from value {state:?} it {}.",
        blocked.op,
        ops[blocked.op],
        describe(blocked.step, state)
    );
    // The other ops that could have come next: invoked by the blocked op's completion.
    let (open_indeterminate, open): (Vec<usize>, Vec<usize>) = (0..candidates.len())
        .filter(|&c| c != stuck.blocked && !stuck.prefix.contains(&c) && candidates[c].invoke <= blocked_complete)
        .partition(|&c| candidates[c].complete.is_none());
    if open.is_empty() {
        let _ = writeln!(out, "No other completed op was open at that point.");
    } else {
        let _ = writeln!(out, "Other completed ops open at that point, and what each would do from {state:?}:");
        for &c in open.iter().take(EXPLANATION_OPS_MAX) {
            let op = candidates[c].op;
            let _ = writeln!(out, "  op #{op} {}: {}", ops[op], describe(candidates[c].step, state));
        }
        if open.len() > EXPLANATION_OPS_MAX {
            let _ = writeln!(out, "  ... and {} more", open.len() - EXPLANATION_OPS_MAX);
        }
    }
    if !open_indeterminate.is_empty() {
        let listed: Vec<String> =
            open_indeterminate.iter().take(EXPLANATION_OPS_MAX).map(|&c| format!("#{}", candidates[c].op)).collect();
        let more = open_indeterminate.len().saturating_sub(EXPLANATION_OPS_MAX);
        let more = if more > 0 { format!(" and {more} more") } else { String::new() };
        let _ = writeln!(
            out,
            "Indeterminate ops not yet placed (each may take effect at any later time, or never): {}{more}",
            listed.join(", ")
        );
    }
    let _ = writeln!(out, "Every other order of these ops reaches a dead end as well.");
    out.truncate(out.trim_end().len());
    out
}

fn describe(step: Step, state: Option<Value>) -> String {
    match step.apply(state) {
        None => match step {
            Step::Read(value) => format!("cannot read {value:?}"),
            Step::Cas { expected, .. } => format!("cannot succeed (expects {expected:?})"),
            Step::CasFailed { expected } => format!("cannot fail (the value is the expected {expected:?})"),
            Step::Write(_) => unreachable!("a write always applies"),
        },
        Some(next) => format!("could apply, giving {next:?}"),
    }
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;
    use crate::check::history::Op;

    fn t(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    fn op(
        client: u64,
        key: &str,
        input: RegisterInput,
        span: (u64, u64),
        outcome: Outcome<RegisterOutput>,
    ) -> RegisterOp {
        Op { client, key: key.into(), input, invoke: t(span.0), complete: t(span.1), outcome }
    }

    fn write(client: u64, value: Value, span: (u64, u64)) -> RegisterOp {
        op(client, "k", RegisterInput::Write(value), span, Outcome::Ok(RegisterOutput::Written))
    }

    fn write_indeterminate(client: u64, value: Value, span: (u64, u64)) -> RegisterOp {
        op(client, "k", RegisterInput::Write(value), span, Outcome::Indeterminate)
    }

    fn read(client: u64, value: Option<Value>, span: (u64, u64)) -> RegisterOp {
        op(client, "k", RegisterInput::Read, span, Outcome::Ok(RegisterOutput::Read(value)))
    }

    fn cas(client: u64, expected: Option<Value>, new: Value, span: (u64, u64), ok: bool) -> RegisterOp {
        let outcome = if ok { Outcome::Ok(RegisterOutput::Written) } else { Outcome::Failed };
        op(client, "k", RegisterInput::Cas { expected, new }, span, outcome)
    }

    fn message(verdict: &Verdict) -> &str {
        match verdict {
            Verdict::Violation(v) => &v.message,
            other => panic!("expected a violation, got {other:?}"),
        }
    }

    #[test]
    fn empty_and_sequential_histories_are_linearizable() {
        assert_eq!(check(&[]), Verdict::Ok);
        let history = [
            read(1, None, (0, 1)),
            write(1, 1, (2, 3)),
            read(2, Some(1), (4, 5)),
            cas(2, Some(1), 2, (6, 7), true),
            cas(1, Some(1), 3, (8, 9), false),
            read(1, Some(2), (10, 11)),
        ];
        assert_eq!(check(&history), Verdict::Ok);
    }

    #[test]
    fn concurrent_ops_may_take_effect_in_any_order_real_time_allows() {
        // w1 and w2 overlap, and so do the reads, so w2 may come first: w2, r(2), w1, r(1).
        let history = [
            write(1, 1, (0, 10)),
            write(2, 2, (0, 10)),
            read(3, Some(2), (1, 9)),
            read(4, Some(1), (5, 20)),
            read(3, Some(1), (21, 22)),
        ];
        assert_eq!(check(&history), Verdict::Ok);
        // A read that touches a write's completion instant is concurrent with it.
        let touching = [write(1, 1, (0, 5)), read(2, None, (5, 6))];
        assert_eq!(check(&touching), Verdict::Ok);
    }

    #[test]
    fn a_stale_read_after_a_completed_write_is_a_violation() {
        let history = [write(1, 1, (0, 1)), write(1, 2, (2, 3)), read(2, Some(1), (4, 5))];
        let verdict = check(&history);
        let text = message(&verdict);
        assert!(text.contains("key \"k\" is not linearizable"), "{text}");
        assert!(text.contains("Longest linearizable prefix found (2 ops)"), "{text}");
        assert!(text.contains("Then op #2 client 2"), "{text}");
        assert!(text.contains("from value Some(2) it cannot read Some(1)"), "{text}");
    }

    #[test]
    fn two_concurrent_cas_from_the_same_value_cannot_both_succeed() {
        let history = [write(1, 1, (0, 1)), cas(2, Some(1), 2, (2, 10), true), cas(3, Some(1), 3, (3, 9), true)];
        let verdict = check(&history);
        let text = message(&verdict);
        assert!(text.contains("cannot succeed (expects Some(1))"), "{text}");
        // One of them alone is fine.
        assert_eq!(check(&history[..2]), Verdict::Ok);
    }

    #[test]
    fn a_read_of_a_value_never_written_is_a_violation() {
        let history = [write(1, 1, (0, 1)), read(2, Some(9), (2, 3))];
        let text = message(&check(&history)).to_string();
        assert!(text.contains("Longest linearizable prefix found (1 ops)"), "{text}");
        assert!(text.contains("cannot read Some(9)"), "{text}");
    }

    #[test]
    fn a_read_cannot_observe_a_write_invoked_after_it_completed() {
        let history = [read(1, Some(1), (0, 1)), write(2, 1, (2, 3))];
        let text = message(&check(&history)).to_string();
        assert!(text.contains("Longest linearizable prefix found (0 ops)"), "{text}");
        assert!(text.contains("from value None it cannot read Some(1)"), "{text}");
    }

    #[test]
    fn an_indeterminate_write_may_have_happened_late_or_never() {
        // Happened, long after the client gave up.
        let happened = [write(1, 1, (0, 1)), write_indeterminate(2, 2, (2, 3)), read(3, Some(2), (100, 101))];
        assert_eq!(check(&happened), Verdict::Ok);
        // Never happened.
        let never = [write(1, 1, (0, 1)), write_indeterminate(2, 2, (2, 3)), read(3, Some(1), (100, 101))];
        assert_eq!(check(&never), Verdict::Ok);
        // But it happens at most once: seen, then unseen without another write, is a violation.
        let flicker = [
            write(1, 1, (0, 1)),
            write_indeterminate(2, 2, (2, 3)),
            read(3, Some(2), (10, 11)),
            read(3, Some(1), (12, 13)),
        ];
        assert!(check(&flicker).is_violation());
        // And not before its invocation.
        let early = [read(3, Some(2), (0, 1)), write_indeterminate(2, 2, (2, 3))];
        assert!(check(&early).is_violation());
    }

    #[test]
    fn failed_writes_and_unfinished_reads_are_dropped() {
        let failed_write = op(1, "k", RegisterInput::Write(5), (0, 1), Outcome::Failed);
        let lost_read = op(2, "k", RegisterInput::Read, (0, 1), Outcome::Indeterminate);
        assert_eq!(check(&[failed_write.clone(), lost_read, read(3, None, (2, 3))]), Verdict::Ok);
        assert!(check(&[failed_write, read(3, Some(5), (2, 3))]).is_violation());
    }

    #[test]
    fn a_failed_cas_must_have_seen_a_different_value() {
        // Nothing else touched the key, so `false` was wrong.
        let history = [write(1, 1, (0, 1)), cas(2, Some(1), 2, (2, 3), false)];
        let text = message(&check(&history)).to_string();
        assert!(text.contains("cannot fail (the value is the expected Some(1))"), "{text}");
        // With a concurrent write it may have failed.
        let concurrent = [write(1, 1, (0, 1)), cas(2, Some(1), 2, (2, 5), false), write(3, 3, (4, 6))];
        assert_eq!(check(&concurrent), Verdict::Ok);
    }

    #[test]
    fn cas_from_absent_succeeds_once() {
        let once = [cas(1, None, 1, (0, 1), true), read(2, Some(1), (2, 3))];
        assert_eq!(check(&once), Verdict::Ok);
        let twice = [cas(1, None, 1, (0, 1), true), cas(2, None, 2, (2, 3), true)];
        assert!(check(&twice).is_violation());
    }

    #[test]
    fn keys_are_checked_independently_and_the_violating_key_is_named() {
        let mut history = vec![write(1, 1, (0, 1)), read(1, Some(1), (2, 3))];
        let mut other = op(2, "b", RegisterInput::Read, (0, 1), Outcome::Ok(RegisterOutput::Read(Some(1))));
        // Value 1 was written to "k", not "b".
        history.push(other.clone());
        let text = message(&check(&history)).to_string();
        assert!(text.starts_with("key \"b\" is not linearizable"), "{text}");
        other.outcome = Outcome::Ok(RegisterOutput::Read(None));
        history[2] = other;
        assert_eq!(check(&history), Verdict::Ok);
    }

    #[test]
    fn running_out_of_budget_is_unknown_not_a_violation() {
        // Many concurrent writes and a late read: plenty of configurations to explore.
        let mut history: Vec<RegisterOp> = (0..12).map(|v| write(v, v, (0, 100))).collect();
        history.push(read(99, Some(0), (200, 201)));
        let verdict = check_bounded(&history, 5);
        assert!(verdict.is_unknown(), "{verdict:?}");
        assert!(verdict.to_string().contains("gave up after 5 configurations over 13 ops"), "{verdict}");
        assert_eq!(check(&history), Verdict::Ok);
        // A violation on another key still wins over an unknown one.
        history.push(op(1, "z", RegisterInput::Read, (0, 1), Outcome::Ok(RegisterOutput::Read(Some(7)))));
        assert!(check_bounded(&history, 5).is_violation());
    }

    #[test]
    fn explanations_are_deterministic() {
        let history = [
            write(1, 1, (0, 10)),
            write(2, 2, (0, 10)),
            write(3, 3, (0, 10)),
            read(4, Some(1), (11, 12)),
            read(4, Some(2), (13, 14)),
        ];
        let first = check(&history);
        assert!(first.is_violation());
        for _ in 0..3 {
            assert_eq!(check(&history), first);
        }
    }

    #[test]
    #[should_panic(expected = "does not match its request")]
    fn a_result_of_the_wrong_kind_is_a_programmer_error() {
        check(&[op(1, "k", RegisterInput::Read, (0, 1), Outcome::Ok(RegisterOutput::Written))]);
    }

    /// A history produced by a correct register: each op takes effect at a point inside its
    /// interval, points in increasing order, intervals overlapping at random. Returns the ops.
    fn generate(rng: &mut ChaCha8Rng, keys: usize, ops_per_key: usize, spread_us: u64) -> Vec<RegisterOp> {
        let spacing_us = 10;
        let mut ops = Vec::new();
        for k in 0..keys {
            let key = format!("key{k}");
            let mut state: Option<Value> = None;
            let mut written: Vec<Value> = Vec::new();
            for n in 0..ops_per_key {
                let point = 100 + (n as u64) * spacing_us;
                let invoke = point - rng.random_range(0..=spread_us.min(100));
                let complete = point + rng.random_range(0..=spread_us);
                let client = rng.random_range(0..8u64);
                let lost = rng.random_bool(0.1);
                let value = ((k as u64) << 32) | n as u64;
                let (input, outcome) = match rng.random_range(0..100) {
                    0..40 => {
                        let outcome =
                            if lost { Outcome::Indeterminate } else { Outcome::Ok(RegisterOutput::Read(state)) };
                        (RegisterInput::Read, outcome)
                    }
                    40..75 => {
                        let happened = !lost || rng.random_bool(0.5);
                        if happened {
                            state = Some(value);
                            written.push(value);
                        }
                        let outcome = if lost { Outcome::Indeterminate } else { Outcome::Ok(RegisterOutput::Written) };
                        (RegisterInput::Write(value), outcome)
                    }
                    _ => {
                        let expected = if rng.random_bool(0.7) || written.is_empty() {
                            state
                        } else {
                            Some(written[rng.random_range(0..written.len())])
                        };
                        let succeeds = state == expected;
                        let happened = succeeds && (!lost || rng.random_bool(0.5));
                        if happened {
                            state = Some(value);
                            written.push(value);
                        }
                        let outcome = match (lost, succeeds) {
                            (true, _) => Outcome::Indeterminate,
                            (false, true) => Outcome::Ok(RegisterOutput::Written),
                            (false, false) => Outcome::Failed,
                        };
                        (RegisterInput::Cas { expected, new: value }, outcome)
                    }
                };
                ops.push(Op { client, key: key.clone(), input, invoke: t(invoke), complete: t(complete), outcome });
            }
        }
        ops
    }

    /// Makes one read return a value that a completed write had already overwritten before the
    /// read began: `w(v)` completed, then a successful write `w2` began and completed, then the
    /// read began. Returns false if the history has no such read.
    fn make_one_read_stale(ops: &mut [RegisterOp], rng: &mut ChaCha8Rng) -> bool {
        let wrote = |op: &RegisterOp| match (&op.input, &op.outcome) {
            (RegisterInput::Write(v) | RegisterInput::Cas { new: v, .. }, Outcome::Ok(_)) => Some(*v),
            _ => None,
        };
        let mut choices: Vec<(usize, Value)> = Vec::new();
        for (r, read) in ops.iter().enumerate() {
            let Some(RegisterOutput::Read(seen)) = read.ok() else { continue };
            for w in ops.iter().filter(|w| w.key == read.key) {
                let Some(v) = wrote(w) else { continue };
                let overwritten = ops.iter().any(|w2| {
                    w2.key == read.key
                        && wrote(w2).is_some_and(|v2| v2 != v)
                        && w.complete < w2.invoke
                        && w2.complete < read.invoke
                });
                if overwritten && *seen != Some(v) {
                    choices.push((r, v));
                }
            }
        }
        if choices.is_empty() {
            return false;
        }
        let (r, v) = choices[rng.random_range(0..choices.len())];
        ops[r].outcome = Outcome::Ok(RegisterOutput::Read(Some(v)));
        true
    }

    #[test]
    fn randomized_histories_of_a_correct_register_pass_and_a_stale_read_fails() {
        let mut perturbed = 0;
        for seed in 0..60u64 {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let spread_us = rng.random_range(0..=40);
            let mut ops = generate(&mut rng, 3, 60, spread_us);
            let verdict = check(&ops);
            assert_eq!(verdict, Verdict::Ok, "seed {seed}");
            if make_one_read_stale(&mut ops, &mut rng) {
                let verdict = check(&ops);
                assert!(verdict.is_violation(), "seed {seed}: a stale read went unnoticed: {verdict:?}");
                perturbed += 1;
            }
        }
        assert!(perturbed >= 40, "only {perturbed} histories had a read to make stale");
    }

    /// Ground truth by enumeration: some subset of the indeterminate candidates, in some order
    /// that respects real time, applies from `None`.
    fn linearizable_by_brute_force(candidates: &[Candidate]) -> bool {
        let indeterminate: Vec<usize> = (0..candidates.len()).filter(|&c| candidates[c].complete.is_none()).collect();
        for subset in 0u32..(1 << indeterminate.len()) {
            let mut chosen: Vec<usize> = (0..candidates.len()).filter(|&c| candidates[c].complete.is_some()).collect();
            chosen
                .extend(indeterminate.iter().enumerate().filter(|(bit, _)| subset & (1 << bit) != 0).map(|(_, &c)| c));
            chosen.sort_unstable();
            // Heap's algorithm over `chosen`, iteratively.
            let n = chosen.len();
            let mut counters = vec![0usize; n];
            let valid = |order: &[usize]| {
                let respects_real_time = order.iter().enumerate().all(|(i, &a)| {
                    order[i + 1..]
                        .iter()
                        .all(|&b| candidates[b].complete.is_none_or(|done| done >= candidates[a].invoke))
                });
                respects_real_time && order.iter().try_fold(None, |state, &c| candidates[c].step.apply(state)).is_some()
            };
            if valid(&chosen) {
                return true;
            }
            let mut i = 0;
            while i < n {
                if counters[i] < i {
                    if i % 2 == 0 {
                        chosen.swap(0, i);
                    } else {
                        chosen.swap(counters[i], i);
                    }
                    if valid(&chosen) {
                        return true;
                    }
                    counters[i] += 1;
                    i = 0;
                } else {
                    counters[i] = 0;
                    i += 1;
                }
            }
        }
        false
    }

    #[test]
    fn the_search_agrees_with_brute_force_on_small_random_histories() {
        // Values from a tiny domain and arbitrary results: most histories are violations, many
        // are not, and indeterminate ops and failed CASes appear in all combinations.
        let mut rng = ChaCha8Rng::seed_from_u64(2024);
        let (mut linearizable, mut violations) = (0, 0);
        for round in 0..400 {
            let ops_len = rng.random_range(1..=7);
            let small = |rng: &mut ChaCha8Rng| rng.random_range(0..4u64).checked_sub(1).map(|v| v + 1);
            let ops: Vec<RegisterOp> = (0..ops_len)
                .map(|client| {
                    let invoke = rng.random_range(0..20);
                    let complete = invoke + rng.random_range(0..8);
                    let (input, outcome) = match rng.random_range(0..3) {
                        0 => (RegisterInput::Read, Outcome::Ok(RegisterOutput::Read(small(&mut rng)))),
                        1 => (RegisterInput::Write(rng.random_range(1..4)), Outcome::Ok(RegisterOutput::Written)),
                        _ => {
                            let input = RegisterInput::Cas { expected: small(&mut rng), new: rng.random_range(1..4) };
                            let outcome = if rng.random_bool(0.5) {
                                Outcome::Ok(RegisterOutput::Written)
                            } else {
                                Outcome::Failed
                            };
                            (input, outcome)
                        }
                    };
                    let outcome = if !matches!(input, RegisterInput::Read) && rng.random_bool(0.3) {
                        Outcome::Indeterminate
                    } else {
                        outcome
                    };
                    op(client, "k", input, (invoke, complete), outcome)
                })
                .collect();
            let indices: Vec<usize> = (0..ops.len()).collect();
            let expected = linearizable_by_brute_force(&candidates(&ops, &indices));
            let verdict = check(&ops);
            assert_eq!(verdict.is_ok(), expected, "round {round}: {verdict:?} for {ops:#?}");
            assert!(!verdict.is_unknown());
            if expected {
                linearizable += 1;
            } else {
                violations += 1;
            }
        }
        assert!(linearizable > 50 && violations > 50, "{linearizable} linearizable, {violations} violations");
    }

    #[test]
    fn a_long_concurrent_history_is_checked_within_budget() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        // Each op overlaps up to ten others.
        let mut ops = generate(&mut rng, 1, 600, 50);
        assert_eq!(check(&ops), Verdict::Ok);
        assert!(make_one_read_stale(&mut ops, &mut rng));
        let verdict = check(&ops);
        assert!(verdict.is_violation(), "{verdict:?}");
    }
}
