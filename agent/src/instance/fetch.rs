//! Reading a job at the instance's width: record-aligned part GETs in parallel, inside
//! one AIMD window of GETs in flight shared by every job, retried by hand.
//!
//! # Parts
//!
//! A job's byte range is split into record-aligned parts of about
//! [`PART_SIZE`](crate::instance::sizing::PART_SIZE) bytes, each drawn within ±25 %
//! so that parts started together do not all end together ([`parts::split_sized`]). For the
//! streaming processors (`count`, `taxi-stats`) every part is read at once, as far as
//! the window lets it, each into its own accumulator; the accumulators are merged at
//! the end, which is exact (sums and counts). When the window has free slots and no
//! GET waits for one (the end of a plan: nothing left to lease), a job splits the part
//! with the most bytes still to come and reads its second half with a new GET into a
//! new accumulator ([`PartClaim::split_off`]): the last jobs of a plan fill the width
//! the others freed instead of crawling at one connection a part. `exec` needs one in-order stream:
//! its parts are read one after another into a bounded buffer that feeds the command's
//! stdin ([`exec::Feed`]); a part GET reads no further while the buffer is full, so
//! an `exec` job holds at most [`exec::STDIN_BUFFER`] bytes (plus one chunk) whatever
//! its size. Every part carries the job's
//! checks (planned size, `If-Match` on the planned ETag); without a planned ETag the
//! parts must all have seen the same one. Progress (`read`, for the drain's estimate)
//! counts whole records as they arrive from any part; dropping the job's future (an
//! abandon on drain, a lost lease) cancels every part GET and returns its permit.
//!
//! # The window (AIMD)
//!
//! [`GetWindow`] admits at most `limit` GETs at once, FIFO. It starts at the sized
//! width ([`Sizing::gets_in_flight`](crate::instance::sizing::Sizing)). A throttled
//! GET (503 SlowDown, 429) halves it, at most once per round: a 503 for a GET that was
//! sent before the last halving says nothing new and is ignored, as TCP does with
//! losses in one window. Each successful GET adds `1/limit`, one GET per window's worth
//! of successes (about one part's time), back up to the sized width. The
//! `get_window_narrowed` and `get_window_recovered` events record each change.
//!
//! # Why the retries are hand-written
//!
//! `object_store` retries 5xx, 429, timeouts and cut bodies by itself and reports only
//! the last error: the window would never see a 503, and every retry would go out at
//! full width, which is what makes S3 throttle harder. Stores opened on `s3://` and
//! `http(s)://` therefore read parts with `object_store`'s retries off (`store/parts.rs`)
//! and [`Fetcher`] retries here: up to [`MAX_PART_ATTEMPTS`] tries per part, full-jitter
//! pauses (100 ms doubling to 5 s) spent outside the window, each try resuming after the
//! records already delivered. A try that delivered records before it failed starts the
//! count again: an `exec` part waits for its command, and a slow command can hold a GET
//! past the client's timeout without the store failing. Stores that retry nothing underneath (files, test stores)
//! get one try, as before.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::backoff::FullJitter;
use crate::contract::range::RecordRange;
use crate::process::{exec, Accumulator, ProcessorKind};
use crate::store::parts::{self, PartClaim, PartRead, RecordSink};
use crate::store::{Expect, Store, StoreError};

/// Tries per part GET when its store leaves retries to us.
pub const MAX_PART_ATTEMPTS: u32 = 10;

/// How often a job whose parts stream looks for an idle window to split into.
pub const SPLIT_EVERY: Duration = Duration::from_millis(50);

/// The smallest second half split off a streaming part (1 MiB: a GET's first-byte
/// wait costs less than moving it at one connection's rate).
pub const MIN_SPLIT: u64 = 1 << 20;

/// What a halving keeps of the window.
const DECREASE: f64 = 0.5;

/// A window of GETs in flight, shrunk on throttling and grown back on success (AIMD).
#[derive(Debug)]
pub struct GetWindow {
    sem: Arc<Semaphore>,
    max: usize,
    state: Mutex<WindowState>,
}

#[derive(Debug)]
struct WindowState {
    /// The AIMD window, fractional so that additive increase can be `1/limit`.
    limit: f64,
    /// The whole permits the semaphore stands for (`floor(limit)`).
    permits: usize,
    /// Permits to forget as they come back (a shrink beyond those free).
    debt: usize,
    /// Bumped at each halving: a GET sent before it cannot halve again.
    generation: u64,
    in_flight: usize,
    /// GETs waiting for leave.
    waiting: usize,
    peak: usize,
    narrowed: u64,
    throttled: u64,
    splits: u64,
}

/// What the window did, for the instance summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct WindowStats {
    /// The window now (GETs).
    pub gets: usize,
    /// Most GETs ever in flight at once.
    pub peak_gets_in_flight: usize,
    /// Halvings.
    pub narrowed: u64,
    /// GETs the store throttled.
    pub throttled: u64,
    /// Parts split to fill an idle window.
    pub splits: u64,
}

/// Leave to send one GET; returned to the window on drop.
#[derive(Debug)]
pub struct WindowPermit {
    window: Arc<GetWindow>,
    permit: Option<OwnedSemaphorePermit>,
    generation: u64,
}

impl Drop for WindowPermit {
    fn drop(&mut self) {
        let mut st = self.window.state.lock().expect("window lock");
        st.in_flight -= 1;
        if let Some(p) = self.permit.take() {
            if st.debt > 0 {
                st.debt -= 1;
                p.forget();
            }
        }
    }
}

/// One GET waiting for leave; counted out on drop.
struct Waiting<'a>(&'a GetWindow);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.state.lock().expect("window lock").waiting -= 1;
    }
}

impl GetWindow {
    /// A window of `max` GETs, fully open.
    pub fn new(max: usize) -> Arc<GetWindow> {
        let max = max.max(1);
        Arc::new(GetWindow {
            sem: Arc::new(Semaphore::new(max)),
            max,
            state: Mutex::new(WindowState {
                limit: max as f64,
                permits: max,
                debt: 0,
                generation: 0,
                in_flight: 0,
                waiting: 0,
                peak: 0,
                narrowed: 0,
                throttled: 0,
                splits: 0,
            }),
        })
    }

    /// Waits for leave to send one GET (FIFO).
    pub async fn acquire(self: &Arc<Self>) -> WindowPermit {
        self.state.lock().expect("window lock").waiting += 1;
        // Counted out again even if the caller gives up waiting.
        let waiting = Waiting(self);
        let permit = Arc::clone(&self.sem)
            .acquire_owned()
            .await
            .expect("the window's semaphore is never closed");
        drop(waiting);
        let mut st = self.state.lock().expect("window lock");
        st.in_flight += 1;
        st.peak = st.peak.max(st.in_flight);
        WindowPermit {
            window: Arc::clone(self),
            permit: Some(permit),
            generation: st.generation,
        }
    }

    /// True when GET slots are free and no GET waits for one: width to fill.
    pub fn idle(&self) -> bool {
        let st = self.state.lock().expect("window lock");
        st.waiting == 0 && st.in_flight < st.permits
    }

    /// Counts a part split to fill the window.
    fn split(&self) {
        self.state.lock().expect("window lock").splits += 1;
    }

    /// A GET succeeded: grow by `1/limit`, up to the sized width.
    pub fn succeeded(&self) {
        let mut st = self.state.lock().expect("window lock");
        if st.limit >= self.max as f64 {
            return;
        }
        st.limit = (st.limit + 1.0 / st.limit).min(self.max as f64);
        let before = st.permits;
        self.resize(&mut st);
        if st.permits == self.max && before < self.max {
            tracing::info!(
                event = "get_window_recovered",
                gets = st.permits,
                "the GET window is back to its full width"
            );
        }
    }

    /// The GET sent under `permit` was throttled: halve, unless a halving already
    /// happened since it was sent.
    pub fn throttled(&self, permit: &WindowPermit) {
        let mut st = self.state.lock().expect("window lock");
        st.throttled += 1;
        if permit.generation != st.generation {
            return;
        }
        let previous = st.permits;
        st.limit = (st.limit * DECREASE).max(1.0);
        st.generation += 1;
        st.narrowed += 1;
        self.resize(&mut st);
        tracing::warn!(
            event = "get_window_narrowed",
            gets = st.permits,
            previous,
            throttled = st.throttled,
            "the store is throttling: fewer GETs in flight"
        );
    }

    /// Makes the semaphore stand for `floor(limit)` permits.
    fn resize(&self, st: &mut WindowState) {
        let want = (st.limit.floor() as usize).clamp(1, self.max);
        if want > st.permits {
            let mut add = want - st.permits;
            let paid = add.min(st.debt);
            st.debt -= paid;
            add -= paid;
            self.sem.add_permits(add);
        } else if want < st.permits {
            let cut = st.permits - want;
            let forgotten = self.sem.forget_permits(cut);
            st.debt += cut - forgotten;
        }
        st.permits = want;
    }

    /// GETs in flight now.
    pub fn in_flight(&self) -> usize {
        self.state.lock().expect("window lock").in_flight
    }

    /// What the window did so far.
    pub fn stats(&self) -> WindowStats {
        let st = self.state.lock().expect("window lock");
        WindowStats {
            gets: st.permits,
            peak_gets_in_flight: st.peak,
            narrowed: st.narrowed,
            throttled: st.throttled,
            splits: st.splits,
        }
    }
}

/// Reads jobs in parts through one shared [`GetWindow`].
#[derive(Debug, Clone)]
pub struct Fetcher {
    window: Arc<GetWindow>,
    part_size: u64,
}

impl Fetcher {
    /// A fetcher with a window of `gets` and parts of about `part_size` bytes.
    pub fn new(gets: usize, part_size: u64) -> Fetcher {
        Fetcher {
            window: GetWindow::new(gets),
            part_size: part_size.max(1),
        }
    }

    /// The shared window.
    pub fn window(&self) -> &Arc<GetWindow> {
        &self.window
    }

    /// Reads `range` of `key` in parallel parts, each into its own accumulator of
    /// `kind`, and merges them. Returns the merged accumulator and the bytes read.
    ///
    /// While its parts stream, the job looks every [`SPLIT_EVERY`] for an idle window
    /// (free GET slots and nobody waiting for one, as at the end of a plan): then it
    /// splits the part with the most bytes still to come, and a new GET reads its
    /// second half into another accumulator.
    pub async fn read_merged(
        &self,
        store: &Store,
        key: &str,
        range: &RecordRange,
        expect: &Expect,
        kind: ProcessorKind,
        progress: &AtomicU64,
    ) -> Result<(Accumulator, u64), StoreError> {
        use futures::stream::{FuturesUnordered, StreamExt};
        let record_length = range.record_length as usize;
        let empty = || {
            Accumulator::new(kind, record_length)
                .ok_or_else(|| StoreError::Permanent(format!("{kind:?} does not stream")))
        };
        let job_start = self.bytes(store, key, range)?.start;
        let read = |claim: Arc<PartClaim>, start: u64| async move {
            let mut acc = empty()?;
            let read = self
                .read_part(
                    store,
                    key,
                    range,
                    &claim,
                    start,
                    expect,
                    progress,
                    &mut |c: &[u8]| acc.add(c),
                )
                .await?;
            Ok::<_, StoreError>((acc, read))
        };
        let mut claims = Vec::new();
        let mut running = FuturesUnordered::new();
        for part in self.split(store, key, range)? {
            let claim = Arc::new(PartClaim::new(part.clone()));
            claims.push(Arc::clone(&claim));
            running.push(read(claim, part.start));
        }
        let splits = store.part_retries_are_ours();
        let mut done = Vec::new();
        let mut tick = tokio::time::interval(SPLIT_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                next = running.next() => match next {
                    None => break,
                    Some(result) => done.push(result?),
                },
                _ = tick.tick(), if splits => {
                    if !self.window.idle() {
                        continue;
                    }
                    let widest = claims.iter().max_by_key(|c| c.remaining());
                    let tail = widest.and_then(|c| {
                        c.split_off(job_start, range.record_length, MIN_SPLIT)
                    });
                    if let Some(tail) = tail {
                        self.window.split();
                        let claim = Arc::new(PartClaim::new(tail.clone()));
                        claims.push(Arc::clone(&claim));
                        running.push(read(claim, tail.start));
                    }
                }
            }
        }
        check_same_object(store, key, expect, done.iter().map(|(_, r)| r))?;
        let mut total = empty()?;
        let mut bytes = 0;
        for (acc, read) in &done {
            total.merge(acc);
            bytes += read.bytes;
        }
        Ok((total, bytes))
    }

    /// Reads `range` of `key` in order, part after part, into `sink` (one stream, for
    /// `exec`: a bounded [`exec::Feed`], which the part GETs wait for). Returns the bytes
    /// read.
    pub async fn read_in_order(
        &self,
        store: &Store,
        key: &str,
        range: &RecordRange,
        expect: &Expect,
        progress: &AtomicU64,
        sink: &mut dyn RecordSink,
    ) -> Result<u64, StoreError> {
        let mut reads = Vec::new();
        for part in self.split(store, key, range)? {
            let claim = PartClaim::new(part.clone());
            reads.push(
                self.read_part(
                    store, key, range, &claim, part.start, expect, progress, sink,
                )
                .await?,
            );
        }
        check_same_object(store, key, expect, reads.iter())?;
        Ok(reads.iter().map(|r| r.bytes).sum())
    }

    fn bytes(
        &self,
        store: &Store,
        key: &str,
        range: &RecordRange,
    ) -> Result<Range<u64>, StoreError> {
        range
            .byte_range()
            .map_err(|e| StoreError::Permanent(format!("{}{key}: {e}", store.url())))
    }

    fn split(
        &self,
        store: &Store,
        key: &str,
        range: &RecordRange,
    ) -> Result<Vec<Range<u64>>, StoreError> {
        let bytes = self.bytes(store, key, range)?;
        // Sizes drawn from ±25 % of the part size: GETs that share a link evenly and
        // started together would otherwise end together and all wait for their next
        // first byte at once, a gap per round. Uneven sizes spread the rounds out.
        let (lo, hi) = (self.part_size * 3 / 4, self.part_size * 5 / 4);
        let mut rng = rand::rng();
        Ok(parts::split_sized(&bytes, range.record_length, || {
            rand::Rng::random_range(&mut rng, lo.max(1)..=hi.max(1))
        }))
    }

    /// One part (what `claim` holds, from `start`), inside the window, retried
    /// (resuming) when the store leaves that to us.
    #[allow(clippy::too_many_arguments)]
    async fn read_part(
        &self,
        store: &Store,
        key: &str,
        range: &RecordRange,
        claim: &PartClaim,
        start: u64,
        expect: &Expect,
        progress: &AtomicU64,
        sink: &mut dyn RecordSink,
    ) -> Result<PartRead, StoreError> {
        let mut delivered = 0;
        let mut attempts = 0;
        let mut backoff = FullJitter::new(Duration::from_millis(100), Duration::from_secs(5));
        let mut counted = Counted { progress, sink };
        loop {
            let permit = self.window.acquire().await;
            claim.restart_at(start + delivered);
            match store
                .read_part(key, range, claim, expect, &mut counted)
                .await
            {
                Ok(read) => {
                    self.window.succeeded();
                    return Ok(PartRead {
                        bytes: delivered + read.bytes,
                        etag: read.etag,
                    });
                }
                Err(failure) => {
                    delivered += failure.delivered;
                    if failure.delivered > 0 {
                        // It made progress: not the store failing over and over.
                        attempts = 0;
                        backoff.reset();
                    }
                    if failure.throttled {
                        self.window.throttled(&permit);
                    }
                    drop(permit);
                    attempts += 1;
                    if !store.part_retries_are_ours()
                        || !failure.error.is_retryable()
                        || attempts >= MAX_PART_ATTEMPTS
                    {
                        return Err(failure.error);
                    }
                    let pause = backoff.next_delay();
                    tracing::debug!(
                        event = "part_retry",
                        attempt = attempts,
                        throttled = failure.throttled,
                        pause_ms = pause.as_millis() as u64,
                        error = %failure.error,
                        "part GET failed; trying again"
                    );
                    tokio::time::sleep(pause).await;
                }
            }
        }
    }
}

/// A sink that counts what reaches it (the job's progress, for the drain).
struct Counted<'a> {
    progress: &'a AtomicU64,
    sink: &'a mut dyn RecordSink,
}

impl RecordSink for Counted<'_> {
    fn records(&mut self, records: &[u8]) {
        self.progress
            .fetch_add(records.len() as u64, Ordering::Relaxed);
        self.sink.records(records);
    }

    fn wait(&mut self) -> Option<futures::future::BoxFuture<'_, ()>> {
        self.sink.wait()
    }
}

/// The command's stdin takes records as a part GET delivers them, and the GET waits
/// for room in its buffer.
impl RecordSink for exec::Feed {
    fn records(&mut self, records: &[u8]) {
        self.push(records);
    }

    fn wait(&mut self) -> Option<futures::future::BoxFuture<'_, ()>> {
        self.has_pending()
            .then(|| Box::pin(self.flush()) as futures::future::BoxFuture<'_, ()>)
    }
}

/// Without a planned ETag, every part must have read the same object.
fn check_same_object<'a>(
    store: &Store,
    key: &str,
    expect: &Expect,
    reads: impl Iterator<Item = &'a PartRead>,
) -> Result<(), StoreError> {
    if expect.etag.is_some() {
        return Ok(()); // every GET was If-Match on it
    }
    let mut seen: Option<&Option<String>> = None;
    for r in reads {
        match seen {
            Some(e) if e != &r.etag => {
                return Err(StoreError::Retryable(format!(
                    "{}{key}: the object changed while its parts were read",
                    store.url()
                )))
            }
            _ => seen = Some(&r.etag),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_window_halves_once_per_round_and_grows_back() {
        let w = GetWindow::new(8);
        let a = w.acquire().await;
        let b = w.acquire().await;
        w.throttled(&a);
        assert_eq!(w.stats().gets, 4);
        // b was sent before the halving: its 503 is the same congestion.
        w.throttled(&b);
        assert_eq!(w.stats().gets, 4);
        assert_eq!((w.stats().narrowed, w.stats().throttled), (1, 2));
        drop((a, b));
        let c = w.acquire().await;
        w.throttled(&c);
        assert_eq!(w.stats().gets, 2);
        drop(c);
        for _ in 0..200 {
            w.succeeded();
        }
        assert_eq!(w.stats().gets, 8);
    }

    #[tokio::test]
    async fn a_narrowed_window_admits_no_more_than_its_width() {
        let w = GetWindow::new(4);
        let held: Vec<_> = futures::future::join_all((0..4).map(|_| w.acquire())).await;
        w.throttled(&held[0]);
        assert_eq!(w.stats().gets, 2);
        drop(held);
        // Two permits were forgotten as they came back: only two are free.
        let two: Vec<_> = futures::future::join_all((0..2).map(|_| w.acquire())).await;
        let third = tokio::time::timeout(Duration::from_millis(50), w.acquire()).await;
        assert!(third.is_err(), "a third GET waits");
        assert_eq!(w.stats().peak_gets_in_flight, 4);
        drop(two);
    }
}
