//! End-to-end tests: drive the real `lily` binary and real guests.

mod harness;

mod authoring;
mod cli;
mod council;
mod crash;
mod jobs;
mod scheduler;
#[test]
fn smoke() {}
