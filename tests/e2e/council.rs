//! Issue 4 — the `council.v1` blueprint as users run it: registry lookups,
//! bindings, compile failures, map-failure containment for every sandbox
//! cause, ranking, the synthesis strategies, payload conformance, the
//! built-in specialists' detectors, and `lily jobs plan`.

use crate::harness::{Env, council_job, event_types, events, receipt};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

const BUILTINS: &[&str] = &["security.v1", "operations.v1"];
const WITH_BAD: &[&str] = &["security.v1", "bad-specialist.v1", "operations.v1"];

fn sentence(topic: &str, n: usize, m: usize) -> String {
    format!("Council reviewed '{topic}' with {n} specialists; {m} ranked findings generated.")
}

fn input(topic: &str, mode: Option<&str>) -> String {
    match mode {
        Some(m) => format!("{{ topic: \"{topic}\", context: [\"mode:{m}\"] }}"),
        None => format!("{{ topic: \"{topic}\" }}"),
    }
}

fn titles(findings: &Value) -> Vec<(String, String)> {
    findings
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| {
            (
                f["source_specialist"].as_str().unwrap_or("").to_string(),
                f["title"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn payload_of(env: &Env, job: &str) -> (PathBuf, Value) {
    let run = env.run_dirs(job).pop().expect("a run");
    let r = receipt(&run);
    (run, r)
}

fn no_step_ran(run: &Path) {
    let types = event_types(run);
    assert!(!types.iter().any(|t| t == "step_started"), "no step may run: {types:?}");
}

// ---------------------------------------------------------------- registry

#[test]
fn blueprints_list_and_show() {
    let env = Env::new();
    let list = env.lily(&["blueprints", "list"]);
    list.expect_code(0);
    let row = list.stdout.lines().find(|l| l.starts_with("council.v1")).expect("council row");
    assert!(row.contains("1.0.0"), "{row}");
    assert!(list.stdout.lines().any(|l| l.starts_with("step.v1")), "{}", list.stdout);
    let json = env.lily(&["blueprints", "list", "--json"]).json();
    assert!(
        json.as_array()
            .expect("list")
            .iter()
            .any(|b| b["id"] == "council.v1" && b["version"] == "1.0.0")
    );

    let show = env.lily(&["blueprints", "show", "council.v1", "--json"]).json();
    assert_eq!(show["id"], "council.v1");
    assert_eq!(show["version"], "1.0.0");
    assert_eq!(show["artifacts"], json!(["report.md", "evidence.json"]));
    for s in ["bindings_schema", "input_schema", "output_schema"] {
        assert_eq!(show[s]["type"], "object", "{s}");
    }
    let req: Vec<&str> = show["bindings_schema"]["required"]
        .as_array()
        .expect("required")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(req, vec!["specialists", "synthesizer"]);
    let text = env.lily(&["blueprints", "show", "council.v1"]);
    text.expect_code(0);
    assert!(
        text.stdout.contains("bindings schema:") && text.stdout.contains("output schema:"),
        "{}",
        text.stdout
    );

    let missing = env.lily(&["blueprints", "show", "nope.v1"]);
    missing.expect_code(14);
    assert!(missing.stderr.starts_with("error[blueprint_not_found]: "), "{}", missing.stderr);
    assert!(missing.stderr.contains("council.v1"), "names the known blueprints: {}", missing.stderr);
}

#[test]
fn target_lookups_resolve_versions_or_fail_with_the_available_ones() {
    let env = Env::new();
    let base = council_job("t", BUILTINS, "default.v1", "deterministic", &input("versions", None), "", "{}");
    env.write_job("t", &base.replace("  id: council.v1\n", "  id: council.v1\n  version: \"2\"\n"));
    let out = env.lily(&["jobs", "run", "t"]);
    out.expect_code(11);
    assert!(out.errors().starts_with("error[job_target_unresolved]: "), "{}", out.stderr);
    assert!(out.stderr.contains("available: 1.0.0"), "{}", out.stderr);
    let (run, r) = payload_of(&env, "t");
    assert_eq!(r["status"], "failed");
    assert_eq!(r["error"]["code"], "job_target_unresolved");
    assert_eq!(r["error"]["cause"]["cause"]["code"], "blueprint_not_found");
    no_step_ran(&run);

    env.write_job("t", &base.replace("  id: council.v1\n", "  id: councils.v9\n"));
    let out = env.lily(&["jobs", "run", "t"]);
    out.expect_code(11);
    assert!(out.stderr.contains("no blueprint \"councils.v9\"; known: council.v1"), "{}", out.stderr);

    env.write_job("t", &base.replace("  id: council.v1\n", "  id: council.v1\n  version: \"^1.0\"\n"));
    env.lily(&["jobs", "run", "t"]).expect_code(0);
    let (_, r) = payload_of(&env, "t");
    assert_eq!(r["target"]["version"], "1.0.0");
    assert_eq!(r["target"]["requirement"], "^1.0");
}

#[test]
fn every_bindings_rule_is_job_bindings_invalid() {
    let env = Env::new();
    let cases: &[(&str, &str)] = &[
        ("specialists: [security.v1]\n  synthesizer: default.v1\n", "at least 2 specialists"),
        ("specialists: []\n  synthesizer: default.v1\n", "at least 2 specialists"),
        ("specialists: [security.v1, security.v1]\n  synthesizer: default.v1\n", "listed twice"),
        ("specialists: [security.v1, operations.v1]\n", "synthesizer"),
        ("synthesizer: default.v1\n", "specialists"),
        (
            "specialists: security.v1\n  synthesizer: default.v1\n",
            "council.v1 bindings.specialists: invalid type",
        ),
        (
            "specialists: [security.v1, 7]\n  synthesizer: default.v1\n",
            "council.v1 bindings.specialists.1: invalid type",
        ),
        (
            "specialists: [security.v1, operations.v1]\n  synthesizer: default.v1\n  max_findings: many\n",
            "bindings.max_findings: invalid type",
        ),
        ("specialists: [security.v1, \"Bad/Id\"]\n  synthesizer: default.v1\n", "not a valid runnable id"),
        (
            "specialists: [security.v1, operations.v1]\n  synthesizer: \"../default\"\n",
            "not a valid runnable id",
        ),
        (
            "specialists: [security.v1, operations.v1]\n  synthesizer: default.v1\n  max_findings: 0\n",
            "max_findings must be 1-20",
        ),
        (
            "specialists: [security.v1, operations.v1]\n  synthesizer: default.v1\n  max_findings: 21\n",
            "max_findings must be 1-20",
        ),
        (
            "specialists: [security.v1, operations.v1]\n  synthesizer: default.v1\n  synth_strategy: magic\n",
            "bindings.synth_strategy: unknown variant `magic`",
        ),
        (
            "specialists: [security.v1, operations.v1]\n  synthesizer: default.v1\n  workspace: ../up\n",
            "relative to the root",
        ),
        (
            "specialists: [security.v1, operations.v1]\n  synthesizer: default.v1\n  workspace: /etc\n",
            "relative to the root",
        ),
        (
            "specialists: [security.v1, operations.v1]\n  synthesizer: default.v1\n  workspace: \"\"\n",
            "relative to the root",
        ),
        (
            "specialists: [security.v1, operations.v1]\n  synthesizer: default.v1\n  moderator: x\n",
            "moderator",
        ),
    ];
    for (i, (bindings, needle)) in cases.iter().enumerate() {
        let id = format!("b{i}");
        let yaml = format!(
            "id: {id}\ntitle: Bindings {i}\ntarget:\n  kind: blueprint\n  id: council.v1\n  input: {{ topic: x }}\nbindings:\n  {bindings}trigger:\n  type: manual\nruntime: {{}}\noutput: {{}}\n"
        );
        env.write_job(&id, &yaml);
        let out = env.lily(&["jobs", "run", &id]);
        assert_eq!(out.code, 11, "{bindings}: {}", out.stderr);
        assert!(out.errors().starts_with("error[job_bindings_invalid]: "), "{bindings}: {}", out.stderr);
        assert!(
            out.errors().lines().next().unwrap_or("").contains(needle),
            "{needle:?} for {bindings}: {}",
            out.stderr
        );
        let run = env.only_run(&id);
        let r = receipt(&run);
        assert_eq!(r["error"]["code"], "job_bindings_invalid");
        assert_eq!(r["error"]["cause"]["cause"]["code"], "blueprint_bindings_invalid");
        no_step_ran(&run);
    }
}

#[test]
fn unresolved_runnable_ids_fail_compilation_listing_all_of_them_before_any_step() {
    let env = Env::new();
    env.write_job(
        "ghosts",
        &council_job(
            "ghosts",
            &["security.v1", "ghost.v1", "phantom.v1"],
            "nothing.v1",
            "deterministic",
            &input("ghosts", None),
            "",
            "{}",
        ),
    );
    let out = env.lily(&["jobs", "run", "ghosts"]);
    // The target's problem (exit 11), not an execution failure, and never
    // retried (the job allows retries).
    out.expect_code(11);
    assert!(
        out.stderr.contains(&format!(
            "error[job_target_unresolved]: {}:8: unresolved runnable ids: ghost.v1, phantom.v1, nothing.v1",
            env.jobs_dir().join("ghosts.job.yaml").display()
        )),
        "{}",
        out.stderr
    );
    let (run, r) = payload_of(&env, "ghosts");
    assert_eq!(r["status"], "failed");
    assert_eq!(r["error"]["code"], "job_target_unresolved");
    assert_eq!(r["error"]["cause"]["cause"]["code"], "blueprint_compile_failed", "{}", r["error"]);
    assert_eq!(r["attempts"].as_array().map(Vec::len), Some(0), "no attempt, no retry: {}", r["attempts"]);
    assert!(!event_types(&run).iter().any(|t| t == "job_attempt_failed"));
    no_step_ran(&run);
    // validate finds the same thing without running anything
    let v = env.lily(&["jobs", "validate", "--json"]).json();
    let row = v
        .as_array()
        .expect("rows")
        .iter()
        .find(|x| x["file"].as_str().unwrap_or("").ends_with("ghosts.job.yaml"))
        .cloned()
        .expect("row");
    assert_eq!(row["code"], "job_target_unresolved");
    assert!(row["message"].as_str().unwrap_or("").contains("ghost.v1, phantom.v1, nothing.v1"), "{row}");
}

// ---------------------------------------------------------------- containment

/// A council of the built-ins plus `bad-specialist.v1` in `mode`: the bad
/// one fails with `kind`, the others' findings survive, the run ends
/// `partial` (exit 4) — visibly, not as a success.
fn contained(mode: &str, runtime: &str, kind: &str, needle: &str, step_outcome: &str) {
    let env = Env::new();
    env.install("bad_specialist");
    let id = format!("bad-{}", mode.replace('_', "-"));
    env.write_job(
        &id,
        &council_job(&id, WITH_BAD, "default.v1", "deterministic", &input("hostile", Some(mode)), "", runtime),
    );
    let out = env.lily(&["jobs", "run", &id]);
    out.expect_code(4);
    assert!(out.stdout.starts_with(&format!("# {id} — partial")), "{}", out.stdout);
    let (run, r) = payload_of(&env, &id);
    assert_eq!(r["status"], "partial");
    let listed = env.lily(&["jobs", "runs", &id]).stdout;
    assert!(listed.contains("partial"), "{listed}");
    let p = &r["payload"];
    assert_eq!(p["failed_specialists"], json!(["bad-specialist.v1"]));
    assert_eq!(p["participating_specialists"], json!(WITH_BAD));
    let bad = &p["reports"][1];
    assert_eq!(bad["specialist"], "bad-specialist.v1");
    assert_eq!(bad["status"], "error");
    assert_eq!(bad["findings"], json!([]));
    let notes = bad["notes"].as_str().expect("notes");
    assert!(notes.starts_with(&format!("{kind}: ")), "{notes}");
    assert!(notes.contains(needle), "{needle:?} not in {notes}");
    assert!(
        !notes.starts_with(&format!("{kind}: {}: ", kind.replace('_', " "))),
        "the kind is said once: {notes}"
    );
    assert_eq!(p["reports"][0]["status"], "ok");
    assert_eq!(p["reports"][2]["status"], "ok");
    assert_eq!(
        titles(&p["ranked_findings"]),
        vec![
            ("security.v1".to_string(), "Security control gap review".to_string()),
            ("operations.v1".to_string(), "Operational hardening checkpoint".to_string())
        ]
    );
    assert_eq!(p["summary"], sentence("hostile", 3, 2));
    let report = std::fs::read_to_string(run.join("report.md")).expect("report.md");
    // The notes are the guest's text: the report holds them escaped as inert Markdown.
    assert!(
        report.contains(&format!("## Failed specialists\n\n- bad-specialist.v1: {}\n", lily::text::markdown(notes))),
        "{report}"
    );
    assert!(report.contains("### bad-specialist.v1 (error)"), "{report}");
    let summary = std::fs::read_to_string(run.join("summary.md")).expect("summary.md");
    assert!(summary.contains("## Failed specialists\n\n- bad-specialist.v1: "), "{summary}");
    let evs = events(&run);
    let step = evs
        .iter()
        .find(|e| e["type"] == "step_finished" && e["node"] == "map:bad-specialist.v1")
        .expect("the bad step finished");
    assert_eq!(step["outcome"], step_outcome, "{step}");
    let done = evs.iter().find(|e| e["type"] == "job_completed").expect("job_completed");
    assert_eq!(done["status"], "partial");
    assert!(out.stdout.contains("## Failed specialists"), "{}", out.stdout);
}

const CAPS: &str = "{ timeout_seconds: 30, memory_mb: 64, fuel: 2000000000 }";

#[test]
fn contained_guest_error() {
    contained("error", CAPS, "guest_error", "specialist_broke", "guest_error");
}

#[test]
fn contained_trap() {
    contained("trap", CAPS, "trap", "bad specialist panicked on purpose", "trap");
}

#[test]
fn contained_out_of_fuel() {
    contained("loop", CAPS, "out_of_fuel", "limit 2000000000", "out_of_fuel");
}

#[test]
fn contained_deadline_of_a_cpu_bound_specialist() {
    // No fuel cap: only the deadline stops it, and the synthesizer still
    // gets time to run within the same 2 s attempt.
    contained("loop", "{ timeout_seconds: 2 }", "deadline_exceeded", "ms exceeded", "deadline_exceeded");
}

#[test]
fn contained_deadline_of_a_blocked_specialist() {
    contained("sleep", "{ timeout_seconds: 2 }", "deadline_exceeded", "ms exceeded", "deadline_exceeded");
}

#[test]
fn contained_memory_limit() {
    contained("alloc", CAPS, "memory_limit", "67108864", "memory_limit");
}

#[test]
fn contained_output_too_large() {
    contained("huge", CAPS, "output_too_large", "exceeds the cap", "output_too_large");
}

#[test]
fn contained_payload_that_is_not_json() {
    contained("invalid_json", CAPS, "contract_invalid", "not valid JSON", "contract_invalid");
}

#[test]
fn contained_payload_that_is_not_a_specialist_report() {
    // Valid against the specialist's own (loose) schema, so the step is ok;
    // the council's check refuses it.
    contained("bad_output", CAPS, "contract_invalid", "not a specialist report", "ok");
}

#[test]
fn contained_findings_that_break_the_council_schema() {
    contained("bad_confidence", CAPS, "contract_invalid", "confidence 7.5", "ok");
    contained("empty_title", CAPS, "contract_invalid", "empty title", "ok");
}

#[test]
fn when_every_specialist_fails_the_run_fails_with_all_specialists_failed() {
    let env = Env::new();
    env.write_job(
        "starved",
        &council_job(
            "starved",
            BUILTINS,
            "default.v1",
            "deterministic",
            &input("starved", None),
            "",
            "{ fuel: 1000 }",
        ),
    );
    let out = env.lily(&["jobs", "run", "starved"]);
    out.expect_code(13);
    assert!(out.stderr.contains("error[job_execution_failed]: all 2 specialists failed"), "{}", out.stderr);
    let (run, r) = payload_of(&env, "starved");
    assert_eq!(r["status"], "failed");
    assert_eq!(r["error"]["code"], "job_execution_failed");
    assert_eq!(r["error"]["cause"]["code"], "blueprint_execution_failed");
    assert_eq!(r["error"]["cause"]["detail"]["kind"], "all_specialists_failed");
    assert_eq!(r["error"]["cause"]["detail"]["failed_specialists"], json!(BUILTINS));
    let mut started: Vec<String> = events(&run)
        .iter()
        .filter(|e| e["type"] == "step_started")
        .map(|e| e["node"].as_str().unwrap_or("").to_string())
        .collect();
    // Specialists run concurrently: their start order is not fixed.
    started.sort();
    assert_eq!(started, vec!["map:operations.v1", "map:security.v1"], "the synthesizer never ran");
}

// ---------------------------------------------------------------- ranking and synthesis

#[test]
fn ranking_breaks_ties_by_specialist_then_title_and_truncates() {
    let env = Env::new();
    env.install("bad_specialist");
    let job = |max: u32| {
        council_job(
            "rank",
            WITH_BAD,
            "default.v1",
            "deterministic",
            &input("ranking", Some("tie")),
            &format!("  max_findings: {max}\n"),
            "{}",
        )
    };
    env.write_job("rank", &job(20));
    env.lily(&["jobs", "run", "rank"]).expect_code(0);
    let (_, r) = payload_of(&env, "rank");
    let expected: Vec<(String, String)> = [
        ("bad-specialist.v1", "Alpha"),
        ("bad-specialist.v1", "Zeta"),
        ("security.v1", "Security control gap review"),
        ("operations.v1", "Operational hardening checkpoint"),
        ("bad-specialist.v1", "Low"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(titles(&r["payload"]["ranked_findings"]), expected);
    assert_eq!(r["payload"]["summary"], sentence("ranking", 3, 5));
    assert_eq!(r["payload"]["failed_specialists"], json!([]));

    env.write_job("rank", &job(3));
    env.lily(&["jobs", "run", "rank"]).expect_code(0);
    let (run, r) = payload_of(&env, "rank");
    assert_eq!(titles(&r["payload"]["ranked_findings"]), expected[..3].to_vec());
    assert_eq!(r["payload"]["summary"], sentence("ranking", 3, 3));
    // The reports keep every finding; only the ranking is truncated.
    assert_eq!(r["payload"]["reports"][1]["findings"].as_array().expect("findings").len(), 3);
    let evidence: Value = serde_json::from_str(&std::fs::read_to_string(run.join("evidence.json")).expect("evidence")).expect("json");
    assert_eq!(evidence["findings"], r["payload"]["ranked_findings"]);

    env.write_job(
        "rank",
        &council_job(
            "rank",
            BUILTINS,
            "default.v1",
            "deterministic",
            &input("ranking", None),
            "  max_findings: 1\n",
            "{}",
        ),
    );
    env.lily(&["jobs", "run", "rank"]).expect_code(0);
    let (run, r) = payload_of(&env, "rank");
    assert_eq!(
        titles(&r["payload"]["ranked_findings"]),
        vec![("security.v1".to_string(), "Security control gap review".to_string())]
    );
    assert_eq!(r["payload"]["ranked_findings"][0]["confidence"], 0.82);
    let report = std::fs::read_to_string(run.join("report.md")).expect("report");
    assert!(report.contains("| 1 | Security control gap review | security.v1 | 0.82 |"), "{report}");
    assert!(!report.contains("| 2 |"), "{report}");
}

#[test]
fn the_summary_sentence_is_exact_everywhere_it_appears() {
    let env = Env::new();
    let topic = "payments API (v2)";
    env.write_job(
        "sentence",
        &council_job("sentence", BUILTINS, "default.v1", "deterministic", &input(topic, None), "", "{}"),
    );
    let out = env.lily(&["jobs", "run", "sentence"]);
    out.expect_code(0);
    let want = sentence(topic, 2, 2);
    assert_eq!(want, "Council reviewed 'payments API (v2)' with 2 specialists; 2 ranked findings generated.");
    let (run, r) = payload_of(&env, "sentence");
    assert_eq!(r["payload"]["summary"], want.as_str());
    assert!(out.stdout.contains(&format!("## Summary\n\n{want}\n")), "{}", out.stdout);
    let report = std::fs::read_to_string(run.join("report.md")).expect("report");
    assert!(report.starts_with(&format!("# Council report: {topic}\n\n{want}\n")), "{report}");
}

fn strategy_run(env: &Env, id: &str, synth: &str, strategy: &str) -> (i32, PathBuf, Value) {
    env.write_job(id, &council_job(id, BUILTINS, synth, strategy, &input("strategies", None), "", "{}"));
    let out = env.lily(&["jobs", "run", id]);
    let (run, r) = payload_of(env, id);
    (out.code, run, r)
}

#[test]
fn synthesis_strategies_deterministic_llm_and_fallback() {
    let env = Env::new();
    env.install("llm_ok");
    env.install("llm_fail");
    let want = sentence("strategies", 2, 2);

    let (code, _, r) = strategy_run(&env, "det", "default.v1", "deterministic");
    assert_eq!(code, 0);
    assert_eq!(r["payload"]["summary"], want.as_str());

    let (code, run, r) = strategy_run(&env, "llm-ok", "llm-ok.v1", "llm");
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["payload"]["summary"], format!("{want} [llm]"));
    assert!(event_types(&run).iter().all(|t| t != "synth_fallback"));

    let (code, run, r) = strategy_run(&env, "llm-fail", "llm-fail.v1", "llm");
    assert_eq!(code, 13, "{r}");
    assert_eq!(r["status"], "failed");
    assert_eq!(r["error"]["code"], "job_execution_failed");
    assert_eq!(r["error"]["cause"]["detail"]["kind"], "synth_failed");
    assert_eq!(r["error"]["cause"]["detail"]["synth_error_code"], "llm_synth_failed");
    assert!(r["error"]["message"].as_str().unwrap_or("").contains("llm-fail.v1"), "{r}");
    assert!(event_types(&run).iter().all(|t| t != "synth_fallback"), "strategy llm never falls back");

    let (code, run, r) = strategy_run(&env, "fallback", "llm-fail.v1", "llm_with_fallback");
    assert_eq!(code, 0, "{r}");
    let summary = r["payload"]["summary"].as_str().expect("summary");
    assert!(summary.starts_with(&format!("{want} [fallback: llm_synth_failed (")), "{summary}");
    assert!(summary.ends_with(")]"), "{summary}");
    assert!(summary.contains("model_unavailable"), "the reason is kept: {summary}");
    assert_eq!(titles(&r["payload"]["ranked_findings"]).len(), 2);
    let evs = events(&run);
    assert!(evs.iter().any(|e| e["type"] == "synth_fallback" && e["synthesizer"] == "llm-fail.v1"));
    assert!(
        evs.iter()
            .any(|e| e["type"] == "step_finished" && e["node"] == "fallback:default.v1" && e["outcome"] == "ok")
    );

    let (code, run, r) = strategy_run(&env, "fallback-ok", "llm-ok.v1", "llm_with_fallback");
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["payload"]["summary"], format!("{want} [llm]"));
    assert!(
        !events(&run).iter().any(|e| e["type"] == "step_started" && e["node"] == "fallback:default.v1"),
        "no fallback when the llm succeeds"
    );
}

#[test]
fn a_strategy_bound_to_the_wrong_synthesizer_kind_fails_to_compile() {
    let env = Env::new();
    env.install("llm_ok");
    for (id, synth, strategy) in [
        ("det-llm", "llm-ok.v1", "deterministic"),
        ("llm-det", "default.v1", "llm"),
        ("fb-det", "default.v1", "llm_with_fallback"),
    ] {
        let (code, run, r) = strategy_run(&env, id, synth, strategy);
        assert_eq!(code, 13, "{id}: {r}");
        assert_eq!(r["error"]["code"], "job_execution_failed", "{id}");
        assert_eq!(r["error"]["cause"]["code"], "blueprint_compile_failed", "{id}");
        let msg = r["error"]["message"].as_str().unwrap_or("");
        assert!(msg.starts_with("unresolved llm synthesizer"), "{id}: {msg}");
        assert!(msg.contains(synth), "{id}: {msg}");
        no_step_ran(&run);
    }
}

// ---------------------------------------------------------------- conformance

#[test]
fn the_envelope_and_payload_conform_to_the_published_schemas() {
    let env = Env::new();
    env.lily(&["jobs", "run", "demo"]).expect_code(0);
    let (run, r) = payload_of(&env, "demo");
    let meta = env.lily(&["blueprints", "show", "council.v1", "--json"]).json();
    let check = |schema: &Value, value: &Value, what: &str| {
        let v = jsonschema::validator_for(schema).unwrap_or_else(|e| panic!("{what} schema does not compile: {e}"));
        let errors: Vec<String> = v.iter_errors(value).map(|e| format!("{e} at {}", e.instance_path())).collect();
        assert!(errors.is_empty(), "{what}: {errors:?}\n{value}");
    };
    check(&meta["output_schema"], &r["payload"], "payload");
    check(&meta["input_schema"], &r["target"]["input"], "input");
    let spec: Value = serde_norway::from_str(&std::fs::read_to_string(env.jobs_dir().join("demo.job.yaml")).expect("spec")).expect("yaml");
    check(&meta["bindings_schema"], &spec["bindings"], "bindings");
    // The schema really constrains: a payload missing a field fails it.
    let mut broken = r["payload"].clone();
    broken.as_object_mut().expect("object").remove("summary");
    let v = jsonschema::validator_for(&meta["output_schema"]).expect("compiles");
    assert!(!v.is_valid(&broken));

    // The shared envelope.
    for k in [
        "status",
        "started_at",
        "ended_at",
        "target",
        "artifacts",
        "approvals_requested",
        "references",
        "payload",
    ] {
        assert!(r.get(k).is_some_and(|v| !v.is_null()), "envelope field {k} missing: {r}");
    }
    for k in ["kind", "id", "version", "input"] {
        assert!(!r["target"][k].is_null(), "target.{k}");
    }
    assert_eq!(r["references"], json!(BUILTINS));
    assert_eq!(r["approvals_requested"], json!([]));
    let p = &r["payload"];
    assert_eq!(p["topic"], "example payments service readiness");
    for f in p["ranked_findings"].as_array().expect("ranked") {
        let c = f["confidence"].as_f64().expect("confidence");
        assert!((0.0..=1.0).contains(&c), "{f}");
        assert!(BUILTINS.contains(&f["source_specialist"].as_str().expect("source")), "{f}");
    }
    let evidence: Value = serde_json::from_str(&std::fs::read_to_string(run.join("evidence.json")).expect("evidence")).expect("json");
    assert_eq!(evidence["topic"], p["topic"]);
    assert_eq!(evidence["findings"], p["ranked_findings"]);
    assert_eq!(evidence["reports"].as_array().expect("reports").len(), 2);
}

// ---------------------------------------------------------------- detectors

fn allow_fixtures(env: &Env) {
    env.add_policy_runnables("  \"{security,operations}.v1\":\n    fs:\n      - path: fixtures\n        mode: ro\n");
}

fn findings_of(r: &Value, specialist: &str) -> Vec<Value> {
    crate::harness::report_of(r, specialist)["findings"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("no findings of {specialist}"))
}

fn evidence_of(findings: &[Value], title: &str) -> Vec<String> {
    findings
        .iter()
        .find(|f| f["title"] == title)
        .unwrap_or_else(|| panic!("no finding {title:?} in {findings:?}"))["evidence"]
        .as_array()
        .expect("evidence")
        .iter()
        .map(|e| e.as_str().expect("string").to_string())
        .collect()
}

fn title_set(findings: &[Value]) -> Vec<String> {
    let mut v: Vec<String> = findings.iter().map(|f| f["title"].as_str().unwrap_or("").to_string()).collect();
    v.sort();
    v
}

/// `path:line` evidence must point at a line of the fixture that holds `needle`.
fn assert_points_at(ws: &Path, evidence: &str, needle: &str) {
    let loc = evidence.split(' ').next().expect("location");
    let (path, line) = loc.rsplit_once(':').unwrap_or_else(|| panic!("not path:line: {evidence}"));
    let n: usize = line.parse().unwrap_or_else(|_| panic!("not path:line: {evidence}"));
    let text = std::fs::read_to_string(ws.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    let l = text.lines().nth(n - 1).unwrap_or_else(|| panic!("{path} has no line {n}"));
    assert!(l.contains(needle), "{evidence}: line is {l:?}");
}

#[test]
fn detectors_find_planted_secrets_and_gaps_with_path_line_evidence() {
    let env = Env::new();
    allow_fixtures(&env);
    let blob = vec![b'a'; 600 * 1024];
    let ws = env.write_tree(
        "fixtures/dirty",
        &[
            (
                "config/deploy_key.txt",
                b"# deploy key, do not share\n-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAnot-a-real-key\n-----END RSA PRIVATE KEY-----\n",
            ),
            ("deploy/aws.cfg", b"[default]\nregion = eu-west-1\naws_access_key_id = AKIAIOSFODNN7EXAMPLE\n"),
            ("config/settings.py", b"DEBUG = False\nDB_PASSWORD = \"correct-horse-battery-staple\"\n"),
            (".env", b"TOKEN=abc\n"),
            ("keys/id_rsa", b"placeholder\n"),
            (
                "src/app.py",
                b"def charge(amount):\n    # TODO: validate\n    return amount\n\n\ndef refund(amount):\n    # FIXME: audit\n    return amount  # XXX\n",
            ),
            ("assets/blob.dat", &blob),
        ],
    );
    env.write_job(
        "dirty",
        &council_job(
            "dirty",
            BUILTINS,
            "default.v1",
            "deterministic",
            &input("dirty tree", None),
            "  max_findings: 20\n  workspace: fixtures/dirty\n",
            "{}",
        ),
    );
    env.lily(&["jobs", "run", "dirty"]).expect_code(0);
    let (run, r) = payload_of(&env, "dirty");

    let sec = findings_of(&r, "security.v1");
    assert_eq!(
        title_set(&sec),
        vec![
            "Cloud access key id in source",
            "Committed private key",
            "Credential assigned to a literal",
            "Environment file committed",
            "Key material by file name"
        ]
    );
    assert_eq!(evidence_of(&sec, "Committed private key"), vec!["config/deploy_key.txt:2"]);
    assert_points_at(&ws, "config/deploy_key.txt:2", "PRIVATE KEY");
    assert_eq!(evidence_of(&sec, "Cloud access key id in source"), vec!["deploy/aws.cfg:3"]);
    assert_points_at(&ws, "deploy/aws.cfg:3", "AKIA");
    assert_eq!(evidence_of(&sec, "Credential assigned to a literal"), vec!["config/settings.py:2 (password)"]);
    assert_points_at(&ws, "config/settings.py:2", "DB_PASSWORD");
    assert_eq!(evidence_of(&sec, "Environment file committed"), vec![".env"]);
    assert_eq!(evidence_of(&sec, "Key material by file name"), vec!["keys/id_rsa"]);

    let ops = findings_of(&r, "operations.v1");
    assert_eq!(
        title_set(&ops),
        vec![
            "High TODO/FIXME/XXX density",
            "Missing README",
            "No CI configuration",
            "No licence",
            "No runbook or docs",
            "Oversized or binary blobs in the tree"
        ]
    );
    let markers = evidence_of(&ops, "High TODO/FIXME/XXX density");
    assert!(markers[0].starts_with("3 markers in "), "{markers:?}");
    assert_eq!(markers[1..].to_vec(), vec!["src/app.py:2", "src/app.py:7", "src/app.py:8"]);
    assert_points_at(&ws, "src/app.py:2", "TODO");
    assert_points_at(&ws, "src/app.py:7", "FIXME");
    assert_points_at(&ws, "src/app.py:8", "XXX");
    assert_eq!(
        evidence_of(&ops, "Oversized or binary blobs in the tree"),
        vec![format!("assets/blob.dat ({} bytes)", blob.len())]
    );

    // Every finding is ranked (max_findings 20), strongest first, and the
    // report shows its evidence.
    let ranked = r["payload"]["ranked_findings"].as_array().expect("ranked");
    assert_eq!(ranked.len(), 11);
    assert_eq!(ranked[0]["title"], "Committed private key");
    let conf: Vec<f64> = ranked.iter().map(|f| f["confidence"].as_f64().expect("c")).collect();
    assert!(conf.windows(2).all(|w| w[0] >= w[1]), "{conf:?}");
    let report = std::fs::read_to_string(run.join("report.md")).expect("report");
    assert!(report.contains("  - `config/deploy_key.txt:2`"), "{report}");
    assert!(report.contains("  - `deploy/aws.cfg:3`"), "{report}");
    // Secrets themselves never reach the run's files.
    for name in ["run_receipt.json", "events.jsonl", "report.md", "evidence.json", "summary.md"] {
        let text = std::fs::read_to_string(run.join(name)).expect("read");
        assert!(
            !text.contains("correct-horse-battery-staple") && !text.contains("AKIAIOSFODNN7EXAMPLE"),
            "{name} leaks a secret"
        );
    }
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read fixture dir") {
        let e = e.expect("entry");
        let target = to.join(e.file_name());
        if e.file_type().expect("type").is_dir() {
            copy_tree(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).expect("copy");
        }
    }
}

#[test]
fn detectors_report_nothing_on_a_clean_workspace() {
    let env = Env::new();
    allow_fixtures(&env);
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/workspaces/clean");
    copy_tree(&fixture, &env.root.join("fixtures/clean"));
    env.write_job(
        "clean",
        &council_job(
            "clean",
            BUILTINS,
            "default.v1",
            "deterministic",
            &input("clean tree", None),
            "  workspace: fixtures/clean\n",
            "{}",
        ),
    );
    env.lily(&["jobs", "run", "clean"]).expect_code(0);
    let (run, r) = payload_of(&env, "clean");
    assert_eq!(findings_of(&r, "security.v1"), Vec::<Value>::new(), "security false positives");
    assert_eq!(findings_of(&r, "operations.v1"), Vec::<Value>::new(), "operations false positives");
    for rep in r["payload"]["reports"].as_array().expect("reports") {
        assert_eq!(rep["status"], "ok");
        assert!(rep["notes"].as_str().unwrap_or("").starts_with("workspace-analysis: 7 files"), "{rep}");
    }
    assert_eq!(r["payload"]["summary"], sentence("clean tree", 2, 0));
    let report = std::fs::read_to_string(run.join("report.md")).expect("report");
    assert!(report.contains("## Ranked findings\n\nNo findings.\n"), "{report}");
}

// ---------------------------------------------------------------- plan

#[test]
fn plan_prints_nodes_edges_grants_and_limits_without_creating_a_run() {
    let env = Env::new();
    let out = env.lily(&["jobs", "plan", "demo"]);
    out.expect_code(0);
    let ws = env.lily_dir().join("examples/workspace");
    let t = &out.stdout;
    assert!(t.starts_with("job demo → blueprint council.v1@1.0.0\n"), "{t}");
    for needle in [
        "\nnodes:\n".to_string(),
        "  map:security.v1  (specialist 1.0.0".to_string(),
        "  map:operations.v1  (specialist 1.0.0".to_string(),
        "  reduce:default.v1  (synthesizer 1.0.0".to_string(),
        format!("      fs {} → /workspace (ro)", ws.display()),
        "\nedges:\n  map:security.v1 → reduce:default.v1\n  map:operations.v1 → reduce:default.v1\n".to_string(),
        "\nlimits: memory 256 MiB, fuel unmetered, deadline 120 s".to_string(),
        "\npolicy decisions:\n".to_string(),
        "security.v1: fs .lily/examples/workspace -> /workspace (ro) — granted".to_string(),
    ] {
        assert!(t.contains(&needle), "{needle:?} not in:\n{t}");
    }
    assert_eq!(t.matches(" → /workspace (ro)").count(), 2, "only the specialists get the workspace:\n{t}");

    let j = env.lily(&["jobs", "plan", "demo", "--json"]);
    j.expect_code(0);
    let v = j.json();
    let nodes: Vec<&str> = v["nodes"].as_array().expect("nodes").iter().filter_map(|n| n["id"].as_str()).collect();
    assert_eq!(nodes, vec!["map:security.v1", "map:operations.v1", "reduce:default.v1"]);
    assert_eq!(
        v["edges"],
        json!([["map:security.v1", "reduce:default.v1"], ["map:operations.v1", "reduce:default.v1"]])
    );
    assert_eq!(v["nodes"][0]["grants"]["dirs"][0]["host"], ws.display().to_string());
    assert_eq!(v["nodes"][2]["grants"]["dirs"], json!([]));
    assert_eq!(v["limits"]["deadline"], 120_000);
    assert!(v["nodes"][0]["digest"].as_str().unwrap_or("").starts_with("sha256:"));

    // The fallback strategy adds its deterministic node.
    env.install("llm_fail");
    env.write_job(
        "fb",
        &council_job("fb", BUILTINS, "llm-fail.v1", "llm_with_fallback", &input("plan", None), "", "{}"),
    );
    let v = env.lily(&["jobs", "plan", "fb", "--json"]).json();
    let nodes: Vec<&str> = v["nodes"].as_array().expect("nodes").iter().filter_map(|n| n["id"].as_str()).collect();
    assert_eq!(nodes, vec!["map:security.v1", "map:operations.v1", "reduce:llm-fail.v1", "fallback:default.v1"]);
    assert!(
        v["edges"]
            .as_array()
            .expect("edges")
            .contains(&json!(["reduce:llm-fail.v1", "fallback:default.v1"]))
    );

    // A plan the policy refuses fails the same way a run would.
    let demo = std::fs::read_to_string(env.jobs_dir().join("demo.job.yaml")).expect("demo");
    env.write_job(
        "denied",
        &demo.replace("id: demo", "id: denied").replace("timeout_seconds: 120", "timeout_seconds: 9999"),
    );
    let out = env.lily(&["jobs", "plan", "denied"]);
    out.expect_code(12);
    assert!(out.stderr.starts_with("error[job_policy_denied]: "), "{}", out.stderr);

    let runs: Vec<PathBuf> = std::fs::read_dir(env.runs_dir())
        .expect("runs dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    assert!(runs.is_empty(), "plan never creates a run: {runs:?}");
}
