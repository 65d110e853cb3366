//! `rangefleet status` against moto while a plan runs: the queue's counts, the fleet's
//! instances by tag, the plan's progress, all exact.

use std::time::Duration;

use rangefleet::queue::sqs::SqsQueue;
use rangefleet::queue::Queue;
use rangefleet::store::Store;
use rangefleet_tests::ec2::{self, run_cli};
use rangefleet_tests::moto::Moto;
use rangefleet_tests::{rangefleet, TempDir};

const BUCKET: &str = "status-data";
/// 1,000 records, 100 per job: 10 jobs.
const PLANNED: u64 = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_counts_the_queue_the_fleet_and_the_plan_exactly() {
    let moto = Moto::start().unwrap();
    let sdk = moto.sdk_config().await;
    ec2::create_bucket(&moto, BUCKET).await;
    let (queue_url, _dlq) = ec2::create_queues(&sdk, "status-jobs").await;
    let dir = TempDir::new("status");
    let gen_args = [
        "--colors",
        "yellow",
        "--days",
        "2016-01-01",
        "--records",
        "1000",
    ];
    let ec2::Planned { results, .. } = ec2::gen_upload_plan(
        &moto,
        BUCKET,
        &dir.0,
        &gen_args,
        &queue_url,
        "run-1",
        "taxi-stats",
        100,
    )
    .await;

    // Two of the fleet, launched with the fleet's tag, and one that is not ours.
    let ours = ec2::run_instances(&sdk, 2, &[("fleet", "trips"), ("team", "data")]).await;
    let theirs = ec2::run_instances(&sdk, 1, &[("fleet", "other")]).await;

    // Work in progress, done with the library as an agent would: 6 leased; 2 finished
    // (result written, acked), 1 dead-lettered, 3 still in flight.
    let q = SqsQueue::new(aws_sdk_sqs::Client::new(&sdk), queue_url.clone());
    let mut leases = Vec::new();
    while leases.len() < 6 {
        let more = q
            .lease(
                6 - leases.len(),
                Duration::from_secs(300),
                Duration::from_secs(1),
            )
            .await
            .unwrap();
        leases.extend(more);
    }
    let store = Store::open_with(&results, &ec2::s3_settings(&moto))
        .await
        .unwrap();
    for l in &leases[..2] {
        let job: serde_json::Value = serde_json::from_str(&l.body).unwrap();
        let key = rangefleet::contract::job::result_key(job["job_id"].as_str().unwrap());
        store.put(&key, b"{}".to_vec().into()).await.unwrap();
        q.ack(l).await.unwrap();
    }
    q.dead_letter(&leases[2], "a drill").await.unwrap();
    // A summary is not a result.
    store
        .put("_instances/i-0.json", b"{}".to_vec().into())
        .await
        .unwrap();

    let args = [
        "status",
        "--queue",
        &queue_url,
        "--results",
        &results,
        "--fleet-tag",
        "fleet=trips",
    ];
    let (code, stdout, err) = run_cli(&moto, &[&args[..], &["--json"]].concat());
    assert_eq!(code, 0, "status failed: {err}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["queue"]["visible"], PLANNED - 6, "{v:#}");
    assert_eq!(v["queue"]["in_flight"], 3, "{v:#}");
    assert_eq!(v["queue"]["dead"], 1, "{v:#}");
    assert_eq!(v["plan"]["planned"], PLANNED, "{v:#}");
    assert_eq!(v["plan"]["done"], 2, "{v:#}");
    assert_eq!(v["plan"]["remaining"], PLANNED - 2, "{v:#}");
    assert_eq!(v["plan"]["unexpected"], 0, "{v:#}");
    let instances = v["instances"].as_array().unwrap();
    let mut ids: Vec<&str> = instances
        .iter()
        .map(|i| i["instance_id"].as_str().unwrap())
        .collect();
    ids.sort();
    let mut want: Vec<&str> = ours.iter().map(String::as_str).collect();
    want.sort();
    assert_eq!(ids, want, "only the tagged fleet, not {theirs:?}");
    for i in instances {
        assert_eq!(i["instance_type"], "m5.large", "{i}");
        assert_eq!(i["state"], "running", "{i}");
        assert!(i["availability_zone"]
            .as_str()
            .unwrap()
            .starts_with("us-east-1"));
        assert!(!i["launch_time"].as_str().unwrap().is_empty());
    }

    // The text form says the same, for people (no terminal here: no bar).
    let (code, text, err) = run_cli(&moto, &args);
    assert_eq!(code, 0, "status failed: {err}");
    assert!(
        text.contains("visible 4, in flight 3, dead letters 1"),
        "{text}"
    );
    assert!(text.contains("2 instances"), "{text}");
    assert!(text.contains("plan: 2 of 10 jobs done"), "{text}");
}

#[test]
fn status_without_the_plan_or_the_queue_fails_with_the_documented_codes() {
    let dir = TempDir::new("status-bad");
    let out = rangefleet()
        .args(["status", "--queue", "ftp://nowhere/q"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let q = format!("sqlite://{}/q.db", dir.0.display());
    let results = format!("file://{}/results/", dir.0.display());
    // A SQLite queue that does not exist (a mistyped path): refused, not created.
    let out = rangefleet()
        .args(["status", "--queue", &q, "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("does not exist"),
        "{out:?}"
    );
    assert!(
        !dir.0.join("q.db").exists(),
        "status created the queue file"
    );
    rangefleet::queue::sqlite::SqliteQueue::open(dir.0.join("q.db")).unwrap();
    let out = rangefleet()
        .args(["status", "--queue", &q, "--results", &results, "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("_plan.json"),
        "{out:?}"
    );
    let out = rangefleet()
        .args(["status", "--queue", &q, "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"queue": {"url": q, "visible": 0, "in_flight": 0, "dead": 0}})
    );
}

/// `status --fleet trips` lists the instances the Terraform module tagged
/// `rangefleet:fleet=trips`: not another fleet's, not ones tagged `fleet=trips` by hand,
/// not terminated ones; a stopped one is still the fleet's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_fleet_counts_the_module_tag_and_skips_terminated_instances() {
    let moto = Moto::start().unwrap();
    let sdk = moto.sdk_config().await;
    let dir = TempDir::new("status-fleet");
    let q = format!("sqlite://{}/q.db", dir.0.display());
    // status refuses a SQLite queue that does not exist: make an empty one.
    rangefleet::queue::sqlite::SqliteQueue::open(dir.0.join("q.db")).expect("create the queue");

    let trips = ec2::run_instances(&sdk, 5, &[("rangefleet:fleet", "trips")]).await;
    let other = ec2::run_instances(&sdk, 2, &[("rangefleet:fleet", "other")]).await;
    let by_hand = ec2::run_instances(&sdk, 1, &[("fleet", "trips")]).await;
    let client = aws_sdk_ec2::Client::new(&sdk);
    // Two of ours and one of the other fleet's gone; one of ours stopped.
    client
        .terminate_instances()
        .set_instance_ids(Some(vec![
            trips[0].clone(),
            trips[1].clone(),
            other[0].clone(),
        ]))
        .send()
        .await
        .unwrap();
    client
        .stop_instances()
        .instance_ids(&trips[2])
        .send()
        .await
        .unwrap();
    let states = client.describe_instances().send().await.unwrap();
    let terminated = states
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .filter(|i| i.state().and_then(|s| s.name()).map(|n| n.as_str()) == Some("terminated"))
        .count();
    assert_eq!(
        terminated, 3,
        "moto still lists terminated instances: {states:?}"
    );

    let (code, stdout, err) = run_cli(
        &moto,
        &["status", "--queue", &q, "--fleet", "trips", "--json"],
    );
    assert_eq!(code, 0, "status failed: {err}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        v["fleet_tags"],
        serde_json::json!({"rangefleet:fleet": "trips"}),
        "{v:#}"
    );
    let rows = v["instances"].as_array().unwrap();
    let ids: Vec<&str> = rows
        .iter()
        .map(|i| i["instance_id"].as_str().unwrap())
        .collect();
    let mut want: Vec<&str> = trips[2..].iter().map(String::as_str).collect();
    want.sort();
    assert_eq!(
        ids, want,
        "not {other:?}, {by_hand:?} or the terminated ones"
    );
    let states: Vec<&str> = rows.iter().map(|i| i["state"].as_str().unwrap()).collect();
    assert_eq!(
        states.iter().filter(|s| **s == "running").count(),
        2,
        "{v:#}"
    );
    assert_eq!(
        states.iter().filter(|s| **s == "stopped").count(),
        1,
        "{v:#}"
    );

    let (code, text, err) = run_cli(&moto, &["status", "--queue", &q, "--fleet", "trips"]);
    assert_eq!(code, 0, "status failed: {err}");
    assert!(
        text.contains("fleet (rangefleet:fleet=trips): 3 instances"),
        "{text}"
    );
    assert!(
        !text.contains(&trips[0]),
        "a terminated instance listed: {text}"
    );

    // The other fleet: one left; --fleet-tag narrows --fleet further.
    let (_, text, _) = run_cli(&moto, &["status", "--queue", &q, "--fleet", "other"]);
    assert!(
        text.contains("fleet (rangefleet:fleet=other): 1 instances"),
        "{text}"
    );
    let (_, text, _) = run_cli(
        &moto,
        &[
            "status",
            "--queue",
            &q,
            "--fleet",
            "trips",
            "--fleet-tag",
            "team=data",
        ],
    );
    assert!(
        text.contains("fleet (rangefleet:fleet=trips, team=data): 0 instances"),
        "{text}"
    );
}
