//! `security.v1`: a deterministic security review.
//!
//! Without a workspace it returns the reference finding. With a read-only
//! workspace grant it scans the files for committed private keys, cloud
//! access key ids, credentials assigned to literals, `.env` files and key
//! material by file name, each finding with `path:line` evidence.

use lily_guest::workspace::{Entry, Scanner, scan_or_reference};
use lily_guest::{Finding, RunError, Specialist, SpecialistInput, SpecialistOutput};

/// At most this many evidence lines per finding.
const MAX_EVIDENCE: usize = 25;

pub struct Security;

impl Specialist for Security {
    const ID: &'static str = "security.v1";
    const VERSION: &'static str = "1.0.0";
    const SUMMARY: &'static str = "Reviews authz boundaries; with a workspace, finds committed secrets and key material";

    fn review(input: &SpecialistInput) -> Result<SpecialistOutput, RunError> {
        Ok(scan_or_reference::<Scan>(input, |topic| Finding {
            title: "Security control gap review".into(),
            recommendation: format!("Validate authz boundaries for {topic}."),
            confidence: 0.82,
            evidence: vec![],
        }))
    }
}

/// Accumulated hits per detector.
#[derive(Default)]
pub struct Scan {
    private_keys: Vec<String>,
    access_keys: Vec<String>,
    literals: Vec<String>,
    env_files: Vec<String>,
    key_files: Vec<String>,
}

fn push(list: &mut Vec<String>, item: String) {
    if list.len() < MAX_EVIDENCE {
        list.push(item);
    }
}

impl Scanner for Scan {
    fn visit(&mut self, e: &Entry<'_>) {
        let name = e.rel.rsplit('/').next().unwrap_or(e.rel);
        if is_env_file(name) {
            push(&mut self.env_files, e.rel.to_string());
        }
        if is_key_file_name(name) {
            push(&mut self.key_files, e.rel.to_string());
        }
        let Some(text) = e.text else { return };
        for (i, line) in text.lines().enumerate() {
            let at = || format!("{}:{}", e.rel, i + 1);
            if line.contains("-----BEGIN") && line.contains("PRIVATE KEY") {
                push(&mut self.private_keys, at());
            }
            if has_access_key_id(line) {
                push(&mut self.access_keys, at());
            }
            if let Some(key) = credential_literal(line) {
                push(&mut self.literals, format!("{} ({key})", at()));
            }
        }
    }

    fn findings(self) -> Vec<Finding> {
        let mut out = Vec::new();
        let mut add = |hits: Vec<String>, title: &str, rec: &str, base: f64| {
            if hits.is_empty() {
                return;
            }
            // More independent hits make the signal stronger, up to +0.05.
            let confidence = (base + 0.01 * (hits.len().min(5) as f64 - 1.0)).min(0.99);
            out.push(Finding {
                title: title.into(),
                recommendation: rec.into(),
                confidence: round2(confidence),
                evidence: hits,
            });
        };
        add(
            self.private_keys,
            "Committed private key",
            "Remove the private key from the tree, rotate it, and load keys from a secret store.",
            0.95,
        );
        add(
            self.access_keys,
            "Cloud access key id in source",
            "Revoke the access key, rotate credentials, and inject them at runtime.",
            0.9,
        );
        add(
            self.literals,
            "Credential assigned to a literal",
            "Move the credential to a secret store or environment variable and rotate it.",
            0.7,
        );
        add(
            self.env_files,
            "Environment file committed",
            "Remove the .env file from the tree, add it to .gitignore and rotate any values in it.",
            0.66,
        );
        add(
            self.key_files,
            "Key material by file name",
            "Check that key files are not committed and are readable only by their owner.",
            0.55,
        );
        out
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn is_env_file(name: &str) -> bool {
    let templates = [".env.example", ".env.sample", ".env.template", ".env.dist"];
    (name == ".env" || name.starts_with(".env.")) && !templates.contains(&name)
}

fn is_key_file_name(name: &str) -> bool {
    let exact = ["id_rsa", "id_dsa", "id_ecdsa", "id_ed25519"];
    let exts = [".pem", ".key", ".p12", ".pfx", ".jks", ".keystore"];
    exact.contains(&name) || exts.iter().any(|x| name.ends_with(x))
}

/// `AKIA`/`ASIA` followed by 16 upper-case letters or digits, on a word boundary.
fn has_access_key_id(line: &str) -> bool {
    let b = line.as_bytes();
    let ok = |c: u8| c.is_ascii_uppercase() || c.is_ascii_digit();
    (0..b.len().saturating_sub(19)).any(|i| {
        (b[i..].starts_with(b"AKIA") || b[i..].starts_with(b"ASIA"))
            && (i == 0 || !b[i - 1].is_ascii_alphanumeric())
            && b[i + 4..i + 20].iter().all(|&c| ok(c))
            && b.get(i + 20).is_none_or(|c| !c.is_ascii_alphanumeric())
    })
}

/// `password = "hunter22"`, `api_key: 'abcd…'`, `"token": "…"`; returns the
/// keyword. Placeholders (`${VAR}`, `<…>`, `changeme`, empty) do not count.
fn credential_literal(line: &str) -> Option<&'static str> {
    const KEYS: [&str; 7] = ["password", "passwd", "secret", "token", "api_key", "apikey", "api-key"];
    let lower = line.to_ascii_lowercase();
    for key in KEYS {
        let mut from = 0;
        while let Some(pos) = lower[from..].find(key) {
            let after = from + pos + key.len();
            from = after;
            // Allow a suffix on the identifier (`_value`, closing quote), then `=` or `:`.
            let rest = lower[after..].trim_start_matches(|c: char| c.is_ascii_alphanumeric() || c == '_' || c == '"' || c == '\'');
            let rest = rest.trim_start();
            let Some(rest) = rest.strip_prefix(":=").or_else(|| rest.strip_prefix('=')).or_else(|| rest.strip_prefix(':')) else {
                continue;
            };
            let rest = rest.trim_start();
            let Some(q) = rest.chars().next().filter(|c| *c == '"' || *c == '\'') else {
                continue;
            };
            let body = &rest[1..];
            let Some(end) = body.find(q) else { continue };
            let value = &body[..end];
            let placeholder = value.len() < 4
                || value.starts_with('$')
                || value.starts_with('<')
                || value.starts_with("{{")
                || ["changeme", "change-me", "example", "xxxx", "placeholder", "redacted"]
                    .iter()
                    .any(|p| value.contains(p));
            if !placeholder {
                return Some(key);
            }
        }
    }
    None
}

lily_guest::export_specialist!(Security);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_access_keys_on_word_boundaries() {
        assert!(has_access_key_id("aws_access_key_id = AKIAIOSFODNN7EXAMPLE"));
        assert!(!has_access_key_id("XAKIAIOSFODNN7EXAMPLE"));
        assert!(!has_access_key_id("AKIAshort"));
    }

    #[test]
    fn detects_credential_literals_but_not_placeholders() {
        assert_eq!(credential_literal(r#"DB_PASSWORD = "s3cr3t-value""#), Some("password"));
        assert_eq!(credential_literal(r#"  "api_key": "abcd1234efgh","#), Some("api_key"));
        assert_eq!(credential_literal(r#"token: 'tok_live_123456'"#), Some("token"));
        assert_eq!(credential_literal(r#"password = "${DB_PASSWORD}""#), None);
        assert_eq!(credential_literal(r#"password = os.environ["PASSWORD"]"#), None);
        assert_eq!(credential_literal("let token_count = 3;"), None);
    }

    #[test]
    fn env_and_key_file_names() {
        assert!(is_env_file(".env") && is_env_file(".env.production"));
        assert!(!is_env_file(".env.example") && !is_env_file("env.rs"));
        assert!(is_key_file_name("id_rsa") && is_key_file_name("server.pem"));
        assert!(!is_key_file_name("keyboard.rs"));
    }
}
