//! No acknowledged write is lost across crashes.
//!
//! Property: **durability** of acknowledged writes — Jepsen's "lost updates" (its set and
//! register checkers' `:lost` category); for Raft, the consequence of Leader Completeness (a
//! committed entry is in every later leader's log, Raft §5.4). Crashes with a disk that drops
//! unsynced writes are exactly where an implementation that acknowledges before fsync loses data.
//!
//! # Rule
//!
//! Input: per key, every write that may have taken effect — acknowledged (with its completion)
//! or indeterminate (completion = ∞) — and one or more final reads taken after all faults
//! healed and the workload stopped. Failed writes are left out (they definitely did not happen).
//! Values are unique per key. A final read of key `k` invoked at `t` that returned:
//!
//! - `Some(x)` is valid iff some write `w` of `k` wrote `x` and **no acknowledged write `w'` of
//!   `k` strictly followed `w`**: none has `w.complete < w'.invoke` and `w'.complete < t`. Such a
//!   `w'` took effect after `w` and before the read, so a correct store could no longer hold `x`.
//!   An indeterminate `w` completes at ∞, so nothing strictly follows it: it may have landed last.
//! - `None` (absent) is valid iff no acknowledged write of `k` completed before `t` (the initial
//!   absent state is a write completed at −∞). Deletes are not modelled.
//!
//! Every key with an acknowledged write needs at least one final read; a missing one is reported,
//! since an unverified key would pass silently. The rule is sound (a linearizable, durable store
//! never fails it) and catches every loss that the final state can reveal: a final value older
//! than some acknowledged write. A write lost and then overwritten is invisible here; the
//! linearizability checker sees those through the reads in between.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use super::history::{Outcome, RegisterInput, RegisterOp, Value};
use super::{Violation, Violations};

const CHECKER: &str = "durability";

/// Candidate values listed in a report.
pub const REPORT_WRITES_MAX: usize = 8;

/// A write that may have taken effect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteRecord {
    pub key: String,
    pub value: Value,
    pub invoke: Duration,
    /// When the write was acknowledged; `None` if indeterminate.
    pub acked_at: Option<Duration>,
}

/// A read of a key taken after all faults healed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FinalRead {
    pub key: String,
    /// `None`: the key was absent (404).
    pub value: Option<Value>,
    pub invoke: Duration,
}

/// The writes and CASes of a register history that may have taken effect.
pub fn writes_from_register_history(ops: &[RegisterOp]) -> Vec<WriteRecord> {
    let mut out = Vec::new();
    for op in ops {
        let value = match op.input {
            RegisterInput::Write(value) | RegisterInput::Cas { new: value, .. } => value,
            RegisterInput::Read => continue,
        };
        let acked_at = match op.outcome {
            Outcome::Ok(_) => Some(op.complete),
            Outcome::Indeterminate => None,
            Outcome::Failed => continue,
        };
        out.push(WriteRecord { key: op.key.clone(), value, invoke: op.invoke, acked_at });
    }
    out
}

/// Checks the final reads against the writes (see the module docs for the rule).
pub fn check(writes: &[WriteRecord], final_reads: &[FinalRead]) -> Vec<Violation> {
    let mut violations = Violations::new(CHECKER);
    let mut by_key: BTreeMap<&str, Vec<&WriteRecord>> = BTreeMap::new();
    for write in writes {
        if let Some(acked_at) = write.acked_at {
            assert!(write.invoke <= acked_at, "a write acknowledged before its invocation: {write:?}");
        }
        by_key.entry(write.key.as_str()).or_default().push(write);
    }
    let mut read_keys: BTreeMap<&str, usize> = BTreeMap::new();
    for (r, read) in final_reads.iter().enumerate() {
        *read_keys.entry(read.key.as_str()).or_default() += 1;
        let key_writes = by_key.get(read.key.as_str()).map_or(&[][..], |w| w.as_slice());
        // Acknowledged before the read: these took effect before it.
        let acked_before: Vec<&WriteRecord> =
            key_writes.iter().copied().filter(|w| w.acked_at.is_some_and(|at| at < read.invoke)).collect();
        // The latest invocation among them: any write acknowledged before it was overwritten.
        let latest_invoke = acked_before.iter().map(|w| w.invoke).max();
        let problem = match read.value {
            None => latest_invoke.map(|_| "the key is absent".to_string()),
            Some(value) => {
                let writers: Vec<&WriteRecord> = key_writes.iter().copied().filter(|w| w.value == value).collect();
                if writers.is_empty() {
                    Some(format!("value {value} was never written to this key (or only by failed writes)"))
                } else if writers.iter().all(|w| overwritten(w, latest_invoke)) {
                    let w = writers[0];
                    Some(format!(
                        "value {value} comes from a write [{:?}, {:?}] that acknowledged writes began after",
                        w.invoke,
                        w.acked_at.expect("acknowledged")
                    ))
                } else {
                    None
                }
            }
        };
        if let Some(problem) = problem {
            violations.push(explain(r, read, &problem, &acked_before, key_writes));
        }
    }
    for (key, key_writes) in &by_key {
        let acknowledged = key_writes.iter().filter(|w| w.acked_at.is_some()).count();
        if acknowledged > 0 && !read_keys.contains_key(key) {
            violations
                .push(format!("key {key:?}: {acknowledged} acknowledged writes but no final read to verify them"));
        }
    }
    violations.finish()
}

/// Whether `write` was acknowledged before an acknowledged write (the latest of which was
/// invoked at `latest_invoke`) began: then it was overwritten before the final read.
fn overwritten(write: &WriteRecord, latest_invoke: Option<Duration>) -> bool {
    write.acked_at.is_some_and(|at| latest_invoke.is_some_and(|latest| at < latest))
}

fn explain(r: usize, read: &FinalRead, problem: &str, acked_before: &[&WriteRecord], all: &[&WriteRecord]) -> String {
    let mut out = format!(
        "key {:?}: final read #{r} at {:?} returned {:?}: {problem}; acknowledged writes lost.",
        read.key, read.invoke, read.value
    );
    // The writes the read could lawfully have returned: not strictly followed by an acked one.
    let latest_invoke = acked_before.iter().map(|w| w.invoke).max();
    let lawful: Vec<&&WriteRecord> = all.iter().filter(|w| !overwritten(w, latest_invoke)).collect();
    let _ = write!(out, " Values it could have returned:");
    for w in lawful.iter().take(REPORT_WRITES_MAX) {
        let acked = w.acked_at.map_or("indeterminate".to_string(), |at| format!("acknowledged at {at:?}"));
        let _ = write!(out, " {} (invoked {:?}, {acked});", w.value, w.invoke);
    }
    if lawful.len() > REPORT_WRITES_MAX {
        let _ = write!(out, " ... and {} more", lawful.len() - REPORT_WRITES_MAX);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::history::{Op, RegisterOutput};

    fn t(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn acked(value: Value, invoke: u64, at: u64) -> WriteRecord {
        WriteRecord { key: "k".into(), value, invoke: t(invoke), acked_at: Some(t(at)) }
    }

    fn maybe(value: Value, invoke: u64) -> WriteRecord {
        WriteRecord { key: "k".into(), value, invoke: t(invoke), acked_at: None }
    }

    fn final_read(value: Option<Value>) -> FinalRead {
        FinalRead { key: "k".into(), value, invoke: t(1_000) }
    }

    #[test]
    fn the_last_acknowledged_write_survives() {
        let writes = [acked(1, 0, 10), acked(2, 20, 30)];
        assert_eq!(check(&writes, &[final_read(Some(2))]), Vec::new());
        assert_eq!(check(&[], &[]), Vec::new());
        assert_eq!(check(&[], &[final_read(None)]), Vec::new());
    }

    #[test]
    fn concurrent_acknowledged_writes_may_end_in_either_order() {
        let writes = [acked(1, 0, 10), acked(2, 5, 15)];
        assert_eq!(check(&writes, &[final_read(Some(1))]), Vec::new());
        assert_eq!(check(&writes, &[final_read(Some(2))]), Vec::new());
    }

    #[test]
    fn an_overwritten_value_in_the_final_read_means_a_lost_write() {
        let writes = [acked(1, 0, 10), acked(2, 20, 30), maybe(3, 40)];
        let violations = check(&writes, &[final_read(Some(1))]);
        assert_eq!(violations.len(), 1);
        let text = &violations[0].message;
        assert!(text.starts_with("key \"k\": final read #0 at 1s returned Some(1)"), "{text}");
        assert!(text.contains("Values it could have returned: 2 (invoked 20ms, acknowledged at 30ms); 3"), "{text}");
    }

    #[test]
    fn indeterminate_writes_may_or_may_not_have_landed() {
        let writes = [acked(1, 0, 10), maybe(2, 5), maybe(3, 50)];
        for value in [1, 2, 3] {
            assert_eq!(check(&writes, &[final_read(Some(value))]), Vec::new(), "value {value}");
        }
        // Even an indeterminate write invoked long before the last acknowledged one.
        let early = [maybe(1, 0), acked(2, 20, 30)];
        assert_eq!(check(&early, &[final_read(Some(1))]), Vec::new());
    }

    #[test]
    fn absent_or_unknown_values_are_violations() {
        let writes = [acked(1, 0, 10)];
        let absent = check(&writes, &[final_read(None)]);
        assert_eq!(absent.len(), 1);
        assert!(absent[0].message.contains("the key is absent"), "{absent:?}");
        let unknown = check(&writes, &[final_read(Some(9))]);
        assert!(unknown[0].message.contains("value 9 was never written"), "{unknown:?}");
        // Absent is fine if only indeterminate writes were made.
        assert_eq!(check(&[maybe(1, 0)], &[final_read(None)]), Vec::new());
    }

    #[test]
    fn every_final_read_counts_and_a_missing_one_is_reported() {
        let writes = [acked(1, 0, 10), acked(2, 20, 30)];
        // One replica is behind.
        let reads = [final_read(Some(2)), final_read(Some(1))];
        assert_eq!(check(&writes, &reads).len(), 1);
        let missing = check(&writes, &[]);
        assert_eq!(missing.len(), 1);
        assert!(missing[0].message.contains("no final read"), "{missing:?}");
    }

    #[test]
    fn writes_acknowledged_after_the_read_began_do_not_count() {
        let writes = [acked(1, 0, 10), acked(2, 20, 2_000)];
        assert_eq!(check(&writes, &[final_read(Some(1))]), Vec::new());
    }

    #[test]
    fn register_histories_provide_the_writes() {
        let op = |input, outcome| Op { client: 1, key: "k".into(), input, invoke: t(1), complete: t(2), outcome };
        let ops = [
            op(RegisterInput::Read, Outcome::Ok(RegisterOutput::Read(None))),
            op(RegisterInput::Write(1), Outcome::Ok(RegisterOutput::Written)),
            op(RegisterInput::Write(2), Outcome::Failed),
            op(RegisterInput::Cas { expected: Some(1), new: 3 }, Outcome::Indeterminate),
        ];
        let writes = writes_from_register_history(&ops);
        assert_eq!(writes, vec![acked(1, 1, 2), maybe(3, 1)]);
    }
}
