//! The user events this agent received (`/v1/event/list`): the last
//! [`USER_EVENTS_KEPT_MAX`] whose filters match it, oldest first, as Consul keeps them.
//!
//! Every member of the LAN pool hears of every event (the gossip core delivers each once);
//! the filters are applied here, as Consul's agent applies them: the node filter to this
//! node's name, the service filter to its services' names and the tag filter to the tags of
//! the services the service filter matched. Filters are unanchored regular expressions.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use legate_core::gossip::{Event, UserEvent};
use legate_core::limits::USER_EVENTS_KEPT_MAX;
use legate_runtime::gossip::Pool;
use regex::Regex;
use tokio::sync::{broadcast, watch};

use crate::http::AgentLocal;

/// The received events and a signal for blocking `/v1/event/list` queries.
pub struct UserEvents {
    kept: Mutex<VecDeque<UserEvent>>,
    /// Bumped on every kept event.
    changed: watch::Sender<u64>,
}

impl Default for UserEvents {
    fn default() -> Self {
        UserEvents { kept: Mutex::new(VecDeque::new()), changed: watch::channel(0).0 }
    }
}

impl UserEvents {
    /// Keeps `event`, forgetting the oldest beyond the limit.
    pub fn push(&self, event: UserEvent) {
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        if kept.len() >= USER_EVENTS_KEPT_MAX {
            kept.pop_front();
        }
        kept.push_back(event);
        debug_assert!(kept.len() <= USER_EVENTS_KEPT_MAX);
        drop(kept);
        self.changed.send_modify(|n| *n += 1);
    }

    /// The kept events named `name` (all with `None`), oldest first.
    pub fn list(&self, name: Option<&str>) -> Vec<UserEvent> {
        let kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        kept.iter().filter(|e| name.is_none_or(|n| e.name == n)).cloned().collect()
    }

    /// Wakes on every kept event.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }
}

/// Consul's `X-Consul-Index` of an event list: the last event's ID folded to 64 bits (the two
/// halves of the UUID XORed), 1 for an empty list so that a watch does not spin.
pub fn index_of(events: &[UserEvent]) -> u64 {
    events.last().map_or(1, |last| id_to_index(&last.id))
}

/// Consul's `uuidToUint64` (and the API client's `IDToIndex`): the UUID's first 8 bytes XOR
/// its last 8; 1 for what is not a UUID, or folds to 0, so that an index is never 0.
pub fn id_to_index(id: &str) -> u64 {
    let hex: String = id.chars().filter(|c| *c != '-').collect();
    if hex.len() != 32 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return 1;
    }
    let low = u64::from_str_radix(&hex[..16], 16).unwrap_or(0);
    let high = u64::from_str_radix(&hex[16..], 16).unwrap_or(0);
    (low ^ high).max(1)
}

/// A compiled filter; an empty expression matches everything. A bad one matches nothing
/// (the firing agent refuses bad expressions, so only a hostile or foreign sender has one).
fn compile(expr: &str) -> Option<Option<Regex>> {
    if expr.is_empty() {
        return Some(None);
    }
    Regex::new(expr).ok().map(Some)
}

/// Checks a filter for `/v1/event/fire`: the error names it (Consul's text).
pub fn check_filter(what: &str, expr: &str) -> Result<(), String> {
    compile(expr).map(|_| ()).ok_or_else(|| format!("Invalid {what} filter: {expr:?} is not a regular expression"))
}

/// Whether this agent (node `node`, services given as (name, tags)) is meant to get `event`.
pub fn matches(event: &UserEvent, node: &str, services: &[(String, Vec<String>)]) -> bool {
    let (Some(node_re), Some(service_re), Some(tag_re)) =
        (compile(&event.node_filter), compile(&event.service_filter), compile(&event.tag_filter))
    else {
        return false;
    };
    if node_re.is_some_and(|re| !re.is_match(node)) {
        return false;
    }
    let Some(service_re) = service_re else { return true };
    services.iter().any(|(name, tags)| {
        service_re.is_match(name) && tag_re.as_ref().is_none_or(|re| tags.iter().any(|t| re.is_match(t)))
    })
}

/// Subscribes to the LAN pool now (so no event fired after this returns is missed) and keeps
/// the events meant for this agent from then on.
pub fn start(pool: &Pool, node: String, local: AgentLocal) -> Arc<UserEvents> {
    let store = Arc::new(UserEvents::default());
    let mut events = pool.subscribe();
    let kept = store.clone();
    tokio::spawn(async move {
        loop {
            let event = match events.recv().await {
                Ok(Event::User(e)) => e,
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "user events were missed: the gossip event queue overflowed");
                    continue;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            };
            let services: Vec<(String, Vec<String>)> =
                local.read(|a| a.services().values().map(|s| (s.service.clone(), s.tags.clone())).collect());
            if matches(&event, &node, &services) {
                tracing::info!(id = %event.id, name = %event.name, "user event received");
                kept.push(event);
            } else {
                tracing::debug!(id = %event.id, name = %event.name, "user event filtered out");
            }
        }
    });
    store
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str, name: &str) -> UserEvent {
        UserEvent {
            id: id.to_string(),
            name: name.to_string(),
            payload: Vec::new(),
            node_filter: String::new(),
            service_filter: String::new(),
            tag_filter: String::new(),
            ltime: 0,
        }
    }

    #[test]
    fn the_index_is_consuls_folded_uuid_and_1_when_empty() {
        assert_eq!(index_of(&[]), 1);
        let e = event("00000000-0000-0001-0000-000000000003", "x");
        assert_eq!(index_of(&[e]), 1 ^ 3);
        let e = event("b54fe110-7af5-cafc-d1fb-afc8ba432b1c", "x");
        assert_eq!(index_of(&[e]), 0xb54fe1107af5cafc ^ 0xd1fbafc8ba432b1c);
    }

    #[test]
    fn filters_match_node_service_and_tag() {
        let services = vec![("web".to_string(), vec!["v1".to_string()]), ("db".to_string(), vec![])];
        let mut e = event("a", "deploy");
        assert!(matches(&e, "node-1", &services), "no filter matches all");
        e.node_filter = "^node-".into();
        assert!(matches(&e, "node-1", &services));
        assert!(!matches(&e, "other", &services));
        e.service_filter = "we".into();
        assert!(matches(&e, "node-1", &services), "unanchored, like Go's MatchString");
        e.tag_filter = "^v1$".into();
        assert!(matches(&e, "node-1", &services));
        e.tag_filter = "v2".into();
        assert!(!matches(&e, "node-1", &services), "no matching service carries the tag");
        e.tag_filter.clear();
        e.service_filter = "cache".into();
        assert!(!matches(&e, "node-1", &services));
        assert!(!matches(&e, "node-1", &[]), "a service filter on an agent without services");
        e.service_filter = "(".into();
        assert!(!matches(&e, "node-1", &services), "a bad expression matches nothing");
    }

    #[test]
    fn the_store_keeps_the_newest_in_order_and_filters_by_name() {
        let store = UserEvents::default();
        for i in 0..USER_EVENTS_KEPT_MAX + 3 {
            store.push(event(&format!("id-{i}"), if i % 2 == 0 { "even" } else { "odd" }));
        }
        let all = store.list(None);
        assert_eq!(all.len(), USER_EVENTS_KEPT_MAX);
        assert_eq!(all[0].id, "id-3", "the oldest are forgotten first");
        assert_eq!(all.last().unwrap().id, format!("id-{}", USER_EVENTS_KEPT_MAX + 2));
        assert!(store.list(Some("odd")).iter().all(|e| e.name == "odd"));
        assert_eq!(store.list(Some("odd")).len() + store.list(Some("even")).len(), USER_EVENTS_KEPT_MAX);
    }
}
