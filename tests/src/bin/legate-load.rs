//! `legate-load`: the one HTTP load generator that `tests/bench/kv-vs-etcd.sh` points at both
//! Legate and etcd, so the two are measured by the same client code, the same connection
//! handling and the same clock.
//!
//! - N client threads, each with its own keep-alive connection (one `ureq::Agent` per thread);
//!   client `i` talks to `urls[i % urls.len()]`.
//! - Each client loops: PUT one value of `--value-size` bytes to `{prefix}{client}-{seq % keys}`
//!   and times the request with a monotonic clock. `--keys` bounds the key space for long runs.
//! - Legate: `PUT {url}/v1/kv/{key}` with the raw value; success is `200` with body `true`.
//!   etcd: `POST {url}/v3/kv/put` (the JSON gateway) with base64 key and value; success is `200`.
//! - A non-success answer or a transport error is counted, never fatal; the first few are printed.
//! - Latencies of successful requests go into an HDR histogram (3 significant digits, bounded
//!   memory however long the run). Stdout gets one JSON line; stderr gets a human summary.
//!
//! Exit status: 0 when at least one request succeeded, 1 when every request failed, 2 on bad
//! arguments.

use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hdrhistogram::Histogram;
use serde_json::json;

/// Client threads at most; each holds one connection and one thread stack.
const CLIENTS_MAX: usize = 1024;

/// Legate's value limit (512 KiB); etcd accepts more, but both must get the same value.
const VALUE_SIZE_MAX_BYTES: usize = 512 * 1024;

/// A run lasts at most a day; the scripts use seconds to tens of minutes.
const DURATION_MAX_S: u64 = 24 * 3600;

/// Requests per run at most when the run is bounded by count.
const REQUESTS_MAX: u64 = 1_000_000_000;

/// Key prefix length at most.
const KEY_PREFIX_MAX_BYTES: usize = 256;

/// How long one request may take (connect, send, answer) before it counts as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The highest latency the histogram tracks exactly, in microseconds; above it values saturate.
/// Above the request timeout, so no recorded latency saturates.
const LATENCY_TRACKED_MAX_US: u64 = 60_000_000;

/// Error texts printed to stderr at most per run (every error is still counted).
const ERRORS_PRINTED_MAX: usize = 5;

/// Bytes of an error answer's body kept for the printed error text.
const ERROR_BODY_PRINTED_MAX_BYTES: usize = 200;

/// Default value size, as in the issue that asked for the benchmark.
const VALUE_SIZE_DEFAULT_BYTES: usize = 256;

/// Default key prefix.
const KEY_PREFIX_DEFAULT: &str = "bench/";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    Legate,
    Etcd,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::Legate => "legate",
            Target::Etcd => "etcd",
        }
    }
}

/// When a run ends.
#[derive(Clone, Copy, Debug)]
enum Stop {
    /// Each client stops issuing requests once this much time has passed since the start.
    After(Duration),
    /// This many requests in total, spread as evenly as possible over the clients.
    Requests(u64),
}

#[derive(Debug)]
struct Config {
    target: Target,
    urls: Vec<String>,
    clients: usize,
    stop: Stop,
    value_size_bytes: usize,
    key_prefix: String,
    /// Distinct keys per client; sequence numbers wrap around at this count.
    keys: u64,
}

/// What one client thread measured.
struct ClientOutcome {
    latencies_us: Histogram<u64>,
    requests: u64,
    errors: u64,
}

/// What the whole run measured.
struct RunOutcome {
    latencies_us: Histogram<u64>,
    requests: u64,
    errors: u64,
    elapsed: Duration,
}

fn options() -> getopts::Options {
    let mut o = getopts::Options::new();
    o.optopt("", "target", "Which API to speak: legate or etcd (required).", "legate|etcd");
    o.optmulti("", "urls", "Comma-separated base URLs, http only (required).", "URL,URL,...");
    o.optopt("", "clients", "Concurrent clients, one connection each (default 1).", "N");
    o.optopt("", "duration", "Run for this many seconds.", "SECS");
    o.optopt("", "requests", "Run this many requests in total, spread over the clients.", "N");
    o.optopt("", "value-size", "Bytes per value (default 256).", "BYTES");
    o.optopt("", "key-prefix", "Key prefix (default bench/); [A-Za-z0-9/_.-] only.", "PREFIX");
    o.optopt("", "keys", "Distinct keys per client (default: a new key for every request).", "K");
    o.optflag("h", "help", "Print this help.");
    o
}

fn usage(o: &getopts::Options) -> String {
    let brief = "Usage: legate-load --target legate|etcd --urls URL[,URL...] --clients N \
                 (--duration SECS | --requests N) [--value-size 256] [--key-prefix bench/] [--keys K]\n\n\
                 HTTP PUT load against Legate (PUT /v1/kv/KEY) or etcd (POST /v3/kv/put, the JSON \
                 gateway).\nClient i uses URL i mod the number of URLs and writes key \
                 PREFIX<i>-<seq mod K>.\nPrints one JSON line on stdout (target, clients, requests, \
                 errors, seconds, ops_per_sec, p50_ms, p99_ms, max_ms)\nand a summary on stderr. \
                 Latencies are those of successful requests.";
    o.usage(brief)
}

/// `Ok(None)` means `--help` was asked for.
fn parse_args(args: &[String]) -> Result<Option<Config>, String> {
    let o = options();
    let m = o.parse(args).map_err(|e| e.to_string())?;
    if m.opt_present("help") {
        return Ok(None);
    }
    if let Some(extra) = m.free.first() {
        return Err(format!("unexpected argument {extra:?}"));
    }
    let target = match m.opt_str("target").as_deref() {
        Some("legate") => Target::Legate,
        Some("etcd") => Target::Etcd,
        Some(other) => return Err(format!("--target must be legate or etcd, not {other:?}")),
        None => return Err("--target is required (legate or etcd)".into()),
    };
    let urls = parse_urls(&m.opt_strs("urls"))?;
    let clients = parse_number(m.opt_str("clients"), "--clients", 1, 1, CLIENTS_MAX as u64)? as usize;
    let stop = match (m.opt_str("duration"), m.opt_str("requests")) {
        (Some(_), Some(_)) => return Err("give either --duration or --requests, not both".into()),
        (None, None) => return Err("give --duration SECS or --requests N".into()),
        (Some(d), None) => Stop::After(parse_duration(&d)?),
        (None, Some(r)) => Stop::Requests(parse_number(Some(r), "--requests", 0, 1, REQUESTS_MAX)?),
    };
    let value_size_bytes = parse_number(
        m.opt_str("value-size"),
        "--value-size",
        VALUE_SIZE_DEFAULT_BYTES as u64,
        0,
        VALUE_SIZE_MAX_BYTES as u64,
    )? as usize;
    let key_prefix = m.opt_str("key-prefix").unwrap_or_else(|| KEY_PREFIX_DEFAULT.to_string());
    check_key_prefix(&key_prefix)?;
    let keys = parse_number(m.opt_str("keys"), "--keys", u64::MAX, 1, u64::MAX)?;
    Ok(Some(Config { target, urls, clients, stop, value_size_bytes, key_prefix, keys }))
}

fn parse_urls(values: &[String]) -> Result<Vec<String>, String> {
    let mut urls = Vec::new();
    for url in values.iter().flat_map(|v| v.split(',')).map(str::trim).filter(|u| !u.is_empty()) {
        let Some(rest) = url.strip_prefix("http://") else {
            return Err(format!("--urls: {url:?} must start with http:// (TLS is not supported)"));
        };
        if rest.is_empty() || rest.starts_with('/') {
            return Err(format!("--urls: {url:?} has no host"));
        }
        urls.push(url.trim_end_matches('/').to_string());
    }
    if urls.is_empty() {
        return Err("--urls is required: one or more base URLs such as http://127.0.0.1:8500".into());
    }
    Ok(urls)
}

fn parse_number(value: Option<String>, flag: &str, default: u64, min: u64, max: u64) -> Result<u64, String> {
    let Some(text) = value else { return Ok(default) };
    let n: u64 = text.trim().parse().map_err(|_| format!("{flag}: {text:?} is not a whole number"))?;
    if n < min || n > max {
        return Err(format!("{flag}: {n} is out of range {min}..={max}"));
    }
    Ok(n)
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let secs: f64 = text.trim().parse().map_err(|_| format!("--duration: {text:?} is not a number of seconds"))?;
    if !secs.is_finite() || secs <= 0.0 || secs > DURATION_MAX_S as f64 {
        return Err(format!("--duration: {text} is out of range (0, {DURATION_MAX_S}] seconds"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Keys go into a URL path unescaped, so only characters that need no escaping are allowed.
fn check_key_prefix(prefix: &str) -> Result<(), String> {
    if prefix.len() > KEY_PREFIX_MAX_BYTES {
        return Err(format!("--key-prefix is longer than {KEY_PREFIX_MAX_BYTES} bytes"));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '.' | '-');
    if let Some(bad) = prefix.chars().find(|&c| !allowed(c)) {
        return Err(format!("--key-prefix: character {bad:?} is not allowed (use [A-Za-z0-9/_.-])"));
    }
    if prefix.starts_with('/') {
        return Err("--key-prefix must not start with '/'".into());
    }
    Ok(())
}

/// A value that is the same on every run and for both targets, and not a single repeated byte.
fn make_value(size_bytes: usize) -> Vec<u8> {
    (0..size_bytes).map(|i| b'a' + ((i * 7 + 3) % 26) as u8).collect()
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_TRACKED_MAX_US, 3).expect("constant histogram bounds are valid")
}

/// Requests client `client` issues when the run is bounded by count.
fn requests_of_client(total: u64, clients: usize, client: usize) -> u64 {
    let clients = clients as u64;
    let client = client as u64;
    total / clients + u64::from(client < total % clients)
}

/// One PUT; `Err` carries a printable reason.
fn put_once(
    agent: &ureq::Agent,
    cfg: &Config,
    url: &str,
    key: &str,
    value: &[u8],
    value_b64: &str,
) -> Result<(), String> {
    let answer = match cfg.target {
        Target::Legate => agent.put(&format!("{url}/v1/kv/{key}")).send_bytes(value),
        Target::Etcd => {
            let body = json!({ "key": BASE64.encode(key), "value": value_b64 }).to_string();
            agent.post(&format!("{url}/v3/kv/put")).set("Content-Type", "application/json").send_string(&body)
        }
    };
    match answer {
        Ok(response) => {
            let status = response.status();
            // Reading the whole body also returns the connection to the agent's pool.
            let body = response.into_string().map_err(|e| format!("reading the answer: {e}"))?;
            let ok = status == 200 && (cfg.target == Target::Etcd || body.trim() == "true");
            if ok {
                Ok(())
            } else {
                Err(format!("HTTP {status}: {}", clip(&body)))
            }
        }
        Err(ureq::Error::Status(status, response)) => {
            let body = response.into_string().unwrap_or_default();
            Err(format!("HTTP {status}: {}", clip(&body)))
        }
        Err(ureq::Error::Transport(t)) => Err(t.to_string()),
    }
}

fn clip(body: &str) -> &str {
    let body = body.trim();
    let mut end = body.len().min(ERROR_BODY_PRINTED_MAX_BYTES);
    while !body.is_char_boundary(end) {
        end -= 1;
    }
    &body[..end]
}

fn run_client(cfg: &Config, client: usize, start: &Barrier, errors_printed: &AtomicUsize) -> ClientOutcome {
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .max_idle_connections_per_host(1)
        .build();
    let url = &cfg.urls[client % cfg.urls.len()];
    let value = make_value(cfg.value_size_bytes);
    let value_b64 = BASE64.encode(&value);
    let mut outcome = ClientOutcome { latencies_us: new_histogram(), requests: 0, errors: 0 };
    start.wait();
    let began = Instant::now();
    let quota = match cfg.stop {
        Stop::Requests(total) => requests_of_client(total, cfg.clients, client),
        Stop::After(_) => u64::MAX,
    };
    for seq in 0..quota {
        if let Stop::After(duration) = cfg.stop {
            if began.elapsed() >= duration {
                break;
            }
        }
        let key = format!("{}{client}-{}", cfg.key_prefix, seq % cfg.keys);
        let sent = Instant::now();
        let result = put_once(&agent, cfg, url, &key, &value, &value_b64);
        let latency_us = sent.elapsed().as_micros().min(u128::from(u64::MAX)) as u64;
        outcome.requests += 1;
        match result {
            Ok(()) => outcome.latencies_us.saturating_record(latency_us.max(1)),
            Err(reason) => {
                outcome.errors += 1;
                if errors_printed.fetch_add(1, Ordering::Relaxed) < ERRORS_PRINTED_MAX {
                    eprintln!("legate-load: client {client}: PUT {key} to {url}: {reason}");
                }
            }
        }
    }
    outcome
}

fn run(cfg: &Config) -> RunOutcome {
    let start = Barrier::new(cfg.clients + 1);
    let errors_printed = AtomicUsize::new(0);
    let (outcomes, elapsed) = std::thread::scope(|s| {
        let handles: Vec<_> = (0..cfg.clients)
            .map(|client| {
                let (start, errors_printed) = (&start, &errors_printed);
                s.spawn(move || run_client(cfg, client, start, errors_printed))
            })
            .collect();
        start.wait();
        let began = Instant::now();
        let outcomes: Vec<ClientOutcome> =
            handles.into_iter().map(|h| h.join().expect("a client thread panicked")).collect();
        (outcomes, began.elapsed())
    });
    let mut total = RunOutcome { latencies_us: new_histogram(), requests: 0, errors: 0, elapsed };
    for outcome in outcomes {
        total.latencies_us.add(&outcome.latencies_us).expect("all histograms share the same bounds");
        total.requests += outcome.requests;
        total.errors += outcome.errors;
    }
    assert_eq!(total.latencies_us.len(), total.requests - total.errors, "one latency per success");
    total
}

fn round(value: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (value * scale).round() / scale
}

fn report(cfg: &Config, outcome: &RunOutcome) -> serde_json::Value {
    let seconds = outcome.elapsed.as_secs_f64();
    let successes = outcome.requests - outcome.errors;
    let ops_per_sec = if seconds > 0.0 { successes as f64 / seconds } else { 0.0 };
    let ms = |us: u64| round(us as f64 / 1000.0, 3);
    let h = &outcome.latencies_us;
    let (p50, p99, max) = if h.is_empty() {
        (None, None, None)
    } else {
        (Some(ms(h.value_at_quantile(0.50))), Some(ms(h.value_at_quantile(0.99))), Some(ms(h.max())))
    };
    json!({
        "target": cfg.target.name(),
        "clients": cfg.clients,
        "requests": outcome.requests,
        "errors": outcome.errors,
        "seconds": round(seconds, 3),
        "ops_per_sec": round(ops_per_sec, 1),
        "p50_ms": p50,
        "p99_ms": p99,
        "max_ms": max,
    })
}

fn describe_ms(value: &serde_json::Value) -> String {
    value.as_f64().map_or_else(|| "-".to_string(), |v| format!("{v:.3} ms"))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cfg = match parse_args(&args) {
        Ok(Some(cfg)) => cfg,
        Ok(None) => {
            println!("{}", usage(&options()));
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("legate-load: {message}\n(try legate-load --help)");
            return ExitCode::from(2);
        }
    };
    let outcome = run(&cfg);
    let line = report(&cfg, &outcome);
    println!("{line}");
    eprintln!(
        "legate-load: {} x{} clients over {} url(s), {:.2} s: {} requests, {} errors, {} ops/s; \
         latency p50 {}, p99 {}, max {}",
        cfg.target.name(),
        cfg.clients,
        cfg.urls.len(),
        outcome.elapsed.as_secs_f64(),
        outcome.requests,
        outcome.errors,
        line["ops_per_sec"],
        describe_ms(&line["p50_ms"]),
        describe_ms(&line["p99_ms"]),
        describe_ms(&line["max_ms"]),
    );
    if outcome.requests > 0 && outcome.errors == outcome.requests {
        eprintln!("legate-load: every request failed");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn parses_a_full_command_line() {
        let cfg =
            parse_args(&args("--target etcd --urls http://a:1,http://b:2/ --clients 64 --duration 2.5 --keys 1000"))
                .unwrap()
                .unwrap();
        assert_eq!(cfg.target, Target::Etcd);
        assert_eq!(cfg.urls, ["http://a:1", "http://b:2"]);
        assert_eq!(cfg.clients, 64);
        assert!(matches!(cfg.stop, Stop::After(d) if d == Duration::from_millis(2500)));
        assert_eq!((cfg.value_size_bytes, cfg.keys), (256, 1000));
        assert_eq!(cfg.key_prefix, "bench/");
    }

    #[test]
    fn rejects_bad_input_with_a_message() {
        for line in [
            "",
            "--target consul --urls http://a:1 --duration 1",
            "--target legate --duration 1",
            "--target legate --urls https://a:1 --duration 1",
            "--target legate --urls http://a:1",
            "--target legate --urls http://a:1 --duration 1 --requests 5",
            "--target legate --urls http://a:1 --duration -1",
            "--target legate --urls http://a:1 --duration NaN",
            "--target legate --urls http://a:1 --clients 0 --duration 1",
            "--target legate --urls http://a:1 --clients 99999 --duration 1",
            "--target legate --urls http://a:1 --requests 5 --value-size 9999999",
            "--target legate --urls http://a:1 --requests 5 --keys 0",
            "--target legate --urls http://a:1 --requests 5 --key-prefix a?b",
            "--target legate --urls http://a:1 --requests 5 stray",
            "--target legate --urls http://a:1 --requests 5 --bogus",
        ] {
            let err = parse_args(&args(line)).expect_err(line);
            assert!(!err.is_empty(), "{line}");
        }
        assert!(parse_args(&args("--help")).unwrap().is_none());
    }

    #[test]
    fn requests_spread_evenly_over_clients() {
        let spread: Vec<u64> = (0..4).map(|c| requests_of_client(10, 4, c)).collect();
        assert_eq!(spread, [3, 3, 2, 2]);
        assert_eq!((0..64).map(|c| requests_of_client(3, 64, c)).sum::<u64>(), 3);
    }

    #[test]
    fn clip_keeps_char_boundaries() {
        let long = "é".repeat(ERROR_BODY_PRINTED_MAX_BYTES);
        assert!(clip(&long).len() <= ERROR_BODY_PRINTED_MAX_BYTES);
    }
}
