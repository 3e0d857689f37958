//! Built-in runnables, compiled by `build.rs` and embedded in the binary.

include!(concat!(env!("OUT_DIR"), "/builtin_guests.rs"));

/// Ids of the built-in runnables, with the crate each comes from.
pub const BUILTIN_IDS: &[(&str, &str)] = &[
    ("default.v1", "default_synth"),
    ("echo.v1", "echo"),
    ("llm-review.v1", "llm_review"),
    ("llm-synth.v1", "llm_synth"),
    ("operations.v1", "operations"),
    ("security.v1", "security"),
];

/// Component bytes of a built-in runnable by id.
pub fn builtin_bytes(id: &str) -> Option<&'static [u8]> {
    let krate = BUILTIN_IDS.iter().find(|(i, _)| *i == id)?.1;
    BUILTINS.iter().find(|(k, _)| *k == krate).map(|(_, b)| *b)
}
