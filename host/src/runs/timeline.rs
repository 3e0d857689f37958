//! A run's steps on a time axis (`lily jobs show <run> --timeline`): when
//! each step started relative to the run's first event, how long it took
//! and how it ended, read from `events.jsonl`; and the pure layout of those
//! steps as horizontal bars of a given width (the CLI draws them).

use serde::Serialize;
use serde_json::Value;
use std::path::Path;

/// One step of one attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TimelineStep {
    pub node: String,
    /// The attempt the step ran in (1 = the first).
    pub attempt: u32,
    /// Milliseconds from the run's first event to the step's start.
    pub start_ms: u64,
    pub duration_ms: u64,
    /// `ok`, the kind of the step's failure (`trap`, `out_of_fuel`, …), or
    /// `unfinished` when the events end before the step did.
    pub outcome: String,
}

/// The steps of a run, in the order they started.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Timeline {
    /// Milliseconds from the run's first event to its last.
    pub total_ms: u64,
    /// Attempts the run started.
    pub attempts: u32,
    pub steps: Vec<TimelineStep>,
}

fn ts_ms(e: &Value) -> Option<i64> {
    let ts = e["ts"].as_str()?;
    chrono::DateTime::parse_from_rfc3339(ts).ok().map(|t| t.timestamp_millis())
}

impl Timeline {
    /// The timeline of the events of a run (as [`super::read_events`]
    /// returns them).
    pub fn from_events(events: &[Value]) -> Timeline {
        let Some(t0) = events.iter().find_map(ts_ms) else {
            return Timeline::default();
        };
        let offset = |e: &Value| ts_ms(e).map(|t| (t - t0).max(0) as u64);
        let mut t = Timeline::default();
        let mut last = 0u64;
        // Index in `t.steps` of each node's open step.
        let mut open: Vec<(String, usize)> = Vec::new();
        for e in events {
            let at = offset(e);
            if let Some(at) = at {
                last = last.max(at);
            }
            let node = e["node"].as_str().unwrap_or("");
            match e["type"].as_str().unwrap_or("") {
                "job_attempt_started" => {
                    t.attempts = e["attempt"].as_u64().map(|n| n as u32).unwrap_or(t.attempts + 1);
                }
                "step_started" => {
                    open.retain(|(n, _)| n != node);
                    open.push((node.to_string(), t.steps.len()));
                    t.steps.push(TimelineStep {
                        node: node.to_string(),
                        attempt: t.attempts.max(1),
                        start_ms: at.unwrap_or(last),
                        duration_ms: 0,
                        outcome: "unfinished".into(),
                    });
                }
                "step_finished" => {
                    if let Some(pos) = open.iter().position(|(n, _)| n == node) {
                        let (_, i) = open.remove(pos);
                        let s = &mut t.steps[i];
                        s.duration_ms = e["duration_ms"].as_u64().unwrap_or_else(|| at.unwrap_or(last).saturating_sub(s.start_ms));
                        s.outcome = e["outcome"].as_str().unwrap_or("unknown").to_string();
                    }
                }
                _ => {}
            }
        }
        for (_, i) in open {
            let s = &mut t.steps[i];
            s.duration_ms = last.saturating_sub(s.start_ms);
        }
        t.total_ms = t.steps.iter().map(|s| s.start_ms + s.duration_ms).fold(last, u64::max);
        t
    }

    /// The timeline of the run in `run_dir`.
    pub fn read(run_dir: &Path) -> Timeline {
        Timeline::from_events(&super::read_events(run_dir))
    }
}

/// Where one step's bar goes: columns within the bar area.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bar {
    /// The step's name for the label column: escaped (one terminal field),
    /// at most [`Layout::label_width`] characters (`…` when cut).
    pub label: String,
    pub start_col: usize,
    /// At least 1: a zero-length step is still visible.
    pub len: usize,
}

/// The geometry of a timeline drawn `width` columns wide: a label column,
/// a bar area, and the text after each bar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub label_width: usize,
    pub bar_width: usize,
    pub bars: Vec<Bar>,
}

/// Widest label column.
pub const MAX_LABEL: usize = 24;
/// Narrowest bar area, however narrow the terminal.
pub const MIN_BAR: usize = 10;

/// The label of a step: its node, with the attempt when the run had more
/// than one.
fn label_of(s: &TimelineStep, attempts: u32) -> String {
    let node = crate::text::terminal_field(&s.node).into_owned();
    if attempts > 1 { format!("{node} #{}", s.attempt) } else { node }
}

fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Lay out `t` in `width` columns, keeping `note_width` columns after the
/// bars for the start / duration / outcome text: bars proportional to the
/// run's duration, each at least one column.
pub fn layout(t: &Timeline, width: usize, note_width: usize) -> Layout {
    let labels: Vec<String> = t.steps.iter().map(|s| label_of(s, t.attempts)).collect();
    let label_width = labels.iter().map(|l| l.chars().count()).max().unwrap_or(0).clamp(4, MAX_LABEL);
    // label, space, `|`, bars, `|`, space, note
    let bar_width = width.saturating_sub(label_width + note_width + 4).max(MIN_BAR);
    let total = t.total_ms.max(1) as u128;
    let bw = bar_width as u128;
    let bars = t
        .steps
        .iter()
        .zip(labels)
        .map(|(s, label)| {
            let start = ((s.start_ms as u128 * bw) / total) as usize;
            let end = ((s.start_ms as u128 + s.duration_ms as u128) * bw).div_ceil(total) as usize;
            let start_col = start.min(bar_width - 1);
            let len = end.min(bar_width).saturating_sub(start_col).max(1);
            Bar {
                label: cut(&label, label_width),
                start_col,
                len,
            }
        })
        .collect();
    Layout { label_width, bar_width, bars }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn step(node: &str, start_ms: u64, duration_ms: u64) -> TimelineStep {
        TimelineStep {
            node: node.into(),
            attempt: 1,
            start_ms,
            duration_ms,
            outcome: "ok".into(),
        }
    }

    fn tl(total_ms: u64, steps: Vec<TimelineStep>) -> Timeline {
        Timeline { total_ms, attempts: 1, steps }
    }

    #[test]
    fn bars_are_proportional_to_time() {
        let t = tl(1000, vec![step("a", 0, 500), step("b", 500, 250), step("c", 750, 250)]);
        let l = layout(&t, 4 + 20 + 4 + 4, 4);
        assert_eq!(l.bar_width, 20);
        let cols: Vec<(usize, usize)> = l.bars.iter().map(|b| (b.start_col, b.len)).collect();
        assert_eq!(cols, vec![(0, 10), (10, 5), (15, 5)]);
    }

    #[test]
    fn a_zero_length_step_is_still_visible_even_at_the_end() {
        let t = tl(1000, vec![step("a", 0, 1000), step("z", 1000, 0), step("m", 400, 0)]);
        let l = layout(&t, 80, 10);
        for b in &l.bars {
            assert!(b.len >= 1 && b.start_col + b.len <= l.bar_width, "{b:?} in {}", l.bar_width);
        }
        assert_eq!(l.bars[1].start_col, l.bar_width - 1);
        // A run whose steps all took 0 ms (total 0) still draws.
        let l = layout(&tl(0, vec![step("a", 0, 0)]), 80, 10);
        assert_eq!((l.bars[0].start_col, l.bars[0].len), (0, 1));
    }

    #[test]
    fn long_names_are_cut_and_guest_controls_escaped() {
        let long = "a".repeat(60);
        let t = tl(10, vec![step(&long, 0, 10), step("evil\x1b[2J\nname", 0, 10)]);
        let l = layout(&t, 80, 10);
        assert_eq!(l.label_width, MAX_LABEL);
        assert_eq!(l.bars[0].label.chars().count(), MAX_LABEL);
        assert!(l.bars[0].label.ends_with('…'));
        assert!(!l.bars[1].label.contains('\x1b') && !l.bars[1].label.contains('\n'), "{:?}", l.bars[1].label);
        assert!(l.bars[1].label.starts_with("evil\\x1b"), "{:?}", l.bars[1].label);
        // However narrow the terminal, the bar area keeps its minimum.
        assert_eq!(layout(&t, 5, 10).bar_width, MIN_BAR);
    }

    #[test]
    fn events_give_offsets_durations_outcomes_and_attempts() {
        let ev = |ts: &str, kind: &str, extra: Value| {
            let mut v = json!({"ts": ts, "type": kind});
            if let (Value::Object(m), Value::Object(x)) = (&mut v, extra) {
                m.extend(x);
            }
            v
        };
        let events = vec![
            ev("2026-01-01T00:00:00.000Z", "job_started", json!({})),
            ev("2026-01-01T00:00:00.010Z", "job_attempt_started", json!({"attempt": 1})),
            ev("2026-01-01T00:00:00.100Z", "step_started", json!({"node": "a"})),
            ev("2026-01-01T00:00:00.150Z", "step_started", json!({"node": "b"})),
            ev(
                "2026-01-01T00:00:00.400Z",
                "step_finished",
                json!({"node": "b", "duration_ms": 240, "outcome": "trap"}),
            ),
            ev(
                "2026-01-01T00:00:00.500Z",
                "step_finished",
                json!({"node": "a", "duration_ms": 395, "outcome": "ok"}),
            ),
            ev("2026-01-01T00:00:00.600Z", "job_attempt_started", json!({"attempt": 2})),
            ev("2026-01-01T00:00:00.700Z", "step_started", json!({"node": "b"})),
            ev("2026-01-01T00:00:01.000Z", "job_failed", json!({})),
        ];
        let t = Timeline::from_events(&events);
        assert_eq!(t.attempts, 2);
        assert_eq!(t.total_ms, 1000);
        let got: Vec<(&str, u32, u64, u64, &str)> = t
            .steps
            .iter()
            .map(|s| (s.node.as_str(), s.attempt, s.start_ms, s.duration_ms, s.outcome.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![("a", 1, 100, 395, "ok"), ("b", 1, 150, 240, "trap"), ("b", 2, 700, 300, "unfinished")]
        );
        assert_eq!(label_of(&t.steps[2], t.attempts), "b #2");
        assert_eq!(Timeline::from_events(&[]), Timeline::default());
    }
}
