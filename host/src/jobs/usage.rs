//! Which job specs reference a runnable (`lily runnables remove` refuses
//! while any does).

use crate::blueprints::Registry;
use crate::workspace::Root;

/// The jobs of the jobs directory whose graph binds runnable `id`, as
/// `(job id, spec path)`. A spec that does not compile counts when its
/// text names `id` (it may well mean it).
pub fn jobs_referencing(root: &Root, id: &str) -> Vec<(String, String)> {
    let blueprints = Registry::builtin();
    let mut out = Vec::new();
    for f in crate::spec::discover(&root.jobs_dir) {
        let graph = f.spec.as_ref().ok().and_then(|s| {
            let bp = blueprints.resolve(&s.target.id, s.target.version.as_deref()).ok()?;
            bp.compile(&s.bindings).ok()
        });
        let uses = match graph {
            Some(g) => g.nodes.iter().any(|n| n.runnable == id),
            None => f.raw.as_deref().is_some_and(|t| t.contains(id)),
        };
        if uses {
            out.push((f.id_hint(), f.path.display().to_string()));
        }
    }
    out
}
