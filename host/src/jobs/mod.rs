//! Jobs: specs, the run executor, replay and summaries. The run store is
//! [`crate::runs`].

pub mod executor;
pub mod replay;
pub mod retention;
pub mod summary;
pub mod usage;

pub use executor::{Cancel, Lily, OnStarted, RunOptions, RunResult, TriggerInfo, plan_key};
