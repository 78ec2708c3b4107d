//! Scenario files: every file under `scenarios/` parses and validates, and malformed input is
//! rejected with an error that names the file, the line and the key.

use std::path::{Path, PathBuf};

use sim::scenario::{
    Bootstrap, Checker, DcTarget, ErrorKind, Fault, FaultKind, Nemesis, Partition, Plant, Scenario, ScenarioError,
    Target, Tier,
};

/// A valid fast-tier scenario; each malformed case below changes one thing in it. Line numbers
/// in the expected messages refer to this text.
const BASE: &str = r#"name = "x"
description = "a test scenario"
checkers = ["linearizability", "raft-safety", "liveness"]

[topology]
servers = 3

[workloads.kv]
keys = 2
clients = 2
rate_per_s = 10

[nemesis]
mode = "schedule"

[[nemesis.schedule]]
at = "1s"
fault = "partition"
shape = "isolate-leader"
duration = "2s"

[phases]
safety = "10s"
liveness = "5s"
"#;

const FAST: &str = "scenarios/fast/x.toml";
const NEGATIVE: &str = "scenarios/negative/x.toml";

fn scenarios_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("scenarios")
}

/// Every `.toml` under `dir`, sorted, walked without recursion.
fn toml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|ext| ext == "toml") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// `BASE` with `from` replaced by `to` (which must occur exactly once).
fn edit(from: &str, to: &str) -> String {
    assert_eq!(BASE.matches(from).count(), 1, "{from:?} must occur once in BASE");
    BASE.replacen(from, to, 1)
}

fn reject(text: &str, path: &str) -> ScenarioError {
    match Scenario::from_str(text, path) {
        Ok(scenario) => panic!("accepted a malformed scenario: {scenario:#?}"),
        Err(e) => e,
    }
}

#[test]
fn every_scenario_file_parses_and_validates() {
    let files = toml_files(&scenarios_dir());
    assert!(files.len() >= 8, "expected the shipped scenarios, found {files:?}");
    let mut failures = Vec::new();
    let mut planted = Vec::new();
    for file in &files {
        match Scenario::parse(file) {
            Ok(scenario) => {
                assert_ne!(scenario.tier, Tier::Other, "{}: every shipped file is in a tier folder", file.display());
                assert_eq!(scenario.tier == Tier::Negative, scenario.plant.is_some(), "{}", file.display());
                if let Some(plant) = scenario.plant {
                    assert!(scenario.checkers.contains(&plant.caught_by));
                    planted.push(plant.bug);
                }
            }
            Err(e) => failures.push(e.to_string()),
        }
    }
    assert!(failures.is_empty(), "invalid scenario files:\n{}", failures.join("\n"));
    planted.sort();
    planted.dedup();
    assert_eq!(
        planted,
        [
            Plant::AckBeforeSync,
            Plant::StaleConsistentRead,
            Plant::IgnoreLockDelay,
            Plant::ForgetSessionInvalidation,
            Plant::ForwardWriteLocally
        ],
        "every plant has a negative scenario (some have more than one)"
    );
}

#[test]
fn every_tier_folder_holds_scenarios() {
    for tier in ["fast", "slow", "negative"] {
        let files = toml_files(&scenarios_dir().join(tier));
        assert!(!files.is_empty(), "scenarios/{tier}/ is empty");
    }
    assert!(toml_files(&scenarios_dir().join("negative")).len() >= 4);
}

#[test]
fn the_base_text_is_valid_and_reads_into_types() {
    let scenario = Scenario::from_str(BASE, FAST).expect("BASE is valid");
    assert_eq!(scenario.name, "x");
    assert_eq!(scenario.tier, Tier::Fast);
    assert_eq!(scenario.topology.servers, 3);
    assert_eq!(scenario.phases.safety_ns, 10_000_000_000);
    assert_eq!(scenario.phases.liveness_ns, 5_000_000_000);
    assert_eq!(scenario.checkers, [Checker::Linearizability, Checker::RaftSafety, Checker::Liveness]);
    let kv = scenario.kv().expect("kv workload");
    assert_eq!((kv.keys, kv.clients, kv.rate_per_s), (2, 2, 10));
    let Nemesis::Schedule(entries) = &scenario.nemesis else { panic!("schedule expected") };
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].at_ns, 1_000_000_000);
    assert_eq!(entries[0].duration_ns, 2_000_000_000);
    assert_eq!(entries[0].fault, Fault::Partition(Partition::IsolateLeader));
    assert!(scenario.plant.is_none());
}

#[test]
fn schedule_entries_read_targets_and_sort_by_start() {
    let text = edit(
        "[phases]",
        r#"[[nemesis.schedule]]
at = "500ms"
fault = "clock"
target = 2
offset = "-250ms"
drift_ppm = -300
duration = "1s"

[[nemesis.schedule]]
at = "3s"
fault = "partition"
shape = "one-way"
target = "follower"
direction = "inbound"
duration = "1s"

[phases]"#,
    );
    let scenario = Scenario::from_str(&text, FAST).expect("valid");
    let Nemesis::Schedule(entries) = &scenario.nemesis else { panic!("schedule expected") };
    let kinds: Vec<FaultKind> = entries.iter().map(|e| e.fault.kind()).collect();
    assert_eq!(kinds, [FaultKind::Clock, FaultKind::Partition, FaultKind::Partition]);
    assert_eq!(entries[0].fault, Fault::Clock { target: Target::Node(2), offset_ns: -250_000_000, drift_ppm: -300 });
    assert_eq!(
        entries[2].fault,
        Fault::Partition(Partition::OneWay { target: Target::Follower, direction: sim::scenario::Direction::Inbound })
    );
}

#[test]
fn unknown_key_names_line_and_field() {
    let e = reject(&edit("servers = 3", "servres = 3"), FAST);
    assert_eq!(e.kind, ErrorKind::Schema);
    assert_eq!(
        e.to_string(),
        "scenarios/fast/x.toml:6:1: topology.servres: unknown field `servres`, expected one of `servers`, \
         `bootstrap`, `datacenters`, `wan_latency`"
    );
}

#[test]
fn unknown_key_in_a_schedule_entry_names_its_index() {
    let e = reject(&edit("duration = \"2s\"", "duration = \"2s\"\ntarget_node = 1"), FAST);
    assert_eq!(e.kind, ErrorKind::Schema);
    assert_eq!(e.line(), Some(21));
    assert_eq!(e.field.as_deref(), Some("nemesis.schedule[0].target_node"));
    assert!(e.to_string().starts_with("scenarios/fast/x.toml:21:1: nemesis.schedule[0].target_node: unknown field"));
}

#[test]
fn unknown_table_is_rejected() {
    let e = reject(&edit("[workloads.kv]", "[workloads.kvv]"), FAST);
    assert_eq!(e.to_string(), "scenarios/fast/x.toml:8:12: workloads.kvv: unknown field `kvv`, expected one of `kv`, `lock`, `service`, `txn`");
}

#[test]
fn wrong_type_names_line_and_field() {
    let e = reject(&edit("keys = 2", "keys = \"two\""), FAST);
    assert_eq!(e.kind, ErrorKind::Schema);
    assert_eq!(
        e.to_string(),
        "scenarios/fast/x.toml:9:8: workloads.kv.keys: invalid type: string \"two\", expected u32"
    );
}

#[test]
fn bad_duration_names_line_and_field() {
    let e = reject(&edit("safety = \"10s\"", "safety = \"10\""), FAST);
    assert_eq!(e.kind, ErrorKind::Schema);
    assert_eq!(
        e.to_string(),
        "scenarios/fast/x.toml:23:10: phases.safety: missing unit in duration \"10\" (write a Go duration such \
         as \"30s\" or \"500ms\")"
    );
}

#[test]
fn unknown_name_in_a_list_names_its_index() {
    let e = reject(&edit("\"raft-safety\"", "\"raft-safty\""), FAST);
    assert_eq!(e.line(), Some(3));
    assert_eq!(e.field.as_deref(), Some("checkers[1]"));
    assert!(e.message.starts_with("unknown variant `raft-safty`, expected one of `linearizability`"), "{e}");
}

#[test]
fn missing_key_names_its_table_and_the_key() {
    let e = reject(&edit("rate_per_s = 10\n", ""), FAST);
    assert_eq!(e.to_string(), "scenarios/fast/x.toml:8:1: workloads.kv.rate_per_s: missing field `rate_per_s`");
}

#[test]
fn negative_duration_is_rejected() {
    let e = reject(&edit("at = \"1s\"", "at = \"-1s\""), FAST);
    assert_eq!(e.field.as_deref(), Some("nemesis.schedule[0].at"));
    assert!(e.message.starts_with("invalid duration \"-1s\" (write a Go duration"), "{e}");
}

#[test]
fn top_level_key_after_a_table_gets_a_hint() {
    let text = format!("{BASE}checkers = [\"liveness\"]\n");
    let e = reject(&text, FAST);
    assert_eq!(e.field.as_deref(), Some("phases.checkers"));
    assert_eq!(e.line(), Some(25));
    assert!(e.message.ends_with("top-level keys must come before the first [table] header)"), "{e}");
}

#[test]
fn missing_top_level_key_names_the_file_and_key() {
    let e = reject(&edit("name = \"x\"\n", ""), FAST);
    assert_eq!(e.to_string(), "scenarios/fast/x.toml: name: missing field `name`");
}

#[test]
fn syntax_error_names_line_and_column() {
    let e = reject(&edit("[topology]", "[topology"), FAST);
    assert_eq!(e.kind, ErrorKind::Syntax);
    assert_eq!(e.line(), Some(5));
    assert!(e.to_string().starts_with("scenarios/fast/x.toml:5:10: "), "{e}");
}

#[test]
fn duplicate_key_is_named() {
    let e = reject(&edit("keys = 2", "keys = 2\nkeys = 3"), FAST);
    assert_eq!(e.to_string(), "scenarios/fast/x.toml:10:1: duplicate key `keys`");
}

#[test]
fn four_servers_are_rejected() {
    let e = reject(&edit("servers = 3", "servers = 4"), FAST);
    assert_eq!(e.kind, ErrorKind::Invalid);
    assert_eq!(
        e.to_string(),
        "scenarios/fast/x.toml:6:11: topology.servers: must be 1, 3 or 5 voters (got 4); an even count adds no \
         fault tolerance"
    );
}

#[test]
fn schedule_entry_after_the_safety_phase_is_rejected() {
    let e = reject(&edit("at = \"1s\"", "at = \"12s\""), FAST);
    assert_eq!(e.kind, ErrorKind::Invalid);
    assert_eq!(
        e.to_string(),
        "scenarios/fast/x.toml:17:6: nemesis.schedule[0].at: fault starts at 12s, but the safety phase ends at \
         10s (phases.safety); faults run only in the safety phase"
    );
}

#[test]
fn schedule_entry_outlasting_the_safety_phase_is_rejected() {
    let e = reject(&edit("duration = \"2s\"", "duration = \"9500ms\""), FAST);
    assert_eq!(e.line(), Some(20));
    assert_eq!(e.field.as_deref(), Some("nemesis.schedule[0].duration"));
    assert!(e.message.starts_with("fault ends at 10.5s, after the safety phase ends at 10s"), "{e}");
}

#[test]
fn zero_duration_is_rejected() {
    let e = reject(&edit("liveness = \"5s\"", "liveness = \"0s\""), FAST);
    assert_eq!(e.to_string(), "scenarios/fast/x.toml:24:12: phases.liveness: must be at least 1s (got 0s)");
}

#[test]
fn fast_tier_run_is_bounded() {
    let e = reject(&edit("safety = \"10s\"", "safety = \"2m\""), FAST);
    assert_eq!(e.field.as_deref(), Some("phases"));
    assert_eq!(e.line(), Some(22));
    assert!(e.message.contains("safety + liveness must be at most 1m0s (got 2m5s)"), "{e}");
    // The same run is fine in the slow tier.
    Scenario::from_str(&edit("safety = \"10s\"", "safety = \"2m\""), "scenarios/slow/x.toml").expect("slow tier");
}

#[test]
fn bridge_partition_needs_three_servers() {
    let text = edit("servers = 3", "servers = 1").replace("isolate-leader", "bridge");
    let e = reject(&text, FAST);
    assert_eq!(
        e.to_string(),
        "scenarios/fast/x.toml:19:9: nemesis.schedule[0].shape: partition shape \"bridge\" needs at least 3 servers \
         (topology.servers = 1)"
    );
}

#[test]
fn a_lone_server_cannot_be_partitioned() {
    let e = reject(&edit("servers = 3", "servers = 1"), FAST);
    assert_eq!(e.field.as_deref(), Some("nemesis.schedule[0].shape"));
    assert!(e.message.starts_with("partition shape \"isolate-leader\" needs at least 2 servers"), "{e}");

    let random = r#"[nemesis]
mode = "random"
faults = ["crash", "partition"]
interval = "1s"

[phases]"#;
    let text = edit("servers = 3", "servers = 1").replace("\"linearizability\", ", "");
    let text = text.replace(&text[text.find("[nemesis]").unwrap()..text.find("[phases]").unwrap() + 8], random);
    let e = reject(&text, FAST);
    assert_eq!(
        e.to_string(),
        "scenarios/fast/x.toml:15:20: nemesis.faults[1]: partitions cut links between servers, and \
         topology.servers = 1 has none"
    );
}

#[test]
fn one_way_partition_needs_a_direction() {
    let e = reject(&edit("shape = \"isolate-leader\"", "shape = \"one-way\"\ntarget = \"leader\""), FAST);
    assert_eq!(e.field.as_deref(), Some("nemesis.schedule[0].direction"));
    assert_eq!(e.line(), Some(16), "reported at the entry, since the key is missing");
    assert!(e.message.starts_with("a \"one-way\" partition needs `direction`"), "{e}");
}

#[test]
fn a_parameter_of_another_fault_kind_is_rejected() {
    let e = reject(&edit("duration = \"2s\"", "duration = \"2s\"\nprobability = 0.5"), FAST);
    assert_eq!(
        e.to_string(),
        "scenarios/fast/x.toml:21:15: nemesis.schedule[0].probability: `probability` does not apply to fault \
         \"partition\", which takes: at, fault, duration, shape, target, direction"
    );
}

#[test]
fn target_index_must_name_a_server() {
    let text = edit("shape = \"isolate-leader\"", "shape = \"isolate-node\"\ntarget = 3");
    let e = reject(&text, FAST);
    assert_eq!(e.field.as_deref(), Some("nemesis.schedule[0].target"));
    assert!(e.message.contains("server index 3 is out of range"), "{e}");
}

#[test]
fn linearizability_needs_the_kv_workload() {
    let text = edit("[workloads.kv]\nkeys = 2", "[workloads.txn]\nkeys = 2");
    let e = reject(&text, FAST);
    assert_eq!(
        e.to_string(),
        "scenarios/fast/x.toml:3:13: checkers[0]: \"linearizability\" checks the KV CAS-register workload: add \
         [workloads.kv]"
    );
}

#[test]
fn lock_safety_needs_the_lock_workload() {
    let e = reject(&edit("\"liveness\"]", "\"liveness\", \"lock-safety\"]"), FAST);
    assert_eq!(e.field.as_deref(), Some("checkers[3]"));
    assert!(e.message.contains("add [workloads.lock]"), "{e}");
}

#[test]
fn name_must_match_the_file() {
    let e = reject(BASE, "scenarios/fast/y.toml");
    assert_eq!(e.field.as_deref(), Some("name"));
    assert_eq!(e.line(), Some(1));
}

const PLANT: &str = r#"
[plant]
bug = "stale-consistent-read"
caught_by = "linearizability"
seed_budget = 20
"#;

#[test]
fn negative_scenario_validates_with_its_plant() {
    let scenario = Scenario::from_str(&format!("{BASE}{PLANT}"), NEGATIVE).expect("valid negative scenario");
    assert_eq!(scenario.tier, Tier::Negative);
    let plant = scenario.plant.expect("plant");
    assert_eq!(
        (plant.bug, plant.caught_by, plant.seed_budget),
        (Plant::StaleConsistentRead, Checker::Linearizability, 20)
    );
    assert!(scenario.expects_failure());
}

#[test]
fn negative_scenario_without_expected_checker_is_rejected() {
    let text = format!("{BASE}{}", PLANT.replace("caught_by = \"linearizability\"\n", ""));
    let e = reject(&text, NEGATIVE);
    assert_eq!(e.kind, ErrorKind::Invalid);
    assert_eq!(
        e.to_string(),
        "scenarios/negative/x.toml:26:1: plant.caught_by: a negative scenario must name the checker expected to \
         catch its plant (`caught_by`), one of the scenario's checkers"
    );
}

#[test]
fn negative_scenario_without_plant_is_rejected() {
    let e = reject(BASE, NEGATIVE);
    assert_eq!(e.field.as_deref(), Some("plant"));
    assert_eq!(e.location, None, "no [plant] table to point at");
    assert!(e.to_string().starts_with("scenarios/negative/x.toml: plant: a negative scenario must plant a bug"));
}

#[test]
fn expected_checker_must_be_among_the_checkers() {
    let text = format!("{BASE}{}", PLANT.replace("caught_by = \"linearizability\"", "caught_by = \"durability\""));
    let e = reject(&text, NEGATIVE);
    assert_eq!(
        e.to_string(),
        "scenarios/negative/x.toml:28:13: plant.caught_by: \"durability\" is not among the scenario's checkers"
    );
}

#[test]
fn plant_in_a_non_negative_scenario_is_rejected() {
    let e = reject(&format!("{BASE}{PLANT}"), FAST);
    assert_eq!(e.kind, ErrorKind::Invalid);
    assert_eq!(
        e.to_string(),
        "scenarios/fast/x.toml:26:1: plant: only a negative scenario (in scenarios/negative/) may plant a bug; \
         this file is in the fast tier"
    );
}

#[test]
fn plant_that_the_scenario_cannot_provoke_is_rejected() {
    let text = format!("{BASE}{}", PLANT.replace("stale-consistent-read", "ack-before-sync"));
    let e = reject(&text, NEGATIVE);
    assert_eq!(e.field.as_deref(), Some("nemesis"));
    assert!(e.message.contains("the nemesis needs \"crash\" faults"), "{e}");
}

#[test]
fn random_mode_rejects_schedule_keys_and_needs_faults() {
    let e = reject(&edit("mode = \"schedule\"", "mode = \"random\""), FAST);
    assert_eq!(e.field.as_deref(), Some("nemesis.schedule"));
    assert!(e.message.contains("apply only to mode = \"schedule\""), "{e}");

    let random = r#"[nemesis]
mode = "random"
interval = "1s"

[phases]"#;
    let text = BASE.replace(&BASE[BASE.find("[nemesis]").unwrap()..BASE.find("[phases]").unwrap() + 8], random);
    let e = reject(&text, FAST);
    assert_eq!(e.field.as_deref(), Some("nemesis.faults"));
    assert_eq!(e.line(), Some(13), "reported at [nemesis], since the key is missing");
}

#[test]
fn missing_file_is_an_io_error_naming_it() {
    let e = Scenario::parse("scenarios/fast/does-not-exist.toml").expect_err("no such file");
    assert_eq!(e.kind, ErrorKind::Io);
    assert!(e.to_string().starts_with("scenarios/fast/does-not-exist.toml: cannot read: "), "{e}");
}

/// The `toml` code blocks of scenarios/README.md, in order.
fn readme_examples() -> Vec<String> {
    let readme = std::fs::read_to_string(scenarios_dir().join("README.md")).expect("README.md");
    let mut blocks = Vec::new();
    let mut rest = readme.as_str();
    while let Some(start) = rest.find("```toml\n") {
        let body = &rest[start + 8..];
        let end = body.find("```").expect("closed code block");
        blocks.push(body[..end].to_string());
        rest = &body[end..];
    }
    blocks
}

#[test]
fn readme_examples_are_valid() {
    let blocks = readme_examples();
    assert_eq!(blocks.len(), 3, "complete example, schedule, plant");
    let full = &blocks[0];
    let scenario = Scenario::from_str(full, "scenarios/fast/kv-partition.toml").expect("README example");
    let mut file = Scenario::parse(scenarios_dir().join("fast/kv-partition.toml")).expect("file");
    file.description.clone_from(&scenario.description);
    assert_eq!(scenario, file, "the README example is fast/kv-partition.toml, description aside");

    let nemesis = &full[full.find("[nemesis]").unwrap()..full.find("[phases]").unwrap()];
    let scheduled = full.replace(nemesis, &format!("{}\n", blocks[1]));
    let scenario = Scenario::from_str(&scheduled, "scenarios/fast/kv-partition.toml").expect("README schedule");
    let Nemesis::Schedule(entries) = &scenario.nemesis else { panic!("schedule expected") };
    assert_eq!(entries.len(), 3);

    let negative = format!("{scheduled}\n{}", blocks[2]);
    let scenario = Scenario::from_str(&negative, "scenarios/negative/kv-partition.toml").expect("README plant");
    assert_eq!(scenario.plant.map(|p| p.bug), Some(Plant::AckBeforeSync));
}

#[test]
fn topology_bootstrap_is_static_or_expect() {
    let parse = |text: &str| Scenario::from_str(text, FAST).unwrap();
    assert_eq!(parse(BASE).topology.bootstrap, Bootstrap::Static);
    let expect = parse(&edit("servers = 3", "servers = 3\nbootstrap = \"expect\""));
    assert_eq!(expect.topology.bootstrap, Bootstrap::Expect);
    let e = reject(&edit("servers = 3", "servers = 3\nbootstrap = \"magic\""), FAST);
    assert!(e.to_string().contains("topology.bootstrap: must be \"static\" or \"expect\""), "{e}");
}

/// `BASE` made a federation of `datacenters`, with the KV clients sending a share elsewhere.
fn federated(datacenters: &str) -> String {
    edit("servers = 3", &format!("servers = 3\ndatacenters = {datacenters}\nwan_latency = \"20ms\""))
        .replace("rate_per_s = 10", "rate_per_s = 10\nremote = 0.25")
}

#[test]
fn datacenters_are_a_count_or_names() {
    let one = Scenario::from_str(BASE, FAST).unwrap();
    assert_eq!(one.topology.datacenters, ["dc1"]);
    assert!(!one.topology.is_federated());
    assert_eq!((one.topology.wan_latency_ns, one.kv().unwrap().remote), (0, 0.0));

    let two = Scenario::from_str(&federated("2"), FAST).unwrap();
    assert_eq!(two.topology.datacenters, ["dc1", "dc2"]);
    assert_eq!(two.topology.wan_latency_ns, 20_000_000);
    assert_eq!(two.kv().unwrap().remote, 0.25);
    let Nemesis::Schedule(entries) = &two.nemesis else { panic!("schedule expected") };
    assert_eq!(entries[0].datacenter, DcTarget::Random, "a server fault strikes a datacenter drawn from the seed");
    assert_eq!(entries[0].fault, Fault::Partition(Partition::IsolateLeader));

    let named =
        Scenario::from_str(&federated(r#"["east", "west", "eu-1"]"#).replace("clients = 2", "clients = 3"), FAST)
            .unwrap();
    assert_eq!(named.topology.datacenters, ["east", "west", "eu-1"]);

    for (value, message) in [
        ("0", "topology.datacenters: must be between 1 and 5 (got 0)"),
        ("6", "topology.datacenters: must be between 1 and 5 (got 6)"),
        (r#"["a", "A"]"#, "topology.datacenters[1]: \"A\" is not a datacenter name"),
        (r#"["a", "a"]"#, "topology.datacenters[1]: \"a\" is listed twice"),
    ] {
        let e = reject(&federated(value), FAST);
        assert!(e.to_string().contains(message), "{value}: {e}");
    }
}

#[test]
fn wan_settings_need_several_datacenters() {
    let e = reject(&edit("servers = 3", "servers = 3\nwan_latency = \"20ms\""), FAST);
    assert!(e.to_string().contains("topology.wan_latency: `wan_latency` is the latency between datacenters"), "{e}");
    let e = reject(&edit("rate_per_s = 10", "rate_per_s = 10\nremote = 0.5"), FAST);
    assert!(e.to_string().contains("workloads.kv.remote: `remote` sends operations to another datacenter"), "{e}");
    let e = reject(&federated("2").replace("wan_latency = \"20ms\"", "wan_latency = \"150ms\""), FAST);
    assert!(e.to_string().contains("topology.wan_latency: must be at most 100ms"), "{e}");
    let e = reject(&federated("3"), FAST);
    assert!(
        e.to_string().contains("workloads.kv.clients: needs a client in every datacenter: at least 3 (got 2)"),
        "{e}"
    );
    let wan_fault = BASE.replace("fault = \"partition\"\nshape = \"isolate-leader\"", "fault = \"wan-partition\"");
    let e = reject(&wan_fault, FAST);
    assert!(e.to_string().contains("a \"wan-partition\" fault is about datacenters"), "{e}");
    let e = reject(&edit("shape = \"isolate-leader\"", "shape = \"isolate-leader\"\ndatacenter = \"dc1\""), FAST);
    assert!(e.to_string().contains("nemesis.schedule[0].datacenter: `datacenter` picks one of several"), "{e}");
}

#[test]
fn wan_faults_name_their_datacenter() {
    let text = federated("[\"east\", \"west\"]").replace(
        "[phases]",
        r#"[[nemesis.schedule]]
at = "3s"
fault = "wan-partition"
datacenter = "west"
duration = "2s"

[[nemesis.schedule]]
at = "4s"
fault = "dc-loss"
torn_write = true
duration = "2s"

[[nemesis.schedule]]
at = "5s"
fault = "wan-delay"
latency_max = "200ms"
duration = "2s"

[phases]"#,
    );
    let scenario = Scenario::from_str(&text, FAST).unwrap();
    let Nemesis::Schedule(entries) = &scenario.nemesis else { panic!("schedule expected") };
    let got: Vec<(Fault, DcTarget)> = entries.iter().map(|e| (e.fault.clone(), e.datacenter)).collect();
    assert_eq!(
        got[1..],
        [
            (Fault::WanPartition, DcTarget::Index(1)),
            (Fault::DcLoss { torn_write: true }, DcTarget::Random),
            (Fault::WanDelay { latency_max_ns: 200_000_000 }, DcTarget::All),
        ]
    );
    let e = reject(&text.replace("datacenter = \"west\"", "datacenter = \"north\""), FAST);
    assert!(e.to_string().contains("\"north\" is not one of topology.datacenters (east, west) nor \"random\""), "{e}");
    let e = reject(
        &text.replace(
            "duration = \"2s\"\n\n[[nemesis.schedule]]\nat = \"4s\"",
            "target = 1\nduration = \"2s\"\n\n[[nemesis.schedule]]\nat = \"4s\"",
        ),
        FAST,
    );
    assert!(e.to_string().contains("`target` does not apply to fault \"wan-partition\""), "{e}");
}

#[test]
fn multi_datacenter_checkers_need_what_they_judge() {
    let with = |checker: &str| BASE.replace("\"liveness\"]", &format!("\"liveness\", \"{checker}\"]"));
    let e = reject(&with("dc-isolation"), FAST);
    assert!(e.to_string().contains("checkers[3]: \"dc-isolation\" compares datacenters"), "{e}");
    let federated_with =
        |checker: &str| federated("2").replace("\"liveness\"]", &format!("\"liveness\", \"{checker}\"]"));
    Scenario::from_str(&federated_with("dc-isolation"), FAST).expect("dc-isolation needs no WAN fault");
    for checker in ["local-availability", "wan-fail-fast"] {
        let e = reject(&federated_with(checker), FAST);
        assert!(e.to_string().contains("the nemesis needs \"wan-partition\" or \"dc-loss\" faults"), "{checker}: {e}");
        let cut = federated_with(checker)
            .replace("fault = \"partition\"\nshape = \"isolate-leader\"", "fault = \"wan-partition\"");
        Scenario::from_str(&cut, FAST).unwrap_or_else(|e| panic!("{checker}: {e}"));
    }
    let local_only = federated_with("wan-fail-fast")
        .replace("fault = \"partition\"\nshape = \"isolate-leader\"", "fault = \"wan-partition\"")
        .replace("remote = 0.25", "remote = 0.0");
    let e = reject(&local_only, FAST);
    assert!(e.to_string().contains("set workloads.kv.remote above 0"), "{e}");
    let lock =
        federated("2").replace("[nemesis]", "[workloads.lock]\nlocks = 1\nclients = 2\nrate_per_s = 5\n\n[nemesis]");
    let e = reject(&lock, FAST);
    assert!(e.to_string().contains("workloads.lock: the lock workload runs in one datacenter"), "{e}");
    assert_eq!(Checker::WanFailFast.name(), "wan-fail-fast");
}

#[test]
fn the_forward_write_locally_plant_needs_cross_datacenter_writes() {
    let plant = "\n[plant]\nbug = \"forward-write-locally\"\ncaught_by = \"linearizability\"\nseed_budget = 5\n";
    let scenario = Scenario::from_str(&format!("{}{plant}", federated("2")), NEGATIVE).expect("valid");
    assert_eq!(scenario.plant.map(|p| p.bug), Some(Plant::ForwardWriteLocally));
    let e = reject(&format!("{BASE}{plant}"), NEGATIVE);
    assert!(e.to_string().contains("plant \"forward-write-locally\" needs several datacenters"), "{e}");
    assert_eq!(FaultKind::DcLoss.name(), "dc-loss");
}
