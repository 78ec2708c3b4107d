//! The catalog as openraft's state machine, plus the read side the HTTP layer uses: plain
//! reads, and blocking reads that wait for a precise wake-up.

use std::collections::BTreeMap;
use std::io;
use std::io::Cursor;
use std::sync::{Arc, Mutex, MutexGuard};

use futures::channel::oneshot;
use futures::{Stream, TryStreamExt};
use openraft::alias::{LogIdOf, SnapshotMetaOf, SnapshotOf, StoredMembershipOf};
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder, RaftTypeConfig};
use serde::{Deserialize, Serialize};

use crate::catalog::{Answer, Catalog, CatalogSnapshot, Command, Response};
use crate::plant::Planted;
use crate::watch::{WatchKey, WatcherId, Watchers};

/// The catalog state machine shared by openraft (which applies) and readers. Clones share.
pub struct CatalogStore<C: RaftTypeConfig> {
    shared: Arc<Mutex<Inner<C>>>,
}

struct Inner<C: RaftTypeConfig> {
    catalog: Catalog,
    watchers: Watchers,
    wakers: BTreeMap<WatcherId, oneshot::Sender<()>>,
    last_applied: Option<LogIdOf<C>>,
    membership: StoredMembershipOf<C>,
    /// The latest snapshot: `(meta, encoded catalog)`.
    current_snapshot: Option<(SnapshotMetaOf<C>, Vec<u8>)>,
    /// Makes a snapshot durable before the store reports it (and openraft purges the log).
    persist: Option<PersistSnapshot<C>>,
    planted: Planted,
    /// Sees every applied request (the simulator's oracles); none in production.
    apply_hook: Option<ApplyHook>,
}

/// Called with every request as it is applied, before the catalog changes.
pub type ApplyHook = Arc<dyn Fn(&crate::catalog::Request) + Send + Sync>;

/// Saves a snapshot durably (to the snapshot file); called with the store's lock held, before
/// the snapshot is reported to openraft, which may then purge the log it covers.
pub type PersistSnapshot<C> = Arc<dyn Fn(&SnapshotMetaOf<C>, &[u8]) -> Result<(), io::Error> + Send + Sync>;

/// What a snapshot holds: the catalog and the Raft position it reflects.
#[derive(Serialize, Deserialize)]
struct SnapshotBody {
    catalog: CatalogSnapshot,
}

impl<C: RaftTypeConfig> Clone for CatalogStore<C> {
    fn clone(&self) -> Self {
        CatalogStore { shared: self.shared.clone() }
    }
}

impl<C: RaftTypeConfig> Default for CatalogStore<C> {
    fn default() -> Self {
        CatalogStore {
            shared: Arc::new(Mutex::new(Inner {
                catalog: Catalog::new(),
                watchers: Watchers::new(),
                wakers: BTreeMap::new(),
                last_applied: None,
                membership: StoredMembershipOf::<C>::default(),
                current_snapshot: None,
                persist: None,
                planted: Planted::default(),
                apply_hook: None,
            })),
        }
    }
}

/// The outcome of a blocking read.
pub enum Watched<T> {
    /// The result's index is past the client's: answer now.
    Ready(Answer<T>),
    /// Not yet changed: answer this if the wait runs out, or read again once `guard` fires.
    Pending(Answer<T>, WatchGuard),
}

/// A registered watcher. Await [`WatchGuard::fired`]; dropping it unregisters the watcher.
pub struct WatchGuard {
    id: WatcherId,
    rx: oneshot::Receiver<()>,
    shared: Arc<Mutex<dyn WatcherCancel + Send>>,
}

trait WatcherCancel {
    fn cancel(&mut self, id: WatcherId);
}

impl<C: RaftTypeConfig> WatcherCancel for Inner<C> {
    fn cancel(&mut self, id: WatcherId) {
        self.watchers.cancel(id);
        self.wakers.remove(&id);
    }
}

impl WatchGuard {
    /// Resolves when an apply may have changed the watched result (or the store was replaced).
    pub async fn fired(&mut self) {
        // A dropped sender (the store discarded the watcher) also means "read again".
        let _ = (&mut self.rx).await;
    }
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        let mut inner = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        inner.cancel(self.id);
    }
}

impl<C> CatalogStore<C>
where
    C: super::LegateConfig,
{
    pub fn new() -> Self {
        Self::default()
    }

    /// A store that starts from `saved`, the snapshot last made durable (if any): its catalog,
    /// applied position and membership. Every snapshot it builds or installs later goes
    /// through `persist` first. The log after the snapshot is then replayed by openraft.
    pub fn open(
        saved: Option<(SnapshotMetaOf<C>, Vec<u8>)>,
        persist: Option<PersistSnapshot<C>>,
        planted: Planted,
    ) -> Result<Self, io::Error> {
        let store = Self::default();
        {
            let mut inner = store.lock();
            if let Some((meta, data)) = saved {
                inner.catalog = Self::decode_catalog(&data)?;
                inner.last_applied = meta.last_log_id.clone();
                inner.membership = meta.last_membership.clone();
                inner.current_snapshot = Some((meta, data));
            }
            inner.catalog.set_planted(planted);
            inner.persist = persist;
            inner.planted = planted;
        }
        Ok(store)
    }

    /// Installs a hook that sees every request as it is applied (for the simulator's oracles:
    /// the exact virtual time a server applied something).
    pub fn set_apply_hook(&self, hook: ApplyHook) {
        self.lock().apply_hook = Some(hook);
    }

    fn lock(&self) -> MutexGuard<'_, Inner<C>> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the current catalog.
    pub fn read<T>(&self, f: impl FnOnce(&Catalog) -> T) -> T {
        f(&self.lock().catalog)
    }

    /// Index of the last applied log entry.
    pub fn applied_index(&self) -> u64 {
        self.lock().last_applied.as_ref().map_or(0, |id| id.index())
    }

    /// Number of registered blocking queries.
    pub fn watcher_count(&self) -> usize {
        self.lock().watchers.len()
    }

    /// A blocking read: answers at once if the result's index is above `min_index`, else
    /// registers the result's watch set — atomically with the read, so no apply is missed.
    pub fn watch<T>(&self, min_index: u64, f: impl FnOnce(&Catalog) -> Answer<T>) -> Watched<T>
    where
        C: 'static,
    {
        let mut inner = self.lock();
        let answer = f(&inner.catalog);
        if min_index == 0 || answer.index > min_index {
            return Watched::Ready(answer);
        }
        let Ok(id) = inner.watchers.register(answer.watch.clone()) else {
            return Watched::Ready(answer);
        };
        let (tx, rx) = oneshot::channel();
        inner.wakers.insert(id, tx);
        drop(inner);
        let shared: Arc<Mutex<dyn WatcherCancel + Send>> = self.shared.clone();
        Watched::Pending(answer, WatchGuard { id, rx, shared })
    }

    fn wake(inner: &mut Inner<C>, touched: &[WatchKey]) {
        for id in inner.watchers.fire(touched) {
            if let Some(tx) = inner.wakers.remove(&id) {
                let _ = tx.send(());
            }
        }
    }

    /// Wakes every watcher (the whole state was replaced).
    fn wake_all(inner: &mut Inner<C>) {
        inner.watchers = Watchers::new();
        for (_, tx) in std::mem::take(&mut inner.wakers) {
            let _ = tx.send(());
        }
    }

    /// Serialises the catalog (for snapshots and `/v1/snapshot`).
    pub fn encode_catalog(catalog: &Catalog) -> Result<Vec<u8>, io::Error> {
        serde_json::to_vec(&SnapshotBody { catalog: catalog.snapshot() }).map_err(io::Error::other)
    }

    /// Reads a catalog written by [`CatalogStore::encode_catalog`], refusing inconsistent data.
    pub fn decode_catalog(bytes: &[u8]) -> Result<Catalog, io::Error> {
        let body: SnapshotBody =
            serde_json::from_slice(bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        Catalog::restore(body.catalog).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }
}

impl<C> RaftSnapshotBuilder<C> for CatalogStore<C>
where
    C: super::LegateConfig,
{
    type SnapshotData = Cursor<Vec<u8>>;

    async fn build_snapshot(&mut self) -> Result<SnapshotOf<C, Cursor<Vec<u8>>>, io::Error> {
        let mut inner = self.lock();
        let data = Self::encode_catalog(&inner.catalog)?;
        let meta =
            SnapshotMetaOf::<C> { last_log_id: inner.last_applied.clone(), last_membership: inner.membership.clone() };
        if let Some(persist) = &inner.persist {
            persist(&meta, &data)?;
        }
        inner.current_snapshot = Some((meta.clone(), data.clone()));
        Ok(SnapshotOf::<C, Cursor<Vec<u8>>> { meta, snapshot: Cursor::new(data) })
    }
}

impl<C> RaftStateMachine<C> for CatalogStore<C>
where
    C: super::LegateConfig,
{
    type SnapshotData = Cursor<Vec<u8>>;
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogIdOf<C>>, StoredMembershipOf<C>), io::Error> {
        let inner = self.lock();
        Ok((inner.last_applied.clone(), inner.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<C>, io::Error>> + Unpin + OptionalSend,
    {
        let mut touched = Vec::new();
        let mut restored = false;
        while let Some((entry, responder)) = entries.try_next().await? {
            let response = {
                let mut inner = self.lock();
                let index = entry.log_id.index();
                let response = match &entry.payload {
                    EntryPayload::Normal(request) => {
                        if let Some(hook) = &inner.apply_hook {
                            hook(request);
                        }
                        restored |= matches!(request.command, Command::Restore(_));
                        inner.catalog.apply(index, request)
                    }
                    EntryPayload::Blank => {
                        inner.catalog.apply_noop(index);
                        Response::Done
                    }
                    EntryPayload::Membership(m) => {
                        inner.catalog.apply_noop(index);
                        inner.membership = StoredMembershipOf::<C>::new(Some(entry.log_id.clone()), m.clone());
                        Response::Done
                    }
                };
                inner.last_applied = Some(entry.log_id.clone());
                touched.append(&mut inner.catalog.take_touched());
                response
            };
            if let Some(responder) = responder {
                responder.send(response);
            }
        }
        if restored {
            // The whole catalog was replaced: every blocking query answers.
            Self::wake_all(&mut self.lock());
        } else if !touched.is_empty() {
            let mut inner = self.lock();
            Self::wake(&mut inner, &touched);
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMetaOf<C>,
        snapshot: Self::SnapshotData,
    ) -> Result<(), io::Error> {
        let data = snapshot.into_inner();
        let mut catalog = Self::decode_catalog(&data)?;
        let mut inner = self.lock();
        if let Some(persist) = &inner.persist {
            persist(meta, &data)?;
        }
        catalog.set_planted(inner.planted);
        inner.catalog = catalog;
        inner.last_applied = meta.last_log_id.clone();
        inner.membership = meta.last_membership.clone();
        inner.current_snapshot = Some((meta.clone(), data));
        Self::wake_all(&mut inner);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<SnapshotOf<C, Self::SnapshotData>>, io::Error> {
        let inner = self.lock();
        Ok(inner.current_snapshot.as_ref().map(|(meta, data)| SnapshotOf::<C, Cursor<Vec<u8>>> {
            meta: meta.clone(),
            snapshot: Cursor::new(data.clone()),
        }))
    }
}
