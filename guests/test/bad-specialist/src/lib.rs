//! `bad-specialist.v1`: a specialist (kind `specialist`) that misbehaves in
//! the way its input asks, for council map-failure containment tests.
//!
//! The mode is the first `context` entry of the form `mode:<name>` (default
//! `ok`). Every specialist of a council gets the same input, and the
//! built-ins ignore `context`, so a council of this and the built-ins fails
//! exactly one specialist.
//!
//! It declares a loose output schema (`{"type":"object"}`) on purpose: the
//! host must not trust a specialist's own schema to keep the council's
//! contract.
use lily_guest::{
    Descriptor, Envelope, Finding, Guest, Kind, RunError, RunStatus, SpecialistInput, SpecialistOutput, error, ok_envelope, parse_input,
    specialist_input_schema,
};
use serde_json::json;

struct Bad;

fn finding(title: &str, confidence: f64) -> Finding {
    Finding {
        title: title.into(),
        recommendation: format!("Look at {title}."),
        confidence,
        evidence: vec![format!("bad-specialist:{title}")],
    }
}

fn raw(payload: String) -> Result<Envelope, RunError> {
    Ok(Envelope {
        status: RunStatus::Ok,
        artifacts: vec![],
        approvals_requested: vec![],
        references: vec![],
        payload,
    })
}

impl Guest for Bad {
    fn describe() -> Descriptor {
        Descriptor {
            id: "bad-specialist.v1".into(),
            version: "1.0.0".into(),
            summary: "Test specialist that fails in the way its context asks (mode:<name>)".into(),
            kind: Kind::Specialist,
            input_schema: specialist_input_schema(),
            output_schema: r#"{"type":"object"}"#.into(),
        }
    }

    fn run(input: String) -> Result<Envelope, RunError> {
        let input: SpecialistInput = parse_input(&input)?;
        let mode = input.context.iter().find_map(|c| c.strip_prefix("mode:")).unwrap_or("ok").to_string();
        match mode.as_str() {
            "ok" => ok_envelope(
                &SpecialistOutput {
                    findings: vec![finding("Bad specialist behaved", 0.3)],
                    notes: "mode ok".into(),
                },
                vec![],
                vec![],
            ),
            // Findings that tie with security.v1's reference finding (0.82)
            // and with each other, to pin the ranking order.
            "tie" => ok_envelope(
                &SpecialistOutput {
                    findings: vec![finding("Zeta", 0.82), finding("Alpha", 0.82), finding("Low", 0.1)],
                    notes: "mode tie".into(),
                },
                vec![],
                vec![],
            ),
            "error" => Err(error("specialist_broke", "bad specialist failed on purpose")),
            "trap" => panic!("bad specialist panicked on purpose"),
            "loop" => {
                let mut x: u64 = 0;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            "sleep" => {
                std::thread::sleep(std::time::Duration::from_secs(600));
                Err(error("woke_up", "slept through the deadline"))
            }
            "alloc" => {
                let mut hog: Vec<Vec<u8>> = Vec::new();
                loop {
                    hog.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hog);
                }
            }
            // Valid JSON, allowed by its own loose schema, but not a specialist report.
            "bad_output" => raw(json!({"findings": "not a list", "notes": 7}).to_string()),
            // A report whose findings break the council's finding schema.
            "bad_confidence" => {
                raw(json!({"findings": [{"title": "Overconfident", "recommendation": "r", "confidence": 7.5, "evidence": []}], "notes": "x"}).to_string())
            }
            "empty_title" => raw(json!({"findings": [{"title": "", "recommendation": "r", "confidence": 0.5}], "notes": "x"}).to_string()),
            "invalid_json" => raw("{not json".into()),
            "huge" => raw(json!({"findings": [], "notes": "x".repeat(9 << 20)}).to_string()),
            other => Err(error("invalid_input", format!("unknown mode {other:?}"))),
        }
    }
}

lily_guest::export_runnable!(Bad);
