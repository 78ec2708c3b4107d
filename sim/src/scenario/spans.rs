//! Where each key of a scenario file sits: a map from key path (`nemesis.schedule[1].at`) to the
//! byte spans of the key and its value, built once from the parsed document. It lets every error
//! name the line, the column and the key path, whether serde found the problem (which reports a
//! byte span only) or the semantic checks did (which know the key path only).

use std::collections::BTreeMap;
use std::ops::Range;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// A 1-based line and column (columns count characters, not bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    pub line: usize,
    pub column: usize,
}

impl Location {
    /// The line and column of byte `offset` of `text`.
    pub fn of_offset(text: &str, offset: usize) -> Location {
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &text[..offset];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        Location { line: before.matches('\n').count() + 1, column: before[line_start..].chars().count() + 1 }
    }
}

#[derive(Clone, Debug)]
struct Node {
    /// The key's span; none for array elements, which have no key.
    key: Option<Range<usize>>,
    /// The value's span. A table opened by a `[header]` spans the header only.
    value: Range<usize>,
}

/// Key paths of a document and their spans.
#[derive(Clone, Debug, Default)]
pub struct SpanIndex {
    nodes: BTreeMap<String, Node>,
}

impl SpanIndex {
    /// Indexes every key and array element of `root`. Walks with an explicit stack: the depth
    /// of a document is the author's choice, not ours.
    pub fn new(root: &Spanned<DeTable<'_>>) -> SpanIndex {
        let mut nodes = BTreeMap::new();
        let mut stack: Vec<(String, &DeValue<'_>)> = Vec::new();
        push_table(&mut nodes, &mut stack, "", root.get_ref());
        while let Some((path, value)) = stack.pop() {
            match value {
                DeValue::Table(table) => push_table(&mut nodes, &mut stack, &path, table),
                DeValue::Array(array) => {
                    for (i, element) in array.iter().enumerate() {
                        let element_path = format!("{path}[{i}]");
                        nodes.insert(element_path.clone(), Node { key: None, value: element.span() });
                        stack.push((element_path, element.get_ref()));
                    }
                }
                _ => {}
            }
        }
        SpanIndex { nodes }
    }

    /// The span to point at for `path`: its value, or else the nearest enclosing key that the
    /// file has (a missing key is reported where its table is).
    pub fn span_of(&self, path: &str) -> Option<Range<usize>> {
        let mut path = path;
        loop {
            if let Some(node) = self.nodes.get(path) {
                return Some(node.value.clone());
            }
            path = parent(path)?;
        }
    }

    /// The key path at byte `offset`: the smallest key or value span containing it. `None`
    /// means the document itself (serde reports a problem of the root table at offset 0 with
    /// an empty span).
    pub fn path_at(&self, span: &Range<usize>) -> Option<String> {
        if span.is_empty() && span.start == 0 {
            return None;
        }
        let offset = span.start;
        let mut best: Option<(&String, usize)> = None;
        for (path, node) in &self.nodes {
            for candidate in node.key.iter().chain(std::iter::once(&node.value)) {
                let contains = candidate.contains(&offset) || (candidate.is_empty() && candidate.start == offset);
                let size = candidate.len();
                // Smaller wins; on a tie the longer (deeper) path wins. BTreeMap order makes the
                // choice deterministic.
                let better = match best {
                    None => true,
                    Some((best_path, best_size)) => {
                        size < best_size || (size == best_size && path.len() > best_path.len())
                    }
                };
                if contains && better {
                    best = Some((path, size));
                }
            }
        }
        best.map(|(path, _)| path.clone())
    }
}

fn push_table<'a>(
    nodes: &mut BTreeMap<String, Node>,
    stack: &mut Vec<(String, &'a DeValue<'a>)>,
    prefix: &str,
    table: &'a DeTable<'a>,
) {
    for (key, value) in table.iter() {
        let path = join(prefix, key.get_ref());
        nodes.insert(path.clone(), Node { key: Some(key.span()), value: value.span() });
        stack.push((path, value.get_ref()));
    }
}

/// `prefix.key`, quoting a key that is not a bare TOML key.
pub fn join(prefix: &str, key: &str) -> String {
    let bare = !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    let key = if bare { key.to_string() } else { format!("{key:?}") };
    if prefix.is_empty() {
        key
    } else {
        format!("{prefix}.{key}")
    }
}

/// The enclosing path: `a.b[2].c` → `a.b[2]` → `a.b` → `a` → none.
fn parent(path: &str) -> Option<&str> {
    if path.is_empty() {
        return None;
    }
    let cut = path.rfind(['.', '[']).unwrap_or(0);
    Some(&path[..cut])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parent_walks_up_through_tables_and_arrays() {
        assert_eq!(parent("nemesis.schedule[2].at"), Some("nemesis.schedule[2]"));
        assert_eq!(parent("nemesis.schedule[2]"), Some("nemesis.schedule"));
        assert_eq!(parent("nemesis"), Some(""));
        assert_eq!(parent(""), None);
    }

    #[test]
    fn location_counts_lines_and_characters() {
        let text = "a = 1\nµb = 2\n";
        assert_eq!(Location::of_offset(text, 0), Location { line: 1, column: 1 });
        assert_eq!(Location::of_offset(text, 6), Location { line: 2, column: 1 });
        assert_eq!(Location::of_offset(text, 8), Location { line: 2, column: 2 });
    }
}
