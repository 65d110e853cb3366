//! The Auto Scaling calls an agent makes about its own instance, through
//! aws-sdk-autoscaling (docs/launch.md, section 5):
//!
//! 1. `DescribeAutoScalingInstances` with its own id: which group it is in (none when
//!    it was launched by hand; then nothing else is called);
//! 2. `SetInstanceHealth(Unhealthy, ShouldRespectGracePeriod=false)`: take it out of
//!    service when it cannot work;
//! 3. `CompleteLifecycleAction(CONTINUE)` on the drain hook once drained.
//!
//! The role grants the last two on its own group's ARN only, and the first on `*`.
//! Endpoint: `AWS_ENDPOINT_URL_AUTO_SCALING`, else `AWS_ENDPOINT_URL`, else the
//! regional one, as the SDK resolves them.

use super::AwsError;

/// The drain hook the Terraform module creates (its `lifecycle_hook_name` output).
pub const DEFAULT_HOOK: &str = "rangefleet-drain";

/// An instance's place in its group, from DescribeAutoScalingInstances.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    /// The group's name.
    pub group: String,
    /// `HEALTHY` or `UNHEALTHY`.
    pub health_status: String,
    /// `InService`, `Terminating:Wait`, …
    pub lifecycle_state: String,
}

/// How a CompleteLifecycleAction ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completion {
    /// The group let the instance go on.
    Completed,
    /// There was no lifecycle action to complete (the instance is not terminating
    /// through the group, or the hook already timed out): not a failure.
    NoAction,
}

/// An Auto Scaling client for one region.
#[derive(Debug, Clone)]
pub struct AutoScaling {
    client: aws_sdk_autoscaling::Client,
}

impl AutoScaling {
    /// A client from aws-config's default chain in `region`, with the SDK's standard
    /// retries (3 attempts, full jitter).
    pub async fn from_env(region: Option<String>) -> AutoScaling {
        let retry = super::standard_retry(
            3,
            std::time::Duration::from_millis(500),
            std::time::Duration::from_secs(5),
        );
        AutoScaling::new(&super::sdk_config(region, retry).await)
    }

    /// A client for `sdk`.
    pub fn new(sdk: &aws_config::SdkConfig) -> AutoScaling {
        AutoScaling {
            client: aws_sdk_autoscaling::Client::new(sdk),
        }
    }

    /// The group `instance_id` belongs to; `None` when it is in no group.
    pub async fn membership(&self, instance_id: &str) -> Result<Option<Membership>, AwsError> {
        let out = self
            .client
            .describe_auto_scaling_instances()
            .instance_ids(instance_id)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("Auto Scaling", "DescribeAutoScalingInstances", e))?;
        Ok(out
            .auto_scaling_instances()
            .iter()
            .find(|i| i.instance_id() == Some(instance_id))
            .and_then(|i| {
                Some(Membership {
                    group: i.auto_scaling_group_name()?.to_string(),
                    health_status: i.health_status().unwrap_or_default().to_string(),
                    lifecycle_state: i.lifecycle_state().unwrap_or_default().to_string(),
                })
            }))
    }

    /// Marks `instance_id` Unhealthy now, grace period or not: the group replaces it.
    pub async fn set_unhealthy(&self, instance_id: &str) -> Result<(), AwsError> {
        self.client
            .set_instance_health()
            .instance_id(instance_id)
            .health_status("Unhealthy")
            .should_respect_grace_period(false)
            .send()
            .await
            .map(drop)
            .map_err(|e| AwsError::from_sdk("Auto Scaling", "SetInstanceHealth", e))
    }

    /// Completes `instance_id`'s lifecycle action on `hook` of `group` with CONTINUE.
    /// A `ValidationError` saying there is no such action is [`Completion::NoAction`].
    pub async fn complete_lifecycle_action(
        &self,
        group: &str,
        hook: &str,
        instance_id: &str,
    ) -> Result<Completion, AwsError> {
        let sent = self
            .client
            .complete_lifecycle_action()
            .auto_scaling_group_name(group)
            .lifecycle_hook_name(hook)
            .instance_id(instance_id)
            .lifecycle_action_result("CONTINUE")
            .send()
            .await;
        match sent {
            Ok(_) => Ok(Completion::Completed),
            Err(e) => {
                let e = AwsError::from_sdk("Auto Scaling", "CompleteLifecycleAction", e);
                if no_action(&e) {
                    Ok(Completion::NoAction)
                } else {
                    Err(e)
                }
            }
        }
    }
}

/// Auto Scaling's answer when there is no lifecycle action for the instance:
/// `ValidationError: No active Lifecycle Action found with instance ID i-…`.
fn no_action(e: &AwsError) -> bool {
    e.code.as_deref() == Some("ValidationError")
        && e.message
            .to_ascii_lowercase()
            .contains("no active lifecycle action")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_no_active_action_validation_error_is_no_action() {
        let e = |code: &str, message: &str| AwsError {
            service: "Auto Scaling",
            action: "CompleteLifecycleAction",
            code: Some(code.into()),
            message: message.into(),
        };
        assert!(no_action(&e(
            "ValidationError",
            "ValidationError: No active Lifecycle Action found with instance ID i-0abc"
        )));
        assert!(!no_action(&e(
            "ValidationError",
            "No Lifecycle Hook found with name rangefleet-drain"
        )));
        assert!(!no_action(&e("AccessDenied", "no active lifecycle action")));
    }
}
