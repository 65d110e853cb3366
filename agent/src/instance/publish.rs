//! Opt-in per-instance tag publishing (docs/architecture.md, `publish_tags: true`).
//!
//! EC2 throttles CreateTags per account (a bucket of 100, refilled at 10 a second), so a
//! thousand instances booting together must not call it at once. Each agent calls it
//! once, in the background, after a random delay (uniform in `[0, jitter)`), on its own
//! instance only. aws-sdk-ec2 retries throttling and server errors in its standard mode
//! (exponential backoff with full jitter, up to [`DEFAULT_ATTEMPTS`] attempts), and the
//! whole call gives up with a warning after a bounded time. Nothing here can block or
//! fail the agent: jobs go on whatever happens.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::aws::ec2::Ec2;
use crate::boot::Identity;

/// Longest spread of the first call (docs/architecture.md): 1,000 instances over 30 s is about 33
/// calls a second against a refill of 10, which the backoff then absorbs.
pub const DEFAULT_JITTER: Duration = Duration::from_secs(30);
/// Give up this long after the first attempt.
pub const DEFAULT_GIVE_UP: Duration = Duration::from_secs(300);
/// CreateTags attempts in all (the SDK's standard retry mode).
pub const DEFAULT_ATTEMPTS: u32 = 10;
/// The SDK's first retry pauses up to this long, doubling each time.
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(500);
/// No retry pause is longer.
pub const MAX_BACKOFF: Duration = Duration::from_secs(20);
/// Overrides [`DEFAULT_JITTER`], in milliseconds (tests).
pub const JITTER_ENV: &str = "RANGEFLEET_PUBLISH_JITTER_MS";
/// Overrides [`DEFAULT_GIVE_UP`], in milliseconds (tests).
pub const GIVE_UP_ENV: &str = "RANGEFLEET_PUBLISH_GIVE_UP_MS";

/// How publishing is spread and bounded.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The first call waits uniform in `[0, jitter)`.
    pub jitter: Duration,
    /// The call, retries included, stops this long after the first attempt.
    pub give_up: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            jitter: DEFAULT_JITTER,
            give_up: DEFAULT_GIVE_UP,
        }
    }
}

impl Settings {
    /// The defaults, with [`JITTER_ENV`] and [`GIVE_UP_ENV`] applied (never above the
    /// defaults for the jitter: the spread is what protects the account).
    pub fn from_env() -> Settings {
        let ms = |k: &str| {
            std::env::var(k)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_millis)
        };
        let mut s = Settings::default();
        if let Some(j) = ms(JITTER_ENV) {
            s.jitter = j.min(DEFAULT_JITTER);
        }
        if let Some(g) = ms(GIVE_UP_ENV) {
            s.give_up = g;
        }
        s
    }
}

/// How one publication ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Published {
    /// Every tag is on the instance.
    Done {
        /// HTTP attempts made, the successful one included.
        attempts: u32,
    },
    /// Nothing to publish (only `aws:` tags, or none).
    Nothing,
    /// Stopped: a permanent error, the attempts used up, or time ran out.
    GaveUp {
        /// HTTP attempts made.
        attempts: u32,
        /// The last error.
        error: String,
    },
}

/// The tags to publish: those of the config's `tags` whose value has a placeholder
/// (`Name: worker-{instance_id}`), expanded for this instance. Plain values are set at
/// launch by the launch template, and the Terraform module's IAM policy lets an
/// instance CreateTags only with the templated keys (`aws:TagKeys`), so sending the
/// others would be refused. `aws:` keys are AWS's own and never sent.
pub fn publishable(
    config_tags: &BTreeMap<String, String>,
    identity: &Identity,
) -> Vec<(String, String)> {
    config_tags
        .iter()
        .filter(|(k, _)| !k.as_bytes().starts_with(b"aws:"))
        .filter_map(|(k, v)| {
            let value = crate::boot::tags::expand(v, identity);
            (value != *v).then(|| (k.clone(), value))
        })
        .collect()
}

/// Waits the jitter, then tags `identity`'s instance with the per-instance tags of
/// `config_tags` ([`publishable`]) through `client`, whose SDK retry settings decide
/// what is retried (throttling, 5xx, no answer) and how often; stops after
/// `settings.give_up` whatever the retries.
pub async fn publish(
    client: &Ec2,
    identity: &Identity,
    config_tags: &BTreeMap<String, String>,
    settings: Settings,
) -> Published {
    let tags = publishable(config_tags, identity);
    if tags.is_empty() {
        return Published::Nothing;
    }
    let wait = crate::backoff::uniform(settings.jitter);
    if !wait.is_zero() {
        tracing::debug!(
            event = "tags_waiting",
            wait_ms = wait.as_millis() as u64,
            "tag publishing: waiting before CreateTags"
        );
        tokio::time::sleep(wait).await;
    }
    let before = client.attempts();
    let result = tokio::time::timeout(
        settings.give_up,
        client.create_tags(&identity.instance_id, &tags),
    )
    .await;
    let attempts = client.attempts() - before;
    match result {
        Ok(Ok(())) => Published::Done { attempts },
        Ok(Err(e)) => Published::GaveUp {
            attempts,
            error: format!("CreateTags on {} failed: {e}", identity.instance_id),
        },
        Err(_) => Published::GaveUp {
            attempts,
            error: format!(
                "CreateTags on {} still failing after {} s",
                identity.instance_id,
                settings.give_up.as_secs()
            ),
        },
    }
}

/// The agent's background task: builds an EC2 client for the instance's region (unless
/// `AWS_REGION` says otherwise), publishes the per-instance tags of `config_tags` (the
/// config's `tags`, as written), and logs how it went. Never panics, never returns an
/// error.
pub async fn run(identity: Identity, config_tags: BTreeMap<String, String>) {
    let region = std::env::var_os("AWS_REGION")
        .is_none()
        .then(|| identity.region.clone());
    let retry = crate::aws::standard_retry(DEFAULT_ATTEMPTS, INITIAL_BACKOFF, MAX_BACKOFF);
    let client = Ec2::from_env(region, retry).await;
    match publish(&client, &identity, &config_tags, Settings::from_env()).await {
        Published::Done { attempts } => tracing::info!(
            event = "instance_tags_published",
            attempts,
            "instance tags published"
        ),
        Published::Nothing => {
            tracing::debug!(event = "tags_none", "tag publishing: no tags to publish")
        }
        Published::GaveUp { attempts, error } => tracing::warn!(event = "tags_gave_up",
            attempts,
            %error,
            "tag publishing gave up; jobs go on, the launch template's tags stay"
        ),
    }
}

/// Publishes an instance's per-instance tags: the seam the composition root calls when
/// the config says `publish_tags: true`.
#[async_trait::async_trait]
pub trait TagPublisher: Send + Sync {
    /// Tags `identity`'s instance with the templated tags of `config_tags`. Never fails
    /// the agent: a publisher that cannot publish logs why and returns.
    async fn publish(&self, identity: Identity, config_tags: BTreeMap<String, String>);
}

/// The real publisher: CreateTags through EC2 ([`run`]).
#[derive(Debug, Default)]
pub struct Ec2Publisher;

#[async_trait::async_trait]
impl TagPublisher for Ec2Publisher {
    async fn publish(&self, identity: Identity, config_tags: BTreeMap<String, String>) {
        run(identity, config_tags).await;
    }
}

#[cfg(any(test, feature = "test-util"))]
/// A publisher that records what it was asked to publish, for in-process tests.
#[derive(Debug, Default)]
pub struct RecordingPublisher {
    calls: std::sync::Mutex<Vec<Vec<(String, String)>>>,
}

#[cfg(any(test, feature = "test-util"))]
impl RecordingPublisher {
    /// The tags of each call, as [`publishable`] expanded them.
    pub fn calls(&self) -> Vec<Vec<(String, String)>> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[cfg(any(test, feature = "test-util"))]
#[async_trait::async_trait]
impl TagPublisher for RecordingPublisher {
    async fn publish(&self, identity: Identity, config_tags: BTreeMap<String, String>) {
        let tags = publishable(&config_tags, &identity);
        self.calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(tags);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_templated_tags_are_published_expanded() {
        let tags: BTreeMap<String, String> = [
            ("aws:cloudformation:stack-name", "{instance_id}"),
            ("Name", "worker-{instance_id}"),
            ("slot", "{availability_zone}/{launch_index}"),
            ("team", "data"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let id = Identity::local("i-0abc", "us-east-1");
        let got = publishable(&tags, &id);
        assert_eq!(
            got,
            [
                ("Name".to_string(), "worker-i-0abc".to_string()),
                ("slot".to_string(), "us-east-1-local/0".to_string())
            ]
        );
    }
}
