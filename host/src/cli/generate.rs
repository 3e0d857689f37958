//! `lily completions`, `lily man` and `lily schema`: what is generated from
//! the definitions themselves — the clap command tree (completions, man
//! pages) and the Rust types that parse Lily's files (JSON Schemas).

use super::{Cli, EXIT_OK, Global, render};
use clap::CommandFactory;
use lily::error::{ErrorCode, LilyError};
use lily::schemas::SchemaKind;
use serde_json::json;
use std::path::Path;

/// `lily completions <shell>`: the completion script on stdout.
pub fn completions(g: &Global, shell: clap_complete::Shell) -> Result<i32, LilyError> {
    let mut cmd = Cli::command();
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut cmd, "lily", &mut buf);
    let script = String::from_utf8_lossy(&buf);
    if g.json {
        render::json(&json!({"shell": shell.to_string(), "script": script}));
    } else {
        out!("{script}");
    }
    Ok(EXIT_OK)
}

/// The man pages: `lily.1`, then one per subcommand (`lily-jobs.1`,
/// `lily-jobs-run.1`, …), each with its file name.
fn man_pages() -> Result<Vec<(String, Vec<u8>)>, std::io::Error> {
    fn walk(cmd: &clap::Command, out: &mut Vec<(String, Vec<u8>)>) -> Result<(), std::io::Error> {
        // After `build`, a subcommand's display name is its path (`lily-jobs-run`).
        let page = clap_mangen::Man::new(cmd.clone());
        let mut buf = Vec::new();
        page.render(&mut buf)?;
        out.push((page.get_filename(), buf));
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            walk(sub, out)?;
        }
        Ok(())
    }
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let mut out = Vec::new();
    walk(&cmd, &mut out)?;
    Ok(out)
}

/// `lily man [--out DIR]`: the page of `lily` on stdout, or every page
/// written into DIR (created if missing; existing pages replaced).
pub fn man(g: &Global, out_dir: Option<&Path>) -> Result<i32, LilyError> {
    let io = |e: std::io::Error| LilyError::new(ErrorCode::JobExecutionFailed, format!("cannot render the man pages: {e}"));
    let pages = man_pages().map_err(io)?;
    let Some(dir) = out_dir else {
        let (name, roff) = pages.into_iter().next().ok_or_else(|| io(std::io::ErrorKind::NotFound.into()))?;
        let roff = String::from_utf8_lossy(&roff).into_owned();
        if g.json {
            render::json(&json!({"name": name, "roff": roff}));
        } else {
            out!("{roff}");
        }
        return Ok(EXIT_OK);
    };
    std::fs::create_dir_all(dir).map_err(|e| LilyError::new(ErrorCode::JobExecutionFailed, format!("cannot create {}: {e}", dir.display())))?;
    let mut written = Vec::new();
    for (name, roff) in &pages {
        let p = dir.join(name);
        lily::util::atomic_write(&p, roff).map_err(|e| LilyError::new(ErrorCode::JobExecutionFailed, format!("cannot write {}: {e}", p.display())))?;
        written.push(p);
    }
    if g.json {
        render::json(&json!({"written": written}));
    } else {
        outln!("wrote {} man pages to {}", written.len(), dir.display());
        for p in &written {
            outln!("  {}", p.display());
        }
    }
    Ok(EXIT_OK)
}

/// `lily schema <kind>`: the JSON Schema on stdout (it is JSON with or
/// without `--json`).
pub fn schema(kind: &str) -> Result<i32, LilyError> {
    let kind = SchemaKind::parse(kind)
        .ok_or_else(|| LilyError::new(ErrorCode::JobNotFound, format!("no schema {kind:?}")).with_hint("one of job, policy, config, receipt"))?;
    out!("{}", kind.text());
    Ok(EXIT_OK)
}
