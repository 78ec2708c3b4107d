//! The snapshot file: the state machine's bytes with the Raft position they reflect, whole or
//! not at all.
//!
//! ```text
//! offset      size  field
//! 0           8     magic      b"LGTSNAP1"
//! 8           4     meta_len   u32 LE, 1..=SNAPSHOT_META_MAX_BYTES
//! 12          8     data_len   u64 LE
//! 20          m     meta       JSON of openraft's SnapshotMeta (last log id, last membership)
//! 20+m        d     data       the state machine's bytes, opaque here
//! 20+m+d      4     crc        u32 LE, CRC-32C of every byte before it
//! ```
//!
//! Saved as `snapshot.tmp`, synced, renamed over `snapshot`, directory synced: a crash leaves
//! the old snapshot or the new one. A leftover `snapshot.tmp` is ignored (and overwritten by
//! the next save); a `snapshot` that fails any check is corruption, never "no snapshot".

use std::io;

use openraft::alias::SnapshotMetaOf;
use openraft::RaftTypeConfig;

use super::disk::{replace_atomically, Corruption, Disk};
use crate::limits::{SNAPSHOT_MAX_BYTES, SNAPSHOT_META_MAX_BYTES};

/// The snapshot file's name.
pub const SNAPSHOT_FILE: &str = "snapshot";

const MAGIC: &[u8; 8] = b"LGTSNAP1";
const HEAD_BYTES: usize = 20;
const CRC_BYTES: usize = 4;

/// Durably replaces the snapshot with `data` taken at `meta`.
pub fn save_snapshot<C: RaftTypeConfig, D: Disk>(
    disk: &mut D,
    meta: &SnapshotMetaOf<C>,
    data: &[u8],
) -> io::Result<()> {
    let meta_json = serde_json::to_vec(meta).map_err(io::Error::other)?;
    let meta_len = u32::try_from(meta_json.len()).ok().filter(|&m| m <= SNAPSHOT_META_MAX_BYTES);
    let Some(meta_len) = meta_len else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "snapshot meta over SNAPSHOT_META_MAX_BYTES"));
    };
    let total = (HEAD_BYTES + meta_json.len() + CRC_BYTES) as u64 + data.len() as u64;
    if total > SNAPSHOT_MAX_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("snapshot of {total} bytes over SNAPSHOT_MAX_BYTES"),
        ));
    }
    let mut head = Vec::with_capacity(HEAD_BYTES);
    head.extend_from_slice(MAGIC);
    head.extend_from_slice(&meta_len.to_le_bytes());
    head.extend_from_slice(&(data.len() as u64).to_le_bytes());
    let crc = [&head[..], &meta_json, data].iter().fold(0, |crc, part| crc32c::crc32c_append(crc, part));
    replace_atomically(disk, SNAPSHOT_FILE, &[&head, &meta_json, data, &crc.to_le_bytes()])
}

/// The saved snapshot, if any: `Ok(None)` when none was ever saved, an
/// [`io::ErrorKind::InvalidData`] error (a [`Corruption`]) when the file fails a check.
pub fn load_snapshot<C: RaftTypeConfig, D: Disk>(disk: &D) -> io::Result<Option<(SnapshotMetaOf<C>, Vec<u8>)>> {
    if !disk.list()?.iter().any(|n| n == SNAPSHOT_FILE) {
        return Ok(None);
    }
    let size = disk.size(SNAPSHOT_FILE)?;
    if size > SNAPSHOT_MAX_BYTES {
        return Err(Corruption::new(SNAPSHOT_FILE, 0, format!("{size} bytes, over SNAPSHOT_MAX_BYTES")).into());
    }
    let bytes = disk.read(SNAPSHOT_FILE)?;
    Ok(Some(decode::<C>(bytes)?))
}

/// Checks and splits a snapshot file's bytes.
fn decode<C: RaftTypeConfig>(mut bytes: Vec<u8>) -> Result<(SnapshotMetaOf<C>, Vec<u8>), Corruption> {
    let bad = |offset: usize, why: &str| Corruption::new(SNAPSHOT_FILE, offset as u64, why);
    if bytes.len() < HEAD_BYTES + CRC_BYTES {
        return Err(bad(0, "shorter than a snapshot header"));
    }
    let body_len = bytes.len() - CRC_BYTES;
    let stored = u32::from_le_bytes(bytes[body_len..].try_into().expect("4 bytes"));
    if crc32c::crc32c(&bytes[..body_len]) != stored {
        return Err(bad(body_len, "snapshot checksum mismatch"));
    }
    if &bytes[..MAGIC.len()] != MAGIC {
        return Err(bad(0, "not a snapshot file (bad magic)"));
    }
    let meta_len = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    let data_len = u64::from_le_bytes(bytes[12..20].try_into().expect("8 bytes"));
    let expected =
        (HEAD_BYTES as u64 + CRC_BYTES as u64).checked_add(meta_len as u64).and_then(|n| n.checked_add(data_len));
    if meta_len == 0 || meta_len > SNAPSHOT_META_MAX_BYTES || expected != Some(bytes.len() as u64) {
        return Err(bad(8, "snapshot lengths disagree with the file size"));
    }
    let meta_end = HEAD_BYTES + meta_len as usize;
    let meta = serde_json::from_slice(&bytes[HEAD_BYTES..meta_end])
        .map_err(|e| bad(HEAD_BYTES, &format!("undecodable snapshot meta: {e}")))?;
    bytes.truncate(body_len);
    let data = bytes.split_off(meta_end);
    Ok((meta, data))
}
