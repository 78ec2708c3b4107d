//! A request for an unreachable datacenter fails fast, saying why; once the WAN heals, such
//! requests are served again.
//!
//! Property: **fail fast across the WAN** — Consul's routing: a server forwards `?dc=` only to
//! the servers its WAN pool believes alive; once every server of a datacenter is believed
//! failed the answer is at once `No path to datacenter` (`ErrNoDCPath`), so a client neither
//! hangs on a dead WAN link nor mistakes the failure for a slow one. The simulated servers
//! learn who is alive from their own probes ([`crate::world::wan`]), which bounds how long
//! believing takes (`detect_max`) and unbelieving (`recover_max`).
//!
//! # Rules
//!
//! 1. **Fail fast.** Datacenter `T` is unreachable from `H` while either of them is cut off by a
//!    WAN partition, or `T` is lost (overlapping windows merge). A request from `H`'s clients
//!    for `T`, invoked in such a window from `detect_max` after it starts until `edge` before it
//!    ends, must be answered "No path to datacenter" within `fail_fast_max` of its invocation —
//!    unless `H` itself was disturbed (a fault on its servers or internal links, on every link,
//!    or its own loss) between `settle` before the window and its end: then its own servers may
//!    be down, restarted (a restarted server believes every datacenter alive until it probes),
//!    or slow.
//! 2. **Served after the heal.** From `recover_max` after the final heal on, no request for
//!    another datacenter is answered "No path to datacenter", and for every pair `(H, T)` with
//!    requests at least one is served. A run that has no such request at all is reported (the
//!    rule would hold vacuously).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use super::history::{DcIndex, DcOp, FaultScope, FaultSpan};
use super::{Violation, Violations};

const CHECKER: &str = "wan_fail_fast";

/// Requests listed per violation.
const REPORT_OPS_MAX: usize = 4;

/// The bounds the rules use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FailFastBounds {
    /// From a datacenter becoming unreachable until every server of the others knows it.
    pub detect_max: Duration,
    /// From the heal until every server routes to every datacenter again.
    pub recover_max: Duration,
    /// The slowest a "No path to datacenter" answer may be.
    pub fail_fast_max: Duration,
    /// How long before a window a fault of the home datacenter still excuses it.
    pub settle: Duration,
    /// Requests this close to a window's end are not judged (the heal may overtake them).
    pub edge: Duration,
}

/// What the check judged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FailFastSummary {
    /// Requests judged by rule 1, all answered "No path to datacenter" in time when it held.
    pub fail_fast_judged: usize,
    /// The slowest of those answers.
    pub fail_fast_slowest: Duration,
    /// Requests for another datacenter judged by rule 2, and of those served.
    pub after_heal_judged: usize,
    pub after_heal_served: usize,
}

/// Checks `ops` against the WAN faults in `faults`; the final heal was at `healed_at`.
pub fn check(
    ops: &[DcOp],
    faults: &[FaultSpan],
    names: &[String],
    healed_at: Duration,
    bounds: &FailFastBounds,
) -> (Vec<Violation>, FailFastSummary) {
    let mut violations = Violations::new(CHECKER);
    let mut summary = FailFastSummary::default();
    let name = |d: DcIndex| names.get(d).map_or_else(|| format!("dc#{d}"), Clone::clone);
    let dcs = names.len();
    for h in 0..dcs {
        for t in (0..dcs).filter(|t| *t != h) {
            for (start, end) in unreachable(faults, h, t) {
                let excused =
                    faults.iter().any(|f| f.scope.disturbs(h) && f.overlaps(start.saturating_sub(bounds.settle), end));
                let from = start.saturating_add(bounds.detect_max);
                let Some(to) = end.checked_sub(bounds.edge).filter(|to| !excused && *to >= from) else { continue };
                let judged: Vec<&DcOp> = ops
                    .iter()
                    .filter(|op| op.home == h && op.target == t && op.invoke >= from && op.invoke <= to)
                    .collect();
                summary.fail_fast_judged += judged.len();
                for op in &judged {
                    summary.fail_fast_slowest = summary.fail_fast_slowest.max(op.latency());
                }
                let slow: Vec<&&DcOp> =
                    judged.iter().filter(|op| !op.answer.is_no_path() || op.latency() > bounds.fail_fast_max).collect();
                if slow.is_empty() {
                    continue;
                }
                let mut text = format!(
                    "{} could not reach {} during [{start:?}, {end:?}], but {} of {} requests from {}'s clients \
                     for {} invoked between {from:?} and {to:?} were not answered \"No path to datacenter\" within \
                     {:?}:",
                    name(h),
                    name(t),
                    slow.len(),
                    judged.len(),
                    name(h),
                    name(t),
                    bounds.fail_fast_max
                );
                list(&mut text, &slow);
                violations.push(text);
            }
        }
    }

    // Rule 2: after the heal.
    let from = healed_at.saturating_add(bounds.recover_max);
    let mut pairs: BTreeMap<(DcIndex, DcIndex), Vec<&DcOp>> = BTreeMap::new();
    for op in ops.iter().filter(|op| op.is_remote() && op.invoke >= from) {
        pairs.entry((op.home, op.target)).or_default().push(op);
    }
    for ((h, t), judged) in &pairs {
        summary.after_heal_judged += judged.len();
        let served = judged.iter().filter(|op| op.answer.is_served()).count();
        summary.after_heal_served += served;
        let no_path: Vec<&&DcOp> = judged.iter().filter(|op| op.answer.is_no_path()).collect();
        if !no_path.is_empty() {
            let mut text = format!(
                "after the heal at {healed_at:?}, {} of {} requests from {}'s clients for {} invoked from {from:?} \
                 on were answered \"No path to datacenter\":",
                no_path.len(),
                judged.len(),
                name(*h),
                name(*t)
            );
            list(&mut text, &no_path);
            violations.push(text);
        } else if served == 0 {
            let mut text = format!(
                "after the heal at {healed_at:?}, none of {} requests from {}'s clients for {} invoked from {from:?} \
                 on was served:",
                judged.len(),
                name(*h),
                name(*t)
            );
            list(&mut text, &judged.iter().collect::<Vec<_>>());
            violations.push(text);
        }
    }
    if pairs.is_empty() {
        violations.push(format!(
            "no request for another datacenter was invoked after {from:?} (the heal at {healed_at:?} plus {:?}): \
             service after the heal is unchecked; lengthen the liveness phase",
            bounds.recover_max
        ));
    }
    (violations.finish(), summary)
}

fn list(text: &mut String, ops: &[&&DcOp]) {
    for op in ops.iter().take(REPORT_OPS_MAX) {
        let _ = write!(
            text,
            " client {} {:?} {:?} [{:?}, {:?}] took {:?}: {:?};",
            op.client,
            op.request,
            op.key,
            op.invoke,
            op.complete,
            op.latency(),
            op.answer
        );
    }
    if ops.len() > REPORT_OPS_MAX {
        let _ = write!(text, " ... and {} more", ops.len() - REPORT_OPS_MAX);
    }
}

/// The windows during which `t` was unreachable from `h`, merged and in time order.
fn unreachable(faults: &[FaultSpan], h: DcIndex, t: DcIndex) -> Vec<(Duration, Duration)> {
    let mut windows: Vec<(Duration, Duration)> = faults
        .iter()
        .filter(|f| match f.scope {
            FaultScope::WanCut(x) => x == h || x == t,
            FaultScope::DcLost(x) => x == t,
            FaultScope::Servers(_) | FaultScope::WanDelay(_) => false,
        })
        .map(|f| (f.start, f.end))
        .collect();
    windows.sort();
    let mut merged: Vec<(Duration, Duration)> = Vec::new();
    for (start, end) in windows {
        match merged.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::history::{DcAnswer, DcRequest};

    fn t(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    fn bounds() -> FailFastBounds {
        FailFastBounds {
            detect_max: t(3_000),
            recover_max: t(2_000),
            fail_fast_max: t(500),
            settle: t(2_000),
            edge: t(100),
        }
    }

    fn remote(home: DcIndex, target: DcIndex, invoke: u64, took: u64, answer: DcAnswer) -> DcOp {
        DcOp {
            client: 1,
            home,
            target,
            key: "k".into(),
            request: DcRequest::Write(1),
            invoke: t(invoke),
            complete: t(invoke + took),
            answer,
        }
    }

    fn no_path() -> DcAnswer {
        DcAnswer::Error { text: "No path to datacenter".into(), no_path: true }
    }

    fn span(scope: FaultScope, start: u64, end: u64) -> FaultSpan {
        FaultSpan { scope, start: t(start), end: t(end) }
    }

    fn names() -> Vec<String> {
        vec!["dc1".into(), "dc2".into(), "dc3".into()]
    }

    #[test]
    fn fast_no_path_answers_during_a_cut_and_service_after_the_heal_pass() {
        let ops = [
            // Before detection: a time-out is lawful.
            remote(0, 1, 11_000, 2_000, DcAnswer::Lost("timed out".into())),
            remote(0, 1, 14_000, 12, no_path()),
            remote(1, 2, 15_000, 9, no_path()),
            // dc3 and dc1 still reach each other.
            remote(2, 0, 15_000, 40, DcAnswer::Written(true)),
            remote(0, 1, 33_000, 50, DcAnswer::Written(true)),
        ];
        let (violations, summary) =
            check(&ops, &[span(FaultScope::WanCut(1), 10_000, 20_000)], &names(), t(30_000), &bounds());
        assert_eq!(violations, Vec::new());
        assert_eq!(summary.fail_fast_judged, 2);
        assert_eq!(summary.fail_fast_slowest, t(12));
        assert_eq!((summary.after_heal_judged, summary.after_heal_served), (1, 1));
    }

    #[test]
    fn a_slow_or_unexplained_failure_during_a_loss_is_a_violation() {
        let ops = [
            remote(0, 2, 14_000, 2_000, DcAnswer::Lost("timed out".into())),
            remote(1, 2, 14_000, 20, DcAnswer::Error { text: "No cluster leader".into(), no_path: false }),
            remote(0, 1, 33_000, 50, DcAnswer::Written(true)),
        ];
        let (violations, _) =
            check(&ops, &[span(FaultScope::DcLost(2), 10_000, 20_000)], &names(), t(30_000), &bounds());
        assert_eq!(violations.len(), 2, "{violations:?}");
        assert!(violations[0].message.starts_with("dc1 could not reach dc3 during [10s, 20s]"), "{violations:?}");
        assert!(violations[1].message.contains("No cluster leader"), "{violations:?}");
    }

    #[test]
    fn a_disturbed_home_datacenter_is_excused() {
        let ops = [
            remote(0, 1, 14_000, 2_000, DcAnswer::Lost("timed out".into())),
            remote(0, 1, 33_000, 50, DcAnswer::Read(None)),
        ];
        let faults = [span(FaultScope::WanCut(1), 10_000, 20_000), span(FaultScope::Servers(Some(0)), 9_000, 9_500)];
        let (violations, summary) = check(&ops, &faults, &names(), t(30_000), &bounds());
        assert_eq!(violations, Vec::new());
        assert_eq!(summary.fail_fast_judged, 0);
    }

    #[test]
    fn no_path_after_the_heal_and_no_service_after_it_are_violations() {
        let ops = [remote(0, 1, 33_000, 5, no_path()), remote(1, 0, 33_000, 2_000, DcAnswer::Lost("timed out".into()))];
        let (violations, _) = check(&ops, &[], &names(), t(30_000), &bounds());
        assert_eq!(violations.len(), 2, "{violations:?}");
        assert!(violations[0].message.contains("answered \"No path to datacenter\""), "{violations:?}");
        assert!(violations[1].message.contains("none of 1 requests from dc2's clients for dc1"), "{violations:?}");
        let (unchecked, _) = check(&[], &[], &names(), t(30_000), &bounds());
        assert!(unchecked[0].message.contains("unchecked"), "{unchecked:?}");
    }

    #[test]
    fn overlapping_windows_merge() {
        let faults = [
            span(FaultScope::WanCut(0), 10_000, 15_000),
            span(FaultScope::DcLost(1), 14_000, 20_000),
            span(FaultScope::WanCut(2), 30_000, 31_000),
        ];
        assert_eq!(unreachable(&faults, 0, 1), [(t(10_000), t(20_000))]);
        assert_eq!(unreachable(&faults, 2, 1), [(t(14_000), t(20_000)), (t(30_000), t(31_000))]);
        assert_eq!(unreachable(&faults, 1, 2), [(t(30_000), t(31_000))]);
    }
}
