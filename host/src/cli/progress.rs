//! The live display of `lily jobs run` on a TTY (stderr): one spinner line
//! per running step, replaced by `✓` / `✗`, the step and its duration when
//! it finishes (the finished lines stay, above the spinners of the steps
//! still running, like cargo's); failed attempts shown the same way. Only ever built when stderr is
//! a terminal and `--json` is off.
//!
//! [`Tracker`] decides what the lines say from the run's events (pure, and
//! unit-tested); [`Progress`] draws them with `indicatif`. Every node name
//! and message is escaped as one terminal field: they come from specs and
//! guests.

use super::timeline::fmt_ms;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// What the display does for one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// A spinner line for a step that started.
    Start { node: String, line: String },
    /// The step's spinner becomes this final line.
    Finish { node: String, line: String },
    /// A line printed above the spinners.
    Note(String),
}

fn field(v: &Value) -> String {
    lily::text::terminal_field(v.as_str().unwrap_or("")).into_owned()
}

/// The state of the display: which steps are running.
#[derive(Debug, Default)]
pub struct Tracker {
    running: Vec<String>,
}

impl Tracker {
    /// What the display shows for the event `kind` with fields `f`.
    pub fn on_event(&mut self, kind: &str, f: &Value) -> Vec<Action> {
        match kind {
            "job_attempt_started" => match f["attempt"].as_u64() {
                Some(n) if n > 1 => vec![Action::Note(format!("attempt {n}"))],
                _ => Vec::new(),
            },
            "step_started" => {
                let node = field(&f["node"]);
                self.running.push(node.clone());
                vec![Action::Start { line: node.clone(), node }]
            }
            "step_finished" => {
                let node = field(&f["node"]);
                self.running.retain(|n| *n != node);
                let ms = fmt_ms(f["duration_ms"].as_u64().unwrap_or(0));
                let line = match f["outcome"].as_str() {
                    Some("ok") => format!("✓ {node} {ms}"),
                    _ => format!("✗ {node} {} after {ms}", field(&f["outcome"])),
                };
                vec![Action::Finish { node, line }]
            }
            "waiting_for_slot" => {
                let held: Vec<String> = f["held_by"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|r| lily::text::terminal_field(r.as_str().unwrap_or("")).into_owned())
                    .collect();
                vec![Action::Note(format!(
                    "waiting for a free run slot (max_parallel_runs {}); held by {}",
                    f["max_parallel_runs"],
                    if held.is_empty() {
                        "another run".to_string()
                    } else {
                        format!("run {}", held.join(", run "))
                    }
                ))]
            }
            "job_attempt_failed" => {
                let mut out: Vec<Action> = self
                    .running
                    .drain(..)
                    .map(|node| Action::Finish {
                        line: format!("✗ {node} stopped with its attempt"),
                        node,
                    })
                    .collect();
                out.push(Action::Note(format!(
                    "✗ attempt {} failed: {}{}",
                    f["attempt"],
                    field(&f["message"]),
                    if f["will_retry"] == true { " (will retry)" } else { "" }
                )));
                out
            }
            _ => Vec::new(),
        }
    }

    /// The run ended: a line for each step that never finished.
    pub fn end(&mut self) -> Vec<Action> {
        self.running
            .drain(..)
            .map(|node| Action::Finish {
                line: format!("✗ {node} did not finish"),
                node,
            })
            .collect()
    }

    /// Steps still running.
    #[cfg(test)]
    pub fn running(&self) -> &[String] {
        &self.running
    }
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_spinner())
}

/// The live display on stderr.
pub struct Progress {
    multi: MultiProgress,
    state: Mutex<(Tracker, HashMap<String, ProgressBar>)>,
}

impl Progress {
    pub fn stderr() -> Progress {
        Progress {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            state: Mutex::new((Tracker::default(), HashMap::new())),
        }
    }

    /// Show one event of the run.
    pub fn observe(&self, kind: &str, fields: &Value) {
        let Ok(mut state) = self.state.lock() else { return };
        let (tracker, bars) = &mut *state;
        let actions = tracker.on_event(kind, fields);
        self.apply(bars, actions);
    }

    fn apply(&self, bars: &mut HashMap<String, ProgressBar>, actions: Vec<Action>) {
        for a in actions {
            match a {
                Action::Start { node, line } => {
                    let pb = self.multi.add(ProgressBar::new_spinner());
                    pb.set_style(style("  {spinner} {msg} {elapsed}"));
                    pb.set_message(line);
                    pb.enable_steady_tick(Duration::from_millis(100));
                    if let Some(old) = bars.insert(node, pb) {
                        old.finish_and_clear();
                    }
                }
                Action::Finish { node, line } => {
                    if let Some(pb) = bars.remove(&node) {
                        pb.finish_and_clear();
                        self.multi.remove(&pb);
                        self.multi.suspend(|| errln!("  {line}"));
                    }
                }
                Action::Note(line) => self.multi.suspend(|| errln!("  {line}")),
            }
        }
    }

    /// The run ended: the steps that never finished say so, and no
    /// spinner is left on the screen.
    pub fn finish(&self) {
        if let Ok(mut state) = self.state.lock() {
            let (tracker, bars) = &mut *state;
            let actions = tracker.end();
            self.apply(bars, actions);
            for (_, pb) in bars.drain() {
                pb.finish_and_clear();
            }
        }
        let _ = self.multi.clear();
    }
}

/// The TTY display of `lily runnables install`: a spinner while the
/// component is compiled (a Python component takes ~30 s), then one line
/// with the time when it took more than a second. Nothing at all when
/// stderr is not a terminal or `--json` is on.
pub struct InstallProgress {
    bar: Option<ProgressBar>,
    what: String,
}

impl InstallProgress {
    pub fn new(enabled: bool, file: &str) -> InstallProgress {
        use std::io::IsTerminal;
        let on = enabled && std::io::stderr().is_terminal();
        InstallProgress {
            bar: on.then(ProgressBar::hidden),
            what: lily::text::terminal_field(file).into_owned(),
        }
    }

    pub fn on(&self, stage: lily::runnables::InstallStage) {
        let Some(bar) = &self.bar else { return };
        match stage {
            lily::runnables::InstallStage::Compiling { bytes } => {
                bar.set_draw_target(ProgressDrawTarget::stderr());
                bar.set_style(ProgressStyle::with_template("{spinner} {msg} {elapsed}").unwrap_or_else(|_| ProgressStyle::default_spinner()));
                bar.set_message(format!(
                    "compiling {} ({:.1} MB) for this machine (cached afterwards)",
                    self.what,
                    bytes as f64 / 1_000_000.0
                ));
                bar.enable_steady_tick(Duration::from_millis(120));
            }
            lily::runnables::InstallStage::Compiled { ms, ok } => {
                bar.finish_and_clear();
                if ok && ms >= 1000 {
                    errln!("compiled {} in {}", self.what, fmt_ms(ms));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_step_starts_as_a_spinner_and_ends_as_a_tick_or_a_cross() {
        let mut t = Tracker::default();
        assert_eq!(t.on_event("job_attempt_started", &json!({"attempt": 1})), vec![]);
        assert_eq!(
            t.on_event("step_started", &json!({"node": "security"})),
            vec![Action::Start {
                node: "security".into(),
                line: "security".into()
            }]
        );
        t.on_event("step_started", &json!({"node": "ops"}));
        assert_eq!(t.running(), ["security", "ops"]);
        assert_eq!(
            t.on_event("step_finished", &json!({"node": "ops", "outcome": "trap", "duration_ms": 1500})),
            vec![Action::Finish {
                node: "ops".into(),
                line: "✗ ops trap after 1.5 s".into()
            }]
        );
        assert_eq!(
            t.on_event("step_finished", &json!({"node": "security", "outcome": "ok", "duration_ms": 12})),
            vec![Action::Finish {
                node: "security".into(),
                line: "✓ security 12 ms".into()
            }]
        );
        assert!(t.running().is_empty());
        assert_eq!(t.on_event("job_completed", &json!({})), vec![]);
    }

    #[test]
    fn a_failed_attempt_closes_its_running_steps_and_says_so() {
        let mut t = Tracker::default();
        t.on_event("step_started", &json!({"node": "slow"}));
        let a = t.on_event("job_attempt_failed", &json!({"attempt": 1, "message": "attempt timed out", "will_retry": true}));
        assert_eq!(
            a,
            vec![
                Action::Finish {
                    node: "slow".into(),
                    line: "✗ slow stopped with its attempt".into()
                },
                Action::Note("✗ attempt 1 failed: attempt timed out (will retry)".into()),
            ]
        );
        assert_eq!(
            t.on_event("job_attempt_started", &json!({"attempt": 2})),
            vec![Action::Note("attempt 2".into())]
        );
        t.on_event("step_started", &json!({"node": "slow"}));
        assert_eq!(
            t.end(),
            vec![Action::Finish {
                node: "slow".into(),
                line: "✗ slow did not finish".into()
            }]
        );
        assert!(t.end().is_empty());
    }

    #[test]
    fn waiting_for_a_slot_names_the_runs_that_hold_it() {
        let mut t = Tracker::default();
        assert_eq!(
            t.on_event("waiting_for_slot", &json!({"max_parallel_runs": 1, "held_by": ["r1"]})),
            vec![Action::Note("waiting for a free run slot (max_parallel_runs 1); held by run r1".into())]
        );
        assert_eq!(
            t.on_event("waiting_for_slot", &json!({"max_parallel_runs": 2, "held_by": []})),
            vec![Action::Note("waiting for a free run slot (max_parallel_runs 2); held by another run".into())]
        );
    }

    #[test]
    fn guest_strings_are_escaped_in_every_line() {
        let mut t = Tracker::default();
        let evil = "x\x1b]0;owned\x07\ny";
        let mut lines = Vec::new();
        for a in t
            .on_event("step_started", &json!({"node": evil}))
            .into_iter()
            .chain(t.on_event("job_attempt_failed", &json!({"attempt": 1, "message": evil})))
        {
            match a {
                Action::Start { line, .. } | Action::Finish { line, .. } | Action::Note(line) => lines.push(line),
            }
        }
        assert_eq!(lines.len(), 3);
        for l in lines {
            assert!(!l.chars().any(|c| c.is_control()), "{l:?}");
        }
    }
}
