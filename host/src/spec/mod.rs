//! Job specs (`.lily/jobs/*.job.yaml`): strict parsing, validation and
//! discovery. Every problem is a [`LilyError`] with a stable code and the
//! file (and, where the parser knows it, line and key) in the message.

pub mod cron;

use crate::error::{ErrorCode, LilyError};
use crate::paths::valid_id;
use cron::CronSchedule;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Specs larger than this are refused before parsing.
pub const MAX_SPEC_BYTES: u64 = 1024 * 1024;

/// A job spec (`.lily/jobs/<id>.job.yaml`; docs/job-spec.md), validated
/// when it is loaded.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// The job's id: `[a-z0-9][a-z0-9._-]{0,63}`.
    pub id: String,
    /// One line for people.
    pub title: String,
    /// IANA time zone of a cron trigger (or `trigger.timezone`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// What runs: a blueprint and its input.
    pub target: Target,
    /// The blueprint's settings (checked by the blueprint: docs/blueprints.md).
    pub bindings: serde_json::Value,
    /// `manual`, or `cron` with a schedule.
    pub trigger: Trigger,
    /// Timeout, retries, parallelism and resource caps (within the policy's ceilings).
    pub runtime: Runtime,
    /// The summary's format, the artifacts to keep, an optional publish.
    pub output: Output,
    /// The file and text this spec was parsed from (for error locations).
    #[serde(skip)]
    pub source: Option<std::sync::Arc<SpecSource>>,
    /// Which of the job's run directories to keep (`lily jobs prune`, and
    /// the scheduler after each run); absent: `.lily/config.yaml`'s
    /// `retention:`, else keep everything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<crate::util::Retention>,
}

/// Where a spec came from: its path and text.
#[derive(Debug)]
pub struct SpecSource {
    pub path: PathBuf,
    pub text: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// `blueprint`.
    pub kind: String,
    /// The blueprint's id, e.g. `council.v1`.
    pub id: String,
    /// Semver requirement, e.g. `"1"`, `"^1.0"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default = "empty_object")]
    pub input: serde_json::Value,
}

fn empty_object() -> serde_json::Value {
    serde_json::json!({})
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TriggerType {
    Manual,
    Cron,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Catchup {
    #[default]
    Latest,
    Skip,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Trigger {
    #[serde(rename = "type")]
    pub kind: TriggerType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    #[serde(default)]
    pub catchup: Catchup,
    #[serde(default = "default_starting_deadline")]
    pub starting_deadline_seconds: u64,
}

fn default_starting_deadline() -> u64 {
    300
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Runtime {
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u64,
    #[serde(default)]
    pub retry_max: u32,
    #[serde(default = "default_backoff")]
    pub retry_backoff_seconds: u64,
    /// Steps at once; default: the number of cores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_parallelism: Option<usize>,
    #[serde(default = "default_parallel_runs")]
    pub max_parallel_runs: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fuel: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<u64>,
    /// Lower the model budget policy grants (per run, per rule); never raise it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub llm: Option<LlmRuntime>,
    /// Outbound HTTP caps per step (unset: the defaults; never above the
    /// policy's `limits.http_*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpRuntime>,
}

/// `runtime.http`: a step's HTTP caps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpRuntime {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_requests: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_request_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_response_bytes: Option<u64>,
    /// Per request, connect to last byte (never past the step's deadline).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u64>,
}

/// `runtime.llm`: caps below a step's `llm` grant (unset: the grant's).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LlmRuntime {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_calls: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_input_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<u64>,
}

fn default_timeout() -> u64 {
    300
}
fn default_backoff() -> u64 {
    1
}
fn default_parallel_runs() -> u32 {
    1
}

impl Runtime {
    pub fn parallelism(&self) -> usize {
        // `available_parallelism` reads /proc and the cgroup files on every
        // call (~0.1 ms, a third of planning a job in the dev build): once
        // per process.
        static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
        self.max_parallelism
            .unwrap_or_else(|| *CORES.get_or_init(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2)))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SummaryFormat {
    #[default]
    Markdown,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Output {
    #[serde(default)]
    pub summary_format: SummaryFormat,
    /// Target artifacts to write; `None` = all the target offers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifacts: Option<Vec<String>>,
    /// Ask for an artifact to be published (an effect, subject to approval).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish: Option<Publish>,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Publish {
    pub artifact: String,
    pub to: String,
}

impl JobSpec {
    /// The effective IANA time zone (`timezone` or `trigger.timezone`).
    pub fn effective_timezone(&self) -> Option<&str> {
        self.timezone.as_deref().or(self.trigger.timezone.as_deref())
    }

    /// The cron schedule of a cron job (validated at load time).
    pub fn schedule(&self) -> Option<CronSchedule> {
        let expr = self.trigger.cron.as_deref()?;
        CronSchedule::parse(expr, self.effective_timezone()?).ok()
    }
}

/// A spec file as loaded: its path, the sha256 of its bytes and the parse
/// result.
#[derive(Debug, Clone)]
pub struct SpecFile {
    pub path: PathBuf,
    pub sha256: Option<String>,
    pub raw: Option<String>,
    pub spec: Result<JobSpec, LilyError>,
}

impl SpecFile {
    /// The id the file declares, or the one its name suggests when invalid.
    pub fn id_hint(&self) -> String {
        match &self.spec {
            Ok(s) => s.id.clone(),
            Err(_) => file_stem_id(&self.path),
        }
    }
}

fn file_stem_id(path: &Path) -> String {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    name.strip_suffix(".job.yaml")
        .or_else(|| name.strip_suffix(".job.yml"))
        .unwrap_or(&name)
        .to_string()
}

fn invalid(path: &Path, msg: impl std::fmt::Display) -> LilyError {
    LilyError::new(ErrorCode::JobInvalidSpec, format!("{}: {msg}", path.display()))
}

/// Load and validate one spec file.
pub fn load_file(path: &Path) -> SpecFile {
    let mut f = SpecFile {
        path: path.to_path_buf(),
        sha256: None,
        raw: None,
        spec: Err(invalid(path, "unread")),
    };
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) => {
            f.spec = Err(invalid(path, format!("cannot read: {e}")));
            return f;
        }
    };
    if meta.len() > MAX_SPEC_BYTES {
        f.spec = Err(invalid(
            path,
            format!("file is {} bytes; job specs are limited to {MAX_SPEC_BYTES} bytes", meta.len()),
        ));
        return f;
    }
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            f.spec = Err(invalid(path, format!("cannot read: {e}")));
            return f;
        }
    };
    f.sha256 = Some(crate::util::sha256(&bytes));
    let text = match String::from_utf8(bytes) {
        Ok(t) => t,
        Err(_) => {
            f.spec = Err(invalid(path, "file is not UTF-8"));
            return f;
        }
    };
    f.spec = parse(path, &text);
    f.raw = Some(text);
    f
}

/// Parse and validate spec text (the path is only for messages).
pub fn parse(path: &Path, text: &str) -> Result<JobSpec, LilyError> {
    if text.len() as u64 > MAX_SPEC_BYTES {
        return Err(invalid(path, format!("spec is larger than {MAX_SPEC_BYTES} bytes")));
    }
    if text
        .lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#') || l.trim() == "---")
    {
        return Err(invalid(
            path,
            "file is empty; a job spec is a YAML mapping with id, title, target, bindings, trigger, runtime and output",
        ));
    }
    // Refuse anchors/aliases outright: specs have no use for them, and this
    // makes alias bombs impossible regardless of the parser's own limits.
    if has_yaml_alias(text) {
        return Err(invalid(path, "YAML anchors and aliases (&name / *name) are not allowed in job specs"));
    }
    if crate::util::yaml_nesting_exceeds(text, crate::util::MAX_YAML_DEPTH) {
        return Err(invalid(
            path,
            format!("the document nests more than {} levels deep", crate::util::MAX_YAML_DEPTH),
        ));
    }
    let value: serde_norway::Value = serde_norway::from_str(text).map_err(|e| invalid(path, e))?;
    if !value.is_mapping() {
        let what = match value {
            serde_norway::Value::Sequence(_) => "a list",
            serde_norway::Value::Null => "empty",
            _ => "a scalar",
        };
        return Err(invalid(path, format!("the document is {what}; a job spec is a YAML mapping")));
    }
    let spec: JobSpec = serde_norway::from_str(text).map_err(|e| {
        let msg = describe_serde_error(&e.to_string());
        let hint = crate::text::unknown_field_hint(&msg);
        let err = invalid(path, msg);
        match hint {
            Some(h) => err.with_hint(format!("{h} (the fields are in docs/job-spec.md)")),
            None => err,
        }
    })?;
    validate(&At { path, text }, &spec)?;
    let mut spec = spec;
    spec.source = Some(std::sync::Arc::new(SpecSource {
        path: path.to_path_buf(),
        text: text.into(),
    }));
    Ok(spec)
}

/// A `&` or `*` that starts an anchor or alias (followed by a name
/// character) outside quotes and comments.
fn has_yaml_alias(text: &str) -> bool {
    for line in text.lines() {
        let chars: Vec<char> = line.chars().collect();
        let (mut in_single, mut in_double) = (false, false);
        for (i, &c) in chars.iter().enumerate() {
            let prev = if i == 0 { ' ' } else { chars[i - 1] };
            match c {
                '#' if !in_single && !in_double && prev.is_whitespace() => break,
                '\'' if !in_double => in_single = !in_single,
                '"' if !in_single => in_double = !in_double,
                '&' | '*'
                    if !in_single
                        && !in_double
                        && matches!(prev, ' ' | '\t' | ':' | '-' | '[' | ',' | '{')
                        && chars.get(i + 1).is_some_and(|n| n.is_alphanumeric() || matches!(n, '_' | '-' | '.')) =>
                {
                    return true;
                }
                _ => {}
            }
        }
    }
    false
}

fn describe_serde_error(msg: &str) -> String {
    // serde_norway reports "unknown field `x`, expected one of ... at line L column C";
    // keep it, it already names the key and the line.
    msg.to_string()
}

/// Where a spec problem is: the file and its text, to name the line of a key.
struct At<'a> {
    path: &'a Path,
    text: &'a str,
}

impl At<'_> {
    /// `<file>:<line>: <msg>` (the line of `key`; just the file when the key
    /// is not found).
    fn prefix(&self, key: &str) -> String {
        match locate_key(self.text, key) {
            Some(line) => format!("{}:{line}", self.path.display()),
            None => self.path.display().to_string(),
        }
    }
    fn invalid(&self, key: &str, msg: impl std::fmt::Display) -> LilyError {
        LilyError::new(ErrorCode::JobInvalidSpec, format!("{}: {msg}", self.prefix(key)))
    }
    fn trigger(&self, key: &str, msg: impl std::fmt::Display) -> LilyError {
        LilyError::new(ErrorCode::JobTriggerInvalid, format!("{}: {msg}", self.prefix(key)))
    }
}

/// A cron or zone error at its key, with a suggestion when the zone or
/// macro is close to a known one.
fn schedule_error(at: &At<'_>, s: &JobSpec, e: &cron::ScheduleError) -> LilyError {
    let zone_key = if s.timezone.is_some() { "timezone" } else { "trigger.timezone" };
    match e {
        cron::ScheduleError::UnknownZone(z) => {
            let err = at.trigger(zone_key, format!("{zone_key}: {e}"));
            match cron::suggest_zone(z) {
                Some(sug) => err.with_hint(format!("did you mean {sug}? (zone names are case-sensitive, as in the tz database)")),
                None => err.with_hint("use an IANA name such as Europe/Berlin or America/New_York (`timedatectl list-timezones`)"),
            }
        }
        cron::ScheduleError::EmptyZone => at.trigger(zone_key, format!("{zone_key}: {e}")),
        cron::ScheduleError::Expression { expr, .. } => {
            let err = at.trigger("trigger.cron", format!("trigger.cron: {e}"));
            match cron::suggest_macro(expr) {
                Some(m) => err.with_hint(format!("did you mean {m}?")),
                None => err,
            }
        }
    }
}

/// The 1-based line of a dotted key path (`trigger.timezone`,
/// `bindings.specialists.1`) in YAML text: block mappings by indentation; a
/// key inside a flow mapping (`trigger: { type: cron, … }`) or a list is
/// reported at the deepest enclosing key found. `None` when not even the
/// first key is there.
pub fn locate_key(text: &str, key: &str) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let indent = |l: &str| l.len() - l.trim_start().len();
    let is_key = |l: &str, k: &str| {
        let t = l.trim_start().trim_start_matches("- ");
        [k.to_string(), format!("\"{k}\""), format!("'{k}'")]
            .iter()
            .any(|q| t.strip_prefix(q.as_str()).is_some_and(|rest| rest.trim_start().starts_with(':')))
    };
    let content = |l: &&str| {
        let t = l.trim_start();
        !t.is_empty() && !t.starts_with('#')
    };
    let (mut from, mut to) = (0, lines.len());
    let mut found: Option<usize> = None;
    for part in key.split('.') {
        // Keys of this level are at the indentation of its first line.
        let Some(level) = lines[from..to].iter().find(|l| content(l)).map(|l| indent(l)) else {
            break;
        };
        let hit = (from..to).find(|&i| content(&lines[i]) && indent(lines[i]) == level && is_key(lines[i], part));
        let Some(i) = hit else { break };
        found = Some(i);
        let own = indent(lines[i]);
        let rest = lines[i].split_once(':').map(|(_, r)| r.trim()).unwrap_or("");
        if rest.starts_with('{') || rest.starts_with('[') {
            // A flow collection: the rest of the path is on this line.
            break;
        }
        from = i + 1;
        to = lines
            .iter()
            .enumerate()
            .skip(from)
            .find(|(_, l)| {
                let t = l.trim_start();
                !t.is_empty() && !t.starts_with('#') && indent(l) <= own && !t.starts_with("- ")
            })
            .map(|(j, _)| j)
            .unwrap_or(lines.len());
    }
    found.map(|i| i + 1)
}

impl JobSpec {
    /// `<file>:<line>` of a key of this spec (the file only when the key is
    /// not found, `None` for a spec not parsed from a file).
    pub fn location(&self, key: &str) -> Option<String> {
        let src = self.source.as_ref()?;
        Some(match locate_key(&src.text, key) {
            Some(line) => format!("{}:{line}", src.path.display()),
            None => src.path.display().to_string(),
        })
    }

    /// `e` with its message prefixed by the location of `key` (`<file>:<line>: …`).
    pub fn at_key(&self, key: &str, mut e: LilyError) -> LilyError {
        if let Some(loc) = self.location(key) {
            e.message = format!("{loc}: {}", e.message);
        }
        e
    }
}

fn validate(at: &At<'_>, s: &JobSpec) -> Result<(), LilyError> {
    if !valid_id(&s.id) {
        return Err(at.invalid("id", format!("id {:?} must match [a-z0-9][a-z0-9._-]{{0,63}}", s.id)));
    }
    if s.title.trim().is_empty() {
        return Err(at.invalid("title", "title must not be empty"));
    }
    if s.target.kind != "blueprint" {
        return Err(at.invalid("target.kind", format!("target.kind {:?} is not supported; use `blueprint`", s.target.kind)));
    }
    if s.target.id.trim().is_empty() {
        return Err(at.invalid("target.id", "target.id must not be empty"));
    }
    if let Some(v) = &s.target.version {
        semver::VersionReq::parse(v).map_err(|e| at.invalid("target.version", format!("target.version {v:?} is not a semver requirement: {e}")))?;
    }
    if !s.bindings.is_object() {
        return Err(at.invalid("bindings", "bindings must be a mapping"));
    }
    if !s.target.input.is_object() {
        return Err(at.invalid("target.input", "target.input must be a mapping"));
    }
    // Trigger.
    if let (Some(a), Some(b)) = (&s.timezone, &s.trigger.timezone)
        && a != b
    {
        return Err(at.trigger("trigger.timezone", format!("timezone {a:?} and trigger.timezone {b:?} disagree; give one")));
    }
    match s.trigger.kind {
        TriggerType::Manual => {
            if s.trigger.cron.is_some() {
                return Err(at.trigger("trigger.cron", "a manual trigger must not set `cron`; use `type: cron`"));
            }
        }
        TriggerType::Cron => {
            let Some(expr) = s.trigger.cron.as_deref() else {
                return Err(at.trigger("trigger", "a cron trigger needs `cron` (e.g. \"0 9 * * 1-5\")"));
            };
            let Some(tz) = s.effective_timezone() else {
                return Err(at.trigger("trigger", "a cron trigger needs `timezone` (an IANA name such as Europe/Berlin)"));
            };
            CronSchedule::parse(expr, tz).map_err(|e| schedule_error(at, s, &e))?;
        }
    }
    if let Some(tz) = s.effective_timezone()
        && tz.parse::<chrono_tz::Tz>().is_err()
    {
        return Err(schedule_error(at, s, &cron::ScheduleError::UnknownZone(tz.to_string())));
    }
    // Runtime.
    let r = &s.runtime;
    let range = |name: &str, v: u64, lo: u64, hi: u64| -> Result<(), LilyError> {
        if v < lo || v > hi {
            Err(at.invalid(&format!("runtime.{name}"), format!("runtime.{name} must be {lo}-{hi}, got {v}")))
        } else {
            Ok(())
        }
    };
    range("timeout_seconds", r.timeout_seconds, 1, 86_400)?;
    range("retry_max", u64::from(r.retry_max), 0, 10)?;
    range("retry_backoff_seconds", r.retry_backoff_seconds, 0, 300)?;
    if let Some(p) = r.max_parallelism {
        range("max_parallelism", p as u64, 1, 1024)?;
    }
    range("max_parallel_runs", u64::from(r.max_parallel_runs), 1, 1000)?;
    if let Some(f) = r.fuel {
        range("fuel", f, 1, u64::MAX)?;
    }
    if let Some(m) = r.memory_mb {
        range("memory_mb", m, 1, 65_536)?;
    }
    if let Some(arts) = &s.output.artifacts {
        for a in arts {
            if a.is_empty() || a.contains('/') || a.contains('\\') || a == ".." {
                return Err(at.invalid("output.artifacts", format!("output.artifacts: {a:?} is not a plain file name")));
            }
        }
    }
    Ok(())
}

/// Every spec file in `dir` (`*.job.yaml` / `*.job.yml`), sorted by path.
pub fn discover(dir: &Path) -> Vec<SpecFile> {
    spec_paths(dir).iter().map(|p| load_file(p)).collect()
}

/// The paths [`discover`] loads.
fn spec_paths(dir: &Path) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .filter(|e| {
                let n = e.file_name();
                let n = n.as_encoded_bytes();
                n.ends_with(b".job.yaml") || n.ends_with(b".job.yml")
            })
            // The listing's file type (no `stat` for a regular file); a
            // link (or a file system without types) is followed to see
            // whether it names a file, as before.
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()) || e.path().is_file())
            .map(|e| e.path())
            .collect(),
        Err(_) => Vec::new(),
    };
    paths.sort();
    paths
}

/// What a spec file's text says its id is, read without parsing the YAML.
#[derive(Debug, PartialEq, Eq)]
enum ScannedId {
    Id(String),
    /// The text is not of the plain shape the scan understands (no single
    /// top-level `id: <plain id>` line, flow style, several documents,
    /// anchors, tags, quoted or complex keys…): parse it to know.
    Unsure,
}

/// The top-level `id:` of a spec's text by a line scan: sure only for the
/// plain block layout every spec Lily writes or documents uses.
fn scan_id(text: &str) -> ScannedId {
    let mut found: Option<String> = None;
    for (i, line) in text.lines().enumerate() {
        let Some(first) = line.chars().next() else { continue };
        if first == ' ' || first == '#' {
            continue;
        }
        if matches!(first, '{' | '[' | '?' | '&' | '*' | '!' | '%' | '"' | '\'' | '\t' | '-' | '.' | '<' | '|' | '>') && !(i == 0 && line.trim_end() == "---") {
            return ScannedId::Unsure;
        }
        let Some(rest) = line.strip_prefix("id:") else { continue };
        if found.is_some() {
            return ScannedId::Unsure;
        }
        let v = rest.split(" #").next().unwrap_or("").trim();
        let v = v
            .strip_prefix('"')
            .and_then(|x| x.strip_suffix('"'))
            .or_else(|| v.strip_prefix('\'').and_then(|x| x.strip_suffix('\'')))
            .unwrap_or(v);
        if v.is_empty() || !v.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')) {
            return ScannedId::Unsure;
        }
        found = Some(v.to_string());
    }
    found.map(ScannedId::Id).unwrap_or(ScannedId::Unsure)
}

/// The one file a line scan says declares `id`, when every file of `dir`
/// scans surely and exactly one names it (then only that file is parsed).
fn scan_for(paths: &[PathBuf], id: &str) -> Option<PathBuf> {
    let mut hit = None;
    for p in paths {
        let meta = std::fs::metadata(p).ok()?;
        if meta.len() > MAX_SPEC_BYTES {
            return None;
        }
        let text = std::fs::read_to_string(p).ok()?;
        match scan_id(&text) {
            ScannedId::Id(s) if s == id => {
                if hit.is_some() {
                    return None;
                }
                hit = Some(p.clone());
            }
            ScannedId::Id(_) => {}
            ScannedId::Unsure => return None,
        }
    }
    hit
}

use crate::util::FileIdentity as FileStamp;

/// A file changed less than this long before it was scanned is not
/// recorded (scanned again next time): a write in the same timestamp tick
/// as the scan would otherwise leave the stamp unchanged ("racy clean").
const SETTLE_NS: i64 = 2_000_000_000;

/// The jobs directory's line scans, kept by [`find_indexed`] at
/// `.lily/state/spec-index.json`: file name → (stamp, scanned id; `None`
/// when the scan was unsure). A cache: unreadable, from another directory
/// or of another version, it is ignored and rewritten; written atomically,
/// owner-only, under Lily's state directory (never granted to a guest).
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct ScanIndex {
    version: u32,
    dir: PathBuf,
    files: std::collections::BTreeMap<String, (FileStamp, Option<String>)>,
}

const SCAN_INDEX_VERSION: u32 = 1;

/// The index's file name in the state directory.
pub const SCAN_INDEX_FILE: &str = "spec-index.json";

/// [`scan_for`] through the index: same answer, reading only files whose
/// stamp is not the recorded one. Every file is stamped (one `stat`).
fn scan_for_indexed(dir: &Path, paths: &[PathBuf], id: &str, index_path: &Path, settle_ns: i64) -> Option<PathBuf> {
    let old: ScanIndex = std::fs::read(index_path)
        .ok()
        .and_then(|b| serde_json::from_slice::<ScanIndex>(&b).ok())
        .filter(|ix| ix.version == SCAN_INDEX_VERSION && ix.dir == dir)
        .unwrap_or_default();
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0);
    let mut new = ScanIndex {
        version: SCAN_INDEX_VERSION,
        dir: dir.to_path_buf(),
        files: Default::default(),
    };
    let mut sure = true;
    let mut hit: Option<PathBuf> = None;
    let mut twice = false;
    for p in paths {
        let Some(name) = p.file_name().and_then(|n| n.to_str()) else {
            sure = false;
            continue;
        };
        // Stamp before reading: a change during the read shows up next time.
        let Ok(meta) = std::fs::metadata(p) else {
            sure = false;
            continue;
        };
        if meta.len() > MAX_SPEC_BYTES {
            sure = false;
            continue;
        }
        let stamp = FileStamp::of(&meta);
        let scanned = match old.files.get(name) {
            Some((st, scanned)) if *st == stamp => scanned.clone(),
            _ => {
                let Ok(text) = std::fs::read_to_string(p) else {
                    sure = false;
                    continue;
                };
                let scanned = match scan_id(&text) {
                    ScannedId::Id(s) => Some(s),
                    ScannedId::Unsure => None,
                };
                if now_ns.saturating_sub(stamp.changed_ns()) < settle_ns {
                    // Too fresh to trust the stamp: not recorded.
                    match &scanned {
                        Some(s) if s == id => {
                            twice |= hit.is_some();
                            hit = Some(p.clone());
                        }
                        Some(_) => {}
                        None => sure = false,
                    }
                    continue;
                }
                scanned
            }
        };
        match &scanned {
            Some(s) if s == id => {
                twice |= hit.is_some();
                hit = Some(p.clone());
            }
            Some(_) => {}
            None => sure = false,
        }
        new.files.insert(name.to_string(), (stamp, scanned));
    }
    if (new.files != old.files || old.dir != new.dir || old.version != new.version)
        && let Ok(bytes) = serde_json::to_vec(&new)
    {
        // A cache: if it cannot be written (no state directory), the next
        // lookup scans again.
        let _ = crate::util::write_atomic(index_path, &bytes, crate::util::Durability::Rename);
    }
    (sure && !twice).then_some(hit).flatten()
}

/// `*.yaml` / `*.yml` files of the jobs directory that are not job specs
/// (`*.job.yaml` / `*.job.yml`): never loaded, so likely a misnamed spec.
pub fn stray_yaml(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            let n = p.file_name().map(|n| n.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
            (n.ends_with(".yaml") || n.ends_with(".yml")) && !n.ends_with(".job.yaml") && !n.ends_with(".job.yml") && p.is_file()
        })
        .collect();
    v.sort();
    v
}

/// The warning for a [`stray_yaml`] file.
pub fn stray_yaml_warning(p: &Path) -> String {
    let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let stem = name.trim_end_matches(".yaml").trim_end_matches(".yml");
    format!(
        "{} is not a job spec (only *.job.yaml files are read); rename it {stem}.job.yaml if it is one",
        p.display()
    )
}

/// Which files declare each job id (sorted paths): the one rule for job-id
/// uniqueness — an id declared by more than one file is refused by `jobs
/// run`, flagged by `jobs list` and `jobs validate`, and not scheduled.
pub fn declared_ids<'a>(declarations: impl IntoIterator<Item = (&'a str, &'a Path)>) -> std::collections::BTreeMap<String, Vec<PathBuf>> {
    let mut by_id: std::collections::BTreeMap<String, Vec<PathBuf>> = std::collections::BTreeMap::new();
    for (id, path) in declarations {
        by_id.entry(id.to_string()).or_default().push(path.to_path_buf());
    }
    for paths in by_id.values_mut() {
        paths.sort();
    }
    by_id
}

/// [`declared_ids`] of parsed spec files (invalid ones declare nothing).
pub fn declared_ids_of(files: &[SpecFile]) -> std::collections::BTreeMap<String, Vec<PathBuf>> {
    declared_ids(files.iter().filter_map(|f| f.spec.as_ref().ok().map(|s| (s.id.as_str(), f.path.as_path()))))
}

/// The error for an id declared by several files.
pub fn duplicate_id_error(id: &str, paths: &[PathBuf]) -> LilyError {
    let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    LilyError::new(
        ErrorCode::JobInvalidSpec,
        format!("job id {id:?} is declared by {} files: {}", paths.len(), names.join(", ")),
    )
    .with_hint("job ids must be unique; rename or remove one of them")
}

/// Find the spec of `id` in `dir`: `job_not_found` (naming the path
/// searched), `job_invalid_spec` when two files declare it (naming both) or
/// when the file named after it does not parse.
pub fn find(dir: &Path, id: &str) -> Result<SpecFile, LilyError> {
    find_indexed(dir, id, None)
}

/// [`find`], with the line scans of unchanged files kept in `index` (a
/// file under Lily's own state directory, see [`ScanIndex`]): a file whose
/// stamp is the one recorded is not read again. The answer is the one
/// [`find`] gives: the index only stands in for re-scanning a file that
/// has not changed, and every doubt still takes the full parse.
pub fn find_indexed(dir: &Path, id: &str, index: Option<&Path>) -> Result<SpecFile, LilyError> {
    find_with(dir, id, index.map(|ix| (ix, SETTLE_NS)))
}

fn find_with(dir: &Path, id: &str, index: Option<(&Path, i64)>) -> Result<SpecFile, LilyError> {
    // Fast path: parse only the one file that declares the id, when a line
    // scan of every file is sure of its id (duplicates, unusual layouts and
    // every error take the full path below).
    let paths = spec_paths(dir);
    let hit = match index {
        Some((ix, settle)) => scan_for_indexed(dir, &paths, id, ix, settle),
        None => scan_for(&paths, id),
    };
    if let Some(p) = hit {
        let f = load_file(&p);
        if f.spec.as_ref().is_ok_and(|s| s.id == id) {
            return Ok(f);
        }
    }
    let files: Vec<SpecFile> = paths.iter().map(|p| load_file(p)).collect();
    if let Some(paths) = declared_ids_of(&files).get(id) {
        if paths.len() > 1 {
            return Err(duplicate_id_error(id, paths));
        }
        if let Some(f) = files.iter().find(|f| f.path == paths[0]) {
            return Ok(f.clone());
        }
    }
    if let Some(f) = files.iter().find(|f| f.spec.is_err() && file_stem_id(&f.path) == id)
        && let Err(e) = &f.spec
    {
        return Err(e.clone());
    }
    let known: Vec<String> = files.iter().map(SpecFile::id_hint).collect();
    let guess = crate::text::suggest(id, known.iter().map(String::as_str))
        .map(|g| format!("did you mean {g}? "))
        .unwrap_or_default();
    Err(
        LilyError::new(ErrorCode::JobNotFound, format!("no job with id {id:?} in {}", dir.display())).with_hint(format!(
            "{guess}`lily jobs list` shows the jobs there; --jobs-dir or LILY_JOBS_DIR change where Lily looks"
        )),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_id_scan_is_sure_only_of_plain_block_specs() {
        assert_eq!(scan_id("# c\nid: demo\ntitle: x\n"), ScannedId::Id("demo".into()));
        assert_eq!(scan_id("---\nid: \"a.b-c_1\"  # note\n"), ScannedId::Id("a.b-c_1".into()));
        assert_eq!(scan_id("title: x\n  id: nested\n"), ScannedId::Unsure, "no top-level id line");
        assert_eq!(scan_id("id: a\nid: b\n"), ScannedId::Unsure);
        assert_eq!(scan_id("{id: a, title: x}\n"), ScannedId::Unsure);
        assert_eq!(scan_id("\"id\": a\n"), ScannedId::Unsure);
        assert_eq!(scan_id("id: &x a\n"), ScannedId::Unsure);
        assert_eq!(scan_id("id: a\n---\nid: b\n"), ScannedId::Unsure);
        assert_eq!(scan_id("id: a\n? id\n: b\n"), ScannedId::Unsure);
    }

    #[test]
    fn find_parses_one_file_yet_still_refuses_duplicates_and_odd_layouts() {
        let d = tempfile::tempdir().expect("tmp");
        let spec = |id: &str| GOOD.replace("id: demo", &format!("id: {id}"));
        std::fs::write(d.path().join("a.job.yaml"), spec("a")).expect("w");
        std::fs::write(d.path().join("b.job.yaml"), spec("b")).expect("w");
        // A broken file that declares another id does not stop the fast path…
        std::fs::write(d.path().join("broken.job.yaml"), "id: broken\ntitle: [\n").expect("w");
        assert_eq!(find(d.path(), "a").expect("found").spec.expect("valid").id, "a");
        // …a second file declaring `a` makes it a duplicate, as before.
        std::fs::write(d.path().join("c.job.yaml"), spec("a")).expect("w");
        let e = find(d.path(), "a").expect_err("duplicate");
        assert!(e.message.contains("is declared by 2 files"), "{}", e.message);
        // A flow-style spec is parsed (the scan is not sure of it).
        std::fs::remove_file(d.path().join("c.job.yaml")).expect("rm");
        let flow = serde_json::to_string(&serde_norway::from_str::<serde_json::Value>(&spec("f")).expect("yaml")).expect("json");
        std::fs::write(d.path().join("f.job.yaml"), flow).expect("w");
        assert_eq!(find(d.path(), "f").expect("found").spec.expect("valid").id, "f");
        assert_eq!(find(d.path(), "b").expect("found").spec.expect("valid").id, "b");
        assert_eq!(find(d.path(), "nope").expect_err("missing").code, ErrorCode::JobNotFound);
    }

    /// The scan index never changes an answer: a new, renamed, edited or
    /// duplicated spec is found or refused exactly as without it, a file
    /// changed just now is not recorded, and a bad index is ignored.
    #[test]
    fn the_scan_index_finds_new_renamed_and_edited_specs_and_keeps_refusing_duplicates() {
        let d = tempfile::tempdir().expect("tmp");
        let jobs = d.path().join("jobs");
        std::fs::create_dir(&jobs).expect("mkdir");
        let ix = d.path().join("spec-index.json");
        let spec = |id: &str| GOOD.replace("id: demo", &format!("id: {id}"));
        // Settled at once (0 ns) so the cached path runs in the test; the
        // in-place edit below sleeps past the timestamp tick.
        let find0 = |id: &str| find_with(&jobs, id, Some((&ix, 0)));
        let found = |r: Result<SpecFile, LilyError>| r.expect("found").spec.expect("valid").id;
        std::fs::write(jobs.join("a.job.yaml"), spec("a")).expect("w");
        std::fs::write(jobs.join("b.job.yaml"), spec("b")).expect("w");
        assert_eq!(found(find0("a")), "a");
        let recorded: ScanIndex = serde_json::from_slice(&std::fs::read(&ix).expect("index written")).expect("index");
        assert_eq!(recorded.files.len(), 2);
        assert_eq!(recorded.files["b.job.yaml"].1.as_deref(), Some("b"));
        assert_eq!(found(find0("b")), "b");
        // A new file declaring `a`: a duplicate, named with both files.
        std::fs::write(jobs.join("c.job.yaml"), spec("a")).expect("w");
        let e = find0("a").expect_err("duplicate");
        assert!(e.message.contains("is declared by 2 files"), "{}", e.message);
        // Renamed: still a duplicate; removed: found again.
        std::fs::rename(jobs.join("c.job.yaml"), jobs.join("z.job.yaml")).expect("mv");
        assert!(find0("a").expect_err("duplicate").message.contains("z.job.yaml"));
        std::fs::remove_file(jobs.join("z.job.yaml")).expect("rm");
        assert_eq!(found(find0("a")), "a");
        // Edited in place to the same length: `b` is gone, `q` found, and a
        // second `a` refused.
        std::thread::sleep(std::time::Duration::from_millis(50));
        std::fs::write(jobs.join("b.job.yaml"), spec("q")).expect("w");
        assert_eq!(find0("b").expect_err("gone").code, ErrorCode::JobNotFound);
        assert_eq!(found(find0("q")), "q");
        std::thread::sleep(std::time::Duration::from_millis(50));
        std::fs::write(jobs.join("b.job.yaml"), spec("a")).expect("w");
        assert!(find0("a").expect_err("duplicate").message.contains("is declared by 2 files"));
        // A new spec is found; a missing one is not.
        std::fs::write(jobs.join("b.job.yaml"), spec("b")).expect("w");
        std::fs::write(jobs.join("e.job.yaml"), spec("e")).expect("w");
        assert_eq!(found(find0("e")), "e");
        assert_eq!(find0("nope").expect_err("missing").code, ErrorCode::JobNotFound);
        // An unreadable index is ignored and rewritten.
        std::fs::write(&ix, "not json").expect("w");
        assert_eq!(found(find0("a")), "a");
        assert!(serde_json::from_slice::<ScanIndex>(&std::fs::read(&ix).expect("index")).is_ok());
        // With the real settle time, files written just now are not recorded.
        std::fs::remove_file(&ix).expect("rm");
        assert_eq!(found(find_indexed(&jobs, "a", Some(&ix))), "a");
        let fresh: ScanIndex = std::fs::read(&ix).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
        assert!(!fresh.files.contains_key("e.job.yaml"), "{fresh:?}");
    }

    const GOOD: &str = r#"
id: demo
title: Demo
target:
  kind: blueprint
  id: council.v1
  input: { topic: "x" }
bindings: { specialists: [a, b], synthesizer: c }
trigger: { type: manual }
runtime: {}
output: {}
"#;

    fn p() -> &'static Path {
        Path::new("t.job.yaml")
    }

    fn code(text: &str) -> ErrorCode {
        parse(p(), text).expect_err("should fail").code
    }

    #[test]
    fn good_spec_parses_with_defaults() {
        let s = parse(p(), GOOD).expect("parse");
        assert_eq!(s.runtime.timeout_seconds, 300);
        assert_eq!(s.runtime.retry_max, 0);
        assert_eq!(s.runtime.max_parallel_runs, 1);
        assert_eq!(s.output.summary_format, SummaryFormat::Markdown);
    }

    #[test]
    fn unknown_keys_are_rejected_at_every_level_with_line_and_key() {
        for (from, to) in [
            ("title: Demo", "title: Demo\nbogus: 1"),
            ("kind: blueprint", "kind: blueprint\n  extra: 1"),
            ("runtime: {}", "runtime: { nope: 1 }"),
            ("output: {}", "output: { nope: 1 }"),
            ("trigger: { type: manual }", "trigger: { type: manual, nope: 1 }"),
        ] {
            let text = GOOD.replace(from, to);
            let e = parse(p(), &text).expect_err("unknown key");
            assert_eq!(e.code, ErrorCode::JobInvalidSpec, "{from}");
            assert!(e.message.contains("unknown field"), "{}", e.message);
            assert!(e.message.contains("line"), "{}", e.message);
            assert!(e.message.contains("t.job.yaml"), "{}", e.message);
        }
    }

    #[test]
    fn missing_required_fields() {
        for key in ["title: Demo\n", "runtime: {}\n", "output: {}\n", "trigger: { type: manual }\n"] {
            assert_eq!(code(&GOOD.replace(key, "")), ErrorCode::JobInvalidSpec, "{key}");
        }
    }

    #[test]
    fn ids_must_be_safe() {
        for bad in ["../etc", "UPPER", "-lead", "", "a/b", &"a".repeat(65)] {
            assert_eq!(code(&GOOD.replace("id: demo", &format!("id: {bad:?}"))), ErrorCode::JobInvalidSpec, "{bad}");
        }
        assert!(valid_id("a.b-c_1"));
    }

    #[test]
    fn bad_documents_fail_fast() {
        assert_eq!(code(""), ErrorCode::JobInvalidSpec);
        assert_eq!(code("# only a comment\n"), ErrorCode::JobInvalidSpec);
        assert_eq!(code("- a\n- b\n"), ErrorCode::JobInvalidSpec);
        let bomb = "a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n";
        let t = std::time::Instant::now();
        assert_eq!(code(bomb), ErrorCode::JobInvalidSpec);
        assert!(t.elapsed() < std::time::Duration::from_secs(1));
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(code(&deep), ErrorCode::JobInvalidSpec);
        let huge = format!("id: x\n#{}\n", "x".repeat(MAX_SPEC_BYTES as usize));
        assert_eq!(code(&huge), ErrorCode::JobInvalidSpec);
    }

    #[test]
    fn trigger_rules() {
        let manual_with_cron = GOOD.replace("trigger: { type: manual }", "trigger: { type: manual, cron: \"* * * * *\" }");
        assert_eq!(code(&manual_with_cron), ErrorCode::JobTriggerInvalid);
        let cron_no_tz = GOOD.replace("trigger: { type: manual }", "trigger: { type: cron, cron: \"0 9 * * *\" }");
        assert_eq!(code(&cron_no_tz), ErrorCode::JobTriggerInvalid);
        let bad_expr = GOOD.replace("trigger: { type: manual }", "trigger: { type: cron, cron: \"61 * * * *\", timezone: UTC }");
        assert_eq!(code(&bad_expr), ErrorCode::JobTriggerInvalid);
        let bad_tz = GOOD.replace("trigger: { type: manual }", "trigger: { type: cron, cron: \"0 9 * * *\", timezone: Mars/Base }");
        assert_eq!(code(&bad_tz), ErrorCode::JobTriggerInvalid);
        let both = GOOD.replace(
            "trigger: { type: manual }",
            "timezone: UTC\ntrigger: { type: cron, cron: \"0 9 * * *\", timezone: Europe/Berlin }",
        );
        assert_eq!(code(&both), ErrorCode::JobTriggerInvalid);
        for ok in ["0 9 * * 1-5", "*/10 * * * * *", "@hourly", "@daily", "@weekly", "@monthly", "@yearly"] {
            let t = GOOD.replace(
                "trigger: { type: manual }",
                &format!("timezone: Europe/Berlin\ntrigger: {{ type: cron, cron: \"{ok}\" }}"),
            );
            parse(p(), &t).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        let second_spelling = GOOD.replace(
            "trigger: { type: manual }",
            "trigger: { type: cron, cron: \"0 9 * * *\", timezone: America/New_York }",
        );
        assert_eq!(parse(p(), &second_spelling).expect("ok").effective_timezone(), Some("America/New_York"));
    }

    #[test]
    fn runtime_ranges() {
        for (k, v) in [
            ("timeout_seconds", "0"),
            ("timeout_seconds", "86401"),
            ("retry_max", "11"),
            ("retry_backoff_seconds", "301"),
            ("max_parallelism", "0"),
            ("max_parallel_runs", "0"),
            ("memory_mb", "0"),
        ] {
            assert_eq!(
                code(&GOOD.replace("runtime: {}", &format!("runtime: {{ {k}: {v} }}"))),
                ErrorCode::JobInvalidSpec,
                "{k}={v}"
            );
        }
        assert_eq!(
            code(&GOOD.replace("runtime: {}", "runtime: { timeout_seconds: -1 }")),
            ErrorCode::JobInvalidSpec
        );
    }

    #[test]
    fn target_rules() {
        assert_eq!(code(&GOOD.replace("kind: blueprint", "kind: script")), ErrorCode::JobInvalidSpec);
        assert_eq!(
            code(&GOOD.replace("id: council.v1", "id: council.v1\n  version: \"not a req\"")),
            ErrorCode::JobInvalidSpec
        );
        parse(p(), &GOOD.replace("id: council.v1", "id: council.v1\n  version: \"^1.0\"")).expect("version req ok");
    }

    #[test]
    fn duplicate_ids_name_both_files_and_missing_names_the_dir() {
        let tmp = tempfile::tempdir().expect("tmp");
        std::fs::write(tmp.path().join("a.job.yaml"), GOOD).expect("w");
        std::fs::write(tmp.path().join("b.job.yaml"), GOOD).expect("w");
        let e = find(tmp.path(), "demo").expect_err("dup");
        assert_eq!(e.code, ErrorCode::JobInvalidSpec);
        assert!(e.message.contains("a.job.yaml") && e.message.contains("b.job.yaml"), "{}", e.message);
        let e = find(tmp.path(), "nope").expect_err("missing");
        assert_eq!(e.code, ErrorCode::JobNotFound);
        assert!(e.message.contains(&tmp.path().display().to_string()));
        assert_eq!(discover(tmp.path()).len(), 2);
    }

    #[test]
    fn keys_are_located_in_block_and_flow_mappings() {
        let text = "# c\nid: x\ntrigger:\n  type: cron\n  # note\n  timezone: Europe/Berlin\nruntime: { timeout_seconds: 5 }\nbindings:\n  specialists:\n    - a\n    - b\n  synthesizer: c\ntimezone: UTC\n";
        assert_eq!(locate_key(text, "id"), Some(2));
        assert_eq!(locate_key(text, "trigger.timezone"), Some(6));
        assert_eq!(locate_key(text, "timezone"), Some(13), "the top-level key, not the nested one");
        assert_eq!(locate_key(text, "runtime.timeout_seconds"), Some(7), "flow: the line of the mapping");
        assert_eq!(locate_key(text, "bindings.specialists.1"), Some(9), "a list item: its key");
        assert_eq!(locate_key(text, "bindings.synthesizer"), Some(12));
        assert_eq!(locate_key(text, "bindings.nope"), Some(8), "the deepest key found");
        assert_eq!(locate_key(text, "output"), None);
        let e = parse(
            p(),
            &GOOD.replace(
                "trigger: { type: manual }",
                "trigger: { type: cron, cron: \"0 9 * * *\", timezone: europe/berlin }",
            ),
        )
        .expect_err("bad zone");
        assert_eq!(e.code, ErrorCode::JobTriggerInvalid);
        assert_eq!(e.message, "t.job.yaml:9: trigger.timezone: unknown IANA time zone 'europe/berlin'");
        assert!(e.hint.as_deref().is_some_and(|h| h.starts_with("did you mean Europe/Berlin?")), "{:?}", e.hint);
    }
}
