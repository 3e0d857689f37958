//! Deterministic run summaries: the same run renders to the same bytes apart
//! from times and ids.

use crate::runs::Receipt;
use crate::text::markdown as md;
use serde_json::{Value, json};

/// `summary.md`. Every string that a runnable, a spec or an error chose is
/// escaped as inert Markdown text ([`crate::text::markdown`]).
///
/// `max_findings` is the council binding that capped the ranked findings
/// (said when it cut some).
pub fn markdown(r: &Receipt, max_findings: Option<u64>) -> String {
    let mut s = format!("# {} — {}\n\n", r.job_id, r.status.as_str());
    s.push_str(&format!("- run: `{}`\n", r.run_id));
    s.push_str(&format!(
        "- target: {} {} {}\n",
        md(&r.target.kind),
        md(&r.target.id),
        md(r.target.version.as_deref().unwrap_or(""))
    ));
    s.push_str(&format!("- trigger: {}\n", md(r.trigger.kind())));
    if let Some(of) = &r.replay_of {
        s.push_str(&format!("- replay of: `{of}`\n"));
    }
    s.push_str(&format!(
        "- started: {}\n- ended: {}\n- attempts: {}\n",
        r.started_at,
        r.ended_at.as_deref().unwrap_or("-"),
        r.attempts.len()
    ));
    if let Some(e) = &r.error {
        s.push_str(&format!("\n## Error\n\n`{}`: {}\n", e.code, md(&e.message)));
        if let Some(hint) = e.cause.get("hint").and_then(Value::as_str) {
            // An indented code block: literal, and no line of it can end it.
            let block: Vec<String> = hint.lines().map(|l| format!("    {}", crate::text::terminal_field(l))).collect();
            s.push_str(&format!("\nHint:\n\n{}\n", block.join("\n")));
        }
    }
    if let Some(summary) = r.payload.get("summary").and_then(Value::as_str) {
        s.push_str(&format!("\n## Summary\n\n{}\n", md(summary)));
    }
    if let Some(findings) = r.payload.get("ranked_findings").and_then(Value::as_array) {
        s.push_str("\n## Ranked findings\n\n");
        s.push_str(&findings_count(r, findings.len(), max_findings));
        if findings.is_empty() {
            s.push_str("None.\n");
        } else {
            s.push_str("| # | Finding | Specialist | Confidence |\n|---|---|---|---|\n");
            for (i, f) in findings.iter().enumerate() {
                s.push_str(&format!(
                    "| {} | {} | {} | {:.2} |\n",
                    i + 1,
                    md(f["title"].as_str().unwrap_or("")),
                    md(f["source_specialist"].as_str().unwrap_or("")),
                    f["confidence"].as_f64().unwrap_or(0.0)
                ));
            }
        }
    }
    if let Some(failed) = r.payload.get("failed_specialists").and_then(Value::as_array)
        && !failed.is_empty()
    {
        s.push_str("\n## Failed specialists\n\n");
        for f in failed {
            let id = f.as_str().unwrap_or("");
            let notes = r.payload["reports"]
                .as_array()
                .and_then(|rs| rs.iter().find(|x| x["specialist"] == id))
                .and_then(|x| x["notes"].as_str())
                .unwrap_or("");
            s.push_str(&format!("- {}: {}\n", md(id), md(notes)));
        }
    }
    if !r.artifacts.is_empty() {
        s.push_str("\n## Artifacts\n\n");
        for a in &r.artifacts {
            s.push_str(&format!("- {} ({} bytes, {})\n", md(&a.name), a.bytes, a.sha256));
        }
    }
    if !r.approvals_requested.is_empty() {
        s.push_str("\n## Approvals requested\n\n");
        for a in &r.approvals_requested {
            s.push_str(&format!(
                "- `{}` {} {} — {}: `lily approvals show {}`, then `lily approvals approve {}` or `lily approvals deny {}`\n",
                a.id,
                md(&a.kind),
                md(&a.target),
                a.state.as_str(),
                a.id,
                a.id,
                a.id,
            ));
        }
    }
    s
}

/// How many ranked findings, and how many the specialists reported when
/// `max_findings` cut some: "12 findings, 5 shown (max_findings 5)".
fn findings_count(r: &Receipt, shown: usize, max_findings: Option<u64>) -> String {
    let reported: usize = r.payload["reports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|x| x["status"] == "ok")
        .filter_map(|x| x["findings"].as_array().map(Vec::len))
        .sum();
    let plural = |n: usize| if n == 1 { "" } else { "s" };
    if reported > shown {
        let cap = max_findings.map(|m| format!(" (max_findings {m})")).unwrap_or_default();
        format!("{reported} finding{}, {shown} shown{cap}.\n\n", plural(reported))
    } else {
        format!("{shown} ranked finding{}.\n\n", plural(shown))
    }
}

/// `summary.json`.
pub fn json(r: &Receipt) -> String {
    let v = json!({
        "job_id": r.job_id,
        "run_id": r.run_id,
        "status": r.status,
        "target": r.target,
        "started_at": r.started_at,
        "ended_at": r.ended_at,
        "summary": r.payload.get("summary"),
        "ranked_findings": r.payload.get("ranked_findings"),
        "error": r.error,
        "approvals_requested": r.approvals_requested,
    });
    let mut s = serde_json::to_string_pretty(&v).unwrap_or_default();
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receipt(per_report: &[usize], shown: usize) -> Receipt {
        let finding = json!({"title": "t", "recommendation": "r", "confidence": 0.5});
        let reports: Vec<Value> = per_report
            .iter()
            .map(|n| json!({"specialist": "s", "status": "ok", "notes": "", "findings": vec![finding.clone(); *n]}))
            .collect();
        let ranked = vec![json!({"title": "t", "recommendation": "r", "confidence": 0.5, "source_specialist": "s", "evidence": []}); shown];
        let mut r = Receipt::start("j", "r", crate::runs::TriggerRecord::Manual, "", "");
        r.payload = json!({"ranked_findings": ranked, "reports": reports});
        r
    }

    #[test]
    fn the_summary_says_how_many_findings_max_findings_cut() {
        let md = markdown(&receipt(&[7, 5], 5), Some(5));
        assert!(md.contains("## Ranked findings\n\n12 findings, 5 shown (max_findings 5).\n"), "{md}");
    }

    #[test]
    fn one_ranked_finding_is_singular() {
        let md = markdown(&receipt(&[1], 1), Some(8));
        assert!(md.contains("\n1 ranked finding.\n"), "{md}");
        let md = markdown(&receipt(&[2, 1], 3), Some(8));
        assert!(md.contains("\n3 ranked findings.\n"), "{md}");
        let md = markdown(&receipt(&[], 0), Some(8));
        assert!(md.contains("\n0 ranked findings.\n\nNone.\n"), "{md}");
    }
}
