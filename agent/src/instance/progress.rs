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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Collects the JSON lines a subscriber writes.
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Lines {
        fn progress(&self) -> Vec<serde_json::Value> {
            String::from_utf8(self.0.lock().unwrap().clone())
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
                .filter(|v| v["fields"]["event"] == "progress")
                .collect()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_line_every_interval_while_the_counts_move_and_one_at_the_end() {
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || writer.clone())
            .finish();
        let _default = tracing::subscriber::set_default(subscriber);
        let c = Arc::new(Counters::default());
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(c.clone(), EVERY, stop.clone()));
        tokio::task::yield_now().await;

        c.done.fetch_add(30, Ordering::Relaxed);
        c.bytes_read.fetch_add(60_000_000, Ordering::Relaxed);
        tokio::time::sleep(EVERY + Duration::from_millis(1)).await;
        let got = lines.progress();
        assert_eq!(got.len(), 1, "{got:?}");
        let f = &got[0]["fields"];
        assert_eq!(got[0]["level"], "INFO");
        assert_eq!(
            (f["done"].as_u64(), f["bytes_read"].as_u64()),
            (Some(30), Some(60_000_000))
        );
        assert_eq!(
            (f["jobs_per_second"].as_f64(), f["mb_per_second"].as_f64()),
            (Some(1.0), Some(2.0))
        );
        assert_eq!(f["last"], false);

        // Nothing moved: no line.
        tokio::time::sleep(EVERY * 3).await;
        assert_eq!(lines.progress().len(), 1);

        c.failed.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(EVERY).await;
        let got = lines.progress();
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[1]["fields"]["failed"], 1);

        stop.cancel();
        task.await.unwrap();
        last(&c, Duration::from_secs(150));
        let got = lines.progress();
        assert_eq!(got.len(), 3, "{got:?}");
        let f = &got[2]["fields"];
        assert_eq!(
            (f["last"].as_bool(), f["done"].as_u64()),
            (Some(true), Some(30))
        );
        assert_eq!(f["jobs_per_second"].as_f64(), Some(0.2));
    }
}
