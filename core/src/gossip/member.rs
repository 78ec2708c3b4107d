//! A member as this node sees it.

use std::collections::BTreeMap;
use std::net::SocketAddr;

/// The protocol state of a member (memberlist's).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MemberState {
    Alive,
    Suspect,
    Dead,
    Left,
}

/// The status users see (Serf's, numbered as `/v1/agent/members` reports it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MemberStatus {
    Alive = 1,
    Leaving = 2,
    Left = 3,
    Failed = 4,
}

impl MemberStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            MemberStatus::Alive => "alive",
            MemberStatus::Leaving => "leaving",
            MemberStatus::Left => "left",
            MemberStatus::Failed => "failed",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    pub addr: SocketAddr,
    pub tags: BTreeMap<String, String>,
    pub incarnation: u32,
    pub state: MemberState,
    /// When this node last saw the state change (its own clock).
    pub state_change_ms: u64,
}

impl Member {
    /// A suspect is still alive to users (as in Serf); `leaving` is reported by the driver
    /// for its own node while a leave propagates.
    pub fn status(&self) -> MemberStatus {
        match self.state {
            MemberState::Alive | MemberState::Suspect => MemberStatus::Alive,
            MemberState::Dead => MemberStatus::Failed,
            MemberState::Left => MemberStatus::Left,
        }
    }

    /// Alive or suspect: probed, gossiped to, counted in the pool's size.
    pub fn is_live(&self) -> bool {
        matches!(self.state, MemberState::Alive | MemberState::Suspect)
    }
}
