//! News waiting to be piggybacked: at most one piece per member (newer news about a member
//! replaces older) or per user event (keyed apart from member names), sent least-transmitted first (newest first among equals), each dropped
//! after the retransmit limit.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};

/// What the packet being filled did with a piece of news.
pub(super) enum Take {
    Taken,
    Skip,
    Full,
}

#[derive(Debug)]
struct Entry {
    bytes: Vec<u8>,
    transmits: u32,
    id: u64,
}

#[derive(Debug, Default)]
pub(super) struct Broadcasts {
    by_node: BTreeMap<String, Entry>,
    /// (transmits, newest first, node): the order news goes out in.
    order: BTreeSet<(u32, Reverse<u64>, String)>,
    next_id: u64,
}

impl Broadcasts {
    /// Queues news about `node`, replacing what was queued about it.
    pub(super) fn push(&mut self, node: &str, bytes: Vec<u8>) {
        self.remove(node);
        self.next_id += 1;
        let id = self.next_id;
        self.order.insert((0, Reverse(id), node.to_string()));
        self.by_node.insert(node.to_string(), Entry { bytes, transmits: 0, id });
    }

    pub(super) fn remove(&mut self, node: &str) {
        if let Some(old) = self.by_node.remove(node) {
            self.order.remove(&(old.transmits, Reverse(old.id), node.to_string()));
        }
    }

    pub(super) fn contains(&self, node: &str) -> bool {
        self.by_node.contains_key(node)
    }

    /// Pieces of news whose key starts with `prefix`.
    pub(super) fn count_prefix(&self, prefix: &str) -> usize {
        self.by_node.range(prefix.to_string()..).take_while(|(k, _)| k.starts_with(prefix)).count()
    }

    pub(super) fn len(&self) -> usize {
        self.by_node.len()
    }

    /// Offers news in order to `offer`, which takes a piece, skips it (too big for what room
    /// is left) or stops; each piece taken counts one transmission and is dropped once it
    /// reached `limit`.
    pub(super) fn take(&mut self, limit: u32, mut offer: impl FnMut(&[u8]) -> Take) {
        let mut sent = Vec::new();
        for (transmits, id, node) in &self.order {
            match offer(&self.by_node[node].bytes) {
                Take::Taken => sent.push((*transmits, *id, node.clone())),
                Take::Skip => {}
                Take::Full => break,
            }
        }
        for (transmits, id, node) in sent {
            self.order.remove(&(transmits, id, node.clone()));
            let Some(entry) = self.by_node.get_mut(&node) else { continue };
            entry.transmits += 1;
            if entry.transmits >= limit {
                self.by_node.remove(&node);
            } else {
                self.order.insert((entry.transmits, id, node));
            }
        }
    }
}
