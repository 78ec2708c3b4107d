//! A tiny HTTP server for health-check tests: answers every request with a status code the
//! test sets, and can be stopped (connections refused) and started again on the same port.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

pub struct TinyHttp {
    pub port: u16,
    /// The status code answered.
    pub status: Arc<AtomicU16>,
    /// Requests answered so far.
    pub hits: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TinyHttp {
    /// Listens on a free port of 127.0.0.1, answering 200.
    pub fn start() -> TinyHttp {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("local addr").port();
        let mut server = TinyHttp {
            port,
            status: Arc::new(AtomicU16::new(200)),
            hits: Arc::new(AtomicUsize::new(0)),
            stop: Arc::new(AtomicBool::new(false)),
            thread: None,
        };
        server.serve(listener);
        server
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Closes the listener: connections are refused until [`TinyHttp::resume`].
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    /// Listens again on the same port.
    pub fn resume(&mut self) {
        assert!(self.thread.is_none(), "already serving");
        self.stop.store(false, Ordering::SeqCst);
        let listener = TcpListener::bind(("127.0.0.1", self.port)).expect("bind the same port again");
        self.serve(listener);
    }

    fn serve(&mut self, listener: TcpListener) {
        let (stop, status, hits) = (self.stop.clone(), self.status.clone(), self.hits.clone());
        self.thread = Some(std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                // One thread a connection: a probe that connects and says nothing (a TCP
                // check) must not hold up the next request.
                let (status, hits) = (status.clone(), hits.clone());
                std::thread::spawn(move || answer(conn, &status, &hits));
            }
        }));
    }
}

fn answer(mut conn: TcpStream, status: &AtomicU16, hits: &AtomicUsize) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
    let mut buf = [0u8; 4096];
    let mut got = Vec::new();
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    let code = status.load(Ordering::SeqCst);
    let body = format!("status {code}");
    let reply =
        format!("HTTP/1.1 {code} Whatever\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
    let _ = conn.write_all(reply.as_bytes());
    hits.fetch_add(1, Ordering::SeqCst);
}

impl Drop for TinyHttp {
    fn drop(&mut self) {
        self.stop();
    }
}
