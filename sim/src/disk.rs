//! The simulated disk: [`SimDisk`] implements core's [`Disk`] with a crash model, so the
//! production log and snapshot code runs against lost writes, torn writes and bit rot.
//!
//! # Model
//!
//! A file is an inode with two contents: what a running process sees (`data`) and what
//! survives a crash (`durable`). The directory likewise has a live view and a durable view
//! (name → inode). Then, exactly as core's [`Disk`] contract says:
//!
//! * `append`/`truncate` change `data`; `sync` makes `durable` equal to `data`.
//! * `create`/`remove`/`rename` change the live directory; `sync_dir` makes it durable.
//! * [`SimDisk::crash`] resets every file and the directory to their durable views — except
//!   that, by the seeded RNG, a prefix of the unsynced appended bytes of the last-written file
//!   may survive (a torn write), possibly followed by zero fill (the file grew, its data did
//!   not land).
//! * [`SimDisk::cut_power_after`] makes every call after the next `n` state-changing calls
//!   fail, until [`SimDisk::crash`]: a crash in the middle of an operation.
//! * [`SimDisk::flip_bit`] flips one bit of synced data (bit rot), in both views.
//!
//! The handle is an `Arc<Mutex<..>>`: clones share the disk, so a node restarted by the
//! simulator finds the files its previous incarnation left. Everything is a `BTreeMap` and
//! every random choice comes from the RNG passed in, so a seed replays exactly.

use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

use legate_core::storage::{check_name, Disk};
use rand::Rng;

/// A simulated directory of files. Clones share the same disk.
#[derive(Clone, Default)]
pub struct SimDisk {
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    /// What a running process sees: name → inode.
    live: BTreeMap<String, u64>,
    /// What survives a crash: name → inode.
    durable: BTreeMap<String, u64>,
    inodes: BTreeMap<u64, Inode>,
    next_inode: u64,
    /// The inode the last `append` wrote to: the one a crash may tear.
    last_written: Option<u64>,
    /// State-changing calls left before the power goes (`None`: no cut armed).
    power_left: Option<u64>,
    powered_off: bool,
    stats: DiskStats,
}

#[derive(Default)]
struct Inode {
    data: Vec<u8>,
    durable: Vec<u8>,
    /// Length of the prefix `data` and `durable` share (what a sync need not copy).
    same: usize,
}

/// Counters, for tests and traces.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DiskStats {
    /// State-changing calls (create, append, sync, truncate, remove, rename, sync_dir).
    pub mutations: u64,
    pub syncs: u64,
    pub crashes: u64,
    pub torn_writes: u64,
}

/// What one crash did to the last-written file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tear {
    pub file: String,
    /// Unsynced bytes that survived, from the start of the unsynced part.
    pub kept_bytes: usize,
    /// Zero bytes after them.
    pub zero_bytes: usize,
}

/// Where [`SimDisk::flip_bit`] struck.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Flip {
    pub file: String,
    pub offset: u64,
    pub bit: u8,
}

fn not_found(name: &str) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("no file {name}"))
}

impl State {
    /// Counts a state-changing call, and fails it once the power is cut.
    fn mutate(&mut self) -> io::Result<()> {
        self.check_power()?;
        if let Some(left) = self.power_left.as_mut() {
            if *left == 0 {
                self.powered_off = true;
                self.power_left = None;
                return self.check_power();
            }
            *left -= 1;
        }
        self.stats.mutations += 1;
        Ok(())
    }

    fn check_power(&self) -> io::Result<()> {
        if self.powered_off {
            return Err(io::Error::other("simulated power loss"));
        }
        Ok(())
    }

    fn inode(&self, name: &str) -> io::Result<&Inode> {
        self.check_power()?;
        let ino = self.live.get(name).ok_or_else(|| not_found(name))?;
        Ok(&self.inodes[ino])
    }

    fn inode_mut(&mut self, name: &str) -> io::Result<(u64, &mut Inode)> {
        let ino = *self.live.get(name).ok_or_else(|| not_found(name))?;
        Ok((ino, self.inodes.get_mut(&ino).expect("live names point at inodes")))
    }

    /// Resets everything to its durable view, tearing the last-written file if `tear` says.
    fn crash(&mut self, tear: impl FnOnce(usize) -> (usize, usize)) -> Option<Tear> {
        let torn = self.tear_last_written(tear);
        for inode in self.inodes.values_mut() {
            inode.data.truncate(inode.same);
            let rest = inode.durable[inode.same..].to_vec();
            inode.data.extend_from_slice(&rest);
            inode.same = inode.data.len();
            assert_eq!(inode.data, inode.durable);
        }
        self.live = self.durable.clone();
        let referenced: Vec<u64> = self.durable.values().copied().collect();
        self.inodes.retain(|ino, _| referenced.contains(ino));
        self.last_written = None;
        self.power_left = None;
        self.powered_off = false;
        self.stats.crashes += 1;
        torn
    }

    /// If the last-written file is durable by name and its unsynced bytes only extend its
    /// durable content, lets `tear(unsynced_len) -> (kept, zeros)` decide what survives.
    fn tear_last_written(&mut self, tear: impl FnOnce(usize) -> (usize, usize)) -> Option<Tear> {
        let ino = self.last_written?;
        let name = self.durable.iter().find(|(_, &i)| i == ino).map(|(n, _)| n.clone())?;
        let inode = self.inodes.get_mut(&ino).expect("durable names point at inodes");
        let unsynced = inode.data.len() - inode.same;
        if inode.same != inode.durable.len() || unsynced == 0 {
            return None;
        }
        let (kept_bytes, zero_bytes) = tear(unsynced);
        assert!(kept_bytes + zero_bytes <= unsynced, "a tear keeps at most what was written");
        let kept = inode.data[inode.same..inode.same + kept_bytes].to_vec();
        inode.durable.extend_from_slice(&kept);
        inode.durable.resize(inode.durable.len() + zero_bytes, 0);
        self.stats.torn_writes += u64::from(kept_bytes + zero_bytes > 0);
        Some(Tear { file: name, kept_bytes, zero_bytes })
    }
}

impl SimDisk {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Power loss and restart: unsynced bytes and unsynced directory changes are lost, except
    /// that (half the time, by `rng`) a random prefix of the last-written file's unsynced bytes
    /// survives, in half of those cases followed by zero fill. Restores power.
    pub fn crash(&self, rng: &mut impl Rng) -> Option<Tear> {
        let tear_now = rng.random_bool(0.5);
        let zero_fill = rng.random_bool(0.5);
        let mut draw = |unsynced: usize| {
            if !tear_now {
                return (0, 0);
            }
            let kept = rng.random_range(0..=unsynced);
            let zeros = if zero_fill { rng.random_range(0..=unsynced - kept) } else { 0 };
            (kept, zeros)
        };
        self.lock().crash(&mut draw)
    }

    /// Power loss and restart that loses every unsynced byte and directory change (no tear).
    pub fn crash_without_tear(&self) -> Option<Tear> {
        self.lock().crash(|_| (0, 0))
    }

    /// After `n` more state-changing calls succeed, the power goes: every call fails until
    /// [`SimDisk::crash`].
    pub fn cut_power_after(&self, n: u64) {
        let mut state = self.lock();
        assert!(!state.powered_off, "the power is already off");
        state.power_left = Some(n);
    }

    /// Whether the power is off (a cut armed by [`SimDisk::cut_power_after`] has struck).
    pub fn powered_off(&self) -> bool {
        self.lock().powered_off
    }

    /// Flips one random bit of synced data in a random file (of those with synced bytes),
    /// as a process reading the file and one reading it after a crash would both see it.
    pub fn flip_bit(&self, rng: &mut impl Rng) -> Option<Flip> {
        let candidates: Vec<(String, usize)> = {
            let state = self.lock();
            let synced = |ino: &u64| state.inodes[ino].same;
            state.live.iter().filter(|(_, ino)| synced(ino) > 0).map(|(n, ino)| (n.clone(), synced(ino))).collect()
        };
        if candidates.is_empty() {
            return None;
        }
        let (file, synced_len) = &candidates[rng.random_range(0..candidates.len())];
        let offset = rng.random_range(0..*synced_len) as u64;
        let bit = rng.random_range(0..8u8);
        self.flip_bit_at(file, offset, bit);
        Some(Flip { file: file.clone(), offset, bit })
    }

    /// Flips one random bit of the synced data of file `name`.
    pub fn flip_bit_in(&self, rng: &mut impl Rng, name: &str) -> Flip {
        let synced_len = self.synced_len(name).expect("flip in an existing file");
        assert!(synced_len > 0, "flip in synced data");
        let offset = rng.random_range(0..synced_len);
        let bit = rng.random_range(0..8u8);
        self.flip_bit_at(name, offset, bit);
        Flip { file: name.to_string(), offset, bit }
    }

    /// Flips bit `bit` of byte `offset` of a file's synced data.
    pub fn flip_bit_at(&self, name: &str, offset: u64, bit: u8) {
        let mut state = self.lock();
        let (_, inode) = state.inode_mut(name).expect("flip in an existing file");
        let at = usize::try_from(offset).expect("fits");
        assert!(at < inode.same && bit < 8, "flips hit synced data");
        inode.durable[at] ^= 1 << bit;
        inode.data[at] ^= 1 << bit;
    }

    /// Synced (crash-proof) length of a file.
    pub fn synced_len(&self, name: &str) -> Option<u64> {
        let state = self.lock();
        state.live.get(name).map(|ino| state.inodes[ino].same as u64)
    }

    /// Every live file and its content, for comparing disk states in tests.
    pub fn contents(&self) -> BTreeMap<String, Vec<u8>> {
        let state = self.lock();
        state.live.iter().map(|(name, ino)| (name.clone(), state.inodes[ino].data.clone())).collect()
    }

    pub fn stats(&self) -> DiskStats {
        self.lock().stats
    }
}

impl Disk for SimDisk {
    fn list(&self) -> io::Result<Vec<String>> {
        let state = self.lock();
        state.check_power()?;
        Ok(state.live.keys().cloned().collect())
    }

    fn size(&self, name: &str) -> io::Result<u64> {
        Ok(self.lock().inode(name)?.data.len() as u64)
    }

    fn read(&self, name: &str) -> io::Result<Vec<u8>> {
        Ok(self.lock().inode(name)?.data.clone())
    }

    fn create(&mut self, name: &str) -> io::Result<()> {
        check_name(name)?;
        let mut state = self.lock();
        state.mutate()?;
        let ino = state.next_inode;
        state.next_inode += 1;
        state.inodes.insert(ino, Inode::default());
        state.live.insert(name.to_string(), ino);
        Ok(())
    }

    fn append(&mut self, name: &str, bytes: &[u8]) -> io::Result<()> {
        let mut state = self.lock();
        state.mutate()?;
        let (ino, inode) = state.inode_mut(name)?;
        inode.data.extend_from_slice(bytes);
        state.last_written = Some(ino);
        Ok(())
    }

    fn sync(&mut self, name: &str) -> io::Result<()> {
        let mut state = self.lock();
        state.mutate()?;
        state.stats.syncs += 1;
        let (_, inode) = state.inode_mut(name)?;
        let same = inode.same;
        inode.durable.truncate(same);
        inode.durable.extend_from_slice(&inode.data[same..]);
        inode.same = inode.data.len();
        Ok(())
    }

    fn truncate(&mut self, name: &str, len: u64) -> io::Result<()> {
        let mut state = self.lock();
        state.mutate()?;
        let (_, inode) = state.inode_mut(name)?;
        let len = usize::try_from(len).ok().filter(|&l| l <= inode.data.len());
        let Some(len) = len else {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "truncate past the end"));
        };
        inode.data.truncate(len);
        inode.same = inode.same.min(len);
        Ok(())
    }

    fn remove(&mut self, name: &str) -> io::Result<()> {
        let mut state = self.lock();
        state.mutate()?;
        state.live.remove(name).map(drop).ok_or_else(|| not_found(name))
    }

    fn rename(&mut self, from: &str, to: &str) -> io::Result<()> {
        check_name(to)?;
        let mut state = self.lock();
        state.mutate()?;
        let ino = state.live.remove(from).ok_or_else(|| not_found(from))?;
        state.live.insert(to.to_string(), ino);
        Ok(())
    }

    fn sync_dir(&mut self) -> io::Result<()> {
        let mut state = self.lock();
        state.mutate()?;
        state.stats.syncs += 1;
        state.durable = state.live.clone();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;

    fn written(disk: &mut SimDisk, name: &str, bytes: &[u8], sync: bool) {
        disk.create(name).unwrap();
        disk.append(name, bytes).unwrap();
        if sync {
            disk.sync(name).unwrap();
        }
    }

    #[test]
    fn only_synced_bytes_and_synced_names_survive() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut disk = SimDisk::new();
        written(&mut disk, "a", b"durable", true);
        disk.sync_dir().unwrap();
        written(&mut disk, "b", b"never named durably", true);
        disk.append("a", b" and lost").unwrap();
        disk.append("b", b"x").unwrap(); // the last write is to b, which is lost whole
        disk.crash(&mut rng);
        assert_eq!(disk.contents(), BTreeMap::from([("a".to_string(), b"durable".to_vec())]));
    }

    #[test]
    fn renames_and_removals_need_a_directory_sync() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let mut disk = SimDisk::new();
        written(&mut disk, "old", b"1", true);
        written(&mut disk, "tmp", b"2", true);
        disk.sync_dir().unwrap();
        disk.rename("tmp", "old").unwrap();
        disk.crash(&mut rng);
        assert_eq!(disk.read("old").unwrap(), b"1", "rename undone");
        disk.rename("tmp", "old").unwrap();
        disk.sync_dir().unwrap();
        disk.remove("old").unwrap();
        disk.crash(&mut rng);
        assert_eq!(disk.contents(), BTreeMap::from([("old".to_string(), b"2".to_vec())]));
    }

    #[test]
    fn a_tear_keeps_a_prefix_of_the_last_write_then_maybe_zeros() {
        let mut seen_partial = false;
        for seed in 0..200 {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let mut disk = SimDisk::new();
            written(&mut disk, "f", b"synced|", true);
            disk.sync_dir().unwrap();
            disk.append("f", b"unsynced bytes").unwrap();
            let tear = disk.crash(&mut rng);
            let got = disk.read("f").unwrap();
            let tail = &got[b"synced|".len()..];
            assert!(got.starts_with(b"synced|"));
            let kept = tear.as_ref().map_or(0, |t| t.kept_bytes);
            assert_eq!(&tail[..kept], &b"unsynced bytes"[..kept]);
            assert!(tail[kept..].iter().all(|&b| b == 0), "seed {seed}");
            assert!(tail.len() <= b"unsynced bytes".len());
            seen_partial |= kept > 0 && kept < b"unsynced bytes".len();
            assert_eq!(disk.synced_len("f"), Some(got.len() as u64), "what survived is durable");
        }
        assert!(seen_partial, "some seed tears mid-write");
    }

    #[test]
    fn a_power_cut_fails_every_call_until_the_crash() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut disk = SimDisk::new();
        disk.cut_power_after(2);
        disk.create("f").unwrap();
        disk.append("f", b"x").unwrap();
        assert!(disk.sync("f").is_err());
        assert!(disk.powered_off());
        assert!(disk.read("f").is_err() && disk.list().is_err());
        disk.crash(&mut rng);
        assert!(disk.list().unwrap().is_empty(), "nothing was made durable");
        disk.create("g").unwrap();
    }

    #[test]
    fn a_flipped_bit_lands_in_synced_data() {
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let mut disk = SimDisk::new();
        assert_eq!(disk.flip_bit(&mut rng), None);
        written(&mut disk, "f", &[0u8; 64], true);
        disk.sync_dir().unwrap();
        disk.append("f", &[0u8; 64]).unwrap();
        let flip = disk.flip_bit(&mut rng).expect("synced bytes exist");
        assert!(flip.offset < 64);
        let data = disk.read("f").unwrap();
        assert_eq!(data[flip.offset as usize], 1 << flip.bit);
        assert_eq!(data.iter().filter(|&&b| b != 0).count(), 1);
    }
}
