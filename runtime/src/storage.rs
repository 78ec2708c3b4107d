//! Opening a server's durable state: the Raft log and the snapshot file on one [`Disk`].
//!
//! What a starting (or restarting) server does first, in the agent on an [`crate::disk::FsDisk`]
//! and in the simulator on its simulated disk: recover the log (a torn tail is cut), load the
//! last snapshot into the state machine, and arrange for every new snapshot to be saved before
//! openraft may purge the log behind it. A disk whose damage a crash cannot explain is refused
//! with the file and offset named, never served.

use std::sync::Arc;

use legate_core::plant::Planted;
use legate_core::raft::{CatalogStore, LegateConfig, PersistSnapshot};
use legate_core::storage::{load_snapshot, save_snapshot, Corruption, Disk, DiskLogStore, LogOptions};

/// Recovers the log and the state machine from `disk`. The error says what is wrong and
/// whether it is corruption (`refusing to start on a corrupt disk: …`).
pub fn open_storage<C, D>(
    disk: D,
    options: LogOptions,
    planted: Planted,
) -> Result<(DiskLogStore<C, D>, CatalogStore<C>), String>
where
    C: LegateConfig,
    D: Disk + Clone + Sync,
{
    let describe = |what: &str, e: std::io::Error| match Corruption::of(&e) {
        Some(c) => format!("{what}: refusing to start on a corrupt disk: {c}"),
        None => format!("{what}: {e}"),
    };
    let saved = load_snapshot::<C, _>(&disk).map_err(|e| describe("snapshot", e))?;
    let snapshots = disk.clone();
    let log = DiskLogStore::open_with(disk, options).map_err(|e| describe("raft log", e))?;
    let persist: PersistSnapshot<C> =
        Arc::new(move |meta, data| save_snapshot::<C, _>(&mut snapshots.clone(), meta, data));
    let store = CatalogStore::<C>::open(saved, Some(persist), planted).map_err(|e| describe("snapshot", e))?;
    Ok((log, store))
}
