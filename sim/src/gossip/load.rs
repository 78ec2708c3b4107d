//! Message load: what each member sends during a measurement window.
//!
//! Counted by the driver as it carries each output: datagram bytes (what `Gossip::stats()`
//! counts as `packet_bytes_sent`), stream requests (`stream_bytes_sent`) and the stream
//! replies a member sends back, which the state machine returns rather than counts. Payload
//! bytes only: no UDP, TCP or IP headers. A member counts only if it ran for the whole window,
//! so a restart or a leave does not skew the rate.

use super::setup::NodeId;

#[derive(Clone, Copy, Debug, Default)]
struct Sent {
    datagrams: u64,
    bytes: u64,
    /// Set when the member started or stopped inside the window.
    disturbed: bool,
}

/// Per-member rates over one window.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LoadFigures {
    /// Members that ran for the whole window.
    pub members: usize,
    pub window_ms: u64,
    pub kbit_per_s_mean: f64,
    pub kbit_per_s_max: f64,
    pub datagrams_per_s_mean: f64,
    pub datagrams_per_s_max: f64,
}

pub(super) struct Load {
    sent: Vec<Sent>,
    window_from_ms: Option<u64>,
}

impl Load {
    pub(super) fn new(members: usize) -> Load {
        Load { sent: vec![Sent::default(); members], window_from_ms: None }
    }

    /// Starts a window (discarding what an earlier one counted).
    pub(super) fn open(&mut self, now_ms: u64) {
        self.sent.fill(Sent::default());
        self.window_from_ms = Some(now_ms);
    }

    pub(super) fn datagram(&mut self, node: NodeId, bytes: usize) {
        let s = &mut self.sent[node];
        s.datagrams += 1;
        s.bytes += bytes as u64;
    }

    pub(super) fn stream(&mut self, node: NodeId, bytes: usize) {
        self.sent[node].bytes += bytes as u64;
    }

    /// The member started or stopped.
    pub(super) fn disturbed(&mut self, node: NodeId) {
        self.sent[node].disturbed = true;
    }

    /// Ends the window: the rates of the members that were `running` through it.
    pub(super) fn close(&mut self, now_ms: u64, running: impl Iterator<Item = NodeId>) -> LoadFigures {
        let Some(from_ms) = self.window_from_ms.take() else { return LoadFigures::default() };
        let window_ms = now_ms.saturating_sub(from_ms);
        let seconds = window_ms as f64 / 1_000.0;
        if seconds <= 0.0 {
            return LoadFigures::default();
        }
        let counted: Vec<Sent> = running.map(|n| self.sent[n]).filter(|s| !s.disturbed).collect();
        let members = counted.len();
        let kbit = |s: &Sent| s.bytes as f64 * 8.0 / 1_000.0 / seconds;
        let rate = |s: &Sent| s.datagrams as f64 / seconds;
        let mean = |f: &dyn Fn(&Sent) -> f64| counted.iter().map(f).sum::<f64>() / members.max(1) as f64;
        let max = |f: &dyn Fn(&Sent) -> f64| counted.iter().map(f).fold(0.0, f64::max);
        LoadFigures {
            members,
            window_ms,
            kbit_per_s_mean: mean(&kbit),
            kbit_per_s_max: max(&kbit),
            datagrams_per_s_mean: mean(&rate),
            datagrams_per_s_max: max(&rate),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_per_member_per_second_over_undisturbed_members() {
        let mut load = Load::new(3);
        load.open(1_000);
        load.datagram(0, 500);
        load.datagram(0, 500);
        load.stream(1, 250);
        load.datagram(2, 10_000);
        load.disturbed(2);
        let f = load.close(3_000, [0, 1, 2].into_iter());
        assert_eq!((f.members, f.window_ms), (2, 2_000));
        assert_eq!(f.kbit_per_s_max, 4.0, "1000 bytes in 2 s");
        assert_eq!(f.kbit_per_s_mean, 2.5, "and 250 bytes in 2 s");
        assert_eq!((f.datagrams_per_s_mean, f.datagrams_per_s_max), (0.5, 1.0));
    }
}
