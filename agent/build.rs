//! Records the commit the binary is built from as `RANGEFLEET_COMMIT` (the ready log
//! line and the instance summary carry it, docs/formats.md): `$RANGEFLEET_COMMIT` when
//! set (a build from a tarball may name its commit), else `git rev-parse --short=12
//! HEAD` in the checkout, else `unknown` (no git, or not a checkout). Never fails the
//! build.

use std::path::Path;
use std::process::Command;

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=RANGEFLEET_COMMIT");
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
    let dir = Path::new(&dir);
    let commit = match std::env::var("RANGEFLEET_COMMIT") {
        Ok(c) if !c.trim().is_empty() => c.trim().to_string(),
        _ => {
            let commit = git(dir, &["rev-parse", "--short=12", "HEAD"]);
            if commit.is_some() {
                // Rebuild when HEAD moves: HEAD itself, the branch it points at, and
                // packed-refs (where a ref lives after `git gc`).
                let mut watch = vec!["HEAD".to_string(), "packed-refs".to_string()];
                if let Some(r) = git(dir, &["symbolic-ref", "-q", "HEAD"]) {
                    watch.push(r);
                }
                for p in watch {
                    if let Some(path) = git(dir, &["rev-parse", "--git-path", &p]) {
                        let path = dir.join(path);
                        if path.exists() {
                            println!("cargo:rerun-if-changed={}", path.display());
                        }
                    }
                }
            }
            commit.unwrap_or_else(|| "unknown".into())
        }
    };
    // A value with a character cargo cannot carry in an env var would break the build.
    let commit: String = commit
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(64)
        .collect();
    println!("cargo:rustc-env=RANGEFLEET_COMMIT={commit}");
}
