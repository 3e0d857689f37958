//! Capability policy (`.lily/policy.yaml`): ceilings for runtime caps, what
//! each runnable may be granted, and how proposed effects are decided.
//! Deny by default: a missing file grants nothing.

pub mod approvals;
pub mod delivery;
pub mod edit;
pub mod effects;
pub mod review;

use crate::error::{ErrorCode, LilyError};
use crate::sandbox::{DirGrant, Grants, Limits, LlmBudget, LlmGrant, Perms};
use crate::spec::JobSpec;
use crate::workspace::Root;
use globset::{Glob, GlobMatcher};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The policy file as written.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    pub version: u32,
    #[serde(default)]
    pub limits: LimitsPolicy,
    /// Runnable id or glob (`*`, `acme.*`) → what it may be granted.
    /// A key given twice is an error (YAML would silently keep the last).
    #[serde(default, deserialize_with = "unique_keys")]
    #[schemars(with = "BTreeMap<String, RunnableGrants>")]
    pub runnables: BTreeMap<String, RunnableGrants>,
    #[serde(default)]
    pub effects: EffectsPolicy,
}

/// Deserialize a map, refusing duplicate keys.
fn unique_keys<'de, D, V>(d: D) -> Result<BTreeMap<String, V>, D::Error>
where
    D: serde::Deserializer<'de>,
    V: Deserialize<'de>,
{
    struct Visitor<V>(std::marker::PhantomData<V>);
    impl<'de, V: Deserialize<'de>> serde::de::Visitor<'de> for Visitor<V> {
        type Value = BTreeMap<String, V>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a map of runnable ids or globs")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some((k, v)) = map.next_entry::<String, V>()? {
                if out.contains_key(&k) {
                    return Err(serde::de::Error::custom(format!(
                        "runnables: {k:?} is listed twice; merge the two entries into one"
                    )));
                }
                out.insert(k, v);
            }
            Ok(out)
        }
    }
    d.deserialize_map(Visitor(std::marker::PhantomData))
}

/// Ceilings for job runtime caps, and per-step output caps.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsPolicy {
    pub timeout_seconds: u64,
    pub retry_max: u32,
    pub max_parallelism: usize,
    pub max_parallel_runs: u32,
    /// Ceiling for `runtime.fuel`; `None` = unmetered allowed.
    pub fuel: Option<u64>,
    pub memory_mb: u64,
    pub max_output_bytes: u64,
    pub max_event_bytes: u64,
    pub max_events_per_step: u64,
    /// Largest component (MiB) Lily compiles and runs.
    pub max_component_mb: u64,
    /// Ceilings for `runtime.http` (per step).
    pub http_max_requests: u32,
    pub http_max_request_bytes: u64,
    pub http_max_response_bytes: u64,
    pub http_timeout_seconds: u64,
    /// Ceilings for `mcp:` in `.lily/config.yaml` (`lily mcp serve`).
    pub mcp_max_calls_per_session: u32,
    pub mcp_max_seconds_per_session: u64,
    pub mcp_max_seconds_per_call: u64,
}

impl Default for LimitsPolicy {
    fn default() -> Self {
        LimitsPolicy {
            timeout_seconds: 86_400,
            retry_max: 10,
            max_parallelism: 64,
            max_parallel_runs: 32,
            fuel: None,
            memory_mb: 1024,
            max_output_bytes: 8 << 20,
            max_event_bytes: 16 << 10,
            max_events_per_step: 1000,
            max_component_mb: 64,
            http_max_requests: 1024,
            http_max_request_bytes: 16 << 20,
            http_max_response_bytes: 64 << 20,
            http_timeout_seconds: 300,
            mcp_max_calls_per_session: 10_000,
            mcp_max_seconds_per_session: 86_400,
            mcp_max_seconds_per_call: 86_400,
        }
    }
}

/// What one runnable (id or glob) may be granted.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunnableGrants {
    #[serde(default)]
    pub fs: Vec<FsGrant>,
    /// Env var names the runnable may receive (values come from the host
    /// environment at run time and are never recorded).
    #[serde(default)]
    pub env: Vec<String>,
    /// Outbound `host:port` allow-list (raw TCP).
    #[serde(default)]
    pub network: Vec<String>,
    /// `wasi:http` allow-list: `scheme://host[:port][/path-prefix]`.
    #[serde(default)]
    pub http: Vec<String>,
    /// Model calls: the aliases and the run's budget under this rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub llm: Option<LlmRule>,
}

/// `runnables.<id>.llm`: which model aliases, and how much of them per run.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LlmRule {
    /// Model aliases from `.lily/config.yaml` (`llm.models`).
    pub models: Vec<String>,
    pub max_calls: u32,
    pub max_input_tokens: u64,
    pub max_output_tokens: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FsGrant {
    /// A directory relative to the root; the grant covers everything under it.
    pub path: String,
    pub mode: Perms,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EffectMode {
    Deny,
    #[default]
    RequireApproval,
    AutoApprove,
}

impl EffectMode {
    /// The name as the policy file spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            EffectMode::Deny => "deny",
            EffectMode::RequireApproval => "require_approval",
            EffectMode::AutoApprove => "auto_approve",
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EffectRule {
    /// Decision when no glob below matches.
    #[serde(default)]
    pub default: EffectMode,
    /// Targets (root-relative path globs, or destinations) approved without asking.
    #[serde(default)]
    pub auto_approve: Vec<String>,
    /// Targets always denied.
    #[serde(default)]
    pub deny: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct EffectsPolicy {
    pub write_file: EffectRule,
    pub publish: EffectRule,
    pub send: EffectRule,
    /// A pending request older than this expires as denied.
    pub approval_ttl_seconds: u64,
}

impl Default for EffectsPolicy {
    fn default() -> Self {
        EffectsPolicy {
            write_file: EffectRule::default(),
            publish: EffectRule::default(),
            send: EffectRule::default(),
            approval_ttl_seconds: 7 * 86_400,
        }
    }
}

/// A loaded, validated policy.
#[derive(Debug, Clone)]
pub struct Policy {
    pub file: PolicyFile,
    /// Where it came from (`None` = built-in deny-everything defaults).
    pub source: Option<PathBuf>,
    matchers: Vec<(String, GlobMatcher)>,
    /// Effect globs, compiled once per policy version: (kind, rule list,
    /// glob text, matcher), in file order.
    effect_matchers: Vec<(&'static str, EffectList, String, GlobMatcher)>,
    /// Granted `host:port` names resolved so far, once per policy version
    /// (a long-lived process keeps this policy until the file changes).
    resolved: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, Vec<std::net::SocketAddr>>>>,
}

/// Which list of an effect rule a glob is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EffectList {
    Deny,
    AutoApprove,
}

fn policy_error(path: &Path, msg: impl std::fmt::Display) -> LilyError {
    LilyError::new(ErrorCode::JobPolicyDenied, format!("{}: invalid policy: {msg}", path.display()))
        .with_hint("fix the line named above; docs/security.md#keys lists every key and its rule")
}

impl Policy {
    /// Deny-everything defaults (no policy file).
    pub fn defaults() -> Policy {
        Policy {
            file: PolicyFile {
                version: 1,
                ..PolicyFile::default()
            },
            source: None,
            matchers: Vec::new(),
            effect_matchers: Vec::new(),
            resolved: Default::default(),
        }
    }

    /// Load `.lily/policy.yaml` of `root` (defaults when missing).
    pub fn load(root: &Root) -> Result<Policy, LilyError> {
        let path = root.policy_path();
        match std::fs::read_to_string(&path) {
            Ok(text) => Policy::parse(&path, &text, Some(root)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Policy::defaults()),
            Err(e) => Err(policy_error(&path, e)),
        }
    }

    /// Parse and validate policy text.
    pub fn parse(path: &Path, text: &str, root: Option<&Root>) -> Result<Policy, LilyError> {
        if text.len() > 1 << 20 {
            return Err(policy_error(path, "file is larger than 1 MiB"));
        }
        if crate::util::yaml_nesting_exceeds(text, crate::util::MAX_YAML_DEPTH) {
            return Err(policy_error(
                path,
                format!("the document nests more than {} levels deep", crate::util::MAX_YAML_DEPTH),
            ));
        }
        let file: PolicyFile = serde_norway::from_str(text).map_err(|e| policy_error(path, e))?;
        if file.version != 1 {
            return Err(policy_error(path, format!("version {} is not supported (use 1)", file.version)));
        }
        let mut matchers = Vec::new();
        for (pattern, g) in &file.runnables {
            let m = Glob::new(pattern)
                .map_err(|e| policy_error(path, format!("runnables: bad glob {pattern:?}: {e}")))?
                .compile_matcher();
            matchers.push((pattern.clone(), m));
            if let Some(l) = &g.llm {
                if l.models.is_empty() || l.models.iter().any(|m| !crate::paths::valid_id(m)) {
                    return Err(policy_error(
                        path,
                        format!("runnables.{pattern}.llm.models must list model aliases (e.g. [reviewer])"),
                    ));
                }
                if l.max_calls == 0 || l.max_output_tokens == 0 || l.max_input_tokens == 0 {
                    return Err(policy_error(
                        path,
                        format!("runnables.{pattern}.llm: max_calls, max_input_tokens and max_output_tokens must be at least 1"),
                    ));
                }
            }
            for fs in &g.fs {
                crate::paths::check_relative(&fs.path).map_err(|e| policy_error(path, format!("runnables.{pattern}.fs: {e}")))?;
                if let Some(root) = root
                    && let Ok(canon) = root.path.join(&fs.path).canonicalize()
                    && !canon.starts_with(&root.path)
                {
                    return Err(policy_error(path, format!("runnables.{pattern}.fs: {:?} resolves outside the root", fs.path)));
                }
                if fs.mode == Perms::ReadWrite {
                    // The lexical path, and where it really leads (a link).
                    let real = root.and_then(|r| {
                        Some(
                            r.path
                                .join(&fs.path)
                                .canonicalize()
                                .ok()?
                                .strip_prefix(&r.path)
                                .ok()?
                                .to_string_lossy()
                                .into_owned(),
                        )
                    });
                    for p in std::iter::once(normalize(&fs.path)).chain(real.map(|r| normalize(&r))) {
                        if let Some(why) = rw_grant_refused(&p) {
                            return Err(policy_error(path, format!("runnables.{pattern}.fs: a read-write grant of {:?} {why}", fs.path)));
                        }
                    }
                }
            }
            for n in &g.network {
                let ok = n
                    .rsplit_once(':')
                    .is_some_and(|(h, p)| !h.is_empty() && !h.contains('*') && p.parse::<u16>().is_ok());
                if !ok {
                    return Err(policy_error(
                        path,
                        format!("runnables.{pattern}.network: {n:?} must be host:port (no wildcards)"),
                    ));
                }
            }
            for h in &g.http {
                crate::sandbox::http::HttpRule::parse(h).map_err(|e| policy_error(path, format!("runnables.{pattern}.http: {e}")))?;
            }
            for e in &g.env {
                if e.is_empty() || e.contains('=') || e.contains('*') {
                    return Err(policy_error(path, format!("runnables.{pattern}.env: {e:?} is not an env var name")));
                }
            }
        }
        let mut effect_matchers = Vec::new();
        for (kind, rule) in [
            ("write_file", &file.effects.write_file),
            ("publish", &file.effects.publish),
            ("send", &file.effects.send),
        ] {
            let lists = rule
                .deny
                .iter()
                .map(|g| (EffectList::Deny, g))
                .chain(rule.auto_approve.iter().map(|g| (EffectList::AutoApprove, g)));
            for (list, g) in lists {
                let m = Glob::new(g)
                    .map_err(|e| policy_error(path, format!("effects.{kind}: bad glob {g:?}: {e}")))?
                    .compile_matcher();
                effect_matchers.push((kind, list, g.clone(), m));
                if kind == "write_file" {
                    crate::paths::check_relative(g.trim_end_matches("/**").trim_end_matches("**"))
                        .or_else(|e| if g == "**" { Ok(()) } else { Err(e) })
                        .map_err(|e| policy_error(path, format!("effects.write_file: {e}")))?;
                }
            }
        }
        Ok(Policy {
            file,
            source: Some(path.to_path_buf()),
            matchers,
            effect_matchers,
            resolved: Default::default(),
        })
    }

    /// Entries that apply to a runnable id, most specific (exact) first.
    fn entries_for(&self, runnable: &str) -> Vec<(&str, &RunnableGrants)> {
        let mut v: Vec<(&str, &RunnableGrants)> = self
            .matchers
            .iter()
            .filter(|(_, m)| m.is_match(runnable))
            .filter_map(|(p, _)| self.file.runnables.get(p).map(|g| (p.as_str(), g)))
            .collect();
        v.sort_by_key(|(p, _)| (*p != runnable, p.to_string()));
        v
    }

    /// Is `dir` (relative to the root) grantable to `runnable` with `perms`?
    /// Returns the policy entry that allows it.
    pub fn allows_dir(&self, runnable: &str, dir: &str, perms: Perms) -> Option<String> {
        let want = normalize(dir);
        for (pattern, g) in self.entries_for(runnable) {
            for fs in &g.fs {
                let have = normalize(&fs.path);
                let covers = have == "." || want == have || want.starts_with(&format!("{have}/"));
                let mode_ok = fs.mode == Perms::ReadWrite || perms == Perms::ReadOnly;
                if covers && mode_ok {
                    return Some(format!("runnables.{pattern:?}.fs: {} ({})", fs.path, mode_str(fs.mode)));
                }
            }
        }
        None
    }

    /// Is the env var name grantable to `runnable`?
    pub fn allows_env(&self, runnable: &str, name: &str) -> bool {
        self.entries_for(runnable).iter().any(|(_, g)| g.env.iter().any(|e| e == name))
    }

    /// Network allow-list for `runnable`.
    /// The model grant of `runnable`: the most specific rule with `llm`
    /// (its exact id before globs). Steps granted by one rule share its
    /// budget within a run.
    pub fn llm_for(&self, runnable: &str) -> Option<LlmGrant> {
        self.entries_for(runnable).into_iter().find_map(|(pattern, g)| {
            g.llm.as_ref().map(|l| LlmGrant {
                models: l.models.clone(),
                budget: LlmBudget {
                    max_calls: l.max_calls,
                    max_input_tokens: l.max_input_tokens,
                    max_output_tokens: l.max_output_tokens,
                },
                rule: pattern.to_string(),
            })
        })
    }

    /// The `wasi:http` allow-list of `runnable` (every matching rule's).
    pub fn http_for(&self, runnable: &str) -> Vec<String> {
        let mut v: Vec<String> = self.entries_for(runnable).iter().flat_map(|(_, g)| g.http.clone()).collect();
        v.sort();
        v.dedup();
        v
    }

    pub fn network_for(&self, runnable: &str) -> Vec<String> {
        let mut v: Vec<String> = self.entries_for(runnable).iter().flat_map(|(_, g)| g.network.clone()).collect();
        v.sort();
        v.dedup();
        v
    }

    pub fn approval_ttl(&self) -> Duration {
        Duration::from_secs(self.file.effects.approval_ttl_seconds)
    }

    /// Check a job's runtime caps against the ceilings. The error names the
    /// cap, the asked value and the ceiling.
    pub fn check_runtime(&self, spec: &JobSpec) -> Result<Vec<Decision>, LilyError> {
        let l = &self.file.limits;
        let r = &spec.runtime;
        let mut decisions = Vec::new();
        let mut check = |cap: &str, asked: u64, ceiling: u64| -> Result<(), LilyError> {
            if asked > ceiling {
                return Err(LilyError::new(
                    ErrorCode::JobPolicyDenied,
                    format!("runtime.{cap} = {asked} exceeds the policy ceiling limits.{cap} = {ceiling}"),
                )
                .with_hint(format!("lower runtime.{cap} in the job, or raise limits.{cap} in {}", self.source_name()))
                .with_details(serde_json::json!({"cap": cap, "asked": asked, "ceiling": ceiling})));
            }
            decisions.push(Decision {
                subject: format!("runtime.{cap}"),
                decision: Verdict::Allowed,
                reason: format!("{asked} <= {ceiling}"),
            });
            Ok(())
        };
        check("timeout_seconds", r.timeout_seconds, l.timeout_seconds)?;
        check("retry_max", u64::from(r.retry_max), u64::from(l.retry_max))?;
        // Unset, the parallelism defaults to the number of cores, capped by
        // the ceiling (a job that asks for nothing is never denied for it).
        let parallelism = r.max_parallelism.unwrap_or_else(|| r.parallelism().min(l.max_parallelism));
        check("max_parallelism", parallelism as u64, l.max_parallelism as u64)?;
        check("max_parallel_runs", u64::from(r.max_parallel_runs), u64::from(l.max_parallel_runs))?;
        check("memory_mb", r.memory_mb.unwrap_or(l.memory_mb.min(256)), l.memory_mb)?;
        if let Some(ceiling) = l.fuel {
            match r.fuel {
                Some(f) => check("fuel", f, ceiling)?,
                None => decisions.push(Decision {
                    subject: "runtime.fuel".into(),
                    decision: Verdict::Applied,
                    reason: format!("unset; policy ceiling {ceiling} applied"),
                }),
            }
        }
        if let Some(h) = &r.http {
            let check_http = |cap: &str, asked: Option<u64>, ceiling: u64| -> Result<(), LilyError> {
                match asked {
                    Some(a) if a > ceiling => Err(LilyError::new(
                        ErrorCode::JobPolicyDenied,
                        format!("runtime.http.{cap} = {a} exceeds the policy ceiling limits.http_{cap} = {ceiling}"),
                    )
                    .with_hint(format!(
                        "lower runtime.http.{cap} in the job, or raise limits.http_{cap} in {}",
                        self.source_name()
                    ))
                    .with_details(serde_json::json!({"cap": format!("http.{cap}"), "asked": a, "ceiling": ceiling}))),
                    Some(0) => Err(LilyError::new(ErrorCode::JobInvalidSpec, format!("runtime.http.{cap} must be at least 1"))),
                    _ => Ok(()),
                }
            };
            check_http("max_requests", h.max_requests.map(u64::from), u64::from(l.http_max_requests))?;
            check_http("max_request_bytes", h.max_request_bytes, l.http_max_request_bytes)?;
            check_http("max_response_bytes", h.max_response_bytes, l.http_max_response_bytes)?;
            check_http("timeout_seconds", h.timeout_seconds, l.http_timeout_seconds)?;
            let asked = [
                ("max_requests", h.max_requests.map(u64::from), u64::from(l.http_max_requests)),
                ("max_request_bytes", h.max_request_bytes, l.http_max_request_bytes),
                ("max_response_bytes", h.max_response_bytes, l.http_max_response_bytes),
                ("timeout_seconds", h.timeout_seconds, l.http_timeout_seconds),
            ];
            for (cap, a, ceiling) in asked {
                if let Some(a) = a {
                    decisions.push(Decision {
                        subject: format!("runtime.http.{cap}"),
                        decision: Verdict::Allowed,
                        reason: format!("{a} <= {ceiling}"),
                    });
                }
            }
        }
        Ok(decisions)
    }

    /// Check the MCP server's budgets (`mcp:` in the config) against the
    /// ceilings.
    pub fn check_mcp(&self, c: &crate::config::McpConfig) -> Result<(), LilyError> {
        let l = &self.file.limits;
        for (key, asked, ceiling) in [
            (
                "max_calls_per_session",
                u64::from(c.max_calls_per_session),
                u64::from(l.mcp_max_calls_per_session),
            ),
            ("max_seconds_per_session", c.max_seconds_per_session, l.mcp_max_seconds_per_session),
            ("max_seconds_per_call", c.max_seconds_per_call, l.mcp_max_seconds_per_call),
        ] {
            if asked > ceiling {
                return Err(LilyError::new(
                    ErrorCode::JobPolicyDenied,
                    format!("mcp.{key} = {asked} in .lily/config.yaml exceeds the policy ceiling limits.mcp_{key} = {ceiling}"),
                )
                .with_hint(format!("lower mcp.{key}, or raise limits.mcp_{key} in {}", self.source_name())));
            }
        }
        Ok(())
    }

    /// The step limits for a job under this policy.
    pub fn limits_for(&self, spec: &JobSpec) -> Limits {
        let l = &self.file.limits;
        Limits {
            memory_bytes: spec.runtime.memory_mb.unwrap_or(l.memory_mb.min(256)) << 20,
            fuel: spec.runtime.fuel.or(l.fuel),
            deadline: Duration::from_secs(spec.runtime.timeout_seconds),
            max_output_bytes: l.max_output_bytes,
            max_events: l.max_events_per_step,
            max_event_bytes: l.max_event_bytes,
            http: self.http_limits_for(spec),
            ..Limits::default()
        }
    }

    /// A step's HTTP caps: what the job asks, else the defaults, never
    /// above the ceilings (`check_runtime` refuses a job that asks more).
    fn http_limits_for(&self, spec: &JobSpec) -> crate::sandbox::http::HttpLimits {
        let l = &self.file.limits;
        let d = crate::sandbox::http::HttpLimits::default();
        let h = spec.runtime.http.unwrap_or_default();
        crate::sandbox::http::HttpLimits {
            max_requests: h.max_requests.unwrap_or(d.max_requests).min(l.http_max_requests),
            max_request_bytes: h.max_request_bytes.unwrap_or(d.max_request_bytes).min(l.http_max_request_bytes),
            max_response_bytes: h.max_response_bytes.unwrap_or(d.max_response_bytes).min(l.http_max_response_bytes),
            timeout: h
                .timeout_seconds
                .map(Duration::from_secs)
                .unwrap_or(d.timeout)
                .min(Duration::from_secs(l.http_timeout_seconds)),
        }
    }

    pub fn source_name(&self) -> String {
        self.source
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| ".lily/policy.yaml (missing: defaults apply)".into())
    }

    /// Grant a directory to a runnable, or deny with a hint that shows the
    /// exact policy lines to add.
    pub fn grant_dir(&self, root: &Root, runnable: &str, rel: &str, guest: &str, perms: Perms) -> Result<(DirGrant, Decision), LilyError> {
        let host = root
            .confine(rel)
            .map_err(|e| LilyError::new(ErrorCode::JobPolicyDenied, format!("directory {rel:?} for {runnable}: {e}")))?;
        if !host.is_dir() {
            return Err(LilyError::new(
                ErrorCode::JobPolicyDenied,
                format!("directory {rel:?} for {runnable} is not a directory"),
            ));
        }
        let rel_norm = host
            .strip_prefix(&root.path)
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| rel.to_string());
        let rel_norm = if rel_norm.is_empty() { ".".to_string() } else { rel_norm };
        match self.allows_dir(runnable, &rel_norm, perms) {
            Some(by) => Ok((
                DirGrant {
                    host,
                    guest: guest.to_string(),
                    perms,
                },
                Decision {
                    subject: format!("{runnable}: fs {rel_norm} -> {guest} ({})", mode_str(perms)),
                    decision: Verdict::Granted,
                    reason: by,
                },
            )),
            None => Err(LilyError::new(
                ErrorCode::JobPolicyDenied,
                format!("policy does not allow {runnable} {} access to {rel_norm:?}", mode_str(perms)),
            )
            .with_hint(format!(
                "to allow this, merge into {} (under its existing `runnables` map, into the \"{runnable}\" entry if there is one; a second `runnables` key is refused):\nrunnables:\n  \"{runnable}\":\n    fs:\n      - path: {rel_norm}\n        mode: {}",
                self.source_name(),
                mode_str(perms)
            ))
            .with_details(serde_json::json!({"runnable": runnable, "path": rel_norm, "mode": mode_str(perms)}))),
        }
    }

    /// Env grants: names asked by the job, values from the host environment.
    pub fn grant_env(&self, runnable: &str, names: &[String]) -> Result<(Vec<(String, String)>, Vec<Decision>), LilyError> {
        let mut env = Vec::new();
        let mut decisions = Vec::new();
        for n in names {
            if !self.allows_env(runnable, n) {
                return Err(
                    LilyError::new(ErrorCode::JobPolicyDenied, format!("policy does not allow env var {n} for {runnable}")).with_hint(format!(
                        "to allow this, merge into {} (under its existing `runnables` map, into the \"{runnable}\" entry if there is one; a second `runnables` key is refused):\nrunnables:\n  \"{runnable}\":\n    env: [{n}]",
                        self.source_name()
                    )),
                );
            }
            if let Ok(v) = std::env::var(n) {
                env.push((n.clone(), v));
            }
            decisions.push(Decision {
                subject: format!("{runnable}: env {n}"),
                decision: Verdict::Granted,
                reason: "listed in policy".into(),
            });
        }
        Ok((env, decisions))
    }

    /// Full grants for one runnable step.
    pub fn grants_for(&self, runnable: &str, dirs: Vec<DirGrant>, env: Vec<(String, String)>) -> Grants {
        let network = self.network_for(runnable);
        let resolved = network.iter().map(|hp| (hp.clone(), self.resolve(hp))).collect();
        Grants {
            dirs,
            env,
            network,
            resolved,
            http: self.http_for(runnable),
            llm: self.llm_for(runnable),
        }
    }

    /// The addresses of a granted `host:port`, resolved the first time this
    /// version of the policy grants it.
    fn resolve(&self, host_port: &str) -> Vec<std::net::SocketAddr> {
        use std::net::ToSocketAddrs;
        if let Ok(cache) = self.resolved.lock()
            && let Some(a) = cache.get(host_port)
        {
            return a.clone();
        }
        let addrs: Vec<std::net::SocketAddr> = host_port.to_socket_addrs().map(|a| a.collect()).unwrap_or_default();
        // A failed lookup is not kept: the next run asks again.
        if !addrs.is_empty()
            && let Ok(mut cache) = self.resolved.lock()
        {
            cache.insert(host_port.to_string(), addrs.clone());
        }
        addrs
    }

    /// Decide a proposed effect target.
    pub fn decide_effect(&self, kind: &str, target: &str) -> (EffectMode, String) {
        let rule = match kind {
            "write_file" => &self.file.effects.write_file,
            "publish" => &self.file.effects.publish,
            _ => &self.file.effects.send,
        };
        let rule_kind = match kind {
            "write_file" | "publish" => kind,
            _ => "send",
        };
        let hit = |list: EffectList| {
            self.effect_matchers
                .iter()
                .find(|(k, l, _, m)| *k == rule_kind && *l == list && m.is_match(target))
                .map(|(_, _, g, _)| g.clone())
        };
        if let Some(g) = hit(EffectList::Deny) {
            return (EffectMode::Deny, format!("effects.{kind}.deny matches {g:?}"));
        }
        if let Some(g) = hit(EffectList::AutoApprove) {
            return (EffectMode::AutoApprove, format!("effects.{kind}.auto_approve matches {g:?}"));
        }
        (rule.default, format!("effects.{kind}.default"))
    }
}

/// One recorded policy decision (receipts, `lily policy explain`).
pub use crate::runs::{Decision, Verdict};

pub fn mode_str(p: Perms) -> &'static str {
    match p {
        Perms::ReadOnly => "ro",
        Perms::ReadWrite => "rw",
    }
}

fn normalize(p: &str) -> String {
    let t = p.trim_start_matches("./").trim_end_matches('/');
    if t.is_empty() { ".".into() } else { t.to_string() }
}

/// Why a read-write grant of the (normalized, root-relative) directory `p`
/// is refused: it would let a runnable rewrite what Lily trusts — its own
/// state under `.lily/` (policy, config, jobs, runnables, cache, runs),
/// except the output area `.lily/out/` — or a `.git/` directory (hooks run
/// on the operator's next git command).
fn rw_grant_refused(p: &str) -> Option<&'static str> {
    let parts: Vec<String> = if p == "." {
        Vec::new()
    } else {
        p.split('/').map(str::to_ascii_lowercase).collect()
    };
    let under_out = parts.len() >= 2 && parts[0] == ".lily" && parts[1] == "out";
    if parts.first().is_none_or(|f| f == ".lily") && !under_out {
        return Some("would cover Lily's own state (.lily/); grant a directory beside it, or one under .lily/out/");
    }
    if parts.iter().any(|c| c == ".git") {
        return Some("is inside a .git directory");
    }
    None
}

/// The commented starter policy written by `lily init`.
pub const STARTER_POLICY: &str = r#"# Lily capability policy. Deny by default: a runnable gets only what is
# listed here. `lily policy check` validates this file; `lily policy explain
# <job>` shows what each step of a job would be granted and why.
version: 1

# Ceilings for the `runtime` caps a job may ask for, and per-step output caps.
limits:
  timeout_seconds: 3600
  retry_max: 5
  max_parallelism: 16
  max_parallel_runs: 20
  memory_mb: 512
  max_output_bytes: 8388608
  max_event_bytes: 16384
  max_events_per_step: 1000

# Per runnable id (or glob such as "acme.*"): directories (relative to the
# root, ro or rw), env var names, outbound host:port pairs. Nothing else.
runnables:
  "security.v1":
    fs:
      - path: .lily/examples/workspace
        mode: ro
  "operations.v1":
    fs:
      - path: .lily/examples/workspace
        mode: ro
  # The model-backed built-ins of the `review` job. Model aliases are
  # configured in .lily/config.yaml (llm:); the budget is per run, shared by
  # every step this rule grants.
  "llm-review.v1":
    fs:
      - path: .lily/examples/workspace
        mode: ro
  "llm-*":
    llm: {models: [reviewer], max_calls: 20, max_input_tokens: 60000, max_output_tokens: 8000}

# Side effects proposed by runnables: deny, require_approval or auto_approve.
effects:
  write_file:
    default: require_approval
    auto_approve: [".lily/out/**"]
  publish:
    default: require_approval
  send:
    default: deny
  approval_ttl_seconds: 604800
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn granted_network_names_are_resolved_once_per_policy_version() {
        let p = Policy::parse(
            Path::new("policy.yaml"),
            "version: 1\nrunnables:\n  \"a.v1\":\n    network: [\"127.0.0.1:9\"]\n",
            None,
        )
        .expect("policy");
        let g = p.grants_for("a.v1", vec![], vec![]);
        let addr: std::net::SocketAddr = "127.0.0.1:9".parse().expect("addr");
        assert_eq!(g.resolved, vec![("127.0.0.1:9".to_string(), vec![addr])]);
        assert_eq!(p.resolved.lock().expect("cache").get("127.0.0.1:9"), Some(&vec![addr]));
        assert_eq!(
            p.grants_for("a.v1", vec![], vec![]).network_addrs(),
            g.resolved,
            "the second run uses the cache"
        );
    }

    #[test]
    fn read_write_grants_never_cover_lily_state_or_git() {
        for p in [".", ".lily", ".lily/jobs", ".LILY/runnables", ".lily/outx", "src/.git", ".git/hooks"] {
            assert!(rw_grant_refused(p).is_some(), "{p}");
        }
        for p in ["state", ".lily/out", ".lily/out/x", "work/.lily-notes", "lily"] {
            assert!(rw_grant_refused(p).is_none(), "{p}");
        }
        let text = STARTER_POLICY.replace(
            "        mode: ro\n  \"operations.v1\"",
            "        mode: ro\n      - path: .\n        mode: rw\n  \"operations.v1\"",
        );
        let e = Policy::parse(Path::new("policy.yaml"), &text, None).expect_err("refused");
        assert!(e.message.contains("Lily's own state"), "{}", e.message);
    }

    #[test]
    fn starter_policy_is_valid() {
        let p = Policy::parse(Path::new("policy.yaml"), STARTER_POLICY, None).expect("valid");
        assert!(p.allows_dir("security.v1", ".lily/examples/workspace", Perms::ReadOnly).is_some());
        assert!(p.allows_dir("security.v1", ".lily/examples/workspace/sub", Perms::ReadOnly).is_some());
        assert!(p.allows_dir("security.v1", ".lily/examples/workspace", Perms::ReadWrite).is_none());
        assert!(p.allows_dir("other.v1", ".lily/examples/workspace", Perms::ReadOnly).is_none());
        assert_eq!(p.decide_effect("write_file", ".lily/out/x.md").0, EffectMode::AutoApprove);
        assert_eq!(p.decide_effect("write_file", "src/main.rs").0, EffectMode::RequireApproval);
        assert_eq!(p.decide_effect("send", "slack").0, EffectMode::Deny);
    }

    #[test]
    fn strict_validation() {
        let bad = [
            "version: 1\nbogus: 1\n",
            "version: 2\n",
            "version: 1\nrunnables:\n  \"[\": {}\n",
            "version: 1\nrunnables:\n  a:\n    fs: [{path: /etc, mode: ro}]\n",
            "version: 1\nrunnables:\n  a:\n    fs: [{path: ../x, mode: ro}]\n",
            "version: 1\nrunnables:\n  a:\n    network: [\"*:443\"]\n",
            "version: 1\nrunnables:\n  a:\n    fs: [{path: x, mode: rwx}]\n",
            "version: 1\nrunnables:\n  a: {}\n  a:\n    env: [X]\n",
        ];
        for b in bad {
            let e = Policy::parse(Path::new("policy.yaml"), b, None).expect_err(b);
            assert!(e.message.contains("policy.yaml"), "{}", e.message);
        }
    }

    #[test]
    fn globs_match_runnable_ids() {
        let p = Policy::parse(Path::new("p"), "version: 1\nrunnables:\n  \"acme.*\":\n    env: [TOKEN]\n", None).expect("ok");
        assert!(p.allows_env("acme.scan", "TOKEN"));
        assert!(!p.allows_env("other", "TOKEN"));
        assert!(!p.allows_env("acme.scan", "HOME"));
    }
}
