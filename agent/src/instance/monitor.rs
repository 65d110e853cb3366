//! The monitor: polls IMDS for the notices that end an instance's life (DESIGN 2, 4).
//!
//! - `spot/instance-action`: a spot interruption, two minutes ahead → drain by its time;
//! - `events/recommendations/rebalance`: elevated risk → what `spot.on_rebalance` says;
//! - `autoscaling/target-lifecycle-state` = `Terminated`: scale-in or instance refresh →
//!   drain within the SIGTERM budget.
//!
//! 404 is the normal answer. An IMDS error is logged and counted, never fatal: the
//! worker goes on. Each notice is acted on once, deduplicated by a hash of its payload.

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::boot::config::{OnRebalance, SpotConfig};
use crate::imds::ImdsClient;
use crate::instance::events;
use crate::instance::worker::{Control, DrainReason};

/// How long a drain may take when the notice gives no time (ASG, rebalance → drain).
pub const DEFAULT_DRAIN: Duration = Duration::from_secs(90);

/// Polls until `stop` is cancelled, steering `control`. Returns the number of IMDS
/// errors seen.
pub async fn run(
    imds: ImdsClient,
    spot: SpotConfig,
    control: Control,
    stop: CancellationToken,
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
        for (path, kind) in [
            ("/latest/meta-data/spot/instance-action", Kind::Interruption),
            (
                "/latest/meta-data/events/recommendations/rebalance",
                Kind::Rebalance,
            ),
            (
                "/latest/meta-data/autoscaling/target-lifecycle-state",
                Kind::Lifecycle,
            ),
        ] {
            match imds.get_text(path, budget).await {
                Ok(None) => {}
                Ok(Some(text)) => {
                    if kind == Kind::Lifecycle && text != "Terminated" {
                        continue;
                    }
                    let mut h = std::collections::hash_map::DefaultHasher::new();
                    (path, &text).hash(&mut h);
                    if seen.insert(h.finish()) {
                        act(kind, &text, &spot, &control);
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Interruption,
    Rebalance,
    Lifecycle,
}

fn act(kind: Kind, payload: &str, spot: &SpotConfig, control: &Control) {
    match kind {
        Kind::Interruption => {
            let v: serde_json::Value = serde_json::from_str(payload).unwrap_or_default();
            let action = v["action"].as_str().unwrap_or("terminate").to_string();
            let left = v["time"]
                .as_str()
                .and_then(|t| humantime::parse_rfc3339(t).ok())
                .and_then(|t| t.duration_since(SystemTime::now()).ok())
                .unwrap_or(Duration::ZERO)
                .min(Duration::from_secs(120));
            tracing::warn!(
                event = "spot_interruption",
                MESSAGE_ID = events::INTERRUPTION,
                action,
                seconds_left = left.as_secs(),
                "spot interruption notice: draining"
            );
            control.drain(
                Instant::now() + left,
                DrainReason {
                    kind: "spot-interruption".into(),
                    detail: payload.to_string(),
                },
            );
        }
        Kind::Rebalance => {
            tracing::warn!(event = "rebalance_recommendation", MESSAGE_ID = events::REBALANCE, on_rebalance = ?spot.on_rebalance, "rebalance recommendation");
            match spot.on_rebalance {
                OnRebalance::Ignore => {}
                OnRebalance::StopLeasing => control.stop_leasing(),
                OnRebalance::Drain => control.drain(
                    Instant::now() + DEFAULT_DRAIN,
                    DrainReason {
                        kind: "rebalance".into(),
                        detail: payload.to_string(),
                    },
                ),
            }
        }
        Kind::Lifecycle => {
            tracing::warn!(
                event = "asg_termination",
                MESSAGE_ID = events::ASG_TERMINATION,
                "auto-scaling is terminating this instance: draining"
            );
            control.drain(
                Instant::now() + DEFAULT_DRAIN,
                DrainReason {
                    kind: "asg-termination".into(),
                    detail: payload.to_string(),
                },
            );
        }
    }
}
