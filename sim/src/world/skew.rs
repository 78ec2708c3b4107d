//! Per-node clock skew, as the nemesis and the runner use it: the simulator's runtime applies
//! it to every timer of the node (Raft's included) and to the server's wall clock.
pub use crate::runtime::clock::{set_skew, skew_of, Skew};
