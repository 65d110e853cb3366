//! One conformance suite for every queue: each property is a generic async fn over a
//! `Subject` (a queue plus a way to read its dead letters), run against SqliteQueue on
//! a temporary file, SqsQueue on a local moto server with a dead-letter queue, and the
//! in-memory FakeQueue the in-process tests use (so the fake is held to what the real
//! queues do).
//!
//! Leases are 1–2 s so that expiry can be waited for; waits are the queue's own
//! (`lease(.., wait)` polls or long-polls until a message shows up), not sleeps.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::QueueAttributeName;
use rangefleet::queue::fake::FakeQueue;
use rangefleet::queue::sqlite::SqliteQueue;
use rangefleet::queue::sqs::{SqsQueue, ATTEMPTS_ATTRIBUTE, REASON_ATTRIBUTE};
use rangefleet::queue::{Lease, Queue, QueueError, QueueStats};
use rangefleet_tests::moto::Moto;

const SHORT: Duration = Duration::from_secs(1);
const LONG: Duration = Duration::from_secs(60);
const NO_WAIT: Duration = Duration::ZERO;

/// A temporary folder, removed on drop.
struct Temp(PathBuf);

impl Temp {
    fn new(tag: &str) -> Temp {
        let p = std::env::temp_dir().join(format!(
            "rangefleet-{tag}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&p).unwrap();
        Temp(p)
    }
}

impl Drop for Temp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

enum Backend {
    Fake(Arc<FakeQueue>),
    Sqlite {
        queue: SqliteQueue,
        _dir: Temp,
    },
    Sqs {
        client: aws_sdk_sqs::Client,
        dlq_url: String,
        _moto: Moto,
    },
}

/// A queue under test and what it takes to look behind it.
struct Subject {
    queue: Arc<dyn Queue>,
    backend: Backend,
}

impl Subject {
    /// A SQLite queue in a fresh file, opened through `queue::open` as the agent does.
    async fn sqlite() -> Subject {
        let dir = Temp::new("conformance-sqlite");
        let url = format!("sqlite://{}/q/queue.db", dir.0.display());
        let queue = rangefleet::queue::open(&url, None).await.unwrap();
        let direct = SqliteQueue::open(dir.0.join("q/queue.db")).unwrap();
        Subject {
            queue,
            backend: Backend::Sqlite {
                queue: direct,
                _dir: dir,
            },
        }
    }

    /// The in-memory test double.
    async fn fake() -> Subject {
        let queue = FakeQueue::shared();
        Subject {
            queue: queue.clone(),
            backend: Backend::Fake(queue),
        }
    }

    /// An SQS queue on its own moto server, with a DLQ as the Terraform module makes it.
    async fn sqs() -> Subject {
        let moto = Moto::start().unwrap();
        let client = aws_sdk_sqs::Client::new(&moto.sdk_config().await);
        let (url, dlq_url) = create_queues(&client, true).await;
        Subject {
            queue: Arc::new(SqsQueue::new(client.clone(), url)),
            backend: Backend::Sqs {
                client,
                dlq_url: dlq_url.unwrap(),
                _moto: moto,
            },
        }
    }

    /// Dead letters as (body, reason, attempts), sorted.
    async fn dead_letters(&self) -> Vec<(String, String, u32)> {
        let mut out = match &self.backend {
            Backend::Fake(queue) => queue.dead_letters(),
            Backend::Sqlite { queue, .. } => queue.dead_letters().unwrap(),
            Backend::Sqs {
                client, dlq_url, ..
            } => {
                let got = client
                    .receive_message()
                    .queue_url(dlq_url)
                    .max_number_of_messages(10)
                    .message_attribute_names("All")
                    .visibility_timeout(30)
                    .send()
                    .await
                    .unwrap();
                got.messages()
                    .iter()
                    .map(|m| {
                        let attr = |k: &str| {
                            m.message_attributes()
                                .and_then(|a| a.get(k))
                                .and_then(|v| v.string_value())
                                .unwrap_or_else(|| panic!("dead letter lacks {k}: {m:?}"))
                                .to_string()
                        };
                        (
                            m.body().unwrap().to_string(),
                            attr(REASON_ATTRIBUTE),
                            attr(ATTEMPTS_ATTRIBUTE).parse().unwrap(),
                        )
                    })
                    .collect()
            }
        };
        out.sort();
        out
    }
}

/// Creates a main queue (with a DLQ and RedrivePolicy maxReceiveCount 20 when asked).
async fn create_queues(client: &aws_sdk_sqs::Client, with_dlq: bool) -> (String, Option<String>) {
    let mut main = client.create_queue().queue_name("rangefleet-jobs");
    let mut dlq_url = None;
    if with_dlq {
        let dlq = client
            .create_queue()
            .queue_name("rangefleet-jobs-dlq")
            .send()
            .await
            .unwrap();
        let url = dlq.queue_url().unwrap().to_string();
        let attrs = client
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .unwrap();
        let arn = attrs.attributes().unwrap()[&QueueAttributeName::QueueArn].clone();
        let policy =
            serde_json::json!({"deadLetterTargetArn": arn, "maxReceiveCount": "20"}).to_string();
        main = main.attributes(QueueAttributeName::RedrivePolicy, policy);
        dlq_url = Some(url);
    }
    let url = main.send().await.unwrap().queue_url().unwrap().to_string();
    (url, dlq_url)
}

fn bodies(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!(r#"{{"v":1,"job_id":"part-{i:04}.rec#0+100"}}"#))
        .collect()
}

async fn lease_one(q: &dyn Queue, visibility: Duration, wait: Duration) -> Lease {
    let mut got = q.lease(1, visibility, wait).await.unwrap();
    assert_eq!(got.len(), 1, "expected one message, got {got:?}");
    got.remove(0)
}

// ---- the properties -------------------------------------------------------------

/// A lease that runs out makes the message visible again, with the receive count up.
async fn lease_expiry_redelivers(s: &Subject) {
    let q = &*s.queue;
    q.enqueue(&bodies(1)).await.unwrap();
    let first = lease_one(q, SHORT, NO_WAIT).await;
    assert_eq!(first.receive_count, 1);
    assert!(
        q.lease(1, SHORT, NO_WAIT).await.unwrap().is_empty(),
        "leased twice"
    );
    let started = Instant::now();
    // The wait outlasts the lease, so the queue hands the message over once it expires.
    let second = lease_one(q, SHORT, Duration::from_secs(5)).await;
    assert_eq!(second.body, first.body);
    assert_eq!(second.message_id, first.message_id);
    assert_eq!(second.receive_count, 2);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "took {:?}",
        started.elapsed()
    );
    q.ack(&second).await.unwrap();
}

/// A released message can be leased again at once.
async fn release_is_immediate(s: &Subject) {
    let q = &*s.queue;
    q.enqueue(&bodies(1)).await.unwrap();
    let first = lease_one(q, LONG, NO_WAIT).await;
    q.release(&first).await.unwrap();
    let again = lease_one(q, LONG, NO_WAIT).await;
    assert_eq!(again.body, first.body);
    assert_eq!(again.receive_count, 2);
    q.ack(&again).await.unwrap();
}

/// A heartbeat keeps the message hidden past the first lease's end.
async fn extend_keeps_it_hidden(s: &Subject) {
    let q = &*s.queue;
    q.enqueue(&bodies(1)).await.unwrap();
    let l = lease_one(q, SHORT, NO_WAIT).await;
    q.extend(&l, Duration::from_secs(4)).await.unwrap();
    // Waits 2 s, twice the first lease: nothing may show up.
    let got = q.lease(1, SHORT, Duration::from_secs(2)).await.unwrap();
    assert!(
        got.is_empty(),
        "extended message was delivered again: {got:?}"
    );
    assert_eq!(q.stats().await.unwrap().in_flight, 1);
    q.ack(&l).await.unwrap();
}

/// An acked message is gone, and its lease can no longer be extended or dead-lettered.
async fn ack_removes_it(s: &Subject) {
    let q = &*s.queue;
    q.enqueue(&bodies(2)).await.unwrap();
    let l = lease_one(q, SHORT, NO_WAIT).await;
    q.ack(&l).await.unwrap();
    let other = lease_one(q, LONG, NO_WAIT).await;
    assert_ne!(other.message_id, l.message_id);
    q.ack(&other).await.unwrap();
    assert_eq!(q.stats().await.unwrap(), QueueStats::default());
    // Past the acked lease's end: still nothing.
    assert!(q
        .lease(1, SHORT, Duration::from_millis(1500))
        .await
        .unwrap()
        .is_empty());
    match q.extend(&l, LONG).await {
        Err(QueueError::LeaseLost(_)) => {}
        other => panic!("extend after ack: expected LeaseLost, got {other:?}"),
    }
    match q.dead_letter(&l, "too late").await {
        Err(QueueError::LeaseLost(_)) => {}
        other => panic!("dead_letter after ack: expected LeaseLost, got {other:?}"),
    }
    assert!(
        s.dead_letters().await.is_empty(),
        "a lost lease was dead-lettered"
    );
}

/// Dead-lettering keeps the body byte for byte, with the reason and the attempts.
async fn dead_letter_keeps_body_and_reason(s: &Subject) {
    let q = &*s.queue;
    let body = r#"{"v":1,"job_id":"color=yellow/part-0000.rec#0+100","note":"naïve ✓ \"quoted\""}"#;
    q.enqueue(&[body.to_string()]).await.unwrap();
    let first = lease_one(q, LONG, NO_WAIT).await;
    q.release(&first).await.unwrap();
    let l = lease_one(q, LONG, NO_WAIT).await;
    q.dead_letter(&l, "unknown processor \"nope\"")
        .await
        .unwrap();
    assert_eq!(
        s.dead_letters().await,
        vec![(
            body.to_string(),
            "unknown processor \"nope\"".to_string(),
            2
        )]
    );
    let stats = q.stats().await.unwrap();
    assert_eq!((stats.visible, stats.in_flight), (0, 0));
    assert!(q.lease(1, SHORT, NO_WAIT).await.unwrap().is_empty());
}

/// Stats count what was enqueued, and what is leased.
async fn enqueue_and_stats(s: &Subject) {
    let q = &*s.queue;
    // 25: more than two SQS batches.
    q.enqueue(&bodies(25)).await.unwrap();
    assert_eq!(
        q.stats().await.unwrap(),
        QueueStats {
            visible: 25,
            in_flight: 0,
            dead: 0
        }
    );
    let l = q.lease(4, LONG, NO_WAIT).await.unwrap();
    assert_eq!(l.len(), 4);
    q.dead_letter(&l[0], "bad").await.unwrap();
    assert_eq!(
        q.stats().await.unwrap(),
        QueueStats {
            visible: 21,
            in_flight: 3,
            dead: 1
        }
    );
}

/// Lease never returns more than `max`, and never the same message twice.
async fn lease_returns_at_most_max(s: &Subject) {
    let q = &*s.queue;
    let all = bodies(15);
    q.enqueue(&all).await.unwrap();
    let mut seen = BTreeMap::new();
    for (max, expect) in [(3, 3), (1, 1), (11, 11), (5, 0)] {
        let got = q.lease(max, LONG, NO_WAIT).await.unwrap();
        assert_eq!(got.len(), expect, "lease(max = {max})");
        for l in got {
            assert!(
                seen.insert(l.message_id.clone(), l.body.clone()).is_none(),
                "{} leased twice",
                l.message_id
            );
        }
    }
    let bodies: BTreeSet<_> = seen.into_values().collect();
    assert_eq!(bodies, all.into_iter().collect());
}

macro_rules! conformance {
    ($backend:ident, $make:expr) => {
        mod $backend {
            use super::*;

            conformance!(@each $make;
                lease_expiry_redelivers,
                release_is_immediate,
                extend_keeps_it_hidden,
                ack_removes_it,
                dead_letter_keeps_body_and_reason,
                enqueue_and_stats,
                lease_returns_at_most_max
            );
        }
    };
    (@each $make:expr; $($prop:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $prop() {
                let subject = $make.await;
                super::$prop(&subject).await;
            }
        )*
    };
}

conformance!(fake, Subject::fake());
conformance!(sqlite, Subject::sqlite());
conformance!(sqs, Subject::sqs());

// ---- SQS only ---------------------------------------------------------------------

mod sqs_only {
    use super::*;

    /// Without a RedrivePolicy there is nowhere to put a dead letter: a Fault, and the
    /// message stays where it was.
    #[tokio::test]
    async fn dead_letter_without_a_redrive_policy_is_a_fault() {
        let moto = Moto::start().unwrap();
        let client = aws_sdk_sqs::Client::new(&moto.sdk_config().await);
        let (url, _) = create_queues(&client, false).await;
        let q = SqsQueue::new(client, url.clone());
        q.enqueue(&bodies(1)).await.unwrap();
        let l = lease_one(&q, LONG, NO_WAIT).await;
        match q.dead_letter(&l, "bad").await {
            Err(QueueError::Fault(m)) => {
                assert!(m.contains("RedrivePolicy") && m.contains(&url), "{m}")
            }
            other => panic!("expected a Fault, got {other:?}"),
        }
        assert_eq!(q.stats().await.unwrap().in_flight, 1);
    }

    /// A queue that does not exist is the environment's fault, and the error names it.
    #[tokio::test]
    async fn a_missing_queue_is_a_fault_naming_the_url() {
        let moto = Moto::start().unwrap();
        let client = aws_sdk_sqs::Client::new(&moto.sdk_config().await);
        let url = format!("{}/123456789012/no-such-queue", moto.endpoint);
        let q = SqsQueue::new(client, url.clone());
        match q.lease(1, LONG, NO_WAIT).await {
            Err(QueueError::Fault(m)) => assert!(m.contains(&url) && m.contains("receive"), "{m}"),
            other => panic!("expected a Fault, got {other:?}"),
        }
    }

    /// The receive count SQS reports (ApproximateReceiveCount) is the one the Lease
    /// carries, and the dead letter records it as the attempts.
    #[tokio::test]
    async fn receive_count_comes_from_sqs() {
        let s = Subject::sqs().await;
        let q = &*s.queue;
        q.enqueue(&bodies(1)).await.unwrap();
        for n in 1..=3 {
            let l = lease_one(q, LONG, NO_WAIT).await;
            assert_eq!(l.receive_count, n);
            if n < 3 {
                q.release(&l).await.unwrap();
            } else {
                q.dead_letter(&l, "retryable error at attempt 3")
                    .await
                    .unwrap();
            }
        }
        let dead = s.dead_letters().await;
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].2, 3);
    }

    const OPEN_URL: &str = "RANGEFLEET_TEST_OPEN_URL";

    /// `queue::open` on an http URL makes a working SqsQueue from the environment alone
    /// (what `Moto::aws_env` sets). The run is a child process, since the environment is
    /// the input. (Without `AWS_ENDPOINT_URL` the URL's origin is the endpoint; that
    /// choice is unit-tested in `queue::open`, so that a regression can never send a
    /// test's requests to the real AWS.)
    #[tokio::test]
    async fn open_builds_a_client_from_the_environment() {
        let moto = Moto::start().unwrap();
        let client = aws_sdk_sqs::Client::new(&moto.sdk_config().await);
        let (url, _) = create_queues(&client, true).await;
        {
            let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
            cmd.args([
                "--exact",
                "sqs_only::helper_open_process",
                "--ignored",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_SESSION_TOKEN")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_CONFIG_FILE", "/nonexistent")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
            .env(OPEN_URL, &url)
            .envs(moto.aws_env());
            let out = tokio::task::spawn_blocking(move || cmd.output())
                .await
                .unwrap()
                .unwrap();
            assert!(
                out.status.success(),
                "child failed:\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    /// Not a test on its own: the child of `open_builds_a_client_from_the_environment`,
    /// which runs it with `--ignored --exact`. Ignored, so a plain run skips it instead
    /// of counting a pass that checked nothing; without its environment it fails.
    #[tokio::test]
    #[ignore = "child process of open_builds_a_client_from_the_environment"]
    async fn helper_open_process() {
        let url = std::env::var(OPEN_URL).unwrap_or_else(|_| {
            panic!("{OPEN_URL} is unset: run by open_builds_a_client_from_the_environment")
        });
        let q = rangefleet::queue::open(&url, None).await.unwrap();
        q.enqueue(&bodies(2)).await.unwrap();
        let got = q.lease(5, LONG, NO_WAIT).await.unwrap();
        assert_eq!(got.len(), 2);
        for l in &got {
            q.ack(l).await.unwrap();
        }
        assert_eq!(q.stats().await.unwrap(), QueueStats::default());
    }
}

// ---- SQLite only: several processes on one file -------------------------------------

mod sqlite_only {
    use super::*;

    const CHILD_DB: &str = "RANGEFLEET_TEST_LEASER_DB";
    const CHILD_DIR: &str = "RANGEFLEET_TEST_LEASER_DIR";
    const CHILD_NAME: &str = "RANGEFLEET_TEST_LEASER_NAME";
    const PROCESSES: usize = 3;
    const MESSAGES: usize = 600;

    /// Several OS processes lease from one database file at once; with a long lease,
    /// every message goes to exactly one of them, once.
    #[tokio::test]
    async fn processes_never_share_a_lease() {
        let dir = Temp::new("conformance-leasers");
        let db = dir.0.join("queue.db");
        let q = SqliteQueue::open(&db).unwrap();
        let all = bodies(MESSAGES);
        q.enqueue(&all).await.unwrap();

        let exe = std::env::current_exe().unwrap();
        let mut children = Vec::new();
        for i in 0..PROCESSES {
            let child = std::process::Command::new(&exe)
                .args([
                    "--exact",
                    "sqlite_only::helper_leaser_process",
                    "--ignored",
                    "--nocapture",
                    "--test-threads",
                    "1",
                ])
                .env(CHILD_DB, &db)
                .env(CHILD_DIR, &dir.0)
                .env(CHILD_NAME, i.to_string())
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap();
            children.push(child);
        }
        // Start them together, so their leases really overlap.
        let deadline = Instant::now() + Duration::from_secs(30);
        while (0..PROCESSES).any(|i| !dir.0.join(format!("ready-{i}")).exists()) {
            assert!(Instant::now() < deadline, "leaser processes did not start");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        std::fs::write(dir.0.join("go"), b"").unwrap();
        for mut c in children {
            let status = tokio::task::spawn_blocking(move || c.wait())
                .await
                .unwrap()
                .unwrap();
            assert!(status.success(), "a leaser process failed: {status}");
        }

        let mut count: BTreeMap<String, usize> = BTreeMap::new();
        let mut busy = 0;
        for i in 0..PROCESSES {
            let got = std::fs::read_to_string(dir.0.join(format!("leased-{i}"))).unwrap();
            busy += usize::from(!got.is_empty());
            for line in got.lines() {
                *count.entry(line.to_string()).or_default() += 1;
            }
        }
        let twice: Vec<_> = count.iter().filter(|(_, n)| **n > 1).collect();
        assert!(twice.is_empty(), "leased more than once: {twice:?}");
        assert_eq!(count.len(), MESSAGES, "some messages were never leased");
        assert!(
            busy >= 2,
            "only {busy} process(es) got any message; no concurrency tested"
        );
        let stats = q.stats().await.unwrap();
        assert_eq!(stats.visible, 0);
    }

    /// Not a test on its own: the body of one leaser process of
    /// `processes_never_share_a_lease`, which runs this test binary again with
    /// `--ignored --exact` and the environment set. Ignored, so a plain run skips it
    /// instead of counting a pass that checked nothing; without its environment it fails.
    #[tokio::test]
    #[ignore = "child process of processes_never_share_a_lease"]
    async fn helper_leaser_process() {
        let var = |k: &str| {
            std::env::var(k)
                .unwrap_or_else(|_| panic!("{k} is unset: run by processes_never_share_a_lease"))
        };
        let (db, dir, name) = (var(CHILD_DB), var(CHILD_DIR), var(CHILD_NAME));
        let dir = PathBuf::from(dir);
        let q = SqliteQueue::open(&db).unwrap();
        std::fs::write(dir.join(format!("ready-{name}")), b"").unwrap();
        while !dir.join("go").exists() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let mut leased = String::new();
        let mut ack_this = false;
        loop {
            let got = match q.lease(2, LONG, NO_WAIT).await {
                Ok(g) => g,
                // Another process held the write lock past the busy timeout: try again.
                Err(QueueError::Retryable(_)) => continue,
                Err(e) => panic!("lease: {e}"),
            };
            if got.is_empty() {
                break;
            }
            for l in got {
                leased.push_str(&l.body);
                leased.push('\n');
                // Ack some, keep the rest held: either way nobody else may get them.
                ack_this = !ack_this;
                if ack_this {
                    q.ack(&l).await.unwrap();
                }
            }
        }
        std::fs::write(dir.join(format!("leased-{name}")), leased).unwrap();
    }
}
