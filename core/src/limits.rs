//! Every limit on something that grows, in one place. Units are the last part of each name.

/// Largest KV value (Consul's `kv_max_value_size`, the Raft-friendly 512 KiB).
pub const KV_VALUE_SIZE_MAX_BYTES: usize = 512 * 1024;

/// Largest key we accept. Consul has no explicit limit; ours keeps the prefix index cheap.
pub const KV_KEY_SIZE_MAX_BYTES: usize = 8 * 1024;

/// Most operations in one `/v1/txn` request (Consul's `maxTxnOps`).
pub const TXN_OPS_MAX: usize = 128;

/// Largest `/v1/txn` body (Consul's `txn_max_req_len`).
pub const TXN_BODY_SIZE_MAX_BYTES: usize = 512 * 1024;

/// Largest JSON body of any other endpoint.
pub const REQUEST_BODY_SIZE_MAX_BYTES: usize = 4 * 1024 * 1024;

/// Default lock-delay of a session (Consul's 15 s).
pub const SESSION_LOCK_DELAY_DEFAULT_NS: u64 = 15_000_000_000;

/// Longest lock-delay a session may ask for (Consul's 60 s).
pub const SESSION_LOCK_DELAY_MAX_NS: u64 = 60_000_000_000;

/// Shortest session TTL unless configured otherwise (`session_ttl_min`).
pub const SESSION_TTL_MIN_DEFAULT_MS: u64 = 10_000;

/// Longest session TTL (Consul's 24 h).
pub const SESSION_TTL_MAX_MS: u64 = 24 * 3_600_000;

/// The server invalidates a TTL session this many TTLs after its last renewal.
pub const SESSION_TTL_MULTIPLIER: u64 = 2;

/// How long a KV delete tombstone lives before the leader reaps it (Consul's 15 min).
pub const TOMBSTONE_TTL_MS: u64 = 15 * 60_000;

/// How often the leader proposes a tombstone reap.
pub const TOMBSTONE_REAP_INTERVAL_MS: u64 = 60_000;

/// Default `wait` of a blocking query (5 min).
pub const BLOCKING_WAIT_DEFAULT_MS: u64 = 5 * 60_000;

/// Longest `wait` of a blocking query (10 min).
pub const BLOCKING_WAIT_MAX_MS: u64 = 10 * 60_000;

/// A blocking query's wait is stretched by a random jitter of up to wait / this.
pub const BLOCKING_JITTER_FRACTION: u64 = 16;

/// Most blocking queries registered at once on one node; beyond it a query answers at once
/// (as if its wait had passed) instead of holding memory.
pub const WATCHERS_MAX: usize = 1_000_000;

/// Most check output kept (Consul's `OutputMaxSize` default).
pub const CHECK_OUTPUT_SIZE_MAX_BYTES: usize = 4 * 1024;

/// The most a check's `OutputMaxSize` may raise its output to; every output is stored in
/// the replicated catalog.
pub const CHECK_OUTPUT_SIZE_LIMIT_BYTES: usize = 64 * 1024;

/// A script check's timeout unless its definition sets one (Consul's 30 s).
pub const CHECK_SCRIPT_TIMEOUT_DEFAULT_MS: u64 = 30_000;

/// An HTTP or TCP check's timeout unless its definition sets one (Consul's 10 s).
pub const CHECK_NETWORK_TIMEOUT_DEFAULT_MS: u64 = 10_000;

/// Most services or checks one registration may carry.
pub const REGISTRATION_CHECKS_MAX: usize = 256;

/// Most entries in a service or node meta map (Consul's limit).
pub const META_PAIRS_MAX: usize = 64;

/// Longest meta key (Consul's limit).
pub const META_KEY_SIZE_MAX_BYTES: usize = 128;

/// Longest meta value (Consul's limit).
pub const META_VALUE_SIZE_MAX_BYTES: usize = 512;

/// A log segment is closed, and a new one started, once it holds at least this many bytes.
pub const LOG_SEGMENT_MAX_BYTES: u64 = 64 * 1024 * 1024;

/// Largest payload of one log record (one encoded Raft entry). It bounds what recovery
/// allocates for a length it reads from disk; it is four times the largest request body.
pub const LOG_RECORD_MAX_BYTES: u32 = 16 * 1024 * 1024;

/// Largest segment file recovery reads: a full segment plus one record that overflowed it.
pub const LOG_SEGMENT_FILE_MAX_BYTES: u64 = LOG_SEGMENT_MAX_BYTES + LOG_RECORD_MAX_BYTES as u64 + 1024;

/// Most segment files a log directory may hold; more means something is wrong (compaction has
/// stopped), and recovery refuses rather than reading without bound.
pub const LOG_SEGMENTS_MAX: usize = 100_000;

/// Largest log meta file (vote, committed and last purged log ids).
pub const LOG_META_MAX_BYTES: u64 = 64 * 1024;

/// Largest snapshot file (header, state machine bytes and checksum).
pub const SNAPSHOT_MAX_BYTES: u64 = 4 * 1024 * 1024 * 1024;

/// Largest encoded snapshot meta (last log id and membership) in a snapshot file's header.
pub const SNAPSHOT_META_MAX_BYTES: u32 = 4 * 1024 * 1024;

/// Longest file name the storage layer uses or accepts from a `Disk`.
pub const DISK_FILE_NAME_MAX_BYTES: usize = 255;

/// Largest user event: its name, payload and filters together (Serf's `UserEventSizeLimit`,
/// which Consul applies to the name and its encoded payload). One event always fits a datagram.
pub const USER_EVENT_SIZE_MAX_BYTES: usize = 512;

/// Longest user event ID (a UUID takes 36).
pub const USER_EVENT_ID_SIZE_MAX_BYTES: usize = 64;

/// User event IDs a gossip member remembers, so that each event is delivered once.
pub const USER_EVENT_IDS_SEEN_MAX: usize = 1_024;

/// User events a gossip member has waiting to be piggybacked; beyond it a new event is refused.
pub const USER_EVENTS_PENDING_MAX: usize = 128;

/// User events an agent keeps for `/v1/event/list` (Consul's `userEventBufferSize`).
pub const USER_EVENTS_KEPT_MAX: usize = 256;
