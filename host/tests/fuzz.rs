//! Bad input (issue 8): property tests over the job spec parser, the policy
//! parser, effect-path confinement and component descriptor handling (both
//! `validate_descriptor` and `Sandbox::load` on mutated component bytes).
//! Each property is bounded — a fixed number of cases (override with
//! `PROPTEST_CASES`) and a time budget per input — so they run in CI as
//! ordinary tests. Properties: no panic, bounded time, and where the input is
//! accepted, the accepted value keeps the invariants the rest of the host
//! relies on. YAML alias bombs and deeply nested documents are rejected
//! quickly.

use lily::ErrorCode;
use lily::policy::Policy;
use lily::sandbox::{Descriptor, RunnableKind, Sandbox, SandboxOptions, StepRequest, builtin_bytes, validate_descriptor};
use lily::spec;
use proptest::prelude::*;
use serde_json::{Value, json};
use std::path::{Component, Path};
use std::time::{Duration, Instant};

/// Time one parse may take, however hostile the input.
const BUDGET: Duration = Duration::from_secs(2);

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        max_shrink_iters: 200,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

const GOOD_SPEC: &str = "id: demo\ntitle: Demo\ntarget:\n  kind: blueprint\n  id: council.v1\n  version: \"^1\"\n  input: { topic: \"x\", context: [a, b] }\nbindings: { specialists: [security.v1, operations.v1], synthesizer: default.v1, workspace: ws }\ntrigger: { type: cron, cron: \"0 9 * * 1-5\", timezone: Europe/Berlin, catchup: latest }\nruntime: { timeout_seconds: 60, retry_max: 1, max_parallel_runs: 2, fuel: 1000, memory_mb: 64 }\noutput: { summary_format: markdown, artifacts: [report.md] }\n";

const GOOD_POLICY: &str = "version: 1\nlimits: { timeout_seconds: 60, fuel: 100000, memory_mb: 64 }\nrunnables:\n  \"acme.*\":\n    fs: [{ path: ws, mode: ro }, { path: out, mode: rw }]\n    env: [TOKEN]\n    network: [\"api.example.com:443\"]\neffects:\n  write_file: { default: require_approval, auto_approve: [\".lily/out/**\"], deny: [\"secrets/**\"] }\n  send: { default: deny }\n  approval_ttl_seconds: 60\n";

fn parse_spec(text: &str) -> Result<spec::JobSpec, lily::LilyError> {
    let t = Instant::now();
    let r = spec::parse(Path::new("fuzz.job.yaml"), text);
    assert!(t.elapsed() < BUDGET, "spec parse took {:?} on {} bytes", t.elapsed(), text.len());
    r
}

fn parse_policy(text: &str) -> Result<Policy, lily::LilyError> {
    let t = Instant::now();
    let r = Policy::parse(Path::new("policy.yaml"), text, None);
    assert!(t.elapsed() < BUDGET, "policy parse took {:?} on {} bytes", t.elapsed(), text.len());
    r
}

/// What an accepted spec must satisfy.
fn check_spec(s: &spec::JobSpec) {
    assert!(lily::paths::valid_id(&s.id), "accepted id {:?}", s.id);
    assert!(!s.title.trim().is_empty());
    assert_eq!(s.target.kind, "blueprint");
    assert!(s.bindings.is_object() && s.target.input.is_object());
    assert!((1..=86_400).contains(&s.runtime.timeout_seconds));
    assert!(s.runtime.retry_max <= 10 && (1..=1000).contains(&s.runtime.max_parallel_runs));
    for a in s.output.artifacts.iter().flatten() {
        assert!(!a.contains('/') && !a.contains('\\') && a != ".." && !a.is_empty(), "artifact {a:?}");
    }
}

fn check_policy_error(e: &lily::LilyError) {
    assert_eq!(e.code, ErrorCode::JobPolicyDenied);
    assert!(e.message.contains("policy.yaml"), "{}", e.message);
}

/// Edits applied to a valid document: insert a token, delete a range,
/// duplicate a line, replace a byte.
#[derive(Debug, Clone)]
enum Edit {
    Insert(usize, String),
    Delete(usize, usize),
    DuplicateLine(usize),
    Replace(usize, char),
}

const TOKENS: &[&str] = &[
    ":",
    "- ",
    "[",
    "]",
    "{",
    "}",
    ",",
    "\"",
    "'",
    "#",
    "&a ",
    "*a",
    "!!binary ",
    "!!python/object ",
    "<<: ",
    "? ",
    "|\n",
    ">\n",
    "\t",
    "\n",
    "  ",
    "~",
    "null",
    "1e999",
    "-1",
    "18446744073709551616",
    "0x10",
    "../",
    "/etc/passwd",
    "\u{0}",
    "\u{feff}",
    "%YAML 1.2\n",
    "---\n",
    "...\n",
    "id: x\n",
    "@",
    "`",
    "\\",
    "\u{202e}",
    "é",
];

fn edit_strategy() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (
            any::<usize>(),
            prop_oneof![proptest::sample::select(TOKENS).prop_map(str::to_string), "\\PC{0,12}"]
        )
            .prop_map(|(i, s)| Edit::Insert(i, s)),
        (any::<usize>(), 0usize..40).prop_map(|(i, n)| Edit::Delete(i, n)),
        any::<usize>().prop_map(Edit::DuplicateLine),
        (any::<usize>(), any::<char>()).prop_map(|(i, c)| Edit::Replace(i, c)),
    ]
}

fn apply(text: &str, edits: &[Edit]) -> String {
    let mut t: Vec<char> = text.chars().collect();
    for e in edits {
        let len = t.len().max(1);
        match e {
            Edit::Insert(i, s) => {
                let at = i % (t.len() + 1);
                t.splice(at..at, s.chars());
            }
            Edit::Delete(i, n) => {
                let at = i % len;
                let end = (at + n).min(t.len());
                if at < end {
                    t.drain(at..end);
                }
            }
            Edit::DuplicateLine(i) => {
                let s: String = t.iter().collect();
                let lines: Vec<&str> = s.split_inclusive('\n').collect();
                if !lines.is_empty() {
                    let k = i % lines.len();
                    let mut out: Vec<&str> = lines.clone();
                    out.insert(k, lines[k]);
                    t = out.concat().chars().collect();
                }
            }
            Edit::Replace(i, c) => {
                if !t.is_empty() {
                    let at = i % t.len();
                    t[at] = *c;
                }
            }
        }
    }
    t.into_iter().collect()
}

/// Arbitrary JSON values (bounded depth and size).
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        "\\PC{0,16}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            proptest::collection::btree_map("[a-z_]{1,10}", inner, 0..6).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A spec-shaped document with arbitrary values at every level.
fn spec_shaped() -> impl Strategy<Value = Value> {
    (
        prop_oneof![Just(json!("demo")), json_value()],
        json_value(),
        prop_oneof![Just(json!({"kind": "blueprint", "id": "step.v1"})), json_value()],
        json_value(),
        prop_oneof![Just(json!({"type": "manual"})), json_value()],
        prop_oneof![Just(json!({})), json_value()],
        prop_oneof![Just(json!({})), json_value()],
    )
        .prop_map(|(id, title, target, bindings, trigger, runtime, output)| {
            json!({"id": id, "title": title, "target": target, "bindings": bindings, "trigger": trigger, "runtime": runtime, "output": output})
        })
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn spec_parser_never_panics_on_arbitrary_text(text in "\\PC{0,400}") {
        if let Ok(s) = parse_spec(&text) {
            check_spec(&s);
        }
    }

    #[test]
    fn spec_parser_never_panics_on_edited_valid_specs(edits in proptest::collection::vec(edit_strategy(), 1..6)) {
        let text = apply(GOOD_SPEC, &edits);
        match parse_spec(&text) {
            Ok(s) => check_spec(&s),
            Err(e) => prop_assert!(matches!(e.code, ErrorCode::JobInvalidSpec | ErrorCode::JobTriggerInvalid), "{:?}", e.code),
        }
    }

    #[test]
    fn spec_parser_checks_every_field_of_spec_shaped_documents(doc in spec_shaped()) {
        let text = serde_norway::to_string(&doc).expect("yaml");
        if let Ok(s) = parse_spec(&text) {
            check_spec(&s);
        }
    }

    #[test]
    fn policy_parser_never_panics_on_arbitrary_text(text in "\\PC{0,400}") {
        if let Err(e) = parse_policy(&text) {
            check_policy_error(&e);
        }
    }

    #[test]
    fn policy_parser_never_panics_on_edited_valid_policies(edits in proptest::collection::vec(edit_strategy(), 1..6)) {
        let text = apply(GOOD_POLICY, &edits);
        match parse_policy(&text) {
            Ok(p) => {
                // Accepted policies keep their paths inside the root.
                for g in p.file.runnables.values() {
                    for fs in &g.fs {
                        let path = Path::new(&fs.path);
                        prop_assert!(!path.is_absolute() && !path.components().any(|c| c == Component::ParentDir), "{:?}", fs.path);
                    }
                }
            }
            Err(e) => check_policy_error(&e),
        }
    }

    #[test]
    fn effect_paths_accepted_by_the_host_stay_inside_the_root(path in prop_oneof![
        "\\PC{0,64}",
        proptest::collection::vec(prop_oneof![Just(".."), Just("."), Just(""), Just("/"), Just("\\"), Just("a"), Just("C:"), Just("\u{0}"), Just("%2e%2e")], 1..8)
            .prop_map(|parts| parts.join("/")),
    ]) {
        if lily::paths::check_relative_file(&path).is_ok() {
            let p = Path::new(&path);
            prop_assert!(!p.is_absolute(), "{path:?}");
            prop_assert!(p.components().all(|c| matches!(c, Component::Normal(_))), "{path:?}");
            prop_assert!(!path.contains('\0') && !path.contains(':'), "{path:?}");
            // Backslashes count as separators too (a Windows host).
            prop_assert!(path.split(['/', '\\']).all(|part| !part.is_empty() && part != "." && part != ".."), "{path:?}");
        }
    }

    #[test]
    fn descriptor_validation_never_panics_and_keeps_its_invariants(
        id in prop_oneof!["[a-z0-9][a-z0-9._-]{0,70}", "\\PC{0,80}", Just("../../etc".to_string())],
        version in prop_oneof!["[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}(-[a-z0-9.]{1,8})?", "\\PC{0,20}"],
        summary in "\\PC{0,40}",
        kind in prop_oneof![Just(RunnableKind::Specialist), Just(RunnableKind::Synthesizer), Just(RunnableKind::Llm), Just(RunnableKind::Generic)],
        input_schema in json_value(),
        output_schema in json_value(),
    ) {
        let d = Descriptor { id, version, summary, kind, input_schema, output_schema };
        if validate_descriptor(&d).is_ok() {
            prop_assert!(lily::paths::valid_id(&d.id));
            prop_assert!(semver::Version::parse(&d.version).is_ok());
            prop_assert!(!d.summary.trim().is_empty());
            prop_assert!(d.input_schema.is_object() || d.input_schema.is_boolean());
            prop_assert!(d.output_schema.is_object() || d.output_schema.is_boolean());
            // What the host does next with an accepted schema: compile it,
            // without panicking or fetching anything.
            let t = Instant::now();
            let _ = jsonschema::validator_for(&d.input_schema);
            prop_assert!(t.elapsed() < BUDGET);
        }
    }
}

// ---------------------------------------------------------------------------
// Alias bombs and deep nesting: rejected, and quickly.

fn alias_bomb(levels: usize, width: usize) -> String {
    let mut s = String::from("a0: &a0 [\"lol\"]\n");
    for l in 1..levels {
        let refs = vec![format!("*a{}", l - 1); width].join(", ");
        s.push_str(&format!("a{l}: &a{l} [{refs}]\n"));
    }
    s
}

#[test]
fn yaml_alias_bombs_are_rejected_quickly() {
    for (levels, width) in [(5, 9), (9, 9), (12, 10), (30, 4)] {
        let bomb = alias_bomb(levels, width);
        let as_spec = format!("{}{bomb}", "id: x\ntitle: x\n");
        let t = Instant::now();
        let e = spec::parse(Path::new("bomb.job.yaml"), &as_spec).expect_err("spec alias bomb");
        assert_eq!(e.code, ErrorCode::JobInvalidSpec);
        assert!(t.elapsed() < Duration::from_secs(1), "spec: {:?}", t.elapsed());
        // Policies may use anchors; a bomb must still end fast, as an error.
        let as_policy = format!(
            "version: 1\nrunnables: {{}}\nx:\n{}",
            bomb.lines().map(|l| format!("  {l}\n")).collect::<String>()
        );
        let t = Instant::now();
        let e = Policy::parse(Path::new("policy.yaml"), &as_policy, None).expect_err("policy alias bomb");
        check_policy_error(&e);
        assert!(t.elapsed() < Duration::from_secs(1), "policy: {:?} for {levels}x{width}", t.elapsed());
        // The bomb where a policy has free-form values: a merge key into a
        // known map.
        let merged = format!("{bomb}version: 1\nrunnables:\n  \"x\":\n    <<: *a{}\n", levels - 1);
        let t = Instant::now();
        let r = Policy::parse(Path::new("policy.yaml"), &merged, None);
        assert!(r.is_err(), "merged bomb accepted");
        assert!(t.elapsed() < Duration::from_secs(1), "policy merge: {:?}", t.elapsed());
    }
}

#[test]
fn deeply_nested_documents_are_rejected_quickly() {
    // Up to the 1 MiB size limit: 500 000 nested brackets. (The YAML
    // parser's own depth limit comes only after a scan quadratic in the
    // depth: ~8 s at 50 000 before the pre-scan existed.)
    for depth in [200usize, 2_000, 50_000, 500_000] {
        let flow_seq = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let flow_map = format!("{}1{}", "{a: ".repeat(depth), "}".repeat(depth));
        let unclosed = "[{".repeat(depth / 2);
        for doc in [&flow_seq, &flow_map, &unclosed] {
            let docs = [doc.clone(), format!("id: x\ntitle: x\nbindings: {doc}\n")];
            for wrapped in docs.iter().filter(|d| d.len() <= 1 << 20) {
                let t = Instant::now();
                let e = spec::parse(Path::new("deep.job.yaml"), wrapped).expect_err("deep spec");
                assert_eq!(e.code, ErrorCode::JobInvalidSpec);
                assert!(t.elapsed() < Duration::from_secs(1), "spec depth {depth}: {:?}", t.elapsed());
            }
            let policy = format!("version: 1\nrunnables: {doc}\n");
            if policy.len() <= 1 << 20 {
                let t = Instant::now();
                let e = Policy::parse(Path::new("policy.yaml"), &policy, None).expect_err("deep policy");
                check_policy_error(&e);
                assert!(t.elapsed() < Duration::from_secs(1), "policy depth {depth}: {:?}", t.elapsed());
            }
        }
    }
    // Block style: indentation bounds the depth to ~1 400 levels in 1 MiB.
    let block: String = (0..1_400).map(|i| format!("{}k:\n", " ".repeat(i))).collect();
    assert!(block.len() <= 1 << 20);
    for text in [
        block.clone(),
        format!("id: x\ntitle: x\nbindings:\n{}", block.lines().map(|l| format!(" {l}\n")).collect::<String>()),
    ] {
        let t = Instant::now();
        let e = spec::parse(Path::new("deep.job.yaml"), &text).expect_err("deep block spec");
        assert_eq!(e.code, ErrorCode::JobInvalidSpec);
        assert!(t.elapsed() < Duration::from_secs(1), "block spec: {:?}", t.elapsed());
    }
    let t = Instant::now();
    check_policy_error(&Policy::parse(Path::new("policy.yaml"), &format!("version: 1\nrunnables:\n{block}"), None).expect_err("deep block policy"));
    assert!(t.elapsed() < Duration::from_secs(1), "block policy: {:?}", t.elapsed());
    // Nesting within the limit still parses where it is allowed.
    let ok = format!(
        "id: x\ntitle: x\ntarget: {{ kind: blueprint, id: step.v1, input: {{ a: {}1{} }} }}\nbindings: {{ runnable: echo.v1 }}\ntrigger: {{ type: manual }}\nruntime: {{}}\noutput: {{}}\n",
        "[".repeat(20),
        "]".repeat(20)
    );
    spec::parse(Path::new("ok.job.yaml"), &ok).expect("20 levels are fine");
}

#[test]
fn oversized_documents_are_rejected_before_parsing() {
    let big = format!("id: x\n# {}\n", "x".repeat(2 << 20));
    let t = Instant::now();
    assert_eq!(spec::parse(Path::new("big.job.yaml"), &big).expect_err("big").code, ErrorCode::JobInvalidSpec);
    check_policy_error(&Policy::parse(Path::new("policy.yaml"), &format!("version: 1\n#{big}"), None).expect_err("big policy"));
    assert!(t.elapsed() < Duration::from_secs(1));
}

// ---------------------------------------------------------------------------
// Component bytes: a bounded number of mutations of a real component.

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Truncate(usize),
    Insert(usize, Vec<u8>),
    Remove(usize, usize),
    /// Overwrite 5 bytes with a large LEB128 (section / vector lengths).
    Leb(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<usize>(), 1u8..=255).prop_map(|(i, x)| Mutation::Flip(i, x)),
        1 => any::<usize>().prop_map(Mutation::Truncate),
        1 => (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..16)).prop_map(|(i, b)| Mutation::Insert(i, b)),
        1 => (any::<usize>(), 1usize..64).prop_map(|(i, n)| Mutation::Remove(i, n)),
        1 => any::<usize>().prop_map(Mutation::Leb),
    ]
}

fn mutate(bytes: &[u8], muts: &[Mutation]) -> Vec<u8> {
    let mut b = bytes.to_vec();
    for m in muts {
        let len = b.len().max(1);
        match m {
            Mutation::Flip(i, x) => {
                if !b.is_empty() {
                    let at = i % b.len();
                    b[at] ^= x;
                }
            }
            Mutation::Truncate(i) => b.truncate(i % len),
            Mutation::Insert(i, x) => {
                let at = i % (b.len() + 1);
                b.splice(at..at, x.iter().copied());
            }
            Mutation::Remove(i, n) => {
                let at = i % len;
                let end = (at + n).min(b.len());
                if at < end {
                    b.drain(at..end);
                }
            }
            Mutation::Leb(i) => {
                let at = i % len;
                for (k, v) in [0xff, 0xff, 0xff, 0xff, 0x0f].iter().enumerate() {
                    if let Some(x) = b.get_mut(at + k) {
                        *x = *v;
                    }
                }
            }
        }
    }
    b
}

#[test]
fn load_never_panics_on_mutated_components_and_the_sandbox_survives() {
    let sb = Sandbox::new(SandboxOptions::default()).expect("sandbox");
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("rt");
    let echo = builtin_bytes("echo.v1").expect("echo").to_vec();
    let cases: u32 = std::env::var("LILY_FUZZ_LOAD_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(48);
    let mut runner = proptest::test_runner::TestRunner::new(config(cases));
    let started = Instant::now();
    let (accepted, refused) = (std::cell::Cell::new(0u32), std::cell::Cell::new(0u32));
    let result = runner.run(&proptest::collection::vec(mutation(), 1..4), |muts| {
        let bytes = mutate(&echo, &muts);
        let t = Instant::now();
        match rt.block_on(sb.load(&bytes)) {
            Ok(loaded) => {
                accepted.set(accepted.get() + 1);
                // A mutation the validator accepts still runs under the caps.
                let r = rt.block_on(sb.run(
                    &loaded,
                    StepRequest {
                        input: json!({"x": 1}),
                        limits: lily::sandbox::Limits {
                            deadline: Duration::from_secs(2),
                            fuel: Some(500_000_000),
                            memory_bytes: 64 << 20,
                            ..Default::default()
                        },
                        ..Default::default()
                    },
                ));
                let _ = r.outcome;
            }
            Err(e) => {
                refused.set(refused.get() + 1);
                prop_assert!(!e.message.is_empty());
            }
        }
        // describe runs under a 5 s deadline; compile is bounded by the size.
        prop_assert!(t.elapsed() < Duration::from_secs(15), "load took {:?}", t.elapsed());
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    eprintln!(
        "{cases} mutated components: {} loaded, {} refused, in {:?}",
        accepted.get(),
        refused.get(),
        started.elapsed()
    );
    let loaded = rt.block_on(sb.load(&echo)).expect("the original still loads");
    let r = rt.block_on(sb.run(
        &loaded,
        StepRequest {
            input: json!({"still": "alive"}),
            ..Default::default()
        },
    ));
    assert_eq!(r.outcome.expect("echo").payload, json!({"still": "alive"}));
}
