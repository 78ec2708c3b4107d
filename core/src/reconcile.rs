//! The leader's reconciliation of gossip membership into the catalog (Consul's
//! `reconcileMember`): the catalog follows what the LAN pool knows.
//!
//! * an alive member has its node in the catalog with a passing `serfHealth` check (and a
//!   server its `consul` service);
//! * a failed member's `serfHealth` is critical — its services leave DNS and `?passing`, and
//!   sessions tied to the check are invalidated, releasing their locks;
//! * a member that left, or was reaped, or a catalog node with a `serfHealth` check that the
//!   pool does not know at all, is deregistered.
//!
//! Nodes without `serfHealth` (registered through `/v1/catalog/register` for external
//! services) are not the pool's business and are left alone. The function is pure: the
//! driver reads the catalog, calls [`reconcile`] and proposes the commands; running it again
//! on the result proposes nothing.

use std::collections::BTreeMap;

use crate::catalog::{Command, Deregistration, HealthCheck, Node, Registration, Service, Status};
use crate::gossip::MemberStatus;
use crate::leader::{SERF_ALIVE_OUTPUT, SERF_CHECK_ID, SERF_CHECK_NAME, SERVER_SERVICE};

/// Output of a failed member's `serfHealth` (Consul's).
pub const SERF_FAILED_OUTPUT: &str = "Agent not live or unreachable";

/// A LAN member as the leader reconciles it (read from its gossip tags).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberView {
    pub name: String,
    /// The node ID (tag `id`).
    pub id: String,
    /// The member's IP address.
    pub address: String,
    pub status: MemberStatus,
    /// A server's RPC port (tag `port` with `role=consul`).
    pub server_port: Option<u16>,
}

/// What the catalog holds of one node, as far as reconciliation cares.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct CatalogNode {
    pub address: String,
    pub serf_health: Option<Status>,
    pub has_server_service: bool,
}

/// The commands that bring the catalog in line with the members. `leader` is this server's
/// node name: it never deregisters itself.
pub fn reconcile(
    datacenter: &str,
    leader: &str,
    members: &[MemberView],
    catalog: &BTreeMap<String, CatalogNode>,
) -> Vec<Command> {
    let mut commands = Vec::new();
    for m in members {
        let current = catalog.get(&m.name);
        match m.status {
            MemberStatus::Alive => {
                let settled = current.is_some_and(|c| {
                    c.address == m.address
                        && c.serf_health == Some(Status::Passing)
                        && (m.server_port.is_none() || c.has_server_service)
                });
                if !settled {
                    commands.push(register(datacenter, m, current.is_some_and(|c| c.address == m.address), true));
                }
            }
            MemberStatus::Failed => {
                if current.is_some_and(|c| c.serf_health != Some(Status::Critical)) || current.is_none() {
                    commands.push(register(datacenter, m, current.is_some(), false));
                }
            }
            MemberStatus::Left | MemberStatus::Leaving => {
                if m.status == MemberStatus::Left && m.name != leader && current.is_some() {
                    commands.push(deregister(&m.name));
                }
            }
        }
    }
    // Reaped members: nodes the pool maintained (they have serfHealth) but no longer knows.
    for (name, node) in catalog {
        if node.serf_health.is_some() && name != leader && !members.iter().any(|m| m.name == *name) {
            commands.push(deregister(name));
        }
    }
    commands
}

fn register(datacenter: &str, m: &MemberView, node_known: bool, alive: bool) -> Command {
    let (status, output) =
        if alive { (Status::Passing, SERF_ALIVE_OUTPUT) } else { (Status::Critical, SERF_FAILED_OUTPUT) };
    let service = match (alive, m.server_port) {
        (true, Some(port)) => Some(Service {
            id: SERVER_SERVICE.to_string(),
            service: SERVER_SERVICE.to_string(),
            port,
            ..Default::default()
        }),
        _ => None,
    };
    Command::Register(Box::new(Registration {
        node: Node {
            id: m.id.clone(),
            node: m.name.clone(),
            address: m.address.clone(),
            datacenter: datacenter.to_string(),
            ..Default::default()
        },
        // The agent's anti-entropy owns the node's tagged addresses and meta; only a node the
        // catalog lacks (or whose address moved) gets its record from here.
        skip_node_update: node_known,
        service,
        checks: vec![HealthCheck {
            node: m.name.clone(),
            check_id: SERF_CHECK_ID.to_string(),
            name: SERF_CHECK_NAME.to_string(),
            status,
            output: output.to_string(),
            ..Default::default()
        }],
    }))
}

fn deregister(node: &str) -> Command {
    Command::Deregister(Deregistration { node: node.to_string(), service_id: None, check_id: None })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str, status: MemberStatus) -> MemberView {
        MemberView {
            name: name.into(),
            id: format!("id-{name}"),
            address: "10.0.0.1".into(),
            status,
            server_port: None,
        }
    }

    fn node(serf: Option<Status>) -> CatalogNode {
        CatalogNode { address: "10.0.0.1".into(), serf_health: serf, has_server_service: false }
    }

    fn check_of(c: &Command) -> (Status, bool) {
        match c {
            Command::Register(r) => (r.checks[0].status, r.skip_node_update),
            other => panic!("not a registration: {other:?}"),
        }
    }

    #[test]
    fn alive_members_get_a_passing_serf_health_once() {
        let members = [member("a", MemberStatus::Alive)];
        let empty = BTreeMap::new();
        let cmds = reconcile("dc1", "s1", &members, &empty);
        assert_eq!(cmds.len(), 1);
        assert_eq!(check_of(&cmds[0]), (Status::Passing, false), "a new node gets its record");
        let settled = BTreeMap::from([("a".to_string(), node(Some(Status::Passing)))]);
        assert!(reconcile("dc1", "s1", &members, &settled).is_empty(), "nothing to do the second time");
        let critical = BTreeMap::from([("a".to_string(), node(Some(Status::Critical)))]);
        assert_eq!(check_of(&reconcile("dc1", "s1", &members, &critical)[0]), (Status::Passing, true));
    }

    #[test]
    fn failed_members_go_critical_and_left_ones_are_deregistered() {
        let catalog = BTreeMap::from([
            ("f".to_string(), node(Some(Status::Passing))),
            ("l".to_string(), node(Some(Status::Passing))),
            ("s1".to_string(), node(Some(Status::Passing))),
        ]);
        let members =
            [member("f", MemberStatus::Failed), member("l", MemberStatus::Left), member("s1", MemberStatus::Left)];
        let cmds = reconcile("dc1", "s1", &members, &catalog);
        assert_eq!(cmds.len(), 2, "{cmds:?}");
        assert_eq!(check_of(&cmds[0]), (Status::Critical, true));
        assert!(matches!(&cmds[1], Command::Deregister(d) if d.node == "l"), "the leader never deregisters itself");
    }

    #[test]
    fn reaped_members_leave_the_catalog_but_external_nodes_stay() {
        let catalog = BTreeMap::from([
            ("reaped".to_string(), node(Some(Status::Critical))),
            ("external".to_string(), node(None)),
        ]);
        let cmds = reconcile("dc1", "s1", &[], &catalog);
        assert_eq!(cmds, vec![deregister("reaped")]);
    }

    #[test]
    fn servers_get_their_consul_service_and_a_moved_member_its_new_address() {
        let mut s = member("s2", MemberStatus::Alive);
        s.server_port = Some(8300);
        let catalog = BTreeMap::from([("s2".to_string(), node(Some(Status::Passing)))]);
        let cmds = reconcile("dc1", "s1", std::slice::from_ref(&s), &catalog);
        let Command::Register(r) = &cmds[0] else { panic!() };
        assert_eq!(r.service.as_ref().map(|s| (s.service.as_str(), s.port)), Some(("consul", 8300)));
        s.server_port = None;
        s.address = "10.0.0.9".into();
        let Command::Register(r) = &reconcile("dc1", "s1", &[s], &catalog)[0] else { panic!() };
        assert!(!r.skip_node_update, "the new address is written");
        assert_eq!(r.node.address, "10.0.0.9");
    }
}
