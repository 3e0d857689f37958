//! JSON Schemas a guest declares in `describe`, compiled and checked by the
//! host under a budget.
//!
//! A guest chooses both the schema and (for outputs) the instance, so the
//! host's work on them must be bounded like any other work done for a guest:
//!
//! - at load, a schema is at most [`MAX_SCHEMA_BYTES`] of JSON nested at
//!   most [`MAX_SCHEMA_DEPTH`] deep; references never leave the document
//!   (no file or network retrieval); `pattern` / `patternProperties` are
//!   compiled by the linear-time `regex` engine (back-references and
//!   look-around are refused rather than backtracked), with a size cap;
//! - at validation, every look at the instance is charged to a [`Budget`]
//!   of steps and an absolute deadline. A schema whose `$ref`s recurse under
//!   several `anyOf` branches is exponential in the instance depth; with the
//!   meter it stops after the budget instead of taking the host down.
//!
//! The meter is an instance representation for `jsonschema`
//! ([`jsonschema::json::Json`]) whose accessors charge one step each. When the
//! budget runs out it unwinds out of the validator with
//! [`std::panic::resume_unwind`] (which runs no panic hook and prints
//! nothing) and [`Budget::run`] turns that into [`SchemaError::Budget`].

use jsonschema::json::{Array, Json, Node, NodeIdentity, Object};
use jsonschema::{JsonType, PatternOptions, Validator};
use serde_json::{Map, Number, Value};
use std::borrow::Cow;
use std::cell::Cell;
use std::panic::AssertUnwindSafe;
use std::time::Instant;

/// Bytes of one declared schema (its JSON text).
pub const MAX_SCHEMA_BYTES: usize = 64 << 10;
/// Nesting depth of one declared schema (objects and arrays).
pub const MAX_SCHEMA_DEPTH: usize = 64;
/// Approximate compiled size of one `pattern` (the `regex` crate's limit).
const MAX_PATTERN_BYTES: usize = 1 << 20;
/// Lazy-DFA cache of one `pattern`.
const MAX_PATTERN_DFA_BYTES: usize = 1 << 20;

/// Validation steps allowed per instance: a floor for small instances plus a
/// multiple of the instance's own size, so an honest schema over a large
/// payload always fits and an exponential one stops within a second.
pub const BUDGET_FLOOR: u64 = 1_000_000;
pub const BUDGET_PER_NODE: u64 = 64;

/// Why a declared schema was refused, or a validation did not finish.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    #[error("schema is {bytes} bytes; at most {MAX_SCHEMA_BYTES} are allowed")]
    TooLarge { bytes: usize },
    #[error("schema nests {depth} levels deep; at most {MAX_SCHEMA_DEPTH} are allowed")]
    TooDeep { depth: usize },
    #[error("schema is not JSON: {0}")]
    NotJson(String),
    #[error("schema is not a valid JSON Schema for the host's linear-time engine: {0}")]
    Invalid(String),
    #[error("validation exceeded its budget of {steps} steps")]
    Budget { steps: u64 },
    #[error("validation did not finish before the step's deadline")]
    Deadline,
}

/// A guest-declared schema, compiled once: at load when it comes from a
/// guest's `describe`, or at its first check when it comes from a kept
/// descriptor ([`GuestSchema::deferred`]: it compiled when it was kept).
pub struct GuestSchema {
    validator: std::sync::OnceLock<Result<Validator<Metered>, SchemaError>>,
    /// The JSON text a deferred one compiles from (empty when compiled at load).
    source: String,
}

impl std::fmt::Debug for GuestSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GuestSchema")
    }
}

impl GuestSchema {
    /// Parse and compile the JSON text of a declared schema within the load
    /// limits. Returns the parsed value too (it is kept in the descriptor).
    pub fn parse(text: &str) -> Result<(Value, GuestSchema), SchemaError> {
        if text.len() > MAX_SCHEMA_BYTES {
            return Err(SchemaError::TooLarge { bytes: text.len() });
        }
        let value: Value = serde_json::from_str(text).map_err(|e| SchemaError::NotJson(e.to_string()))?;
        let schema = GuestSchema::compile(&value)?;
        Ok((value, schema))
    }

    /// Compile an already parsed schema within the load limits.
    pub fn compile(schema: &Value) -> Result<GuestSchema, SchemaError> {
        let depth = depth(schema);
        if depth > MAX_SCHEMA_DEPTH {
            return Err(SchemaError::TooDeep { depth });
        }
        let validator = std::sync::OnceLock::new();
        let _ = validator.set(Ok(build(schema)?));
        Ok(GuestSchema {
            validator,
            source: String::new(),
        })
    }

    /// A schema that compiled when it was checked before (a descriptor kept
    /// in the compile cache beside its entry, both in a directory only this
    /// user can write): compiled at its first [`GuestSchema::check`] rather
    /// than at every load. The load limits still apply then; a schema that
    /// no longer compiles fails that check with [`SchemaError::Invalid`].
    pub fn deferred(text: String) -> GuestSchema {
        GuestSchema {
            validator: std::sync::OnceLock::new(),
            source: text,
        }
    }

    fn validator(&self) -> Result<&Validator<Metered>, SchemaError> {
        self.validator
            .get_or_init(|| {
                let schema: Value = serde_json::from_str(&self.source).map_err(|e| SchemaError::NotJson(e.to_string()))?;
                let depth = depth(&schema);
                if depth > MAX_SCHEMA_DEPTH {
                    return Err(SchemaError::TooDeep { depth });
                }
                build(&schema)
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Validate `value`, keeping up to `max_errors` error lines. `Ok(Err(..))`
    /// is "does not match" (with the errors), `Err` is "could not tell within
    /// the budget".
    pub fn check(&self, value: &Value, deadline: Option<Instant>, max_errors: usize) -> Result<Result<(), Mismatch>, SchemaError> {
        let validator = self.validator()?;
        let budget = Budget::for_instance(value, deadline);
        budget.run(|| {
            if validator.is_valid(MNode(value)) {
                return Ok(());
            }
            let errors: Vec<String> = validator
                .iter_errors(MNode(value))
                .take(max_errors)
                .map(|e| format!("{} (at '{}')", e, e.instance_path()))
                .collect();
            Err(Mismatch(errors.join("; ")))
        })
    }
}

/// Compile, once per process, the draft 2020-12 meta-schema that
/// jsonschema checks every schema against before compiling it (~3 ms at
/// its first use, then shared); [`crate::sandbox::Sandbox::new`] calls this
/// on its start-up thread so that a step's first schema check does not.
pub fn prewarm() {
    let _ = jsonschema::meta::is_valid(&serde_json::json!({"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object"}));
}

fn build(schema: &Value) -> Result<Validator<Metered>, SchemaError> {
    jsonschema::options_for::<Metered>()
        .offline()
        .should_validate_formats(false)
        .with_pattern_options(PatternOptions::regex().size_limit(MAX_PATTERN_BYTES).dfa_size_limit(MAX_PATTERN_DFA_BYTES))
        .build(schema)
        .map_err(|e| SchemaError::Invalid(e.to_string()))
}

/// A value that does not match its schema: the first errors, `; `-joined,
/// each with its location.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Mismatch(pub String);

/// Nesting depth of a JSON value, without recursion.
fn depth(v: &Value) -> usize {
    let mut max = 0;
    let mut stack = vec![(v, 1usize)];
    while let Some((v, d)) = stack.pop() {
        max = max.max(d);
        match v {
            Value::Array(a) => stack.extend(a.iter().map(|c| (c, d + 1))),
            Value::Object(o) => stack.extend(o.values().map(|c| (c, d + 1))),
            _ => {}
        }
    }
    max
}

/// Number of values in a JSON document, without recursion.
fn nodes(v: &Value) -> u64 {
    let mut n = 0u64;
    let mut stack = vec![v];
    while let Some(v) = stack.pop() {
        n += 1;
        match v {
            Value::Array(a) => stack.extend(a.iter()),
            Value::Object(o) => stack.extend(o.values()),
            _ => {}
        }
    }
    n
}

/// The steps and the deadline one validation may use. Only one budget is
/// active per thread at a time (validation is synchronous).
pub struct Budget {
    steps: u64,
    deadline: Option<Instant>,
}

/// How often (in steps) the meter reads the clock.
const CLOCK_EVERY: u64 = 4096;

struct Meter {
    granted: u64,
    left: u64,
    until_clock: u64,
    deadline: Option<Instant>,
    /// Why the meter stopped, once it did.
    stopped: Option<SchemaError>,
}

thread_local! {
    static METER: Cell<Option<Meter>> = const { Cell::new(None) };
}

/// The unwind payload that stops a validation.
struct Stop;

impl Budget {
    pub fn for_instance(value: &Value, deadline: Option<Instant>) -> Budget {
        Budget {
            steps: BUDGET_FLOOR.saturating_add(nodes(value).saturating_mul(BUDGET_PER_NODE)),
            deadline,
        }
    }

    #[cfg(test)]
    fn steps(steps: u64) -> Budget {
        Budget { steps, deadline: None }
    }

    /// Run `f` with this budget active on the current thread.
    pub fn run<T>(self, f: impl FnOnce() -> T) -> Result<T, SchemaError> {
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(SchemaError::Deadline);
        }
        let previous = METER.with(|m| {
            m.replace(Some(Meter {
                granted: self.steps,
                left: self.steps,
                until_clock: CLOCK_EVERY,
                deadline: self.deadline,
                stopped: None,
            }))
        });
        let result = std::panic::catch_unwind(AssertUnwindSafe(f));
        let meter = METER.with(|m| m.replace(previous));
        match result {
            Ok(v) => Ok(v),
            Err(payload) if payload.is::<Stop>() => Err(meter.and_then(|m| m.stopped).unwrap_or(SchemaError::Budget { steps: self.steps })),
            Err(payload) => std::panic::resume_unwind(payload),
        }
    }
}

/// Charge `n` steps to the active budget; unwind when it is spent.
fn charge(n: u64) {
    let stop = METER.with(|cell| {
        let Some(mut m) = cell.take() else {
            return false;
        };
        let mut stop = false;
        if m.left < n {
            m.stopped = Some(SchemaError::Budget { steps: m.granted });
            stop = true;
        } else {
            m.left -= n;
            if m.until_clock <= n {
                m.until_clock = CLOCK_EVERY;
                if m.deadline.is_some_and(|d| Instant::now() >= d) {
                    m.stopped = Some(SchemaError::Deadline);
                    stop = true;
                }
            } else {
                m.until_clock -= n;
            }
        }
        cell.set(Some(m));
        stop
    });
    if stop {
        std::panic::resume_unwind(Box::new(Stop));
    }
}

/// Steps for a look at a string: one, plus one per 256 bytes (patterns and
/// length checks read it whole).
fn string_cost(s: &str) -> u64 {
    1 + (s.len() / 256) as u64
}

/// `serde_json` instances, metered.
pub struct Metered;

#[derive(Clone, Copy)]
pub struct MNode<'a>(&'a Value);

#[derive(Clone, Copy)]
pub struct MObject<'a>(&'a Map<String, Value>);

#[derive(Clone, Copy)]
pub struct MArray<'a>(&'a [Value]);

impl Json for Metered {
    type Node<'a> = MNode<'a>;
    type PreparedKey = String;
    type StringBuffer = Value;
    const KEYS_PER_LOOKUP: usize = 2;

    fn prepare_key(key: &str) -> String {
        key.to_owned()
    }

    fn with_string_node<T>(buffer: &mut Value, string: &str, f: impl FnOnce(MNode<'_>) -> T) -> T {
        charge(string_cost(string));
        if let Value::String(existing) = buffer {
            existing.clear();
            existing.push_str(string);
        } else {
            *buffer = Value::String(string.to_owned());
        }
        f(MNode(buffer))
    }
}

impl<'a> Node<'a, Metered> for MNode<'a> {
    type Object = MObject<'a>;
    type Array = MArray<'a>;
    type Number = &'a Number;

    fn as_object(&self) -> Option<MObject<'a>> {
        charge(1);
        self.0.as_object().map(MObject)
    }

    fn as_array(&self) -> Option<MArray<'a>> {
        charge(1);
        self.0.as_array().map(|a| MArray(a.as_slice()))
    }

    fn as_string(&self) -> Option<Cow<'a, str>> {
        match self.0 {
            Value::String(s) => {
                charge(string_cost(s));
                Some(Cow::Borrowed(s))
            }
            _ => {
                charge(1);
                None
            }
        }
    }

    fn as_number(&self) -> Option<&'a Number> {
        charge(1);
        self.0.as_number()
    }

    fn as_boolean(&self) -> Option<bool> {
        charge(1);
        self.0.as_bool()
    }

    fn is_null(&self) -> bool {
        charge(1);
        self.0.is_null()
    }

    fn json_type(&self) -> JsonType {
        charge(1);
        match self.0 {
            Value::Null => JsonType::Null,
            Value::Bool(_) => JsonType::Boolean,
            Value::Number(_) => JsonType::Number,
            Value::String(_) => JsonType::String,
            Value::Array(_) => JsonType::Array,
            Value::Object(_) => JsonType::Object,
        }
    }

    fn string_length(&self) -> Option<u64> {
        match self.0 {
            Value::String(s) => {
                charge(string_cost(s));
                Some(s.chars().count() as u64)
            }
            _ => {
                charge(1);
                None
            }
        }
    }

    fn equals_value(&self, expected: &Value) -> bool {
        // Comparison stops at the smaller side; the schema's side is bounded
        // by MAX_SCHEMA_BYTES.
        charge(1 + nodes(expected));
        jsonschema::json::cmp::equal(self.0, expected)
    }

    fn to_value(&self) -> Cow<'a, Value> {
        charge(1);
        Cow::Borrowed(self.0)
    }

    fn identity(&self) -> Option<NodeIdentity> {
        Some(NodeIdentity::new(std::ptr::from_ref::<Value>(self.0) as usize))
    }
}

impl<'a> Object<'a, Metered> for MObject<'a> {
    type Node = MNode<'a>;
    type MemberName = &'a str;
    type MembersIter = MembersIter<'a>;

    fn len(&self) -> usize {
        self.0.len()
    }

    fn get(&self, key: &String) -> Option<MNode<'a>> {
        charge(1);
        self.0.get(key.as_str()).map(MNode)
    }

    fn members(&self) -> MembersIter<'a> {
        MembersIter(self.0.iter())
    }
}

pub struct MembersIter<'a>(serde_json::map::Iter<'a>);

impl<'a> Iterator for MembersIter<'a> {
    type Item = (&'a str, MNode<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        let (k, v) = self.0.next()?;
        charge(string_cost(k));
        Some((k.as_str(), MNode(v)))
    }
}

pub struct ElementsIter<'a>(std::slice::Iter<'a, Value>);

impl<'a> Iterator for ElementsIter<'a> {
    type Item = MNode<'a>;

    fn next(&mut self) -> Option<Self::Item> {
        let v = self.0.next()?;
        charge(1);
        Some(MNode(v))
    }
}

impl<'a> Array<'a, Metered> for MArray<'a> {
    type Node = MNode<'a>;
    type ElementsIter = ElementsIter<'a>;

    fn len(&self) -> usize {
        self.0.len()
    }

    fn elements(&self) -> ElementsIter<'a> {
        ElementsIter(self.0.iter())
    }

    fn is_unique(&self) -> bool {
        // Hashing, linear in the array; charged by its size.
        charge(1 + self.0.iter().map(nodes).sum::<u64>());
        jsonschema::json::unique::is_unique(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// `$defs/n` refers to itself under two `anyOf` branches: naive
    /// validation is 2^depth.
    fn exponential_schema() -> Value {
        json!({
            "$defs": {"n": {"anyOf": [
                {"type": "object", "properties": {"a": {"$ref": "#/$defs/n"}}, "required": ["a"]},
                {"type": "object", "properties": {"a": {"$ref": "#/$defs/n"}}, "minProperties": 1}
            ]}},
            "$ref": "#/$defs/n"
        })
    }

    fn nested(depth: usize) -> Value {
        let mut v = json!({"a": 1});
        for _ in 0..depth {
            v = json!({ "a": v });
        }
        v
    }

    #[test]
    fn honest_schemas_validate_as_before() {
        let s = GuestSchema::compile(&json!({"type": "object", "required": ["findings"], "properties": {"findings": {"type": "array", "items": {"type": "string", "pattern": "^[a-z]+$"}}}})).expect("compile");
        assert_eq!(s.check(&json!({"findings": ["abc", "def"]}), None, 5), Ok(Ok(())));
        let bad = s.check(&json!({"findings": ["ABC"]}), None, 5).expect("within budget");
        assert!(bad.expect_err("invalid").0.contains("/findings/0"));
    }

    #[test]
    fn an_exponential_schema_stops_at_its_budget() {
        let s = GuestSchema::compile(&exponential_schema()).expect("compile");
        let started = Instant::now();
        let r = s.check(&nested(40), None, 5);
        assert!(matches!(r, Err(SchemaError::Budget { .. })), "{r:?}");
        // A budget of ~1 M steps is well under a few seconds even unoptimised.
        assert!(started.elapsed().as_secs() < 20, "{:?}", started.elapsed());
        // The meter is gone afterwards: plain validation works on this thread.
        assert!(s.check(&nested(2), None, 5).is_ok());
    }

    #[test]
    fn the_deadline_stops_validation_too() {
        let s = GuestSchema::compile(&exponential_schema()).expect("compile");
        let deadline = Instant::now() + std::time::Duration::from_millis(50);
        let instance = nested(60);
        let r = Budget {
            steps: u64::MAX,
            deadline: Some(deadline),
        }
        .run(|| s.validator().expect("compiled").iter_errors(MNode(&instance)).count());
        assert_eq!(r, Err(SchemaError::Deadline));
        assert_eq!(Budget::steps(10).run(|| 7), Ok(7));
    }

    #[test]
    fn backtracking_patterns_are_refused_at_compile() {
        for p in [r"^(a+)+\1$", r"(?=a)a", r"(?<!b)a"] {
            let r = GuestSchema::compile(&json!({"type": "string", "pattern": p}));
            assert!(matches!(r, Err(SchemaError::Invalid(_))), "{p}: {r:?}");
        }
        // Linear-time patterns still work, including ones that backtrack badly elsewhere.
        let s = GuestSchema::compile(&json!({"type": "string", "pattern": "^(a+)+$"})).expect("compile");
        let long = format!("{}b", "a".repeat(10_000));
        assert!(s.check(&json!(long), None, 1).expect("budget").is_err());
    }

    #[test]
    fn oversized_deep_and_remote_schemas_are_refused() {
        let big = format!("{{\"description\": \"{}\"}}", "x".repeat(MAX_SCHEMA_BYTES));
        assert!(matches!(GuestSchema::parse(&big), Err(SchemaError::TooLarge { .. })));
        let mut deep = json!({});
        for _ in 0..MAX_SCHEMA_DEPTH {
            deep = json!({ "not": deep });
        }
        assert!(matches!(GuestSchema::compile(&deep), Err(SchemaError::TooDeep { .. })));
        for r in ["file:///etc/passwd", "https://example.com/s.json"] {
            assert!(matches!(GuestSchema::compile(&json!({"$ref": r})), Err(SchemaError::Invalid(_))), "{r}");
        }
    }

    #[test]
    fn reference_cycles_without_progress_do_not_recurse_forever() {
        for schema in [
            json!({"$defs": {"n": {"anyOf": [{"$ref": "#/$defs/n"}, {"type": "null"}]}}, "$ref": "#/$defs/n"}),
            json!({"$defs": {"a": {"allOf": [{"$ref": "#/$defs/b"}]}, "b": {"anyOf": [{"$ref": "#/$defs/a"}]}}, "$ref": "#/$defs/a"}),
            json!({"$defs": {"n": {"not": {"$ref": "#/$defs/n"}}}, "$ref": "#/$defs/n"}),
        ] {
            if let Ok(s) = GuestSchema::compile(&schema) {
                let _ = s.check(&json!({"a": 1}), None, 5);
            }
        }
    }

    #[test]
    fn a_foreign_panic_is_not_swallowed() {
        let r = std::panic::catch_unwind(|| Budget::steps(10).run(|| std::panic::resume_unwind(Box::new(1u8))));
        assert!(r.is_err());
    }
}

#[cfg(test)]
mod deferred_tests {
    use super::*;
    use serde_json::json;

    /// A deferred schema checks exactly as one compiled at load, and one that
    /// no longer compiles (or nests too deep) fails its check instead of
    /// passing anything.
    #[test]
    fn a_deferred_schema_checks_like_a_compiled_one_and_refuses_when_it_does_not_compile() {
        let schema = json!({"type": "object", "required": ["a"], "properties": {"a": {"type": "integer"}}});
        let (eager, lazy) = (GuestSchema::compile(&schema).expect("compiles"), GuestSchema::deferred(schema.to_string()));
        for v in [json!({"a": 1}), json!({"a": "x"}), json!({}), json!(3)] {
            assert_eq!(eager.check(&v, None, 5), lazy.check(&v, None, 5), "{v}");
        }
        let bad = GuestSchema::deferred(json!({"type": "no-such-type"}).to_string());
        assert!(matches!(bad.check(&json!({}), None, 5), Err(SchemaError::Invalid(_))));
        let mut deep = json!({});
        for _ in 0..(MAX_SCHEMA_DEPTH + 1) {
            deep = json!({ "not": deep });
        }
        let deep = GuestSchema::deferred(deep.to_string());
        assert!(matches!(deep.check(&json!({}), None, 5), Err(SchemaError::TooDeep { .. })));
    }
}
