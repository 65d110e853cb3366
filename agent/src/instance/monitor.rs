//! The monitor: polls for the notices that end an instance's life, decides, acts.
//!
//! - `spot/instance-action`: a spot interruption, two minutes ahead → drain by its time;
//! - `events/recommendations/rebalance`: elevated risk → what `spot.on_rebalance` says;
//! - `autoscaling/target-lifecycle-state` = `Terminated`: scale-in or instance refresh →
//!   drain within the SIGTERM budget.
//!
//! Three parts: [`Notices`] is the seam (IMDS in production, [`FakeNotices`] in tests),
//! [`decide`] is a pure function from one notice and the time to a [`Decision`], and
//! [`run`] polls, deduplicates by a hash of the payload, and acts on the worker's
//! [`Control`]. Absent (404) is the normal answer. An IMDS error is logged and counted,
//! never fatal: the worker goes on.
//!
//! A malformed spot notice (not JSON, no parseable `time`) is taken as the worst case,
//! an interruption now: every job in flight is released at once. Releasing costs a
//! little repeated work; waiting on a notice we cannot read could cost the instance.

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::boot::config::{OnRebalance, SpotConfig};
use crate::imds::{ImdsClient, ImdsError};

/// The drain kind of `autoscaling/target-lifecycle-state = Terminated`: after such a
/// drain the agent completes the group's lifecycle action.
pub const ASG_TERMINATION: &str = "asg-termination";
use crate::instance::events;
use crate::instance::worker::{Control, Counters, DrainReason};

/// How long a drain may take when the notice gives no time (ASG, rebalance → drain).
pub const DEFAULT_DRAIN: Duration = Duration::from_secs(90);
/// The longest warning a spot interruption gives: a notice further ahead is capped.
pub const SPOT_WARNING: Duration = Duration::from_secs(120);

/// IMDS path of the spot interruption notice.
pub const SPOT_PATH: &str = "/latest/meta-data/spot/instance-action";
/// IMDS path of the rebalance recommendation.
pub const REBALANCE_PATH: &str = "/latest/meta-data/events/recommendations/rebalance";
/// IMDS path of the auto-scaling lifecycle state.
pub const LIFECYCLE_PATH: &str = "/latest/meta-data/autoscaling/target-lifecycle-state";

/// Where the notices come from: each getter is `Ok(None)` while there is none.
#[async_trait]
pub trait Notices: Send + Sync {
    /// The spot interruption notice (JSON: `action`, `time`).
    async fn spot_instance_action(&self, deadline: Instant) -> Result<Option<String>, ImdsError>;
    /// The rebalance recommendation (JSON: `noticeTime`).
    async fn rebalance_recommendation(
        &self,
        deadline: Instant,
    ) -> Result<Option<String>, ImdsError>;
    /// The auto-scaling target lifecycle state (`InService`, `Terminated`, …).
    async fn target_lifecycle_state(&self, deadline: Instant) -> Result<Option<String>, ImdsError>;
}

#[async_trait]
impl Notices for ImdsClient {
    async fn spot_instance_action(&self, deadline: Instant) -> Result<Option<String>, ImdsError> {
        self.get_text(SPOT_PATH, deadline).await
    }
    async fn rebalance_recommendation(
        &self,
        deadline: Instant,
    ) -> Result<Option<String>, ImdsError> {
        self.get_text(REBALANCE_PATH, deadline).await
    }
    async fn target_lifecycle_state(&self, deadline: Instant) -> Result<Option<String>, ImdsError> {
        self.get_text(LIFECYCLE_PATH, deadline).await
    }
}

#[cfg(any(test, feature = "test-util"))]
/// Notices set by a test; [`FakeNotices::fail`] makes every poll fail.
#[derive(Debug, Default)]
pub struct FakeNotices {
    spot: std::sync::Mutex<Option<String>>,
    rebalance: std::sync::Mutex<Option<String>>,
    lifecycle: std::sync::Mutex<Option<String>>,
    failing: std::sync::atomic::AtomicBool,
    polls: std::sync::atomic::AtomicU64,
}

#[cfg(any(test, feature = "test-util"))]
impl FakeNotices {
    /// Posts a spot interruption notice.
    pub fn post_spot(&self, payload: &str) {
        *self.spot.lock().unwrap() = Some(payload.to_string());
    }
    /// Posts a rebalance recommendation.
    pub fn post_rebalance(&self, payload: &str) {
        *self.rebalance.lock().unwrap() = Some(payload.to_string());
    }
    /// Sets the lifecycle state.
    pub fn set_lifecycle(&self, state: &str) {
        *self.lifecycle.lock().unwrap() = Some(state.to_string());
    }
    /// Makes every poll fail (true) or answer again (false).
    pub fn fail(&self, failing: bool) {
        self.failing
            .store(failing, std::sync::atomic::Ordering::Relaxed);
    }
    /// How many notices were asked for.
    pub fn polls(&self) -> u64 {
        self.polls.load(std::sync::atomic::Ordering::Relaxed)
    }
    fn answer(
        &self,
        slot: &std::sync::Mutex<Option<String>>,
        path: &str,
    ) -> Result<Option<String>, ImdsError> {
        self.polls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if self.failing.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(ImdsError::Status {
                endpoint: "fake://imds".into(),
                path: path.into(),
                status: 500,
                body: "injected".into(),
            });
        }
        Ok(slot.lock().unwrap().clone())
    }
}

#[cfg(any(test, feature = "test-util"))]
#[async_trait]
impl Notices for FakeNotices {
    async fn spot_instance_action(&self, _: Instant) -> Result<Option<String>, ImdsError> {
        self.answer(&self.spot, SPOT_PATH)
    }
    async fn rebalance_recommendation(&self, _: Instant) -> Result<Option<String>, ImdsError> {
        self.answer(&self.rebalance, REBALANCE_PATH)
    }
    async fn target_lifecycle_state(&self, _: Instant) -> Result<Option<String>, ImdsError> {
        self.answer(&self.lifecycle, LIFECYCLE_PATH)
    }
}

/// One notice, as read.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Notice {
    /// `spot/instance-action`'s payload.
    Interruption(String),
    /// The rebalance recommendation's payload.
    Rebalance(String),
    /// The lifecycle state.
    Lifecycle(String),
}

/// What a notice asks of the worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Nothing (a lifecycle state other than `Terminated`, a rebalance set to ignore).
    Ignore,
    /// Take no new jobs; finish those in flight.
    StopLeasing,
    /// Stop leasing and have every job finished or released within `within` of now.
    Drain {
        /// Time left.
        within: Duration,
        /// Why, for the summary and the logs.
        reason: DrainReason,
        /// The notice could not be read as documented (and was taken as the worst case).
        malformed: bool,
    },
}

/// Decides what `notice`, seen at `now`, asks for.
pub fn decide(notice: &Notice, now: SystemTime, on_rebalance: OnRebalance) -> Decision {
    match notice {
        Notice::Interruption(payload) => {
            let time = serde_json::from_str::<serde_json::Value>(payload)
                .ok()
                .and_then(|v| v.get("time")?.as_str().map(str::to_string))
                .and_then(|t| humantime::parse_rfc3339(&t).ok());
            let within = time
                .map(|t| t.duration_since(now).unwrap_or(Duration::ZERO))
                .unwrap_or(Duration::ZERO)
                .min(SPOT_WARNING);
            Decision::Drain {
                within,
                reason: DrainReason {
                    kind: "spot-interruption".into(),
                    detail: payload.clone(),
                },
                malformed: time.is_none(),
            }
        }
        Notice::Rebalance(payload) => match on_rebalance {
            OnRebalance::Ignore => Decision::Ignore,
            OnRebalance::StopLeasing => Decision::StopLeasing,
            OnRebalance::Drain => Decision::Drain {
                within: DEFAULT_DRAIN,
                reason: DrainReason {
                    kind: "rebalance".into(),
                    detail: payload.clone(),
                },
                malformed: false,
            },
        },
        Notice::Lifecycle(state) if state.trim() == "Terminated" => Decision::Drain {
            within: DEFAULT_DRAIN,
            reason: DrainReason {
                kind: ASG_TERMINATION.into(),
                detail: state.clone(),
            },
            malformed: false,
        },
        Notice::Lifecycle(_) => Decision::Ignore,
    }
}

/// Acts on a decision: logs it (with its MESSAGE_ID) and steers `control`.
pub fn act(notice: &Notice, decision: Decision, control: &Control) {
    match (notice, &decision) {
        (
            Notice::Interruption(payload),
            Decision::Drain {
                within, malformed, ..
            },
        ) => {
            let action = serde_json::from_str::<serde_json::Value>(payload)
                .ok()
                .and_then(|v| v.get("action")?.as_str().map(str::to_string))
                .unwrap_or_else(|| "unknown".into());
            tracing::warn!(
                event = "spot_interruption",
                MESSAGE_ID = events::INTERRUPTION,
                action,
                seconds_left = within.as_secs(),
                malformed,
                "spot interruption notice: draining"
            );
        }
        (Notice::Rebalance(_), d) => tracing::warn!(
            event = "rebalance_recommendation",
            MESSAGE_ID = events::REBALANCE,
            decision = decision_name(d),
            "rebalance recommendation"
        ),
        (Notice::Lifecycle(_), Decision::Drain { .. }) => tracing::warn!(
            event = "asg_termination",
            MESSAGE_ID = events::ASG_TERMINATION,
            "auto-scaling is terminating this instance: draining"
        ),
        _ => {}
    }
    match decision {
        Decision::Ignore => {}
        Decision::StopLeasing => control.stop_leasing(),
        Decision::Drain { within, reason, .. } => control.drain(Instant::now() + within, reason),
    }
}

fn decision_name(d: &Decision) -> &'static str {
    match d {
        Decision::Ignore => "ignore",
        Decision::StopLeasing => "stop-leasing",
        Decision::Drain { .. } => "drain",
    }
}

/// Polls until `stop` is cancelled, steering `control`. Returns the number of poll
/// errors seen.
pub async fn run(
    notices: Arc<dyn Notices>,
    spot: SpotConfig,
    control: Control,
    stop: CancellationToken,
) -> u64 {
    run_counted(notices, spot, control, stop, Arc::default()).await
}

/// The kind a notice is counted under (`rangefleet_notices_total{kind}`).
pub fn notice_kind(notice: &Notice) -> &'static str {
    match notice {
        Notice::Interruption(_) => "spot-interruption",
        Notice::Rebalance(_) => "rebalance",
        Notice::Lifecycle(_) => ASG_TERMINATION,
    }
}

/// [`run`], counting each notice acted on in `counters` (the metrics and the summary).
pub async fn run_counted(
    notices: Arc<dyn Notices>,
    spot: SpotConfig,
    control: Control,
    stop: CancellationToken,
    counters: Arc<Counters>,
) -> u64 {
    let poll = Duration::from_secs(spot.poll_seconds.max(1));
    let mut seen: HashSet<u64> = HashSet::new();
    let mut errors = 0u64;
    let mut tick = tokio::time::interval(poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return errors,
        }
        let budget = Instant::now() + poll.min(Duration::from_secs(2));
        let answers = [
            notices
                .spot_instance_action(budget)
                .await
                .map(|o| o.map(Notice::Interruption)),
            notices
                .rebalance_recommendation(budget)
                .await
                .map(|o| o.map(Notice::Rebalance)),
            notices
                .target_lifecycle_state(budget)
                .await
                .map(|o| o.map(Notice::Lifecycle)),
        ];
        for answer in answers {
            match answer {
                Ok(None) => {}
                Ok(Some(notice)) => {
                    let decision = decide(&notice, SystemTime::now(), spot.on_rebalance);
                    if decision == Decision::Ignore && matches!(notice, Notice::Lifecycle(_)) {
                        continue; // InService and the like: not a notice at all.
                    }
                    let mut h = std::collections::hash_map::DefaultHasher::new();
                    notice.hash(&mut h);
                    if seen.insert(h.finish()) {
                        counters.notice(notice_kind(&notice));
                        act(&notice, decision, &control);
                    }
                }
                Err(e) => {
                    errors += 1;
                    tracing::warn!(event = "imds_poll_failed", error = %e, errors, "IMDS poll failed; the worker goes on");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> SystemTime {
        humantime::parse_rfc3339(s).unwrap()
    }

    fn drain_within(d: &Decision) -> Option<Duration> {
        match d {
            Decision::Drain { within, .. } => Some(*within),
            _ => None,
        }
    }

    #[test]
    fn a_spot_notice_drains_by_its_time() {
        let n = Notice::Interruption(
            r#"{"action": "terminate", "time": "2026-12-01T12:02:00Z"}"#.into(),
        );
        let d = decide(&n, at("2026-12-01T12:00:30Z"), OnRebalance::StopLeasing);
        assert_eq!(drain_within(&d), Some(Duration::from_secs(90)));
        let Decision::Drain {
            reason, malformed, ..
        } = d
        else {
            unreachable!()
        };
        assert_eq!(reason.kind, "spot-interruption");
        assert!(!malformed);
    }

    #[test]
    fn a_spot_notice_in_the_past_drains_now_and_one_too_far_ahead_is_capped() {
        let now = at("2026-12-01T12:00:00Z");
        let past =
            Notice::Interruption(r#"{"action":"stop","time":"2026-12-01T11:59:00Z"}"#.into());
        assert_eq!(
            drain_within(&decide(&past, now, OnRebalance::Ignore)),
            Some(Duration::ZERO)
        );
        let far = Notice::Interruption(r#"{"action":"stop","time":"2026-12-01T13:00:00Z"}"#.into());
        assert_eq!(
            drain_within(&decide(&far, now, OnRebalance::Ignore)),
            Some(SPOT_WARNING)
        );
    }

    #[test]
    fn a_malformed_spot_notice_is_the_worst_case_an_interruption_now() {
        let now = at("2026-12-01T12:00:00Z");
        for payload in [
            "not json",
            "{}",
            r#"{"action":"terminate"}"#,
            r#"{"action":"terminate","time":"soon"}"#,
            r#"{"time": 5}"#,
            "",
        ] {
            let d = decide(
                &Notice::Interruption(payload.into()),
                now,
                OnRebalance::Ignore,
            );
            match d {
                Decision::Drain {
                    within, malformed, ..
                } => {
                    assert_eq!(within, Duration::ZERO, "{payload:?}");
                    assert!(malformed, "{payload:?}");
                }
                other => panic!("{payload:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_rebalance_does_what_the_config_says() {
        let n = Notice::Rebalance(r#"{"noticeTime":"2026-12-01T12:00:00Z"}"#.into());
        let now = at("2026-12-01T12:00:00Z");
        assert_eq!(decide(&n, now, OnRebalance::Ignore), Decision::Ignore);
        assert_eq!(
            decide(&n, now, OnRebalance::StopLeasing),
            Decision::StopLeasing
        );
        assert_eq!(
            drain_within(&decide(&n, now, OnRebalance::Drain)),
            Some(DEFAULT_DRAIN)
        );
    }

    #[test]
    fn only_the_terminated_lifecycle_state_drains() {
        let now = at("2026-12-01T12:00:00Z");
        for state in ["InService", "Warmed:Running", "Pending", ""] {
            assert_eq!(
                decide(&Notice::Lifecycle(state.into()), now, OnRebalance::Drain),
                Decision::Ignore,
                "{state}"
            );
        }
        assert_eq!(
            drain_within(&decide(
                &Notice::Lifecycle("Terminated".into()),
                now,
                OnRebalance::Ignore
            )),
            Some(DEFAULT_DRAIN)
        );
    }

    fn spot_config() -> SpotConfig {
        SpotConfig {
            poll_seconds: 5,
            on_rebalance: OnRebalance::StopLeasing,
            drain_margin_seconds: 20,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_loop_acts_once_per_notice_and_survives_poll_errors() {
        let notices = Arc::new(FakeNotices::default());
        let control = Control::default();
        let stop = CancellationToken::new();
        let counters = Arc::new(Counters::default());
        let task = tokio::spawn(run_counted(
            notices.clone(),
            spot_config(),
            control.clone(),
            stop.clone(),
            counters.clone(),
        ));
        notices.fail(true);
        tokio::time::sleep(Duration::from_secs(12)).await;
        assert!(!control.is_stopped(), "poll errors are not notices");
        notices.fail(false);
        notices.set_lifecycle("InService");
        tokio::time::sleep(Duration::from_secs(6)).await;
        assert!(!control.is_stopped(), "InService is not a notice");
        notices.post_rebalance(r#"{"noticeTime":"2026-12-01T12:00:00Z"}"#);
        tokio::time::sleep(Duration::from_secs(6)).await;
        assert!(control.is_stopped(), "stop-leasing on rebalance");
        assert!(
            control.drain_state().is_none(),
            "a rebalance set to stop-leasing is no drain"
        );
        notices.set_lifecycle("Terminated");
        tokio::time::sleep(Duration::from_secs(6)).await;
        let (deadline, reason) = control.drain_state().expect("drained on Terminated");
        assert_eq!(reason.kind, "asg-termination");
        // The same notice again changes nothing; a later, earlier deadline wins.
        tokio::time::sleep(Duration::from_secs(6)).await;
        assert_eq!(control.drain_state().unwrap().0, deadline);
        notices.post_spot("garbled");
        tokio::time::sleep(Duration::from_secs(6)).await;
        let (now_deadline, reason) = control.drain_state().unwrap();
        assert_eq!(reason.kind, "spot-interruption");
        assert!(now_deadline < deadline);
        stop.cancel();
        let errors = task.await.unwrap();
        assert!(errors >= 6, "every failed poll counted: {errors}");
        // Each notice counted once, however often it was polled; InService not at all.
        let seen = counters.notices.lock().unwrap().clone();
        let want = [
            ("asg-termination", 1),
            ("rebalance", 1),
            ("spot-interruption", 1),
        ];
        assert_eq!(
            seen,
            want.into_iter().map(|(k, n)| (k.to_string(), n)).collect()
        );
    }
}
