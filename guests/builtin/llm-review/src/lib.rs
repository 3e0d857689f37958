//! `llm-review.v1` (kind `specialist`): reviews the granted read-only
//! workspace for the council's topic with a model, within a byte budget.
//!
//! What the model sees is recorded: which files were read, how they were
//! cut, what was left out (the `notes`, and a `review_coverage` event). Every
//! finding must cite `path:line` with the text of that line; a finding whose
//! path is not in the workspace, whose line does not exist or does not hold
//! the quoted text is dropped and counted (`ungrounded_findings` in the notes
//! and a `grounding` event) — a hallucinated finding never reaches the report.
use lily_guest::llm;
use lily_guest::workspace::walk;
use lily_guest::{Finding, Level, RunError, Specialist, SpecialistInput, SpecialistOutput, emit, error, json};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

/// Bytes of workspace text put in the prompt.
pub const BYTE_BUDGET: usize = 24 * 1024;
/// Bytes of one file put in the prompt (its first lines).
pub const FILE_BUDGET: usize = 4 * 1024;

pub struct LlmReview;

/// The files the model was shown: path → its lines (all of them, for the
/// grounding check), and what the prompt holds.
#[derive(Default)]
pub struct Corpus {
    pub files: BTreeMap<String, Vec<String>>,
    pub prompt: String,
    pub shown: Vec<String>,
    pub cut: Vec<String>,
    pub left_out: Vec<String>,
}

/// Read the workspace into a prompt of numbered lines within the budgets.
pub fn corpus(root: &Path) -> Corpus {
    let mut c = Corpus::default();
    walk(root, |e| {
        let Some(text) = e.text else { return };
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        if c.prompt.len() >= BYTE_BUDGET {
            c.left_out.push(e.rel.to_string());
        } else {
            let mut chunk = format!("=== {} ===\n", e.rel);
            let mut complete = true;
            for (i, l) in lines.iter().enumerate() {
                let line = format!("{}: {l}\n", i + 1);
                if chunk.len() + line.len() > FILE_BUDGET || c.prompt.len() + chunk.len() + line.len() > BYTE_BUDGET {
                    complete = false;
                    break;
                }
                chunk.push_str(&line);
            }
            c.prompt.push_str(&chunk);
            if complete {
                c.shown.push(e.rel.to_string())
            } else {
                c.cut.push(e.rel.to_string())
            }
        }
        c.files.insert(e.rel.to_string(), lines);
    });
    c
}

#[derive(Deserialize)]
pub struct Cited {
    pub path: String,
    pub line: usize,
    pub quote: String,
}

#[derive(Deserialize)]
pub struct ModelFinding {
    pub title: String,
    pub recommendation: String,
    pub confidence: f64,
    pub evidence: Vec<Cited>,
}

#[derive(Deserialize)]
pub struct ModelAnswer {
    pub findings: Vec<ModelFinding>,
}

pub fn answer_schema() -> String {
    json!({
        "type": "object", "required": ["findings"],
        "properties": {"findings": {"type": "array", "maxItems": 20, "items": {
            "type": "object", "required": ["title", "recommendation", "confidence", "evidence"],
            "properties": {
                "title": {"type": "string", "minLength": 1},
                "recommendation": {"type": "string"},
                "confidence": {"type": "number", "minimum": 0, "maximum": 1},
                "evidence": {"type": "array", "minItems": 1, "items": {
                    "type": "object", "required": ["path", "line", "quote"],
                    "properties": {"path": {"type": "string"}, "line": {"type": "integer", "minimum": 1}, "quote": {"type": "string", "minLength": 1}}
                }}
            }
        }}}
    })
    .to_string()
}

/// Keep the findings whose every citation holds; count the others.
pub fn ground(files: &BTreeMap<String, Vec<String>>, answer: ModelAnswer) -> (Vec<Finding>, usize) {
    let mut kept = Vec::new();
    let mut dropped = 0;
    for f in answer.findings {
        let holds = |c: &Cited| {
            let quote = c.quote.trim();
            !quote.is_empty()
                && files
                    .get(&c.path)
                    .and_then(|lines| lines.get(c.line.wrapping_sub(1)))
                    .is_some_and(|l| l.contains(quote))
        };
        if f.evidence.is_empty() || !f.evidence.iter().all(holds) || f.title.trim().is_empty() || !(0.0..=1.0).contains(&f.confidence) {
            dropped += 1;
            continue;
        }
        kept.push(Finding {
            title: f.title,
            recommendation: f.recommendation,
            confidence: f.confidence,
            evidence: f.evidence.iter().map(|c| format!("{}:{}", c.path, c.line)).collect(),
        });
    }
    (kept, dropped)
}

const SYSTEM: &str = "You review a code workspace for the topic you are given. Report only problems \
you can point to: every finding cites the file path, the line number and the exact text of that line \
as shown. Answer only with JSON matching the schema; no findings is a valid answer.";

impl Specialist for LlmReview {
    const ID: &'static str = "llm-review.v1";
    const VERSION: &'static str = "1.0.0";
    const SUMMARY: &'static str = "Reviews the workspace for the topic with a model; keeps only findings whose path:line citations hold";

    fn review(input: &SpecialistInput) -> Result<SpecialistOutput, RunError> {
        let Some(ws) = &input.workspace else {
            return Err(error(
                "no_workspace",
                "llm-review.v1 reviews a workspace: bind one (bindings.workspace) and grant it read-only",
            ));
        };
        let Some(model) = llm::models().into_iter().next() else {
            return Err(error("no_model", "this step may use no model (policy runnables.llm-review.v1.llm)"));
        };
        let c = corpus(Path::new(ws));
        emit(
            Level::Info,
            "review_coverage",
            &json!({"shown": c.shown, "cut": c.cut, "left_out": c.left_out, "prompt_bytes": c.prompt.len()}),
        );
        let user = format!(
            "Topic: {}\nContext: {}\n\nWorkspace (numbered lines):\n{}",
            input.topic,
            input.context.join(" | "),
            c.prompt
        );
        let mut req = llm::request(&model, SYSTEM, &user, 1536);
        req.response_format = Some(answer_schema());
        let answer: ModelAnswer = llm::complete_json(&req)?;
        let (findings, ungrounded) = ground(&c.files, answer);
        emit(Level::Info, "grounding", &json!({"kept": findings.len(), "ungrounded_findings": ungrounded}));
        Ok(SpecialistOutput {
            findings,
            notes: format!(
                "model {model}; {} files shown whole, {} cut to their first lines, {} left out ({} prompt bytes of {BYTE_BUDGET}); ungrounded_findings: {ungrounded}",
                c.shown.len(),
                c.cut.len(),
                c.left_out.len(),
                c.prompt.len()
            ),
        })
    }
}

lily_guest::export_specialist!(LlmReview);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_findings_whose_citations_hold_are_kept() {
        let mut files = BTreeMap::new();
        files.insert(
            "src/a.rs".to_string(),
            vec!["fn main() {".to_string(), "    let key = \"hunter2\";".to_string()],
        );
        let answer: ModelAnswer = serde_json::from_value(json!({"findings": [
            {"title": "hard-coded secret", "recommendation": "r", "confidence": 0.9, "evidence": [{"path": "src/a.rs", "line": 2, "quote": "let key"}]},
            {"title": "invented file", "recommendation": "r", "confidence": 0.9, "evidence": [{"path": "src/nope.rs", "line": 1, "quote": "x"}]},
            {"title": "wrong line", "recommendation": "r", "confidence": 0.9, "evidence": [{"path": "src/a.rs", "line": 1, "quote": "let key"}]},
            {"title": "past the end", "recommendation": "r", "confidence": 0.9, "evidence": [{"path": "src/a.rs", "line": 9, "quote": "x"}]},
            {"title": "no evidence", "recommendation": "r", "confidence": 0.9, "evidence": []}
        ]}))
        .expect("answer");
        let (kept, dropped) = ground(&files, answer);
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].evidence, vec!["src/a.rs:2"]);
        assert_eq!(dropped, 4);
    }
}
