//! One blocking-query loop per dependency, each on its own thread, reporting every new answer
//! (or error) on a channel that the render loop reads.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;

use gtmpl::Value;

use super::dep::Dependency;
use crate::cli::blocking::Blocking;
use crate::cli::client::Client;

/// What a watcher reports.
#[derive(Debug)]
pub struct Event {
    pub dep: Dependency,
    /// The watcher's number, so that a stopped watcher's late answer is recognised.
    pub generation: u64,
    /// The decoded answer, or why there is none this time (the loop retries after a backoff).
    pub result: Result<Value, String>,
}

/// A running loop; [`Watcher::stop`] makes it exit after its current request.
#[derive(Debug)]
pub struct Watcher {
    pub generation: u64,
    stop: Arc<AtomicBool>,
}

impl Watcher {
    /// Starts following `dep` on a new thread.
    pub fn spawn(client: Client, dep: Dependency, generation: u64, events: Sender<Event>) -> Watcher {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let name = format!("watch {dep}");
        let spawned = std::thread::Builder::new().name(name).spawn(move || {
            let (path, query) = dep.request();
            let mut blocking = Blocking::new(client, path, query);
            loop {
                let answer = blocking.next();
                if stopped.load(Ordering::SeqCst) {
                    return;
                }
                let result = match answer {
                    Ok(indexed) => dep.decode(indexed.body),
                    Err(e) => Err(e.to_string()),
                };
                if events.send(Event { dep: dep.clone(), generation, result }).is_err() {
                    return; // The render loop is gone.
                }
            }
        });
        if let Err(e) = spawned {
            // Without a thread the dependency never gets data; say so instead of waiting silently.
            eprintln!("legate template: cannot start a watcher thread: {e}");
        }
        Watcher { generation, stop }
    }

    /// Asks the loop to exit; its answers from now on are dropped.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop();
    }
}
