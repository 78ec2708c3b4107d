//! The one thing storage asks of a file system, and the errors it reports about what it found.

use std::io;

use crate::limits::DISK_FILE_NAME_MAX_BYTES;

/// A flat directory of named files, with the durability rules of a POSIX file system.
///
/// Durability contract (what survives a crash), which [`crate::storage`] relies on and a
/// simulated disk must enforce:
///
/// * Bytes written by [`Disk::append`] survive a crash only once [`Disk::sync`] of that file
///   has returned. Until then any prefix of them may survive (a torn write), possibly followed
///   by zero bytes.
/// * A file's *existence* and *name* — [`Disk::create`], [`Disk::remove`], [`Disk::rename`] —
///   survive a crash only once [`Disk::sync_dir`] has returned. Until then a crash may undo
///   them.
/// * [`Disk::truncate`] is durable once [`Disk::sync`] of that file has returned.
/// * A returned error leaves the file in an unknown state: callers stop writing (fsync
///   errors in particular cannot be retried) and recover by reopening after a restart.
///
/// Names are checked with [`check_name`]: no separators, so an implementation maps them to one
/// directory. Reads take `&self` and writes `&mut self`; all calls are synchronous (core is
/// sans-IO: it calls this trait, implementations live in the runtime and the simulator).
pub trait Disk: Send + 'static {
    /// Names of every file, in any order.
    fn list(&self) -> io::Result<Vec<String>>;
    /// Current length of a file in bytes.
    fn size(&self, name: &str) -> io::Result<u64>;
    /// The whole content of a file (callers check [`Disk::size`] against a limit first).
    fn read(&self, name: &str) -> io::Result<Vec<u8>>;
    /// Creates an empty file, replacing any file of that name.
    fn create(&mut self, name: &str) -> io::Result<()>;
    /// Appends bytes at the end of an existing file.
    fn append(&mut self, name: &str, bytes: &[u8]) -> io::Result<()>;
    /// Makes a file's content and length durable (fsync).
    fn sync(&mut self, name: &str) -> io::Result<()>;
    /// Cuts a file to `len` bytes (`len` no more than its length).
    fn truncate(&mut self, name: &str, len: u64) -> io::Result<()>;
    /// Removes a file.
    fn remove(&mut self, name: &str) -> io::Result<()>;
    /// Renames `from` to `to`, atomically replacing any file named `to`.
    fn rename(&mut self, from: &str, to: &str) -> io::Result<()>;
    /// Makes the directory's entries (creations, removals, renames) durable.
    fn sync_dir(&mut self) -> io::Result<()>;
}

/// Accepts the names storage uses: 1 to [`DISK_FILE_NAME_MAX_BYTES`] of `[A-Za-z0-9._-]`,
/// not `.` or `..`. Implementations call it so a name can never leave their directory.
pub fn check_name(name: &str) -> io::Result<()> {
    let allowed = |b: u8| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-';
    let ok = !name.is_empty()
        && name.len() <= DISK_FILE_NAME_MAX_BYTES
        && name != "."
        && name != ".."
        && name.bytes().all(allowed);
    if ok {
        Ok(())
    } else {
        Err(io::Error::new(io::ErrorKind::InvalidInput, format!("invalid storage file name {name:?}")))
    }
}

/// Writes `bytes` as the whole new content of `name`, atomically: a crash leaves either the
/// old file or the new one, never a mix. Write a temp file, sync it, rename it over `name`,
/// sync the directory.
pub(crate) fn replace_atomically<D: Disk>(disk: &mut D, name: &str, parts: &[&[u8]]) -> io::Result<()> {
    let tmp = temp_name(name);
    disk.create(&tmp)?;
    for part in parts {
        disk.append(&tmp, part)?;
    }
    disk.sync(&tmp)?;
    disk.rename(&tmp, name)?;
    disk.sync_dir()
}

/// The temp file [`replace_atomically`] writes before renaming; readers ignore it.
pub(crate) fn temp_name(name: &str) -> String {
    format!("{name}.tmp")
}

/// Storage found data it cannot trust: a checksum that fails where a torn write cannot
/// explain it, an impossible length, an undecodable record, a gap in the log.
///
/// Recovery refuses to start with this error (wrapped in an [`io::Error`] of kind
/// [`io::ErrorKind::InvalidData`]) rather than serve corrupt data or silently drop
/// acknowledged entries: an operator must restore the node from a peer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("corrupt storage: file {file} at byte {offset}: {reason}")]
pub struct Corruption {
    /// The file's name inside the storage directory.
    pub file: String,
    /// Byte offset of the first untrusted byte (the start of the bad record).
    pub offset: u64,
    /// What was wrong.
    pub reason: String,
}

impl Corruption {
    pub(crate) fn new(file: &str, offset: u64, reason: impl Into<String>) -> Self {
        Corruption { file: file.to_string(), offset, reason: reason.into() }
    }

    /// The corruption carried by an error from storage, if that is what it is.
    pub fn of(err: &io::Error) -> Option<&Corruption> {
        err.get_ref().and_then(|inner| inner.downcast_ref::<Corruption>())
    }
}

impl From<Corruption> for io::Error {
    fn from(c: Corruption) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_stay_inside_the_directory() {
        for good in ["log-00000000000000000001.seg", "raft-meta", "snapshot.tmp", "a_b-c.d"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        let long = "x".repeat(DISK_FILE_NAME_MAX_BYTES + 1);
        for bad in ["", ".", "..", "a/b", "../x", "a\\b", "a b", "\0", long.as_str()] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn corruption_survives_the_io_error_round_trip() {
        let err: io::Error = Corruption::new("f", 7, "bad").into();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert_eq!(Corruption::of(&err), Some(&Corruption::new("f", 7, "bad")));
        assert!(err.to_string().contains("file f at byte 7: bad"));
        assert!(Corruption::of(&io::Error::other("x")).is_none());
    }
}
