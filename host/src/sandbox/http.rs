//! The host side of `wasi:http/outgoing-handler`: what a guest's request
//! becomes before it leaves the sandbox, and how it is taped and replayed.
//!
//! wasmtime-wasi-http parses the guest's request into an `http::Request`;
//! everything after that is here ([`HttpHooks::send_request`]):
//!
//! - **Allow-list.** A request goes out only if its scheme, host, port and
//!   path fall under one of the step's [`HttpRule`]s (policy
//!   `runnables.<id>.http`). Anything else fails in the guest with
//!   `HTTP-request-denied` and is recorded ([`HttpDenied`]). URLs with
//!   credentials are refused; the guest cannot set `Host`.
//! - **Bounds.** Requests per step, request and response body bytes per step
//!   and a per-request timeout that never passes the step's deadline
//!   ([`HttpLimits`]). Bodies are read into host memory only up to what is
//!   left of those budgets: a larger body is cut and the guest sees
//!   `HTTP-request-body-size` / `HTTP-response-body-size`.
//! - **Name resolution.** Host names are resolved by the host; addresses no
//!   grant by name should reach (link-local — the cloud metadata service —,
//!   unspecified, multicast; loopback unless the name is `localhost`) are
//!   dropped, so a granted name that resolves (or rebinds) there cannot be
//!   used to reach them. An IP literal reaches exactly what the operator
//!   wrote in the policy. No proxy from the environment, no redirects
//!   followed (a redirect is a response the guest sees; following it is a
//!   new request, checked like any other).
//! - **Tape.** Every request (method, URL, headers with credentials and
//!   cookies scrubbed, body hash) and its outcome (status, headers, body)
//!   is a [`HttpCall`] on the step's tape. A replay answers from the tape
//!   in order and never opens a connection; a different request is a replay
//!   miss naming the call.

use super::outcome::TapedCall;
use bytes::Bytes;
use http_body_util::BodyExt;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

/// Bytes of one `fields` resource (headers) a guest may build. With at most
/// [`super::host::MAX_RESOURCES`] handles per step that bounds header memory
/// at 16 MiB per step (stock: 128 KiB each, 128 MiB).
pub const FIELD_SIZE_LIMIT: usize = 16 << 10;
/// Bytes the host copies out of the guest per body write (stock: 1 MiB).
const BODY_CHUNK_BYTES: usize = 64 << 10;
/// Longest URL a guest may send (and the tape keeps).
pub const MAX_URL_BYTES: usize = 8 << 10;
/// Calls one step may put on its tape, whatever its `max_requests`.
pub const MAX_CALLS_PER_STEP: u32 = 4096;

/// Caps on one step's HTTP use (policy `limits.http_*`, job `runtime.http`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct HttpLimits {
    /// Requests a step may make (denied ones count too).
    pub max_requests: u32,
    /// Request body bytes, summed over the step's requests.
    pub max_request_bytes: u64,
    /// Response body bytes, summed over the step's requests.
    pub max_response_bytes: u64,
    /// Time for one request, connect to last body byte (never past the
    /// step's deadline).
    #[serde(with = "super::limits::duration_ms")]
    #[schemars(with = "u64")]
    pub timeout: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_requests: 64,
            max_request_bytes: 1 << 20,
            max_response_bytes: 8 << 20,
            timeout: Duration::from_secs(30),
        }
    }
}

impl HttpLimits {
    pub fn is_default(&self) -> bool {
        *self == HttpLimits::default()
    }
}

/// One allow-list entry: `scheme://host[:port][/path-prefix]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRule {
    pub https: bool,
    /// Lowercase, no brackets, no trailing dot.
    pub host: String,
    pub port: u16,
    /// `/` (everything) or a prefix; `/v1` and `/v1/` both cover `/v1/…`
    /// and never `/v1x`.
    pub prefix: String,
    /// As written in the policy.
    pub text: String,
}

/// Why a policy `http` entry is not a rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{entry:?} is not an http allow-list entry: {why} (write scheme://host[:port][/path-prefix], e.g. \"https://api.github.com\")")]
pub struct RuleError {
    pub entry: String,
    pub why: &'static str,
}

fn norm_host(h: &str) -> String {
    h.trim_start_matches('[').trim_end_matches(']').trim_end_matches('.').to_ascii_lowercase()
}

impl HttpRule {
    pub fn parse(entry: &str) -> Result<HttpRule, RuleError> {
        let err = |why| RuleError { entry: entry.to_string(), why };
        if entry.contains('*') {
            return Err(err("wildcards are not allowed"));
        }
        let uri: http::Uri = entry.parse().map_err(|_| err("not a URL"))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(err("the scheme must be http or https")),
        };
        let auth = uri.authority().ok_or_else(|| err("no host"))?;
        if auth.as_str().contains('@') {
            return Err(err("credentials do not belong in the allow-list"));
        }
        if uri.query().is_some() || entry.contains('#') {
            return Err(err("no query or fragment"));
        }
        let host = norm_host(auth.host());
        if host.is_empty() {
            return Err(err("no host"));
        }
        let port = auth.port_u16().unwrap_or(if https { 443 } else { 80 });
        let path = uri.path();
        if has_dot_segments(path) {
            return Err(err("the path prefix has dot segments"));
        }
        let prefix = if path.is_empty() { "/".to_string() } else { path.to_string() };
        Ok(HttpRule {
            https,
            host,
            port,
            prefix,
            text: entry.to_string(),
        })
    }

    fn covers(&self, t: &Target) -> bool {
        if self.https != t.https || self.host != t.host || self.port != t.port {
            return false;
        }
        if self.prefix == "/" {
            return true;
        }
        // A prefix is matched on segment boundaries, and a path that could
        // climb out of it on the server (dot segments, encoded slashes)
        // never matches one.
        if has_dot_segments(&t.path) {
            return false;
        }
        let p = self.prefix.trim_end_matches('/');
        t.path == p || t.path.starts_with(&format!("{p}/"))
    }

    /// The origin, as a policy line (`https://host[:port]`).
    fn origin_of(t: &Target) -> String {
        let scheme = if t.https { "https" } else { "http" };
        let default = if t.https { 443 } else { 80 };
        let host = if t.host.contains(':') { format!("[{}]", t.host) } else { t.host.clone() };
        if t.port == default {
            format!("{scheme}://{host}")
        } else {
            format!("{scheme}://{host}:{}", t.port)
        }
    }
}

/// `.`/`..` segments — literal, percent-encoded (also twice), or with a
/// `;parameter` (`..;/`, which Tomcat-style servers resolve) — encoded
/// slashes and backslashes: what a server may resolve to another path.
fn has_dot_segments(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    if ["%2f", "%5c", "%252f", "%255c", "\\"].iter().any(|p| lower.contains(p)) {
        return true;
    }
    let decoded = lower.replace("%252e", ".").replace("%2e", ".");
    decoded.split('/').any(|seg| {
        let seg = seg.split(';').next().unwrap_or("");
        seg == "." || seg == ".."
    })
}

/// Where a request goes, as the allow-list sees it.
#[derive(Debug, Clone)]
struct Target {
    https: bool,
    host: String,
    port: u16,
    /// Without the query.
    path: String,
}

impl Target {
    fn of(uri: &http::Uri) -> Result<Target, &'static str> {
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err("the scheme is not http or https"),
        };
        let auth = uri.authority().ok_or("the URL has no host")?;
        if auth.as_str().contains('@') {
            return Err("the URL carries credentials");
        }
        Ok(Target {
            https,
            host: norm_host(auth.host()),
            port: auth.port_u16().unwrap_or(if https { 443 } else { 80 }),
            path: if uri.path().is_empty() { "/".into() } else { uri.path().into() },
        })
    }

    /// `scheme://host:port/path` — no query, no credentials: safe to record.
    fn shown(&self) -> String {
        format!("{}{}", HttpRule::origin_of(self), crate::text::truncate_chars(&self.path, 512))
    }
}

/// A request the allow-list refused (a `capability_denied` event).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpDenied {
    pub method: String,
    /// `scheme://host[:port]/path`, without query or credentials.
    pub url: String,
    /// The policy line that would grant it (the origin), when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant: Option<String>,
    pub reason: String,
}

/// A request as the tape keeps it. Its canonical JSON is what
/// `request_hash` covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpRequestRecord {
    pub method: String,
    /// `scheme://host[:port]/path`: no credentials, no query.
    pub url: String,
    /// sha256 of the query string, when there is one (its values may be
    /// tokens: the tape keeps only their hash).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_sha256: Option<String>,
    /// Name (lowercase) and value; credentials and cookies scrubbed.
    pub headers: Vec<(String, String)>,
    pub body_bytes: u64,
    pub body_sha256: String,
}

/// Header names whose values never reach the tape: any name containing
/// one of these (lowercase) may hold a secret (`authorization`, `cookie`,
/// `set-cookie`, `x-api-key`, `api-key`, `x-goog-api-key`, `private-token`,
/// `x-amz-security-token`, `x-auth-token`, …).
const SECRET_NAME_PARTS: [&str; 9] = ["auth", "cookie", "key", "token", "secret", "session", "password", "signature", "credential"];

fn secret_header(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    SECRET_NAME_PARTS.iter().any(|p| n.contains(p))
}

/// Header pairs as the tape keeps them (secret values scrubbed).
fn taped_headers<'a>(headers: impl Iterator<Item = (&'a http::HeaderName, &'a http::HeaderValue)>) -> Vec<(String, String)> {
    headers
        .filter(|(k, _)| **k != http::header::HOST)
        .map(|(k, v)| {
            let name = k.as_str().to_string();
            let value = if secret_header(&name) {
                "<scrubbed>".to_string()
            } else {
                String::from_utf8_lossy(v.as_bytes()).into_owned()
            };
            (name, value)
        })
        .collect()
}

/// `scheme://host[:port]/path` of a URI (never its credentials or query),
/// and the sha256 of its query.
fn recorded_url(uri: &http::Uri) -> (String, Option<String>) {
    let host = uri.host().unwrap_or("");
    let port = uri.port().map(|p| format!(":{}", p.as_str())).unwrap_or_default();
    let url = format!("{}://{host}{port}{}", uri.scheme_str().unwrap_or("?"), uri.path());
    (
        crate::text::truncate_chars(&url, MAX_URL_BYTES).into_owned(),
        uri.query().map(|q| crate::util::sha256(q.as_bytes())),
    )
}

impl HttpRequestRecord {
    pub fn hash(&self) -> String {
        crate::util::sha256(serde_json::to_string(self).unwrap_or_default().as_bytes())
    }
}

/// A body as the tape keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TapedBody {
    Text(String),
    Base64(String),
}

impl TapedBody {
    fn of(b: &[u8]) -> TapedBody {
        use base64::Engine as _;
        match std::str::from_utf8(b) {
            Ok(s) => TapedBody::Text(s.to_string()),
            Err(_) => TapedBody::Base64(base64::engine::general_purpose::STANDARD.encode(b)),
        }
    }

    fn bytes(&self) -> Bytes {
        use base64::Engine as _;
        match self {
            TapedBody::Text(s) => Bytes::from(s.clone().into_bytes()),
            TapedBody::Base64(s) => Bytes::from(base64::engine::general_purpose::STANDARD.decode(s).unwrap_or_default()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpResponseRecord {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: TapedBody,
    pub body_bytes: u64,
}

/// Why a request got no response (the `wasi:http` `error-code` the guest
/// saw, by its WIT name, and why).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpFailure {
    pub code: String,
    pub message: String,
    /// The cap a body went over (the guest's `HTTP-*-body-size` payload).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
}

impl HttpFailure {
    fn new(code: &str, message: impl Into<String>) -> HttpFailure {
        HttpFailure {
            code: code.into(),
            message: message.into(),
            limit: None,
        }
    }

    /// The error the guest sees (the same in a replay).
    fn to_error(&self) -> HttpError {
        match self.code.as_str() {
            "HTTP-request-denied" => HttpError::HttpRequestDenied,
            "HTTP-request-body-size" => HttpError::HttpRequestBodySize(self.limit),
            "HTTP-response-body-size" => HttpError::HttpResponseBodySize(self.limit),
            "HTTP-response-timeout" => HttpError::HttpResponseTimeout,
            "connection-timeout" => HttpError::ConnectionTimeout,
            "connection-refused" => HttpError::ConnectionRefused,
            "destination-not-found" => HttpError::DestinationNotFound,
            "destination-IP-prohibited" => HttpError::DestinationIpProhibited,
            "TLS-certificate-error" => HttpError::TlsCertificateError,
            "HTTP-request-URI-too-long" => HttpError::HttpRequestUriTooLong,
            "HTTP-response-header-section-size" => HttpError::HttpResponseHeaderSectionSize(None),
            "HTTP-protocol-error" => HttpError::HttpProtocolError,
            _ => HttpError::InternalError(Some(self.message.clone())),
        }
    }
}

/// One request on a step's tape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpCall {
    /// `http-<n>`, 1-based per step, in the order the guest sent them.
    pub call_id: String,
    pub request_hash: String,
    pub request: HttpRequestRecord,
    pub outcome: Result<HttpResponseRecord, HttpFailure>,
    pub latency_ms: u64,
}

/// HTTP requests and bytes of one step (receipt).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct HttpTotals {
    pub requests: u32,
    pub denied: u32,
    pub request_bytes: u64,
    pub response_bytes: u64,
}

impl HttpTotals {
    pub fn of(calls: &[TapedCall]) -> HttpTotals {
        let mut t = HttpTotals::default();
        for c in calls {
            if let TapedCall::Http(c) = c {
                t.requests += 1;
                t.request_bytes += c.request.body_bytes;
                match &c.outcome {
                    Ok(r) => t.response_bytes += r.body_bytes,
                    Err(f) if f.code == "HTTP-request-denied" => t.denied += 1,
                    Err(_) => {}
                }
            }
        }
        t
    }

    pub fn add(&mut self, o: &HttpTotals) {
        self.requests += o.requests;
        self.denied += o.denied;
        self.request_bytes += o.request_bytes;
        self.response_bytes += o.response_bytes;
    }

    pub fn is_zero(&self) -> bool {
        self.requests == 0
    }
}

/// What a step's requests used so far.
#[derive(Debug, Default)]
struct Used {
    requests: u32,
    request_bytes: u64,
    response_bytes: u64,
}

/// The state every request of one step shares.
struct Shared {
    rules: Vec<HttpRule>,
    limits: HttpLimits,
    deadline: Instant,
    used: Mutex<Used>,
    /// The tape, in the order requests were sent (outcomes filled in as they
    /// arrive).
    calls: Mutex<Vec<HttpCall>>,
    /// In a replay: the recorded requests still to serve.
    replay: Option<Mutex<VecDeque<HttpCall>>>,
    misses: Mutex<Vec<String>>,
    denied: Mutex<Vec<HttpDenied>>,
}

/// The `wasi:http` hooks of one step (stored in its `StepState`).
pub(crate) struct HttpHooks(Arc<Shared>);

/// Everything a step's HTTP use left behind, for its report.
pub(crate) struct HttpRecord {
    pub calls: Vec<HttpCall>,
    pub misses: Vec<String>,
    pub denied: Vec<HttpDenied>,
}

/// Denials recorded per step; more are counted on the tape only.
const MAX_DENIED_RECORDS: usize = 1000;

impl HttpHooks {
    /// `grants` are the policy's allow-list entries (already validated;
    /// an entry that does not parse grants nothing).
    pub(crate) fn new(grants: &[String], limits: HttpLimits, deadline: Instant, replay: Option<Vec<HttpCall>>) -> HttpHooks {
        HttpHooks(Arc::new(Shared {
            rules: grants.iter().filter_map(|g| HttpRule::parse(g).ok()).collect(),
            limits,
            deadline,
            used: Mutex::default(),
            calls: Mutex::default(),
            replay: replay.map(|r| Mutex::new(r.into())),
            misses: Mutex::default(),
            denied: Mutex::default(),
        }))
    }

    pub(crate) fn record(&self) -> HttpRecord {
        HttpRecord {
            calls: lock(&self.0.calls).clone(),
            misses: lock(&self.0.misses).clone(),
            denied: lock(&self.0.denied).clone(),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

type Sent = Result<(http::Response<WasiBody>, Box<dyn Future<Output = Result<(), HttpError>> + Send>), HttpError>;

impl WasiHttpHooks for HttpHooks {
    fn is_forbidden_header(&mut self, name: &http::HeaderName) -> bool {
        // The host sets `Host` from the checked URL: a guest-chosen one
        // could address another virtual host behind a granted address.
        *name == http::header::HOST || wasmtime_wasi_http::DEFAULT_FORBIDDEN_HEADERS.contains(name)
    }

    fn default_scheme(&mut self) -> Option<http::uri::Scheme> {
        None
    }

    fn p2_outgoing_body_chunk_size(&mut self) -> usize {
        BODY_CHUNK_BYTES
    }

    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        _options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> Box<dyn Future<Output = Sent> + Send> {
        let shared = self.0.clone();
        Box::new(async move { shared.send(request).await })
    }
}

fn full(b: Bytes) -> WasiBody {
    http_body_util::Full::new(b).map_err(|never| match never {}).boxed_unsync()
}

fn io_done() -> Box<dyn Future<Output = Result<(), HttpError>> + Send> {
    Box::new(async { Ok(()) })
}

impl Shared {
    async fn send(self: Arc<Self>, request: http::Request<WasiBody>) -> Sent {
        let started = Instant::now();
        let (parts, body) = request.into_parts();
        let method = crate::text::truncate_chars(parts.method.as_str(), 32).into_owned();
        let (url, query_sha256) = recorded_url(&parts.uri);
        // Number the call and count it before anything else can fail.
        let n = {
            let mut used = lock(&self.used);
            used.requests += 1;
            used.requests
        };
        let call_id = format!("http-{n}");
        let headers = taped_headers(parts.headers.iter());
        let mut record = HttpRequestRecord {
            method: method.clone(),
            url,
            query_sha256,
            headers,
            body_bytes: 0,
            body_sha256: crate::util::sha256(b""),
        };
        let idx = {
            let mut calls = lock(&self.calls);
            if n > MAX_CALLS_PER_STEP {
                return Err(HttpError::ConnectionLimitReached);
            }
            calls.push(HttpCall {
                call_id: call_id.clone(),
                request_hash: String::new(), // set when the call finishes
                request: record.clone(),
                outcome: Err(HttpFailure::new("internal-error", "the step ended before the response")),
                latency_ms: 0,
            });
            calls.len() - 1
        };
        let finish = |record: &HttpRequestRecord, outcome: Result<HttpResponseRecord, HttpFailure>| {
            let mut calls = lock(&self.calls);
            if let Some(c) = calls.get_mut(idx) {
                c.request_hash = record.hash();
                c.request = record.clone();
                c.outcome = outcome;
                c.latency_ms = started.elapsed().as_millis() as u64;
            }
        };

        // The allow-list first: a refused request sends nothing, not even
        // its body.
        let allowed = self.check(&method, &parts.uri, n);
        if let Err(f) = allowed {
            finish(&record, Err(f.clone()));
            return Err(f.to_error());
        }

        let until = self.deadline.min(started + self.limits.timeout);
        let body = match tokio::time::timeout_at(until.into(), self.read_request_body(body)).await {
            Ok(Ok(b)) => b,
            Ok(Err(f)) => {
                finish(&record, Err(f.clone()));
                return Err(f.to_error());
            }
            Err(_) => {
                let f = HttpFailure::new("HTTP-response-timeout", "the guest did not finish the request body in time");
                finish(&record, Err(f.clone()));
                return Err(f.to_error());
            }
        };
        record.body_bytes = body.len() as u64;
        record.body_sha256 = crate::util::sha256(&body);
        let hash = record.hash();

        // The guest sees the real headers; the tape keeps them with secret
        // values scrubbed (a replay serves those).
        let (outcome, live_headers) = match &self.replay {
            Some(tape) => (self.replayed(tape, &call_id, &hash), None),
            None => match tokio::time::timeout_at(until.into(), self.fetch(&parts, body)).await {
                Ok(Ok((r, live))) => (Ok(r), Some(live)),
                Ok(Err(f)) => (Err(f), None),
                Err(_) => (
                    Err(HttpFailure::new(
                        "HTTP-response-timeout",
                        format!("no complete response within {} ms", until.saturating_duration_since(started).as_millis()),
                    )),
                    None,
                ),
            },
        };
        finish(&record, outcome.clone());
        let r = outcome.map_err(|f| f.to_error())?;
        let mut b = http::Response::builder().status(r.status);
        match live_headers {
            Some(h) => {
                if let Some(m) = b.headers_mut() {
                    *m = h;
                }
            }
            None => {
                for (k, v) in &r.headers {
                    b = b.header(k, v);
                }
            }
        }
        let resp = b.body(full(r.body.bytes())).map_err(|e| HttpError::InternalError(Some(e.to_string())))?;
        Ok((resp, io_done()))
    }

    /// The allow-list and the request count.
    fn check(&self, method: &str, uri: &http::Uri, n: u32) -> Result<(), HttpFailure> {
        if n > self.limits.max_requests {
            return Err(HttpFailure::new(
                "internal-error",
                format!(
                    "request limit reached: at most {} requests per step (runtime.http.max_requests)",
                    self.limits.max_requests
                ),
            ));
        }
        let target = Target::of(uri);
        let denied = |url: String, grant: Option<String>, reason: String| {
            let mut d = lock(&self.denied);
            if d.len() < MAX_DENIED_RECORDS {
                d.push(HttpDenied {
                    method: crate::text::truncate_chars(method, 32).into_owned(),
                    url,
                    grant,
                    reason: reason.clone(),
                });
            }
            HttpFailure::new("HTTP-request-denied", reason)
        };
        match target {
            Err(why) => Err(denied(
                format!("{}://{}", uri.scheme_str().unwrap_or("?"), uri.host().unwrap_or("?")),
                None,
                why.to_string(),
            )),
            Ok(t) if self.rules.iter().any(|r| r.covers(&t)) => Ok(()),
            Ok(t) => {
                let reason = if self.rules.is_empty() {
                    "this step has no http grant (policy runnables.<id>.http)".to_string()
                } else {
                    format!("{} is not in the step's http allow-list", t.shown())
                };
                Err(denied(t.shown(), Some(HttpRule::origin_of(&t)), reason))
            }
        }
    }

    async fn read_request_body(&self, mut body: WasiBody) -> Result<Bytes, HttpFailure> {
        let mut buf = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| HttpFailure::new("internal-error", format!("request body: {e}")))?;
            if let Ok(data) = frame.into_data() {
                let mut used = lock(&self.used);
                if used.request_bytes + data.len() as u64 > self.limits.max_request_bytes {
                    return Err(HttpFailure {
                        limit: Some(self.limits.max_request_bytes),
                        ..HttpFailure::new(
                            "HTTP-request-body-size",
                            format!(
                                "request bodies over {} bytes per step (runtime.http.max_request_bytes)",
                                self.limits.max_request_bytes
                            ),
                        )
                    });
                }
                used.request_bytes += data.len() as u64;
                buf.extend_from_slice(&data);
            }
        }
        Ok(Bytes::from(buf))
    }

    fn replayed(&self, tape: &Mutex<VecDeque<HttpCall>>, call_id: &str, hash: &str) -> Result<HttpResponseRecord, HttpFailure> {
        let next = lock(tape).pop_front();
        let why = match next {
            Some(c) if c.request_hash == hash => return c.outcome,
            Some(c) => format!("{call_id}: the request differs from the recorded one ({} → {hash})", c.request_hash),
            None => format!("{call_id}: the recorded step made fewer HTTP requests"),
        };
        lock(&self.misses).push(why.clone());
        Err(HttpFailure::new("internal-error", format!("replay miss: {why}")))
    }

    /// Send a checked request and read its response within the budget.
    async fn fetch(&self, parts: &http::request::Parts, body: Bytes) -> Result<(HttpResponseRecord, http::HeaderMap), HttpFailure> {
        let client = client().map_err(|e| HttpFailure::new("internal-error", e))?;
        let url = parts.uri.to_string();
        let mut rb = client.request(parts.method.clone(), &url);
        for (k, v) in &parts.headers {
            if k != http::header::HOST && k != http::header::CONTENT_LENGTH {
                rb = rb.header(k, v);
            }
        }
        let resp = rb.body(body).send().await.map_err(send_failure)?;
        let status = resp.status().as_u16();
        // Header bytes count against the response budget like body bytes.
        let header_bytes: u64 = resp.headers().iter().map(|(k, v)| (k.as_str().len() + v.len() + 4) as u64).sum();
        {
            let mut used = lock(&self.used);
            if used.response_bytes + header_bytes > self.limits.max_response_bytes {
                return Err(HttpFailure {
                    limit: Some(self.limits.max_response_bytes),
                    ..HttpFailure::new(
                        "HTTP-response-header-section-size",
                        format!(
                            "response headers of {header_bytes} bytes go over the step's {} response bytes (runtime.http.max_response_bytes)",
                            self.limits.max_response_bytes
                        ),
                    )
                });
            }
            used.response_bytes += header_bytes;
        }
        let headers = taped_headers(resp.headers().iter());
        let live = resp.headers().clone();
        let mut resp = resp;
        let mut buf: Vec<u8> = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(send_failure)? {
            let mut used = lock(&self.used);
            if used.response_bytes + chunk.len() as u64 > self.limits.max_response_bytes {
                return Err(HttpFailure {
                    limit: Some(self.limits.max_response_bytes),
                    ..HttpFailure::new(
                        "HTTP-response-body-size",
                        format!(
                            "response bodies over {} bytes per step (runtime.http.max_response_bytes); cut after {} bytes",
                            self.limits.max_response_bytes,
                            buf.len()
                        ),
                    )
                });
            }
            used.response_bytes += chunk.len() as u64;
            buf.extend_from_slice(&chunk);
        }
        Ok((
            HttpResponseRecord {
                status,
                headers,
                body_bytes: buf.len() as u64,
                body: TapedBody::of(&buf),
            },
            live,
        ))
    }
}

fn send_failure(e: reqwest::Error) -> HttpFailure {
    let msg = crate::text::truncate_chars(&error_chain(&e), 512).into_owned();
    let code = if e.is_timeout() {
        "connection-timeout"
    } else if msg.contains("no usable address") || msg.contains("dns error") {
        "destination-not-found"
    } else if msg.contains("certificate") {
        "TLS-certificate-error"
    } else if e.is_connect() {
        "connection-refused"
    } else {
        "HTTP-protocol-error"
    };
    HttpFailure::new(code, msg)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

/// Addresses a host name may lead to: none that a name grant should open.
fn name_may_reach(name: &str, ip: IpAddr) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    };
    let local_name = name == "localhost" || name.ends_with(".localhost");
    match ip {
        IpAddr::V4(v4) => !(v4.is_link_local() || v4.is_unspecified() || v4.is_multicast() || v4.is_broadcast() || (v4.is_loopback() && !local_name)),
        IpAddr::V6(v6) => {
            let link_local = (v6.segments()[0] & 0xffc0) == 0xfe80;
            let metadata = v6 == std::net::Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254);
            !(link_local || metadata || v6.is_unspecified() || v6.is_multicast() || (v6.is_loopback() && !local_name))
        }
    }
}

/// The host's resolver for guest requests (see the module docs).
struct GuardedResolver;

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().trim_end_matches('.').to_ascii_lowercase();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let kept: Vec<SocketAddr> = addrs.into_iter().filter(|a| name_may_reach(&host, a.ip())).collect();
            if kept.is_empty() {
                return Err(format!("no usable address for {host} (link-local, loopback and similar addresses are never reached by name)").into());
            }
            Ok(Box::new(kept.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The one client for guest requests, built on first use.
fn client() -> Result<&'static reqwest::Client, String> {
    static CLIENT: OnceLock<Result<reqwest::Client, String>> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            reqwest::Client::builder()
                .no_proxy()
                .redirect(reqwest::redirect::Policy::none())
                .dns_resolver(Arc::new(GuardedResolver))
                .pool_idle_timeout(Duration::from_secs(30))
                .connect_timeout(Duration::from_secs(10))
                .build()
                .map_err(|e| format!("cannot build the HTTP client: {e}"))
        })
        .as_ref()
        .map_err(Clone::clone)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn t(url: &str) -> Target {
        Target::of(&url.parse().unwrap()).unwrap()
    }

    #[test]
    fn rules_parse_with_default_ports_and_refuse_what_is_not_an_origin() {
        let r = HttpRule::parse("https://API.github.com").unwrap();
        assert_eq!((r.https, r.host.as_str(), r.port, r.prefix.as_str()), (true, "api.github.com", 443, "/"));
        let r = HttpRule::parse("http://127.0.0.1:8099/v1/").unwrap();
        assert_eq!((r.https, r.port, r.prefix.as_str()), (false, 8099, "/v1/"));
        for bad in [
            "api.github.com",
            "ftp://x",
            "https://*.github.com",
            "https://u:p@x",
            "https://x/?a=1",
            "https://x/a/../b",
            "127.0.0.1:80",
        ] {
            assert!(HttpRule::parse(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn a_rule_covers_its_origin_and_path_prefix_only() {
        let r = HttpRule::parse("http://127.0.0.1:8099/v1").unwrap();
        assert!(r.covers(&t("http://127.0.0.1:8099/v1")));
        assert!(r.covers(&t("http://127.0.0.1:8099/v1/status?x=1")));
        for no in [
            "http://127.0.0.1:8099/v1x",
            "http://127.0.0.1:8099/v2/a",
            "http://127.0.0.1:8099/v1/../admin",
            "http://127.0.0.1:8099/v1/%2e%2E/admin",
            "http://127.0.0.1:8099/v1%2F..%2Fadmin",
            "http://127.0.0.1:8099/v1/..;/admin",
            "http://127.0.0.1:8099/v1/%252e%252e/admin",
            "http://127.0.0.1:8098/v1/a",
            "https://127.0.0.1:8099/v1/a",
            "http://localhost:8099/v1/a",
        ] {
            assert!(!r.covers(&t(no)), "{no} should not be covered");
        }
        let any = HttpRule::parse("https://api.github.com").unwrap();
        assert!(any.covers(&t("https://API.GITHUB.COM./repos")));
        assert!(!any.covers(&t("https://api.github.com.evil.example/")));
        assert!(Target::of(&"https://u:p@api.github.com/".parse().unwrap()).is_err());
    }

    #[test]
    fn names_never_reach_link_local_or_loopback_addresses() {
        for (name, ip, ok) in [
            ("api.example", "169.254.169.254", false),
            ("api.example", "127.0.0.1", false),
            ("localhost", "127.0.0.1", true),
            ("api.example", "::ffff:169.254.169.254", false),
            ("api.example", "fe80::1", false),
            ("api.example", "fd00:ec2::254", false),
            ("api.example", "0.0.0.0", false),
            ("api.example", "10.0.0.7", true),
            ("api.example", "140.82.112.5", true),
        ] {
            assert_eq!(name_may_reach(name, ip.parse().unwrap()), ok, "{name} → {ip}");
        }
    }

    #[test]
    fn the_denied_url_has_no_query_and_the_hint_is_the_origin() {
        let x = t("http://127.0.0.1:9/a/b?token=secret");
        assert_eq!(x.shown(), "http://127.0.0.1:9/a/b");
        assert_eq!(HttpRule::origin_of(&t("https://api.github.com/x")), "https://api.github.com");
    }
}
