//! `lily jobs show <run> --timeline`: a run's steps as bars on a time axis.
//! The data and the layout are the library's (`lily::runs::timeline`);
//! this draws them.

use super::{EXIT_OK, Global, render};
use lily::error::LilyError;
use lily::runs::timeline::{Timeline, layout};
use serde_json::json;
use std::io::IsTerminal;
use std::path::Path;

/// Width when stdout is not a terminal (or its size is unknown).
const DEFAULT_WIDTH: usize = 80;

/// `850 ms`, `12.3 s`, `2 m 05 s`.
pub fn fmt_ms(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms} ms"),
        1_000..60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        _ => format!("{} m {:02} s", ms / 60_000, (ms % 60_000) / 1000),
    }
}

fn width() -> usize {
    if !std::io::stdout().is_terminal() {
        return DEFAULT_WIDTH;
    }
    console::Term::stdout()
        .size_checked()
        .map(|(_, cols)| cols as usize)
        .filter(|c| *c > 0)
        .unwrap_or(DEFAULT_WIDTH)
}

pub fn show(g: &Global, dir: &Path) -> Result<i32, LilyError> {
    let run_id = dir.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let t = Timeline::read(dir);
    if g.json {
        render::json(&json!({"run_id": run_id, "total_ms": t.total_ms, "attempts": t.attempts, "steps": t.steps}));
        return Ok(EXIT_OK);
    }
    if t.steps.is_empty() {
        outln!("run {run_id}: no steps ran");
        return Ok(EXIT_OK);
    }
    let notes: Vec<String> = t
        .steps
        .iter()
        .map(|s| format!("+{} {} {}", fmt_ms(s.start_ms), fmt_ms(s.duration_ms), lily::text::terminal_field(&s.outcome)))
        .collect();
    let note_width = notes.iter().map(|n| n.chars().count()).max().unwrap_or(0);
    let l = layout(&t, width(), note_width);
    outln!(
        "run {run_id}: {} step{} in {}{}",
        t.steps.len(),
        if t.steps.len() == 1 { "" } else { "s" },
        fmt_ms(t.total_ms),
        if t.attempts > 1 {
            format!(", {} attempts", t.attempts)
        } else {
            String::new()
        }
    );
    for ((bar, step), note) in l.bars.iter().zip(&t.steps).zip(&notes) {
        let fill = if step.outcome == "ok" { "█" } else { "▒" };
        let after = l.bar_width - bar.start_col - bar.len;
        outln!(
            "{:<lw$} |{}{}{}| {note}",
            bar.label,
            " ".repeat(bar.start_col),
            fill.repeat(bar.len),
            " ".repeat(after),
            lw = l.label_width
        );
    }
    let end = fmt_ms(t.total_ms);
    outln!(
        "{:<lw$}  0{}{end}",
        "",
        " ".repeat(l.bar_width.saturating_sub(1 + end.chars().count())),
        lw = l.label_width
    );
    Ok(EXIT_OK)
}
