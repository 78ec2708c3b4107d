//! User events across real processes (`legate event`, `/v1/event/*`, `legate watch -type
//! event`): an event fired at a client agent reaches the servers through the LAN gossip pool
//! and shows in their `/v1/event/list` with Consul's shape and index; a node filter keeps an
//! event out of the lists of agents it does not match; a watch prints the events; bad input is
//! refused with a clear message.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use legate_tests::cluster::{Cluster, Proc};
use legate_tests::{legate_bin, run_cli, unique_node_name, wait_for, wait_until, Agent};
use serde_json::Value;

/// How long an event may take to reach another agent on a loaded machine.
const DEADLINE: Duration = Duration::from_secs(10);

/// `legate event <args>` at `agent`: the event ID it printed.
fn fire(agent: &Proc, args: &[&str]) -> String {
    let mut full = vec!["event"];
    full.extend_from_slice(args);
    let (code, out, err) = run_cli(&full, &agent.http_addr());
    assert_eq!(code, 0, "legate {full:?}: stdout {out:?} stderr {err:?}");
    let id = out.trim().strip_prefix("Event ID: ").unwrap_or_else(|| panic!("no event ID in {out:?}"));
    assert_eq!(id.len(), 36, "a UUID: {id:?}");
    id.to_string()
}

/// The events in `agent`'s `/v1/event/list[?name=]`.
fn listed(agent: &Proc, query: &str) -> Vec<Value> {
    let r = agent.get(&format!("/v1/event/list{query}"));
    assert_eq!(r.status, 200, "{}", r.text());
    r.json().as_array().cloned().unwrap_or_else(|| panic!("not a list: {}", r.text()))
}

fn has(events: &[Value], id: &str) -> bool {
    events.iter().any(|e| e["ID"] == id)
}

/// Consul's index of an event list: the last ID's two 8-byte halves XORed.
fn folded(id: &str) -> u64 {
    let hex: String = id.chars().filter(|c| *c != '-').collect();
    u64::from_str_radix(&hex[..16], 16).unwrap() ^ u64::from_str_radix(&hex[16..], 16).unwrap()
}

/// A running `legate watch`, killed on drop.
struct Watch {
    child: Child,
    out: PathBuf,
}

impl Watch {
    fn start(http_addr: &str, args: &[&str]) -> Watch {
        let dir = std::env::temp_dir().join("legate-e2e");
        std::fs::create_dir_all(&dir).expect("create temp dir");
        let out = dir.join(format!("watch-{}.out", unique_node_name()));
        let child = Command::new(legate_bin())
            .arg("watch")
            .arg(format!("-http-addr={http_addr}"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(File::create(&out).expect("create stdout file"))
            .stderr(Stdio::null())
            .env_remove("CONSUL_HTTP_ADDR")
            .spawn()
            .expect("spawn legate watch");
        Watch { child, out }
    }

    /// The complete JSON documents printed so far.
    fn docs(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        serde_json::Deserializer::from_str(&text).into_iter::<Value>().map_while(Result::ok).collect()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.out);
    }
}

#[test]
fn an_event_fired_at_a_client_reaches_the_servers_lists_and_watches_and_filters_hold() {
    // Set up: three servers (s1..s3) and a client (c1); a watch on s2 for `deploy` events.
    let mut cluster = Cluster::start(3);
    let c = cluster.start_client(&[0, 1, 2]);
    let client = &cluster.clients[c];
    let (s1, s2, s3) = (&cluster.servers[0], &cluster.servers[1], &cluster.servers[2]);
    assert!(
        wait_until(DEADLINE, || s2.get("/v1/agent/members").json().as_array().is_some_and(|m| m.len() == 4)),
        "the client joins the LAN pool"
    );
    let watch = Watch::start(&s2.http_addr(), &["-type", "event", "-name", "deploy"]);
    assert!(wait_until(DEADLINE, || !watch.docs().is_empty()), "the watch prints the (empty) list first");

    // Act: an unfiltered event and one for a node that does not exist, both at the client.
    let deploy = fire(client, &["-name", "deploy", "v2"]);
    let nowhere = fire(client, &["-name", "deploy", "-node", "^no-such-node$", "v3"]);
    let only_s1 = fire(client, &["-name", "restart", "-node", "^s1$"]);

    // Assert: the event reaches another agent, in Consul's shape, with Consul's index.
    let events = wait_for(DEADLINE, || Some(listed(s2, "?name=deploy")).filter(|l| has(l, &deploy)))
        .unwrap_or_else(|| panic!("s2 never listed event {deploy}: {:?}", listed(s2, "")));
    let e = events.iter().find(|e| e["ID"] == deploy.as_str()).unwrap();
    assert_eq!(e["Name"], "deploy");
    assert_eq!(e["Payload"], base64::engine::general_purpose::STANDARD.encode("v2"));
    assert_eq!((e["NodeFilter"].as_str(), e["Version"].as_u64()), (Some(""), Some(1)));
    let r = s2.get("/v1/event/list?name=deploy");
    let last = r.json().as_array().unwrap().last().unwrap()["ID"].as_str().unwrap().to_string();
    assert_eq!(r.index(), folded(&last), "X-Consul-Index folds the last event's ID");
    assert!(wait_until(DEADLINE, || has(&listed(s3, ""), &deploy)), "s3 lists the event too");
    assert!(wait_until(DEADLINE, || has(&listed(client, ""), &deploy)), "the firing agent lists it");

    // The node filter: only s1 keeps `restart`; nobody keeps the event for no node.
    assert!(wait_until(DEADLINE, || has(&listed(s1, ""), &only_s1)), "s1 matches ^s1$");
    for agent in [client, s1, s2, s3] {
        let all = listed(agent, "");
        assert!(!has(&all, &nowhere), "{} kept an event filtered to no node: {all:?}", agent.name);
        if agent.name != "s1" {
            assert!(!has(&all, &only_s1), "{} kept an event for s1: {all:?}", agent.name);
        }
    }
    assert!(listed(s2, "?name=restart").is_empty(), "?name= filters the list");

    // The watch printed the deploy event (a JSON list holding it).
    let printed =
        wait_for(DEADLINE, || watch.docs().into_iter().find(|d| d.as_array().is_some_and(|l| has(l, &deploy))));
    let printed = printed.unwrap_or_else(|| panic!("the watch never printed {deploy}: {:?}", watch.docs()));
    assert!(printed.as_array().unwrap().iter().all(|e| e["Name"] == "deploy"), "{printed:?}");
}

#[test]
fn a_blocking_list_answers_when_an_event_arrives_and_bad_events_are_refused() {
    // Set up: a dev agent and the index of its empty event list.
    let agent = Agent::start_dev(&[]);
    let empty = agent.get("/v1/event/list");
    assert_eq!((empty.json(), empty.index()), (serde_json::json!([]), 1), "no events: index 1, like Consul");

    // Act: a blocking list at index 1 while an event is fired over HTTP.
    let http = agent.client();
    let url = agent.url("/v1/event/list?index=1&wait=30s");
    let waiter = std::thread::spawn(move || http.request("GET", &url, None).expect("the blocking list answers"));
    std::thread::sleep(Duration::from_millis(300));
    assert!(!waiter.is_finished(), "the list blocks until an event arrives");
    let fired = agent.put("/v1/event/fire/deploy?node=.", "");
    let answer = waiter.join().expect("the waiter thread");

    // Assert: the fire answer has Consul's shape; the blocking list answered with the event.
    assert_eq!(fired.status, 200, "{}", fired.text());
    let fired = fired.json();
    let id = fired["ID"].as_str().unwrap().to_string();
    assert_eq!(
        (&fired["Name"], &fired["Payload"], &fired["NodeFilter"], &fired["LTime"], &fired["Version"]),
        (&Value::from("deploy"), &Value::Null, &Value::from("."), &Value::from(0), &Value::from(1))
    );
    assert_eq!(answer.status, 200);
    assert!(has(answer.json().as_array().unwrap(), &id), "{}", answer.text());
    assert_eq!(answer.index(), folded(&id));

    // Bad input: 400s with a clear text, and the CLI's exit 1.
    let big = vec![b'x'; 600];
    let too_big = agent.put("/v1/event/fire/deploy", &big);
    assert_eq!(too_big.status, 400, "{}", too_big.text());
    assert!(too_big.text().contains("exceeds size limit"), "{}", too_big.text());
    let no_name = agent.put("/v1/event/fire/", "");
    assert_eq!((no_name.status, no_name.text().contains("Missing name")), (400, true), "{}", no_name.text());
    let bad_re = agent.put("/v1/event/fire/deploy?node=(", "");
    assert_eq!(bad_re.status, 400, "{}", bad_re.text());
    assert!(bad_re.text().contains("Invalid node filter"), "{}", bad_re.text());
    let tag_alone = agent.put("/v1/event/fire/deploy?tag=v1", "");
    assert_eq!(tag_alone.status, 400, "{}", tag_alone.text());
    let (code, _, err) = run_cli(&["event", "v1"], &agent.http_addr());
    assert_eq!(code, 1);
    assert!(err.contains("Event name must be specified"), "{err}");
}
