//! SQS delivers at least once: a job delivered twice is still counted once. The second
//! result write is refused by the store (create-only), counted as "redone", and the
//! merged answer is exact.

use std::time::Duration;

use rangefleet::queue::Queue;
use rangefleet_tests::fleet::{plan_into, Fleet, Gen};
use rangefleet_tests::moto::Moto;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_delivered_twice_is_counted_once() {
    let moto = Moto::start().expect("start moto");
    let sqs = aws_sdk_sqs::Client::new(&moto.sdk_config().await);
    let queue_url = sqs
        .create_queue()
        .queue_name("once-jobs")
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_string();
    let fleet = Fleet::new("sqs-once");
    fleet.gen(&Gen {
        colors: "yellow".into(),
        days: "2016-01-01..2016-01-02".into(),
        records: 3_000,
        bad_every: 97,
    });
    let env = moto.aws_env();
    plan_into(
        &fleet.data_url(),
        &queue_url,
        &fleet.results_url(),
        500,
        &env,
    );

    // The duplicate: one job's body sent again, as SQS's at-least-once delivery may.
    let q = rangefleet::queue::sqs::SqsQueue::new(sqs.clone(), queue_url.clone());
    let lease = q
        .lease(1, Duration::from_secs(30), Duration::ZERO)
        .await
        .unwrap()
        .remove(0);
    q.enqueue(std::slice::from_ref(&lease.body)).await.unwrap();
    q.release(&lease).await.unwrap();
    let body = lease.body;
    let dup: Value = serde_json::from_str(&body).unwrap();

    let config = fleet.config("agent", &[fleet.data_url()], 2, 30);
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace(&fleet.queue_url(), &queue_url);
    std::fs::write(&config, text).unwrap();
    let mut agent = fleet.agent(&config, "i-0once", true, &env);
    assert!(
        agent.wait(Duration::from_secs(60)).success(),
        "{}",
        agent.log_tail()
    );

    let (code, r) = fleet.reduce();
    assert_eq!(code, 0, "{}", r["coverage"]);
    let planned = r["coverage"]["planned"].as_u64().unwrap();
    assert_eq!(r["coverage"]["done"], planned, "every job counted once");
    assert_eq!(
        r["coverage"]["redone"], 1,
        "the duplicate was refused and counted as redone"
    );
    assert_eq!(
        r["total"],
        fleet.expected()["total"],
        "exact totals, nothing counted twice"
    );
    let summary = fleet.instance_summary("i-0once").unwrap();
    assert_eq!(summary.done + summary.redone, planned + 1);
    assert!(fleet.result(dup["job_id"].as_str().unwrap()).is_some());
}
