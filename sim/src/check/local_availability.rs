//! A datacenter cut off from the others, or left when another is lost, keeps serving its own
//! clients.
//!
//! Property: **local availability under WAN failure** — each datacenter is its own CP system
//! (its own Raft quorum), so the loss of the WAN, or of a whole other datacenter, takes nothing
//! from a datacenter whose own servers and links are intact: Consul's reason for federating
//! datacenters rather than stretching one cluster across them.
//!
//! # Rule
//!
//! For every window `[start, end)` during which some datacenter `X` was cut off by a WAN
//! partition or lost, and every datacenter `D` (all of them for a partition, all but `X` for a
//! loss): the requests that `D`'s clients made for `D` itself and invoked within
//! `[start + grace, end - call_timeout]` must all be served — a value, or a write's verdict
//! (a CAS answering `false` was served) — unless `D` itself was disturbed then: a fault on its
//! servers or internal links, on every link, or its own loss, overlapping that judged span
//! widened by `settle` before and `call_timeout` after (its clients may lawfully see errors).
//! `grace` (an election timeout) leaves room for a leader change the WAN fault should not cause
//! but a correct system might still have in flight.
//!
//! Windows too short to hold a judged request judge nothing. If some window's judged span was
//! long (`judged_span_min`) but not one request fell in any window, that is reported, so a
//! scenario cannot pass vacuously.

use std::fmt::Write as _;
use std::time::Duration;

use super::history::{DcIndex, DcOp, FaultScope, FaultSpan};
use super::{Violation, Violations};

const CHECKER: &str = "local_availability";

/// Failed requests listed per window.
const REPORT_OPS_MAX: usize = 4;

/// How the rule's windows are cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AvailabilityBounds {
    /// Skipped at the start of a window.
    pub grace: Duration,
    /// How long before a judged span a fault of the datacenter itself still excuses errors.
    pub settle: Duration,
    /// The clients' call timeout: requests invoked later than this before the window's end
    /// may complete after it.
    pub call_timeout: Duration,
    /// A judged span at least this long must hold some request, or the check reports itself
    /// unchecked (shorter ones may lawfully hold none: a client waits out a call timeout on a
    /// request for the unreachable datacenter).
    pub judged_span_min: Duration,
}

/// What the check judged: windows and requests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AvailabilitySummary {
    /// (window, datacenter) pairs judged.
    pub windows: usize,
    /// Of those, the ones whose judged span was at least `judged_span_min` long.
    pub long_windows: usize,
    /// Requests judged.
    pub judged: usize,
    /// Of those, served.
    pub served: usize,
}

/// Checks the requests `ops` against the WAN faults in `faults`, for `datacenters`
/// datacenters named `names`.
pub fn check(
    ops: &[DcOp],
    faults: &[FaultSpan],
    names: &[String],
    bounds: &AvailabilityBounds,
) -> (Vec<Violation>, AvailabilitySummary) {
    let mut violations = Violations::new(CHECKER);
    let mut summary = AvailabilitySummary::default();
    let name = |d: DcIndex| names.get(d).map_or_else(|| format!("dc#{d}"), Clone::clone);
    for window in faults {
        let (what, x, lost) = match window.scope {
            FaultScope::WanCut(x) => ("cut off", x, false),
            FaultScope::DcLost(x) => ("lost", x, true),
            FaultScope::Servers(_) | FaultScope::WanDelay(_) => continue,
        };
        let from = window.start.saturating_add(bounds.grace);
        let Some(to) = window.end.checked_sub(bounds.call_timeout).filter(|to| *to >= from) else { continue };
        for d in (0..names.len()).filter(|d| !(lost && *d == x)) {
            let excuse_from = from.saturating_sub(bounds.settle);
            let excuse_to = to.saturating_add(bounds.call_timeout);
            if faults.iter().any(|f| f.scope.disturbs(d) && f.overlaps(excuse_from, excuse_to)) {
                continue;
            }
            let judged: Vec<&DcOp> = ops
                .iter()
                .filter(|op| op.home == d && op.target == d && op.invoke >= from && op.invoke <= to)
                .collect();
            summary.windows += 1;
            if to - from >= bounds.judged_span_min {
                summary.long_windows += 1;
            }
            summary.judged += judged.len();
            let failed: Vec<&&DcOp> = judged.iter().filter(|op| !op.answer.is_served()).collect();
            summary.served += judged.len() - failed.len();
            if failed.is_empty() {
                continue;
            }
            let mut text = format!(
                "{} was {what} during [{:?}, {:?}], but {} of {} requests {}'s clients made for {} itself \
                 between {from:?} and {to:?} were not served:",
                name(x),
                window.start,
                window.end,
                failed.len(),
                judged.len(),
                name(d),
                name(d)
            );
            for op in failed.iter().take(REPORT_OPS_MAX) {
                let _ = write!(
                    text,
                    " client {} {:?} {:?} [{:?}, {:?}] {:?};",
                    op.client, op.request, op.key, op.invoke, op.complete, op.answer
                );
            }
            if failed.len() > REPORT_OPS_MAX {
                let _ = write!(text, " ... and {} more", failed.len() - REPORT_OPS_MAX);
            }
            violations.push(text);
        }
    }
    if summary.long_windows > 0 && summary.judged == 0 {
        violations.push(format!(
            "{} windows of at least {:?} (a datacenter undisturbed while another was cut off or lost) could be \
             judged, but no request of a datacenter for itself was invoked in any of them: local availability is \
             unchecked; raise the KV rate",
            summary.long_windows, bounds.judged_span_min
        ));
    }
    (violations.finish(), summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::history::{DcAnswer, DcRequest};

    fn t(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    fn bounds() -> AvailabilityBounds {
        AvailabilityBounds { grace: t(1_000), settle: t(2_000), call_timeout: t(2_000), judged_span_min: t(4_000) }
    }

    fn local(d: DcIndex, invoke: u64, answer: DcAnswer) -> DcOp {
        DcOp {
            client: 1,
            home: d,
            target: d,
            key: "k".into(),
            request: DcRequest::Read,
            invoke: t(invoke),
            complete: t(invoke + 5),
            answer,
        }
    }

    fn span(scope: FaultScope, start: u64, end: u64) -> FaultSpan {
        FaultSpan { scope, start: t(start), end: t(end) }
    }

    fn names() -> Vec<String> {
        vec!["dc1".into(), "dc2".into()]
    }

    #[test]
    fn served_requests_during_a_cut_pass_and_are_counted() {
        let ops = [
            local(0, 11_000, DcAnswer::Read(None)),
            local(1, 12_000, DcAnswer::Written(false)),
            // Outside the judged span: in the grace, and too close to the end.
            local(0, 10_500, DcAnswer::Lost("timed out".into())),
            local(0, 19_000, DcAnswer::Lost("timed out".into())),
        ];
        let (violations, summary) = check(&ops, &[span(FaultScope::WanCut(1), 10_000, 20_000)], &names(), &bounds());
        assert_eq!(violations, Vec::new());
        assert_eq!(summary, AvailabilitySummary { windows: 2, long_windows: 2, judged: 2, served: 2 });
    }

    #[test]
    fn an_unserved_local_request_during_a_cut_is_a_violation() {
        let ops = [local(1, 12_000, DcAnswer::Error { text: "No cluster leader".into(), no_path: false })];
        let (violations, _) = check(&ops, &[span(FaultScope::WanCut(1), 10_000, 20_000)], &names(), &bounds());
        assert_eq!(violations.len(), 1, "{violations:?}");
        let text = &violations[0].message;
        assert!(text.starts_with("dc2 was cut off during [10s, 20s], but 1 of 1 requests dc2's clients"), "{text}");
    }

    #[test]
    fn a_lost_datacenter_and_a_disturbed_one_are_not_judged() {
        let ops = [
            local(1, 12_000, DcAnswer::Lost("timed out".into())),
            local(0, 12_000, DcAnswer::Lost("timed out".into())),
            local(0, 16_000, DcAnswer::Read(Some(1))),
        ];
        let faults = [
            span(FaultScope::DcLost(1), 10_000, 20_000),
            // dc1 had a crash that ended just before the judged span began.
            span(FaultScope::Servers(Some(0)), 5_000, 9_500),
        ];
        let (violations, summary) = check(&ops, &faults, &names(), &bounds());
        assert_eq!((violations, summary), (Vec::new(), AvailabilitySummary::default()));
    }

    #[test]
    fn judgeable_windows_without_a_single_request_are_reported() {
        let short = [span(FaultScope::WanCut(0), 10_000, 15_000)];
        assert_eq!(check(&[], &short, &names(), &bounds()).0, Vec::new(), "a 2s span may hold no request");
        let (violations, summary) = check(&[], &[span(FaultScope::WanCut(0), 10_000, 20_000)], &names(), &bounds());
        assert_eq!((summary.windows, summary.long_windows), (2, 2));
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert!(violations[0].message.contains("local availability is unchecked"), "{violations:?}");
    }
}
