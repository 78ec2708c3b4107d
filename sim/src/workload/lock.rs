//! The lock workload (Jepsen's lock tests, with Consul's sessions): each client creates a TTL
//! session, acquires a random lock key with `?acquire`, confirms it with a consistent read (which
//! also yields the LockIndex, the fencing token), holds it while renewing the session, and
//! releases it; sometimes it walks away instead, so the session's TTL and the lock-delay come
//! into play.
//!
//! Checked by `lock_safety` (mutual exclusion, fencing, lock-delay; see that file for the
//! rules this workload follows: Behavior `release`, lock keys never deleted, requests of one
//! session on one key strictly sequential, a session abandoned after any indeterminate
//! request), and by a lock liveness rule (checker `liveness`): after the faults heal, every lock
//! that clients keep asking for is acquired by someone within a bound.
//!
//! Session ends come from the servers, not the clients: the observer records the first moment
//! any server *applied* a session's destroy (an apply hook in the state machine), which bounds
//! every client observation of the end (SessionEnds::Complete). Lock-delay windows come from
//! the same record: the destroy's leader stamp plus the lock-delay, shortened by twice the
//! largest clock offset (the stamping leaders may differ) and a margin.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use legate_core::catalog::{Behavior, Command, KvOp, KvVerb, Query, QueryValue, Response, Session};
use legate_core::lock::{self as protocol, lock_key, Lock, Pair, Reply, Request};
use legate_runtime::server::{Consistency, QueryOptions, ServerResponse, WriteError};
use madsim::rand::{thread_rng, Rng};

use super::{Ctx, End, Outcome};
use crate::check::{
    self, LockDelayWindow, LockInput, LockOp, LockOutput, Outcome as OpOutcome, Recorder, SessionEnd, SessionEnds,
    Violation,
};
use crate::scenario::{LockClient, LockWorkload};
use crate::world::net::ClientCall;
use crate::world::Observer;

/// Slack subtracted from lock-delay windows for drift and scheduling.
const WINDOW_MARGIN: Duration = Duration::from_millis(100);

/// The lock workload of one run. Clones share its history.
#[derive(Clone)]
pub struct LockRun {
    spec: LockWorkload,
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    history: Recorder<LockInput, LockOutput>,
    /// Session ID → when its create was invoked.
    sessions: BTreeMap<String, Duration>,
    observer: Option<Observer>,
}

enum Step {
    /// The request had a definite answer.
    Done(bool),
    /// The session is gone or its requests can no longer be trusted: start a new one.
    Abandon,
}

impl LockRun {
    pub fn new(spec: &LockWorkload) -> LockRun {
        LockRun { spec: *spec, state: Arc::new(Mutex::new(State::default())) }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn ttl(&self) -> Duration {
        Duration::from_nanos(self.spec.session_ttl_ns)
    }

    /// Keeps the servers' handle, to read the session ends at the end of the run.
    pub async fn observe(&self, observer: Observer, _ctx: Ctx) {
        self.lock().observer = Some(observer);
    }

    /// One client: sessions, one after another, each acquiring and releasing locks.
    pub async fn client(&self, ctx: Ctx) {
        while !ctx.stopped() {
            match self.create_session(&ctx).await {
                Some(sid) => match self.spec.client {
                    LockClient::Api => self.use_session(&ctx, &sid).await,
                    LockClient::LegateLock => self.use_session_as_legate_lock(&ctx, &sid).await,
                },
                None => madsim::time::sleep(ctx.think).await,
            }
        }
    }

    /// The key of lock `l`: the key itself for API clients, `<prefix>/.lock` for `legate lock`.
    fn key(&self, l: u32) -> String {
        match self.spec.client {
            LockClient::Api => format!("locks/{l}"),
            LockClient::LegateLock => lock_key(&format!("locks/{l}")),
        }
    }

    /// `legate lock`'s protocol, driven by the same machine the CLI drives
    /// ([`legate_core::lock::Lock`]): acquire, hold for `hold` while monitoring, release;
    /// sometimes walk away while holding (a killed `legate lock`), leaving the TTL to free it.
    /// A session whose requests went unanswered, or whose lock was lost, is abandoned (the
    /// CLI exits), and the next round starts with a new one.
    async fn use_session_as_legate_lock(&self, ctx: &Ctx, sid: &str) {
        let mut renewed_at = ctx.now();
        while !ctx.stopped() {
            let prefix = format!("locks/{}", thread_rng().gen_range(0..self.spec.locks));
            let mut machine = Lock::new(&prefix, sid, Vec::new(), 3);
            let first = machine.acquire();
            match self.drive(ctx, &mut machine, first, sid, &mut renewed_at, None).await {
                Some(protocol::Step::Held { .. }) => {}
                _ => return,
            }
            if thread_rng().gen_bool(self.spec.abandon) {
                return;
            }
            let hold_until = ctx.now() + Duration::from_nanos(self.spec.hold_ns);
            let first = machine.monitor();
            match self.drive(ctx, &mut machine, first, sid, &mut renewed_at, Some(hold_until)).await {
                // Held to the end of the hold (the monitor was still watching).
                None if !ctx.stopped() => {}
                _ => return,
            }
            let first = machine.release();
            if self.drive(ctx, &mut machine, first, sid, &mut renewed_at, None).await != Some(protocol::Step::Released)
            {
                return;
            }
            let think = ctx.think.as_nanos() as u64;
            madsim::time::sleep(Duration::from_nanos(thread_rng().gen_range(0..=2 * think))).await;
        }
    }

    /// Runs the machine from `request` to an outcome, renewing the session every TTL/2 between
    /// requests (the CLI renews on a thread; blocking reads here wait at most TTL/2 so that
    /// renewals keep up). `None` when `until` passed, the run stopped, or the session could not
    /// be renewed or must be abandoned.
    async fn drive(
        &self,
        ctx: &Ctx,
        machine: &mut Lock,
        mut request: Request,
        sid: &str,
        renewed_at: &mut Duration,
        until: Option<Duration>,
    ) -> Option<protocol::Step> {
        loop {
            if ctx.stopped() || until.is_some_and(|u| ctx.now() >= u) {
                return None;
            }
            if ctx.now() - *renewed_at >= self.ttl() / 2 {
                if !self.renew(ctx, sid).await {
                    return None;
                }
                *renewed_at = ctx.now();
            }
            let reply = match &request {
                Request::Sleep { ms } => {
                    madsim::time::sleep(Duration::from_millis(*ms)).await;
                    Reply::Slept
                }
                Request::Get { key, index, wait_ms, consistent } => {
                    let mut wait = Duration::from_millis(*wait_ms).min(self.ttl() / 2);
                    if let Some(u) = until {
                        wait = wait.min(u.saturating_sub(ctx.now()));
                    }
                    self.get(ctx, key, *index, wait, *consistent).await
                }
                Request::Acquire { key, value, flags, session } => {
                    let kv = KvOp {
                        session: session.clone(),
                        value: value.clone(),
                        flags: *flags,
                        ..KvOp::new(KvVerb::Lock, key)
                    };
                    match self.record_write(ctx, session, key, kv, true).await {
                        Some(r) => r,
                        None => return None,
                    }
                }
                Request::Release { key, value, flags, session } => {
                    let kv = KvOp {
                        session: session.clone(),
                        value: value.clone(),
                        flags: *flags,
                        ..KvOp::new(KvVerb::Unlock, key)
                    };
                    match self.record_write(ctx, session, key, kv, false).await {
                        Some(r) => r,
                        None => return None,
                    }
                }
                other => unreachable!("a lock (not a semaphore) never sends {other:?}"),
            };
            match machine.handle(reply) {
                protocol::Step::Send(next) => request = next,
                protocol::Step::Failed(_) | protocol::Step::Lost => return None,
                outcome => return Some(outcome),
            }
        }
    }

    /// A read of the lock key; a consistent one is recorded (it shows the holder). A blocking
    /// read (`index > 0`) is recorded too: whatever it returns was true at its answer.
    async fn get(&self, ctx: &Ctx, key: &str, index: u64, wait: Duration, consistent: bool) -> Reply {
        let op =
            consistent.then(|| self.lock().history.invoke(ctx.client_id, key.to_string(), LockInput::Read, ctx.now()));
        let consistency = if consistent { Consistency::Consistent } else { Consistency::Default };
        let wait_ms = (index > 0).then_some(wait.as_millis() as u64);
        let call = ClientCall::Read {
            opts: QueryOptions { consistency, min_index: index, wait_ms },
            query: Query::KvGet { key: key.to_string() },
        };
        let (reply, outcome) = match ctx.client.call(ctx.pick_server(), call, ctx.call_timeout + wait).await {
            Ok(ServerResponse::Read(r)) => match r.answer.value {
                QueryValue::Kv(entry) => {
                    let observed = LockOutput::Read {
                        holder: entry.as_ref().and_then(|e| e.session.clone()),
                        lock_index: entry.as_ref().map_or(0, |e| e.lock_index),
                    };
                    let pair = entry.map(|e| Pair {
                        key: e.key,
                        value: e.value,
                        flags: e.flags,
                        session: e.session,
                        lock_index: e.lock_index,
                        modify_index: e.modify_index,
                    });
                    (Reply::Entry { entry: pair, index: r.answer.index }, OpOutcome::Ok(observed))
                }
                other => {
                    (Reply::Error { message: format!("unexpected answer {other:?}"), server: true }, OpOutcome::Failed)
                }
            },
            _ => (Reply::Error { message: "no answer".into(), server: true }, OpOutcome::Failed),
        };
        if let Some(op) = op {
            self.lock().history.complete(op, outcome, ctx.now());
        }
        reply
    }

    /// An acquire or release, recorded; `None` when the session must be abandoned (the answer
    /// is unknown, or the session is gone).
    async fn record_write(&self, ctx: &Ctx, sid: &str, key: &str, kv: KvOp, acquire: bool) -> Option<Reply> {
        let session = sid.to_string();
        let input = if acquire { LockInput::Acquire { session } } else { LockInput::Release { session } };
        let op = self.lock().history.invoke(ctx.client_id, key.to_string(), input, ctx.now());
        let answer = ctx.client.call(ctx.pick_server(), ClientCall::Write(Command::Kv(kv)), ctx.call_timeout).await;
        let (outcome, reply) = match answer {
            Ok(ServerResponse::Written(Response::Bool(true))) => {
                let out = if acquire { LockOutput::Acquired { lock_index: None } } else { LockOutput::Released };
                (OpOutcome::Ok(out), Some(Reply::Done(true)))
            }
            Ok(ServerResponse::Written(Response::Bool(false))) => (OpOutcome::Failed, Some(Reply::Done(false))),
            Ok(ServerResponse::Written(Response::Error(_))) => (OpOutcome::Failed, None),
            Ok(ServerResponse::WriteFailed(WriteError::NoLeader)) => (OpOutcome::Failed, None),
            _ => (OpOutcome::Indeterminate, None),
        };
        self.lock().history.complete(op, outcome, ctx.now());
        reply
    }

    async fn create_session(&self, ctx: &Ctx) -> Option<String> {
        let ttl_ms = self.spec.session_ttl_ns / 1_000_000;
        for s in 0..ctx.servers {
            let session = Session {
                name: format!("lock-client-{}", ctx.client_id),
                node: format!("s{}", s + 1),
                lock_delay: self.spec.lock_delay_ns,
                behavior: Behavior::Release,
                ttl: format!("{ttl_ms}ms"),
                ..Session::default()
            };
            let invoked = ctx.now();
            let answer = ctx.client.call(ctx.pick_server(), ClientCall::CreateSession(session), ctx.call_timeout).await;
            if let Ok(ServerResponse::SessionCreated(Ok(created))) = answer {
                self.lock().sessions.insert(created.id.clone(), invoked);
                return Some(created.id);
            }
            if ctx.stopped() {
                return None;
            }
        }
        None
    }

    async fn renew(&self, ctx: &Ctx, sid: &str) -> bool {
        let call = ClientCall::RenewSession(sid.to_string());
        matches!(
            ctx.client.call(ctx.pick_server(), call, ctx.call_timeout).await,
            Ok(ServerResponse::SessionRenewed(Some(_)))
        )
    }

    /// Acquires and releases locks with one session until it is abandoned or the run ends.
    async fn use_session(&self, ctx: &Ctx, sid: &str) {
        let mut renewed_at = ctx.now();
        while !ctx.stopped() {
            if ctx.now() - renewed_at >= self.ttl() / 2 {
                if !self.renew(ctx, sid).await {
                    return;
                }
                renewed_at = ctx.now();
            }
            let key = format!("locks/{}", thread_rng().gen_range(0..self.spec.locks));
            match self.write(ctx, sid, &key, true).await {
                Step::Abandon => return,
                Step::Done(false) => {
                    let think = ctx.think.as_nanos() as u64;
                    madsim::time::sleep(Duration::from_nanos(thread_rng().gen_range(0..=2 * think))).await;
                    continue;
                }
                Step::Done(true) => {}
            }
            self.confirm(ctx, sid, &key).await;
            // Hold, renewing the session; sometimes walk away and let the TTL expire it.
            if thread_rng().gen_bool(self.spec.abandon) {
                return;
            }
            let hold_until = ctx.now() + Duration::from_nanos(self.spec.hold_ns);
            while ctx.now() < hold_until && !ctx.stopped() {
                let step = (self.ttl() / 2).min(hold_until - ctx.now());
                madsim::time::sleep(step).await;
                if !self.renew(ctx, sid).await {
                    return;
                }
                renewed_at = ctx.now();
            }
            if let Step::Abandon = self.write(ctx, sid, &key, false).await {
                return;
            }
        }
    }

    /// An acquire (`acquire: true`) or release, recorded.
    async fn write(&self, ctx: &Ctx, sid: &str, key: &str, acquire: bool) -> Step {
        let session = sid.to_string();
        let input = if acquire {
            LockInput::Acquire { session: session.clone() }
        } else {
            LockInput::Release { session: session.clone() }
        };
        let op = self.lock().history.invoke(ctx.client_id, key.to_string(), input, ctx.now());
        let kv = KvOp { session, ..KvOp::new(if acquire { KvVerb::Lock } else { KvVerb::Unlock }, key) };
        let answer = ctx.client.call(ctx.pick_server(), ClientCall::Write(Command::Kv(kv)), ctx.call_timeout).await;
        let (outcome, step) = match answer {
            Ok(ServerResponse::Written(Response::Bool(true))) => {
                let out = if acquire { LockOutput::Acquired { lock_index: None } } else { LockOutput::Released };
                (OpOutcome::Ok(out), Step::Done(true))
            }
            Ok(ServerResponse::Written(Response::Bool(false))) => (OpOutcome::Failed, Step::Done(false)),
            // The session no longer exists: nothing changed, and this session is over.
            Ok(ServerResponse::Written(Response::Error(_))) => (OpOutcome::Failed, Step::Abandon),
            Ok(ServerResponse::WriteFailed(WriteError::NoLeader)) => (OpOutcome::Failed, Step::Done(false)),
            _ => (OpOutcome::Indeterminate, Step::Abandon),
        };
        self.lock().history.complete(op, outcome, ctx.now());
        step
    }

    /// A consistent read of the lock key: who holds it, and its LockIndex.
    async fn confirm(&self, ctx: &Ctx, _sid: &str, key: &str) {
        let op = self.lock().history.invoke(ctx.client_id, key.to_string(), LockInput::Read, ctx.now());
        let call = ClientCall::Read {
            opts: QueryOptions { consistency: Consistency::Consistent, min_index: 0, wait_ms: None },
            query: Query::KvGet { key: key.to_string() },
        };
        let outcome = match ctx.client.call(ctx.pick_server(), call, ctx.call_timeout).await {
            Ok(ServerResponse::Read(r)) => match r.answer.value {
                QueryValue::Kv(Some(e)) => {
                    OpOutcome::Ok(LockOutput::Read { holder: e.session, lock_index: e.lock_index })
                }
                QueryValue::Kv(None) => OpOutcome::Ok(LockOutput::Read { holder: None, lock_index: 0 }),
                _ => OpOutcome::Failed,
            },
            Ok(_) => OpOutcome::Failed,
            // A read changes nothing: an unanswered read is simply not an observation.
            Err(_) => OpOutcome::Failed,
        };
        self.lock().history.complete(op, outcome, ctx.now());
    }

    /// Runs lock safety and lock liveness over the history.
    pub fn finish(self, end: &End) -> Outcome {
        let mut state = self.lock();
        let ops: Vec<LockOp> = std::mem::take(&mut state.history).finish(end.observed_until);
        let destroys = state.observer.as_ref().map(Observer::session_destroys).unwrap_or_default();
        let mut ends = Vec::new();
        let mut windows = Vec::new();
        let skew = end.clock_offset_max * 2 + WINDOW_MARGIN;
        let delay = Duration::from_nanos(self.spec.lock_delay_ns);
        for (sid, d) in &destroys {
            if !state.sessions.contains_key(sid) {
                continue;
            }
            let at = d.first_applied.saturating_duration_since(end.start);
            ends.push(SessionEnd { session: sid.clone(), at });
            // The destroy set each released key's lock-delay to stamp + delay (leader clock).
            let until = Duration::from_millis(d.stamped_ms.saturating_sub(end.start_unix_ms)) + delay;
            let Some(until) = until.checked_sub(skew) else {
                continue;
            };
            if until <= at {
                continue;
            }
            for l in 0..self.spec.locks {
                let key = self.key(l);
                // Only keys the session held when it ended are delayed: its last acquire or
                // release of the key must be an acquire answered `true` (anything less certain
                // and the window could be wrong, so no window).
                let last = ops.iter().rev().find(|op| {
                    op.key == key
                        && match &op.input {
                            LockInput::Acquire { session } | LockInput::Release { session } => session == sid,
                            LockInput::Read => false,
                        }
                });
                let held = last.is_some_and(|op| {
                    matches!(op.input, LockInput::Acquire { .. })
                        && matches!(op.ok(), Some(LockOutput::Acquired { .. }))
                });
                if held {
                    windows.push(LockDelayWindow { key, start: at, length: until - at });
                }
            }
        }
        let mut outcome = Outcome { ops: ops.len(), ..Outcome::default() };
        outcome.trace =
            ops.iter().map(|op| format!("{:>10.3}s c{} lock {op}", op.invoke.as_secs_f64(), op.client)).collect();
        outcome.violations = check::lock_safety::check(&ops, &SessionEnds::Complete(ends), &windows);
        // Acquires and releases are writes: after the heal each must be answered in time.
        outcome.liveness_writes =
            super::writes_after_heal(&ops, end.healed_at, |input| !matches!(input, LockInput::Read));
        outcome.violations.extend(self.liveness(&ops, end));
        outcome
    }

    /// After the heal, each lock that clients try to acquire must be acquired by someone within
    /// two TTLs (a walked-away holder's session expires) plus the lock-delay plus 3 s.
    fn liveness(&self, ops: &[LockOp], end: &End) -> Vec<Violation> {
        let ttl = self.ttl();
        let bound = ttl * 2 + Duration::from_nanos(self.spec.lock_delay_ns) + Duration::from_secs(3);
        let deadline = end.healed_at + bound;
        if deadline > end.observed_until {
            return Vec::new();
        }
        let mut out = Vec::new();
        for l in 0..self.spec.locks {
            let key = self.key(l);
            let attempts_after = ops
                .iter()
                .filter(|op| op.key == key && op.invoke >= deadline && matches!(op.input, LockInput::Acquire { .. }));
            if attempts_after.count() == 0 {
                continue;
            }
            let acquired = ops.iter().any(|op| {
                op.key == key
                    && op.invoke >= end.healed_at
                    && op.complete <= end.observed_until
                    && matches!(op.input, LockInput::Acquire { .. })
                    && matches!(op.ok(), Some(LockOutput::Acquired { .. }))
            });
            if !acquired {
                out.push(Violation {
                    checker: "liveness",
                    message: format!(
                        "lock {key:?} was never acquired after the heal at {:?} although clients kept trying \
                         until {:?} (bound {bound:?}: a holder's session must expire and free it)",
                        end.healed_at, end.observed_until
                    ),
                });
            }
        }
        out
    }
}
