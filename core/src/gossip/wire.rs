//! Gossip messages and their encoding.
//!
//! A datagram is a compound: a magic byte, a count, then each message as a 2-byte length and
//! its MessagePack body, so news can be added one by one until the packet is full. A stream
//! carries one MessagePack message each way.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::member::MemberState;
use super::user_event::UserEvent;

/// First byte of every datagram: the protocol version.
const PACKET_MAGIC: u8 = 0x4c; // 'L'
/// Bytes each message in a datagram spends on its length.
pub(super) const MESSAGE_OVERHEAD_BYTES: usize = 2;
/// Most messages in one datagram.
const MESSAGES_MAX: usize = 255;
/// Largest stream message we accept (a push-pull of a very large pool fits).
pub const STREAM_SIZE_MAX_BYTES: usize = 32 * 1024 * 1024;
/// Largest encoded tag map a member may carry (memberlist's `MetaMaxSize`).
pub const TAGS_SIZE_MAX_BYTES: usize = 512;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    #[error("not a gossip packet")]
    BadMagic,
    #[error("truncated gossip packet")]
    Truncated,
    #[error("undecodable gossip message: {0}")]
    Decode(String),
    #[error("gossip message too large ({0} bytes)")]
    TooLarge(usize),
    #[error("member tags take {0} bytes, more than the {TAGS_SIZE_MAX_BYTES} allowed")]
    TagsTooLarge(usize),
}

/// One message in a datagram.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) enum Msg {
    /// Are you there? Answered with an ack when `target` is the receiver's name.
    Ping {
        seq: u32,
        target: String,
    },
    /// Probe `target` for me; ack me if it answers, nack me if it does not.
    IndirectPing {
        seq: u32,
        target: String,
        target_addr: SocketAddr,
    },
    Ack {
        seq: u32,
    },
    Nack {
        seq: u32,
    },
    Alive {
        incarnation: u32,
        node: String,
        addr: SocketAddr,
        tags: BTreeMap<String, String>,
    },
    Suspect {
        incarnation: u32,
        node: String,
        from: String,
    },
    Dead {
        incarnation: u32,
        node: String,
        from: String,
    },
    Left {
        incarnation: u32,
        node: String,
    },
    /// A user event, gossiped on by each member that hears of it first (last, so that the
    /// encoding of the variants before it does not change).
    UserEvent(UserEvent),
}

impl Msg {
    /// The member this message is news about (for broadcast invalidation).
    pub(super) fn subject(&self) -> Option<&str> {
        match self {
            Msg::Alive { node, .. } | Msg::Suspect { node, .. } | Msg::Dead { node, .. } | Msg::Left { node, .. } => {
                Some(node)
            }
            _ => None,
        }
    }
}

/// A member's state as a push-pull carries it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct PushState {
    pub(super) name: String,
    pub(super) addr: SocketAddr,
    pub(super) tags: BTreeMap<String, String>,
    pub(super) incarnation: u32,
    pub(super) state: WireState,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) enum WireState {
    Alive,
    Suspect,
    Dead,
    Left,
}

impl From<MemberState> for WireState {
    fn from(s: MemberState) -> Self {
        match s {
            MemberState::Alive => WireState::Alive,
            MemberState::Suspect => WireState::Suspect,
            MemberState::Dead => WireState::Dead,
            MemberState::Left => WireState::Left,
        }
    }
}

/// One message on a stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) enum StreamMsg {
    /// A full-state exchange: the opener sends its state, the receiver answers with its own.
    PushPull {
        join: bool,
        states: Vec<PushState>,
    },
    /// The fallback probe; answered with [`StreamMsg::Ack`].
    Ping {
        seq: u32,
        target: String,
    },
    Ack {
        seq: u32,
    },
}

pub(super) fn encode_msg(msg: &Msg) -> Vec<u8> {
    // Encoding plain data into a Vec cannot fail.
    rmp_serde::to_vec(msg).unwrap_or_default()
}

pub(super) fn encode_stream(msg: &StreamMsg) -> Vec<u8> {
    rmp_serde::to_vec(msg).unwrap_or_default()
}

pub(super) fn decode_stream(bytes: &[u8]) -> Result<StreamMsg, WireError> {
    if bytes.len() > STREAM_SIZE_MAX_BYTES {
        return Err(WireError::TooLarge(bytes.len()));
    }
    rmp_serde::from_slice(bytes).map_err(|e| WireError::Decode(e.to_string()))
}

/// The encoded size of a tag map, checked against [`TAGS_SIZE_MAX_BYTES`].
pub(super) fn check_tags(tags: &BTreeMap<String, String>) -> Result<(), WireError> {
    let size = rmp_serde::to_vec(tags).map(|v| v.len()).unwrap_or(usize::MAX);
    if size > TAGS_SIZE_MAX_BYTES {
        return Err(WireError::TagsTooLarge(size));
    }
    Ok(())
}

/// Builds a datagram from already-encoded messages.
#[derive(Debug)]
pub(super) struct PacketBuilder {
    bytes: Vec<u8>,
    count: usize,
    limit: usize,
}

impl PacketBuilder {
    pub(super) fn new(limit: usize) -> PacketBuilder {
        PacketBuilder { bytes: vec![PACKET_MAGIC, 0], count: 0, limit }
    }

    /// Bytes left for one more message's body.
    pub(super) fn room(&self) -> usize {
        if self.count >= MESSAGES_MAX {
            return 0;
        }
        self.limit.saturating_sub(self.bytes.len() + MESSAGE_OVERHEAD_BYTES)
    }

    /// Adds an encoded message if it fits; `false` if it does not.
    pub(super) fn push(&mut self, encoded: &[u8]) -> bool {
        if encoded.len() > self.room() || encoded.len() > u16::MAX as usize {
            return false;
        }
        self.bytes.extend_from_slice(&(encoded.len() as u16).to_be_bytes());
        self.bytes.extend_from_slice(encoded);
        self.count += 1;
        self.bytes[1] = self.count as u8;
        true
    }

    pub(super) fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub(super) fn finish(self) -> Vec<u8> {
        self.bytes
    }
}

/// The messages of a datagram; a message that does not decode is skipped and counted.
pub(super) fn decode_packet(bytes: &[u8]) -> Result<(Vec<Msg>, usize), WireError> {
    let (&magic, rest) = bytes.split_first().ok_or(WireError::Truncated)?;
    if magic != PACKET_MAGIC {
        return Err(WireError::BadMagic);
    }
    let (&count, mut rest) = rest.split_first().ok_or(WireError::Truncated)?;
    let mut msgs = Vec::with_capacity(count as usize);
    let mut bad = 0;
    for _ in 0..count {
        if rest.len() < MESSAGE_OVERHEAD_BYTES {
            return Err(WireError::Truncated);
        }
        let len = u16::from_be_bytes([rest[0], rest[1]]) as usize;
        rest = &rest[MESSAGE_OVERHEAD_BYTES..];
        if rest.len() < len {
            return Err(WireError::Truncated);
        }
        match rmp_serde::from_slice::<Msg>(&rest[..len]) {
            Ok(m) => msgs.push(m),
            Err(_) => bad += 1,
        }
        rest = &rest[len..];
    }
    Ok((msgs, bad))
}
