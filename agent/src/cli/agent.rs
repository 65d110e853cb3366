//! `rangefleet agent`: boot, then run the instance until it drains. On an instance,
//! a config it cannot work with (exit 2) is recorded in its summary and takes the
//! instance out of its group (`instance::health`).

use std::path::{Path, PathBuf};
use std::time::Duration;

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
    /// Read the config from FILE instead of user-data (same formats); unlike
    /// --local-config, FILE must exist.
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
            let text = match crate::boot::read_capped(path).and_then(|b| {
                String::from_utf8(b).map_err(|e| {
                    std::io::Error::new(std::io::ErrorKind::InvalidData, format!("not UTF-8: {e}"))
                })
            }) {
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
        // An explicit --config wins; else the on-instance file when it exists.
        let local = file_config
            .is_none()
            .then_some(args.boot.local_config.as_path());
        let booting = boot::boot_from(&client, deadline, local);
        match say_while_imds_is_silent(&client, deadline, booting).await {
            Ok(b) => {
                let source = match (&args.config, &b.config_source) {
                    (Some(path), _) => path.display().to_string(),
                    (None, boot::ConfigSource::File { path }) => path.display().to_string(),
                    (None, boot::ConfigSource::UserData) => "user-data".into(),
                };
                tracing::info!(
                    event = "config_loaded",
                    INSTANCE_ID = %b.identity.instance_id,
                    source = %source,
                    "config loaded"
                );
                let config = file_config.unwrap_or(b.config);
                (b.identity, config, b.tags, Some(client))
            }
            Err(e) => {
                tracing::error!(event = "boot_failed", error = %e, "boot failed");
                eprintln!("error: {e}");
                if e.exit_code() == exit::USAGE {
                    give_up(&client, config_path(&args), e.to_string()).await;
                }
                return e.exit_code();
            }
        }
    };
    let deps = match Deps::connect(&config, &identity.region, imds.clone()).await {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: {e}");
            if let (Some(client), exit::USAGE) = (&imds, e.exit_code()) {
                give_up(client, config_path(&args), e.to_string()).await;
            }
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
            if let (Some(client), exit::USAGE) = (&imds, e.exit_code()) {
                give_up(client, config_path(&args), e.to_string()).await;
            }
            e.exit_code()
        }
    }
}

/// How long IMDS may fail to answer before the agent says so (a WARN and `STATUS=`).
pub const IMDS_SILENT_WARN: Duration = Duration::from_secs(2);
/// How often it says so again while IMDS stays silent.
pub const IMDS_SILENT_REPEAT: Duration = Duration::from_secs(30);

/// Runs `booting` to its end; while IMDS is not answering (for [`IMDS_SILENT_WARN`],
/// then every [`IMDS_SILENT_REPEAT`]), logs a WARN (`imds_unanswered`) and tells
/// systemd a `STATUS=` line, so neither the journal nor `systemctl status` is silent
/// until the boot deadline.
async fn say_while_imds_is_silent<T>(
    client: &ImdsClient,
    deadline: tokio::time::Instant,
    booting: impl std::future::Future<Output = T>,
) -> T {
    use crate::instance::systemd::{Notifier, SdNotify};
    let notifier = SdNotify::default();
    let mut booting = std::pin::pin!(booting);
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut said: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            done = &mut booting => {
                if said.is_some() {
                    tracing::info!(event = "imds_answered", endpoint = client.endpoint(), "the instance metadata service answers");
                    notifier.status("booting: the instance metadata service answers");
                }
                return done;
            }
            _ = tick.tick() => {}
        }
        let Some(u) = client.unanswered() else {
            continue;
        };
        let silent = u.since.elapsed();
        let due = match said {
            None => silent >= IMDS_SILENT_WARN,
            Some(at) => at.elapsed() >= IMDS_SILENT_REPEAT,
        };
        if !due {
            continue;
        }
        said = Some(tokio::time::Instant::now());
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        tracing::warn!(
            event = "imds_unanswered",
            endpoint = client.endpoint(),
            attempts = u.attempts,
            seconds = silent.as_secs(),
            seconds_left = left.as_secs(),
            error = %u.last,
            "the instance metadata service is not answering; retrying until the boot deadline"
        );
        notifier.status(&format!(
            "waiting for the instance metadata service at {}: {} attempts in {} s, last error: {}; exit 75 in {} s",
            client.endpoint(),
            u.attempts,
            silent.as_secs(),
            u.last,
            left.as_secs()
        ));
    }
}

/// The file the config was (or would have been) read from.
fn config_path(args: &Args) -> &Path {
    args.config.as_deref().unwrap_or(&args.boot.local_config)
}

/// How long the failure report may take to learn the identity and the results prefix.
const GIVE_UP_IMDS_BUDGET: Duration = Duration::from_secs(10);

/// The exit-2 path on an instance: the config cannot work and restarting will not
/// help. Writes why to the instance summary (the results prefix read leniently from the
/// config that failed), then marks the instance Unhealthy. No power-off from here (the
/// agent is unprivileged): when the call fails, the unit's OnFailure= handler
/// (`rangefleet health mark-unhealthy`, as root) has the fallback.
async fn give_up(imds: &ImdsClient, config_file: &Path, error: String) {
    use crate::instance::health::{self, GiveUp};
    let deadline = tokio::time::Instant::now() + GIVE_UP_IMDS_BUDGET;
    let Some(to) = health::ReportTo::find(imds, deadline, config_file).await else {
        tracing::error!(
            event = "failure_no_identity",
            "IMDS did not say which instance this is: cannot record the failure or mark the instance"
        );
        return;
    };
    let reason = format!(
        "{error}. The agent will not start with this config: check it with `rangefleet userdata check`, then fix the launch template's user-data (or {} and restart the agent)",
        crate::boot::LOCAL_CONFIG
    );
    health::give_up(GiveUp {
        identity: &to.identity,
        results: to.results,
        failure: health::failure_now("config", reason),
        keep_earlier: false,
        group: &to.group,
        power_off: None,
    })
    .await;
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
