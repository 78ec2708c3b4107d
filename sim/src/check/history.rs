//! The histories workloads record: one [`Op`] per client request, Jepsen style.
//!
//! An operation is *invoked* when the client sends the request and *completes* when the client
//! learns its outcome. Times are virtual, measured from the start of the simulation as a
//! [`Duration`] (madsim's clock, so they are exact and replayable). The outcome is one of
//! Jepsen's three:
//!
//! - [`Outcome::Ok`] (`:ok`): the request took effect and the client saw its result.
//! - [`Outcome::Failed`] (`:fail`): the request *definitely* did not take effect — a CAS or
//!   `acquire` answered `false`, or an error that Consul only returns before anything is
//!   proposed to Raft (400, 413, `invalid session`, `No cluster leader` from the request
//!   router). A failed request still has a completion time.
//! - [`Outcome::Indeterminate`] (`:info`): the client does not know — a timeout, a dropped
//!   connection, a 500 after the request may have been proposed. The request may take effect at
//!   any time after its invocation, even after the client gave up, or never. Checkers therefore
//!   treat its completion time as infinite; the recorded `complete` is only when the client gave
//!   up, kept for reports.
//!
//! Workloads that want the recorder's bookkeeping use [`Recorder`]: `invoke` when sending,
//! `complete` on the answer, and `finish` at the end turns every request still in flight into an
//! indeterminate one.
//!
//! A client performs one request at a time (Jepsen's "process"); after an indeterminate outcome
//! it may carry on, since checkers never assume a client's requests are ordered beyond what their
//! real times say.

use std::fmt;
use std::time::Duration;

/// A client process of a workload (one request in flight at a time).
pub type ClientId = u64;

/// A register value. Workloads write values that are unique per key (e.g. `client << 32 | seq`),
/// so a value names the one write that produced it.
pub type Value = u64;

/// A Consul session ID as the server returned it.
pub type SessionId = String;

/// The most operations one [`Recorder`] accepts; a run that records more is misconfigured (its
/// history could not be checked in reasonable time anyway).
pub const HISTORY_OPS_MAX: usize = 1 << 22;

/// How a request ended, as the client saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome<R> {
    /// Took effect; the client saw this result.
    Ok(R),
    /// Definitely did not take effect.
    Failed,
    /// May or may not have taken effect, at any time after invocation.
    Indeterminate,
}

/// One client request and what the client observed of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Op<I, R> {
    pub client: ClientId,
    /// The key (or lock key, or query) the request is about; checkers partition by it.
    pub key: String,
    /// What the client asked for.
    pub input: I,
    /// When the client sent the request.
    pub invoke: Duration,
    /// When the client learned the outcome; for [`Outcome::Indeterminate`], when it gave up.
    pub complete: Duration,
    pub outcome: Outcome<R>,
}

impl<I, R> Op<I, R> {
    pub fn is_ok(&self) -> bool {
        matches!(self.outcome, Outcome::Ok(_))
    }

    pub fn is_failed(&self) -> bool {
        matches!(self.outcome, Outcome::Failed)
    }

    pub fn is_indeterminate(&self) -> bool {
        matches!(self.outcome, Outcome::Indeterminate)
    }

    /// The latest time by which the request surely took effect or surely never will: its
    /// completion, or `None` (infinity) when indeterminate.
    pub fn settled_by(&self) -> Option<Duration> {
        match self.outcome {
            Outcome::Indeterminate => None,
            Outcome::Ok(_) | Outcome::Failed => Some(self.complete),
        }
    }

    /// The result, when the request took effect and the client saw it.
    pub fn ok(&self) -> Option<&R> {
        match &self.outcome {
            Outcome::Ok(r) => Some(r),
            Outcome::Failed | Outcome::Indeterminate => None,
        }
    }
}

impl<I: fmt::Debug, R: fmt::Debug> fmt::Display for Op<I, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "client {} {:?} {:?} [{:?}, ", self.client, self.key, self.input, self.invoke)?;
        match &self.outcome {
            Outcome::Ok(r) => write!(f, "{:?}] ok {:?}", self.complete, r),
            Outcome::Failed => write!(f, "{:?}] failed", self.complete),
            Outcome::Indeterminate => write!(f, "∞] indeterminate (gave up at {:?})", self.complete),
        }
    }
}

/// Names a request recorded by a [`Recorder`] between its invocation and completion.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct OpId(pub usize);

/// Records a history as requests are sent and answered.
///
/// Ops keep their invocation order. Each op is completed at most once; `finish` marks the rest
/// indeterminate.
#[derive(Clone, Debug)]
pub struct Recorder<I, R> {
    ops: Vec<Op<I, R>>,
    /// `pending[i]`: op `i` was invoked and not yet completed.
    pending: Vec<bool>,
}

impl<I, R> Default for Recorder<I, R> {
    fn default() -> Self {
        Recorder { ops: Vec::new(), pending: Vec::new() }
    }
}

impl<I, R> Recorder<I, R> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that `client` sent a request at `now`. Until completed it is indeterminate.
    pub fn invoke(&mut self, client: ClientId, key: impl Into<String>, input: I, now: Duration) -> OpId {
        assert!(self.ops.len() < HISTORY_OPS_MAX, "a history holds at most {HISTORY_OPS_MAX} ops");
        if let Some(last) = self.ops.last() {
            assert!(last.invoke <= now, "invocations are recorded in time order");
        }
        let id = OpId(self.ops.len());
        self.ops.push(Op {
            client,
            key: key.into(),
            input,
            invoke: now,
            complete: now,
            outcome: Outcome::Indeterminate,
        });
        self.pending.push(true);
        id
    }

    /// Records the outcome of a request at `now`.
    pub fn complete(&mut self, id: OpId, outcome: Outcome<R>, now: Duration) {
        assert!(self.pending[id.0], "op {} completed twice", id.0);
        let op = &mut self.ops[id.0];
        assert!(op.invoke <= now, "op {} completes before its invocation", id.0);
        op.complete = now;
        op.outcome = outcome;
        self.pending[id.0] = false;
    }

    /// Ends recording at `now`: requests still in flight become indeterminate, given up at `now`.
    pub fn finish(mut self, now: Duration) -> Vec<Op<I, R>> {
        for (op, pending) in self.ops.iter_mut().zip(&self.pending) {
            if *pending {
                assert!(op.invoke <= now);
                op.complete = now;
                op.outcome = Outcome::Indeterminate;
            }
        }
        self.ops
    }
}

// ---------------------------------------------------------------------------------------------
// The register workload (KV GET / PUT / PUT ?cas=), checked by `linearizability` and
// `durability`.

/// A request of the register workload on one key.
///
/// Consul's CAS compares `ModifyIndex`, not values. Because written values are unique per key,
/// the workload translates `?cas=i` into the value whose write produced index `i` (it learned
/// the pair from a read), and `?cas=0` into `expected: None`: the key's ModifyIndex is `i`
/// exactly when its current value is the one written at `i`. The checkers then model a plain
/// register over values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegisterInput {
    /// `GET /v1/kv/<key>` (default or consistent; not stale).
    Read,
    /// `PUT /v1/kv/<key>` with this value.
    Write(Value),
    /// `PUT /v1/kv/<key>?cas=<index>`: write `new` if the current value is `expected`
    /// (`None`: the key is absent, `?cas=0`). `Ok` means the server answered `true`, `Failed`
    /// that it answered `false`.
    Cas { expected: Option<Value>, new: Value },
}

/// What a successful register request returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegisterOutput {
    /// The value read; `None` for a 404.
    Read(Option<Value>),
    /// A write or CAS answered `true`.
    Written,
}

/// One register request.
pub type RegisterOp = Op<RegisterInput, RegisterOutput>;

// ---------------------------------------------------------------------------------------------
// The lock workload (`?acquire=`, `?release=`, consistent GETs of the lock key), checked by
// `lock_safety`.

/// A request of the lock workload on one lock key (the op's `key`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LockInput {
    /// `PUT /v1/kv/<key>?acquire=<session>`; `Ok` = `true`, `Failed` = `false`.
    Acquire { session: SessionId },
    /// `PUT /v1/kv/<key>?release=<session>`; `Ok` = `true`, `Failed` = `false`.
    Release { session: SessionId },
    /// `GET /v1/kv/<key>?consistent`: who holds the lock. Must be a linearizable read; a stale
    /// read can lawfully show a past holder.
    Read,
}

/// What a successful lock request returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LockOutput {
    /// The acquire answered `true`. `lock_index` is the key's `LockIndex` for this acquisition
    /// when the workload learned it (a `/v1/txn` `lock` verb returns it; a consistent read right
    /// after the acquire that still shows this session does too).
    Acquired { lock_index: Option<u64> },
    /// The release answered `true`.
    Released,
    /// The key's `Session` (`None`: unheld or absent) and `LockIndex` (0 when absent).
    Read { holder: Option<SessionId>, lock_index: u64 },
}

/// One lock request.
pub type LockOp = Op<LockInput, LockOutput>;

/// When a session ended, as far as any observer can tell.
///
/// `at` must be no later than any moment a client could observe the end: no later than the
/// completion of any request that saw the session gone or its locks freed. The simulator's
/// oracle satisfies this with the first time any server *applied* the session's invalidation
/// (every request that observes it is answered after some server applied it); a client that
/// destroys its own session may use its `destroy` request's invocation time. Too early is always
/// safe (the checker just trusts less); too late can produce false alarms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionEnd {
    pub session: SessionId,
    pub at: Duration,
}

/// What the lock checker may assume about session ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionEnds {
    /// Every session that ended during the run is listed (the simulator observes invalidations
    /// on the servers); a session not listed lived to the end of the history.
    Complete(Vec<SessionEnd>),
    /// Session ends are not known (a history of client observations only). A lock hold is then
    /// trusted only as far as a later observation confirmed it.
    Unknown,
}

// ---------------------------------------------------------------------------------------------
// Index observations, checked by `monotonic`.

/// An event of the index-monotonicity workload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IndexEvent {
    /// A response carried `X-Consul-Index: index`. `query` names the request (e.g.
    /// `"kv/app?recurse"`, `"health/service/web"`); `at` is when the client received it.
    Observed { client: ClientId, query: String, at: Duration, index: u64 },
    /// Indexes may legitimately go backwards across this moment: KV tombstones were reaped (a
    /// recurse query's max ModifyIndex can drop) or a snapshot was restored. `query: None`
    /// applies to every query.
    Reset { query: Option<String>, at: Duration },
}

// ---------------------------------------------------------------------------------------------
// Several datacenters: the KV workload's requests with where they came from and where they
// went, and what the nemesis did to the datacenters; checked by `dc_isolation`,
// `local_availability` and `wan_fail_fast`.

/// A datacenter, by its position in the topology.
pub type DcIndex = usize;

/// What a KV request of a multi-datacenter run asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DcRequest {
    /// `GET /v1/kv/<key>?dc=<target>` (any consistency mode).
    Read,
    /// `PUT /v1/kv/<key>?dc=<target>` with this value.
    Write(Value),
    /// `PUT /v1/kv/<key>?cas=<index>&dc=<target>` with this value.
    Cas(Value),
}

impl DcRequest {
    /// The value a write or CAS writes.
    pub fn written(&self) -> Option<Value> {
        match self {
            DcRequest::Read => None,
            DcRequest::Write(v) | DcRequest::Cas(v) => Some(*v),
        }
    }
}

/// How a request of a multi-datacenter run ended, as the client saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DcAnswer {
    /// A read's value (`None`: the key is absent).
    Read(Option<Value>),
    /// A write's or CAS's answer (`false`: a CAS that did not match).
    Written(bool),
    /// The server answered with an error; `no_path` when it said "No path to datacenter".
    Error { text: String, no_path: bool },
    /// No answer within the client's call timeout.
    Lost(String),
}

impl DcAnswer {
    /// The request was served: a value, or a write's verdict.
    pub fn is_served(&self) -> bool {
        matches!(self, DcAnswer::Read(_) | DcAnswer::Written(_))
    }

    /// The server said "No path to datacenter".
    pub fn is_no_path(&self) -> bool {
        matches!(self, DcAnswer::Error { no_path: true, .. })
    }
}

/// One KV request of a multi-datacenter run. A client sends every request to a server of its
/// own datacenter (`home`); one for another datacenter (`target`) travels as a forwarded call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DcOp {
    pub client: ClientId,
    pub home: DcIndex,
    pub target: DcIndex,
    /// The KV key: the same name is a different register in each datacenter.
    pub key: String,
    pub request: DcRequest,
    pub invoke: Duration,
    pub complete: Duration,
    pub answer: DcAnswer,
}

impl DcOp {
    /// A request for another datacenter than the client's own.
    pub fn is_remote(&self) -> bool {
        self.home != self.target
    }

    /// Virtual time from invocation to completion.
    pub fn latency(&self) -> Duration {
        self.complete.saturating_sub(self.invoke)
    }
}

/// What a fault did to the datacenters, and when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultSpan {
    pub scope: FaultScope,
    /// When the fault started (virtual time since the run began).
    pub start: Duration,
    /// When it ended: healed on time, or by the heal that ends the safety phase.
    pub end: Duration,
}

impl FaultSpan {
    /// Whether the span shares some time with `[from, to]`.
    pub fn overlaps(&self, from: Duration, to: Duration) -> bool {
        self.start <= to && from < self.end
    }
}

/// The part of the world a fault touched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultScope {
    /// Servers or links inside datacenter `Some(d)`, or messages on every link (`None`): the
    /// datacenter's own clients may see errors.
    Servers(Option<DcIndex>),
    /// The datacenter was cut off from every other one (its own links intact).
    WanCut(DcIndex),
    /// Every server of the datacenter was down.
    DcLost(DcIndex),
    /// WAN messages to and from the datacenter (`None`: every WAN message) were slowed.
    WanDelay(Option<DcIndex>),
}

impl FaultScope {
    /// Whether datacenter `d`'s own servers or internal links were disturbed: then its clients
    /// may lawfully see errors and time-outs.
    pub fn disturbs(&self, d: DcIndex) -> bool {
        match *self {
            FaultScope::Servers(scope) => scope.is_none_or(|s| s == d),
            FaultScope::DcLost(lost) => lost == d,
            FaultScope::WanCut(_) | FaultScope::WanDelay(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn recorder_keeps_invocation_order_and_marks_in_flight_requests_indeterminate() {
        let mut recorder: Recorder<RegisterInput, RegisterOutput> = Recorder::new();
        let a = recorder.invoke(1, "k", RegisterInput::Write(1), ms(1));
        let b = recorder.invoke(2, "k", RegisterInput::Read, ms(2));
        let c = recorder.invoke(3, "k", RegisterInput::Cas { expected: Some(1), new: 2 }, ms(3));
        recorder.complete(b, Outcome::Ok(RegisterOutput::Read(None)), ms(4));
        recorder.complete(c, Outcome::Failed, ms(5));
        let ops = recorder.finish(ms(9));

        assert_eq!(a, OpId(0));
        assert_eq!(ops.len(), 3);
        assert!(ops[0].is_indeterminate());
        assert_eq!(ops[0].complete, ms(9));
        assert_eq!(ops[0].settled_by(), None);
        assert_eq!(ops[1].ok(), Some(&RegisterOutput::Read(None)));
        assert_eq!(ops[1].settled_by(), Some(ms(4)));
        assert!(ops[2].is_failed());
        assert_eq!(ops[2].settled_by(), Some(ms(5)));
    }

    #[test]
    #[should_panic(expected = "completed twice")]
    fn recorder_rejects_a_second_completion() {
        let mut recorder: Recorder<RegisterInput, RegisterOutput> = Recorder::new();
        let a = recorder.invoke(1, "k", RegisterInput::Read, ms(1));
        recorder.complete(a, Outcome::Failed, ms(2));
        recorder.complete(a, Outcome::Failed, ms(3));
    }

    #[test]
    fn ops_display_their_interval_and_outcome() {
        let op: RegisterOp = Op {
            client: 7,
            key: "k".into(),
            input: RegisterInput::Write(3),
            invoke: ms(1),
            complete: ms(2),
            outcome: Outcome::Indeterminate,
        };
        assert_eq!(op.to_string(), "client 7 \"k\" Write(3) [1ms, ∞] indeterminate (gave up at 2ms)");
    }
}
