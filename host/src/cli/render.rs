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
    for l in lily::text::table_lines(headers, rows, None) {
        outln!("{l}");
    }
}

/// [`table`], its last column wrapped to the terminal's width when stdout
/// is a terminal (full text otherwise: pipes, files, `--json` callers).
pub fn table_fit(headers: &[&str], rows: &[Vec<String>]) {
    for l in lily::text::table_lines(headers, rows, stdout_width()) {
        outln!("{l}");
    }
}

/// Columns of the terminal on stdout (`COLUMNS` first, then the terminal's
/// size, else 80); `None` when stdout is not a terminal.
pub fn stdout_width() -> Option<usize> {
    use std::io::IsTerminal;
    if !std::io::stdout().is_terminal() {
        return None;
    }
    let env = std::env::var("COLUMNS").ok().and_then(|c| c.trim().parse::<usize>().ok()).filter(|c| *c > 0);
    Some(env.or_else(terminal_columns).unwrap_or(80))
}

#[cfg(unix)]
#[allow(unsafe_code)]
fn terminal_columns() -> Option<usize> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ fills the `winsize` it is given; `ws` outlives the call.
    let r = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut ws) };
    (r == 0 && ws.ws_col > 0).then_some(usize::from(ws.ws_col))
}

#[cfg(not(unix))]
fn terminal_columns() -> Option<usize> {
    None
}
