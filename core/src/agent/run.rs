//! What it takes to run one check (an output of [`super::LocalAgent`]) and what running it
//! found (an input). The executors live in the runtime; the decisions stay here.

use std::collections::BTreeMap;

use crate::catalog::Status;

/// One run of a check, to be carried out by the driver's executor, which answers with a
/// [`CheckResult`] through [`super::LocalAgent::handle_check_result`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckRun {
    pub check_id: String,
    pub kind: CheckKind,
    /// The executor gives up (and reports critical) after this long.
    pub timeout_ms: u64,
    /// Output beyond this many bytes is cut (Consul's `OutputMaxSize`).
    pub output_max_bytes: usize,
}

/// How a check is run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckKind {
    /// Run `args[0]` with the rest as arguments (no shell): exit 0 passing, 1 warning, any
    /// other exit (or a signal, or the timeout) critical. stdout and stderr together are the
    /// output. On timeout the whole process group is killed.
    Script { args: Vec<String> },
    /// An HTTP request: 2xx passing, 429 warning, anything else (or no answer) critical. The
    /// response body is the output.
    Http {
        url: String,
        /// `GET` when empty.
        method: String,
        header: BTreeMap<String, Vec<String>>,
        body: String,
        tls_skip_verify: bool,
        tls_server_name: String,
    },
    /// A TCP connect to `host:port`: connected passing, else critical.
    Tcp { addr: String },
}

/// What one run of a check found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckResult {
    pub status: Status,
    pub output: String,
}
