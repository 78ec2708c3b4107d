//! Each datacenter's KV is its own store: no value written to one datacenter's KV is ever read
//! from another's.
//!
//! Property: **datacenter isolation** — in Consul's federation model datacenters share no
//! state (each is its own Raft cluster with its own KV); `?dc=` only chooses which one serves a
//! request. A key of the same name in two datacenters is two registers. A server that applies
//! a request for datacenter B to its own datacenter A (or answers a read for B from A) breaks
//! it, and so would any mix-up of the routes.
//!
//! # Rule
//!
//! Every write and CAS names the datacenter whose KV it is for (`target`); values are unique
//! per datacenter (the workload puts the datacenter's index in the high bits). A read served
//! for datacenter `B` that returned `v` is a violation when `v` was written (by any request,
//! whatever its outcome) only for another datacenter: `v` could only be in `B`'s KV if a write
//! for elsewhere landed there. A value nobody wrote is left to `linearizability` and
//! `durability`, which see invented values per register. The rule is sound: in a correct
//! system a datacenter's KV only ever holds values written for it.

use std::collections::BTreeMap;

use super::history::{DcAnswer, DcIndex, DcOp, Value};
use super::{Violation, Violations};

const CHECKER: &str = "dc_isolation";

/// Checks every read of `ops` (the final reads included); `names` are the datacenters' names.
pub fn check(ops: &[DcOp], names: &[String]) -> Vec<Violation> {
    let mut violations = Violations::new(CHECKER);
    let name = |d: DcIndex| names.get(d).map_or_else(|| format!("dc#{d}"), Clone::clone);
    let mut writers: BTreeMap<Value, Vec<&DcOp>> = BTreeMap::new();
    for op in ops {
        if let Some(v) = op.request.written() {
            writers.entry(v).or_default().push(op);
        }
    }
    for read in ops {
        let DcAnswer::Read(Some(v)) = read.answer else { continue };
        let Some(by) = writers.get(&v) else { continue };
        if by.iter().any(|w| w.target == read.target) {
            continue;
        }
        let w = by[0];
        violations.push(format!(
            "client {} (in {}) read {}'s {:?} at [{:?}, {:?}] and got {v}, a value written only for {}'s KV: \
             client {} (in {}) sent {:?} for {}'s {:?} at {:?}, answered {:?}",
            read.client,
            name(read.home),
            name(read.target),
            read.key,
            read.invoke,
            read.complete,
            name(w.target),
            w.client,
            name(w.home),
            w.request,
            name(w.target),
            w.key,
            w.invoke,
            w.answer
        ));
    }
    violations.finish()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::check::history::DcRequest;

    fn op(home: DcIndex, target: DcIndex, request: DcRequest, answer: DcAnswer) -> DcOp {
        DcOp {
            client: 1,
            home,
            target,
            key: "k".into(),
            request,
            invoke: Duration::from_millis(1),
            complete: Duration::from_millis(2),
            answer,
        }
    }

    fn names() -> Vec<String> {
        vec!["dc1".into(), "dc2".into()]
    }

    #[test]
    fn reads_of_values_written_for_the_same_datacenter_pass() {
        let ops = [
            op(0, 1, DcRequest::Write(7), DcAnswer::Written(true)),
            op(1, 1, DcRequest::Read, DcAnswer::Read(Some(7))),
            op(0, 1, DcRequest::Read, DcAnswer::Read(Some(7))),
            op(0, 0, DcRequest::Read, DcAnswer::Read(None)),
            // A value nobody wrote is linearizability's business.
            op(0, 0, DcRequest::Read, DcAnswer::Read(Some(99))),
        ];
        assert_eq!(check(&ops, &names()), Vec::new());
    }

    #[test]
    fn a_value_written_for_another_datacenter_is_a_violation_whatever_the_write_answered() {
        for answer in [DcAnswer::Written(true), DcAnswer::Lost("timed out".into())] {
            let ops = [op(0, 1, DcRequest::Cas(7), answer.clone()), op(0, 0, DcRequest::Read, DcAnswer::Read(Some(7)))];
            let violations = check(&ops, &names());
            assert_eq!(violations.len(), 1, "{violations:?}");
            let text = &violations[0].message;
            assert!(text.starts_with("client 1 (in dc1) read dc1's \"k\" at [1ms, 2ms] and got 7"), "{text}");
            assert!(text.contains("written only for dc2's KV"), "{text}");
        }
    }
}
