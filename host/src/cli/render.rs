//! Rendering helpers shared by the commands.

use lily::error::LilyError;
use serde::Serialize;

/// Print an error: `error[code]: message` plus a hint, or a JSON object.
pub fn error(e: &LilyError, json: bool) {
    if json {
        let v = serde_json::json!({"code": e.code.as_str(), "message": e.message, "hint": e.hint, "details": e.details});
        outln!("{}", lily::text::json_pretty(&v));
    } else {
        errln!("error[{}]: {}", e.code, lily::text::terminal_field(&e.message));
        if let Some(h) = &e.hint {
            let mut lines = h.lines();
            if let Some(first) = lines.next() {
                errln!("  hint: {first}");
            }
            for l in lines {
                errln!("        {l}");
            }
        }
    }
}

/// Print the redacted grants of one step (`Grants::redacted`), one line
/// each, under `indent`; `nothing granted` when there are none.
pub fn grants(indent: &str, g: &serde_json::Value, say_none: bool) {
    let list = |k: &str| g[k].as_array().cloned().unwrap_or_default();
    let (dirs, env, net, http) = (list("dirs"), list("env"), list("network"), list("http"));
    let llm = &g["llm"];
    if say_none && dirs.is_empty() && env.is_empty() && net.is_empty() && http.is_empty() && llm.is_null() {
        outln!("{indent}nothing granted (no files, no env, no network, no http, no models)");
    }
    for d in &dirs {
        outln!(
            "{indent}fs {} → {} ({})",
            d["host"].as_str().unwrap_or(""),
            d["guest"].as_str().unwrap_or(""),
            d["perms"].as_str().unwrap_or("")
        );
    }
    for e in &env {
        outln!("{indent}env {}", e.as_str().unwrap_or(""));
    }
    for e in &net {
        outln!("{indent}net {}", e.as_str().unwrap_or(""));
    }
    for e in &http {
        outln!("{indent}http {}", e.as_str().unwrap_or(""));
    }
    if let Some(models) = llm["models"].as_array() {
        let b = &llm["budget"];
        outln!(
            "{indent}llm {} (per run under {:?}: {} calls, {} input, {} output tokens)",
            models.iter().filter_map(|m| m.as_str()).collect::<Vec<_>>().join(", "),
            llm["rule"].as_str().unwrap_or(""),
            b["max_calls"],
            b["max_input_tokens"],
            b["max_output_tokens"]
        );
    }
}

/// Print a value as pretty JSON.
pub fn json<T: Serialize>(v: &T) {
    outln!("{}", lily::text::json_pretty(v));
}

/// A simple left-aligned table.
pub fn table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{:<w$}  ", c, w = widths[i]));
            }
        }
        outln!("{}", s.trim_end());
    };
    line(headers.iter().map(|h| h.to_string()).collect());
    for r in rows {
        line(r.clone());
    }
}
