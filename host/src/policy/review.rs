//! Everything a job asks of the policy, decided at once: one row per
//! runtime cap and per step grant (fs, env, network, http, llm), each with
//! what was asked, what the policy grants, the verdict and why. `lily policy
//! explain` prints the rows; planning refuses a job with one error that
//! lists every denied row and the complete YAML that would allow it.

use super::{Policy, mode_str};
use crate::error::{ErrorCode, LilyError};
use crate::sandbox::Perms;
use crate::spec::JobSpec;
use crate::workspace::Root;
use serde::Serialize;
use std::collections::BTreeMap;

/// What one step asks for: its directories (root-relative, with the access
/// it needs) and env var names.
#[derive(Debug, Clone)]
pub struct StepAsk {
    pub node: String,
    pub runnable: String,
    pub dirs: Vec<(String, Perms)>,
    pub env: Vec<String>,
}

/// The verdict of one row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RowVerdict {
    /// Asked and granted by a policy entry.
    Granted,
    /// A runtime cap within its ceiling.
    Allowed,
    /// Granted by the policy without the job asking (the component may use it).
    Available,
    /// Neither asked nor granted.
    None,
    /// Asked, and no policy entry grants it (a grant would fix it).
    Missing,
    /// Asked and refused (a runtime cap above its ceiling, a bad path).
    Denied,
}

impl RowVerdict {
    pub fn as_str(self) -> &'static str {
        match self {
            RowVerdict::Granted => "granted",
            RowVerdict::Allowed => "allowed",
            RowVerdict::Available => "available",
            RowVerdict::None => "none",
            RowVerdict::Missing => "missing",
            RowVerdict::Denied => "denied",
        }
    }

    /// Does this row keep the job from running?
    pub fn refuses(self) -> bool {
        matches!(self, RowVerdict::Missing | RowVerdict::Denied)
    }
}

/// One row of the review.
#[derive(Debug, Clone, Serialize)]
pub struct ReviewRow {
    /// The node id; `None` for the job's runtime caps.
    pub step: Option<String>,
    pub runnable: Option<String>,
    /// `runtime`, `fs`, `env`, `network`, `http` or `llm`.
    pub kind: &'static str,
    /// What the job asks (`-` when it asks nothing of this kind).
    pub asked: String,
    /// What the policy grants for it (`-` when nothing).
    pub granted: String,
    pub verdict: RowVerdict,
    pub reason: String,
    /// The message of this row when it refuses the job.
    #[serde(skip)]
    message: Option<String>,
}

/// All rows of one job.
#[derive(Debug, Clone, Serialize)]
pub struct Review {
    pub rows: Vec<ReviewRow>,
    #[serde(skip)]
    source: String,
    /// Missing grants per runnable, in order: (fs (path, mode), env names).
    #[serde(skip)]
    missing: BTreeMap<String, (Vec<(String, Perms)>, Vec<String>)>,
    /// Runtime caps above their ceiling: (cap key, ceiling key).
    #[serde(skip)]
    over: Vec<(String, String)>,
}

impl Review {
    /// The rows that keep the job from running.
    pub fn refusals(&self) -> impl Iterator<Item = &ReviewRow> {
        self.rows.iter().filter(|r| r.verdict.refuses())
    }

    /// `None` when nothing is refused; else one `job_policy_denied` error
    /// whose message lists every refusal and whose hint is everything to
    /// change at once (the YAML of every missing grant, every cap to lower).
    pub fn denial(&self) -> Option<LilyError> {
        let msgs: Vec<&str> = self.refusals().filter_map(|r| r.message.as_deref()).collect();
        if msgs.is_empty() {
            return None;
        }
        let message = if msgs.len() == 1 {
            msgs[0].to_string()
        } else {
            format!("the policy refuses {} things: {}", msgs.len(), msgs.join("; "))
        };
        let mut hint = String::new();
        if let Some(yaml) = self.missing_yaml() {
            hint.push_str(&format!(
                "to allow this, merge into {} (under its existing `runnables` map, into the entry of each runnable if there is one; a second `runnables` key is refused; `lily policy allow` does the merge):\n{yaml}",
                self.source
            ));
        }
        for (cap, ceiling) in &self.over {
            if !hint.is_empty() {
                hint.push('\n');
            }
            hint.push_str(&format!("lower {cap} in the job, or raise {ceiling} in {}", self.source));
        }
        let details = serde_json::json!({
            "refused": self.refusals().map(|r| serde_json::json!({
                "step": r.step, "runnable": r.runnable, "kind": r.kind, "asked": r.asked, "reason": r.reason,
            })).collect::<Vec<_>>(),
        });
        let mut e = LilyError::new(ErrorCode::JobPolicyDenied, message).with_details(details);
        if !hint.is_empty() {
            e = e.with_hint(hint);
        }
        Some(e)
    }

    /// The `runnables:` YAML that grants every missing fs and env row.
    pub fn missing_yaml(&self) -> Option<String> {
        if self.missing.is_empty() {
            return None;
        }
        let mut y = String::from("runnables:");
        for (runnable, (fs, env)) in &self.missing {
            y.push_str(&format!("\n  \"{runnable}\":"));
            if !fs.is_empty() {
                y.push_str("\n    fs:");
                for (p, m) in fs {
                    y.push_str(&format!("\n      - path: {}\n        mode: {}", super::edit::yaml_scalar(p), mode_str(*m)));
                }
            }
            if !env.is_empty() {
                y.push_str(&format!("\n    env: [{}]", env.join(", ")));
            }
        }
        Some(y)
    }
}

fn row(step: Option<&StepAsk>, kind: &'static str, asked: String, granted: String, verdict: RowVerdict, reason: String) -> ReviewRow {
    ReviewRow {
        step: step.map(|s| s.node.clone()),
        runnable: step.map(|s| s.runnable.clone()),
        kind,
        asked,
        granted,
        verdict,
        reason,
        message: None,
    }
}

impl Policy {
    /// Review a job: its runtime caps against the ceilings and each step's
    /// asks against the runnable's entries. Never fails: refusals are rows.
    pub fn review(&self, root: &Root, spec: &JobSpec, steps: &[StepAsk]) -> Review {
        let mut review = Review {
            rows: Vec::new(),
            source: self.source_name(),
            missing: BTreeMap::new(),
            over: Vec::new(),
        };
        self.review_runtime(spec, &mut review);
        for s in steps {
            self.review_step(root, s, &mut review);
        }
        review
    }

    fn review_runtime(&self, spec: &JobSpec, review: &mut Review) {
        let l = &self.file.limits;
        let r = &spec.runtime;
        let parallelism = r.max_parallelism.unwrap_or_else(|| r.parallelism().min(l.max_parallelism));
        let mut caps: Vec<(String, Option<u64>, Option<u64>)> = vec![
            ("timeout_seconds".into(), Some(r.timeout_seconds), Some(l.timeout_seconds)),
            ("retry_max".into(), Some(u64::from(r.retry_max)), Some(u64::from(l.retry_max))),
            ("max_parallelism".into(), Some(parallelism as u64), Some(l.max_parallelism as u64)),
            (
                "max_parallel_runs".into(),
                Some(u64::from(r.max_parallel_runs)),
                Some(u64::from(l.max_parallel_runs)),
            ),
            ("memory_mb".into(), Some(r.memory_mb.unwrap_or(l.memory_mb.min(256))), Some(l.memory_mb)),
            ("fuel".into(), r.fuel, l.fuel),
        ];
        if let Some(h) = &r.http {
            caps.extend([
                ("http.max_requests".into(), h.max_requests.map(u64::from), Some(u64::from(l.http_max_requests))),
                ("http.max_request_bytes".into(), h.max_request_bytes, Some(l.http_max_request_bytes)),
                ("http.max_response_bytes".into(), h.max_response_bytes, Some(l.http_max_response_bytes)),
                ("http.timeout_seconds".into(), h.timeout_seconds, Some(l.http_timeout_seconds)),
            ]);
        }
        for (cap, asked, ceiling) in caps {
            let ceiling_key = format!("limits.{}", cap.replace("http.", "http_"));
            let show = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_else(|| "-".into());
            let (verdict, reason) = match (asked, ceiling) {
                (Some(a), Some(c)) if a > c => (RowVerdict::Denied, format!("{a} exceeds the ceiling {ceiling_key} = {c}")),
                (Some(a), Some(c)) => (RowVerdict::Allowed, format!("{a} <= {ceiling_key} = {c}")),
                (Some(_), None) => (RowVerdict::Allowed, format!("{ceiling_key} is unset (no ceiling)")),
                (None, Some(c)) => (RowVerdict::Allowed, format!("unset; the ceiling {ceiling_key} = {c} applies")),
                (None, None) => (RowVerdict::Allowed, "unset; no ceiling".into()),
            };
            let mut rw = row(
                None,
                "runtime",
                format!("{cap} = {}", show(asked)),
                format!("<= {}", show(ceiling)),
                verdict,
                reason,
            );
            if verdict == RowVerdict::Denied {
                rw.message = Some(format!(
                    "runtime.{cap} = {} exceeds the policy ceiling {ceiling_key} = {}",
                    show(asked),
                    show(ceiling)
                ));
                review.over.push((format!("runtime.{cap}"), ceiling_key));
            }
            review.rows.push(rw);
        }
    }

    fn review_step(&self, root: &Root, s: &StepAsk, review: &mut Review) {
        let id = &s.runnable;
        for (rel, perms) in &s.dirs {
            let asked = format!("{rel} ({})", mode_str(*perms));
            let rel_norm = match root.confine(rel) {
                Ok(host) => {
                    let n = host
                        .strip_prefix(&root.path)
                        .map(|p| p.display().to_string())
                        .unwrap_or_else(|_| rel.to_string());
                    if n.is_empty() { ".".to_string() } else { n }
                }
                Err(e) => {
                    let mut r = row(Some(s), "fs", asked, "-".into(), RowVerdict::Denied, e.to_string());
                    r.message = Some(format!("directory {rel:?} for {id}: {e}"));
                    review.rows.push(r);
                    continue;
                }
            };
            match self.allows_dir(id, &rel_norm, *perms) {
                Some(by) => review.rows.push(row(
                    Some(s),
                    "fs",
                    asked,
                    by.clone(),
                    RowVerdict::Granted,
                    "the entry covers this directory with this access".into(),
                )),
                None => {
                    let reason = match (*perms, self.allows_dir(id, &rel_norm, Perms::ReadOnly)) {
                        (Perms::ReadWrite, Some(by)) => format!("only read-only is granted ({by})"),
                        _ => format!("no entry for {id} covers {rel_norm}"),
                    };
                    let mut r = row(Some(s), "fs", asked, "-".into(), RowVerdict::Missing, reason);
                    r.message = Some(format!("policy does not allow {id} {} access to {rel_norm:?}", mode_str(*perms)));
                    review.rows.push(r);
                    let m = review.missing.entry(id.clone()).or_default();
                    if !m.0.iter().any(|(p, pm)| *p == rel_norm && *pm == *perms) {
                        m.0.push((rel_norm, *perms));
                    }
                }
            }
        }
        for n in &s.env {
            match self.entries_for(id).into_iter().find(|(_, g)| g.env.iter().any(|e| e == n)) {
                Some((pattern, _)) => review.rows.push(row(
                    Some(s),
                    "env",
                    n.clone(),
                    format!("runnables.{pattern:?}.env"),
                    RowVerdict::Granted,
                    "listed in policy (the value comes from the host environment)".into(),
                )),
                None => {
                    let mut r = row(
                        Some(s),
                        "env",
                        n.clone(),
                        "-".into(),
                        RowVerdict::Missing,
                        format!("no entry for {id} lists {n}"),
                    );
                    r.message = Some(format!("policy does not allow env var {n} for {id}"));
                    review.rows.push(r);
                    let m = review.missing.entry(id.clone()).or_default();
                    if !m.1.contains(n) {
                        m.1.push(n.clone());
                    }
                }
            }
        }
        let entries = self.entries_for(id);
        for (kind, lists) in [
            ("network", entries.iter().map(|(p, g)| (*p, g.network.clone())).collect::<Vec<_>>()),
            ("http", entries.iter().map(|(p, g)| (*p, g.http.clone())).collect::<Vec<_>>()),
        ] {
            let mut any = false;
            for (pattern, list) in lists {
                for v in list {
                    any = true;
                    review.rows.push(row(
                        Some(s),
                        kind,
                        "-".into(),
                        v,
                        RowVerdict::Available,
                        format!("listed in runnables.{pattern:?}.{kind}; the component may use it"),
                    ));
                }
            }
            if !any {
                review.rows.push(row(
                    Some(s),
                    kind,
                    "-".into(),
                    "-".into(),
                    RowVerdict::None,
                    format!("no entry for {id} lists {kind}; the step cannot use it"),
                ));
            }
        }
        match self.llm_for(id) {
            Some(l) => review.rows.push(row(
                Some(s),
                "llm",
                "-".into(),
                format!(
                    "models [{}] (per run: {} calls, {} input / {} output tokens)",
                    l.models.join(", "),
                    l.budget.max_calls,
                    l.budget.max_input_tokens,
                    l.budget.max_output_tokens
                ),
                RowVerdict::Available,
                format!("runnables.{:?}.llm; the component may call these models", l.rule),
            )),
            None => review.rows.push(row(
                Some(s),
                "llm",
                "-".into(),
                "-".into(),
                RowVerdict::None,
                format!("no entry for {id} has llm; the step cannot call a model"),
            )),
        }
    }
}
