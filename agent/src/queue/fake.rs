//! An in-memory queue, and a wrapper that makes any queue fail on demand.
//!
//! `FakeQueue` keeps time with `tokio::time::Instant`, so a test under
//! `tokio::time::pause()` sees leases expire without waiting for them.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::{Lease, Queue, QueueError, QueueStats};

/// An in-memory queue with SQS-like semantics: leases hide messages until they expire.
#[derive(Debug, Default)]
pub struct FakeQueue {
    state: Mutex<State>,
    /// Woken whenever a message may have become visible (enqueue, release).
    changed: Notify,
}

#[derive(Debug, Default)]
struct State {
    next_id: u64,
    next_token: u64,
    jobs: BTreeMap<u64, Job>,
    dead: Vec<(String, String, u32)>,
}

#[derive(Debug)]
struct Job {
    body: String,
    visible_at: Instant,
    receive_count: u32,
    token: Option<String>,
}

impl FakeQueue {
    /// An empty queue.
    pub fn new() -> FakeQueue {
        FakeQueue::default()
    }

    /// An empty queue shared behind an `Arc`, ready to hand to code under test.
    pub fn shared() -> Arc<FakeQueue> {
        Arc::new(FakeQueue::new())
    }

    /// The dead letters so far: (body, reason, receive count), oldest first.
    pub fn dead_letters(&self) -> Vec<(String, String, u32)> {
        self.lock().dead.clone()
    }

    /// Bodies of the messages still in the queue (visible or leased), in id order.
    pub fn bodies(&self) -> Vec<String> {
        self.lock().jobs.values().map(|j| j.body.clone()).collect()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave State half-updated in a way that
        // matters to a test double, so a poisoned lock is used as is.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The job the lease points at, if the lease is still the current one.
    fn held<'a>(state: &'a mut State, lease: &Lease) -> Result<(u64, &'a mut Job), QueueError> {
        let id: u64 = lease.message_id.parse().map_err(|_| {
            QueueError::LeaseLost(format!("{} is not a fake message id", lease.message_id))
        })?;
        match state.jobs.get_mut(&id) {
            Some(job) if job.token.as_deref() == Some(lease.handle.as_str()) => Ok((id, job)),
            Some(_) => Err(QueueError::LeaseLost(format!(
                "message {id} was leased again or released"
            ))),
            None => Err(QueueError::LeaseLost(format!("message {id} is gone"))),
        }
    }
}

#[async_trait]
impl Queue for FakeQueue {
    async fn lease(
        &self,
        max: usize,
        visibility: Duration,
        wait: Duration,
    ) -> Result<Vec<Lease>, QueueError> {
        let deadline = Instant::now() + wait;
        loop {
            // Registered before looking, so an enqueue between the look and the wait
            // still wakes us.
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();

            let next_visible = {
                let mut st = self.lock();
                let now = Instant::now();
                let ids: Vec<u64> = st
                    .jobs
                    .iter()
                    .filter(|(_, j)| j.visible_at <= now)
                    .map(|(id, _)| *id)
                    .take(max)
                    .collect();
                if !ids.is_empty() || max == 0 {
                    let mut out = Vec::with_capacity(ids.len());
                    for id in ids {
                        st.next_token += 1;
                        let token = format!("fake-{id}-{}", st.next_token);
                        let job = st.jobs.get_mut(&id).expect("id taken from the map");
                        job.visible_at = now + visibility;
                        job.receive_count += 1;
                        job.token = Some(token.clone());
                        out.push(Lease {
                            message_id: id.to_string(),
                            handle: token,
                            body: job.body.clone(),
                            receive_count: job.receive_count,
                        });
                    }
                    return Ok(out);
                }
                st.jobs.values().map(|j| j.visible_at).min()
            };
            if Instant::now() >= deadline {
                return Ok(Vec::new());
            }
            let until = next_visible.map_or(deadline, |t| t.min(deadline));
            tokio::select! {
                _ = changed => {}
                _ = tokio::time::sleep_until(until) => {}
            }
        }
    }

    async fn extend(&self, lease: &Lease, visibility: Duration) -> Result<(), QueueError> {
        let mut st = self.lock();
        let (_, job) = Self::held(&mut st, lease)?;
        job.visible_at = Instant::now() + visibility;
        Ok(())
    }

    async fn ack(&self, lease: &Lease) -> Result<(), QueueError> {
        let mut st = self.lock();
        let (id, _) = Self::held(&mut st, lease)?;
        st.jobs.remove(&id);
        Ok(())
    }

    async fn release(&self, lease: &Lease) -> Result<(), QueueError> {
        {
            let mut st = self.lock();
            let (_, job) = Self::held(&mut st, lease)?;
            job.visible_at = Instant::now();
            job.token = None;
        }
        self.changed.notify_waiters();
        Ok(())
    }

    async fn dead_letter(&self, lease: &Lease, reason: &str) -> Result<(), QueueError> {
        let mut st = self.lock();
        let (id, _) = Self::held(&mut st, lease)?;
        let job = st.jobs.remove(&id).expect("held() found it");
        st.dead
            .push((job.body, reason.to_string(), job.receive_count));
        Ok(())
    }

    async fn enqueue(&self, bodies: &[String]) -> Result<(), QueueError> {
        {
            let mut st = self.lock();
            let now = Instant::now();
            for body in bodies {
                st.next_id += 1;
                let id = st.next_id;
                st.jobs.insert(
                    id,
                    Job {
                        body: body.clone(),
                        visible_at: now,
                        receive_count: 0,
                        token: None,
                    },
                );
            }
        }
        self.changed.notify_waiters();
        Ok(())
    }

    async fn stats(&self) -> Result<QueueStats, QueueError> {
        let st = self.lock();
        let now = Instant::now();
        let visible = st.jobs.values().filter(|j| j.visible_at <= now).count() as u64;
        Ok(QueueStats {
            visible,
            in_flight: st.jobs.len() as u64 - visible,
            dead: st.dead.len() as u64,
        })
    }
}

/// The queue operations, to say which one a [`FaultyQueue`] should fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// `Queue::lease`
    Lease,
    /// `Queue::extend`
    Extend,
    /// `Queue::ack`
    Ack,
    /// `Queue::release`
    Release,
    /// `Queue::dead_letter`
    DeadLetter,
    /// `Queue::enqueue`
    Enqueue,
    /// `Queue::stats`
    Stats,
}

/// When an injected failure happens relative to the real call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailWhen {
    /// The call fails without reaching the inner queue.
    Before,
    /// The inner queue does the work, then the caller sees the error (a lost reply).
    After,
}

#[derive(Debug)]
struct Planned {
    when: FailWhen,
    error: QueueError,
}

/// Wraps a queue and fails chosen calls: "the next N acks fail with Retryable", and so on.
#[derive(Debug)]
pub struct FaultyQueue<Q: ?Sized> {
    inner: Arc<Q>,
    planned: Mutex<HashMap<Op, VecDeque<Planned>>>,
    calls: Mutex<HashMap<Op, u64>>,
    injected: AtomicU64,
}

impl<Q: Queue + ?Sized> FaultyQueue<Q> {
    /// Wraps `inner`; with nothing planned it behaves exactly like `inner`.
    pub fn new(inner: Arc<Q>) -> FaultyQueue<Q> {
        FaultyQueue {
            inner,
            planned: Mutex::new(HashMap::new()),
            calls: Mutex::new(HashMap::new()),
            injected: AtomicU64::new(0),
        }
    }

    /// The wrapped queue.
    pub fn inner(&self) -> &Arc<Q> {
        &self.inner
    }

    /// The next `n` calls of `op` fail with `error` before reaching the inner queue.
    pub fn fail_next(&self, op: Op, n: usize, error: QueueError) {
        self.plan(op, n, FailWhen::Before, error);
    }

    /// The next `n` calls of `op` fail with `error`, `when` says before or after the real call.
    pub fn plan(&self, op: Op, n: usize, when: FailWhen, error: QueueError) {
        let mut planned = self.planned.lock().unwrap_or_else(|e| e.into_inner());
        let q = planned.entry(op).or_default();
        for _ in 0..n {
            q.push_back(Planned {
                when,
                error: copy_error(&error),
            });
        }
    }

    /// Drops every failure still planned.
    pub fn clear(&self) {
        self.planned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// How many times `op` was called on this wrapper (failed calls included).
    pub fn calls(&self, op: Op) -> u64 {
        let calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        calls.get(&op).copied().unwrap_or(0)
    }

    /// How many failures were injected so far.
    pub fn injected(&self) -> u64 {
        self.injected.load(Ordering::Relaxed)
    }

    fn next(&self, op: Op) -> Option<Planned> {
        *self
            .calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(op)
            .or_default() += 1;
        let p = self
            .planned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(&op)
            .and_then(VecDeque::pop_front);
        if p.is_some() {
            self.injected.fetch_add(1, Ordering::Relaxed);
        }
        p
    }

    async fn run<T, F>(&self, op: Op, call: F) -> Result<T, QueueError>
    where
        F: std::future::Future<Output = Result<T, QueueError>> + Send,
    {
        match self.next(op) {
            None => call.await,
            Some(Planned {
                when: FailWhen::Before,
                error,
            }) => Err(error),
            Some(Planned {
                when: FailWhen::After,
                error,
            }) => {
                call.await?;
                Err(error)
            }
        }
    }
}

/// `QueueError` is not `Clone` (it may one day carry a source); a planned failure is
/// replayed from its class and message.
fn copy_error(e: &QueueError) -> QueueError {
    match e {
        QueueError::Retryable(m) => QueueError::Retryable(m.clone()),
        QueueError::Fault(m) => QueueError::Fault(m.clone()),
        QueueError::LeaseLost(m) => QueueError::LeaseLost(m.clone()),
        QueueError::BadUrl(m) => QueueError::BadUrl(m.clone()),
    }
}

#[async_trait]
impl<Q: Queue + ?Sized> Queue for FaultyQueue<Q> {
    async fn lease(
        &self,
        max: usize,
        visibility: Duration,
        wait: Duration,
    ) -> Result<Vec<Lease>, QueueError> {
        self.run(Op::Lease, self.inner.lease(max, visibility, wait))
            .await
    }

    async fn extend(&self, lease: &Lease, visibility: Duration) -> Result<(), QueueError> {
        self.run(Op::Extend, self.inner.extend(lease, visibility))
            .await
    }

    async fn ack(&self, lease: &Lease) -> Result<(), QueueError> {
        self.run(Op::Ack, self.inner.ack(lease)).await
    }

    async fn release(&self, lease: &Lease) -> Result<(), QueueError> {
        self.run(Op::Release, self.inner.release(lease)).await
    }

    async fn dead_letter(&self, lease: &Lease, reason: &str) -> Result<(), QueueError> {
        self.run(Op::DeadLetter, self.inner.dead_letter(lease, reason))
            .await
    }

    async fn enqueue(&self, bodies: &[String]) -> Result<(), QueueError> {
        self.run(Op::Enqueue, self.inner.enqueue(bodies)).await
    }

    async fn stats(&self) -> Result<QueueStats, QueueError> {
        self.run(Op::Stats, self.inner.stats()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VIS: Duration = Duration::from_secs(30);

    fn bodies(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("job-{i}")).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn lease_expiry_redelivers_with_a_higher_count() {
        let q = FakeQueue::new();
        q.enqueue(&bodies(1)).await.unwrap();
        let first = q.lease(1, VIS, Duration::ZERO).await.unwrap();
        assert_eq!(first[0].receive_count, 1);
        assert!(q.lease(1, VIS, Duration::ZERO).await.unwrap().is_empty());
        // Waiting longer than the lease: the paused clock jumps to the expiry.
        let again = q.lease(1, VIS, VIS * 2).await.unwrap();
        assert_eq!(again[0].body, "job-0");
        assert_eq!(again[0].receive_count, 2);
        assert!(matches!(
            q.ack(&first[0]).await,
            Err(QueueError::LeaseLost(_))
        ));
        q.ack(&again[0]).await.unwrap();
        assert_eq!(q.stats().await.unwrap(), QueueStats::default());
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_lease_wakes_on_enqueue() {
        let q = FakeQueue::shared();
        let waiter = tokio::spawn({
            let q = q.clone();
            async move { q.lease(5, VIS, Duration::from_secs(20)).await }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        q.enqueue(&bodies(3)).await.unwrap();
        let got = waiter.await.unwrap().unwrap();
        assert_eq!(got.len(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn release_extend_and_dead_letter() {
        let q = FakeQueue::new();
        q.enqueue(&bodies(3)).await.unwrap();
        let l = q.lease(10, VIS, Duration::ZERO).await.unwrap();
        assert_eq!(l.len(), 3);
        q.release(&l[0]).await.unwrap();
        q.extend(&l[1], VIS * 4).await.unwrap();
        q.dead_letter(&l[2], "bad job").await.unwrap();
        assert_eq!(
            q.stats().await.unwrap(),
            QueueStats {
                visible: 1,
                in_flight: 1,
                dead: 1
            }
        );
        tokio::time::advance(VIS * 2).await;
        let again = q.lease(10, VIS, Duration::ZERO).await.unwrap();
        assert_eq!(again.len(), 1, "the extended lease is still held");
        assert_eq!(again[0].body, "job-0");
        assert_eq!(
            q.dead_letters(),
            vec![("job-2".to_string(), "bad job".to_string(), 1)]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn faulty_queue_fails_the_planned_calls_only() {
        let fake = FakeQueue::shared();
        let q = FaultyQueue::new(fake.clone());
        q.enqueue(&bodies(2)).await.unwrap();
        q.fail_next(Op::Lease, 2, QueueError::Retryable("injected".into()));
        for _ in 0..2 {
            assert!(matches!(
                q.lease(1, VIS, Duration::ZERO).await,
                Err(QueueError::Retryable(_))
            ));
        }
        let l = q.lease(2, VIS, Duration::ZERO).await.unwrap();
        // The ack happens but its reply is lost: the caller sees an error, the queue
        // has forgotten the message.
        q.plan(
            Op::Ack,
            1,
            FailWhen::After,
            QueueError::Retryable("reply lost".into()),
        );
        assert!(q.ack(&l[0]).await.is_err());
        assert_eq!(fake.bodies(), vec!["job-1".to_string()]);
        assert_eq!(q.calls(Op::Lease), 3);
        assert_eq!(q.injected(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn faulty_queue_wraps_a_dyn_queue() {
        let inner: Arc<dyn Queue> = FakeQueue::shared();
        let q = FaultyQueue::new(inner);
        q.fail_next(Op::Stats, 1, QueueError::Fault("denied".into()));
        assert!(matches!(q.stats().await, Err(QueueError::Fault(_))));
        assert_eq!(q.stats().await.unwrap(), QueueStats::default());
    }
}
