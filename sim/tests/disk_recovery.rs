//! Crash recovery of the on-disk Raft log: random appends, votes, commits, truncations and
//! purges through `DiskLogStore` on a `SimDisk`, with power cuts at random points (inside
//! operations and inside recovery itself) and crashes that lose unsynced bytes or tear the
//! last write. After every restart the recovered log must be exactly a prefix of what was
//! appended that keeps every acknowledged entry, the vote and purge point must be the last
//! durably saved ones, and no torn bytes may remain on disk.
//!
//! Replay one seed: `SIM_SEED=<n> cargo test -p sim --test disk_recovery`.

use std::hash::{DefaultHasher, Hash, Hasher};

use futures::executor::block_on;
use legate_core::catalog::{Command, KvOp, KvVerb, Request};
use legate_core::raft::TypeConfig;
use legate_core::storage::{record, Corruption, DiskLogStore, LogOptions};
use openraft::alias::{EntryOf, LogIdOf, VoteOf};
use openraft::storage::{IOFlushed, RaftLogReader, RaftLogStorage};
use openraft::type_config::TypeConfigExt;
use openraft::EntryPayload;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sim::disk::SimDisk;
use sim::MadsimRuntime;

type Tc = TypeConfig<MadsimRuntime>;
type Store = DiskLogStore<Tc, SimDisk>;

/// Seeds every `cargo test` runs (unless `SIM_SEED` names one).
const SEEDS: std::ops::Range<u64> = 0..200;
/// Operations per seed.
const STEPS: usize = 80;
/// Small segments: most runs span several, so rolling and segment removal are exercised.
const OPTIONS: LogOptions = LogOptions { segment_max_bytes: 400, planted_ack_before_sync: false };
/// Attempts at reopening while power cuts keep striking during recovery.
const REOPEN_ATTEMPTS_MAX: usize = 4;

fn seeds() -> Vec<u64> {
    match std::env::var("SIM_SEED") {
        Ok(s) => vec![s.parse().expect("SIM_SEED must be a u64")],
        Err(_) => SEEDS.collect(),
    }
}

fn replay_hint(seed: u64) -> String {
    format!("replay: SIM_SEED={seed} cargo test -p sim --test disk_recovery")
}

/// One write to the log, kept until it is known to have finished.
#[derive(Clone, Debug)]
enum Op {
    Append(Vec<EntryOf<Tc>>),
    Vote(VoteOf<Tc>),
    Committed(Option<LogIdOf<Tc>>),
    Truncate(Option<LogIdOf<Tc>>),
    Purge(LogIdOf<Tc>),
}

/// What the log holds, as far as completed (acknowledged) operations tell.
#[derive(Clone, Default, PartialEq)]
struct Model {
    entries: Vec<EntryOf<Tc>>,
    purged: Option<LogIdOf<Tc>>,
    vote: Option<VoteOf<Tc>>,
    committed: Option<LogIdOf<Tc>>,
}

/// What one run saw, summed over seeds to prove the faults actually happened.
#[derive(Default, Debug)]
struct Tally {
    cuts_inside_ops: u64,
    cuts_inside_recovery: u64,
    torn_writes: u64,
    tails_cut: u64,
    unacked_entries_recovered: u64,
    unacked_entries_lost: u64,
}

/// Log ids rather than whole entries, to keep failure messages readable.
impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<String> = self.entries.iter().map(|e| e.log_id.to_string()).collect();
        f.debug_struct("Model")
            .field("entries", &ids)
            .field("purged", &self.purged)
            .field("vote", &self.vote)
            .field("committed", &self.committed)
            .finish()
    }
}

fn ids(entries: &[EntryOf<Tc>]) -> Vec<String> {
    entries.iter().map(|e| e.log_id.to_string()).collect()
}

fn log_id(term: u64, index: u64) -> LogIdOf<Tc> {
    openraft::testing::log_id::<Tc>(term, 1, index)
}

impl Model {
    fn next_index(&self) -> u64 {
        match (self.entries.last(), &self.purged) {
            (Some(e), _) => e.log_id.index + 1,
            (None, Some(p)) => p.index + 1,
            (None, None) => 1,
        }
    }

    fn apply(&mut self, op: &Op) {
        match op {
            Op::Append(batch) => self.entries.extend(batch.iter().cloned()),
            Op::Vote(v) => self.vote = Some(*v),
            Op::Committed(c) => self.committed = *c,
            Op::Truncate(keep) => self.entries.retain(|e| keep.is_some_and(|k| e.log_id.index <= k.index)),
            Op::Purge(id) => {
                self.purged = Some(*id);
                self.entries.retain(|e| e.log_id.index > id.index);
            }
        }
    }
}

/// Draws the next operation; `term` only grows (a truncation starts a new leader's term).
fn pick_op(rng: &mut ChaCha8Rng, model: &Model, term: &mut u64) -> Op {
    let roll = rng.random_range(0..100);
    let last = model.entries.last().map(|e| e.log_id);
    match (roll, last) {
        (0..=9, _) => {
            *term += u64::from(rng.random_bool(0.5));
            Op::Vote(VoteOf::<Tc>::new(*term, rng.random_range(1..=3)))
        }
        (10..=19, Some(_)) => Op::Committed(Some(model.entries[rng.random_range(0..model.entries.len())].log_id)),
        (20..=31, Some(_)) => {
            // Entries start right after the purge point (or at 1): keeping `first - 1` keeps none.
            let first = model.entries[0].log_id.index;
            let keep = rng.random_range(first - 1..=last.unwrap().index);
            *term += 1;
            Op::Truncate(match keep.checked_sub(first) {
                None => model.purged,
                Some(k) => Some(model.entries[k as usize].log_id),
            })
        }
        (32..=43, Some(last)) => {
            let start = model.entries[0].log_id.index;
            let index = rng.random_range(start..=last.index + 2);
            Op::Purge(match model.entries.get((index - start) as usize) {
                Some(e) => e.log_id,
                None => log_id(*term, index),
            })
        }
        _ => {
            let count = rng.random_range(1..=4);
            let first = model.next_index();
            Op::Append((first..first + count).map(|i| entry(rng, *term, i)).collect())
        }
    }
}

fn entry(rng: &mut ChaCha8Rng, term: u64, index: u64) -> EntryOf<Tc> {
    let size = rng.random_range(0..120);
    let value: Vec<u8> = (0..size).map(|_| rng.random()).collect();
    let op =
        KvOp { verb: KvVerb::Set, key: format!("k/{index}"), value, flags: index, index: 0, session: String::new() };
    let request = Request { now_ms: 1_700_000_000_000 + index, command: Command::Kv(op) };
    openraft::Entry { log_id: log_id(term, index), payload: EntryPayload::Normal(request) }
}

/// Runs one operation; `Ok` means durable (an append's callback has fired by then).
fn run(store: &mut Store, op: &Op) -> std::io::Result<()> {
    block_on(async {
        match op {
            Op::Append(batch) => {
                let (tx, mut rx) = <Tc as TypeConfigExt>::oneshot();
                store.append(batch.clone(), IOFlushed::signal(tx)).await?;
                rx.try_recv().expect("sender alive").expect("callback fired before append returned")
            }
            Op::Vote(v) => store.save_vote(v).await,
            Op::Committed(c) => store.save_committed(*c).await,
            Op::Truncate(keep) => store.truncate_after(*keep).await,
            Op::Purge(id) => store.purge(*id).await,
        }
    })
}

/// The state a reopened store serves.
fn observe(store: &mut Store) -> Model {
    block_on(async {
        let entries = store.try_get_log_entries(..).await.expect("entries");
        let state = store.get_log_state().await.expect("log state");
        let model = Model {
            entries,
            purged: state.last_purged_log_id,
            vote: store.read_vote().await.expect("vote"),
            committed: store.read_committed().await.expect("committed"),
        };
        let last = model.entries.last().map(|e| e.log_id).or(model.purged);
        assert_eq!(state.last_log_id, last, "log state agrees with the entries");
        model
    })
}

/// Checks the recovered state against the model, given the operation a power cut may have
/// interrupted, and returns how many unacknowledged entries survived.
fn check_recovered(model: &Model, pending: Option<&Op>, got: &Model) -> Result<u64, String> {
    let same_but = |mut expect: Model, what: &str| {
        expect.entries.clone_from(&got.entries);
        if &expect == got {
            Ok(0)
        } else {
            Err(format!("{what}: expected {expect:?}, got {got:?}"))
        }
    };
    let prefix_of =
        |long: &[EntryOf<Tc>]| got.entries.len() <= long.len() && got.entries[..] == long[..got.entries.len()];
    match pending {
        None if got == model => Ok(0),
        None => Err(format!("no operation was in flight, yet the state changed: {model:?} -> {got:?}")),
        Some(Op::Append(batch)) => {
            let all: Vec<EntryOf<Tc>> = model.entries.iter().chain(batch).cloned().collect();
            if !prefix_of(&all) || got.entries.len() < model.entries.len() {
                let (got, acked, batch) = (ids(&got.entries), ids(&model.entries), ids(batch));
                return Err(format!("after a cut append: {got:?} is not acked {acked:?} plus a prefix of {batch:?}"));
            }
            same_but(model.clone(), "append changed more than entries")?;
            Ok((got.entries.len() - model.entries.len()) as u64)
        }
        Some(Op::Truncate(keep)) => {
            let kept = model.entries.iter().filter(|e| keep.is_some_and(|k| e.log_id.index <= k.index)).count();
            if !prefix_of(&model.entries) || got.entries.len() < kept {
                let (got, old) = (ids(&got.entries), ids(&model.entries));
                return Err(format!("after a cut truncate_after({keep:?}): {got:?} from {old:?}"));
            }
            same_but(model.clone(), "truncate changed more than entries")
        }
        Some(op @ (Op::Purge(_) | Op::Vote(_) | Op::Committed(_))) => {
            let mut done = model.clone();
            done.apply(op);
            if got == model || got == &done {
                Ok(0)
            } else {
                Err(format!("after a cut {op:?}: neither old {model:?} nor new {done:?}, got {got:?}"))
            }
        }
    }
}

/// No torn bytes left: every segment scans clean as a file that may not tear.
fn assert_no_torn_bytes(disk: &SimDisk) {
    for (name, bytes) in disk.contents() {
        if name.ends_with(".seg") {
            record::scan(&name, &bytes, false).unwrap_or_else(|e| panic!("torn bytes left after recovery: {e}"));
        }
    }
}

/// Reopens after a crash, sometimes cutting the power inside recovery too.
fn reopen(disk: &SimDisk, rng: &mut ChaCha8Rng, tally: &mut Tally) -> Store {
    for _ in 0..REOPEN_ATTEMPTS_MAX {
        if rng.random_bool(0.25) {
            disk.cut_power_after(rng.random_range(0..4));
        }
        let before = disk.contents();
        match Store::open_with(disk.clone(), OPTIONS) {
            Ok(store) => {
                let cut = before.iter().any(|(n, b)| disk.contents().get(n).is_some_and(|a| a.len() < b.len()));
                tally.tails_cut += u64::from(cut);
                return store;
            }
            Err(e) => {
                assert!(Corruption::of(&e).is_none(), "recovery found corruption after plain crashes: {e}");
                assert!(disk.powered_off(), "recovery failed without a power cut: {e}");
                tally.cuts_inside_recovery += 1;
                tally.torn_writes += u64::from(disk.crash(rng).is_some_and(|t| t.kept_bytes + t.zero_bytes > 0));
            }
        }
    }
    Store::open_with(disk.clone(), OPTIONS).expect("reopen with the power on")
}

/// Runs one seed; returns what it saw and a hash of the final disk.
fn run_seed(seed: u64) -> (Tally, u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut tally = Tally::default();
    let disk = SimDisk::new();
    let mut store = Store::open_with(disk.clone(), OPTIONS).expect("a fresh disk opens");
    let mut model = Model::default();
    let mut term = 1;
    for step in 0..STEPS {
        let pending = match rng.random_range(0..100) {
            0..=7 => None, // a crash between operations
            8..=19 => {
                disk.cut_power_after(rng.random_range(0..12));
                continue;
            }
            _ => {
                let op = pick_op(&mut rng, &model, &mut term);
                match run(&mut store, &op) {
                    Ok(()) => {
                        model.apply(&op);
                        continue;
                    }
                    Err(e) => {
                        assert!(disk.powered_off(), "step {step}: {op:?} failed without a power cut: {e}");
                        tally.cuts_inside_ops += 1;
                        Some(op)
                    }
                }
            }
        };
        drop(store);
        tally.torn_writes += u64::from(disk.crash(&mut rng).is_some_and(|t| t.kept_bytes + t.zero_bytes > 0));
        store = reopen(&disk, &mut rng, &mut tally);
        assert_no_torn_bytes(&disk);
        let got = observe(&mut store);
        let unacked = check_recovered(&model, pending.as_ref(), &got).unwrap_or_else(|e| panic!("step {step}: {e}"));
        tally.unacked_entries_recovered += unacked;
        if let Some(Op::Append(batch)) = &pending {
            tally.unacked_entries_lost += batch.len() as u64 - unacked;
        }
        term = term.max(got.entries.last().map_or(0, |e| e.log_id.leader_id.term));
        model = got;
    }
    let mut hash = DefaultHasher::new();
    disk.contents().hash(&mut hash);
    (tally, hash.finish())
}

fn run_seed_on_thread(seed: u64) -> (Tally, u64) {
    std::thread::spawn(move || run_seed(seed)).join().unwrap_or_else(|panic| {
        eprintln!("seed {seed} failed; {}", replay_hint(seed));
        std::panic::resume_unwind(panic)
    })
}

#[test]
fn crashes_keep_every_acknowledged_entry_and_nothing_else() {
    let mut total = Tally::default();
    for seed in seeds() {
        let (tally, _) = run_seed_on_thread(seed);
        total.cuts_inside_ops += tally.cuts_inside_ops;
        total.cuts_inside_recovery += tally.cuts_inside_recovery;
        total.torn_writes += tally.torn_writes;
        total.tails_cut += tally.tails_cut;
        total.unacked_entries_recovered += tally.unacked_entries_recovered;
        total.unacked_entries_lost += tally.unacked_entries_lost;
    }
    println!("{total:?}");
    if seeds().len() > 1 {
        // The faults this test exists for did happen.
        assert!(total.cuts_inside_ops > 100, "{total:?}");
        assert!(total.cuts_inside_recovery > 10, "{total:?}");
        assert!(total.torn_writes > 20, "{total:?}");
        assert!(total.tails_cut > 10, "{total:?}");
        assert!(total.unacked_entries_recovered > 0 && total.unacked_entries_lost > 0, "{total:?}");
    }
}

#[test]
fn a_seed_replays_to_the_same_disk() {
    for seed in seeds().into_iter().take(3) {
        assert_eq!(
            run_seed_on_thread(seed).1,
            run_seed_on_thread(seed).1,
            "seed {seed} diverged; {}",
            replay_hint(seed)
        );
    }
}
