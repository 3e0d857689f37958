//! Delivering an approved `send` or `publish` to the destination the
//! operator configured (`.lily/config.yaml` `destinations:`): a webhook
//! POST, or an atomic write under a root-relative directory.
//!
//! Delivery is the only way such an approval ends well: its state is
//! `delivered` with what was delivered (HTTP status or path, sha256), or
//! `delivery_failed` with the reason — never "applied" without delivery.
//! Secrets named in `headers_from_env` are read here, at delivery, and go
//! only into the request's headers.

use crate::config::Destination;
use crate::util::{rfc3339, sha256};
use crate::workspace::Root;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// What a delivery did (kept on the approval request and in the run).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryRecord {
    pub destination: String,
    /// `webhook` or `directory`.
    pub kind: String,
    /// The webhook's final HTTP status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// The root-relative file written (directory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    pub sha256: String,
    pub bytes: u64,
    pub attempts: u32,
    pub at: String,
    /// Why it failed (absent when delivered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The media type of what is delivered: JSON if it parses as JSON, else by
/// the artifact's extension, else plain text for a message.
pub fn media_type(file_name: Option<&str>, content: &[u8]) -> &'static str {
    if serde_json::from_slice::<serde::de::IgnoredAny>(content).is_ok() {
        return "application/json";
    }
    match file_name.and_then(|n| n.rsplit_once('.')).map(|(_, e)| e) {
        Some("md") => "text/markdown",
        Some("txt") | None => "text/plain; charset=utf-8",
        Some("html") => "text/html; charset=utf-8",
        Some("csv") => "text/csv",
        _ => "application/octet-stream",
    }
}

/// Deliver `content` to `name` (`file_name`: the published artifact's, or
/// `<approval id>.txt` for a message). `Ok` = delivered, `Err` = failed;
/// both carry the record.
pub fn deliver(root: &Root, name: &str, approval_id: &str, file_name: &str, content: &[u8]) -> Result<DeliveryRecord, DeliveryRecord> {
    let mut rec = DeliveryRecord {
        destination: name.into(),
        kind: String::new(),
        status: None,
        path: None,
        sha256: sha256(content),
        bytes: content.len() as u64,
        attempts: 0,
        at: String::new(),
        error: None,
    };
    let outcome = match root.config.destinations.get(name) {
        None => Err(format!("no destination {name:?} in .lily/config.yaml (destinations:)")),
        Some(Destination::Directory { path }) => {
            rec.kind = "directory".into();
            rec.attempts = 1;
            let rel = format!("{}/{file_name}", path.trim_end_matches('/'));
            match super::approvals::write_confined(root, &rel, content) {
                Ok(()) => {
                    rec.path = Some(rel);
                    Ok(())
                }
                Err(e) => Err(e.to_string()),
            }
        }
        Some(Destination::Webhook {
            url,
            headers_from_env,
            timeout_seconds,
            max_attempts,
        }) => {
            rec.kind = "webhook".into();
            let headers: Result<Vec<(String, String)>, String> = headers_from_env
                .iter()
                .map(|(h, env)| {
                    std::env::var(env)
                        .map(|v| (h.clone(), v))
                        .map_err(|_| format!("the environment variable {env} (header {h}) is not set"))
                })
                .collect();
            match headers {
                Err(e) => Err(e),
                Ok(headers) => {
                    let media = media_type(Some(file_name), content);
                    let post = Post {
                        url,
                        headers: &headers,
                        body: content,
                        media,
                        idempotency_key: approval_id,
                        timeout: Duration::from_secs(*timeout_seconds),
                        max_attempts: *max_attempts,
                    };
                    let (result, attempts) = post.send();
                    rec.attempts = attempts;
                    match result {
                        Ok(status) => {
                            rec.status = Some(status);
                            Ok(())
                        }
                        Err((status, why)) => {
                            rec.status = status;
                            // A header value never appears in a message.
                            Err(headers
                                .iter()
                                .fold(why, |m, (_, v)| if v.len() >= 4 { m.replace(v.as_str(), "[redacted]") } else { m }))
                        }
                    }
                }
            }
        }
    };
    rec.at = rfc3339(chrono::Utc::now());
    match outcome {
        Ok(()) => Ok(rec),
        Err(e) => {
            rec.error = Some(e);
            Err(rec)
        }
    }
}

struct Post<'a> {
    url: &'a str,
    headers: &'a [(String, String)],
    body: &'a [u8],
    media: &'a str,
    idempotency_key: &'a str,
    timeout: Duration,
    max_attempts: u32,
}

impl Post<'_> {
    /// POST with retries on 5xx, timeouts and refused connections (backoff
    /// 250 ms, doubling). Runs on a thread of its own with its own runtime,
    /// so it can be called from anywhere (the CLI, a run's worker).
    fn send(&self) -> (Result<u16, (Option<u16>, String)>, u32) {
        std::thread::scope(|s| {
            s.spawn(|| {
                let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt,
                    Err(e) => return (Err((None, format!("cannot start the delivery runtime: {e}"))), 0),
                };
                rt.block_on(self.send_async())
            })
            .join()
            .unwrap_or_else(|_| (Err((None, "the delivery thread panicked".into())), 0))
        })
    }

    async fn send_async(&self) -> (Result<u16, (Option<u16>, String)>, u32) {
        let client = match reqwest::Client::builder()
            .timeout(self.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
        {
            Ok(c) => c,
            Err(e) => return (Err((None, format!("cannot build the HTTP client: {e}"))), 0),
        };
        let mut attempts = 0;
        loop {
            attempts += 1;
            let mut rb = client
                .post(self.url)
                .header("content-type", self.media)
                .header("idempotency-key", self.idempotency_key)
                .body(self.body.to_vec());
            for (h, v) in self.headers {
                rb = rb.header(h.as_str(), v.as_str());
            }
            let (retry, failure) = match rb.send().await {
                Ok(r) if r.status().is_success() => return (Ok(r.status().as_u16()), attempts),
                Ok(r) => {
                    let s = r.status();
                    (
                        s.is_server_error() || s.as_u16() == 429,
                        (Some(s.as_u16()), format!("the webhook answered {s}")),
                    )
                }
                Err(e) if e.is_timeout() => (true, (None, format!("the webhook did not answer within {:?}", self.timeout))),
                Err(e) => (true, (None, format!("the webhook could not be reached: {}", e.without_url()))),
            };
            if !retry || attempts >= self.max_attempts {
                return (Err(failure), attempts);
            }
            tokio::time::sleep(Duration::from_millis(250 << (attempts - 1).min(5))).await;
        }
    }
}
