//! Consul's status thresholds: a check's reported status follows its runs only after enough
//! of them agree (`SuccessBeforePassing`, `FailuresBeforeWarning`, `FailuresBeforeCritical`).

use crate::catalog::Status;

/// The thresholds of one check and the counters of its recent runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Thresholds {
    /// Consecutive passing (or warning) runs before the check reports them.
    pub success_before_passing: u32,
    /// Consecutive failing runs before the check reports warning. Unset (0) means the same
    /// as `failures_before_critical`, as in Consul.
    pub failures_before_warning: u32,
    /// Consecutive failing runs before the check reports critical.
    pub failures_before_critical: u32,
    successes: u32,
    failures: u32,
}

impl Thresholds {
    pub fn new(success_before_passing: u32, failures_before_warning: u32, failures_before_critical: u32) -> Self {
        Thresholds { success_before_passing, failures_before_warning, failures_before_critical, ..Default::default() }
    }

    /// Counts one run; returns the status the check should now report, or `None` to keep
    /// what it reports (and its output) until a threshold is reached.
    pub fn observe(&mut self, ran: Status) -> Option<Status> {
        match ran {
            Status::Passing | Status::Warning => {
                self.successes = self.successes.saturating_add(1);
                self.failures = 0;
                (self.successes >= self.success_before_passing).then_some(ran)
            }
            Status::Critical => {
                self.failures = self.failures.saturating_add(1);
                self.successes = 0;
                let before_warning = if self.failures_before_warning == 0 {
                    self.failures_before_critical
                } else {
                    self.failures_before_warning
                };
                if self.failures >= self.failures_before_critical {
                    Some(Status::Critical)
                } else if self.failures >= before_warning {
                    Some(Status::Warning)
                } else {
                    None
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_thresholds_follow_every_run() {
        let mut t = Thresholds::default();
        assert_eq!(t.observe(Status::Critical), Some(Status::Critical));
        assert_eq!(t.observe(Status::Warning), Some(Status::Warning));
        assert_eq!(t.observe(Status::Passing), Some(Status::Passing));
    }

    #[test]
    fn failures_warn_then_go_critical_and_a_success_resets_them() {
        let mut t = Thresholds::new(2, 1, 3);
        assert_eq!(t.observe(Status::Passing), None);
        assert_eq!(t.observe(Status::Passing), Some(Status::Passing));
        assert_eq!(t.observe(Status::Critical), Some(Status::Warning));
        assert_eq!(t.observe(Status::Critical), Some(Status::Warning));
        assert_eq!(t.observe(Status::Critical), Some(Status::Critical));
        // One success is not enough to pass again, but it resets the failure count.
        assert_eq!(t.observe(Status::Passing), None);
        assert_eq!(t.observe(Status::Critical), Some(Status::Warning));
    }

    #[test]
    fn an_unset_warning_threshold_means_the_critical_one() {
        let mut t = Thresholds::new(0, 0, 2);
        assert_eq!(t.observe(Status::Critical), None);
        assert_eq!(t.observe(Status::Critical), Some(Status::Critical));
    }
}
