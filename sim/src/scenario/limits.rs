//! Every bound a scenario file is checked against, in one place. Units are the last part of each
//! name. The bounds keep a typo (`"30h"` for `"30s"`) from turning into a run that never ends, and
//! keep the fast and negative tiers fast enough to run in every `cargo test`.

const NS_PER_MS: u64 = 1_000_000;
const NS_PER_S: u64 = 1_000_000_000;

/// Largest scenario file read (the format needs a few kilobytes).
pub const FILE_SIZE_MAX_BYTES: usize = 1024 * 1024;

/// Longest scenario `name` (it becomes part of test names and replay commands).
pub const NAME_SIZE_MAX_BYTES: usize = 64;

/// Longest `description`.
pub const DESCRIPTION_SIZE_MAX_BYTES: usize = 2_000;

/// Longest safety phase (virtual time).
pub const SAFETY_MAX_NS: u64 = 3_600 * NS_PER_S;

/// Longest liveness phase (virtual time).
pub const LIVENESS_MAX_NS: u64 = 600 * NS_PER_S;

/// Shortest liveness phase: time enough for an election after every fault has healed.
pub const LIVENESS_MIN_NS: u64 = NS_PER_S;

/// Longest whole run (safety + liveness) of a `fast/` or `negative/` scenario, which runs over
/// a seed range inside `cargo test`.
pub const TEST_TIER_RUN_MAX_NS: u64 = 60 * NS_PER_S;

/// Most datacenters of a topology (each its own Raft cluster, addressed `10.<dc>.0.x`).
pub const DATACENTERS_MAX: u32 = 5;

/// Longest datacenter name.
pub const DATACENTER_NAME_SIZE_MAX_BYTES: usize = 32;

/// Largest one-way latency of one WAN hop: a round trip to the farthest of five datacenters
/// (eight hops) stays well inside the clients' 2 s call timeout.
pub const WAN_LATENCY_MAX_NS: u64 = 100 * NS_PER_MS;

/// Most clients of one workload.
pub const WORKLOAD_CLIENTS_MAX: u32 = 64;

/// Highest operation rate of one workload, per second of virtual time, over all its clients.
pub const WORKLOAD_RATE_MAX_PER_S: u32 = 10_000;

/// Most distinct keys of the KV and txn workloads (a linearizability search is per key, so
/// more keys make it cheaper, but each key's history must stay long enough to be interesting).
pub const WORKLOAD_KEYS_MAX: u32 = 1_024;

/// Largest weight in the KV workload's operation mix.
pub const KV_MIX_WEIGHT_MAX: u32 = 1_000;

/// Most contended lock keys of the lock workload.
pub const LOCKS_MAX: u32 = 64;

/// Shortest session TTL of the lock workload. Below Consul's default 10 s minimum, the runner
/// must lower the servers' `session_ttl_min` to match.
pub const LOCK_SESSION_TTL_MIN_NS: u64 = NS_PER_S;

/// Longest session TTL of the lock workload (Consul's 24 h).
pub const LOCK_SESSION_TTL_MAX_NS: u64 = legate_core::limits::SESSION_TTL_MAX_MS * NS_PER_MS;

/// Longest lock-delay (Consul's 60 s).
pub const LOCK_DELAY_MAX_NS: u64 = legate_core::limits::SESSION_LOCK_DELAY_MAX_NS;

/// Longest time a lock holder keeps the lock before releasing it.
pub const LOCK_HOLD_MAX_NS: u64 = 600 * NS_PER_S;

/// Most distinct services of the service workload.
pub const SERVICES_MAX: u32 = 64;

/// Most instances of one service.
pub const SERVICE_INSTANCES_MAX: u32 = 32;

/// Shortest mean time between health flaps of one instance.
pub const FLAP_INTERVAL_MIN_NS: u64 = 10 * NS_PER_MS;

/// Longest mean time between health flaps of one instance.
pub const FLAP_INTERVAL_MAX_NS: u64 = 600 * NS_PER_S;

/// Most operations in one transaction (the server's own limit).
pub const TXN_OPS_MAX: u32 = legate_core::limits::TXN_OPS_MAX as u32;

/// Most explicit `[[nemesis.schedule]]` entries.
pub const SCHEDULE_ENTRIES_MAX: usize = 1_000;

/// Shortest interval between two draws of the random nemesis.
pub const NEMESIS_INTERVAL_MIN_NS: u64 = 10 * NS_PER_MS;

/// Most faults the random nemesis keeps active at once.
pub const NEMESIS_ACTIVE_MAX: u32 = 8;

/// Largest extra delay of a `delay` fault.
pub const FAULT_LATENCY_MAX_NS: u64 = 60 * NS_PER_S;

/// Largest clock offset (either sign), as a fault or as the per-node start offset.
pub const CLOCK_OFFSET_MAX_NS: u64 = 600 * NS_PER_S;

/// Largest clock drift (either sign), in parts per million of elapsed time.
pub const CLOCK_DRIFT_MAX_PPM: u32 = 100_000;

/// Largest seed budget of a negative scenario.
pub const SEED_BUDGET_MAX: u32 = 10_000;
