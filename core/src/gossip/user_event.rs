//! User events (Serf's user events, `consul event`): small named messages fired at one member
//! and gossiped to all, each delivered once per member.
//!
//! An event rides the piggyback queue like membership news, under its own key so that it
//! never replaces news about a member, and is sent as often as news is. A member that hears
//! of an event the first time delivers it ([`super::Event::User`]) and gossips it on; the IDs
//! of the last [`USER_EVENT_IDS_SEEN_MAX`] events stop a second delivery. Filters travel with
//! the event and are the receiver's business: the pool delivers every event to every member.

use std::collections::{BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};

use crate::limits::{USER_EVENT_IDS_SEEN_MAX, USER_EVENT_ID_SIZE_MAX_BYTES, USER_EVENT_SIZE_MAX_BYTES};

/// One user event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserEvent {
    /// Unique per event (the driver makes a UUID); the key of delivery-once.
    pub id: String,
    pub name: String,
    pub payload: Vec<u8>,
    /// Regular expressions the receiver matches against its node name, its services' names
    /// and their tags; empty matches everything.
    pub node_filter: String,
    pub service_filter: String,
    pub tag_filter: String,
    /// The pool's event Lamport time when it was fired (set by [`super::Gossip::user_event`]).
    pub ltime: u64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UserEventError {
    #[error("User event name must not be empty")]
    EmptyName,
    #[error("user event ID must be 1 to {USER_EVENT_ID_SIZE_MAX_BYTES} bytes")]
    BadId,
    #[error(
        "User event exceeds size limit: {0} bytes for name, payload and filters, more than {USER_EVENT_SIZE_MAX_BYTES}"
    )]
    TooLarge(usize),
    #[error("too many user events are waiting to be gossiped; try again shortly")]
    Busy,
    #[error("a user event with this ID was fired or heard of already")]
    DuplicateId,
}

impl UserEvent {
    /// Checks the limits; the driver can call it before firing, and it guards what arrives.
    pub fn check(&self) -> Result<(), UserEventError> {
        if self.name.is_empty() {
            return Err(UserEventError::EmptyName);
        }
        if self.id.is_empty() || self.id.len() > USER_EVENT_ID_SIZE_MAX_BYTES {
            return Err(UserEventError::BadId);
        }
        let size = self.name.len()
            + self.payload.len()
            + self.node_filter.len()
            + self.service_filter.len()
            + self.tag_filter.len();
        if size > USER_EVENT_SIZE_MAX_BYTES {
            return Err(UserEventError::TooLarge(size));
        }
        Ok(())
    }

    /// The piggyback queue's key for this event: a NUL byte cannot start a member name, so it
    /// never collides with (or replaces) news about a member.
    pub(super) fn broadcast_key(id: &str) -> String {
        format!("{EVENT_KEY_PREFIX}{id}")
    }
}

/// Start of every user event's key in the piggyback queue.
pub(super) const EVENT_KEY_PREFIX: &str = "\u{0}event:";

/// The IDs of the most recent events, oldest forgotten first.
#[derive(Debug, Default)]
pub(super) struct SeenIds {
    ids: BTreeSet<String>,
    order: VecDeque<String>,
}

impl SeenIds {
    /// Records `id`; `false` if it was already recorded.
    pub(super) fn insert(&mut self, id: &str) -> bool {
        if self.ids.contains(id) {
            return false;
        }
        if self.order.len() >= USER_EVENT_IDS_SEEN_MAX {
            if let Some(old) = self.order.pop_front() {
                self.ids.remove(&old);
            }
        }
        self.ids.insert(id.to_string());
        self.order.push_back(id.to_string());
        debug_assert_eq!(self.ids.len(), self.order.len());
        debug_assert!(self.order.len() <= USER_EVENT_IDS_SEEN_MAX);
        true
    }
}
