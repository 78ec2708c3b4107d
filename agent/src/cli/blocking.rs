//! Blocking-query loops for the CLI commands that follow data (`watch`, `template`, `lock`),
//! with the client's side of Consul's index rules:
//!
//! - the first request carries no index (an immediate answer); each later one carries the last
//!   `X-Consul-Index` seen and `wait`, so the agent holds it until something changed;
//! - an index that goes backwards (a snapshot restore, a new leader with a shorter log) resets
//!   the loop to index 0, an immediate answer, instead of waiting for a future that never comes;
//! - an index of 0 in an answer is treated as 1, so that no blocking request sends 0;
//! - requests are spaced at least [`RATE_MIN`] apart, so data that changes without pause does not
//!   become a tight loop; after an error the next request waits a backoff that doubles from
//!   [`BACKOFF_MIN`] to [`BACKOFF_MAX`] and resets on success.

use std::time::{Duration, Instant};

use legate_core::watch::next_index;

use super::client::{CallError, Client, Indexed};

/// The shortest time between two requests of one loop.
pub const RATE_MIN: Duration = Duration::from_millis(100);
/// The first wait after an error.
pub const BACKOFF_MIN: Duration = Duration::from_secs(1);
/// The longest wait after repeated errors.
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// How long the agent may hold one request (Consul's default is 5 min; a shorter wait lets a
/// loop notice a vanished agent sooner).
pub const WAIT_DEFAULT: Duration = Duration::from_secs(60);

/// One blocking query, repeated: each [`Blocking::next`] returns the next answer whose index
/// moved.
#[derive(Debug)]
pub struct Blocking {
    client: Client,
    path: String,
    query: Vec<(&'static str, String)>,
    wait: Duration,
    /// The index to send next (0: none yet, or reset).
    index: u64,
    /// Whether an answer was returned (the first always is).
    returned: bool,
    last_request: Option<Instant>,
    backoff: Option<Duration>,
}

impl Blocking {
    /// A loop over `GET path?query`; `query` must not hold `index` or `wait`.
    pub fn new(client: Client, path: impl Into<String>, query: Vec<(&'static str, String)>) -> Blocking {
        Blocking {
            client,
            path: path.into(),
            query,
            wait: WAIT_DEFAULT,
            index: 0,
            returned: false,
            last_request: None,
            backoff: None,
        }
    }

    /// How long the agent may hold each request.
    pub fn with_wait(mut self, wait: Duration) -> Blocking {
        self.wait = wait;
        self
    }

    /// The index the next request sends.
    pub fn index(&self) -> u64 {
        self.index
    }

    /// Blocks until the answer changed (its index moved; the first answer counts) and returns
    /// it. An error is returned as it happens; calling again retries after the backoff.
    // Not an iterator: every answer can be an error, and the loop never ends by itself.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Indexed, CallError> {
        loop {
            let answer = self.request()?;
            let previous = self.index;
            self.index = next_index(previous, answer.index);
            if self.index == 0 {
                // Went backwards: read again at once, and report that answer.
                continue;
            }
            if !self.returned || self.index != previous {
                self.returned = true;
                return Ok(answer);
            }
        }
    }

    /// One request, paced by the rate limit and any error backoff.
    fn request(&mut self) -> Result<Indexed, CallError> {
        let gap = self.backoff.unwrap_or(RATE_MIN);
        if let Some(last) = self.last_request {
            let since = last.elapsed();
            if since < gap {
                std::thread::sleep(gap - since);
            }
        }
        self.last_request = Some(Instant::now());
        let mut query = self.query.clone();
        if self.index > 0 {
            query.push(("index", self.index.to_string()));
            query.push(("wait", format!("{}ms", self.wait.as_millis())));
        }
        match self.client.get_indexed(&self.path, &query) {
            Ok(answer) => {
                self.backoff = None;
                Ok(answer)
            }
            Err(e) => {
                self.backoff = Some(self.backoff.map_or(BACKOFF_MIN, |b| (b * 2).min(BACKOFF_MAX)));
                Err(e)
            }
        }
    }
}
