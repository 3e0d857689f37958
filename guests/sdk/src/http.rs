//! Outbound HTTP through the host (`wasi:http/outgoing-handler`). A request
//! goes out only if the step's policy lists its origin (and path prefix)
//! under `runnables.<id>.http`; otherwise it fails with
//! `HTTP-request-denied` and the host records a `capability_denied` event
//! with the line to add. The host caps requests, body bytes and time per
//! step, follows no redirects (a 3xx is a response like any other) and
//! tapes every request and response, so `lily jobs replay` serves them back
//! without a network.
//!
//! ```ignore
//! let r = lily_guest::http::get("https://api.github.com/zen")?;
//! assert_eq!(r.status, 200);
//! ```
//!
//! On a native target (unit tests) there is no host: every request fails
//! with [`HttpError`] `no-host`.

/// Bindings generated from `wit-http/` (WASI 0.2.12 `wasi:http`).
#[allow(clippy::all, missing_docs, unsafe_op_in_unsafe_fn, dead_code)]
mod wasi_http {
    wit_bindgen::generate!({
        world: "lily:http-client/client",
        path: "wit-http",
        generate_all,
    });
}

/// A response, read whole (the host has capped its size already).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// Header names (lowercase) and values, in the order received.
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of a header, as text.
    pub fn header(&self, name: &str) -> Option<String> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }
}

/// Why a request got no response: the `wasi:http` error code by its WIT
/// name (`HTTP-request-denied`, `HTTP-response-body-size`,
/// `connection-refused`, …) and what the host said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpError {
    pub code: String,
    pub message: String,
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.message.is_empty() {
            f.write_str(&self.code)
        } else {
            write!(f, "{}: {}", self.code, self.message)
        }
    }
}

impl std::error::Error for HttpError {}

fn err(code: &str, message: impl Into<String>) -> HttpError {
    HttpError {
        code: code.into(),
        message: message.into(),
    }
}

/// `GET url`.
pub fn get(url: &str) -> Result<Response, HttpError> {
    request("GET", url, &[], None)
}

/// `POST url` with a JSON body (`content-type: application/json`).
pub fn post_json(url: &str, body: &serde_json::Value) -> Result<Response, HttpError> {
    request("POST", url, &[("content-type", "application/json")], Some(body.to_string().as_bytes()))
}

/// Split `scheme://authority/path?query`.
fn split_url(url: &str) -> Result<(&str, &str, String), HttpError> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| err("HTTP-request-URI-invalid", format!("{url:?} has no scheme")))?;
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        return Err(err("HTTP-request-URI-invalid", format!("{url:?} has no host")));
    }
    Ok((scheme, authority, if path.starts_with('?') { format!("/{path}") } else { path.to_string() }))
}

/// Any request: method, URL, headers and an optional body.
pub fn request(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Result<Response, HttpError> {
    let (scheme, authority, path) = split_url(url)?;
    #[cfg(target_arch = "wasm32")]
    return send(method, scheme, authority, &path, headers, body);
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = (method, scheme, authority, path, headers, body);
        Err(err("no-host", "HTTP requests need the Lily host (this is a native build)"))
    }
}

#[cfg(target_arch = "wasm32")]
fn send(method: &str, scheme: &str, authority: &str, path: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Result<Response, HttpError> {
    use wasi_http::wasi::http::outgoing_handler;
    use wasi_http::wasi::http::types::{Fields, IncomingBody, Method, OutgoingBody, OutgoingRequest, Scheme};
    use wasi_http::wasi::io::streams::StreamError;

    let fields = Fields::new();
    for (k, v) in headers {
        fields
            .append(k, v.as_bytes())
            .map_err(|e| err("HTTP-request-header-invalid", format!("{k}: {e:?}")))?;
    }
    let req = OutgoingRequest::new(fields);
    let m = match method.to_ascii_uppercase().as_str() {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        "PATCH" => Method::Patch,
        "OPTIONS" => Method::Options,
        other => Method::Other(other.to_string()),
    };
    let bad = |what: &str| err("HTTP-request-URI-invalid", format!("the host refused the {what}"));
    req.set_method(&m).map_err(|_| bad("method"))?;
    let s = match scheme {
        "https" => Scheme::Https,
        "http" => Scheme::Http,
        other => Scheme::Other(other.to_string()),
    };
    req.set_scheme(Some(&s)).map_err(|_| bad("scheme"))?;
    req.set_authority(Some(authority)).map_err(|_| bad("authority"))?;
    req.set_path_with_query(Some(path)).map_err(|_| bad("path"))?;
    let out_body = req.body().map_err(|_| err("internal-error", "no request body"))?;
    let future = outgoing_handler::handle(req, None).map_err(|e| err(&code_name(&e), format!("{e:?}")))?;
    if let Some(bytes) = body {
        let stream = out_body.write().map_err(|_| err("internal-error", "no body stream"))?;
        for chunk in bytes.chunks(4096) {
            stream
                .blocking_write_and_flush(chunk)
                .map_err(|e| err("HTTP-request-body-size", format!("{e:?}")))?;
        }
        drop(stream);
    }
    OutgoingBody::finish(out_body, None).map_err(|e| err(&code_name(&e), format!("{e:?}")))?;
    let resp = loop {
        if let Some(r) = future.get() {
            break r;
        }
        future.subscribe().block();
    };
    let resp = resp
        .map_err(|_| err("internal-error", "response taken twice"))?
        .map_err(|e| err(&code_name(&e), message_of(&e)))?;
    let status = resp.status();
    let headers = resp.headers().entries();
    let incoming = resp.consume().map_err(|_| err("internal-error", "no response body"))?;
    let stream = incoming.stream().map_err(|_| err("internal-error", "no response body stream"))?;
    let mut body = Vec::new();
    loop {
        match stream.blocking_read(64 << 10) {
            Ok(b) => body.extend_from_slice(&b),
            Err(StreamError::Closed) => break,
            Err(StreamError::LastOperationFailed(e)) => return Err(err("HTTP-response-incomplete", e.to_debug_string())),
        }
    }
    drop(stream);
    let _ = IncomingBody::finish(incoming);
    Ok(Response { status, headers, body })
}

/// The WIT name of an error code (`HTTP-request-denied`, …).
#[cfg(target_arch = "wasm32")]
fn code_name(e: &wasi_http::wasi::http::types::ErrorCode) -> String {
    use wasi_http::wasi::http::types::ErrorCode as E;
    match e {
        E::HttpRequestDenied => "HTTP-request-denied",
        E::HttpRequestBodySize(_) => "HTTP-request-body-size",
        E::HttpResponseBodySize(_) => "HTTP-response-body-size",
        E::HttpResponseHeaderSectionSize(_) => "HTTP-response-header-section-size",
        E::HttpRequestHeaderSectionSize(_) => "HTTP-request-header-section-size",
        E::HttpResponseTimeout => "HTTP-response-timeout",
        E::ConnectionTimeout => "connection-timeout",
        E::ConnectionRefused => "connection-refused",
        E::DestinationNotFound => "destination-not-found",
        E::TlsCertificateError => "TLS-certificate-error",
        E::HttpRequestUriInvalid => "HTTP-request-URI-invalid",
        E::HttpRequestUriTooLong => "HTTP-request-URI-too-long",
        E::HttpProtocolError => "HTTP-protocol-error",
        E::ConnectionLimitReached => "connection-limit-reached",
        E::InternalError(_) => "internal-error",
        _ => "other",
    }
    .to_string()
}

#[cfg(target_arch = "wasm32")]
fn message_of(e: &wasi_http::wasi::http::types::ErrorCode) -> String {
    use wasi_http::wasi::http::types::ErrorCode as E;
    match e {
        E::InternalError(Some(m)) => m.clone(),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_scheme_authority_and_path() {
        assert_eq!(split_url("https://api.github.com").unwrap(), ("https", "api.github.com", "/".to_string()));
        assert_eq!(
            split_url("http://127.0.0.1:8099/v1/x?a=1").unwrap(),
            ("http", "127.0.0.1:8099", "/v1/x?a=1".to_string())
        );
        assert_eq!(split_url("http://h?a=1").unwrap(), ("http", "h", "/?a=1".to_string()));
        assert!(split_url("api.github.com/x").is_err());
        assert!(split_url("https:///x").is_err());
    }

    #[test]
    fn a_native_build_has_no_host() {
        assert_eq!(get("https://example.com").unwrap_err().code, "no-host");
    }
}
