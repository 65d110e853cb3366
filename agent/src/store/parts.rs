//! Part GETs: one record-aligned piece of a job, read with one ranged GET that
//! `object_store` does not retry, so the caller sees every 503 SlowDown and keeps
//! what was delivered before a body was cut.
//!
//! `object_store` retries a throttled or cut request by itself, up to its
//! [`RetryConfig`](object_store::RetryConfig) budget, and then reports only the last
//! error: the 503s that should narrow the agent's GET window never reach it, and the
//! retries go out at full width. A [`Store`] opened on `s3://` or `http(s)://` therefore
//! holds a second client with retries off for part GETs; the agent's fetch loop
//! (`instance/fetch.rs`) retries them itself, resuming after the bytes already
//! delivered, inside its AIMD window. Every part GET carries the job's checks: the
//! planned size, and the planned ETag as `If-Match`.

use std::ops::Range;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use object_store::{GetOptions, GetRange, GetResultPayload, ObjectStore};

use super::carry::{push_rechunked, RecordCarry};
use super::{check_size, classify, pread, Expect, Store, StoreError, FILE_READ_CHUNK};
use crate::contract::range::RecordRange;

/// Where a part GET delivers whole records.
///
/// Any `FnMut(&[u8])` is one that takes everything at once (the accumulators). A
/// sink with a bounded buffer behind it (the `exec` command's stdin) also answers
/// [`RecordSink::wait`]: the GET reads nothing more from the store until the sink has
/// room, so memory is bounded by that buffer and not by the job.
pub trait RecordSink: Send {
    /// Takes whole records (never an empty slice).
    fn records(&mut self, records: &[u8]);
    /// A future that resolves once the sink can take more; `None` when it always can.
    /// Called before each read from the store.
    fn wait(&mut self) -> Option<futures::future::BoxFuture<'_, ()>> {
        None
    }
}

impl<F: FnMut(&[u8]) + Send> RecordSink for F {
    fn records(&mut self, records: &[u8]) {
        self(records)
    }
}

/// A part GET that failed, and what it delivered first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartFailure {
    /// Why.
    pub error: StoreError,
    /// The store asked us to slow down (503 SlowDown, 429, a throttling message).
    pub throttled: bool,
    /// Bytes of whole records handed to the sink before the failure: a retry resumes
    /// after them.
    pub delivered: u64,
}

impl PartFailure {
    fn before_any(error: StoreError) -> PartFailure {
        PartFailure {
            error,
            throttled: false,
            delivered: 0,
        }
    }
}

/// What a part GET read: its bytes, and the ETag the store answered with (so a
/// caller without a planned ETag can check every part saw the same object).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartRead {
    /// Bytes delivered to the sink.
    pub bytes: u64,
    /// The object's ETag, when the store gives one.
    pub etag: Option<String>,
}

/// Splits the byte range `bytes` of records of `record_length` bytes into consecutive
/// record-aligned parts of about `part_size` bytes (whole records, at least one).
pub fn split(bytes: &Range<u64>, record_length: u64, part_size: u64) -> Vec<Range<u64>> {
    let record_length = record_length.max(1);
    let records = (bytes.end.saturating_sub(bytes.start)) / record_length;
    if records == 0 {
        return vec![bytes.clone()];
    }
    let per_part = (part_size / record_length).max(1);
    let parts = records.div_ceil(per_part);
    // Even parts: a 17 MiB job is two 8.5 MiB parts, not 8 + 8 + 1.
    let per_part = records.div_ceil(parts);
    (0..parts)
        .map(|i| {
            let first = i * per_part;
            let last = ((i + 1) * per_part).min(records);
            bytes.start + first * record_length..bytes.start + last * record_length
        })
        .collect()
}

/// Splits like [`split`], but each part's size is drawn by `next_size` (bytes, rounded
/// down to whole records, at least one); a last piece under half of the size drawn for
/// it is folded into the part before.
pub fn split_sized(
    bytes: &Range<u64>,
    record_length: u64,
    mut next_size: impl FnMut() -> u64,
) -> Vec<Range<u64>> {
    let record_length = record_length.max(1);
    let mut parts: Vec<Range<u64>> = Vec::new();
    let mut at = bytes.start;
    while at < bytes.end {
        let size = next_size();
        let records = (size / record_length).max(1);
        let end = (at + records * record_length).min(bytes.end);
        let rest = bytes.end - end;
        if rest > 0 && rest < size / 2 {
            parts.push(at..bytes.end);
            break;
        }
        parts.push(at..end);
        at = end;
    }
    if parts.is_empty() {
        parts.push(bytes.clone());
    }
    parts
}

/// The bytes one part GET may still deliver: `pos..end`, where `end` can be lowered
/// while the GET runs ([`PartClaim::split_off`]), so an idle GET slot can take over
/// the second half of a long part near the end of a plan. The reader takes bytes
/// under the same lock, so it never delivers past a lowered end.
#[derive(Debug)]
pub struct PartClaim {
    state: Mutex<ClaimState>,
}

#[derive(Debug)]
struct ClaimState {
    pos: u64,
    end: u64,
    streaming: bool,
}

impl PartClaim {
    /// A claim on `bytes`.
    pub fn new(bytes: Range<u64>) -> PartClaim {
        PartClaim {
            state: Mutex::new(ClaimState {
                pos: bytes.start,
                end: bytes.end,
                streaming: false,
            }),
        }
    }

    /// A new GET starts at `at` (a retry resumes after what was delivered).
    pub fn restart_at(&self, at: u64) {
        let mut st = self.state.lock().expect("claim lock");
        st.pos = at;
        st.streaming = false;
    }

    fn request(&self) -> Range<u64> {
        let st = self.state.lock().expect("claim lock");
        st.pos..st.end
    }

    fn streaming(&self) {
        self.state.lock().expect("claim lock").streaming = true;
    }

    /// Takes up to `n` more bytes; returns how many may be delivered (0 at the end).
    fn take(&self, n: u64) -> u64 {
        let mut st = self.state.lock().expect("claim lock");
        let grant = n.min(st.end.saturating_sub(st.pos));
        st.pos += grant;
        grant
    }

    fn end(&self) -> u64 {
        self.state.lock().expect("claim lock").end
    }

    /// Bytes still to come, while a GET is streaming them (0 otherwise).
    pub fn remaining(&self) -> u64 {
        let st = self.state.lock().expect("claim lock");
        if st.streaming {
            st.end.saturating_sub(st.pos)
        } else {
            0
        }
    }

    /// Gives up the second half of what is still to come (record-aligned from
    /// `records_from`), when that is at least `min` bytes and a GET is streaming;
    /// returns it for another GET.
    pub fn split_off(&self, records_from: u64, record_length: u64, min: u64) -> Option<Range<u64>> {
        let mut st = self.state.lock().expect("claim lock");
        if !st.streaming {
            return None;
        }
        let record_length = record_length.max(1);
        let half = st.pos + (st.end.saturating_sub(st.pos)) / 2;
        let mid = records_from
            + (half.saturating_sub(records_from)).div_ceil(record_length) * record_length;
        if mid <= st.pos || mid >= st.end || st.end - mid < min {
            return None;
        }
        let tail = mid..st.end;
        st.end = mid;
        Some(tail)
    }
}

/// True when a failure message says the store is throttling us.
pub fn is_throttle(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("status code: 503")
        || m.contains("status code: 429")
        || m.contains("slowdown")
        || m.contains("slow down")
        || m.contains("throttl")
        || m.contains("reduce your request rate")
}

impl Store {
    /// True when part GETs ([`Store::read_part`]) are not retried underneath, so the
    /// caller should retry them (the HTTP stores); false for files and test stores.
    pub fn part_retries_are_ours(&self) -> bool {
        self.part_retries_ours
    }

    /// Uses `client` (the same store, retries off) for part GETs.
    pub(crate) fn with_part_client(mut self, client: Arc<dyn ObjectStore>) -> Store {
        self.parts = client;
        self.part_retries_ours = true;
        self
    }

    /// Reads what `claim` holds (whole records of `range.record_length`, inside
    /// `range`) of `key` with one ranged GET, not retried, and streams whole records to
    /// `sink`, stopping early if the claim's end is lowered meanwhile. `range` is the
    /// job's, for messages and the size check. Before each read from the store it waits
    /// for the sink to have room ([`RecordSink::wait`]).
    pub async fn read_part(
        &self,
        key: &str,
        range: &RecordRange,
        claim: &PartClaim,
        expect: &Expect,
        sink: &mut dyn RecordSink,
    ) -> Result<PartRead, PartFailure> {
        let what = self.describe(key);
        let record_length = usize::try_from(range.record_length).map_err(|_| {
            PartFailure::before_any(StoreError::Permanent(format!(
                "{what}: record length too large"
            )))
        })?;
        let path = self.path(key).map_err(PartFailure::before_any)?;
        let bytes = claim.request();
        let opts = GetOptions {
            range: Some(GetRange::Bounded(bytes.clone())),
            if_match: expect.etag.clone(),
            ..Default::default()
        };
        let res = match self.parts.get_opts(&path, opts).await {
            Ok(r) => r,
            Err(e) => {
                let full = crate::error::full_message(&e);
                if is_throttle(&full) {
                    return Err(PartFailure {
                        error: StoreError::Retryable(format!("{what}: {full}")),
                        throttled: true,
                        delivered: 0,
                    });
                }
                let job_bytes = range
                    .byte_range()
                    .map_err(|e| StoreError::Permanent(format!("{what}: {e}")))
                    .map_err(PartFailure::before_any)?;
                return Err(PartFailure::before_any(
                    self.read_error(e, &what, range, &job_bytes, &path).await,
                ));
            }
        };
        let job_bytes = range
            .byte_range()
            .map_err(|e| PartFailure::before_any(StoreError::Permanent(format!("{what}: {e}"))))?;
        check_size(&what, range, &job_bytes, res.meta.size).map_err(PartFailure::before_any)?;
        super::check_planned_size(&what, expect, res.meta.size).map_err(PartFailure::before_any)?;
        if res.range != bytes {
            return Err(PartFailure::before_any(StoreError::Retryable(format!(
                "{what}: {range}: asked for bytes {}..{}, the store answered {}..{}",
                bytes.start, bytes.end, res.range.start, res.range.end
            ))));
        }
        let etag = res.meta.e_tag.clone();
        claim.streaming();
        let mut carry = RecordCarry::new(record_length);
        let mut got = 0u64;
        let failed = |error: StoreError, got: u64, carry: &RecordCarry| PartFailure {
            throttled: is_throttle(&error.to_string()),
            error,
            delivered: got - carry.pending() as u64,
        };
        match res.payload {
            GetResultPayload::File(file, _) => {
                let file = Arc::new(file);
                let mut offset = bytes.start;
                // Whole records per read; never more than the part, so a small job
                // does not hold a 1 MiB buffer.
                let chunk = ((FILE_READ_CHUNK / record_length).max(1) * record_length)
                    .min((bytes.end - bytes.start) as usize);
                let mut buf = Vec::with_capacity(chunk);
                loop {
                    if let Some(room) = sink.wait() {
                        room.await;
                    }
                    let n = claim.take(chunk as u64) as usize;
                    if n == 0 {
                        break;
                    }
                    let f = Arc::clone(&file);
                    let (back, read) = tokio::task::spawn_blocking(move || {
                        let r = pread(&f, offset, n, &mut buf);
                        (buf, r)
                    })
                    .await
                    .map_err(|e| {
                        failed(
                            StoreError::Retryable(format!("{what}: read task: {e}")),
                            got,
                            &carry,
                        )
                    })?;
                    buf = back;
                    if let Err(e) = read {
                        return Err(failed(
                            super::file_read_error(
                                &format!("{what}: {range}: read at {offset}"),
                                &e,
                            ),
                            got,
                            &carry,
                        ));
                    }
                    if buf.is_empty() {
                        break; // the file shrank under us; reported below
                    }
                    offset += buf.len() as u64;
                    got += buf.len() as u64;
                    push_rechunked(&mut carry, &buf, self.chunk_size, &mut |r: &[u8]| {
                        sink.records(r)
                    });
                }
            }
            GetResultPayload::Stream(mut stream) => {
                loop {
                    if let Some(room) = sink.wait() {
                        room.await;
                    }
                    let Some(chunk) = stream.next().await else {
                        break;
                    };
                    let chunk = match chunk {
                        Ok(c) => c,
                        Err(e) => {
                            let error = match classify(&e, &what) {
                                StoreError::Retryable(m) => StoreError::Retryable(format!(
                                    "{m} ({range}: part {}..{} cut short after {got} bytes)",
                                    bytes.start, bytes.end
                                )),
                                other => other,
                            };
                            return Err(failed(error, got, &carry));
                        }
                    };
                    let take = claim.take(chunk.len() as u64) as usize;
                    got += take as u64;
                    push_rechunked(
                        &mut carry,
                        &chunk[..take],
                        self.chunk_size,
                        &mut |r: &[u8]| sink.records(r),
                    );
                    if take < chunk.len() || bytes.start + got == claim.end() {
                        // Done, or the claim was split: drop the rest of the body.
                        break;
                    }
                }
            }
        }
        let want = claim.end() - bytes.start;
        if got != want || carry.pending() != 0 {
            return Err(failed(
                StoreError::Retryable(format!(
                    "{what}: {range}: part {}..{} cut short: {got} of {want} bytes",
                    bytes.start, bytes.end
                )),
                got,
                &carry,
            ));
        }
        Ok(PartRead { bytes: got, etag })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_record_aligned_even_and_cover_the_range() {
        let parts = split(&(100..100 + 17 * 10), 10, 80);
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0], 100..160);
        assert_eq!(parts.last().unwrap().end, 270);
        for w in parts.windows(2) {
            assert_eq!(w[0].end, w[1].start);
        }
        assert!(parts
            .iter()
            .all(|p| (p.end - p.start) % 10 == 0 && p.end > p.start));
        // Records longer than a part: one record per part.
        assert_eq!(split(&(0..30), 10, 4).len(), 3);
        // A job smaller than a part: one part.
        assert_eq!(split(&(0..30), 10, 8 << 20), vec![0..30]);
    }

    proptest::proptest! {
        #[test]
        fn sized_parts_are_record_aligned_and_cover_the_range(
            start in 0u64..1000,
            records in 1u64..500,
            len in 1u64..50,
            sizes in proptest::collection::vec(1u64..2000, 1..10),
        ) {
            let bytes = start * len..(start + records) * len;
            let mut i = 0;
            let parts = split_sized(&bytes, len, || { i += 1; sizes[i % sizes.len()] });
            proptest::prop_assert_eq!(parts.first().unwrap().start, bytes.start);
            proptest::prop_assert_eq!(parts.last().unwrap().end, bytes.end);
            for w in parts.windows(2) {
                proptest::prop_assert_eq!(w[0].end, w[1].start);
            }
            for p in &parts {
                proptest::prop_assert!(p.end > p.start && (p.end - p.start) % len == 0);
            }
        }
    }

    #[test]
    fn a_claim_splits_on_a_record_boundary_only_while_streaming() {
        let c = PartClaim::new(100..1100);
        assert_eq!(c.split_off(100, 10, 1), None, "not streaming yet");
        c.streaming();
        assert_eq!(c.take(105), 105);
        // 205..1100 remain: the half mark 652.5 rounds up to the record at 660.
        assert_eq!(c.split_off(100, 10, 1), Some(660..1100));
        assert_eq!(c.end(), 660);
        assert_eq!(c.take(1000), 455);
        assert_eq!(c.take(10), 0);
        assert_eq!(c.split_off(100, 10, 1), None, "nothing left");
    }

    #[test]
    fn throttling_is_recognised() {
        assert!(is_throttle(
            "Server returned non-2xx status code: 503 Service Unavailable: <Code>SlowDown</Code>"
        ));
        assert!(is_throttle("status code: 429 Too Many Requests"));
        assert!(!is_throttle("status code: 500 Internal Server Error"));
    }
}
