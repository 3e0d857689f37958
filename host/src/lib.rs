//! Lily: a job runner whose steps run as WebAssembly components in a
//! wasmtime sandbox.
//!
//! Data flows one way: the `lily` binary's CLI → [`triggers`] → [`jobs`] →
//! [`blueprints`] → [`sandbox`], with [`policy`] consulted at the
//! boundaries and [`runs`] the one writer of run records
//! (`host/tests/layering.rs` enforces the layers). The CLI lives in the
//! binary: it parses and renders; everything else is this library, which
//! never prints and is tested without the binary.

pub mod blueprints;
pub mod config;
pub mod error;
pub mod export;
pub mod init;
pub mod jobs;
pub mod llm;
pub mod mcp;
pub mod paths;
pub mod policy;
pub mod runnables;
pub mod runs;
pub mod sandbox;
pub mod spec;
pub mod text;
pub mod triggers;
pub mod util;
pub mod workspace;

pub use error::{ErrorCode, LilyError};

/// The version of this build.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
