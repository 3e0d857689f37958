//! Retention: which `retention:` applies to a job, and pruning its run
//! directories through the run store with the runs that have an approval
//! still open protected (their proposed bytes live in the run directory).

use crate::policy::approvals;
use crate::runs::PruneReport;
use crate::spec::JobSpec;
use crate::util::Retention;
use crate::workspace::Root;

/// The retention of a job: its spec's `retention:`, else the default of
/// `.lily/config.yaml`, else none (keep everything).
pub fn configured(root: &Root, spec: Option<&JobSpec>) -> Option<Retention> {
    spec.and_then(|s| s.retention).or(root.config.retention).filter(Retention::is_set)
}

/// Prune `job_id`'s run directories by `rule` (see [`crate::runs::prune_job`]).
/// A run with an approval request that is `pending` or `delivery_failed`
/// (retryable: `approvals retry` reads its bytes from the run) is kept.
pub fn prune(root: &Root, job_id: &str, rule: &Retention, dry_run: bool) -> std::io::Result<PruneReport> {
    let open: Vec<(String, String)> = approvals::list(root, Some(job_id))
        .into_iter()
        .filter(|r| matches!(r.state, approvals::State::Pending | approvals::State::DeliveryFailed))
        .map(|r| (r.run_id, r.id))
        .collect();
    let protect = |run_id: &str| {
        let ids: Vec<&str> = open.iter().filter(|(r, _)| r == run_id).map(|(_, id)| id.as_str()).collect();
        (!ids.is_empty()).then(|| format!("approval {} is still open", ids.join(", ")))
    };
    crate::runs::prune_job(&root.runs_dir(), job_id, rule, chrono::Utc::now(), dry_run, &protect)
}
