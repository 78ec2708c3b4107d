//! Record framing: length-prefixed, checksummed records, and the scan that tells a torn tail
//! from corruption.
//!
//! ```text
//! offset  size  field
//! 0       4     len          u32 LE, payload length, 1..=LOG_RECORD_MAX_BYTES
//! 4       4     payload_crc  u32 LE, CRC-32C of the payload
//! 8       4     header_crc   u32 LE, CRC-32C of bytes 0..8 (len and payload_crc)
//! 12      len   payload
//! ```
//!
//! The header has its own checksum so that a damaged length is caught before it is trusted:
//! without it, one flipped bit in a length could make a record "run past the end of the
//! file", which would look like a torn write and silently drop every record after it.

use std::ops::Range;

use super::disk::Corruption;
use crate::limits::LOG_RECORD_MAX_BYTES;

/// Bytes before each payload.
pub const RECORD_HEADER_BYTES: usize = 12;

/// Appends one framed record holding `payload` to `out`.
///
/// Panics on an empty payload or one over [`LOG_RECORD_MAX_BYTES`]: callers check the size
/// of what they encode first (an empty record would be indistinguishable from zero fill).
pub fn encode(payload: &[u8], out: &mut Vec<u8>) {
    assert!(!payload.is_empty(), "a record payload is never empty");
    assert!(payload.len() <= LOG_RECORD_MAX_BYTES as usize, "record payload over LOG_RECORD_MAX_BYTES");
    let len = u32::try_from(payload.len()).expect("bounded above");
    let mut head = [0u8; 8];
    head[..4].copy_from_slice(&len.to_le_bytes());
    head[4..].copy_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    out.extend_from_slice(&head);
    out.extend_from_slice(&crc32c::crc32c(&head).to_le_bytes());
    out.extend_from_slice(payload);
}

/// What [`scan`] found in one file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scan {
    /// Payload byte ranges of the valid records, in file order. A record ends where its
    /// payload ends.
    pub records: Vec<Range<usize>>,
    /// Length of the valid prefix: the end of the last valid record.
    pub valid_len: usize,
    /// Set when the bytes after `valid_len` are a torn tail, with why the record there is bad.
    pub torn: Option<&'static str>,
}

/// One step of the scan: a valid record, or a bad one and how it could still be a torn write.
enum Step {
    Record(Range<usize>),
    Bad {
        reason: &'static str,
        /// `Some(k)`: a torn write explains this record iff every byte from `k` to the end of
        /// the file is zero. `None`: nothing but corruption explains it.
        torn_if_zero_from: Option<usize>,
    },
}

fn step(bytes: &[u8], at: usize) -> Step {
    let end_of_file = bytes.len();
    let Some(header) = bytes.get(at..at + RECORD_HEADER_BYTES) else {
        return Step::Bad { reason: "incomplete record header", torn_if_zero_from: Some(end_of_file) };
    };
    let field = |i: usize| u32::from_le_bytes(header[i..i + 4].try_into().expect("4 bytes"));
    if crc32c::crc32c(&header[..8]) != field(8) {
        return Step::Bad {
            reason: "record header checksum mismatch",
            torn_if_zero_from: Some(at + RECORD_HEADER_BYTES),
        };
    }
    let len = field(0);
    if len == 0 || len > LOG_RECORD_MAX_BYTES {
        return Step::Bad { reason: "impossible record length", torn_if_zero_from: None };
    }
    let start = at + RECORD_HEADER_BYTES;
    let end = start + len as usize;
    if end > end_of_file {
        return Step::Bad { reason: "incomplete record payload", torn_if_zero_from: Some(end_of_file) };
    }
    if crc32c::crc32c(&bytes[start..end]) != field(4) {
        return Step::Bad { reason: "record payload checksum mismatch", torn_if_zero_from: Some(end) };
    }
    Step::Record(start..end)
}

/// Reads the records of `file` in order.
///
/// The rule. Reading stops at the first record that is incomplete or fails a checksum. That
/// record starts a *torn tail* — the remains of an append that was never synced, so never
/// acknowledged — if and only if `tail_may_tear` (the file is the one still being appended to)
/// and one of these holds:
///
/// * the file ends inside the record's header or inside its (checksum-verified) length, or
/// * its header checksum fails and every byte after the header to the end of the file is zero,
/// * its payload checksum fails and every byte after the payload to the end of the file is zero.
///
/// Zero bytes are allowed after a torn record because file systems may extend a file before
/// its data lands. Anything else — a bad record followed by more non-zero data, a bad record
/// in a file that may not tear, a checksum-valid header with a length of 0 or above
/// [`LOG_RECORD_MAX_BYTES`] — is corruption, reported with the file and the record's offset.
///
/// A torn write cannot be told from damage to the *last* record of the file: that record, if
/// damaged, is dropped as torn. Every other record is protected.
pub fn scan(file: &str, bytes: &[u8], tail_may_tear: bool) -> Result<Scan, Corruption> {
    let mut records = Vec::new();
    let mut at = 0;
    // Each valid record moves `at` forward by at least RECORD_HEADER_BYTES + 1: bounded by the
    // file's length.
    while at < bytes.len() {
        match step(bytes, at) {
            Step::Record(payload) => {
                assert!(payload.end > at, "scan must advance");
                at = payload.end;
                records.push(payload);
            }
            Step::Bad { reason, torn_if_zero_from } => {
                let zero_after = torn_if_zero_from.is_some_and(|k| bytes[k..].iter().all(|&b| b == 0));
                if tail_may_tear && zero_after {
                    return Ok(Scan { records, valid_len: at, torn: Some(reason) });
                }
                return Err(Corruption::new(file, at as u64, reason));
            }
        }
    }
    assert_eq!(at, bytes.len(), "a clean scan ends exactly at the end of the file");
    Ok(Scan { records, valid_len: at, torn: None })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_of(payloads: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in payloads {
            encode(p, &mut out);
        }
        out
    }

    #[test]
    fn clean_file_reads_back_every_record() {
        let bytes = file_of(&[b"one", b"two!", b"3"]);
        let scan = scan("f", &bytes, false).expect("clean");
        let got: Vec<&[u8]> = scan.records.iter().map(|r| &bytes[r.clone()]).collect();
        assert_eq!(got, vec![&b"one"[..], b"two!", b"3"]);
        assert_eq!(scan.valid_len, bytes.len());
        assert_eq!(scan.torn, None);
    }

    #[test]
    fn every_cut_of_the_last_record_is_a_torn_tail() {
        let bytes = file_of(&[b"first record", b"second record"]);
        let second = bytes.len() - b"second record".len() - RECORD_HEADER_BYTES;
        for cut in second + 1..bytes.len() {
            let got = scan("f", &bytes[..cut], true).expect("torn tail");
            assert_eq!(got.records.len(), 1, "cut {cut}");
            assert_eq!(got.valid_len, second);
            assert!(got.torn.is_some());
            // Zero fill after the surviving prefix is a torn tail too.
            let mut padded = bytes[..cut].to_vec();
            padded.resize(bytes.len() + 7, 0);
            let got = scan("f", &padded, true).expect("zero-filled torn tail");
            assert_eq!((got.records.len(), got.valid_len), (1, second), "cut {cut}");
            // ...but not in a file that may not tear.
            let err = scan("f", &bytes[..cut], false).expect_err("no tearing allowed");
            assert_eq!(err.offset, second as u64);
        }
    }

    #[test]
    fn damage_before_the_last_record_is_corruption() {
        let bytes = file_of(&[b"first record", b"second record", b"third"]);
        let last_start = bytes.len() - b"third".len() - RECORD_HEADER_BYTES;
        for byte in 0..last_start {
            for bit in 0..8 {
                let mut bad = bytes.clone();
                bad[byte] ^= 1 << bit;
                let err = scan("seg", &bad, true).expect_err("flip before the last record");
                assert!(err.offset <= byte as u64, "reported at the record holding byte {byte}");
                assert_eq!(err.file, "seg");
            }
        }
    }

    #[test]
    fn damage_to_the_last_record_never_yields_wrong_data() {
        let bytes = file_of(&[b"first record", b"last"]);
        let last_start = bytes.len() - b"last".len() - RECORD_HEADER_BYTES;
        for byte in last_start..bytes.len() {
            let mut bad = bytes.clone();
            bad[byte] ^= 0x10;
            match scan("f", &bad, true) {
                Ok(s) => assert_eq!((s.records.len(), s.valid_len), (1, last_start)),
                Err(e) => assert_eq!(e.offset, last_start as u64),
            }
        }
    }

    #[test]
    fn impossible_lengths_are_refused_before_allocating() {
        for len in [0u32, LOG_RECORD_MAX_BYTES + 1, u32::MAX] {
            let mut head = [0u8; 8];
            head[..4].copy_from_slice(&len.to_le_bytes());
            let mut bytes = head.to_vec();
            bytes.extend_from_slice(&crc32c::crc32c(&head).to_le_bytes());
            let err = scan("f", &bytes, true).expect_err("impossible length");
            assert_eq!((err.offset, err.reason.as_str()), (0, "impossible record length"));
        }
    }

    #[test]
    fn zeros_in_the_middle_are_corruption_but_at_the_end_a_tear() {
        let mut bytes = file_of(&[b"a record"]);
        bytes.extend_from_slice(&[0; 40]);
        assert_eq!(scan("f", &bytes, true).expect("zero tail").records.len(), 1);
        bytes.extend_from_slice(&file_of(&[b"after zeros"]));
        assert!(scan("f", &bytes, true).is_err());
    }
}
