//! Runtime caps of one step, and the store's resource limiter.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Caps for one step. Defaults are the policy defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Limits {
    /// Linear memory, bytes (per memory).
    pub memory_bytes: u64,
    /// Fuel (≈ wasm instructions); `None` = unmetered.
    pub fuel: Option<u64>,
    /// Wall-clock deadline, enforced by epochs (CPU-bound guests) and a timer
    /// (guests blocked in a host call).
    #[serde(with = "duration_ms")]
    #[schemars(with = "u64")]
    pub deadline: Duration,
    /// Payload + artifact bytes a step may return.
    pub max_output_bytes: u64,
    /// Events a step may emit; more are dropped and counted.
    pub max_events: u64,
    /// Bytes of one event's fields.
    pub max_event_bytes: u64,
    /// Bytes of stdout and of stderr kept each; more is dropped and counted.
    pub max_stdio_bytes: u64,
    pub max_table_elements: usize,
    pub max_instances: usize,
    /// Outbound HTTP (`wasi:http`) caps; absent in a receipt = the defaults
    /// (so receipts written before HTTP read and write back unchanged).
    #[serde(default, skip_serializing_if = "super::http::HttpLimits::is_default")]
    pub http: super::http::HttpLimits,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 256 << 20,
            fuel: None,
            deadline: Duration::from_secs(300),
            max_output_bytes: 8 << 20,
            max_events: 1_000,
            max_event_bytes: 16 << 10,
            max_stdio_bytes: 64 << 10,
            max_table_elements: 100_000,
            max_instances: 100,
            http: super::http::HttpLimits::default(),
        }
    }
}

impl Limits {
    /// Tight caps for `describe`, which must be cheap.
    pub fn for_describe() -> Limits {
        Limits {
            memory_bytes: 64 << 20,
            fuel: Some(2_000_000_000),
            deadline: Duration::from_secs(5),
            ..Limits::default()
        }
    }
}

pub(crate) mod duration_ms {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

/// Marker error raised by the epoch callback when the deadline passes.
#[derive(Debug, thiserror::Error)]
#[error("deadline exceeded")]
pub struct DeadlineTrap;

/// Marker error raised by the limiter when memory growth is refused.
#[derive(Debug, thiserror::Error)]
#[error("memory growth to {desired} bytes exceeds the limit of {limit} bytes")]
pub struct MemoryTrap {
    pub desired: usize,
    pub limit: usize,
}

/// Enforces memory/table limits and remembers whether one was hit, so a trap
/// can be told apart as "memory limit".
pub struct Limiter {
    pub memory_bytes: usize,
    pub table_elements: usize,
    pub instances: usize,
    pub memory_hit: bool,
    pub table_hit: bool,
}

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes {
            self.memory_hit = true;
            return Err(wasmtime::Error::new(MemoryTrap {
                desired,
                limit: self.memory_bytes,
            }));
        }
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.table_elements {
            self.table_hit = true;
            wasmtime::bail!("table growth to {desired} elements exceeds the limit of {}", self.table_elements);
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        self.instances
    }
    fn tables(&self) -> usize {
        10_000
    }
    fn memories(&self) -> usize {
        100
    }
}
