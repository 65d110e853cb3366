//! Drain drills, in process with paused time: the whole worker runs against the
//! in-memory queue and store, jobs take minutes of virtual time, and every assertion
//! is about what the queue and the results saw, and when.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use object_store::memory::InMemory;
use object_store::ObjectStore;
use rangefleet::boot::Identity;
use rangefleet::instance::systemd::Recorder as Notices;
use rangefleet::instance::worker::{self, Control, Deps, DrainReason, Settings};
use rangefleet::operator::plan::{self, PlanOptions};
use rangefleet::process::taxi::TaxiStats;
use rangefleet::process::ProcessorKind;
use rangefleet::queue::fake::FakeQueue;
use rangefleet::queue::{Lease, Queue, QueueError, QueueStats};
use rangefleet::store::faulty::{FaultyObjectStore, GetFault};
use rangefleet::store::{ObjectInfo, Store, StoreCache};
use tokio::time::Instant;

const RECORDS: u64 = 4_000;
const PER_JOB: u64 = 500; // 8 jobs of 40,000 bytes

/// Records when each release and lease happened, around the fake queue.
struct Recorder {
    inner: Arc<FakeQueue>,
    releases: Mutex<Vec<(Instant, String)>>,
    leases: Mutex<Vec<Instant>>,
}

#[async_trait]
impl Queue for Recorder {
    async fn lease(&self, max: usize, v: Duration, w: Duration) -> Result<Vec<Lease>, QueueError> {
        let got = self.inner.lease(max, v, w).await?;
        if !got.is_empty() {
            self.leases.lock().unwrap().push(Instant::now());
        }
        Ok(got)
    }
    async fn extend(&self, l: &Lease, v: Duration) -> Result<(), QueueError> {
        self.inner.extend(l, v).await
    }
    async fn ack(&self, l: &Lease) -> Result<(), QueueError> {
        self.inner.ack(l).await
    }
    async fn release(&self, l: &Lease) -> Result<(), QueueError> {
        self.releases
            .lock()
            .unwrap()
            .push((Instant::now(), l.body.clone()));
        self.inner.release(l).await
    }
    async fn dead_letter(&self, l: &Lease, r: &str) -> Result<(), QueueError> {
        self.inner.dead_letter(l, r).await
    }
    async fn enqueue(&self, b: &[String]) -> Result<(), QueueError> {
        self.inner.enqueue(b).await
    }
    async fn stats(&self) -> Result<QueueStats, QueueError> {
        self.inner.stats().await
    }
}

struct Fleet {
    queue: Arc<FakeQueue>,
    data: Arc<InMemory>,
    results: Store,
    expected: TaxiStats,
    jobs: usize,
}

async fn fleet() -> Fleet {
    let data = Arc::new(InMemory::new());
    let key = "trips/color=yellow/date=2016-01-01/part-0000.rec";
    let (bytes, expected) = rangefleet::operator::gen::generate_in_memory(
        7,
        "color=yellow/date=2016-01-01",
        "2016-01-01",
        RECORDS,
        Some(97),
    )
    .unwrap();
    data.put_opts(&key.into(), bytes.clone().into(), Default::default())
        .await
        .unwrap();
    let opts = PlanOptions {
        source: "s3://bucket/trips/".into(),
        processor: ProcessorKind::TaxiStats,
        record_length: 80,
        records_per_job: PER_JOB,
        skip_bad_objects: false,
    };
    let objects = [ObjectInfo {
        key: "color=yellow/date=2016-01-01/part-0000.rec".into(),
        size: bytes.len() as u64,
        etag: None,
    }];
    let (jobs, _) = plan::make_jobs("s3://bucket/trips/", &objects, &opts).unwrap();
    let queue = FakeQueue::shared();
    let bodies: Vec<String> = jobs
        .iter()
        .map(|j| serde_json::to_string(j).unwrap())
        .collect();
    queue.enqueue(&bodies).await.unwrap();
    Fleet {
        queue,
        data,
        results: Store::memory(),
        expected,
        jobs: jobs.len(),
    }
}

/// A worker whose reads come in 10 pieces, `every` apart (so a job lasts 10 × every).
async fn agent(f: &Fleet, name: &str, every: Option<Duration>) -> (Deps, Arc<Recorder>) {
    let faulty = Arc::new(FaultyObjectStore::new(f.data.clone()));
    if let Some(every) = every {
        faulty.push(
            1000,
            GetFault::Paced {
                chunk: (PER_JOB * 80 / 10) as usize,
                every,
            },
        );
    }
    let stores = StoreCache::default();
    stores
        .insert(
            "s3://bucket/",
            Store::from_object_store(faulty, "s3://bucket/"),
        )
        .await;
    let recorder = Arc::new(Recorder {
        inner: f.queue.clone(),
        releases: Mutex::default(),
        leases: Mutex::default(),
    });
    let deps = Deps {
        queue: recorder.clone(),
        stores,
        results: f.results.clone(),
        identity: Identity::local(name, "us-east-1"),
        tags: BTreeMap::new(),
        notifier: Arc::new(Notices::default()),
    };
    (deps, recorder)
}

fn settings(until_empty: bool) -> Settings {
    Settings {
        concurrency: 2,
        lease: Duration::from_secs(300),
        poll_wait: Duration::from_secs(1),
        inputs: vec!["s3://bucket/trips/".into()],
        exec: None,
        drain_margin: Duration::from_secs(20),
        until_empty,
    }
}

fn spot() -> DrainReason {
    DrainReason {
        kind: "spot-interruption".into(),
        detail: "test".into(),
    }
}

/// Merges every result document; checks each job has exactly one.
async fn merged(f: &Fleet) -> (TaxiStats, BTreeMap<String, serde_json::Value>) {
    let mut total = TaxiStats::default();
    let mut docs = BTreeMap::new();
    for o in f.results.list().await.unwrap() {
        let doc: serde_json::Value =
            serde_json::from_slice(&f.results.get(&o.key).await.unwrap()).unwrap();
        total.merge(&serde_json::from_value(doc["output"].clone()).unwrap());
        docs.insert(doc["job"]["job_id"].as_str().unwrap().to_string(), doc);
    }
    (total, docs)
}

#[tokio::test(start_paused = true)]
async fn a_notice_while_long_jobs_run_releases_them_at_once_and_another_agent_finishes_them() {
    let f = fleet().await;
    // Each job takes 300 s of reading: far past a 120 s notice.
    let (deps, rec) = agent(&f, "i-0victim", Some(Duration::from_secs(30))).await;
    let control = Control::default();
    let victim = tokio::spawn(worker::run(deps, settings(false), control.clone()));
    tokio::time::sleep(Duration::from_secs(45)).await; // two jobs in flight, 10–20 % read
    let notice = Instant::now();
    control.drain(notice + Duration::from_secs(120), spot());
    let out = victim.await.unwrap().unwrap();
    let releases = rec.releases.lock().unwrap().clone();
    assert_eq!(releases.len(), 2, "both jobs in flight were released");
    for (at, _) in &releases {
        assert!(
            *at - notice <= Duration::from_secs(1),
            "released {:?} after the notice",
            *at - notice
        );
    }
    assert_eq!(out.counters.done.load(Ordering::Relaxed), 0);
    assert_eq!(out.drain.unwrap().kind, "spot-interruption");

    // Another agent takes them at once and finishes them well inside half a lease.
    let (deps, _) = agent(&f, "i-0rescuer", None).await;
    let rescue_started = Instant::now();
    let out = worker::run(deps, settings(true), Control::default())
        .await
        .unwrap();
    assert!(Instant::now() - rescue_started < Duration::from_secs(150));
    assert_eq!(out.counters.done.load(Ordering::Relaxed), f.jobs as u64);
    let (total, docs) = merged(&f).await;
    assert_eq!(total, f.expected, "exact totals");
    assert_eq!(docs.len(), f.jobs, "coverage complete");
    for (_, body) in releases {
        let id = serde_json::from_str::<serde_json::Value>(&body).unwrap()["job_id"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(docs[&id]["attempt"], 2, "{id} was redone by the rescuer");
        assert_eq!(docs[&id]["instance"]["instance_id"], "i-0rescuer");
    }
}

/// Another agent takes what is left; every job then has exactly one result and the
/// merged totals equal the generator's.
async fn finish_and_check(f: &Fleet) {
    let (deps, _) = agent(f, "i-0finisher", None).await;
    worker::run(deps, settings(true), Control::default())
        .await
        .unwrap();
    let (total, docs) = merged(f).await;
    assert_eq!(docs.len(), f.jobs, "coverage complete");
    assert_eq!(total, f.expected, "exact totals");
}

#[tokio::test(start_paused = true)]
async fn a_notice_while_short_jobs_run_lets_them_finish_then_exits() {
    let f = fleet().await;
    // Each job takes 10 s: well inside the notice's 120 s less the 20 s margin.
    let (deps, rec) = agent(&f, "i-0short", Some(Duration::from_secs(1))).await;
    let control = Control::default();
    let run = tokio::spawn(worker::run(deps, settings(false), control.clone()));
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let leases_before = rec.leases.lock().unwrap().len();
    control.drain(Instant::now() + Duration::from_secs(120), spot());
    let out = run.await.unwrap().unwrap();
    let c = &out.counters;
    assert_eq!(c.released.load(Ordering::Relaxed), 0);
    assert_eq!(
        c.done.load(Ordering::Relaxed),
        2,
        "the two jobs in flight finished"
    );
    assert_eq!(
        rec.leases.lock().unwrap().len(),
        leases_before,
        "no lease after the notice"
    );
    let stats = f.queue.stats().await.unwrap();
    assert_eq!(
        (stats.visible, stats.in_flight),
        (f.jobs as u64 - 2, 0),
        "finished jobs acked, the rest untouched"
    );
    finish_and_check(&f).await;
}

#[tokio::test(start_paused = true)]
async fn a_rebalance_stops_leasing_and_current_jobs_finish() {
    let f = fleet().await;
    let (deps, rec) = agent(&f, "i-0rebalance", Some(Duration::from_secs(2))).await;
    let control = Control::default();
    let run = tokio::spawn(worker::run(deps, settings(false), control.clone()));
    tokio::time::sleep(Duration::from_secs(5)).await;
    control.stop_leasing();
    let leases_before = rec.leases.lock().unwrap().len();
    let out = run.await.unwrap().unwrap();
    assert_eq!(rec.leases.lock().unwrap().len(), leases_before);
    assert_eq!(out.counters.done.load(Ordering::Relaxed), 2);
    assert_eq!(out.counters.released.load(Ordering::Relaxed), 0);
    assert!(out.drain.is_none());
    finish_and_check(&f).await;
}

#[tokio::test(start_paused = true)]
async fn a_drain_deadline_releases_what_is_left_when_the_cutoff_passes() {
    let f = fleet().await;
    // Jobs of 100 s; a notice 30 s into them with 60 s left: progress says they would
    // end at 100 s, after the 40 s cutoff, so they go back at once.
    let (deps, rec) = agent(&f, "i-0tight", Some(Duration::from_secs(10))).await;
    let control = Control::default();
    let run = tokio::spawn(worker::run(deps, settings(false), control.clone()));
    tokio::time::sleep(Duration::from_secs(35)).await;
    let notice = Instant::now();
    control.drain(notice + Duration::from_secs(60), spot());
    run.await.unwrap().unwrap();
    let releases = rec.releases.lock().unwrap().clone();
    assert_eq!(releases.len(), 2);
    assert!(releases
        .iter()
        .all(|(at, _)| *at - notice <= Duration::from_secs(1)));
    finish_and_check(&f).await;
}

#[tokio::test(start_paused = true)]
async fn a_notice_during_a_long_poll_still_releases_at_once() {
    let f = fleet().await;
    // More slots than jobs: after leasing all eight, the loop sits in a 20 s long poll
    // for more; the drain must not wait for that poll to end.
    let (deps, rec) = agent(&f, "i-0poller", Some(Duration::from_secs(30))).await;
    let mut s = settings(false);
    s.concurrency = 16;
    s.poll_wait = Duration::from_secs(20);
    let control = Control::default();
    let run = tokio::spawn(worker::run(deps, s, control.clone()));
    tokio::time::sleep(Duration::from_secs(45)).await;
    let notice = Instant::now();
    control.drain(notice + Duration::from_secs(120), spot());
    run.await.unwrap().unwrap();
    let releases = rec.releases.lock().unwrap().clone();
    // The poll that was waiting may return the released jobs once more; the loop hands
    // those straight back too. What matters: every job went back, all within 1 s.
    let distinct: std::collections::BTreeSet<&String> = releases.iter().map(|(_, b)| b).collect();
    assert_eq!(distinct.len(), f.jobs, "every job in flight went back");
    assert!(releases
        .iter()
        .all(|(at, _)| *at - notice <= Duration::from_secs(1)));
    let stats = f.queue.stats().await.unwrap();
    assert_eq!((stats.visible, stats.in_flight), (f.jobs as u64, 0));
    finish_and_check(&f).await;
}
