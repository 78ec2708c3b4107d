//! Script checks: `args[0]` run directly in a process group of its own, stdout and stderr
//! in one pipe, the end of the output kept; on timeout the whole group is killed.

use std::collections::VecDeque;
use std::io;
use std::os::fd::OwnedFd;
use std::process::Stdio;
use std::time::Duration;

use legate_core::agent::CheckResult;
use legate_core::catalog::Status;
use tokio::io::AsyncReadExt as _;
use tokio::time::timeout_at;

use super::tcp::go_error;
use super::{critical, deadline_after, result, REAP_GRACE_MS};

/// Size of one read from a script's pipe.
const READ_CHUNK_BYTES: usize = 8 * 1024;

/// Kills a script's process group when dropped while armed: on timeout, and when the run is
/// abandoned (its future dropped) so no check outlives the agent's interest in it. Disarmed
/// once the child is reaped: after that its pid, and so the group id, may be reused.
struct GroupKill {
    pgid: Option<libc::pid_t>,
}

impl GroupKill {
    fn kill(&self) {
        if let Some(pgid) = self.pgid.filter(|&p| p > 0) {
            // SAFETY: killpg takes plain integers and touches no memory of ours. The group
            // id is our unreaped child's pid, so it cannot name anyone else's group.
            unsafe {
                libc::killpg(pgid, libc::SIGKILL);
            }
        }
    }

    fn disarm(&mut self) {
        self.pgid = None;
    }
}

impl Drop for GroupKill {
    fn drop(&mut self) {
        self.kill();
    }
}

pub(super) async fn run_script(args: &[String], timeout: Duration, max: usize) -> CheckResult {
    let Some((program, rest)) = args.split_first() else {
        return critical("exec: no command");
    };
    let deadline = deadline_after(timeout);
    // One pipe for both streams, as Go does when Stdout and Stderr are the same writer, so
    // the output interleaves in the order it was written.
    let (reader, writer) = match io::pipe() {
        Ok(pair) => pair,
        Err(e) => return critical(format!("pipe: {}", go_error(&e))),
    };
    let writer_err = match writer.try_clone() {
        Ok(w) => w,
        Err(e) => return critical(format!("pipe: {}", go_error(&e))),
    };
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(rest).stdin(Stdio::null()).stdout(writer).stderr(writer_err).process_group(0).kill_on_drop(true);
    let spawned = cmd.spawn();
    // The command holds our copies of the pipe's write end: without dropping it the pipe
    // never reaches end-of-file.
    drop(cmd);
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => return critical(spawn_error(program, &e)),
    };
    let mut group = GroupKill { pgid: child.id().and_then(|id| libc::pid_t::try_from(id).ok()) };

    let mut tail = Tail::new(max);
    let mut pipe = tokio::net::unix::pipe::Receiver::from_owned_fd(OwnedFd::from(reader)).ok();
    // Like Go's cmd.Wait, the run is over when the child has exited *and* the pipe is closed:
    // a background process still holding the pipe keeps the check running until the timeout,
    // which then kills it with the rest of the group. The child is reaped only after the
    // pipe closes, so until then its pid pins the group id.
    let drained = match pipe.as_mut() {
        Some(rx) => timeout_at(deadline, drain(rx, &mut tail)).await.is_ok(),
        None => true,
    };
    let exited = if drained { timeout_at(deadline, child.wait()).await.ok() } else { None };
    match exited {
        Some(Ok(status)) => {
            group.disarm();
            let output = tail.render(max);
            match status.code() {
                Some(0) => result(Status::Passing, output),
                Some(1) => result(Status::Warning, output),
                _ => result(Status::Critical, output),
            }
        }
        Some(Err(e)) => critical(format!("wait: {}", go_error(&e))),
        None => {
            group.kill();
            let grace = Duration::from_millis(REAP_GRACE_MS);
            if let Ok(Ok(_)) = tokio::time::timeout(grace, child.wait()).await {
                group.disarm();
            }
            // The group is dead, so whatever it wrote is all there is: read the rest briefly.
            if let Some(rx) = pipe.as_mut() {
                let _ = tokio::time::timeout(grace / 4, drain(rx, &mut tail)).await;
            }
            let mut msg = format!("Timed out ({}) running check", go_duration(timeout));
            let output = tail.render(max.saturating_sub(msg.len() + 2));
            if !output.is_empty() {
                msg.push_str("\n\n");
                msg.push_str(&output);
            }
            critical(msg)
        }
    }
}

/// Reads the pipe into `tail` until end-of-file (or an error, which ends the output too).
async fn drain(rx: &mut tokio::net::unix::pipe::Receiver, tail: &mut Tail) {
    let mut buf = vec![0u8; READ_CHUNK_BYTES];
    loop {
        match rx.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => tail.push(buf.get(..n).unwrap_or_default()),
        }
    }
}

/// Go's wording for a failed start: `exec: "x": executable file not found in $PATH` when a
/// bare name is not on the PATH, else `fork/exec /path: <errno text>`.
fn spawn_error(program: &str, e: &io::Error) -> String {
    if e.kind() == io::ErrorKind::NotFound && !program.contains('/') {
        format!("exec: {program:?}: executable file not found in $PATH")
    } else {
        format!("fork/exec {program}: {}", go_error(e))
    }
}

/// The last bytes written, up to a cap, and how many were written in all: Consul's circular
/// output buffer. Memory stays within the cap whatever a check prints.
pub(super) struct Tail {
    pub(super) buf: VecDeque<u8>,
    cap: usize,
    pub(super) total: u64,
}

impl Tail {
    pub(super) fn new(cap: usize) -> Self {
        Tail { buf: VecDeque::new(), cap, total: 0 }
    }

    pub(super) fn push(&mut self, data: &[u8]) {
        self.total = self.total.saturating_add(data.len() as u64);
        let data = data.get(data.len().saturating_sub(self.cap)..).unwrap_or_default();
        let overflow = (self.buf.len() + data.len()).saturating_sub(self.cap);
        self.buf.drain(..overflow.min(self.buf.len()));
        self.buf.extend(data);
    }

    /// The output in at most `budget` bytes: all of it when it fits, else Consul's
    /// `Captured <kept> of <total> bytes\n...\n` and the end of it.
    pub(super) fn render(&self, budget: usize) -> String {
        let bytes: Vec<u8> = self.buf.iter().copied().collect();
        if self.total <= budget as u64 && self.buf.len() as u64 == self.total {
            let text = String::from_utf8_lossy(&bytes);
            if text.len() <= budget {
                return text.into_owned();
            }
        }
        // Size the header for the largest count it may show, then grow the text while a
        // shorter count leaves room (a digit or two).
        let mut room = budget.saturating_sub(captured_header(budget, self.total).len());
        while room < budget && captured_header(room + 1, self.total).len() + room < budget {
            room += 1;
        }
        let text = tail_text(&bytes, room);
        let mut out = captured_header(text.len(), self.total);
        out.push_str(&text);
        out
    }
}

fn captured_header(kept: usize, total: u64) -> String {
    format!("Captured {kept} of {total} bytes\n...\n")
}

/// The end of `bytes` as text of at most `budget` bytes, starting on a character boundary
/// (invalid UTF-8 becomes U+FFFD).
pub(super) fn tail_text(bytes: &[u8], budget: usize) -> String {
    let mut start = bytes.len().saturating_sub(budget);
    // Skip the continuation bytes of a character cut at the front.
    while bytes.get(start).is_some_and(|b| b & 0xC0 == 0x80) && start < bytes.len() {
        start += 1;
    }
    let text = String::from_utf8_lossy(bytes.get(start..).unwrap_or_default()).into_owned();
    if text.len() <= budget {
        return text;
    }
    // Replacement characters made it longer: cut again at a boundary.
    let mut cut = text.len() - budget;
    while !text.is_char_boundary(cut) {
        cut += 1;
    }
    text.get(cut..).unwrap_or_default().to_string()
}

/// Go's `time.Duration.String` for whole milliseconds: `300ms`, `1.5s`, `30s`, `1m30s`,
/// `1h0m0s` — the text Consul puts in `Timed out (...) running check`.
pub(super) fn go_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".to_string();
    }
    if ms < 1_000 {
        return format!("{ms}ms");
    }
    let (hours, minutes, seconds, millis) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1_000 % 60, ms % 1_000);
    let mut secs = seconds.to_string();
    if millis > 0 {
        secs.push_str(format!(".{millis:03}").trim_end_matches('0'));
    }
    if hours > 0 {
        format!("{hours}h{minutes}m{secs}s")
    } else if minutes > 0 {
        format!("{minutes}m{secs}s")
    } else {
        format!("{secs}s")
    }
}
