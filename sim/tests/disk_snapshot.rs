//! Snapshot files on a crashing disk: a save cut short by a power loss leaves the previous
//! snapshot or the new one — never an error, never a mix — and a save that returned is the
//! one found after the crash. A flipped bit in a saved snapshot is refused.
//!
//! Replay one seed: `SIM_SEED=<n> cargo test -p sim --test disk_snapshot`.

use legate_core::raft::TypeConfig;
use legate_core::storage::{load_snapshot, save_snapshot, Corruption, SNAPSHOT_FILE};
use openraft::alias::{SnapshotMetaOf, StoredMembershipOf};
use openraft::Membership;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sim::disk::SimDisk;
use sim::MadsimRuntime;

type Tc = TypeConfig<MadsimRuntime>;

const SEEDS: std::ops::Range<u64> = 0..200;
/// Saves per seed.
const SAVES: u64 = 6;

fn seeds() -> Vec<u64> {
    match std::env::var("SIM_SEED") {
        Ok(s) => vec![s.parse().expect("SIM_SEED must be a u64")],
        Err(_) => SEEDS.collect(),
    }
}

fn snapshot(rng: &mut ChaCha8Rng, index: u64) -> (SnapshotMetaOf<Tc>, Vec<u8>) {
    let log_id = openraft::testing::log_id::<Tc>(1, 1, index);
    let membership = Membership::new_with_defaults(vec![[1u64, 2, 3].into()], []);
    let meta = SnapshotMetaOf::<Tc> {
        last_log_id: Some(log_id),
        last_membership: StoredMembershipOf::<Tc>::new(Some(log_id), membership),
    };
    (meta, (0..rng.random_range(0..2000)).map(|_| rng.random()).collect())
}

fn load(disk: &SimDisk) -> Option<(SnapshotMetaOf<Tc>, Vec<u8>)> {
    load_snapshot::<Tc, _>(disk).expect("a crash never leaves a bad snapshot")
}

fn run_seed(seed: u64) -> (u64, u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut disk = SimDisk::new();
    let mut saved: Option<(SnapshotMetaOf<Tc>, Vec<u8>)> = None;
    let (mut kept_old, mut got_new) = (0, 0);
    for index in 1..=SAVES {
        let next = snapshot(&mut rng, index * 10);
        // A save is eight state-changing calls: some cuts strike inside it, some after it.
        disk.cut_power_after(rng.random_range(0..12));
        let result = save_snapshot::<Tc, _>(&mut disk, &next.0, &next.1);
        assert!(result.is_ok() || disk.powered_off(), "seed {seed}: save failed without a power cut");
        disk.crash(&mut rng);
        let found = load(&disk);
        if result.is_ok() || found.as_ref() == Some(&next) {
            assert!(found.as_ref() == Some(&next), "seed {seed}: a returned save was lost");
            got_new += 1;
            saved = Some(next);
        } else {
            assert!(found == saved, "seed {seed}: a cut save left neither the old nor the new snapshot");
            kept_old += 1;
        }
    }
    if saved.is_some() {
        let flip = disk.flip_bit_in(&mut rng, SNAPSHOT_FILE);
        let err = load_snapshot::<Tc, _>(&disk).expect_err("a flipped bit is refused");
        let corruption = Corruption::of(&err).unwrap_or_else(|| panic!("seed {seed}: {err}"));
        assert_eq!(corruption.file, SNAPSHOT_FILE, "{flip:?}");
    }
    (kept_old, got_new)
}

#[test]
fn a_cut_save_leaves_the_old_or_the_new_snapshot() {
    let (mut kept_old, mut got_new) = (0, 0);
    for seed in seeds() {
        let result = std::panic::catch_unwind(|| run_seed(seed));
        let (old, new) = result.unwrap_or_else(|panic| {
            eprintln!("seed {seed} failed; replay: SIM_SEED={seed} cargo test -p sim --test disk_snapshot");
            std::panic::resume_unwind(panic)
        });
        kept_old += old;
        got_new += new;
    }
    println!("cut saves kept the old snapshot {kept_old} times; {got_new} saves landed");
    if seeds().len() > 1 {
        assert!(kept_old > 100 && got_new > 100, "both outcomes happened");
    }
}
