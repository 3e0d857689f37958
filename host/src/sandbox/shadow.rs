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
//! `get-random-bytes` needs no shadow: `WasiCtxBuilder::max_random_size`
//! bounds it (see `host.rs`).
//!
//! wasmtime-wasi 48 registers every WASI 0.2 interface as `@0.2.12`; a
//! guest importing any `0.2.x` is linked to that instance, so shadowing the
//! `@0.2.12` names replaces the function for all of them (tested by the
//! hostile suite, whose guests import `@0.2.x` as their toolchain wrote it).

use super::host::StepState;
use std::collections::VecDeque;
use std::net::IpAddr;
use wasmtime::component::{Linker, Resource, ResourceType};
use wasmtime::{Result, StoreContextMut};
use wasmtime_wasi::filesystem::WasiFilesystemView as _;
use wasmtime_wasi::p2::bindings::filesystem::types::{self as fs, Descriptor, DirectoryEntry, HostDescriptor as _};
use wasmtime_wasi::p2::bindings::sockets::network::{ErrorCode as NetErrorCode, IpAddress, Network};
use wasmtime_wasi::p2::{DynPollable, FsError, Pollable, ReaddirIterator};

const IP_NAME_LOOKUP: &str = "wasi:sockets/ip-name-lookup@0.2.12";
const FS_TYPES: &str = "wasi:filesystem/types@0.2.12";

/// Directory streams one step may hold open at once.
pub const MAX_DIR_STREAMS: usize = 64;

/// Longest name recorded for a refused lookup (a DNS name is at most 253).
const MAX_RECORDED_NAME: usize = 256;

/// Replace the stock functions (call after `add_to_linker_async`).
pub(crate) fn install(linker: &mut Linker<StepState>) -> Result<()> {
    linker.allow_shadowing(true);
    name_lookup(linker)?;
    read_directory(linker)?;
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
}
