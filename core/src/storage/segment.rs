//! Segment files: names and the header record that starts each one.

use super::disk::Corruption;

/// Payload of a segment's first record: this magic, then the segment's first log index (u64 LE).
const SEGMENT_MAGIC: &[u8; 16] = b"legate-raft-log1";

/// Bytes of a segment header record's payload.
pub(crate) const SEGMENT_HEADER_PAYLOAD_BYTES: usize = SEGMENT_MAGIC.len() + 8;

const PREFIX: &str = "log-";
const SUFFIX: &str = ".seg";
const INDEX_DIGITS: usize = 20;

/// `log-<first index, 20 digits>.seg`: names sort as their first indexes do.
pub(crate) fn segment_name(first: u64) -> String {
    format!("{PREFIX}{first:0INDEX_DIGITS$}{SUFFIX}")
}

/// The first index a segment file name stands for; `None` for any other file.
pub(crate) fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
    if digits.len() != INDEX_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

pub(crate) fn header_payload(first: u64) -> [u8; SEGMENT_HEADER_PAYLOAD_BYTES] {
    let mut payload = [0u8; SEGMENT_HEADER_PAYLOAD_BYTES];
    payload[..SEGMENT_MAGIC.len()].copy_from_slice(SEGMENT_MAGIC);
    payload[SEGMENT_MAGIC.len()..].copy_from_slice(&first.to_le_bytes());
    payload
}

/// Checks a segment's first record against the index its name promises.
pub(crate) fn check_header(name: &str, payload: &[u8], first: u64) -> Result<(), Corruption> {
    if payload != header_payload(first) {
        return Err(Corruption::new(
            name,
            0,
            format!("segment header is not that of a log segment starting at {first}"),
        ));
    }
    Ok(())
}

/// A segment of the log as recovery found it or appends left it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Segment {
    /// Index of its first entry (and the number in its name).
    pub(crate) first: u64,
    /// End offset of its header record.
    pub(crate) header_end: u64,
    /// End offset of each entry record: `ends[k]` ends the record of entry `first + k`.
    pub(crate) ends: Vec<u64>,
}

impl Segment {
    pub(crate) fn name(&self) -> String {
        segment_name(self.first)
    }

    /// Bytes the segment holds.
    pub(crate) fn size(&self) -> u64 {
        self.ends.last().copied().unwrap_or(self.header_end)
    }

    /// Index of its last entry, if it has any.
    pub(crate) fn last(&self) -> Option<u64> {
        let count = self.ends.len() as u64;
        (count > 0).then(|| self.first + count - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_sort_by_index() {
        for first in [0, 1, 42, u64::MAX] {
            assert_eq!(parse_segment_name(&segment_name(first)), Some(first));
        }
        assert!(segment_name(9) < segment_name(10));
        assert_eq!(segment_name(7), "log-00000000000000000007.seg");
        for other in ["log-7.seg", "log-0000000000000000000x.seg", "raft-meta", "log-00000000000000000007.seg.tmp"] {
            assert_eq!(parse_segment_name(other), None, "{other}");
        }
    }

    #[test]
    fn header_names_its_first_index() {
        let name = segment_name(5);
        assert!(check_header(&name, &header_payload(5), 5).is_ok());
        assert!(check_header(&name, &header_payload(6), 5).is_err());
        assert!(check_header(&name, b"something else", 5).is_err());
    }
}
