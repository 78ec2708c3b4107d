//! Opening a log directory: read every segment, check it, and decide what to repair.
//!
//! Nothing is changed on disk until the whole directory has been read and accepted, so a
//! refused (corrupt) directory is left exactly as it was found for an operator to inspect.

use std::collections::BTreeMap;
use std::io;

use openraft::entry::RaftEntry;
use openraft::RaftTypeConfig;

use super::codec;
use super::disk::{Corruption, Disk};
use super::meta::Meta;
use super::record;
use super::segment::{check_header, parse_segment_name, segment_name, Segment};
use crate::limits::{LOG_SEGMENTS_MAX, LOG_SEGMENT_FILE_MAX_BYTES};

/// The state recovery found, after its repairs were applied.
pub(crate) struct Recovered<C: RaftTypeConfig> {
    pub(crate) meta: Meta<C>,
    /// Segments that hold at least one entry after the purge point, by first index.
    pub(crate) segments: BTreeMap<u64, Segment>,
    /// Entries after the purge point, contiguous.
    pub(crate) entries: BTreeMap<u64, C::Entry>,
}

/// Repairs recovery decided on, applied only once everything was read and accepted.
#[derive(Default)]
struct Repairs {
    /// Cut the last segment's torn tail: (file, valid length).
    truncate: Option<(String, u64)>,
    /// Segments that hold nothing after the purge point (or nothing at all, for a last segment
    /// whose header never became durable).
    remove: Vec<String>,
}

/// Reads the meta file and every segment, refusing corruption (see `record::scan` for the
/// torn-tail rule), and repairs what a crash legitimately leaves behind.
pub(crate) fn recover<C: RaftTypeConfig, D: Disk>(disk: &mut D) -> io::Result<Recovered<C>> {
    let names = disk.list()?;
    let meta = Meta::<C>::load(disk, &names)?;
    let mut firsts: Vec<u64> = names.iter().filter_map(|n| parse_segment_name(n)).collect();
    firsts.sort_unstable();
    if firsts.len() > LOG_SEGMENTS_MAX {
        let why = format!("{} log segments, over LOG_SEGMENTS_MAX ({LOG_SEGMENTS_MAX})", firsts.len());
        return Err(io::Error::new(io::ErrorKind::InvalidData, why));
    }
    let purged_next = meta.last_purged.as_ref().map(|id| id.index() + 1);
    let mut found = Recovered { meta, segments: BTreeMap::new(), entries: BTreeMap::new() };
    let mut repairs = Repairs::default();
    for (i, &first) in firsts.iter().enumerate() {
        let next_first = firsts.get(i + 1).copied();
        // Every entry of this segment lies below the next segment's first index; if that is
        // at or below the purge point, the segment is wholly purged: drop it unread.
        if next_first.zip(purged_next).is_some_and(|(next, pn)| next <= pn) {
            repairs.remove.push(segment_name(first));
            continue;
        }
        let is_last = next_first.is_none();
        match read_segment::<C, D>(disk, first, is_last, purged_next, &mut found.entries, &mut repairs)? {
            Some(segment) => {
                found.segments.insert(first, segment);
            }
            None => repairs.remove.push(segment_name(first)),
        }
    }
    apply(disk, &repairs)?;
    Ok(found)
}

/// Reads one segment into `entries`. `None`: the segment holds nothing worth keeping (only
/// purged entries, or — as the last segment — no durable entry at all) and is to be removed.
fn read_segment<C: RaftTypeConfig, D: Disk>(
    disk: &D,
    first: u64,
    is_last: bool,
    purged_next: Option<u64>,
    entries: &mut BTreeMap<u64, C::Entry>,
    repairs: &mut Repairs,
) -> io::Result<Option<Segment>> {
    let name = segment_name(first);
    let size = disk.size(&name)?;
    if size > LOG_SEGMENT_FILE_MAX_BYTES {
        return Err(Corruption::new(&name, 0, format!("{size} bytes, over LOG_SEGMENT_FILE_MAX_BYTES")).into());
    }
    let bytes = disk.read(&name)?;
    let scan = record::scan(&name, &bytes, is_last)?;
    if scan.torn.is_some() {
        repairs.truncate = Some((name.clone(), scan.valid_len as u64));
    }
    let Some((header, records)) = scan.records.split_first() else {
        return if is_last { Ok(None) } else { Err(Corruption::new(&name, 0, "segment has no header record").into()) };
    };
    check_header(&name, &bytes[header.clone()], first)?;
    let mut segment = Segment { first, header_end: header.end as u64, ends: Vec::with_capacity(records.len()) };
    let mut kept = 0usize;
    for (k, payload) in records.iter().enumerate() {
        let offset = (payload.start - record::RECORD_HEADER_BYTES) as u64;
        let entry: C::Entry = codec::decode(&bytes[payload.clone()])
            .map_err(|e| Corruption::new(&name, offset, format!("undecodable entry: {e}")))?;
        let index = first + k as u64;
        if entry.index() != index {
            let why = format!("entry {} where {index} belongs", entry.index());
            return Err(Corruption::new(&name, offset, why).into());
        }
        segment.ends.push(payload.end as u64);
        kept += usize::from(admit::<C>(entries, purged_next, entry, &name, offset)?);
    }
    if segment.ends.is_empty() && !is_last {
        return Err(Corruption::new(&name, segment.header_end, "segment holds no entries").into());
    }
    Ok((kept > 0).then_some(segment))
}

/// Adds an entry after the purge point to `entries`, checking it continues them without a gap.
/// Returns whether it was kept (false: at or below the purge point).
fn admit<C: RaftTypeConfig>(
    entries: &mut BTreeMap<u64, C::Entry>,
    purged_next: Option<u64>,
    entry: C::Entry,
    name: &str,
    offset: u64,
) -> Result<bool, Corruption> {
    let index = entry.index();
    if purged_next.is_some_and(|pn| index < pn) {
        return Ok(false);
    }
    let expected = entries.last_key_value().map(|(last, _)| last + 1).or(purged_next);
    if let Some(expected) = expected.filter(|&e| e != index) {
        return Err(Corruption::new(name, offset, format!("log gap: entry {index} where {expected} was expected")));
    }
    entries.insert(index, entry);
    Ok(true)
}

fn apply<D: Disk>(disk: &mut D, repairs: &Repairs) -> io::Result<()> {
    if let Some((name, len)) = &repairs.truncate {
        if !repairs.remove.contains(name) {
            disk.truncate(name, *len)?;
            disk.sync(name)?;
        }
    }
    for name in &repairs.remove {
        disk.remove(name)?;
    }
    if !repairs.remove.is_empty() {
        disk.sync_dir()?;
    }
    Ok(())
}
