//! `rangefleet userdata check`: validate user-data before a launch.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::Subcommand;

use crate::exit;

/// `rangefleet userdata …`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate a user-data file and print the config the agent would use.
    ///
    /// Accepts everything the agent does: #cloud-config with a write_files entry for
    /// /etc/rangefleet/agent.yaml, MIME multipart, a bare YAML/JSON/TOML config, each
    /// possibly gzipped and/or base64-encoded. Prints {"identity": null, "config",
    /// "tags"} with defaults filled in; templates stay as written and machine-dependent
    /// defaults read "auto". Exit 2 with the field and line when it is invalid.
    Check {
        /// The user-data file, or - for stdin.
        file: PathBuf,
    },
}

/// Runs a `userdata` subcommand; returns the exit code.
pub fn run(command: Command) -> i32 {
    match command {
        Command::Check { file } => check(&file),
    }
}

fn check(file: &std::path::Path) -> i32 {
    let raw = if file.as_os_str() == "-" {
        let mut buf = Vec::new();
        match std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf) {
            Ok(_) => buf,
            Err(e) => {
                eprintln!("error: failed to read stdin: {e}");
                return exit::USAGE;
            }
        }
    } else {
        match std::fs::read(file) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("error: failed to read {}: {e}", file.display());
                return exit::USAGE;
            }
        }
    };
    let config = crate::boot::userdata::decode(&raw)
        .map_err(|e| e.to_string())
        .and_then(|doc| crate::boot::config::parse(&doc).map_err(|e| e.to_string()));
    match config {
        Ok(config) => {
            let tags: BTreeMap<String, String> = config.tags.clone();
            let report = crate::boot::report(None, &config, &tags, None);
            crate::output::print_json(&report);
            exit::OK
        }
        Err(e) => {
            eprintln!("error: {}: {e}", file.display());
            exit::USAGE
        }
    }
}
