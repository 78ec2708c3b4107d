use super::*;

/// A tiny KV store with sessions, enough to run the protocols against: acquire and release as
/// Consul applies them, CAS, delete, a global index; lock-delay as a flag.
#[derive(Default)]
struct Kv {
    index: u64,
    pairs: BTreeMap<String, Pair>,
    /// Acquires of free keys fail while set (a lock-delay in force).
    delayed: bool,
}

impl Kv {
    fn bump(&mut self) -> u64 {
        self.index += 1;
        self.index
    }

    fn serve(&mut self, request: &Request) -> Reply {
        match request {
            Request::Get { key, .. } => Reply::Entry { entry: self.pairs.get(key).cloned(), index: self.index.max(1) },
            Request::List { prefix, .. } => Reply::Entries {
                entries: self.pairs.values().filter(|p| p.key.starts_with(prefix.as_str())).cloned().collect(),
                index: self.index.max(1),
            },
            Request::Acquire { key, value, flags, session } => {
                let held_by = self.pairs.get(key).and_then(|p| p.session.clone());
                match held_by {
                    Some(h) if &h != session => Reply::Done(false),
                    None if self.delayed => Reply::Done(false),
                    _ => {
                        let index = self.bump();
                        let p = self
                            .pairs
                            .entry(key.clone())
                            .or_insert_with(|| Pair { key: key.clone(), ..Pair::default() });
                        if p.session.is_none() {
                            p.lock_index += 1;
                        }
                        p.session = Some(session.clone());
                        p.value = value.clone();
                        p.flags = *flags;
                        p.modify_index = index;
                        Reply::Done(true)
                    }
                }
            }
            Request::Release { key, session, .. } => {
                let index = self.bump();
                match self.pairs.get_mut(key) {
                    Some(p) if p.session.as_ref() == Some(session) => {
                        p.session = None;
                        p.modify_index = index;
                        Reply::Done(true)
                    }
                    _ => Reply::Done(false),
                }
            }
            Request::Cas { key, value, flags, modify_index } => {
                let current = self.pairs.get(key).map_or(0, |p| p.modify_index);
                if current != *modify_index {
                    return Reply::Done(false);
                }
                let index = self.bump();
                let p = self.pairs.entry(key.clone()).or_insert_with(|| Pair { key: key.clone(), ..Pair::default() });
                p.value = value.clone();
                p.flags = *flags;
                p.modify_index = index;
                Reply::Done(true)
            }
            Request::Delete { key } => {
                self.bump();
                Reply::Done(self.pairs.remove(key).is_some())
            }
            Request::Sleep { .. } => Reply::Slept,
        }
    }

    /// The session ended: Behavior release (lock) or delete (semaphore contender keys).
    fn end_session(&mut self, session: &str, delete: bool) {
        let index = self.bump();
        let held: Vec<String> =
            self.pairs.values().filter(|p| p.session.as_deref() == Some(session)).map(|p| p.key.clone()).collect();
        for key in held {
            if delete {
                self.pairs.remove(&key);
            } else if let Some(p) = self.pairs.get_mut(&key) {
                p.session = None;
                p.modify_index = index;
            }
        }
    }
}

/// Serves requests until the machine reaches an outcome, or the next request is one that
/// would block (a read at an index nothing moved past): returns it instead.
fn drive(kv: &mut Kv, mut request: Request, mut handle: impl FnMut(Reply) -> Step) -> Result<Step, Request> {
    for _ in 0..100 {
        if let Request::Get { index, .. } | Request::List { index, .. } = &request {
            if *index >= kv.index.max(1) {
                return Err(request);
            }
        }
        let reply = kv.serve(&request);
        match handle(reply) {
            Step::Send(next) => request = next,
            outcome => return Ok(outcome),
        }
    }
    panic!("no outcome after 100 requests; last {request:?}");
}

#[test]
fn a_free_lock_is_acquired_and_its_lock_index_is_the_fencing_token() {
    let mut kv = Kv::default();
    let mut a = Lock::new("service/web/leader/", "sa", b"a".to_vec(), 3);
    assert_eq!(a.key(), "service/web/leader/.lock");
    let first = a.acquire();
    assert_eq!(drive(&mut kv, first, |r| a.handle(r)), Ok(Step::Held { lock_index: Some(1) }));
    let pair = &kv.pairs["service/web/leader/.lock"];
    assert_eq!((pair.flags, pair.session.as_deref()), (LOCK_FLAG_VALUE, Some("sa")));

    // A second contender blocks on the holder's index.
    let mut b = Lock::new("service/web/leader", "sb", Vec::new(), 3);
    let first = b.acquire();
    let blocked = drive(&mut kv, first, |r| b.handle(r)).unwrap_err();
    assert!(matches!(blocked, Request::Get { index, consistent: false, .. } if index == kv.index));

    // The holder releases; the waiter's blocking read returns, and it takes the lock with a
    // higher LockIndex.
    let release = a.release();
    assert_eq!(drive(&mut kv, release, |r| a.handle(r)), Ok(Step::Released));
    assert_eq!(drive(&mut kv, blocked, |r| b.handle(r)), Ok(Step::Held { lock_index: Some(2) }));
}

#[test]
fn the_monitor_reports_the_loss_when_the_session_ends() {
    let mut kv = Kv::default();
    let mut a = Lock::new("p", "sa", Vec::new(), 3);
    let first = a.acquire();
    assert!(matches!(drive(&mut kv, first, |r| a.handle(r)), Ok(Step::Held { .. })));
    let watching = drive(&mut kv, a.monitor(), |r| a.handle(r)).unwrap_err();
    assert!(matches!(watching, Request::Get { consistent: true, .. }), "{watching:?}");
    kv.end_session("sa", false);
    assert_eq!(drive(&mut kv, watching, |r| a.handle(r)), Ok(Step::Lost));
}

#[test]
fn the_monitor_retries_server_errors_then_gives_up() {
    let mut kv = Kv::default();
    let mut a = Lock::new("p", "sa", Vec::new(), 2);
    let first = a.acquire();
    drive(&mut kv, first, |r| a.handle(r)).unwrap();
    a.monitor();
    let error = || Reply::Error { message: "500 No cluster leader".into(), server: true };
    assert_eq!(a.handle(error()), Step::Send(Request::Sleep { ms: MONITOR_RETRY_MS }));
    assert!(matches!(a.handle(Reply::Slept), Step::Send(Request::Get { consistent: true, .. })));
    // A good answer in between restores the retries.
    let entry = kv.pairs["p/.lock"].clone();
    assert!(matches!(a.handle(Reply::Entry { entry: Some(entry), index: 9 }), Step::Send(_)));
    for _ in 0..2 {
        assert!(matches!(a.handle(error()), Step::Send(Request::Sleep { .. })));
        assert!(matches!(a.handle(Reply::Slept), Step::Send(Request::Get { .. })));
    }
    assert_eq!(a.handle(error()), Step::Lost, "out of retries");
}

#[test]
fn a_failed_acquire_on_a_free_key_waits_out_the_lock_delay() {
    let mut kv = Kv { delayed: true, ..Kv::default() };
    let mut a = Lock::new("p", "sa", Vec::new(), 3);
    let mut request = a.acquire();
    let mut requests = Vec::new();
    for _ in 0..3 {
        requests.push(request.clone());
        match a.handle(kv.serve(&request)) {
            Step::Send(next) => request = next,
            other => panic!("{other:?}"),
        }
    }
    assert!(matches!(requests[1], Request::Acquire { .. }));
    assert!(matches!(requests[2], Request::Get { index: 0, .. }), "why did it fail: {:?}", requests[2]);
    assert_eq!(request, Request::Sleep { ms: LOCK_RETRY_MS }, "free but refused: lock-delay");
    kv.delayed = false;
    assert_eq!(drive(&mut kv, request, |r| a.handle(r)), Ok(Step::Held { lock_index: Some(1) }));
}

#[test]
fn a_key_that_is_not_a_lock_is_a_conflict() {
    let mut kv = Kv::default();
    kv.serve(&Request::Cas { key: "p/.lock".into(), value: b"x".to_vec(), flags: 0, modify_index: 0 });
    let mut a = Lock::new("p", "sa", Vec::new(), 3);
    let first = a.acquire();
    let outcome = drive(&mut kv, first, |r| a.handle(r)).unwrap();
    assert_eq!(outcome, Step::Failed(LockError::Conflict("p/.lock".into())));
    assert_eq!(LockError::Conflict("p/.lock".into()).to_string(), "Existing key \"p/.lock\" does not match lock use");
}

#[test]
fn a_semaphore_admits_limit_holders_and_the_next_when_one_leaves() {
    let mut kv = Kv::default();
    let mut sems: Vec<Semaphore> =
        ["s1", "s2", "s3"].iter().map(|s| Semaphore::new("roll", *s, Vec::new(), 2, 3)).collect();
    let mut outcomes = Vec::new();
    for s in &mut sems {
        let first = s.acquire();
        outcomes.push(drive(&mut kv, first, |r| s.handle(r)));
    }
    assert_eq!(outcomes[0], Ok(Step::Held { lock_index: None }));
    assert_eq!(outcomes[1], Ok(Step::Held { lock_index: None }));
    let waiting = outcomes.pop().unwrap().unwrap_err();
    let record: Holders = serde_json::from_slice(&kv.pairs["roll/.lock"].value).unwrap();
    assert_eq!(record.limit, 2);
    assert_eq!(record.holders.keys().collect::<Vec<_>>(), ["s1", "s2"]);
    assert_eq!(kv.pairs["roll/s1"].flags, SEMAPHORE_FLAG_VALUE);

    // s1 releases: out of the record, contender key gone; s3 gets in.
    let release = sems[0].release();
    assert_eq!(drive(&mut kv, release, |r| sems[0].handle(r)), Ok(Step::Released));
    assert!(!kv.pairs.contains_key("roll/s1"));
    assert_eq!(drive(&mut kv, waiting, |r| sems[2].handle(r)), Ok(Step::Held { lock_index: None }));
    let record: Holders = serde_json::from_slice(&kv.pairs["roll/.lock"].value).unwrap();
    assert_eq!(record.holders.keys().collect::<Vec<_>>(), ["s2", "s3"]);
}

#[test]
fn a_dead_holder_is_pruned_and_its_slot_reused() {
    let mut kv = Kv::default();
    let mut s1 = Semaphore::new("roll", "s1", Vec::new(), 1, 3);
    let first = s1.acquire();
    drive(&mut kv, first, |r| s1.handle(r)).unwrap();
    let watching = drive(&mut kv, s1.monitor(), |r| s1.handle(r)).unwrap_err();
    let mut s2 = Semaphore::new("roll", "s2", Vec::new(), 1, 3);
    let first = s2.acquire();
    let waiting = drive(&mut kv, first, |r| s2.handle(r)).unwrap_err();

    kv.end_session("s1", true);
    assert_eq!(drive(&mut kv, waiting, |r| s2.handle(r)), Ok(Step::Held { lock_index: None }));
    let record: Holders = serde_json::from_slice(&kv.pairs["roll/.lock"].value).unwrap();
    assert_eq!(record.holders.keys().collect::<Vec<_>>(), ["s2"], "s1 pruned");
    assert_eq!(drive(&mut kv, watching, |r| s1.handle(r)), Ok(Step::Lost));
}

#[test]
fn a_semaphore_with_another_limit_is_a_conflict() {
    let mut kv = Kv::default();
    let mut s1 = Semaphore::new("roll", "s1", Vec::new(), 2, 3);
    let first = s1.acquire();
    drive(&mut kv, first, |r| s1.handle(r)).unwrap();
    let mut s2 = Semaphore::new("roll", "s2", Vec::new(), 3, 3);
    let first = s2.acquire();
    assert_eq!(
        drive(&mut kv, first, |r| s2.handle(r)),
        Ok(Step::Failed(LockError::LimitConflict { ours: 3, theirs: 2 }))
    );
}
