//! Query-string parameters with Consul's rules: presence flags (`?recurse`, `?stale=`),
//! repeatable parameters (`tag`, `node-meta`), Go durations, and the read options every
//! replicated read shares.

use axum::http::{HeaderMap, Uri};
use legate_core::catalog::query::Filter;
use legate_core::duration;
use legate_runtime::{Consistency, QueryOptions};

use super::error::HttpError;

/// The decoded query string, in order, repeats kept.
#[derive(Clone, Debug, Default)]
pub struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    pub fn from_uri(uri: &Uri) -> Params {
        let pairs =
            uri.query().map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect()).unwrap_or_default();
        Params { pairs }
    }

    /// Whether the parameter is present at all (Consul's presence flags).
    pub fn has(&self, name: &str) -> bool {
        self.pairs.iter().any(|(k, _)| k == name)
    }

    /// The first value of a parameter.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// Every value of a repeatable parameter.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.pairs.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str()).collect()
    }

    /// A `u64` parameter; absent is `None`, malformed is a 400 with `what` in the message.
    pub fn u64(&self, name: &str, what: &str) -> Result<Option<u64>, HttpError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => {
                v.trim().parse::<u64>().map(Some).map_err(|_| HttpError::bad_request(format!("Invalid {what}: {v:?}")))
            }
        }
    }

    /// A boolean such as `passing`: present with `""`, `1` or `true` is true; `0`/`false` false.
    pub fn bool(&self, name: &str) -> Result<bool, HttpError> {
        match self.get(name) {
            None => Ok(false),
            Some("") | Some("1") | Some("true") | Some("True") | Some("TRUE") => Ok(true),
            Some("0") | Some("false") | Some("False") | Some("FALSE") => Ok(false),
            Some(v) => Err(HttpError::bad_request(format!("Invalid value for {name}: {v:?}"))),
        }
    }

    /// `tag` (repeatable) and `node-meta=k:v` (repeatable).
    pub fn filter(&self) -> Result<Filter, HttpError> {
        let mut filter =
            Filter { tags: self.all("tag").into_iter().map(str::to_string).collect(), node_meta: Vec::new() };
        for pair in self.all("node-meta") {
            let (k, v) = pair.split_once(':').unwrap_or((pair, ""));
            if k.is_empty() {
                return Err(HttpError::bad_request(format!("Invalid node-meta filter {pair:?}")));
            }
            filter.node_meta.push((k.to_string(), v.to_string()));
        }
        if self.get("filter").is_some_and(|f| !f.is_empty()) {
            return Err(HttpError::bad_request(
                "The filter parameter (bexpr filtering) is not supported by Legate yet; use tag and node-meta",
            ));
        }
        Ok(filter)
    }

    /// The read options of a replicated read: consistency, `index`, `wait`.
    pub fn query_options(&self) -> Result<QueryOptions, HttpError> {
        let stale = self.has("stale");
        let consistent = self.has("consistent");
        if stale && consistent {
            return Err(HttpError::bad_request("Cannot specify ?stale with ?consistent, conflicting semantics."));
        }
        let consistency = if stale {
            Consistency::Stale
        } else if consistent {
            Consistency::Consistent
        } else {
            Consistency::Default
        };
        let min_index = match self.get("index") {
            None | Some("") => 0,
            Some(v) => v.trim().parse::<u64>().map_err(|_| HttpError::bad_request("Invalid index"))?,
        };
        let wait_ms = match self.get("wait") {
            None | Some("") => None,
            Some(v) => Some(duration::parse_ms(v).map_err(|_| HttpError::bad_request("Invalid wait time"))?),
        };
        Ok(QueryOptions { consistency, min_index, wait_ms })
    }
}

/// Rejects requests for namespaces or partitions other than the default (enterprise
/// features).
pub fn check_scope(params: &Params, headers: &HeaderMap) -> Result<(), HttpError> {
    let header_ns = headers.get("X-Consul-Namespace").and_then(|v| v.to_str().ok());
    for ns in params.get("ns").into_iter().chain(header_ns) {
        if !ns.is_empty() && ns != "default" {
            return Err(HttpError::bad_request(
                "Invalid query parameter: \"ns\" - Namespaces are a Consul Enterprise feature",
            ));
        }
    }
    let header_partition = headers.get("X-Consul-Partition").and_then(|v| v.to_str().ok());
    for p in params.get("partition").into_iter().chain(header_partition) {
        if !p.is_empty() && p != "default" {
            return Err(HttpError::bad_request(
                "Invalid query parameter: \"partition\" - Partitions are a Consul Enterprise feature",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(q: &str) -> Params {
        Params::from_uri(&format!("/x?{q}").parse().unwrap())
    }

    #[test]
    fn presence_flags_and_repeats() {
        let p = params("recurse&stale=&tag=a&tag=b&node-meta=rack:r1");
        assert!(p.has("recurse") && p.has("stale") && !p.has("keys"));
        assert_eq!(p.all("tag"), ["a", "b"]);
        let f = p.filter().unwrap();
        assert_eq!(f.node_meta, vec![("rack".to_string(), "r1".to_string())]);
    }

    #[test]
    fn consistency_and_blocking() {
        assert!(params("stale&consistent").query_options().is_err());
        let o = params("consistent&index=42&wait=15000ms").query_options().unwrap();
        assert_eq!((o.consistency, o.min_index, o.wait_ms), (Consistency::Consistent, 42, Some(15_000)));
        assert_eq!(params("wait=1m30s").query_options().unwrap().wait_ms, Some(90_000));
        assert!(params("index=abc").query_options().is_err());
        assert!(params("wait=5").query_options().is_err());
    }

    #[test]
    fn passing_is_a_boolean() {
        assert!(params("passing").bool("passing").unwrap());
        assert!(params("passing=true").bool("passing").unwrap());
        assert!(!params("passing=false").bool("passing").unwrap());
        assert!(params("passing=maybe").bool("passing").is_err());
    }
}
