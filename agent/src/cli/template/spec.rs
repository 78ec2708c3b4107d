//! The command line's own values: `-template "in:out[:command]"` and `-wait min[:max]`.

use std::path::PathBuf;
use std::time::Duration;

use legate_core::duration;

/// One `-template` flag: where the template is, where its output goes, and what to run after
/// the output changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemplateSpec {
    pub source: PathBuf,
    pub destination: PathBuf,
    /// Run with `sh -c` after the destination changed; `None`: nothing to run.
    pub command: Option<String>,
}

impl TemplateSpec {
    /// Parses `in:out[:command]`. The command is everything after the second colon, so it may
    /// hold colons of its own (`curl http://host:80/reload`).
    pub fn parse(text: &str) -> Result<TemplateSpec, String> {
        let mut parts = text.splitn(3, ':');
        let source = parts.next().unwrap_or_default();
        let destination = parts.next();
        let command = parts.next();
        let Some(destination) = destination else {
            return Err(format!("invalid -template {text:?}: expected \"source:destination[:command]\""));
        };
        if source.trim().is_empty() {
            return Err(format!("invalid -template {text:?}: the source (template file) is empty"));
        }
        if destination.trim().is_empty() {
            return Err(format!("invalid -template {text:?}: the destination (output file) is empty"));
        }
        let command = command.map(str::trim).filter(|c| !c.is_empty()).map(str::to_string);
        Ok(TemplateSpec { source: PathBuf::from(source), destination: PathBuf::from(destination), command })
    }
}

/// `-wait`: after a change, wait until the data was quiet for `min`, but no longer than `max`
/// after the first change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Wait {
    pub min: Duration,
    pub max: Duration,
}

impl Wait {
    /// No waiting: render at once after every change.
    pub const NONE: Wait = Wait { min: Duration::ZERO, max: Duration::ZERO };

    /// Parses `min:max` or `min` alone, which means `max = 4 × min` (as consul-template does).
    pub fn parse(text: &str) -> Result<Wait, String> {
        let read = |s: &str| {
            duration::parse_ns(s)
                .map(Duration::from_nanos)
                .map_err(|e| format!("invalid -wait {text:?}: {e}; expected \"min[:max]\" like \"2s:10s\""))
        };
        let wait = match text.split_once(':') {
            Some((min, max)) => Wait { min: read(min)?, max: read(max)? },
            None => {
                let min = read(text)?;
                Wait { min, max: min.saturating_mul(4) }
            }
        };
        if wait.max < wait.min {
            return Err(format!("invalid -wait {text:?}: max ({:?}) is shorter than min ({:?})", wait.max, wait.min));
        }
        Ok(wait)
    }

    /// Whether changes are rendered at once.
    pub fn is_none(&self) -> bool {
        self.min.is_zero()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_template_spec_has_a_source_a_destination_and_maybe_a_command() {
        let plain = TemplateSpec::parse("in.ctmpl:out.cfg").unwrap();
        assert_eq!(plain.source, PathBuf::from("in.ctmpl"));
        assert_eq!(plain.destination, PathBuf::from("out.cfg"));
        assert_eq!(plain.command, None);

        let with_command =
            TemplateSpec::parse("/etc/a.ctmpl:/etc/a.cfg:curl -X POST http://127.0.0.1:80/reload").unwrap();
        assert_eq!(with_command.destination, PathBuf::from("/etc/a.cfg"));
        assert_eq!(with_command.command.as_deref(), Some("curl -X POST http://127.0.0.1:80/reload"));

        assert_eq!(TemplateSpec::parse("a:b:").unwrap().command, None, "an empty command is no command");
    }

    #[test]
    fn a_malformed_template_spec_is_rejected_with_the_expected_shape() {
        for bad in ["in.ctmpl", "", ":out", "in:", "  :out", "in:  :cmd"] {
            let err = TemplateSpec::parse(bad).expect_err(bad);
            assert!(err.contains("invalid -template"), "{bad:?}: {err}");
        }
        assert!(TemplateSpec::parse("in.ctmpl").unwrap_err().contains("source:destination[:command]"));
    }

    #[test]
    fn wait_takes_min_and_max_or_min_alone() {
        assert_eq!(Wait::parse("2s:10s").unwrap(), Wait { min: Duration::from_secs(2), max: Duration::from_secs(10) });
        assert_eq!(
            Wait::parse("500ms").unwrap(),
            Wait { min: Duration::from_millis(500), max: Duration::from_secs(2) }
        );
        assert!(Wait::parse("0").unwrap().is_none());
        assert!(!Wait::parse("1s").unwrap().is_none());
    }

    #[test]
    fn a_malformed_wait_is_rejected() {
        for bad in ["", "5", "abc", "1s:", ":1s", "10s:2s", "-1s"] {
            let err = Wait::parse(bad).expect_err(bad);
            assert!(err.contains("invalid -wait"), "{bad:?}: {err}");
        }
    }
}
