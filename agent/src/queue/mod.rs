//! Queues: lease, extend, ack, release, dead-letter (docs/architecture.md).
//!
//! One seam, two real implementations: SQS for fleets (`https://sqs…` or any http(s)
//! URL) and SQLite for one machine (`sqlite:///path/to/queue.db`).

use crate::error::ErrorClass;
use std::time::Duration;

use async_trait::async_trait;

/// One leased message. Hidden from other workers until its lease runs out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The queue's id of the message (stable across deliveries).
    pub message_id: String,
    /// What identifies this delivery (an SQS receipt handle, a SQLite lease token).
    pub handle: String,
    /// The message body, unchanged (a docs/formats.md job, or anything a producer sent).
    pub body: String,
    /// How many times the message has been received, this delivery included (1 = first).
    pub receive_count: u32,
}

/// Counts for `rangefleet status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct QueueStats {
    /// Messages waiting to be leased.
    pub visible: u64,
    /// Messages leased and not yet acked or released.
    pub in_flight: u64,
    /// Messages in the dead letters.
    pub dead: u64,
}

/// What went wrong talking to a queue, classed as docs/architecture.md#defaults says.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// Worth retrying with backoff: 5xx, timeouts, a busy database.
    #[error("{0}")]
    Retryable(String),
    /// The agent or its environment is wrong (access denied, no such queue, bad
    /// credentials): stop leasing, back off, log loudly.
    #[error("{0}")]
    Fault(String),
    /// The lease is no longer ours (expired, or already acked): nothing to do.
    #[error("lease no longer held: {0}")]
    LeaseLost(String),
    /// The queue URL itself is unusable.
    #[error("{0}")]
    BadUrl(String),
}

impl QueueError {
    /// `Retryable` and `LeaseLost` (another attempt follows) are
    /// [`ErrorClass::Retryable`], `Fault` [`ErrorClass::Environment`], `BadUrl`
    /// [`ErrorClass::Usage`].
    pub fn class(&self) -> ErrorClass {
        match self {
            QueueError::Retryable(_) | QueueError::LeaseLost(_) => ErrorClass::Retryable,
            QueueError::Fault(_) => ErrorClass::Environment,
            QueueError::BadUrl(_) => ErrorClass::Usage,
        }
    }
}

/// The queue seam. Implementations: `sqlite::SqliteQueue`, `sqs::SqsQueue`, `fake::FakeQueue`.
#[async_trait]
pub trait Queue: Send + Sync {
    /// Lease up to `max` messages, each hidden for `visibility`; waits up to `wait` for one.
    async fn lease(
        &self,
        max: usize,
        visibility: Duration,
        wait: Duration,
    ) -> Result<Vec<Lease>, QueueError>;
    /// Keep a lease for another `visibility` from now (a heartbeat).
    async fn extend(&self, lease: &Lease, visibility: Duration) -> Result<(), QueueError>;
    /// The job is done: delete the message.
    async fn ack(&self, lease: &Lease) -> Result<(), QueueError>;
    /// Give the message back: visible to others at once.
    async fn release(&self, lease: &Lease) -> Result<(), QueueError>;
    /// Move the message to the dead letters, body unchanged, with `reason`.
    async fn dead_letter(&self, lease: &Lease, reason: &str) -> Result<(), QueueError>;
    /// Add messages (used by `plan`); batched by the implementation.
    async fn enqueue(&self, bodies: &[String]) -> Result<(), QueueError>;
    /// Counts for `status`.
    async fn stats(&self) -> Result<QueueStats, QueueError>;
}

#[cfg(any(test, feature = "test-util"))]
pub mod fake;
pub mod open;
pub mod sqlite;
pub mod sqs;

pub use open::{open, open_for, Access};
