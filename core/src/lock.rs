//! The client side of Consul's locks and semaphores, sans-IO: what `legate lock` (and Go's
//! `api.Lock` / `api.Semaphore`, whose key layout it shares) asks the KV store, in what order,
//! and what each answer means.
//!
//! A [`Lock`] or [`Semaphore`] is a sequential protocol: the driver sends one [`Request`],
//! feeds its [`Reply`] to `handle`, and gets the next [`Step`]: another request, or an outcome
//! (`Held`, `Lost`, `Released`, `Failed`). The driver owns the session (create, renew every
//! TTL/2, destroy), timeouts and the child process; `legate lock` drives these machines over
//! HTTP, and the simulator drives the same machines against its servers, so the lock-safety
//! checker judges the code users run.
//!
//! # Lock (`-n 1`)
//!
//! Key `<prefix>/.lock`, flags [`LOCK_FLAG_VALUE`]. Acquire: read the key (blocking on the
//! holder's index while someone holds it); when free, `?acquire`; on `true`, a consistent read
//! confirms the holding and yields its `LockIndex`, the fencing token; on `false`, a read
//! tells why: held by another session (block on its index) or free, which means a lock-delay is
//! in force (sleep [`LOCK_RETRY_MS`]). Monitor: blocking `?consistent` reads until the key's
//! session is no longer ours; server errors are retried `monitor_retries` times,
//! [`MONITOR_RETRY_MS`] apart. Release: `?release`.
//!
//! # Semaphore (`-n N`)
//!
//! Each contender acquires `<prefix>/<session>` (flags [`SEMAPHORE_FLAG_VALUE`]; its session
//! has Behavior `delete`, so the key vanishes with it). `<prefix>/.lock` (same flags) holds
//! `{"Limit":N,"Holders":{"<session>":true}}`, changed only by check-and-set. Acquire: list the
//! prefix, prune holders whose contender key is gone or unlocked, and, if fewer than `Limit`
//! remain, CAS ourselves in; else block on the prefix's index. Monitor: blocking consistent
//! lists until we are no longer a holder. Release: CAS ourselves out, delete our contender key.

use std::collections::BTreeMap;

use crate::watch::next_index;

/// The flags of a lock key (Go's `api.LockFlagValue`): a key with other flags is not a lock.
pub const LOCK_FLAG_VALUE: u64 = 0x2ddc_cbc0_58a5_0c18;
/// The flags of a semaphore's keys (Go's `api.SemaphoreFlagValue`).
pub const SEMAPHORE_FLAG_VALUE: u64 = 0xe0f6_9a2b_aa41_4de0;
/// The lock key, or the semaphore's holder record, under the prefix.
pub const LOCK_KEY: &str = ".lock";
/// How long to sleep when an acquire failed on a free key (a lock-delay is in force).
pub const LOCK_RETRY_MS: u64 = 5_000;
/// How long one blocking read may wait.
pub const LOCK_WAIT_MS: u64 = 15_000;
/// Between monitor retries after a server error.
pub const MONITOR_RETRY_MS: u64 = 2_000;
/// The session TTL `legate lock` uses; it renews every half of it.
pub const SESSION_TTL_S: u64 = 15;

/// A KV entry as the lock protocol sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pair {
    pub key: String,
    pub value: Vec<u8>,
    pub flags: u64,
    pub session: Option<String>,
    pub lock_index: u64,
    pub modify_index: u64,
}

/// What the driver must ask the KV store next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// Read one key; `index > 0` makes it a blocking read of at most `wait_ms`.
    Get { key: String, index: u64, wait_ms: u64, consistent: bool },
    /// Read every key under a prefix (recurse), blocking like `Get`.
    List { prefix: String, index: u64, wait_ms: u64, consistent: bool },
    /// `PUT key?acquire=session` with `flags`.
    Acquire { key: String, value: Vec<u8>, flags: u64, session: String },
    /// `PUT key?release=session` with `flags` (a release writes the value and flags, as an
    /// acquire does, so they must be the lock's own).
    Release { key: String, value: Vec<u8>, flags: u64, session: String },
    /// `PUT key?cas=modify_index` (0: only if absent).
    Cas { key: String, value: Vec<u8>, flags: u64, modify_index: u64 },
    /// `DELETE key`.
    Delete { key: String },
    /// Wait, then reply [`Reply::Slept`].
    Sleep { ms: u64 },
}

/// The answer to a [`Request`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// To `Get`: the entry (`None`: absent) and the answer's index.
    Entry {
        entry: Option<Pair>,
        index: u64,
    },
    /// To `List`.
    Entries {
        entries: Vec<Pair>,
        index: u64,
    },
    /// To `Acquire`, `Release`, `Cas`, `Delete`.
    Done(bool),
    Slept,
    /// The request failed: a server error (5xx, retried where the protocol allows) or a
    /// client error (4xx: the request itself is wrong, e.g. the session is gone).
    Error {
        message: String,
        server: bool,
    },
}

/// What happens next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    Send(Request),
    /// The lock is ours. `lock_index` is the key's `LockIndex` (a fencing token) for a lock,
    /// `None` for a semaphore.
    Held {
        lock_index: Option<u64>,
    },
    /// The lock is no longer ours (monitoring found another holder, or gave up).
    Lost,
    /// The release is done.
    Released,
    Failed(LockError),
}

/// Why a lock cannot be taken at all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LockError {
    /// The key exists and is not a lock of this kind (Go's `ErrLockConflict`).
    Conflict(String),
    /// The semaphore's holder record has another limit (Go's `ErrSemaphoreConflict`).
    LimitConflict { ours: u32, theirs: u32 },
    /// The holder record is not valid JSON.
    Corrupt(String),
    /// A request failed where the protocol cannot retry.
    Request(String),
}

impl std::fmt::Display for LockError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LockError::Conflict(key) => write!(f, "Existing key {key:?} does not match lock use"),
            LockError::LimitConflict { ours, theirs } => {
                write!(f, "Semaphore limit conflict: the holders use a limit of {theirs}, not {ours}")
            }
            LockError::Corrupt(e) => write!(f, "Semaphore holder record is invalid: {e}"),
            LockError::Request(e) => write!(f, "{e}"),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Idle,
    /// Waiting for the key to be free.
    Wait,
    Acquiring,
    /// The acquire failed: finding out why.
    WhyNot,
    /// A lock-delay is in force.
    Delayed,
    /// The acquire succeeded: reading the LockIndex.
    Confirming,
    Held,
    Monitoring,
    MonitorRetry,
    Releasing,
    Done,
}

/// A mutual-exclusion lock on `<prefix>/.lock` (see the module docs).
#[derive(Clone, Debug)]
pub struct Lock {
    key: String,
    session: String,
    value: Vec<u8>,
    monitor_retries: u32,
    retries_left: u32,
    phase: Phase,
    index: u64,
}

/// The lock key of a prefix.
pub fn lock_key(prefix: &str) -> String {
    format!("{}/{LOCK_KEY}", prefix.trim_end_matches('/'))
}

impl Lock {
    /// A lock under `prefix` for `session` (a session the driver created and renews).
    pub fn new(prefix: &str, session: impl Into<String>, value: Vec<u8>, monitor_retries: u32) -> Lock {
        Lock {
            key: lock_key(prefix),
            session: session.into(),
            value,
            monitor_retries,
            retries_left: monitor_retries,
            phase: Phase::Idle,
            index: 0,
        }
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn session(&self) -> &str {
        &self.session
    }

    /// Starts acquiring: the first request.
    pub fn acquire(&mut self) -> Request {
        self.index = 0;
        self.phase = Phase::Wait;
        self.read(false)
    }

    /// Starts monitoring a held lock: the first request.
    pub fn monitor(&mut self) -> Request {
        assert_eq!(self.phase, Phase::Held, "monitor of a lock that is not held");
        self.phase = Phase::Monitoring;
        self.retries_left = self.monitor_retries;
        self.read(true)
    }

    /// Starts releasing (held, monitoring, or acquired without knowing it): the request.
    pub fn release(&mut self) -> Request {
        self.phase = Phase::Releasing;
        Request::Release {
            key: self.key.clone(),
            value: self.value.clone(),
            flags: LOCK_FLAG_VALUE,
            session: self.session.clone(),
        }
    }

    fn read(&self, consistent: bool) -> Request {
        Request::Get { key: self.key.clone(), index: self.index, wait_ms: LOCK_WAIT_MS, consistent }
    }

    fn send_read(&mut self, consistent: bool) -> Step {
        Step::Send(self.read(consistent))
    }

    /// The next step after `reply` to the last request.
    pub fn handle(&mut self, reply: Reply) -> Step {
        match (self.phase, reply) {
            (Phase::Wait | Phase::WhyNot, Reply::Entry { entry, index }) => {
                if let Some(p) = &entry {
                    if p.flags != LOCK_FLAG_VALUE {
                        self.phase = Phase::Done;
                        return Step::Failed(LockError::Conflict(self.key.clone()));
                    }
                }
                let holder = entry.as_ref().and_then(|p| p.session.clone());
                match holder {
                    Some(h) if h == self.session => {
                        // Ours already (an earlier acquire whose answer was lost).
                        self.phase = Phase::Held;
                        Step::Held { lock_index: entry.map(|p| p.lock_index) }
                    }
                    Some(_) => {
                        self.phase = Phase::Wait;
                        self.index = index.max(1);
                        self.send_read(false)
                    }
                    None if self.phase == Phase::WhyNot => {
                        // Free, yet the acquire failed: a lock-delay is in force.
                        self.phase = Phase::Delayed;
                        Step::Send(Request::Sleep { ms: LOCK_RETRY_MS })
                    }
                    None => {
                        self.phase = Phase::Acquiring;
                        Step::Send(Request::Acquire {
                            key: self.key.clone(),
                            value: self.value.clone(),
                            flags: LOCK_FLAG_VALUE,
                            session: self.session.clone(),
                        })
                    }
                }
            }
            (Phase::Acquiring, Reply::Done(true)) => {
                self.phase = Phase::Confirming;
                self.index = 0;
                self.send_read(true)
            }
            (Phase::Acquiring, Reply::Done(false)) => {
                self.phase = Phase::WhyNot;
                self.index = 0;
                self.send_read(false)
            }
            (Phase::Confirming, Reply::Entry { entry, index }) => match entry {
                Some(p) if p.session.as_deref() == Some(&self.session) => {
                    self.phase = Phase::Held;
                    self.index = index.max(1);
                    Step::Held { lock_index: Some(p.lock_index) }
                }
                // Lost between the acquire and the read (the session ended): start over.
                _ => {
                    self.phase = Phase::Wait;
                    self.index = 0;
                    self.send_read(false)
                }
            },
            (Phase::Delayed, Reply::Slept) => {
                self.phase = Phase::Wait;
                self.index = 0;
                self.send_read(false)
            }
            (Phase::Monitoring, Reply::Entry { entry, index }) => {
                self.retries_left = self.monitor_retries;
                match entry {
                    Some(p) if p.session.as_deref() == Some(&self.session) => {
                        self.index = next_index(self.index, index);
                        self.send_read(true)
                    }
                    _ => {
                        self.phase = Phase::Done;
                        Step::Lost
                    }
                }
            }
            (Phase::Monitoring, Reply::Error { server: true, .. }) if self.retries_left > 0 => {
                self.retries_left -= 1;
                self.phase = Phase::MonitorRetry;
                Step::Send(Request::Sleep { ms: MONITOR_RETRY_MS })
            }
            (Phase::Monitoring, Reply::Error { .. }) => {
                self.phase = Phase::Done;
                Step::Lost
            }
            (Phase::MonitorRetry, Reply::Slept) => {
                self.phase = Phase::Monitoring;
                self.send_read(true)
            }
            (Phase::Releasing, Reply::Done(_)) => {
                self.phase = Phase::Done;
                Step::Released
            }
            (Phase::Releasing, Reply::Error { message, .. }) => {
                self.phase = Phase::Done;
                Step::Failed(LockError::Request(message))
            }
            (_, Reply::Error { message, .. }) => {
                self.phase = Phase::Done;
                Step::Failed(LockError::Request(message))
            }
            (phase, reply) => {
                self.phase = Phase::Done;
                Step::Failed(LockError::Request(format!("unexpected reply {reply:?} while {phase:?}")))
            }
        }
    }
}

/// The semaphore's holder record, `<prefix>/.lock`.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Holders {
    #[serde(rename = "Limit")]
    pub limit: u32,
    #[serde(rename = "Holders", default)]
    pub holders: BTreeMap<String, bool>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SemPhase {
    Idle,
    Contending,
    Wait,
    Cas,
    Held,
    Monitoring,
    MonitorRetry,
    /// Releasing: reading the holder record, then CAS ourselves out.
    ReleaseRead,
    ReleaseCas,
    ReleaseDelete,
    Done,
}

/// A counting semaphore of `limit` holders under a prefix (see the module docs). The session
/// must have Behavior `delete`.
#[derive(Clone, Debug)]
pub struct Semaphore {
    prefix: String,
    session: String,
    value: Vec<u8>,
    limit: u32,
    monitor_retries: u32,
    retries_left: u32,
    phase: SemPhase,
    index: u64,
}

impl Semaphore {
    pub fn new(
        prefix: &str,
        session: impl Into<String>,
        value: Vec<u8>,
        limit: u32,
        monitor_retries: u32,
    ) -> Semaphore {
        assert!(limit > 0, "a semaphore of limit 0");
        Semaphore {
            prefix: prefix.trim_end_matches('/').to_string(),
            session: session.into(),
            value,
            limit,
            monitor_retries,
            retries_left: monitor_retries,
            phase: SemPhase::Idle,
            index: 0,
        }
    }

    pub fn lock_key(&self) -> String {
        lock_key(&self.prefix)
    }

    /// This contender's key, `<prefix>/<session>`.
    pub fn contender_key(&self) -> String {
        format!("{}/{}", self.prefix, self.session)
    }

    pub fn session(&self) -> &str {
        &self.session
    }

    /// Starts acquiring: the contender key first.
    pub fn acquire(&mut self) -> Request {
        self.phase = SemPhase::Contending;
        self.index = 0;
        Request::Acquire {
            key: self.contender_key(),
            value: self.value.clone(),
            flags: SEMAPHORE_FLAG_VALUE,
            session: self.session.clone(),
        }
    }

    pub fn monitor(&mut self) -> Request {
        assert_eq!(self.phase, SemPhase::Held, "monitor of a semaphore slot that is not held");
        self.phase = SemPhase::Monitoring;
        self.retries_left = self.monitor_retries;
        self.list(true)
    }

    pub fn release(&mut self) -> Request {
        self.phase = SemPhase::ReleaseRead;
        self.index = 0;
        self.list(true)
    }

    fn list(&self, consistent: bool) -> Request {
        Request::List { prefix: format!("{}/", self.prefix), index: self.index, wait_ms: LOCK_WAIT_MS, consistent }
    }

    /// The holder record and its ModifyIndex (0: none yet), with dead holders pruned: a holder
    /// counts only while its contender key exists and is locked by its session.
    fn holders(&self, entries: &[Pair]) -> Result<(Holders, u64), LockError> {
        let lock_key = self.lock_key();
        for p in entries {
            if p.flags != SEMAPHORE_FLAG_VALUE {
                return Err(LockError::Conflict(p.key.clone()));
            }
        }
        let Some(record) = entries.iter().find(|p| p.key == lock_key) else {
            return Ok((Holders { limit: self.limit, holders: BTreeMap::new() }, 0));
        };
        let mut holders: Holders = if record.value.is_empty() {
            Holders { limit: self.limit, holders: BTreeMap::new() }
        } else {
            serde_json::from_slice(&record.value).map_err(|e| LockError::Corrupt(e.to_string()))?
        };
        if holders.limit != self.limit {
            return Err(LockError::LimitConflict { ours: self.limit, theirs: holders.limit });
        }
        let live = |sid: &str| {
            let key = format!("{}/{sid}", self.prefix);
            entries.iter().any(|p| p.key == key && p.session.as_deref() == Some(sid))
        };
        holders.holders.retain(|sid, _| live(sid));
        Ok((holders, record.modify_index))
    }

    fn cas(&self, holders: &Holders, modify_index: u64) -> Request {
        Request::Cas {
            key: self.lock_key(),
            value: serde_json::to_vec(holders).expect("holders serialise"),
            flags: SEMAPHORE_FLAG_VALUE,
            modify_index,
        }
    }

    fn fail(&mut self, e: LockError) -> Step {
        self.phase = SemPhase::Done;
        Step::Failed(e)
    }

    pub fn handle(&mut self, reply: Reply) -> Step {
        match (self.phase, reply) {
            (SemPhase::Contending, Reply::Done(true)) => {
                self.phase = SemPhase::Wait;
                Step::Send(self.list(false))
            }
            (SemPhase::Contending, Reply::Done(false)) => {
                self.fail(LockError::Request(format!("could not lock contender key {:?}", self.contender_key())))
            }
            (SemPhase::Wait, Reply::Entries { entries, index }) => {
                let (mut holders, modify_index) = match self.holders(&entries) {
                    Ok(h) => h,
                    Err(e) => return self.fail(e),
                };
                if holders.holders.contains_key(&self.session) {
                    self.phase = SemPhase::Held;
                    self.index = index.max(1);
                    return Step::Held { lock_index: None };
                }
                if holders.holders.len() >= self.limit as usize {
                    self.index = index.max(1);
                    return Step::Send(self.list(false));
                }
                holders.holders.insert(self.session.clone(), true);
                self.phase = SemPhase::Cas;
                Step::Send(self.cas(&holders, modify_index))
            }
            (SemPhase::Cas, Reply::Done(true)) => {
                self.phase = SemPhase::Held;
                self.index = 0;
                Step::Held { lock_index: None }
            }
            (SemPhase::Cas, Reply::Done(false)) => {
                // Someone changed the record first: read it again at once.
                self.phase = SemPhase::Wait;
                self.index = 0;
                Step::Send(self.list(false))
            }
            (SemPhase::Monitoring, Reply::Entries { entries, index }) => {
                self.retries_left = self.monitor_retries;
                match self.holders(&entries) {
                    Ok((h, _)) if h.holders.contains_key(&self.session) => {
                        self.index = next_index(self.index, index);
                        Step::Send(self.list(true))
                    }
                    _ => {
                        self.phase = SemPhase::Done;
                        Step::Lost
                    }
                }
            }
            (SemPhase::Monitoring, Reply::Error { server: true, .. }) if self.retries_left > 0 => {
                self.retries_left -= 1;
                self.phase = SemPhase::MonitorRetry;
                Step::Send(Request::Sleep { ms: MONITOR_RETRY_MS })
            }
            (SemPhase::Monitoring, Reply::Error { .. }) => {
                self.phase = SemPhase::Done;
                Step::Lost
            }
            (SemPhase::MonitorRetry, Reply::Slept) => {
                self.phase = SemPhase::Monitoring;
                Step::Send(self.list(true))
            }
            (SemPhase::ReleaseRead, Reply::Entries { entries, .. }) => match self.holders(&entries) {
                Ok((mut h, modify_index)) if h.holders.contains_key(&self.session) => {
                    h.holders.remove(&self.session);
                    self.phase = SemPhase::ReleaseCas;
                    Step::Send(self.cas(&h, modify_index))
                }
                // Not a holder (any more): only the contender key is left to remove.
                _ => {
                    self.phase = SemPhase::ReleaseDelete;
                    Step::Send(Request::Delete { key: self.contender_key() })
                }
            },
            (SemPhase::ReleaseCas, Reply::Done(true)) => {
                self.phase = SemPhase::ReleaseDelete;
                Step::Send(Request::Delete { key: self.contender_key() })
            }
            (SemPhase::ReleaseCas, Reply::Done(false)) => {
                self.phase = SemPhase::ReleaseRead;
                Step::Send(self.list(true))
            }
            (SemPhase::ReleaseDelete, Reply::Done(_)) => {
                self.phase = SemPhase::Done;
                Step::Released
            }
            (_, Reply::Error { message, .. }) => self.fail(LockError::Request(message)),
            (phase, reply) => self.fail(LockError::Request(format!("unexpected reply {reply:?} while {phase:?}"))),
        }
    }
}

#[cfg(test)]
mod tests;
