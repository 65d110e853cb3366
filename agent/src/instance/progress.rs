//! The `progress` line: one info line every [`EVERY`] while the counts move, and one
//! at the end, instead of a line per job at info (at hundreds of jobs a second those
//! would hit journald's rate limit; they are at debug, `worker::JOBS`). Its fields are
//! documented in docs/operations.md#the-journal.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::instance::worker::Counters;

/// How often the progress line is written while anything changes.
pub const EVERY: Duration = Duration::from_secs(30);

/// The counts one line reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Snapshot {
    done: u64,
    redone: u64,
    failed: u64,
    released: u64,
    errors: u64,
    bytes: u64,
}

impl Snapshot {
    fn of(c: &Counters) -> Snapshot {
        Snapshot {
            done: c.done.load(Ordering::Relaxed),
            redone: c.redone.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            released: c.released.load(Ordering::Relaxed),
            errors: c.errors.load(Ordering::Relaxed),
            bytes: c.bytes_read.load(Ordering::Relaxed),
        }
    }
}

/// Writes one `progress` line: the totals, and the rates since `since` (`base` the
/// totals then).
fn line(now: Snapshot, base: Snapshot, over: Duration, last: bool) {
    let secs = over.as_secs_f64().max(1e-3);
    let jobs = (now.done + now.redone).saturating_sub(base.done + base.redone);
    let bytes = now.bytes.saturating_sub(base.bytes);
    tracing::info!(
        event = "progress",
        done = now.done,
        redone = now.redone,
        failed = now.failed,
        released = now.released,
        job_errors = now.errors,
        bytes_read = now.bytes,
        jobs_per_second = (jobs as f64 / secs * 10.0).round() / 10.0,
        mb_per_second = (bytes as f64 / secs / 1e6 * 10.0).round() / 10.0,
        seconds = over.as_secs(),
        last,
        "progress: {} done, {} failed, {} released, {:.1} MB read",
        now.done,
        now.failed,
        now.released,
        now.bytes as f64 / 1e6
    );
}

/// Writes a `progress` line every `every` in which the counts changed, until `stop`.
pub async fn run(counters: Arc<Counters>, every: Duration, stop: CancellationToken) {
    let mut base = Snapshot::of(&counters);
    let mut since = Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.cancelled() => return,
        }
        let now = Snapshot::of(&counters);
        if now != base {
            line(now, base, since.elapsed(), false);
            base = now;
            since = Instant::now();
        }
    }
}

/// The last `progress` line (`last=true`): the totals, and the rates over the whole
/// run of `took`.
pub fn last(counters: &Counters, took: Duration) {
    line(Snapshot::of(counters), Snapshot::default(), took, true);
}
