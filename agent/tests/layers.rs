//! The layer map of `src/lib.rs`, checked: reads `src/**/*.rs`, builds the import graph
//! between the crate's top-level modules (`crate::…` paths, `use crate::{…}` groups and
//! `super::…` paths; `#[cfg(test)] mod … { … }` blocks and files named `tests.rs` are
//! left out) and asserts that imports only go where the layers allow.
//!
//! `cargo test --test layers -- --nocapture` prints the graph, one module a line.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Where one edge was seen first: file and line.
type Seen = (PathBuf, usize);
/// from → to → where.
type Graph = BTreeMap<String, BTreeMap<String, Seen>>;

const FOUNDATIONS: [&str; 6] = ["backoff", "time", "error", "exit", "output", "logging"];
const SEAMS: [&str; 5] = ["imds", "queue", "store", "process", "aws"];

/// The layer of a top-level module, higher is further up (see `src/lib.rs`).
fn layer(module: &str) -> Option<u8> {
    match module {
        "cli" => Some(6),
        "operator" => Some(5),
        "instance" => Some(4),
        "boot" => Some(3),
        m if SEAMS.contains(&m) => Some(2),
        "contract" => Some(1),
        m if FOUNDATIONS.contains(&m) => Some(0),
        _ => None,
    }
}

/// Source text with comments removed and string and char literals emptied; newlines
/// are kept, so line numbers stay right.
fn strip(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    // Copies the newlines of b[from..to] to out.
    let newlines = |out: &mut String, from: usize, to: usize| {
        for _ in b[from..to].iter().filter(|&&c| c == b'\n') {
            out.push('\n');
        }
    };
    while i < b.len() {
        let rest = &b[i..];
        if rest.starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if rest.starts_with(b"/*") {
            let (start, mut depth) = (i, 0usize);
            while i < b.len() {
                if b[i..].starts_with(b"/*") {
                    depth += 1;
                    i += 2;
                } else if b[i..].starts_with(b"*/") {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            newlines(&mut out, start, i);
        } else if (rest.starts_with(b"r#") || rest.starts_with(b"r\""))
            && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_'))
        {
            let start = i;
            i += 1;
            let hashes = b[i..].iter().take_while(|&&c| c == b'#').count();
            i += hashes;
            if b.get(i) != Some(&b'"') {
                // `r#ident`, a raw identifier.
                out.push_str(&src[start..i]);
                continue;
            }
            i += 1;
            let close: Vec<u8> = std::iter::once(b'"')
                .chain(std::iter::repeat_n(b'#', hashes))
                .collect();
            while i < b.len() && !b[i..].starts_with(&close) {
                i += 1;
            }
            i += close.len();
            newlines(&mut out, start, i.min(b.len()));
            out.push_str("\"\"");
        } else if b[i] == b'"' {
            let start = i;
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            newlines(&mut out, start, i.min(b.len()));
            out.push_str("\"\"");
        } else if b[i] == b'\'' {
            // A char literal ('x', '\n', '\'') or a lifetime ('a).
            let close = if b.get(i + 1) == Some(&b'\\') {
                b[i + 2..]
                    .iter()
                    .position(|&c| c == b'\'')
                    .map(|p| i + 3 + p)
            } else {
                let len = src[i + 1..].chars().next().map_or(1, char::len_utf8);
                (b.get(i + 1 + len) == Some(&b'\'')).then_some(i + 2 + len)
            };
            match close {
                Some(end) => {
                    out.push_str("' '");
                    i = end;
                }
                None => {
                    out.push('\'');
                    i += 1;
                }
            }
        } else {
            let len = src[i..].chars().next().map_or(1, char::len_utf8);
            out.push_str(&src[i..i + len]);
            i += len;
        }
    }
    out
}

/// `text` without its `#[cfg(test)] mod name { … }` blocks (newlines kept).
fn without_test_modules(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("#[cfg(test)]") {
        let after = &rest[at + "#[cfg(test)]".len()..];
        let trimmed = after.trim_start();
        let is_inline_mod = trimmed
            .strip_prefix("pub(crate) ")
            .or_else(|| trimmed.strip_prefix("pub "))
            .unwrap_or(trimmed)
            .strip_prefix("mod ")
            .and_then(|m| {
                let name_end = m.find(|c: char| !(c.is_alphanumeric() || c == '_'))?;
                m[name_end..].trim_start().starts_with('{').then_some(())
            })
            .is_some();
        out.push_str(&rest[..at]);
        if !is_inline_mod {
            out.push_str("#[cfg(test)]");
            rest = after;
            continue;
        }
        let open = after.find('{').expect("an inline mod has a brace");
        let mut depth = 0usize;
        let mut end = after.len();
        for (k, c) in after[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = open + k + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        for _ in after[..end].matches('\n') {
            out.push('\n');
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// The module a file under `src/` is: `queue/open.rs` → `queue::open`,
/// `queue/mod.rs` → `queue`, `lib.rs` → `` (the root).
fn module_of(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let file = parts.pop().expect("a file name");
    let stem = file.trim_end_matches(".rs");
    if stem != "mod" && stem != "lib" {
        parts.push(stem.to_string());
    }
    parts
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The identifier at the start of `s` (after blanks), and what follows it.
fn ident(s: &str) -> Option<(&str, &str)> {
    let s = s.trim_start();
    let end = s.find(|c: char| !is_ident(c)).unwrap_or(s.len());
    (end > 0).then(|| (&s[..end], &s[end..]))
}

/// `s` starts (after blanks) with `::`: what follows it.
fn colons(s: &str) -> Option<&str> {
    s.trim_start().strip_prefix("::")
}

/// The first segments of the paths in a `{ … }` group starting at `s` (just after the
/// `{`), e.g. `a::x, b, c::{d, e}}` → a, b, c. `self` is left out.
fn group_heads(s: &str) -> Vec<String> {
    let mut heads = Vec::new();
    let mut depth = 0usize;
    let mut at_item_start = true;
    let mut i = 0;
    while i < s.len() {
        let c = s[i..].chars().next().expect("in bounds");
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => at_item_start = true,
            c if is_ident(c) && at_item_start && depth == 0 => {
                let (name, _) = ident(&s[i..]).expect("an identifier");
                if name != "self" {
                    heads.push(name.to_string());
                }
                at_item_start = false;
                i += name.len();
                continue;
            }
            _ => {}
        }
        i += c.len_utf8();
    }
    heads
}

/// The top-level modules `text` (the stripped source of module `here`) refers to, each
/// with the line it is first seen on.
fn references(text: &str, here: &[String]) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    let line_of = |at: usize| text[..at].matches('\n').count() + 1;
    let starts_path =
        |at: usize| at == 0 || !text[..at].ends_with(|c: char| is_ident(c) || c == '$');
    for (at, _) in text.match_indices("crate") {
        if !starts_path(at) {
            continue;
        }
        let Some(after) = colons(&text[at + "crate".len()..]) else {
            continue;
        };
        if let Some(group) = after.trim_start().strip_prefix('{') {
            out.extend(group_heads(group).into_iter().map(|h| (h, line_of(at))));
        } else if let Some((name, _)) = ident(after) {
            out.push((name.to_string(), line_of(at)));
        }
    }
    for (at, _) in text.match_indices("super") {
        if !starts_path(at) {
            continue;
        }
        // super::super::x from a::b::c is x.
        let mut module = here.to_vec();
        let mut rest = &text[at..];
        while let Some(r) = rest.strip_prefix("super").and_then(colons) {
            module.pop();
            rest = r.trim_start();
        }
        if let Some(top) = module.first() {
            out.push((top.clone(), line_of(at)));
        } else if let Some(group) = rest.strip_prefix('{') {
            out.extend(group_heads(group).into_iter().map(|h| (h, line_of(at))));
        } else if let Some((name, _)) = ident(rest) {
            out.push((name.to_string(), line_of(at)));
        }
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The import graph between the top-level modules of the library.
fn graph() -> (Graph, BTreeSet<String>) {
    let src = src();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut graph = Graph::new();
    let mut modules = BTreeSet::new();
    // `#[macro_export]` macros live at the crate root (`crate::outln!`): an import of
    // one is an import of the module that defines it.
    let mut macros = BTreeMap::new();
    for path in &files {
        let rel = path.strip_prefix(&src).expect("under src");
        let Some(top) = module_of(rel).first().cloned() else {
            continue;
        };
        let text = strip(&std::fs::read_to_string(path).expect("read a source file"));
        for (at, _) in text.match_indices("macro_rules!") {
            if let Some((name, _)) = ident(&text[at + "macro_rules!".len()..]) {
                macros.insert(name.to_string(), top.clone());
            }
        }
    }
    for path in files {
        let rel = path.strip_prefix(&src).expect("under src");
        if rel == Path::new("main.rs") || rel.file_name().is_some_and(|f| f == "tests.rs") {
            continue;
        }
        let module = module_of(rel);
        let Some(top) = module.first().cloned() else {
            continue; // lib.rs: only declares the modules
        };
        modules.insert(top.clone());
        let text = std::fs::read_to_string(&path).expect("read a source file");
        let text = without_test_modules(&strip(&text));
        for (to, line) in references(&text, &module) {
            let to = macros.get(&to).cloned().unwrap_or(to);
            if to == top {
                continue;
            }
            graph
                .entry(top.clone())
                .or_default()
                .entry(to)
                .or_insert_with(|| (rel.to_path_buf(), line));
        }
    }
    for m in &modules {
        graph.entry(m.clone()).or_default();
    }
    (graph, modules)
}

fn edge_line(from: &str, to: &str, (file, line): &Seen) -> String {
    format!("  {from} -> {to}  (src/{}:{line})", file.display())
}

/// Edges that take part in a cycle: `a -> b` where `b` reaches `a`.
fn cycle_edges(graph: &Graph) -> Vec<String> {
    let reaches = |from: &str, to: &str| {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.to_string()];
        while let Some(m) = stack.pop() {
            if m == to {
                return true;
            }
            if seen.insert(m.clone()) {
                stack.extend(graph.get(&m).into_iter().flat_map(|e| e.keys().cloned()));
            }
        }
        false
    };
    let mut out = Vec::new();
    for (from, edges) in graph {
        for (to, seen) in edges {
            if reaches(to, from) {
                out.push(edge_line(from, to, seen));
            }
        }
    }
    out
}

/// Every edge for which `bad(from, to)` holds.
fn violations(graph: &Graph, bad: impl Fn(&str, &str) -> bool) -> Vec<String> {
    graph
        .iter()
        .flat_map(|(from, edges)| edges.iter().map(move |(to, seen)| (from, to, seen)))
        .filter(|(from, to, _)| bad(from, to))
        .map(|(from, to, seen)| edge_line(from, to, seen))
        .collect()
}

fn print_graph(graph: &Graph) {
    println!("module graph (what each top-level module imports):");
    for (from, edges) in graph {
        let to: Vec<&str> = edges.keys().map(String::as_str).collect();
        println!("  {from:<9} -> {}", to.join(", "));
    }
}

#[test]
fn imports_follow_the_layers() {
    let (graph, modules) = graph();
    print_graph(&graph);
    let lower = ["instance", "boot", "contract"]
        .into_iter()
        .chain(SEAMS)
        .collect::<BTreeSet<_>>();
    let contract_may = ["backoff", "time", "error", "exit"];
    let rules: Vec<(&str, Vec<String>)> = vec![
        ("import cycles between modules", cycle_edges(&graph)),
        (
            "only cli imports cli",
            violations(&graph, |_, to| to == "cli"),
        ),
        (
            "instance, boot, the seams and contract do not import operator",
            violations(&graph, |from, to| lower.contains(from) && to == "operator"),
        ),
        (
            "contract imports only foundations (backoff, time, error, exit)",
            violations(&graph, |from, to| {
                from == "contract" && !contract_may.contains(&to)
            }),
        ),
        (
            "imports only go downward (src/lib.rs's layers)",
            violations(&graph, |from, to| match (layer(from), layer(to)) {
                (Some(a), Some(b)) => a < b,
                _ => false,
            }),
        ),
        (
            "every module is in src/lib.rs's layer map",
            modules
                .iter()
                .filter(|m| layer(m).is_none())
                .map(|m| format!("  {m}"))
                .collect(),
        ),
    ];
    let failed: Vec<String> = rules
        .into_iter()
        .filter(|(_, bad)| !bad.is_empty())
        .map(|(rule, bad)| format!("{rule}:\n{}", bad.join("\n")))
        .collect();
    assert!(
        failed.is_empty(),
        "layer rules broken:\n{}",
        failed.join("\n")
    );
}

/// `main.rs` declares nothing and calls the library: no `mod`, no `crate::`, one `fn`.
#[test]
fn main_only_calls_the_library() {
    let path = src().join("main.rs");
    let text = strip(&std::fs::read_to_string(&path).expect("read main.rs"));
    let words: Vec<&str> = text
        .split(|c: char| !is_ident(c))
        .filter(|w| !w.is_empty())
        .collect();
    let count = |w: &str| words.iter().filter(|x| **x == w).count();
    assert_eq!(count("mod"), 0, "main.rs declares a module:\n{text}");
    assert_eq!(count("crate"), 0, "main.rs has its own items:\n{text}");
    assert_eq!(count("fn"), 1, "main.rs has more than main:\n{text}");
    assert!(
        text.contains("rangefleet::cli::main()"),
        "main.rs does not call rangefleet::cli::main():\n{text}"
    );
}

/// The parser on small inputs, so that a rule that passes is not passing on nothing.
#[test]
fn the_parser_finds_every_form() {
    let src = r#"
        use crate::queue::{Lease, Queue};
        use crate::{store::Store, contract::{job, range}, self as me};
        use super::super::boot::Identity;
        use super::sibling;
        // crate::cli in a comment
        let s = "crate::operator in a string";
        let c = '"';
        fn f() -> crate::time::Now { crate :: exit :: OK }
        #[cfg(test)]
        mod tests { use crate::cli; }
    "#;
    let text = without_test_modules(&strip(src));
    let mut got: Vec<String> = references(&text, &["instance".into(), "worker".into()])
        .into_iter()
        .map(|(m, _)| m)
        .collect();
    got.sort();
    got.dedup();
    assert_eq!(
        got,
        ["boot", "contract", "exit", "instance", "queue", "store", "time"]
    );
    let (graph, _) = graph();
    assert!(
        graph["operator"].contains_key("queue"),
        "the real graph is empty: {graph:?}"
    );
}
