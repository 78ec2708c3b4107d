//! The service workload: agents register service instances, each with one health check whose
//! status flaps between passing and critical, and clients read `/v1/health/service/<name>`
//! (`?consistent`, usually with `?passing`).
//!
//! Every status change is a full catalog registration — node, service and its check — as an
//! agent's anti-entropy sync sends it (see `legate_core::agent`). Instance `g` is owned by
//! client slot `g mod clients` (its agent, node `agent-<slot>`), which writes it one request
//! at a time (the checker does not rely on a single writer). Each write puts a unique text in
//! the check's `Output` (`w<n>`), so a read that shows an instance names the very write it
//! saw, as the KV workload's unique values do.
//!
//! # What `service_health` checks, and why it is sound
//!
//! Each instance's check is a register written only by this workload; a `?consistent` health
//! read is linearizable, and shows every instance of the service as of one moment `t` of its
//! interval (with `?passing`: only those whose checks all pass — ours have just the one check,
//! and nothing else registers checks on the workload's nodes). The checker treats each
//! (read, instance) pair on its own, which only relaxes the condition (a real linearization of
//! the whole history gives one for each pair), and reports a pair only when no linearization
//! of that single read against the instance's writes exists:
//!
//! - A write's effect lands once, at some instant in `[invoke, complete]` if it was answered
//!   (`Ok`), at any instant after `invoke` (or never) if it is indeterminate, and never if it
//!   was answered with a refusal that proves nothing was applied (`Failed`: the catalog's
//!   validation error, or `No cluster leader` from the request router). Requests are never
//!   duplicated (the simulated network repeats only Raft's own messages).
//! - `known_by(W)`: a time by which `W` surely took effect: its completion if answered, or the
//!   completion of any read that showed it, whichever is first.
//! - `W` is *superseded* for a read `R` when some other write `W'` of the instance was invoked
//!   after `known_by(W)` (so it took effect after `W`) and `known_by(W') < R.invoke` (so before
//!   any instant of `R`). Then `W` cannot be the instance's state at any `t` in `R`'s interval.
//!   The instance is *registered* for `R` when some write has `known_by < R.invoke` (every
//!   write registers node, service and check together).
//! - A read that shows the instance with output `w<n>` needs write `n` to exist, not to have
//!   failed, to be invoked before `R` completed, not to be superseded for `R`, and to have the
//!   status shown; a `?passing` read must show it passing. The shown instance must carry its
//!   check (registration is all or nothing).
//! - A read that does not show the instance needs a state that hides it: for a `?passing` read
//!   an unsuperseded, unfailed critical write invoked before `R` completed, or "not registered
//!   yet"; for a read without `?passing`, only "not registered yet".
//!
//! Each rule states a fact of every linearization, so a correct server never fails it; a stale
//! read (an instance shown passing after its critical update was acknowledged, or hidden after
//! its passing update was), a lost or phantom write, or a broken `?passing` filter does.
//!
//! Also recorded: the `X-Consul-Index` of every read (checker `monotonic`; per client and
//! query, with and without `?passing`), and status updates after the heal (`liveness`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use legate_core::catalog::query::Filter;
use legate_core::catalog::{Command, HealthCheck, Node, Query, QueryValue, Registration, Response, Service, Status};
use legate_runtime::server::{Consistency, QueryOptions, ServerResponse, WriteError};
use madsim::rand::{thread_rng, Rng};

use super::{Ctx, End, Outcome};
use crate::check::{IndexEvent, Op, Outcome as OpOutcome, Recorder, Violation, Violations};
use crate::scenario::ServiceWorkload;
use crate::world::net::ClientCall;
use crate::world::Observer;

/// The checker name of this workload's violations.
pub const CHECKER: &str = "service_health";

/// Share of health reads that ask for `?passing` (the rest show every instance).
const PASSING_READS: f64 = 0.75;

/// A request of the service workload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServiceInput {
    /// Registers instance `instance` (node, service and its check) with the check at `status`
    /// and `Output` `w<write>`.
    Set { instance: usize, status: Status, write: u64 },
    /// `GET /v1/health/service/svc-<service>?consistent`, with `&passing` when asked.
    Read { service: usize, passing_only: bool },
}

/// What a successful request returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServiceOutput {
    /// The registration was applied.
    Written,
    /// The instances the read listed.
    Read(Vec<Shown>),
}

/// One instance a health read listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shown {
    /// The service ID (`svc-<s>-<i>`).
    pub id: String,
    /// The instance's check, if listed: its status and `Output`.
    pub check: Option<(Status, String)>,
}

/// One request of the service workload.
pub type ServiceOp = Op<ServiceInput, ServiceOutput>;

/// Names of the workload's services, instances and checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub services: usize,
    /// Instances per service.
    pub instances: usize,
}

impl Layout {
    pub fn total(&self) -> usize {
        self.services * self.instances
    }
    pub fn service_name(s: usize) -> String {
        format!("svc-{s}")
    }
    /// The service of instance `g`.
    pub fn service_of(&self, g: usize) -> usize {
        g / self.instances
    }
    /// The service ID of instance `g`.
    pub fn id(&self, g: usize) -> String {
        format!("svc-{}-{}", g / self.instances, g % self.instances)
    }
    pub fn check_id(&self, g: usize) -> String {
        format!("service:{}", self.id(g))
    }
    /// The instance a service ID names, if it is one of ours.
    pub fn instance(&self, id: &str) -> Option<usize> {
        let (s, i) = id.strip_prefix("svc-")?.split_once('-')?;
        let (s, i): (usize, usize) = (s.parse().ok()?, i.parse().ok()?);
        (s < self.services && i < self.instances).then_some(s * self.instances + i)
    }
    /// The instances of service `s`.
    pub fn instances_of(&self, s: usize) -> std::ops::Range<usize> {
        s * self.instances..(s + 1) * self.instances
    }
}

/// The check output that names write `n`.
fn output_of(write: u64) -> String {
    format!("w{write}")
}

fn write_of(output: &str) -> Option<u64> {
    output.strip_prefix('w')?.parse().ok()
}

/// The service workload of one run. Clones share its history.
#[derive(Clone)]
pub struct ServiceRun {
    spec: ServiceWorkload,
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    history: Recorder<ServiceInput, ServiceOutput>,
    /// The next client's slot (which instances it owns).
    next_slot: usize,
    next_write: u64,
    index_events: Vec<IndexEvent>,
}

impl ServiceRun {
    pub fn new(spec: &ServiceWorkload) -> ServiceRun {
        ServiceRun { spec: *spec, state: Arc::new(Mutex::new(State::default())) }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn layout(&self) -> Layout {
        Layout { services: self.spec.services as usize, instances: self.spec.instances as usize }
    }

    /// Nothing to observe on the servers: the checker needs only the clients' history.
    pub async fn observe(&self, _observer: Observer, _ctx: Ctx) {}

    /// One client: the agent of the instances it owns (registers them, flips each one's check
    /// about every `flap_interval`), and a reader of health at the spec's rate.
    pub async fn client(&self, ctx: Ctx) {
        let layout = self.layout();
        let slot = {
            let mut state = self.lock();
            state.next_slot += 1;
            state.next_slot - 1
        };
        let clients = (self.spec.clients as usize).max(1);
        let mine: Vec<usize> = (0..layout.total()).filter(|g| g % clients == slot % clients).collect();
        let flap = Duration::from_nanos(self.spec.flap_interval_ns);
        let mut status: Vec<Status> = Vec::with_capacity(mine.len());
        let mut next_flip: Vec<Duration> = Vec::with_capacity(mine.len());
        for &g in &mine {
            if ctx.stopped() {
                return;
            }
            let s = if thread_rng().gen_bool(0.5) { Status::Passing } else { Status::Critical };
            self.set(&ctx, slot, g, s).await;
            status.push(s);
            next_flip.push(ctx.now() + draw(flap));
        }
        let mut next_read = ctx.now() + draw(ctx.think);
        while !ctx.stopped() {
            let flip = next_flip.iter().enumerate().min_by_key(|(k, at)| (**at, *k)).map(|(k, at)| (k, *at));
            match flip {
                Some((k, at)) if at <= next_read => {
                    madsim::time::sleep(at.saturating_sub(ctx.now())).await;
                    if ctx.stopped() {
                        return;
                    }
                    status[k] = if status[k] == Status::Passing { Status::Critical } else { Status::Passing };
                    self.set(&ctx, slot, mine[k], status[k]).await;
                    next_flip[k] = ctx.now() + draw(flap);
                }
                _ => {
                    madsim::time::sleep(next_read.saturating_sub(ctx.now())).await;
                    if ctx.stopped() {
                        return;
                    }
                    self.read(&ctx).await;
                    next_read = ctx.now() + draw(ctx.think);
                }
            }
        }
    }

    /// Registers instance `g` on this client's node with its check at `status`, recorded.
    async fn set(&self, ctx: &Ctx, slot: usize, g: usize, status: Status) {
        let layout = self.layout();
        let (op, write) = {
            let mut state = self.lock();
            state.next_write += 1;
            let write = state.next_write;
            let input = ServiceInput::Set { instance: g, status, write };
            (state.history.invoke(ctx.client_id, layout.id(g), input, ctx.now()), write)
        };
        // The owner's node: were a slot ever reused, both writers would share one instance.
        let owner = slot % (self.spec.clients as usize).max(1);
        let node_name = format!("agent-{owner}");
        let node = Node {
            node: node_name.clone(),
            address: format!("10.0.2.{}", owner % 250 + 1),
            datacenter: "dc1".into(),
            ..Node::default()
        };
        let service = Service {
            id: layout.id(g),
            service: Layout::service_name(layout.service_of(g)),
            port: 8000 + (g % layout.instances) as u16,
            ..Service::default()
        };
        let check = HealthCheck {
            node: node_name,
            check_id: layout.check_id(g),
            name: format!("Service '{}' check", service.service),
            status,
            output: output_of(write),
            service_id: service.id.clone(),
            service_name: service.service.clone(),
            kind: "ttl".into(),
            ..HealthCheck::default()
        };
        let reg = Registration { node, skip_node_update: false, service: Some(service), checks: vec![check] };
        let call = ClientCall::Write(Command::Register(Box::new(reg)));
        let answer = ctx.client.call(ctx.pick_server(), call, ctx.call_timeout).await;
        let outcome = match answer {
            Ok(ServerResponse::Written(Response::Done)) => OpOutcome::Ok(ServiceOutput::Written),
            // Refused by the catalog's validation, or by the router before any proposal.
            Ok(ServerResponse::Written(Response::Error(_))) => OpOutcome::Failed,
            Ok(ServerResponse::WriteFailed(WriteError::NoLeader)) => OpOutcome::Failed,
            _ => OpOutcome::Indeterminate,
        };
        self.lock().history.complete(op, outcome, ctx.now());
    }

    /// A consistent health read of a random service, recorded.
    async fn read(&self, ctx: &Ctx) {
        let s = thread_rng().gen_range(0..self.spec.services as usize);
        let passing_only = thread_rng().gen_bool(PASSING_READS);
        let name = Layout::service_name(s);
        let input = ServiceInput::Read { service: s, passing_only };
        let op = self.lock().history.invoke(ctx.client_id, name.clone(), input, ctx.now());
        let call = ClientCall::Read {
            opts: QueryOptions { consistency: Consistency::Consistent, min_index: 0, wait_ms: None },
            query: Query::ServiceHealth { name: name.clone(), filter: Filter::default(), passing_only },
        };
        let answer = ctx.client.call(ctx.pick_server(), call, ctx.call_timeout).await;
        let now = ctx.now();
        let mut state = self.lock();
        let outcome = match answer {
            Ok(ServerResponse::Read(r)) => match r.answer.value {
                QueryValue::ServiceHealth(list) => {
                    let query = format!("health/service/{name}{}", if passing_only { "?passing" } else { "" });
                    state.index_events.push(IndexEvent::Observed {
                        client: ctx.client_id,
                        query,
                        at: now,
                        index: r.answer.index,
                    });
                    let layout = self.layout();
                    let shown = list
                        .into_iter()
                        .map(|h| {
                            let check = layout.instance(&h.service.id).and_then(|g| {
                                let id = layout.check_id(g);
                                h.checks.iter().find(|c| c.check_id == id).map(|c| (c.status, c.output.clone()))
                            });
                            Shown { id: h.service.id, check }
                        })
                        .collect();
                    OpOutcome::Ok(ServiceOutput::Read(shown))
                }
                _ => OpOutcome::Failed,
            },
            // A read changes nothing: an unanswered or refused one is simply no observation.
            _ => OpOutcome::Failed,
        };
        state.history.complete(op, outcome, now);
    }

    /// Runs `service_health` over the history.
    pub fn finish(self, end: &End) -> Outcome {
        let mut state = self.lock();
        let ops: Vec<ServiceOp> = std::mem::take(&mut state.history).finish(end.observed_until);
        let mut outcome = Outcome { ops: ops.len(), ..Outcome::default() };
        outcome.trace =
            ops.iter().map(|op| format!("{:>10.3}s c{} service {op}", op.invoke.as_secs_f64(), op.client)).collect();
        outcome.index_events = std::mem::take(&mut state.index_events);
        outcome.liveness_writes =
            super::writes_after_heal(&ops, end.healed_at, |input| matches!(input, ServiceInput::Set { .. }));
        outcome.violations = check(&ops, self.layout());
        outcome
    }
}

/// A uniform draw in `[0, 2 * mean]`.
fn draw(mean: Duration) -> Duration {
    let mean = mean.as_nanos() as u64;
    Duration::from_nanos(thread_rng().gen_range(0..=2 * mean))
}

/// Checks every (health read, instance) pair against the instance's writes (module docs).
pub fn check(ops: &[ServiceOp], layout: Layout) -> Vec<Violation> {
    let mut violations = Violations::new(CHECKER);
    // Write number → op; instance → its writes (op indices); when each write surely took effect.
    let mut write_op: BTreeMap<u64, usize> = BTreeMap::new();
    let mut writes: Vec<Vec<usize>> = vec![Vec::new(); layout.total()];
    let mut known_by: Vec<Option<Duration>> = vec![None; ops.len()];
    for (i, op) in ops.iter().enumerate() {
        if let ServiceInput::Set { instance, write, .. } = op.input {
            write_op.insert(write, i);
            if let Some(list) = writes.get_mut(instance) {
                list.push(i);
            }
            if op.is_ok() {
                known_by[i] = Some(op.complete);
            }
        }
    }
    // Reads that showed a write prove it took effect by their completion.
    for op in ops {
        let Some(ServiceOutput::Read(shown)) = op.ok() else {
            continue;
        };
        for s in shown {
            if let Some(w) = s.check.as_ref().and_then(|(_, out)| write_of(out)).and_then(|n| write_op.get(&n)) {
                // A failed write, one invoked after the read completed, or one of another
                // instance is reported below; it proves nothing. (So known_by(W) ≥ W.invoke.)
                let ServiceInput::Set { instance, .. } = ops[*w].input else {
                    unreachable!("write_op maps to writes");
                };
                if ops[*w].is_failed() || ops[*w].invoke > op.complete || layout.instance(&s.id) != Some(instance) {
                    continue;
                }
                known_by[*w] = Some(known_by[*w].map_or(op.complete, |k| k.min(op.complete)));
            }
        }
    }
    // For each write W: the earliest known_by among writes invoked after known_by(W), with the
    // write that achieves it. W is superseded for a read invoked after that time.
    let mut superseded_at: Vec<Option<(Duration, usize)>> = vec![None; ops.len()];
    let mut registered_by: Vec<Option<(Duration, usize)>> = vec![None; layout.total()];
    for (g, list) in writes.iter().enumerate() {
        let mut by_invoke: Vec<usize> = list.iter().copied().filter(|&w| !ops[w].is_failed()).collect();
        by_invoke.sort_by_key(|&w| (ops[w].invoke, w));
        // suffix[k]: the earliest (known_by, op) among by_invoke[k..].
        let mut suffix: Vec<Option<(Duration, usize)>> = vec![None; by_invoke.len() + 1];
        for k in (0..by_invoke.len()).rev() {
            let w = by_invoke[k];
            let here = known_by[w].map(|t| (t, w));
            suffix[k] = match (here, suffix[k + 1]) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        registered_by[g] = suffix[0];
        for &w in &by_invoke {
            let Some(k) = known_by[w] else {
                continue;
            };
            // Writes invoked after known_by(W) ≥ W.invoke: never W itself.
            let first_after = by_invoke.partition_point(|&x| ops[x].invoke <= k);
            superseded_at[w] = suffix[first_after];
        }
    }

    for (r, read) in ops.iter().enumerate() {
        let (ServiceInput::Read { service, passing_only }, Some(ServiceOutput::Read(shown))) = (&read.input, read.ok())
        else {
            continue;
        };
        let (passing_only, service) = (*passing_only, *service);
        let describe_read = || format!("read #{r} {read}");
        let mut seen: BTreeMap<usize, &Shown> = BTreeMap::new();
        for s in shown {
            match layout.instance(&s.id).filter(|g| layout.service_of(*g) == service) {
                Some(g) => {
                    seen.insert(g, s);
                }
                None => violations.push(format!("{} lists {:?}, no instance of this service", describe_read(), s.id)),
            }
        }
        for g in layout.instances_of(service) {
            let id = layout.id(g);
            match seen.get(&g) {
                Some(s) => {
                    let Some((status, output)) = &s.check else {
                        violations.push(format!(
                            "{} lists instance {id:?} without its check {:?}, though every registration carried both",
                            describe_read(),
                            layout.check_id(g)
                        ));
                        continue;
                    };
                    if passing_only && *status != Status::Passing {
                        violations.push(format!(
                            "{} (?passing) lists instance {id:?} with its check {}",
                            describe_read(),
                            status.as_str()
                        ));
                    }
                    let Some(&w) = write_of(output).and_then(|n| write_op.get(&n)) else {
                        violations.push(format!(
                            "{} shows instance {id:?} with check output {output:?}, which no write of this \
                             workload produced",
                            describe_read()
                        ));
                        continue;
                    };
                    let write = &ops[w];
                    let ServiceInput::Set { instance, status: written, .. } = write.input else {
                        unreachable!("write_op maps to writes");
                    };
                    if instance != g {
                        violations.push(format!(
                            "{} shows instance {id:?} with the output of write #{w} {write} of another instance",
                            describe_read()
                        ));
                        continue;
                    }
                    if write.is_failed() {
                        violations.push(format!(
                            "{} shows write #{w} {write}, which was answered as failed (nothing applied)",
                            describe_read()
                        ));
                        continue;
                    }
                    if write.invoke > read.complete {
                        violations.push(format!(
                            "{} shows write #{w} {write}, invoked only after the read completed",
                            describe_read()
                        ));
                        continue;
                    }
                    if *status != written {
                        violations.push(format!(
                            "{} shows instance {id:?} {} with the output of write #{w} {write}, which set it {}",
                            describe_read(),
                            status.as_str(),
                            written.as_str()
                        ));
                    }
                    if let Some((at, by)) = superseded_at[w].filter(|(at, _)| *at < read.invoke) {
                        violations.push(format!(
                            "{} shows instance {id:?} as write #{w} {write} left it, but write #{by} {} was \
                             invoked after that write surely took effect and itself surely took effect by {at:?}, \
                             before the read began: a stale read",
                            describe_read(),
                            ops[by]
                        ));
                    }
                }
                None => {
                    let unregistered = registered_by[g].is_none_or(|(at, _)| at >= read.invoke);
                    if unregistered {
                        continue;
                    }
                    let hidden_by_critical = passing_only
                        && writes[g].iter().any(|&w| {
                            let write = &ops[w];
                            matches!(write.input, ServiceInput::Set { status: Status::Critical, .. })
                                && !write.is_failed()
                                && write.invoke <= read.complete
                                && superseded_at[w].is_none_or(|(at, _)| at >= read.invoke)
                        });
                    if hidden_by_critical {
                        continue;
                    }
                    let (at, by) = registered_by[g].expect("registered");
                    let current: Vec<String> = writes[g]
                        .iter()
                        .filter(|&&w| {
                            let write = &ops[w];
                            !write.is_failed()
                                && write.invoke <= read.complete
                                && superseded_at[w].is_none_or(|(at, _)| at >= read.invoke)
                        })
                        .map(|&w| format!("#{w} {}", ops[w]))
                        .collect();
                    violations.push(format!(
                        "{} omits instance {id:?}, registered by write #{by} {} (surely applied by {at:?}); the \
                         writes that can be its state during the read all leave it {}: {}",
                        describe_read(),
                        ops[by],
                        if passing_only { "passing" } else { "registered" },
                        current.join("; ")
                    ));
                }
            }
        }
    }
    violations.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAYOUT: Layout = Layout { services: 1, instances: 2 };

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn set(g: usize, status: Status, write: u64, from: u64, to: u64, outcome: OpOutcome<ServiceOutput>) -> ServiceOp {
        Op {
            client: 1,
            key: LAYOUT.id(g),
            input: ServiceInput::Set { instance: g, status, write },
            invoke: ms(from),
            complete: ms(to),
            outcome,
        }
    }

    fn ok() -> OpOutcome<ServiceOutput> {
        OpOutcome::Ok(ServiceOutput::Written)
    }

    fn shown(g: usize, status: Status, write: u64) -> Shown {
        Shown { id: LAYOUT.id(g), check: Some((status, output_of(write))) }
    }

    fn read(passing_only: bool, from: u64, to: u64, list: Vec<Shown>) -> ServiceOp {
        Op {
            client: 2,
            key: Layout::service_name(0),
            input: ServiceInput::Read { service: 0, passing_only },
            invoke: ms(from),
            complete: ms(to),
            outcome: OpOutcome::Ok(ServiceOutput::Read(list)),
        }
    }

    use Status::{Critical, Passing};

    #[test]
    fn reads_of_the_current_or_a_concurrent_state_pass() {
        let ops = vec![
            set(0, Passing, 1, 0, 10, ok()),
            set(1, Critical, 2, 0, 10, ok()),
            read(true, 20, 30, vec![shown(0, Passing, 1)]),
            read(false, 20, 30, vec![shown(0, Passing, 1), shown(1, Critical, 2)]),
            // Concurrent with the flip of instance 0: either state may show.
            set(0, Critical, 3, 40, 50, ok()),
            read(true, 45, 46, vec![shown(0, Passing, 1)]),
            read(true, 45, 46, vec![]),
            // An indeterminate flip back may land at any time after its invocation.
            set(0, Passing, 4, 60, 70, OpOutcome::Indeterminate),
            read(true, 100, 110, vec![shown(0, Passing, 4)]),
            // Until a read saw write 4 (by 110), another may still see the critical state.
            read(true, 100, 110, vec![]),
        ];
        assert_eq!(check(&ops, LAYOUT), Vec::new());
    }

    #[test]
    fn a_stale_passing_instance_is_reported() {
        let ops = vec![
            set(0, Passing, 1, 0, 10, ok()),
            set(0, Critical, 2, 20, 30, ok()),
            read(true, 40, 50, vec![shown(0, Passing, 1)]),
        ];
        let v = check(&ops, LAYOUT);
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].message.contains("stale read"), "{v:?}");
    }

    #[test]
    fn an_instance_hidden_from_passing_after_an_acknowledged_pass_is_reported() {
        let ops = vec![set(0, Critical, 1, 0, 10, ok()), set(0, Passing, 2, 20, 30, ok()), read(true, 40, 50, vec![])];
        let v = check(&ops, LAYOUT);
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].message.contains("omits instance"), "{v:?}");
    }

    #[test]
    fn an_earlier_read_can_supersede_an_indeterminate_write() {
        // Write 1 was indeterminate but a read saw it by 25; write 2 was invoked after that and
        // acknowledged at 40; a read from 50 must not show write 1.
        let ops = vec![
            set(0, Passing, 1, 0, 10, OpOutcome::Indeterminate),
            read(false, 20, 25, vec![shown(0, Passing, 1)]),
            set(0, Critical, 2, 30, 40, ok()),
            read(false, 50, 60, vec![shown(0, Passing, 1)]),
        ];
        let v = check(&ops, LAYOUT);
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].message.contains("read #3"), "{v:?}");
    }

    #[test]
    fn failed_future_and_unknown_writes_and_a_broken_filter_are_reported() {
        let ops = vec![
            set(0, Passing, 1, 0, 10, OpOutcome::Failed),
            read(false, 20, 30, vec![shown(0, Passing, 1)]),
            read(false, 20, 30, vec![shown(0, Passing, 9)]),
            read(false, 20, 30, vec![shown(0, Passing, 2)]),
            set(0, Critical, 2, 40, 50, ok()),
            read(true, 60, 70, vec![shown(0, Critical, 2)]),
        ];
        let v = check(&ops, LAYOUT);
        let text: Vec<&str> = v.iter().map(|v| v.message.as_str()).collect();
        assert_eq!(v.len(), 4, "{text:#?}");
        assert!(text[0].contains("answered as failed"));
        assert!(text[1].contains("no write of this workload"));
        assert!(text[2].contains("invoked only after"));
        assert!(text[3].contains("(?passing) lists instance"));
    }

    #[test]
    fn an_unregistered_instance_may_be_missing_and_a_registered_one_may_not() {
        let ops = vec![
            set(1, Critical, 1, 0, 100, OpOutcome::Indeterminate),
            read(false, 10, 20, vec![]),
            set(0, Critical, 2, 30, 40, ok()),
            read(false, 50, 60, vec![]),
        ];
        let v = check(&ops, LAYOUT);
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].message.contains("omits instance \"svc-0-0\""), "{v:?}");
    }
}
