//! One instance's control plane: the composition root [`run`], and what it composes.
//!
//! [`run`] takes every client as a dependency ([`Deps`]), what boot learned
//! ([`Booted`]), and the shutdown signals as a stream, so a test drives a whole
//! instance's life in process, with fakes and paused time, exactly as the binary
//! drives it with real clients (`cli/agent.rs` builds them with [`Deps::connect`]):
//!
//! ```text
//! READY=1 → worker (lease → read → process → result → ack) + monitor (notices) + tags
//!         → a notice or a signal drains the worker → _instances/<id>.json
//!         → (a drain the group started) CompleteLifecycleAction CONTINUE → STOPPING=1
//! ```

pub mod events;
pub mod fetch;
pub mod health;
pub mod metrics;
pub mod monitor;
pub mod progress;
pub mod publish;
pub mod sizing;
pub mod systemd;
pub mod worker;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::boot::config::Config;
use crate::boot::Identity;
use crate::imds::ImdsClient;
use crate::queue::{self, Queue};
use crate::store::{Store, StoreCache};
use monitor::Notices;
use publish::TagPublisher;
use systemd::Notifier;
use worker::{Control, DrainReason, Settings};

/// The SIGTERM drain budget: the unit's TimeoutStopSec is 110 s (docs/operations.md).
pub const SIGTERM_DEADLINE: Duration = Duration::from_secs(90);
/// The budget after a second signal.
pub const HURRY_DEADLINE: Duration = Duration::from_secs(5);

/// The clients an instance works with.
#[derive(Clone)]
pub struct Deps {
    /// Where jobs come from.
    pub queue: Arc<dyn Queue>,
    /// Where results and the instance summary go.
    pub results: Store,
    /// Job sources, opened on first use.
    pub stores: StoreCache,
    /// The spot, rebalance and auto-scaling notices (none on one machine).
    pub notices: Option<Arc<dyn Notices>>,
    /// Publishes per-instance tags when the config asks for it.
    pub publisher: Arc<dyn TagPublisher>,
    /// The service manager (sd_notify).
    pub notifier: Arc<dyn Notifier>,
    /// The auto-scaling group's side of this instance: the drain hook is completed
    /// through it (none on one machine).
    pub group: Option<Arc<dyn health::Group>>,
}

impl Deps {
    /// The real clients for `config`: the queue and the results store it names, IMDS
    /// for the notices when there is one (and then Auto Scaling for the drain hook), EC2
    /// for tags, sd_notify.
    pub async fn connect(
        config: &Config,
        region: &str,
        imds: Option<ImdsClient>,
    ) -> Result<Deps, InstanceError> {
        // The agent never creates a SQLite queue: a mistyped path is refused.
        let queue = queue::open_for(&config.queue, Some(region), queue::Access::Write)
            .await
            .map_err(|source| InstanceError::Queue {
                url: config.queue.clone(),
                source,
            })?;
        let results =
            Store::open(&config.results)
                .await
                .map_err(|source| InstanceError::Results {
                    url: config.results.clone(),
                    source,
                })?;
        let group = match &imds {
            Some(_) => {
                let region = std::env::var_os("AWS_REGION")
                    .is_none()
                    .then(|| region.to_string());
                let client = crate::aws::autoscaling::AutoScaling::from_env(region).await;
                Some(Arc::new(client) as Arc<dyn health::Group>)
            }
            None => None,
        };
        Ok(Deps {
            group,
            queue,
            results,
            stores: StoreCache::default(),
            notices: imds.map(|c| Arc::new(c) as Arc<dyn Notices>),
            publisher: Arc::new(publish::Ec2Publisher),
            notifier: Arc::new(systemd::SdNotify::default()),
        })
    }
}

/// What boot learned, and how this run was asked to end.
#[derive(Debug, Clone)]
pub struct Booted {
    /// Who we are.
    pub identity: Identity,
    /// Effective tags.
    pub tags: BTreeMap<String, String>,
    /// The config.
    pub config: Config,
    /// Exit when the queue is empty (batch runs).
    pub until_empty: bool,
}

/// Why the instance could not run.
#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    /// The queue the config names cannot be opened.
    #[error("queue {url}: {source}")]
    Queue {
        /// The queue URL.
        url: String,
        /// Why.
        source: crate::queue::QueueError,
    },
    /// The results store the config names cannot be opened.
    #[error("results {url}: {source}")]
    Results {
        /// The results URL.
        url: String,
        /// Why.
        source: crate::store::StoreError,
    },
    /// An `inputs` entry is not an allowed prefix.
    #[error(transparent)]
    Inputs(#[from] crate::contract::allow::UrlError),
    /// With `--until-empty`, the queue could not be leased from (corrupt, read-only,
    /// access denied): a batch run stops rather than wait for ever.
    #[error("queue {url}: {reason}")]
    QueueUnusable {
        /// The queue URL.
        url: String,
        /// Why, from the queue.
        reason: String,
    },
    /// The `metrics_listen` address cannot be bound.
    #[error("metrics_listen {addr}: {source} (choose a free port, or remove metrics_listen)")]
    Metrics {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

impl InstanceError {
    /// The class of the failure: the config's fault ([`ErrorClass::Usage`]: a bad URL,
    /// a SQLite queue file that does not exist) or the environment's (a queue or store
    /// that cannot be used: disk full, read-only, corrupt, access denied).
    ///
    /// [`ErrorClass::Usage`]: crate::error::ErrorClass::Usage
    pub fn class(&self) -> crate::error::ErrorClass {
        use crate::error::ErrorClass;
        match self {
            InstanceError::Queue { source, .. } => match source.class() {
                ErrorClass::Usage => ErrorClass::Usage,
                _ => ErrorClass::Environment,
            },
            InstanceError::Results { source, .. } => match source.class() {
                ErrorClass::Environment | ErrorClass::Retryable => ErrorClass::Environment,
                _ => ErrorClass::Usage,
            },
            InstanceError::Inputs(_) => ErrorClass::Usage,
            InstanceError::QueueUnusable { .. } => ErrorClass::Environment,
            // A taken or forbidden metrics_listen address is the config's to fix.
            InstanceError::Metrics { .. } => ErrorClass::Usage,
        }
    }

    /// The exit code the binary ends with (docs/cli.md): 2 when the config is wrong
    /// (not restarted), 1 when the environment is (restarted by the unit).
    pub fn exit_code(&self) -> i32 {
        self.class().exit_code()
    }
}

/// Runs one instance until it drains: READY, work, a summary, STOPPING. Each item of
/// `shutdown` is one signal: the first drains within [`SIGTERM_DEADLINE`], each later
/// one within [`HURRY_DEADLINE`].
pub async fn run(
    deps: Deps,
    booted: Booted,
    shutdown: impl Stream<Item = ()> + Send + 'static,
) -> Result<worker::Outcome, InstanceError> {
    let config = &booted.config;
    let sizing = sizing::Sizing::for_instance(config, &booted.identity);
    let settings = Settings {
        concurrency: sizing.jobs_in_flight,
        gets: sizing.gets_in_flight,
        part_size: sizing.part_size,
        cpu_slots: sizing.cpu_slots,
        lease: Duration::from_secs(config.lease_seconds),
        // SQS long polls for 20 s; a batch run (--until-empty) polls for 2 s so it
        // notices the end promptly. SQLite polls locally, every second.
        poll_wait: if config.queue.starts_with("sqlite:") {
            Duration::from_secs(1)
        } else if booted.until_empty {
            Duration::from_secs(2)
        } else {
            Duration::from_secs(20)
        },
        inputs: config.inputs.clone(),
        exec: config.processors.exec.as_ref().map(Into::into),
        drain_margin: Duration::from_secs(config.spot.drain_margin_seconds),
        until_empty: booted.until_empty,
    };
    let worker_deps = worker::Deps {
        queue: deps.queue.clone(),
        stores: deps.stores.clone(),
        results: deps.results.clone(),
        identity: booted.identity.clone(),
        tags: booted.tags.clone(),
        notifier: deps.notifier.clone(),
    };
    let control = Control::default();
    let counters = Arc::new(worker::Counters::default());
    let stop_monitor = CancellationToken::new();
    // Bound before READY, so a wrong address fails the start rather than going unseen.
    let metrics_server = match config.metrics_listen {
        None => None,
        Some(addr) => {
            let listener = metrics::bind(addr)
                .await
                .map_err(|source| InstanceError::Metrics { addr, source })?;
            let bound = listener.local_addr().unwrap_or(addr);
            let registry = Arc::new(metrics::registry(
                counters.clone(),
                sizing.throughput_gbps,
                sizing.gets_in_flight,
            ));
            tracing::info!(
                event = "metrics_listening",
                INSTANCE_ID = %booted.identity.instance_id,
                addr = %bound,
                path = metrics::PATH,
                "serving metrics"
            );
            let stop = CancellationToken::new();
            let task = tokio::spawn(metrics::serve(listener, registry, stop.clone()));
            Some((task, stop))
        }
    };
    let signals = tokio::spawn(
        drain_on_signals(Box::pin(shutdown), control.clone()).instrument(tracing::info_span!(
            "agent",
            instance_id = %booted.identity.instance_id
        )),
    );
    // Every entry the agent logs carries INSTANCE_ID (a span field, upper-cased in
    // journald): the worker's, the monitor's and the signal handler's.
    let span = tracing::info_span!("agent", instance_id = %booted.identity.instance_id);
    let monitor = deps.notices.clone().map(|notices| {
        tokio::spawn(
            monitor::run_counted(
                notices,
                config.spot.clone(),
                control.clone(),
                stop_monitor.clone(),
                counters.clone(),
            )
            .instrument(span.clone()),
        )
    });
    let progress = tokio::spawn(
        progress::run(counters.clone(), progress::EVERY, stop_monitor.clone())
            .instrument(span.clone()),
    );
    let publishing = config.publish_tags.then(|| {
        let publisher = deps.publisher.clone();
        let (identity, tags) = (booted.identity.clone(), config.tags.clone());
        tokio::spawn(async move { publisher.publish(identity, tags).await })
    });
    tracing::info!(
        event = "agent_ready",
        MESSAGE_ID = events::BOOT,
        INSTANCE_ID = %booted.identity.instance_id,
        concurrency = settings.concurrency,
        throughput_gbps = sizing.throughput_gbps,
        gets_in_flight = sizing.gets_in_flight,
        part_size = sizing.part_size,
        cpu_slots = sizing.cpu_slots,
        source = sizing.source.as_str(),
        instance_type = %booted.identity.instance_type,
        queue = %config.queue,
        version = crate::contract::summary::VERSION_STR,
        commit = crate::contract::summary::COMMIT,
        "agent ready"
    );
    deps.notifier.ready();
    let working = Instant::now();
    let result = worker::run_counted(worker_deps, settings, control, counters.clone())
        .instrument(span.clone())
        .await;
    // The monitor and the progress line stop here; the metrics endpoint serves the
    // final counts until the summary is written.
    stop_monitor.cancel();
    signals.abort();
    if let Some(m) = monitor {
        let _ = m.await;
    }
    let _ = progress.await;
    span.in_scope(|| progress::last(&counters, working.elapsed()));
    if let Some(p) = publishing {
        p.abort();
    }
    let outcome = match result {
        Ok(o) => o,
        Err(e) => {
            if let Some((task, stop)) = metrics_server {
                stop.cancel();
                task.abort();
            }
            return Err(InstanceError::Inputs(e));
        }
    };
    let mut summary = worker::summary(&booted.identity, &booted.tags, &outcome);
    summary.throughput = Some(sizing.summary(&outcome.window));
    summary.metrics = Some(metrics::summary(&outcome.counters));
    summary.agent = Some(crate::contract::summary::AgentBuild::current());
    let key = crate::contract::summary::summary_key(&booted.identity.instance_id);
    if let Err(e) = deps.results.put(&key, summary.to_bytes().into()).await {
        tracing::error!(event = "summary_write_failed", error = %e, "failed to write the instance summary");
    }
    // Drained because the group is terminating the instance: let it go now rather than
    // at the hook's heartbeat timeout.
    let by_group = outcome
        .drain
        .as_ref()
        .is_some_and(|d| d.kind == monitor::ASG_TERMINATION);
    if let (true, Some(group)) = (by_group, &deps.group) {
        health::complete_drain(
            &booted.identity.instance_id,
            &config.lifecycle_hook,
            group.as_ref(),
        )
        .await;
    }
    if let Some(reason) = &outcome.queue_fault {
        return Err(InstanceError::QueueUnusable {
            url: config.queue.clone(),
            reason: reason.clone(),
        });
    }
    tracing::info!(
        event = "agent_stopped",
        MESSAGE_ID = events::DRAINED,
        INSTANCE_ID = %booted.identity.instance_id,
        done = outcome
            .counters
            .done
            .load(std::sync::atomic::Ordering::Relaxed),
        "agent stopped"
    );
    deps.notifier.stopping();
    if let Some((task, stop)) = metrics_server {
        stop.cancel();
        let _ = task.await;
    }
    Ok(outcome)
}

/// Drains on each signal: within [`SIGTERM_DEADLINE`], then [`HURRY_DEADLINE`].
async fn drain_on_signals(
    mut shutdown: std::pin::Pin<Box<dyn Stream<Item = ()> + Send>>,
    control: Control,
) {
    let mut budget = SIGTERM_DEADLINE;
    while shutdown.next().await.is_some() {
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
        budget = HURRY_DEADLINE;
    }
}
