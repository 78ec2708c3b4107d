//! [`DiskLogStore`]: openraft's log storage over a [`Disk`], in segment files.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io;
use std::ops::RangeBounds;
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::alias::{LogIdOf, VoteOf};
use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{OptionalSend, RaftTypeConfig};

use super::codec;
use super::disk::Disk;
use super::meta::Meta;
use super::record;
use super::recover::recover;
use super::segment::{header_payload, segment_name, Segment};
use crate::limits::{LOG_RECORD_MAX_BYTES, LOG_SEGMENT_MAX_BYTES};

/// Tuning for a [`DiskLogStore`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogOptions {
    /// A segment is closed, and the next entry starts a new one, once it holds this many bytes.
    /// At most [`LOG_SEGMENT_MAX_BYTES`], which bounds what recovery reads per file.
    pub segment_max_bytes: u64,
    /// Planted bug (negative scenarios only): appends are acknowledged without being synced.
    pub planted_ack_before_sync: bool,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions { segment_max_bytes: LOG_SEGMENT_MAX_BYTES, planted_ack_before_sync: false }
    }
}

/// A crash-safe Raft log on a [`Disk`]: segment files of checksummed entry records, and a meta
/// file with the vote, the committed log id and the last purged log id.
///
/// Entries after the purge point are also held in memory, for reads. Every write is durable
/// before it is reported: `append` syncs before it calls `io_completed`, `save_vote`,
/// `save_committed`, `truncate_after` and `purge` before they return. The committed log id is
/// synced eagerly too, although Raft's safety does not need it: recovered lazily, it would let a
/// restarted server serve reads older than ones it served before the crash (openraft documents
/// the hazard; the simulator's `kv-partition` seed 2 and `locks` seeds 1 and 4 catch it). After any I/O error the
/// store refuses every further call (an fsync error cannot be retried): restart and reopen.
///
/// Clones share the same log (openraft's log reader is a clone).
pub struct DiskLogStore<C: RaftTypeConfig, D: Disk> {
    inner: Arc<Mutex<Inner<C, D>>>,
}

struct Inner<C: RaftTypeConfig, D: Disk> {
    disk: D,
    options: LogOptions,
    meta: Meta<C>,
    /// Segments by first index: contiguous, each holding at least one entry.
    segments: BTreeMap<u64, Segment>,
    /// Entries after the purge point: contiguous, ending at the last segment's last entry.
    entries: BTreeMap<u64, C::Entry>,
    /// Set by the first I/O error; every later call fails with it.
    failed: Option<String>,
}

impl<C: RaftTypeConfig, D: Disk> Clone for DiskLogStore<C, D> {
    fn clone(&self) -> Self {
        DiskLogStore { inner: self.inner.clone() }
    }
}

impl<C: RaftTypeConfig, D: Disk> DiskLogStore<C, D> {
    /// Opens (recovers) the log on `disk`, creating nothing until the first write.
    ///
    /// Fails with an [`io::ErrorKind::InvalidData`] error carrying a
    /// [`Corruption`](super::Corruption) when the files hold data a crash cannot explain.
    pub fn open(disk: D) -> io::Result<Self> {
        Self::open_with(disk, LogOptions::default())
    }

    /// [`DiskLogStore::open`] with explicit options.
    pub fn open_with(mut disk: D, options: LogOptions) -> io::Result<Self> {
        let max = options.segment_max_bytes;
        assert!(max > 0 && max <= LOG_SEGMENT_MAX_BYTES, "segment_max_bytes must be in 1..=LOG_SEGMENT_MAX_BYTES");
        let found = recover::<C, D>(&mut disk)?;
        let inner =
            Inner { disk, options, meta: found.meta, segments: found.segments, entries: found.entries, failed: None };
        inner.check_invariants();
        Ok(DiskLogStore { inner: Arc::new(Mutex::new(inner)) })
    }

    fn lock(&self) -> MutexGuard<'_, Inner<C, D>> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Number of segment files the log spans.
    pub fn segment_count(&self) -> usize {
        self.lock().segments.len()
    }

    /// The vote as last durably saved (what `read_vote` returns), for checkers and tests.
    pub fn vote(&self) -> Option<VoteOf<C>> {
        self.lock().meta.vote.clone()
    }
}

impl<C: RaftTypeConfig, D: Disk> Inner<C, D> {
    fn usable(&self) -> io::Result<()> {
        match &self.failed {
            None => Ok(()),
            Some(why) => Err(io::Error::other(format!("log store failed after an I/O error ({why}); reopen it"))),
        }
    }

    /// Records the first I/O error: the disk may now differ from memory.
    fn poison<T>(&mut self, result: io::Result<T>) -> io::Result<T> {
        if let Err(e) = &result {
            self.failed.get_or_insert_with(|| e.to_string());
        }
        result
    }

    fn purged_index(&self) -> Option<u64> {
        self.meta.last_purged.as_ref().map(|id| id.index())
    }

    /// The index the next appended entry must have; `None` for an empty, never purged log.
    fn next_index(&self) -> Option<u64> {
        match self.segments.last_key_value() {
            Some((_, tail)) => Some(tail.last().expect("segments are never empty between operations") + 1),
            None => self.purged_index().map(|p| p + 1),
        }
    }

    fn last_log_id(&self) -> Option<LogIdOf<C>> {
        self.entries.values().next_back().map(|e| e.log_id()).or_else(|| self.meta.last_purged.clone())
    }

    fn save_meta(&mut self, change: impl FnOnce(&mut Meta<C>)) -> io::Result<()> {
        self.usable()?;
        let mut meta = self.meta.clone();
        change(&mut meta);
        let stored = meta.store(&mut self.disk);
        self.poison(stored)?;
        self.meta = meta;
        Ok(())
    }

    fn append(&mut self, entries: Vec<C::Entry>) -> io::Result<()> {
        self.usable()?;
        let records = self.encode(&entries)?;
        let written = self.write_records(&entries, &records);
        self.poison(written)?;
        for entry in entries {
            self.entries.insert(entry.index(), entry);
        }
        self.check_invariants();
        Ok(())
    }

    /// Frames each entry, checking the batch continues the log. Touches nothing.
    fn encode(&self, entries: &[C::Entry]) -> io::Result<Vec<Vec<u8>>> {
        let mut expected = self.next_index();
        let mut records = Vec::with_capacity(entries.len());
        for entry in entries {
            let index = entry.index();
            assert!(
                expected.is_none_or(|e| e == index),
                "append of entry {index} must continue the log at {expected:?}"
            );
            expected = Some(index + 1);
            let payload = codec::encode(entry)?;
            if payload.len() > LOG_RECORD_MAX_BYTES as usize {
                let why = format!("entry {index} encodes to {} bytes, over LOG_RECORD_MAX_BYTES", payload.len());
                return Err(io::Error::new(io::ErrorKind::InvalidInput, why));
            }
            let mut framed = Vec::with_capacity(payload.len() + record::RECORD_HEADER_BYTES);
            record::encode(&payload, &mut framed);
            records.push(framed);
        }
        Ok(records)
    }

    /// Writes the records into the tail segment, rolling to new segments past the size limit,
    /// and syncs. A segment is synced before the next one is created, so a crash can only
    /// tear the last segment.
    fn write_records(&mut self, entries: &[C::Entry], records: &[Vec<u8>]) -> io::Result<()> {
        let mut pending = Vec::new();
        for (entry, framed) in entries.iter().zip(records) {
            let full = self.segments.last_key_value().is_none_or(|(_, s)| s.size() >= self.options.segment_max_bytes);
            if full {
                self.flush(&mut pending)?;
                self.roll(entry.index())?;
            }
            let tail = self.segments.last_entry().expect("a tail segment exists after rolling").into_mut();
            tail.ends.push(tail.size() + framed.len() as u64);
            pending.extend_from_slice(framed);
        }
        self.flush(&mut pending)
    }

    /// Appends `pending` to the tail segment and syncs it.
    fn flush(&mut self, pending: &mut Vec<u8>) -> io::Result<()> {
        if pending.is_empty() {
            return Ok(());
        }
        let name = self.segments.last_key_value().expect("pending bytes belong to a segment").1.name();
        self.disk.append(&name, pending)?;
        if !self.options.planted_ack_before_sync {
            self.disk.sync(&name)?;
        }
        pending.clear();
        Ok(())
    }

    /// Starts a segment at `first`: header record synced and directory entry durable before any
    /// entry goes in.
    fn roll(&mut self, first: u64) -> io::Result<()> {
        let name = segment_name(first);
        let mut header = Vec::new();
        record::encode(&header_payload(first), &mut header);
        self.disk.create(&name)?;
        self.disk.append(&name, &header)?;
        self.disk.sync(&name)?;
        self.disk.sync_dir()?;
        let segment = Segment { first, header_end: header.len() as u64, ends: Vec::new() };
        assert!(self.segments.insert(first, segment).is_none(), "segment {first} already exists");
        Ok(())
    }

    fn truncate_after(&mut self, last: Option<LogIdOf<C>>) -> io::Result<()> {
        self.usable()?;
        let keep = last.map(|id| id.index());
        if let Some(p) = self.purged_index() {
            assert!(keep.is_some_and(|k| k >= p), "truncate_after({keep:?}) below the purge point {p}");
        }
        let cut = self.cut_segments(keep);
        self.poison(cut)?;
        drop(self.entries.split_off(&keep.map_or(0, |k| k + 1)));
        self.check_invariants();
        Ok(())
    }

    /// Drops every entry after `keep` from disk, from the end backward, each step durable
    /// before the next: a crash leaves a prefix of the old log that still ends at or after
    /// `keep`, never a hole.
    fn cut_segments(&mut self, keep: Option<u64>) -> io::Result<()> {
        let from = keep.map_or(0, |k| k + 1);
        // Bounded by the number of segments: each round removes one.
        while let Some(tail) = self.segments.last_entry() {
            if tail.get().first < from {
                break;
            }
            let name = tail.get().name();
            self.disk.remove(&name)?;
            self.disk.sync_dir()?;
            tail.remove();
        }
        let Some(mut tail) = self.segments.last_entry() else { return Ok(()) };
        let segment = tail.get_mut();
        let keep = keep.expect("a segment before `from` means something is kept");
        if segment.last().is_some_and(|last| last > keep) {
            let kept = usize::try_from(keep - segment.first + 1).expect("fits");
            let name = segment.name();
            self.disk.truncate(&name, segment.ends[kept - 1])?;
            self.disk.sync(&name)?;
            segment.ends.truncate(kept);
        }
        Ok(())
    }

    fn purge(&mut self, log_id: LogIdOf<C>) -> io::Result<()> {
        assert!(self.meta.last_purged.as_ref() <= Some(&log_id), "purge moved backwards");
        if self.meta.last_purged.as_ref() == Some(&log_id) {
            return self.usable();
        }
        let p = log_id.index();
        // The purge point is durable first: segments below it are then dead weight, and a
        // crash before they are removed only leaves files that recovery removes.
        self.save_meta(|meta| meta.last_purged = Some(log_id))?;
        self.entries = self.entries.split_off(&(p + 1));
        let removed = self.remove_purged_segments(p);
        self.poison(removed)?;
        self.check_invariants();
        Ok(())
    }

    /// Removes the segments whose every entry is at or below `p`, oldest first.
    fn remove_purged_segments(&mut self, p: u64) -> io::Result<()> {
        let doomed: Vec<u64> =
            self.segments.values().take_while(|s| s.last().is_some_and(|last| last <= p)).map(|s| s.first).collect();
        for first in &doomed {
            self.disk.remove(&segment_name(*first))?;
            self.segments.remove(first);
        }
        if !doomed.is_empty() {
            self.disk.sync_dir()?;
        }
        Ok(())
    }

    /// Segments are contiguous and non-empty; entries are exactly those after the purge
    /// point, ending where the last segment ends. O(segments); debug builds only.
    fn check_invariants(&self) {
        if !cfg!(debug_assertions) {
            return;
        }
        let p = self.purged_index();
        let mut tail_last: Option<u64> = None;
        for (first, segment) in &self.segments {
            assert_eq!(*first, segment.first);
            let last = segment.last().expect("no empty segment between operations");
            assert!(tail_last.is_none_or(|prev| segment.first == prev + 1), "segments are contiguous");
            assert!(segment.header_end < segment.size(), "a segment holds entries after its header");
            tail_last = Some(last);
        }
        let (Some((&lo, _)), Some((&hi, _))) = (self.entries.first_key_value(), self.entries.last_key_value()) else {
            assert!(tail_last.is_none() || tail_last <= p, "no entry kept: segments hold only purged entries");
            return;
        };
        let head_first = *self.segments.first_key_value().expect("entries live in segments").0;
        assert_eq!(Some(hi), tail_last, "the last entry ends the last segment");
        assert_eq!(hi - lo + 1, self.entries.len() as u64, "entries are contiguous");
        assert_eq!(lo, p.map_or(head_first, |p| head_first.max(p + 1)), "entries start right after the purge point");
    }
}

impl<C, D> RaftLogReader<C> for DiskLogStore<C, D>
where
    C: RaftTypeConfig,
    C::Entry: Clone,
    D: Disk,
{
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<C::Entry>, io::Error> {
        let inner = self.lock();
        inner.usable()?;
        Ok(inner.entries.range(range).map(|(_, e)| e.clone()).collect())
    }

    async fn read_vote(&mut self) -> Result<Option<VoteOf<C>>, io::Error> {
        let inner = self.lock();
        inner.usable()?;
        Ok(inner.meta.vote.clone())
    }
}

impl<C, D> RaftLogStorage<C> for DiskLogStore<C, D>
where
    C: RaftTypeConfig,
    C::Entry: Clone,
    D: Disk,
{
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<C>, io::Error> {
        let inner = self.lock();
        inner.usable()?;
        Ok(LogState { last_purged_log_id: inner.meta.last_purged.clone(), last_log_id: inner.last_log_id() })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &VoteOf<C>) -> Result<(), io::Error> {
        self.lock().save_meta(|meta| meta.vote = Some(vote.clone()))
    }

    async fn save_committed(&mut self, committed: Option<LogIdOf<C>>) -> Result<(), io::Error> {
        let mut inner = self.lock();
        if inner.meta.committed == committed {
            return inner.usable();
        }
        inner.save_meta(|meta| meta.committed = committed)
    }

    async fn read_committed(&mut self) -> Result<Option<LogIdOf<C>>, io::Error> {
        let inner = self.lock();
        inner.usable()?;
        Ok(inner.meta.committed.clone())
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<C>) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = C::Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let result = self.lock().append(entries.into_iter().collect());
        // Synced (or failed) by now: durability before acknowledgement.
        match result {
            Ok(()) => {
                callback.io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.io_completed(Err(io::Error::new(e.kind(), e.to_string())));
                Err(e)
            }
        }
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogIdOf<C>>) -> Result<(), io::Error> {
        self.lock().truncate_after(last_log_id)
    }

    async fn purge(&mut self, log_id: LogIdOf<C>) -> Result<(), io::Error> {
        self.lock().purge(log_id)
    }
}
