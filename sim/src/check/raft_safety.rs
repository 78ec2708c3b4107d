//! Raft safety from per-node observations.
//!
//! Properties (Ongaro & Ousterhout, "In Search of an Understandable Consensus Algorithm", 2014,
//! Figure 3; the TLA+ spec `raft.tla`):
//!
//! - **Election Safety**: at most one leader can be elected in a given term. Checked over every
//!   `(node, term)` the simulator saw a node lead in.
//! - **State Machine Safety**: if a server has applied a log entry at a given index to its state
//!   machine, no other server will ever apply a different log entry for the same index. Entries
//!   are compared by `(term, digest of the payload)`; this also covers the same node applying an
//!   index twice (a restart that replays its log must replay the same entries).
//! - **Log Matching**, in the form visible from applied entries: applied entries form one log,
//!   and the terms of a log never decrease with the index (an entry's term is its leader's term,
//!   and leaders of later terms append after earlier ones). A committed prefix whose terms go
//!   down cannot be a Raft log.
//!
//! Observations are facts about single nodes, so there is no real-time reasoning here: the order
//! of the input does not matter, and the verdict names the nodes and indexes involved.
//! openraft's blank leader entries and membership entries are entries too: the digest must
//! cover the entry's kind, not only an application payload.

use std::collections::{BTreeMap, BTreeSet};

use super::{Violation, Violations};

const CHECKER: &str = "raft_safety";

/// A Raft node ID (the same numbering as `legate_core::raft::NodeId`).
pub type NodeId = u64;

/// `node` was seen acting as leader in `term`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaderObserved {
    pub node: NodeId,
    pub term: u64,
}

/// `node` applied the entry at `index`, written in `term`, whose payload hashes to `digest`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    pub node: NodeId,
    pub index: u64,
    pub term: u64,
    pub digest: u64,
}

/// Checks Election Safety, State Machine Safety and the monotone terms of the applied log.
pub fn check(leaders: &[LeaderObserved], applied: &[Applied]) -> Vec<Violation> {
    let mut violations = Violations::new(CHECKER);

    let mut leaders_by_term: BTreeMap<u64, BTreeSet<NodeId>> = BTreeMap::new();
    for leader in leaders {
        leaders_by_term.entry(leader.term).or_default().insert(leader.node);
    }
    for (term, nodes) in &leaders_by_term {
        if nodes.len() > 1 {
            violations.push(format!("Election Safety: term {term} had {} leaders: nodes {nodes:?}", nodes.len()));
        }
    }

    // index → the first observation of it; later ones must agree.
    let mut log: BTreeMap<u64, &Applied> = BTreeMap::new();
    // Indexes already reported, so that one divergence is one violation.
    let mut diverged: BTreeSet<u64> = BTreeSet::new();
    for entry in applied {
        let first = *log.entry(entry.index).or_insert(entry);
        if (first.term, first.digest) != (entry.term, entry.digest) && diverged.insert(entry.index) {
            violations.push(format!(
                "State Machine Safety: index {} applied as (term {}, digest {:#018x}) on node {} and as (term {}, \
                 digest {:#018x}) on node {}",
                entry.index, first.term, first.digest, first.node, entry.term, entry.digest, entry.node
            ));
        }
    }

    let mut previous: Option<&Applied> = None;
    for entry in log.values() {
        if let Some(before) = previous {
            if entry.term < before.term {
                violations.push(format!(
                    "Log Matching: terms decrease along the applied log: index {} has term {} (node {}) but the \
                     later index {} has term {} (node {})",
                    before.index, before.term, before.node, entry.index, entry.term, entry.node
                ));
            }
        }
        previous = Some(entry);
    }

    violations.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leader(node: NodeId, term: u64) -> LeaderObserved {
        LeaderObserved { node, term }
    }

    fn applied(node: NodeId, index: u64, term: u64, digest: u64) -> Applied {
        Applied { node, index, term, digest }
    }

    #[test]
    fn a_healthy_cluster_passes() {
        let leaders = [leader(1, 1), leader(1, 1), leader(2, 2), leader(3, 4)];
        let log = [
            applied(1, 1, 1, 0xa),
            applied(2, 1, 1, 0xa),
            applied(1, 2, 1, 0xb),
            applied(2, 2, 1, 0xb),
            applied(2, 3, 2, 0xc),
            // Node 3 restarted and replayed the same entries.
            applied(3, 1, 1, 0xa),
            applied(3, 1, 1, 0xa),
            applied(3, 5, 4, 0xe),
        ];
        assert_eq!(check(&leaders, &log), Vec::new());
        assert_eq!(check(&[], &[]), Vec::new());
    }

    #[test]
    fn two_leaders_in_one_term_violate_election_safety() {
        let violations = check(&[leader(1, 3), leader(2, 3), leader(2, 4)], &[]);
        assert_eq!(violations.len(), 1);
        assert_eq!(violations[0].message, "Election Safety: term 3 had 2 leaders: nodes {1, 2}");
    }

    #[test]
    fn different_entries_at_one_index_violate_state_machine_safety() {
        // Same term, different payload; and a different term for the same index elsewhere.
        let log = [applied(1, 7, 2, 0x1), applied(2, 7, 2, 0x2), applied(3, 7, 3, 0x1), applied(1, 8, 2, 0x5)];
        let violations = check(&[], &log);
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert!(
            violations[0].message.starts_with(
                "State Machine Safety: index 7 applied as (term 2, digest 0x0000000000000001) on node 1 and as \
                 (term 2, digest 0x0000000000000002) on node 2"
            ),
            "{violations:?}"
        );
        // One node re-applying a different entry after a restart counts as well.
        assert_eq!(check(&[], &[applied(1, 4, 1, 0x1), applied(1, 4, 1, 0x9)]).len(), 1);
    }

    #[test]
    fn terms_going_down_along_the_log_violate_log_matching() {
        let log = [applied(1, 1, 1, 0), applied(1, 2, 3, 0), applied(2, 5, 2, 0)];
        let violations = check(&[], &log);
        assert_eq!(violations.len(), 1);
        assert!(violations[0].message.contains("index 2 has term 3 (node 1) but the later index 5 has term 2"));
    }
}
