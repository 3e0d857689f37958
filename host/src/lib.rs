//! Lily: a job runner whose steps run as WebAssembly components in a
//! wasmtime sandbox.
//!
//! Data flows one way: [`cli`] → [`jobs`] → [`blueprints`] → [`sandbox`],
//! with [`policy`] consulted at the boundaries. The CLI only parses and
//! renders; everything else is usable (and tested) as a library.

pub mod authoring;
pub mod blueprints;
pub mod cli;
pub mod error;
pub mod jobs;
pub mod paths;
pub mod policy;
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
