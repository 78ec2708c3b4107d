//! Request bodies as Consul reads them: JSON object keys match case-insensitively and in
//! snake_case (`EnableTagOverride`, `enable_tag_override`, `enabletagoverride` are one key),
//! except the keys of free-form maps (`Meta`, `NodeMeta`, `TaggedAddresses`, `Header`), which
//! are the user's data and stay as written.
//!
//! Request structs therefore name their fields in the normalised form (lower case, no
//! underscores), with `#[serde(rename = …)]` where a Rust name needs an underscore.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::error::HttpError;

/// Keys (normalised) whose object values are user maps: their own keys are kept verbatim.
const USER_MAPS: &[&str] = &["meta", "nodemeta", "servicemeta", "taggedaddresses", "header", "servicettl"];

/// Lower-cases a key and drops underscores and dashes.
pub fn normalise_key(key: &str) -> String {
    key.chars().filter(|c| *c != '_' && *c != '-').flat_map(char::to_lowercase).collect()
}

/// Normalises every object key of `value` except inside user maps.
pub fn normalise(value: Value) -> Value {
    normalise_inner(value, false)
}

fn normalise_inner(value: Value, keep_keys: bool) -> Value {
    match value {
        Value::Object(map) => {
            let mut out = Map::with_capacity(map.len());
            for (k, v) in map {
                let nk = normalise_key(&k);
                let child_keeps = !keep_keys && USER_MAPS.contains(&nk.as_str());
                let key = if keep_keys { k } else { nk };
                out.insert(key, normalise_inner(v, child_keeps));
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.into_iter().map(|v| normalise_inner(v, false)).collect()),
        other => other,
    }
}

/// Decodes a JSON body into `T` after normalising its keys. An empty body decodes as `{}`.
pub fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, HttpError> {
    let value: Value = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Object(Map::new())
    } else {
        serde_json::from_slice(body).map_err(|e| HttpError::bad_request(format!("Request decode failed: {e}")))?
    };
    decode_value(value)
}

/// Like [`decode`], from an already parsed value.
pub fn decode_value<T: DeserializeOwned>(value: Value) -> Result<T, HttpError> {
    serde_json::from_value(normalise(value)).map_err(|e| HttpError::bad_request(format!("Request decode failed: {e}")))
}

/// Whether the (raw) JSON object has a key that normalises to `key`.
pub fn has_key(value: &Value, key: &str) -> bool {
    value.as_object().is_some_and(|m| m.keys().any(|k| normalise_key(k) == key))
}

/// Serde helpers for fields that Consul accepts in several shapes.
pub mod lenient {
    use legate_core::duration;
    use serde::{Deserialize, Deserializer};
    use serde_json::Value;

    /// A duration given as a Go string (`"10s"`) or as a number of nanoseconds; in ns.
    pub fn duration_ns<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        match Option::<Value>::deserialize(d)? {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => duration::parse_ns(&s).map(Some).map_err(serde::de::Error::custom),
            Some(Value::Number(n)) => {
                n.as_u64().map(Some).ok_or_else(|| serde::de::Error::custom(format!("invalid duration {n}")))
            }
            Some(other) => Err(serde::de::Error::custom(format!("invalid duration {other}"))),
        }
    }

    /// A list that may be `null`.
    pub fn list<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
        Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
    }

    /// A map that may be `null`.
    pub fn map<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
        d: D,
    ) -> Result<std::collections::BTreeMap<String, T>, D::Error> {
        Ok(Option::<std::collections::BTreeMap<String, T>>::deserialize(d)?.unwrap_or_default())
    }

    /// A string that may be `null`.
    pub fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        Ok(Option::<String>::deserialize(d)?.unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_match_case_insensitively_but_user_maps_stay() {
        let v = normalise(json!({
            "EnableTagOverride": true,
            "lock_delay": "15s",
            "Meta": {"Version": "1", "snake_key": "x"},
            "TaggedAddresses": {"LAN": {"Address": "10.0.0.1", "Port": 80}},
            "Checks": [{"CheckID": "a", "Header": {"X-Token": ["t"]}}]
        }));
        assert_eq!(
            v,
            json!({
                "enabletagoverride": true,
                "lockdelay": "15s",
                "meta": {"Version": "1", "snake_key": "x"},
                "taggedaddresses": {"LAN": {"address": "10.0.0.1", "port": 80}},
                "checks": [{"checkid": "a", "header": {"X-Token": ["t"]}}]
            })
        );
    }
}
