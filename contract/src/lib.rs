//! The data of Lily's Run Contract that the host and every guest speak.
//!
//! The WIT (`wit/`) fixes the shape of a call: `describe`, `run`, the
//! envelope. What travels inside it as JSON — the council's specialist and
//! synthesizer inputs and outputs — is defined once, here, and used by the
//! host (`lily`), the guest SDK (`lily-guest`) and, through the SDK, every
//! runnable. Nothing here does I/O; it builds for `wasm32-wasip2` and for
//! the host alike.

#![forbid(unsafe_code)]

pub mod council;
