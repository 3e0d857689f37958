//! Real guests in the real sandbox: every test guest, every cause, and after
//! each hostile one the same sandbox still runs the echo guest.

use lily::sandbox::{Cause, DirGrant, Grants, Limits, Perms, Sandbox, SandboxOptions, StepRequest, builtin_bytes};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn guest(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("LILY_GUESTS_DIR")).join(format!("{name}.wasm"));
    std::fs::read(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime")
}

struct Fixture {
    sb: Sandbox,
    rt: tokio::runtime::Runtime,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture {
            sb: Sandbox::new(SandboxOptions::default()).expect("sandbox"),
            rt: rt(),
        }
    }

    fn run(&self, bytes: &[u8], input: Value, grants: Grants, limits: Limits) -> lily::sandbox::StepReport {
        self.rt.block_on(async {
            let loaded = self.sb.load(bytes).await.expect("load");
            self.sb
                .run(
                    &loaded,
                    StepRequest {
                        input,
                        grants,
                        limits,
                        ..Default::default()
                    },
                )
                .await
        })
    }

    fn probe(&self, input: Value, grants: Grants, limits: Limits) -> lily::sandbox::StepReport {
        self.run(&guest("probe"), input, grants, limits)
    }

    /// The same sandbox still runs the echo guest.
    fn assert_echo_still_works(&self) {
        let echo = builtin_bytes("echo.v1").expect("echo builtin");
        let r = self.run(echo, json!({"hello": "world"}), Grants::default(), Limits::default());
        let env = r.outcome.expect("echo ok");
        assert_eq!(env.payload, json!({"hello": "world"}));
    }
}

fn fast_limits() -> Limits {
    Limits {
        deadline: Duration::from_secs(10),
        ..Limits::default()
    }
}

fn payload(r: &lily::sandbox::StepReport) -> Value {
    r.outcome.as_ref().expect("step ok").payload.clone()
}

#[test]
fn echo_round_trips_and_emits_an_event() {
    let f = Fixture::new();
    let echo = builtin_bytes("echo.v1").expect("echo");
    let r = f.run(echo, json!({"a": [1, 2, 3]}), Grants::default(), Limits::default());
    assert_eq!(payload(&r), json!({"a": [1, 2, 3]}));
    assert_eq!(r.events.len(), 1);
    assert_eq!(r.events[0].kind, "echoed");
    assert!(r.fuel_used > 0);
}

#[test]
fn describe_reports_the_descriptor_and_digest() {
    let f = Fixture::new();
    let loaded = f.rt.block_on(f.sb.load(builtin_bytes("security.v1").expect("security"))).expect("load");
    assert_eq!(loaded.descriptor.id, "security.v1");
    assert_eq!(loaded.descriptor.kind, lily::sandbox::RunnableKind::Specialist);
    assert!(loaded.digest.starts_with("sha256:"));
    let echo = f.rt.block_on(f.sb.load(builtin_bytes("echo.v1").expect("echo"))).expect("load");
    assert!(echo.imports.iter().any(|i| i.starts_with("lily:runnable/events")), "{:?}", echo.imports);
}

fn fs_tree() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let tmp = tempfile::tempdir().expect("tmp");
    let grant = tmp.path().join("grant");
    let outside = tmp.path().join("outside");
    std::fs::create_dir_all(&grant).expect("mkdir");
    std::fs::create_dir_all(&outside).expect("mkdir");
    std::fs::write(grant.join("inside.txt"), "inside").expect("write");
    std::fs::write(outside.join("secret.txt"), "secret").expect("write");
    #[cfg(unix)]
    std::os::unix::fs::symlink(outside.join("secret.txt"), grant.join("link")).expect("symlink");
    (tmp, grant, outside)
}

fn ro(grant: &std::path::Path) -> Grants {
    Grants {
        dirs: vec![DirGrant {
            host: grant.to_path_buf(),
            guest: "/data".into(),
            perms: Perms::ReadOnly,
        }],
        ..Grants::default()
    }
}

#[test]
fn reads_inside_its_grant_and_is_refused_outside_it() {
    let f = Fixture::new();
    let (_tmp, grant, outside) = fs_tree();
    let r = f.probe(json!({"op": "read", "path": "/data/inside.txt"}), ro(&grant), fast_limits());
    assert_eq!(payload(&r)["content"], "inside");
    let attempts = [
        "/data/../outside/secret.txt".to_string(),
        outside.join("secret.txt").display().to_string(),
        "/data/link".to_string(),
        "/etc/passwd".to_string(),
        format!("/data/{}", "a/".repeat(2000)),
    ];
    for path in attempts {
        let r = f.probe(json!({"op": "read", "path": path}), ro(&grant), fast_limits());
        let p = payload(&r);
        assert_eq!(p["ok"], false, "read of {path} must be refused, got {p}");
        assert!(p.get("content").is_none());
    }
    f.assert_echo_still_works();
}

#[test]
fn writes_into_a_read_only_grant_are_refused() {
    let f = Fixture::new();
    let (_tmp, grant, _outside) = fs_tree();
    let r = f.probe(json!({"op": "write", "path": "/data/new.txt", "content": "x"}), ro(&grant), fast_limits());
    assert_eq!(payload(&r)["ok"], false);
    assert!(!grant.join("new.txt").exists());
    let rw = Grants {
        dirs: vec![DirGrant {
            host: grant.clone(),
            guest: "/data".into(),
            perms: Perms::ReadWrite,
        }],
        ..Grants::default()
    };
    let r = f.probe(json!({"op": "write", "path": "/data/new.txt", "content": "x"}), rw, fast_limits());
    assert_eq!(payload(&r)["ok"], true);
    assert_eq!(std::fs::read_to_string(grant.join("new.txt")).expect("read"), "x");
    f.assert_echo_still_works();
}

#[test]
fn env_vars_not_granted_are_absent() {
    let f = Fixture::new();
    // SAFETY-free: set in this test process only; the guest must not see it.
    let r = f.probe(json!({"op": "env", "name": "PATH"}), Grants::default(), fast_limits());
    assert_eq!(payload(&r)["value"], Value::Null);
    let granted = Grants {
        env: vec![("GREETING".into(), "hi".into())],
        ..Grants::default()
    };
    let r = f.probe(json!({"op": "env_all"}), granted, fast_limits());
    assert_eq!(payload(&r)["names"], json!(["GREETING"]));
    f.assert_echo_still_works();
}

#[test]
fn sockets_are_denied_without_a_network_grant_and_recorded() {
    let f = Fixture::new();
    let r = f.probe(json!({"op": "connect", "addr": "127.0.0.1:9"}), Grants::default(), fast_limits());
    assert_eq!(payload(&r)["ok"], false);
    assert!(!r.denied_connections.is_empty(), "denied connection must be recorded");
    assert!(r.denied_connections.iter().any(|d| d.contains("127.0.0.1:9")), "{:?}", r.denied_connections);
    let r = f.probe(json!({"op": "resolve", "host": "example.com"}), Grants::default(), fast_limits());
    assert_eq!(payload(&r)["ok"], false);
    f.assert_echo_still_works();
}

#[test]
fn infinite_loop_is_stopped_by_fuel() {
    let f = Fixture::new();
    let limits = Limits {
        fuel: Some(50_000_000),
        ..fast_limits()
    };
    let r = f.probe(json!({"op": "loop"}), Grants::default(), limits);
    assert!(matches!(r.outcome, Err(Cause::OutOfFuel { limit: 50_000_000 })), "{:?}", r.outcome);
    f.assert_echo_still_works();
}

#[test]
fn infinite_loop_without_fuel_is_stopped_by_the_deadline() {
    let f = Fixture::new();
    let limits = Limits {
        fuel: None,
        deadline: Duration::from_millis(300),
        ..Limits::default()
    };
    let t = Instant::now();
    let r = f.probe(json!({"op": "loop"}), Grants::default(), limits);
    assert!(matches!(r.outcome, Err(Cause::DeadlineExceeded { .. })), "{:?}", r.outcome);
    assert!(t.elapsed() < Duration::from_secs(5), "guest really stopped");
    f.assert_echo_still_works();
}

#[test]
fn sleeping_guest_is_stopped_by_the_deadline() {
    let f = Fixture::new();
    let limits = Limits {
        deadline: Duration::from_millis(300),
        ..Limits::default()
    };
    let t = Instant::now();
    let r = f.probe(json!({"op": "sleep", "ms": 60_000}), Grants::default(), limits);
    assert!(matches!(r.outcome, Err(Cause::DeadlineExceeded { .. })), "{:?}", r.outcome);
    assert!(t.elapsed() < Duration::from_secs(5));
    f.assert_echo_still_works();
}

#[test]
fn unbounded_allocation_is_stopped_by_the_memory_limit() {
    let f = Fixture::new();
    let limits = Limits {
        memory_bytes: 32 << 20,
        ..fast_limits()
    };
    let r = f.probe(json!({"op": "alloc"}), Grants::default(), limits);
    assert!(matches!(r.outcome, Err(Cause::MemoryLimit { .. })), "{:?}", r.outcome);
    f.assert_echo_still_works();
}

#[test]
fn stack_overflow_is_a_trap() {
    let f = Fixture::new();
    let r = f.probe(json!({"op": "recurse"}), Grants::default(), fast_limits());
    match &r.outcome {
        Err(Cause::Trap { message }) => assert!(message.contains("stack") || message.contains("overflow"), "{message}"),
        other => panic!("expected a trap, got {other:?}"),
    }
    f.assert_echo_still_works();
}

#[test]
fn panic_is_a_trap_with_the_panic_message() {
    let f = Fixture::new();
    let r = f.probe(json!({"op": "panic", "message": "boom from the guest"}), Grants::default(), fast_limits());
    match &r.outcome {
        Err(Cause::Trap { message }) => assert!(message.contains("boom from the guest"), "{message}"),
        other => panic!("expected a trap, got {other:?}"),
    }
    f.assert_echo_still_works();
}

#[test]
fn output_violating_the_declared_schema_is_contract_invalid() {
    let f = Fixture::new();
    for op in ["bad_output", "invalid_json"] {
        let r = f.probe(json!({"op": op}), Grants::default(), fast_limits());
        assert!(matches!(r.outcome, Err(Cause::ContractInvalid { .. })), "{op}: {:?}", r.outcome);
    }
    f.assert_echo_still_works();
}

#[test]
fn guest_error_is_kept_apart_from_traps() {
    let f = Fixture::new();
    let r = f.probe(
        json!({"op": "fail", "code": "nope", "message": "said no", "retryable": true}),
        Grants::default(),
        fast_limits(),
    );
    assert_eq!(
        r.outcome.err(),
        Some(Cause::GuestError {
            code: "nope".into(),
            message: "said no".into(),
            retryable: true
        })
    );
}

#[test]
fn caps_on_payload_events_and_stdout() {
    let f = Fixture::new();
    let limits = Limits {
        max_output_bytes: 1 << 20,
        max_events: 10,
        max_stdio_bytes: 100,
        ..fast_limits()
    };
    let r = f.probe(json!({"op": "huge_payload", "bytes": 2 << 20}), Grants::default(), limits.clone());
    assert!(matches!(r.outcome, Err(Cause::OutputTooLarge { .. })), "{:?}", r.outcome);
    let r = f.probe(json!({"op": "events", "count": 1000}), Grants::default(), limits.clone());
    assert!(r.outcome.is_ok());
    assert_eq!(r.events.len(), 10);
    assert_eq!(r.events_dropped, 990);
    let r = f.probe(json!({"op": "print", "bytes": 10_000}), Grants::default(), limits);
    assert!(r.outcome.is_ok());
    assert_eq!(r.stdout.len(), 100);
    assert!(r.stdio_truncated);
    f.assert_echo_still_works();
}

#[test]
fn describe_that_never_returns_is_refused_at_load() {
    let f = Fixture::new();
    let t = Instant::now();
    let err = f.rt.block_on(f.sb.load(&guest("spin_describe"))).expect_err("must be refused");
    assert!(err.message.contains("describe failed"), "{}", err.message);
    assert!(t.elapsed() < Duration::from_secs(10));
    f.assert_echo_still_works();
}

#[test]
fn malformed_bytes_are_refused_at_load() {
    let f = Fixture::new();
    let err = f.rt.block_on(f.sb.load(b"\0asm garbage")).expect_err("refused");
    assert!(err.message.contains("not a valid WebAssembly component"), "{}", err.message);
}

#[test]
fn compile_cache_is_used_and_a_corrupt_entry_is_rebuilt() {
    let tmp = tempfile::tempdir().expect("tmp");
    let cache = tmp.path().join("cache");
    let echo = builtin_bytes("echo.v1").expect("echo");
    {
        let sb = Sandbox::new(SandboxOptions {
            cache_dir: Some(cache.clone()),
        })
        .expect("sb");
        rt().block_on(sb.load(echo)).expect("load");
    }
    let entries: Vec<PathBuf> = std::fs::read_dir(&cache)
        .expect("cache dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "cwasm2"))
        .collect();
    assert_eq!(entries.len(), 1, "one cache entry: {entries:?}");
    let record = PathBuf::from(format!("{}.ok", entries[0].display()));
    assert!(record.is_file(), "the entry's checked identity is recorded");
    // Corrupt it: the next load must detect it and recompile, not trust it.
    let mut bytes = std::fs::read(&entries[0]).expect("read");
    let n = bytes.len();
    bytes[n / 2] ^= 0xff;
    std::fs::write(&entries[0], &bytes).expect("write");
    let sb = Sandbox::new(SandboxOptions {
        cache_dir: Some(cache.clone()),
    })
    .expect("sb");
    let r = rt().block_on(async {
        let l = sb.load(echo).await.expect("load after corruption");
        sb.run(
            &l,
            StepRequest {
                input: json!(1),
                ..Default::default()
            },
        )
        .await
    });
    assert_eq!(payload(&r), json!(1));
    let fixed = std::fs::read(&entries[0]).expect("read");
    assert_ne!(fixed, bytes, "corrupt entry rewritten");
}

/// Loads the compile cache's entry of `echo.v1` and says whether it came
/// from the cache (no compile) — by timing out a compile is not testable,
/// so a cache hit is observed as "the entry file was not replaced".
fn cache_hit(cache: &std::path::Path, entry: &std::path::Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let before = std::fs::symlink_metadata(entry).map(|m| m.ino()).ok();
    let sb = Sandbox::new(SandboxOptions {
        cache_dir: Some(cache.to_path_buf()),
    })
    .expect("sb");
    rt().block_on(sb.load(builtin_bytes("echo.v1").expect("echo"))).expect("load");
    let after = std::fs::symlink_metadata(entry).map(|m| m.ino()).ok();
    before.is_some() && before == after && std::fs::symlink_metadata(entry).is_ok_and(|m| m.file_type().is_file())
}

#[test]
fn the_compile_cache_trusts_only_private_unchanged_entries() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().expect("tmp");
    let cache = tmp.path().join("cache");
    let sb = Sandbox::new(SandboxOptions {
        cache_dir: Some(cache.clone()),
    })
    .expect("sb");
    rt().block_on(sb.load(builtin_bytes("echo.v1").expect("echo"))).expect("load");
    drop(sb);
    let entry = std::fs::read_dir(&cache)
        .expect("dir")
        .map(|e| e.expect("e").path())
        .find(|p| p.extension().is_some_and(|x| x == "cwasm2"))
        .expect("entry");
    assert!(cache_hit(&cache, &entry), "an unchanged private entry is used as it is");
    // Writable by others: not trusted, recompiled and replaced.
    std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    assert!(!cache_hit(&cache, &entry), "a world-writable entry is not used");
    // A symlink in place of the entry: not followed, replaced by a file.
    let real = tmp.path().join("elsewhere.cwasm2");
    std::fs::rename(&entry, &real).expect("mv");
    std::os::unix::fs::symlink(&real, &entry).expect("symlink");
    assert!(!cache_hit(&cache, &entry), "a symlinked entry is not used");
    assert!(std::fs::symlink_metadata(&entry).expect("entry").file_type().is_file());
    // The same bytes written again (a new ctime): hashed in full, then used.
    let bytes = std::fs::read(&entry).expect("read");
    std::fs::write(&entry, &bytes).expect("rewrite");
    assert!(cache_hit(&cache, &entry), "unchanged content with a new identity is re-verified and used");
    // A cache directory others can write into is not used at all.
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).expect("chmod dir");
    assert!(!cache_hit(&cache, &entry));
}

#[test]
fn parallel_runs_share_one_loaded_component() {
    let f = Fixture::new();
    let echo = builtin_bytes("echo.v1").expect("echo");
    let sb = Arc::new(Sandbox::new(SandboxOptions::default()).expect("sb"));
    let results = f.rt.block_on(async {
        let loaded = sb.load(echo).await.expect("load");
        let mut set = tokio::task::JoinSet::new();
        for i in 0..50 {
            let sb = sb.clone();
            let loaded = loaded.clone();
            set.spawn(async move {
                sb.run(
                    &loaded,
                    StepRequest {
                        input: json!(i),
                        ..Default::default()
                    },
                )
                .await
            });
        }
        set.join_all().await
    });
    assert_eq!(results.len(), 50);
    assert!(results.iter().all(|r| r.outcome.is_ok()));
}

#[test]
fn a_cached_load_uses_the_kept_descriptor_and_a_broken_one_runs_describe_again() {
    let tmp = tempfile::tempdir().expect("tmp");
    let cache = tmp.path().join("cache");
    let echo = builtin_bytes("echo.v1").expect("echo");
    let load = || {
        let sb = Sandbox::new(SandboxOptions {
            cache_dir: Some(cache.clone()),
        })
        .expect("sb");
        rt().block_on(sb.load(echo)).expect("load").descriptor.summary.clone()
    };
    let first = load();
    let kept = std::fs::read_dir(&cache)
        .expect("dir")
        .map(|e| e.expect("e").path())
        .find(|p| p.to_string_lossy().ends_with(".describe.json"))
        .expect("the descriptor is kept beside the entry");
    let text = std::fs::read_to_string(&kept).expect("read");
    assert!(text.contains("\"id\":\"echo.v1\""), "{text}");
    // The kept descriptor is what a cached load uses (no instance runs):
    // an edit shows — and its schemas are still compiled and checked.
    std::fs::write(&kept, text.replace(&first, "kept summary")).expect("edit");
    assert_eq!(load(), "kept summary");
    // Unreadable → describe runs again and the file is written anew.
    std::fs::write(&kept, b"{not json").expect("break");
    assert_eq!(load(), first);
    assert!(std::fs::read_to_string(&kept).expect("read").contains("\"id\":\"echo.v1\""));
    // A kept descriptor with a schema that does not compile refuses the load,
    // as a fresh describe returning it would.
    let bad = text.replacen("\"input_schema\":\"", "\"input_schema\":\"{\\\"type\\\": 5}", 1);
    std::fs::write(&kept, bad).expect("bad schema");
    let sb = Sandbox::new(SandboxOptions {
        cache_dir: Some(cache.clone()),
    })
    .expect("sb");
    assert!(rt().block_on(sb.load(echo)).is_err(), "a bad kept schema is refused, not trusted");
}

/// A guest that opens thousands of files, files past the hashing budget
/// and the same files again gets a bounded record: at most
/// `MAX_RECORDED_READS` entries, each path once, at most `MAX_HASHED_BYTES`
/// hashed (a file larger than what is left is recorded by size only, never
/// read), and the step still succeeds.
#[test]
fn a_guest_opening_many_and_huge_files_gets_a_bounded_read_record() {
    use lily::sandbox::{MAX_HASHED_BYTES, MAX_RECORDED_READS};
    let f = Fixture::new();
    let tmp = tempfile::tempdir().expect("tmp");
    let (big, many) = (tmp.path().join("big"), tmp.path().join("many"));
    std::fs::create_dir_all(&big).expect("mkdir");
    std::fs::create_dir_all(&many).expect("mkdir");
    // Sparse: 1 TiB (never hashed), then three of 30 MiB (two fit the budget).
    let sparse = |name: &str, len: u64| {
        let file = std::fs::File::create(big.join(name)).expect("create");
        file.set_len(len).expect("set_len");
    };
    sparse("a-huge", 1 << 40);
    for n in ["b-30m", "c-30m", "d-30m"] {
        sparse(n, 30 << 20);
    }
    let count = MAX_RECORDED_READS + 500;
    for i in 0..count {
        std::fs::write(many.join(format!("f{i:05}")), format!("{i}")).expect("write");
    }
    let grants = Grants {
        dirs: vec![DirGrant {
            host: tmp.path().to_path_buf(),
            guest: "/data".into(),
            perms: Perms::ReadOnly,
        }],
        ..Grants::default()
    };
    let limits = Limits {
        deadline: Duration::from_secs(60),
        ..Limits::default()
    };
    let r = f.probe(json!({"op": "open_many", "dirs": ["/data/big", "/data/many"], "passes": 2}), grants, limits);
    assert_eq!(payload(&r)["opened"], json!(2 * (count + 4)), "the guest opened every file twice");
    assert_eq!(r.reads.len(), MAX_RECORDED_READS, "the record is capped");
    let mut paths: Vec<&str> = r.reads.iter().map(|x| x.path.as_str()).collect();
    paths.sort();
    paths.dedup();
    assert_eq!(paths.len(), r.reads.len(), "each path is recorded once");
    let by_path = |p: &str| r.reads.iter().find(|x| x.path == p).unwrap_or_else(|| panic!("{p} recorded"));
    let huge = by_path("/data/big/a-huge");
    assert_eq!((huge.size, huge.sha256.as_deref()), (1 << 40, None), "larger than the budget: size only");
    let hashed: Vec<&str> = ["b-30m", "c-30m", "d-30m"]
        .into_iter()
        .filter(|n| by_path(&format!("/data/big/{n}")).sha256.is_some())
        .collect();
    assert_eq!(hashed, ["b-30m", "c-30m"], "the third 30 MiB file is past the 64 MiB budget");
    let hashed_bytes: u64 = r.reads.iter().filter(|x| x.sha256.is_some()).map(|x| x.size).sum();
    assert!(hashed_bytes <= MAX_HASHED_BYTES, "{hashed_bytes} bytes hashed");
    // Small files after the big ones still fit and are hashed, up to the cap.
    assert!(by_path("/data/many/f00000").sha256.is_some());
    assert!(
        !r.reads.iter().any(|x| x.path == format!("/data/many/f{:05}", count - 1)),
        "past the cap: not recorded"
    );
    f.assert_echo_still_works();
}
