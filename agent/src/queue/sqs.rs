//! The fleet queue: an SQS standard queue and the dead-letter queue its RedrivePolicy names.
//!
//! A lease is a ReceiveMessage (visibility timeout = the lease, long poll = the wait);
//! the receipt handle is the lease's handle. Our own dead-lettering sends the body
//! unchanged to the redrive target with the reason as a message attribute, then deletes
//! the original, so an operator finds every dead job, ours or SQS's, in one place.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::{
    MessageAttributeValue, MessageSystemAttributeName, QueueAttributeName,
    SendMessageBatchRequestEntry,
};
use aws_sdk_sqs::Client;
use futures::stream::{FuturesUnordered, StreamExt};
use tokio::sync::OnceCell;

use super::{Lease, Queue, QueueError, QueueStats};

/// SQS's own limits: 10 entries per batch, 20 s of long polling, 12 h of visibility.
const MAX_BATCH: usize = 10;
const MAX_WAIT_SECS: u64 = 20;
const MAX_VISIBILITY_SECS: u64 = 12 * 60 * 60;
/// A batch's bodies together must stay under SQS's request limit (256 KiB on older
/// queues); leave room for the envelope.
const MAX_BATCH_BYTES: usize = 200 * 1024;
/// SendMessageBatch calls in flight at once while enqueueing a plan.
const ENQUEUE_CONCURRENCY: usize = 8;
/// Entries that SQS failed on its side are sent again this many times.
const ENQUEUE_ATTEMPTS: u32 = 5;
/// Reasons longer than this are cut (on a character boundary) before they become an attribute.
const MAX_REASON_BYTES: usize = 1024;

/// Message attribute names set on dead letters.
pub const REASON_ATTRIBUTE: &str = "rangefleet.reason";
/// How many times the job was received before it was dead-lettered.
pub const ATTEMPTS_ATTRIBUTE: &str = "rangefleet.attempts";

/// An SQS queue, with its dead-letter queue found from the RedrivePolicy on first use.
#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: Client,
    queue_url: String,
    dlq_url: std::sync::Arc<OnceCell<String>>,
}

impl SqsQueue {
    /// A queue at `queue_url`, reached with `client`. Makes no call until used.
    pub fn new(client: Client, queue_url: impl Into<String>) -> SqsQueue {
        SqsQueue {
            client,
            queue_url: queue_url.into(),
            dlq_url: Default::default(),
        }
    }

    /// The queue's URL.
    pub fn queue_url(&self) -> &str {
        &self.queue_url
    }

    /// The dead-letter queue's URL, from the queue's RedrivePolicy; `None` when it has
    /// none. Found once, then remembered (a queue without one is asked again next time).
    pub async fn dead_letter_queue_url(&self) -> Result<Option<String>, QueueError> {
        if let Some(url) = self.dlq_url.get() {
            return Ok(Some(url.clone()));
        }
        let found = self.find_dead_letter_queue().await?;
        if let Some(url) = &found {
            let _ = self.dlq_url.set(url.clone());
        }
        Ok(found)
    }

    async fn find_dead_letter_queue(&self) -> Result<Option<String>, QueueError> {
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(&self.queue_url)
            .attribute_names(QueueAttributeName::RedrivePolicy)
            .send()
            .await
            .map_err(|e| self.error("read the RedrivePolicy of", e))?;
        let Some(policy) = out
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::RedrivePolicy))
        else {
            return Ok(None);
        };
        let arn = serde_json::from_str::<serde_json::Value>(policy)
            .ok()
            .and_then(|v| v.get("deadLetterTargetArn")?.as_str().map(str::to_string))
            .ok_or_else(|| {
                QueueError::Fault(format!(
                    "SQS queue {}: RedrivePolicy has no deadLetterTargetArn: {policy}",
                    self.queue_url
                ))
            })?;
        // arn:aws:sqs:REGION:ACCOUNT:NAME
        let parts: Vec<&str> = arn.splitn(6, ':').collect();
        let (account, name) = match parts.as_slice() {
            [_, _, "sqs", _, account, name] if !name.is_empty() => (*account, *name),
            _ => {
                return Err(QueueError::Fault(format!(
                    "SQS queue {}: dead-letter target {arn:?} is not an SQS queue ARN",
                    self.queue_url
                )))
            }
        };
        let mut req = self.client.get_queue_url().queue_name(name);
        if !account.is_empty() {
            req = req.queue_owner_aws_account_id(account);
        }
        let out = req
            .send()
            .await
            .map_err(|e| self.error(&format!("find the dead-letter queue {arn} of"), e))?;
        match out.queue_url() {
            Some(url) => Ok(Some(url.to_string())),
            None => Err(QueueError::Fault(format!(
                "SQS queue {}: GetQueueUrl for the dead-letter queue {arn} returned no URL",
                self.queue_url
            ))),
        }
    }

    /// Maps an SDK error to docs/architecture.md#defaults's classes, naming the operation and the queue.
    fn error<E>(&self, what: &str, err: SdkError<E>) -> QueueError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        classify(what, &self.queue_url, err)
    }

    async fn receive(
        &self,
        max: i32,
        visibility: i32,
        wait: i32,
    ) -> Result<Vec<Lease>, QueueError> {
        let out = self
            .client
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(max)
            .visibility_timeout(visibility)
            .wait_time_seconds(wait)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .map_err(|e| self.error("receive from", e))?;
        let mut leases = Vec::with_capacity(out.messages().len());
        for m in out.messages() {
            let (Some(id), Some(handle)) = (m.message_id(), m.receipt_handle()) else {
                // Not a message we can ever ack; SQS always sends both.
                continue;
            };
            let receive_count = m
                .attributes()
                .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                .and_then(|c| c.parse().ok())
                .unwrap_or(1);
            leases.push(Lease {
                message_id: id.to_string(),
                handle: handle.to_string(),
                body: m.body().unwrap_or_default().to_string(),
                receive_count,
            });
        }
        Ok(leases)
    }

    async fn set_visibility(&self, what: &str, lease: &Lease, secs: i32) -> Result<(), QueueError> {
        self.client
            .change_message_visibility()
            .queue_url(&self.queue_url)
            .receipt_handle(&lease.handle)
            .visibility_timeout(secs)
            .send()
            .await
            .map_err(|e| self.error(&format!("{what} message {} on", lease.message_id), e))?;
        Ok(())
    }

    /// Sends one batch, sending again the entries SQS failed on its side.
    async fn send_batch(&self, bodies: &[String]) -> Result<(), QueueError> {
        let mut pending: Vec<usize> = (0..bodies.len()).collect();
        let mut delay = Duration::from_millis(100);
        for attempt in 1..=ENQUEUE_ATTEMPTS {
            let entries = pending
                .iter()
                .map(|&i| {
                    SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(&bodies[i])
                        .build()
                        .map_err(|e| {
                            QueueError::Fault(format!(
                                "failed to build a SendMessageBatch entry for {}: {e}",
                                self.queue_url
                            ))
                        })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let out = self
                .client
                .send_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| self.error("send a batch of messages to", e))?;
            if let Some(f) = out.failed().iter().find(|f| f.sender_fault()) {
                return Err(QueueError::Fault(format!(
                    "failed to send a message to SQS queue {}: {} {}",
                    self.queue_url,
                    f.code(),
                    f.message().unwrap_or_default()
                )));
            }
            pending = out
                .failed()
                .iter()
                .filter_map(|f| f.id().parse().ok())
                .collect();
            if pending.is_empty() {
                return Ok(());
            }
            if attempt < ENQUEUE_ATTEMPTS {
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
        }
        Err(QueueError::Retryable(format!(
            "failed to send {} of {} messages to SQS queue {} after {ENQUEUE_ATTEMPTS} attempts",
            pending.len(),
            bodies.len(),
            self.queue_url
        )))
    }

    async fn delete(&self, lease: &Lease, what: &str) -> Result<(), QueueError> {
        self.client
            .delete_message()
            .queue_url(&self.queue_url)
            .receipt_handle(&lease.handle)
            .send()
            .await
            .map_err(|e| self.error(&format!("{what} message {} on", lease.message_id), e))?;
        Ok(())
    }

    async fn approximate_counts(
        &self,
        url: &str,
        names: &[QueueAttributeName],
    ) -> Result<Vec<u64>, QueueError> {
        let mut req = self.client.get_queue_attributes().queue_url(url);
        for n in names {
            req = req.attribute_names(n.clone());
        }
        let out = req
            .send()
            .await
            .map_err(|e| classify("read the attributes of", url, e))?;
        Ok(names
            .iter()
            .map(|n| {
                out.attributes()
                    .and_then(|a| a.get(n))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0)
            })
            .collect())
    }
}

/// Whole seconds for SQS, rounded up so a sub-second lease is never zero.
fn secs_ceil(d: Duration, cap: u64) -> i32 {
    let s = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    s.min(cap) as i32
}

/// Cuts `s` to at most `max` bytes on a character boundary.
fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Splits bodies into SendMessageBatch-sized groups: at most 10, and under the byte limit.
fn batches(bodies: &[String]) -> Vec<&[String]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, b) in bodies.iter().enumerate() {
        let n = i - start;
        if n > 0 && (n == MAX_BATCH || bytes + b.len() > MAX_BATCH_BYTES) {
            out.push(&bodies[start..i]);
            start = i;
            bytes = 0;
        }
        bytes += b.len();
    }
    if start < bodies.len() {
        out.push(&bodies[start..]);
    }
    out
}

const LEASE_LOST_CODES: &[&str] = &[
    "ReceiptHandleIsInvalid",
    "MessageNotInflight",
    "AWS.SimpleQueueService.MessageNotInflight",
];
const FAULT_CODES: &[&str] = &[
    "AccessDenied",
    "AccessDeniedException",
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
    "UnrecognizedClientException",
    "ExpiredToken",
    "InvalidSecurity",
    "NonExistentQueue",
    "AWS.SimpleQueueService.NonExistentQueue",
    "QueueDoesNotExist",
    "QueueDeletedRecently",
    "KmsAccessDenied",
    "KmsDisabled",
    "KmsNotFound",
];
const RETRYABLE_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "RequestThrottled",
    "KmsThrottled",
    "ServiceUnavailable",
    "InternalError",
    "InternalFailure",
    "RequestTimeout",
    "RequestTimeoutException",
];

/// docs/architecture.md#defaults's classes for one failed SQS call on `url`.
fn classify<E>(what: &str, url: &str, err: SdkError<E>) -> QueueError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let msg = format!(
        "failed to {what} SQS queue {url}: {}",
        DisplayErrorContext(&err)
    );
    match &err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            return QueueError::Retryable(msg)
        }
        SdkError::ServiceError(_) => {}
        // Construction failures (no region, no credentials) will fail the same way again.
        _ => return QueueError::Fault(msg),
    }
    let code = err.code().unwrap_or_default();
    let status = err.raw_response().map(|r| r.status().as_u16()).unwrap_or(0);
    if LEASE_LOST_CODES.contains(&code) {
        QueueError::LeaseLost(msg)
    } else if FAULT_CODES.contains(&code) || status == 403 {
        QueueError::Fault(msg)
    } else if RETRYABLE_CODES.contains(&code) || status == 429 || status >= 500 {
        QueueError::Retryable(msg)
    } else {
        // Any other 4xx is a request we built wrong or a queue set up wrong: retrying
        // will not help, and dead-lettering jobs over it would lose good work.
        QueueError::Fault(msg)
    }
}

#[async_trait]
impl Queue for SqsQueue {
    async fn lease(
        &self,
        max: usize,
        visibility: Duration,
        wait: Duration,
    ) -> Result<Vec<Lease>, QueueError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let visibility = secs_ceil(visibility, MAX_VISIBILITY_SECS);
        let mut out = Vec::new();
        let mut wait = secs_ceil(wait, MAX_WAIT_SECS);
        // More than one call only while SQS keeps handing out full batches: a short
        // batch means the queue has nothing more for us right now.
        while out.len() < max {
            let want = (max - out.len()).min(MAX_BATCH);
            let got = self.receive(want as i32, visibility, wait).await;
            let got = match got {
                Ok(g) => g,
                // What we already hold stays ours until it expires; hand it over.
                Err(e) if out.is_empty() => return Err(e),
                Err(_) => break,
            };
            let full = got.len() == want;
            out.extend(got);
            if !full {
                break;
            }
            wait = 0;
        }
        Ok(out)
    }

    async fn extend(&self, lease: &Lease, visibility: Duration) -> Result<(), QueueError> {
        self.set_visibility("extend", lease, secs_ceil(visibility, MAX_VISIBILITY_SECS))
            .await
    }

    async fn ack(&self, lease: &Lease) -> Result<(), QueueError> {
        self.delete(lease, "ack").await
    }

    async fn release(&self, lease: &Lease) -> Result<(), QueueError> {
        self.set_visibility("release", lease, 0).await
    }

    async fn dead_letter(&self, lease: &Lease, reason: &str) -> Result<(), QueueError> {
        let Some(dlq) = self.dead_letter_queue_url().await? else {
            return Err(QueueError::Fault(format!(
                "failed to dead-letter message {} from SQS queue {}: the queue has no \
                 RedrivePolicy, so there is no dead-letter queue; give it one (the Terraform \
                 module does)",
                lease.message_id, self.queue_url
            )));
        };
        let dlq = dlq.as_str();
        let attr = |ty: &str, v: String| {
            MessageAttributeValue::builder()
                .data_type(ty)
                .string_value(v)
                .build()
                .map_err(|e| QueueError::Fault(format!("failed to build a message attribute: {e}")))
        };
        // Still ours? A lease lost before the copy would leave the job both in the
        // dead letters and back in the queue; a minute covers the two calls below.
        self.set_visibility("check the lease of", lease, 60).await?;
        let reason = truncate(reason, MAX_REASON_BYTES);
        // SQS refuses an empty String attribute.
        let reason = if reason.is_empty() {
            "(no reason given)"
        } else {
            reason
        };
        self.client
            .send_message()
            .queue_url(dlq)
            .message_body(&lease.body)
            .message_attributes(REASON_ATTRIBUTE, attr("String", reason.to_string())?)
            .message_attributes(
                ATTEMPTS_ATTRIBUTE,
                attr("Number", lease.receive_count.to_string())?,
            )
            .send()
            .await
            .map_err(|e| classify("send a dead letter to", dlq, e))?;
        // If this delete fails the job stays in both queues; a duplicate dead letter is
        // better than a lost one.
        self.delete(lease, "delete the dead-lettered").await
    }

    async fn enqueue(&self, bodies: &[String]) -> Result<(), QueueError> {
        // A plain loop over FuturesUnordered rather than `buffer_unordered(...)`: the
        // closure version is not provably Send inside an async_trait method.
        let mut todo = batches(bodies).into_iter();
        let mut running = FuturesUnordered::new();
        loop {
            while running.len() < ENQUEUE_CONCURRENCY {
                match todo.next() {
                    Some(b) => running.push(self.send_batch(b)),
                    None => break,
                }
            }
            match running.next().await {
                Some(r) => r?,
                None => return Ok(()),
            }
        }
    }

    async fn stats(&self) -> Result<QueueStats, QueueError> {
        let counts = self
            .approximate_counts(
                &self.queue_url,
                &[
                    QueueAttributeName::ApproximateNumberOfMessages,
                    QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
                ],
            )
            .await?;
        let dead = match self.dead_letter_queue_url().await? {
            Some(dlq) => {
                self.approximate_counts(&dlq, &[QueueAttributeName::ApproximateNumberOfMessages])
                    .await?[0]
            }
            // No redrive policy: nothing can have been dead-lettered.
            None => 0,
        };
        Ok(QueueStats {
            visible: counts[0],
            in_flight: counts[1],
            dead,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_round_up_and_cap() {
        assert_eq!(secs_ceil(Duration::from_millis(1500), 20), 2);
        assert_eq!(secs_ceil(Duration::ZERO, 20), 0);
        assert_eq!(secs_ceil(Duration::from_secs(300), 20), 20);
    }

    #[test]
    fn truncation_stays_on_a_char_boundary() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("abc", 10), "abc");
    }

    #[test]
    fn batches_respect_count_and_size() {
        let small: Vec<String> = (0..25).map(|i| i.to_string()).collect();
        let sizes: Vec<usize> = batches(&small).iter().map(|b| b.len()).collect();
        assert_eq!(sizes, vec![10, 10, 5]);
        let big = vec!["x".repeat(150 * 1024); 3];
        assert_eq!(batches(&big).len(), 3);
        assert!(batches(&[]).is_empty());
    }
}
