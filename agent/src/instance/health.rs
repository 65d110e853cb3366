//! When the agent cannot work, and when its drain is done (docs/launch.md, section 5).
//!
//! **A dead agent leaves service and says why.** [`give_up`] first writes the reason to
//! the instance summary in the results store (`_instances/<id>.json`, a `failure`
//! field; `rangefleet status --results` lists them), then takes the instance out of its
//! group ([`leave_service`]): `SetInstanceHealth(Unhealthy, ShouldRespectGracePeriod =
//! false)` on the group found from its own id. Not in a group: nothing more. When that
//! call cannot be made, the fallback is a power-off ([`PowerOff`]); the launch template
//! makes an instance-initiated shutdown a termination, and the group replaces it.
//!
//! Who calls it: the agent itself on the exit-2 path (an invalid config: restarting
//! cannot help), without the power-off (it runs unprivileged); and
//! `rangefleet health mark-unhealthy`, which the unit's `OnFailure=` runs as root when
//! the agent's unit fails for good (exit 2, or a crash loop past the start limit), with
//! the power-off. Transient faults (exit 75, 5xx) restart the unit and never get here.
//!
//! **The drain hook.** After a drain started by the group (`autoscaling/target-lifecycle-state`
//! = `Terminated`) and the summary, [`complete_drain`] completes the lifecycle action
//! with `CONTINUE`, so the instance goes at once instead of at the hook's timeout.

use std::path::Path;

use tokio::time::Instant;

use crate::aws::autoscaling::{AutoScaling, Completion, Membership};
use crate::aws::AwsError;
use crate::boot::Identity;
use crate::contract::summary::InstanceSummary;
use crate::imds::ImdsClient;
use crate::store::{Store, StoreError};

/// Overrides the power-off command (whitespace-separated argv; tests point it at a
/// script that records instead of powering off).
pub const POWER_OFF_ENV: &str = "RANGEFLEET_POWER_OFF_COMMAND";
/// The real power-off: asks systemd, returns at once.
pub const POWER_OFF_COMMAND: &[&str] = &["systemctl", "poweroff", "--no-block"];

pub use crate::contract::summary::Failure;

/// A failure of `kind` now.
pub fn failure_now(kind: &str, reason: impl Into<String>) -> Failure {
    Failure {
        kind: kind.to_string(),
        reason: reason.into(),
        at: crate::time::rfc3339(std::time::SystemTime::now()),
    }
}

/// The group's side of one instance: the seam [`leave_service`] and [`complete_drain`]
/// call. Real: [`AutoScaling`]; fake: [`FakeGroup`].
#[async_trait::async_trait]
pub trait Group: Send + Sync {
    /// The group `instance_id` is in, `None` when in none.
    async fn membership(&self, instance_id: &str) -> Result<Option<Membership>, AwsError>;
    /// SetInstanceHealth Unhealthy, ignoring the grace period.
    async fn set_unhealthy(&self, instance_id: &str) -> Result<(), AwsError>;
    /// CompleteLifecycleAction CONTINUE.
    async fn complete_lifecycle_action(
        &self,
        group: &str,
        hook: &str,
        instance_id: &str,
    ) -> Result<Completion, AwsError>;
}

#[async_trait::async_trait]
impl Group for AutoScaling {
    async fn membership(&self, instance_id: &str) -> Result<Option<Membership>, AwsError> {
        AutoScaling::membership(self, instance_id).await
    }
    async fn set_unhealthy(&self, instance_id: &str) -> Result<(), AwsError> {
        AutoScaling::set_unhealthy(self, instance_id).await
    }
    async fn complete_lifecycle_action(
        &self,
        group: &str,
        hook: &str,
        instance_id: &str,
    ) -> Result<Completion, AwsError> {
        AutoScaling::complete_lifecycle_action(self, group, hook, instance_id).await
    }
}

/// Why the power-off could not be started: the command and what it said.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{command}: {reason}")]
pub struct PowerOffError {
    /// The command run.
    pub command: String,
    /// Why it failed (could not start, or its exit status).
    pub reason: String,
}

/// Powers the instance off: the fallback when the group cannot be told.
pub trait PowerOff: Send + Sync {
    /// Starts the power-off; `Err` says why it could not be started.
    fn power_off(&self) -> Result<(), PowerOffError>;
}

/// The real power-off: runs [`POWER_OFF_COMMAND`], or the argv in [`POWER_OFF_ENV`].
#[derive(Debug, Clone)]
pub struct CommandPowerOff {
    argv: Vec<String>,
}

impl CommandPowerOff {
    /// [`POWER_OFF_COMMAND`] unless [`POWER_OFF_ENV`] names another command.
    pub fn from_env() -> CommandPowerOff {
        let argv = std::env::var(POWER_OFF_ENV)
            .ok()
            .map(|v| v.split_whitespace().map(String::from).collect::<Vec<_>>())
            .filter(|a| !a.is_empty())
            .unwrap_or_else(|| POWER_OFF_COMMAND.iter().map(|s| s.to_string()).collect());
        CommandPowerOff { argv }
    }
}

impl PowerOff for CommandPowerOff {
    fn power_off(&self) -> Result<(), PowerOffError> {
        let fail = |reason: String| PowerOffError {
            command: self.argv.join(" "),
            reason,
        };
        let status = std::process::Command::new(&self.argv[0])
            .args(&self.argv[1..])
            .status()
            .map_err(|e| fail(e.to_string()))?;
        if status.success() {
            Ok(())
        } else {
            Err(fail(status.to_string()))
        }
    }
}

/// A power-off that only counts, for in-process tests.
#[cfg(any(test, feature = "test-util"))]
#[derive(Debug, Default)]
pub struct RecordingPowerOff {
    calls: std::sync::Mutex<u32>,
}

#[cfg(any(test, feature = "test-util"))]
impl RecordingPowerOff {
    /// Power-offs asked for.
    pub fn calls(&self) -> u32 {
        *self.calls.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(any(test, feature = "test-util"))]
impl PowerOff for RecordingPowerOff {
    fn power_off(&self) -> Result<(), PowerOffError> {
        *self.calls.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        Ok(())
    }
}

/// A group in memory, for in-process tests: the instance is in `group` (or in none),
/// every call is recorded as `Action group/instance…`, and `fail` makes every call fail
/// as AccessDenied would.
#[cfg(any(test, feature = "test-util"))]
#[derive(Debug, Default)]
pub struct FakeGroup {
    /// The group the instance is in.
    pub group: Option<String>,
    /// Every call fails.
    pub fail: bool,
    calls: std::sync::Mutex<Vec<String>>,
}

#[cfg(any(test, feature = "test-util"))]
impl FakeGroup {
    /// An instance in `group`.
    pub fn member_of(group: &str) -> FakeGroup {
        FakeGroup {
            group: Some(group.to_string()),
            ..FakeGroup::default()
        }
    }

    /// The calls so far.
    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn record(&self, action: &'static str, call: String) -> Result<(), AwsError> {
        self.calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(call);
        if self.fail {
            Err(AwsError {
                service: "Auto Scaling",
                action,
                code: Some("AccessDenied".into()),
                message: "AccessDenied: not authorized (fake)".into(),
            })
        } else {
            Ok(())
        }
    }
}

#[cfg(any(test, feature = "test-util"))]
#[async_trait::async_trait]
impl Group for FakeGroup {
    async fn membership(&self, instance_id: &str) -> Result<Option<Membership>, AwsError> {
        self.record(
            "DescribeAutoScalingInstances",
            format!("DescribeAutoScalingInstances {instance_id}"),
        )?;
        Ok(self.group.as_ref().map(|g| Membership {
            group: g.clone(),
            health_status: "HEALTHY".into(),
            lifecycle_state: "InService".into(),
        }))
    }
    async fn set_unhealthy(&self, instance_id: &str) -> Result<(), AwsError> {
        self.record(
            "SetInstanceHealth",
            format!("SetInstanceHealth {instance_id} Unhealthy"),
        )
    }
    async fn complete_lifecycle_action(
        &self,
        group: &str,
        hook: &str,
        instance_id: &str,
    ) -> Result<Completion, AwsError> {
        self.record(
            "CompleteLifecycleAction",
            format!("CompleteLifecycleAction {group} {hook} {instance_id} CONTINUE"),
        )?;
        Ok(Completion::Completed)
    }
}

/// How [`leave_service`] ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Left {
    /// The group has the instance as Unhealthy and will replace it.
    Unhealthy {
        /// The group.
        group: String,
    },
    /// The instance is in no group (launched by hand): nothing to do.
    NotInGroup,
    /// The group could not be told; the instance is powering off.
    PoweredOff {
        /// Why the group could not be told.
        error: String,
    },
    /// The group could not be told and there was no power-off (or it failed).
    Stayed {
        /// Why.
        error: String,
    },
}

/// Takes `instance_id` out of its group: finds the group, marks the instance Unhealthy;
/// when either call fails, powers off through `power_off` when there is one.
pub async fn leave_service(
    instance_id: &str,
    group: &dyn Group,
    power_off: Option<&dyn PowerOff>,
) -> Left {
    let error = match group.membership(instance_id).await {
        Ok(None) => {
            tracing::info!(
                event = "not_in_group",
                "the instance is in no auto-scaling group: not marking it unhealthy"
            );
            return Left::NotInGroup;
        }
        Ok(Some(m)) => match group.set_unhealthy(instance_id).await {
            Ok(()) => {
                tracing::warn!(
                    event = "instance_marked_unhealthy",
                    group = %m.group,
                    "marked the instance Unhealthy: its group will replace it"
                );
                return Left::Unhealthy { group: m.group };
            }
            Err(e) => e,
        },
        Err(e) => e,
    };
    tracing::error!(
        event = "mark_unhealthy_failed",
        code = error.code(),
        error = %error,
        "could not mark the instance Unhealthy: check the role allows autoscaling:DescribeAutoScalingInstances and SetInstanceHealth, and that Auto Scaling is reachable"
    );
    let error = error.to_string();
    match power_off {
        None => Left::Stayed { error },
        Some(p) => match p.power_off() {
            Ok(()) => {
                tracing::warn!(
                    event = "power_off_fallback",
                    "powering off: the launch template makes that a termination, and the group replaces the instance"
                );
                Left::PoweredOff { error }
            }
            Err(e) => {
                tracing::error!(event = "power_off_failed", error = %e, "could not power off either");
                Left::Stayed {
                    error: format!("{error}; power-off failed: {e}"),
                }
            }
        },
    }
}

/// The summary of an instance whose agent gave up: the usual fields, zero counts, and
/// `failure`.
pub fn failure_summary(identity: &Identity, failure: &Failure) -> InstanceSummary {
    InstanceSummary {
        started_at: failure.at.clone(),
        finished_at: failure.at.clone(),
        failure: Some(failure.clone()),
        agent: Some(crate::contract::summary::AgentBuild::current()),
        ..super::worker::summary_of(identity)
    }
}

/// How [`record_failure`] ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// The summary with the failure is in the store.
    Written,
    /// A summary there already names a failure (the agent's own, more precise one):
    /// left as it is.
    KeptEarlier,
}

/// Writes `summary` to the instance's summary key, unless `keep_earlier` and the
/// summary there already has a `failure`.
pub async fn record_failure(
    results: &Store,
    summary: &InstanceSummary,
    keep_earlier: bool,
) -> Result<Recorded, StoreError> {
    let key = crate::contract::summary::summary_key(&summary.instance_id);
    if keep_earlier {
        match results.get(&key).await {
            Ok(body) => {
                let earlier = InstanceSummary::from_slice(&body).ok();
                if earlier.is_some_and(|e| e.failure.is_some()) {
                    return Ok(Recorded::KeptEarlier);
                }
            }
            Err(StoreError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    results.put(&key, summary.to_bytes().into()).await?;
    Ok(Recorded::Written)
}

/// What [`give_up`] needs to know.
pub struct GiveUp<'a> {
    /// Who we are (as much as could be learned).
    pub identity: &'a Identity,
    /// The results prefix, when a config (even an invalid one) named one.
    pub results: Option<String>,
    /// Why.
    pub failure: Failure,
    /// Leave a summary that already names a failure as it is.
    pub keep_earlier: bool,
    /// The group's side.
    pub group: &'a dyn Group,
    /// The fallback, when this process may power off.
    pub power_off: Option<&'a dyn PowerOff>,
}

/// Says why (the summary, best effort), then leaves service ([`leave_service`]).
pub async fn give_up(g: GiveUp<'_>) -> Left {
    tracing::error!(
        event = "agent_gave_up",
        kind = %g.failure.kind,
        reason = %g.failure.reason,
        "the agent cannot work: recording why, then leaving the group"
    );
    match &g.results {
        None => tracing::warn!(
            event = "failure_not_recorded",
            "no results prefix could be read from the config: the reason is only in this log"
        ),
        Some(url) => {
            let summary = failure_summary(g.identity, &g.failure);
            let written = match Store::open(url).await {
                Ok(store) => record_failure(&store, &summary, g.keep_earlier)
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match written {
                Ok(Recorded::Written) => tracing::info!(
                    event = "failure_recorded",
                    key = %crate::contract::summary::summary_key(&g.identity.instance_id),
                    "the reason is in the instance summary"
                ),
                Ok(Recorded::KeptEarlier) => tracing::info!(
                    event = "failure_already_recorded",
                    "the instance summary already names a failure: kept"
                ),
                Err(e) => tracing::warn!(
                    event = "failure_record_failed",
                    results = %url,
                    error = %e,
                    "could not write the instance summary: the reason is only in this log"
                ),
            }
        }
    }
    leave_service(&g.identity.instance_id, g.group, g.power_off).await
}

/// How [`complete_drain`] ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Drained {
    /// The group let the instance go.
    Completed {
        /// The group.
        group: String,
    },
    /// No lifecycle action was waiting.
    NoAction,
    /// The instance is in no group.
    NotInGroup,
    /// A call failed; the hook's heartbeat timeout lets the instance go later.
    Failed {
        /// Why.
        error: String,
    },
}

/// Completes `instance_id`'s termination lifecycle action on `hook` with CONTINUE.
pub async fn complete_drain(instance_id: &str, hook: &str, group: &dyn Group) -> Drained {
    let done = async {
        let Some(m) = group.membership(instance_id).await? else {
            return Ok(Drained::NotInGroup);
        };
        Ok::<_, AwsError>(
            match group
                .complete_lifecycle_action(&m.group, hook, instance_id)
                .await?
            {
                Completion::Completed => Drained::Completed { group: m.group },
                Completion::NoAction => Drained::NoAction,
            },
        )
    }
    .await;
    match done {
        Ok(Drained::Completed { group }) => {
            tracing::info!(event = "lifecycle_action_completed", group = %group, hook, "drained: lifecycle action completed (CONTINUE)");
            Drained::Completed { group }
        }
        Ok(Drained::NoAction) => {
            tracing::info!(
                event = "lifecycle_action_none",
                hook,
                "no lifecycle action was waiting for this instance"
            );
            Drained::NoAction
        }
        Ok(other) => {
            tracing::info!(
                event = "not_in_group",
                "the instance is in no auto-scaling group: no lifecycle action to complete"
            );
            other
        }
        Err(e) => {
            tracing::warn!(event = "lifecycle_action_failed", hook, code = e.code(), error = %e,
                "could not complete the lifecycle action: the instance goes when the hook times out; check autoscaling:CompleteLifecycleAction on the role");
            Drained::Failed {
                error: e.to_string(),
            }
        }
    }
}

/// The `results` of a config document that may not validate (best effort: any format
/// the agent reads, gzipped or not; `s3://` and `file://` only).
fn lenient_results(raw: &[u8]) -> Option<String> {
    use crate::boot::userdata::{decode, Format};
    let doc = decode(raw).ok()?;
    let results = match doc.format {
        Format::Yaml | Format::Json => serde_yaml_ng::from_str::<serde_yaml_ng::Value>(&doc.text)
            .ok()?
            .get("results")?
            .as_str()?
            .to_string(),
        Format::Toml => toml::from_str::<toml::Table>(&doc.text)
            .ok()?
            .get("results")?
            .as_str()?
            .to_string(),
    };
    (results.starts_with("s3://") || results.starts_with("file://")).then_some(results)
}

/// Who this instance is, from IMDS, for a failure report: only the instance id is
/// needed; the rest is filled when IMDS answers.
async fn imds_identity(imds: &ImdsClient, deadline: Instant) -> Option<Identity> {
    let get = |p: &'static str| async move {
        imds.get_text(&format!("/latest/meta-data/{p}"), deadline)
            .await
            .ok()
            .flatten()
    };
    let instance_id = get("instance-id").await?;
    let (instance_type, zone, region, life_cycle) = tokio::join!(
        get("instance-type"),
        get("placement/availability-zone"),
        get("placement/region"),
        get("instance-life-cycle"),
    );
    let zone = zone.unwrap_or_default();
    let region = region.unwrap_or_else(|| {
        zone.trim_end_matches(|c: char| c.is_ascii_lowercase())
            .to_string()
    });
    Some(Identity {
        instance_id,
        instance_type: instance_type.unwrap_or_default(),
        availability_zone: zone,
        region,
        life_cycle: life_cycle.unwrap_or_else(|| "on-demand".into()),
        launch_index: 0,
        ami_id: String::new(),
    })
}

/// What a failure report needs before it can be given: who this instance is, where its
/// summary goes (the results prefix read leniently from the config that failed) and
/// its auto-scaling client, in the instance's region unless `AWS_REGION` names one.
pub struct ReportTo {
    /// The instance, from IMDS.
    pub identity: Identity,
    /// The results prefix, when the config names one the report can write to.
    pub results: Option<String>,
    /// The Auto Scaling client for the instance's group.
    pub group: AutoScaling,
}

impl ReportTo {
    /// Asks IMDS and reads the config (`local` first, else user-data) before
    /// `deadline`; `None` when IMDS does not say which instance this is.
    pub async fn find(imds: &ImdsClient, deadline: Instant, local: &Path) -> Option<ReportTo> {
        let identity = imds_identity(imds, deadline).await?;
        let results = config_bytes(imds, deadline, local)
            .await
            .and_then(|b| lenient_results(&b));
        let region = std::env::var_os("AWS_REGION")
            .is_none()
            .then(|| identity.region.clone());
        let group = AutoScaling::from_env(region).await;
        Some(ReportTo {
            identity,
            results,
            group,
        })
    }
}

/// The config document the agent would read (the on-instance file when it exists, else
/// user-data), as bytes, for [`lenient_results`].
async fn config_bytes(imds: &ImdsClient, deadline: Instant, local: &Path) -> Option<Vec<u8>> {
    if let Ok(b) = crate::boot::read_capped(local) {
        return Some(b);
    }
    imds.get("/latest/user-data", deadline)
        .await
        .ok()
        .flatten()
        .map(|b| b.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> Identity {
        Identity::local("i-0abc", "us-east-1")
    }

    #[tokio::test]
    async fn a_member_is_marked_unhealthy_and_nothing_powers_off() {
        let group = FakeGroup::member_of("fleet-asg");
        let off = RecordingPowerOff::default();
        let left = leave_service("i-0abc", &group, Some(&off)).await;
        assert_eq!(
            left,
            Left::Unhealthy {
                group: "fleet-asg".into()
            }
        );
        assert_eq!(
            group.calls(),
            [
                "DescribeAutoScalingInstances i-0abc",
                "SetInstanceHealth i-0abc Unhealthy"
            ]
        );
        assert_eq!(off.calls(), 0);
    }

    #[tokio::test]
    async fn no_group_means_no_call_and_no_power_off() {
        let group = FakeGroup::default();
        let off = RecordingPowerOff::default();
        assert_eq!(
            leave_service("i-0abc", &group, Some(&off)).await,
            Left::NotInGroup
        );
        assert_eq!(group.calls(), ["DescribeAutoScalingInstances i-0abc"]);
        assert_eq!(off.calls(), 0);
    }

    #[tokio::test]
    async fn when_the_group_cannot_be_told_the_fallback_powers_off() {
        let group = FakeGroup {
            fail: true,
            ..FakeGroup::member_of("fleet-asg")
        };
        let off = RecordingPowerOff::default();
        let left = leave_service("i-0abc", &group, Some(&off)).await;
        assert!(matches!(&left, Left::PoweredOff { error } if error.contains("AccessDenied")));
        assert_eq!(off.calls(), 1);
        // Without a power-off (the unprivileged agent), it stays and says so.
        let left = leave_service("i-0abc", &group, None).await;
        assert!(matches!(left, Left::Stayed { .. }));
    }

    #[tokio::test]
    async fn the_first_recorded_failure_is_kept_when_asked() {
        let store = Store::memory();
        let first = failure_summary(&identity(), &failure_now("config", "invalid config"));
        let later = failure_summary(&identity(), &failure_now("unit-failed", "exit 2"));
        assert_eq!(
            record_failure(&store, &first, true).await.unwrap(),
            Recorded::Written
        );
        assert_eq!(
            record_failure(&store, &later, true).await.unwrap(),
            Recorded::KeptEarlier
        );
        let key = crate::contract::summary::summary_key("i-0abc");
        let v: serde_json::Value = serde_json::from_slice(&store.get(&key).await.unwrap()).unwrap();
        assert_eq!(v["failure"]["kind"], "config");
        assert_eq!(v["failure"]["reason"], "invalid config");
        assert_eq!(v["done"], 0);
        // Overwrite when not asked to keep.
        record_failure(&store, &later, false).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&store.get(&key).await.unwrap()).unwrap();
        assert_eq!(v["failure"]["kind"], "unit-failed");
    }

    #[tokio::test]
    async fn the_drain_hook_is_completed_on_the_members_group() {
        let group = FakeGroup::member_of("fleet-asg");
        assert_eq!(
            complete_drain("i-0abc", "rangefleet-drain", &group).await,
            Drained::Completed {
                group: "fleet-asg".into()
            }
        );
        assert_eq!(
            group.calls()[1],
            "CompleteLifecycleAction fleet-asg rangefleet-drain i-0abc CONTINUE"
        );
        let alone = FakeGroup::default();
        assert_eq!(
            complete_drain("i-0abc", "rangefleet-drain", &alone).await,
            Drained::NotInGroup
        );
    }

    #[test]
    fn results_are_read_from_configs_that_do_not_validate() {
        let yaml = b"queue: nope\ninputs: []\nresults: s3://b/results/run-1/\nconcurrency: -5\n";
        assert_eq!(
            lenient_results(yaml).as_deref(),
            Some("s3://b/results/run-1/")
        );
        let json = br#"{"results": "file:///tmp/out/", "bogus": 1}"#;
        assert_eq!(lenient_results(json).as_deref(), Some("file:///tmp/out/"));
        let toml = b"results = \"s3://b/r/\"\nqueue = 3\n";
        assert_eq!(lenient_results(toml).as_deref(), Some("s3://b/r/"));
        assert_eq!(lenient_results(b"results: http://x/\n"), None);
        assert_eq!(lenient_results(b"queue: x\n"), None);
        assert_eq!(lenient_results(b"\xff\xfe not text"), None);
    }
}
