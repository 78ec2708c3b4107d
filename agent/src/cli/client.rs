//! A small blocking HTTP client for the CLI commands.

use std::time::Duration;

use serde_json::Value;

/// Where and how the CLI reaches an agent.
#[derive(Clone, Debug)]
pub struct Client {
    base: String,
    token: Option<String>,
    datacenter: Option<String>,
    stale: bool,
    agent: ureq::Agent,
}

/// A failed call: a transport error or an HTTP error status with its body.
#[derive(Debug)]
pub enum CallError {
    Transport(String),
    Status(u16, String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Transport(e) => write!(f, "{e}"),
            CallError::Status(code, body) => write!(f, "Unexpected response code: {code} ({})", body.trim()),
        }
    }
}

/// A read's JSON body (`None`: 404) and its `X-Consul-Index`.
#[derive(Clone, Debug, PartialEq)]
pub struct Indexed {
    pub body: Option<Value>,
    pub index: u64,
}

impl Client {
    /// The address comes from the flag, else `CONSUL_HTTP_ADDR`, else `127.0.0.1:8500`.
    pub fn from_flags(addr: Option<String>, token: Option<String>, datacenter: Option<String>, stale: bool) -> Client {
        let addr = addr
            .or_else(|| std::env::var("CONSUL_HTTP_ADDR").ok().filter(|s| !s.is_empty()))
            .unwrap_or_else(|| "127.0.0.1:8500".to_string());
        let base =
            if addr.starts_with("http://") || addr.starts_with("https://") { addr } else { format!("http://{addr}") };
        let token = token.or_else(|| std::env::var("CONSUL_HTTP_TOKEN").ok().filter(|s| !s.is_empty()));
        let agent =
            ureq::AgentBuilder::new().timeout_connect(Duration::from_secs(5)).timeout(Duration::from_secs(600)).build();
        Client { base: base.trim_end_matches('/').to_string(), token, datacenter, stale, agent }
    }

    fn url(&self, path: &str, query: &[(&str, String)], read: bool) -> String {
        let mut url = format!("{}{}", self.base, path);
        let mut pairs: Vec<(String, String)> = query.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        if let Some(dc) = &self.datacenter {
            pairs.push(("dc".into(), dc.clone()));
        }
        if read && self.stale {
            pairs.push(("stale".into(), String::new()));
        }
        if !pairs.is_empty() {
            let q: String = form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish();
            url.push('?');
            url.push_str(&q);
        }
        url
    }

    /// Performs a request; `Ok(None)` on 404.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, String)],
        body: Option<&[u8]>,
    ) -> Result<Option<Vec<u8>>, CallError> {
        let url = self.url(path, query, method == "GET");
        let mut req = self.agent.request(method, &url);
        if let Some(t) = &self.token {
            req = req.set("X-Consul-Token", t);
        }
        let result = match body {
            Some(b) => req.send_bytes(b),
            None => req.call(),
        };
        match result {
            Ok(resp) => {
                let mut buf = Vec::new();
                std::io::Read::read_to_end(&mut resp.into_reader(), &mut buf)
                    .map_err(|e| CallError::Transport(e.to_string()))?;
                Ok(Some(buf))
            }
            Err(ureq::Error::Status(404, _)) => Ok(None),
            Err(ureq::Error::Status(code, resp)) => {
                Err(CallError::Status(code, resp.into_string().unwrap_or_default()))
            }
            Err(ureq::Error::Transport(t)) => {
                Err(CallError::Transport(format!("Error connecting to Legate agent: {t}")))
            }
        }
    }

    /// A GET that also returns `X-Consul-Index` (0 when the answer has none); `body` is `None`
    /// on 404, which still carries an index (a blocking read of a missing key).
    pub fn get_indexed(&self, path: &str, query: &[(&str, String)]) -> Result<Indexed, CallError> {
        let url = self.url(path, query, true);
        let mut req = self.agent.get(&url);
        if let Some(t) = &self.token {
            req = req.set("X-Consul-Token", t);
        }
        let (resp, found) = match req.call() {
            Ok(resp) => (resp, true),
            Err(ureq::Error::Status(404, resp)) => (resp, false),
            Err(ureq::Error::Status(code, resp)) => {
                return Err(CallError::Status(code, resp.into_string().unwrap_or_default()))
            }
            Err(ureq::Error::Transport(t)) => {
                return Err(CallError::Transport(format!("Error connecting to Legate agent: {t}")))
            }
        };
        let index = resp.header("X-Consul-Index").and_then(|v| v.parse().ok()).unwrap_or(0);
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut resp.into_reader(), &mut buf)
            .map_err(|e| CallError::Transport(e.to_string()))?;
        let body = if found {
            Some(serde_json::from_slice(&buf).map_err(|e| CallError::Transport(format!("bad JSON from agent: {e}")))?)
        } else {
            None
        };
        Ok(Indexed { body, index })
    }

    /// GET returning JSON; `Ok(None)` on 404.
    pub fn get_json(&self, path: &str, query: &[(&str, String)]) -> Result<Option<Value>, CallError> {
        match self.call("GET", path, query, None)? {
            None => Ok(None),
            Some(body) => serde_json::from_slice(&body)
                .map(Some)
                .map_err(|e| CallError::Transport(format!("bad JSON from agent: {e}"))),
        }
    }
}
