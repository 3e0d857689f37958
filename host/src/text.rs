//! Strings from guests are data wherever they are shown.
//!
//! - [`terminal`] escapes what a terminal would interpret: C0 controls
//!   (except newline and tab), DEL, C1 controls, and the Unicode bidi and
//!   line-separator controls, in a visible `\x1b` / `\u{202e}` style. The CLI
//!   passes every line it prints through it.
//! - [`terminal_field`] is the same for one-line fields (targets, ids,
//!   reasons, messages): newline, carriage return and tab are escaped too, so
//!   a field can never start a line of its own.
//! - [`markdown`] makes a string inert inline text in generated Markdown
//!   (and the HTML a renderer would make of it): no heading, list, table
//!   cell break, link, emphasis, code span or tag can start inside it.

use std::borrow::Cow;
use std::fmt::Write;

/// Unicode controls that reorder or separate text (bidi embeddings,
/// overrides and isolates, marks, line and paragraph separators) or hide it.
fn is_format_control(c: char) -> bool {
    matches!(c,
        '\u{061C}' | '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}')
}

fn is_escaped(c: char, keep_newlines: bool) -> bool {
    match c {
        '\n' | '\t' => !keep_newlines,
        c if (c as u32) < 0x20 || c == '\u{7f}' => true,
        '\u{80}'..='\u{9f}' => true,
        c => is_format_control(c),
    }
}

fn escape(s: &str, keep_newlines: bool) -> Cow<'_, str> {
    if !s.chars().any(|c| is_escaped(c, keep_newlines)) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if !is_escaped(c, keep_newlines) {
            out.push(c);
            continue;
        }
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x80 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
        }
    }
    Cow::Owned(out)
}

/// Text for a terminal: every control a terminal would act on, escaped;
/// newlines and tabs kept.
pub fn terminal(s: &str) -> Cow<'_, str> {
    escape(s, true)
}

/// One field on one line of a terminal: like [`terminal`], with newline,
/// carriage return and tab escaped too.
pub fn terminal_field(s: &str) -> Cow<'_, str> {
    escape(s, false)
}

/// `s` on one line for a document: line breaks become spaces, other
/// controls are escaped visibly.
fn one_line(s: &str) -> String {
    terminal_field(&s.replace("\r\n", " ").replace(['\n', '\r'], " ")).into_owned()
}

/// Inline Markdown text that renders as exactly the characters given:
/// Markdown punctuation is backslash-escaped, `&`, `<` and `>` become
/// entities, line breaks become spaces, controls are escaped visibly.
pub fn markdown(s: &str) -> String {
    let s = one_line(s);
    let mut out = String::with_capacity(s.len() + 8);
    let chars: Vec<char> = s.chars().collect();
    // A block marker counts only at the start of a line and only when a
    // space (or the end) follows it: `- x`, `+ x`, `= `, `## x`, `12. x`.
    let space_after = |i: usize| chars.get(i + 1).is_none_or(|c| c.is_whitespace());
    let digits = chars.iter().take_while(|c| c.is_ascii_digit()).count();
    let hashes = chars.iter().take_while(|c| **c == '#').count();
    for (i, &c) in chars.iter().enumerate() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\\' | '`' | '*' | '[' | ']' | '|' | '~' => {
                out.push('\\');
                out.push(c);
            }
            // Inside a word (`model_unavailable`) an underscore is not emphasis.
            '_' if !(i > 0 && chars[i - 1].is_alphanumeric() && chars.get(i + 1).is_some_and(|n| n.is_alphanumeric())) => {
                out.push('\\');
                out.push(c);
            }
            '-' | '+' | '=' if i == 0 && space_after(i) => {
                out.push('\\');
                out.push(c);
            }
            '#' if i == 0 && space_after(hashes - 1) => {
                out.push('\\');
                out.push(c);
            }
            '.' | ')' if i == digits && digits > 0 && space_after(i) => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// A Markdown code span holding exactly `s` (on one line): the fence is one
/// backtick longer than the longest run inside, so nothing in `s` can close
/// it; HTML inside a code span is shown literally.
pub fn markdown_code(s: &str) -> String {
    let s = one_line(s);
    let (mut run, mut longest) = (0usize, 0usize);
    for c in s.chars() {
        run = if c == '`' { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    let fence = "`".repeat(longest + 1);
    let pad = if s.starts_with('`') || s.ends_with('`') || s.is_empty() { " " } else { "" };
    format!("{fence}{pad}{s}{pad}{fence}")
}

/// A JSON string for the terminal: `serde_json` escapes C0 controls; this
/// also writes C1 and the Unicode format controls as `\uXXXX`, so `--json`
/// output is the same JSON value and shows no control raw.
pub fn json_pretty<T: serde::Serialize>(v: &T) -> String {
    json_with(v, serde_json::ser::PrettyFormatter::new())
}

/// [`json_pretty`] on one line (JSON lines output).
pub fn json_line<T: serde::Serialize>(v: &T) -> String {
    json_with(v, serde_json::ser::CompactFormatter)
}

fn json_with<T: serde::Serialize, F: serde_json::ser::Formatter>(v: &T, f: F) -> String {
    let mut buf = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, SafeFormatter(f));
    if v.serialize(&mut ser).is_err() {
        return String::new();
    }
    String::from_utf8(buf).unwrap_or_default()
}

struct SafeFormatter<F>(F);

impl<F: serde_json::ser::Formatter> serde_json::ser::Formatter for SafeFormatter<F> {
    fn write_string_fragment<W: ?Sized + std::io::Write>(&mut self, w: &mut W, fragment: &str) -> std::io::Result<()> {
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            if ('\u{80}'..='\u{9f}').contains(&c) || is_format_control(c) {
                w.write_all(&fragment.as_bytes()[start..i])?;
                write!(w, "\\u{:04x}", c as u32)?;
                start = i + c.len_utf8();
            }
        }
        w.write_all(&fragment.as_bytes()[start..])
    }

    // Everything else as the pretty formatter does it.
    fn begin_array<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.0.begin_array(w)
    }
    fn end_array<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.0.end_array(w)
    }
    fn begin_array_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W, first: bool) -> std::io::Result<()> {
        self.0.begin_array_value(w, first)
    }
    fn end_array_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.0.end_array_value(w)
    }
    fn begin_object<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.0.begin_object(w)
    }
    fn end_object<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.0.end_object(w)
    }
    fn begin_object_key<W: ?Sized + std::io::Write>(&mut self, w: &mut W, first: bool) -> std::io::Result<()> {
        self.0.begin_object_key(w, first)
    }
    fn begin_object_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.0.begin_object_value(w)
    }
    fn end_object_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.0.end_object_value(w)
    }
}

/// `s` cut to at most `max_bytes` bytes, at a character boundary.
pub fn truncate_chars(s: &str, max_bytes: usize) -> Cow<'_, str> {
    if s.len() <= max_bytes {
        return Cow::Borrowed(s);
    }
    let mut end = max_bytes;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(s[..end].to_string())
}

/// Levenshtein distance between two strings, by characters.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diag = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (row[j + 1] + 1).min(row[j] + 1).min(diag + usize::from(ca != *cb));
            diag = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

/// The candidate `word` was most likely meant to be, if one is close: equal
/// ignoring ASCII case, else within edit distance 2 (1 for words of up to 4
/// characters). Ties go to the earlier candidate; `word` itself is never
/// suggested.
pub fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = if word.chars().count() <= 4 { 1 } else { 2 };
    let mut best: Option<(usize, &'a str)> = None;
    for c in candidates {
        if c == word {
            continue;
        }
        let d = if c.eq_ignore_ascii_case(word) { 0 } else { edit_distance(word, c) };
        if d <= limit && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| c)
}

/// serde's `unknown field `x`, expected one of `a`, `b`` (or `expected `a` or
/// `b``, `expected `a``): the unknown field and the expected names.
pub fn serde_unknown_field(msg: &str) -> Option<(String, Vec<String>)> {
    let rest = &msg[msg.find("unknown field `")? + "unknown field `".len()..];
    let (field, rest) = rest.split_once('`')?;
    let expected = rest.split_once("expected").map(|(_, e)| e).unwrap_or("");
    // Up to the location serde_norway appends.
    let expected = expected.split(" at line ").next().unwrap_or(expected);
    let names = expected.split('`').skip(1).step_by(2).map(str::to_string).collect();
    Some((field.to_string(), names))
}

/// "did you mean `x`?" for an unknown field in a serde error message, when
/// one of the expected fields is close.
pub fn unknown_field_hint(msg: &str) -> Option<String> {
    let (field, expected) = serde_unknown_field(msg)?;
    suggest(&field, expected.iter().map(String::as_str)).map(|s| format!("did you mean `{s}`?"))
}

/// The lines of a plain-text table: columns padded to their widest cell,
/// the last column unpadded. With a `width` (a terminal's), the last
/// column is wrapped at spaces so each line fits (continuation lines are
/// indented to that column; a single word longer than the room stays
/// whole); without one every cell is printed in full.
pub fn table_lines(headers: &[&str], rows: &[Vec<String>], width: Option<usize>) -> Vec<String> {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
    }
    let mut out = Vec::new();
    let mut line = |cells: &[String]| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                let indent = s.chars().count();
                let room = width.map(|w| w.saturating_sub(indent).max(16));
                let mut parts = wrap_words(c, room.unwrap_or(usize::MAX)).into_iter();
                s.push_str(&parts.next().unwrap_or_default());
                out.push(s.trim_end().to_string());
                for p in parts {
                    out.push(format!("{}{p}", " ".repeat(indent)).trim_end().to_string());
                }
                return;
            }
            s.push_str(&format!("{:<w$}  ", c, w = widths[i]));
        }
        out.push(s.trim_end().to_string());
    };
    line(&headers.iter().map(|h| h.to_string()).collect::<Vec<_>>());
    for r in rows {
        line(r);
    }
    out
}

/// `s` in lines of at most `room` characters, broken at spaces (a word
/// longer than `room` gets a line of its own).
pub fn wrap_words(s: &str, room: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut cur = String::new();
    for w in s.split(' ').filter(|w| !w.is_empty()) {
        if !cur.is_empty() && cur.chars().count() + 1 + w.chars().count() > room {
            lines.push(std::mem::take(&mut cur));
        }
        if !cur.is_empty() {
            cur.push(' ');
        }
        cur.push_str(w);
    }
    lines.push(cur);
    lines
}

/// Interface names grouped by package, for a narrow column:
/// `wasi:cli/stdout wasi:cli/stderr` → `wasi:cli/{stderr, stdout}`
/// (the order of first appearance of each package is kept).
pub fn group_interfaces(names: &[String]) -> String {
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    for n in names {
        let (pkg, item) = match n.rsplit_once('/') {
            Some((p, i)) => (p.to_string(), i.to_string()),
            None => (n.clone(), String::new()),
        };
        match groups.iter_mut().find(|(p, _)| *p == pkg) {
            Some((_, items)) => items.push(item),
            None => groups.push((pkg, vec![item])),
        }
    }
    groups
        .into_iter()
        .map(|(p, mut items)| {
            items.sort();
            items.dedup();
            match items.as_slice() {
                [one] if one.is_empty() => p,
                [one] => format!("{p}/{one}"),
                _ => format!("{p}/{{{}}}", items.join(", ")),
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_controls_are_escaped_visibly() {
        assert_eq!(terminal("ok\tline\nnext"), "ok\tline\nnext");
        assert_eq!(terminal("\x1b[8mhidden\x1b[0m"), "\\x1b[8mhidden\\x1b[0m");
        assert_eq!(terminal("a\rb\u{7f}"), "a\\rb\\x7f");
        assert_eq!(terminal("\u{9b}31m \u{202e}txt.exe"), "\\u{9b}31m \\u{202e}txt.exe");
        assert_eq!(terminal("\x1b]8;;http://x\x07link"), "\\x1b]8;;http://x\\x07link");
        assert_eq!(terminal_field("one\ntwo\r\tthree"), "one\\ntwo\\r\\tthree");
        assert!(matches!(terminal("plain ü ✓"), Cow::Borrowed(_)));
    }

    #[test]
    fn markdown_is_inert() {
        let evil = "x |\n# Injected\n<script>alert(1)</script> [a](http://e) **b** `c`";
        let m = markdown(evil);
        assert!(!m.contains('\n'));
        assert!(!m.contains("<script>"));
        assert!(!m.contains(" | "), "{m}");
        assert!(m.contains("# Injected") && !m.starts_with('#') && m.contains("&lt;script&gt;") && m.contains("\\[a\\](http"));
        assert_eq!(markdown("\x1b[2J"), "\\\\x1b\\[2J");
        assert_eq!(markdown("- item"), "\\- item");
        assert_eq!(markdown("12. item"), "12\\. item");
        assert_eq!(markdown("security.v1 - ok: model_unavailable"), "security.v1 - ok: model_unavailable");
        assert_eq!(markdown("1.0.0"), "1.0.0");
        assert_eq!(markdown("-x"), "-x");
        assert_eq!(markdown("## h2"), "\\## h2");
        assert_eq!(markdown("_em_ #tag"), "\\_em\\_ #tag");
        assert_eq!(markdown("# h"), "\\# h");
    }

    #[test]
    fn code_spans_cannot_be_closed_from_inside() {
        assert_eq!(markdown_code("src/a.rs:10"), "`src/a.rs:10`");
        assert_eq!(markdown_code("a`b"), "``a`b``");
        assert_eq!(markdown_code("`x``"), "``` `x`` ```");
        assert_eq!(markdown_code("a\n# h"), "`a # h`");
    }

    #[test]
    fn json_output_escapes_format_controls_and_stays_the_same_value() {
        let v = serde_json::json!({"t": "a\u{202e}b\u{85}c\x1bd"});
        let s = json_pretty(&v);
        assert!(!s.contains('\u{202e}') && !s.contains('\u{85}') && !s.contains('\x1b'), "{s}");
        assert_eq!(serde_json::from_str::<serde_json::Value>(&s).expect("json"), v);
    }

    #[test]
    fn suggestions_only_when_close() {
        assert_eq!(edit_distance("synthesiser", "synthesizer"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(suggest("svc-revew", ["demo", "svc-review"]), Some("svc-review"));
        assert_eq!(suggest("europe/berlin", ["Europe/Bern", "Europe/Berlin"]), Some("Europe/Berlin"));
        assert_eq!(suggest("zzzzzz", ["svc-review", "demo"]), None);
        assert_eq!(suggest("demo", ["demo"]), None);
        assert_eq!(suggest("ab", ["cd"]), None, "short words need distance 1");
        let msg = "unknown field `synthesiser`, expected one of `specialists`, `synthesizer`, `synth_strategy` at line 3 column 1";
        assert_eq!(
            serde_unknown_field(msg),
            Some(("synthesiser".into(), vec!["specialists".into(), "synthesizer".into(), "synth_strategy".into()]))
        );
        assert_eq!(unknown_field_hint(msg).as_deref(), Some("did you mean `synthesizer`?"));
        assert_eq!(unknown_field_hint("unknown field `x`, expected `abc` or `zzz`"), None);
        assert_eq!(unknown_field_hint("unknown field `retries`, expected `retry_max` or `fuel`"), None);
        assert_eq!(
            unknown_field_hint("unknown field `tmeout`, expected `timeout`"),
            Some("did you mean `timeout`?".into())
        );
    }

    #[test]
    fn a_table_wraps_its_last_column_to_the_width_or_prints_it_whole() {
        let rows = vec![vec![
            "echo.v1".to_string(),
            "wasi:cli/environment wasi:cli/stdout wasi:filesystem/preopens lily:runnable/llm".to_string(),
        ]];
        let full = table_lines(&["ID", "IMPORTS"], &rows, None);
        assert_eq!(
            full,
            vec![
                "ID       IMPORTS",
                "echo.v1  wasi:cli/environment wasi:cli/stdout wasi:filesystem/preopens lily:runnable/llm"
            ]
        );
        let wrapped = table_lines(&["ID", "IMPORTS"], &rows, Some(50));
        assert_eq!(
            wrapped,
            vec![
                "ID       IMPORTS",
                "echo.v1  wasi:cli/environment wasi:cli/stdout",
                "         wasi:filesystem/preopens",
                "         lily:runnable/llm",
            ]
        );
        assert!(wrapped.iter().all(|l| l.chars().count() <= 50), "{wrapped:?}");
        assert_eq!(wrap_words("averyveryverylongword x", 5), vec!["averyveryverylongword", "x"]);
    }

    #[test]
    fn interfaces_group_by_package() {
        let names: Vec<String> = ["lily:runnable/types", "wasi:cli/stdout", "wasi:cli/exit", "wasi:io/streams", "bare"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(group_interfaces(&names), "lily:runnable/types wasi:cli/{exit, stdout} wasi:io/streams bare");
    }
}
