//! The two EC2 calls rangefleet makes, through aws-sdk-ec2: CreateTags (tag
//! publishing, on the instance's own id) and DescribeInstances (`status`, every page).
//!
//! Retries are the SDK's standard mode (exponential backoff with full jitter; throttling
//! such as `RequestLimitExceeded`, 5xx and connection errors are retried, other errors
//! are not). Endpoint: `AWS_ENDPOINT_URL_EC2`, else `AWS_ENDPOINT_URL`, else EC2's
//! regional endpoint, as the SDK resolves them.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use aws_sdk_ec2::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_ec2::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_ec2::types::{Filter, Tag};
use serde::Serialize;

use super::AwsError;

/// DescribeInstances page size (EC2 allows 5 to 1000).
pub const DEFAULT_PAGE_SIZE: i32 = 1000;
/// Overrides [`DEFAULT_PAGE_SIZE`] (tests of the paging).
pub const PAGE_SIZE_ENV: &str = "RANGEFLEET_EC2_PAGE_SIZE";

/// The instance states `describe_instances` keeps: an instance that is terminated or
/// shutting down is no longer part of the fleet (EC2 lists terminated ones for about an
/// hour after).
pub const LIVE_STATES: [&str; 4] = ["pending", "running", "stopping", "stopped"];

/// One instance, as DescribeInstances reports it (the fields `status` shows).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Instance {
    /// `i-…`.
    pub instance_id: String,
    /// `pending`, `running`, `shutting-down`, …
    pub state: String,
    /// `m5.large`.
    pub instance_type: String,
    /// `us-east-1a`.
    pub availability_zone: String,
    /// `spot`, `capacity-block`, or `on-demand` (EC2 leaves it out for on-demand).
    pub lifecycle: String,
    /// RFC 3339, UTC: `2026-11-26T07:55:49Z`.
    pub launch_time: String,
}

/// An EC2 client for one region.
#[derive(Debug, Clone)]
pub struct Ec2 {
    client: aws_sdk_ec2::Client,
    page_size: i32,
    attempts: Arc<AtomicU32>,
}

impl Ec2 {
    /// A client from aws-config's default chain, in `region` when given, else the
    /// chain's region, retrying as `retry` says. [`PAGE_SIZE_ENV`] sets the page size.
    pub async fn from_env(region: Option<String>, retry: aws_config::retry::RetryConfig) -> Ec2 {
        let sdk = super::sdk_config(region, retry).await;
        let page_size = std::env::var(PAGE_SIZE_ENV)
            .ok()
            .and_then(|v| v.trim().parse::<i32>().ok())
            .unwrap_or(DEFAULT_PAGE_SIZE);
        Ec2::new(&sdk).with_page_size(page_size)
    }

    /// A client for `sdk` (its credentials, region, endpoint and retry settings).
    pub fn new(sdk: &aws_config::SdkConfig) -> Ec2 {
        let attempts = Arc::new(AtomicU32::new(0));
        let conf = aws_sdk_ec2::config::Builder::from(sdk)
            .interceptor(CountAttempts(Arc::clone(&attempts)))
            .build();
        Ec2 {
            client: aws_sdk_ec2::Client::from_conf(conf),
            page_size: DEFAULT_PAGE_SIZE,
            attempts,
        }
    }

    /// DescribeInstances asks for pages of `n` instances (clamped to EC2's 5 to 1000).
    pub fn with_page_size(mut self, n: i32) -> Ec2 {
        self.page_size = n.clamp(5, 1000);
        self
    }

    /// HTTP attempts this client has made so far, retries included.
    pub fn attempts(&self) -> u32 {
        self.attempts.load(Ordering::Relaxed)
    }

    /// Tags `instance_id` with `tags` (key, value): one CreateTags operation (the SDK
    /// retries it as configured).
    pub async fn create_tags(
        &self,
        instance_id: &str,
        tags: &[(String, String)],
    ) -> Result<(), AwsError> {
        let mut call = self.client.create_tags().resources(instance_id);
        for (k, v) in tags {
            call = call.tags(Tag::builder().key(k).value(v).build());
        }
        call.send()
            .await
            .map(drop)
            .map_err(|e| AwsError::from_sdk("EC2", "CreateTags", e))
    }

    /// The instances carrying every tag of `tags` (key, value) and in one of
    /// [`LIVE_STATES`] (terminated and shutting-down ones are left out), every page,
    /// sorted by id. Each page is one operation, retried by the SDK.
    pub async fn describe_instances(
        &self,
        tags: &[(String, String)],
    ) -> Result<Vec<Instance>, AwsError> {
        let mut call = self
            .client
            .describe_instances()
            .max_results(self.page_size)
            .filters(
                Filter::builder()
                    .name("instance-state-name")
                    .set_values(Some(LIVE_STATES.iter().map(|s| s.to_string()).collect()))
                    .build(),
            );
        for (k, v) in tags {
            call = call.filters(Filter::builder().name(format!("tag:{k}")).values(v).build());
        }
        let mut pages = call.into_paginator().send();
        let mut rows = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| AwsError::from_sdk("EC2", "DescribeInstances", e))?;
            for i in page.reservations().iter().flat_map(|r| r.instances()) {
                rows.push(row(i));
            }
        }
        rows.sort_by(|a, b| a.instance_id.cmp(&b.instance_id));
        Ok(rows)
    }
}

fn row(i: &aws_sdk_ec2::types::Instance) -> Instance {
    Instance {
        instance_id: i.instance_id().unwrap_or_default().to_string(),
        state: i
            .state()
            .and_then(|s| s.name())
            .map(|n| n.as_str().to_string())
            .unwrap_or_else(|| "unknown".into()),
        instance_type: i
            .instance_type()
            .map(|t| t.as_str().to_string())
            .unwrap_or_default(),
        availability_zone: i
            .placement()
            .and_then(|p| p.availability_zone())
            .unwrap_or_default()
            .to_string(),
        lifecycle: i
            .instance_lifecycle()
            .map(|l| l.as_str().to_string())
            .filter(|l| !l.is_empty())
            .unwrap_or_else(|| "on-demand".into()),
        launch_time: i
            .launch_time()
            .and_then(|t| {
                t.fmt(aws_sdk_ec2::primitives::DateTimeFormat::DateTime)
                    .ok()
            })
            .unwrap_or_default(),
    }
}

/// Counts every HTTP attempt (first tries and retries) of a client's operations.
#[derive(Debug)]
struct CountAttempts(Arc<AtomicU32>);

impl Intercept for CountAttempts {
    fn name(&self) -> &'static str {
        "rangefleet::CountAttempts"
    }

    fn read_before_attempt(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), aws_sdk_ec2::error::BoxError> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_read_every_field_and_on_demand_has_no_lifecycle() {
        use aws_sdk_ec2::types::{
            InstanceLifecycleType, InstanceState, InstanceStateName, InstanceType, Placement,
        };
        let spot = aws_sdk_ec2::types::Instance::builder()
            .instance_id("i-0b")
            .state(
                InstanceState::builder()
                    .name(InstanceStateName::Running)
                    .build(),
            )
            .instance_type(InstanceType::M5Large)
            .placement(Placement::builder().availability_zone("us-east-1a").build())
            .instance_lifecycle(InstanceLifecycleType::Spot)
            .launch_time(aws_sdk_ec2::primitives::DateTime::from_secs(1_795_679_749))
            .build();
        assert_eq!(
            row(&spot),
            Instance {
                instance_id: "i-0b".into(),
                state: "running".into(),
                instance_type: "m5.large".into(),
                availability_zone: "us-east-1a".into(),
                lifecycle: "spot".into(),
                launch_time: "2026-11-26T07:55:49Z".into(),
            }
        );
        let bare = aws_sdk_ec2::types::Instance::builder()
            .instance_id("i-0c")
            .build();
        let r = row(&bare);
        assert_eq!(
            (r.state.as_str(), r.lifecycle.as_str()),
            ("unknown", "on-demand")
        );
    }
}
