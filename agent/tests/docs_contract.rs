//! The contract lives in `docs/`: every config key the parser accepts is in
//! docs/config.md's key table (and nothing else is), and nothing in the repository cites
//! the outside brief it came from.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use rangefleet::boot::{config, userdata};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Dotted paths of every key in `v`, parents included; `tags` is a free mapping, so
/// only its own name counts.
fn key_paths(prefix: &str, v: &serde_json::Value, out: &mut BTreeSet<String>) {
    if let serde_json::Value::Object(m) = v {
        for (k, child) in m {
            let path = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            out.insert(path.clone());
            if path != "tags" {
                key_paths(&path, child, out);
            }
        }
    }
}

/// The first column of the first table in docs/config.md whose header starts `| key |`.
fn documented_keys() -> BTreeSet<String> {
    let text = std::fs::read_to_string(repo().join("docs/config.md")).unwrap();
    let mut lines = text.lines().skip_while(|l| !l.starts_with("| key |"));
    lines.next().expect("docs/config.md has a `| key |` table");
    lines
        .skip(1) // the |---| row
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            let cell = l.split('|').nth(1).unwrap().trim();
            cell.trim_matches('`').to_string()
        })
        .collect()
}

#[test]
fn docs_config_md_lists_exactly_the_keys_the_parser_accepts() {
    // Every key set, so that every key the parser knows appears in its report.
    let yaml = r#"
queue: sqlite:///var/lib/rangefleet/q.db
inputs: ["file:///data/"]
results: file:///results/
concurrency: 4
lease_seconds: 300
tags: {team: data}
spot: {poll_seconds: 5, on_rebalance: drain, drain_margin_seconds: 20}
processors:
  exec: {argv: ["/bin/cat"], timeout_seconds: 60, max_output_bytes: 1024}
publish_tags: false
"#;
    let doc = userdata::decode(yaml.as_bytes()).expect("decodes");
    let parsed = config::parse(&doc).expect("a full config parses");
    let mut parser = BTreeSet::new();
    key_paths("", &parsed.to_json(Some(2)), &mut parser);
    let documented = documented_keys();
    let undocumented: Vec<_> = parser.difference(&documented).collect();
    let unknown: Vec<_> = documented.difference(&parser).collect();
    assert!(
        undocumented.is_empty() && unknown.is_empty(),
        "keys the parser accepts but docs/config.md lacks: {undocumented:?}; \
         keys docs/config.md lists but the parser does not report: {unknown:?}"
    );
}

#[test]
fn no_file_cites_the_outside_brief() {
    let out = std::process::Command::new("git")
        .args(["grep", "-n", "-I", "DESIGN", "--", "."])
        .current_dir(repo())
        .output()
        .expect("git runs");
    let hits = String::from_utf8_lossy(&out.stdout);
    // This file names the word it looks for.
    let hits: Vec<&str> = hits
        .lines()
        .filter(|l| !l.starts_with("agent/tests/docs_contract.rs"))
        .collect();
    assert!(hits.is_empty(), "cite docs/ instead:\n{}", hits.join("\n"));
}
