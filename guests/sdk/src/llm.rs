//! Model calls through the host (`lily:runnable/llm`). The host resolves the
//! alias, holds the credentials, meters the step's budget and tapes the
//! call; a runnable that uses this module runs only where policy grants it
//! `llm` (`lily runnables inspect` lists the import).
//!
//! On a native target (unit tests) there is no host: every call returns
//! [`LlmError::InvalidRequest`], `models()` is empty.

pub use crate::bindings::lily::runnable::llm::{BudgetLeft, FinishReason, LlmError, Message, ProviderError, Request, Response, Role, Usage};

/// One call. See the WIT for the fields; [`request`] builds the common case.
pub fn complete(request: &Request) -> Result<Response, LlmError> {
    #[cfg(target_arch = "wasm32")]
    return crate::bindings::lily::runnable::llm::complete(request);
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = request;
        Err(LlmError::InvalidRequest("model calls need the Lily host (this is a native build)".into()))
    }
}

/// What is left of this step's budget.
pub fn budget() -> BudgetLeft {
    #[cfg(target_arch = "wasm32")]
    return crate::bindings::lily::runnable::llm::budget();
    #[cfg(not(target_arch = "wasm32"))]
    BudgetLeft {
        calls: 0,
        input_tokens: 0,
        output_tokens: 0,
    }
}

/// The model aliases this step may use.
pub fn models() -> Vec<String> {
    #[cfg(target_arch = "wasm32")]
    return crate::bindings::lily::runnable::llm::models();
    #[cfg(not(target_arch = "wasm32"))]
    Vec::new()
}

/// A request with a system and a user message, temperature 0 and no seed.
pub fn request(model: &str, system: &str, user: &str, max_output_tokens: u32) -> Request {
    Request {
        model: model.to_string(),
        messages: vec![
            Message {
                role: Role::System,
                content: system.to_string(),
            },
            Message {
                role: Role::User,
                content: user.to_string(),
            },
        ],
        max_output_tokens,
        temperature: Some(0.0),
        seed: None,
        stop: Vec::new(),
        response_format: None,
    }
}

/// One call whose answer must be JSON of type `T` (set the request's
/// `response_format` to its schema): a failed call is the run error
/// `llm_failed` (retryable when the provider says so), an answer that is
/// not a `T` is `invalid_model_output`.
pub fn complete_json<T: serde::de::DeserializeOwned>(request: &Request) -> Result<T, crate::RunError> {
    let reply = complete(request).map_err(|e| crate::RunError {
        code: "llm_failed".into(),
        message: describe(&e),
        retryable: matches!(e, LlmError::Provider(ref p) if p.retryable),
    })?;
    serde_json::from_str(&reply.text).map_err(|e| crate::error("invalid_model_output", format!("the model's answer is not the expected JSON: {e}")))
}

/// The error as one line (`kind: message`), for notes and run errors.
pub fn describe(e: &LlmError) -> String {
    match e {
        LlmError::ModelNotAllowed(m) => format!("model_not_allowed: {m}"),
        LlmError::BudgetExhausted(m) => format!("budget_exhausted: {m}"),
        LlmError::InvalidRequest(m) => format!("invalid_request: {m}"),
        LlmError::Provider(p) => format!("provider {}: {}", p.code, p.message),
        LlmError::ReplayMiss(m) => format!("replay_miss: {m}"),
    }
}
