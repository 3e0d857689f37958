//! End-to-end tests: drive the real `lily` binary and real guests.

#[path = "../support/fake_llm.rs"]
mod fake_llm;
mod harness;
#[path = "../support/http_server.rs"]
mod http_server;

mod authoring;
mod cli;
mod codes;
mod council;
mod crash;
mod export;
mod generated;
mod jobs;
mod js;
mod llm;
mod mcp;
mod operator;
mod policy;
mod progress;
mod python;
mod replay;
mod runctl;
mod scheduler;
mod small;
mod store;
#[test]
fn smoke() {}
