//! Every way a step can end, as a typed cause.

use super::StepEnvelope;
use super::limits::{DeadlineTrap, Limits, MemoryTrap};
use serde::Serialize;
use std::time::Duration;

/// One structured event a guest emitted.
#[derive(Debug, Clone, Serialize)]
pub struct GuestEvent {
    pub level: &'static str,
    pub kind: String,
    pub fields: serde_json::Value,
}

/// A side effect a guest proposed.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ProposedEffect {
    WriteFile {
        path: String,
        #[serde(skip)]
        contents: Vec<u8>,
    },
    Publish {
        artifact: String,
        to: String,
    },
    Send {
        channel: String,
        #[serde(skip)]
        message: String,
    },
}

impl ProposedEffect {
    pub fn kind(&self) -> &'static str {
        match self {
            ProposedEffect::WriteFile { .. } => "write_file",
            ProposedEffect::Publish { .. } => "publish",
            ProposedEffect::Send { .. } => "send",
        }
    }
}

/// A recorded proposal (an approval request to be).
#[derive(Debug, Clone, Serialize)]
pub struct Proposal {
    pub id: String,
    pub effect: ProposedEffect,
    pub reason: String,
}

/// A step's replay tape: every clock read and every host call (model calls
/// and HTTP requests), each capability in its call order. Recorded in normal runs and fed back in a replay, so a
/// deterministic runnable produces the same bytes without calling out.
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct ClockTape {
    /// Wall-clock reads, nanoseconds since the Unix epoch.
    pub wall: Vec<u64>,
    /// Monotonic-clock reads, nanoseconds.
    pub monotonic: Vec<u64>,
    /// Host calls with their requests and full outcomes (no credentials).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub calls: Vec<TapedCall>,
}

/// One host call on a step's tape, by capability (`"capability": "llm"` /
/// `"http"` in the JSON, next to the call's own fields).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[serde(tag = "capability", rename_all = "snake_case")]
pub enum TapedCall {
    Llm(super::llm::LlmCall),
    Http(super::http::HttpCall),
}

impl TapedCall {
    pub fn call_id(&self) -> &str {
        match self {
            TapedCall::Llm(c) => &c.call_id,
            TapedCall::Http(c) => &c.call_id,
        }
    }
}

/// Why a step did not produce a valid envelope.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Cause {
    /// The runnable returned its own `run-error`.
    GuestError {
        code: String,
        message: String,
        retryable: bool,
    },
    /// A trap (panic, unreachable, stack overflow, host-side failure).
    Trap {
        message: String,
    },
    OutOfFuel {
        limit: u64,
    },
    DeadlineExceeded {
        #[serde(serialize_with = "ser_ms", deserialize_with = "de_ms")]
        limit: Duration,
    },
    MemoryLimit {
        limit: u64,
    },
    OutputTooLarge {
        bytes: u64,
        limit: u64,
    },
    /// Missing export, bad descriptor, output not matching its schema,
    /// unknown imports.
    ContractInvalid {
        reason: String,
    },
}

fn ser_ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

fn de_ms<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    Ok(Duration::from_millis(<u64 as serde::Deserialize>::deserialize(d)?))
}

impl Cause {
    /// Short stable name of the cause (`out_of_fuel`, …).
    pub fn kind(&self) -> &'static str {
        match self {
            Cause::GuestError { .. } => "guest_error",
            Cause::Trap { .. } => "trap",
            Cause::OutOfFuel { .. } => "out_of_fuel",
            Cause::DeadlineExceeded { .. } => "deadline_exceeded",
            Cause::MemoryLimit { .. } => "memory_limit",
            Cause::OutputTooLarge { .. } => "output_too_large",
            Cause::ContractInvalid { .. } => "contract_invalid",
        }
    }

    pub fn message(&self) -> String {
        match self {
            Cause::GuestError { code, message, .. } => format!("runnable error {code}: {message}"),
            Cause::Trap { message } => format!("trap: {message}"),
            Cause::OutOfFuel { limit } => format!("out of fuel (limit {limit})"),
            Cause::DeadlineExceeded { limit } => format!("deadline of {} ms exceeded", limit.as_millis()),
            Cause::MemoryLimit { limit } => format!("memory limit of {limit} bytes exceeded"),
            Cause::OutputTooLarge { bytes, limit } => format!("output of {bytes} bytes exceeds the cap of {limit} bytes"),
            Cause::ContractInvalid { reason } => format!("contract invalid: {reason}"),
        }
    }

    /// Whether running the step again might help.
    pub fn retryable(&self) -> bool {
        match self {
            Cause::GuestError { retryable, .. } => *retryable,
            Cause::DeadlineExceeded { .. } | Cause::Trap { .. } => true,
            _ => false,
        }
    }
}

/// What a store saw when a call failed.
pub(crate) struct Seen {
    pub deadline_hit: bool,
    pub memory_hit: bool,
    pub stderr: String,
}

/// Turn a wasmtime error from instantiate/call into a cause.
/// `seen` is what the store saw happen (plain data, so this module needs
/// nothing of the store's state).
pub(crate) fn classify_trap(e: &wasmtime::Error, seen: &Seen, limits: &Limits) -> Cause {
    if e.downcast_ref::<DeadlineTrap>().is_some() || seen.deadline_hit {
        return Cause::DeadlineExceeded { limit: limits.deadline };
    }
    if e.downcast_ref::<MemoryTrap>().is_some() || seen.memory_hit {
        return Cause::MemoryLimit { limit: limits.memory_bytes };
    }
    if let Some(trap) = e.downcast_ref::<wasmtime::Trap>() {
        match trap {
            wasmtime::Trap::OutOfFuel => {
                return Cause::OutOfFuel {
                    limit: limits.fuel.unwrap_or(u64::MAX),
                };
            }
            wasmtime::Trap::Interrupt => return Cause::DeadlineExceeded { limit: limits.deadline },
            _ => {}
        }
    }
    let mut message = format!("{e:#}");
    // A Rust panic in the guest ends as `unreachable`; its message is on stderr.
    let stderr = &seen.stderr;
    if let Some(line) = stderr.lines().find(|l| l.contains("panicked at")) {
        let rest: Vec<&str> = stderr.lines().skip_while(|l| !l.contains("panicked at")).take(2).collect();
        message = format!("{} ({})", rest.join(" ").trim(), first_line(&message));
        let _ = line;
    }
    Cause::Trap { message }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

/// Everything one step produced.
#[derive(Debug, Clone)]
pub struct StepReport {
    pub outcome: Result<StepEnvelope, Cause>,
    pub duration: Duration,
    pub fuel_used: u64,
    pub events: Vec<GuestEvent>,
    pub events_dropped: u64,
    pub proposals: Vec<Proposal>,
    pub stdout: String,
    pub stderr: String,
    pub stdio_truncated: bool,
    /// Network addresses the guest tried and was denied.
    pub denied_connections: Vec<String>,
    /// HTTP requests the allow-list refused.
    pub denied_http: Vec<super::http::HttpDenied>,
    /// Clock reads and host calls of the step (for replay).
    pub tape: ClockTape,
    /// In a replay: host calls that differed from the tape (divergence).
    pub replay_misses: Vec<String>,
    /// Files opened for reading through the step's grants.
    pub reads: Vec<super::shadow::FileRead>,
}

impl StepReport {
    pub fn failed(cause: Cause, duration: Duration) -> StepReport {
        StepReport {
            outcome: Err(cause),
            duration,
            fuel_used: 0,
            events: Vec::new(),
            events_dropped: 0,
            proposals: Vec::new(),
            stdout: String::new(),
            stderr: String::new(),
            stdio_truncated: false,
            denied_connections: Vec::new(),
            denied_http: Vec::new(),
            tape: Default::default(),
            replay_misses: Vec::new(),
            reads: Vec::new(),
        }
    }
}
