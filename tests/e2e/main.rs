//! End-to-end tests: drive the real `lily` binary and real guests.

mod harness;

mod cli;
#[test]
fn smoke() {}
