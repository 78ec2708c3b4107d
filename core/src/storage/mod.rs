//! Crash-safe storage for the Raft log and snapshots, over a [`Disk`] — the same code on real
//! files (the runtime's `FsDisk`) and on the simulator's disk, which loses unsynced bytes,
//! tears the last write and flips bits.
//!
//! # Files (one flat directory)
//!
//! | name | content |
//! |---|---|
//! | `log-<first index, 20 digits>.seg` | a log segment: a header record, then one record per entry |
//! | `raft-meta` | one record: JSON `{format, vote, committed, last_purged}` |
//! | `snapshot` | the latest snapshot ([`snapshot`] has the byte layout) |
//! | `*.tmp` | a replacement being written; ignored when found |
//!
//! Every record is framed as in [`record`]:
//! `[u32 len][u32 crc32c(payload)][u32 crc32c(len, payload crc)][payload]`, little endian.
//! A segment's first record is its header (`b"legate-raft-log1"` and its first index as u64
//! LE); each later record is one openraft entry as MessagePack with field names (`codec`: the
//! catalog's request types use untagged enums and optional fields, which positional formats
//! such as bincode or postcard cannot read back).
//! A segment holds consecutive entries, starting at the index its name gives. A new segment
//! starts once the last one holds [`LOG_SEGMENT_MAX_BYTES`](crate::limits::LOG_SEGMENT_MAX_BYTES).
//!
//! # Durability
//!
//! * `append` writes its records to the last segment and syncs before acknowledging. Before
//!   a new segment is created the previous one is synced, and a new segment's header and
//!   directory entry are durable before entries go in: only the last segment can ever hold
//!   unsynced bytes.
//! * The vote, the committed log id and the purge point live in `raft-meta`, replaced by
//!   write temp + sync + rename + directory sync on every change.
//! * `truncate_after` removes whole segments from the end backward (each removal made
//!   durable before the next), then cuts and syncs the new last segment.
//! * `purge` makes the new purge point durable first, then removes the segments whose every
//!   entry is at or below it. Entries at or below the purge point are never served, whether
//!   or not their segment is still on disk.
//!
//! # Recovery rule
//!
//! Opening reads `raft-meta`, then every segment in index order, and refuses to start — an
//! [`io::ErrorKind::InvalidData`](std::io::ErrorKind::InvalidData) error carrying a
//! [`Corruption`] that names the file and byte offset — on anything a crash cannot explain:
//!
//! 1. A bad record (incomplete, or failing a checksum) in the **last** segment is a torn tail
//!    when nothing but zero bytes follows it (precisely: [`record::scan`]); recovery cuts the
//!    file there, syncs, and continues. An unsynced append is the only writer that can leave
//!    one, and it was never acknowledged.
//! 2. A bad record followed by more data, any bad record in an earlier segment or in
//!    `raft-meta`, a checksum-valid record with an impossible length, an undecodable entry,
//!    a header that does not match the file name, an entry whose index is not the next one,
//!    or a gap between the purge point and the first entry: corruption.
//! 3. A last segment left with no entry (its header or its first append never became
//!    durable) is removed; so are segments wholly at or below the purge point.
//!
//! Nothing is changed on disk until every file has been read and accepted. The known blind
//! spot: damage to the very last record of the last segment looks like a torn write, so that
//! record is dropped rather than refused (a per-append durable length would close it).

pub mod codec;
mod disk;
mod log;
mod meta;
pub mod record;
mod recover;
mod segment;
pub mod snapshot;

pub use disk::{check_name, Corruption, Disk};
pub use log::{DiskLogStore, LogOptions};
pub use meta::META_FILE;
pub use snapshot::{load_snapshot, save_snapshot, SNAPSHOT_FILE};
