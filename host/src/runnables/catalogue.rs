//! The runnable registry: built-ins embedded in `lily`, plus components
//! installed under `.lily/runnables/<id>/<version>/`.
//!
//! Every installed component is also kept by content, as
//! `.lily/runnables/.objects/<sha256 hex>.wasm`, and never overwritten
//! there: `install --force` of a new build under the same version replaces
//! what `<id>/<version>/` runs from now on, while the digest an earlier run
//! recorded stays loadable, so that run can still be replayed exactly
//! ([`RunnableRegistry::bytes_by_digest`]). Bytes read by digest are checked
//! against it before use.

use crate::sandbox::{BUILTIN_IDS, LoadError, Loaded, Sandbox, builtin_bytes};
use crate::workspace::Root;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// `manifest.json` of an installed runnable.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub id: String,
    pub version: String,
    pub kind: String,
    pub summary: String,
    pub digest: String,
    pub imports: Vec<String>,
    pub installed_at: String,
}

/// Where a runnable comes from.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "source", rename_all = "snake_case")]
pub enum Source {
    Builtin,
    Installed { path: PathBuf },
}

/// Resolves runnable ids to component bytes.
#[derive(Debug, Clone)]
pub struct RunnableRegistry {
    dir: Option<PathBuf>,
    /// Runnable id → the digest to run instead of the current one (replay).
    pins: Arc<std::collections::BTreeMap<String, String>>,
}

/// Directory (under the runnables dir) of components kept by content.
pub const OBJECTS_DIR: &str = ".objects";

/// `sha256:<64 hex>` → the object's file name, or `None` for anything else.
fn object_name(digest: &str) -> Option<String> {
    let hex = digest.strip_prefix("sha256:")?;
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())).then(|| format!("{hex}.wasm"))
}

impl RunnableRegistry {
    pub fn new(root: Option<&Root>) -> RunnableRegistry {
        RunnableRegistry {
            dir: root.map(Root::runnables_dir),
            pins: Arc::default(),
        }
    }

    /// This registry, resolving each pinned id to the component with that
    /// digest instead of its current one (a replay of an older run).
    pub fn pinned(&self, pins: std::collections::BTreeMap<String, String>) -> RunnableRegistry {
        RunnableRegistry {
            dir: self.dir.clone(),
            pins: Arc::new(pins),
        }
    }

    /// The component whose digest is `digest`: a built-in, a kept object, or
    /// (installed before objects were kept) an installed version. Checked
    /// against the digest before it is returned.
    pub fn bytes_by_digest(&self, digest: &str) -> Option<Cow<'static, [u8]>> {
        for (id, _) in BUILTIN_IDS {
            if let Some(b) = builtin_bytes(id)
                && Sandbox::digest(b) == digest
            {
                return Some(Cow::Borrowed(b));
            }
        }
        let dir = self.dir.as_ref()?;
        let candidates = std::iter::once(dir.join(OBJECTS_DIR).join(object_name(digest)?))
            .chain(self.installed().into_iter().filter(|(m, _)| m.digest == digest).map(|(_, p)| p));
        for path in candidates {
            // Never through a symlink: the object store is Lily's own.
            if std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_file())
                && let Ok(b) = std::fs::read(&path)
                && Sandbox::digest(&b) == digest
            {
                return Some(Cow::Owned(b));
            }
        }
        None
    }

    /// Installed manifests, sorted by (id, version).
    pub fn installed(&self) -> Vec<(Manifest, PathBuf)> {
        let Some(dir) = &self.dir else { return Vec::new() };
        let mut out = Vec::new();
        for id_dir in read_dirs(dir) {
            for v_dir in read_dirs(&id_dir) {
                let m = v_dir.join("manifest.json");
                if let Ok(text) = std::fs::read_to_string(&m)
                    && let Ok(man) = serde_json::from_str::<Manifest>(&text)
                {
                    out.push((man, v_dir.join("component.wasm")));
                }
            }
        }
        out.sort_by(|a, b| {
            a.0.id.cmp(&b.0.id).then_with(|| {
                let va = semver::Version::parse(&a.0.version).ok();
                let vb = semver::Version::parse(&b.0.version).ok();
                va.cmp(&vb)
            })
        });
        out
    }

    /// Remove the kept components (`.objects/`) that no installed version
    /// and no digest in `keep` (those runs recorded) refers to; with
    /// `dry_run` only list them. Returns each object's digest and size.
    pub fn prune_objects(&self, keep: &std::collections::BTreeSet<String>, dry_run: bool) -> std::io::Result<Vec<(String, u64)>> {
        let Some(dir) = &self.dir else { return Ok(Vec::new()) };
        let objects = dir.join(OBJECTS_DIR);
        let installed: std::collections::BTreeSet<String> = self.installed().into_iter().map(|(m, _)| m.digest).collect();
        let mut removed = Vec::new();
        let rd = match std::fs::read_dir(&objects) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(removed),
            Err(e) => return Err(e),
        };
        let mut entries: Vec<_> = rd.filter_map(Result::ok).collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(hex) = name.strip_suffix(".wasm") else { continue };
            let digest = format!("sha256:{hex}");
            if object_name(&digest).as_deref() != Some(name.as_str()) || keep.contains(&digest) || installed.contains(&digest) {
                continue;
            }
            // `symlink_metadata`: a link is removed as a link, never followed.
            let size = std::fs::symlink_metadata(e.path()).map(|m| m.len()).unwrap_or(0);
            if !dry_run {
                std::fs::remove_file(e.path())?;
            }
            removed.push((digest, size));
        }
        Ok(removed)
    }

    /// The ids of `ids` that are neither built in nor installed, in order,
    /// each once (the installed manifests are read once, whatever the count).
    pub fn unresolved<'a>(&self, ids: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
        let mut installed: Option<std::collections::HashSet<String>> = None;
        let mut out: Vec<&'a str> = Vec::new();
        for id in ids {
            if out.contains(&id) || builtin_bytes(id).is_some() || self.pins.contains_key(id) {
                continue;
            }
            let known = installed.get_or_insert_with(|| self.installed().into_iter().map(|(m, _)| m.id).collect());
            if !known.contains(id) {
                out.push(id);
            }
        }
        out
    }

    /// Bytes of runnable `id`: a built-in, else the highest installed version.
    pub fn bytes(&self, id: &str) -> Option<(Cow<'static, [u8]>, Source)> {
        if let Some(digest) = self.pins.get(id) {
            let b = self.bytes_by_digest(digest)?;
            let path = match &b {
                Cow::Borrowed(_) => return Some((b, Source::Builtin)),
                Cow::Owned(_) => self.dir.as_ref()?.join(OBJECTS_DIR).join(object_name(digest)?),
            };
            return Some((b, Source::Installed { path }));
        }
        if let Some(b) = builtin_bytes(id) {
            return Some((Cow::Borrowed(b), Source::Builtin));
        }
        let (_, path) = self.installed().into_iter().rev().find(|(m, _)| m.id == id)?;
        let bytes = std::fs::read(&path).ok()?;
        Some((Cow::Owned(bytes), Source::Installed { path }))
    }

    /// Every known id (built-ins first).
    pub fn ids(&self) -> Vec<String> {
        let mut v: Vec<String> = BUILTIN_IDS.iter().map(|(i, _)| i.to_string()).collect();
        for (m, _) in self.installed() {
            if !v.contains(&m.id) {
                v.push(m.id);
            }
        }
        v
    }

    /// Resolve and load `id` into the sandbox (`None`: no such runnable).
    ///
    /// An installed component whose file has the identity recorded when it
    /// was last hashed ([`IdentityRecord`]) is loaded by its manifest's
    /// digest: from memory or the compile cache it is neither read nor
    /// hashed (18 MB of a Python component cost ~40 ms of CPU per run to
    /// read and hash). Any other file is read and hashed as before, and its
    /// identity recorded when it hashes to the manifest's digest.
    pub async fn load(&self, sandbox: &Sandbox, id: &str) -> Result<Option<Arc<Loaded>>, LoadError> {
        if !self.pins.contains_key(id)
            && builtin_bytes(id).is_none()
            && let Some((m, path)) = self.installed().into_iter().rev().find(|(m, _)| m.id == id)
        {
            // Taken before reading: a change during the read shows next time.
            let Some(now) = crate::util::FileIdentity::of_regular_file(&path) else {
                return Ok(None);
            };
            let record = IdentityRecord::path_for(&path);
            if IdentityRecord::read(&record).is_some_and(|r| r.vouches_for(&now, &m.digest)) {
                return sandbox.load_known(&m.digest, now.len, || std::fs::read(&path)).await.map(Some);
            }
            let Ok(bytes) = std::fs::read(&path) else { return Ok(None) };
            let loaded = sandbox.load(&bytes).await?;
            if loaded.digest == m.digest {
                IdentityRecord::new(now, &m.digest).write(&record);
            }
            return Ok(Some(loaded));
        }
        let Some((bytes, _)) = self.bytes(id) else { return Ok(None) };
        sandbox.load(&bytes).await.map(Some)
    }

    /// Validate and install a component. Refuses a different component under
    /// an existing id+version unless `force`, and any built-in id.
    pub async fn install(&self, sandbox: &Sandbox, bytes: &[u8], expect_id: Option<&str>, force: bool) -> Result<Manifest, InstallError> {
        self.install_reporting(sandbox, bytes, expect_id, force, &|_| {}).await
    }

    /// [`Registry::install`], telling `report` what it is doing (the
    /// compile of a big component takes tens of seconds; the library never
    /// prints, the CLI shows it on a terminal).
    pub async fn install_reporting(
        &self,
        sandbox: &Sandbox,
        bytes: &[u8],
        expect_id: Option<&str>,
        force: bool,
        report: &(dyn Fn(InstallStage) + Sync),
    ) -> Result<Manifest, InstallError> {
        let Some(dir) = &self.dir else {
            return Err(InstallError::Io("no .lily/ root to install into".into()));
        };
        report(InstallStage::Compiling { bytes: bytes.len() as u64 });
        let started = std::time::Instant::now();
        let loaded = sandbox.load(bytes).await;
        report(InstallStage::Compiled {
            ms: started.elapsed().as_millis() as u64,
            ok: loaded.is_ok(),
        });
        let loaded = loaded.map_err(InstallError::Refused)?;
        let d = &loaded.descriptor;
        if let Some(want) = expect_id
            && want != d.id
        {
            return Err(InstallError::Conflict(format!("the component describes itself as {:?}, not {want:?}", d.id)));
        }
        if builtin_bytes(&d.id).is_some() {
            return Err(InstallError::Conflict(format!("{:?} is a built-in runnable id; choose another id", d.id)));
        }
        let target = dir.join(&d.id).join(&d.version);
        let manifest_path = target.join("manifest.json");
        if let Ok(text) = std::fs::read_to_string(&manifest_path)
            && let Ok(old) = serde_json::from_str::<Manifest>(&text)
            && old.digest != loaded.digest
            && !force
        {
            return Err(InstallError::Conflict(format!(
                "{}@{} is already installed with digest {}; this component is {} (bump its version, or pass --force)",
                d.id, d.version, old.digest, loaded.digest
            )));
        }
        let io = |e: std::io::Error| InstallError::Io(format!("{}: {e}", target.display()));
        crate::util::ensure_dir(&target).map_err(io)?;
        // Kept by content first (never replaced: same name, same bytes).
        let objects = dir.join(OBJECTS_DIR);
        if let Some(name) = object_name(&loaded.digest)
            && !objects.join(&name).is_file()
        {
            let io = |e: std::io::Error| InstallError::Io(format!("{}: {e}", objects.display()));
            crate::util::ensure_dir(&objects).map_err(io)?;
            crate::util::atomic_write(&objects.join(&name), bytes).map_err(io)?;
        }
        let component = target.join("component.wasm");
        crate::util::atomic_write(&component, bytes).map_err(io)?;
        if let Some(now) = crate::util::FileIdentity::of_regular_file(&component) {
            IdentityRecord::new(now, &loaded.digest).write(&IdentityRecord::path_for(&component));
        }
        let manifest = Manifest {
            id: d.id.clone(),
            version: d.version.clone(),
            kind: d.kind.as_str().to_string(),
            summary: d.summary.clone(),
            digest: loaded.digest.clone(),
            imports: loaded.imports.clone(),
            installed_at: crate::util::rfc3339(chrono::Utc::now()),
        };
        let text = serde_json::to_vec_pretty(&manifest).map_err(|e| InstallError::Io(e.to_string()))?;
        crate::util::atomic_write(&manifest_path, &text).map_err(io)?;
        Ok(manifest)
    }
}

/// Why `lily runnables remove` removed nothing.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RemoveError {
    #[error("{0:?} is a built-in runnable; built-ins cannot be removed")]
    Builtin(String),
    #[error("{0} is not installed")]
    NotInstalled(String),
    #[error("{0}")]
    Io(String),
}

impl RemoveError {
    /// The stable code (the one place it is chosen).
    pub fn code(&self) -> crate::error::ErrorCode {
        use crate::error::ErrorCode;
        match self {
            RemoveError::Builtin(_) => ErrorCode::RunnableInUse,
            RemoveError::NotInstalled(_) => ErrorCode::JobNotFound,
            RemoveError::Io(_) => ErrorCode::JobExecutionFailed,
        }
    }
}

impl RunnableRegistry {
    /// Remove the installed runnable `id` — every version, or only
    /// `version` — and return what was removed. Only `<id>/<version>/`
    /// directories go (never through a link); the components kept by
    /// content stay, so earlier runs remain replayable. Whether a job still
    /// references `id` is the caller's check (`jobs::references`).
    pub fn remove(&self, id: &str, version: Option<&str>) -> Result<Vec<Manifest>, RemoveError> {
        if builtin_bytes(id).is_some() {
            return Err(RemoveError::Builtin(id.into()));
        }
        let what = || match version {
            Some(v) => format!("{id}@{v}"),
            None => id.to_string(),
        };
        let dir = self.dir.as_ref().ok_or_else(|| RemoveError::NotInstalled(what()))?;
        if !crate::paths::valid_id(id) {
            return Err(RemoveError::NotInstalled(what()));
        }
        let gone: Vec<(Manifest, PathBuf)> = self
            .installed()
            .into_iter()
            .filter(|(m, _)| m.id == id && version.is_none_or(|v| m.version == v))
            .collect();
        if gone.is_empty() {
            return Err(RemoveError::NotInstalled(what()));
        }
        let mut out = Vec::new();
        for (m, component) in gone {
            let Some(v_dir) = component.parent() else { continue };
            // `installed()` reads `<dir>/<id>/<version>/`: refuse anything else.
            if v_dir.parent() != Some(&dir.join(id)) || std::fs::symlink_metadata(v_dir).map(|md| !md.is_dir()).unwrap_or(true) {
                return Err(RemoveError::Io(format!("{} is not an installed version directory", v_dir.display())));
            }
            std::fs::remove_dir_all(v_dir).map_err(|e| RemoveError::Io(format!("{}: {e}", v_dir.display())))?;
            out.push(m);
        }
        // The id's directory goes with its last version.
        let _ = std::fs::remove_dir(dir.join(id));
        Ok(out)
    }
}

/// Why a component was not installed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum InstallError {
    /// The sandbox refused to load it (a contract problem of the component).
    #[error("component refused: {0}")]
    Refused(LoadError),
    /// It is fine, but its id clashes (expected id, built-in, installed).
    #[error("{0}")]
    Conflict(String),
    /// Writing it failed.
    #[error("{0}")]
    Io(String),
}

impl InstallError {
    /// The stable code (the one place it is chosen).
    pub fn code(&self) -> crate::error::ErrorCode {
        use crate::error::ErrorCode;
        match self {
            InstallError::Refused(_) | InstallError::Conflict(_) => ErrorCode::BlueprintContractInvalid,
            InstallError::Io(_) => ErrorCode::JobExecutionFailed,
        }
    }
}

fn read_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_dir()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// What [`Registry::install_reporting`] is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstallStage {
    /// Validating and compiling (or loading from the compile cache) a
    /// component of `bytes` bytes.
    Compiling { bytes: u64 },
    /// Done with that after `ms` milliseconds; `ok: false` when refused.
    Compiled { ms: u64, ok: bool },
}

/// `component.identity.json` beside an installed `component.wasm`: the
/// file's identity when its bytes last hashed to `digest`, and when that was
/// recorded. It lets a load skip reading and hashing the file. The argument
/// (docs/sandbox.md): `.lily/runnables/` is the operator's (no grant reaches
/// `.lily/`); any write, rename or `utimes` of the file changes its change
/// time, which cannot be set back; and a record made less than
/// [`SETTLE_NS`] after the file last changed does not vouch for it (a
/// same-length write in the same timestamp tick would keep the identity), so
/// such a file is hashed once more and the record renewed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityRecord {
    identity: crate::util::FileIdentity,
    digest: String,
    recorded_ns: i64,
}

/// See [`IdentityRecord`].
const SETTLE_NS: i64 = 2_000_000_000;

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl IdentityRecord {
    fn new(identity: crate::util::FileIdentity, digest: &str) -> Self {
        IdentityRecord {
            identity,
            digest: digest.to_string(),
            recorded_ns: now_ns(),
        }
    }

    fn path_for(component: &Path) -> PathBuf {
        component.with_file_name("component.identity.json")
    }

    /// A record under 4 KiB in a regular file (never through a symlink).
    fn read(path: &Path) -> Option<IdentityRecord> {
        let m = std::fs::symlink_metadata(path).ok()?;
        if !m.file_type().is_file() || m.len() > 4096 {
            return None;
        }
        serde_json::from_slice(&std::fs::read(path).ok()?).ok()
    }

    /// Whether this record says a file of identity `now` holds `digest`.
    fn vouches_for(&self, now: &crate::util::FileIdentity, digest: &str) -> bool {
        self.identity == *now && self.digest == digest && self.recorded_ns.saturating_sub(now.changed_ns()) >= SETTLE_NS
    }

    /// Best effort: without a record the next load reads and hashes.
    fn write(&self, path: &Path) {
        if let Ok(text) = serde_json::to_vec(self) {
            let _ = crate::util::write_atomic(path, &text, crate::util::Durability::Rename);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::SandboxOptions;

    fn guest(name: &str) -> Vec<u8> {
        let p = PathBuf::from(env!("LILY_GUESTS_DIR")).join(format!("{name}.wasm"));
        std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    /// A root with `probe.v1` installed, and a runtime.
    fn installed() -> (tempfile::TempDir, RunnableRegistry, PathBuf, Manifest, tokio::runtime::Runtime) {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = Root::at(tmp.path().to_path_buf(), None).expect("root");
        let reg = RunnableRegistry::new(Some(&root));
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let sandbox = Sandbox::new(SandboxOptions::default()).expect("sandbox");
        let m = rt.block_on(reg.install(&sandbox, &guest("probe"), None, false)).expect("install");
        let (_, path) = reg.installed().into_iter().find(|(x, _)| x.id == m.id).expect("installed");
        (tmp, reg, path, m, rt)
    }

    fn load(reg: &RunnableRegistry, rt: &tokio::runtime::Runtime, id: &str) -> Arc<Loaded> {
        // A fresh sandbox each time: nothing prepared in memory.
        let sandbox = Sandbox::new(SandboxOptions::default()).expect("sandbox");
        rt.block_on(reg.load(&sandbox, id)).expect("load").expect("known")
    }

    fn settle(record: &Path) {
        let mut r = IdentityRecord::read(record).expect("record");
        r.recorded_ns = r.identity.changed_ns() + SETTLE_NS;
        r.write(record);
    }

    #[test]
    fn an_installed_component_is_hashed_until_its_identity_record_vouches_for_it() {
        let (_tmp, reg, path, m, rt) = installed();
        let record = IdentityRecord::path_for(&path);
        // Install records the file's identity; made in the same instant as
        // the file, it does not vouch for it yet: the load hashes.
        let r = IdentityRecord::read(&record).expect("install wrote a record");
        assert_eq!(
            (r.digest.as_str(), r.identity),
            (m.digest.as_str(), crate::util::FileIdentity::of_regular_file(&path).expect("id"))
        );
        assert!(!r.vouches_for(&r.identity, &m.digest), "too fresh to vouch");
        assert_eq!(load(&reg, &rt, &m.id).digest, m.digest);

        // Other bytes in the file: a new identity, so they are read and
        // hashed — what is loaded is what the file holds.
        std::fs::write(&path, guest("echo")).expect("rewrite");
        settle(&record);
        let other = load(&reg, &rt, &m.id);
        assert_eq!(other.digest, Sandbox::digest(&guest("echo")));
        assert_ne!(other.digest, m.digest);

        // A vouching record is taken at its word (the proof that nothing was
        // read or hashed: it names probe's digest for a file holding echo,
        // and the load serves probe from the compile-less in-memory path).
        let now = crate::util::FileIdentity::of_regular_file(&path).expect("id");
        let mut forged = IdentityRecord::new(now, &m.digest);
        forged.recorded_ns = now.changed_ns() + SETTLE_NS;
        forged.write(&record);
        let sandbox = Sandbox::new(SandboxOptions::default()).expect("sandbox");
        rt.block_on(sandbox.load(&guest("probe"))).expect("probe prepared in memory");
        let vouched = rt.block_on(reg.load(&sandbox, &m.id)).expect("load").expect("known");
        assert_eq!(vouched.digest, m.digest, "the record vouched: the file was not read");

        // The same record with its file touched: hashed again.
        let f = std::fs::OpenOptions::new().append(true).open(&path).expect("open");
        f.set_modified(std::time::SystemTime::now()).expect("touch");
        drop(f);
        assert_eq!(load(&reg, &rt, &m.id).digest, other.digest);
        // A record that is not one (garbage, or a link) is ignored.
        std::fs::write(&record, "not json").expect("garbage");
        assert!(IdentityRecord::read(&record).is_none());
        assert_eq!(load(&reg, &rt, &m.id).digest, other.digest);
    }
}
