use super::*;
use crate::catalog::CheckDefinition;

const SEC: u64 = 1_000;

fn node() -> Node {
    Node { node: "n1".into(), address: "127.0.0.1".into(), ..Default::default() }
}

/// An agent whose first registration and first full sync are drained; full syncs come every
/// minute (plus stagger) after that.
fn agent() -> LocalAgent {
    let mut a = LocalAgent::with_settings(0, node(), AgentSettings { seed: 7, ..Default::default() });
    assert!(matches!(a.poll_output(), Some(AgentOutput::Sync(Command::Register(_)))));
    a.handle_timeout(0);
    assert_eq!(a.poll_output(), Some(AgentOutput::FullSync));
    assert_eq!(a.poll_output(), None);
    a
}

fn ttl_check(ttl_ms: u64) -> CheckSpec {
    CheckSpec { ttl_ms: Some(ttl_ms), ..Default::default() }
}

fn script_check(id: &str, interval_ms: u64) -> CheckSpec {
    CheckSpec {
        check: HealthCheck {
            check_id: id.into(),
            name: id.into(),
            kind: "script".into(),
            definition: CheckDefinition {
                script_args: vec!["/bin/check".into()],
                interval: interval_ms * 1_000_000,
                ..Default::default()
            },
            ..Default::default()
        },
        ..Default::default()
    }
}

fn drain(a: &mut LocalAgent) -> Vec<AgentOutput> {
    std::iter::from_fn(|| a.poll_output()).collect()
}

fn synced_checks(outputs: &[AgentOutput]) -> Vec<(String, Status, String)> {
    outputs
        .iter()
        .filter_map(|o| match o {
            AgentOutput::Sync(Command::Register(r)) => Some(r.checks.clone()),
            _ => None,
        })
        .flatten()
        .map(|c| (c.check_id, c.status, c.output))
        .collect()
}

/// Steps virtual time to `until_ms`, answering every run with `result_of(check_id)`;
/// returns every output seen.
fn run_until(
    a: &mut LocalAgent,
    now: &mut u64,
    until_ms: u64,
    result_of: impl Fn(&str) -> CheckResult,
) -> Vec<AgentOutput> {
    let mut seen = Vec::new();
    loop {
        for out in drain(a) {
            if let AgentOutput::Run { token, run } = &out {
                a.handle_check_result(*now, *token, result_of(&run.check_id));
            }
            seen.push(out);
        }
        match a.poll_timeout() {
            Some(at) if at <= until_ms => {
                assert!(at >= *now || a.poll_timeout() == Some(at), "time never runs backwards");
                *now = at.max(*now);
                a.handle_timeout(*now);
            }
            _ => break,
        }
    }
    *now = until_ms;
    seen
}

fn passing(_: &str) -> CheckResult {
    CheckResult { status: Status::Passing, output: "ok".into() }
}

#[test]
fn service_checks_get_consul_ids_and_a_ttl_expires_to_critical() {
    let mut a = agent();
    let svc = Service { service: "web".into(), ..Default::default() };
    a.register_service(0, svc, vec![ttl_check(1_000), ttl_check(5_000)], false).unwrap();
    let Some(AgentOutput::Sync(Command::Register(reg))) = a.poll_output() else { panic!() };
    let ids: Vec<_> = reg.checks.iter().map(|c| c.check_id.as_str()).collect();
    assert_eq!(ids, ["service:web:1", "service:web:2"]);
    assert!(reg.checks.iter().all(|c| c.status == Status::Critical && c.name == "Service 'web' check"));

    a.update_ttl(500, "service:web:1", Status::Passing, "ok".into()).unwrap();
    assert!(a.poll_output().is_some());
    // Same status and output again: nothing to sync.
    a.update_ttl(900, "service:web:1", Status::Passing, "ok".into()).unwrap();
    assert_eq!(a.poll_output(), None);
    assert_eq!(a.poll_timeout(), Some(1_900));
    a.handle_timeout(1_900);
    let Some(AgentOutput::Sync(Command::Register(reg))) = a.poll_output() else { panic!() };
    assert_eq!(reg.checks[0].status, Status::Critical);
    assert_eq!(reg.checks[0].output, "TTL expired");
}

#[test]
fn only_ttl_checks_take_ttl_updates() {
    let mut a = agent();
    let spec = CheckSpec { check: HealthCheck { name: "mem".into(), ..Default::default() }, ..Default::default() };
    a.register_check(0, spec).unwrap();
    assert_eq!(a.update_ttl(0, "mem", Status::Passing, String::new()), Err(AgentError::NotTtl("mem".into())));
    assert_eq!(a.update_ttl(0, "nope", Status::Passing, String::new()), Err(AgentError::NotTtl("nope".into())));
}

#[test]
fn deregistering_a_service_drops_its_checks() {
    let mut a = agent();
    a.register_service(0, Service { service: "db".into(), ..Default::default() }, vec![ttl_check(10)], false).unwrap();
    assert!(a.deregister_service("db"));
    assert_eq!(a.checks().count(), 0);
    assert!(!a.deregister_service("db"));
}

#[test]
fn interval_checks_run_staggered_then_every_interval() {
    let mut a = agent();
    for i in 0..20 {
        a.register_check(0, script_check(&format!("c{i}"), 10 * SEC)).unwrap();
    }
    drain(&mut a);
    let mut first_runs = BTreeMap::new();
    let mut runs = 0;
    loop {
        let at = a.poll_timeout().unwrap();
        if at >= 30 * SEC {
            break;
        }
        let now = at;
        a.handle_timeout(now);
        for out in drain(&mut a) {
            if let AgentOutput::Run { token, run } = out {
                first_runs.entry(run.check_id.clone()).or_insert(now);
                assert_eq!(
                    (run.timeout_ms, run.kind.clone()),
                    (30 * SEC, CheckKind::Script { args: vec!["/bin/check".into()] })
                );
                runs += 1;
                a.handle_check_result(now, token, passing(""));
            }
        }
    }
    // The first runs spread over the first interval; after that each check runs every 10 s.
    let distinct: BTreeSet<u64> = first_runs.values().copied().collect();
    assert!(distinct.len() > 10, "first runs in lockstep: {first_runs:?}");
    assert!(first_runs.values().all(|t| *t < 10 * SEC));
    assert!((60..=80).contains(&runs), "{runs} runs in 30 s of 20 checks every 10 s");
}

#[test]
fn a_check_is_not_run_again_while_its_run_is_in_flight() {
    let mut a = agent();
    a.register_check(0, script_check("slow", SEC)).unwrap();
    drain(&mut a);
    let at = a.poll_timeout().unwrap();
    a.handle_timeout(at);
    let Some(AgentOutput::Run { token, .. }) = a.poll_output() else { panic!("expected a run") };
    a.handle_timeout(at + 10 * SEC);
    assert!(drain(&mut a).iter().all(|o| !matches!(o, AgentOutput::Run { .. })));
    a.handle_check_result(at + 10 * SEC, token, passing(""));
    assert_eq!(a.poll_timeout(), Some(at + 11 * SEC));
    // A stale token (from before a re-registration) changes nothing.
    a.register_check(at, script_check("slow", SEC)).unwrap();
    drain(&mut a);
    a.handle_check_result(at, token, CheckResult { status: Status::Passing, output: String::new() });
    assert_eq!(a.poll_output(), None);
}

#[test]
fn status_changes_sync_at_once_and_output_only_changes_wait() {
    let mut a = agent();
    a.register_check(0, script_check("c", SEC)).unwrap();
    drain(&mut a);
    let mut now = 0;
    let out = run_until(&mut a, &mut now, 2 * SEC, passing);
    assert_eq!(synced_checks(&out), [("c".to_string(), Status::Passing, "ok".to_string())]);
    // The output changes every run, the status never: nothing is synced for 2.5 min.
    let counter = std::cell::Cell::new(0);
    let changing = |_: &str| {
        counter.set(counter.get() + 1);
        CheckResult { status: Status::Passing, output: format!("run {}", counter.get()) }
    };
    let out = run_until(&mut a, &mut now, 150 * SEC, changing);
    assert_eq!(synced_checks(&out), []);
    // Within check_update_interval (5 min, staggered from half of it) the latest output goes.
    let out = run_until(&mut a, &mut now, 451 * SEC, changing);
    let synced = synced_checks(&out);
    assert!(!synced.is_empty() && synced.iter().all(|(_, s, o)| *s == Status::Passing && o.starts_with("run ")));
    // A status change goes at once, with its output.
    let out =
        run_until(&mut a, &mut now, 453 * SEC, |_| CheckResult { status: Status::Critical, output: "down".into() });
    assert_eq!(synced_checks(&out), [("c".to_string(), Status::Critical, "down".to_string())]);
}

#[test]
fn a_quiet_minute_with_100_passing_checks_sends_nothing() {
    let mut a = agent();
    for i in 0..100 {
        a.register_check(0, script_check(&format!("c{i}"), 10 * SEC)).unwrap();
    }
    let mut now = 0;
    run_until(&mut a, &mut now, 30 * SEC, passing);
    let quiet = run_until(&mut a, &mut now, 90 * SEC, passing);
    let runs = quiet.iter().filter(|o| matches!(o, AgentOutput::Run { .. })).count();
    let writes = quiet.iter().filter(|o| matches!(o, AgentOutput::Sync(_))).count();
    assert!(runs >= 590, "{runs} runs");
    assert_eq!(writes, 0, "catalog writes during a quiet minute");
}

#[test]
fn thresholds_hold_a_status_until_enough_runs_agree() {
    let mut a = agent();
    let mut spec = script_check("c", SEC);
    spec.thresholds = Thresholds::new(2, 1, 3);
    a.register_check(0, spec).unwrap();
    drain(&mut a);
    let mut now = 0;
    let seq = [Status::Passing, Status::Passing, Status::Critical, Status::Critical, Status::Critical];
    let mut seen = Vec::new();
    for status in seq {
        let at = a.poll_timeout().unwrap();
        now = at.max(now);
        a.handle_timeout(now);
        for out in drain(&mut a) {
            if let AgentOutput::Run { token, .. } = out {
                a.handle_check_result(now, token, CheckResult { status, output: String::new() });
                seen.extend(synced_checks(&drain(&mut a)).into_iter().map(|(_, s, _)| s));
            }
        }
    }
    assert_eq!(seen, [Status::Passing, Status::Warning, Status::Critical]);
}

#[test]
fn a_service_critical_for_too_long_is_deregistered() {
    let mut a = agent();
    let mut spec = ttl_check(10 * SEC);
    spec.check.definition.deregister_critical_service_after = 60_000_000_000;
    a.register_service(0, Service { service: "web".into(), ..Default::default() }, vec![spec], false).unwrap();
    a.update_ttl(0, "service:web", Status::Passing, String::new()).unwrap();
    drain(&mut a);
    let mut now = 0;
    // The TTL expires at 10 s; a minute of critical later the service is reaped.
    let out = run_until(&mut a, &mut now, 69 * SEC, passing);
    assert!(out.iter().all(|o| !matches!(o, AgentOutput::Sync(Command::Deregister(_)))));
    let out = run_until(&mut a, &mut now, 71 * SEC, passing);
    assert!(out
        .iter()
        .any(|o| matches!(o, AgentOutput::Sync(Command::Deregister(d)) if d.service_id.as_deref() == Some("web"))));
    assert!(a.service("web").is_none() && a.checks().count() == 0);
}

#[test]
fn maintenance_adds_and_removes_consuls_checks() {
    let mut a = agent();
    a.register_service(0, Service { service: "web".into(), ..Default::default() }, vec![], false).unwrap();
    drain(&mut a);
    a.set_node_maintenance(0, true, "");
    a.set_service_maintenance(0, "web", true, "upgrading").unwrap();
    let synced = synced_checks(&drain(&mut a));
    assert_eq!(
        synced.iter().map(|c| (c.0.as_str(), c.1)).collect::<Vec<_>>(),
        [("_node_maintenance", Status::Critical), ("_service_maintenance:web", Status::Critical)]
    );
    assert_eq!(a.check("_service_maintenance:web").unwrap().check.notes, "upgrading");
    assert_eq!(a.check("_service_maintenance:web").unwrap().check.service_name, "web");
    assert_eq!(a.set_service_maintenance(0, "nope", true, ""), Err(AgentError::UnknownService("nope".into())));
    // Re-registering the service with replace-existing-checks keeps it in maintenance.
    a.register_service(0, Service { service: "web".into(), ..Default::default() }, vec![], true).unwrap();
    assert!(a.check("_service_maintenance:web").is_some());
    a.set_node_maintenance(0, false, "");
    a.set_service_maintenance(0, "web", false, "").unwrap();
    assert_eq!(a.checks().count(), 0);
}

#[test]
fn a_full_sync_repairs_drift_and_removes_what_the_agent_no_longer_owns() {
    let mut a = agent();
    a.register_service(
        0,
        Service { service: "web".into(), port: 80, ..Default::default() },
        vec![ttl_check(60 * SEC)],
        false,
    )
    .unwrap();
    a.register_check(0, script_check("disk", 10 * SEC)).unwrap();
    drain(&mut a);
    let local_checks: Vec<HealthCheck> = a.checks().map(|c| c.check.clone()).collect();
    let in_sync = CatalogView {
        node: Some(Node { create_index: 3, modify_index: 9, ..a.node().clone() }),
        services: vec![Service { create_index: 4, modify_index: 4, ..a.service("web").unwrap().clone() }],
        checks: local_checks
            .iter()
            .cloned()
            .chain([HealthCheck { check_id: "serfHealth".into(), node: "n1".into(), ..Default::default() }])
            .map(|c| HealthCheck { create_index: 5, modify_index: 6, ..c })
            .collect(),
    };
    a.handle_catalog_view(&in_sync);
    assert_eq!(drain(&mut a), [], "nothing differs but indexes and the servers' serfHealth");

    let mut drifted = in_sync.clone();
    drifted.services[0].port = 81;
    drifted.services.push(Service { id: "old".into(), service: "old".into(), ..Default::default() });
    drifted.checks.retain(|c| c.check_id != "disk");
    drifted.checks.push(HealthCheck { check_id: "service:old".into(), service_id: "old".into(), ..Default::default() });
    drifted.checks.push(HealthCheck { check_id: "stale".into(), ..Default::default() });
    a.handle_catalog_view(&drifted);
    let out = drain(&mut a);
    let described: Vec<String> = out
        .iter()
        .map(|o| match o {
            AgentOutput::Sync(Command::Register(r)) => format!(
                "register service={:?} checks={:?}",
                r.service.as_ref().map(|s| s.port),
                r.checks.iter().map(|c| c.check_id.as_str()).collect::<Vec<_>>()
            ),
            AgentOutput::Sync(Command::Deregister(d)) => format!("deregister {:?} {:?}", d.service_id, d.check_id),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(
        described,
        [
            "register service=Some(80) checks=[]",
            "deregister Some(\"old\") None",
            "register service=None checks=[\"disk\"]",
            "deregister None Some(\"stale\")",
        ]
    );
}

#[test]
fn full_syncs_come_every_interval_staggered_and_slow_down_in_big_clusters() {
    let gaps = |members: usize| {
        let mut a = agent();
        a.set_cluster_size(members);
        let mut syncs = Vec::new();
        while syncs.len() < 50 {
            let now = a.poll_timeout().unwrap();
            a.handle_timeout(now);
            if drain(&mut a).contains(&AgentOutput::FullSync) {
                syncs.push(now);
            }
        }
        syncs.windows(2).map(|w| w[1] - w[0]).collect::<Vec<u64>>()
    };
    let small = gaps(5);
    assert!(small.iter().all(|g| (60 * SEC..120 * SEC).contains(g)), "{small:?}");
    assert!(small.iter().collect::<BTreeSet<_>>().len() > 40, "staggered");
    let big = gaps(1_000);
    assert!(big.iter().all(|g| (60 * SEC..300 * SEC).contains(g)) && big.iter().any(|g| *g > 120 * SEC), "{big:?}");
}

#[test]
fn the_same_seed_gives_the_same_schedule() {
    let schedule = |seed| {
        let mut a = LocalAgent::with_settings(0, node(), AgentSettings { seed, ..Default::default() });
        for i in 0..10 {
            a.register_check(0, script_check(&format!("c{i}"), 10 * SEC)).unwrap();
        }
        let mut now = 0;
        run_until(&mut a, &mut now, 120 * SEC, passing)
            .into_iter()
            .filter_map(|o| match o {
                AgentOutput::Run { run, .. } => Some(run.check_id),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(schedule(1), schedule(1));
    assert_ne!(schedule(1), schedule(2));
}

#[test]
fn a_re_registration_that_keeps_status_does_not_flap() {
    let mut a = agent();
    a.register_check(0, ttl_check_named("t")).unwrap();
    a.update_ttl(0, "t", Status::Passing, "fine".into()).unwrap();
    drain(&mut a);
    a.register_check(5, CheckSpec { keep_status: true, ..ttl_check_named("t") }).unwrap();
    assert_eq!(synced_checks(&drain(&mut a)), [("t".to_string(), Status::Passing, "fine".to_string())]);
    a.register_check(6, ttl_check_named("t")).unwrap();
    assert_eq!(synced_checks(&drain(&mut a)), [("t".to_string(), Status::Critical, String::new())]);
}

fn ttl_check_named(id: &str) -> CheckSpec {
    CheckSpec { check: HealthCheck { check_id: id.into(), ..Default::default() }, ..ttl_check(10 * SEC) }
}
