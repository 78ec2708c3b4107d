//! The runtime's messages ([`legate_runtime::rpc`]) over madsim's simulated network.
//!
//! The agent carries [`Rpc`]s over TCP; here madsim delivers them as typed values (no
//! serialisation) with its seeded latency, loss and partitions, plus the message faults the
//! nemesis sets ([`LinkFaults`]). Every call has a timeout: a partitioned peer answers nothing.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use legate_core::raft::{ServerNode, TypeConfig};
use legate_runtime::rpc::{RpcNetwork, RpcTransport, Wire, WireError};
use madsim::net::Endpoint;
use madsim::rand::{thread_rng, Rng};
use serde::{Deserialize, Serialize};

use crate::MadsimRuntime;

/// openraft's type configuration in the simulator.
pub type Tc = TypeConfig<MadsimRuntime>;

pub use legate_runtime::rpc::ClientCall;

/// Every message between simulated processes (the runtime's, over madsim).
pub type Rpc = legate_runtime::rpc::Rpc<Tc>;
/// The answer to an [`Rpc`].
pub type RpcReply = legate_runtime::rpc::RpcReply<Tc>;

/// An [`Rpc`] as madsim carries it (madsim's request trait is implemented here, on a type of
/// this crate).
#[derive(Serialize, Deserialize)]
pub struct Envelope(pub Rpc);

/// An [`RpcReply`] as madsim carries it.
#[derive(Serialize, Deserialize)]
pub struct ReplyEnvelope(pub RpcReply);

impl madsim::net::rpc::Request for Envelope {
    type Response = ReplyEnvelope;
    const ID: u64 = 0x4c45_4741_5445; // "LEGATE"
}

/// Parses a server's `host:port`.
pub fn addr_of(node: &ServerNode) -> Result<SocketAddr, String> {
    node.rpc_addr.parse().map_err(|e| format!("bad address {:?}: {e}", node.rpc_addr))
}

/// Message faults on the links of one node (or of every node), drawn per message from the
/// seeded RNG. Set by the nemesis; [`LinkFaults::default`] is a perfect network.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LinkFaults {
    /// Probability that a message is lost: half the time the request (nothing happens), half
    /// the time the reply (the request took effect). Either way the caller times out.
    pub drop: f64,
    /// Extra latency, uniform in `0..=delay_max`, on every message.
    pub delay_max: Duration,
    /// Probability that a Raft message is delivered twice (the copy a little later).
    pub duplicate: f64,
    /// Probability that a message is held back by up to [`REORDER_MAX`], so that later
    /// messages overtake it.
    pub reorder: f64,
}

/// The longest a reordered message is held back.
pub const REORDER_MAX: Duration = Duration::from_millis(200);

impl LinkFaults {
    fn is_none(&self) -> bool {
        *self == LinkFaults::default()
    }

    /// The worse of two settings, field by field.
    fn worst(self, other: LinkFaults) -> LinkFaults {
        LinkFaults {
            drop: self.drop.max(other.drop),
            delay_max: self.delay_max.max(other.delay_max),
            duplicate: self.duplicate.max(other.duplicate),
            reorder: self.reorder.max(other.reorder),
        }
    }
}

thread_local! {
    /// Faults by node address (`None`: every link). One simulation runs per thread, so this is
    /// per run; a BTreeMap, so lookups never depend on hash order.
    static LINK_FAULTS: std::cell::RefCell<std::collections::BTreeMap<Option<IpAddr>, LinkFaults>> =
        const { std::cell::RefCell::new(std::collections::BTreeMap::new()) };
}

/// Sets the message faults on every link to or from `node` (`None`: on every link).
pub fn set_link_faults(node: Option<IpAddr>, faults: LinkFaults) {
    LINK_FAULTS.with(|f| {
        let mut f = f.borrow_mut();
        if faults.is_none() {
            f.remove(&node);
        } else {
            f.insert(node, faults);
        }
    });
}

/// The message faults currently set for `node` (`None`: every link).
pub fn link_faults(node: Option<IpAddr>) -> LinkFaults {
    LINK_FAULTS.with(|f| f.borrow().get(&node).copied().unwrap_or_default())
}

/// Removes every message fault.
pub fn clear_link_faults() {
    LINK_FAULTS.with(|f| f.borrow_mut().clear());
}

fn faults_between(from: IpAddr, to: IpAddr) -> LinkFaults {
    LINK_FAULTS.with(|f| {
        let f = f.borrow();
        [None, Some(from), Some(to)]
            .iter()
            .filter_map(|k| f.get(k).copied())
            .fold(LinkFaults::default(), LinkFaults::worst)
    })
}

/// Calls `target` with a timeout, through the message faults in force.
pub async fn call(
    endpoint: &Arc<Endpoint>,
    target: SocketAddr,
    rpc: Rpc,
    timeout: Duration,
) -> Result<RpcReply, String> {
    let from = endpoint.local_addr().map(|a| a.ip()).unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
    let faults = faults_between(from, target.ip());
    if faults.is_none() {
        return endpoint
            .call_timeout(target, Envelope(rpc), timeout)
            .await
            .map(|r| r.0)
            .map_err(|e| format!("{target}: {e}"));
    }
    let started = std::time::Instant::now();
    let remaining = |started: std::time::Instant| timeout.saturating_sub(started.elapsed());
    let mut delay = Duration::ZERO;
    if !faults.delay_max.is_zero() {
        delay += Duration::from_nanos(thread_rng().gen_range(0..=faults.delay_max.as_nanos() as u64));
    }
    if faults.reorder > 0.0 && thread_rng().gen_bool(faults.reorder) {
        delay += Duration::from_nanos(thread_rng().gen_range(0..=REORDER_MAX.as_nanos() as u64));
    }
    if delay >= timeout {
        madsim::time::sleep(timeout).await;
        return Err(format!("{target}: timed out (message delayed)"));
    }
    if !delay.is_zero() {
        madsim::time::sleep(delay).await;
    }
    if faults.duplicate > 0.0 && thread_rng().gen_bool(faults.duplicate) {
        if let Some(copy) = duplicate_of(&rpc) {
            let endpoint = endpoint.clone();
            let lag = Duration::from_millis(thread_rng().gen_range(0..=REORDER_MAX.as_millis() as u64));
            madsim::task::spawn(async move {
                madsim::time::sleep(lag).await;
                let _ = endpoint.call_timeout(target, Envelope(copy), timeout).await;
            });
        }
    }
    if faults.drop > 0.0 && thread_rng().gen_bool(faults.drop) {
        if thread_rng().gen_bool(0.5) {
            // The reply is lost: the request arrives and takes effect.
            let _ = endpoint.call_timeout(target, Envelope(rpc), remaining(started)).await;
        }
        madsim::time::sleep(remaining(started)).await;
        return Err(format!("{target}: timed out (message dropped)"));
    }
    endpoint
        .call_timeout(target, Envelope(rpc), remaining(started))
        .await
        .map(|r| r.0)
        .map_err(|e| format!("{target}: {e}"))
}

/// A copy of a Raft message (the only ones a duplicating network may repeat harmlessly for
/// the protocol to absorb; client and forwarded requests travel over TCP-like connections).
fn duplicate_of(rpc: &Rpc) -> Option<Rpc> {
    match rpc {
        Rpc::Append(r) => Some(Rpc::Append(r.clone())),
        Rpc::Vote(r) => Some(Rpc::Vote(r.clone())),
        Rpc::PreVote(r) => Some(Rpc::PreVote(r.clone())),
        _ => None,
    }
}

/// The simulator's [`Wire`]: madsim's network from this node's endpoint, through the message
/// faults in force. openraft's network and the forwarding transport are the runtime's, over it.
#[derive(Clone)]
pub struct SimWire {
    pub endpoint: Arc<Endpoint>,
}

impl Wire for SimWire {
    type C = Tc;

    async fn call(&self, target: &ServerNode, rpc: Rpc, timeout: Duration) -> Result<RpcReply, WireError> {
        let addr = addr_of(target).map_err(WireError::not_delivered)?;
        call(&self.endpoint, addr, rpc, timeout).await.map_err(WireError::maybe_delivered)
    }
}

/// openraft's network in the simulator.
pub type SimNetwork = RpcNetwork<SimWire>;
/// Server-to-server forwarding in the simulator.
pub type SimTransport = RpcTransport<SimWire>;
