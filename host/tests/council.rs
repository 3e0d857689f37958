//! `council.v1` as a library: bindings, the compiled graph, the
//! strategy/kind matrix and the report rendering. (The end-to-end council
//! behaviour, with real guests, is in `tests/e2e/council.rs`.)

use lily::ErrorCode;
use lily::blueprints::Registry;
use lily::blueprints::council::{self, CouncilOutput, FALLBACK_NODE, Finding, RankedFinding, Report, ReportStatus};
use lily::sandbox::RunnableKind;
use serde_json::json;

fn bindings(strategy: &str, synth: &str) -> serde_json::Value {
    json!({"specialists": ["security.v1", "operations.v1"], "synthesizer": synth, "synth_strategy": strategy})
}

#[test]
fn strategy_and_synthesizer_kind_must_agree() {
    let cases = [
        ("deterministic", RunnableKind::Synthesizer, true),
        ("deterministic", RunnableKind::Llm, false),
        ("deterministic", RunnableKind::Specialist, false),
        ("llm", RunnableKind::Llm, true),
        ("llm", RunnableKind::Synthesizer, false),
        ("llm_with_fallback", RunnableKind::Llm, true),
        ("llm_with_fallback", RunnableKind::Synthesizer, false),
        ("llm_with_fallback", RunnableKind::Generic, false),
    ];
    for (strategy, kind, ok) in cases {
        let b = council::parse_bindings(&bindings(strategy, "s.v1")).expect("bindings");
        let r = council::check_strategy(&b, kind);
        match (ok, r) {
            (true, Ok(())) => {}
            (false, Err(e)) => {
                assert_eq!(e.code, ErrorCode::BlueprintCompileFailed, "{strategy}/{kind:?}");
                assert!(e.message.starts_with("unresolved llm synthesizer: s.v1 is of kind "), "{}", e.message);
                assert!(e.message.contains(strategy), "{}", e.message);
            }
            (ok, r) => panic!("{strategy}/{kind:?}: expected ok={ok}, got {r:?}"),
        }
    }
}

#[test]
fn the_fallback_strategy_adds_a_deterministic_node_fed_by_everything() {
    let g = council::compile(&bindings("llm_with_fallback", "llm-fail.v1")).expect("compile");
    let ids: Vec<&str> = g.nodes.iter().map(|n| n.id.as_str()).collect();
    assert_eq!(ids, vec!["map:security.v1", "map:operations.v1", "reduce:llm-fail.v1", FALLBACK_NODE]);
    assert_eq!(g.node(FALLBACK_NODE).map(|n| n.runnable.as_str()), Some("default.v1"));
    for from in ["map:security.v1", "map:operations.v1", "reduce:llm-fail.v1"] {
        assert!(g.edges.contains(&(from.to_string(), FALLBACK_NODE.to_string())), "{from}");
    }
    // The other strategies have no fallback node.
    for s in ["deterministic", "llm"] {
        let g = council::compile(&bindings(s, "x.v1")).expect("compile");
        assert!(g.node(FALLBACK_NODE).is_none(), "{s}");
        assert_eq!(g.edges.len(), 2);
    }
}

#[test]
fn bindings_defaults_and_limits() {
    let b = council::parse_bindings(&json!({"specialists": ["a", "b"], "synthesizer": "s"})).expect("ok");
    assert_eq!(b.max_findings, 8);
    assert_eq!(b.synth_strategy, council::SynthStrategy::Deterministic);
    for n in [1, 20] {
        council::parse_bindings(&json!({"specialists": ["a", "b"], "synthesizer": "s", "max_findings": n})).expect("in range");
    }
    let e = council::parse_bindings(&json!({"specialists": "a", "synthesizer": "s"})).expect_err("type");
    assert_eq!(e.code, ErrorCode::BlueprintBindingsInvalid);
    assert!(e.message.starts_with("council.v1 bindings.specialists: "), "{}", e.message);
}

#[test]
fn the_registry_lists_council_with_its_artifacts() {
    let r = Registry::builtin();
    let b = r.resolve("council.v1", Some("1")).expect("council");
    assert_eq!(b.meta.artifacts, vec!["report.md", "evidence.json"]);
    let e = r.resolve("council.v1", Some(">=2")).expect_err("no v2");
    assert_eq!(e.code, ErrorCode::BlueprintNotFound);
    assert!(e.message.contains("available: 1.0.0"), "{}", e.message);
}

#[test]
fn the_report_lists_rankings_specialists_and_failures() {
    let finding = Finding {
        title: "Pipe | in title".into(),
        recommendation: "Fix it.\nNow.".into(),
        confidence: 0.5,
        evidence: (1..=12).map(|i| format!("src/a.rs:{i}")).collect(),
    };
    let out = CouncilOutput {
        topic: "t".into(),
        summary: "Council reviewed 't' with 2 specialists; 1 ranked findings generated.".into(),
        ranked_findings: vec![RankedFinding {
            title: finding.title.clone(),
            recommendation: finding.recommendation.clone(),
            confidence: 0.5,
            source_specialist: "a.v1".into(),
            evidence: finding.evidence.clone(),
        }],
        participating_specialists: vec!["a.v1".into(), "b.v1".into()],
        failed_specialists: vec!["b.v1".into()],
        reports: vec![
            Report {
                specialist: "a.v1".into(),
                status: ReportStatus::Ok,
                findings: vec![finding],
                notes: "fine".into(),
            },
            Report {
                specialist: "b.v1".into(),
                status: ReportStatus::Error,
                findings: vec![],
                notes: "trap: boom".into(),
            },
        ],
    };
    let md = council::render_report(&out);
    assert!(
        md.starts_with("# Council report: t\n\nCouncil reviewed 't' with 2 specialists; 1 ranked findings generated.\n"),
        "{md}"
    );
    assert!(
        md.contains("| 1 | Pipe \\| in title | a.v1 | 0.50 | Fix it. Now. |"),
        "cells are escaped:\n{md}"
    );
    assert!(md.contains("### a.v1 (ok)") && md.contains("### b.v1 (error)"), "{md}");
    assert!(
        md.contains("  - `src/a.rs:10`") && !md.contains("  - `src/a.rs:11`"),
        "evidence capped at 10:\n{md}"
    );
    assert!(md.contains("  - … 2 more in evidence.json"), "{md}");
    assert!(md.ends_with("## Failed specialists\n\n- b.v1: trap: boom\n"), "{md}");
}
