//! `.lily/config.yaml`: the operator's configuration of a root — where jobs
//! live, and which model providers and model aliases exist. Strict like
//! every Lily file (unknown keys refused, errors with line and column);
//! checked once when the root is opened.
//!
//! Credentials are never in this file: a provider names the environment
//! variable that holds its key (`api_key_env`), which the host reads at the
//! moment of a call.

use crate::error::{ErrorCode, LilyError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// `.lily/config.yaml`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Job discovery path, relative to the root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jobs_path: Option<String>,
    /// Model providers and aliases (`lily:runnable/llm`).
    #[serde(default)]
    pub llm: LlmConfig,
    /// Where approved `send` and `publish` effects are delivered, by name.
    #[serde(default)]
    pub destinations: BTreeMap<String, Destination>,
    /// What `lily mcp serve` exposes to MCP clients (nothing by default).
    #[serde(default)]
    pub mcp: McpConfig,
    /// The default `retention:` of every job whose spec has none (absent:
    /// keep every run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<crate::util::Retention>,
    /// The run store (`s3://bucket/prefix`, `file:///path`, `memory://`);
    /// absent: the local `.lily/runs/` only. `--store` and `$LILY_STORE`
    /// override it. See docs/kubernetes.md#the-run-store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<String>,
}

/// A run store location, checked (see [`StoreUrl::parse`]). It never holds
/// credentials (a URL with `user@` is refused): those come from the
/// standard AWS environment only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// `s3://bucket[/prefix]`
    S3 { bucket: String, prefix: String },
    /// `file:///absolute/path`
    File(std::path::PathBuf),
    /// `memory://` (one process; tests)
    Memory,
}

impl StoreUrl {
    pub fn parse(s: &str) -> Result<StoreUrl, String> {
        // The input is not echoed: a mistaken URL may hold a credential.
        let bad = |why: &str| Err(format!("store URL: {why} (expected s3://bucket/prefix, file:///path or memory://)"));
        if s == "memory://" {
            return Ok(StoreUrl::Memory);
        }
        if s.contains(['?', '#', '\\']) || s.chars().any(char::is_control) {
            return bad("no query, fragment, backslash or control characters");
        }
        if let Some(rest) = s.strip_prefix("file://") {
            let p = std::path::Path::new(rest);
            if !rest.starts_with('/') || p.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
                return bad("a file:// store needs an absolute path without `..`");
            }
            return Ok(StoreUrl::File(p.to_path_buf()));
        }
        if let Some(rest) = s.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.contains('@') || bucket.contains(':') {
                return bad("no credentials or port in the URL (they come from the AWS environment: AWS_ACCESS_KEY_ID, AWS_ENDPOINT_URL, ...)");
            }
            let bucket_ok = (3..=63).contains(&bucket.len())
                && bucket.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
                && bucket.as_bytes()[0].is_ascii_alphanumeric();
            if !bucket_ok {
                return bad("a bucket name is 3-63 characters of a-z, 0-9, '-' and '.'");
            }
            let prefix = prefix.trim_end_matches('/');
            let segs_ok = prefix.is_empty()
                || prefix
                    .split('/')
                    .all(|seg| !seg.is_empty() && seg != "." && seg != ".." && seg.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)));
            if !segs_ok || prefix.len() > 512 {
                return bad("a prefix is '/'-separated segments of A-Z, a-z, 0-9, '-', '_' and '.' (no empty, '.' or '..' segment)");
            }
            return Ok(StoreUrl::S3 {
                bucket: bucket.into(),
                prefix: prefix.into(),
            });
        }
        bad("unknown scheme")
    }

    pub fn scheme(&self) -> &'static str {
        match self {
            StoreUrl::S3 { .. } => "s3",
            StoreUrl::File(_) => "file",
            StoreUrl::Memory => "memory",
        }
    }
}

impl std::fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreUrl::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            StoreUrl::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
            StoreUrl::File(p) => write!(f, "file://{}", p.display()),
            StoreUrl::Memory => write!(f, "memory://"),
        }
    }
}

/// The `mcp:` section: the jobs and runnables an MCP client may call, and
/// its budget per session and per call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct McpConfig {
    #[serde(default)]
    pub expose: McpExpose,
    #[serde(default = "default_mcp_calls")]
    pub max_calls_per_session: u32,
    /// Wall time of a session's tool calls, summed; a running call holds
    /// its whole `max_seconds_per_call` (or what is left) until it ends.
    #[serde(default = "default_mcp_session_seconds")]
    pub max_seconds_per_session: u64,
    /// Wall time of one tool call (the run is cancelled past it).
    #[serde(default = "default_mcp_call_seconds")]
    pub max_seconds_per_call: u64,
    /// Model tokens (input + output) of a session's runs; unset = the
    /// policy's per-run budgets only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_llm_tokens_per_session: Option<u64>,
    /// Model tokens of one call's run: its input tokens and its output
    /// tokens each at most this (lowers `runtime.llm` of that run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_llm_tokens_per_call: Option<u64>,
}

impl Default for McpConfig {
    fn default() -> Self {
        McpConfig {
            expose: McpExpose::default(),
            max_calls_per_session: default_mcp_calls(),
            max_seconds_per_session: default_mcp_session_seconds(),
            max_seconds_per_call: default_mcp_call_seconds(),
            max_llm_tokens_per_session: None,
            max_llm_tokens_per_call: None,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct McpExpose {
    /// Job ids, each a tool of the same name.
    #[serde(default)]
    pub jobs: Vec<String>,
    /// Runnable ids, each a tool run through `step.v1`.
    #[serde(default)]
    pub runnables: Vec<String>,
}

fn default_mcp_calls() -> u32 {
    100
}

fn default_mcp_session_seconds() -> u64 {
    36_000
}

fn default_mcp_call_seconds() -> u64 {
    300
}

/// A destination for `send` / `publish` effects.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Destination {
    /// POST the bytes to `url` (JSON as-is, anything else with its media
    /// type), with an `Idempotency-Key` of the approval id.
    Webhook {
        url: String,
        /// Header name → environment variable holding its value (read at
        /// delivery, never recorded).
        #[serde(default)]
        headers_from_env: BTreeMap<String, String>,
        #[serde(default = "default_delivery_timeout")]
        timeout_seconds: u64,
        /// Attempts in all (retries on 5xx, timeouts and refused connections).
        #[serde(default = "default_delivery_attempts")]
        max_attempts: u32,
    },
    /// Write the bytes atomically under `path` (root-relative, confined and
    /// walked without links like `write_file`).
    Directory { path: String },
}

fn default_delivery_timeout() -> u64 {
    30
}

fn default_delivery_attempts() -> u32 {
    3
}

/// The `llm:` section.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LlmConfig {
    #[serde(default)]
    pub providers: BTreeMap<String, ProviderConfig>,
    /// Alias → model. Runnables and policy name aliases only.
    #[serde(default)]
    pub models: BTreeMap<String, ModelConfig>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    /// The OpenAI-compatible chat-completions protocol (OpenAI, vLLM,
    /// llama.cpp server, Ollama, LM Studio, LiteLLM).
    Openai,
}

fn default_timeout() -> u64 {
    60
}

fn default_retries() -> u32 {
    2
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    pub kind: ProviderKind,
    /// e.g. `http://127.0.0.1:8080/v1` (`/chat/completions` is appended).
    pub base_url: String,
    /// The environment variable holding the API key; unset = no key sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
    /// Per provider request (each attempt), seconds.
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u64,
    /// Retries after a 429 / 5xx / timeout (with backoff, honouring
    /// `Retry-After`), within the step's deadline.
    #[serde(default = "default_retries")]
    pub max_retries: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// A key of `providers`.
    pub provider: String,
    /// The provider's own model name.
    pub model: String,
    /// Used when the request sets none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    /// A ceiling on every request's `max-output-tokens`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<u32>,
}

fn invalid(path: &Path, msg: impl std::fmt::Display) -> LilyError {
    LilyError::new(ErrorCode::JobInvalidSpec, format!("{}: {msg}", path.display()))
}

impl Config {
    /// Read `<root>/.lily/config.yaml`; a missing or empty file is the
    /// default configuration.
    pub fn load(root: &Path) -> Result<Config, LilyError> {
        let p = root.join(".lily").join("config.yaml");
        match std::fs::read_to_string(&p) {
            Ok(text) => Config::parse(&p, &text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
            Err(e) => Err(invalid(&p, format!("cannot read: {e}"))),
        }
    }

    /// Parse and check a configuration (`path` names it in errors).
    pub fn parse(path: &Path, text: &str) -> Result<Config, LilyError> {
        if text.trim().is_empty() {
            return Ok(Config::default());
        }
        if crate::util::yaml_nesting_exceeds(text, crate::util::MAX_YAML_DEPTH) {
            return Err(invalid(path, format!("nested more than {} levels deep", crate::util::MAX_YAML_DEPTH)));
        }
        // A file of comments only (what `lily init` writes) is the default.
        if text.lines().all(|l| l.trim().is_empty() || l.trim_start().starts_with('#')) {
            return Ok(Config::default());
        }
        let c: Config = serde_norway::from_str(text).map_err(|e| invalid(path, e))?;
        c.llm.check().map_err(|m| invalid(path, m).with_hint("see docs/llm.md#configuration"))?;
        check_destinations(&c.destinations).map_err(|m| invalid(path, m).with_hint("see docs/security.md#destinations"))?;
        c.mcp.check().map_err(|m| invalid(path, m).with_hint("see docs/mcp.md#configuration"))?;
        if let Some(u) = &c.store {
            StoreUrl::parse(u).map_err(|m| invalid(path, m).with_hint("see docs/kubernetes.md#the-run-store"))?;
        }
        Ok(c)
    }
}

impl McpConfig {
    fn check(&self) -> Result<(), String> {
        let mut seen = std::collections::BTreeSet::new();
        for (what, ids) in [("jobs", &self.expose.jobs), ("runnables", &self.expose.runnables)] {
            for id in ids {
                if !crate::paths::valid_id(id) {
                    return Err(format!("mcp.expose.{what}: {id:?} is not a job or runnable id"));
                }
                if !seen.insert(id.as_str()) {
                    return Err(format!("mcp.expose: {id:?} is listed twice (tool names must be unique)"));
                }
            }
        }
        if self.max_calls_per_session == 0 || self.max_seconds_per_session == 0 || self.max_seconds_per_call == 0 {
            return Err("mcp: max_calls_per_session, max_seconds_per_session and max_seconds_per_call must be at least 1".into());
        }
        Ok(())
    }
}

fn check_destinations(d: &BTreeMap<String, Destination>) -> Result<(), String> {
    for (name, dest) in d {
        if !crate::paths::valid_id(name) {
            return Err(format!(
                "destinations.{name}: a destination name is lower-case letters, digits, '.', '_' or '-'"
            ));
        }
        match dest {
            Destination::Webhook {
                url,
                headers_from_env,
                timeout_seconds,
                max_attempts,
            } => {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(format!("destinations.{name}.url must start with http:// or https://"));
                }
                for (h, env) in headers_from_env {
                    let token = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
                    if !token(h) || !token(env) {
                        return Err(format!(
                            "destinations.{name}.headers_from_env: {h:?}: {env:?} must be a header name and an environment variable name"
                        ));
                    }
                }
                if *timeout_seconds == 0 || *timeout_seconds > 600 || *max_attempts == 0 || *max_attempts > 10 {
                    return Err(format!("destinations.{name}: timeout_seconds must be 1-600 and max_attempts 1-10"));
                }
            }
            Destination::Directory { path } => {
                if path.is_empty() {
                    return Err(format!("destinations.{name}.path must name a directory"));
                }
                crate::paths::check_relative(path).map_err(|e| format!("destinations.{name}.path: {e}"))?;
            }
        }
    }
    Ok(())
}

impl LlmConfig {
    fn check(&self) -> Result<(), String> {
        for (name, p) in &self.providers {
            if !crate::paths::valid_id(name) {
                return Err(format!("llm.providers.{name}: a provider name is lower-case letters, digits, '.', '_' or '-'"));
            }
            if !(p.base_url.starts_with("http://") || p.base_url.starts_with("https://")) {
                return Err(format!("llm.providers.{name}.base_url {:?} must start with http:// or https://", p.base_url));
            }
            if p.timeout_seconds == 0 || p.timeout_seconds > 3600 {
                return Err(format!("llm.providers.{name}.timeout_seconds must be 1-3600"));
            }
            if p.max_retries > 10 {
                return Err(format!("llm.providers.{name}.max_retries must be at most 10"));
            }
            if let Some(env) = &p.api_key_env
                && (env.is_empty() || !env.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
            {
                return Err(format!("llm.providers.{name}.api_key_env {env:?} must be an environment variable name"));
            }
        }
        for (alias, m) in &self.models {
            if !crate::paths::valid_id(alias) {
                return Err(format!("llm.models.{alias}: an alias is lower-case letters, digits, '.', '_' or '-'"));
            }
            if !self.providers.contains_key(&m.provider) {
                let known: Vec<&str> = self.providers.keys().map(String::as_str).collect();
                return Err(format!(
                    "llm.models.{alias}.provider {:?} is not a configured provider (known: {})",
                    m.provider,
                    if known.is_empty() { "none".to_string() } else { known.join(", ") }
                ));
            }
            if m.model.is_empty() {
                return Err(format!("llm.models.{alias}.model must not be empty"));
            }
            if let Some(t) = m.temperature
                && !(0.0..=2.0).contains(&t)
            {
                return Err(format!("llm.models.{alias}.temperature must be 0-2"));
            }
            if m.max_output_tokens == Some(0) {
                return Err(format!("llm.models.{alias}.max_output_tokens must be at least 1"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, LilyError> {
        Config::parse(Path::new("config.yaml"), text)
    }

    #[test]
    fn store_urls_are_checked() {
        assert_eq!(
            StoreUrl::parse("s3://lily-runs/team/a").expect("ok"),
            StoreUrl::S3 {
                bucket: "lily-runs".into(),
                prefix: "team/a".into()
            }
        );
        assert_eq!(StoreUrl::parse("s3://lily-runs").expect("ok").to_string(), "s3://lily-runs");
        assert_eq!(StoreUrl::parse("file:///var/lily").expect("ok"), StoreUrl::File("/var/lily".into()));
        assert_eq!(StoreUrl::parse("memory://").expect("ok"), StoreUrl::Memory);
        for bad in [
            "s3://AKIA:secret@bucket/p",
            "s3://Bucket/p",
            "s3://b/p",
            "s3://bucket/../x",
            "s3://bucket/a//b",
            "s3://bucket/p?x=1",
            "file://relative/path",
            "file:///a/../b",
            "gs://bucket",
            "",
        ] {
            let e = StoreUrl::parse(bad).expect_err("refused");
            assert!(!e.contains("secret"), "{e}");
        }
        assert!(parse("store: \"s3://lily-runs/p\"\n").expect("ok").store.is_some());
        assert_eq!(parse("store: \"ftp://x\"\n").expect_err("refused").code, ErrorCode::JobInvalidSpec);
    }

    #[test]
    fn the_example_parses() {
        let c = parse(
            "llm:\n  providers:\n    local: {kind: openai, base_url: \"http://127.0.0.1:8080/v1\", api_key_env: LOCAL_LLM_KEY, timeout_seconds: 60}\n  models:\n    reviewer: {provider: local, model: \"gemma-3-270m\", temperature: 0, max_output_tokens: 512}\n",
        )
        .expect("parses");
        assert_eq!(c.llm.providers["local"].max_retries, 2);
        assert_eq!(c.llm.models["reviewer"].max_output_tokens, Some(512));
    }

    #[test]
    fn unknown_keys_and_dangling_providers_are_refused_with_their_place() {
        let e = parse("llm:\n  providers:\n    local: {kind: openai, base_url: \"http://x\", api_key: sk-123}\n").expect_err("unknown key");
        assert_eq!(e.code, ErrorCode::JobInvalidSpec);
        assert!(e.message.contains("api_key") && e.message.contains("line 3"), "{}", e.message);
        let e = parse("llm:\n  models:\n    reviewer: {provider: nowhere, model: m}\n").expect_err("dangling");
        assert!(e.message.contains("llm.models.reviewer.provider \"nowhere\""), "{}", e.message);
        let e = parse("llm:\n  providers:\n    p: {kind: openai, base_url: \"ftp://x\"}\n").expect_err("scheme");
        assert!(e.message.contains("base_url"), "{}", e.message);
        assert!(parse("jobs_path: jobs\n").is_ok());
        assert!(parse("").is_ok());
    }
}
