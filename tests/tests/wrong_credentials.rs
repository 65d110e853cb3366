//! With credentials S3 rejects, the agent dead-letters nothing: each job it tried keeps
//! its lease and is tried again after a pause of leasing with a growing backoff (the
//! SIGTERM's drain releases them), and its log says why.
//!
//! moto enforces IAM authentication once told to (`POST /moto-api/reset-auth` with the
//! number of requests still let through, here 0; moto's `INITIAL_NO_AUTH_ACTION_COUNT`
//! setting). The data is uploaded and planned before that; the agent then reaches moto
//! through a pass-through proxy that counts its GETs.

use std::path::Path;
use std::time::{Duration, Instant};

use rangefleet::store::{Store, StoreError};
use rangefleet_tests::ec2;
use rangefleet_tests::fleet::{event, timestamp, Fleet, Gen};
use rangefleet_tests::moto::Moto;
use rangefleet_tests::proxy::{FaultProxy, Faults};
use serde_json::Value;

const BUCKET: &str = "bucket";
const TIMEOUT: Duration = Duration::from_secs(60);
/// Jobs the agent runs at once: at most this many GETs between two pauses.
const CONCURRENCY: u64 = 2;
/// How many fault pauses to watch before stopping the agent.
const FAULTS_TO_SEE: usize = 4;

/// What one run with wrong credentials left behind.
struct Observed {
    fleet: Fleet,
    /// Every event the agent logged.
    events: Vec<Value>,
    /// The "environment is wrong" events among them, up to the SIGTERM.
    faults: Vec<Value>,
    /// GETs that reached the proxy before the SIGTERM.
    gets: u64,
    /// From the agent's start to the SIGTERM.
    watched: Duration,
}

/// Uploads and plans 8 jobs, turns authentication on, runs one agent (SQLite queue,
/// file:// results) through the counting proxy until it has paused for a fault
/// [`FAULTS_TO_SEE`] times, then SIGTERMs it and checks it exits 0.
async fn run_with_wrong_credentials(tag: &str) -> Observed {
    let moto = Moto::start().expect("moto server");
    let fleet = Fleet::new(tag);
    fleet.gen(&Gen {
        colors: "yellow".into(),
        days: "2016-01-01..2016-01-02".into(),
        records: 2000,
        bad_every: 50,
    });
    upload(&moto, &fleet.data).await;
    let source = format!("s3://{BUCKET}/trips/");
    let planned = fleet.plan(&source, 500, &moto.aws_env());
    assert_eq!(planned.len(), 8);

    enforce_auth(&moto).await;
    let proxy = FaultProxy::start(&moto.endpoint, Faults::default()).await;
    let env: Vec<(String, String)> = moto
        .aws_env()
        .into_iter()
        .map(|(k, v)| match k.as_str() {
            "AWS_ENDPOINT_URL" => (k, proxy.url.clone()),
            _ => (k, v),
        })
        .collect();
    let config = fleet.config("agent", &[source], CONCURRENCY as usize, 30);

    let started = Instant::now();
    let mut agent = fleet.agent(&config, "i-wrong-creds", false, &env);
    let deadline = Instant::now() + TIMEOUT;
    let faults = loop {
        agent.wait_for_event(TIMEOUT, is_fault);
        let faults: Vec<Value> = agent.events().into_iter().filter(is_fault).collect();
        if faults.len() >= FAULTS_TO_SEE {
            break faults;
        }
        assert!(
            Instant::now() < deadline,
            "only {} fault pauses in {TIMEOUT:?}",
            faults.len()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let watched = started.elapsed();
    let gets = proxy.gets();
    agent.signal(libc::SIGTERM);
    let status = agent.wait(TIMEOUT);
    assert!(
        status.success(),
        "the agent exited with {status} after SIGTERM; its log:\n{}",
        agent.log_tail()
    );
    Observed {
        events: agent.events(),
        fleet,
        faults,
        gets,
        watched,
    }
}

fn is_fault(ev: &Value) -> bool {
    event(ev) == "environment_fault"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_release_jobs_and_dead_letter_nothing() {
    let Observed {
        fleet,
        faults,
        gets,
        watched,
        ..
    } = run_with_wrong_credentials("creds").await;

    // It says why: the pause event carries S3's answer.
    let reason = faults[0]["fields"]["reason"].as_str().unwrap_or_default();
    let lower = reason.to_ascii_lowercase();
    assert!(
        lower.contains("403") || lower.contains("access denied") || lower.contains("accessdenied"),
        "the fault should say S3 refused access: {reason}"
    );
    assert!(
        lower.contains("invalidaccesskeyid") || lower.contains("access key"),
        "the fault should carry S3's own reason: {reason}"
    );

    // Nothing dead-lettered, nothing written, every job still in the queue.
    assert_eq!(fleet.dead_letters(), vec![], "no job is dead-lettered");
    assert_eq!(fleet.result_names(), Vec::<String>::new(), "no result");
    let stats = fleet.stats();
    assert_eq!(stats.visible + stats.in_flight, 8, "{stats:?}");
    let summary = fleet
        .instance_summary("i-wrong-creds")
        .expect("instance summary");
    assert_eq!(summary.done, 0, "{summary:?}");
    assert_eq!(summary.failed, 0, "{summary:?}");
    assert!(summary.released >= 1, "{summary:?}");

    // It backed off rather than hammering (without a pause a 403 comes back in
    // milliseconds, so a hammering agent makes hundreds of GETs a second): every pause
    // lasts 1 s or more, a round makes at most CONCURRENCY GETs, and a slot freed as a
    // pause begins may make one more (see no_job_starts_while_a_fault_pause_is_in_effect).
    let bound = 2 * CONCURRENCY * (watched.as_secs() + 1);
    assert!(
        gets <= bound,
        "{gets} GETs in {watched:?}: at most {bound} with pauses of 1 s or more"
    );
}

/// Each fault event says "leasing pauses" for `pause`: no job may start before the
/// longest pause announced so far has run out.
///
/// Two ways to break this: a loop that, already waiting for a slot when a job faulted,
/// leases again the moment the slot frees (caught every run), and a later fault's
/// shorter pause replacing a longer one still running (`pause_for_fault` assigning
/// `paused_until` instead of keeping the later end): caught only when the jittered
/// draws come out that way, about one run in five.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_job_starts_while_a_fault_pause_is_in_effect() {
    let Observed { events, .. } = run_with_wrong_credentials("creds-pause").await;
    let mut paused_until = f64::MIN;
    let mut violations = Vec::new();
    for ev in &events {
        let at = timestamp(ev);
        if is_fault(ev) {
            let pause = ev["fields"]["pause_ms"]
                .as_f64()
                .unwrap_or_else(|| panic!("fault event without pause_ms: {ev}"))
                / 1e3;
            paused_until = paused_until.max(at + pause);
        } else if event(ev) == "job_started" && at < paused_until {
            violations.push(format!(
                "{} started {:.3} s before the pause announced earlier ran out",
                ev["span"]["job_id"],
                paused_until - at
            ));
        }
    }
    assert!(
        violations.is_empty(),
        "leasing did not pause:\n{}",
        violations.join("\n")
    );
}

/// Creates the bucket and uploads every file under `dir` to `trips/` (hidden ones
/// too; plan skips them).
async fn upload(moto: &Moto, dir: &Path) {
    ec2::create_bucket(moto, BUCKET).await;
    ec2::upload_tree(moto, dir, &format!("s3://{BUCKET}/trips/"), true).await;
}

/// From now on moto checks every request's signature against IAM, so the test
/// credentials are refused (403 InvalidAccessKeyId).
async fn enforce_auth(moto: &Moto) {
    moto.enforce_auth().await;
    let probe = Store::open_with(&format!("s3://{BUCKET}/trips/"), &ec2::s3_settings(moto))
        .await
        .expect("open the bucket")
        .get("color=yellow/date=2016-01-01/part-0000.rec")
        .await;
    assert!(
        matches!(probe, Err(StoreError::Fault(_))),
        "moto should now refuse the test credentials: {probe:?}"
    );
}
