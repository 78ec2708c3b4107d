//! How a log entry becomes a record payload: MessagePack with field names (`rmp_serde`), as
//! Consul's own Raft log. Compact and deterministic, and self-describing — which the catalog's
//! types need: optional fields skipped when empty and untagged enums (duration strings or
//! numbers) cannot be read back from a positional format such as bincode or postcard.

use std::io;

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Encodes an entry (or anything else the log stores).
pub fn encode<T: Serialize>(value: &T) -> io::Result<Vec<u8>> {
    rmp_serde::to_vec_named(value).map_err(io::Error::other)
}

/// Decodes what [`encode`] wrote; the error text goes into a corruption report.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    rmp_serde::from_slice(bytes).map_err(|e| e.to_string())
}
