//! `llm-caller.v1`: makes the model calls listed in its input, in order,
//! and returns every outcome, the aliases it may use and its budget after.
//!
//! Input: `{"calls": [{"model", "user", "system"?, "max_output_tokens"?,
//! "seed"?, "response_format"?}], "fail_on_error"?: bool}`. With
//! `fail_on_error`, the first failed call ends the run with a run error.
use lily_guest::llm::{self, LlmError};
use lily_guest::{Descriptor, Envelope, Guest, Kind, RunError, error, json, ok_envelope};
use serde_json::Value;

struct Caller;

fn call(c: &Value) -> Result<Value, LlmError> {
    let mut req = llm::request(
        c["model"].as_str().unwrap_or(""),
        c["system"].as_str().unwrap_or("You are a test."),
        c["user"].as_str().unwrap_or("hello"),
        c["max_output_tokens"].as_u64().unwrap_or(16) as u32,
    );
    req.seed = c["seed"].as_u64();
    req.response_format = c.get("response_format").filter(|v| !v.is_null()).map(|v| v.to_string());
    let r = llm::complete(&req)?;
    Ok(json!({
        "text": r.text,
        "finish_reason": format!("{:?}", r.finish_reason).to_lowercase(),
        "input_tokens": r.usage.input_tokens,
        "output_tokens": r.usage.output_tokens,
        "call_id": r.call_id,
    }))
}

impl Guest for Caller {
    fn describe() -> Descriptor {
        Descriptor {
            id: "llm-caller.v1".into(),
            version: "1.0.0".into(),
            summary: "Makes the model calls its input lists (test runnable)".into(),
            kind: Kind::Generic,
            input_schema: r#"{"type":"object","required":["calls"],"properties":{"calls":{"type":"array"}}}"#.into(),
            output_schema: r#"{"type":"object"}"#.into(),
        }
    }

    fn run(input: String) -> Result<Envelope, RunError> {
        let input: Value = serde_json::from_str(&input).map_err(|e| error("invalid_input", e.to_string()))?;
        let fail_on_error = input["fail_on_error"].as_bool().unwrap_or(false);
        let mut results = Vec::new();
        for c in input["calls"].as_array().cloned().unwrap_or_default() {
            match call(&c) {
                Ok(v) => results.push(json!({"ok": v})),
                Err(e) if fail_on_error => return Err(error("llm_failed", llm::describe(&e))),
                Err(e) => results.push(json!({"error": llm::describe(&e)})),
            }
        }
        let b = llm::budget();
        let payload = json!({
            "results": results,
            "models": llm::models(),
            "budget": {"calls": b.calls, "input_tokens": b.input_tokens, "output_tokens": b.output_tokens},
        });
        ok_envelope(&payload, vec![], vec![])
    }
}

lily_guest::export_runnable!(Caller);
