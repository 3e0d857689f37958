//! `lily blueprints …`, `lily runnables …`, `lily policy …`

use super::jobs::internal;
use super::{EXIT_OK, Global, exit_code, render, root};
use clap::Subcommand;
use lily::blueprints::Registry;
use lily::error::{ErrorCode, LilyError};
use lily::jobs::Lily;
use lily::policy::Policy;
use lily::runnables::RunnableRegistry;
use lily::runnables::{BuildOptions, BuildReport, BuildTool, Lang, ScaffoldKind};
use lily::sandbox::{BUILTIN_IDS, Sandbox, SandboxOptions, builtin_bytes};
use serde_json::json;
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub enum BlueprintsCmd {
    /// List blueprints
    List,
    /// Show a blueprint: summary, version and its bindings / input / output schemas
    Show { id: String },
}

/// A usable crate name, or a usage error (exit 2) saying why.
fn crate_name(s: &str) -> Result<String, String> {
    lily::runnables::check_name(s).map(|()| s.to_string()).map_err(|e| e.to_string())
}

#[derive(Debug, Subcommand)]
pub enum RunnablesCmd {
    /// Print a component's descriptor, imports (capabilities it could ask for) and digest
    Inspect {
        /// A .wasm file or a built-in / installed runnable id
        target: String,
    },
    /// List built-in and installed runnables
    List,
    /// Validate a component and install it under .lily/runnables/
    Install {
        file: PathBuf,
        /// Refuse unless the component describes itself with this id
        #[arg(long)]
        id: Option<String>,
        /// Replace a different component installed under the same id and version
        #[arg(long)]
        force: bool,
    },
    /// Remove kept component copies (.lily/runnables/.objects/) that no installed version and no recorded run uses
    Prune {
        /// Only list what would be removed
        #[arg(long)]
        dry_run: bool,
    },
    /// Remove an installed runnable (every version, or <ID>@<VERSION>); refused while a job references it
    Remove {
        /// <ID> or <ID>@<VERSION>
        target: String,
        /// Remove it even though job specs reference it
        #[arg(long)]
        force: bool,
    },
    /// Scaffold a new runnable in ./<NAME> (Rust, Python or JavaScript; the SDK vendored; has native unit tests)
    New {
        /// Project name (lower-case letters, digits, '-'); the runnable id is <NAME>.v1
        #[arg(value_parser = crate_name)]
        name: String,
        #[arg(long, value_enum, default_value_t = KindArg::Specialist)]
        kind: KindArg,
        /// Language
        #[arg(long, value_enum, default_value_t = LangArg::Rust)]
        lang: LangArg,
    },
    /// Build a runnable's project into a component and check it against the Run Contract (language from Cargo.toml / pyproject.toml or app.py / package.json)
    Build {
        /// The project directory (default: the current directory)
        path: Option<PathBuf>,
        /// Build tool (default: cargo for Rust, componentize-py for Python, jco for JS)
        #[arg(long = "with", value_enum)]
        tool: Option<ToolArg>,
        /// Copy the component here when it passes the check
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// `--kind` of `lily runnables new`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KindArg {
    /// Reviews a topic (and a granted read-only workspace) and returns findings
    Specialist,
    /// Ranks the specialists' findings into the council output
    Synthesizer,
}

impl From<KindArg> for ScaffoldKind {
    fn from(k: KindArg) -> ScaffoldKind {
        match k {
            KindArg::Specialist => ScaffoldKind::Specialist,
            KindArg::Synthesizer => ScaffoldKind::Synthesizer,
        }
    }
}

/// `--lang` of `lily runnables new`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LangArg {
    /// A Rust crate (cargo / cargo-component)
    Rust,
    /// A Python project (componentize-py)
    Python,
    /// A JavaScript project (jco componentize)
    Js,
}

impl From<LangArg> for Lang {
    fn from(l: LangArg) -> Lang {
        match l {
            LangArg::Rust => Lang::Rust,
            LangArg::Python => Lang::Python,
            LangArg::Js => Lang::Js,
        }
    }
}

/// `--with` of `lily runnables build`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ToolArg {
    /// `cargo build --release --target wasm32-wasip2` (a component straight away)
    Cargo,
    /// `cargo component build --release` (wasm32-wasip1, adapted into a component)
    CargoComponent,
    /// `componentize-py … componentize app` (Python)
    ComponentizePy,
    /// `jco componentize` (JavaScript)
    Jco,
}

impl From<ToolArg> for BuildTool {
    fn from(t: ToolArg) -> BuildTool {
        match t {
            ToolArg::Cargo => BuildTool::Cargo,
            ToolArg::CargoComponent => BuildTool::CargoComponent,
            ToolArg::ComponentizePy => BuildTool::ComponentizePy,
            ToolArg::Jco => BuildTool::Jco,
        }
    }
}

/// Build progress on stderr (stdout stays one document with `--json`).
fn progress(line: &str) {
    errln!("{line}");
}

#[derive(Debug, Subcommand)]
pub enum PolicyCmd {
    /// Validate .lily/policy.yaml
    Check,
    /// Show every cap and grant a job asks, and what the policy grants, denies or lacks (one row each)
    Explain { job_id: String },
    /// Add grants for a runnable to .lily/policy.yaml (merged in place, validated, written atomically)
    #[command(group(clap::ArgGroup::new("grant").required(true).multiple(true).args(["fs", "env", "network", "http"])))]
    Allow {
        /// The runnable id (or glob) whose `runnables:` entry gets the grants
        runnable: String,
        /// A root-relative directory and its access: PATH:ro or PATH:rw (repeatable)
        #[arg(long = "fs", value_name = "PATH:ro|rw", value_parser = fs_grant)]
        fs: Vec<(String, lily::sandbox::Perms)>,
        /// An env var name (repeatable)
        #[arg(long = "env", value_name = "NAME")]
        env: Vec<String>,
        /// An outbound HOST:PORT (repeatable)
        #[arg(long = "network", value_name = "HOST:PORT")]
        network: Vec<String>,
        /// A wasi:http URL prefix, scheme://host[:port][/path] (repeatable)
        #[arg(long = "http", value_name = "URL")]
        http: Vec<String>,
        /// Print the change (a line diff) without writing the file
        #[arg(long)]
        dry_run: bool,
    },
}

/// `--fs PATH:ro|rw` of `lily policy allow`.
fn fs_grant(s: &str) -> Result<(String, lily::sandbox::Perms), String> {
    use lily::sandbox::Perms;
    match s.rsplit_once(':') {
        Some((p, "ro")) if !p.is_empty() => Ok((p.to_string(), Perms::ReadOnly)),
        Some((p, "rw")) if !p.is_empty() => Ok((p.to_string(), Perms::ReadWrite)),
        _ => Err(format!("{s:?} must be PATH:ro or PATH:rw")),
    }
}

pub async fn blueprints(g: &Global, cmd: BlueprintsCmd) -> Result<i32, LilyError> {
    let reg = Registry::builtin();
    match cmd {
        BlueprintsCmd::List => {
            if g.json {
                render::json(
                    &reg.list()
                        .iter()
                        .map(|b| json!({"id": b.meta.id, "version": b.meta.version.to_string(), "summary": b.meta.summary}))
                        .collect::<Vec<_>>(),
                );
            } else {
                let rows: Vec<Vec<String>> = reg
                    .list()
                    .iter()
                    .map(|b| vec![b.meta.id.clone(), b.meta.version.to_string(), b.meta.summary.clone()])
                    .collect();
                render::table(&["ID", "VERSION", "SUMMARY"], &rows);
            }
        }
        BlueprintsCmd::Show { id } => {
            let b = reg.resolve(&id, None)?;
            if g.json {
                render::json(&b.meta);
            } else {
                outln!(
                    "{} {}\n{}\n\nartifacts: {}\n",
                    b.meta.id,
                    b.meta.version,
                    b.meta.summary,
                    b.meta.artifacts.join(", ")
                );
                for (name, s) in [
                    ("bindings schema", &b.meta.bindings_schema),
                    ("input schema", &b.meta.input_schema),
                    ("output schema", &b.meta.output_schema),
                ] {
                    outln!("{name}:\n{}\n", lily::text::json_pretty(s));
                }
            }
        }
    }
    Ok(EXIT_OK)
}

pub async fn runnables(g: &Global, cmd: RunnablesCmd) -> Result<i32, LilyError> {
    let root = root(g).ok();
    let registry = RunnableRegistry::new(root.as_ref());
    let sandbox = Sandbox::new(SandboxOptions {
        cache_dir: root.as_ref().map(|r| r.cache_dir()),
    })
    .map_err(internal)?;
    let contract = |msg: String| LilyError::new(ErrorCode::BlueprintContractInvalid, msg);
    match cmd {
        RunnablesCmd::Inspect { target } => {
            let bytes: Vec<u8> = if target.ends_with(".wasm") || std::path::Path::new(&target).is_file() {
                std::fs::read(&target).map_err(|e| contract(format!("{target}: {e}")))?
            } else {
                registry
                    .bytes(&target)
                    .map(|(b, _)| b.into_owned())
                    .ok_or_else(|| contract(format!("no runnable {target:?} (not a file, built-in or installed id)")))?
            };
            let l = sandbox.load(&bytes).await.map_err(|e| contract(format!("{target}: {}", e.message)))?;
            let out = json!({"descriptor": l.descriptor, "imports": l.imports, "digest": l.digest, "bytes": l.size});
            if g.json {
                render::json(&out);
            } else {
                let d = &l.descriptor;
                outln!(
                    "{} {} ({})\n{}\n\ndigest: {}\nsize:   {} bytes\n\nimports (capabilities it could ask for):",
                    d.id,
                    d.version,
                    d.kind.as_str(),
                    d.summary,
                    l.digest,
                    l.size
                );
                for i in &l.imports {
                    if i.starts_with("lily:runnable/llm@") {
                        outln!("  {i}  (model calls: runs only where policy grants runnables.{}.llm)", d.id);
                    } else if i.starts_with("wasi:http/outgoing-handler@") {
                        outln!("  {i}  (outbound HTTP: each request must be under runnables.{}.http)", d.id);
                    } else {
                        outln!("  {i}");
                    }
                }
                outln!("\ninput schema:  {}\noutput schema: {}", d.input_schema, d.output_schema);
            }
        }
        RunnablesCmd::List => {
            let mut out = Vec::new();
            for (id, _) in BUILTIN_IDS {
                if let Some(b) = builtin_bytes(id)
                    && let Ok(l) = sandbox.load(b).await
                {
                    out.push(json!({"id": id, "source": "builtin", "kind": l.descriptor.kind, "version": l.descriptor.version, "digest": l.digest, "imports": l.imports}));
                }
            }
            for (m, path) in registry.installed() {
                out.push(
                    json!({"id": m.id, "source": "installed", "kind": m.kind, "version": m.version, "digest": m.digest, "imports": m.imports, "path": path}),
                );
            }
            if g.json {
                render::json(&out);
            } else {
                // On a terminal the imports are grouped by package and wrapped.
                let narrow = render::stdout_width().is_some();
                let rows: Vec<Vec<String>> = out
                    .iter()
                    .map(|r| {
                        let caps: Vec<String> = r["imports"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|i| i.as_str())
                            .map(|i| i.split('@').next().unwrap_or(i).to_string())
                            .collect();
                        vec![
                            r["id"].as_str().unwrap_or("").into(),
                            r["kind"].as_str().unwrap_or("").into(),
                            r["version"].as_str().unwrap_or("").into(),
                            r["source"].as_str().unwrap_or("").into(),
                            r["digest"].as_str().unwrap_or("").chars().take(19).collect(),
                            if narrow { lily::text::group_interfaces(&caps) } else { caps.join(" ") },
                        ]
                    })
                    .collect();
                render::table_fit(&["ID", "KIND", "VERSION", "SOURCE", "DIGEST", "IMPORTS"], &rows);
            }
        }
        RunnablesCmd::Install { file, id, force } => {
            if root.is_none() {
                return Err(super::root(g).err().unwrap_or_else(|| contract("no root".into())));
            }
            let bytes = std::fs::read(&file).map_err(|e| contract(format!("{}: {e}", file.display())))?;
            let shown = super::progress::InstallProgress::new(!g.json, &file.display().to_string());
            let m = registry
                .install_reporting(&sandbox, &bytes, id.as_deref(), force, &|s| shown.on(s))
                .await
                .map_err(|e| LilyError::new(e.code(), e.to_string()))?;
            if g.json {
                render::json(&m);
            } else {
                outln!("installed {} {} ({}) {}", m.id, m.version, m.kind, m.digest);
            }
        }
        RunnablesCmd::Prune { dry_run } => {
            let root = super::root(g)?;
            let keep = lily::runs::recorded_digests(&root.runs_dir());
            let removed = registry
                .prune_objects(&keep, dry_run)
                .map_err(|e| LilyError::new(ErrorCode::JobExecutionFailed, format!("cannot prune {}: {e}", root.runnables_dir().display())))?;
            let bytes: u64 = removed.iter().map(|(_, n)| n).sum();
            if g.json {
                let list: Vec<_> = removed.iter().map(|(d, n)| json!({"digest": d, "bytes": n})).collect();
                render::json(&json!({"dry_run": dry_run, "removed": list, "bytes": bytes, "kept_for_runs": keep.len()}));
            } else {
                for (d, n) in &removed {
                    outln!("{} {d} ({n} bytes)", if dry_run { "would remove" } else { "removed" });
                }
                outln!(
                    "{} {} kept component(s), {bytes} bytes; digests recorded by runs are kept ({})",
                    if dry_run { "would remove" } else { "removed" },
                    removed.len(),
                    keep.len()
                );
            }
        }
        RunnablesCmd::Remove { target, force } => {
            let root = super::root(g)?;
            return remove_runnable(g, &root, &registry, &target, force);
        }
        RunnablesCmd::New { name, kind, lang } => {
            let cwd = std::env::current_dir().map_err(|e| internal(e.into()))?;
            let kind = ScaffoldKind::from(kind);
            let lang = Lang::from(lang);
            let s = lily::runnables::scaffold(&cwd, &name, kind, lang)?;
            if g.json {
                render::json(&s);
            } else if lang != Lang::Rust {
                outln!("created {}/: the {} {} ({})", name, kind.as_str(), s.id, lang.as_str());
                for f in &s.files {
                    outln!("  {f}");
                }
                let test = match lang {
                    Lang::Python => "python -m unittest",
                    _ => "node --test",
                };
                outln!("\nnext:\n  cd {name} && {test} && cd ..          # unit tests, natively");
                outln!("  lily runnables build {name} --out {name}.wasm   # build and check the contract");
                outln!("  lily runnables install {name}.wasm");
            } else {
                outln!("created {}/: the {} {} (crate {})", name, kind.as_str(), s.id, s.crate_name);
                for f in s.files.iter().filter(|f| !f.starts_with("lily-guest/")) {
                    outln!("  {f}");
                }
                outln!("  lily-guest/   the guest SDK and the Run Contract WIT, vendored");
                outln!("\nnext:\n  cd {name} && cargo test && cd ..                  # unit tests, natively");
                outln!("  lily runnables build {name} --out {name}.wasm   # build and check the contract");
                outln!("  lily runnables install {name}.wasm");
            }
        }
        RunnablesCmd::Build { path, tool, out } => {
            let opts = BuildOptions {
                path: path.unwrap_or_else(|| PathBuf::from(".")),
                tool: tool.map(BuildTool::from),
                out,
                progress,
            };
            let report = lily::runnables::build(&sandbox, &opts).await?;
            if let Some(e) = report.contract_error() {
                if !g.json {
                    print_build_report(&report);
                }
                return Err(e);
            }
            if g.json {
                render::json(&report);
            } else {
                print_build_report(&report);
            }
        }
    }
    Ok(EXIT_OK)
}

fn print_build_report(r: &BuildReport) {
    let c = &r.check;
    outln!("built {} with `{}`", r.crate_name, r.command);
    outln!("component: {} ({} bytes, {})", r.component.display(), c.bytes, c.digest);
    if let Some(d) = &c.descriptor {
        outln!("\n{} {} ({})\n{}", d.id, d.version, d.kind.as_str(), d.summary);
    }
    if !c.imports.is_empty() {
        outln!("\nimports (capabilities it could ask for):");
        for i in &c.imports {
            outln!("  {i}");
        }
    }
    for w in &c.warnings {
        outln!("\nwarning: {w}");
    }
    if c.ok {
        outln!("\ncontract: ok");
        match &r.copied_to {
            Some(p) => outln!("copied to {}\nnext: lily runnables install {}", p.display(), p.display()),
            None => outln!("next: lily runnables install {}", r.component.display()),
        }
    } else {
        let n = c.problems.len();
        outln!("\ncontract: {n} problem{}", if n == 1 { "" } else { "s" });
        for p in &c.problems {
            outln!("  problem ({}): {}\n  fix: {}", p.area, p.message, p.hint);
        }
    }
}

pub async fn policy(g: &Global, cmd: PolicyCmd) -> Result<i32, LilyError> {
    let root = root(g)?;
    match cmd {
        PolicyCmd::Check => {
            let p = Policy::load(&root)?;
            let src = p
                .source
                .as_ref()
                .map(|s| s.display().to_string())
                .unwrap_or_else(|| "no policy file: deny-everything defaults".into());
            if g.json {
                render::json(&json!({"ok": true, "source": src, "policy": p.file}));
            } else {
                outln!(
                    "ok: {src}\n  {} runnable entries; effects: write_file {}, publish {}, send {}",
                    p.file.runnables.len(),
                    p.file.effects.write_file.default.as_str(),
                    p.file.effects.publish.default.as_str(),
                    p.file.effects.send.default.as_str()
                );
            }
            Ok(EXIT_OK)
        }
        PolicyCmd::Explain { job_id } => explain(g, root, &job_id).await,
        PolicyCmd::Allow {
            runnable,
            fs,
            env,
            network,
            http,
            dry_run,
        } => {
            let req = lily::policy::edit::AllowRequest {
                runnable,
                fs,
                env,
                network,
                http,
            };
            let o = lily::policy::edit::allow(&root, &req, dry_run)?;
            if o.comments_dropped {
                errln!(
                    "warning: the layout of {} is not one `policy allow` edits in place: the file {} re-written from its parsed content, and its comments are dropped",
                    o.path,
                    if dry_run { "would be" } else { "was" }
                );
            }
            if g.json {
                let diff = lily::policy::edit::line_diff(&o.old_text, &o.new_text);
                render::json(&json!({"outcome": o, "dry_run": dry_run, "diff": diff, "new_text": dry_run.then_some(&o.new_text)}));
            } else {
                for (what, by) in &o.already {
                    outln!("already granted: {what} (by {by}); nothing to add");
                }
                if o.added.is_empty() {
                    outln!("no change: {} already grants all of it", o.path);
                } else if dry_run {
                    outln!("would add to {} for {}: {} (dry run; nothing written)", o.path, o.runnable, o.added.join(", "));
                    for l in lily::policy::edit::line_diff(&o.old_text, &o.new_text) {
                        outln!("{l}");
                    }
                } else {
                    outln!("added to {} for {}: {}", o.path, o.runnable, o.added.join(", "));
                }
            }
            Ok(EXIT_OK)
        }
    }
}

/// `lily runnables remove <id>[@version] [--force]`.
fn remove_runnable(g: &Global, root: &lily::workspace::Root, registry: &RunnableRegistry, target: &str, force: bool) -> Result<i32, LilyError> {
    let (id, version) = match target.split_once('@') {
        Some((id, v)) => (id, Some(v)),
        None => (target, None),
    };
    let users = if force { Vec::new() } else { lily::jobs::usage::jobs_referencing(root, id) };
    if !users.is_empty() && lily::sandbox::builtin_bytes(id).is_none() {
        let names: Vec<String> = users.iter().map(|(j, p)| format!("{j} ({p})")).collect();
        return Err(
            LilyError::new(ErrorCode::RunnableInUse, format!("{target} is referenced by job(s): {}", names.join(", ")))
                .with_hint("change those specs first, or pass --force to remove it anyway (their runs then fail with job_target_unresolved)")
                .with_details(serde_json::json!({"jobs": users.iter().map(|(j, _)| j).collect::<Vec<_>>()})),
        );
    }
    let removed = registry.remove(id, version).map_err(|e| LilyError::new(e.code(), e.to_string()))?;
    if g.json {
        render::json(&serde_json::json!({"removed": removed, "forced": force}));
    } else {
        for m in &removed {
            outln!("removed {} {} ({})", m.id, m.version, m.digest);
        }
    }
    Ok(EXIT_OK)
}

async fn explain(g: &Global, root: lily::workspace::Root, job_id: &str) -> Result<i32, LilyError> {
    let lily = Lily::open(root).map_err(internal)?;
    let spec = lily.load_spec(job_id)?.spec?;
    let policy = Policy::load(&lily.root)?;
    let review = lily.review(&spec, &policy)?;
    // Refused by the review, or by the rest of planning (models, components).
    let (plan, error) = match review.denial() {
        Some(e) => (None, Some(e)),
        None => match lily.plan(&spec, &policy).await {
            Ok(p) => (Some(p), None),
            Err(pe) => (None, Some(pe.error)),
        },
    };
    let source = policy
        .source
        .as_ref()
        .map(|s| s.display().to_string())
        .unwrap_or_else(|| "defaults (no policy file)".into());
    if g.json {
        let mut v = json!({
            "job_id": job_id,
            "allowed": error.is_none(),
            "policy": source,
            "rows": review.rows,
            "error": error.as_ref().map(|e| json!({"code": e.code.as_str(), "message": e.message, "hint": e.hint, "details": e.details})),
        });
        if let Some(p) = &plan {
            let steps: Vec<serde_json::Value> = p
                .prepared
                .graph
                .nodes
                .iter()
                .map(|n| json!({"node": n.id, "runnable": n.runnable, "grants": p.prepared.grants.get(&n.id).map(|g| g.redacted())}))
                .collect();
            v["steps"] = json!(steps);
            v["limits"] = json!(p.limits);
            v["decisions"] = json!(p.decisions);
        }
        render::json(&v);
    } else {
        let refused = review.refusals().count();
        match &error {
            None => outln!(
                "job {job_id}: allowed by {source}
"
            ),
            Some(_) if refused > 0 => outln!(
                "job {job_id}: denied by {source} ({refused} refused)
"
            ),
            Some(_) => outln!(
                "job {job_id}: its grants pass {source}, but planning refuses it
"
            ),
        }
        let rows: Vec<Vec<String>> = review
            .rows
            .iter()
            .map(|r| {
                vec![
                    r.step.clone().unwrap_or_else(|| "(job)".into()),
                    r.runnable.clone().unwrap_or_else(|| "-".into()),
                    r.kind.to_string(),
                    r.asked.clone(),
                    r.granted.clone(),
                    r.verdict.as_str().to_string(),
                    r.reason.clone(),
                ]
            })
            .collect();
        render::table(&["STEP", "RUNNABLE", "KIND", "ASKED", "GRANTED", "VERDICT", "REASON"], &rows);
        if let Some(p) = &plan {
            outln!("\ngranted per step:");
            for n in &p.prepared.graph.nodes {
                outln!("\n{} ({})", n.id, n.runnable);
                let grants = json!(p.prepared.grants.get(&n.id).map(|g| g.redacted()));
                render::grants("  ", &grants, true);
            }
        }
        if let Some(e) = &error {
            outln!();
            render::error(e, false);
        }
    }
    Ok(error.map(|e| exit_code(e.code)).unwrap_or(EXIT_OK))
}
