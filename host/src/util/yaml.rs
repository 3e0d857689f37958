//! The guard every YAML document (specs, policies) passes before parsing.

/// Flow collections (`[` / `{`) deeper than this are refused before a YAML
/// document reaches the parser: the parser's own depth limit comes only after
/// scanning, which takes time quadratic in the depth (seconds for 100 KB).
pub const MAX_YAML_DEPTH: usize = 128;

/// Whether `text` nests flow collections more than `max` deep, counting `[`
/// and `{` outside quotes and comments (quotes are tracked per line).
pub fn yaml_nesting_exceeds(text: &str, max: usize) -> bool {
    let mut depth = 0usize;
    for line in text.lines() {
        let (mut in_single, mut in_double, mut prev) = (false, false, ' ');
        for c in line.chars() {
            match c {
                '#' if !in_single && !in_double && prev.is_whitespace() => break,
                '\'' if !in_double => in_single = !in_single,
                '"' if !in_single => in_double = !in_double,
                '[' | '{' if !in_single && !in_double => {
                    depth += 1;
                    if depth > max {
                        return true;
                    }
                }
                ']' | '}' if !in_single && !in_double => depth = depth.saturating_sub(1),
                _ => {}
            }
            prev = c;
        }
    }
    false
}
