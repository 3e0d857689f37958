//! The host side of `lily:runnable/llm`: what a guest's model call becomes
//! before it leaves the sandbox, and how it is taped and replayed.
//!
//! The sandbox stays a leaf: it does not know providers, policy or budgets.
//! A step that may call models gets a [`ModelAccess`] in its request (built
//! by the layer that knows the configuration); the sandbox checks the
//! request's shape and size, records every call on the step's tape, and in
//! a replay answers from the tape without calling anything.

use super::host::StepState;
use super::outcome::TapedCall;
use super::wit::lily::runnable::llm;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

/// Bytes of one request's message contents, stop sequences and schema.
pub const MAX_REQUEST_BYTES: usize = 1 << 20;
/// Messages in one request.
pub const MAX_MESSAGES: usize = 256;
/// Bytes of a `response-format` schema.
pub const MAX_SCHEMA_BYTES: usize = 64 << 10;
/// Calls one step may put on its tape (a guest calling more is refused).
pub const MAX_CALLS_PER_STEP: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    System,
    User,
    Assistant,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    pub content: String,
}

/// A model call as the guest asked for it (checked for shape and size).
/// Its canonical JSON is what the tape's `request_hash` covers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlmRequest {
    pub model: String,
    pub messages: Vec<Message>,
    pub max_output_tokens: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stop: Vec<String>,
    /// The JSON Schema the reply must be an instance of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<Value>,
}

impl LlmRequest {
    /// Bytes of everything the guest sent (contents, stops, schema).
    pub fn bytes(&self) -> usize {
        self.messages.iter().map(|m| m.content.len()).sum::<usize>()
            + self.stop.iter().map(String::len).sum::<usize>()
            + self.response_format.as_ref().map(|s| s.to_string().len()).unwrap_or(0)
    }

    /// `sha256:` of the canonical JSON.
    pub fn hash(&self) -> String {
        crate::util::sha256(serde_json::to_string(self).unwrap_or_default().as_bytes())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    Stop,
    Length,
    ContentFilter,
    Other,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub input_tokens: u32,
    pub output_tokens: u32,
}

/// What answered a call, as the tape keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlmReply {
    pub text: String,
    pub finish_reason: FinishReason,
    pub usage: Usage,
    /// Provider, provider model and the parameters actually sent
    /// (credentials never).
    pub resolved: Value,
    /// Provider attempts (1 + retries).
    pub attempts: u32,
}

/// Why a call did not produce a reply (the WIT `llm-error`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LlmError {
    #[error("model not allowed: {message}")]
    ModelNotAllowed { message: String },
    #[error("llm budget exhausted: {message}")]
    BudgetExhausted { message: String },
    #[error("invalid llm request: {message}")]
    InvalidRequest { message: String },
    #[error("provider error {code}: {message}")]
    Provider {
        code: String,
        message: String,
        retryable: bool,
        /// Tokens the provider reported for a reply it did give (one that
        /// broke the response format); charged and taped like any usage.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        usage: Option<Usage>,
    },
    #[error("replay miss: {message}")]
    ReplayMiss { message: String },
}

/// Calls and tokens a step may still use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BudgetLeft {
    pub calls: u32,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// A boxed model call.
pub type Completion<'a> = Pin<Box<dyn Future<Output = Result<LlmReply, LlmError>> + Send + 'a>>;

/// What a step may do with models: implemented above the sandbox (the
/// `llm` module: allow-list, budget, providers, credentials).
pub trait ModelAccess: Send + Sync {
    /// The aliases this step may use.
    fn models(&self) -> Vec<String>;
    fn budget(&self) -> BudgetLeft;
    /// Make one call; never past `deadline`.
    fn complete(&self, request: LlmRequest, deadline: Instant) -> Completion<'_>;
    /// A replay served this recorded outcome from the tape: charge the
    /// budget as the recorded call did, so `budget()` reads the same.
    fn replayed(&self, outcome: &Result<LlmReply, LlmError>);
}

/// A step's model access, as a [`super::StepRequest`] carries it.
#[derive(Clone)]
pub struct Models(pub Arc<dyn ModelAccess>);

impl std::fmt::Debug for Models {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Models").field("aliases", &self.0.models()).finish()
    }
}

/// One model call on a step's tape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlmCall {
    /// `llm-<n>`, 1-based per step.
    pub call_id: String,
    pub request_hash: String,
    pub request: LlmRequest,
    pub outcome: Result<LlmReply, LlmError>,
    pub latency_ms: u64,
}

impl LlmCall {
    pub fn usage(&self) -> Usage {
        match &self.outcome {
            Ok(r) => r.usage,
            Err(LlmError::Provider { usage: Some(u), .. }) => *u,
            Err(_) => Usage::default(),
        }
    }
}

/// Model calls and tokens of one step (receipt, `lily jobs show`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct LlmTotals {
    pub calls: u32,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

impl LlmTotals {
    pub fn of(calls: &[TapedCall]) -> LlmTotals {
        let mut t = LlmTotals::default();
        for c in calls.iter().filter_map(|c| match c {
            TapedCall::Llm(c) => Some(c),
            _ => None,
        }) {
            t.add(&LlmTotals {
                calls: 1,
                input_tokens: u64::from(c.usage().input_tokens),
                output_tokens: u64::from(c.usage().output_tokens),
            });
        }
        t
    }

    pub fn add(&mut self, o: &LlmTotals) {
        self.calls += o.calls;
        self.input_tokens += o.input_tokens;
        self.output_tokens += o.output_tokens;
    }

    pub fn is_zero(&self) -> bool {
        self.calls == 0
    }
}

fn invalid(message: impl Into<String>) -> LlmError {
    LlmError::InvalidRequest { message: message.into() }
}

/// The guest's request in host types, refused if malformed or too large.
fn from_wit(r: llm::Request) -> Result<LlmRequest, LlmError> {
    if r.messages.is_empty() {
        return Err(invalid("a request needs at least one message"));
    }
    if r.messages.len() > MAX_MESSAGES {
        return Err(invalid(format!("at most {MAX_MESSAGES} messages per request")));
    }
    if r.max_output_tokens == 0 {
        return Err(invalid("max-output-tokens must be at least 1"));
    }
    if r.model.is_empty() || r.model.len() > 128 {
        return Err(invalid("model must be an alias of 1-128 bytes"));
    }
    if let Some(t) = r.temperature
        && !(0.0..=2.0).contains(&t)
    {
        return Err(invalid(format!("temperature {t} is outside 0-2")));
    }
    let response_format = match &r.response_format {
        None => None,
        Some(s) if s.len() > MAX_SCHEMA_BYTES => return Err(invalid(format!("response-format is over {MAX_SCHEMA_BYTES} bytes"))),
        Some(s) => {
            let v: Value = serde_json::from_str(s).map_err(|e| invalid(format!("response-format is not JSON: {e}")))?;
            super::schema::GuestSchema::compile(&v).map_err(|e| invalid(format!("response-format is not a usable JSON Schema: {e}")))?;
            Some(v)
        }
    };
    let req = LlmRequest {
        model: r.model,
        messages: r
            .messages
            .into_iter()
            .map(|m| Message {
                role: match m.role {
                    llm::Role::System => Role::System,
                    llm::Role::User => Role::User,
                    llm::Role::Assistant => Role::Assistant,
                },
                content: m.content,
            })
            .collect(),
        max_output_tokens: r.max_output_tokens,
        temperature: r.temperature,
        seed: r.seed,
        stop: r.stop,
        response_format,
    };
    if req.bytes() > MAX_REQUEST_BYTES {
        return Err(invalid(format!("the request is over {MAX_REQUEST_BYTES} bytes")));
    }
    Ok(req)
}

fn to_wit_error(e: LlmError) -> llm::LlmError {
    match e {
        LlmError::ModelNotAllowed { message } => llm::LlmError::ModelNotAllowed(message),
        LlmError::BudgetExhausted { message } => llm::LlmError::BudgetExhausted(message),
        LlmError::InvalidRequest { message } => llm::LlmError::InvalidRequest(message),
        LlmError::Provider { code, message, retryable, .. } => llm::LlmError::Provider(llm::ProviderError { code, message, retryable }),
        LlmError::ReplayMiss { message } => llm::LlmError::ReplayMiss(message),
    }
}

fn to_wit_reply(r: &LlmReply, call_id: String) -> llm::Response {
    llm::Response {
        text: r.text.clone(),
        finish_reason: match r.finish_reason {
            FinishReason::Stop => llm::FinishReason::Stop,
            FinishReason::Length => llm::FinishReason::Length,
            FinishReason::ContentFilter => llm::FinishReason::ContentFilter,
            FinishReason::Other => llm::FinishReason::Other,
        },
        usage: llm::Usage {
            input_tokens: r.usage.input_tokens,
            output_tokens: r.usage.output_tokens,
        },
        call_id,
    }
}

impl llm::Host for StepState {
    async fn complete(&mut self, request: llm::Request) -> Result<llm::Response, llm::LlmError> {
        let n = self.calls.len() + 1; // model calls only (HTTP keeps its own)
        if n > MAX_CALLS_PER_STEP {
            return Err(to_wit_error(invalid(format!("at most {MAX_CALLS_PER_STEP} model calls per step"))));
        }
        let request = from_wit(request).map_err(to_wit_error)?;
        let call_id = format!("llm-{n}");
        let request_hash = request.hash();
        let started = Instant::now();
        let outcome = match self.replay_calls.as_mut() {
            // A replay answers from the tape, in order, and never calls out.
            Some(recorded) => match recorded.pop_front() {
                Some(c) if c.request_hash == request_hash => {
                    if let Some(m) = &self.models {
                        m.0.replayed(&c.outcome);
                    }
                    c.outcome
                }
                Some(c) => {
                    let why = format!("{call_id}: the request differs from the recorded one ({} → {request_hash})", c.request_hash);
                    self.replay_misses.push(why.clone());
                    Err(LlmError::ReplayMiss { message: why })
                }
                None => {
                    let why = format!("{call_id}: the recorded step made only {} model call(s)", n - 1);
                    self.replay_misses.push(why.clone());
                    Err(LlmError::ReplayMiss { message: why })
                }
            },
            None => match self.models.clone() {
                Some(m) => m.0.complete(request.clone(), self.deadline).await,
                None => Err(LlmError::ModelNotAllowed {
                    message: "this step has no llm grant (policy runnables.<id>.llm)".into(),
                }),
            },
        };
        let reply = outcome.as_ref().map(|r| to_wit_reply(r, call_id.clone())).map_err(|e| to_wit_error(e.clone()));
        self.calls.push(LlmCall {
            call_id,
            request_hash,
            request,
            outcome,
            latency_ms: started.elapsed().as_millis() as u64,
        });
        reply
    }

    fn budget(&mut self) -> llm::BudgetLeft {
        let b = self.models.as_ref().map(|m| m.0.budget()).unwrap_or_default();
        llm::BudgetLeft {
            calls: b.calls,
            input_tokens: b.input_tokens,
            output_tokens: b.output_tokens,
        }
    }

    fn models(&mut self) -> Vec<String> {
        self.models.as_ref().map(|m| m.0.models()).unwrap_or_default()
    }
}
