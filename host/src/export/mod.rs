//! Exports of a root's jobs to other engines (`lily export …`).

pub mod k8s;
