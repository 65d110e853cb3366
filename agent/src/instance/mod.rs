//! `rangefleet agent`: boot, then work until drained, then leave a summary.

pub mod events;
pub mod monitor;
pub mod publish;
pub mod sizing;
pub mod systemd;
pub mod worker;

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::boot::config::Config;
use crate::boot::Identity;
use crate::imds::ImdsClient;
use crate::queue::{self, Queue};
use crate::store::{Store, StoreCache};
use worker::{Control, Deps, DrainReason, Settings};

/// The SIGTERM drain budget (DESIGN 4): the unit's TimeoutStopSec is 110 s.
pub const SIGTERM_DEADLINE: Duration = Duration::from_secs(90);

/// Everything the agent needs once booted.
pub struct Agent {
    /// Who we are.
    pub identity: Identity,
    /// Effective tags.
    pub tags: std::collections::BTreeMap<String, String>,
    /// The config.
    pub config: Config,
    /// IMDS, for the monitor (absent with --no-imds).
    pub imds: Option<ImdsClient>,
    /// Exit when the queue is empty.
    pub until_empty: bool,
}

/// Why the agent could not run.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The config points at something unusable.
    #[error("{0}")]
    Config(String),
    /// Something failed at run time.
    #[error("{0}")]
    Runtime(String),
}

/// Runs the agent until it drains. `ready` is called once it is about to lease.
pub async fn run(agent: Agent, ready: impl FnOnce()) -> Result<worker::Outcome, AgentError> {
    let config = &agent.config;
    let queue: Arc<dyn Queue> = queue::open(&config.queue, Some(&agent.identity.region))
        .await
        .map_err(|e| AgentError::Config(format!("queue {}: {e}", config.queue)))?;
    let results = Store::open(&config.results)
        .await
        .map_err(|e| AgentError::Config(format!("results {}: {e}", config.results)))?;
    let vcpus = sizing::vcpus();
    let settings = Settings {
        concurrency: config.concurrency_for(vcpus),
        lease: Duration::from_secs(config.lease_seconds),
        // SQS long polls for 20 s; a batch run (--until-empty) polls for 2 s so it
        // notices the end promptly. SQLite polls locally, every second.
        poll_wait: if config.queue.starts_with("sqlite:") {
            Duration::from_secs(1)
        } else if agent.until_empty {
            Duration::from_secs(2)
        } else {
            Duration::from_secs(20)
        },
        inputs: config.inputs.clone(),
        exec: config
            .processors
            .exec
            .as_ref()
            .map(crate::process::exec::ExecSpec::from),
        drain_margin: Duration::from_secs(config.spot.drain_margin_seconds),
        until_empty: agent.until_empty,
    };
    let deps = Deps {
        queue,
        stores: StoreCache::default(),
        results: results.clone(),
        identity: agent.identity.clone(),
        tags: agent.tags.clone(),
    };
    let control = Control::default();
    let stop_monitor = CancellationToken::new();
    let signals = tokio::spawn(drain_on_signal(control.clone()));
    if let Some(imds) = agent.imds.clone() {
        tokio::spawn(crate::instance::monitor::run(
            imds,
            config.spot.clone(),
            control.clone(),
            stop_monitor.clone(),
        ));
    }
    if config.publish_tags {
        tokio::spawn(crate::instance::publish::run(
            agent.identity.clone(),
            config.tags.clone(),
        ));
    }
    tracing::info!(event = "agent_ready",
        MESSAGE_ID = crate::instance::events::BOOT,
        INSTANCE_ID = %agent.identity.instance_id,
        concurrency = settings.concurrency,
        queue = %config.queue,
        "agent ready"
    );
    ready();
    // Every entry the agent logs carries INSTANCE_ID (a span field, upper-cased in journald).
    let span = tracing::info_span!("agent", instance_id = %agent.identity.instance_id);
    let outcome = worker::run(deps, settings, control)
        .instrument(span)
        .await
        .map_err(AgentError::Config)?;
    stop_monitor.cancel();
    signals.abort();
    let summary = worker::summary(&agent.identity, &agent.tags, &outcome);
    let key = crate::contract::summary::summary_key(&agent.identity.instance_id);
    let body = serde_json::to_vec_pretty(&summary).expect("summaries serialise");
    if let Err(e) = results.put(&key, body.into()).await {
        tracing::error!(event = "summary_write_failed", error = %e, "failed to write the instance summary");
    }
    tracing::info!(
        event = "agent_stopped",
        MESSAGE_ID = crate::instance::events::DRAINED,
        done = outcome
            .counters
            .done
            .load(std::sync::atomic::Ordering::Relaxed),
        "agent stopped"
    );
    Ok(outcome)
}

/// SIGTERM or Ctrl-C: drain within [`SIGTERM_DEADLINE`]; a second one hurries to 5 s.
async fn drain_on_signal(control: Control) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        return;
    };
    let mut budget = SIGTERM_DEADLINE;
    loop {
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        tracing::warn!(
            event = "signal_drain",
            seconds = budget.as_secs(),
            "signal received: draining"
        );
        control.drain(
            Instant::now() + budget,
            DrainReason {
                kind: "sigterm".into(),
                detail: format!("drain within {} s", budget.as_secs()),
            },
        );
        budget = Duration::from_secs(5);
    }
}
