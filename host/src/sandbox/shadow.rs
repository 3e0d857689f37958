//! WASI functions the host re-implements on top of wasmtime-wasi, because
//! the stock ones do unbounded or unchecked host work for a guest:
//!
//! - `wasi:sockets/ip-name-lookup`: the stock lookup sends any name the
//!   guest chooses to the system resolver as soon as it has a network grant
//!   (DNS exfiltration: `<secret-hex>.attacker.example`). Here a name
//!   resolves only if it is one of the granted host names (resolved by the
//!   host when the step starts); IP literals pass through (every connect is
//!   still checked against the grants); every other name is refused with
//!   `name-unresolvable` and recorded as a denied capability. No query ever
//!   leaves the host for a guest-chosen name.
//! - `wasi:filesystem/types` `read-directory`: the stock call reads the whole
//!   directory into host memory per open stream (a 100 k-entry directory is
//!   ~23 MB), and a step may hold 1,024 handles. Here the live streams of a
//!   step are capped at [`MAX_DIR_STREAMS`] and their bytes are charged to
//!   the step's memory limit: beyond either the call fails with
//!   `insufficient-memory` (the guest sees an I/O error), and a dropped
//!   stream gives its bytes back.
//!
//! - `wasi:filesystem/types` `open-at` (and `preopens.get-directories`, to
//!   know which directory a descriptor is): every file a step opens for
//!   reading through a grant is recorded with its size and sha256
//!   ([`FileRead`], in the receipt's `steps[].reads`), so a replay can say
//!   which workspace file changed. The hash is taken through the guest's own
//!   descriptor (no path is opened again on the host, no symlink followed),
//!   off the runtime's threads, within the step's deadline and at most
//!   [`MAX_HASHED_BYTES`] per step over at most [`MAX_RECORDED_READS`]
//!   files; beyond, the read is recorded without a hash.
//!
//! `get-random-bytes` needs no shadow: `WasiCtxBuilder::max_random_size`
//! bounds it (see `host.rs`).
//!
//! wasmtime-wasi 48 registers every WASI 0.2 interface as `@0.2.12`; a
//! guest importing any `0.2.x` is linked to that instance, so shadowing the
//! `@0.2.12` names replaces the function for all of them (tested by the
//! hostile suite, whose guests import `@0.2.x` as their toolchain wrote it).

use super::host::StepState;
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use wasmtime::component::{Linker, Resource, ResourceType};
use wasmtime::{Result, StoreContextMut};
use wasmtime_wasi::filesystem::WasiFilesystemView as _;
use wasmtime_wasi::p2::bindings::filesystem::types::{self as fs, Descriptor, DirectoryEntry, HostDescriptor as _};
use wasmtime_wasi::p2::bindings::sockets::network::{ErrorCode as NetErrorCode, IpAddress, Network};
use wasmtime_wasi::p2::{DynPollable, FsError, Pollable, ReaddirIterator};

const IP_NAME_LOOKUP: &str = "wasi:sockets/ip-name-lookup@0.2.12";
const FS_TYPES: &str = "wasi:filesystem/types@0.2.12";
const FS_PREOPENS: &str = "wasi:filesystem/preopens@0.2.12";

/// Files recorded per step ([`FileRead`]); later opens are not recorded.
pub const MAX_RECORDED_READS: usize = 1024;

/// Bytes the host hashes per step for [`FileRead`]s.
pub const MAX_HASHED_BYTES: u64 = 64 << 20;

/// Directory streams one step may hold open at once.
pub const MAX_DIR_STREAMS: usize = 64;

/// Longest name recorded for a refused lookup (a DNS name is at most 253).
const MAX_RECORDED_NAME: usize = 256;

/// Replace the stock functions (call after `add_to_linker_async`).
pub(crate) fn install(linker: &mut Linker<StepState>) -> Result<()> {
    linker.allow_shadowing(true);
    name_lookup(linker)?;
    read_directory(linker)?;
    record_reads(linker)?;
    linker.allow_shadowing(false);
    Ok(())
}

/// The per-step state these functions keep.
#[derive(Default)]
pub(crate) struct Bounds {
    /// Granted host names (lowercase, no trailing dot) and their addresses.
    pub names: Vec<(String, Vec<IpAddr>)>,
    pub dir_streams: usize,
    pub dir_stream_bytes: u64,
    /// Bytes of host memory directory streams may hold (the memory limit).
    pub dir_stream_budget: u64,
    /// Guest path of each directory descriptor the guest holds (by handle).
    pub dir_paths: HashMap<u32, String>,
    /// Files opened for reading, in order, at most [`MAX_RECORDED_READS`].
    pub reads: Vec<FileRead>,
    /// Bytes hashed so far for `reads`.
    pub hashed_bytes: u64,
}

/// A file a step opened for reading through one of its grants.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileRead {
    /// The path as the guest sees it (`/workspace/src/main.rs`).
    pub path: String,
    pub size: u64,
    /// `sha256:<hex>` of the content when it was opened; `None` when the
    /// step's hashing budget or deadline did not allow it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// `parent` + `rel`, lexically normalised (`.` and `..` resolved; the
/// filesystem refuses an escape before this is asked).
pub(crate) fn join_guest(parent: &str, rel: &str) -> String {
    let mut parts: Vec<&str> = parent.split('/').filter(|p| !p.is_empty()).collect();
    for p in rel.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    let joined = parts.join("/");
    if parent.starts_with('/') { format!("/{joined}") } else { joined }
}

/// Size and sha256 of an open file, read with positioned reads (the
/// guest's offsets are untouched); no hash when the file is larger than
/// `budget` or `deadline` passes while reading.
fn hash_open_file(file: &std::fs::File, budget: u64, deadline: std::time::Instant) -> (u64, Option<String>) {
    use sha2::Digest;
    use std::os::unix::fs::FileExt;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    if size > budget {
        return (size, None);
    }
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 64 << 10];
    let mut off = 0u64;
    loop {
        if std::time::Instant::now() >= deadline || off > budget {
            return (size, None);
        }
        match file.read_at(&mut buf, off) {
            Ok(0) => break,
            Ok(n) => {
                h.update(&buf[..n]);
                off += n as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return (size, None),
        }
    }
    (off, Some(format!("sha256:{}", hex::encode(h.finalize()))))
}

fn record_reads(linker: &mut Linker<StepState>) -> Result<()> {
    use wasmtime_wasi::p2::bindings::filesystem::preopens::Host as _;
    linker.instance(FS_PREOPENS)?.func_wrap(
        "get-directories",
        |mut store: StoreContextMut<'_, StepState>, (): ()| -> Result<(Vec<(Resource<Descriptor>, String)>,)> {
            let dirs = store.data_mut().filesystem().get_directories()?;
            let st = store.data_mut();
            for (d, name) in &dirs {
                st.bounds.dir_paths.insert(d.rep(), name.clone());
            }
            Ok((dirs,))
        },
    )?;
    linker.instance(FS_TYPES)?.func_wrap_async(
        "[method]descriptor.open-at",
        |mut store: StoreContextMut<'_, StepState>,
         (fd, path_flags, path, open_flags, flags): (Resource<Descriptor>, fs::PathFlags, String, fs::OpenFlags, fs::DescriptorFlags)| {
            Box::new(async move {
                let parent = store.data().bounds.dir_paths.get(&fd.rep()).cloned();
                let mut view = store.data_mut().filesystem();
                let opened = match view.open_at(fd, path_flags, path.clone(), open_flags, flags).await {
                    Ok(d) => d,
                    Err(e) => return Ok((Err(e.downcast()?),)),
                };
                let Some(parent) = parent else { return Ok((Ok(opened),)) };
                let guest = join_guest(&parent, &path);
                let st = store.data_mut();
                let file = match st.table.get(&opened)? {
                    wasmtime_wasi::filesystem::Descriptor::Dir(_) => {
                        st.bounds.dir_paths.insert(opened.rep(), guest);
                        return Ok((Ok(opened),));
                    }
                    wasmtime_wasi::filesystem::Descriptor::File(f) => f.file.clone(),
                };
                let b = &st.bounds;
                if !flags.contains(fs::DescriptorFlags::READ) || b.reads.len() >= MAX_RECORDED_READS || b.reads.iter().any(|r| r.path == guest) {
                    return Ok((Ok(opened),));
                }
                let (budget, deadline) = (MAX_HASHED_BYTES.saturating_sub(b.hashed_bytes), st.deadline);
                let (size, sha256) = tokio::task::spawn_blocking(move || hash_open_file(&file, budget, deadline))
                    .await
                    .unwrap_or((0, None));
                let st = store.data_mut();
                if sha256.is_some() {
                    st.bounds.hashed_bytes += size;
                }
                st.bounds.reads.push(FileRead { path: guest, size, sha256 });
                Ok((Ok(opened),))
            })
        },
    )?;
    Ok(())
}

/// A finished lookup: the addresses, handed out one by one.
pub struct FixedResolveStream(VecDeque<IpAddr>);

#[wasmtime_wasi::async_trait]
impl Pollable for FixedResolveStream {
    async fn ready(&mut self) {}
}

/// What the guest asked to resolve.
#[derive(Debug, PartialEq, Eq)]
enum Name {
    Literal(IpAddr),
    Domain(String),
}

fn parse_name(name: &str) -> Name {
    let bare = name.strip_prefix('[').and_then(|n| n.strip_suffix(']')).unwrap_or(name);
    match bare.parse::<IpAddr>() {
        Ok(ip) => Name::Literal(ip),
        Err(_) => Name::Domain(name.trim_end_matches('.').to_ascii_lowercase()),
    }
}

fn name_lookup(linker: &mut Linker<StepState>) -> Result<()> {
    let mut inst = linker.instance(IP_NAME_LOOKUP)?;
    inst.resource("resolve-address-stream", ResourceType::host::<FixedResolveStream>(), |mut store, rep| {
        store.data_mut().table.delete(Resource::<FixedResolveStream>::new_own(rep))?;
        Ok(())
    })?;
    inst.func_wrap(
        "resolve-addresses",
        |mut store: StoreContextMut<'_, StepState>,
         (network, name): (Resource<Network>, String)|
         -> Result<(Result<Resource<FixedResolveStream>, NetErrorCode>,)> {
            let st = store.data_mut();
            st.table.get(&network)?;
            let addrs = match parse_name(&name) {
                Name::Literal(ip) => vec![ip],
                Name::Domain(d) => match st.bounds.names.iter().find(|(n, _)| *n == d) {
                    Some((_, addrs)) => addrs.clone(),
                    None => {
                        let shown: String = name.chars().take(MAX_RECORDED_NAME).collect();
                        st.record_denied(format!("name lookup {shown:?} (not a granted host)"));
                        return Ok((Err(NetErrorCode::NameUnresolvable),));
                    }
                },
            };
            Ok((Ok(st.table.push(FixedResolveStream(addrs.into()))?),))
        },
    )?;
    inst.func_wrap(
        "[method]resolve-address-stream.resolve-next-address",
        |mut store: StoreContextMut<'_, StepState>, (this,): (Resource<FixedResolveStream>,)| -> Result<(Result<Option<IpAddress>, NetErrorCode>,)> {
            let s = store.data_mut().table.get_mut(&this)?;
            Ok((Ok(s.0.pop_front().map(IpAddress::from)),))
        },
    )?;
    inst.func_wrap(
        "[method]resolve-address-stream.subscribe",
        |mut store: StoreContextMut<'_, StepState>, (this,): (Resource<FixedResolveStream>,)| -> Result<(Resource<DynPollable>,)> {
            Ok((wasmtime_wasi::p2::subscribe(&mut store.data_mut().table, this)?,))
        },
    )?;
    Ok(())
}

/// A directory listing held for the guest, with the host bytes it costs.
pub struct CountedDirStream {
    entries: std::vec::IntoIter<Result<DirectoryEntry, FsError>>,
    bytes: u64,
}

fn entry_bytes(e: &Result<DirectoryEntry, FsError>) -> u64 {
    (std::mem::size_of::<Result<DirectoryEntry, FsError>>() + e.as_ref().map(|d| d.name.capacity()).unwrap_or(0)) as u64
}

fn read_directory(linker: &mut Linker<StepState>) -> Result<()> {
    let mut inst = linker.instance(FS_TYPES)?;
    inst.resource("directory-entry-stream", ResourceType::host::<CountedDirStream>(), |mut store, rep| {
        let st = store.data_mut();
        let s = st.table.delete(Resource::<CountedDirStream>::new_own(rep))?;
        st.bounds.dir_streams = st.bounds.dir_streams.saturating_sub(1);
        st.bounds.dir_stream_bytes = st.bounds.dir_stream_bytes.saturating_sub(s.bytes);
        Ok(())
    })?;
    inst.func_wrap_async(
        "[method]descriptor.read-directory",
        |mut store: StoreContextMut<'_, StepState>, (fd,): (Resource<Descriptor>,)| {
            Box::new(async move {
                if store.data().bounds.dir_streams >= MAX_DIR_STREAMS {
                    return Ok((Err(fs::ErrorCode::InsufficientMemory),));
                }
                let mut view = store.data_mut().filesystem();
                let upstream: Resource<ReaddirIterator> = match view.read_directory(fd).await {
                    Ok(s) => s,
                    Err(e) => return Ok((Err(e.downcast()?),)),
                };
                let st = store.data_mut();
                let entries: Vec<_> = st.table.delete(upstream)?.into_iter().collect();
                let bytes = entries.iter().map(entry_bytes).sum::<u64>();
                if st.bounds.dir_stream_bytes.saturating_add(bytes) > st.bounds.dir_stream_budget {
                    return Ok((Err(fs::ErrorCode::InsufficientMemory),));
                }
                st.bounds.dir_streams += 1;
                st.bounds.dir_stream_bytes += bytes;
                Ok((Ok(st.table.push(CountedDirStream {
                    entries: entries.into_iter(),
                    bytes,
                })?),))
            })
        },
    )?;
    inst.func_wrap(
        "[method]directory-entry-stream.read-directory-entry",
        |mut store: StoreContextMut<'_, StepState>, (this,): (Resource<CountedDirStream>,)| -> Result<(Result<Option<DirectoryEntry>, fs::ErrorCode>,)> {
            let s = store.data_mut().table.get_mut(&this)?;
            Ok((match s.entries.next() {
                None => Ok(None),
                Some(Ok(e)) => Ok(Some(e)),
                Some(Err(e)) => Err(e.downcast()?),
            },))
        },
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_literals_are_told_apart() {
        assert_eq!(parse_name("127.0.0.1"), Name::Literal("127.0.0.1".parse().expect("ip")));
        assert_eq!(parse_name("[::1]"), Name::Literal("::1".parse().expect("ip")));
        assert_eq!(parse_name("::1"), Name::Literal("::1".parse().expect("ip")));
        assert_eq!(parse_name("LocalHost."), Name::Domain("localhost".into()));
        assert_eq!(
            parse_name("6c696c79.exfil.attacker.example"),
            Name::Domain("6c696c79.exfil.attacker.example".into())
        );
    }

    #[test]
    fn guest_paths_are_joined_lexically() {
        assert_eq!(join_guest("/workspace", "src/main.rs"), "/workspace/src/main.rs");
        assert_eq!(join_guest("/workspace/src", "./../README.md"), "/workspace/README.md");
        assert_eq!(join_guest("/workspace", "a//b/./c"), "/workspace/a/b/c");
        assert_eq!(join_guest("/", "x"), "/x");
        assert_eq!(join_guest("/w", "../../x"), "/x");
    }
}
