//! Grants: the only capabilities a step gets. Turned into a WASI context and
//! nothing else — no preopen, env var or network address that is not listed
//! here reaches the guest.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Perms {
    #[serde(rename = "ro")]
    ReadOnly,
    #[serde(rename = "rw")]
    ReadWrite,
}

/// A host directory preopened at a guest path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirGrant {
    pub host: PathBuf,
    pub guest: String,
    pub perms: Perms,
}

/// Everything a step may touch. `Default` grants nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grants {
    #[serde(default)]
    pub dirs: Vec<DirGrant>,
    /// Env vars (name, value). Values never leave the sandbox: receipts and
    /// events record names only (see [`Grants::redacted`]).
    #[serde(default, skip_serializing)]
    pub env: Vec<(String, String)>,
    /// Allowed outbound `host:port` pairs (resolved by the host); empty = no network.
    #[serde(default)]
    pub network: Vec<String>,
    /// The addresses of `network`, resolved once by whoever built the grants
    /// (the policy resolves each name once per policy version); when empty
    /// the sandbox resolves `network` itself, once per step.
    #[serde(skip)]
    pub resolved: Vec<(String, Vec<std::net::SocketAddr>)>,
    /// Outbound HTTP allow-list (`scheme://host[:port][/prefix]`, policy
    /// `runnables.<id>.http`); empty = every `wasi:http` request is denied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub http: Vec<String>,
    /// Model calls (`lily:runnable/llm`); `None` = the step may not call models.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub llm: Option<LlmGrant>,
}

/// The models a step may call and the budget it draws from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LlmGrant {
    /// Model aliases (`.lily/config.yaml` `llm.models`).
    pub models: Vec<String>,
    pub budget: LlmBudget,
    /// The policy rule that granted it: steps of one run granted by the
    /// same rule share one budget.
    pub rule: String,
}

/// Caps on a run's model use under one grant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LlmBudget {
    pub max_calls: u32,
    pub max_input_tokens: u64,
    pub max_output_tokens: u64,
}

impl Grants {
    /// `network` with its addresses: the pre-resolved ones, else resolved now.
    pub fn network_addrs(&self) -> Vec<(String, Vec<std::net::SocketAddr>)> {
        use std::net::ToSocketAddrs;
        if !self.resolved.is_empty() || self.network.is_empty() {
            return self.resolved.clone();
        }
        self.network
            .iter()
            .map(|hp| (hp.clone(), hp.to_socket_addrs().map(|a| a.collect()).unwrap_or_default()))
            .collect()
    }
}

impl Grants {
    /// A JSON view safe for receipts: env values removed.
    pub fn redacted(&self) -> serde_json::Value {
        serde_json::json!({
            "dirs": self.dirs.iter().map(|d| serde_json::json!({
                "host": d.host.display().to_string(),
                "guest": d.guest,
                "perms": match d.perms { Perms::ReadOnly => "ro", Perms::ReadWrite => "rw" },
            })).collect::<Vec<_>>(),
            "env": self.env.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(),
            "network": self.network,
            "http": self.http,
            "llm": self.llm,
        })
    }
}
