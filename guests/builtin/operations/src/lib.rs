//! `operations.v1`: a deterministic operational-readiness review.
//!
//! Without a workspace it returns the reference finding. With a read-only
//! workspace grant it looks for a missing README, runbook or docs, missing CI
//! configuration, a missing licence, TODO/FIXME/XXX density, and oversized or
//! binary blobs in the tree.

use lily_guest::workspace::{Entry, Scanner, scan_or_reference};
use lily_guest::{Finding, RunError, Specialist, SpecialistInput, SpecialistOutput};

const MAX_EVIDENCE: usize = 25;
/// Files above this size are reported as oversized blobs.
const BLOB_BYTES: u64 = 512 * 1024;
/// Markers per 1,000 lines at or above which the density is reported.
const MARKER_DENSITY: f64 = 5.0;

pub struct Operations;

impl Specialist for Operations {
    const ID: &'static str = "operations.v1";
    const VERSION: &'static str = "1.0.0";
    const SUMMARY: &'static str = "Reviews operational readiness; with a workspace, checks docs, CI, licence, TODO density and blobs";

    fn review(input: &SpecialistInput) -> Result<SpecialistOutput, RunError> {
        Ok(scan_or_reference::<Scan>(input, |topic| Finding {
            title: "Operational hardening checkpoint".into(),
            recommendation: format!("Define runbook and SLO checks for {topic}."),
            confidence: 0.74,
            evidence: vec![],
        }))
    }
}

#[derive(Default)]
pub struct Scan {
    readme: bool,
    docs: bool,
    ci: bool,
    licence: bool,
    lines: u64,
    markers: u64,
    marker_evidence: Vec<String>,
    blobs: Vec<String>,
}

impl Scanner for Scan {
    fn visit(&mut self, e: &Entry<'_>) {
        let top = !e.rel.contains('/');
        let name = e.rel.rsplit('/').next().unwrap_or(e.rel);
        let upper = name.to_ascii_uppercase();
        if top && upper.starts_with("README") {
            self.readme = true;
        }
        if e.rel.starts_with("docs/") || e.rel.starts_with("doc/") || upper.starts_with("RUNBOOK") || e.rel.to_ascii_lowercase().contains("runbook") {
            self.docs = true;
        }
        if e.rel.starts_with(".github/workflows/")
            || e.rel.starts_with(".ci/")
            || e.rel.starts_with(".circleci/")
            || e.rel.starts_with(".buildkite/")
            || [".gitlab-ci.yml", "Jenkinsfile", "azure-pipelines.yml", ".travis.yml", "justfile", "Makefile"].contains(&e.rel)
        {
            self.ci = true;
        }
        if top && (upper.starts_with("LICENSE") || upper.starts_with("LICENCE") || upper.starts_with("COPYING")) {
            self.licence = true;
        }
        if e.oversized || e.size > BLOB_BYTES {
            if self.blobs.len() < MAX_EVIDENCE {
                self.blobs.push(format!("{} ({} bytes)", e.rel, e.size));
            }
        } else if e.binary && e.size > 0 && !is_expected_binary(name) && self.blobs.len() < MAX_EVIDENCE {
            self.blobs.push(format!("{} (binary, {} bytes)", e.rel, e.size));
        }
        let Some(text) = e.text else { return };
        for (i, line) in text.lines().enumerate() {
            self.lines += 1;
            if has_marker(line) {
                self.markers += 1;
                if self.marker_evidence.len() < MAX_EVIDENCE {
                    self.marker_evidence.push(format!("{}:{}", e.rel, i + 1));
                }
            }
        }
    }

    fn findings(self) -> Vec<Finding> {
        let mut out = Vec::new();
        let mut add = |title: &str, rec: &str, confidence: f64, evidence: Vec<String>| {
            out.push(Finding {
                title: title.into(),
                recommendation: rec.into(),
                confidence,
                evidence,
            });
        };
        if !self.readme {
            add(
                "Missing README",
                "Add a README that says what this is, how to run it and who owns it.",
                0.72,
                vec!["README: not found at the workspace root".into()],
            );
        }
        if !self.docs {
            add(
                "No runbook or docs",
                "Write a runbook (alerts, dashboards, rollback) under docs/.",
                0.64,
                vec!["docs/ or RUNBOOK: not found".into()],
            );
        }
        if !self.ci {
            add(
                "No CI configuration",
                "Add CI that builds and tests every change.",
                0.68,
                vec!["no .github/workflows, .gitlab-ci.yml, .ci/, Jenkinsfile or similar".into()],
            );
        }
        if !self.licence {
            add(
                "No licence",
                "Add a LICENSE file so use and contribution terms are clear.",
                0.45,
                vec!["LICENSE: not found at the workspace root".into()],
            );
        }
        if self.markers > 0 && self.lines > 0 {
            let density = self.markers as f64 * 1000.0 / self.lines as f64;
            if density >= MARKER_DENSITY {
                let confidence = (0.4 + density / 100.0).min(0.85);
                let mut ev = vec![format!("{} markers in {} lines ({:.1} per 1,000)", self.markers, self.lines, density)];
                ev.extend(self.marker_evidence);
                add(
                    "High TODO/FIXME/XXX density",
                    "Triage the open markers into tracked issues and resolve the risky ones.",
                    (confidence * 100.0).round() / 100.0,
                    ev,
                );
            }
        }
        if !self.blobs.is_empty() {
            add(
                "Oversized or binary blobs in the tree",
                "Move large or binary files to artifact storage or Git LFS.",
                0.5,
                self.blobs,
            );
        }
        out
    }
}

fn has_marker(line: &str) -> bool {
    ["TODO", "FIXME", "XXX"].iter().any(|m| {
        line.match_indices(m).any(|(i, _)| {
            let b = line.as_bytes();
            (i == 0 || !b[i - 1].is_ascii_alphanumeric()) && b.get(i + m.len()).is_none_or(|c| !c.is_ascii_alphanumeric())
        })
    })
}

fn is_expected_binary(name: &str) -> bool {
    [".png", ".jpg", ".jpeg", ".gif", ".ico", ".svg", ".woff", ".woff2"]
        .iter()
        .any(|x| name.ends_with(x))
}

lily_guest::export_specialist!(Operations);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_on_word_boundaries() {
        assert!(has_marker("// TODO: fix"));
        assert!(has_marker("x = 1 # FIXME"));
        assert!(!has_marker("TODOS are fine"));
        assert!(!has_marker("XXXL shirt"));
    }
}
