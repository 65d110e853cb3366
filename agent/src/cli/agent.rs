//! `rangefleet agent`: boot, then run the instance until it drains.

use std::path::PathBuf;

use crate::boot::{self, Identity};
use crate::exit;
use crate::imds::{ImdsClient, ImdsOptions};

use super::BootArgs;

/// `rangefleet agent`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where identity and user-data come from (shared with the other boot commands).
    #[command(flatten)]
    pub boot: BootArgs,
    /// Read the config from FILE instead of user-data (same formats).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Do not ask IMDS: a local identity, for one machine (needs --config).
    #[arg(long, requires = "config")]
    pub no_imds: bool,
    /// With --no-imds: the instance id to use.
    #[arg(long, env = "RANGEFLEET_INSTANCE_ID")]
    pub instance_id: Option<String>,
    /// Exit once the queue has nothing visible or in flight (batch runs).
    #[arg(long)]
    pub until_empty: bool,
}

/// `agent`.
pub async fn run(args: Args) -> i32 {
    let file_config = match &args.config {
        None => None,
        Some(path) => {
            let text = match std::fs::read_to_string(path) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("error: failed to read --config {}: {e}", path.display());
                    return exit::USAGE;
                }
            };
            match crate::boot::config::parse_text(&text, &path.display().to_string()) {
                Ok(c) => Some(c),
                Err(e) => {
                    eprintln!("error: {e}");
                    return exit::USAGE;
                }
            }
        }
    };
    let (identity, config, tags, imds) = if args.no_imds {
        let config = file_config.expect("clap requires --config with --no-imds");
        let id = args
            .instance_id
            .clone()
            .unwrap_or_else(|| format!("local-{}", std::process::id()));
        let region = std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into());
        let identity = Identity::local(&id, &region);
        let tags = match crate::boot::tags::effective(&config.tags, &Default::default(), &identity)
        {
            Ok(t) => t,
            Err(e) => {
                eprintln!("error: invalid tags: {e}");
                return exit::USAGE;
            }
        };
        (identity, config, tags, None)
    } else {
        let client = match ImdsOptions::from_env(args.boot.imds_allow_v1).and_then(ImdsClient::new)
        {
            Ok(c) => c,
            Err(e) => {
                eprintln!("error: {e}");
                return exit::USAGE;
            }
        };
        let deadline = tokio::time::Instant::now() + args.boot.boot_deadline;
        match boot::boot(&client, deadline).await {
            Ok(b) => {
                let config = file_config.unwrap_or(b.config);
                (b.identity, config, b.tags, Some(client))
            }
            Err(e) => {
                tracing::error!(event = "boot_failed", error = %e, "boot failed");
                eprintln!("error: {e}");
                return e.exit_code();
            }
        }
    };
    let agent = crate::instance::Agent {
        identity,
        tags,
        config,
        imds,
        until_empty: args.until_empty,
    };
    match crate::instance::run(agent, crate::instance::systemd::ready).await {
        Ok(_) => {
            crate::instance::systemd::stopping();
            exit::OK
        }
        Err(crate::instance::AgentError::Config(e)) => {
            eprintln!("error: {e}");
            exit::USAGE
        }
        Err(e) => {
            eprintln!("error: {e}");
            exit::FAILURE
        }
    }
}
