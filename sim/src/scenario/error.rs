//! Why a scenario file was rejected, and where.
//!
//! Every error names the file; when the problem has a place in the file it also names the line
//! and column, and when it concerns a key, the key path:
//!
//! ```text
//! scenarios/fast/x.toml:6:1: topology.servres: unknown field `servres`, expected `servers`
//! scenarios/fast/x.toml:6:11: topology.servers: must be 1, 3 or 5 voters (got 4); an even count adds no fault tolerance
//! ```

use std::fmt;
use std::path::{Path, PathBuf};

use super::spans::Location;

/// What kind of problem the file has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The file could not be read (missing, unreadable, too large, not UTF-8).
    Io,
    /// The text is not valid TOML.
    Syntax,
    /// Valid TOML that does not fit the format: an unknown key, a missing key, a wrong type, a
    /// value outside its set of names, a malformed duration.
    Schema,
    /// Well-formed, but the settings contradict each other or leave a bound.
    Invalid,
}

/// A rejected scenario file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScenarioError {
    pub kind: ErrorKind,
    /// The file, as the caller named it.
    pub path: PathBuf,
    /// Where in the file, if the problem has a place.
    pub location: Option<Location>,
    /// The key path (`nemesis.schedule[1].at`), if the problem concerns a key.
    pub field: Option<String>,
    pub message: String,
}

impl ScenarioError {
    pub(crate) fn new(kind: ErrorKind, path: &Path, message: impl Into<String>) -> ScenarioError {
        ScenarioError { kind, path: path.to_path_buf(), location: None, field: None, message: message.into() }
    }

    pub(crate) fn at(mut self, location: Option<Location>) -> ScenarioError {
        self.location = location;
        self
    }

    pub(crate) fn field(mut self, field: Option<String>) -> ScenarioError {
        self.field = field.filter(|f| !f.is_empty());
        self
    }

    /// The line of the problem (1-based), if it has one.
    pub fn line(&self) -> Option<usize> {
        self.location.map(|l| l.line)
    }
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some(Location { line, column }) = self.location {
            write!(f, ":{line}:{column}")?;
        }
        if let Some(field) = &self.field {
            write!(f, ": {field}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ScenarioError {}
