//! JSON Schemas (draft 2020-12) of the files Lily reads and writes — job
//! specs, the policy, the config and receipts — generated with `schemars`
//! from the very types that parse them, so a schema cannot drift from the
//! parser (`lily schema …`, and the copies `lily init` writes into
//! `.lily/schemas/` for editors).
//!
//! A schema checks the shape (keys, types, enums); the parsers' semantic
//! checks (ids, cron syntax, time zones, ceilings) still apply on load.

use serde_json::Value;

/// The documents that have a schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaKind {
    /// A job spec (`.lily/jobs/*.job.yaml`, [`crate::spec::JobSpec`]).
    Job,
    /// `.lily/policy.yaml` ([`crate::policy::PolicyFile`]).
    Policy,
    /// `.lily/config.yaml` ([`crate::config::Config`]).
    Config,
    /// `run_receipt.json` ([`crate::runs::Receipt`]).
    Receipt,
}

impl SchemaKind {
    /// Every kind, in the order `lily init` writes them.
    pub const ALL: [SchemaKind; 4] = [SchemaKind::Job, SchemaKind::Policy, SchemaKind::Config, SchemaKind::Receipt];

    /// `job`, `policy`, `config` or `receipt`.
    pub fn as_str(self) -> &'static str {
        match self {
            SchemaKind::Job => "job",
            SchemaKind::Policy => "policy",
            SchemaKind::Config => "config",
            SchemaKind::Receipt => "receipt",
        }
    }

    /// The kind of a name as `lily schema` takes it.
    pub fn parse(name: &str) -> Option<SchemaKind> {
        SchemaKind::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// The schema's file name under `.lily/schemas/` (`job.schema.json`, …).
    pub fn file_name(self) -> String {
        format!("{}.schema.json", self.as_str())
    }

    /// The schema as JSON.
    pub fn schema(self) -> Value {
        let mut schema = match self {
            SchemaKind::Job => schemars::schema_for!(crate::spec::JobSpec),
            SchemaKind::Policy => schemars::schema_for!(crate::policy::PolicyFile),
            SchemaKind::Config => schemars::schema_for!(crate::config::Config),
            SchemaKind::Receipt => schemars::schema_for!(crate::runs::Receipt),
        };
        let title = match self {
            SchemaKind::Job => "Lily job spec (.lily/jobs/*.job.yaml)",
            SchemaKind::Policy => "Lily policy (.lily/policy.yaml)",
            SchemaKind::Config => "Lily config (.lily/config.yaml)",
            SchemaKind::Receipt => "Lily run receipt (run_receipt.json)",
        };
        schema.insert("title".into(), Value::from(title));
        schema.insert("$id".into(), Value::from(format!("urn:lily:schema:{}:{}", self.as_str(), crate::VERSION)));
        schema.to_value()
    }

    /// The schema as the pretty JSON text `lily schema` prints and `lily
    /// init` writes (ends with a newline).
    pub fn text(self) -> String {
        let mut s = crate::text::json_pretty(&self.schema());
        s.push('\n');
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_schema_is_draft_2020_12_and_compiles() {
        for k in SchemaKind::ALL {
            let s = k.schema();
            assert_eq!(s["$schema"], "https://json-schema.org/draft/2020-12/schema", "{}", k.as_str());
            assert!(jsonschema::meta::is_valid(&s), "{} is not a valid schema", k.as_str());
            assert!(jsonschema::draft202012::new(&s).is_ok(), "{} does not compile", k.as_str());
            assert_eq!(SchemaKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(SchemaKind::parse("jobs"), None);
    }

    #[test]
    fn the_job_schema_refuses_unknown_keys_like_the_parser() {
        let s = SchemaKind::Job.schema();
        assert_eq!(s["additionalProperties"], false);
        let required: Vec<&str> = s["required"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        for k in ["id", "title", "target", "bindings", "trigger", "runtime", "output"] {
            assert!(required.contains(&k), "{k} is not required: {required:?}");
        }
    }
}
