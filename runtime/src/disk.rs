//! [`FsDisk`]: core's storage [`Disk`] on a real directory, with real fsync.
//!
//! Each name is one file directly inside the directory ([`check_name`] rejects separators).
//! `sync` is `fsync` of the file; `sync_dir` is `fsync` of the directory (on Unix; elsewhere a
//! no-op, since directory handles cannot be synced there), which is what makes creations,
//! removals and renames survive a crash. The last file appended to keeps an open `O_APPEND`
//! handle, so a stream of appends and syncs to the log's tail segment opens nothing.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use legate_core::storage::{check_name, Disk};

/// A storage directory on the local file system.
pub struct FsDisk {
    dir: PathBuf,
    /// The file last appended to, open for appending.
    appender: Option<(String, File)>,
}

/// Runs a blocking call (an fsync). On tokio's multi-threaded runtime the worker hands its
/// other tasks to the rest of the pool first, so an fsync never stalls the network or the
/// Raft core queued behind it; elsewhere (tests on a current-thread runtime) it just runs.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

impl Clone for FsDisk {
    /// Another handle on the same directory (without the cached append handle).
    fn clone(&self) -> Self {
        FsDisk { dir: self.dir.clone(), appender: None }
    }
}

impl FsDisk {
    /// Uses `dir` (created, with its parents, if missing) as the storage directory.
    pub fn open(dir: impl Into<PathBuf>) -> io::Result<FsDisk> {
        let dir = dir.into();
        fs::create_dir_all(&dir)?;
        Ok(FsDisk { dir, appender: None })
    }

    /// The directory this disk lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, name: &str) -> io::Result<PathBuf> {
        check_name(name)?;
        Ok(self.dir.join(name))
    }

    /// Closes the cached handle if it is for `name` (before the name is replaced or removed).
    fn forget(&mut self, name: &str) {
        if self.appender.as_ref().is_some_and(|(n, _)| n == name) {
            self.appender = None;
        }
    }

    fn appender(&mut self, name: &str) -> io::Result<&mut File> {
        if self.appender.as_ref().is_none_or(|(n, _)| n != name) {
            // Appending never creates: the file must exist (`create` made it).
            let file = OpenOptions::new().append(true).open(self.path(name)?)?;
            self.appender = Some((name.to_string(), file));
        }
        Ok(&mut self.appender.as_mut().expect("just set").1)
    }
}

impl Disk for FsDisk {
    fn list(&self) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            // Anything that is not a plain file with a storage name is not ours: skip it.
            let Ok(name) = entry.file_name().into_string() else { continue };
            if entry.file_type()?.is_file() && check_name(&name).is_ok() {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    fn size(&self, name: &str) -> io::Result<u64> {
        Ok(fs::metadata(self.path(name)?)?.len())
    }

    fn read(&self, name: &str) -> io::Result<Vec<u8>> {
        fs::read(self.path(name)?)
    }

    fn create(&mut self, name: &str) -> io::Result<()> {
        self.forget(name);
        File::create(self.path(name)?).map(drop)
    }

    fn append(&mut self, name: &str, bytes: &[u8]) -> io::Result<()> {
        self.appender(name)?.write_all(bytes)
    }

    fn sync(&mut self, name: &str) -> io::Result<()> {
        match &self.appender {
            Some((n, file)) if n == name => blocking(|| file.sync_all()),
            _ => {
                let file = File::open(self.path(name)?)?;
                blocking(|| file.sync_all())
            }
        }
    }

    fn truncate(&mut self, name: &str, len: u64) -> io::Result<()> {
        let file = OpenOptions::new().write(true).open(self.path(name)?)?;
        let size = file.metadata()?.len();
        if len > size {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("truncate {name} to {len} > {size} bytes"),
            ));
        }
        // An O_APPEND handle writes at the new end after this: it may stay cached.
        file.set_len(len)
    }

    fn remove(&mut self, name: &str) -> io::Result<()> {
        self.forget(name);
        fs::remove_file(self.path(name)?)
    }

    fn rename(&mut self, from: &str, to: &str) -> io::Result<()> {
        self.forget(from);
        self.forget(to);
        fs::rename(self.path(from)?, self.path(to)?)
    }

    fn sync_dir(&mut self) -> io::Result<()> {
        if cfg!(unix) {
            let dir = File::open(&self.dir)?;
            blocking(|| dir.sync_all())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use legate_core::catalog::{Command, KvOp, KvVerb, Request};
    use legate_core::raft::TypeConfig;
    use legate_core::storage::{load_snapshot, save_snapshot, Corruption, DiskLogStore, LogOptions};
    use openraft::alias::{EntryOf, SnapshotMetaOf, VoteOf};
    use openraft::storage::{IOFlushed, RaftLogReader, RaftLogStorage};
    use openraft::EntryPayload;
    use openraft_rt_tokio::TokioRuntime;

    use super::*;

    type Tc = TypeConfig<TokioRuntime>;

    #[test]
    fn files_behave_as_the_disk_contract_says() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let mut disk = FsDisk::open(tmp.path().join("data")).expect("open");
        disk.create("a").unwrap();
        disk.append("a", b"hello ").unwrap();
        disk.append("a", b"world").unwrap();
        disk.sync("a").unwrap();
        assert_eq!(disk.read("a").unwrap(), b"hello world");
        assert_eq!(disk.size("a").unwrap(), 11);
        disk.truncate("a", 5).unwrap();
        disk.append("a", b"!").unwrap();
        assert_eq!(disk.read("a").unwrap(), b"hello!", "appends land at the new end");
        assert!(disk.truncate("a", 100).is_err());

        disk.create("b").unwrap();
        disk.append("b", b"new").unwrap();
        disk.sync("b").unwrap();
        disk.rename("b", "a").unwrap();
        disk.sync_dir().unwrap();
        assert_eq!(disk.read("a").unwrap(), b"new", "rename replaces");
        fs::create_dir(tmp.path().join("data").join("subdir")).unwrap();
        fs::write(tmp.path().join("data").join("bad name"), b"").unwrap();
        assert_eq!(disk.list().unwrap(), vec!["a".to_string()], "only storage files are listed");

        disk.create("a").unwrap();
        assert_eq!(disk.read("a").unwrap(), b"", "create empties");
        disk.remove("a").unwrap();
        assert!(disk.list().unwrap().is_empty());
        assert_eq!(disk.read("a").unwrap_err().kind(), io::ErrorKind::NotFound);
        assert!(disk.append("a", b"x").is_err(), "append does not create");
        for bad in ["../escape", "a/b", ""] {
            assert_eq!(disk.create(bad).unwrap_err().kind(), io::ErrorKind::InvalidInput, "{bad:?}");
        }
    }

    fn entry(index: u64) -> EntryOf<Tc> {
        let op = KvOp {
            verb: KvVerb::Set,
            key: format!("k{index}"),
            value: vec![7; 50],
            flags: 0,
            index: 0,
            session: String::new(),
        };
        let log_id = openraft::testing::log_id::<Tc>(1, 1, index);
        openraft::Entry { log_id, payload: EntryPayload::Normal(Request { now_ms: index, command: Command::Kv(op) }) }
    }

    #[tokio::test]
    async fn the_log_and_snapshot_survive_a_reopen_on_real_files() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let options = LogOptions { segment_max_bytes: 512, planted_ack_before_sync: false };
        let mut store = DiskLogStore::<Tc, _>::open_with(FsDisk::open(tmp.path()).unwrap(), options).unwrap();
        store.append((1..=20).map(entry), IOFlushed::noop()).await.unwrap();
        store.save_vote(&VoteOf::<Tc>::new(3, 1)).await.unwrap();
        store.purge(openraft::testing::log_id::<Tc>(1, 1, 5)).await.unwrap();
        assert!(store.segment_count() > 2);
        drop(store);

        let mut disk = FsDisk::open(tmp.path()).unwrap();
        let meta =
            SnapshotMetaOf::<Tc> { last_log_id: Some(openraft::testing::log_id::<Tc>(1, 1, 5)), ..Default::default() };
        save_snapshot::<Tc, _>(&mut disk, &meta, b"catalog").unwrap();
        let mut store = DiskLogStore::<Tc, _>::open_with(disk, options).unwrap();
        let got = store.try_get_log_entries(..).await.unwrap();
        assert_eq!(got.iter().map(|e| e.log_id.index).collect::<Vec<_>>(), (6..=20).collect::<Vec<_>>());
        assert_eq!(store.read_vote().await.unwrap(), Some(VoteOf::<Tc>::new(3, 1)));
        let (loaded, data) = load_snapshot::<Tc, _>(&FsDisk::open(tmp.path()).unwrap()).unwrap().expect("saved");
        assert_eq!((loaded, data.as_slice()), (meta, &b"catalog"[..]));

        // A damaged earlier segment on a real disk is refused, naming the file.
        drop(store);
        let first =
            FsDisk::open(tmp.path()).unwrap().list().unwrap().into_iter().find(|n| n.ends_with(".seg")).unwrap();
        let path = tmp.path().join(&first);
        let mut bytes = fs::read(&path).unwrap();
        let at = bytes.len() - 2;
        bytes[at] ^= 1;
        fs::write(&path, bytes).unwrap();
        let err = DiskLogStore::<Tc, _>::open_with(FsDisk::open(tmp.path()).unwrap(), options).err().expect("refused");
        assert_eq!(Corruption::of(&err).map(|c| c.file.as_str()), Some(first.as_str()));
    }
}
