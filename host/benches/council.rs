//! Council benchmark (issue 4): `council.v1` with 10, 100 and 1,000
//! specialists (the same runnable repeated), driven through the library;
//! and `security.v1` over a generated 10,000-file workspace.
//!
//! A plain program that prints markdown tables:
//! `cargo bench -p lily --profile dev --bench council`
//! (`just bench` runs every benchmark). Figures go to docs/performance.md.

mod common;
use common::*;
use lily::blueprints::{ExecCtx, Graph, Node, Prepared, Role, Settings, council};
use lily::runs::EventLog;
use lily::runs::EventSink;
use lily::sandbox::{DirGrant, Grants, Limits, Loaded, Perms, Sandbox, SandboxOptions, StepRequest, builtin_bytes};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const SIZES: &[usize] = &[10, 100, 1_000];
const WORKSPACE_FILES: usize = 10_000;
const SCAN_REPS: usize = 3;

fn main() {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores)
        .enable_all()
        .build()
        .expect("tokio runtime");
    println!("# council benchmark (issue 4)\n");
    print_machine(cores);
    let load_start = loadavg();
    let tmp = tempfile::tempdir().expect("temp dir");
    let sandbox = Arc::new(
        Sandbox::new(SandboxOptions {
            cache_dir: Some(tmp.path().join("cache")),
        })
        .expect("sandbox"),
    );
    let (security, synth) = rt.block_on(async {
        let s = sandbox.load(builtin_bytes("security.v1").expect("built-in")).await.expect("load security.v1");
        let d = sandbox.load(builtin_bytes("default.v1").expect("built-in")).await.expect("load default.v1");
        (s, d)
    });
    println!("RSS after loading security.v1 and default.v1: {}\n", kb(proc_status_kb("VmRSS")));

    council_table(&rt, &sandbox, &security, &synth, tmp.path(), cores);
    workspace_table(&rt, &sandbox, &security, tmp.path());
    println!("load average: start {load_start}, end {}", loadavg());
}

/// A map/reduce graph of `n` copies of `security.v1` and `default.v1`. The
/// bindings validation refuses duplicate specialists, so the graph is built
/// by hand: node ids `map:security.v1#i`, all pointing at one loaded component.
fn prepared(n: usize, specialist: &Arc<Loaded>, synth: &Arc<Loaded>) -> Prepared {
    let synth_id = "reduce:default.v1".to_string();
    let mut nodes = Vec::with_capacity(n + 1);
    let mut edges = Vec::with_capacity(n);
    let mut loaded = BTreeMap::new();
    let mut grants = BTreeMap::new();
    for i in 0..n {
        let id = format!("map:security.v1#{i}");
        nodes.push(Node {
            id: id.clone(),
            runnable: "security.v1".into(),
            role: Role::Specialist,
            dirs: vec![],
            env: vec![],
        });
        edges.push((id.clone(), synth_id.clone()));
        loaded.insert(id.clone(), specialist.clone());
        grants.insert(id, Grants::default());
    }
    nodes.push(Node {
        id: synth_id.clone(),
        runnable: "default.v1".into(),
        role: Role::Synthesizer,
        dirs: vec![],
        env: vec![],
    });
    loaded.insert(synth_id.clone(), synth.clone());
    grants.insert(synth_id, Grants::default());
    let bindings = json!({"specialists": ["security.v1", "operations.v1"], "synthesizer": "default.v1", "synth_strategy": "deterministic", "max_findings": 8});
    Prepared {
        graph: Graph {
            blueprint: council::ID.into(),
            // The synthesis strategy and max_findings execute reads.
            settings: Settings::Council(council::parse_bindings(&bindings).expect("bindings")),
            nodes,
            edges,
        },
        bindings,
        loaded,
        grants,
    }
}

struct CouncilRun {
    wall: Duration,
    cpu: Duration,
    peak_kb: Option<u64>,
    ranked: usize,
    ok_specialists: usize,
    synth_ms: u64,
    events: usize,
}

fn run_council(rt: &tokio::runtime::Runtime, sandbox: &Arc<Sandbox>, prepared: &Arc<Prepared>, parallelism: usize, dir: &Path) -> CouncilRun {
    let run_dir = tempfile::tempdir_in(dir).expect("run dir");
    let events = Arc::new(EventLog::create(run_dir.path(), "bench-run", None).expect("event log"));
    let ctx = Arc::new(ExecCtx::new(
        sandbox.clone(),
        events.clone() as Arc<dyn EventSink>,
        Limits::default(),
        parallelism,
        Instant::now() + Duration::from_secs(600),
    ));
    let input = json!({"topic": "payments service readiness", "context": ["benchmark council"]});
    let peak_reset = reset_peak_rss();
    let cpu = process_cpu();
    let t = Instant::now();
    let out = rt
        .block_on(council::execute(prepared, &input, &ctx))
        .unwrap_or_else(|f| panic!("council failed: {} ({})", f.message, f.cause));
    let wall = t.elapsed();
    let cpu = process_cpu().saturating_sub(cpu);
    let peak_kb = if peak_reset { proc_status_kb("VmHWM") } else { None };
    let steps = ctx.steps.lock().expect("steps").clone();
    let synth_ms = steps.iter().find(|s| s.node.starts_with("reduce:")).map(|s| s.duration_ms).unwrap_or(0);
    let payload: Value = out.payload;
    let ok_specialists = payload["participating_specialists"].as_array().map(Vec::len).unwrap_or(0);
    assert!(
        payload["failed_specialists"].as_array().is_some_and(Vec::is_empty),
        "failed specialists: {}",
        payload["failed_specialists"]
    );
    let events = std::fs::read_to_string(run_dir.path().join("events.jsonl"))
        .map(|t| t.lines().count())
        .unwrap_or(0);
    CouncilRun {
        wall,
        cpu,
        peak_kb,
        ranked: payload["ranked_findings"].as_array().map(Vec::len).unwrap_or(0),
        ok_specialists,
        synth_ms,
        events,
    }
}

fn council_table(rt: &tokio::runtime::Runtime, sandbox: &Arc<Sandbox>, security: &Arc<Loaded>, synth: &Arc<Loaded>, dir: &Path, cores: usize) {
    println!("## `council.v1` with N specialists (`security.v1` repeated, no workspace) + `default.v1`\n");
    println!(
        "`council::execute` called directly (graph built by hand, components loaded once), events written to a real `events.jsonl`. \
         Wall = the whole map + reduce; peak RSS = VmHWM of this process, reset before each run (`/proc/self/clear_refs`); \
         `cores busy` = CPU time of all threads / wall (runs of ≥ 100 ms only: a running thread's CPU time is only updated at ticks). \
         The reduce step gets all N reports.\n"
    );
    let mut rows = Vec::new();
    let mut configs: Vec<(usize, usize)> = SIZES.iter().map(|&n| (n, cores)).collect();
    configs.push((1_000, 1));
    for (n, par) in configs {
        let p = Arc::new(prepared(n, security, synth));
        let r = run_council(rt, sandbox, &p, par, dir);
        assert_eq!(r.ok_specialists, n, "every specialist reports");
        rows.push(vec![
            n.to_string(),
            par.to_string(),
            fmt(r.wall),
            fmt(r.wall / (n as u32 + 1)),
            format!("{} ms", r.synth_ms),
            if r.wall >= Duration::from_millis(100) {
                format!("{:.2}", r.cpu.as_secs_f64() / r.wall.as_secs_f64())
            } else {
                "n/a".into()
            },
            kb(r.peak_kb),
            r.ranked.to_string(),
            r.events.to_string(),
            if n == 1_000 { met(r.wall <= Duration::from_secs(1)) } else { String::new() },
        ]);
    }
    table(
        &[
            "specialists",
            "max_parallelism",
            "wall",
            "per step",
            "reduce step",
            "cores busy",
            "peak RSS",
            "ranked findings",
            "events",
            "target 1,000 ≤ 1 s",
        ],
        &rows,
    );
    println!();
}

/// Source-like text of about `size` bytes.
fn source_text(kind: &str, i: usize, size: usize) -> String {
    let lines: &[&str] = match kind {
        "py" => &[
            "def handle_request(request, session):",
            "    user = session.get_user(request.user_id)",
            "    if not user.is_active:",
            "        raise PermissionError(\"inactive user\")",
            "    return {\"status\": \"ok\", \"items\": list_items(user, limit=50)}",
            "",
            "# TODO: paginate results once the API supports cursors",
        ],
        "rs" => &[
            "pub fn parse_config(text: &str) -> Result<Config, Error> {",
            "    let mut cfg = Config::default();",
            "    for line in text.lines().filter(|l| !l.trim().is_empty()) {",
            "        let (k, v) = line.split_once('=').ok_or(Error::Syntax)?;",
            "        cfg.set(k.trim(), v.trim())?;",
            "    }",
            "    Ok(cfg)",
            "}",
        ],
        "js" => &[
            "export async function fetchOrders(client, customerId) {",
            "  const res = await client.get(`/customers/${customerId}/orders`);",
            "  if (!res.ok) throw new Error(`orders: ${res.status}`);",
            "  return res.json().then((o) => o.filter((x) => !x.cancelled));",
            "}",
        ],
        "yaml" => &[
            "service:",
            "  name: payments",
            "  replicas: 3",
            "  resources:",
            "    limits: { cpu: \"500m\", memory: \"512Mi\" }",
            "  healthcheck: /healthz",
        ],
        _ => &[
            "## Overview",
            "",
            "The payments service accepts orders, reserves stock and settles with the provider.",
            "Retries are idempotent; every request carries an idempotency key.",
        ],
    };
    let mut s = String::with_capacity(size + 128);
    s.push_str(&format!("// file {i}\n"));
    let mut k = i;
    while s.len() < size {
        s.push_str(lines[k % lines.len()]);
        s.push('\n');
        k += 1;
    }
    s
}

/// A workspace of `WORKSPACE_FILES` small source files in 100 directories
/// (0.5–6 KiB, mixed languages), with findings planted: credential literals,
/// access key ids, private keys, `.env` files and key files by name.
fn generate_workspace(root: &Path) -> (u64, usize) {
    let kinds = ["py", "rs", "js", "yaml", "md"];
    let mut bytes = 0u64;
    let mut planted = 0usize;
    for i in 0..WORKSPACE_FILES {
        let kind = kinds[i % kinds.len()];
        let dir = root.join(format!("services/svc{:02}/{}", i % 100, ["src", "lib", "config", "docs"][(i / 100) % 4]));
        std::fs::create_dir_all(&dir).expect("workspace dir");
        let size = 512 + (i * 7919) % 5_632;
        let mut text = source_text(kind, i, size);
        if i % 400 == 7 {
            text.push_str(&format!("DB_PASSWORD = \"s3cr3t-value-{i}\"\n"));
            planted += 1;
        }
        if i % 1_000 == 13 {
            text.push_str(&format!("aws_access_key_id = AKIA{:016}\n", i));
            planted += 1;
        }
        if i % 2_500 == 21 {
            text.push_str("-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY-----\n");
            planted += 1;
        }
        let name = match i {
            100 | 5_100 => ".env".to_string(),
            200 => "id_rsa".to_string(),
            300 => "server.pem".to_string(),
            _ => format!("module_{i:05}.{kind}"),
        };
        if matches!(i, 100 | 5_100 | 200 | 300) {
            planted += 1;
        }
        bytes += text.len() as u64;
        std::fs::write(dir.join(name), text).expect("workspace file");
    }
    (bytes, planted)
}

fn workspace_table(rt: &tokio::runtime::Runtime, sandbox: &Arc<Sandbox>, security: &Arc<Loaded>, dir: &Path) {
    let ws = dir.join("workspace");
    let t = Instant::now();
    let (bytes, planted) = generate_workspace(&ws);
    println!(
        "## `security.v1` over a {WORKSPACE_FILES}-file workspace\n\n{WORKSPACE_FILES} files, {:.1} MB, generated in {} \
         ({planted} planted findings across 5 detectors); one `Sandbox::run` with a read-only grant at `/workspace`, {SCAN_REPS} runs \
         (page cache warm: the files were just written). The guest walks the tree through WASI, reads every file and scans each line.\n",
        bytes as f64 / 1e6,
        fmt(t.elapsed())
    );
    let mut rows = Vec::new();
    for rep in 1..=SCAN_REPS {
        let req = StepRequest {
            input: json!({"topic": "payments service", "context": [], "workspace": "/workspace"}),
            grants: Grants {
                dirs: vec![DirGrant {
                    host: ws.clone(),
                    guest: "/workspace".into(),
                    perms: Perms::ReadOnly,
                }],
                ..Default::default()
            },
            ..Default::default()
        };
        let peak_reset = reset_peak_rss();
        let cpu = process_cpu();
        let t = Instant::now();
        let report = rt.block_on(sandbox.run(security, req));
        let wall = t.elapsed();
        let cpu = process_cpu().saturating_sub(cpu);
        let env = report.outcome.unwrap_or_else(|c| panic!("security.v1 failed: {}", c.message()));
        let notes = env.payload["notes"].as_str().unwrap_or("").to_string();
        let findings: Vec<String> = env.payload["findings"]
            .as_array()
            .map(|f| f.iter().map(|x| x["title"].as_str().unwrap_or("?").to_string()).collect())
            .unwrap_or_default();
        assert_eq!(findings.len(), 5, "all five detectors fire: {findings:?}");
        assert!(notes.contains(&format!("{WORKSPACE_FILES} files")), "scanned every file: {notes}");
        rows.push(vec![
            rep.to_string(),
            fmt(wall),
            format!("{:.1}", bytes as f64 / 1e6 / wall.as_secs_f64()),
            format!("{:.0}", WORKSPACE_FILES as f64 / wall.as_secs_f64()),
            format!("{:.2}", cpu.as_secs_f64() / wall.as_secs_f64()),
            format!("{:.1} G", report.fuel_used as f64 / 1e9),
            kb(if peak_reset { proc_status_kb("VmHWM") } else { None }),
            findings.len().to_string(),
        ]);
    }
    table(
        &["run", "wall", "MB/s", "files/s", "cores busy", "fuel (≈ wasm instr.)", "peak RSS", "findings"],
        &rows,
    );
    println!();
}

// ---- helpers (each bench is its own crate, so they are repeated) ----

/// Reset VmHWM to the current RSS (Linux ≥ 4.0); `false` if unsupported.
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn proc_status_kb(key: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    text.lines().find(|l| l.starts_with(key))?.split_whitespace().nth(1)?.parse().ok()
}

fn kb(v: Option<u64>) -> String {
    v.map(|k| format!("{:.1} MiB", k as f64 / 1024.0)).unwrap_or_else(|| "n/a".into())
}
