//! Jobs: specs, the run executor, the run store and summaries.

pub mod executor;
pub mod replay;
pub mod spec;
pub mod store;
pub mod summary;

pub use executor::{Cancel, Lily, RunOptions, RunResult, TriggerInfo};
