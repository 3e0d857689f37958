//! On-disk cache of compiled components, keyed by the component digest and
//! the engine's precompile compatibility hash.
//!
//! Entry format: `LILYCWASM1` magic, 32-byte sha256 of the body, body (the
//! serialized component). An entry whose checksum does not match, or that
//! wasmtime refuses, is treated as absent and rewritten — never trusted.

use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use wasmtime::Engine;
use wasmtime::component::Component;

const MAGIC: &[u8] = b"LILYCWASM1";

pub struct CompileCache {
    dir: PathBuf,
    engine_key: String,
}

impl CompileCache {
    pub fn new(dir: PathBuf, engine: &Engine) -> CompileCache {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        env!("CARGO_PKG_VERSION").hash(&mut h);
        CompileCache {
            dir,
            engine_key: format!("{:016x}", h.finish()),
        }
    }

    fn path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        self.dir.join(format!("{hex}-{}.cwasm", self.engine_key))
    }

    /// Load a cached compiled component, or `None` (absent, corrupt, stale).
    pub fn load(&self, engine: &Engine, digest: &str) -> Option<Component> {
        let path = self.path(digest);
        let bytes = std::fs::read(&path).ok()?;
        if bytes.len() < MAGIC.len() + 32 || &bytes[..MAGIC.len()] != MAGIC {
            tracing::warn!(path = %path.display(), "compile cache entry has a bad header; recompiling");
            return None;
        }
        let (sum, body) = bytes[MAGIC.len()..].split_at(32);
        if Sha256::digest(body).as_slice() != sum {
            tracing::warn!(path = %path.display(), "compile cache entry is corrupt; recompiling");
            return None;
        }
        // SAFETY: `Component::deserialize` trusts its input to be the output
        // of `Component::serialize` from a compatible engine. The entry lives
        // in a directory only this user can write, its checksum was verified
        // just above, and its name carries the engine compatibility hash, so
        // it is exactly what this process's engine serialized earlier.
        #[allow(unsafe_code)]
        let component = unsafe { Component::deserialize(engine, body) };
        match component {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "compile cache entry refused by wasmtime; recompiling");
                None
            }
        }
    }

    /// Store a compiled component (best effort: a cache that cannot be
    /// written only costs time).
    pub fn store(&self, digest: &str, component: &Component) {
        let Ok(body) = component.serialize() else { return };
        if create_private_dir(&self.dir).is_err() {
            return;
        }
        let mut data = Vec::with_capacity(MAGIC.len() + 32 + body.len());
        data.extend_from_slice(MAGIC);
        data.extend_from_slice(&Sha256::digest(&body));
        data.extend_from_slice(&body);
        if let Err(e) = crate::util::atomic_write(&self.path(digest), &data) {
            tracing::debug!(error = %e, "could not write compile cache entry");
        }
    }
}

fn create_private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir)
}
