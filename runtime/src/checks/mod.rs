//! The health-check executors: run one script, HTTP or TCP check ([`CheckRun`]) and say what
//! it found ([`CheckResult`]). What to run and when, and what a result means for the catalog,
//! is decided in `legate_core::agent`; this module only does the I/O, the way Consul's agent
//! does it, so that scripts, endpoints and dashboards written for Consul see the same thing:
//!
//! * **Script**: `args[0]` run directly (no shell), stdin null, stdout and stderr into one pipe,
//!   in a process group of its own. Exit 0 passing, 1 warning, anything else critical. On
//!   timeout the whole group is killed: `Timed out (30s) running check`, then the output.
//! * **HTTP**: one request per run on a fresh connection (Consul disables keep-alive), Go's
//!   redirect rules, `User-Agent: Consul Health Check`. 2xx passing, 429 warning, else
//!   critical; output `HTTP GET <url>: 200 OK Output: <body>`.
//! * **TCP**: a connect: `TCP connect <addr>: Success`, or Go's dial error.
//!
//! Error texts follow Go's (`dial tcp 127.0.0.1:1: connect: connection refused`) because that
//! is what Consul puts in a check's output. Every run answers within its timeout plus
//! [`REAP_GRACE_MS`]: nothing waits on the network or a child without a deadline.
//!
//! Outputs keep the *end* of what was produced (Consul reads into a circular buffer; a
//! script's last lines say why it failed) and fit in `output_max_bytes` including the text
//! around them, so the core's own cut (which keeps the head) leaves them intact.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use legate_core::agent::{CheckKind, CheckResult, CheckRun};
use legate_core::catalog::Status;
use legate_core::limits;
use tokio::time::Instant;
use tokio_rustls::rustls::ClientConfig;

use crate::local::CheckExecutor;

use self::http::HttpCheck;
use self::script::run_script;
use self::tcp::run_tcp;

mod http;
mod script;
mod tcp;

/// After a timed-out script's group is killed: how long to wait to reap the child and to read
/// what is left in the pipe. SIGKILL cannot be caught, so this is only the kernel's time.
pub const REAP_GRACE_MS: u64 = 1_000;

/// A timeout beyond this is taken as this: deadlines stay representable on any clock.
const TIMEOUT_MAX_MS: u64 = 365 * 24 * 3_600_000;

/// Runs checks. Holds the TLS client configurations (built on first HTTPS use: loading the
/// system's trust roots reads a directory of certificates); connections are not pooled, as
/// Consul's checks disable keep-alive so a half-dead idle connection cannot fail a check.
/// Clones share.
#[derive(Clone, Default)]
pub struct Executor {
    tls: Arc<TlsConfigs>,
}

#[derive(Default)]
struct TlsConfigs {
    /// Certificates checked against the system's roots.
    verified: OnceLock<Result<Arc<ClientConfig>, String>>,
    /// `TLSSkipVerify`: any certificate (handshake signatures are still checked).
    unverified: OnceLock<Result<Arc<ClientConfig>, String>>,
}

/// Runs one check with a process-wide [`Executor`].
pub async fn execute(run: &CheckRun) -> CheckResult {
    static SHARED: OnceLock<Executor> = OnceLock::new();
    SHARED.get_or_init(Executor::new).execute(run).await
}

impl Executor {
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs one check; never panics, answers within the run's timeout plus
    /// [`REAP_GRACE_MS`]. A `timeout_ms` of 0 takes Consul's default for the kind.
    pub async fn execute(&self, run: &CheckRun) -> CheckResult {
        let max = run.output_max_bytes;
        match &run.kind {
            CheckKind::Script { args } => {
                run_script(args, timeout(run, limits::CHECK_SCRIPT_TIMEOUT_DEFAULT_MS), max).await
            }
            CheckKind::Http { url, method, header, body, tls_skip_verify, tls_server_name } => {
                let req = HttpCheck {
                    url,
                    method: if method.is_empty() { "GET" } else { method },
                    header,
                    body,
                    tls_skip_verify: *tls_skip_verify,
                    tls_server_name,
                };
                self.run_http(&req, timeout(run, limits::CHECK_NETWORK_TIMEOUT_DEFAULT_MS), max).await
            }
            CheckKind::Tcp { addr } => run_tcp(addr, timeout(run, limits::CHECK_NETWORK_TIMEOUT_DEFAULT_MS)).await,
        }
    }
}

impl CheckExecutor for Executor {
    fn execute(&self, run: CheckRun) -> Pin<Box<dyn Future<Output = CheckResult> + Send>> {
        let this = self.clone();
        Box::pin(async move { Executor::execute(&this, &run).await })
    }
}

fn timeout(run: &CheckRun, default_ms: u64) -> Duration {
    let ms = if run.timeout_ms == 0 { default_ms } else { run.timeout_ms.min(TIMEOUT_MAX_MS) };
    Duration::from_millis(ms)
}

fn deadline_after(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout).unwrap_or(now)
}

fn result(status: Status, output: impl Into<String>) -> CheckResult {
    CheckResult { status, output: output.into() }
}

fn critical(output: impl Into<String>) -> CheckResult {
    result(Status::Critical, output)
}

#[cfg(test)]
mod tests;
