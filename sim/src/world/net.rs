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

/// The WAN between datacenters: the latency of one hop and the spikes the nemesis sets.
#[derive(Clone, Debug, Default)]
struct Wan {
    /// Off with one datacenter: no message crosses a WAN and no latency is drawn.
    enabled: bool,
    hop_latency: Duration,
    /// Extra latency, uniform in `0..=max`, on WAN messages to or from a datacenter (`None`:
    /// on every WAN link).
    spikes: std::collections::BTreeMap<Option<usize>, Duration>,
}

thread_local! {
    /// This run's WAN (one simulation per thread, like [`LINK_FAULTS`]).
    static WAN: std::cell::RefCell<Wan> = std::cell::RefCell::new(Wan::default());
}

/// The datacenter of a simulated address: servers of datacenter `d` are `10.d.0.x`, its
/// clients `10.d.1.x` (see [`super::server_addr_in`]).
pub fn datacenter_of(ip: IpAddr) -> usize {
    match ip {
        IpAddr::V4(v4) => usize::from(v4.octets()[1]),
        IpAddr::V6(_) => 0,
    }
}

/// Turns the WAN on (several datacenters) with `hop_latency` per hop, or off; no spikes.
pub fn set_wan(enabled: bool, hop_latency: Duration) {
    WAN.with(|w| *w.borrow_mut() = Wan { enabled, hop_latency, spikes: Default::default() });
}

/// Sets the spike on WAN links to or from datacenter `dc` (`None`: every WAN link).
pub fn set_wan_spike(dc: Option<usize>, max: Duration) {
    WAN.with(|w| {
        let mut w = w.borrow_mut();
        if max.is_zero() {
            w.spikes.remove(&dc);
        } else {
            w.spikes.insert(dc, max);
        }
    });
}

/// Removes every WAN spike (the hop latency stays: it is the topology, not a fault).
pub fn clear_wan_spikes() {
    WAN.with(|w| w.borrow_mut().spikes.clear());
}

/// The WAN latency of one message from `from` to `to`: `None` within a datacenter (no draw).
fn wan_leg(from: IpAddr, to: IpAddr) -> Option<Duration> {
    let (a, b) = (datacenter_of(from), datacenter_of(to));
    let (hops, spike) = WAN.with(|w| {
        let w = w.borrow();
        // An endpoint bound to 0.0.0.0 (a lone cluster's clients) talks to its own datacenter.
        if !w.enabled || a == b || from.is_unspecified() || to.is_unspecified() {
            return (0, None);
        }
        let spike = [None, Some(a), Some(b)].iter().filter_map(|k| w.spikes.get(k).copied()).max();
        (a.abs_diff(b) as u32, Some((w.hop_latency, spike.unwrap_or_default())))
    });
    let (hop, spike) = spike?;
    let mut latency = hop * hops;
    if !spike.is_zero() {
        latency += Duration::from_nanos(thread_rng().gen_range(0..=spike.as_nanos() as u64));
    }
    Some(latency)
}

/// Calls `target` with a timeout, through the message faults in force and, between
/// datacenters, the WAN's latency on the request and on the reply.
pub async fn call(
    endpoint: &Arc<Endpoint>,
    target: SocketAddr,
    rpc: Rpc,
    timeout: Duration,
) -> Result<RpcReply, String> {
    let from = endpoint.local_addr().map(|a| a.ip()).unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
    let Some(up) = wan_leg(from, target.ip()) else {
        return call_direct(endpoint, from, target, rpc, timeout).await;
    };
    let down = wan_leg(target.ip(), from).unwrap_or_default();
    if up + down >= timeout {
        madsim::time::sleep(timeout).await;
        return Err(format!("{target}: timed out (WAN latency)"));
    }
    madsim::time::sleep(up).await;
    let reply = call_direct(endpoint, from, target, rpc, timeout - up - down).await?;
    madsim::time::sleep(down).await;
    Ok(reply)
}

/// [`call`] without the WAN: madsim's network and the message faults.
async fn call_direct(
    endpoint: &Arc<Endpoint>,
    from: IpAddr,
    target: SocketAddr,
    rpc: Rpc,
    timeout: Duration,
) -> Result<RpcReply, String> {
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
