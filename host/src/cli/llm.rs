//! `lily llm models | check [alias]`: the model aliases of this root, and
//! one call to each to see that it answers.

use super::{EXIT_OK, Global, render, root};
use clap::Subcommand;
use lily::error::{ErrorCode, LilyError};
use lily::llm::LlmService;
use lily::sandbox::llm::{LlmRequest, Message, Role};
use serde_json::json;
use std::time::{Duration, Instant};

#[derive(Debug, Subcommand)]
pub enum LlmCmd {
    /// List the model aliases of .lily/config.yaml and their providers
    Models,
    /// Call each configured alias (or one) once: reachability, latency, the model's reported name
    Check {
        /// Only this alias
        alias: Option<String>,
        /// Seconds to wait for each answer
        #[arg(long, default_value_t = 60)]
        timeout: u64,
    },
}

pub async fn run(g: &Global, cmd: LlmCmd) -> Result<i32, LilyError> {
    let root = root(g)?;
    let config = &root.config.llm;
    match cmd {
        LlmCmd::Models => {
            let rows: Vec<serde_json::Value> = config
                .models
                .iter()
                .map(|(alias, m)| {
                    let p = config.providers.get(&m.provider);
                    json!({"alias": alias, "provider": m.provider, "model": m.model,
                           "base_url": p.map(|p| p.base_url.clone()), "api_key_env": p.and_then(|p| p.api_key_env.clone())})
                })
                .collect();
            if g.json {
                render::json(&rows);
            } else if rows.is_empty() {
                outln!(
                    "no model aliases: add an llm: section to {} (see docs/llm.md)",
                    root.lily_dir().join("config.yaml").display()
                );
            } else {
                let table: Vec<Vec<String>> = rows
                    .iter()
                    .map(|r| {
                        ["alias", "provider", "model", "base_url"]
                            .iter()
                            .map(|k| r[*k].as_str().unwrap_or("").to_string())
                            .collect()
                    })
                    .collect();
                render::table(&["ALIAS", "PROVIDER", "MODEL", "BASE URL"], &table);
            }
            Ok(EXIT_OK)
        }
        LlmCmd::Check { alias, timeout } => {
            let aliases: Vec<String> = match alias {
                Some(a) if config.models.contains_key(&a) => vec![a],
                Some(a) => {
                    return Err(LilyError::new(ErrorCode::JobNotFound, format!("no model alias {a:?} in .lily/config.yaml"))
                        .with_hint("`lily llm models` lists the configured aliases"));
                }
                None => config.models.keys().cloned().collect(),
            };
            if aliases.is_empty() {
                return Err(LilyError::new(ErrorCode::JobNotFound, "no model aliases are configured")
                    .with_hint("add an llm: section to .lily/config.yaml (see docs/llm.md)"));
            }
            let service = LlmService::new(config);
            let mut results = Vec::new();
            let mut failed = 0;
            for a in aliases {
                let req = LlmRequest {
                    model: a.clone(),
                    messages: vec![Message {
                        role: Role::User,
                        content: "Reply with the single word: ok".into(),
                    }],
                    max_output_tokens: 8,
                    temperature: Some(0.0),
                    seed: None,
                    stop: Vec::new(),
                    response_format: None,
                };
                let started = Instant::now();
                let r = service.call(req, Instant::now() + Duration::from_secs(timeout)).await;
                let ms = started.elapsed().as_millis() as u64;
                match r {
                    Ok(reply) => results.push(
                        json!({"alias": a, "ok": true, "latency_ms": ms, "reported_model": reply.resolved["reported_model"],
                                                     "usage": reply.usage, "reply": reply.text}),
                    ),
                    Err(e) => {
                        failed += 1;
                        results.push(json!({"alias": a, "ok": false, "latency_ms": ms, "error": e.to_string()}));
                    }
                }
            }
            if g.json {
                render::json(&results);
            } else {
                for r in &results {
                    if r["ok"] == true {
                        outln!(
                            "✓ {} answered in {} ms (model {}, {} input / {} output tokens)",
                            r["alias"].as_str().unwrap_or(""),
                            r["latency_ms"],
                            r["reported_model"].as_str().unwrap_or("?"),
                            r["usage"]["input_tokens"],
                            r["usage"]["output_tokens"]
                        );
                    } else {
                        outln!(
                            "✗ {} after {} ms: {}",
                            r["alias"].as_str().unwrap_or(""),
                            r["latency_ms"],
                            r["error"].as_str().unwrap_or("")
                        );
                    }
                }
            }
            Ok(if failed == 0 { EXIT_OK } else { ErrorCode::JobExecutionFailed.exit_status() })
        }
    }
}
