//! The DNS server's view of the catalog: the answer to each name asked recently, kept current
//! by a blocking query per name instead of a read per DNS query.
//!
//! A cached entry is as fresh as a stale read: its refresher blocks on the entry's index and
//! wakes as soon as a server applies a write that changes the answer (blocking queries wake
//! precisely), so a failing check leaves DNS within milliseconds of reaching the catalog.
//! Meanwhile every DNS query for the name is answered without touching the servers, which
//! matters most on client agents, whose reads would otherwise each be an RPC. An entry that
//! is not asked for within [`IDLE_MS`], whose refresh fails, or whose server has lost its
//! leader for longer than `max_stale`, is dropped: the next query reads directly again.
//!
//! Entries are keyed by the whole [`CatalogRead`], the datacenter it reads included. Each
//! refresh asks the agent's routes anew for that datacenter, so a change of route takes effect
//! at the next refresh (and a datacenter no longer known drops its entries).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use legate_core::dns::{CatalogData, CatalogRead};
use legate_runtime::{Consistency, QueryOptions};

use crate::backend::Routes;

/// Names cached at once; beyond it, queries read directly.
pub const ENTRIES_MAX: usize = 1024;

/// An entry not asked for this long is dropped (checked each time its refresh returns).
pub const IDLE_MS: u64 = 60_000;

/// How long each refresh blocks waiting for a change.
pub const REFRESH_WAIT_MS: u64 = 30_000;

/// How long past its wait a refresh may take before it counts as failed.
const REFRESH_GRACE: Duration = Duration::from_secs(10);

struct Entry {
    data: Mutex<CatalogData>,
    /// When the entry was last asked for, in ms since the cache began.
    last_used_ms: AtomicU64,
}

/// Cached answers by read (name and datacenter). Clones share.
#[derive(Clone)]
pub struct DnsCache {
    entries: Arc<Mutex<BTreeMap<CatalogRead, Arc<Entry>>>>,
    epoch: Instant,
    max_stale_ms: u64,
}

impl DnsCache {
    pub fn new(max_stale_ms: u64) -> DnsCache {
        DnsCache { entries: Arc::default(), epoch: Instant::now(), max_stale_ms }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<CatalogRead, Arc<Entry>>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The cached answer to `read`, if there is one.
    pub fn get(&self, read: &CatalogRead) -> Option<CatalogData> {
        let entry = self.lock().get(read).cloned()?;
        entry.last_used_ms.store(self.now_ms(), Ordering::Relaxed);
        let data = entry.data.lock().unwrap_or_else(|p| p.into_inner()).clone();
        Some(data)
    }

    /// Caches what a direct read found (at `index`) and starts keeping it current, unless
    /// the cache is full or the read is cached already.
    pub fn insert(&self, routes: &Routes, read: CatalogRead, data: CatalogData, index: u64) {
        let entry = Arc::new(Entry { data: Mutex::new(data), last_used_ms: AtomicU64::new(self.now_ms()) });
        {
            let mut entries = self.lock();
            if entries.len() >= ENTRIES_MAX || entries.contains_key(&read) {
                return;
            }
            entries.insert(read.clone(), entry.clone());
        }
        tokio::spawn(self.clone().refresh(routes.clone(), read, entry, index));
    }

    async fn refresh(self, routes: Routes, read: CatalogRead, entry: Arc<Entry>, mut index: u64) {
        let wait = Duration::from_millis(REFRESH_WAIT_MS);
        loop {
            if self.now_ms().saturating_sub(entry.last_used_ms.load(Ordering::Relaxed)) > IDLE_MS {
                break;
            }
            let opts = QueryOptions {
                consistency: Consistency::Stale,
                min_index: index.max(1),
                wait_ms: Some(REFRESH_WAIT_MS),
            };
            let found =
                match tokio::time::timeout(wait + REFRESH_GRACE, crate::dns::read_data(&routes, &opts, &read)).await {
                    Ok(Ok(found)) if found.last_contact_ms <= self.max_stale_ms => found,
                    Ok(Ok(_)) => break, // Too stale: direct reads will ask the leader.
                    Ok(Err(e)) => {
                        tracing::debug!(error = %e, ?read, "DNS cache refresh failed; dropping the entry");
                        break;
                    }
                    Err(_) => break,
                };
            index = found.index;
            *entry.data.lock().unwrap_or_else(|p| p.into_inner()) = found.data;
        }
        self.lock().remove(&read);
    }

    /// Entries cached now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
