//! The OpenAI-compatible chat-completions protocol: one small set of
//! request / reply shapes over an HTTP client (what OpenAI, vLLM, the
//! llama.cpp server, Ollama, LM Studio and LiteLLM serve).
//!
//! The API key is read from the provider's `api_key_env` at each call and
//! goes only into the `Authorization` header: never into the tape, an
//! event, a log line or an error (every message is scrubbed of it).

use crate::config::{ModelConfig, ProviderConfig};
use crate::sandbox::llm::{FinishReason, LlmError, LlmReply, LlmRequest, Role, Usage};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Bytes of a provider reply the host reads (a longer one is refused).
pub const MAX_REPLY_BYTES: usize = 8 << 20;
/// The longest `Retry-After` honoured (longer ends the retries).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

pub struct Provider {
    name: String,
    config: ProviderConfig,
    client: Option<reqwest::Client>,
    /// The provider refused OpenAI's `json_schema` response format once:
    /// use the `json_object` + `schema` dialect (llama.cpp) from then on.
    json_object_dialect: AtomicBool,
}

/// One attempt's failure: the error and, if retryable, the wait asked for.
struct Failure {
    error: LlmError,
    retry_after: Option<Duration>,
    /// The provider did not understand the response format's dialect.
    dialect: bool,
}

fn provider_error(code: &str, message: impl Into<String>, retryable: bool) -> LlmError {
    LlmError::Provider {
        code: code.into(),
        message: message.into(),
        retryable,
        usage: None,
    }
}

impl Provider {
    pub fn new(name: &str, config: &ProviderConfig) -> Provider {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(config.timeout_seconds.min(30)))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .ok();
        Provider {
            name: name.into(),
            config: config.clone(),
            client,
            json_object_dialect: AtomicBool::new(false),
        }
    }

    fn url(&self) -> String {
        format!("{}/chat/completions", self.config.base_url.trim_end_matches('/'))
    }

    /// The request body: the alias resolved to the provider's model, the
    /// model's defaults and ceiling applied.
    pub fn body(&self, model: &ModelConfig, req: &LlmRequest) -> Value {
        let messages: Vec<Value> = req
            .messages
            .iter()
            .map(|m| {
                let role = match m.role {
                    Role::System => "system",
                    Role::User => "user",
                    Role::Assistant => "assistant",
                };
                json!({"role": role, "content": m.content})
            })
            .collect();
        let max_tokens = model.max_output_tokens.map_or(req.max_output_tokens, |c| c.min(req.max_output_tokens));
        let mut body = json!({"model": model.model, "messages": messages, "max_tokens": max_tokens, "stream": false});
        if let Some(t) = req.temperature.or(model.temperature) {
            body["temperature"] = json!(t);
        }
        if let Some(s) = req.seed {
            body["seed"] = json!(s);
        }
        if !req.stop.is_empty() {
            body["stop"] = json!(req.stop);
        }
        if let Some(schema) = &req.response_format {
            body["response_format"] = if self.json_object_dialect.load(Ordering::Relaxed) {
                json!({"type": "json_object", "schema": schema})
            } else {
                json!({"type": "json_schema", "json_schema": {"name": "response", "schema": schema}})
            };
        }
        body
    }

    /// Remove the key from anything that may be shown.
    fn scrub(&self, s: String, key: Option<&str>) -> String {
        match key {
            Some(k) if k.len() >= 4 => s.replace(k, "[redacted]"),
            _ => s,
        }
    }

    /// Call the provider, retrying 429 / 5xx / timeouts with backoff (and
    /// `Retry-After`) while the deadline allows.
    pub async fn complete(&self, model: &ModelConfig, req: LlmRequest, deadline: Instant) -> Result<LlmReply, LlmError> {
        let Some(client) = &self.client else {
            return Err(provider_error("client", "the HTTP client could not be built", false));
        };
        let key = self.config.api_key_env.as_ref().and_then(|v| std::env::var(v).ok());
        let mut attempts = 0u32;
        let mut dialect_switched = false;
        loop {
            attempts += 1;
            let body = self.body(model, &req);
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(provider_error("deadline", "the step's deadline passed before the call", false));
            }
            let timeout = remaining.min(Duration::from_secs(self.config.timeout_seconds));
            let outcome = self.attempt(client, key.as_deref(), &body, timeout).await;
            let failure = match outcome {
                Ok(v) => return self.reply(v, &body, &req, attempts, deadline),
                Err(f) => f,
            };
            if failure.dialect && req.response_format.is_some() && !dialect_switched {
                // llama.cpp refuses `json_schema`; ask again in its dialect.
                self.json_object_dialect.store(true, Ordering::Relaxed);
                dialect_switched = true;
                continue;
            }
            let retryable = matches!(&failure.error, LlmError::Provider { retryable: true, .. });
            if !retryable || attempts > self.config.max_retries {
                return Err(self.scrub_error(failure.error, key.as_deref()));
            }
            let backoff = failure.retry_after.unwrap_or_else(|| Duration::from_millis(250 << (attempts - 1).min(6)));
            if backoff > MAX_RETRY_AFTER || Instant::now() + backoff >= deadline {
                return Err(self.scrub_error(failure.error, key.as_deref()));
            }
            tokio::time::sleep(backoff).await;
        }
    }

    fn scrub_error(&self, e: LlmError, key: Option<&str>) -> LlmError {
        match e {
            LlmError::Provider {
                code,
                message,
                retryable,
                usage,
            } => LlmError::Provider {
                code,
                message: self.scrub(message, key),
                retryable,
                usage,
            },
            other => other,
        }
    }

    async fn attempt(&self, client: &reqwest::Client, key: Option<&str>, body: &Value, timeout: Duration) -> Result<Value, Failure> {
        let fail = |error, retry_after, dialect| Failure { error, retry_after, dialect };
        let mut rb = client
            .post(self.url())
            .timeout(timeout)
            .header("content-type", "application/json")
            .body(serde_json::to_vec(body).unwrap_or_default());
        if let Some(k) = key {
            rb = rb.bearer_auth(k);
        }
        let transport = |e: reqwest::Error, what: &str| {
            let error = if e.is_timeout() {
                provider_error("timeout", format!("{} did not {what} within {timeout:?}", self.name), true)
            } else {
                provider_error("connect", format!("{}: {}", self.name, e.without_url()), true)
            };
            fail(error, None, false)
        };
        let mut resp = rb.send().await.map_err(|e| transport(e, "answer"))?;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let mut bytes = Vec::new();
        loop {
            match resp.chunk().await {
                Ok(Some(c)) => {
                    if bytes.len() + c.len() > MAX_REPLY_BYTES {
                        return Err(fail(
                            provider_error("bad_reply", format!("{}: reply over {MAX_REPLY_BYTES} bytes", self.name), false),
                            None,
                            false,
                        ));
                    }
                    bytes.extend_from_slice(&c);
                }
                Ok(None) => break,
                Err(e) => return Err(transport(e, "finish its reply")),
            }
        }
        if !status.is_success() {
            let snippet: String = String::from_utf8_lossy(&bytes).chars().take(300).collect();
            let code = format!("http_{}", status.as_u16());
            let retryable = status.as_u16() == 429 || status.is_server_error();
            let dialect = body.get("response_format").is_some() && (status.as_u16() == 400 || status.as_u16() == 500) && snippet.contains("json_schema");
            return Err(fail(
                provider_error(&code, format!("{} answered {status}: {snippet}", self.name), retryable),
                retry_after,
                dialect,
            ));
        }
        serde_json::from_slice(&bytes).map_err(|e| {
            fail(
                provider_error("bad_reply", format!("{}: the reply is not JSON: {e}", self.name), true),
                None,
                false,
            )
        })
    }

    /// The reply in host types; a reply that breaks the requested schema is
    /// an error (the tokens were spent all the same).
    fn reply(&self, v: Value, body: &Value, req: &LlmRequest, attempts: u32, deadline: Instant) -> Result<LlmReply, LlmError> {
        let choice = &v["choices"][0];
        let Some(text) = choice["message"]["content"].as_str() else {
            return Err(provider_error(
                "bad_reply",
                format!("{}: the reply has no choices[0].message.content", self.name),
                false,
            ));
        };
        let finish_reason = match choice["finish_reason"].as_str() {
            Some("stop") => FinishReason::Stop,
            Some("length") => FinishReason::Length,
            Some("content_filter") => FinishReason::ContentFilter,
            _ => FinishReason::Other,
        };
        let tokens = |k: &str| v["usage"][k].as_u64().map(|n| u32::try_from(n).unwrap_or(u32::MAX));
        let usage = Usage {
            input_tokens: tokens("prompt_tokens").unwrap_or(0),
            output_tokens: tokens("completion_tokens").unwrap_or(0),
        };
        let mut resolved = body.clone();
        if let Some(m) = resolved.as_object_mut() {
            m.remove("messages");
            m.insert("provider".into(), json!(self.name));
            m.insert("base_url".into(), json!(self.config.base_url));
            m.insert("reported_model".into(), v["model"].clone());
            m.insert("usage_reported".into(), json!(v["usage"].is_object()));
        }
        if let Some(schema) = &req.response_format {
            let why = match serde_json::from_str::<Value>(text) {
                Err(e) => Some(format!("the reply is not JSON: {e}")),
                Ok(doc) => match crate::sandbox::schema::GuestSchema::compile(schema).map(|s| s.check(&doc, Some(deadline), 3)) {
                    Ok(Ok(Ok(()))) => None,
                    Ok(Ok(Err(m))) => Some(format!("the reply does not match the response format: {m}")),
                    Ok(Err(e)) => Some(e.to_string()),
                    Err(e) => Some(e.to_string()),
                },
            };
            if let Some(why) = why {
                return Err(LlmError::Provider {
                    code: "reply_breaks_schema".into(),
                    message: format!("{}: {why}", self.name),
                    retryable: false,
                    usage: Some(usage),
                });
            }
        }
        Ok(LlmReply {
            text: text.to_string(),
            finish_reason,
            usage,
            resolved,
            attempts,
        })
    }
}
