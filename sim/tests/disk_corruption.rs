//! Bit rot in a synced Raft log: one random bit flipped in a random synced file (a segment or
//! the meta file) must make reopening fail with a corruption error naming that file — never
//! serve wrong data. The one exception is the very last record of the last segment, which a
//! torn write could also explain: it may be dropped, but still nothing wrong may be served.
//! A refused directory is left exactly as it was.
//!
//! Replay one seed: `SIM_SEED=<n> cargo test -p sim --test disk_corruption`.

use futures::executor::block_on;
use legate_core::catalog::{Command, KvOp, KvVerb, Request};
use legate_core::raft::TypeConfig;
use legate_core::storage::{record, Corruption, DiskLogStore, LogOptions, META_FILE};
use openraft::alias::{EntryOf, LogIdOf, VoteOf};
use openraft::storage::{IOFlushed, RaftLogReader, RaftLogStorage};
use openraft::EntryPayload;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sim::disk::{Flip, SimDisk};
use sim::MadsimRuntime;

type Tc = TypeConfig<MadsimRuntime>;
type Store = DiskLogStore<Tc, SimDisk>;

const SEEDS: std::ops::Range<u64> = 0..200;
const OPTIONS: LogOptions = LogOptions { segment_max_bytes: 400, planted_ack_before_sync: false };

fn seeds() -> Vec<u64> {
    match std::env::var("SIM_SEED") {
        Ok(s) => vec![s.parse().expect("SIM_SEED must be a u64")],
        Err(_) => SEEDS.collect(),
    }
}

fn log_id(term: u64, index: u64) -> LogIdOf<Tc> {
    openraft::testing::log_id::<Tc>(term, 1, index)
}

fn entry(rng: &mut ChaCha8Rng, index: u64) -> EntryOf<Tc> {
    let value: Vec<u8> = (0..rng.random_range(1..100)).map(|_| rng.random()).collect();
    let op = KvOp { verb: KvVerb::Set, key: format!("k/{index}"), value, flags: 0, index: 0, session: String::new() };
    openraft::Entry {
        log_id: log_id(1, index),
        payload: EntryPayload::Normal(Request { now_ms: index, command: Command::Kv(op) }),
    }
}

/// A synced log of random batches, a vote, maybe a purge. Returns the entries it serves.
fn build(rng: &mut ChaCha8Rng, disk: &SimDisk) -> Vec<EntryOf<Tc>> {
    let mut store = Store::open_with(disk.clone(), OPTIONS).expect("fresh disk");
    let count = rng.random_range(3..40);
    block_on(async {
        store.save_vote(&VoteOf::<Tc>::new(1, 1)).await.expect("vote");
        let mut next = 1;
        while next <= count {
            let batch: Vec<EntryOf<Tc>> =
                (next..=count.min(next + rng.random_range(0..4))).map(|i| entry(rng, i)).collect();
            next += batch.len() as u64;
            store.append(batch, IOFlushed::noop()).await.expect("append");
        }
        if rng.random_bool(0.5) {
            store.purge(log_id(1, rng.random_range(1..count - 1))).await.expect("purge");
        }
        store.try_get_log_entries(..).await.expect("entries")
    })
}

/// Whether a flip lands in the last record of the last segment (which a torn write explains).
fn in_last_record(disk_before: &std::collections::BTreeMap<String, Vec<u8>>, flip: &Flip) -> bool {
    let last_segment = disk_before.keys().rfind(|n| n.ends_with(".seg")).expect("a segment");
    if &flip.file != last_segment {
        return false;
    }
    let bytes = &disk_before[last_segment];
    let scan = record::scan(last_segment, bytes, false).expect("clean before the flip");
    let last = scan.records.last().expect("records");
    flip.offset >= (last.start - record::RECORD_HEADER_BYTES) as u64
}

#[derive(Default, Debug)]
struct Tally {
    refused: u64,
    last_record_dropped: u64,
    meta_hits: u64,
}

fn run_seed(seed: u64, tally: &mut Tally) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let disk = SimDisk::new();
    let served = build(&mut rng, &disk);
    let before = disk.contents();
    let flip = disk.flip_bit(&mut rng).expect("synced data exists");
    let flipped = disk.contents();
    let excusable = in_last_record(&before, &flip);
    tally.meta_hits += u64::from(flip.file == META_FILE);
    match Store::open_with(disk.clone(), OPTIONS) {
        Err(e) => {
            let corruption = Corruption::of(&e).unwrap_or_else(|| panic!("seed {seed}: not a corruption error: {e}"));
            assert_eq!(corruption.file, flip.file, "seed {seed}: {flip:?}");
            assert!(corruption.offset <= flip.offset, "seed {seed}: reported past the flip: {corruption} / {flip:?}");
            assert!(e.to_string().contains(&flip.file), "the message names the file: {e}");
            assert!(disk.contents() == flipped, "seed {seed}: a refused directory is modified");
            tally.refused += 1;
        }
        Ok(mut store) => {
            assert!(excusable, "seed {seed}: a flip outside the last record was not detected: {flip:?}");
            let got = block_on(store.try_get_log_entries(..)).expect("entries");
            assert_eq!(got.len() + 1, served.len(), "seed {seed}: only the damaged last entry is dropped");
            assert!(got[..] == served[..got.len()], "seed {seed}: wrong data served");
            tally.last_record_dropped += 1;
        }
    }
}

#[test]
fn a_flipped_bit_is_refused_or_only_drops_the_last_record() {
    let mut tally = Tally::default();
    for seed in seeds() {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_seed(seed, &mut tally)));
        if let Err(panic) = result {
            eprintln!("seed {seed} failed; replay: SIM_SEED={seed} cargo test -p sim --test disk_corruption");
            std::panic::resume_unwind(panic);
        }
    }
    println!("{tally:?}");
    if seeds().len() > 1 {
        assert!(tally.refused > 150 && tally.meta_hits > 0, "{tally:?}");
    }
}
