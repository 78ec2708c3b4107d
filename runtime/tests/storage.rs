//! The on-disk Raft log and snapshot files, over an in-memory `Disk` double: openraft's own
//! storage suite, then what crash safety adds — reopen, torn tails, corruption, durability
//! ordering. (Crashes that lose unsynced bytes are the simulator's job: `sim/tests/disk_*`.)

use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

use legate_core::catalog::{Command, KvOp, KvVerb, Request};
use legate_core::raft::{CatalogStore, TypeConfig};
use legate_core::storage::{
    load_snapshot, save_snapshot, Corruption, Disk, DiskLogStore, LogOptions, META_FILE, SNAPSHOT_FILE,
};
use openraft::alias::{EntryOf, LogIdOf, SnapshotMetaOf, StoredMembershipOf, VoteOf};
use openraft::storage::{IOFlushed, RaftLogReader, RaftLogStorage};
use openraft::testing::log::{StoreBuilder, Suite};
use openraft::{EntryPayload, Membership, StorageError};
use openraft_rt_tokio::TokioRuntime;

type Tc = TypeConfig<TokioRuntime>;
type Store = DiskLogStore<Tc, MemDisk>;

/// Small segments, so that every test crosses segment boundaries.
const SMALL: LogOptions = LogOptions { segment_max_bytes: 300, planted_ack_before_sync: false };

// ---------------------------------------------------------------------------------------------
// The test double: files in a map, every write immediately "durable", every call logged.

#[derive(Clone, Default)]
struct MemDisk(Arc<Mutex<MemState>>);

#[derive(Default)]
struct MemState {
    files: BTreeMap<String, Vec<u8>>,
    ops: Vec<String>,
    fail_syncs: bool,
}

impl MemDisk {
    fn state(&self) -> MutexGuard<'_, MemState> {
        self.0.lock().unwrap()
    }
    fn file(&self, name: &str) -> Vec<u8> {
        self.state().files[name].clone()
    }
    fn names(&self) -> Vec<String> {
        self.state().files.keys().cloned().collect()
    }
    fn segments(&self) -> Vec<String> {
        self.names().into_iter().filter(|n| n.ends_with(".seg")).collect()
    }
    fn edit(&self, name: &str, f: impl FnOnce(&mut Vec<u8>)) {
        f(self.state().files.get_mut(name).expect("file exists"));
    }
    fn take_ops(&self) -> Vec<String> {
        std::mem::take(&mut self.state().ops)
    }
    fn with_file<T>(&self, name: &str, f: impl FnOnce(&mut Vec<u8>) -> T) -> io::Result<T> {
        let mut state = self.state();
        let file =
            state.files.get_mut(name).ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, name.to_string()))?;
        Ok(f(file))
    }
    fn log(&self, op: String) {
        self.state().ops.push(op);
    }
}

impl Disk for MemDisk {
    fn list(&self) -> io::Result<Vec<String>> {
        Ok(self.names())
    }
    fn size(&self, name: &str) -> io::Result<u64> {
        self.with_file(name, |f| f.len() as u64)
    }
    fn read(&self, name: &str) -> io::Result<Vec<u8>> {
        self.with_file(name, |f| f.clone())
    }
    fn create(&mut self, name: &str) -> io::Result<()> {
        legate_core::storage::check_name(name)?;
        self.log(format!("create {name}"));
        self.state().files.insert(name.to_string(), Vec::new());
        Ok(())
    }
    fn append(&mut self, name: &str, bytes: &[u8]) -> io::Result<()> {
        self.log(format!("append {name}"));
        self.with_file(name, |f| f.extend_from_slice(bytes))
    }
    fn sync(&mut self, name: &str) -> io::Result<()> {
        self.log(format!("sync {name}"));
        if self.state().fail_syncs {
            return Err(io::Error::other("injected fsync failure"));
        }
        self.with_file(name, |_| ())
    }
    fn truncate(&mut self, name: &str, len: u64) -> io::Result<()> {
        self.log(format!("truncate {name} {len}"));
        self.with_file(name, |f| {
            assert!(len as usize <= f.len(), "truncate only shortens");
            f.truncate(len as usize)
        })
    }
    fn remove(&mut self, name: &str) -> io::Result<()> {
        self.log(format!("remove {name}"));
        self.state()
            .files
            .remove(name)
            .map(drop)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, name.to_string()))
    }
    fn rename(&mut self, from: &str, to: &str) -> io::Result<()> {
        self.log(format!("rename {from} {to}"));
        let mut state = self.state();
        let bytes =
            state.files.remove(from).ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, from.to_string()))?;
        state.files.insert(to.to_string(), bytes);
        Ok(())
    }
    fn sync_dir(&mut self) -> io::Result<()> {
        self.log("sync_dir".to_string());
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// openraft's storage suite.

struct Builder;

impl StoreBuilder<Tc, Store, CatalogStore<Tc>> for Builder {
    async fn build(&self) -> Result<((), Store, CatalogStore<Tc>), StorageError<Tc>> {
        let store = DiskLogStore::open_with(MemDisk::default(), SMALL).expect("a fresh disk opens");
        Ok(((), store, CatalogStore::new()))
    }
}

/// openraft's conformance suite for `RaftLogStorage` (with the catalog as state machine).
/// Its waits for background purges are 1 s sleeps: paused time makes them instant.
#[tokio::test(start_paused = true)]
async fn openraft_storage_suite_passes() {
    Suite::test_all(Builder).await.expect("openraft storage suite");
}

// ---------------------------------------------------------------------------------------------
// Helpers.

fn log_id(term: u64, index: u64) -> LogIdOf<Tc> {
    openraft::testing::log_id::<Tc>(term, 1, index)
}

/// A KV-set entry whose value is `size` bytes, so tests control how fast segments fill.
fn entry(term: u64, index: u64, size: usize) -> EntryOf<Tc> {
    let op = KvOp {
        verb: KvVerb::Set,
        key: format!("k{index}"),
        value: vec![b'v'; size],
        flags: 0,
        index: 0,
        session: String::new(),
    };
    openraft::Entry {
        log_id: log_id(term, index),
        payload: EntryPayload::Normal(Request { now_ms: index, command: Command::Kv(op) }),
    }
}

fn vote(term: u64) -> VoteOf<Tc> {
    VoteOf::<Tc>::new(term, 1)
}

async fn append(store: &mut Store, entries: Vec<EntryOf<Tc>>) -> io::Result<()> {
    let (tx, rx) = <Tc as openraft::type_config::TypeConfigExt>::oneshot();
    store.append(entries, IOFlushed::signal(tx)).await?;
    rx.await.expect("the callback fired before append returned")
}

async fn append_range(store: &mut Store, term: u64, indexes: std::ops::RangeInclusive<u64>) {
    let entries = indexes.map(|i| entry(term, i, 40)).collect();
    append(store, entries).await.expect("append");
}

async fn all_entries(store: &mut Store) -> Vec<EntryOf<Tc>> {
    store.try_get_log_entries(..).await.expect("readable")
}

fn indexes(entries: &[EntryOf<Tc>]) -> Vec<u64> {
    entries.iter().map(|e| e.log_id.index).collect()
}

fn json(entries: &[EntryOf<Tc>]) -> String {
    serde_json::to_string(entries).expect("entries serialise")
}

fn reopen(disk: &MemDisk) -> io::Result<Store> {
    DiskLogStore::open_with(disk.clone(), SMALL)
}

fn corruption(err: io::Error) -> Corruption {
    Corruption::of(&err).unwrap_or_else(|| panic!("expected corruption, got {err}")).clone()
}

// ---------------------------------------------------------------------------------------------
// The log.

#[tokio::test]
async fn reopen_returns_the_same_state() {
    let disk = MemDisk::default();
    let mut store = reopen(&disk).expect("open");
    append_range(&mut store, 1, 0..=20).await;
    store.save_vote(&vote(2)).await.unwrap();
    append_range(&mut store, 2, 21..=30).await;
    store.save_committed(Some(log_id(2, 25))).await.unwrap();
    store.purge(log_id(1, 7)).await.unwrap();
    store.truncate_after(Some(log_id(2, 27))).await.unwrap();
    assert!(store.segment_count() > 3, "small segments roll: {}", store.segment_count());
    let before = all_entries(&mut store).await;
    let state = store.get_log_state().await.unwrap();
    drop(store);

    let mut again = reopen(&disk).expect("reopen");
    assert_eq!(json(&all_entries(&mut again).await), json(&before));
    assert_eq!(indexes(&before), (8..=27).collect::<Vec<_>>());
    let state_again = again.get_log_state().await.unwrap();
    assert_eq!(state_again.last_log_id, state.last_log_id);
    assert_eq!(state_again.last_purged_log_id, Some(log_id(1, 7)));
    assert_eq!(again.read_vote().await.unwrap(), Some(vote(2)));
    assert_eq!(again.read_committed().await.unwrap(), Some(log_id(2, 25)));

    // And the reopened log goes on where it stopped.
    append_range(&mut again, 3, 28..=35).await;
    drop(again);
    let mut third = reopen(&disk).expect("third open");
    assert_eq!(indexes(&all_entries(&mut third).await), (8..=35).collect::<Vec<_>>());
}

#[tokio::test]
async fn append_is_synced_before_it_is_acknowledged() {
    let disk = MemDisk::default();
    let mut store = DiskLogStore::open(disk.clone()).expect("open");
    append_range(&mut store, 1, 1..=2).await;
    let ops = disk.take_ops();
    let seg = "log-00000000000000000001.seg";
    // A new segment: created, header synced, directory synced, then the entries and a sync.
    assert_eq!(
        ops,
        vec![
            format!("create {seg}"),
            format!("append {seg}"),
            format!("sync {seg}"),
            "sync_dir".to_string(),
            format!("append {seg}"),
            format!("sync {seg}"),
        ]
    );
    store.save_vote(&vote(1)).await.unwrap();
    let ops = disk.take_ops();
    assert_eq!(ops.last().map(String::as_str), Some("sync_dir"), "the vote is durable on return: {ops:?}");
    assert!(ops.contains(&format!("rename {META_FILE}.tmp {META_FILE}")));
}

#[tokio::test]
async fn rolling_syncs_the_old_segment_before_creating_the_next() {
    let disk = MemDisk::default();
    let mut store = reopen(&disk).expect("open");
    let batch = (1..=12).map(|i| entry(1, i, 40)).collect();
    append(&mut store, batch).await.unwrap();
    let ops = disk.take_ops();
    let creates: Vec<usize> = ops.iter().enumerate().filter(|(_, o)| o.starts_with("create")).map(|(i, _)| i).collect();
    assert!(creates.len() >= 3, "one batch spans several segments: {ops:?}");
    for &at in &creates[1..] {
        assert!(ops[at - 1].starts_with("sync log-"), "segment synced before the next is created: {ops:?}");
    }
    assert!(ops.last().unwrap().starts_with("sync log-"));
}

#[tokio::test]
async fn a_torn_tail_is_cut_and_the_log_goes_on() {
    let disk = MemDisk::default();
    let mut store = reopen(&disk).expect("open");
    append_range(&mut store, 1, 1..=9).await;
    let before = all_entries(&mut store).await;
    drop(store);
    let last = disk.segments().pop().unwrap();
    let good_len = disk.file(&last).len();
    // Half a record, as an interrupted append would leave, then zero fill.
    let mut framed = Vec::new();
    legate_core::storage::record::encode(b"{\"half\":\"written\"}", &mut framed);
    disk.edit(&last, |f| {
        f.extend_from_slice(&framed[..framed.len() / 2]);
        f.extend_from_slice(&[0; 33]);
    });

    let mut store = reopen(&disk).expect("a torn tail is not corruption");
    assert_eq!(json(&all_entries(&mut store).await), json(&before));
    assert_eq!(disk.file(&last).len(), good_len, "the torn tail was cut");
    append_range(&mut store, 1, 10..=12).await;
    drop(store);
    let mut store = reopen(&disk).expect("appends after the cut read back");
    assert_eq!(indexes(&all_entries(&mut store).await), (1..=12).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_damaged_earlier_segment_refuses_to_open_and_is_left_alone() {
    let disk = MemDisk::default();
    let mut store = reopen(&disk).expect("open");
    append_range(&mut store, 1, 1..=20).await;
    drop(store);
    let segments = disk.segments();
    assert!(segments.len() >= 3);
    let victim = segments[1].clone();
    let len = disk.file(&victim).len();
    disk.edit(&victim, |f| f[len - 3] ^= 0x04);
    let files_before: Vec<(String, Vec<u8>)> = disk.names().into_iter().map(|n| (n.clone(), disk.file(&n))).collect();

    let err = corruption(reopen(&disk).err().expect("corruption refuses to open"));
    assert_eq!(err.file, victim);
    assert!(err.offset < len as u64);
    let files_after: Vec<(String, Vec<u8>)> = disk.names().into_iter().map(|n| (n.clone(), disk.file(&n))).collect();
    assert!(files_before == files_after, "a refused directory is not modified");
}

#[tokio::test]
async fn damage_before_the_last_record_of_the_last_segment_is_corruption() {
    let disk = MemDisk::default();
    let mut store = DiskLogStore::open(disk.clone()).expect("open");
    append_range(&mut store, 1, 1..=3).await;
    drop(store);
    let segments = disk.segments();
    assert_eq!(segments.len(), 1, "one segment");
    let last = segments[0].clone();
    // The second of the segment's entry records (header record comes first).
    disk.edit(&last, |f| {
        let at = f.len() / 2;
        f[at] ^= 0x80
    });
    let err = corruption(reopen(&disk).err().expect("refused"));
    assert_eq!(err.file, last);
    assert!(err.to_string().contains(&last), "the message names the file: {err}");
}

#[tokio::test]
async fn a_missing_middle_segment_is_a_gap() {
    let disk = MemDisk::default();
    let mut store = reopen(&disk).expect("open");
    append_range(&mut store, 1, 1..=20).await;
    drop(store);
    let segments = disk.segments();
    disk.state().files.remove(&segments[1]);
    let err = corruption(reopen(&disk).err().expect("refused"));
    assert!(err.reason.contains("log gap"), "{err}");
    assert_eq!(err.file, segments[2]);
}

#[tokio::test]
async fn a_segment_whose_name_lies_is_corruption() {
    let disk = MemDisk::default();
    let mut store = reopen(&disk).expect("open");
    append_range(&mut store, 1, 1..=2).await;
    drop(store);
    let bytes = disk.file("log-00000000000000000001.seg");
    disk.state().files.insert("log-00000000000000000000.seg".into(), bytes);
    disk.state().files.remove("log-00000000000000000001.seg");
    let err = corruption(reopen(&disk).err().expect("refused"));
    assert_eq!((err.file.as_str(), err.offset), ("log-00000000000000000000.seg", 0));
}

#[tokio::test]
async fn a_damaged_meta_file_is_corruption() {
    let disk = MemDisk::default();
    let mut store = reopen(&disk).expect("open");
    store.save_vote(&vote(3)).await.unwrap();
    drop(store);
    disk.edit(META_FILE, |f| {
        let at = f.len() - 2;
        f[at] ^= 1
    });
    assert_eq!(corruption(reopen(&disk).err().expect("refused")).file, META_FILE);
    disk.edit(META_FILE, |f| f.truncate(5));
    assert_eq!(corruption(reopen(&disk).err().expect("refused")).file, META_FILE);
}

#[tokio::test]
async fn purge_past_the_end_then_append_after_it() {
    let disk = MemDisk::default();
    let mut store = reopen(&disk).expect("open");
    append_range(&mut store, 1, 1..=10).await;
    store.purge(log_id(2, 15)).await.unwrap();
    assert!(disk.segments().is_empty(), "every segment was at or below the purge point");
    assert!(all_entries(&mut store).await.is_empty());
    assert_eq!(store.get_log_state().await.unwrap().last_log_id, Some(log_id(2, 15)));
    append_range(&mut store, 2, 16..=18).await;
    drop(store);
    let mut store = reopen(&disk).expect("reopen");
    assert_eq!(indexes(&all_entries(&mut store).await), vec![16, 17, 18]);
    assert_eq!(store.get_log_state().await.unwrap().last_purged_log_id, Some(log_id(2, 15)));
}

#[tokio::test]
async fn purged_segments_left_by_a_crash_are_removed_on_open() {
    let disk = MemDisk::default();
    let mut store = reopen(&disk).expect("open");
    append_range(&mut store, 1, 1..=20).await;
    let leftovers: Vec<(String, Vec<u8>)> = disk.segments().into_iter().map(|n| (n.clone(), disk.file(&n))).collect();
    store.purge(log_id(1, 12)).await.unwrap();
    drop(store);
    // As if the crash came after the purge point was saved, before the removals.
    for (name, bytes) in leftovers.iter().take(2) {
        disk.state().files.insert(name.clone(), bytes.clone());
    }
    let mut store = reopen(&disk).expect("reopen");
    assert_eq!(indexes(&all_entries(&mut store).await), (13..=20).collect::<Vec<_>>());
    assert!(!disk.segments().contains(&leftovers[0].0), "wholly purged segment removed");
}

#[tokio::test]
async fn truncate_after_removes_from_the_end_backward() {
    let disk = MemDisk::default();
    let mut store = reopen(&disk).expect("open");
    append_range(&mut store, 1, 1..=20).await;
    disk.take_ops();
    store.truncate_after(Some(log_id(1, 4))).await.unwrap();
    let removed: Vec<String> = disk.take_ops().into_iter().filter(|o| o.starts_with("remove")).collect();
    let mut sorted = removed.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert!(removed.len() >= 2);
    assert_eq!(removed, sorted, "removed last segment first");
    assert_eq!(indexes(&all_entries(&mut store).await), vec![1, 2, 3, 4]);
    append_range(&mut store, 2, 5..=6).await;
    drop(store);
    let mut store = reopen(&disk).expect("reopen");
    let entries = all_entries(&mut store).await;
    assert_eq!(indexes(&entries), vec![1, 2, 3, 4, 5, 6]);
    assert_eq!(entries[5].log_id, log_id(2, 6), "the new entries replaced the old");
    store.truncate_after(None).await.unwrap();
    assert!(disk.segments().is_empty());
    assert_eq!(store.get_log_state().await.unwrap().last_log_id, None);
}

#[tokio::test]
async fn an_oversized_entry_is_refused_without_harm() {
    let disk = MemDisk::default();
    let mut store = reopen(&disk).expect("open");
    append_range(&mut store, 1, 1..=2).await;
    // Bytes >= 0x80 take two bytes each in MessagePack: half the limit's worth overflows it.
    let mut huge = entry(1, 3, 0);
    if let EntryPayload::Normal(Request { command: Command::Kv(op), .. }) = &mut huge.payload {
        op.value = vec![0xff; legate_core::limits::LOG_RECORD_MAX_BYTES as usize / 2 + 1];
    }
    let err = append(&mut store, vec![huge]).await.expect_err("too large");
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    append_range(&mut store, 1, 3..=3).await;
    assert_eq!(indexes(&all_entries(&mut store).await), vec![1, 2, 3]);
}

#[tokio::test]
async fn after_a_failed_fsync_the_store_refuses_everything() {
    let disk = MemDisk::default();
    let mut store = reopen(&disk).expect("open");
    append_range(&mut store, 1, 1..=2).await;
    disk.state().fail_syncs = true;
    assert!(append(&mut store, vec![entry(1, 3, 10)]).await.is_err());
    disk.state().fail_syncs = false;
    assert!(append(&mut store, vec![entry(1, 3, 10)]).await.is_err(), "an fsync error is not retried");
    assert!(store.save_vote(&vote(1)).await.is_err());
    assert!(store.try_get_log_entries(..).await.is_err());
    drop(store);
    let mut store = reopen(&disk).expect("a restart recovers");
    let got = indexes(&all_entries(&mut store).await);
    assert!(got == vec![1, 2] || got == vec![1, 2, 3], "{got:?}");
}

// ---------------------------------------------------------------------------------------------
// Snapshot files.

fn snapshot_meta(index: u64) -> SnapshotMetaOf<Tc> {
    let membership = Membership::new_with_defaults(vec![[1u64, 2, 3].into()], []);
    SnapshotMetaOf::<Tc> {
        last_log_id: Some(log_id(2, index)),
        last_membership: StoredMembershipOf::<Tc>::new(Some(log_id(1, 1)), membership),
    }
}

#[test]
fn snapshot_round_trips_and_replaces_the_previous_one() {
    let mut disk = MemDisk::default();
    assert!(load_snapshot::<Tc, _>(&disk).unwrap().is_none(), "no snapshot yet");
    save_snapshot::<Tc, _>(&mut disk, &snapshot_meta(10), b"first state").unwrap();
    save_snapshot::<Tc, _>(&mut disk, &snapshot_meta(20), b"second state").unwrap();
    let (meta, data) = load_snapshot::<Tc, _>(&disk).unwrap().expect("a snapshot");
    assert_eq!(meta, snapshot_meta(20));
    assert_eq!(data, b"second state");
    save_snapshot::<Tc, _>(&mut disk, &snapshot_meta(21), b"").unwrap();
    assert_eq!(load_snapshot::<Tc, _>(&disk).unwrap().expect("empty data is fine").1, b"");
    assert_eq!(disk.names(), vec![SNAPSHOT_FILE.to_string()], "no temp file left");
}

#[test]
fn a_leftover_temp_snapshot_is_ignored() {
    let mut disk = MemDisk::default();
    save_snapshot::<Tc, _>(&mut disk, &snapshot_meta(10), b"good").unwrap();
    disk.state().files.insert(format!("{SNAPSHOT_FILE}.tmp"), b"half a snapshot".to_vec());
    let (meta, data) = load_snapshot::<Tc, _>(&disk).unwrap().expect("a snapshot");
    assert_eq!((meta, data.as_slice()), (snapshot_meta(10), &b"good"[..]));
    save_snapshot::<Tc, _>(&mut disk, &snapshot_meta(11), b"next").unwrap();
    assert_eq!(load_snapshot::<Tc, _>(&disk).unwrap().unwrap().1, b"next");
}

#[test]
fn every_damaged_snapshot_byte_is_corruption() {
    let mut disk = MemDisk::default();
    save_snapshot::<Tc, _>(&mut disk, &snapshot_meta(10), b"state machine bytes").unwrap();
    let good = disk.file(SNAPSHOT_FILE);
    for at in 0..good.len() {
        disk.state().files.insert(SNAPSHOT_FILE.into(), good.clone());
        disk.edit(SNAPSHOT_FILE, |f| f[at] ^= 0x20);
        let err = load_snapshot::<Tc, _>(&disk).expect_err("damage detected");
        assert_eq!(corruption(err).file, SNAPSHOT_FILE, "byte {at}");
    }
    for cut in [0, 5, good.len() - 1] {
        disk.state().files.insert(SNAPSHOT_FILE.into(), good[..cut].to_vec());
        assert!(load_snapshot::<Tc, _>(&disk).is_err(), "cut at {cut}");
    }
}
