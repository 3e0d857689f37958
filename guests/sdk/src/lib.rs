//! Guest SDK for Lily runnables (Run Contract R0, `lily:runnable@0.1.1`).
//!
//! Implement [`Specialist`] or [`Synthesizer`] and export it with
//! [`export_specialist!`] / [`export_synthesizer!`]; `describe`, the JSON
//! Schemas, input parsing, event emission and effect proposal come for free.
//! For anything else implement [`bindings::Guest`] directly and export it
//! with [`export_runnable!`].
//!
//! Built for a native target (`cargo test`), the host imports are stubs:
//! [`emit`] prints the event to stderr and the `propose_*` functions return
//! an error, so a runnable's logic can be unit-tested without a sandbox.

pub mod council;
pub mod http;
pub mod llm;
pub mod workspace;

/// Raw bindings generated from `wit/` by wit-bindgen.
#[allow(clippy::all, missing_docs, unsafe_op_in_unsafe_fn)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "runnable",
        path: "../../wit",
        pub_export_macro: true,
        export_macro_name: "__export_runnable",
        default_bindings_module: "::lily_guest::bindings",
    });
}

pub use bindings::Guest;
pub use bindings::lily::runnable::events::Level;
pub use bindings::lily::runnable::types::{Artifact, Descriptor, Envelope, Kind, RunError, RunStatus};
pub use council::*;
/// Re-exported so a runnable needs no direct `serde_json` dependency.
pub use serde_json::{self, json};

/// Export a raw [`Guest`] implementation (a type name or path).
#[macro_export]
macro_rules! export_runnable {
    ($t:ty) => {
        type __LilyExport = $t;
        $crate::bindings::__export_runnable!(__LilyExport with_types_in $crate::bindings);
    };
}

/// Emit a structured event into the run's `events.jsonl`. (On a native
/// target, e.g. in unit tests, the event is printed to stderr instead.)
pub fn emit(level: Level, kind: &str, fields: &serde_json::Value) {
    #[cfg(target_arch = "wasm32")]
    bindings::lily::runnable::events::emit(level, kind, &fields.to_string());
    #[cfg(not(target_arch = "wasm32"))]
    eprintln!("event {level:?} {kind} {fields}");
}

std::thread_local! {
    /// Approval request ids returned by the host during this run; the host
    /// instantiates a fresh component per run, so this starts empty.
    static PROPOSED: std::cell::RefCell<Vec<String>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The approval request ids proposed so far in this run (and forgets them).
/// [`ok_envelope`] — and so every [`Specialist`] / [`Synthesizer`] — puts
/// them in the envelope's `approvals_requested` for you.
pub fn take_proposed() -> Vec<String> {
    PROPOSED.with(|p| std::mem::take(&mut *p.borrow_mut()))
}

/// Hand an effect to the host and remember the request id.
#[cfg(target_arch = "wasm32")]
fn propose(effect: &bindings::lily::runnable::effects::Effect, reason: &str) -> Result<String, String> {
    let id = bindings::lily::runnable::effects::propose(effect, reason)?;
    PROPOSED.with(|p| p.borrow_mut().push(id.clone()));
    Ok(id)
}

/// On a native target there is no host: the proposal is refused, so unit
/// tests see the `Err` branch.
#[cfg(not(target_arch = "wasm32"))]
fn propose(_effect: &bindings::lily::runnable::effects::Effect, _reason: &str) -> Result<String, String> {
    Err("effects can only be proposed inside the Lily sandbox (this is a native build)".into())
}

/// Propose writing `contents` to `path` (relative to the Lily root). The host
/// records an approval request and returns its id; nothing is written now.
pub fn propose_write(path: &str, contents: &[u8], reason: &str) -> Result<String, String> {
    use bindings::lily::runnable::effects::{Effect, WriteFile};
    propose(
        &Effect::WriteFile(WriteFile {
            path: path.to_string(),
            contents: contents.to_vec(),
        }),
        reason,
    )
}

/// Propose publishing an artifact of this run to a destination.
pub fn propose_publish(artifact: &str, to: &str, reason: &str) -> Result<String, String> {
    use bindings::lily::runnable::effects::{Effect, Publish};
    propose(
        &Effect::Publish(Publish {
            artifact: artifact.to_string(),
            to: to.to_string(),
        }),
        reason,
    )
}

/// Propose sending a message on a named channel.
pub fn propose_send(channel: &str, message: &str, reason: &str) -> Result<String, String> {
    use bindings::lily::runnable::effects::{Effect, Send};
    propose(
        &Effect::Send(Send {
            channel: channel.to_string(),
            message: message.to_string(),
        }),
        reason,
    )
}

/// A run error with `retryable: false`.
pub fn error(code: &str, message: impl Into<String>) -> RunError {
    RunError {
        code: code.to_string(),
        message: message.into(),
        retryable: false,
    }
}

/// An `ok` envelope whose payload is `payload` serialised as JSON, listing
/// the approval requests proposed during this run.
pub fn ok_envelope<T: serde::Serialize>(payload: &T, artifacts: Vec<Artifact>, references: Vec<String>) -> Result<Envelope, RunError> {
    let payload = serde_json::to_string(payload).map_err(|e| error("serialize_failed", e.to_string()))?;
    Ok(Envelope {
        status: RunStatus::Ok,
        artifacts,
        approvals_requested: take_proposed(),
        references,
        payload,
    })
}

/// Parse the JSON input of `run`, turning a parse error into `invalid_input`.
pub fn parse_input<T: serde::de::DeserializeOwned>(input: &str) -> Result<T, RunError> {
    serde_json::from_str(input).map_err(|e| error("invalid_input", format!("input does not match the input schema: {e}")))
}
