//! HTTP checks: one request per run on a fresh connection, Go's redirect rules and Consul's
//! headers; 2xx passing, 429 warning, else critical, with the end of the body as output.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use legate_core::agent::CheckResult;
use legate_core::catalog::Status;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::timeout_at;
use tokio_rustls::rustls;
use tokio_rustls::rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use url::Url;

use super::script::{tail_text, Tail};
use super::tcp::dial;
use super::{critical, deadline_after, result, Executor};

/// Go's `http.Client` follows at most this many redirects, then fails the request.
const REDIRECTS_MAX: usize = 10;

/// Consul's `User-Agent` for HTTP checks, unless the definition sets one.
const USER_AGENT: &str = "Consul Health Check";

/// Consul's `Accept` for HTTP checks, unless the definition sets one.
const ACCEPT: &str = "text/plain, text/*, */*";

pub(super) struct HttpCheck<'a> {
    pub(super) url: &'a str,
    pub(super) method: &'a str,
    pub(super) header: &'a std::collections::BTreeMap<String, Vec<String>>,
    pub(super) body: &'a str,
    pub(super) tls_skip_verify: bool,
    pub(super) tls_server_name: &'a str,
}

/// One request of a run (the first, or one after a redirect).
struct Hop {
    url: Url,
    method: Method,
    headers: HeaderMap,
    /// A `Host` header from the definition: sent instead of the URL's host.
    host: Option<HeaderValue>,
    body: Bytes,
}

impl Executor {
    pub(super) async fn run_http(&self, check: &HttpCheck<'_>, timeout: Duration, max: usize) -> CheckResult {
        let deadline = deadline_after(timeout);
        let op = go_op(check.method);
        let url = match Url::parse(check.url) {
            Ok(url) => url,
            Err(e) => return critical(format!("parse {:?}: {e}", check.url)),
        };
        let Ok(method) = Method::from_bytes(check.method.as_bytes()) else {
            return critical(format!("net/http: invalid method {:?}", check.method));
        };
        let (headers, host) = match request_headers(check.header) {
            Ok(h) => h,
            Err(e) => return critical(format!("{op} {:?}: {e}", check.url)),
        };
        let mut hop = Hop { url, method, headers, host, body: Bytes::copy_from_slice(check.body.as_bytes()) };
        let mut redirects = 0;
        let (response, conn) = loop {
            let sent = timeout_at(deadline, self.round_trip(&hop, check)).await;
            let (response, conn) = match sent {
                Ok(Ok(answer)) => answer,
                Ok(Err(e)) => return critical(format!("{} {:?}: {e}", go_op(hop.method.as_str()), hop.url.as_str())),
                Err(_) => {
                    return critical(format!(
                        "{} {:?}: context deadline exceeded (Client.Timeout exceeded while awaiting headers)",
                        go_op(hop.method.as_str()),
                        hop.url.as_str()
                    ))
                }
            };
            match redirect(&hop, &response) {
                Ok(None) => break (response, conn),
                Ok(Some(next)) => {
                    redirects += 1;
                    if redirects > REDIRECTS_MAX {
                        return critical(format!(
                            "{} {:?}: stopped after {REDIRECTS_MAX} redirects",
                            go_op(next.method.as_str()),
                            next.url.as_str()
                        ));
                    }
                    hop = next;
                }
                Err(e) => return critical(format!("{} {:?}: {e}", go_op(hop.method.as_str()), hop.url.as_str())),
            }
        };

        let status = response.status();
        let reason = match response.extensions().get::<hyper::ext::ReasonPhrase>() {
            Some(reason) => String::from_utf8_lossy(reason.as_bytes()).into_owned(),
            None => status.canonical_reason().unwrap_or_default().to_string(),
        };
        let mut out = format!("HTTP {} {}: {} {reason} Output: ", check.method, check.url, status.as_u16());
        // Like Consul: the body is read to its end (or the deadline, keeping what came), its
        // last bytes kept.
        let budget = max.saturating_sub(out.len());
        let mut tail = Tail::new(budget);
        let mut body = response.into_body();
        while let Ok(Some(Ok(frame))) = timeout_at(deadline, body.frame()).await {
            if let Some(data) = frame.data_ref() {
                tail.push(data);
            }
        }
        drop(conn);
        let bytes: Vec<u8> = tail.buf.iter().copied().collect();
        out.push_str(&tail_text(&bytes, budget));
        let status = match status.as_u16() {
            200..=299 => Status::Passing,
            429 => Status::Warning,
            _ => Status::Critical,
        };
        result(status, out)
    }

    /// Sends one request on a new connection; answers with the response head and the task
    /// driving the connection (the body still to be read through it).
    async fn round_trip(
        &self,
        hop: &Hop,
        check: &HttpCheck<'_>,
    ) -> Result<(Response<hyper::body::Incoming>, ConnTask), String> {
        let url = &hop.url;
        let tls = match url.scheme() {
            "http" => false,
            "https" => true,
            other => return Err(format!("unsupported protocol scheme {other:?}")),
        };
        let host = match url.host() {
            Some(url::Host::Domain(d)) => d.to_string(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            None => return Err("http: no Host in request URL".to_string()),
        };
        let port = url.port_or_known_default().unwrap_or(if tls { 443 } else { 80 });
        let stream = dial(&host, port).await?;
        let _ = stream.set_nodelay(true);
        let request = build_request(hop)?;
        if !tls {
            return send(stream, request).await;
        }
        let config = self.tls_config(check.tls_skip_verify)?;
        // Consul's TLSServerName is both the SNI and the name the certificate must carry.
        let name = if check.tls_server_name.is_empty() { host.as_str() } else { check.tls_server_name };
        let name = ServerName::try_from(name.to_string()).map_err(|e| format!("tls: invalid server name: {e}"))?;
        let stream = tokio_rustls::TlsConnector::from(config)
            .connect(name, stream)
            .await
            .map_err(|e| format!("tls: {}", error_chain(&e)))?;
        send(stream, request).await
    }

    fn tls_config(&self, skip_verify: bool) -> Result<Arc<ClientConfig>, String> {
        let cell = if skip_verify { &self.tls.unverified } else { &self.tls.verified };
        cell.get_or_init(|| build_tls_config(skip_verify)).clone()
    }
}

/// Aborts the task driving a connection when dropped, closing the socket.
struct ConnTask(tokio::task::JoinHandle<()>);

impl Drop for ConnTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn send<T>(io: T, request: Request<Full<Bytes>>) -> Result<(Response<hyper::body::Incoming>, ConnTask), String>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // Title-Case header names, as Go writes them: some hand-written health endpoints match
    // them case-sensitively.
    let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
        .title_case_headers(true)
        .handshake(TokioIo::new(io))
        .await
        .map_err(|e| error_chain(&e))?;
    let task = ConnTask(tokio::spawn(async move {
        let _ = conn.await;
    }));
    sender.ready().await.map_err(|e| error_chain(&e))?;
    let response = sender.send_request(request).await.map_err(|e| error_chain(&e))?;
    Ok((response, task))
}

fn build_request(hop: &Hop) -> Result<Request<Full<Bytes>>, String> {
    let url = &hop.url;
    let target = &url[url::Position::BeforePath..url::Position::AfterQuery];
    let target = if target.is_empty() { "/" } else { target };
    let mut request = Request::new(Full::new(hop.body.clone()));
    *request.method_mut() = hop.method.clone();
    *request.uri_mut() = target.parse().map_err(|e| format!("invalid request target {target:?}: {e}"))?;
    let headers = request.headers_mut();
    headers.clone_from(&hop.headers);
    let host = match &hop.host {
        Some(host) => host.clone(),
        None => {
            let authority = match (url.host_str(), url.port()) {
                (Some(h), Some(p)) => format!("{h}:{p}"),
                (Some(h), None) => h.to_string(),
                (None, _) => String::new(),
            };
            HeaderValue::from_str(&authority).map_err(|_| format!("invalid host {authority:?}"))?
        }
    };
    headers.insert(header::HOST, host);
    // Go sends the URL's user info as basic auth unless the definition has an Authorization.
    if !url.username().is_empty() && !headers.contains_key(header::AUTHORIZATION) {
        let decode = |s: &str| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned();
        let pair = format!("{}:{}", decode(url.username()), decode(url.password().unwrap_or_default()));
        let value = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair));
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(header::AUTHORIZATION, value);
        }
    }
    // Keep-alive off, as in Consul's transport.
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    Ok(request)
}

/// The definition's headers (each value of a list sent as its own header line) with Consul's
/// `User-Agent` and `Accept` where it sets none, and its `Host` apart.
fn request_headers(
    defined: &std::collections::BTreeMap<String, Vec<String>>,
) -> Result<(HeaderMap, Option<HeaderValue>), String> {
    let mut headers = HeaderMap::new();
    let mut host = None;
    for (name, values) in defined {
        let header_name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("net/http: invalid header field name {name:?}"))?;
        for value in values {
            let value = HeaderValue::from_str(value)
                .map_err(|_| format!("net/http: invalid header field value for {name:?}"))?;
            if header_name == header::HOST {
                host.get_or_insert(value);
            } else {
                headers.append(header_name.clone(), value);
            }
        }
    }
    // Go's Header.Get looks at the first value: an empty one counts as unset.
    for (name, default) in [(header::USER_AGENT, USER_AGENT), (header::ACCEPT, ACCEPT)] {
        if headers.get(&name).is_none_or(|v| v.is_empty()) {
            headers.insert(name, HeaderValue::from_static(default));
        }
    }
    Ok((headers, host.filter(|h| !h.is_empty())))
}

/// The next request if `response` is a redirect Go's client follows: 301/302/303 turn into a
/// GET without a body (HEAD stays HEAD), 307/308 repeat method and body. Credentials and
/// cookies are not sent to another host (unless a subdomain), and a `Host` override only
/// survives a relative Location.
fn redirect(hop: &Hop, response: &Response<hyper::body::Incoming>) -> Result<Option<Hop>, String> {
    let keep_method = match response.status() {
        StatusCode::MOVED_PERMANENTLY | StatusCode::FOUND | StatusCode::SEE_OTHER => false,
        StatusCode::TEMPORARY_REDIRECT | StatusCode::PERMANENT_REDIRECT => true,
        _ => return Ok(None),
    };
    let Some(location) = response.headers().get(header::LOCATION) else {
        return Ok(None);
    };
    let location = String::from_utf8_lossy(location.as_bytes()).into_owned();
    let url = hop.url.join(&location).map_err(|e| format!("failed to parse Location header {location:?}: {e}"))?;
    let (method, body) = if keep_method || hop.method == Method::GET || hop.method == Method::HEAD {
        let body = if keep_method { hop.body.clone() } else { Bytes::new() };
        (hop.method.clone(), body)
    } else {
        (Method::GET, Bytes::new())
    };
    let mut headers = hop.headers.clone();
    let same_site = match (hop.url.host_str(), url.host_str()) {
        (Some(from), Some(to)) => {
            let (from, to) = (from.to_ascii_lowercase(), to.to_ascii_lowercase());
            to == from || to.strip_suffix(&from).is_some_and(|sub| sub.ends_with('.'))
        }
        _ => false,
    };
    if !same_site {
        for name in [header::AUTHORIZATION, header::WWW_AUTHENTICATE, header::COOKIE] {
            headers.remove(name);
        }
        headers.remove("cookie2");
    }
    let relative = Url::parse(&location).is_err();
    let host = if relative { hop.host.clone() } else { None };
    Ok(Some(Hop { url, method, headers, host, body }))
}

/// The operation Go names in a request error: the method with only its first letter capital.
pub(super) fn go_op(method: &str) -> String {
    let mut chars = method.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars.flat_map(char::to_lowercase)).collect(),
        None => "Get".to_string(),
    }
}

/// An error and its causes, `outer: inner: ...` (hyper's and rustls's own texts are terse).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

fn build_tls_config(skip_verify: bool) -> Result<Arc<ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("tls: {e}"))?;
    let mut config = if skip_verify {
        builder.dangerous().with_custom_certificate_verifier(Arc::new(AnyCertificate(provider))).with_no_client_auth()
    } else {
        let mut roots = rustls::RootCertStore::empty();
        // Unreadable or malformed certificates are skipped, as Go's loader does; with no
        // roots at all every verified handshake fails, which the check then reports.
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// `TLSSkipVerify`: any certificate for any name is accepted, as Go's `InsecureSkipVerify`;
/// the handshake's signatures are still checked so the session keys are the peer's.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
