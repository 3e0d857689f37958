//! `hostile.v1`: a hostile runnable of kind `specialist`, for the adversarial
//! suite (`host/tests/hostile.rs`, `docs/security.md`). It performs the attack
//! its input names and reports what it observed, so a test can assert both
//! the host's verdict and what the guest saw from the inside.
//!
//! Input: `{"attack": "<name>", "args": {...}}`. In a council every
//! specialist gets `{"topic", "context", "workspace"}`: then the attack is the
//! `topic` and the args are the first `context` entry (a JSON object as text).
//!
//! Output payload (when the attack is contained without ending the step): a
//! specialist report `{"findings": [], "notes": "<JSON observations>"}`.
#![allow(unsafe_code)]

use lily_guest::{Artifact, Descriptor, Envelope, Guest, Kind, Level, RunError, RunStatus, emit, error, propose_publish, propose_write};
use serde_json::{Map, Value, json};
use std::io::Write;

struct Hostile;

fn report(observed: Value) -> Result<Envelope, RunError> {
    envelope(json!({"findings": [], "notes": observed.to_string()}).to_string(), vec![], vec![], vec![])
}

fn envelope(payload: String, artifacts: Vec<Artifact>, approvals: Vec<String>, references: Vec<String>) -> Result<Envelope, RunError> {
    Ok(Envelope {
        status: RunStatus::Ok,
        artifacts,
        approvals_requested: approvals,
        references,
        payload,
    })
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

fn n(v: &Value, k: &str, default: u64) -> u64 {
    v.get(k).and_then(Value::as_u64).unwrap_or(default)
}

fn strs(v: &Value, k: &str) -> Vec<String> {
    v.get(k)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default()
}

/// `{"ok": true}` or `{"ok": false, "error": "..."}` for an I/O result.
fn res<T>(r: std::io::Result<T>) -> Value {
    match r {
        Ok(_) => json!({"ok": true}),
        Err(e) => json!({"ok": false, "error": e.to_string()}),
    }
}

/// Read a file: the content is reported only if the read succeeded (the
/// test then fails: it must never succeed outside the grant).
fn try_read(path: &str) -> Value {
    match std::fs::read(path) {
        Ok(b) => json!({"ok": true, "content": String::from_utf8_lossy(&b)}),
        Err(e) => json!({"ok": false, "error": e.to_string()}),
    }
}

fn try_list(path: &str) -> Value {
    match std::fs::read_dir(path) {
        Ok(rd) => {
            let mut names: Vec<String> = rd.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect();
            names.sort();
            json!({"ok": true, "entries": names})
        }
        Err(e) => json!({"ok": false, "error": e.to_string()}),
    }
}

#[inline(never)]
fn recurse(depth: u64, acc: &mut [u64; 128]) -> u64 {
    acc[(depth % 128) as usize] = depth;
    if depth == u64::MAX {
        return 0;
    }
    recurse(depth + 1, acc).wrapping_add(acc[7])
}

unsafe extern "C" {
    /// wasi-libc's `socket(2)`: a `wasi:sockets` TCP socket, never closed here.
    fn socket(domain: i32, ty: i32, protocol: i32) -> i32;
    /// wasi-libc's `symlink(2)` (`std::os::wasi::fs::symlink_path` is unstable).
    fn symlink(target: *const std::ffi::c_char, linkpath: *const std::ffi::c_char) -> i32;
}

/// Create a symlink at `link` whose contents are `target`.
fn make_symlink(target: &str, link: &str) -> std::io::Result<()> {
    let t = std::ffi::CString::new(target).map_err(std::io::Error::other)?;
    let l = std::ffi::CString::new(link).map_err(std::io::Error::other)?;
    // SAFETY: both pointers are valid NUL-terminated strings for the call.
    if unsafe { symlink(t.as_ptr(), l.as_ptr()) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
#[link(wasm_import_module = "wasi:random/random@0.2.0")]
unsafe extern "C" {
    /// `wasi:random/random.get-random-bytes(len: u64) -> list<u8>`, raw: the
    /// list comes back through a return area of (pointer, length).
    #[link_name = "get-random-bytes"]
    fn wasi_get_random_bytes(len: i64, ret: *mut usize);
}

const AF_INET: i32 = 1;
const SOCK_STREAM: i32 = 6;

/// Filesystem escapes through links the guest creates itself inside a
/// read-write grant: symlinks with absolute and relative targets pointing
/// out, then reads, writes and listings through them.
fn symlink_out(args: &Value) -> Value {
    let dir = s(args, "dir");
    let mut out = Vec::new();
    for (i, target) in strs(args, "targets").iter().enumerate() {
        let link = format!("{dir}/link{i}");
        let created = res(make_symlink(target, &link));
        out.push(json!({
            "target": target,
            "create": created,
            "read": try_read(&link),
            "write": res(std::fs::write(&link, "pwned via symlink")),
            "list": try_list(&link),
            "create_inside": res(std::fs::write(format!("{link}/pwned.txt"), "pwned")),
            "mkdir_inside": res(std::fs::create_dir(format!("{link}/pwned-dir"))),
        }));
    }
    Value::Array(out)
}

/// Hard links to files outside the grant, named every way the guest can.
fn hardlink_out(args: &Value) -> Value {
    let dir = s(args, "dir");
    let mut out = Vec::new();
    for (i, source) in strs(args, "sources").iter().enumerate() {
        let link = format!("{dir}/hard{i}");
        out.push(json!({
            "source": source,
            "link": res(std::fs::hard_link(source, &link)),
            "read": try_read(&link),
            "write": res(std::fs::write(&link, "pwned via hard link")),
        }));
    }
    Value::Array(out)
}

/// Very long names and paths: a 255-byte name, a 4 KiB name, a path nested
/// until the host refuses, and a 1 MiB path.
fn long_paths(args: &Value) -> Value {
    let dir = s(args, "dir");
    let max_depth = n(args, "max_depth", 200);
    let name255 = format!("{dir}/{}", "a".repeat(255));
    let name4k = format!("{dir}/{}", "b".repeat(4096));
    let mut path = dir.to_string();
    let mut depth = 0;
    let mut deep_error = Value::Null;
    while depth < max_depth {
        path = format!("{path}/{}", "d".repeat(200));
        match std::fs::create_dir(&path) {
            Ok(()) => depth += 1,
            Err(e) => {
                deep_error = Value::from(e.to_string());
                break;
            }
        }
    }
    let deep_escape = format!("{path}/{}/etc/passwd", "../".repeat(depth as usize + 8));
    let huge = format!("{dir}/{}", "x/".repeat(512 * 1024));
    json!({
        "name255": res(std::fs::write(&name255, "ok")),
        "name4k": res(std::fs::write(&name4k, "x")),
        "depth": depth,
        "deep_error": deep_error,
        "deep_path_len": path.len(),
        "deep_escape_read": try_read(&deep_escape),
        "huge_path_read": try_read(&huge),
        "huge_path_write": res(std::fs::write(&huge, "x")),
    })
}

/// Every mutation the guest can try on a read-only grant.
fn ro_mutations(args: &Value) -> Value {
    let dir = s(args, "dir");
    let file = s(args, "file");
    let subdir = s(args, "subdir");
    let mut m = Map::new();
    let mut put = |k: &str, v: Value| {
        m.insert(k.into(), v);
    };
    put("create_file", res(std::fs::write(format!("{dir}/new.txt"), "x")));
    put(
        "append",
        res(std::fs::OpenOptions::new().append(true).open(file).and_then(|mut f| f.write_all(b"appended"))),
    );
    put("truncate_open", res(std::fs::OpenOptions::new().write(true).truncate(true).open(file)));
    put("set_len", res(std::fs::OpenOptions::new().read(true).open(file).and_then(|f| f.set_len(0))));
    put("overwrite", res(std::fs::write(file, "overwritten")));
    put("create_dir", res(std::fs::create_dir(format!("{dir}/newdir"))));
    put("remove_file", res(std::fs::remove_file(file)));
    put("remove_dir", res(std::fs::remove_dir(subdir)));
    put("rename", res(std::fs::rename(file, format!("{dir}/renamed.txt"))));
    put("hard_link", res(std::fs::hard_link(file, format!("{dir}/hard.txt"))));
    put("symlink", res(make_symlink("/etc/passwd", &format!("{dir}/sym"))));
    put(
        "set_modified",
        res(std::fs::File::open(file).and_then(|f| f.set_modified(std::time::SystemTime::UNIX_EPOCH))),
    );
    put(
        "set_readonly_false",
        res(std::fs::metadata(file).and_then(|md| {
            let mut p = md.permissions();
            #[allow(clippy::permissions_set_readonly_false)]
            p.set_readonly(false);
            std::fs::set_permissions(file, p)
        })),
    );
    let rw = s(args, "rw_dir");
    if !rw.is_empty() {
        // Out of the read-only grant into the read-write one: a moved or
        // hard-linked file would become writable.
        let mut put = |k: &str, v: Value| {
            m.insert(k.into(), v);
        };
        put("move_to_rw", res(std::fs::rename(file, format!("{rw}/moved.txt"))));
        put("hard_link_to_rw", res(std::fs::hard_link(file, format!("{rw}/linked.txt"))));
        put(
            "write_through_rw_link",
            res(std::fs::OpenOptions::new()
                .append(true)
                .open(format!("{rw}/linked.txt"))
                .and_then(|mut f| f.write_all(b"pwned"))),
        );
        put("copy_is_fine", res(std::fs::copy(file, format!("{rw}/copied.txt"))));
    }
    Value::Object(m)
}

fn net(args: &Value) -> Value {
    use std::net::ToSocketAddrs;
    let connect: Vec<Value> = strs(args, "connect")
        .iter()
        .map(|a| json!({"addr": a, "result": res(std::net::TcpStream::connect(a.as_str()))}))
        .collect();
    let resolve: Vec<Value> = strs(args, "resolve")
        .iter()
        .map(|h| json!({"host": h, "result": res((h.as_str(), 80).to_socket_addrs())}))
        .collect();
    let listen: Vec<Value> = strs(args, "listen")
        .iter()
        .map(|a| json!({"addr": a, "result": res(std::net::TcpListener::bind(a.as_str()))}))
        .collect();
    let udp: Vec<Value> = strs(args, "udp")
        .iter()
        .map(|a| {
            let r = std::net::UdpSocket::bind("0.0.0.0:0").and_then(|sock| sock.send_to(b"exfil", a.as_str()));
            json!({"addr": a, "result": res(r)})
        })
        .collect();
    json!({"connect": connect, "resolve": resolve, "listen": listen, "udp": udp})
}

/// Leak host handles: raw TCP sockets (no network grant needed to create
/// one) and open files, never closed, then hold them.
fn handle_flood(args: &Value) -> Value {
    let max = n(args, "max", 100_000);
    let mut sockets = 0u64;
    let mut socket_error = Value::Null;
    while sockets < max {
        // SAFETY: a plain libc call; the descriptor is leaked on purpose.
        let fd = unsafe { socket(AF_INET, SOCK_STREAM, 0) };
        if fd < 0 {
            socket_error = Value::from(std::io::Error::last_os_error().to_string());
            break;
        }
        sockets += 1;
    }
    let mut files = 0u64;
    let mut file_error = Value::Null;
    let file = s(args, "file");
    if !file.is_empty() {
        while files < max {
            match std::fs::File::open(file) {
                Ok(f) => {
                    std::mem::forget(f);
                    files += 1;
                }
                Err(e) => {
                    file_error = Value::from(e.to_string());
                    break;
                }
            }
        }
    }
    std::thread::sleep(std::time::Duration::from_millis(n(args, "hold_ms", 0)));
    json!({"sockets": sockets, "socket_error": socket_error, "files": files, "file_error": file_error})
}

/// Ask the host for `bytes` random bytes in one call (the host allocates
/// them before the guest's memory limit can say anything).
fn random(args: &Value) -> Value {
    let mut ret = [0usize; 2];
    // SAFETY: a plain WASI import; `ret` is a valid two-word return area.
    unsafe { wasi_get_random_bytes(n(args, "bytes", 1 << 20) as i64, ret.as_mut_ptr()) };
    json!({"got": ret[1]})
}

/// Open `count` directory streams on `dir`, read one entry of each (the host
/// lists the directory then) and keep them all open.
fn dir_streams(args: &Value) -> Value {
    let dir = s(args, "dir");
    let mut held = Vec::new();
    let mut error = Value::Null;
    for _ in 0..n(args, "count", 200) {
        match std::fs::read_dir(dir) {
            Ok(mut rd) => match rd.next() {
                Some(Err(e)) => {
                    error = Value::from(e.to_string());
                    break;
                }
                _ => held.push(rd),
            },
            Err(e) => {
                error = Value::from(e.to_string());
                break;
            }
        }
    }
    json!({"opened": held.len(), "error": error})
}

/// Propose effects (write_file targets given; optional publish flood).
fn propose(args: &Value) -> Result<Envelope, RunError> {
    // Links to plant first (`[[target, link], ...]`), inside a rw grant.
    let mut links = Vec::new();
    for pair in args.get("links").and_then(Value::as_array).into_iter().flatten() {
        let (t, l) = (
            pair.get(0).and_then(Value::as_str).unwrap_or(""),
            pair.get(1).and_then(Value::as_str).unwrap_or(""),
        );
        links.push(json!({"link": l, "result": res(make_symlink(t, l))}));
    }
    let content = s(args, "content");
    let mut ids = Vec::new();
    let mut results = Vec::new();
    for p in strs(args, "paths") {
        match propose_write(&p, content.as_bytes(), "hostile proposal") {
            Ok(id) => {
                results.push(json!({"path": p, "ok": true, "id": id}));
                ids.push(id);
            }
            Err(e) => results.push(json!({"path": p, "ok": false, "error": e})),
        }
    }
    // Memory amplification: one big guest buffer, proposed many times.
    let flood_bytes = n(args, "flood_bytes", 0) as usize;
    let mut flood_ok = 0u64;
    let mut flood_error = Value::Null;
    if flood_bytes > 0 {
        let big = "p".repeat(flood_bytes);
        let write = s(args, "flood_kind") == "write";
        for i in 0..n(args, "flood_count", 64) {
            let proposed = if write {
                propose_write(&format!("flood/{i}.txt"), big.as_bytes(), "flood")
            } else {
                propose_publish("report.md", &big, "flood")
            };
            match proposed {
                Ok(id) => {
                    flood_ok += 1;
                    ids.push(id);
                }
                Err(e) => {
                    flood_error = Value::from(e.chars().take(200).collect::<String>());
                }
            }
        }
    }
    let observed = json!({"links": links, "proposals": results, "flood_ok": flood_ok, "flood_error": flood_error});
    envelope(json!({"findings": [], "notes": observed.to_string()}).to_string(), vec![], ids, vec![])
}

/// Terminal and Markdown injection: escape sequences, carriage returns,
/// bidi overrides and Markdown/HTML in everything a guest can make the host
/// show — stdout, event kinds and fields, findings, notes, a proposal's
/// target and reason.
fn inject(args: &Value) -> Result<Envelope, RunError> {
    const EVIL: &str = "\x1b]0;pwned\x07\x1b[2J\x1b[8mhidden\x1b[0m\r\u{202e}txt.exe\u{9b}1m";
    const MD: &str = "x |\n# Injected heading\n<script>alert(1)</script> [click](http://evil.example)";
    println!("stdout {EVIL}");
    emit(Level::Info, "Bad\x1b[31mKind", &json!({}));
    emit(Level::Info, "injected_fields", &json!({"msg": EVIL}));
    let mut ids = Vec::new();
    for p in strs(args, "paths") {
        if let Ok(id) = propose_write(&p, b"+release checklist v1\n", &format!("harmless {EVIL}")) {
            ids.push(id);
        }
    }
    let finding = json!({"title": format!("{MD} {EVIL}"), "recommendation": MD, "confidence": 0.9, "evidence": [format!("{MD}:1")]});
    envelope(
        json!({"findings": [finding], "notes": format!("notes {EVIL} {MD}")}).to_string(),
        vec![],
        ids,
        vec![],
    )
}

impl Guest for Hostile {
    fn describe() -> Descriptor {
        Descriptor {
            id: "hostile.v1".into(),
            version: "1.0.0".into(),
            summary: "Hostile test specialist: performs the attack its input names".into(),
            kind: Kind::Specialist,
            input_schema: r#"{"type":"object"}"#.into(),
            output_schema: r#"{"type":"object","required":["findings","notes"],"properties":{"findings":{"type":"array"},"notes":{"type":"string"}}}"#.into(),
        }
    }

    fn run(input: String) -> Result<Envelope, RunError> {
        let v: Value = serde_json::from_str(&input).map_err(|e| error("invalid_input", e.to_string()))?;
        let attack = v.get("attack").and_then(Value::as_str).unwrap_or_else(|| s(&v, "topic")).to_string();
        let args = v.get("args").cloned().unwrap_or_else(|| {
            v.get("context")
                .and_then(|c| c.get(0))
                .and_then(Value::as_str)
                .and_then(|t| serde_json::from_str(t).ok())
                .unwrap_or_else(|| json!({}))
        });
        match attack.as_str() {
            "read" => report(json!(
                strs(&args, "paths")
                    .iter()
                    .map(|p| json!({"path": p, "read": try_read(p), "list": try_list(p)}))
                    .collect::<Vec<_>>()
            )),
            "write" => report(json!(
                strs(&args, "paths")
                    .iter()
                    .map(|p| json!({"path": p, "write": res(std::fs::write(p, "pwned"))}))
                    .collect::<Vec<_>>()
            )),
            "ro_mutations" => report(ro_mutations(&args)),
            "symlink_out" => report(symlink_out(&args)),
            "hardlink_out" => report(hardlink_out(&args)),
            "long_paths" => report(long_paths(&args)),
            "env" => {
                let values: Map<String, Value> = strs(&args, "names").into_iter().map(|k| (k.clone(), json!(std::env::var(&k).ok()))).collect();
                let names: Vec<String> = std::env::vars_os().map(|(k, _)| k.to_string_lossy().into_owned()).collect();
                report(json!({"values": values, "names": names, "args": std::env::args().collect::<Vec<_>>()}))
            }
            "net" => report(net(&args)),
            "handle_flood" => report(handle_flood(&args)),
            "loop" => {
                let mut x: u64 = 0;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            "sleep" => {
                std::thread::sleep(std::time::Duration::from_millis(n(&args, "ms", 600_000)));
                report(json!({"slept": true}))
            }
            "alloc" => {
                let mut hog: Vec<Vec<u8>> = Vec::new();
                loop {
                    hog.push(vec![7u8; 1 << 20]);
                    std::hint::black_box(&hog);
                }
            }
            "recurse" => {
                let mut acc = [0u64; 128];
                report(json!({"depth": recurse(0, &mut acc)}))
            }
            "panic" => panic!("hostile panic: {}", s(&args, "message")),
            "huge_payload" => report(json!({"blob": "x".repeat(n(&args, "bytes", 64 << 20) as usize)})),
            "huge_references" => {
                let one = "r".repeat(n(&args, "bytes", 1 << 20) as usize);
                envelope(
                    json!({"findings": [], "notes": "references"}).to_string(),
                    vec![],
                    vec![],
                    vec![one; n(&args, "count", 64) as usize],
                )
            }
            "huge_error" => Err(RunError {
                code: "e".repeat(n(&args, "code_bytes", 1 << 20) as usize),
                message: "m".repeat(n(&args, "bytes", 16 << 20) as usize),
                retryable: false,
            }),
            "events" => {
                let count = n(&args, "count", 1_000_000);
                let big = "e".repeat(n(&args, "field_bytes", 0) as usize);
                for i in 0..count {
                    emit(Level::Error, "flood", &json!({"i": i, "pad": big}));
                }
                report(json!({"emitted": count}))
            }
            "print" => {
                let chunk = "o".repeat(64 << 10);
                let mut left = n(&args, "bytes", 64 << 20) as usize;
                while left > 0 {
                    let k = left.min(chunk.len());
                    print!("{}", &chunk[..k]);
                    eprint!("{}", &chunk[..k]);
                    left -= k;
                }
                report(json!({"printed": true}))
            }
            "invalid_json" => envelope("{\"findings\": [], \"notes\": ".into(), vec![], vec![], vec![]),
            "bad_output" => envelope(json!({"findings": "not a list"}).to_string(), vec![], vec![], vec![]),
            "forge_approval" => envelope(
                json!({"findings": [], "notes": "forged"}).to_string(),
                vec![],
                vec![s(&args, "id").to_string()],
                vec![],
            ),
            "artifacts" => {
                let arts = strs(&args, "names")
                    .into_iter()
                    .map(|name| Artifact {
                        name,
                        media_type: "text/plain".into(),
                        bytes: b"hostile artifact".to_vec(),
                    })
                    .collect();
                envelope(json!({"findings": [], "notes": "artifacts"}).to_string(), arts, vec![], vec![])
            }
            "propose" => propose(&args),
            "inject" => inject(&args),
            "random" => report(random(&args)),
            "dir_streams" => report(dir_streams(&args)),
            other => Err(error("invalid_input", format!("unknown attack {other:?}"))),
        }
    }
}

lily_guest::export_runnable!(Hostile);
