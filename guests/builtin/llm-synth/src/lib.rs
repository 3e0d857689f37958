//! `llm-synth.v1` (kind `llm`): ranks, merges and de-duplicates the
//! specialists' findings with a model. The model answers in JSON (the host
//! enforces the response schema); this runnable then checks what the model
//! cannot be trusted with — every finding's specialist is one that reported,
//! confidences are 0-1, at most `max_findings` — and fails with
//! `invalid_model_output` otherwise, which the council handles (`llm` fails
//! the run, `llm_with_fallback` falls back to the deterministic ranking).
use lily_guest::llm;
use lily_guest::{CouncilOutput, Kind, RankedFinding, ReportStatus, RunError, SynthInput, Synthesizer, error, json};
use serde::Deserialize;

/// Bytes of specialist reports put in the prompt (the rest is cut, and said so).
pub const PROMPT_BUDGET: usize = 48 * 1024;

pub struct LlmSynth;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelAnswer {
    pub summary: String,
    pub ranked_findings: Vec<RankedFinding>,
}

/// The response format the model must follow.
pub fn answer_schema(max_findings: u32) -> String {
    json!({
        "type": "object", "additionalProperties": false, "required": ["summary", "ranked_findings"],
        "properties": {
            "summary": {"type": "string", "minLength": 1},
            "ranked_findings": {"type": "array", "maxItems": max_findings, "items": {
                "type": "object", "additionalProperties": false,
                "required": ["title", "recommendation", "confidence", "source_specialist", "evidence"],
                "properties": {
                    "title": {"type": "string", "minLength": 1},
                    "recommendation": {"type": "string"},
                    "confidence": {"type": "number", "minimum": 0, "maximum": 1},
                    "source_specialist": {"type": "string"},
                    "evidence": {"type": "array", "items": {"type": "string"}}
                }
            }}
        }
    })
    .to_string()
}

/// The user message: the ok reports as JSON, cut to [`PROMPT_BUDGET`].
pub fn prompt(input: &SynthInput) -> String {
    let ok: Vec<_> = input.reports.iter().filter(|r| r.status == ReportStatus::Ok).collect();
    let mut reports = serde_json::to_string(&ok).unwrap_or_default();
    let mut note = String::new();
    if reports.len() > PROMPT_BUDGET {
        let mut cut = PROMPT_BUDGET;
        while !reports.is_char_boundary(cut) {
            cut -= 1;
        }
        reports.truncate(cut);
        note = "\n(The reports were cut to fit; rank what is shown.)".into();
    }
    format!(
        "Topic: {}\nKeep at most {} findings.\nSpecialist reports (JSON):\n{reports}{note}",
        input.topic, input.max_findings
    )
}

const SYSTEM: &str = "You merge the findings of specialist reviewers into one ranked list. \
Merge findings that say the same thing (keep the strongest confidence and all their evidence), \
rank the most important first, keep each finding's source_specialist exactly as given, \
and write a one-sentence summary. Answer only with JSON matching the schema.";

/// Check the model's answer against what it was given.
pub fn check(input: &SynthInput, answer: ModelAnswer) -> Result<CouncilOutput, String> {
    let ok: Vec<&str> = input
        .reports
        .iter()
        .filter(|r| r.status == ReportStatus::Ok)
        .map(|r| r.specialist.as_str())
        .collect();
    if answer.ranked_findings.len() > input.max_findings as usize {
        return Err(format!("{} findings, max_findings is {}", answer.ranked_findings.len(), input.max_findings));
    }
    for f in &answer.ranked_findings {
        if !ok.contains(&f.source_specialist.as_str()) {
            return Err(format!(
                "finding {:?} names {:?}, which is not a specialist that reported",
                f.title, f.source_specialist
            ));
        }
        if f.title.trim().is_empty() || !(0.0..=1.0).contains(&f.confidence) {
            return Err(format!("finding {:?} has an empty title or a confidence outside 0-1", f.title));
        }
    }
    Ok(CouncilOutput {
        topic: input.topic.clone(),
        summary: answer.summary,
        ranked_findings: answer.ranked_findings,
        participating_specialists: input.reports.iter().map(|r| r.specialist.clone()).collect(),
        failed_specialists: input
            .reports
            .iter()
            .filter(|r| r.status != ReportStatus::Ok)
            .map(|r| r.specialist.clone())
            .collect(),
        reports: input.reports.clone(),
    })
}

impl Synthesizer for LlmSynth {
    const ID: &'static str = "llm-synth.v1";
    const VERSION: &'static str = "1.0.0";
    const SUMMARY: &'static str = "Ranks, merges and de-duplicates the specialists' findings with a model (JSON answer, checked)";
    const KIND: Kind = Kind::Llm;

    fn synthesize(input: &SynthInput) -> Result<CouncilOutput, RunError> {
        let Some(model) = llm::models().into_iter().next() else {
            return Err(error("no_model", "this step may use no model (policy runnables.llm-synth.v1.llm)"));
        };
        let mut req = llm::request(&model, SYSTEM, &prompt(input), 2048);
        req.response_format = Some(answer_schema(input.max_findings));
        let answer: ModelAnswer = llm::complete_json(&req)?;
        check(input, answer).map_err(|why| error("invalid_model_output", why))
    }
}

lily_guest::export_synthesizer!(LlmSynth);

#[cfg(test)]
mod tests {
    use super::*;
    use lily_guest::{Finding, Report};

    fn input() -> SynthInput {
        let report = |s: &str, status| Report {
            specialist: s.into(),
            status,
            findings: vec![Finding {
                title: "t".into(),
                recommendation: "r".into(),
                confidence: 0.5,
                evidence: vec![],
            }],
            notes: String::new(),
        };
        SynthInput {
            topic: "topic".into(),
            max_findings: 2,
            reports: vec![report("a.v1", ReportStatus::Ok), report("b.v1", ReportStatus::Error)],
        }
    }

    fn finding(src: &str, confidence: f64) -> RankedFinding {
        RankedFinding {
            title: "x".into(),
            recommendation: "y".into(),
            confidence,
            source_specialist: src.into(),
            evidence: vec![],
        }
    }

    fn answer(src: &str, n: usize) -> ModelAnswer {
        ModelAnswer {
            summary: "s".into(),
            ranked_findings: vec![finding(src, 0.9); n],
        }
    }

    #[test]
    fn an_answer_is_held_to_the_specialists_that_reported_and_to_max_findings() {
        let ok = check(&input(), answer("a.v1", 1)).expect("ok");
        assert_eq!(ok.failed_specialists, vec!["b.v1"]);
        assert!(check(&input(), answer("b.v1", 1)).is_err(), "b.v1 failed: it cannot be cited");
        assert!(check(&input(), answer("made-up.v1", 1)).is_err());
        assert!(check(&input(), answer("a.v1", 3)).is_err(), "max_findings is 2");
    }

    #[test]
    fn the_prompt_holds_only_ok_reports_and_fits_its_budget() {
        let p = prompt(&input());
        assert!(p.contains("a.v1") && !p.contains("b.v1"));
        assert!(serde_json::from_str::<serde_json::Value>(&answer_schema(2)).is_ok());
    }
}
