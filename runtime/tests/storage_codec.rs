//! The log's entry codec (`legate_core::storage::codec`): every kind of entry round-trips,
//! byte-identically, and garbage is an error. Here rather than in core, because a concrete
//! openraft type config needs an async runtime, and the core depends on none.

use std::collections::{BTreeMap, BTreeSet};

use openraft::alias::EntryOf;
use openraft::{EntryPayload, Membership};

use legate_core::catalog::*;
use legate_core::raft::{ServerNode, TypeConfig};
use legate_core::storage::codec::{decode, encode};

type Tc = TypeConfig<openraft_rt_tokio::TokioRuntime>;

fn entry(index: u64, payload: EntryPayload<Request, u64, ServerNode>) -> EntryOf<Tc> {
    openraft::Entry { log_id: openraft::testing::log_id::<Tc>(3, 2, index), payload }
}

fn normal(index: u64, command: Command) -> EntryOf<Tc> {
    entry(index, EntryPayload::Normal(Request { now_ms: 1_700_000_000_000 + index, command }))
}

fn every_kind_of_entry() -> Vec<EntryOf<Tc>> {
    let check = HealthCheck {
        node: "n1".into(),
        check_id: "web-http".into(),
        definition: CheckDefinition {
            http: "http://127.0.0.1:8080/health".into(),
            interval: 10_000_000_000,
            timeout: 1_500_000_000,
            header: BTreeMap::from([("X-A".into(), vec!["b".into()])]),
            ..Default::default()
        },
        ..Default::default()
    };
    let registration = Registration {
        node: Node { node: "n1".into(), address: "10.0.0.1".into(), ..Default::default() },
        skip_node_update: false,
        service: Some(Service { id: "web".into(), service: "web".into(), port: 80, ..Default::default() }),
        checks: vec![check],
    };
    let kv = |verb, value: &[u8]| KvOp {
        verb,
        key: "a/b".into(),
        value: value.to_vec(),
        flags: 42,
        index: 7,
        session: String::new(),
    };
    let voters = BTreeSet::from([1u64, 2, 3]);
    let nodes: BTreeMap<u64, ServerNode> =
        voters.iter().map(|&id| (id, ServerNode { name: format!("s{id}"), rpc_addr: "x:8300".into() })).collect();
    vec![
        entry(1, EntryPayload::Blank),
        entry(2, EntryPayload::Membership(Membership::new(vec![voters], nodes).expect("valid"))),
        normal(3, Command::Register(Box::new(registration))),
        normal(
            4,
            Command::Deregister(Deregistration { node: "n1".into(), service_id: Some("web".into()), check_id: None }),
        ),
        normal(5, Command::Kv(kv(KvVerb::Set, &[0, 1, 127, 128, 255]))),
        normal(6, Command::Kv(kv(KvVerb::DeleteCas, b""))),
        normal(7, Command::SessionCreate(Session { id: "s".into(), ttl: "15s".into(), ..Default::default() })),
        normal(8, Command::SessionDestroy { id: "s".into() }),
        normal(9, Command::Txn(vec![TxnOp::Kv(kv(KvVerb::Cas, b"v"))])),
        normal(10, Command::ReapTombstones { age_ms: 900_000 }),
    ]
}

#[test]
fn every_kind_of_entry_round_trips() {
    for e in every_kind_of_entry() {
        let bytes = encode(&e).expect("encodes");
        let back: EntryOf<Tc> = decode(&bytes).expect("decodes");
        assert_eq!(back, e);
        assert_eq!(encode(&back).expect("encodes"), bytes, "deterministic");
    }
}

#[test]
fn binary_values_stay_compact() {
    let value: Vec<u8> = (0..=255).cycle().take(64 * 1024).collect();
    let e = normal(
        1,
        Command::Kv(KvOp {
            verb: KvVerb::Set,
            key: "k".into(),
            value: value.clone(),
            flags: 0,
            index: 0,
            session: String::new(),
        }),
    );
    let size = encode(&e).expect("encodes").len();
    assert!(size < value.len() * 2, "{size} bytes for a {}-byte value", value.len());
}

#[test]
fn garbage_is_an_error_not_a_panic() {
    for bytes in [&b""[..], b"\xff", b"\x81\xa3abc\x01", &[0x92; 64]] {
        assert!(decode::<EntryOf<Tc>>(bytes).is_err());
    }
}
