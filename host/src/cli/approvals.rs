//! `lily approvals …`

use super::{EXIT_OK, Global, render, root};
use clap::Subcommand;
use lily::error::{ErrorCode, LilyError};
use lily::policy::approvals;
use serde_json::json;

#[derive(Debug, Subcommand)]
pub enum ApprovalsCmd {
    /// List approval requests
    List {
        #[arg(long)]
        job: Option<String>,
    },
    /// Show a request and what would change (a diff against the current file)
    Show { id: String },
    /// Apply exactly the recorded bytes
    Approve {
        id: String,
        /// Apply even if the target changed since the proposal
        #[arg(long)]
        force: bool,
    },
    /// Deny a request
    Deny {
        id: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Deliver again a send / publish whose delivery failed (never one already delivered)
    Retry { id: String },
}

/// Exit status of a decision: a delivery that failed is not success.
fn decided_status(d: &approvals::Decided) -> i32 {
    if d.state == approvals::State::DeliveryFailed {
        ErrorCode::JobExecutionFailed.exit_status()
    } else {
        EXIT_OK
    }
}

fn not_found(id: &str) -> LilyError {
    LilyError::new(ErrorCode::JobNotFound, format!("no approval request {id}")).with_hint("`lily approvals list` shows the requests")
}

/// A refused decision with the code the library chose for it.
fn decision_error(e: approvals::ApprovalError) -> LilyError {
    match &e {
        approvals::ApprovalError::NotFound(id) => not_found(id),
        _ => LilyError::new(e.code(), e.to_string()),
    }
}

pub fn run(g: &Global, cmd: ApprovalsCmd) -> Result<i32, LilyError> {
    let root = root(g)?;
    match cmd {
        ApprovalsCmd::List { job } => {
            let list = approvals::list(&root, job.as_deref());
            if g.json {
                render::json(&list);
            } else if list.is_empty() {
                outln!("no approval requests");
            } else {
                let rows: Vec<Vec<String>> = list
                    .iter()
                    .map(|r| {
                        // The target is the guest's string: escaped, and last, so
                        // nothing it holds can shift the other columns.
                        vec![
                            r.id.clone(),
                            r.state.as_str().to_string(),
                            r.kind.clone(),
                            r.job_id.clone(),
                            r.run_id.clone(),
                            r.created_at.clone(),
                            lily::text::terminal_field(&r.target).into_owned(),
                        ]
                    })
                    .collect();
                render::table(&["ID", "STATE", "KIND", "JOB", "RUN", "CREATED", "TARGET"], &rows);
            }
            Ok(EXIT_OK)
        }
        ApprovalsCmd::Show { id } => {
            let r = approvals::load(&root, &id).ok_or_else(|| not_found(&id))?;
            let proposed = std::fs::read(&r.content_path).unwrap_or_default();
            let current = if r.kind == "write_file" {
                approvals::read_target(&root.path, &r.target)
            } else {
                None
            };
            let diff = if r.kind == "write_file" {
                diff(current.as_deref(), &proposed)
            } else {
                // A message or artifact for a destination: a preview.
                let text = String::from_utf8_lossy(&proposed);
                let preview: String = text.chars().take(600).collect();
                format!(
                    "payload ({} bytes{}):\n{preview}",
                    proposed.len(),
                    if text.chars().count() > 600 { ", first 600 characters" } else { "" }
                )
            };
            if g.json {
                render::json(&json!({"request": r, "diff": diff}));
            } else {
                // Guest strings (reason, target, content) are escaped; the
                // real target is printed last, alone on its line, after the
                // diff, so nothing the guest wrote can stand in for it.
                let field = lily::text::terminal_field;
                outln!(
                    "{} ({}) {}\n  from {} in run {} of {}\n  reason: {}\n  {} bytes, {}\n  expires {}",
                    r.id,
                    r.state.as_str(),
                    r.kind,
                    field(&r.runnable),
                    r.run_id,
                    r.job_id,
                    field(&r.reason),
                    r.bytes,
                    r.sha256,
                    r.expires_at
                );
                outln!("\n{diff}\n");
                if let Some(d) = &r.delivery {
                    outln!(
                        "delivery: {} to {} ({}) — {} attempt(s) at {}{}{}{}",
                        if d.error.is_none() { "delivered" } else { "failed" },
                        field(&d.destination),
                        d.kind,
                        d.attempts,
                        d.at,
                        d.status.map(|s| format!(", HTTP {s}")).unwrap_or_default(),
                        d.path.as_ref().map(|p| format!(", {}", field(p))).unwrap_or_default(),
                        d.error.as_ref().map(|e| format!(", {}", field(e))).unwrap_or_default(),
                    );
                }
                let label = if r.kind == "write_file" { "target" } else { "destination" };
                outln!("{label} ({}): {}", r.kind, field(&r.target));
            }
            Ok(EXIT_OK)
        }
        ApprovalsCmd::Approve { id, force } => {
            let d = approvals::approve(&root, &id, force).map_err(decision_error)?;
            if g.json {
                render::json(&d);
            } else {
                outln!("{}: {}", d.id, d.message);
            }
            Ok(decided_status(&d))
        }
        ApprovalsCmd::Retry { id } => {
            let d = approvals::retry(&root, &id).map_err(decision_error)?;
            if g.json {
                render::json(&d);
            } else {
                outln!("{}: {}", d.id, d.message);
            }
            Ok(decided_status(&d))
        }
        ApprovalsCmd::Deny { id, reason } => {
            let d = approvals::deny(&root, &id, reason.as_deref()).map_err(decision_error)?;
            if g.json {
                render::json(&d);
            } else {
                outln!("{}: denied ({})", d.id, d.message);
            }
            Ok(EXIT_OK)
        }
    }
}

/// A small line diff (current → proposed).
fn diff(current: Option<&[u8]>, proposed: &[u8]) -> String {
    let new = String::from_utf8_lossy(proposed);
    let Some(cur) = current else {
        return format!("new file:\n{}", new.lines().map(|l| format!("+{l}")).collect::<Vec<_>>().join("\n"));
    };
    let old = String::from_utf8_lossy(cur);
    let (a, b): (Vec<&str>, Vec<&str>) = (old.lines().collect(), new.lines().collect());
    let mut out = Vec::new();
    let n = a.len().max(b.len());
    for i in 0..n {
        match (a.get(i), b.get(i)) {
            (Some(x), Some(y)) if x == y => out.push(format!(" {x}")),
            (x, y) => {
                if let Some(x) = x {
                    out.push(format!("-{x}"));
                }
                if let Some(y) = y {
                    out.push(format!("+{y}"));
                }
            }
        }
    }
    out.join("\n")
}
