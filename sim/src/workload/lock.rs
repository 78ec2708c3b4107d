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
use legate_core::lock::{self as protocol, lock_key, Lock, Pair, Reply, Request, Semaphore};
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
    /// Semaphore slots certainly held (`client = "legate-semaphore"`).
    slots: Vec<SlotHold>,
    /// The semaphore clients' writes (contender acquires, CAS, deletes), for write liveness.
    semaphore_writes: Vec<crate::check::WriteAfterHeal>,
}

/// A semaphore slot a session certainly held: from the completion of the answer that showed
/// it holding (its CAS into the holder record, or a read listing it) until the invocation of
/// the CAS that took it out, or its session's end (after which others prune it).
#[derive(Clone, Debug)]
struct SlotHold {
    client: u64,
    prefix: String,
    session: String,
    start: Duration,
    /// `None`: not released by the client (walked away, lost, or the run ended).
    released: Option<Duration>,
}

/// How the servers answered an acquire or release.
enum WriteAnswer {
    Bool(bool),
    /// The session no longer exists: nothing changed.
    SessionGone,
    NoLeader,
    /// No answer: the write may or may not have happened.
    Unknown,
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
                    LockClient::LegateSemaphore => self.use_session_as_legate_semaphore(&ctx, &sid).await,
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
            LockClient::LegateSemaphore => format!("sems/{l}"),
        }
    }

    /// `legate lock -n <limit>`'s protocol ([`legate_core::lock::Semaphore`], the machine the
    /// CLI drives): take a slot, hold it while monitoring, give it back; sometimes walk away.
    /// Any failure abandons the session (its contender key goes with it).
    async fn use_session_as_legate_semaphore(&self, ctx: &Ctx, sid: &str) {
        let mut renewed_at = ctx.now();
        while !ctx.stopped() {
            let prefix = self.key(thread_rng().gen_range(0..self.spec.locks));
            let mut machine = Semaphore::new(&prefix, sid, Vec::new(), self.spec.limit, 3);
            let first = machine.acquire();
            let mut last_cas = None;
            match self.drive_semaphore(ctx, &mut machine, first, sid, &mut renewed_at, None, &mut last_cas).await {
                Some(protocol::Step::Held { .. }) => {}
                _ => return,
            }
            let hold = SlotHold {
                client: ctx.client_id,
                prefix: prefix.clone(),
                session: sid.to_string(),
                start: ctx.now(),
                released: None,
            };
            let at = {
                let mut state = self.lock();
                state.slots.push(hold);
                state.slots.len() - 1
            };
            if thread_rng().gen_bool(self.spec.abandon) {
                return;
            }
            let hold_until = ctx.now() + Duration::from_nanos(self.spec.hold_ns);
            let first = machine.monitor();
            match self
                .drive_semaphore(ctx, &mut machine, first, sid, &mut renewed_at, Some(hold_until), &mut last_cas)
                .await
            {
                None if !ctx.stopped() => {}
                _ => return,
            }
            let first = machine.release();
            last_cas = None;
            let released =
                self.drive_semaphore(ctx, &mut machine, first, sid, &mut renewed_at, None, &mut last_cas).await;
            // Out of the record from the invocation of the CAS that took it out (if that CAS
            // answered `false`, a later one did, invoked later still: the first bounds it).
            if let Some(cas) = last_cas {
                self.lock().slots[at].released = Some(cas);
            }
            if released != Some(protocol::Step::Released) {
                return;
            }
            let think = ctx.think.as_nanos() as u64;
            madsim::time::sleep(Duration::from_nanos(thread_rng().gen_range(0..=2 * think))).await;
        }
    }

    /// Like [`LockRun::drive`], for the semaphore machine: lists, CAS and deletes too.
    /// `first_cas` keeps the invocation time of the first CAS sent (the release's).
    #[allow(clippy::too_many_arguments)]
    async fn drive_semaphore(
        &self,
        ctx: &Ctx,
        machine: &mut Semaphore,
        mut request: Request,
        sid: &str,
        renewed_at: &mut Duration,
        until: Option<Duration>,
        first_cas: &mut Option<Duration>,
    ) -> Option<protocol::Step> {
        loop {
            if ctx.stopped() || until.is_some_and(|u| ctx.now() >= u) {
                return None;
            }
            if !self.renew_if_due(ctx, sid, renewed_at).await {
                return None;
            }
            let write = |op: KvOp| ClientCall::Write(Command::Kv(op));
            let reply = match &request {
                Request::Sleep { ms } => {
                    madsim::time::sleep(Duration::from_millis(*ms)).await;
                    Reply::Slept
                }
                Request::List { prefix, index, wait_ms, consistent } => {
                    let wait = self.blocking_wait(ctx, *wait_ms, until);
                    let consistency = if *consistent { Consistency::Consistent } else { Consistency::Default };
                    let call = ClientCall::Read {
                        opts: QueryOptions {
                            consistency,
                            min_index: *index,
                            wait_ms: (*index > 0).then_some(wait.as_millis() as u64),
                        },
                        query: Query::KvList { prefix: prefix.clone() },
                    };
                    match ctx.client.call(ctx.pick_server(), call, ctx.call_timeout + wait).await {
                        Ok(ServerResponse::Read(r)) => match r.answer.value {
                            QueryValue::KvList(entries) => Reply::Entries {
                                entries: entries.into_iter().map(pair_of).collect(),
                                index: r.answer.index,
                            },
                            _ => Reply::Error { message: "unexpected answer".into(), server: true },
                        },
                        _ => Reply::Error { message: "no answer".into(), server: true },
                    }
                }
                Request::Acquire { key, value, flags, session } => {
                    let op = KvOp {
                        session: session.clone(),
                        value: value.clone(),
                        flags: *flags,
                        ..KvOp::new(KvVerb::Lock, key)
                    };
                    self.definite(ctx, key, write(op)).await?
                }
                Request::Cas { key, value, flags, modify_index } => {
                    first_cas.get_or_insert(ctx.now());
                    let op = KvOp {
                        value: value.clone(),
                        flags: *flags,
                        index: *modify_index,
                        ..KvOp::new(KvVerb::Cas, key)
                    };
                    self.definite(ctx, key, write(op)).await?
                }
                Request::Delete { key } => self.definite(ctx, key, write(KvOp::new(KvVerb::Delete, key))).await?,
                other => unreachable!("a semaphore never sends {other:?}"),
            };
            match machine.handle(reply) {
                protocol::Step::Send(next) => request = next,
                protocol::Step::Failed(_) | protocol::Step::Lost => return None,
                outcome => return Some(outcome),
            }
        }
    }

    /// A write whose answer is definite: `true`/`false`, else `None` (abandon the session).
    /// Recorded for write liveness (acknowledged unless the answer is unknown).
    async fn definite(&self, ctx: &Ctx, key: &str, call: ClientCall) -> Option<Reply> {
        let invoke = ctx.now();
        let answer = ctx.client.call(ctx.pick_server(), call, ctx.call_timeout).await;
        let acked = matches!(answer, Ok(ServerResponse::Written(_) | ServerResponse::WriteFailed(_)));
        self.lock().semaphore_writes.push(crate::check::WriteAfterHeal {
            client: ctx.client_id,
            key: key.to_string(),
            invoke,
            acked_at: acked.then(|| ctx.now()),
        });
        match answer {
            Ok(ServerResponse::Written(Response::Bool(b))) => Some(Reply::Done(b)),
            _ => None,
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
            if !self.renew_if_due(ctx, sid, renewed_at).await {
                return None;
            }
            let reply = match &request {
                Request::Sleep { ms } => {
                    madsim::time::sleep(Duration::from_millis(*ms)).await;
                    Reply::Slept
                }
                Request::Get { key, index, wait_ms, consistent } => {
                    let wait = self.blocking_wait(ctx, *wait_ms, until);
                    self.get(ctx, key, *index, wait, *consistent).await
                }
                Request::Acquire { key, value, flags, session } => {
                    let kv = KvOp {
                        session: session.clone(),
                        value: value.clone(),
                        flags: *flags,
                        ..KvOp::new(KvVerb::Lock, key)
                    };
                    self.record_write(ctx, session, key, kv, true).await?
                }
                Request::Release { key, value, flags, session } => {
                    let kv = KvOp {
                        session: session.clone(),
                        value: value.clone(),
                        flags: *flags,
                        ..KvOp::new(KvVerb::Unlock, key)
                    };
                    self.record_write(ctx, session, key, kv, false).await?
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

    /// Renews the session when half its TTL passed since `renewed_at`; `false` when it could
    /// not be renewed (abandon it).
    async fn renew_if_due(&self, ctx: &Ctx, sid: &str, renewed_at: &mut Duration) -> bool {
        if ctx.now() - *renewed_at < self.ttl() / 2 {
            return true;
        }
        if !self.renew(ctx, sid).await {
            return false;
        }
        *renewed_at = ctx.now();
        true
    }

    /// How long a blocking read may wait: the machine's wait, at most TTL/2 (so renewals keep
    /// up, where the CLI renews on a thread) and never past `until`.
    fn blocking_wait(&self, ctx: &Ctx, wait_ms: u64, until: Option<Duration>) -> Duration {
        let wait = Duration::from_millis(wait_ms).min(self.ttl() / 2);
        until.map_or(wait, |u| wait.min(u.saturating_sub(ctx.now())))
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
                    (Reply::Entry { entry: entry.map(pair_of), index: r.answer.index }, OpOutcome::Ok(observed))
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

    /// An acquire or release for the `legate lock` machine, recorded; `None` when the session
    /// must be abandoned (the answer is unknown, the session is gone, or no leader answered).
    async fn record_write(&self, ctx: &Ctx, sid: &str, key: &str, kv: KvOp, acquire: bool) -> Option<Reply> {
        match self.recorded_write(ctx, sid, key, kv, acquire).await {
            WriteAnswer::Bool(b) => Some(Reply::Done(b)),
            WriteAnswer::NoLeader | WriteAnswer::SessionGone | WriteAnswer::Unknown => None,
        }
    }

    async fn create_session(&self, ctx: &Ctx) -> Option<String> {
        let ttl_ms = self.spec.session_ttl_ns / 1_000_000;
        for s in 0..ctx.servers {
            let session = Session {
                name: format!("lock-client-{}", ctx.client_id),
                node: format!("s{}", s + 1),
                lock_delay: self.spec.lock_delay_ns,
                behavior: if self.spec.client == LockClient::LegateSemaphore {
                    Behavior::Delete
                } else {
                    Behavior::Release
                },
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
        let kv =
            KvOp { session: sid.to_string(), ..KvOp::new(if acquire { KvVerb::Lock } else { KvVerb::Unlock }, key) };
        match self.recorded_write(ctx, sid, key, kv, acquire).await {
            WriteAnswer::Bool(b) => Step::Done(b),
            WriteAnswer::NoLeader => Step::Done(false),
            // The session no longer exists (nothing changed), or the effect is unknown: this
            // session is over.
            WriteAnswer::SessionGone | WriteAnswer::Unknown => Step::Abandon,
        }
    }

    /// Sends `kv` (an acquire or release of `key` by `sid`), recorded in the history.
    async fn recorded_write(&self, ctx: &Ctx, sid: &str, key: &str, kv: KvOp, acquire: bool) -> WriteAnswer {
        let session = sid.to_string();
        let input = if acquire { LockInput::Acquire { session } } else { LockInput::Release { session } };
        let op = self.lock().history.invoke(ctx.client_id, key.to_string(), input, ctx.now());
        let answer = ctx.client.call(ctx.pick_server(), ClientCall::Write(Command::Kv(kv)), ctx.call_timeout).await;
        let (outcome, answer) = match answer {
            Ok(ServerResponse::Written(Response::Bool(true))) => {
                let out = if acquire { LockOutput::Acquired { lock_index: None } } else { LockOutput::Released };
                (OpOutcome::Ok(out), WriteAnswer::Bool(true))
            }
            Ok(ServerResponse::Written(Response::Bool(false))) => (OpOutcome::Failed, WriteAnswer::Bool(false)),
            Ok(ServerResponse::Written(Response::Error(_))) => (OpOutcome::Failed, WriteAnswer::SessionGone),
            Ok(ServerResponse::WriteFailed(WriteError::NoLeader)) => (OpOutcome::Failed, WriteAnswer::NoLeader),
            _ => (OpOutcome::Indeterminate, WriteAnswer::Unknown),
        };
        self.lock().history.complete(op, outcome, ctx.now());
        answer
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
        if self.spec.client == LockClient::LegateSemaphore {
            let session_ends: BTreeMap<String, Duration> = destroys
                .iter()
                .map(|(sid, d)| (sid.clone(), d.first_applied.saturating_duration_since(end.start)))
                .collect();
            outcome.ops += state.slots.len();
            outcome.trace.extend(state.slots.iter().map(|h| {
                let until = h.released.map_or("-".to_string(), |r| format!("{:.3}s", r.as_secs_f64()));
                format!(
                    "{:>10.3}s c{} slot of {} held by {} (released {until})",
                    h.start.as_secs_f64(),
                    h.client,
                    h.prefix,
                    h.session
                )
            }));
            outcome.violations.extend(semaphore_safety(&state.slots, &session_ends, self.spec.limit));
            let healed_at = end.healed_at;
            outcome.liveness_writes.extend(state.semaphore_writes.iter().filter(|w| w.invoke >= healed_at).cloned());
        }
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

fn pair_of(e: legate_core::catalog::KvEntry) -> Pair {
    Pair {
        key: e.key,
        value: e.value,
        flags: e.flags,
        session: e.session,
        lock_index: e.lock_index,
        modify_index: e.modify_index,
    }
}

/// Semaphore safety: at no time do more than `limit` sessions certainly hold slots of one
/// semaphore. A slot is certainly held from its [`SlotHold::start`] until its release CAS was
/// invoked or its session ended, whichever came first.
fn semaphore_safety(slots: &[SlotHold], session_ends: &BTreeMap<String, Duration>, limit: u32) -> Vec<Violation> {
    let mut by_prefix: BTreeMap<&str, Vec<(Duration, i32, usize)>> = BTreeMap::new();
    for (i, s) in slots.iter().enumerate() {
        let end = [s.released, session_ends.get(&s.session).copied()].into_iter().flatten().min();
        if end.is_some_and(|e| e <= s.start) {
            continue;
        }
        let events = by_prefix.entry(&s.prefix).or_default();
        events.push((s.start, 1, i));
        if let Some(e) = end {
            // Ends sort before starts at the same instant: the intervals are half-open.
            events.push((e, -1, i));
        }
    }
    let mut out = Vec::new();
    for (prefix, mut events) in by_prefix {
        events.sort_by_key(|&(at, delta, i)| (at, delta, i));
        let mut holding: Vec<usize> = Vec::new();
        for (at, delta, i) in events {
            if delta < 0 {
                holding.retain(|&h| h != i);
                continue;
            }
            holding.push(i);
            if holding.len() > limit as usize {
                let who: Vec<String> = holding
                    .iter()
                    .map(|&h| format!("c{} session {} from {:?}", slots[h].client, slots[h].session, slots[h].start))
                    .collect();
                out.push(Violation {
                    checker: "lock_safety",
                    message: format!(
                        "semaphore {prefix:?} (limit {limit}) had {} certain holders at {at:?}: {}",
                        holding.len(),
                        who.join("; ")
                    ),
                });
                break;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hold(client: u64, session: &str, start_ms: u64, released_ms: Option<u64>) -> SlotHold {
        SlotHold {
            client,
            prefix: "sems/0".into(),
            session: session.into(),
            start: Duration::from_millis(start_ms),
            released: released_ms.map(Duration::from_millis),
        }
    }

    #[test]
    fn more_certain_holders_than_the_limit_is_a_violation() {
        let slots = [hold(1, "a", 0, Some(100)), hold(2, "b", 10, Some(100)), hold(3, "c", 50, Some(60))];
        let found = semaphore_safety(&slots, &BTreeMap::new(), 2);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].message.contains("had 3 certain holders at 50ms"), "{}", found[0].message);
        assert!(semaphore_safety(&slots, &BTreeMap::new(), 3).is_empty());
    }

    #[test]
    fn a_release_or_a_session_end_frees_the_slot_for_the_next() {
        // c starts exactly when a releases (half-open intervals), d after b's session ended.
        let slots = [hold(1, "a", 0, Some(50)), hold(2, "b", 10, None), hold(3, "c", 50, None), hold(4, "d", 80, None)];
        let ends = BTreeMap::from([("b".to_string(), Duration::from_millis(70))]);
        assert!(semaphore_safety(&slots, &ends, 2).is_empty());
        // Without b's end, d is a third holder.
        assert_eq!(semaphore_safety(&slots, &BTreeMap::new(), 2).len(), 1);
    }
}
