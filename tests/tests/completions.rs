//! `rangefleet completions` and `rangefleet man`: the bash script loads in bash and
//! completes subcommands and flags; the man page renders with `man -l` and names every
//! subcommand `rangefleet --help` lists. bash and man (man-db) must be installed:
//! `scripts/test` installs them; a missing tool fails the test.

use std::process::Command;

use rangefleet_tests::{rangefleet, TempDir};

/// The subcommands `rangefleet --help` lists under "Commands:" (without `help`).
fn subcommands() -> Vec<String> {
    let out = rangefleet().arg("--help").output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let help = String::from_utf8(out.stdout).unwrap();
    let names: Vec<String> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        // A long description wraps onto lines indented further.
        .filter(|l| !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| *n != "help")
        .map(str::to_string)
        .collect();
    assert!(names.len() >= 12, "too few subcommands in --help: {help}");
    assert!(names.iter().any(|n| n == "completions") && names.iter().any(|n| n == "man"));
    names
}

fn tool(name: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .unwrap();
    assert!(
        found.status.success(),
        "{name} is not installed: scripts/test installs it (apt-get install bash man-db groff-base)"
    );
}

/// What bash's completion function offers for the words `line` (the last one is the
/// one being completed), after sourcing `rangefleet completions bash`.
fn complete(script: &std::path::Path, words: &[&str]) -> Vec<String> {
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let prog = format!(
        "source '{}' || exit 9\n\
         complete -p rangefleet >/dev/null || exit 8\n\
         COMP_WORDS=({})\n\
         COMP_CWORD={}\n\
         COMP_LINE=\"${{COMP_WORDS[*]}}\"\n\
         COMP_POINT=${{#COMP_LINE}}\n\
         _rangefleet rangefleet \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"\n\
         printf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
        script.display(),
        quoted.join(" "),
        words.len() - 1
    );
    let out = Command::new("bash")
        .args(["--norc", "-c", &prog])
        .output()
        .unwrap();
    assert!(out.status.success(), "bash: {out:?}");
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

#[test]
fn bash_completion_loads_and_completes_subcommands_and_flags() {
    tool("bash");
    let dir = TempDir::new("completions");
    let out = rangefleet().args(["completions", "bash"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let script = dir.0.join("rangefleet.bash");
    std::fs::write(&script, &out.stdout).unwrap();

    assert_eq!(complete(&script, &["rangefleet", "sta"]), ["status"]);
    let all = complete(&script, &["rangefleet", ""]);
    for name in subcommands() {
        assert!(all.contains(&name), "{name} not offered: {all:?}");
    }
    let flags = complete(&script, &["rangefleet", "status", "--fle"]);
    assert_eq!(flags, ["--fleet", "--fleet-tag"]);
    let shells = complete(&script, &["rangefleet", "completions", ""]);
    for s in ["bash", "zsh", "fish"] {
        assert!(shells.iter().any(|x| x == s), "{s} not offered: {shells:?}");
    }
    // Nothing for a word no command starts with.
    assert!(complete(&script, &["rangefleet", "zzz"]).is_empty());
}

#[test]
fn zsh_and_fish_scripts_name_every_subcommand() {
    let names = subcommands();
    for shell in ["zsh", "fish"] {
        let out = rangefleet().args(["completions", shell]).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        let text = String::from_utf8(out.stdout).unwrap();
        for name in &names {
            assert!(text.contains(name.as_str()), "{shell}: {name} missing");
        }
    }
    let out = rangefleet().args(["completions", "tcsh"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

/// `man -l FILE` as plain text (no terminal, no pager, wide lines), each run of
/// whitespace one space (groff justifies lines by widening spaces).
fn render(page: &std::path::Path) -> String {
    let out = Command::new("man")
        .arg("-l")
        .arg(page)
        .env("MANPAGER", "cat")
        .env("PAGER", "cat")
        .env("MANWIDTH", "400")
        .env("MAN_KEEP_FORMATTING", "")
        .output()
        .unwrap();
    assert!(out.status.success(), "man -l {}: {out:?}", page.display());
    let err = String::from_utf8_lossy(&out.stderr);
    // groff's warnings (a bad macro, a bad escape) mean the roff is wrong.
    assert!(
        err.trim().is_empty(),
        "man -l {} warned: {err}",
        page.display()
    );
    let text = String::from_utf8(out.stdout).unwrap();
    // Without a terminal man-db still may overstrike bold (x\bx): drop that.
    let mut plain = String::new();
    for c in text.chars() {
        if c == '\u{8}' {
            plain.pop();
        } else {
            plain.push(c);
        }
    }
    plain.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[test]
fn man_page_renders_and_names_every_subcommand() {
    tool("man");
    tool("groff");
    let dir = TempDir::new("man");
    let out = rangefleet().arg("man").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let page = dir.0.join("rangefleet.1");
    std::fs::write(&page, &out.stdout).unwrap();
    let text = render(&page);
    assert!(
        text.contains("NAME") && text.contains("rangefleet"),
        "{text}"
    );
    assert!(text.contains("Exit codes: 0 success"), "{text}");
    for name in subcommands() {
        assert!(
            text.contains(&format!("rangefleet-{name}(1)")),
            "{name} not in the man page:\n{text}"
        );
    }

    // --dir: one page per subcommand, each renders and has its own flags.
    let pages = dir.0.join("man1");
    let out = rangefleet()
        .args(["man", "--dir"])
        .arg(&pages)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(render(&pages.join("rangefleet.1")).contains("SUBCOMMANDS"));
    for name in subcommands() {
        let page = pages.join(format!("rangefleet-{name}.1"));
        assert!(page.is_file(), "{} not written", page.display());
        render(&page);
    }
    let status = render(&pages.join("rangefleet-status.1"));
    assert!(status.contains("--fleet"), "{status}");
    assert!(status.contains("Exit codes: 0 printed"), "{status}");
}
