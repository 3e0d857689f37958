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

/// The digest of `bytes` when they are one of the embedded built-ins (the
/// very same static bytes), computed at build time.
pub fn builtin_digest_of(bytes: &[u8]) -> Option<&'static str> {
    BUILTINS
        .iter()
        .find(|(_, b)| std::ptr::eq(b.as_ptr(), bytes.as_ptr()) && b.len() == bytes.len())
        .and_then(|(k, _)| BUILTIN_DIGESTS.iter().find(|(d, _)| d == k).map(|(_, h)| *h))
}

/// Component bytes of a built-in runnable by id.
pub fn builtin_bytes(id: &str) -> Option<&'static [u8]> {
    let krate = BUILTIN_IDS.iter().find(|(i, _)| *i == id)?.1;
    BUILTINS.iter().find(|(k, _)| *k == krate).map(|(_, b)| *b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_time_digests_are_the_digests_of_the_embedded_bytes() {
        for (id, _) in BUILTIN_IDS {
            let b = builtin_bytes(id).expect("embedded");
            assert_eq!(builtin_digest_of(b), Some(crate::util::sha256(b).as_str()), "{id}");
            // A copy is not the embedded bytes: hashed as any component.
            let copy: Vec<u8> = b.to_vec();
            assert_eq!(builtin_digest_of(copy.as_slice()), None);
        }
    }
}
