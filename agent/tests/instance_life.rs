//! A whole instance's life, in process, with paused time: the composition root
//! `instance::run` against fakes for every client: ready → a spot notice → the jobs in
//! flight released → the summary written → stopping. Runs in a fraction of a second
//! of real time whatever the virtual time it covers.

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

use futures::StreamExt;
use rangefleet::boot::Identity;
use rangefleet::instance::health::FakeGroup;
use rangefleet::instance::monitor::FakeNotices;
use rangefleet::instance::publish::RecordingPublisher;
use rangefleet::instance::systemd::Recorder;
use rangefleet::instance::{self, Booted, Deps};
use rangefleet::store::faulty::{FaultyObjectStore, GetFault};
use rangefleet::store::Store;

use common::{config, data, results, secs, stores};

struct Instance {
    deps: Deps,
    notices: Arc<FakeNotices>,
    notifier: Arc<Recorder>,
    publisher: Arc<RecordingPublisher>,
    group: Arc<FakeGroup>,
    results: Store,
}

fn compose(d: &common::Data, faulty: Arc<FaultyObjectStore>) -> Instance {
    let notices = Arc::new(FakeNotices::default());
    let notifier = Arc::new(Recorder::default());
    let publisher = Arc::new(RecordingPublisher::default());
    let results = Store::memory();
    let group = Arc::new(FakeGroup::member_of("fleet-asg"));
    let deps = Deps {
        group: Some(group.clone()),
        queue: d.queue.clone(),
        results: results.clone(),
        stores: stores(faulty),
        notices: Some(notices.clone()),
        publisher: publisher.clone(),
        notifier: notifier.clone(),
    };
    Instance {
        deps,
        notices,
        notifier,
        publisher,
        group,
        results,
    }
}

fn booted(id: &str) -> Booted {
    let identity = Identity::local(id, "us-east-1");
    let tags = [("Name".to_string(), format!("worker-{id}"))].into();
    Booted {
        identity,
        tags,
        config: config(2, 300),
        until_empty: false,
    }
}

#[tokio::test(start_paused = true)]
async fn ready_then_a_spot_notice_releases_the_jobs_in_flight_writes_the_summary_and_stops() {
    let wall = std::time::Instant::now();
    // 8 jobs of 500 records; each read takes 10 × 30 s: far past a two-minute notice.
    let d = data(4_000, 500).await;
    let faulty = Arc::new(FaultyObjectStore::new(d.objects.clone()));
    faulty.push(
        1_000,
        GetFault::Paced {
            chunk: 500 * 80 / 10,
            every: secs(30),
        },
    );
    let i = compose(&d, faulty);
    let (signal_tx, signal_rx) = futures::channel::mpsc::unbounded::<()>();
    let run = tokio::spawn(instance::run(
        i.deps.clone(),
        booted("i-0life"),
        signal_rx.map(|_| ()),
    ));

    tokio::time::sleep(secs(45)).await;
    assert_eq!(i.notifier.states()[0], "READY=1", "READY comes first");
    assert!(
        i.notices.polls() >= 3 * 9,
        "the monitor polls every 5 s: {}",
        i.notices.polls()
    );
    let when = humantime::format_rfc3339(SystemTime::now() + secs(120));
    i.notices
        .post_spot(&format!(r#"{{"action": "terminate", "time": "{when}"}}"#));

    let outcome = tokio::time::timeout(secs(200), run)
        .await
        .expect("the instance drains within the notice")
        .unwrap()
        .expect("the instance ends well");
    drop(signal_tx);

    // Both jobs in flight were released, none finished, nothing was lost.
    let c = &outcome.counters;
    assert_eq!(c.released.load(Ordering::Relaxed), 2);
    assert_eq!(c.done.load(Ordering::Relaxed), 0);
    assert_eq!(c.failed.load(Ordering::Relaxed), 0);
    assert_eq!(
        d.queue.bodies().len(),
        d.jobs.len(),
        "every job is back in the queue"
    );
    assert!(d.queue.dead_letters().is_empty());
    assert!(results(&i.results).await.is_empty());

    // The summary names the interruption and carries the counts.
    let summary: serde_json::Value =
        serde_json::from_slice(&i.results.get("_instances/i-0life.json").await.unwrap()).unwrap();
    assert_eq!(summary["interruption"]["kind"], "spot-interruption");
    assert_eq!(summary["released"], 2);
    assert_eq!(summary["tags"]["Name"], "worker-i-0life");
    // The metrics' counters and the build, as the endpoint would serve them.
    assert_eq!(summary["metrics"]["notices"]["spot-interruption"], 1);
    assert_eq!(summary["metrics"]["job_errors"], 0);
    assert_eq!(
        summary["metrics"]["job_duration"]["count"],
        summary["done"].as_u64().unwrap() + summary["redone"].as_u64().unwrap()
    );
    assert_eq!(summary["agent"]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(
        summary["agent"]["commit"],
        rangefleet::contract::summary::COMMIT
    );

    // READY first, STOPPING last (after the summary: the run returned after writing it).
    let states = i.notifier.states();
    assert_eq!(states.first().map(String::as_str), Some("READY=1"));
    assert_eq!(states.last().map(String::as_str), Some("STOPPING=1"));
    assert!(
        states.iter().any(|s| s.starts_with("STATUS=draining")),
        "{states:?}"
    );
    // publish_tags: the per-instance tag went to the publisher, expanded.
    assert_eq!(
        i.publisher.calls(),
        vec![vec![("Name".to_string(), "worker-i-0life".to_string())]]
    );
    // A spot drain is not the group's: no lifecycle action to complete.
    assert!(i.group.calls().is_empty(), "{:?}", i.group.calls());
    eprintln!("a whole life in {:?} of real time", wall.elapsed());
}

#[tokio::test(start_paused = true)]
async fn a_drain_the_group_started_completes_its_lifecycle_action_after_the_summary() {
    let d = data(4_000, 500).await;
    let faulty = Arc::new(FaultyObjectStore::new(d.objects.clone()));
    faulty.push(
        1_000,
        GetFault::Paced {
            chunk: 500 * 80 / 10,
            every: secs(30),
        },
    );
    let i = compose(&d, faulty);
    let run = tokio::spawn(instance::run(
        i.deps.clone(),
        booted("i-0asg"),
        futures::stream::pending(),
    ));
    tokio::time::sleep(secs(20)).await;
    assert!(i.group.calls().is_empty(), "nothing before the notice");
    i.notices.set_lifecycle("Terminated");
    let outcome = tokio::time::timeout(secs(200), run)
        .await
        .expect("drains")
        .unwrap()
        .unwrap();
    assert_eq!(outcome.drain.as_ref().unwrap().kind, "asg-termination");
    assert_eq!(
        i.group.calls(),
        [
            "DescribeAutoScalingInstances i-0asg",
            "CompleteLifecycleAction fleet-asg rangefleet-drain i-0asg CONTINUE"
        ]
    );
    // The summary was written before (the run wrote it, then completed the action).
    assert!(i.results.get("_instances/i-0asg.json").await.is_ok());
    assert_eq!(
        i.notifier.states().last().map(String::as_str),
        Some("STOPPING=1")
    );
}

#[tokio::test(start_paused = true)]
async fn a_signal_drains_and_a_second_one_hurries() {
    let d = data(4_000, 500).await;
    let faulty = Arc::new(FaultyObjectStore::new(d.objects.clone()));
    // Each job takes 10 × 6 s: halfway through at the first signal, they fit in its
    // 90 s; the second signal's 5 s (less the 20 s margin) leaves no room.
    faulty.push(
        1_000,
        GetFault::Paced {
            chunk: 500 * 80 / 10,
            every: secs(6),
        },
    );
    let i = compose(&d, faulty);
    let (signal_tx, signal_rx) = futures::channel::mpsc::unbounded::<()>();
    let run = tokio::spawn(instance::run(i.deps.clone(), booted("i-0sig"), signal_rx));
    tokio::time::sleep(secs(33)).await;
    let started = tokio::time::Instant::now();
    signal_tx.unbounded_send(()).unwrap();
    tokio::time::sleep(secs(1)).await;
    signal_tx.unbounded_send(()).unwrap();
    let outcome = run.await.unwrap().unwrap();
    let took = started.elapsed();
    assert!(
        took < secs(5),
        "the second signal released the jobs at once: the drain took {took:?}"
    );
    assert_eq!(outcome.drain.as_ref().unwrap().kind, "sigterm");
    assert_eq!(outcome.counters.released.load(Ordering::Relaxed), 2);
    assert_eq!(d.queue.bodies().len(), d.jobs.len());
    assert_eq!(
        i.notifier.states().last().map(String::as_str),
        Some("STOPPING=1")
    );
}

#[tokio::test(start_paused = true)]
async fn with_no_notice_the_instance_does_every_job_exactly_once() {
    let d = data(4_000, 500).await;
    let faulty = Arc::new(FaultyObjectStore::new(d.objects.clone()));
    let i = compose(&d, faulty);
    let mut b = booted("i-0batch");
    b.until_empty = true;
    let outcome = instance::run(i.deps.clone(), b, futures::stream::pending())
        .await
        .unwrap();
    assert_eq!(
        outcome.counters.done.load(Ordering::Relaxed),
        d.jobs.len() as u64
    );
    let docs = results(&i.results).await;
    assert_eq!(docs.len(), d.jobs.len());
    assert_eq!(common::merged(docs.values()), d.expected);
    assert!(outcome.drain.is_none());
}
