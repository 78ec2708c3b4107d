//! The log's meta file: the vote, the committed log id and the last purged log id, replaced
//! atomically on every change.

use std::io;

use openraft::alias::{LogIdOf, VoteOf};
use openraft::RaftTypeConfig;
use serde::{Deserialize, Serialize};

use super::disk::{replace_atomically, Corruption, Disk};
use super::record;
use crate::limits::LOG_META_MAX_BYTES;

/// The meta file's name.
pub const META_FILE: &str = "raft-meta";

/// Written into every meta file, checked on load.
const META_FORMAT: &str = "legate-raft-meta-1";

/// What the meta file holds (JSON inside one record).
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub(crate) struct Meta<C: RaftTypeConfig> {
    format: String,
    pub(crate) vote: Option<VoteOf<C>>,
    pub(crate) committed: Option<LogIdOf<C>>,
    pub(crate) last_purged: Option<LogIdOf<C>>,
}

impl<C: RaftTypeConfig> Clone for Meta<C> {
    fn clone(&self) -> Self {
        Meta {
            format: self.format.clone(),
            vote: self.vote.clone(),
            committed: self.committed.clone(),
            last_purged: self.last_purged.clone(),
        }
    }
}

impl<C: RaftTypeConfig> Default for Meta<C> {
    fn default() -> Self {
        Meta { format: META_FORMAT.to_string(), vote: None, committed: None, last_purged: None }
    }
}

impl<C: RaftTypeConfig> Meta<C> {
    /// Reads the meta file; a fresh directory (no meta file yet) has the default meta.
    pub(crate) fn load<D: Disk>(disk: &D, names: &[String]) -> io::Result<Self> {
        if !names.iter().any(|n| n == META_FILE) {
            return Ok(Meta::default());
        }
        let size = disk.size(META_FILE)?;
        if size > LOG_META_MAX_BYTES {
            return Err(Corruption::new(META_FILE, 0, format!("{size} bytes, over LOG_META_MAX_BYTES")).into());
        }
        let bytes = disk.read(META_FILE)?;
        Ok(Self::decode(&bytes)?)
    }

    fn decode(bytes: &[u8]) -> Result<Self, Corruption> {
        // Written by atomic replace: the file is whole or absent, never torn.
        let scan = record::scan(META_FILE, bytes, false)?;
        let [payload] = scan.records.as_slice() else {
            return Err(Corruption::new(META_FILE, 0, "expected exactly one record"));
        };
        let meta: Self = serde_json::from_slice(&bytes[payload.clone()])
            .map_err(|e| Corruption::new(META_FILE, 0, format!("undecodable meta: {e}")))?;
        if meta.format != META_FORMAT {
            return Err(Corruption::new(META_FILE, 0, format!("unknown meta format {:?}", meta.format)));
        }
        Ok(meta)
    }

    /// Replaces the meta file with `self`; durable when it returns.
    pub(crate) fn store<D: Disk>(&self, disk: &mut D) -> io::Result<()> {
        let json = serde_json::to_vec(self).map_err(io::Error::other)?;
        let mut framed = Vec::with_capacity(json.len() + record::RECORD_HEADER_BYTES);
        record::encode(&json, &mut framed);
        assert!(framed.len() as u64 <= LOG_META_MAX_BYTES, "meta outgrew LOG_META_MAX_BYTES");
        replace_atomically(disk, META_FILE, &[&framed])
    }
}
