//! The `legate` binary's library: configuration, the Consul-compatible HTTP API, the CLI,
//! and the wiring that starts an agent from the runtime's pieces.

pub mod backend;
pub mod cli;
pub mod config;
pub mod defs;
pub mod dns;
pub mod dns_cache;
pub mod events;
pub mod gossip;
pub mod http;
pub mod prepared;
pub mod reload;
pub mod run;

/// The version we report. Clients check `Config.Version` against Consul's numbering, so it
/// follows Consul's (a release of Legate speaks the API of this Consul version).
pub const CONSUL_API_VERSION: &str = "1.20.0";

/// Legate's own version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
