//! The council data model shared by specialists, synthesizers and the host
//! (`council.v1`), the JSON Schemas a runnable declares for it, and the
//! deterministic ranking of the reduce step.

use serde::{Deserialize, Serialize};

/// Where `council.v1` mounts a specialist's read-only workspace grant.
pub const WORKSPACE_GUEST_PATH: &str = "/workspace";

/// One finding of a specialist.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Finding {
    pub title: String,
    pub recommendation: String,
    /// 0.0 – 1.0: how strong the signal behind the finding is.
    pub confidence: f64,
    /// `path:line` references or other evidence, possibly empty.
    #[serde(default)]
    pub evidence: Vec<String>,
}

/// Input of a specialist's `run`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct SpecialistInput {
    pub topic: String,
    #[serde(default)]
    pub context: Vec<String>,
    /// Guest path of the read-only workspace grant (`/workspace`), if any.
    #[serde(default)]
    pub workspace: Option<String>,
}

/// Payload of a specialist's envelope.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct SpecialistOutput {
    pub findings: Vec<Finding>,
    pub notes: String,
}

/// How a specialist's step ended, as the host reports it to the synthesizer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum ReportStatus {
    /// The specialist returned a report that holds to the contract.
    Ok,
    /// It failed (trap, limit, contract break); `notes` says why.
    Error,
}

impl ReportStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ReportStatus::Ok => "ok",
            ReportStatus::Error => "error",
        }
    }
}

/// One specialist's report as the host hands it to the synthesizer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Report {
    pub specialist: String,
    /// `ok`, or `error` (then `notes` holds the cause).
    pub status: ReportStatus,
    pub findings: Vec<Finding>,
    pub notes: String,
}

/// Input of a synthesizer's `run`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct SynthInput {
    pub topic: String,
    /// Ranked findings to keep (1-20).
    pub max_findings: u32,
    pub reports: Vec<Report>,
}

/// A finding after ranking, with the specialist it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RankedFinding {
    pub title: String,
    pub recommendation: String,
    pub confidence: f64,
    pub source_specialist: String,
    pub evidence: Vec<String>,
}

/// The council output: payload of a synthesizer and of `council.v1`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct CouncilOutput {
    pub topic: String,
    pub summary: String,
    pub ranked_findings: Vec<RankedFinding>,
    pub participating_specialists: Vec<String>,
    pub failed_specialists: Vec<String>,
    pub reports: Vec<Report>,
}

const FINDING_SCHEMA: &str = r#"{"type":"object","additionalProperties":false,"required":["title","recommendation","confidence"],"properties":{"title":{"type":"string","minLength":1},"recommendation":{"type":"string"},"confidence":{"type":"number","minimum":0,"maximum":1},"evidence":{"type":"array","items":{"type":"string"}}}}"#;
const RANKED_SCHEMA: &str = r#"{"type":"object","additionalProperties":false,"required":["title","recommendation","confidence","source_specialist","evidence"],"properties":{"title":{"type":"string","minLength":1},"recommendation":{"type":"string"},"confidence":{"type":"number","minimum":0,"maximum":1},"source_specialist":{"type":"string"},"evidence":{"type":"array","items":{"type":"string"}}}}"#;

/// JSON Schema of [`SpecialistInput`].
pub fn specialist_input_schema() -> String {
    r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"object","additionalProperties":false,"required":["topic"],"properties":{"topic":{"type":"string","minLength":1},"context":{"type":"array","items":{"type":"string"}},"workspace":{"type":["string","null"]}}}"#.to_string()
}

/// JSON Schema of [`SpecialistOutput`].
pub fn specialist_output_schema() -> String {
    format!(
        r#"{{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"object","additionalProperties":false,"required":["findings","notes"],"properties":{{"findings":{{"type":"array","items":{FINDING_SCHEMA}}},"notes":{{"type":"string"}}}}}}"#
    )
}

fn report_schema() -> String {
    format!(
        r#"{{"type":"object","additionalProperties":false,"required":["specialist","status","findings","notes"],"properties":{{"specialist":{{"type":"string"}},"status":{{"enum":["ok","error"]}},"findings":{{"type":"array","items":{FINDING_SCHEMA}}},"notes":{{"type":"string"}}}}}}"#
    )
}

/// JSON Schema of [`SynthInput`].
pub fn synth_input_schema() -> String {
    format!(
        r#"{{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"object","additionalProperties":false,"required":["topic","max_findings","reports"],"properties":{{"topic":{{"type":"string","minLength":1}},"max_findings":{{"type":"integer","minimum":1,"maximum":20}},"reports":{{"type":"array","items":{}}}}}}}"#,
        report_schema()
    )
}

/// JSON Schema of [`CouncilOutput`].
pub fn council_output_schema() -> String {
    format!(
        r#"{{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"object","additionalProperties":false,"required":["topic","summary","ranked_findings","participating_specialists","failed_specialists","reports"],"properties":{{"topic":{{"type":"string"}},"summary":{{"type":"string"}},"ranked_findings":{{"type":"array","items":{RANKED_SCHEMA}}},"participating_specialists":{{"type":"array","items":{{"type":"string"}}}},"failed_specialists":{{"type":"array","items":{{"type":"string"}}}},"reports":{{"type":"array","items":{}}}}}}}"#,
        report_schema()
    )
}

/// The deterministic reduce of `council.v1`: findings of `ok` reports sorted
/// by (−confidence, source_specialist, title), the first `max_findings`
/// kept, and the fixed summary sentence.
pub fn rank(input: &SynthInput) -> CouncilOutput {
    let mut ranked: Vec<RankedFinding> = input
        .reports
        .iter()
        .filter(|r| r.status == ReportStatus::Ok)
        .flat_map(|r| {
            r.findings.iter().map(move |f| RankedFinding {
                title: f.title.clone(),
                recommendation: f.recommendation.clone(),
                confidence: f.confidence,
                source_specialist: r.specialist.clone(),
                evidence: f.evidence.clone(),
            })
        })
        .collect();
    ranked.sort_by(|a, b| {
        b.confidence
            .total_cmp(&a.confidence)
            .then_with(|| a.source_specialist.cmp(&b.source_specialist))
            .then_with(|| a.title.cmp(&b.title))
    });
    ranked.truncate(input.max_findings as usize);
    let participating: Vec<String> = input.reports.iter().map(|r| r.specialist.clone()).collect();
    let failed: Vec<String> = input
        .reports
        .iter()
        .filter(|r| r.status != ReportStatus::Ok)
        .map(|r| r.specialist.clone())
        .collect();
    CouncilOutput {
        topic: input.topic.clone(),
        summary: format!(
            "Council reviewed '{}' with {}; {} generated.",
            input.topic,
            counted(participating.len(), "specialist", "specialists"),
            counted(ranked.len(), "ranked finding", "ranked findings")
        ),
        ranked_findings: ranked,
        participating_specialists: participating,
        failed_specialists: failed,
        reports: input.reports.clone(),
    }
}

/// `1 ranked finding`, `2 ranked findings`.
fn counted(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(id: &str, status: ReportStatus, findings: &[(&str, f64)]) -> Report {
        Report {
            specialist: id.into(),
            status,
            findings: findings
                .iter()
                .map(|(t, c)| Finding {
                    title: (*t).into(),
                    recommendation: "r".into(),
                    confidence: *c,
                    evidence: vec![],
                })
                .collect(),
            notes: String::new(),
        }
    }

    #[test]
    fn ranks_by_confidence_then_specialist_then_title_and_truncates() {
        let input = SynthInput {
            topic: "t".into(),
            max_findings: 3,
            reports: vec![
                report("b", ReportStatus::Ok, &[("z", 0.5), ("a", 0.9)]),
                report("a", ReportStatus::Ok, &[("y", 0.5), ("x", 0.5)]),
                report("c", ReportStatus::Error, &[("ignored", 1.0)]),
            ],
        };
        let out = rank(&input);
        let got: Vec<(&str, &str)> = out.ranked_findings.iter().map(|f| (f.source_specialist.as_str(), f.title.as_str())).collect();
        assert_eq!(got, vec![("b", "a"), ("a", "x"), ("a", "y")]);
        assert_eq!(out.failed_specialists, vec!["c"]);
        assert_eq!(out.summary, "Council reviewed 't' with 3 specialists; 3 ranked findings generated.");
        assert_eq!(counted(1, "ranked finding", "ranked findings"), "1 ranked finding");
        assert_eq!(counted(0, "ranked finding", "ranked findings"), "0 ranked findings");
    }

    #[test]
    fn a_report_status_is_the_lower_case_word_on_the_wire() {
        let r = report("a", ReportStatus::Error, &[]);
        let json = serde_json::to_value(&r).expect("serialise");
        assert_eq!(json["status"], "error");
        let back: Report = serde_json::from_value(json).expect("parse");
        assert_eq!(back.status, ReportStatus::Error);
        assert!(serde_json::from_str::<ReportStatus>("\"partial\"").is_err());
    }

    #[test]
    fn the_hand_written_schemas_are_json() {
        for s in [
            specialist_input_schema(),
            specialist_output_schema(),
            synth_input_schema(),
            council_output_schema(),
        ] {
            let v: serde_json::Value = serde_json::from_str(&s).expect("schema is JSON");
            assert_eq!(v["type"], "object");
        }
    }
}
