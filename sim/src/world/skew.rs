//! Per-node clock skew: NOT SIMULATED YET. The scenario format's `[clocks]` and `clock` faults
//! are parsed, drawn from the seed and shown in the trace, but every node still reads madsim's
//! one virtual clock: this shim records nothing. The plan: a per-node `Instant` for
//! `MadsimRuntime` (drift on every timer, Raft's included) and a skewed `Clock` for the
//! server's wall-clock stamps, behind these same three names.
use madsim::task::NodeId;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Skew {
    pub offset_ns: i64,
    pub drift_ppm: i32,
}

pub fn set_skew(_node: NodeId, _skew: Skew) {}

pub fn skew_of(_node: NodeId) -> Skew {
    Skew::default()
}
