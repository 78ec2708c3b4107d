//! TCP checks: a connect, `TCP connect <addr>: Success` or Go's dial error. The dialer and
//! Go's error texts here serve the other executors too.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use legate_core::agent::CheckResult;
use legate_core::catalog::Status;
use tokio::net::TcpStream;
use tokio::time::timeout_at;

use super::{critical, deadline_after, result};

pub(super) async fn run_tcp(addr: &str, timeout: Duration) -> CheckResult {
    match timeout_at(deadline_after(timeout), dial_addr(addr)).await {
        Ok(Ok(_stream)) => result(Status::Passing, format!("TCP connect {addr}: Success")),
        Ok(Err(e)) => critical(e),
        Err(_) => critical(format!("dial tcp {addr}: i/o timeout")),
    }
}

/// Connects to `host:port` (`[v6]:port` for IPv6), with Go's error texts.
async fn dial_addr(addr: &str) -> Result<TcpStream, String> {
    let (host, port) =
        split_host_port(addr).ok_or_else(|| format!("dial tcp: address {addr}: missing port in address"))?;
    let port = port.parse::<u16>().map_err(|_| format!("dial tcp: address {addr}: invalid port"))?;
    dial(host, port).await
}

/// Go's `net.SplitHostPort`, without service names.
pub(super) fn split_host_port(addr: &str) -> Option<(&str, &str)> {
    if let Some(rest) = addr.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        return Some((host, after.strip_prefix(':')?));
    }
    let (host, port) = addr.rsplit_once(':')?;
    if host.contains(':') {
        return None; // a bare IPv6 address needs brackets
    }
    Some((host, port))
}

/// Resolves `host` and connects to its addresses in turn; the caller bounds the time.
pub(super) async fn dial(host: &str, port: u16) -> Result<TcpStream, String> {
    let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| format!("dial tcp: lookup {host}: {}", go_error(&e)))?
            .collect(),
    };
    let mut last = format!("dial tcp: lookup {host}: no such host");
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(stream) => return Ok(stream),
            Err(e) => last = format!("dial tcp {addr}: connect: {}", go_error(&e)),
        }
    }
    Err(last)
}

/// An OS error as Go prints it (`connection refused`), else the error's own text.
pub(super) fn go_error(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => {
            let text = io::Error::from_raw_os_error(code).to_string();
            let text = text.split(" (os error").next().unwrap_or_default();
            let mut chars = text.chars();
            match chars.next() {
                Some(first) => first.to_lowercase().chain(chars).collect(),
                None => e.to_string(),
            }
        }
        None => e.to_string(),
    }
}
