//! `rangefleet agent`: boot, then run the instance until it drains.

use std::path::PathBuf;

use crate::boot::{self, Identity};
use crate::exit;
use crate::imds::{ImdsClient, ImdsOptions};
use crate::instance::{Booted, Deps};

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
    let deps = match Deps::connect(&config, &identity.region, imds).await {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: {e}");
            return e.exit_code();
        }
    };
    let booted = Booted {
        identity,
        tags,
        config,
        until_empty: args.until_empty,
    };
    match crate::instance::run(deps, booted, signals()).await {
        Ok(_) => exit::OK,
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    }
}

/// SIGTERM and Ctrl-C, one item each, for as long as the agent runs.
fn signals() -> impl futures::Stream<Item = ()> + Send + 'static {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate()).ok();
    futures::stream::unfold(term, |mut term| async move {
        match term.as_mut() {
            Some(t) => {
                tokio::select! {
                    _ = t.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            None => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
        Some(((), term))
    })
}
