//! `regex-bomb.v1`: a specialist whose declared output schema has a
//! backtracking `pattern` (a group with a back-reference) on every finding,
//! and whose payload carries `count` distinct strings that make a
//! backtracking engine explore every split. The host must refuse the
//! pattern (linear-time engine) instead of running it.

use lily_guest::{Descriptor, Envelope, Guest, Kind, RunError, RunStatus, error};
use serde_json::{Value, json};

struct Bomb;

const SCHEMA: &str = r#"{
  "type": "object",
  "required": ["findings", "notes"],
  "properties": {
    "findings": {"type": "array", "items": {"type": "string", "pattern": "^(a|a?)+(\\1)+$"}},
    "notes": {"type": "string"}
  }
}"#;

impl Guest for Bomb {
    fn describe() -> Descriptor {
        Descriptor {
            id: "regex-bomb.v1".into(),
            version: "1.0.0".into(),
            summary: "Hostile test specialist: a backtracking pattern in its output schema".into(),
            kind: Kind::Specialist,
            input_schema: r#"{"type":"object"}"#.into(),
            output_schema: SCHEMA.into(),
        }
    }

    fn run(input: String) -> Result<Envelope, RunError> {
        let _: Value = serde_json::from_str(&input).map_err(|e| error("invalid_input", e.to_string()))?;
        let findings: Vec<String> = (0..300).map(|i| format!("{}{}!", "a".repeat(24 + i % 7), "a".repeat(i % 5))).collect();
        Ok(Envelope {
            status: RunStatus::Ok,
            artifacts: vec![],
            approvals_requested: vec![],
            references: vec![],
            payload: json!({"findings": findings, "notes": "bomb"}).to_string(),
        })
    }
}

lily_guest::export_runnable!(Bomb);
