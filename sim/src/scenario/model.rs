//! The typed, validated scenario: what a runner executes. Every value here has passed the checks
//! in [`super::validate`], so a runner may rely on them (a server index is below the server count,
//! a fault ends inside the safety phase, a checker has the workload it needs).
//!
//! Durations are whole nanoseconds of virtual time (`*_ns`), as `legate_core::duration` reads
//! them.

use std::fmt;
use std::path::Path;

use serde::Deserialize;

/// One validated scenario file.
#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    /// Short name, equal to the file stem (`kv-partition` for `kv-partition.toml`).
    pub name: String,
    /// What the scenario exercises and why.
    pub description: String,
    /// The folder the file lives in decides the tier.
    pub tier: Tier,
    pub topology: Topology,
    pub clocks: Clocks,
    /// Workloads in canonical order: kv, lock, service, txn; at most one of each kind.
    pub workloads: Vec<Workload>,
    pub nemesis: Nemesis,
    pub phases: Phases,
    /// Checkers in file order, no duplicates.
    pub checkers: Vec<Checker>,
    /// The bug planted on purpose; present in every negative scenario and only there (or in an
    /// untiered file run by hand).
    pub plant: Option<PlantSpec>,
}

impl Scenario {
    /// The KV (CAS-register) workload, if the scenario runs one.
    pub fn kv(&self) -> Option<&KvWorkload> {
        self.workloads.iter().find_map(|w| match w {
            Workload::Kv(kv) => Some(kv),
            _ => None,
        })
    }

    /// The lock workload, if the scenario runs one.
    pub fn lock(&self) -> Option<&LockWorkload> {
        self.workloads.iter().find_map(|w| match w {
            Workload::Lock(lock) => Some(lock),
            _ => None,
        })
    }

    /// The service-registration workload, if the scenario runs one.
    pub fn service(&self) -> Option<&ServiceWorkload> {
        self.workloads.iter().find_map(|w| match w {
            Workload::Service(service) => Some(service),
            _ => None,
        })
    }

    /// The txn workload, if the scenario runs one.
    pub fn txn(&self) -> Option<&TxnWorkload> {
        self.workloads.iter().find_map(|w| match w {
            Workload::Txn(txn) => Some(txn),
            _ => None,
        })
    }

    /// Whether the run is expected to fail (a bug is planted).
    pub fn expects_failure(&self) -> bool {
        self.plant.is_some()
    }

    /// Virtual time of the whole run: the safety phase, then the liveness phase.
    pub fn run_ns(&self) -> u64 {
        self.phases.safety_ns + self.phases.liveness_ns
    }
}

/// Where a scenario runs, decided by the folder that holds the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tier {
    /// `scenarios/fast/`: a seed range in every `cargo test -p sim`.
    Fast,
    /// `scenarios/slow/`: release builds, thousands of seeds.
    Slow,
    /// `scenarios/negative/`: a planted bug that the named checker must catch.
    Negative,
    /// Any other folder: a file run by hand; a plant is allowed but not required.
    Other,
}

impl Tier {
    /// The tier of a file, from the name of the folder that holds it.
    pub fn of_path(path: &Path) -> Tier {
        let folder = path.parent().and_then(Path::file_name).and_then(|name| name.to_str());
        match folder {
            Some("fast") => Tier::Fast,
            Some("slow") => Tier::Slow,
            Some("negative") => Tier::Negative,
            _ => Tier::Other,
        }
    }
}

/// The server voters. Clients are workload processes and are counted by each workload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topology {
    /// Voters of each datacenter: 1, 3 or 5.
    pub servers: u32,
    /// How each datacenter's cluster forms.
    pub bootstrap: Bootstrap,
    /// The datacenters, in file order: each is its own Raft cluster of `servers` voters, and
    /// they federate (a request for another datacenter is forwarded by a server of the
    /// client's own). Lowercase, unique; `["dc1"]` unless the file names more.
    pub datacenters: Vec<String>,
    /// Extra one-way latency of one WAN hop. Datacenters lie on a line in file order, so the
    /// `i`th and the `j`th are `|i - j|` hops apart (the first one's nearest neighbour is the
    /// second). Zero with one datacenter.
    pub wan_latency_ns: u64,
}

impl Topology {
    /// Whether there is more than one datacenter.
    pub fn is_federated(&self) -> bool {
        self.datacenters.len() > 1
    }
}

/// How a scenario's cluster forms.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Bootstrap {
    /// Every server starts with the full voter set (the cluster exists from the first instant).
    #[default]
    Static,
    /// Every server starts empty and runs the agent's join loop with `bootstrap_expect` =
    /// `servers`, saying hello to all the others: the cluster forms under the faults.
    Expect,
}

/// The clock error every server carries for the whole run (not healed by the liveness phase):
/// each server draws, from the seed, an offset in `[-offset_max_ns, offset_max_ns]` and a drift
/// in `[-drift_max_ppm, drift_max_ppm]`, applied to all of that server's timers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Clocks {
    pub offset_max_ns: u64,
    pub drift_max_ppm: u32,
}

/// How long each phase lasts, in virtual time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Phases {
    /// Workloads run and the nemesis injects faults.
    pub safety_ns: u64,
    /// Every fault is healed; workloads continue, and the liveness checker expects progress.
    pub liveness_ns: u64,
}

/// One workload: client processes issuing operations at a rate.
#[derive(Clone, Debug, PartialEq)]
pub enum Workload {
    Kv(KvWorkload),
    Lock(LockWorkload),
    Service(ServiceWorkload),
    Txn(TxnWorkload),
}

impl Workload {
    /// The workload's table name in the file (`[workloads.<kind>]`).
    pub fn kind(&self) -> &'static str {
        match self {
            Workload::Kv(_) => "kv",
            Workload::Lock(_) => "lock",
            Workload::Service(_) => "service",
            Workload::Txn(_) => "txn",
        }
    }
}

/// Per-key CAS-register operations on the KV store: read, write, and CAS on `ModifyIndex`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct KvWorkload {
    pub keys: u32,
    /// Clients, spread over the datacenters in turn (client `k` lives in datacenter
    /// `k mod datacenters`).
    pub clients: u32,
    /// Operations per second of virtual time, over all clients.
    pub rate_per_s: u32,
    pub mix: KvMix,
    pub read_mode: ReadMode,
    /// Share of operations for another datacenter's KV (drawn uniformly among the others),
    /// sent to a server of the client's own datacenter as a forwarded call. 0 with one
    /// datacenter.
    pub remote: f64,
}

/// Relative weights of the KV operations; each operation is drawn from the seed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KvMix {
    pub read: u32,
    pub write: u32,
    pub cas: u32,
}

/// The consistency mode of KV reads (Consul's `?consistent`, default, `?stale`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReadMode {
    /// The leader confirms leadership with a quorum first: linearizable.
    Consistent,
    /// The leader answers from its state machine: may be stale across a leader change.
    Default,
    /// Any server answers: stale reads are expected.
    Stale,
}

/// Sessions contending for locks: acquire, hold, release; lock-delay and TTL expiry.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LockWorkload {
    /// Distinct lock keys.
    pub locks: u32,
    /// Clients, each with its own session.
    pub clients: u32,
    /// Acquire attempts per second of virtual time, over all clients.
    pub rate_per_s: u32,
    pub session_ttl_ns: u64,
    pub lock_delay_ns: u64,
    /// How long a holder keeps a lock before releasing it.
    pub hold_ns: u64,
    /// Chance that a holder stops renewing its session, so the TTL invalidates it.
    pub abandon: f64,
    /// How the clients take locks.
    pub client: LockClient,
    /// Holders each semaphore admits (`client = "legate-semaphore"`; 1 otherwise).
    pub limit: u32,
}

/// How the lock workload's clients take locks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LockClient {
    /// Raw API calls: `?acquire` on `locks/<n>`, a consistent read to confirm, `?release`.
    #[default]
    Api,
    /// `legate lock`'s protocol (`legate_core::lock::Lock`) on the prefix `locks/<n>`: the key
    /// `locks/<n>/.lock` with the Go client's flags, blocking waits, lock-delay retries, a
    /// consistent confirmation, consistent monitoring while held, release.
    LegateLock,
    /// `legate lock -n <limit>`'s protocol (`legate_core::lock::Semaphore`) on the prefix
    /// `sems/<n>`: contender keys with Behavior `delete` sessions, the holder record changed
    /// by check-and-set, dead holders pruned. Checked by `lock-safety` as: never more than
    /// `limit` sessions certainly holding one semaphore.
    LegateSemaphore,
}

/// Service registration with health checks that flap, and clients reading health.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServiceWorkload {
    pub services: u32,
    /// Instances of each service, spread over the clients' agents.
    pub instances: u32,
    pub clients: u32,
    /// Health queries per second of virtual time, over all clients.
    pub rate_per_s: u32,
    /// Mean time between status changes of one instance's check.
    pub flap_interval_ns: u64,
}

/// Multi-key transactions (`/v1/txn`) over a set of keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxnWorkload {
    pub keys: u32,
    pub clients: u32,
    /// Transactions per second of virtual time, over all clients.
    pub rate_per_s: u32,
    pub ops_per_txn: u32,
}

/// What the nemesis does during the safety phase.
#[derive(Clone, Debug, PartialEq)]
pub enum Nemesis {
    /// No faults (besides the `[clocks]` error every server carries).
    None,
    /// Faults drawn from the seed.
    Random(RandomNemesis),
    /// Faults at fixed times, sorted by start time (ties keep file order).
    Schedule(Vec<ScheduledFault>),
}

/// Faults drawn from the seed: every `interval_ns`, with chance `probability`, one fault kind
/// from `faults`, with its target, shape and parameters drawn from the seed, lasting up to
/// `duration_max_ns`, while fewer than `active_max` faults are active.
#[derive(Clone, Debug, PartialEq)]
pub struct RandomNemesis {
    /// Allowed fault kinds, in file order, no duplicates.
    pub faults: Vec<FaultKind>,
    pub interval_ns: u64,
    pub probability: f64,
    pub duration_max_ns: u64,
    pub active_max: u32,
    /// Partition shapes to draw from (all shapes that fit the topology unless the file names
    /// some); empty when `partition` is not among the faults.
    pub shapes: Vec<PartitionShape>,
    /// Whether a drawn crash may tear the unsynced tail of the server's log.
    pub torn_writes: bool,
    /// Whether a drawn crash may flip a bit in an old, synced record of the server's log.
    pub bit_flips: bool,
}

/// One fault of an explicit schedule.
#[derive(Clone, Debug, PartialEq)]
pub struct ScheduledFault {
    /// Start, from the beginning of the run.
    pub at_ns: u64,
    /// How long it lasts; `at_ns + duration_ns` is inside the safety phase.
    pub duration_ns: u64,
    pub fault: Fault,
    /// The datacenter the fault concerns: the one whose server a server fault hits, the one a
    /// WAN fault cuts off, loses or slows ([`DcTarget::All`]: every WAN link, `wan-delay`
    /// only). Always `Index(0)` with one datacenter.
    pub datacenter: DcTarget,
}

/// The datacenter a fault concerns, resolved when the fault starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DcTarget {
    /// The datacenter at this position of `topology.datacenters`.
    Index(u32),
    /// Any datacenter, drawn from the seed.
    Random,
    /// Every WAN link (a `wan-delay` fault only).
    All,
}

/// A fault with its parameters.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// Cut links between servers in a shape (clients keep reaching every server).
    Partition(Partition),
    /// Crash the server (its unsynced writes are lost) and restart it after the duration.
    Crash { target: Target, torn_write: bool, bit_flip: bool },
    /// Stall the server's process: no timer fires and no message is handled; state is kept.
    Pause { target: Target },
    /// Step the server's clock by `offset_ns` and make it run fast or slow by `drift_ppm`;
    /// both are undone when the fault ends.
    Clock { target: Target, offset_ns: i64, drift_ppm: i32 },
    /// Drop each message with `probability` (on the target's links, or on every link).
    Drop { target: Option<Target>, probability: f64 },
    /// Delay each message by up to `latency_max_ns` more.
    Delay { target: Option<Target>, latency_max_ns: u64 },
    /// Deliver each message twice with `probability`.
    Duplicate { target: Option<Target>, probability: f64 },
    /// Hold each message back behind later ones with `probability`.
    Reorder { target: Option<Target>, probability: f64 },
    /// Cut the datacenter off from every other one, both ways (its own links stay up).
    WanPartition,
    /// Crash every server of the datacenter; restart them all after the duration.
    DcLoss { torn_write: bool },
    /// Delay each message crossing the WAN to or from the datacenter (or on every WAN link)
    /// by up to `latency_max_ns` more, on top of `topology.wan_latency`.
    WanDelay { latency_max_ns: u64 },
}

impl Fault {
    /// The kind of this fault.
    pub fn kind(&self) -> FaultKind {
        match self {
            Fault::Partition(_) => FaultKind::Partition,
            Fault::Crash { .. } => FaultKind::Crash,
            Fault::Pause { .. } => FaultKind::Pause,
            Fault::Clock { .. } => FaultKind::Clock,
            Fault::Drop { .. } => FaultKind::Drop,
            Fault::Delay { .. } => FaultKind::Delay,
            Fault::Duplicate { .. } => FaultKind::Duplicate,
            Fault::Reorder { .. } => FaultKind::Reorder,
            Fault::WanPartition => FaultKind::WanPartition,
            Fault::DcLoss { .. } => FaultKind::DcLoss,
            Fault::WanDelay { .. } => FaultKind::WanDelay,
        }
    }
}

/// The kinds of fault, as the file names them (`fault = "partition"`, `faults = [...]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    Partition,
    Crash,
    Pause,
    Clock,
    Drop,
    Delay,
    Duplicate,
    Reorder,
    WanPartition,
    DcLoss,
    WanDelay,
}

impl FaultKind {
    /// The name the file uses.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Partition => "partition",
            FaultKind::Crash => "crash",
            FaultKind::Pause => "pause",
            FaultKind::Clock => "clock",
            FaultKind::Drop => "drop",
            FaultKind::Delay => "delay",
            FaultKind::Duplicate => "duplicate",
            FaultKind::Reorder => "reorder",
            FaultKind::WanPartition => "wan-partition",
            FaultKind::DcLoss => "dc-loss",
            FaultKind::WanDelay => "wan-delay",
        }
    }

    /// Whether the fault is about datacenters (and needs more than one).
    pub fn is_wan(self) -> bool {
        matches!(self, FaultKind::WanPartition | FaultKind::DcLoss | FaultKind::WanDelay)
    }

    /// Whether the fault makes a datacenter unreachable from the others.
    pub fn cuts_datacenter(self) -> bool {
        matches!(self, FaultKind::WanPartition | FaultKind::DcLoss)
    }
}

/// A partition with its parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Partition {
    /// The leader (when the fault starts) alone on one side.
    IsolateLeader,
    /// The target server alone on one side.
    IsolateNode { target: Target },
    /// A random minority of servers cut from the majority (seed decides the split).
    MajorityMinority,
    /// Two sides that reach each other only through one bridge server, which sees a majority
    /// (Jepsen's bridge); the seed decides the sides.
    Bridge,
    /// Asymmetric: the target stops receiving (`Inbound`) or stops sending (`Outbound`).
    OneWay { target: Target, direction: Direction },
}

impl Partition {
    /// The shape of this partition.
    pub fn shape(&self) -> PartitionShape {
        match self {
            Partition::IsolateLeader => PartitionShape::IsolateLeader,
            Partition::IsolateNode { .. } => PartitionShape::IsolateNode,
            Partition::MajorityMinority => PartitionShape::MajorityMinority,
            Partition::Bridge => PartitionShape::Bridge,
            Partition::OneWay { .. } => PartitionShape::OneWay,
        }
    }
}

/// The shapes of partition, as the file names them (`shape = "bridge"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PartitionShape {
    IsolateLeader,
    IsolateNode,
    MajorityMinority,
    Bridge,
    OneWay,
}

impl PartitionShape {
    /// Every shape, in canonical order.
    pub const ALL: [PartitionShape; 5] = [
        PartitionShape::IsolateLeader,
        PartitionShape::IsolateNode,
        PartitionShape::MajorityMinority,
        PartitionShape::Bridge,
        PartitionShape::OneWay,
    ];

    /// The name the file uses.
    pub fn name(self) -> &'static str {
        match self {
            PartitionShape::IsolateLeader => "isolate-leader",
            PartitionShape::IsolateNode => "isolate-node",
            PartitionShape::MajorityMinority => "majority-minority",
            PartitionShape::Bridge => "bridge",
            PartitionShape::OneWay => "one-way",
        }
    }

    /// Fewest servers the shape needs to mean something. Partitions cut links between servers
    /// (clients keep reaching every server), so a lone server cannot be partitioned; a
    /// majority with a minority, or a bridge between two sides, needs three.
    pub fn servers_min(self) -> u32 {
        match self {
            PartitionShape::MajorityMinority | PartitionShape::Bridge => 3,
            PartitionShape::IsolateLeader | PartitionShape::IsolateNode | PartitionShape::OneWay => 2,
        }
    }
}

/// Which way an asymmetric partition cuts the target's links.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    /// The target receives nothing but can still send.
    Inbound,
    /// The target's messages are lost but it still receives.
    Outbound,
}

/// The server a fault hits, resolved when the fault starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// The current leader (a random server if there is none).
    Leader,
    /// A random server that is not the leader.
    Follower,
    /// Any server, drawn from the seed.
    Random,
    /// Server number `n`, 0-based (below `topology.servers`).
    Node(u32),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Leader => f.write_str("\"leader\""),
            Target::Follower => f.write_str("\"follower\""),
            Target::Random => f.write_str("\"random\""),
            Target::Node(n) => write!(f, "{n}"),
        }
    }
}

/// The checkers a run applies to its history.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Checker {
    /// Every key of the KV workload is a linearizable CAS register.
    Linearizability,
    /// Never two live holders of one lock; LockIndex fences holders.
    LockSafety,
    /// No acknowledged write is lost.
    Durability,
    /// Indexes a client observes never go backwards.
    IndexMonotonicity,
    /// Raft's own safety: one leader per term, committed entries never change.
    RaftSafety,
    /// Progress resumes once the faults have healed.
    Liveness,
    /// No value written to one datacenter's KV is ever read from another's.
    DcIsolation,
    /// A datacenter cut off or left alone keeps serving its own clients.
    LocalAvailability,
    /// Requests for an unreachable datacenter fail fast, saying why; they succeed after heal.
    WanFailFast,
}

impl Checker {
    /// The name the file uses.
    pub fn name(self) -> &'static str {
        match self {
            Checker::Linearizability => "linearizability",
            Checker::LockSafety => "lock-safety",
            Checker::Durability => "durability",
            Checker::IndexMonotonicity => "index-monotonicity",
            Checker::RaftSafety => "raft-safety",
            Checker::Liveness => "liveness",
            Checker::DcIsolation => "dc-isolation",
            Checker::LocalAvailability => "local-availability",
            Checker::WanFailFast => "wan-fail-fast",
        }
    }
}

/// A bug planted on purpose behind a test-only switch; a negative scenario must fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Plant {
    /// A server acknowledges a write before its log entry is synced to disk.
    AckBeforeSync,
    /// A `?consistent` read skips the leader's quorum check.
    StaleConsistentRead,
    /// A lock is granted again at once after its session is invalidated, ignoring lock-delay.
    IgnoreLockDelay,
    /// An invalidated session (TTL expired) keeps its locks.
    ForgetSessionInvalidation,
    /// A server applies a write forwarded for another datacenter to its own datacenter's KV
    /// (planted in the simulator's federation layer, not in the runtime).
    ForwardWriteLocally,
}

impl Plant {
    /// The name the file uses.
    pub fn name(self) -> &'static str {
        match self {
            Plant::AckBeforeSync => "ack-before-sync",
            Plant::StaleConsistentRead => "stale-consistent-read",
            Plant::IgnoreLockDelay => "ignore-lock-delay",
            Plant::ForgetSessionInvalidation => "forget-session-invalidation",
            Plant::ForwardWriteLocally => "forward-write-locally",
        }
    }
}

/// The planted bug of a negative scenario and what must catch it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlantSpec {
    pub bug: Plant,
    /// The checker expected to fail; one of the scenario's checkers.
    pub caught_by: Checker,
    /// The run must fail on at least one seed of `0..seed_budget`.
    pub seed_budget: u32,
}
