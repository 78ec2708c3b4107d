//! A Raft network with no peers, for a single-voter cluster (`-dev`): every RPC fails fast
//! as unreachable. A lone voter never calls it, but openraft needs a network to be built.

use std::future::Future;

use openraft::alias::{SnapshotOf, VoteOf};
use openraft::errors::{RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse};
use openraft::{AnyError, OptionalSend};

use super::LegateConfig;

/// Connects to nobody.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoPeers;

/// A client of [`NoPeers`]: every call answers `Unreachable`.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoPeer;

fn unreachable<C: LegateConfig>() -> Unreachable<C> {
    Unreachable::new(&AnyError::error("this node has no Raft peers"))
}

impl<C: LegateConfig> RaftNetworkFactory<C> for NoPeers {
    type Network = NoPeer;

    async fn new_client(&mut self, _target: C::NodeId, _node: &C::Node) -> NoPeer {
        NoPeer
    }
}

impl<C: LegateConfig> RaftNetworkV2<C> for NoPeer {
    type SnapshotData = std::io::Cursor<Vec<u8>>;

    async fn append_entries(
        &mut self,
        _rpc: AppendEntriesRequest<C>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<C>, RPCError<C>> {
        Err(RPCError::Unreachable(unreachable()))
    }

    async fn vote(&mut self, _rpc: VoteRequest<C>, _option: RPCOption) -> Result<VoteResponse<C>, RPCError<C>> {
        Err(RPCError::Unreachable(unreachable()))
    }

    async fn full_snapshot(
        &mut self,
        _vote: VoteOf<C>,
        _snapshot: SnapshotOf<C, Self::SnapshotData>,
        _cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<C>, StreamingError<C>> {
        Err(StreamingError::Unreachable(unreachable()))
    }
}
