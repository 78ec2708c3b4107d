//! Parse errors that point at the right line.
//!
//! gtmpl 0.7's lexer counts an extra line for every text and delimiter item it emits, so the
//! line in its `template: name:LINE:message` grows with the number of actions before the error
//! rather than with the line breaks. The line is found again here: parsing stops at the first
//! error, so the shortest prefix of the text (cut after an action) that fails with the same
//! message ends with the faulty action. Prefixes only fail with the same message from that
//! action on (earlier ones parse, or fail at their end for an unclosed block), so the search
//! halves. A message about the end of the text (an unclosed block) points at its last line.

use gtmpl::error::ParseError;
use gtmpl::Template;

use super::ranges;

/// Parses `text` as `new()` would, and turns the error into `name:line: message`.
pub fn parse(name: &str, text: &str, new: &dyn Fn() -> Template) -> Result<Template, String> {
    let mut template = new();
    match template.parse(text) {
        Ok(()) => Ok(template),
        Err(e) => Err(describe(name, text, e, new)),
    }
}

fn message(e: &ParseError) -> String {
    match e {
        ParseError::WithContext(_, msg) => msg.clone(),
        other => other.to_string(),
    }
}

fn about_the_end(msg: &str) -> bool {
    msg.contains("EOF") || msg.starts_with("unexpected end")
}

fn line_at(text: &str, offset: usize) -> usize {
    1 + text[..offset].matches('\n').count()
}

fn describe(name: &str, text: &str, e: ParseError, new: &dyn Fn() -> Template) -> String {
    let msg = message(&e);
    let line = if about_the_end(&msg) {
        line_at(text, text.trim_end().len())
    } else {
        let fails_here = |end: usize| match new().parse(&text[..end]) {
            Ok(()) => false,
            Err(e) => message(&e) == msg,
        };
        let actions = ranges::actions(text);
        // The first action whose prefix fails with this message.
        let (mut low, mut high) = (0, actions.len());
        while low < high {
            let mid = (low + high) / 2;
            if fails_here(actions[mid].1) {
                high = mid;
            } else {
                low = mid + 1;
            }
        }
        match actions.get(low) {
            Some(&(start, _)) => line_at(text, start),
            None => return format!("{name}: {msg}"),
        }
    };
    format!("{name}:{line}: {msg}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(text: &str) -> String {
        let new = || {
            let mut t = Template::with_name("t");
            t.add_funcs(&super::super::funcs::all());
            t
        };
        match parse("t.ctmpl", text, &new) {
            Ok(_) => panic!("{text:?} parses"),
            Err(e) => e,
        }
    }

    #[test]
    fn the_line_is_the_faulty_actions_line() {
        assert_eq!(error("a\n{{if .X}}\n{{range}}\n{{end}}\n"), "t.ctmpl:3: missing value for range");
        assert_eq!(error("{{.A}} {{.B}} {{.C}}\n\n{{nosuch 1}}"), "t.ctmpl:3: function nosuch not defined");
        assert!(error("one\ntwo {{.A}} {{\"x}}\n").starts_with("t.ctmpl:2: "), "a lexer error");
    }

    #[test]
    fn an_unclosed_block_points_at_the_end() {
        let e = error("{{if .A}}{{end}}\n{{range .B}}\nx\n");
        assert!(e.starts_with("t.ctmpl:3: "), "{e}");
    }
}
