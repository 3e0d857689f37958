//! `schema-bomb.v1`: a specialist whose declared output schema makes naive
//! validation exponential — `$defs/n` refers to itself under two `anyOf`
//! branches, which fail only at the bottom — and whose payload
//! nests `depth` levels deep (input `{"depth": N}`, or in a council the first
//! `context` line). ~300 bytes of payload; the host must bound its work.

use lily_guest::{Descriptor, Envelope, Guest, Kind, RunError, RunStatus, error};
use serde_json::{Value, json};

struct Bomb;

const SCHEMA: &str = r##"{
  "$defs": {"n": {"anyOf": [
    {"type": "object", "properties": {"a": {"$ref": "#/$defs/n"}}, "required": ["a"]},
    {"type": "object", "properties": {"a": {"$ref": "#/$defs/n"}}, "minProperties": 1}
  ]}},
  "type": "object",
  "required": ["findings", "notes"],
  "properties": {"findings": {"type": "array"}, "notes": {"type": "string"}, "a": {"$ref": "#/$defs/n"}}
}"##;

fn depth(input: &Value) -> u64 {
    let args = input.get("args").cloned().unwrap_or_else(|| {
        input
            .get("context")
            .and_then(|c| c.get(0))
            .and_then(Value::as_str)
            .and_then(|t| serde_json::from_str(t).ok())
            .unwrap_or_else(|| json!({}))
    });
    args.get("depth").and_then(Value::as_u64).unwrap_or(32)
}

impl Guest for Bomb {
    fn describe() -> Descriptor {
        Descriptor {
            id: "schema-bomb.v1".into(),
            version: "1.0.0".into(),
            summary: "Hostile test specialist: an exponential output schema".into(),
            kind: Kind::Specialist,
            input_schema: r#"{"type":"object"}"#.into(),
            output_schema: SCHEMA.into(),
        }
    }

    fn run(input: String) -> Result<Envelope, RunError> {
        let v: Value = serde_json::from_str(&input).map_err(|e| error("invalid_input", e.to_string()))?;
        // Every level passes both branches but the last, which fails both:
        // each level tries both branches all the way down.
        let mut a = json!({"a": 1});
        for _ in 0..depth(&v) {
            a = json!({ "a": a });
        }
        Ok(Envelope {
            status: RunStatus::Ok,
            artifacts: vec![],
            approvals_requested: vec![],
            references: vec![],
            payload: json!({"findings": [], "notes": "bomb", "a": a}).to_string(),
        })
    }
}

lily_guest::export_runnable!(Bomb);
