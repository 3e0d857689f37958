//! End-to-end tests: drive the real `lily` binary and real guests.

#[path = "../support/fake_llm.rs"]
mod fake_llm;
mod harness;

mod authoring;
mod cli;
mod codes;
mod council;
mod crash;
mod jobs;
mod llm;
mod mcp;
mod policy;
mod replay;
mod scheduler;
mod small;
#[test]
fn smoke() {}
