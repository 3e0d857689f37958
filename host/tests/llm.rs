//! Model calls end to end at the library level: the `llm-caller.v1` test
//! guest in the real sandbox, through `lily::llm` (allow-list, budget,
//! provider client), against a scripted OpenAI-compatible server on
//! 127.0.0.1 started by each test.

#[path = "../../tests/support/fake_llm.rs"]
mod fake_llm;
use fake_llm::*;

use lily::config::{Config, LlmConfig};
use lily::llm::{LlmService, RunModels};
use lily::sandbox::{ClockTape, Grants, Limits, LlmBudget, LlmGrant, Sandbox, SandboxOptions, StepReport, StepRequest};
use serde_json::{Value, json};

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

fn config(port: u16, extra: &str) -> LlmConfig {
    let text = format!(
        "llm:\n  providers:\n    fake: {{kind: openai, base_url: \"http://127.0.0.1:{port}/v1\", api_key_env: LILY_TEST_LLM_KEY, timeout_seconds: 2, max_retries: 2}}\n  models:\n    reviewer: {{provider: fake, model: fake-model-1, max_output_tokens: 64}}\n    other: {{provider: fake, model: fake-model-2}}\n{extra}"
    );
    Config::parse(Path::new("config.yaml"), &text).expect("config").llm
}

fn grant(models: &[&str], calls: u32, input: u64, output: u64) -> LlmGrant {
    LlmGrant {
        models: models.iter().map(|s| s.to_string()).collect(),
        budget: LlmBudget {
            max_calls: calls,
            max_input_tokens: input,
            max_output_tokens: output,
        },
        rule: "llm-caller.v1".into(),
    }
}

fn guest() -> Vec<u8> {
    let p = PathBuf::from(env!("LILY_GUESTS_DIR")).join("llm_caller.wasm");
    std::fs::read(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

struct World {
    sb: Arc<Sandbox>,
    rt: tokio::runtime::Runtime,
    loaded: Arc<lily::sandbox::Loaded>,
}

impl World {
    fn new() -> World {
        set_test_secrets();
        let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
        let sb = Arc::new(Sandbox::new(SandboxOptions::default()).expect("sandbox"));
        let loaded = rt.block_on(sb.load(&guest())).expect("load llm-caller");
        World { sb, rt, loaded }
    }

    fn run(&self, run: &RunModels, g: Option<&LlmGrant>, input: Value, replay: Option<ClockTape>) -> StepReport {
        self.rt.block_on(self.sb.run(
            &self.loaded,
            StepRequest {
                input,
                grants: Grants {
                    llm: g.cloned(),
                    ..Grants::default()
                },
                limits: Limits {
                    deadline: Duration::from_secs(10),
                    ..Limits::default()
                },
                seeds: None,
                replay_tape: replay,
                models: g.map(|g| run.for_step(g)),
            },
        ))
    }
}

fn payload(r: &StepReport) -> Value {
    match &r.outcome {
        Ok(env) => env.payload.clone(),
        Err(c) => panic!("step failed: {}", c.message()),
    }
}

fn call(model: &str, user: &str) -> Value {
    json!({"model": model, "user": user, "max_output_tokens": 16})
}

#[test]
fn a_granted_call_reaches_the_provider_with_the_key_and_the_answer_reaches_the_guest() {
    let fake = FakeProvider::start(vec![ok_reply("looks fine", 12, 3)]);
    let w = World::new();
    let run = RunModels::new(Arc::new(LlmService::new(&config(fake.port, ""))));
    let g = grant(&["reviewer"], 5, 10_000, 1_000);
    let r = w.run(&run, Some(&g), json!({"calls": [call("reviewer", "review this")]}), None);
    let p = payload(&r);
    assert_eq!(p["results"][0]["ok"]["text"], "looks fine", "{p}");
    assert_eq!(p["results"][0]["ok"]["input_tokens"], 12);
    assert_eq!(p["results"][0]["ok"]["call_id"], "llm-1");
    assert_eq!(p["models"], json!(["reviewer"]));
    let seen = fake.requests();
    assert_eq!(seen.len(), 1);
    assert!(
        seen[0]
            .0
            .to_ascii_lowercase()
            .contains(&format!("authorization: bearer {KEY}").to_ascii_lowercase()),
        "{}",
        seen[0].0
    );
    assert_eq!(seen[0].1["model"], "fake-model-1", "the alias is resolved to the provider's model");
    assert_eq!(seen[0].1["max_tokens"], 16);
    // The tape holds the call, and nothing of the key.
    assert_eq!(r.tape.calls.len(), 1);
    let tape = serde_json::to_string(&r.tape).expect("tape");
    assert!(!tape.contains(KEY), "the key must never be taped");
    assert!(tape.contains("fake-model-1") && tape.contains("looks fine"));
    // The budget settled to the reported usage: 5 calls - 1, 10000 - 12, 1000 - 3.
    assert_eq!(p["budget"], json!({"calls": 4, "input_tokens": 9988, "output_tokens": 997}));
}

#[test]
fn an_alias_outside_the_grant_is_refused_without_a_request() {
    let fake = FakeProvider::start(vec![ok_reply("x", 1, 1)]);
    let w = World::new();
    let run = RunModels::new(Arc::new(LlmService::new(&config(fake.port, ""))));
    let g = grant(&["reviewer"], 5, 10_000, 1_000);
    let p = payload(&w.run(&run, Some(&g), json!({"calls": [call("other", "x"), call("http://evil/v1", "x")]}), None));
    for i in 0..2 {
        assert!(p["results"][i]["error"].as_str().unwrap_or("").starts_with("model_not_allowed"), "{p}");
    }
    // Without any grant the guest is told so, too.
    let p = payload(&w.run(&run, None, json!({"calls": [call("reviewer", "x")]}), None));
    assert!(p["results"][0]["error"].as_str().unwrap_or("").contains("no llm grant"), "{p}");
    assert!(fake.requests().is_empty(), "nothing may reach the provider");
}

#[test]
fn a_call_that_could_overshoot_the_budget_is_refused_before_it_is_sent_even_from_eight_steps_at_once() {
    // Every call uses all 16 output tokens it may: 100 hold 6 calls.
    let fake = FakeProvider::start(vec![Reply {
        delay: Duration::from_millis(50),
        ..ok_reply("ok", 1, 16)
    }]);
    let w = World::new();
    let run = RunModels::new(Arc::new(LlmService::new(&config(fake.port, ""))));
    // Each call reserves 16 output tokens: 100 hold 6 calls, whatever the usage.
    let g = grant(&["reviewer"], 1_000, 1_000_000, 100);
    let (ok, refused): (usize, usize) = w.rt.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..8 {
            let (sb, loaded, models) = (w.sb.clone(), w.loaded.clone(), run.for_step(&g));
            let g = g.clone();
            set.spawn(async move {
                sb.run(
                    &loaded,
                    StepRequest {
                        input: json!({"calls": [call("reviewer", "a"), call("reviewer", "b")]}),
                        grants: Grants {
                            llm: Some(g),
                            ..Grants::default()
                        },
                        limits: Limits {
                            deadline: Duration::from_secs(10),
                            ..Limits::default()
                        },
                        seeds: None,
                        replay_tape: None,
                        models: Some(models),
                    },
                )
                .await
            });
        }
        let mut ok = 0;
        let mut refused = 0;
        while let Some(r) = set.join_next().await {
            let p = payload(&r.expect("task"));
            for res in p["results"].as_array().expect("results") {
                if res.get("ok").is_some() {
                    ok += 1;
                } else {
                    assert!(res["error"].as_str().unwrap_or("").starts_with("budget_exhausted"), "{res}");
                    refused += 1;
                }
            }
        }
        (ok, refused)
    });
    // 8 steps × 2 calls = 16 asked, 16 output tokens each: exactly 6 fit
    // in 100, however the steps interleave.
    assert_eq!(ok, 6, "{ok} calls granted out of a budget for 6");
    assert_eq!(ok + refused, 16);
    assert_eq!(fake.requests().len(), ok, "a refused call is never sent");
}

#[test]
fn retries_honour_retry_after_then_succeed_and_a_500_is_retried_then_reported() {
    let fake = FakeProvider::start(vec![status_reply(429, &[("retry-after", "1")]), ok_reply("after the wait", 2, 2)]);
    let w = World::new();
    let run = RunModels::new(Arc::new(LlmService::new(&config(fake.port, ""))));
    let g = grant(&["reviewer"], 5, 10_000, 1_000);
    let p = payload(&w.run(&run, Some(&g), json!({"calls": [call("reviewer", "x")]}), None));
    assert_eq!(p["results"][0]["ok"]["text"], "after the wait", "{p}");
    let seen = fake.requests();
    assert_eq!(seen.len(), 2);
    let waited = seen[1].2.duration_since(seen[0].2);
    assert!(waited >= Duration::from_millis(950), "Retry-After: 1 must be honoured, waited {waited:?}");

    let fake = FakeProvider::start(vec![status_reply(500, &[])]);
    let run = RunModels::new(Arc::new(LlmService::new(&config(fake.port, ""))));
    let p = payload(&w.run(&run, Some(&g), json!({"calls": [call("reviewer", "x")]}), None));
    let e = p["results"][0]["error"].as_str().unwrap_or("");
    assert!(e.starts_with("provider http_500"), "{e}");
    assert_eq!(fake.requests().len(), 3, "1 attempt + max_retries 2");
}

#[test]
fn a_slow_provider_times_out_and_malformed_or_schema_breaking_replies_are_errors() {
    let w = World::new();
    let g = grant(&["reviewer"], 10, 10_000, 1_000);
    let fake = FakeProvider::start(vec![Reply {
        delay: Duration::from_secs(4),
        ..ok_reply("too late", 1, 1)
    }]);
    let run = RunModels::new(Arc::new(LlmService::new(&config(fake.port, "").clone())));
    let p = payload(&w.run(&run, Some(&g), json!({"calls": [call("reviewer", "x")]}), None));
    assert!(p["results"][0]["error"].as_str().unwrap_or("").starts_with("provider timeout"), "{p}");

    let fake = FakeProvider::start(vec![Reply {
        body: "{not json".into(),
        ..ok_reply("", 0, 0)
    }]);
    let run = RunModels::new(Arc::new(LlmService::new(&config(fake.port, ""))));
    let p = payload(&w.run(&run, Some(&g), json!({"calls": [call("reviewer", "x")]}), None));
    assert!(p["results"][0]["error"].as_str().unwrap_or("").starts_with("provider bad_reply"), "{p}");

    let fake = FakeProvider::start(vec![ok_reply("{\"score\": \"high\"}", 3, 3)]);
    let run = RunModels::new(Arc::new(LlmService::new(&config(fake.port, ""))));
    let schema = json!({"type": "object", "required": ["score"], "properties": {"score": {"type": "number"}}});
    let r = w.run(
        &run,
        Some(&g),
        json!({"calls": [{"model": "reviewer", "user": "x", "max_output_tokens": 8, "response_format": schema}]}),
        None,
    );
    let p = payload(&r);
    assert!(
        p["results"][0]["error"].as_str().unwrap_or("").starts_with("provider reply_breaks_schema"),
        "{p}"
    );
    // The tokens of a reply that broke the format were spent: taped and charged.
    assert_eq!(
        match &r.tape.calls[0] {
            lily::sandbox::TapedCall::Llm(c) => c.usage(),
            other => panic!("not a model call: {other:?}"),
        },
        lily::sandbox::llm::Usage {
            input_tokens: 3,
            output_tokens: 3
        }
    );
    assert_eq!(p["budget"]["output_tokens"], 1000 - 3, "{p}");
    let sent = &fake.requests()[0].1;
    assert_eq!(sent["response_format"]["type"], "json_schema", "{sent}");
}

#[test]
fn replay_answers_from_the_tape_with_the_provider_gone_and_a_changed_request_is_a_replay_miss() {
    let w = World::new();
    let g = grant(&["reviewer"], 10, 10_000, 1_000);
    let input = json!({"calls": [call("reviewer", "first"), call("reviewer", "second")]});
    let (recorded, tape) = {
        let fake = FakeProvider::start(vec![ok_reply("answer", 5, 2)]);
        let run = RunModels::new(Arc::new(LlmService::new(&config(fake.port, ""))));
        let r = w.run(&run, Some(&g), input.clone(), None);
        (payload(&r), r.tape)
    };
    // The provider is stopped (dropped); a port nobody listens on.
    let dead = TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let run = RunModels::new(Arc::new(LlmService::new(&config(dead, ""))));
    let replayed = w.run(&run, Some(&g), input.clone(), Some(tape.clone()));
    assert_eq!(payload(&replayed), recorded, "byte-identical payload from the tape");
    assert!(replayed.replay_misses.is_empty());

    let changed = json!({"calls": [call("reviewer", "first"), call("reviewer", "a different prompt")]});
    let r = w.run(&run, Some(&g), changed, Some(tape));
    let p = payload(&r);
    assert!(p["results"][0].get("ok").is_some(), "{p}");
    assert!(p["results"][1]["error"].as_str().unwrap_or("").starts_with("replay_miss: llm-2"), "{p}");
    assert_eq!(r.replay_misses.len(), 1, "the divergence names the call: {:?}", r.replay_misses);
}

#[test]
fn the_sandbox_refuses_malformed_requests_itself() {
    let w = World::new();
    let run = RunModels::new(Arc::new(LlmService::new(&config(1, ""))));
    let g = grant(&["reviewer"], 10, 10_000, 1_000);
    let p = payload(&w.run(
        &run,
        Some(&g),
        json!({"calls": [
            {"model": "reviewer", "user": "x", "max_output_tokens": 0},
            {"model": "reviewer", "user": "x", "max_output_tokens": 4, "response_format": {"pattern": "(a)\\1"}},
        ]}),
        None,
    ));
    assert!(
        p["results"][0]["error"]
            .as_str()
            .unwrap_or("")
            .starts_with("invalid_request: max-output-tokens"),
        "{p}"
    );
    assert!(
        p["results"][1]["error"].as_str().unwrap_or("").starts_with("invalid_request: response-format"),
        "{p}"
    );
}

/// A root with the fake provider configured, `llm-caller.v1` installed and
/// a `step.v1` job `ask` that makes `calls`.
struct JobRoot {
    _tmp: tempfile::TempDir,
    lily: lily::jobs::Lily,
    rt: tokio::runtime::Runtime,
}

/// The fake provider as `reviewer` (`max_retries: 0`).
fn provider_config(port: u16) -> String {
    format!(
        "llm:\n  providers:\n    fake: {{kind: openai, base_url: \"http://127.0.0.1:{port}/v1\", api_key_env: LILY_TEST_LLM_KEY, timeout_seconds: 2, max_retries: 0}}\n  models:\n    reviewer: {{provider: fake, model: fake-model-1}}\n"
    )
}

fn job_root(port: u16, grant_llm: bool, calls: Value) -> JobRoot {
    set_test_secrets();
    let grant = if grant_llm {
        "runnables:\n  \"llm-caller.v1\":\n    llm: {models: [reviewer], max_calls: 4, max_input_tokens: 10000, max_output_tokens: 1000}\n"
    } else {
        "runnables: {}\n"
    };
    let job = format!(
        "id: ask\ntitle: ask\ntarget:\n  kind: blueprint\n  id: step.v1\n  input: {}\nbindings: {{ runnable: llm-caller.v1 }}\ntrigger: {{ type: manual }}\nruntime: {{ timeout_seconds: 30 }}\noutput: {{}}\n",
        json!({"calls": calls})
    );
    let (tmp, dir) = init_root(&provider_config(port), &format!("version: 1\n{grant}"), &[("ask", job)]);
    let root = lily::workspace::Root::at(dir, None).expect("root");
    let lily = lily::jobs::Lily::open(root).expect("open");
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    rt.block_on(lily.runnables.install(&lily.sandbox, &guest(), None, false))
        .expect("install llm-caller");
    JobRoot { _tmp: tmp, lily, rt }
}

#[test]
fn a_job_tapes_its_calls_replays_them_with_the_provider_stopped_and_never_writes_the_key() {
    let fake = FakeProvider::start(vec![ok_reply("job answer", 7, 3)]);
    let j = job_root(fake.port, true, json!([call("reviewer", "one"), call("reviewer", "two")]));
    let run = j.rt.block_on(j.lily.run_job("ask", lily::jobs::RunOptions::default())).expect("run");
    assert_eq!(run.receipt.status, lily::runs::RunStatus::Succeeded, "{:?}", run.receipt.error);
    let totals = run.receipt.llm.expect("the receipt sums the run's calls");
    assert_eq!((totals.calls, totals.input_tokens, totals.output_tokens), (2, 14, 6));
    assert_eq!(run.receipt.steps[0].llm, Some(totals));
    let decided = serde_json::to_string(&run.receipt.policy).expect("policy record");
    assert!(
        decided.contains("llm") && decided.contains("reviewer"),
        "the grant is a recorded decision: {decided}"
    );
    assert_eq!(fake.requests().len(), 2);
    assert!(files_holding(&j.lily.root.path, KEY).is_empty(), "the key was written under the root");
    let events = std::fs::read_to_string(run.run_dir.join("events.jsonl")).expect("events");
    assert_eq!(events.matches("\"llm_call\"").count(), 2, "one event per call");

    // The provider is gone: the replay is served from the tape.
    drop(fake);
    let (rep, original) =
        j.rt.block_on(lily::jobs::replay::replay(&j.lily, &run.receipt.run_id, Default::default(), Default::default()))
            .expect("replay");
    let v = lily::jobs::replay::verify(&run.run_dir, &original, &rep.run_dir, &rep.receipt);
    assert!(v.identical, "{v:?}");

    // A tape that no longer matches the requests: the divergence names the step and the call.
    let tapes = run.run_dir.join("clock_tapes.json");
    let text = std::fs::read_to_string(&tapes).expect("tape");
    let first_hash = serde_json::from_str::<Value>(&text).expect("json")["step:llm-caller.v1"]["calls"][1]["request_hash"]
        .as_str()
        .expect("hash")
        .to_string();
    std::fs::write(&tapes, text.replace(&first_hash, "sha256:0000")).expect("tamper");
    let (rep, original) =
        j.rt.block_on(lily::jobs::replay::replay(&j.lily, &run.receipt.run_id, Default::default(), Default::default()))
            .expect("replay");
    let v = lily::jobs::replay::verify(&run.run_dir, &original, &rep.run_dir, &rep.receipt);
    assert!(!v.identical);
    let diff = v.first_difference.unwrap_or_default();
    assert!(diff.contains("step step:llm-caller.v1") && diff.contains("llm-2"), "{diff}");
}

#[test]
fn a_component_that_imports_llm_without_a_grant_is_refused_before_it_runs_with_the_lines_to_add() {
    let fake = FakeProvider::start(vec![ok_reply("never", 1, 1)]);
    let j = job_root(fake.port, false, json!([call("reviewer", "x")]));
    let run = j.rt.block_on(j.lily.run_job("ask", lily::jobs::RunOptions::default())).expect("run");
    assert_eq!(run.receipt.status, lily::runs::RunStatus::Denied);
    let e = run.receipt.error.expect("error");
    assert_eq!(e.code, lily::ErrorCode::JobPolicyDenied);
    assert!(e.message.contains("llm-caller.v1 imports lily:runnable/llm"), "{}", e.message);
    let hint = e.cause["hint"].as_str().unwrap_or_default();
    assert!(
        hint.contains("\"llm-caller.v1\":\n    llm: {models: [reviewer], max_calls:"),
        "the hint holds the policy lines to add: {hint}"
    );
    assert!(run.receipt.steps.is_empty(), "no step ran");
    assert!(fake.requests().is_empty());
}

/// The citation the scripted review makes into [`council_root`]'s workspace.
const APP_PY_LINE_3: (&str, usize, &str) = ("src/app.py", 3, "API_KEY = \"abc123\"");

fn council_root(port: u16, strategy: &str) -> JobRoot {
    set_test_secrets();
    let job = format!(
        "id: review\ntitle: review\ntarget:\n  kind: blueprint\n  id: council.v1\n  input: {{topic: secrets handling}}\nbindings:\n  specialists: [llm-review.v1, security.v1]\n  synthesizer: llm-synth.v1\n  synth_strategy: {strategy}\n  workspace: ws\ntrigger: {{ type: manual }}\nruntime: {{ timeout_seconds: 30 }}\noutput: {{}}\n"
    );
    let (tmp, dir) = init_root(
        &provider_config(port),
        "version: 1\nrunnables:\n  \"llm-review.v1\":\n    fs: [{path: ws, mode: ro}]\n  \"security.v1\":\n    fs: [{path: ws, mode: ro}]\n  \"llm-*\":\n    llm: {models: [reviewer], max_calls: 10, max_input_tokens: 200000, max_output_tokens: 10000}\n",
        &[("review", job)],
    );
    std::fs::create_dir_all(dir.join("ws/src")).expect("ws");
    std::fs::write(dir.join("ws/src/app.py"), "import os\n\nAPI_KEY = \"abc123\"\nprint(API_KEY)\n").expect("file");
    let root = lily::workspace::Root::at(dir, None).expect("root");
    let lily = lily::jobs::Lily::open(root).expect("open");
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    JobRoot { _tmp: tmp, lily, rt }
}

#[test]
fn a_council_of_llm_runnables_keeps_only_grounded_findings_and_ranks_with_the_model() {
    let fake = council_provider("llm-review.v1", APP_PY_LINE_3);
    let j = council_root(fake.port, "llm");
    let run = j.rt.block_on(j.lily.run_job("review", lily::jobs::RunOptions::default())).expect("run");
    assert_eq!(run.receipt.status, lily::runs::RunStatus::Succeeded, "{:?}", run.receipt.error);
    let p = &run.receipt.payload;
    assert_eq!(p["summary"], "One secret is committed; move it out of the code.", "{p}");
    let review = p["reports"]
        .as_array()
        .expect("reports")
        .iter()
        .find(|r| r["specialist"] == "llm-review.v1")
        .expect("review report")
        .clone();
    assert_eq!(review["status"], "ok", "{review}");
    assert_eq!(
        review["findings"].as_array().map(Vec::len),
        Some(1),
        "the invented finding is dropped: {review}"
    );
    assert_eq!(review["findings"][0]["evidence"], json!(["src/app.py:3"]));
    assert!(review["notes"].as_str().unwrap_or("").contains("ungrounded_findings: 1"), "{review}");
    let totals = run.receipt.llm.expect("llm totals");
    assert_eq!(totals.calls, 2, "one review call, one synthesis call");
    // The request the review sent holds the workspace as numbered lines.
    let sent = fake.requests();
    let review_req = sent
        .iter()
        .find(|(_, b, _)| b["messages"][0]["content"].as_str().unwrap_or("").contains("You review"))
        .expect("review request");
    assert!(
        review_req.1["messages"][1]["content"]
            .as_str()
            .unwrap_or("")
            .contains("3: API_KEY = \"abc123\"")
    );
}

#[test]
fn an_llm_synthesis_that_invents_a_specialist_fails_llm_and_falls_back_under_llm_with_fallback() {
    let fake = council_provider("made-up.v1", APP_PY_LINE_3);
    let j = council_root(fake.port, "llm");
    let run = j.rt.block_on(j.lily.run_job("review", lily::jobs::RunOptions::default())).expect("run");
    assert_eq!(run.receipt.status, lily::runs::RunStatus::Failed);
    let e = run.receipt.error.expect("error");
    assert!(
        e.message.contains("invalid_model_output") || e.message.contains("not a specialist that reported"),
        "{}",
        e.message
    );

    let j = council_root(fake.port, "llm_with_fallback");
    let run = j.rt.block_on(j.lily.run_job("review", lily::jobs::RunOptions::default())).expect("run");
    assert_eq!(run.receipt.status, lily::runs::RunStatus::Succeeded, "{:?}", run.receipt.error);
    let summary = run.receipt.payload["summary"].as_str().unwrap_or("");
    assert!(summary.contains("[fallback: llm_synth_failed") && summary.contains("made-up.v1"), "{summary}");
}

#[test]
fn a_job_may_lower_its_model_budget_but_never_raise_it() {
    let fake = FakeProvider::start(vec![ok_reply("fine", 2, 2)]);
    let j = job_root(fake.port, true, json!([call("reviewer", "one"), call("reviewer", "two")]));
    let job = j.lily.root.jobs_dir.join("ask.job.yaml");
    let text = std::fs::read_to_string(&job).expect("job");
    std::fs::write(
        &job,
        text.replace("runtime: { timeout_seconds: 30 }", "runtime: { timeout_seconds: 30, llm: { max_calls: 1 } }"),
    )
    .expect("lower");
    let run = j.rt.block_on(j.lily.run_job("ask", lily::jobs::RunOptions::default())).expect("run");
    assert_eq!(run.receipt.status, lily::runs::RunStatus::Succeeded, "{:?}", run.receipt.error);
    let results = &run.receipt.payload["result"]["results"];
    assert!(results[0].get("ok").is_some(), "{results}");
    assert!(
        results[1]["error"].as_str().unwrap_or("").starts_with("budget_exhausted: no calls left"),
        "{results}"
    );
    assert_eq!(fake.requests().len(), 1);

    // A step that fails because its budget ran out is recorded as such.
    let failing = text
        .replace("runtime: { timeout_seconds: 30 }", "runtime: { timeout_seconds: 30, llm: { max_calls: 1 } }")
        .replace("{\"calls\":", "{\"fail_on_error\":true,\"calls\":");
    assert_ne!(failing, text);
    std::fs::write(&job, failing).expect("fail on error");
    let run = j.rt.block_on(j.lily.run_job("ask", lily::jobs::RunOptions::default())).expect("run");
    assert_eq!(run.receipt.status, lily::runs::RunStatus::Failed);
    assert_eq!(run.receipt.steps[0].outcome, "llm_budget_exhausted", "{:?}", run.receipt.steps[0]);

    std::fs::write(
        &job,
        text.replace("runtime: { timeout_seconds: 30 }", "runtime: { timeout_seconds: 30, llm: { max_calls: 99 } }"),
    )
    .expect("raise");
    let run = j.rt.block_on(j.lily.run_job("ask", lily::jobs::RunOptions::default())).expect("run");
    assert_eq!(run.receipt.status, lily::runs::RunStatus::Denied);
    let e = run.receipt.error.expect("error");
    assert!(e.message.contains("runtime.llm.max_calls = 99 exceeds"), "{}", e.message);
}
