//! `rangefleet health mark-unhealthy`: what the agent unit's `OnFailure=` handler runs
//! (as root) when the agent failed for good: an invalid config (exit 2), or a crash
//! loop that hit the unit's start limit. Records why in the instance summary (keeping
//! the agent's own, more precise reason when it wrote one), marks the instance
//! Unhealthy in its group, powers off when that cannot be done, and then completes the
//! group's drain hook once the group terminates the instance (nothing left to drain).

use std::time::Duration;

use tokio::time::Instant;

use crate::exit;
use crate::imds::{ImdsClient, ImdsOptions};
use crate::instance::health::{self, CommandPowerOff, GiveUp, Left, PowerOff};

use super::BootArgs;

/// `rangefleet health`.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Record why the agent cannot work, then take the instance out of its group.
    ///
    /// Writes RESULTS/_instances/<id>.json with a `failure` (unless one is there
    /// already), then SetInstanceHealth Unhealthy (ShouldRespectGracePeriod=false) on
    /// the instance's group, found with DescribeAutoScalingInstances. Not in a group:
    /// nothing more. When the group cannot be told: power off (the launch template makes
    /// that a termination). Without --reason, the reason comes from the failed unit
    /// (systemd's MONITOR_SERVICE_RESULT, MONITOR_EXIT_CODE, MONITOR_EXIT_STATUS).
    /// Exit 0 once the instance is out of service (or in no group), 1 otherwise.
    MarkUnhealthy(MarkArgs),
}

/// `rangefleet health mark-unhealthy`.
#[derive(Debug, clap::Args)]
pub struct MarkArgs {
    /// IMDS settings, and the on-instance config file (for the results prefix).
    #[command(flatten)]
    pub boot: BootArgs,
    /// Why, for the summary and `rangefleet status`.
    #[arg(long)]
    pub reason: Option<String>,
    /// The failure's kind: config, crash-loop, install, unit-failed (default: from the
    /// failed unit).
    #[arg(long)]
    pub kind: Option<String>,
    /// Never power off, even when the group cannot be told.
    #[arg(long)]
    pub no_power_off: bool,
    /// After marking, wait this long for the group to start terminating the instance
    /// and complete its drain hook at once (0s: do not wait).
    #[arg(long, default_value = "240s", value_parser = crate::time::parse_duration)]
    pub complete_hook_within: Duration,
    /// The drain hook's name (the Terraform module's `lifecycle_hook_name`).
    #[arg(long, default_value = crate::aws::autoscaling::DEFAULT_HOOK)]
    pub hook: String,
}

/// Runs `health`; returns the exit code.
pub async fn run(command: Command) -> i32 {
    match command {
        Command::MarkUnhealthy(args) => mark_unhealthy(args).await,
    }
}

/// The kind and reason systemd's OnFailure= environment tells of the failed unit.
pub fn from_unit(env: impl Fn(&str) -> Option<String>) -> (String, String) {
    let unit = env("MONITOR_UNIT").unwrap_or_else(|| "rangefleet-agent.service".into());
    let result = env("MONITOR_SERVICE_RESULT").unwrap_or_default();
    let code = env("MONITOR_EXIT_CODE").unwrap_or_default();
    let status = env("MONITOR_EXIT_STATUS").unwrap_or_default();
    let journal = format!("see `journalctl -u {unit} -b` on the instance");
    match (result.as_str(), status.as_str()) {
        ("start-limit-hit", _) => (
            "crash-loop".into(),
            format!("{unit} failed again and again and hit its start limit (a crash loop): {journal}"),
        ),
        (_, "2") => (
            "config".into(),
            format!("{unit} exited 2: an invalid config or user-data; check it with `rangefleet userdata check`"),
        ),
        _ => (
            "unit-failed".into(),
            format!("{unit} failed (result {result:?}, {code} {status}): {journal}"),
        ),
    }
}

async fn mark_unhealthy(args: MarkArgs) -> i32 {
    let (unit_kind, unit_reason) = from_unit(|k| std::env::var(k).ok());
    let kind = args.kind.clone().unwrap_or(unit_kind);
    let reason = args.reason.clone().unwrap_or(unit_reason);
    let power_off = CommandPowerOff::from_env();
    let power_off: Option<&dyn PowerOff> = (!args.no_power_off).then_some(&power_off as _);
    let imds = match ImdsOptions::from_env(args.boot.imds_allow_v1).and_then(ImdsClient::new) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::USAGE;
        }
    };
    let deadline = Instant::now() + args.boot.boot_deadline;
    let Some(to) = health::ReportTo::find(&imds, deadline, &args.boot.local_config).await else {
        tracing::error!(
            event = "failure_no_identity",
            "IMDS did not say which instance this is: the group cannot be told"
        );
        if let Some(p) = power_off {
            if p.power_off().is_ok() {
                tracing::warn!(event = "power_off_fallback", "powering off");
                return exit::OK;
            }
        }
        return exit::FAILURE;
    };
    let left = health::give_up(GiveUp {
        identity: &to.identity,
        results: to.results,
        failure: health::failure_now(&kind, reason),
        keep_earlier: true,
        group: &to.group,
        power_off,
    })
    .await;
    match left {
        Left::Unhealthy { .. } => {
            if !args.complete_hook_within.is_zero() {
                complete_hook(&imds, &to.group, &to.identity.instance_id, &args).await;
            }
            exit::OK
        }
        Left::NotInGroup | Left::PoweredOff { .. } => exit::OK,
        Left::Stayed { error } => {
            eprintln!("error: the instance is still in service: {error}");
            exit::FAILURE
        }
    }
}

/// Waits for `autoscaling/target-lifecycle-state` = `Terminated`, then completes the
/// drain hook: a dead agent has nothing to drain.
async fn complete_hook(
    imds: &ImdsClient,
    group: &crate::aws::autoscaling::AutoScaling,
    instance_id: &str,
    args: &MarkArgs,
) {
    let give_up_at = Instant::now() + args.complete_hook_within;
    while Instant::now() < give_up_at {
        let poll_deadline = Instant::now() + Duration::from_secs(2);
        let state = imds
            .get_text(crate::instance::monitor::LIFECYCLE_PATH, poll_deadline)
            .await
            .ok()
            .flatten();
        if state.as_deref().map(str::trim) == Some("Terminated") {
            health::complete_drain(instance_id, &args.hook, group).await;
            return;
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    tracing::info!(
        event = "lifecycle_wait_over",
        "the group did not start terminating the instance in time: its hook's timeout will"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_failed_units_environment_names_the_kind() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let (kind, reason) = from_unit(env(&[("MONITOR_SERVICE_RESULT", "start-limit-hit")]));
        assert_eq!(kind, "crash-loop");
        assert!(
            reason.contains("journalctl -u rangefleet-agent.service"),
            "{reason}"
        );
        let (kind, _) = from_unit(env(&[
            ("MONITOR_SERVICE_RESULT", "exit-code"),
            ("MONITOR_EXIT_CODE", "exited"),
            ("MONITOR_EXIT_STATUS", "2"),
        ]));
        assert_eq!(kind, "config");
        let (kind, reason) = from_unit(env(&[
            ("MONITOR_SERVICE_RESULT", "signal"),
            ("MONITOR_EXIT_CODE", "killed"),
            ("MONITOR_EXIT_STATUS", "SEGV"),
        ]));
        assert_eq!(kind, "unit-failed");
        assert!(reason.contains("killed SEGV"), "{reason}");
    }
}
