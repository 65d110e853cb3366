//! AWS calls made outside object_store and the SQS client: the shared credentials
//! cache (S3 through object_store), EC2 (`ec2.rs`: tag publishing, `status`) and Auto
//! Scaling (`autoscaling.rs`: an instance's own health and its drain hook), both through
//! the AWS SDK for Rust.
//!
//! Every SDK client here is built from aws-config's default chain ([`sdk_config`]), so
//! credentials, region and endpoints come from the same place as the SQS client's:
//! `AWS_ENDPOINT_URL`, and the per-service `AWS_ENDPOINT_URL_EC2` and
//! `AWS_ENDPOINT_URL_AUTO_SCALING`, are honoured by the SDK itself.

pub mod autoscaling;
pub mod credentials;
pub mod ec2;

use std::time::Duration;

use aws_config::retry::RetryConfig;

/// A failed AWS call: which one, the service's error code when it gave one, and the
/// whole error chain (never a credential: the SDK's errors carry none).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{service} {action} failed: {message}")]
pub struct AwsError {
    /// `EC2`, `Auto Scaling`.
    pub service: &'static str,
    /// `CreateTags`, `SetInstanceHealth`, …
    pub action: &'static str,
    /// The service's error code (`RequestLimitExceeded`, `ValidationError`,
    /// `AccessDenied`, …); `None` when there was no answer.
    pub code: Option<String>,
    /// The error and its causes, for people.
    pub message: String,
}

impl AwsError {
    /// Builds one from any SDK error.
    pub fn from_sdk<E>(service: &'static str, action: &'static str, e: E) -> AwsError
    where
        E: aws_sdk_ec2::error::ProvideErrorMetadata + std::error::Error + 'static,
    {
        let code = e.code().map(str::to_string);
        let message = aws_sdk_ec2::error::DisplayErrorContext(&e).to_string();
        AwsError {
            service,
            action,
            code,
            message,
        }
    }

    /// The error code, or `"no answer"` for logs.
    pub fn code(&self) -> &str {
        self.code.as_deref().unwrap_or("no answer")
    }
}

/// aws-config's default chain (environment, profile, container and instance
/// credentials), in `region` when given, with `retry` (the SDK's standard mode:
/// exponential backoff with full jitter, throttling and 5xx retried).
pub async fn sdk_config(region: Option<String>, retry: RetryConfig) -> aws_config::SdkConfig {
    let mut loader =
        aws_config::defaults(aws_config::BehaviorVersion::latest()).retry_config(retry);
    if let Some(r) = region {
        loader = loader.region(aws_config::Region::new(r));
    }
    loader.load().await
}

/// The SDK's standard retry mode with `attempts` attempts in all, the first pause drawn
/// from `[0, initial)` and no pause over `max` (full jitter).
pub fn standard_retry(attempts: u32, initial: Duration, max: Duration) -> RetryConfig {
    RetryConfig::standard()
        .with_max_attempts(attempts)
        .with_initial_backoff(initial)
        .with_max_backoff(max)
}
