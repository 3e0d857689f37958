//! `echo.v1`: returns its input unchanged as the payload.
use lily_guest::{Descriptor, Envelope, Guest, Kind, Level, RunError, RunStatus, emit, error};

struct Echo;

impl Guest for Echo {
    fn describe() -> Descriptor {
        Descriptor {
            id: "echo.v1".into(),
            version: "1.0.0".into(),
            summary: "Returns its input as its payload".into(),
            kind: Kind::Generic,
            input_schema: r#"{"$schema":"https://json-schema.org/draft/2020-12/schema"}"#.into(),
            output_schema: r#"{"$schema":"https://json-schema.org/draft/2020-12/schema"}"#.into(),
        }
    }

    fn run(input: String) -> Result<Envelope, RunError> {
        let value: serde_json::Value = serde_json::from_str(&input).map_err(|e| error("invalid_input", format!("input is not JSON: {e}")))?;
        emit(Level::Info, "echoed", &serde_json::json!({ "bytes": input.len() }));
        Ok(Envelope {
            status: RunStatus::Ok,
            artifacts: vec![],
            approvals_requested: vec![],
            references: vec![],
            payload: value.to_string(),
        })
    }
}

lily_guest::export_runnable!(Echo);
