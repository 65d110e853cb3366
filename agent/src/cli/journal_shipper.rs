//! `rangefleet journal-shipper`: the journal-to-CloudWatch Logs shipper
//! (`agent/systemd/journal-cloudwatch.py`, a Python script; its header says why it is
//! not a packaged tool) and its unit, carried inside the binary so an instance that
//! fetched and checked the binary has them too, at no cost in user-data
//! (docs/operations.md, "Shipping the journal to CloudWatch Logs").

use std::path::{Path, PathBuf};

use crate::exit;

/// The shipper script.
pub const SCRIPT: &str = include_str!("../../systemd/journal-cloudwatch.py");
/// Its systemd unit.
pub const UNIT: &str = include_str!("../../systemd/rangefleet-journal-cloudwatch.service");
/// Where `install` puts the script, under `--root`.
pub const SCRIPT_PATH: &str = "usr/local/libexec/rangefleet-journal-cloudwatch";
/// Where `install` puts the unit, under `--root`.
pub const UNIT_PATH: &str = "etc/systemd/system/rangefleet-journal-cloudwatch.service";

/// `rangefleet journal-shipper`.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Write the script and its unit into place (then: systemctl daemon-reload, and
    /// enable --now rangefleet-journal-cloudwatch.service).
    Install {
        /// Install under this folder instead of / (for images and tests).
        #[arg(long, default_value = "/")]
        root: PathBuf,
    },
    /// Print the script (to read it, or to run it elsewhere with python3).
    Script,
    /// Print the unit.
    Unit,
}

/// Runs `journal-shipper`; returns the exit code.
pub fn run(command: Command) -> i32 {
    match command {
        Command::Script => {
            crate::out!("{SCRIPT}");
            exit::OK
        }
        Command::Unit => {
            crate::out!("{UNIT}");
            exit::OK
        }
        Command::Install { root } => match install(&root) {
            Ok(paths) => {
                for p in paths {
                    crate::outln!("wrote {}", p.display());
                }
                exit::OK
            }
            Err(e) => {
                eprintln!("error: {e}");
                exit::FAILURE
            }
        },
    }
}

/// Writes the script (0755) and the unit (0644) under `root`; returns their paths.
pub fn install(root: &Path) -> Result<Vec<PathBuf>, String> {
    use std::os::unix::fs::PermissionsExt;
    let mut written = Vec::new();
    for (rel, body, mode) in [(SCRIPT_PATH, SCRIPT, 0o755), (UNIT_PATH, UNIT, 0o644)] {
        let path = root.join(rel);
        let dir = path.parent().expect("a file path has a parent");
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        // Write beside, then rename: a running shipper never sees half a script.
        let tmp = path.with_extension("rangefleet-tmp");
        std::fs::write(&tmp, body).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))
            .map_err(|e| format!("cannot chmod {}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, &path)
            .map_err(|e| format!("cannot rename {} to {}: {e}", tmp.display(), path.display()))?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_writes_the_script_and_unit_with_their_modes() {
        use std::os::unix::fs::PermissionsExt;
        let root = std::env::temp_dir().join(format!("rangefleet-jship-{}", std::process::id()));
        let paths = install(&root).unwrap();
        assert_eq!(paths.len(), 2);
        let script = std::fs::read_to_string(root.join(SCRIPT_PATH)).unwrap();
        assert!(script.starts_with("#!/usr/bin/env python3\n"));
        let mode = |p: &str| {
            std::fs::metadata(root.join(p))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode(SCRIPT_PATH), 0o755);
        assert_eq!(mode(UNIT_PATH), 0o644);
        // The unit runs the script where install put it.
        assert!(UNIT.contains(&format!("/{SCRIPT_PATH} ")), "{UNIT}");
        // Again: replaced in place.
        install(&root).unwrap();
        std::fs::remove_dir_all(&root).unwrap();
    }
}
