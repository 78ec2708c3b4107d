//! Real 3-server clusters on loopback: SIGKILL of the leader under a write load, whole-cluster
//! restarts from the data dirs, client agents that forward and fail over, and hostile bytes
//! on the RPC port.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use legate_tests::cluster::Cluster;
use legate_tests::{run_cli, wait_for, wait_until, Http};
use serde_json::Value;

/// How long a new leader may take after the old one died (election timeout 1–2 s at
/// `-raft-multiplier 1`, plus slack for a loaded machine).
const FAILOVER_TIMEOUT: Duration = Duration::from_secs(30);

/// Every key under `prefix` with its value, read from `server` with `consistency`.
fn read_all(c: &Cluster, server: usize, prefix: &str, consistency: &str) -> Option<BTreeMap<String, String>> {
    let r = c.servers[server].try_request("GET", &format!("/v1/kv/{prefix}?recurse&{consistency}"), None).ok()?;
    match r.status {
        200 => {}
        404 => return Some(BTreeMap::new()),
        _ => return None,
    }
    let entries = r.json();
    let mut out = BTreeMap::new();
    for e in entries.as_array()? {
        let key = e["Key"].as_str()?.to_string();
        let value = e["Value"].as_str().map(decode_b64).unwrap_or_default();
        out.insert(key, value);
    }
    Some(out)
}

fn decode_b64(s: &str) -> String {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD.decode(s).expect("base64");
    String::from_utf8(bytes).expect("utf-8 value")
}

/// Writers that PUT distinct keys to the servers' HTTP APIs (moving to the next server on a
/// transport error) and record every write that was acknowledged (`200 true`).
struct Writers {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<(String, String)>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Writers {
    fn start(urls: Vec<String>, writers: usize, prefix: &str) -> Writers {
        Self::start_over(urls, writers, prefix, u64::MAX)
    }

    /// Writers whose keys cycle through `keys` per writer (overwrites, a state that stays put).
    fn start_over(urls: Vec<String>, writers: usize, prefix: &str, keys: u64) -> Writers {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let threads = (0..writers)
            .map(|w| {
                let (stop, acked, urls, prefix) = (stop.clone(), acked.clone(), urls.clone(), prefix.to_string());
                std::thread::spawn(move || {
                    let http = Http::new(Duration::from_secs(20));
                    let mut target = w % urls.len();
                    let mut seq = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let key = format!("{prefix}/w{w}/{:06}", seq % keys);
                        let value = format!("value-{w}-{seq}");
                        seq += 1;
                        let url = format!("{}/v1/kv/{key}", urls[target]);
                        match http.request("PUT", &url, Some(value.as_bytes())) {
                            Ok(r) if r.status == 200 && r.text() == "true" => {
                                acked.lock().unwrap().push((key, value));
                            }
                            Ok(_) => std::thread::sleep(Duration::from_millis(20)),
                            Err(_) => {
                                target = (target + 1) % urls.len();
                                std::thread::sleep(Duration::from_millis(20));
                            }
                        }
                    }
                })
            })
            .collect();
        Writers { stop, acked, threads }
    }

    fn count(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    fn finish(self) -> Vec<(String, String)> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().expect("writer thread");
        }
        Arc::try_unwrap(self.acked).expect("writers joined").into_inner().unwrap()
    }
}

fn missing(acked: &[(String, String)], seen: &BTreeMap<String, String>) -> Vec<String> {
    acked.iter().filter(|(k, v)| seen.get(k) != Some(v)).map(|(k, _)| k.clone()).collect()
}

#[test]
fn sigkill_of_the_leader_loses_no_acknowledged_write_and_it_catches_up_after_restart() {
    let mut c = Cluster::start(3);
    let old = c.wait_agreed_leader(FAILOVER_TIMEOUT).unwrap();
    let urls = c.servers.iter().map(|s| s.url("")).collect();
    let writers = Writers::start(urls, 6, "load");
    assert!(wait_until(Duration::from_secs(30), || writers.count() >= 100), "writes are acknowledged");

    c.servers[old].kill9();
    let at_kill = writers.count();
    let resumed = wait_until(FAILOVER_TIMEOUT, || writers.count() >= at_kill + 100);
    let acked = writers.finish();
    assert!(resumed, "writes resume after the leader's death ({} acked at the kill, {} in all)", at_kill, acked.len());
    let new = c.wait_agreed_leader(FAILOVER_TIMEOUT).unwrap();
    assert_ne!(new, old, "a new leader took over");

    eprintln!("{} writes acknowledged, {at_kill} of them before the leader was killed", acked.len());
    let seen = read_all(&c, new, "load", "consistent").expect("a consistent read from the new leader");
    let lost = missing(&acked, &seen);
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged writes lost: {:?}",
        lost.len(),
        acked.len(),
        &lost[..lost.len().min(10)]
    );

    // The killed server restarts from its data dir and catches up.
    c.servers[old].start();
    let caught_up = wait_until(FAILOVER_TIMEOUT, || {
        read_all(&c, old, "load", "stale").is_some_and(|on_old| missing(&acked, &on_old).is_empty())
    });
    assert!(caught_up, "the restarted server has every acknowledged write");
    c.wait_agreed_leader(FAILOVER_TIMEOUT).expect("the three servers agree on a leader again");
}

#[test]
fn whole_cluster_restarts_from_its_data_dirs_without_bootstrapping_again() {
    let mut c = Cluster::start(3);
    let leader = c.wait_agreed_leader(FAILOVER_TIMEOUT).unwrap();
    for i in 0..20 {
        assert_eq!(c.servers[i % 3].put(&format!("/v1/kv/keep/{i}"), format!("v{i}")).text(), "true");
    }
    let session = c.servers[leader].put("/v1/session/create", r#"{"Name":"survivor"}"#).json()["ID"]
        .as_str()
        .expect("a session ID")
        .to_string();
    let config_before = c.servers[leader].get("/v1/operator/raft/configuration").json();
    let ids_before: Vec<Value> = config_before["Servers"].as_array().unwrap().iter().map(|s| s["ID"].clone()).collect();

    for s in &mut c.servers {
        s.kill9();
    }
    let logs_before: Vec<usize> =
        c.servers.iter().map(|s| s.log().matches("bootstrapping the cluster").count()).collect();
    // Each server bootstraps at most once (one the first leader reached before it had seen
    // the others just follows).
    assert!(logs_before.iter().all(|&n| n <= 1) && logs_before.iter().sum::<usize>() >= 1, "{logs_before:?}");
    for s in &mut c.servers {
        s.start();
    }
    let leader = c.wait_agreed_leader(FAILOVER_TIMEOUT).unwrap();

    let seen = read_all(&c, leader, "keep", "consistent").unwrap();
    assert_eq!(seen.len(), 20, "every key is back: {seen:?}");
    assert_eq!(seen["keep/7"], "v7");
    let info = c.servers[leader].get(&format!("/v1/session/info/{session}")).json();
    assert_eq!(info[0]["Name"], "survivor", "sessions survive a full restart");
    let config_after = c.servers[leader].get("/v1/operator/raft/configuration").json();
    let ids_after: Vec<Value> = config_after["Servers"].as_array().unwrap().iter().map(|s| s["ID"].clone()).collect();
    assert_eq!(ids_before, ids_after, "the same Raft configuration");
    let logs_after: Vec<usize> =
        c.servers.iter().map(|s| s.log().matches("bootstrapping the cluster").count()).collect();
    assert_eq!(logs_before, logs_after, "no server bootstrapped again");
    // And the restarted cluster takes writes.
    assert_eq!(c.servers[(leader + 1) % 3].put("/v1/kv/keep/after", "x").text(), "true");
}

#[test]
fn a_client_agent_forwards_writes_and_blocking_reads_and_fails_over() {
    let mut c = Cluster::start(3);
    let leader = c.wait_agreed_leader(FAILOVER_TIMEOUT).unwrap();
    // The client knows one server only (a follower); it learns the others from it.
    let first = (leader + 1) % 3;
    let ci = c.start_client(&[first]);
    let client = &c.clients[ci];

    assert_eq!(client.put("/v1/kv/fw/a", "1").text(), "true");
    let r = client.get("/v1/kv/fw/a");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("X-Consul-KnownLeader"), Some("true"));
    assert!(r.header("X-Consul-LastContact").is_some());
    let index = r.index();

    // A blocking read through the client returns when a server writes the key.
    let url = client.url(&format!("/v1/kv/fw/a?index={index}&wait=20s"));
    let blocked = std::thread::spawn(move || Http::new(Duration::from_secs(30)).request("GET", &url, None));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(c.servers[leader].put("/v1/kv/fw/a", "2").text(), "true");
    let woke = blocked.join().unwrap().expect("the blocking read answers");
    assert_eq!(woke.status, 200);
    assert!(woke.index() > index, "the blocking read returned with a newer index");
    assert_eq!(decode_b64(woke.json()[0]["Value"].as_str().unwrap()), "2");

    // The client agent registered its node (through the servers) and can hold sessions.
    let nodes = client.get("/v1/catalog/nodes").json();
    assert!(nodes.as_array().unwrap().iter().any(|n| n["Node"] == "c1"), "{nodes}");
    let sid = client.put("/v1/session/create", r#"{"Name":"on-client"}"#);
    assert_eq!(sid.status, 200, "{}", sid.text());

    // Kill the server the client was talking to: the client moves to another one.
    c.servers[first].kill9();
    let client = &c.clients[ci];
    let after = wait_for(FAILOVER_TIMEOUT, || {
        client.try_request("PUT", "/v1/kv/fw/b", Some(b"after")).ok().filter(|r| r.status == 200)
    });
    assert!(after.is_some(), "writes through the client succeed after its server died");
    assert_eq!(client.get("/v1/kv/fw/b?raw").text(), "after");
    // Reads too, and status reflects the survivors.
    let peers = client.get("/v1/status/peers").json();
    assert_eq!(peers.as_array().unwrap().len(), 3, "the dead server is still a configured peer: {peers}");
}

#[test]
fn operator_commands_list_peers_remove_a_server_and_leave_gracefully() {
    let mut c = Cluster::start(3);
    let leader = c.wait_agreed_leader(FAILOVER_TIMEOUT).unwrap();
    let (code, out, err) = run_cli(&["operator", "raft", "list-peers"], &c.servers[leader].http_addr());
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "a header and three servers:\n{out}");
    assert!(lines[0].starts_with("Node") && lines[0].contains("Voter"), "{out}");
    assert_eq!(out.matches("leader").count(), 1, "{out}");
    assert_eq!(out.matches("follower").count(), 2, "{out}");

    // `legate leave` on a follower: it leaves the configuration and exits.
    let leaving = (leader + 1) % 3;
    let (code, out, err) = run_cli(&["leave"], &c.servers[leaving].http_addr());
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Graceful leave complete"), "{out}");
    assert_eq!(c.servers[leaving].wait_exit(Duration::from_secs(20)), Some(0), "the agent exits after leaving");
    let peers = c.servers[leader].get("/v1/status/peers").json();
    assert_eq!(peers.as_array().unwrap().len(), 2, "{peers}");
    assert!(!peers.to_string().contains(&c.servers[leaving].rpc_addr()), "{peers}");

    // Removing an unknown peer is a clear error; removing by address works.
    let r = c.servers[leader].try_request("DELETE", "/v1/operator/raft/peer?address=127.0.0.1:1", None).unwrap();
    assert_eq!(r.status, 404, "{}", r.text());
    let r = c.servers[leader].try_request("DELETE", "/v1/operator/raft/peer", None).unwrap();
    assert_eq!(r.status, 400, "{}", r.text());
    let other = 3 - leader - leaving;
    let addr = c.servers[other].rpc_addr();
    let (code, out, err) =
        run_cli(&["operator", "raft", "remove-peer", &format!("-address={addr}")], &c.servers[leader].http_addr());
    assert_eq!(code, 0, "{out}{err}");
    let peers = c.servers[leader].get("/v1/status/peers").json();
    assert_eq!(peers, serde_json::json!([c.servers[leader].rpc_addr()]));
    // The last voter cannot be removed.
    let own = c.servers[leader].rpc_addr();
    let r = c.servers[leader].try_request("DELETE", &format!("/v1/operator/raft/peer?address={own}"), None).unwrap();
    assert_eq!(r.status, 500, "{}", r.text());
    assert!(r.text().contains("last voter"), "{}", r.text());
    assert_eq!(c.servers[leader].put("/v1/kv/alone", "ok").text(), "true", "the one-server cluster still writes");
}

/// Sends `bytes` on a fresh connection to `addr` and reads until the server closes it.
fn send_raw(addr: &str, bytes: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).expect("connect to the RPC port");
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = stream.write_all(bytes);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    answer
}

#[test]
fn bad_input_on_the_rpc_port_is_rejected_and_logged_and_a_foreign_datacenter_cannot_join() {
    let mut c = Cluster::start(1);
    let addr = c.servers[0].rpc_addr();

    // Garbage bytes, an oversized frame, a frame whose handshake is not MessagePack.
    send_raw(&addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    send_raw(&addr, &[0xff, 0xff, 0xff, 0xff, 1, 2, 3]);
    let mut bad_handshake = 16u32.to_be_bytes().to_vec();
    bad_handshake.extend_from_slice(&0u64.to_be_bytes());
    bad_handshake.extend_from_slice(&[0xc1; 8]);
    send_raw(&addr, &bad_handshake);
    let noise: Vec<u8> = (0..100_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    send_raw(&addr, &noise);

    // A server of another datacenter joins this one's LAN gossip: it is ignored as a server.
    let mut foreign = c.start_foreign_server("dc2", &c.servers[0].lan_addr());
    let ignored = wait_until(Duration::from_secs(20), || c.servers[0].log().contains("server of datacenter \"dc2\""));
    assert!(ignored, "the dc2 server is noticed and ignored");
    assert!(foreign.is_running(), "the foreign server keeps running, alone");
    assert!(foreign.leader().is_none(), "and never joins dc1's cluster");
    foreign.kill9();

    let log = c.servers[0].log();
    assert!(log.contains("RPC connection dropped"), "rejections are logged:\n{log}");
    assert!(log.contains("outside"), "the oversized frame is named:\n{log}");
    assert!(c.servers[0].is_running(), "the server survived");
    assert_eq!(c.servers[0].put("/v1/kv/still", "alive").text(), "true");
}

#[test]
fn a_corrupt_data_dir_is_refused_with_a_clear_error() {
    let mut c = Cluster::start(1);
    for i in 0..50 {
        assert_eq!(c.servers[0].put(&format!("/v1/kv/c/{i}"), "x".repeat(100)).text(), "true");
    }
    c.servers[0].kill9();
    let raft = c.servers[0].data_dir.join("raft");
    let segment = std::fs::read_dir(&raft)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "seg"))
        .expect("a log segment");
    let mut bytes = std::fs::read(&segment).unwrap();
    assert!(bytes.len() > 2_000, "the segment holds the writes");
    // Flip a bit early in the log: damage a crash cannot explain (it is not the tail).
    bytes[600] ^= 0x10;
    std::fs::write(&segment, &bytes).unwrap();

    c.servers[0].start();
    let code = c.servers[0].wait_exit(Duration::from_secs(20));
    assert_eq!(code, Some(1), "the agent refuses to start");
    let log = c.servers[0].log();
    assert!(log.contains("refusing to start on a corrupt disk"), "{log}");
    assert!(log.contains(".seg"), "the file is named: {log}");
}

#[test]
fn snapshot_save_and_restore_through_the_cli_replace_the_state_and_release_blocking_queries() {
    let mut c = Cluster::start(3);
    let leader = c.wait_agreed_leader(FAILOVER_TIMEOUT).unwrap();
    let follower = (leader + 1) % 3;
    let ci = c.start_client(&[follower]);
    for (k, v) in [("snap/a", "1"), ("snap/b", "1")] {
        assert_eq!(c.servers[leader].put(&format!("/v1/kv/{k}"), v).text(), "true");
    }
    let file = c.dir.join("backup.snap");
    let file = file.to_str().unwrap();
    let (code, out, err) = run_cli(&["snapshot", "save", file], &c.servers[follower].http_addr());
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("Saved and verified snapshot"), "{out}");
    let (code, out, err) = run_cli(&["snapshot", "inspect", file], &c.servers[follower].http_addr());
    assert_eq!(code, 0, "{err}");
    assert!(out.lines().any(|l| l.starts_with("KV entries") && l.trim_end().ends_with('2')), "{out}");

    // Change everything, then wait on a key in a blocking query.
    assert_eq!(c.servers[leader].put("/v1/kv/snap/a", "2").text(), "true");
    assert_eq!(c.servers[leader].try_request("DELETE", "/v1/kv/snap/b", None).unwrap().text(), "true");
    assert_eq!(c.servers[leader].put("/v1/kv/snap/c", "new").text(), "true");
    let index = c.servers[leader].get("/v1/kv/snap/c").index();
    let url = c.servers[(leader + 2) % 3].url(&format!("/v1/kv/snap/c?index={index}&wait=30s"));
    let blocked = std::thread::spawn(move || Http::new(Duration::from_secs(40)).request("GET", &url, None));
    std::thread::sleep(Duration::from_millis(300));

    let client = &c.clients[ci];
    let (code, out, err) = run_cli(&["snapshot", "restore", file], &client.http_addr());
    assert_eq!(code, 0, "{out}{err}");
    let woke = blocked.join().unwrap().expect("the blocking query answers");
    assert_eq!(woke.status, 404, "snap/c is gone after the restore: {}", woke.text());

    let seen = read_all(&c, leader, "snap", "consistent").unwrap();
    assert_eq!(seen, BTreeMap::from([("snap/a".into(), "1".into()), ("snap/b".into(), "1".into())]));
    // Writes go on after a restore, with indexes that keep growing.
    let before = c.servers[leader].get("/v1/kv/snap/a").index();
    assert_eq!(c.servers[leader].put("/v1/kv/snap/a", "3").text(), "true");
    assert!(c.servers[leader].get("/v1/kv/snap/a").index() > before);

    // A damaged archive is refused before anything is written.
    let mut bytes = std::fs::read(file).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    let r = c.servers[leader].try_request("PUT", "/v1/snapshot", Some(&bytes)).unwrap();
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("checksum"), "{}", r.text());
    let r = c.servers[leader].try_request("PUT", "/v1/snapshot", Some(b"not a snapshot")).unwrap();
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(c.servers[leader].get("/v1/kv/snap/a?raw").text(), "3");
}

#[test]
fn without_a_quorum_requests_fail_with_no_cluster_leader_and_stale_reads_still_answer() {
    let mut c = Cluster::start(3);
    let leader = c.wait_agreed_leader(FAILOVER_TIMEOUT).unwrap();
    assert_eq!(c.servers[leader].put("/v1/kv/q", "kept").text(), "true");
    let survivor = (leader + 1) % 3;
    // Let the write reach the survivor before cutting it off.
    assert!(wait_until(Duration::from_secs(10), || {
        c.servers[survivor].try_request("GET", "/v1/kv/q?stale&raw", None).is_ok_and(|r| r.text() == "kept")
    }));
    let r = c.servers[survivor].get("/v1/kv/q?stale");
    let last_contact: u64 = r.header("X-Consul-LastContact").unwrap().parse().unwrap();
    assert!(last_contact < 5_000, "a follower hears from its leader every heartbeat: {last_contact} ms");
    for i in 0..3 {
        if i != survivor {
            c.servers[i].kill9();
        }
    }
    // Until its election timeout passes the survivor still names the dead leader, and a
    // write forwarded to it in that window fails with the RPC error (as Consul's does: the
    // frame may have been sent, so it is not retried). Once the survivor knows it has no
    // leader, a write waits for one.
    let survivor_ref = &c.servers[survivor];
    assert!(wait_until(Duration::from_secs(10), || survivor_ref.leader().is_none()), "the survivor loses its leader");
    let started = std::time::Instant::now();
    let r = c.servers[survivor].try_request("PUT", "/v1/kv/q", Some(b"lost")).unwrap();
    let waited = started.elapsed();
    assert_eq!(r.status, 500, "{}", r.text());
    assert_eq!(r.text(), "No cluster leader");
    assert!(waited >= Duration::from_secs(5), "the request waited for a leader first ({waited:?})");
    let r = c.servers[survivor].try_request("GET", "/v1/kv/q", None).unwrap();
    assert_eq!((r.status, r.text().as_str()), (500, "No cluster leader"));
    let r = c.servers[survivor].try_request("GET", "/v1/kv/q?stale&raw", None).unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "kept"), "stale reads answer without a leader");
    assert_eq!(r.header("X-Consul-KnownLeader"), Some("false"));
    let last_contact: u64 = r.header("X-Consul-LastContact").unwrap().parse().unwrap();
    assert!(last_contact >= 5_000, "LastContact counts the time since the leader was heard: {last_contact} ms");
}

/// Bytes of every file under `dir`.
fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .filter_map(Result::ok)
            .map(|e| if e.path().is_dir() { dir_bytes(&e.path()) } else { e.metadata().map_or(0, |m| m.len()) })
            .sum()
    })
}

#[test]
fn snapshots_keep_the_data_dir_bounded_under_a_steady_write_load() {
    // Small thresholds so a few thousand writes go through many snapshots and segments.
    let config = legate_tests::temp_file(
        "compaction.json",
        r#"{"raft_snapshot_threshold": 200, "raft_trailing_logs": 100, "raft_log_segment_bytes": 65536}"#,
    );
    let config = config.to_str().unwrap();
    let mut c = Cluster::start_with(3, &["-config-file", config]);
    c.wait_agreed_leader(FAILOVER_TIMEOUT).unwrap();
    let raft_dirs: Vec<_> = c.servers.iter().map(|s| s.data_dir.join("raft")).collect();
    let urls: Vec<String> = c.servers.iter().map(|s| s.url("")).collect();

    let mut sizes = Vec::new();
    let mut written = 0;
    for round in 0..3 {
        // The writers overwrite the same 8×20 keys: the state stays small while the log grows.
        let writers = Writers::start_over(urls.clone(), 8, "steady", 20);
        assert!(wait_until(Duration::from_secs(60), || writers.count() >= 1_500), "round {round}: writes acknowledged");
        written += writers.finish().len();
        sizes.push(raft_dirs.iter().map(|d| dir_bytes(d)).max().unwrap());
    }
    eprintln!("{written} writes; largest raft dir after each round: {sizes:?} bytes");
    for d in &raft_dirs {
        let files: Vec<(String, u64)> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap())
            .map(|e| (e.file_name().to_string_lossy().into_owned(), e.metadata().unwrap().len()))
            .collect();
        eprintln!("{}: {files:?}", d.display());
    }
    // Without compaction the log alone would hold every write (several hundred bytes each).
    let bound = 256 * 1024;
    assert!(sizes.iter().all(|&s| s < bound), "the data dir stays under {bound} bytes: {sizes:?}");
    assert!(written * 300 > 4 * bound as usize, "the run wrote well beyond the bound ({written} writes)");
    for d in &raft_dirs {
        assert!(d.join("snapshot").is_file(), "a snapshot file in {}", d.display());
    }
    // A server restarted from its compacted dir has the state.
    c.servers[1].kill9();
    c.servers[1].start();
    assert_eq!(c.servers[0].put("/v1/kv/steady/last", "x").text(), "true");
    assert!(wait_until(FAILOVER_TIMEOUT, || {
        c.servers[1].try_request("GET", "/v1/kv/steady/last?stale&raw", None).is_ok_and(|r| r.text() == "x")
    }));
}
