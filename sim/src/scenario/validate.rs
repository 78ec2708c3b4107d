//! From the file as written ([`RawScenario`]) to a [`Scenario`] a runner can trust: bounds,
//! defaults, and the checks that need more than one key (a fault inside the safety phase, a
//! checker with the workload it needs, a plant only where a plant belongs).
//!
//! The first problem found is reported, with the key path it concerns; the order of the checks
//! follows the order of the tables in the documented format.

use std::path::Path;

use legate_core::duration::format_ns;

use super::error::{ErrorKind, ScenarioError};
use super::limits::*;
use super::model::*;
use super::raw::*;
use super::spans::{Location, SpanIndex};

type Result<T> = std::result::Result<T, ScenarioError>;

/// Everything an error needs to say where it is.
pub(crate) struct Ctx<'a> {
    pub path: &'a Path,
    pub text: &'a str,
    pub spans: &'a SpanIndex,
}

impl Ctx<'_> {
    /// An [`ErrorKind::Invalid`] error about `field`, placed at its value (or at the nearest
    /// enclosing key the file has, when `field` itself is missing).
    fn invalid(&self, field: &str, message: impl Into<String>) -> ScenarioError {
        let location = self.spans.span_of(field).map(|span| Location::of_offset(self.text, span.start));
        ScenarioError::new(ErrorKind::Invalid, self.path, message).at(location).field(Some(field.to_string()))
    }

    fn ensure(&self, ok: bool, field: &str, message: impl FnOnce() -> String) -> Result<()> {
        if ok {
            Ok(())
        } else {
            Err(self.invalid(field, message()))
        }
    }

    /// `value` in `min..=max`.
    fn count(&self, field: &str, value: u32, min: u32, max: u32) -> Result<u32> {
        self.ensure((min..=max).contains(&value), field, || format!("must be between {min} and {max} (got {value})"))?;
        Ok(value)
    }

    /// `ns` in `min_ns..=max_ns`, with a message in Go durations.
    fn duration(&self, field: &str, ns: u64, min_ns: u64, max_ns: u64) -> Result<u64> {
        self.ensure(ns >= min_ns.max(1) || (min_ns == 0 && ns == 0), field, || {
            if min_ns <= 1 {
                format!("must be longer than 0s (got {})", format_ns(ns))
            } else {
                format!("must be at least {} (got {})", format_ns(min_ns), format_ns(ns))
            }
        })?;
        self.ensure(ns <= max_ns, field, || format!("must be at most {} (got {})", format_ns(max_ns), format_ns(ns)))?;
        Ok(ns)
    }

    /// A probability in `(0, 1]`, or `[0, 1]` when `zero_ok`.
    fn probability(&self, field: &str, p: f64, zero_ok: bool) -> Result<f64> {
        let ok = if zero_ok { (0.0..=1.0).contains(&p) } else { p > 0.0 && p <= 1.0 };
        let range = if zero_ok { "between 0 and 1" } else { "above 0 and at most 1" };
        self.ensure(ok, field, || format!("must be a probability {range} (got {p})"))?;
        Ok(p)
    }

    /// A key that must not be there: it belongs to another mode, kind or shape.
    fn absent<T>(&self, value: &Option<T>, field: &str, why: impl FnOnce() -> String) -> Result<()> {
        self.ensure(value.is_none(), field, why)
    }

    fn required<T: Copy>(&self, value: Option<T>, field: &str, why: impl FnOnce() -> String) -> Result<T> {
        value.ok_or_else(|| self.invalid(field, why()))
    }
}

pub(crate) fn validate(raw: RawScenario, ctx: &Ctx<'_>) -> Result<Scenario> {
    let tier = Tier::of_path(ctx.path);
    let name = name(ctx, raw.name)?;
    let description = description(ctx, raw.description)?;
    let topology = topology(ctx, &raw.topology)?;
    let clocks = clocks(ctx, raw.clocks.as_ref())?;
    let phases = phases(ctx, &raw.phases, tier)?;
    let workloads = workloads(ctx, &raw.workloads, &topology)?;
    let scenario_so_far = Scenario {
        name,
        description,
        tier,
        topology,
        clocks,
        workloads,
        nemesis: Nemesis::None,
        phases,
        checkers: Vec::new(),
        plant: None,
    };
    let checkers = checkers(ctx, &raw.checkers, &scenario_so_far)?;
    let nemesis = match &raw.nemesis {
        None => Nemesis::None,
        Some(nemesis) => self::nemesis(ctx, nemesis, &scenario_so_far.topology, &phases)?,
    };
    let mut scenario = Scenario { checkers, nemesis, ..scenario_so_far };
    checkers_observable(ctx, &raw.checkers, &scenario)?;
    scenario.plant = plant(ctx, raw.plant.as_ref(), &scenario)?;
    Ok(scenario)
}

fn name(ctx: &Ctx<'_>, name: String) -> Result<String> {
    let lexical = !name.is_empty()
        && name.len() <= NAME_SIZE_MAX_BYTES
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    ctx.ensure(lexical, "name", || {
        format!(
            "{name:?} is not a scenario name: use lowercase letters, digits and '-', at most \
             {NAME_SIZE_MAX_BYTES} characters"
        )
    })?;
    let stem = ctx.path.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
    ctx.ensure(name == stem, "name", || {
        format!("{name:?} must equal the file name without .toml ({stem:?}), so that run output names the file")
    })?;
    Ok(name)
}

fn description(ctx: &Ctx<'_>, description: String) -> Result<String> {
    ctx.ensure(!description.trim().is_empty(), "description", || "must say what the scenario exercises".into())?;
    ctx.ensure(description.len() <= DESCRIPTION_SIZE_MAX_BYTES, "description", || {
        format!("must be at most {DESCRIPTION_SIZE_MAX_BYTES} bytes (got {})", description.len())
    })?;
    Ok(description)
}

fn topology(ctx: &Ctx<'_>, raw: &RawTopology) -> Result<Topology> {
    let servers = raw.servers;
    ctx.ensure(matches!(servers, 1 | 3 | 5), "topology.servers", || {
        format!("must be 1, 3 or 5 voters (got {servers}); an even count adds no fault tolerance")
    })?;
    let bootstrap = match raw.bootstrap.as_deref() {
        None | Some("static") => Bootstrap::Static,
        Some("expect") => Bootstrap::Expect,
        Some(other) => {
            return Err(ctx.invalid("topology.bootstrap", format!("must be \"static\" or \"expect\" (got {other:?})")));
        }
    };
    let datacenters = datacenters(ctx, raw.datacenters.as_ref())?;
    let wan_latency_ns = match raw.wan_latency {
        Some(GoDuration(ns)) => {
            ctx.ensure(datacenters.len() > 1, "topology.wan_latency", || {
                "`wan_latency` is the latency between datacenters: it needs topology.datacenters above 1".into()
            })?;
            ctx.duration("topology.wan_latency", ns, 0, WAN_LATENCY_MAX_NS)?
        }
        None => 0,
    };
    Ok(Topology { servers, bootstrap, datacenters, wan_latency_ns })
}

/// A count (`dc1`..`dcN`) or a list of names: lowercase letters, digits and '-', unique.
fn datacenters(ctx: &Ctx<'_>, raw: Option<&RawDatacenters>) -> Result<Vec<String>> {
    let field = "topology.datacenters";
    let names = match raw {
        None => return Ok(vec!["dc1".to_string()]),
        Some(RawDatacenters::Count(n)) => {
            let n = *n;
            ctx.ensure((1..=i64::from(DATACENTERS_MAX)).contains(&n), field, || {
                format!("must be between 1 and {DATACENTERS_MAX} (got {n})")
            })?;
            (1..=n).map(|i| format!("dc{i}")).collect()
        }
        Some(RawDatacenters::Names(names)) => {
            let count = names.len();
            ctx.ensure((1..=DATACENTERS_MAX as usize).contains(&count), field, || {
                format!("name between 1 and {DATACENTERS_MAX} datacenters (got {count})")
            })?;
            for (i, name) in names.iter().enumerate() {
                let lexical = !name.is_empty()
                    && name.len() <= DATACENTER_NAME_SIZE_MAX_BYTES
                    && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
                ctx.ensure(lexical, &format!("{field}[{i}]"), || {
                    format!(
                        "{name:?} is not a datacenter name: use lowercase letters, digits and '-', at most \
                         {DATACENTER_NAME_SIZE_MAX_BYTES} characters"
                    )
                })?;
                ctx.ensure(!names[..i].contains(name), &format!("{field}[{i}]"), || {
                    format!("{name:?} is listed twice")
                })?;
            }
            names.clone()
        }
    };
    Ok(names)
}

fn clocks(ctx: &Ctx<'_>, raw: Option<&RawClocks>) -> Result<Clocks> {
    let Some(raw) = raw else { return Ok(Clocks::default()) };
    let offset_max_ns = match raw.offset_max {
        Some(GoDuration(ns)) => ctx.duration("clocks.offset_max", ns, 0, CLOCK_OFFSET_MAX_NS)?,
        None => 0,
    };
    let drift_max_ppm = match raw.drift_max_ppm {
        Some(ppm) => ctx.count("clocks.drift_max_ppm", ppm, 0, CLOCK_DRIFT_MAX_PPM)?,
        None => 0,
    };
    Ok(Clocks { offset_max_ns, drift_max_ppm })
}

fn phases(ctx: &Ctx<'_>, raw: &RawPhases, tier: Tier) -> Result<Phases> {
    let safety_ns = ctx.duration("phases.safety", raw.safety.0, 1, SAFETY_MAX_NS)?;
    let liveness_ns = ctx.duration("phases.liveness", raw.liveness.0, LIVENESS_MIN_NS, LIVENESS_MAX_NS)?;
    if matches!(tier, Tier::Fast | Tier::Negative) {
        let run_ns = safety_ns + liveness_ns;
        ctx.ensure(run_ns <= TEST_TIER_RUN_MAX_NS, "phases", || {
            format!(
                "a {} scenario runs inside `cargo test`: safety + liveness must be at most {} (got {}); \
                 longer runs belong in scenarios/slow/",
                if tier == Tier::Fast { "fast" } else { "negative" },
                format_ns(TEST_TIER_RUN_MAX_NS),
                format_ns(run_ns)
            )
        })?;
    }
    Ok(Phases { safety_ns, liveness_ns })
}

fn workloads(ctx: &Ctx<'_>, raw: &RawWorkloads, topology: &Topology) -> Result<Vec<Workload>> {
    let mut workloads = Vec::new();
    if let Some(kv) = &raw.kv {
        workloads.push(Workload::Kv(self::kv(ctx, kv, topology)?));
    }
    if topology.is_federated() {
        let single = [("lock", raw.lock.is_some()), ("service", raw.service.is_some()), ("txn", raw.txn.is_some())];
        for (kind, present) in single {
            ctx.ensure(!present, &format!("workloads.{kind}"), || {
                format!(
                    "the {kind} workload runs in one datacenter; with topology.datacenters above 1 only \
                     [workloads.kv] runs (its clients spread over the datacenters)"
                )
            })?;
        }
    }
    if let Some(lock) = &raw.lock {
        workloads.push(Workload::Lock(self::lock(ctx, lock)?));
    }
    if let Some(service) = &raw.service {
        workloads.push(Workload::Service(self::service(ctx, service)?));
    }
    if let Some(txn) = &raw.txn {
        workloads.push(Workload::Txn(self::txn(ctx, txn)?));
    }
    ctx.ensure(!workloads.is_empty(), "workloads", || {
        "name at least one workload: [workloads.kv], [workloads.lock], [workloads.service] or [workloads.txn]".into()
    })?;
    Ok(workloads)
}

/// `clients` and `rate_per_s`, which every workload has.
fn clients_and_rate(ctx: &Ctx<'_>, table: &str, clients: u32, rate_per_s: u32) -> Result<(u32, u32)> {
    let clients = ctx.count(&format!("{table}.clients"), clients, 1, WORKLOAD_CLIENTS_MAX)?;
    let rate_per_s = ctx.count(&format!("{table}.rate_per_s"), rate_per_s, 1, WORKLOAD_RATE_MAX_PER_S)?;
    Ok((clients, rate_per_s))
}

fn kv(ctx: &Ctx<'_>, raw: &RawKv, topology: &Topology) -> Result<KvWorkload> {
    let keys = ctx.count("workloads.kv.keys", raw.keys, 1, WORKLOAD_KEYS_MAX)?;
    let (clients, rate_per_s) = clients_and_rate(ctx, "workloads.kv", raw.clients, raw.rate_per_s)?;
    let mix = match &raw.mix {
        None => KvMix { read: 1, write: 1, cas: 1 },
        Some(m) => {
            let weight = |field: &str, w: Option<u32>| ctx.count(field, w.unwrap_or(1), 0, KV_MIX_WEIGHT_MAX);
            let mix = KvMix {
                read: weight("workloads.kv.mix.read", m.read)?,
                write: weight("workloads.kv.mix.write", m.write)?,
                cas: weight("workloads.kv.mix.cas", m.cas)?,
            };
            ctx.ensure(mix.write + mix.cas > 0, "workloads.kv.mix", || {
                "needs a write or cas weight above 0: a register nobody writes checks nothing".into()
            })?;
            mix
        }
    };
    let dcs = topology.datacenters.len() as u32;
    ctx.ensure(clients >= dcs, "workloads.kv.clients", || {
        format!("needs a client in every datacenter: at least {dcs} (got {clients})")
    })?;
    let remote = match raw.remote {
        Some(remote) => {
            ctx.ensure(topology.is_federated(), "workloads.kv.remote", || {
                "`remote` sends operations to another datacenter: it needs topology.datacenters above 1".into()
            })?;
            ctx.probability("workloads.kv.remote", remote, true)?
        }
        None => 0.0,
    };
    let read_mode = raw.read_mode.unwrap_or(ReadMode::Consistent);
    Ok(KvWorkload { keys, clients, rate_per_s, mix, read_mode, remote })
}

fn lock(ctx: &Ctx<'_>, raw: &RawLock) -> Result<LockWorkload> {
    let locks = ctx.count("workloads.lock.locks", raw.locks, 1, LOCKS_MAX)?;
    let (clients, rate_per_s) = clients_and_rate(ctx, "workloads.lock", raw.clients, raw.rate_per_s)?;
    let session_ttl_ns = ctx.duration(
        "workloads.lock.session_ttl",
        raw.session_ttl.map_or(legate_core::limits::SESSION_TTL_MIN_DEFAULT_MS * 1_000_000, |d| d.0),
        LOCK_SESSION_TTL_MIN_NS,
        LOCK_SESSION_TTL_MAX_NS,
    )?;
    let lock_delay_ns = ctx.duration(
        "workloads.lock.lock_delay",
        raw.lock_delay.map_or(legate_core::limits::SESSION_LOCK_DELAY_DEFAULT_NS, |d| d.0),
        0,
        LOCK_DELAY_MAX_NS,
    )?;
    let hold_ns = ctx.duration("workloads.lock.hold", raw.hold.map_or(1_000_000_000, |d| d.0), 1, LOCK_HOLD_MAX_NS)?;
    let abandon = ctx.probability("workloads.lock.abandon", raw.abandon.unwrap_or(0.0), true)?;
    let client = raw.client.unwrap_or_default();
    let limit = match (client, raw.limit) {
        (LockClient::LegateSemaphore, limit) => ctx.count("workloads.lock.limit", limit.unwrap_or(2), 1, clients)?,
        (_, None | Some(1)) => 1,
        (_, Some(_)) => {
            return Err(ctx.invalid("workloads.lock.limit", "a limit other than 1 needs client = \"legate-semaphore\""))
        }
    };
    Ok(LockWorkload { locks, clients, rate_per_s, session_ttl_ns, lock_delay_ns, hold_ns, abandon, client, limit })
}

fn service(ctx: &Ctx<'_>, raw: &RawService) -> Result<ServiceWorkload> {
    let services = ctx.count("workloads.service.services", raw.services, 1, SERVICES_MAX)?;
    let instances = ctx.count("workloads.service.instances", raw.instances, 1, SERVICE_INSTANCES_MAX)?;
    let (clients, rate_per_s) = clients_and_rate(ctx, "workloads.service", raw.clients, raw.rate_per_s)?;
    let flap_interval_ns = ctx.duration(
        "workloads.service.flap_interval",
        raw.flap_interval.0,
        FLAP_INTERVAL_MIN_NS,
        FLAP_INTERVAL_MAX_NS,
    )?;
    Ok(ServiceWorkload { services, instances, clients, rate_per_s, flap_interval_ns })
}

fn txn(ctx: &Ctx<'_>, raw: &RawTxn) -> Result<TxnWorkload> {
    let keys = ctx.count("workloads.txn.keys", raw.keys, 1, WORKLOAD_KEYS_MAX)?;
    let (clients, rate_per_s) = clients_and_rate(ctx, "workloads.txn", raw.clients, raw.rate_per_s)?;
    let ops_per_txn = ctx.count("workloads.txn.ops_per_txn", raw.ops_per_txn.unwrap_or(4), 1, TXN_OPS_MAX)?;
    Ok(TxnWorkload { keys, clients, rate_per_s, ops_per_txn })
}

fn checkers(ctx: &Ctx<'_>, raw: &[Checker], scenario: &Scenario) -> Result<Vec<Checker>> {
    ctx.ensure(!raw.is_empty(), "checkers", || "name at least one checker".into())?;
    let mut checkers: Vec<Checker> = Vec::with_capacity(raw.len());
    for (i, &checker) in raw.iter().enumerate() {
        let field = format!("checkers[{i}]");
        ctx.ensure(!checkers.contains(&checker), &field, || format!("{:?} is listed twice", checker.name()))?;
        match checker {
            Checker::Linearizability => {
                let kv = scenario.kv();
                ctx.ensure(kv.is_some(), &field, || {
                    "\"linearizability\" checks the KV CAS-register workload: add [workloads.kv]".into()
                })?;
                ctx.ensure(kv.is_some_and(|kv| kv.read_mode == ReadMode::Consistent), &field, || {
                    "\"linearizability\" needs workloads.kv.read_mode = \"consistent\": default and stale reads \
                     may legitimately be stale"
                        .into()
                })?;
            }
            Checker::LockSafety => ctx.ensure(scenario.lock().is_some(), &field, || {
                "\"lock-safety\" checks the lock workload: add [workloads.lock]".into()
            })?,
            Checker::Durability | Checker::IndexMonotonicity | Checker::RaftSafety | Checker::Liveness => {}
            Checker::DcIsolation | Checker::LocalAvailability | Checker::WanFailFast => {
                let name = checker.name();
                ctx.ensure(scenario.topology.is_federated(), &field, || {
                    format!("{name:?} compares datacenters: it needs topology.datacenters above 1")
                })?;
                ctx.ensure(scenario.kv().is_some(), &field, || {
                    format!("{name:?} checks the KV workload's requests: add [workloads.kv]")
                })?;
                ctx.ensure(
                    checker != Checker::WanFailFast || scenario.kv().is_some_and(|kv| kv.remote > 0.0),
                    &field,
                    || format!("{name:?} checks requests for other datacenters: set workloads.kv.remote above 0"),
                )?;
            }
        }
        checkers.push(checker);
    }
    Ok(checkers)
}

/// A checker that judges what happens while a datacenter is unreachable needs a nemesis that
/// makes one unreachable: otherwise it could never fail.
fn checkers_observable(ctx: &Ctx<'_>, raw: &[Checker], scenario: &Scenario) -> Result<()> {
    let cuts = injects(&scenario.nemesis, FaultKind::WanPartition) || injects(&scenario.nemesis, FaultKind::DcLoss);
    for (i, checker) in raw.iter().enumerate() {
        if matches!(checker, Checker::LocalAvailability | Checker::WanFailFast) {
            ctx.ensure(cuts, &format!("checkers[{i}]"), || {
                format!(
                    "{:?} judges requests made while a datacenter is unreachable: the nemesis needs \
                     \"wan-partition\" or \"dc-loss\" faults",
                    checker.name()
                )
            })?;
        }
    }
    Ok(())
}

fn nemesis(ctx: &Ctx<'_>, raw: &RawNemesis, topology: &Topology, phases: &Phases) -> Result<Nemesis> {
    let random_only = |ctx: &Ctx<'_>, mode: &str| -> Result<()> {
        let why = |key: &str| format!("`{key}` applies only to mode = \"random\" (this nemesis is mode = \"{mode}\")");
        ctx.absent(&raw.faults, "nemesis.faults", || why("faults"))?;
        ctx.absent(&raw.interval, "nemesis.interval", || why("interval"))?;
        ctx.absent(&raw.probability, "nemesis.probability", || why("probability"))?;
        ctx.absent(&raw.duration_max, "nemesis.duration_max", || why("duration_max"))?;
        ctx.absent(&raw.active_max, "nemesis.active_max", || why("active_max"))?;
        ctx.absent(&raw.shapes, "nemesis.shapes", || why("shapes"))?;
        ctx.absent(&raw.torn_writes, "nemesis.torn_writes", || why("torn_writes"))?;
        ctx.absent(&raw.bit_flips, "nemesis.bit_flips", || why("bit_flips"))
    };
    let schedule_only = |ctx: &Ctx<'_>, mode: &str| -> Result<()> {
        ctx.absent(&raw.schedule, "nemesis.schedule", || {
            format!(
                "[[nemesis.schedule]] entries apply only to mode = \"schedule\" (this nemesis is mode = \"{mode}\")"
            )
        })
    };
    match raw.mode {
        RawMode::None => {
            random_only(ctx, "none")?;
            schedule_only(ctx, "none")?;
            Ok(Nemesis::None)
        }
        RawMode::Random => {
            schedule_only(ctx, "random")?;
            random(ctx, raw, topology, phases).map(Nemesis::Random)
        }
        RawMode::Schedule => {
            random_only(ctx, "schedule")?;
            schedule(ctx, raw.schedule.as_deref().unwrap_or_default(), topology, phases).map(Nemesis::Schedule)
        }
    }
}

fn random(ctx: &Ctx<'_>, raw: &RawNemesis, topology: &Topology, phases: &Phases) -> Result<RandomNemesis> {
    let listed = raw.faults.as_deref().unwrap_or_default();
    ctx.ensure(!listed.is_empty(), "nemesis.faults", || {
        "mode = \"random\" needs the fault kinds to draw from, e.g. faults = [\"partition\", \"crash\"]".into()
    })?;
    let mut faults: Vec<FaultKind> = Vec::with_capacity(listed.len());
    for (i, &kind) in listed.iter().enumerate() {
        ctx.ensure(!faults.contains(&kind), &format!("nemesis.faults[{i}]"), || {
            format!("{:?} is listed twice", kind.name())
        })?;
        faults.push(kind);
    }
    let interval = ctx.required(raw.interval, "nemesis.interval", || {
        "mode = \"random\" needs `interval`, the time between two draws (e.g. \"2s\")".into()
    })?;
    let interval_ns = ctx.duration("nemesis.interval", interval.0, NEMESIS_INTERVAL_MIN_NS, phases.safety_ns)?;
    let probability = ctx.probability("nemesis.probability", raw.probability.unwrap_or(1.0), false)?;
    let duration_max_ns =
        ctx.duration("nemesis.duration_max", raw.duration_max.map_or(interval_ns, |d| d.0), 1, phases.safety_ns)?;
    let active_max = ctx.count("nemesis.active_max", raw.active_max.unwrap_or(1), 1, NEMESIS_ACTIVE_MAX)?;

    for (i, kind) in faults.iter().enumerate() {
        if kind.is_wan() {
            wan_fits(ctx, &format!("nemesis.faults[{i}]"), *kind, topology)?;
        }
    }
    let partitions = faults.contains(&FaultKind::Partition);
    if let Some(i) = faults.iter().position(|&kind| kind == FaultKind::Partition) {
        ctx.ensure(topology.servers > 1, &format!("nemesis.faults[{i}]"), || {
            "partitions cut links between servers, and topology.servers = 1 has none".into()
        })?;
    }
    let shapes = match &raw.shapes {
        None if partitions => PartitionShape::ALL.into_iter().filter(|s| s.servers_min() <= topology.servers).collect(),
        None => Vec::new(),
        Some(listed) => {
            ctx.ensure(partitions, "nemesis.shapes", || {
                "`shapes` restricts partitions, but \"partition\" is not among nemesis.faults".into()
            })?;
            ctx.ensure(!listed.is_empty(), "nemesis.shapes", || "name at least one shape, or leave it out".into())?;
            let mut shapes: Vec<PartitionShape> = Vec::with_capacity(listed.len());
            for (i, &shape) in listed.iter().enumerate() {
                let field = format!("nemesis.shapes[{i}]");
                ctx.ensure(!shapes.contains(&shape), &field, || format!("{:?} is listed twice", shape.name()))?;
                shape_fits(ctx, &field, shape, topology)?;
                shapes.push(shape);
            }
            shapes
        }
    };

    let crashes = faults.contains(&FaultKind::Crash) || faults.contains(&FaultKind::DcLoss);
    let crash_only = |key: &str| {
        format!("`{key}` applies to crashes, but neither \"crash\" nor \"dc-loss\" is among nemesis.faults")
    };
    if !crashes {
        ctx.absent(&raw.torn_writes, "nemesis.torn_writes", || crash_only("torn_writes"))?;
        ctx.absent(&raw.bit_flips, "nemesis.bit_flips", || crash_only("bit_flips"))?;
    }
    let bit_flips = raw.bit_flips.unwrap_or(false);
    if bit_flips {
        bit_flips_fit(ctx, "nemesis.bit_flips", topology)?;
    }
    Ok(RandomNemesis {
        faults,
        interval_ns,
        probability,
        duration_max_ns,
        active_max,
        shapes,
        torn_writes: raw.torn_writes.unwrap_or(false),
        bit_flips,
    })
}

fn wan_fits(ctx: &Ctx<'_>, field: &str, kind: FaultKind, topology: &Topology) -> Result<()> {
    ctx.ensure(topology.is_federated(), field, || {
        format!("a {:?} fault is about datacenters: it needs topology.datacenters above 1", kind.name())
    })
}

fn shape_fits(ctx: &Ctx<'_>, field: &str, shape: PartitionShape, topology: &Topology) -> Result<()> {
    ctx.ensure(topology.servers >= shape.servers_min(), field, || {
        format!(
            "partition shape {:?} needs at least {} servers (topology.servers = {})",
            shape.name(),
            shape.servers_min(),
            topology.servers
        )
    })
}

/// A flipped bit in an old record is repaired from a peer; a lone server has none, and would
/// lose acknowledged writes for a reason that is not a bug.
fn bit_flips_fit(ctx: &Ctx<'_>, field: &str, topology: &Topology) -> Result<()> {
    ctx.ensure(topology.servers >= 3, field, || {
        format!(
            "bit flips in old records need at least 3 servers to repair from (topology.servers = {})",
            topology.servers
        )
    })
}

fn schedule(
    ctx: &Ctx<'_>,
    entries: &[RawScheduled],
    topology: &Topology,
    phases: &Phases,
) -> Result<Vec<ScheduledFault>> {
    ctx.ensure(!entries.is_empty(), "nemesis.schedule", || {
        "mode = \"schedule\" needs at least one [[nemesis.schedule]] entry".into()
    })?;
    ctx.ensure(entries.len() <= SCHEDULE_ENTRIES_MAX, "nemesis.schedule", || {
        format!("at most {SCHEDULE_ENTRIES_MAX} entries (got {})", entries.len())
    })?;
    let mut faults = Vec::with_capacity(entries.len());
    for (i, entry) in entries.iter().enumerate() {
        faults.push(scheduled(ctx, &format!("nemesis.schedule[{i}]"), entry, topology, phases)?);
    }
    faults.sort_by_key(|f: &ScheduledFault| f.at_ns); // Stable: ties keep file order.
    Ok(faults)
}

/// The parameters each fault kind takes, besides `at`, `fault` and `duration`.
fn parameters_of(kind: FaultKind) -> &'static [&'static str] {
    match kind {
        FaultKind::Partition => &["shape", "target", "direction"],
        FaultKind::Crash => &["target", "torn_write", "bit_flip"],
        FaultKind::Pause => &["target"],
        FaultKind::Clock => &["target", "offset", "drift_ppm"],
        FaultKind::Drop | FaultKind::Duplicate | FaultKind::Reorder => &["probability", "target"],
        FaultKind::Delay => &["latency_max", "target"],
        FaultKind::WanPartition => &["datacenter"],
        FaultKind::DcLoss => &["datacenter", "torn_write"],
        FaultKind::WanDelay => &["datacenter", "latency_max"],
    }
}

fn scheduled(
    ctx: &Ctx<'_>,
    prefix: &str,
    raw: &RawScheduled,
    topology: &Topology,
    phases: &Phases,
) -> Result<ScheduledFault> {
    let field = |key: &str| format!("{prefix}.{key}");
    let kind = raw.fault;
    let safety = format_ns(phases.safety_ns);
    let at_ns = raw.at.0;
    ctx.ensure(at_ns < phases.safety_ns, &field("at"), || {
        format!(
            "fault starts at {}, but the safety phase ends at {safety} (phases.safety); faults run only in the \
             safety phase",
            format_ns(at_ns)
        )
    })?;
    let duration = ctx.required(raw.duration, &field("duration"), || {
        format!("a {:?} fault needs `duration`, how long it lasts (e.g. \"5s\")", kind.name())
    })?;
    let duration_ns = ctx.duration(&field("duration"), duration.0, 1, phases.safety_ns)?;
    ctx.ensure(at_ns + duration_ns <= phases.safety_ns, &field("duration"), || {
        format!(
            "fault ends at {}, after the safety phase ends at {safety} (phases.safety); faults run only in the \
             safety phase",
            format_ns(at_ns + duration_ns)
        )
    })?;

    if kind.is_wan() {
        wan_fits(ctx, &field("fault"), kind, topology)?;
    }
    let datacenter = scheduled_datacenter(ctx, &field("datacenter"), raw, topology)?;

    // Every parameter that is set must be one this kind takes (`datacenter`, checked above,
    // applies to every kind).
    let takes = parameters_of(kind);
    let set: [(&str, bool); 9] = [
        ("target", raw.target.is_some()),
        ("shape", raw.shape.is_some()),
        ("direction", raw.direction.is_some()),
        ("torn_write", raw.torn_write.is_some()),
        ("bit_flip", raw.bit_flip.is_some()),
        ("offset", raw.offset.is_some()),
        ("drift_ppm", raw.drift_ppm.is_some()),
        ("probability", raw.probability.is_some()),
        ("latency_max", raw.latency_max.is_some()),
    ];
    for (key, is_set) in set {
        ctx.ensure(!is_set || takes.contains(&key), &field(key), || {
            format!(
                "`{key}` does not apply to fault {:?}, which takes: at, fault, duration, {}",
                kind.name(),
                takes.join(", ")
            )
        })?;
    }

    let target = |required: bool| -> Result<Option<Target>> {
        let target = match raw.target {
            Some(target) => target,
            None if required => {
                return Err(ctx.invalid(&field("target"), needs_target(kind.name())));
            }
            None => return Ok(None),
        };
        target_fits(ctx, &field("target"), target, topology).map(Some)
    };
    let needed = |t: Result<Option<Target>>| t.map(|t| t.expect("a required target is present"));
    let probability = |ctx: &Ctx<'_>| -> Result<f64> {
        let p = ctx.required(raw.probability, &field("probability"), || {
            format!("a {:?} fault needs `probability` (above 0, at most 1)", kind.name())
        })?;
        ctx.probability(&field("probability"), p, false)
    };

    let fault = match kind {
        FaultKind::Partition => Fault::Partition(partition(ctx, prefix, raw, topology)?),
        FaultKind::Crash => {
            let bit_flip = raw.bit_flip.unwrap_or(false);
            if bit_flip {
                bit_flips_fit(ctx, &field("bit_flip"), topology)?;
            }
            Fault::Crash { target: needed(target(true))?, torn_write: raw.torn_write.unwrap_or(false), bit_flip }
        }
        FaultKind::Pause => Fault::Pause { target: needed(target(true))? },
        FaultKind::Clock => {
            let target = needed(target(true))?;
            ctx.ensure(raw.offset.is_some() || raw.drift_ppm.is_some(), prefix, || {
                "a \"clock\" fault needs `offset` (e.g. \"-2s\"), `drift_ppm` (e.g. 500), or both".into()
            })?;
            let offset_ns = raw.offset.map_or(0, |d| d.0);
            ctx.ensure(offset_ns.unsigned_abs() <= CLOCK_OFFSET_MAX_NS, &field("offset"), || {
                format!("must be at most {} either way", format_ns(CLOCK_OFFSET_MAX_NS))
            })?;
            let drift_ppm = raw.drift_ppm.unwrap_or(0);
            ctx.ensure(drift_ppm.unsigned_abs() <= CLOCK_DRIFT_MAX_PPM, &field("drift_ppm"), || {
                format!("must be at most {CLOCK_DRIFT_MAX_PPM} either way (got {drift_ppm})")
            })?;
            Fault::Clock { target, offset_ns, drift_ppm }
        }
        FaultKind::Drop => Fault::Drop { target: target(false)?, probability: probability(ctx)? },
        FaultKind::Duplicate => Fault::Duplicate { target: target(false)?, probability: probability(ctx)? },
        FaultKind::Reorder => Fault::Reorder { target: target(false)?, probability: probability(ctx)? },
        FaultKind::Delay | FaultKind::WanDelay => {
            let latency = ctx.required(raw.latency_max, &field("latency_max"), || {
                format!(
                    "a {:?} fault needs `latency_max`, the most extra delay per message (e.g. \"200ms\")",
                    kind.name()
                )
            })?;
            let latency_max_ns = ctx.duration(&field("latency_max"), latency.0, 1, FAULT_LATENCY_MAX_NS)?;
            if kind == FaultKind::WanDelay {
                Fault::WanDelay { latency_max_ns }
            } else {
                Fault::Delay { target: target(false)?, latency_max_ns }
            }
        }
        FaultKind::WanPartition => Fault::WanPartition,
        FaultKind::DcLoss => Fault::DcLoss { torn_write: raw.torn_write.unwrap_or(false) },
    };
    let datacenter = match datacenter {
        Some(dc) => dc,
        None if !topology.is_federated() => DcTarget::Index(0),
        None if kind == FaultKind::WanDelay => DcTarget::All,
        None => DcTarget::Random,
    };
    Ok(ScheduledFault { at_ns, duration_ns, fault, datacenter })
}

/// The `datacenter` of a schedule entry: a name of `topology.datacenters` or `"random"`. It
/// needs several datacenters (with one, every fault is in it).
fn scheduled_datacenter(
    ctx: &Ctx<'_>,
    field: &str,
    raw: &RawScheduled,
    topology: &Topology,
) -> Result<Option<DcTarget>> {
    let Some(name) = raw.datacenter.as_deref() else { return Ok(None) };
    ctx.ensure(topology.is_federated(), field, || {
        "`datacenter` picks one of several datacenters: it needs topology.datacenters above 1".into()
    })?;
    if name == "random" {
        return Ok(Some(DcTarget::Random));
    }
    match topology.datacenters.iter().position(|dc| dc == name) {
        Some(i) => Ok(Some(DcTarget::Index(i as u32))),
        None => Err(ctx.invalid(
            field,
            format!("{name:?} is not one of topology.datacenters ({}) nor \"random\"", topology.datacenters.join(", ")),
        )),
    }
}

fn needs_target(what: &str) -> String {
    format!("a {what:?} fault needs `target`: \"leader\", \"follower\", \"random\" or a 0-based server index")
}

fn partition(ctx: &Ctx<'_>, prefix: &str, raw: &RawScheduled, topology: &Topology) -> Result<Partition> {
    let field = |key: &str| format!("{prefix}.{key}");
    let shape = ctx.required(raw.shape, &field("shape"), || {
        let names: Vec<&str> = PartitionShape::ALL.iter().map(|s| s.name()).collect();
        format!("a \"partition\" fault needs `shape`, one of: {}", names.join(", "))
    })?;
    shape_fits(ctx, &field("shape"), shape, topology)?;
    let takes_target = matches!(shape, PartitionShape::IsolateNode | PartitionShape::OneWay);
    let target = match raw.target {
        Some(target) if takes_target => target_fits(ctx, &field("target"), target, topology)?,
        None if takes_target => {
            return Err(ctx.invalid(&field("target"), needs_target(shape.name())));
        }
        Some(_) => {
            return Err(ctx.invalid(
                &field("target"),
                format!(
                    "a {:?} partition picks its sides itself; `target` applies to \"isolate-node\" and \"one-way\"",
                    shape.name()
                ),
            ));
        }
        None => Target::Random, // Unused: shapes without a target ignore it.
    };
    if shape != PartitionShape::OneWay {
        ctx.absent(&raw.direction, &field("direction"), || {
            format!("`direction` applies to \"one-way\" partitions only (this one is {:?})", shape.name())
        })?;
    }
    Ok(match shape {
        PartitionShape::IsolateLeader => Partition::IsolateLeader,
        PartitionShape::IsolateNode => Partition::IsolateNode { target },
        PartitionShape::MajorityMinority => Partition::MajorityMinority,
        PartitionShape::Bridge => Partition::Bridge,
        PartitionShape::OneWay => {
            let direction = ctx.required(raw.direction, &field("direction"), || {
                "a \"one-way\" partition needs `direction`: \"inbound\" (the target receives nothing) or \
                 \"outbound\" (the target's messages are lost)"
                    .into()
            })?;
            Partition::OneWay { target, direction }
        }
    })
}

fn target_fits(ctx: &Ctx<'_>, field: &str, target: Target, topology: &Topology) -> Result<Target> {
    let servers = topology.servers;
    match target {
        Target::Node(n) => ctx.ensure(n < servers, field, || {
            format!("server index {n} is out of range: topology.servers = {servers} (indexes 0..={})", servers - 1)
        })?,
        Target::Follower => {
            ctx.ensure(servers > 1, field, || "there is no follower with topology.servers = 1".into())?
        }
        Target::Leader | Target::Random => {}
    }
    Ok(target)
}

/// Whether the nemesis can inject `kind` at all.
fn injects(nemesis: &Nemesis, kind: FaultKind) -> bool {
    match nemesis {
        Nemesis::None => false,
        Nemesis::Random(random) => random.faults.contains(&kind),
        Nemesis::Schedule(entries) => entries.iter().any(|e| e.fault.kind() == kind),
    }
}

fn plant(ctx: &Ctx<'_>, raw: Option<&RawPlant>, scenario: &Scenario) -> Result<Option<PlantSpec>> {
    let raw = match (scenario.tier, raw) {
        (Tier::Fast | Tier::Slow, Some(_)) => {
            return Err(ctx.invalid(
                "plant",
                format!(
                    "only a negative scenario (in scenarios/negative/) may plant a bug; this file is in the {} tier",
                    if scenario.tier == Tier::Fast { "fast" } else { "slow" }
                ),
            ));
        }
        (Tier::Negative, None) => {
            return Err(ctx.invalid(
                "plant",
                "a negative scenario must plant a bug: add a [plant] table with `bug`, `caught_by` and \
                 `seed_budget`",
            ));
        }
        (_, None) => return Ok(None),
        (_, Some(raw)) => raw,
    };
    let bug = ctx.required(raw.bug, "plant.bug", || {
        "name the planted bug: \"ack-before-sync\", \"stale-consistent-read\", \"ignore-lock-delay\", \
         \"forget-session-invalidation\" or \"forward-write-locally\""
            .into()
    })?;
    let caught_by = ctx.required(raw.caught_by, "plant.caught_by", || {
        "a negative scenario must name the checker expected to catch its plant (`caught_by`), one of the \
         scenario's checkers"
            .into()
    })?;
    ctx.ensure(scenario.checkers.contains(&caught_by), "plant.caught_by", || {
        format!("{:?} is not among the scenario's checkers", caught_by.name())
    })?;
    let seed_budget = ctx.required(raw.seed_budget, "plant.seed_budget", || {
        "a negative scenario needs `seed_budget`: the bug must be caught on one of the seeds 0..seed_budget".into()
    })?;
    let seed_budget = ctx.count("plant.seed_budget", seed_budget, 1, SEED_BUDGET_MAX)?;
    plant_observable(ctx, bug, scenario)?;
    Ok(Some(PlantSpec { bug, caught_by, seed_budget }))
}

/// A planted bug the scenario can never provoke proves nothing about the checker: require the
/// workload and the faults that make each bug visible.
fn plant_observable(ctx: &Ctx<'_>, bug: Plant, scenario: &Scenario) -> Result<()> {
    let name = bug.name();
    match bug {
        Plant::AckBeforeSync => ctx.ensure(injects(&scenario.nemesis, FaultKind::Crash), "nemesis", || {
            format!("plant {name:?} only shows when a server crashes: the nemesis needs \"crash\" faults")
        }),
        Plant::StaleConsistentRead => {
            ctx.ensure(scenario.kv().is_some_and(|kv| kv.read_mode == ReadMode::Consistent), "workloads.kv", || {
                format!("plant {name:?} needs [workloads.kv] with read_mode = \"consistent\"")
            })?;
            ctx.ensure(injects(&scenario.nemesis, FaultKind::Partition), "nemesis", || {
                format!("plant {name:?} only shows when a leader is cut off: the nemesis needs \"partition\" faults")
            })
        }
        Plant::ForwardWriteLocally => {
            ctx.ensure(scenario.topology.is_federated(), "topology.datacenters", || {
                format!("plant {name:?} needs several datacenters: set topology.datacenters above 1")
            })?;
            ctx.ensure(scenario.kv().is_some_and(|kv| kv.remote > 0.0), "workloads.kv.remote", || {
                format!(
                    "plant {name:?} only shows when writes go to another datacenter: set workloads.kv.remote above 0"
                )
            })
        }
        Plant::IgnoreLockDelay | Plant::ForgetSessionInvalidation => {
            let lock = scenario.lock();
            ctx.ensure(lock.is_some(), "workloads.lock", || format!("plant {name:?} needs [workloads.lock]"))?;
            ctx.ensure(lock.is_some_and(|l| l.abandon > 0.0), "workloads.lock.abandon", || {
                format!("plant {name:?} only shows when sessions are invalidated: set abandon above 0")
            })?;
            ctx.ensure(
                bug != Plant::IgnoreLockDelay || lock.is_some_and(|l| l.lock_delay_ns > 0),
                "workloads.lock.lock_delay",
                || format!("plant {name:?} needs a lock_delay above 0s"),
            )
        }
    }
}
