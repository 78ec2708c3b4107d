//! `legate lock` against real agents: contenders on one prefix run their children one at a time
//! (the children log start and end with nanosecond timestamps; no two intervals overlap), a
//! holder whose agent is killed loses the lock to the next contender only after its session is
//! invalidated and the lock-delay passes, `-n 2` runs exactly two at a time, and a lock taken
//! through the HTTP API with the same layout excludes `legate lock` and the other way round.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use legate_tests::cluster::Cluster;
use legate_tests::{legate_bin, run_cli, unique_node_name, wait_for, wait_until, Agent};

/// Generous for a loaded machine: a handful of blocking reads and child runs.
const DEADLINE: Duration = Duration::from_secs(60);
/// Go's `api.LockFlagValue`.
const LOCK_FLAGS: u64 = 0x2ddc_cbc0_58a5_0c18;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join("legate-e2e").join(format!("lock-{}", unique_node_name()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// A running `legate lock`, its stderr in a file.
struct Contender {
    child: Child,
    stderr: PathBuf,
}

impl Contender {
    fn start(http_addr: &str, args: &[&str]) -> Contender {
        let stderr = scratch("lock.err");
        let child = Command::new(legate_bin())
            .arg("lock")
            .arg(format!("-http-addr={http_addr}"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&stderr).unwrap())
            .spawn()
            .expect("spawn legate lock");
        Contender { child, stderr }
    }

    fn wait(&mut self, timeout: Duration) -> Option<i32> {
        wait_for(timeout, || self.child.try_wait().unwrap()).map(|s| s.code().unwrap_or(-1))
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for Contender {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A child command that logs `start <id> <ns> <lock index>` and `end <id> <ns>` around a sleep.
fn logging_child(log: &Path, id: &str, sleep_s: &str) -> String {
    let log = log.display();
    format!(
        "echo \"start {id} $(date +%s%N) ${{LEGATE_LOCK_INDEX:-none}} $CONSUL_LOCK_HELD\" >> {log}; sleep {sleep_s}; \
         echo \"end {id} $(date +%s%N)\" >> {log}"
    )
}

/// One logged event: (time ns, +1 start / -1 end, id, lock index).
fn events(log: &Path) -> Vec<(u128, i32, String, String)> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut out: Vec<(u128, i32, String, String)> = text
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let delta = if f[0] == "start" { 1 } else { -1 };
            let index = f.get(3).map_or(String::new(), |s| s.to_string());
            if delta == 1 {
                assert_eq!(f.get(4), Some(&"true"), "CONSUL_LOCK_HELD in {l:?}");
            }
            (f[2].parse().unwrap(), delta, f[1].to_string(), index)
        })
        .collect();
    out.sort();
    out
}

/// The most children that ran at once.
fn max_concurrency(events: &[(u128, i32, String, String)]) -> i32 {
    let (mut now, mut max) = (0, 0);
    for e in events {
        now += e.1;
        max = max.max(now);
    }
    max
}

#[test]
fn three_contenders_across_three_servers_run_one_child_at_a_time() {
    let cluster = Cluster::start(3);
    let log = scratch("children.log");
    let mut contenders: Vec<Contender> = (0..3)
        .map(|i| {
            let child = logging_child(&log, &format!("c{i}"), "1");
            Contender::start(&cluster.servers[i].http_addr(), &["service/batch/leader", &child])
        })
        .collect();
    for c in &mut contenders {
        assert_eq!(c.wait(DEADLINE), Some(0), "legate lock exits 0 after its child: {}", c.stderr());
        assert!(c.stderr().contains("Lock acquired: service/batch/leader/.lock (LockIndex "), "{}", c.stderr());
    }
    let events = events(&log);
    assert_eq!(events.len(), 6, "three children started and ended: {events:?}");
    assert_eq!(max_concurrency(&events), 1, "one child at a time: {events:?}");
    // Every acquisition carried a fencing token larger than the one before.
    let tokens: Vec<u64> = events.iter().filter(|e| e.1 == 1).map(|e| e.3.parse().unwrap()).collect();
    assert!(tokens.windows(2).all(|w| w[0] < w[1]), "LockIndex grows with each holder: {tokens:?}");
    // The lock is free again: released, not left to a session's TTL.
    let entry = cluster.servers[0].get("/v1/kv/service/batch/leader/.lock").json();
    assert_eq!(entry[0]["Flags"], LOCK_FLAGS, "{entry}");
    assert!(entry[0]["Session"].is_null(), "released: {entry}");
}

#[test]
fn a_killed_holders_agent_hands_the_lock_over_after_invalidation_and_lock_delay() {
    let mut cluster = Cluster::start(3);
    let c1 = cluster.start_client(&[0, 1, 2]);
    let c2 = cluster.start_client(&[0, 1, 2]);
    let log = scratch("children.log");
    let holder_child = format!(
        "trap 'echo \"end a $(date +%s%N)\" >> {log}; exit 143' TERM; \
         echo \"start a $(date +%s%N) $LEGATE_LOCK_INDEX $CONSUL_LOCK_HELD\" >> {log}; sleep 600 & wait",
        log = log.display()
    );
    let mut holder = Contender::start(&cluster.clients[c1].http_addr(), &["jobs/cron", &holder_child]);
    assert!(wait_until(DEADLINE, || events(&log).len() == 1), "the first contender holds the lock");
    let mut next = Contender::start(&cluster.clients[c2].http_addr(), &["jobs/cron", &logging_child(&log, "b", "0")]);
    // Once the second contender has its session it is contending: it must wait.
    let sessions = || cluster.servers[0].get("/v1/session/list").json().as_array().map_or(0, Vec::len);
    assert!(wait_until(DEADLINE, || sessions() == 2), "the second contender created its session");
    assert_eq!(events(&log).len(), 1, "the second contender waits");

    cluster.clients[c1].kill9();
    let killed = Instant::now();
    // The holder's monitor cannot reach its agent: it gives up, stops its child and exits 1.
    assert_eq!(holder.wait(DEADLINE), Some(1), "{}", holder.stderr());
    assert!(holder.stderr().contains("Lock lost, killing child"), "{}", holder.stderr());
    // c1 fails in gossip, its serfHealth-bound session is invalidated, the lock-delay (15 s)
    // passes, and the waiting contender runs.
    assert_eq!(next.wait(DEADLINE * 2), Some(0), "{}", next.stderr());
    let took = killed.elapsed();
    let events = events(&log);
    assert_eq!(events.len(), 4, "{events:?}");
    assert_eq!(max_concurrency(&events), 1, "never both: {events:?}");
    assert!(took >= Duration::from_secs(15), "the lock-delay was respected: handed over {took:?} after the kill");
    let tokens: Vec<u64> = events.iter().filter(|e| e.1 == 1).map(|e| e.3.parse().unwrap()).collect();
    assert!(tokens[0] < tokens[1], "the new holder has a larger fencing token: {tokens:?}");
}

#[test]
fn a_semaphore_of_two_runs_exactly_two_children_at_a_time() {
    let agent = Agent::start_dev(&[]);
    let log = scratch("children.log");
    let mut contenders: Vec<Contender> = (0..4)
        .map(|i| {
            Contender::start(
                &agent.http_addr(),
                &["-n", "2", "deploy/web", &logging_child(&log, &format!("r{i}"), "2")],
            )
        })
        .collect();
    for c in &mut contenders {
        assert_eq!(c.wait(DEADLINE), Some(0), "{}", c.stderr());
        assert!(c.stderr().contains("Semaphore slot acquired: deploy/web/ (2 holders at most)"), "{}", c.stderr());
    }
    let events = events(&log);
    assert_eq!(events.len(), 8, "{events:?}");
    assert_eq!(max_concurrency(&events), 2, "two at a time, never three: {events:?}");
    // Every contender cleaned up: no holders left, no contender keys left.
    let keys = agent.get("/v1/kv/deploy/web/?keys").json();
    assert_eq!(keys, serde_json::json!(["deploy/web/.lock"]), "only the holder record is left");
    let record = agent.get("/v1/kv/deploy/web/.lock?raw").json();
    assert_eq!(record, serde_json::json!({"Limit": 2, "Holders": {}}));
}

#[test]
fn a_lock_taken_through_the_http_api_and_legate_lock_exclude_each_other() {
    let agent = Agent::start_dev(&[]);
    let session = agent.put("/v1/session/create", "{}").json()["ID"].as_str().unwrap().to_string();
    let acquire = format!("/v1/kv/app/leader/.lock?acquire={session}&flags={LOCK_FLAGS}");
    assert_eq!(agent.put(&acquire, "").text(), "true");

    // Held elsewhere: legate lock waits, and gives up at its timeout.
    let (code, _, err) = run_cli(&["lock", "-timeout", "2s", "app/leader", "true"], &agent.http_addr());
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("Lock acquisition failed: timed out waiting for the lock"), "{err}");

    // Released: legate lock takes it; while its child runs, the API client cannot.
    let release = format!("/v1/kv/app/leader/.lock?release={session}&flags={LOCK_FLAGS}");
    assert_eq!(agent.put(&release, "").text(), "true");
    let marker = scratch("held");
    let child = format!("touch {}; sleep 3", marker.display());
    let mut lock = Contender::start(&agent.http_addr(), &["app/leader", &child]);
    assert!(wait_until(DEADLINE, || marker.exists()), "{}", lock.stderr());
    assert_eq!(agent.put(&acquire, "").text(), "false", "legate lock holds it");
    assert_eq!(lock.wait(DEADLINE), Some(0), "{}", lock.stderr());
    assert_eq!(agent.put(&acquire, "").text(), "true", "released when the child exited");
}

#[test]
fn lock_reports_bad_input_and_conflicts_clearly() {
    let agent = Agent::start_dev(&[]);
    let addr = agent.http_addr();
    let (code, _, err) = run_cli(&["lock", "only-a-prefix"], &addr);
    assert_eq!(code, 1);
    assert!(err.contains("Missing prefix and child"), "{err}");
    let (code, _, err) = run_cli(&["lock", "-n", "0", "p", "true"], &addr);
    assert_eq!(code, 1);
    assert!(err.contains("-n must be a whole number of at least 1"), "{err}");
    let (code, _, err) = run_cli(&["lock", "-timeout", "soon", "p", "true"], &addr);
    assert_eq!(code, 1);
    assert!(err.contains("Invalid -timeout"), "{err}");

    // A key that is not a lock.
    assert_eq!(agent.put("/v1/kv/plain/.lock", "data").text(), "true");
    let (code, _, err) = run_cli(&["lock", "plain", "true"], &addr);
    assert_eq!(code, 1);
    assert!(err.contains("Lock acquisition failed: Existing key \"plain/.lock\" does not match lock use"), "{err}");
    // A semaphore whose holders use another limit.
    let (code, _, err) = run_cli(&["lock", "-n", "2", "sem", "true"], &addr);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = run_cli(&["lock", "-n", "3", "sem", "true"], &addr);
    assert_eq!(code, 1);
    assert!(err.contains("Semaphore limit conflict: the holders use a limit of 2, not 3"), "{err}");

    // The child's failure is passed on only with -child-exit-code; -shell=false execs directly.
    assert_eq!(run_cli(&["lock", "p", "exit 3"], &addr).0, 0);
    assert_eq!(run_cli(&["lock", "-child-exit-code", "p", "exit 3"], &addr).0, 2);
    let (code, _, err) =
        run_cli(&["lock", "-shell=false", "p", "/bin/sh", "-c", "test \"$CONSUL_LOCK_HELD\" = true"], &addr);
    assert_eq!(code, 0, "{err}");
    assert_eq!(run_cli(&["lock", "-shell=false", "-child-exit-code", "p", "false"], &addr).0, 2);
    // Unreachable agent.
    let (code, _, err) = run_cli(&["lock", "p", "true"], "127.0.0.1:1");
    assert_eq!(code, 1);
    assert!(err.contains("Error creating session"), "{err}");
}
