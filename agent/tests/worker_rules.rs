//! The worker's rules for what goes wrong, in process with paused time:
//! a retryable failure is dead-lettered at its 5th receive; a fault of the environment
//! pauses leasing and condemns nothing; a heartbeat keeps a job past its lease; a lost
//! lease abandons the job without releasing a lease that is no longer ours.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use object_store::memory::InMemory;
use rangefleet::boot::Identity;
use rangefleet::instance::systemd::Recorder;
use rangefleet::instance::worker::{self, Control, Deps, Settings, MAX_ATTEMPTS};
use rangefleet::queue::fake::{FakeQueue, FaultyQueue, Op};
use rangefleet::queue::{Lease, Queue, QueueError, QueueStats};
use rangefleet::store::faulty::{FaultyObjectStore, GetFault, PutFault};
use rangefleet::store::Store;
use tokio::time::Instant;

use common::{data, results, secs, stores, SOURCE};

/// Records when each call was made, around any queue.
struct Timeline<Q: ?Sized> {
    inner: Arc<Q>,
    calls: Mutex<Vec<(Instant, &'static str, u32)>>,
}

impl<Q: Queue + ?Sized> Timeline<Q> {
    fn new(inner: Arc<Q>) -> Arc<Self> {
        Arc::new(Timeline {
            inner,
            calls: Mutex::default(),
        })
    }
    fn record(&self, what: &'static str, receive_count: u32) {
        self.calls
            .lock()
            .unwrap()
            .push((Instant::now(), what, receive_count));
    }
    fn calls(&self, what: &str) -> Vec<(Instant, u32)> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.1 == what)
            .map(|c| (c.0, c.2))
            .collect()
    }
}

#[async_trait]
impl<Q: Queue + ?Sized> Queue for Timeline<Q> {
    async fn lease(&self, max: usize, v: Duration, w: Duration) -> Result<Vec<Lease>, QueueError> {
        let got = self.inner.lease(max, v, w).await?;
        for l in &got {
            self.record("lease", l.receive_count);
        }
        Ok(got)
    }
    async fn extend(&self, l: &Lease, v: Duration) -> Result<(), QueueError> {
        self.record("extend", l.receive_count);
        self.inner.extend(l, v).await
    }
    async fn ack(&self, l: &Lease) -> Result<(), QueueError> {
        self.record("ack", l.receive_count);
        self.inner.ack(l).await
    }
    async fn release(&self, l: &Lease) -> Result<(), QueueError> {
        self.record("release", l.receive_count);
        self.inner.release(l).await
    }
    async fn dead_letter(&self, l: &Lease, r: &str) -> Result<(), QueueError> {
        self.record("dead_letter", l.receive_count);
        self.inner.dead_letter(l, r).await
    }
    async fn enqueue(&self, b: &[String]) -> Result<(), QueueError> {
        self.inner.enqueue(b).await
    }
    async fn stats(&self) -> Result<QueueStats, QueueError> {
        self.inner.stats().await
    }
}

fn deps(queue: Arc<dyn Queue>, faulty: Arc<FaultyObjectStore>, results: &Store) -> Deps {
    Deps {
        queue,
        stores: stores(faulty),
        results: results.clone(),
        identity: Identity::local("i-0rules", "us-east-1"),
        tags: BTreeMap::new(),
        notifier: Arc::new(Recorder::default()),
    }
}

fn settings(lease: Duration) -> Settings {
    Settings {
        concurrency: 1,
        gets: 1,
        part_size: rangefleet::instance::sizing::PART_SIZE,
        cpu_slots: 4,
        lease,
        poll_wait: secs(1),
        inputs: vec![SOURCE.into()],
        exec: None,
        drain_margin: secs(20),
        until_empty: true,
    }
}

#[tokio::test(start_paused = true)]
async fn a_retryable_failure_is_dead_lettered_at_its_fifth_receive() {
    let d = data(100, 100).await; // one job
    let faulty = Arc::new(FaultyObjectStore::new(d.objects.clone()));
    faulty.push(1_000, GetFault::Retryable);
    let q = Timeline::new(d.queue.clone());
    let store = Store::memory();
    let out = worker::run(
        deps(q.clone(), faulty.clone(), &store),
        settings(secs(300)),
        Control::default(),
    )
    .await
    .unwrap();
    let leases: Vec<u32> = q.calls("lease").iter().map(|c| c.1).collect();
    assert_eq!(leases, (1..=MAX_ATTEMPTS).collect::<Vec<_>>());
    assert_eq!(q.calls("release").len(), MAX_ATTEMPTS as usize - 1);
    let dead = d.queue.dead_letters();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].2, MAX_ATTEMPTS);
    assert!(
        dead[0].1.contains("gave up after 5 attempts"),
        "{}",
        dead[0].1
    );
    assert_eq!(faulty.gets(), MAX_ATTEMPTS as u64);
    assert_eq!(out.counters.failed.load(Ordering::Relaxed), 1);
}

#[tokio::test(start_paused = true)]
async fn a_fault_pauses_leasing_and_dead_letters_nothing() {
    let d = data(100, 100).await; // one job
    let faulty = Arc::new(FaultyObjectStore::new(d.objects.clone()));
    // Access denied far more often than the attempt limit: a plan's worth of good jobs
    // would be dead-lettered if faults counted as attempts.
    faulty.push(3 * MAX_ATTEMPTS as usize, GetFault::Forbidden);
    let q = Timeline::new(d.queue.clone());
    let store = Store::memory();
    let started = Instant::now();
    let out = worker::run(
        deps(q.clone(), faulty.clone(), &store),
        settings(secs(300)),
        Control::default(),
    )
    .await
    .unwrap();
    assert!(
        d.queue.dead_letters().is_empty(),
        "{:?}",
        d.queue.dead_letters()
    );
    assert_eq!(
        out.counters.done.load(Ordering::Relaxed),
        1,
        "done once access returns"
    );
    // The job kept its lease through every fault: one receive, never released, and
    // its result says attempt 1.
    assert_eq!(q.calls("lease").len(), 1, "{:?}", q.calls("lease"));
    assert_eq!(q.calls("release"), vec![]);
    let docs = results(&store).await;
    assert_eq!(docs.values().next().unwrap()["attempt"], 1);
    assert_eq!(faulty.gets(), 3 * MAX_ATTEMPTS as u64 + 1);
    // Each fault paused for at least a second before the next try.
    assert!(
        started.elapsed() >= secs(3 * MAX_ATTEMPTS as u64),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn a_full_results_disk_pauses_and_spends_no_receive() {
    let d = data(200, 100).await; // two jobs
    let source = Arc::new(FaultyObjectStore::new(d.objects.clone()));
    // The results disk is full for the next 20 writes, then has room again.
    let results_store = Arc::new(FaultyObjectStore::new(Arc::new(InMemory::new())));
    results_store.push_put(20, PutFault::Io(std::io::ErrorKind::StorageFull));
    let results_at = Store::from_object_store(results_store.clone(), "file:///results/");
    let q = Timeline::new(d.queue.clone());
    let recorder = Arc::new(Recorder::default());
    let mut deps = deps(q.clone(), source, &results_at);
    deps.notifier = recorder.clone();
    let mut s = settings(secs(300));
    s.concurrency = 2;
    let out = worker::run(deps, s, Control::default()).await.unwrap();
    assert_eq!(d.queue.dead_letters(), vec![], "nothing dead-lettered");
    assert_eq!(out.counters.done.load(Ordering::Relaxed), 2);
    assert_eq!(q.calls("release"), vec![], "no receive spent on the fault");
    assert!(
        q.calls("lease").iter().all(|c| c.1 == 1),
        "{:?}",
        q.calls("lease")
    );
    assert_eq!(results_store.puts(), 22);
    let docs = results(&results_at).await;
    assert_eq!(docs.len(), 2);
    assert!(docs.values().all(|d| d["attempt"] == 1));
    assert!(
        recorder
            .states()
            .iter()
            .any(|l| l.contains("leasing paused (disk full)")),
        "a status line names the cause: {:?}",
        recorder.states()
    );
}

#[tokio::test(start_paused = true)]
async fn a_heartbeat_keeps_a_job_past_its_lease() {
    let d = data(100, 100).await; // one job of 8,000 bytes
    let faulty = Arc::new(FaultyObjectStore::new(d.objects.clone()));
    // The read takes 10 × 20 s = 200 s against a 60 s lease.
    faulty.push(
        1,
        GetFault::Paced {
            chunk: 800,
            every: secs(20),
        },
    );
    let q = Timeline::new(d.queue.clone());
    let store = Store::memory();
    let out = worker::run(
        deps(q.clone(), faulty, &store),
        settings(secs(60)),
        Control::default(),
    )
    .await
    .unwrap();
    assert_eq!(q.calls("lease").len(), 1, "never leased twice");
    assert!(
        q.calls("extend").len() >= 9,
        "extended every 20 s: {:?}",
        q.calls("extend")
    );
    assert_eq!(q.calls("ack").len(), 1);
    assert_eq!(out.counters.done.load(Ordering::Relaxed), 1);
    let docs = results(&store).await;
    assert_eq!(docs.values().next().unwrap()["attempt"], 1);
}

#[tokio::test(start_paused = true)]
async fn a_lost_lease_abandons_the_job_and_releases_nothing() {
    let d = data(100, 100).await; // one job
    let faulty_store = Arc::new(FaultyObjectStore::new(d.objects.clone()));
    faulty_store.push(
        1,
        GetFault::Paced {
            chunk: 800,
            every: secs(20),
        },
    );
    let faulty_queue = Arc::new(FaultyQueue::new(d.queue.clone() as Arc<FakeQueue>));
    faulty_queue.fail_next(
        Op::Extend,
        1,
        QueueError::LeaseLost("another worker leased it".into()),
    );
    let q = Timeline::new(faulty_queue.clone());
    let store = Store::memory();
    let control = Control::default();
    let mut s = settings(secs(60));
    s.until_empty = false;
    let run = tokio::spawn(worker::run(
        deps(q.clone(), faulty_store, &store),
        s,
        control.clone(),
    ));
    // The first heartbeat (20 s) finds the lease lost.
    tokio::time::sleep(secs(30)).await;
    control.stop_leasing();
    let out = run.await.unwrap().unwrap();
    assert_eq!(
        q.calls("release"),
        vec![],
        "no release of a lease that is not ours"
    );
    assert_eq!(q.calls("ack"), vec![]);
    assert_eq!(q.calls("dead_letter"), vec![]);
    assert_eq!(out.counters.released.load(Ordering::Relaxed), 0);
    assert!(
        results(&store).await.is_empty(),
        "an abandoned job writes no result"
    );
    assert_eq!(
        d.queue.bodies().len(),
        1,
        "the job stays in the queue for its holder"
    );
}

#[tokio::test(start_paused = true)]
async fn an_object_whose_size_changed_since_the_plan_without_an_etag_is_refused() {
    // The plan saw one more record than the object now has, and recorded no ETag.
    let d = data(100, 50).await;
    let mut job = d.jobs[0].clone();
    assert_eq!(job.etag, None);
    job.object_size = Some(8_000 + 80);
    let queue = FakeQueue::shared();
    queue
        .enqueue(&[serde_json::to_string(&job).unwrap()])
        .await
        .unwrap();
    let faulty = Arc::new(FaultyObjectStore::new(d.objects.clone()));
    let store = Store::memory();
    let out = worker::run(
        deps(queue.clone(), faulty, &store),
        settings(secs(300)),
        Control::default(),
    )
    .await
    .unwrap();
    assert_eq!(out.counters.done.load(Ordering::Relaxed), 0);
    assert!(
        results(&store).await.is_empty(),
        "no result from a changed object"
    );
    let dead = queue.dead_letters();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(
        dead[0].1.contains("changed since the plan") && dead[0].1.contains("8080"),
        "{}",
        dead[0].1
    );
    assert_eq!(
        dead[0].2, 1,
        "permanent: dead-lettered at the first receive"
    );
}

#[tokio::test(start_paused = true)]
async fn a_job_leased_during_a_pause_waits_holding_its_lease() {
    let d = data(200, 100).await; // two jobs; the queue gets them one at a time
    let bodies: Vec<String> = d
        .jobs
        .iter()
        .map(|j| serde_json::to_string(j).unwrap())
        .collect();
    let queue = FakeQueue::shared();
    queue.enqueue(&bodies[..1]).await.unwrap();
    let faulty = Arc::new(FaultyObjectStore::new(d.objects.clone()));
    faulty.push(1, GetFault::Forbidden); // the first job's first read
    let q = Timeline::new(queue.clone());
    let store = Store::memory();
    let mut s = settings(secs(300));
    s.concurrency = 2;
    let run = tokio::spawn(worker::run(
        deps(q.clone(), faulty, &store),
        s,
        Control::default(),
    ));
    // The first job has faulted and paused leasing (at least 1 s) while the second
    // slot's lease call waits for a message: the second job arrives into the pause.
    tokio::time::sleep(Duration::from_millis(100)).await;
    queue.enqueue(&bodies[1..]).await.unwrap();
    let out = run.await.unwrap().unwrap();
    assert_eq!(q.calls("lease").len(), 2, "{:?}", q.calls("lease"));
    assert_eq!(q.calls("release"), vec![], "no receive spent on the pause");
    assert_eq!(out.counters.done.load(Ordering::Relaxed), 2);
    assert!(queue.dead_letters().is_empty());
}
