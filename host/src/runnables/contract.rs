//! The contract check: load a component the way `install` and the jobs
//! will, and turn every typed load error into a problem with a fix.

use super::*;
use crate::error::{ErrorCode, LilyError};
use crate::sandbox::{Descriptor, LoadError, LoadErrorKind, RunnableKind, Sandbox, host_provides};
use lily_contract::council::{Finding, Report, ReportStatus, SpecialistInput, SynthInput, WORKSPACE_GUEST_PATH};
use serde::Serialize;
use serde_json::Value;
use std::path::PathBuf;
/// One way a component breaks the Run Contract, in plain words.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// `component`, `exports`, `imports`, `describe`, `descriptor` or `schema`.
    pub area: &'static str,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub hint: String,
}

/// The contract check of one component: what it says about itself, what it
/// imports, and what keeps the host from accepting it.
#[derive(Debug, Clone, Serialize)]
pub struct ContractCheck {
    pub ok: bool,
    pub digest: String,
    pub bytes: usize,
    pub descriptor: Option<Descriptor>,
    /// Interfaces it imports (the capabilities it could ask for).
    pub imports: Vec<String>,
    pub problems: Vec<Problem>,
    /// Things that do not stop the host but are probably not what you meant.
    pub warnings: Vec<String>,
}

/// The result of `lily runnables build`.
#[derive(Debug, Clone, Serialize)]
pub struct BuildReport {
    /// Built and passes the contract check.
    pub ok: bool,
    /// The project's language.
    pub lang: Lang,
    /// The project's name (crate, pyproject or package name).
    pub crate_name: String,
    pub crate_dir: PathBuf,
    pub tool: BuildTool,
    pub command: String,
    pub target: String,
    /// The component cargo produced.
    pub component: PathBuf,
    /// Where it was copied (`--out`), when it passed.
    pub copied_to: Option<PathBuf>,
    pub check: ContractCheck,
}

impl BuildReport {
    /// The error `lily runnables build` ends with when the check failed.
    pub fn contract_error(&self) -> Option<LilyError> {
        if self.ok {
            return None;
        }
        let n = self.check.problems.len();
        let first = self.check.problems.first();
        let mut e = LilyError::new(
            ErrorCode::BlueprintContractInvalid,
            format!(
                "{} breaks the Run Contract ({n} problem{}): {}",
                self.component.display(),
                if n == 1 { "" } else { "s" },
                first.map(|p| p.message.as_str()).unwrap_or("unknown problem")
            ),
        )
        .with_details(serde_json::to_value(self).unwrap_or(Value::Null));
        if let Some(p) = first {
            e = e.with_hint(p.hint.clone());
        }
        Some(e)
    }
}

/// A sample of what `council.v1` sends a specialist.
pub(super) fn sample_specialist_inputs() -> [Value; 2] {
    let input = |context: Vec<String>, workspace: Option<&str>| {
        serde_json::to_value(SpecialistInput {
            topic: "example topic".into(),
            context,
            workspace: workspace.map(str::to_string),
        })
        .unwrap_or(Value::Null)
    };
    [input(vec!["a line of context".into()], Some(WORKSPACE_GUEST_PATH)), input(vec![], None)]
}

/// A sample of what `council.v1` sends a synthesizer.
pub(super) fn sample_synth_input() -> Value {
    let report = |specialist: &str, status, findings, notes: &str| Report {
        specialist: specialist.into(),
        status,
        findings,
        notes: notes.into(),
    };
    let finding = Finding {
        title: "t".into(),
        recommendation: "r".into(),
        confidence: 0.5,
        evidence: vec!["x:1".into()],
    };
    serde_json::to_value(SynthInput {
        topic: "example topic".into(),
        max_findings: 8,
        reports: vec![
            report("a.v1", ReportStatus::Ok, vec![finding], "n"),
            report("b.v1", ReportStatus::Error, vec![], "trap"),
        ],
    })
    .unwrap_or(Value::Null)
}

/// Turn a sandbox load error into a problem with a fix, by its kind.
pub(super) fn load_problem(e: &LoadError) -> (Problem, Vec<String>) {
    let p = |area: &'static str, hint: &str| Problem {
        area,
        message: e.message.clone(),
        hint: hint.to_string(),
    };
    let problem = match &e.kind {
        LoadErrorKind::MissingImports(missing) => {
            let problem = Problem {
                area: "imports",
                message: format!(
                    "it imports {}, which the Lily host does not provide, so no job could ever run it",
                    missing.join(", ")
                ),
                hint: "A runnable may import only WASI 0.2 interfaces (wasi:*, of wasi:http the client side) and lily:runnable/events, effects and llm. \
                       Remove the code or dependency that uses the other interfaces (check your WIT world's `import` lines)."
                    .into(),
            };
            return (problem, missing.clone());
        }
        LoadErrorKind::NotAComponent => p(
            "component",
            "Build with `cargo build --release --target wasm32-wasip2` or `cargo component build --release`; a core module (wasm32-unknown-unknown, or wasm32-wasip1 without cargo-component) is not a component.",
        ),
        LoadErrorKind::TooComplex => p(
            "component",
            "Keep components under the policy's limits.max_component_mb and functions nested less than 4,096 blocks deep (generated code is the usual cause).",
        ),
        LoadErrorKind::LinkFailed => p(
            "imports",
            "The component's imports do not match what the host links (WASI 0.2 and lily:runnable@0.1.x); rebuild it against the WIT in lily-guest/wit/.",
        ),
        LoadErrorKind::MissingExports => p(
            "exports",
            "Export `describe` and `run`: end src/lib.rs with lily_guest::export_specialist!(YourType) or export_synthesizer!(YourType) (or export_runnable! for a raw Guest).",
        ),
        LoadErrorKind::DescribeFailed => p(
            "describe",
            "`describe` must return at once: no panics, no loops, no file or clock access. With the SDK it only reads your ID, VERSION and SUMMARY constants.",
        ),
        LoadErrorKind::BadId => p(
            "descriptor",
            "Ids are lower-case letters, digits, '.', '_' and '-', start with a letter or digit and have at most 64 characters, e.g. my-check.v1 (the ID constant in src/lib.rs).",
        ),
        LoadErrorKind::BadVersion => p(
            "descriptor",
            "Use a semantic version such as 1.0.0 (a scaffolded crate takes VERSION from the version in Cargo.toml).",
        ),
        LoadErrorKind::BlankSummary => p("descriptor", "Set SUMMARY to one line that tells a person what the runnable does."),
        LoadErrorKind::BadSchema => p(
            "schema",
            "Return JSON Schema objects (draft 2020-12) as text, e.g. the SDK's specialist_input_schema() / specialist_output_schema(); at most 64 KiB, patterns without back-references or look-around.",
        ),
        LoadErrorKind::Internal => p("component", "Inspect it with `lily runnables inspect <file.wasm>`."),
    };
    (problem, Vec::new())
}

/// Why the runnable's declared schema rejects `sample` (budgeted like every
/// check of a guest-declared schema), or `None` if it accepts it.
pub(super) fn schema_rejects(schema: &Value, sample: &Value) -> Option<String> {
    let v = crate::sandbox::schema::GuestSchema::compile(schema).ok()?;
    match v.check(sample, None, 3) {
        Ok(Ok(())) => None,
        Ok(Err(mismatch)) => Some(mismatch.0),
        Err(e) => Some(e.to_string()),
    }
}

/// Check a component against the Run Contract: it must be a component the
/// sandbox can link (imports), export `describe` / `run`, describe itself
/// validly, declare JSON Schema objects, and accept what the council sends
/// a runnable of its kind.
pub async fn check_component(sandbox: &Sandbox, bytes: &[u8]) -> ContractCheck {
    let mut check = ContractCheck {
        ok: false,
        digest: Sandbox::digest(bytes),
        bytes: bytes.len(),
        descriptor: None,
        imports: Vec::new(),
        problems: Vec::new(),
        warnings: Vec::new(),
    };
    let loaded = match sandbox.load(bytes).await {
        Ok(l) => l,
        Err(e) => {
            let (problem, missing) = load_problem(&e);
            check.imports = missing;
            check.problems.push(problem);
            return check;
        }
    };
    let d = loaded.descriptor.clone();
    check.imports = loaded.imports.clone();
    for i in check.imports.iter().filter(|i| !host_provides(i)) {
        check.problems.push(Problem {
            area: "imports",
            message: format!("it imports {i}, which the Lily host does not provide"),
            hint: "A runnable may import only WASI 0.2 interfaces (of wasi:http the client side) and lily:runnable/events, effects and llm.".into(),
        });
    }
    for (what, schema) in [("input", &d.input_schema), ("output", &d.output_schema)] {
        if schema.is_boolean() {
            check.warnings.push(format!(
                "the {what} schema is the boolean schema `{schema}`; an object schema tells callers what to send and lets the host check it"
            ));
        }
    }
    match d.kind {
        RunnableKind::Specialist => {
            for sample in sample_specialist_inputs() {
                if let Some(why) = schema_rejects(&d.input_schema, &sample) {
                    check.problems.push(Problem {
                        area: "schema",
                        message: format!("its input schema rejects what a council sends every specialist ({sample}): {why}"),
                        hint: "Accept {topic, context, workspace}: the SDK's specialist_input_schema() does.".into(),
                    });
                    break;
                }
            }
        }
        RunnableKind::Synthesizer | RunnableKind::Llm => {
            let sample = sample_synth_input();
            if let Some(why) = schema_rejects(&d.input_schema, &sample) {
                check.problems.push(Problem {
                    area: "schema",
                    message: format!("its input schema rejects what a council sends its synthesizer: {why}"),
                    hint: "Accept {topic, max_findings, reports}: the SDK's synth_input_schema() does.".into(),
                });
            }
        }
        RunnableKind::Generic => check
            .warnings
            .push("its kind is generic: council.v1 binds only specialists and synthesizers (step.v1 runs any kind)".into()),
    }
    check.descriptor = Some(d);
    check.ok = check.problems.is_empty();
    check
}
