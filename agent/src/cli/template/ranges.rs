//! Go's `range` over a map visits the keys in sorted order; gtmpl's visits them in its
//! `HashMap`'s order, which differs from one map to the next. A template such as
//! `{{range $tag, $s := service "web" | byTag}}` would then render differently each time with
//! unchanged data, rewriting the file and re-running its command for nothing.
//!
//! [`sort_map_ranges`] rewrites each `range` action so that it iterates a list in Go's order:
//!
//! - `{{range PIPE}}` and `{{range $v := PIPE}}` range over `legateRangeValues (PIPE)`;
//! - `{{range $k, $v := PIPE}}` becomes
//!   `{{$legateRangeN := PIPE}}{{range $legateIndexN, $v := legateRangeValues $legateRangeN}}{{$k := index (legateRangeKeys $legateRangeN) $legateIndexN}}`.
//!
//! Lists are unchanged by both functions (keys are the indices), and ranging over an empty
//! value visits nothing, as in Go. Trim markers (`{{-`, `-}}`) stay on the outer ends, and no
//! line break is added or removed, so error positions still point into the user's text.

/// The function that lists what `range` visits.
pub const VALUES_FN: &str = "legateRangeValues";
/// The function that lists the keys `range` binds.
pub const KEYS_FN: &str = "legateRangeKeys";

/// Rewrites every `range` action of a template's text (see the module docs); text that is not
/// understood is left as it is.
pub fn sort_map_ranges(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 64);
    let mut rest = text;
    let mut counter = 0usize;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        let Some(len) = action_len(after) else {
            // Unterminated: leave it to the parser to report.
            out.push_str(&rest[open..]);
            return out;
        };
        let body = &after[..len];
        match rewrite_range(body, &mut counter) {
            Some(rewritten) => out.push_str(&rewritten),
            None => {
                out.push_str("{{");
                out.push_str(body);
                out.push_str("}}");
            }
        }
        rest = &after[len + 2..];
    }
    out.push_str(rest);
    out
}

/// Where each action (`{{…}}`) of a template's text starts and ends (byte offsets, the end
/// just past `}}`); an unterminated last action ends with the text.
pub fn actions(text: &str) -> Vec<(usize, usize)> {
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(open) = text[from..].find("{{").map(|i| from + i) {
        match action_len(&text[open + 2..]) {
            Some(len) => {
                let end = open + 2 + len + 2;
                found.push((open, end));
                from = end;
            }
            None => {
                found.push((open, text.len()));
                break;
            }
        }
    }
    found
}

/// The length of an action's body up to its closing `}}`, skipping quoted strings, raw
/// strings, character literals and comments.
fn action_len(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'}' if bytes.get(i + 1) == Some(&b'}') => return Some(i),
            b'"' | b'\'' => {
                let quote = bytes[i];
                i += 1;
                while i < bytes.len() && bytes[i] != quote {
                    if bytes[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'`' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'`' {
                    i += 1;
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                let end = s[i + 2..].find("*/")?;
                i += 2 + end + 1;
            }
            _ => {}
        }
        i += 1;
    }
    None
}

fn is_var(s: &str) -> bool {
    s.strip_prefix('$').is_some_and(|n| n.chars().all(|c| c.is_alphanumeric() || c == '_'))
}

/// The replacement of `{{body}}` when it is a `range` action.
fn rewrite_range(body: &str, counter: &mut usize) -> Option<String> {
    let left_trim = body.starts_with('-') && body[1..].starts_with(|c: char| c.is_ascii_whitespace());
    let inner = if left_trim { &body[1..] } else { body };
    let right_trim = inner.ends_with('-') && inner[..inner.len() - 1].ends_with(|c: char| c.is_ascii_whitespace());
    let inner = if right_trim { &inner[..inner.len() - 1] } else { inner };
    // Leading and trailing space of the action, kept so line breaks stay where they were.
    let lead = &inner[..inner.len() - inner.trim_start().len()];
    let trail = &inner[inner.trim_end().len()..];
    let inner = inner.trim();
    let args = inner.strip_prefix("range")?;
    if !args.starts_with(|c: char| c.is_ascii_whitespace()) {
        return None;
    }
    let args = args.trim_start();
    let (open, close) = (if left_trim { "{{-" } else { "{{" }, if right_trim { "-}}" } else { "}}" });

    // Declarations: `$v :=` or `$k, $v :=`; an assignment (`=`) is left alone.
    let (vars, pipe) = match args.split_once(":=") {
        Some((decl, pipe)) if decl.split(',').all(|v| is_var(v.trim())) => {
            (decl.split(',').map(str::trim).collect::<Vec<_>>(), pipe.trim())
        }
        _ => (Vec::new(), args),
    };
    if pipe.is_empty() || pipe.starts_with('=') {
        return None;
    }
    let rewritten = match vars.as_slice() {
        [] => format!("range {VALUES_FN} ({pipe}){trail}{close}"),
        [v] => format!("range {v} := {VALUES_FN} ({pipe}){trail}{close}"),
        [k, v] => {
            *counter += 1;
            let (list, index) = (format!("$legateRange{counter}"), format!("$legateIndex{counter}"));
            format!(
                "{list} := {pipe}}}}}{{{{range {index}, {v} := {VALUES_FN} {list}}}}}\
                 {{{{{k} := index ({KEYS_FN} {list}) {index}{trail}{close}"
            )
        }
        _ => return None,
    };
    // Line breaks dropped between the words go back at the start of the action.
    let kept = lead.matches('\n').count() + rewritten.matches('\n').count();
    let dropped = body.matches('\n').count().saturating_sub(kept);
    Some(format!("{open}{lead}{}{rewritten}", "\n".repeat(dropped)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_rewritten_and_everything_else_is_kept() {
        assert_eq!(sort_map_ranges("a {{.X}} b"), "a {{.X}} b");
        assert_eq!(sort_map_ranges("{{range .L}}x{{end}}"), "{{range legateRangeValues (.L)}}x{{end}}");
        assert_eq!(
            sort_map_ranges("{{- range $s := service \"web\" -}}"),
            "{{- range $s := legateRangeValues (service \"web\") -}}"
        );
        assert_eq!(
            sort_map_ranges("{{range $k, $v := byTag .}}"),
            "{{$legateRange1 := byTag .}}{{range $legateIndex1, $v := legateRangeValues $legateRange1}}\
             {{$k := index (legateRangeKeys $legateRange1) $legateIndex1}}"
        );
        assert_eq!(sort_map_ranges("{{rangeX}}{{ranged .}}"), "{{rangeX}}{{ranged .}}", "not the keyword");
    }

    #[test]
    fn actions_are_found_with_their_offsets() {
        assert_eq!(actions("a{{x}}b{{\"}}\"}}"), vec![(1, 6), (7, 15)]);
        assert_eq!(actions("{{x}} {{y"), vec![(0, 5), (6, 9)], "unterminated: to the end");
        assert_eq!(actions("plain"), vec![]);
    }

    #[test]
    fn strings_and_comments_may_hold_braces_and_line_breaks_are_kept() {
        let text = "{{/* }} range */}}{{range service \"a}}b\"}}\n{{\"{{range x}}\"}}";
        assert_eq!(
            sort_map_ranges(text),
            "{{/* }} range */}}{{range legateRangeValues (service \"a}}b\")}}\n{{\"{{range x}}\"}}"
        );
        let multi = "{{range\n  $i, $e := .L\n}}";
        assert_eq!(sort_map_ranges(multi).matches('\n').count(), 2);
        assert_eq!(sort_map_ranges("{{range .L"), "{{range .L", "unterminated: left to the parser");
    }
}
