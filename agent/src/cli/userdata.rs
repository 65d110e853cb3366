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
    let raw = match crate::boot::read_capped(file) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: failed to read {}: {e}", file.display());
            return exit::USAGE;
        }
    };
    // Exactly the agent's validation (boot::config_from_userdata).
    match crate::boot::config_from_userdata(&raw) {
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
