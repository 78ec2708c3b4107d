//! The network model: a uniform one-way latency per message, independent datagram loss, and
//! symmetric partitions.
//!
//! A partition splits the members into islands; two members reach each other only when they
//! are on the same island (members no island names share island 0). Reachability is decided
//! when a message *arrives*, so a message in flight when the cut starts is lost and one in
//! flight when it heals gets through. A partition does not touch loss or latency.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::setup::{NetParams, NodeId};

pub(super) struct Network {
    params: NetParams,
    /// Each member's island; all zero when there is no partition.
    islands: Vec<u16>,
}

impl Network {
    pub(super) fn new(params: NetParams, members: usize) -> Network {
        Network { params, islands: vec![0; members] }
    }

    pub(super) fn latency_ms(&self, rng: &mut ChaCha8Rng) -> u64 {
        self.params.latency.draw(rng)
    }

    /// Whether a datagram is lost (drawn only on a lossy network, so that a lossless run's
    /// random stream does not depend on how many datagrams were sent).
    pub(super) fn lost(&self, rng: &mut ChaCha8Rng) -> bool {
        self.params.loss > 0.0 && rng.random_bool(self.params.loss)
    }

    pub(super) fn reachable(&self, a: NodeId, b: NodeId) -> bool {
        self.islands[a] == self.islands[b]
    }

    pub(super) fn is_partitioned(&self) -> bool {
        self.islands.iter().any(|i| *i != 0)
    }

    /// Cuts the network into `islands` (replacing any partition); members not named stay
    /// together on island 0.
    pub(super) fn split(&mut self, islands: &[Vec<NodeId>]) {
        assert!(islands.len() < u16::MAX as usize, "{} islands", islands.len());
        self.heal();
        for (i, island) in islands.iter().enumerate() {
            for &node in island {
                self.islands[node] = i as u16 + 1;
            }
        }
    }

    pub(super) fn heal(&mut self) {
        self.islands.fill(0);
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;
    use crate::gossip::setup::MsRange;

    #[test]
    fn islands_cut_symmetrically_and_heal() {
        let mut net = Network::new(NetParams::default(), 5);
        assert!(net.reachable(0, 4) && !net.is_partitioned());
        net.split(&[vec![1, 2], vec![3]]);
        assert!(net.reachable(1, 2) && net.reachable(0, 4), "same island");
        assert!(!net.reachable(0, 1) && !net.reachable(1, 0), "symmetric");
        assert!(!net.reachable(2, 3) && !net.reachable(3, 4));
        net.heal();
        assert!(net.reachable(1, 3) && !net.is_partitioned());
    }

    #[test]
    fn latency_stays_in_range_and_loss_is_near_its_probability() {
        let params = NetParams { latency: MsRange::new(2, 4), loss: 0.2 };
        let net = Network::new(params, 2);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        assert!((0..1_000).map(|_| net.latency_ms(&mut rng)).all(|l| (2..=4).contains(&l)));
        let lost = (0..10_000).filter(|_| net.lost(&mut rng)).count();
        assert!((1_800..2_200).contains(&lost), "{lost} of 10000 lost at p = 0.2");
    }
}
