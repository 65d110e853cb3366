//! The worker loop: lease → ranged part reads → process → create-only result → ack.
//!
//! Up to `concurrency` jobs run at once, and the loop leases only as many messages as
//! it has free slots. Each job is read in record-aligned parts through one window of
//! GETs in flight shared by all jobs (`instance/fetch.rs`); `exec` jobs also wait for
//! one of `cpu_slots` before they read. Each job heartbeats its lease at a third of its
//! length. Errors are handled by class (docs/architecture.md#defaults): a bad job is
//! dead-lettered with its reason; a retryable
//! failure releases the job (dead-lettered at its 5th receive); a fault of the agent or
//! its environment (a full, read-only or refused results disk, 403, missing
//! credentials) pauses leasing, and the job keeps its lease (heartbeaten) and is tried
//! again after the pause, so a wrong role or a full disk never dead-letters a plan's
//! worth of good jobs nor spends their receives.
//!
//! Draining: [`Control::stop_leasing`] stops new leases; [`Control::drain`] also sets a
//! deadline, by which every job in flight is either finished (if its expected end,
//! from its progress so far, is before the deadline minus the margin) or released.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use prometheus_client::metrics::histogram::exponential_buckets;

use serde_json::Value;
use tokio::sync::{watch, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::backoff::FullJitter;
use crate::boot::Identity;
use crate::contract::allow::{AllowList, Location, UrlError};
use crate::contract::job::{self, BadJob, Job};
use crate::contract::result::{ResultDoc, ResultInstance};
use crate::contract::summary::{InstanceSummary, Interruption};
use crate::instance::fetch::{Fetcher, GetWindow, WindowStats};
use crate::instance::metrics::Timing;
use crate::process::{exec, ProcessorKind};
use crate::queue::{Lease, Queue, QueueError};
use crate::store::{Expect, PutOutcome, Store, StoreCache, StoreError};
use crate::time::rfc3339;

/// A retryable failure at this receive count is dead-lettered (docs/architecture.md#defaults).
pub const MAX_ATTEMPTS: u32 = 5;

/// The log target of the routine lines about each job (`job_started`, `job_done`,
/// `job_redone`, `lease_extended`), all at debug: at hundreds of jobs a second they
/// would hit journald's rate limit at info. `RUST_LOG=info,rangefleet::jobs=debug`
/// shows them (docs/operations.md#the-journal); the `progress` line sums them up.
pub const JOBS: &str = "rangefleet::jobs";

/// What the worker talks to.
#[derive(Clone)]
pub struct Deps {
    /// Where jobs come from.
    pub queue: Arc<dyn Queue>,
    /// Stores for job sources, one per bucket or host.
    pub stores: StoreCache,
    /// Where results go.
    pub results: Store,
    /// Who we are (in every result).
    pub identity: Identity,
    /// Effective tags (in every result).
    pub tags: BTreeMap<String, String>,
    /// The service manager: watchdog pings and status lines from the loop's own turns.
    pub notifier: Arc<dyn crate::instance::systemd::Notifier>,
}

/// How the worker runs (from the config, with defaults resolved).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Jobs in flight.
    pub concurrency: usize,
    /// Part GETs in flight at most (the AIMD window's ceiling).
    pub gets: usize,
    /// Target bytes per part GET.
    pub part_size: u64,
    /// `exec` jobs reading or running at once (a CPU limit).
    pub cpu_slots: usize,
    /// Lease per job.
    pub lease: Duration,
    /// Longest a lease call waits for a message.
    pub poll_wait: Duration,
    /// Allowed source prefixes.
    pub inputs: Vec<String>,
    /// The exec processor, when configured.
    pub exec: Option<exec::ExecSpec>,
    /// Jobs expected to end later than this before a drain deadline are released.
    pub drain_margin: Duration,
    /// Exit once the queue has nothing visible or in flight (batch runs, the demo).
    pub until_empty: bool,
}

/// Why the worker is draining, for the summary and the logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrainReason {
    /// `spot-interruption`, `asg-termination`, `sigterm`, `rebalance`.
    pub kind: String,
    /// Free text (the notice's payload, the action).
    pub detail: String,
}

/// Steering a running worker: stop leasing, drain by a deadline.
#[derive(Clone)]
pub struct Control {
    stop: CancellationToken,
    drain: Arc<watch::Sender<Option<(Instant, DrainReason)>>>,
}

impl Default for Control {
    fn default() -> Self {
        Control {
            stop: CancellationToken::new(),
            drain: Arc::new(watch::channel(None).0),
        }
    }
}

impl Control {
    /// Take no new jobs; finish those in flight.
    pub fn stop_leasing(&self) {
        self.stop.cancel();
    }

    /// Stop leasing, and by `deadline` have finished or released every job.
    pub fn drain(&self, deadline: Instant, reason: DrainReason) {
        // The deadline first: a loop that sees the stop must also see why.
        self.drain.send_if_modified(|d| match d {
            // An earlier deadline wins; a later notice does not extend it.
            Some((at, _)) if *at <= deadline => false,
            _ => {
                *d = Some((deadline, reason));
                true
            }
        });
        self.stop.cancel();
    }

    /// True once leasing has stopped.
    pub fn is_stopped(&self) -> bool {
        self.stop.is_cancelled()
    }

    /// The drain deadline and reason, once set.
    pub fn drain_state(&self) -> Option<(Instant, DrainReason)> {
        self.drain.borrow().clone()
    }
}

/// What one agent did: the instance summary's counts (docs/formats.md), which the
/// metrics endpoint serves as they change (`instance/metrics.rs`).
#[derive(Debug)]
pub struct Counters {
    /// Results written and acked.
    pub done: AtomicU64,
    /// Jobs whose result was already there (a second write refused): acked, not counted.
    pub redone: AtomicU64,
    /// Jobs dead-lettered.
    pub failed: AtomicU64,
    /// Jobs handed back to the queue (drain, retryable errors, faults).
    pub released: AtomicU64,
    /// Bytes read by finished jobs.
    pub bytes_read: AtomicU64,
    /// Job attempts that ended in an error (retried, released for a fault, dead-lettered).
    pub errors: AtomicU64,
    /// Notices acted on, by kind (`spot-interruption`, `rebalance`, `asg-termination`).
    pub notices: Mutex<BTreeMap<String, u64>>,
    /// Seconds each lease call that returned jobs took.
    pub lease_latency: Timing,
    /// Seconds from lease to result, for each job that ended with one.
    pub job_duration: Timing,
    /// The GET window, once the worker made it (GETs in flight, for the metrics).
    pub window: OnceLock<Arc<GetWindow>>,
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            done: AtomicU64::new(0),
            redone: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            released: AtomicU64::new(0),
            bytes_read: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            notices: Mutex::default(),
            // 1 ms to 33 s: a local SQLite lease to an SQS long poll.
            lease_latency: Timing::new(exponential_buckets(0.001, 2.0, 16)),
            // 10 ms to 5.5 min.
            job_duration: Timing::new(exponential_buckets(0.01, 2.0, 16)),
            window: OnceLock::new(),
        }
    }
}

impl Counters {
    /// Counts a notice of `kind` acted on.
    pub fn notice(&self, kind: &str) {
        *self
            .notices
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(kind.to_string())
            .or_default() += 1;
    }
}

/// A job in flight, as the drain sees it.
struct InFlight {
    started: Instant,
    total_bytes: u64,
    read: Arc<AtomicU64>,
    abandon: CancellationToken,
}

struct Ctx {
    deps: Deps,
    settings: Settings,
    allow: AllowList,
    processors: Vec<ProcessorKind>,
    /// What the results store accepts as a result key.
    limits: job::ResultLimits,
    counters: Arc<Counters>,
    /// Leasing pauses until then after a fault.
    paused_until: Mutex<Option<Instant>>,
    /// The last fault's cause (`disk full`, …), for the status line.
    fault_cause: Mutex<&'static str>,
    fault_backoff: Mutex<FullJitter>,
    /// Part GETs, through the shared window.
    fetcher: Fetcher,
    /// The CPU limit of `exec` jobs.
    cpu: Arc<Semaphore>,
}

/// How the loop ended.
#[derive(Debug)]
pub struct Outcome {
    /// The counts.
    pub counters: Arc<Counters>,
    /// The drain that ended it, if any.
    pub drain: Option<DrainReason>,
    /// When the loop started and ended.
    pub started_at: SystemTime,
    /// When it ended.
    pub finished_at: SystemTime,
    /// What the GET window did.
    pub window: WindowStats,
    /// With `until_empty`: the queue fault that ended the run early.
    pub queue_fault: Option<String>,
}

/// Runs the worker until it is drained (or, with `until_empty`, the queue is empty).
pub async fn run(deps: Deps, settings: Settings, control: Control) -> Result<Outcome, UrlError> {
    run_counted(deps, settings, control, Arc::default()).await
}

/// [`run`], counting into `counters` (which the metrics endpoint reads as they move).
pub async fn run_counted(
    deps: Deps,
    settings: Settings,
    control: Control,
    counters: Arc<Counters>,
) -> Result<Outcome, UrlError> {
    let started_at = SystemTime::now();
    let mut processors = vec![ProcessorKind::Count, ProcessorKind::TaxiStats];
    if settings.exec.is_some() {
        processors.push(ProcessorKind::Exec);
    }
    let ctx = Arc::new(Ctx {
        allow: AllowList::new(&settings.inputs)?,
        processors,
        limits: job::ResultLimits::for_results(deps.results.url()),
        counters,
        paused_until: Mutex::new(None),
        fault_cause: Mutex::new(""),
        fault_backoff: Mutex::new(FullJitter::new(
            Duration::from_secs(2),
            Duration::from_secs(120),
        )),
        fetcher: Fetcher::new(settings.gets, settings.part_size),
        cpu: Arc::new(Semaphore::new(settings.cpu_slots.max(1))),
        deps,
        settings,
    });
    let _ = ctx.counters.window.set(ctx.fetcher.window().clone());
    let slots = Arc::new(Semaphore::new(ctx.settings.concurrency.max(1)));
    let tracker = TaskTracker::new();
    let inflight: Arc<Mutex<HashMap<u64, InFlight>>> = Arc::default();
    let mut next_id = 0u64;
    let mut queue_backoff = FullJitter::new(Duration::from_millis(200), Duration::from_secs(30));
    let mut queue_fault = None;

    // The watchdog pings come from the loop's own turns, so a stuck loop stops them;
    // the tick wakes an idle turn often enough that a long job does not.
    let tick = ctx
        .deps
        .notifier
        .watchdog_interval()
        .map_or(Duration::from_secs(10), |d| d / 2);
    // The drain acts on jobs in flight at once, even while the loop waits in a long poll.
    let watcher = tokio::spawn(drain_watcher(
        control.clone(),
        inflight.clone(),
        ctx.settings.drain_margin,
    ));
    loop {
        alive(&ctx, &tracker, "leasing");
        if control.is_stopped() {
            break;
        }
        if let Some(until) = paused_until(&ctx) {
            // In steps of the tick, so the watchdog hears from the loop through a long pause.
            tokio::select! {
                _ = tokio::time::sleep_until(until.min(Instant::now() + tick)) => {}
                _ = control.stop.cancelled() => break,
            }
            continue;
        }
        if done_when_empty(&ctx, &tracker).await {
            break;
        }
        let first = tokio::select! {
            p = slots.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            _ = control.stop.cancelled() => break,
            _ = tokio::time::sleep(tick) => continue,
        };
        // A fault may have paused leasing while we waited for the slot it freed.
        if is_paused(&ctx) {
            drop(first);
            continue;
        }
        let mut permits = vec![first];
        while let Ok(p) = slots.clone().try_acquire_owned() {
            permits.push(p);
        }
        // Never cancelled mid-call: a receive that completes after we stopped listening
        // would hide its messages for a whole lease. What arrives after a stop is released.
        let asked = Instant::now();
        let leased = ctx
            .deps
            .queue
            .lease(permits.len(), ctx.settings.lease, ctx.settings.poll_wait)
            .await;
        if leased.as_ref().is_ok_and(|l| !l.is_empty()) {
            ctx.counters.lease_latency.observe(asked.elapsed());
        }
        match leased {
            Ok(leases) if leases.is_empty() => {
                drop(permits);
                if done_when_empty(&ctx, &tracker).await {
                    break;
                }
            }
            Ok(leases) => {
                queue_backoff.reset();
                for (lease, permit) in leases.into_iter().zip(permits) {
                    if control.is_stopped() {
                        release(&ctx, &lease, "leased as the agent began to drain").await;
                        continue;
                    }
                    // A fault that paused leasing while this lease call was out: the job
                    // waits the pause out holding its lease (`run_job`). Releasing it
                    // would spend one of its receives (SQS counts every receive).
                    next_id += 1;
                    let id = next_id;
                    let read = Arc::new(AtomicU64::new(0));
                    let abandon = CancellationToken::new();
                    // Parsed once, here: the drain needs the job's size, the run the job.
                    let parsed = job::parse(&lease.body, &ctx.allow, &ctx.processors, &ctx.limits);
                    inflight.lock().unwrap().insert(
                        id,
                        InFlight {
                            started: Instant::now(),
                            total_bytes: parsed
                                .as_ref()
                                .map_or(0, |(j, _, _)| j.range().byte_len()),
                            read: read.clone(),
                            abandon: abandon.clone(),
                        },
                    );
                    let ctx = ctx.clone();
                    let inflight = inflight.clone();
                    tracker.spawn(
                        async move {
                            run_job(&ctx, lease, parsed, abandon, read).await;
                            inflight.lock().unwrap().remove(&id);
                            drop(permit);
                        }
                        .in_current_span(),
                    );
                }
            }
            Err(e) => {
                drop(permits);
                let pause = queue_backoff.next_delay();
                match &e {
                    QueueError::Fault(_) | QueueError::BadUrl(_) if ctx.settings.until_empty => {
                        // A batch run has nobody to fix the queue while it waits: it
                        // ends, saying why, rather than loop for ever.
                        tracing::error!(
                            event = "lease_fault", error = %e,
                            "cannot lease jobs: the queue refused the agent or cannot be used \
                             (the error says why); --until-empty stops here"
                        );
                        queue_fault = Some(e.to_string());
                        break;
                    }
                    QueueError::Fault(_) | QueueError::BadUrl(_) => tracing::error!(
                        event = "lease_fault", error = %e, pause_ms = pause.as_millis() as u64,
                        "cannot lease jobs: the queue refused the agent or cannot be used \
                         (the error says why: access denied, wrong region, a read-only, full \
                         or corrupt database); no job is touched until this is fixed"
                    ),
                    _ => {
                        tracing::warn!(event = "lease_retry", error = %e, pause_ms = pause.as_millis() as u64, "lease failed; retrying")
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = control.stop.cancelled() => break,
                }
            }
        }
    }

    // Leasing has stopped: wait for the jobs in flight (the drain watcher releases
    // those that will not make the deadline), still pinging the watchdog.
    tracker.close();
    loop {
        alive(&ctx, &tracker, "draining");
        tokio::select! {
            _ = tracker.wait() => break,
            _ = tokio::time::sleep(tick) => {}
        }
    }
    watcher.abort();
    Ok(Outcome {
        counters: ctx.counters.clone(),
        drain: control.drain_state().map(|(_, r)| r),
        started_at,
        finished_at: SystemTime::now(),
        window: ctx.fetcher.window().stats(),
        queue_fault,
    })
}

/// When a fault's pause in effect ends; `None` when none is.
fn paused_until(ctx: &Ctx) -> Option<Instant> {
    ctx.paused_until
        .lock()
        .unwrap()
        .filter(|until| Instant::now() < *until)
}

/// True while a fault's pause is in effect.
fn is_paused(ctx: &Ctx) -> bool {
    paused_until(ctx).is_some()
}

/// With `--until-empty`: true (and logged) once nothing runs here and the queue is empty.
async fn done_when_empty(ctx: &Ctx, tracker: &TaskTracker) -> bool {
    let done = ctx.settings.until_empty && tracker.is_empty() && queue_is_empty(ctx).await;
    if done {
        tracing::info!(
            event = "queue_empty",
            "queue is empty; exiting as --until-empty asks"
        );
    }
    done
}

/// One turn of the loop: WATCHDOG=1 and a STATUS line for `systemctl status`.
fn alive(ctx: &Ctx, tracker: &TaskTracker, phase: &str) {
    ctx.deps.notifier.watchdog();
    let paused;
    let phase = if is_paused(ctx) {
        paused = format!("leasing paused ({})", ctx.fault_cause.lock().unwrap());
        paused.as_str()
    } else {
        phase
    };
    ctx.deps.notifier.status(&format!(
        "{phase}; {} running, {} done, {} failed",
        tracker.len(),
        ctx.counters.done.load(Ordering::Relaxed),
        ctx.counters.failed.load(Ordering::Relaxed)
    ));
}

/// Once a drain deadline is set: releases the jobs in flight that will not finish by
/// the deadline less the margin, looks again as they progress, and when the cutoff
/// passes releases whatever is left.
async fn drain_watcher(
    control: Control,
    inflight: Arc<Mutex<HashMap<u64, InFlight>>>,
    margin: Duration,
) {
    let mut rx = control.drain.subscribe();
    loop {
        let state = rx.borrow_and_update().clone();
        let Some((deadline, _)) = state else {
            if rx.changed().await.is_err() {
                return;
            }
            continue;
        };
        let cutoff = deadline.checked_sub(margin).unwrap_or_else(Instant::now);
        release_late_jobs(&inflight, cutoff);
        tokio::select! {
            _ = tokio::time::sleep_until(cutoff) => {
                // The cutoff passed: whatever is still running will not make it.
                for job in inflight.lock().unwrap().values() {
                    job.abandon.cancel();
                }
                return;
            }
            changed = rx.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
    }
}

/// Releases every job in flight whose expected end, from its progress so far, is
/// after `cutoff`.
fn release_late_jobs(inflight: &Mutex<HashMap<u64, InFlight>>, cutoff: Instant) {
    let now = Instant::now();
    for job in inflight.lock().unwrap().values() {
        if job.abandon.is_cancelled() {
            continue;
        }
        let read = job.read.load(Ordering::Relaxed);
        let elapsed = now - job.started;
        let expected_end = if read == 0 || job.total_bytes == 0 {
            // No progress yet: it ends in time only if we are already past nothing.
            None
        } else {
            let total = elapsed.as_secs_f64() * job.total_bytes as f64 / read as f64;
            Some(job.started + Duration::from_secs_f64(total.min(1e6)))
        };
        let fits = expected_end.is_some_and(|end| end <= cutoff)
            || (read >= job.total_bytes && job.total_bytes > 0);
        if !fits {
            job.abandon.cancel();
        }
    }
}

async fn queue_is_empty(ctx: &Ctx) -> bool {
    match ctx.deps.queue.stats().await {
        Ok(s) => s.visible == 0 && s.in_flight == 0,
        Err(_) => false,
    }
}

/// Why a job did not produce a result.
#[derive(Debug)]
enum JobError {
    /// Reading the source or writing the result.
    Store(StoreError),
    /// The exec processor failed.
    Exec(String),
    /// Writing the result document.
    ResultWrite(StoreError),
}

impl std::fmt::Display for JobError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JobError::Store(e) => e.fmt(f),
            JobError::Exec(e) => f.write_str(e),
            JobError::ResultWrite(e) => write!(f, "writing the result: {e}"),
        }
    }
}

/// What the worker does about a failed job: the one place errors are routed by class.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    /// The job itself is bad: dead-letter it now, with the reason.
    DeadLetter(String),
    /// Worth another try: release it; dead-letter it at its [`MAX_ATTEMPTS`]th receive.
    Retry(String),
    /// The agent's environment is wrong (disk full, read-only, permission or access
    /// denied): keep the lease, pause leasing, try again after the pause; condemn
    /// nothing and spend none of the job's receives.
    Pause(String),
}

impl JobError {
    fn route(&self) -> Route {
        match self {
            JobError::Store(StoreError::Permanent(r)) => Route::DeadLetter(r.clone()),
            JobError::Store(StoreError::Fault(r)) => Route::Pause(r.clone()),
            JobError::Store(e @ (StoreError::Retryable(_) | StoreError::NotFound(_))) => {
                Route::Retry(e.to_string())
            }
            JobError::Exec(e) => Route::Retry(e.clone()),
            // A result that cannot be written says nothing against the job itself.
            JobError::ResultWrite(StoreError::Fault(r)) => Route::Pause(r.clone()),
            // Only a name the file system can never take condemns the job.
            JobError::ResultWrite(StoreError::Permanent(r))
                if r.contains(&format!(": {}: ", crate::error::NAME_TOO_LONG)) =>
            {
                Route::DeadLetter(format!("writing the result: {r}"))
            }
            e @ JobError::ResultWrite(_) => Route::Retry(e.to_string()),
        }
    }
}

/// How a job's run ended.
enum Ended {
    /// It produced an output from this many bytes.
    Done(Value, u64),
    /// It failed.
    Failed(JobError),
    /// The drain abandoned it: release it for another worker.
    Abandoned,
    /// The lease was lost: another worker may hold the job now, so leave it alone.
    LeaseLost,
}

/// Runs one leased job, `parsed` from its body: a result and an ack, a release, or a
/// dead letter. The lease is heartbeaten from the first read to the ack, through any
/// pause for a fault of the environment.
async fn run_job(
    ctx: &Ctx,
    lease: Lease,
    parsed: Result<(Job, ProcessorKind, Location), BadJob>,
    abandon: CancellationToken,
    read: Arc<AtomicU64>,
) {
    let (job, kind, location) = match parsed {
        Ok(j) => j,
        Err(BadJob(reason)) => {
            ctx.counters.errors.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(event = "bad_job", queue_message_id = %lease.message_id, %reason, "refusing a bad job");
            dead_letter(ctx, &lease, &reason).await;
            return;
        }
    };
    let partition = job.partition_name();
    let span = tracing::info_span!("job", job_id = %job.job_id, source = %job.source, partition = %partition, attempt = lease.receive_count);
    async {
        if is_paused(ctx) {
            // Leased while a fault paused leasing: start only once the pause is over.
            tokio::select! {
                () = wait_while_paused(ctx) => {}
                _ = abandon.cancelled() => {
                    release(ctx, &lease, "released while draining").await;
                    return;
                }
                () = heartbeat(ctx, &lease) => {
                    tracing::warn!(
                        event = "job_abandoned_lease_lost",
                        "job abandoned: its lease was lost, so another worker may have it; not released"
                    );
                    return;
                }
            }
        }
        tracing::debug!(target: JOBS, event = "job_started", "job started");
        let started_at = SystemTime::now();
        let heartbeat = heartbeat(ctx, &lease);
        tokio::pin!(heartbeat);
        let ended = tokio::select! {
            r = process_through_faults(ctx, &job, kind, &location, &read) => match r {
                Ok((output, bytes)) => Ended::Done(output, bytes),
                Err(e) => Ended::Failed(e),
            },
            _ = abandon.cancelled() => Ended::Abandoned,
            () = &mut heartbeat => Ended::LeaseLost,
        };
        let ended = match ended {
            Ended::Done(output, bytes) => {
                let body = ResultDoc::new(
                    &job,
                    output,
                    bytes,
                    result_instance(ctx),
                    lease.receive_count,
                    started_at,
                    SystemTime::now(),
                )
                .to_bytes();
                tokio::select! {
                    r = write_through_faults(ctx, &job, body.into()) => match r {
                        Ok(outcome) => {
                            finish(ctx, &lease, outcome, bytes, started_at).await;
                            return;
                        }
                        Err(e) => Ended::Failed(e),
                    },
                    _ = abandon.cancelled() => Ended::Abandoned,
                    () = &mut heartbeat => Ended::LeaseLost,
                }
            }
            other => other,
        };
        match ended {
            Ended::Done(..) => unreachable!("a done job is finished above"),
            Ended::Failed(e) => fail(ctx, &lease, &e).await,
            Ended::Abandoned => release(ctx, &lease, "released while draining").await,
            Ended::LeaseLost => tracing::warn!(
                event = "job_abandoned_lease_lost",
                "job abandoned: its lease was lost, so another worker may have it; not released"
            ),
        }
    }
    .instrument(span)
    .await
}

/// Runs the job; after a fault of the environment, pauses leasing, waits the pause
/// out holding the lease, and runs it again. Other failures are returned.
async fn process_through_faults(
    ctx: &Ctx,
    job: &Job,
    kind: ProcessorKind,
    location: &Location,
    read: &AtomicU64,
) -> Result<(Value, u64), JobError> {
    loop {
        match process(ctx, job, kind, location, read).await {
            Err(e) => match e.route() {
                Route::Pause(reason) => {
                    wait_out_fault(ctx, &reason).await;
                    read.store(0, Ordering::Relaxed);
                }
                _ => return Err(e),
            },
            ok => return ok,
        }
    }
}

/// Writes the result create-only; after a fault of the environment (a full or
/// read-only disk, a refused write), pauses leasing and writes again once the pause
/// is over, holding the lease. Other failures are returned.
async fn write_through_faults(
    ctx: &Ctx,
    job: &Job,
    body: bytes::Bytes,
) -> Result<PutOutcome, JobError> {
    loop {
        match write_result(ctx, job, body.clone()).await {
            Ok(outcome) => return Ok(outcome),
            Err(e) => {
                let e = JobError::ResultWrite(e);
                match e.route() {
                    Route::Pause(reason) => {
                        wait_out_fault(ctx, &format!("writing the result: {reason}")).await
                    }
                    _ => return Err(e),
                }
            }
        }
    }
}

/// Writes the result create-only. A result already there from another plan (its
/// `plan_id` differs: the prefix was planned again with `--force`) is stale, and is
/// replaced; one from this plan stands (the job was done twice: `AlreadyExists`).
async fn write_result(ctx: &Ctx, job: &Job, body: bytes::Bytes) -> Result<PutOutcome, StoreError> {
    let key = job.result_key();
    let results = &ctx.deps.results;
    match results.put_create(&key, body.clone()).await? {
        PutOutcome::AlreadyExists if job.plan_id.is_some() => {
            let there = match results.get(&key).await {
                Ok(b) => ResultDoc::from_slice(&b).ok().map(|d| d.job.plan_id),
                // Gone between the two calls: write it again.
                Err(StoreError::NotFound(_)) => None,
                Err(e) => return Err(e),
            };
            if there.as_ref() == Some(&job.plan_id) {
                return Ok(PutOutcome::AlreadyExists);
            }
            tracing::warn!(
                event = "stale_result_replaced",
                stale_plan_id = there.flatten().as_deref().unwrap_or("(none)"),
                "a result of another plan was in this job's place; replaced"
            );
            results.put(&key, body).await?;
            Ok(PutOutcome::Created)
        }
        outcome => Ok(outcome),
    }
}

/// Returns once no fault's pause is in effect (a later fault may lengthen it).
async fn wait_while_paused(ctx: &Ctx) {
    while let Some(until) = paused_until(ctx) {
        tokio::time::sleep_until(until).await;
    }
}

/// Pauses leasing for a fault of the environment and waits until the pause in effect
/// (the longest announced) is over.
async fn wait_out_fault(ctx: &Ctx, reason: &str) {
    pause_for_fault(ctx, reason);
    wait_while_paused(ctx).await;
    tracing::info!(
        event = "fault_retry",
        "the pause for a fault is over; trying the job again with the same lease"
    );
}

/// Routes a failed job by its error's class ([`JobError::route`]).
async fn fail(ctx: &Ctx, lease: &Lease, e: &JobError) {
    ctx.counters.errors.fetch_add(1, Ordering::Relaxed);
    let route = e.route();
    // The class is a field of the entries that follow (CLASS in the journal), never a
    // word in the message.
    let class = match &route {
        Route::DeadLetter(_) => "job",
        Route::Retry(_) => "retryable",
        Route::Pause(_) => "environment",
    };
    async {
        match route {
            Route::DeadLetter(reason) => dead_letter(ctx, lease, &reason).await,
            // Faults are waited out with the lease held (`process_through_faults`);
            // one that reaches here has no job left to run.
            Route::Pause(reason) => {
                pause_for_fault(ctx, &reason);
                release(
                    ctx,
                    lease,
                    "released after a fault of the agent's environment",
                )
                .await;
            }
            Route::Retry(reason) => retry_or_give_up(ctx, lease, &reason).await,
        }
    }
    .instrument(tracing::info_span!("failure", class))
    .await
}

/// Extends the lease every third of it; returns only if the lease is lost.
async fn heartbeat(ctx: &Ctx, lease: &Lease) {
    let every = ctx.settings.lease / 3;
    let mut tick = tokio::time::interval_at(Instant::now() + every, every);
    loop {
        tick.tick().await;
        match ctx.deps.queue.extend(lease, ctx.settings.lease).await {
            Ok(()) => tracing::debug!(target: JOBS, event = "lease_extended", "lease extended"),
            Err(QueueError::LeaseLost(e)) => {
                tracing::warn!(event = "lease_lost", error = %e, "lease lost; abandoning the job (another worker has it)");
                return;
            }
            Err(e) => {
                tracing::warn!(event = "heartbeat_failed", error = %e, "heartbeat failed; will try again")
            }
        }
    }
}

async fn process(
    ctx: &Ctx,
    job: &Job,
    kind: ProcessorKind,
    location: &Location,
    read: &AtomicU64,
) -> Result<(Value, u64), JobError> {
    // Exactly what the allow-list checked: its normalised store and key.
    let source = ctx
        .deps
        .stores
        .get(&location.base())
        .await
        .map_err(JobError::Store)?;
    let key = location.key();
    let range = job.range();
    let expect = Expect {
        size: job.object_size,
        etag: job.etag.clone(),
    };
    if kind != ProcessorKind::Exec {
        let (acc, bytes) = ctx
            .fetcher
            .read_merged(&source, key, &range, &expect, kind, read)
            .await
            .map_err(JobError::Store)?;
        return Ok((acc.output(), bytes));
    }
    let spec = ctx
        .settings
        .exec
        .as_ref()
        .ok_or_else(|| JobError::Exec("exec is not configured".into()))?;
    // exec is CPU-bound: at most `cpu_slots` read and run at once.
    let _cpu = ctx
        .cpu
        .acquire()
        .await
        .expect("the CPU semaphore is never closed");
    let env = [
        ("RANGEFLEET_JOB_ID".to_string(), job.job_id.clone()),
        (
            "RANGEFLEET_PARTITION".to_string(),
            serde_json::to_string(&job.partition).unwrap_or_default(),
        ),
    ];
    // The records stream to the command's stdin as the parts are read, through a
    // bounded buffer: the job's size does not matter to memory.
    let (mut feed, records) = exec::feed(exec::STDIN_BUFFER);
    let reads = async {
        let bytes = ctx
            .fetcher
            .read_in_order(&source, key, &range, &expect, read, &mut feed)
            .await?;
        feed.finish().await;
        Ok::<_, StoreError>(bytes)
    };
    match exec::run_exec_streaming(spec, &env, records, reads).await {
        Ok((output, bytes)) => Ok((output, bytes)),
        Err(exec::Failed::Exec(e)) => Err(JobError::Exec(e.to_string())),
        Err(exec::Failed::Input(e)) => Err(JobError::Store(e)),
    }
}

fn result_instance(ctx: &Ctx) -> ResultInstance {
    ResultInstance {
        instance_id: ctx.deps.identity.instance_id.clone(),
        availability_zone: ctx.deps.identity.availability_zone.clone(),
        tags: ctx.deps.tags.clone(),
    }
}

/// Counts a written (or already written) result and acks the job.
async fn finish(ctx: &Ctx, lease: &Lease, outcome: PutOutcome, bytes: u64, started_at: SystemTime) {
    match outcome {
        PutOutcome::Created => {
            tracing::debug!(target: JOBS, event = "job_done", bytes, "job done");
            // The environment works again: the next fault starts its backoff afresh.
            ctx.fault_backoff.lock().unwrap().reset();
            ctx.counters.done.fetch_add(1, Ordering::Relaxed);
            ctx.counters.bytes_read.fetch_add(bytes, Ordering::Relaxed);
            observe_duration(ctx, started_at);
        }
        PutOutcome::AlreadyExists => {
            tracing::debug!(
                target: JOBS,
                event = "job_redone",
                "result already written by an earlier attempt; counted once"
            );
            ctx.counters.redone.fetch_add(1, Ordering::Relaxed);
            observe_duration(ctx, started_at);
        }
    }
    if let Err(e) = ctx.deps.queue.ack(lease).await {
        // The result is written; a redelivery will find it and count it as redone.
        tracing::warn!(event = "ack_failed", error = %e, "ack failed after the result was written");
    }
}

fn observe_duration(ctx: &Ctx, started_at: SystemTime) {
    let took = started_at.elapsed().unwrap_or_default();
    ctx.counters.job_duration.observe(took);
}

async fn retry_or_give_up(ctx: &Ctx, lease: &Lease, reason: &str) {
    if lease.receive_count >= MAX_ATTEMPTS {
        let reason = format!("gave up after {} attempts: {reason}", lease.receive_count);
        dead_letter(ctx, lease, &reason).await;
    } else {
        tracing::warn!(event = "job_retry", %reason, attempt = lease.receive_count, "job failed; releasing it for another try");
        release(ctx, lease, reason).await;
    }
}

/// Pauses leasing for a fault of the environment, with a growing backoff: a WARN that
/// names the cause, and the cause on the service manager's status line.
fn pause_for_fault(ctx: &Ctx, reason: &str) {
    let pause = ctx
        .fault_backoff
        .lock()
        .unwrap()
        .next_delay()
        .max(Duration::from_secs(1));
    let cause = crate::error::fault_cause(reason);
    tracing::warn!(
        event = "environment_fault", cause, %reason, pause_ms = pause.as_millis() as u64,
        "the agent's environment is wrong ({cause}): leasing pauses, the job keeps its \
         lease and is tried again after the pause; nothing is dead-lettered"
    );
    *ctx.fault_cause.lock().unwrap() = cause;
    ctx.deps.notifier.status(&format!(
        "leasing paused ({cause}) for {} s: {reason}",
        pause.as_secs()
    ));
    // Faults of several jobs in one round must not shorten a pause already announced.
    let until = Instant::now() + pause;
    let mut paused = ctx.paused_until.lock().unwrap();
    *paused = Some(paused.map_or(until, |u| u.max(until)));
}

async fn release(ctx: &Ctx, lease: &Lease, why: &str) {
    match ctx.deps.queue.release(lease).await {
        Ok(()) => {
            ctx.counters.released.fetch_add(1, Ordering::Relaxed);
            tracing::info!(event = "job_released", why, "job released");
        }
        Err(e) => {
            tracing::warn!(event = "release_failed", error = %e, "release failed; the job returns when its lease ends")
        }
    }
}

async fn dead_letter(ctx: &Ctx, lease: &Lease, reason: &str) {
    match ctx.deps.queue.dead_letter(lease, reason).await {
        Ok(()) => {
            ctx.counters.failed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(event = "job_dead_lettered",
                MESSAGE_ID = crate::instance::events::JOB_FAILED,
                reason,
                queue_message_id = %lease.message_id,
                "job dead-lettered"
            );
        }
        Err(e) => {
            tracing::error!(event = "dead_letter_failed", error = %e, reason, "dead-lettering failed; the job returns when its lease ends")
        }
    }
}

/// The instance summary (docs/formats.md), written at exit to `_instances/<id>.json`.
pub fn summary(
    identity: &Identity,
    tags: &BTreeMap<String, String>,
    outcome: &Outcome,
) -> InstanceSummary {
    let c = &outcome.counters;
    InstanceSummary {
        tags: tags.clone(),
        interruption: outcome.drain.as_ref().map(|d| Interruption {
            kind: d.kind.clone(),
            detail: d.detail.clone(),
        }),
        started_at: rfc3339(outcome.started_at),
        finished_at: rfc3339(outcome.finished_at),
        done: c.done.load(Ordering::Relaxed),
        redone: c.redone.load(Ordering::Relaxed),
        failed: c.failed.load(Ordering::Relaxed),
        released: c.released.load(Ordering::Relaxed),
        bytes_read: c.bytes_read.load(Ordering::Relaxed),
        ..summary_of(identity)
    }
}

/// A summary naming `identity`, with nothing counted yet: what [`summary`] and a
/// failure report (`health::failure_summary`) fill in.
pub fn summary_of(identity: &Identity) -> InstanceSummary {
    InstanceSummary {
        v: crate::contract::summary::VERSION,
        instance_id: identity.instance_id.clone(),
        instance_type: identity.instance_type.clone(),
        availability_zone: identity.availability_zone.clone(),
        life_cycle: identity.life_cycle.clone(),
        ..InstanceSummary::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::faulty::{FaultyObjectStore, PutFault};
    use object_store::memory::InMemory;
    use std::io::ErrorKind;

    /// The error a result write meets when the results store answers with `fault`.
    async fn write_error(fault: PutFault) -> StoreError {
        let faulty = Arc::new(FaultyObjectStore::new(Arc::new(InMemory::new())));
        faulty.push_put(1, fault);
        let store = Store::from_object_store(faulty, "file:///results/");
        store
            .put_create("a.json", bytes::Bytes::from_static(b"{}"))
            .await
            .unwrap_err()
    }

    #[tokio::test]
    async fn environment_faults_writing_results_pause_and_name_their_cause() {
        for (fault, cause) in [
            (PutFault::Io(ErrorKind::StorageFull), "disk full"),
            (
                PutFault::Io(ErrorKind::ReadOnlyFilesystem),
                "read-only file system",
            ),
            (
                PutFault::Io(ErrorKind::PermissionDenied),
                "permission denied",
            ),
            (PutFault::Http(403), "access denied"),
        ] {
            let e = write_error(fault.clone()).await;
            assert_eq!(
                e.class(),
                crate::error::ErrorClass::Environment,
                "{fault:?}: {e}"
            );
            match JobError::ResultWrite(e).route() {
                Route::Pause(reason) => {
                    assert_eq!(crate::error::fault_cause(&reason), cause, "{reason}")
                }
                other => panic!("{fault:?} routed as {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn other_write_failures_are_retried_and_a_name_too_long_is_permanent() {
        let e = write_error(PutFault::Io(ErrorKind::TimedOut)).await;
        assert!(matches!(JobError::ResultWrite(e).route(), Route::Retry(_)));
        let e = write_error(PutFault::Http(503)).await;
        assert!(matches!(JobError::ResultWrite(e).route(), Route::Retry(_)));
        let e = write_error(PutFault::Http(400)).await;
        assert!(matches!(e, StoreError::Permanent(_)), "{e:?}");
        assert!(matches!(JobError::ResultWrite(e).route(), Route::Retry(_)));
        let e = write_error(PutFault::Io(ErrorKind::InvalidFilename)).await;
        assert!(matches!(
            JobError::ResultWrite(e).route(),
            Route::DeadLetter(_)
        ));
    }

    #[test]
    fn a_forbidden_read_pauses() {
        let e = StoreError::Fault("s3://b/k: status code: 403 Forbidden".into());
        assert!(matches!(JobError::Store(e).route(), Route::Pause(_)));
    }
}
