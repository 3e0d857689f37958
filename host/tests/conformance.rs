//! Contract conformance (`just contract-conformance`): the WIT package, the
//! envelope each built-in returns, the council payload against its schema,
//! and the stable error codes.

use lily::ErrorCode;
use lily::blueprints::{Registry, schema_errors};
use lily::jobs::{Lily, RunOptions};
use lily::runs::RunStatus;
use lily::sandbox::{BUILTIN_IDS, RunnableKind, Sandbox, SandboxOptions, StepRequest, builtin_bytes, host_provides, validate_descriptor};
use lily::workspace::Root;
use serde_json::json;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime")
}

const WIT: &str = include_str!("../../wit/runnable.wit");

#[test]
fn wit_package_is_run_contract_r0() {
    assert!(WIT.contains("package lily:runnable@0.1.1;"));
    for needle in [
        "world runnable",
        "import events;",
        "import effects;",
        "export describe: func() -> descriptor;",
        "export run: func(input: string) -> result<envelope, run-error>;",
        "record envelope",
        "record descriptor",
        "record run-error",
        "propose: func(effect: effect, reason: string) -> result<string, string>;",
        "emit: func(level: level, kind: string, fields: string);",
    ] {
        assert!(WIT.contains(needle), "wit/runnable.wit must contain {needle:?}");
    }
    for field in [
        "status: run-status",
        "artifacts: list<artifact>",
        "approvals-requested: list<string>",
        "references: list<string>",
        "payload: string",
    ] {
        assert!(WIT.contains(field), "envelope field {field:?}");
    }
    for kind in ["specialist,", "synthesizer,", "llm,", "generic,"] {
        assert!(WIT.contains(kind), "kind {kind}");
    }
}

#[test]
fn every_builtin_has_a_valid_descriptor_and_imports_only_what_the_host_provides() {
    let sb = Sandbox::new(SandboxOptions::default()).expect("sandbox");
    let rt = rt();
    for (id, _) in BUILTIN_IDS {
        let l = rt.block_on(sb.load(builtin_bytes(id).expect("bytes"))).expect("load");
        assert_eq!(l.descriptor.id, *id);
        validate_descriptor(&l.descriptor).expect("descriptor valid");
        for i in &l.imports {
            assert!(host_provides(i), "{id} imports {i}, which the host does not provide");
        }
    }
}

/// What the contract check accepts is what the linker links: a guest using
/// outbound HTTP (`wasi:http/types`, `outgoing-handler`) or a model passes;
/// the server side of `wasi:http` and other packages do not.
#[test]
fn the_contract_check_accepts_every_import_the_linker_provides() {
    let sb = Sandbox::new(SandboxOptions::default()).expect("sandbox");
    let rt = rt();
    for guest in ["http_caller", "llm_caller"] {
        let p = std::path::PathBuf::from(env!("LILY_GUESTS_DIR")).join(format!("{guest}.wasm"));
        let l = rt.block_on(sb.load(&std::fs::read(&p).expect("guest"))).expect("load");
        assert!(
            l.imports.iter().any(|i| i.starts_with("wasi:http/") || i.starts_with("lily:runnable/llm")),
            "{guest}: {:?}",
            l.imports
        );
        for i in &l.imports {
            assert!(host_provides(i), "{guest} imports {i}, which the linker provides but the check refuses");
        }
    }
    for i in [
        "wasi:http/incoming-handler@0.2.12",
        "wasi:keyvalue/store@0.2.0",
        "wasi:http/types@0.3.0",
        "lily:runnable/llm@0.2.0",
    ] {
        assert!(!host_provides(i), "{i}");
    }
}

#[test]
fn builtin_envelopes_match_their_declared_output_schemas() {
    let sb = Sandbox::new(SandboxOptions::default()).expect("sandbox");
    let rt = rt();
    let spec_input = json!({"topic": "conformance", "context": ["a"]});
    for (id, _) in BUILTIN_IDS {
        let l = rt.block_on(sb.load(builtin_bytes(id).expect("bytes"))).expect("load");
        if l.imports.iter().any(|i| i.starts_with("lily:runnable/llm@")) {
            // Model-backed built-ins need a provider: host/tests/llm.rs runs
            // them against a scripted one and checks their output there.
            continue;
        }
        let input = match l.descriptor.kind {
            RunnableKind::Specialist | RunnableKind::Generic => spec_input.clone(),
            _ => json!({"topic": "conformance", "max_findings": 8, "reports": [
                {"specialist": "a.v1", "status": "ok", "findings": [{"title": "t", "recommendation": "r", "confidence": 0.5, "evidence": []}], "notes": ""},
                {"specialist": "b.v1", "status": "error", "findings": [], "notes": "trap: x"}]}),
        };
        let r = rt.block_on(sb.run(&l, StepRequest { input, ..Default::default() }));
        let env = r.outcome.unwrap_or_else(|c| panic!("{id}: {c:?}"));
        // `env.status` is an `EnvelopeStatus` (ok | partial): the type holds what was asserted here.
        assert!(schema_errors(&l.descriptor.output_schema, &env.payload).is_empty(), "{id}");
    }
}

#[test]
fn council_payload_validates_against_the_blueprint_output_schema() {
    let tmp = tempfile::tempdir().expect("tmp");
    lily::init::init_at(tmp.path()).expect("init");
    let lily = Lily::open(Root::at(tmp.path().canonicalize().expect("canon"), None).expect("root")).expect("open");
    let res = rt().block_on(lily.run_job("demo", RunOptions::default())).expect("run");
    assert_eq!(res.receipt.status, RunStatus::Succeeded);
    let reg = Registry::builtin();
    let bp = reg.resolve("council.v1", None).expect("council");
    let errors = schema_errors(&bp.meta.output_schema, &res.receipt.payload);
    assert!(errors.is_empty(), "{errors:?}");
    // The synthesizer's own declared schema (guest SDK) agrees with the host's.
    let sb = Sandbox::new(SandboxOptions::default()).expect("sandbox");
    let synth = rt().block_on(sb.load(builtin_bytes("default.v1").expect("bytes"))).expect("load");
    assert!(schema_errors(&synth.descriptor.output_schema, &res.receipt.payload).is_empty());
    // Envelope fields of the receipt.
    for k in [
        "status",
        "started_at",
        "ended_at",
        "target",
        "artifacts",
        "approvals_requested",
        "references",
        "payload",
        "job_id",
        "run_id",
        "trigger",
        "attempts",
        "policy",
        "components",
        "spec_sha256",
        "lily_version",
    ] {
        assert!(serde_json::to_value(&res.receipt).expect("json").get(k).is_some(), "receipt field {k}");
    }
    assert_eq!(
        res.receipt.payload["summary"],
        format!(
            "Council reviewed '{}' with 2 specialists; {} ranked findings generated.",
            res.receipt.payload["topic"].as_str().expect("topic"),
            res.receipt.payload["ranked_findings"].as_array().expect("findings").len()
        )
    );
}

#[test]
fn error_codes_are_the_stable_set() {
    let names: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    assert_eq!(
        names,
        vec![
            "job_not_found",
            "job_invalid_spec",
            "job_trigger_invalid",
            "job_target_unresolved",
            "job_bindings_invalid",
            "job_execution_failed",
            "job_policy_denied",
            "job_busy",
            "run_not_active",
            "runnable_in_use",
            "blueprint_not_found",
            "blueprint_bindings_invalid",
            "blueprint_compile_failed",
            "blueprint_execution_failed",
            "blueprint_contract_invalid",
        ]
    );
    let mut exits: Vec<i32> = ErrorCode::ALL.iter().map(|c| c.exit_status()).collect();
    assert!(exits.iter().all(|e| *e != 0 && *e != 1 && *e != 2));
    exits.dedup();
    assert!(
        exits.len() >= 5,
        "distinct exit statuses for spec, target/bindings, policy, execution, blueprint"
    );
}

#[test]
fn every_error_code_is_documented() {
    let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/runbook.md");
    let text = std::fs::read_to_string(&docs).expect("docs/runbook.md exists");
    for c in ErrorCode::ALL {
        assert!(text.contains(c.as_str()), "docs/runbook.md must document {c}");
    }
    // …and the exit-status table gives each `job_*` code its status, on the
    // row of that status (blueprint codes share the row "any blueprint_*").
    let rows: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("| ") && l[2..].chars().next().is_some_and(|ch| ch.is_ascii_digit()))
        .collect();
    for c in ErrorCode::ALL {
        let want = format!("| {} |", c.exit_status());
        let row = rows
            .iter()
            .find(|r| r.starts_with(&want))
            .unwrap_or_else(|| panic!("docs/runbook.md has no exit-status row for {}", c.exit_status()));
        let named = if c.as_str().starts_with("blueprint_") {
            row.contains("blueprint_*")
        } else {
            row.contains(&format!("`{c}`"))
        };
        assert!(named, "the runbook's exit-status row {} must name {c}: {row}", c.exit_status());
    }
}

/// The versioning rule: a component built against `lily:runnable@0.1.0`
/// (before `llm` existed; built by lily at b1af047) still loads and runs on
/// a host that speaks 0.1.1.
#[test]
fn a_component_built_against_0_1_0_still_loads_and_runs() {
    let bytes = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/r0-0.1.0-echo.wasm")).expect("fixture");
    let sb = Sandbox::new(SandboxOptions::default()).expect("sandbox");
    let rt = rt();
    let l = rt.block_on(sb.load(&bytes)).expect("a 0.1.0 component loads");
    assert!(l.imports.iter().any(|i| i == "lily:runnable/events@0.1.0"), "{:?}", l.imports);
    assert!(!l.imports.iter().any(|i| i.starts_with("lily:runnable/llm")));
    let r = rt.block_on(sb.run(
        &l,
        StepRequest {
            input: json!({"x": 1}),
            ..Default::default()
        },
    ));
    let env = r.outcome.unwrap_or_else(|c| panic!("{c:?}"));
    assert_eq!(env.payload, json!({"x": 1}));
}
