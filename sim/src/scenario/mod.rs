//! Jepsen-style scenario files (`scenarios/*.toml`): what a simulation run does, written down.
//!
//! A scenario names a topology (1, 3 or 5 server voters, in one datacenter or in each of several
//! federated ones), the workloads that client processes
//! run and at what rate, a nemesis (no faults, faults drawn from the seed, or an explicit
//! schedule), the length of the safety phase (faults active) and of the liveness phase (faults
//! healed), the checkers that judge the recorded history, and — in a negative scenario only — a
//! bug planted on purpose and the checker that must catch it. The format is documented key by
//! key in `scenarios/README.md`.
//!
//! # The contract
//!
//! - [`Scenario::parse`] (a file) and [`Scenario::from_str`] (text, with the path it came from)
//!   return a [`Scenario`] only if the whole file is valid: TOML syntax, no unknown key at any
//!   level, every value of the right type and inside its bound ([`limits`]), and the settings
//!   consistent with each other (a fault inside the safety phase, a checker with the workload it
//!   checks, a plant only in `scenarios/negative/`). A runner may rely on every field.
//! - Otherwise they return a [`ScenarioError`] naming the file, the line and column when the
//!   problem has a place, and the key path: `scenarios/fast/x.toml:5:1: topology.servres:
//!   unknown field ...`. The first problem found is reported.
//! - The tier comes from the folder that holds the file ([`Tier::of_path`]), so the path given to
//!   [`Scenario::from_str`] matters.
//! - Parsing is deterministic and reads no clock and no randomness; it runs outside the
//!   simulation, before a seed is chosen.

mod error;
pub mod limits;
mod model;
mod raw;
mod spans;
mod validate;

use std::path::Path;

use serde::Deserialize;
use toml::de::DeTable;

pub use error::{ErrorKind, ScenarioError};
pub use model::*;
pub use spans::Location;

use spans::SpanIndex;

impl Scenario {
    /// Reads and validates the scenario file at `path`.
    pub fn parse(path: impl AsRef<Path>) -> Result<Scenario, ScenarioError> {
        let path = path.as_ref();
        let io = |message: String| ScenarioError::new(ErrorKind::Io, path, message);
        let size = std::fs::metadata(path).map_err(|e| io(format!("cannot read: {e}")))?.len();
        if size > limits::FILE_SIZE_MAX_BYTES as u64 {
            return Err(io(format!(
                "file is {size} bytes; a scenario is at most {} bytes",
                limits::FILE_SIZE_MAX_BYTES
            )));
        }
        let text = std::fs::read_to_string(path).map_err(|e| io(format!("cannot read: {e}")))?;
        Scenario::from_str(&text, path)
    }

    /// Validates scenario `text`; `path` names it in errors and decides its tier.
    pub fn from_str(text: &str, path: impl AsRef<Path>) -> Result<Scenario, ScenarioError> {
        let path = path.as_ref();
        if text.len() > limits::FILE_SIZE_MAX_BYTES {
            let message = format!("{} bytes; a scenario is at most {} bytes", text.len(), limits::FILE_SIZE_MAX_BYTES);
            return Err(ScenarioError::new(ErrorKind::Io, path, message));
        }
        let document = DeTable::parse(text).map_err(|e| syntax_error(path, text, &e))?;
        let spans = SpanIndex::new(&document);
        let raw = raw::RawScenario::deserialize(toml::Deserializer::from(document))
            .map_err(|e| schema_error(path, text, &spans, &e))?;
        validate::validate(raw, &validate::Ctx { path, text, spans: &spans })
    }
}

/// The text is not TOML. The parser names the place; a duplicate key is named by its text.
fn syntax_error(path: &Path, text: &str, e: &toml::de::Error) -> ScenarioError {
    let span = e.span();
    let location = span.as_ref().map(|s| Location::of_offset(text, s.start));
    let mut message = e.message().trim_end().to_string();
    if let Some(key) = span.filter(|s| !s.is_empty()).and_then(|s| text.get(s)) {
        if message == "duplicate key" {
            message = format!("duplicate key `{key}`");
        }
    }
    ScenarioError::new(ErrorKind::Syntax, path, message).at(location)
}

/// The TOML does not fit the format. serde reports a byte span; the span index turns it into
/// a key path. A missing key is reported at its table, with the key appended to the path.
///
/// serde words these messages the same way every time ("missing field" or "unknown field", then
/// the key in backticks), which is what the two refinements below read.
fn schema_error(path: &Path, text: &str, spans: &SpanIndex, e: &toml::de::Error) -> ScenarioError {
    let mut message = e.message().trim_end().to_string();
    let (location, mut field) = match e.span() {
        // An empty span at 0 is the document itself: it has no better place than the file.
        Some(span) if span.is_empty() && span.start == 0 => (None, None),
        Some(span) => (Some(Location::of_offset(text, span.start)), spans.path_at(&span)),
        None => (None, None),
    };
    if let Some(missing) = quoted_after(&message, "missing field `") {
        field = Some(spans::join(field.as_deref().unwrap_or(""), missing));
    }
    // TOML puts a key in the most recent [table]; a top-level key written after one lands there.
    let top_level = ["name", "description", "checkers"];
    if let Some(unknown) = quoted_after(&message, "unknown field `") {
        if top_level.contains(&unknown) && field.as_deref().is_some_and(|f| f.contains('.')) {
            message.push_str(&format!(
                " (`{unknown}` is a top-level key: top-level keys must come before the first [table] header)"
            ));
        }
    }
    ScenarioError::new(ErrorKind::Schema, path, message).at(location).field(field)
}

/// The text between `prefix` and the next backtick, if `message` starts with `prefix`.
fn quoted_after<'m>(message: &'m str, prefix: &str) -> Option<&'m str> {
    message.strip_prefix(prefix).and_then(|rest| rest.split('`').next())
}
