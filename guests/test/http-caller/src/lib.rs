//! `http-caller.v1`: makes the HTTP requests listed in its input, in order,
//! and returns every outcome (status, chosen headers, body as text, or the
//! error code).
//!
//! Input: `{"requests": [{"method"?, "url", "headers"?: [[name, value]],
//! "body"?: text, "body_repeat"?: n (the body n times), "follow"?: bool}],
//! "fail_on_error"?: bool, "timings"?: bool}`. With `timings`, each result
//! is only `{elapsed_us, ok}`: the request's time as the guest saw it (for
//! the benchmark). With `follow`, a 3xx `location` is requested
//! next (as a browser would) — the host checks that request too.
use lily_guest::http::{self, HttpError, Response};
use lily_guest::{Descriptor, Envelope, Guest, Kind, RunError, error, json, ok_envelope};
use serde_json::Value;

struct Caller;

fn send(r: &Value) -> Result<Response, HttpError> {
    let headers: Vec<(String, String)> = r["headers"]
        .as_array()
        .map(|hs| {
            hs.iter()
                .filter_map(|h| Some((h[0].as_str()?.to_string(), h[1].as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default();
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let body = r["body"].as_str().map(|b| b.repeat(r["body_repeat"].as_u64().unwrap_or(1) as usize));
    let method = r["method"].as_str().unwrap_or("GET");
    let url = r["url"].as_str().unwrap_or("");
    let resp = http::request(method, url, &headers, body.as_deref().map(str::as_bytes))?;
    if r["follow"].as_bool() == Some(true)
        && (300..400).contains(&resp.status)
        && let Some(next) = resp.header("location")
    {
        return http::get(&next);
    }
    Ok(resp)
}

impl Guest for Caller {
    fn describe() -> Descriptor {
        Descriptor {
            id: "http-caller.v1".into(),
            version: "1.0.0".into(),
            summary: "Makes the HTTP requests its input lists (test runnable)".into(),
            kind: Kind::Generic,
            input_schema: r#"{"type":"object","required":["requests"],"properties":{"requests":{"type":"array"}}}"#.into(),
            output_schema: r#"{"type":"object"}"#.into(),
        }
    }

    fn run(input: String) -> Result<Envelope, RunError> {
        let input: Value = serde_json::from_str(&input).map_err(|e| error("invalid_input", e.to_string()))?;
        let fail_on_error = input["fail_on_error"].as_bool().unwrap_or(false);
        let mut results = Vec::new();
        for r in input["requests"].as_array().cloned().unwrap_or_default() {
            let started = std::time::Instant::now();
            let sent = send(&r);
            let elapsed_us = started.elapsed().as_micros() as u64;
            if input["timings"].as_bool() == Some(true) {
                results.push(json!({"elapsed_us": elapsed_us, "ok": sent.is_ok()}));
                continue;
            }
            match sent {
                Ok(resp) => results.push(json!({
                    "status": resp.status,
                    "content_type": resp.header("content-type"),
                    "body": resp.text(),
                    "body_bytes": resp.body.len(),
                })),
                Err(e) if fail_on_error => return Err(error("http_failed", e.to_string())),
                Err(e) => results.push(json!({"error": e.code, "message": e.message})),
            }
        }
        ok_envelope(&json!({"results": results}), vec![], vec![])
    }
}

lily_guest::export_runnable!(Caller);
