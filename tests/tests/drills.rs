//! Drain drills with real agent processes: SIGTERM, an auto-scaling `Terminated` state
//! and a spot notice (on SQS, on a local moto server). Each ends with another agent
//! finishing the work and `reduce` equal to gen's expected totals, coverage complete.
//! (The in-process drills with paused time are in agent/tests/drain.rs.)

use std::time::Duration;

use rangefleet::contract::summary::Interruption;
use rangefleet_tests::fleet::{event, AgentProc, Fleet, Gen};
use rangefleet_tests::moto::Moto;
use rangefleet_tests::ImdsMock;
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(60);

fn small_gen() -> Gen {
    Gen {
        colors: "yellow,green".into(),
        days: "2016-01-01..2016-01-02".into(),
        records: 20_000,
        bad_every: 499,
    }
}

/// reduce's totals and every partition equal gen's, and every planned job is done.
fn assert_exact(fleet: &Fleet) {
    let (code, r) = fleet.reduce();
    let expected = fleet.expected();
    assert_eq!(code, 0, "coverage complete: {}", r["coverage"]);
    assert_eq!(r["coverage"]["missing"], Value::Array(vec![]));
    assert_eq!(r["coverage"]["unexpected"], Value::Array(vec![]));
    assert_eq!(r["total"], expected["total"], "exact totals");
    assert_eq!(r["partitions"], expected["partitions"], "exact partitions");
}

/// Waits for the first finished job, so the signal lands while the agent is working.
fn wait_until_working(agent: &mut AgentProc) {
    agent.wait_for_event(LIMIT, |ev| event(ev) == "job_done");
}

fn interruption(fleet: &Fleet, id: &str) -> Option<Interruption> {
    let s = fleet
        .instance_summary(id)
        .unwrap_or_else(|| panic!("{id} wrote its instance summary"));
    s.interruption
}

#[test]
fn sigterm_drains_and_another_agent_finishes() {
    let fleet = Fleet::new("drill-sigterm");
    fleet.gen(&small_gen());
    let planned = fleet.plan(&fleet.data_url(), 20, &[]).len();
    let config = fleet.config("agent", &[fleet.data_url()], 1, 30);
    let mut a = fleet.agent(&config, "i-0sigterm", false, &[]);
    wait_until_working(&mut a);
    a.signal(libc::SIGTERM);
    let status = a.wait(Duration::from_secs(20));
    assert!(
        status.success(),
        "SIGTERM drain exits 0: {status}\n{}",
        a.log_tail()
    );
    let i = interruption(&fleet, "i-0sigterm").expect("an interruption");
    assert_eq!(i.kind, "sigterm", "{i:?}");
    let done = fleet.instance_summary("i-0sigterm").unwrap().done;
    assert!(
        (done as usize) < planned,
        "stopped before the end: {done} of {planned}"
    );
    assert!(
        a.events().iter().any(|e| event(e) == "agent_stopped"),
        "the drain completed:\n{}",
        a.log_tail()
    );

    let mut b = fleet.agent(&config, "i-0finisher", true, &[]);
    assert!(b.wait(LIMIT).success(), "{}", b.log_tail());
    assert_exact(&fleet);
}

#[test]
fn an_auto_scaling_termination_drains_the_same_way() {
    let fleet = Fleet::new("drill-asg");
    fleet.gen(&small_gen());
    let planned = fleet.plan(&fleet.data_url(), 20, &[]).len();
    let ud = fleet.userdata(
        "asg",
        &[fleet.data_url()],
        "concurrency: 1\nlease_seconds: 30\nspot: {poll_seconds: 1}\n",
    );
    let mock = ImdsMock::start(&[
        "--userdata",
        ud.to_str().unwrap(),
        "--instance-id",
        "i-0asgterminated",
        "--asg-terminate-after",
        "1500ms",
    ]);
    let mut a = fleet.agent_imds(&mock.url, "i-0asgterminated", false, &[]);
    let status = a.wait(LIMIT);
    assert!(
        status.success(),
        "exits 0 after the drain: {status}\n{}",
        a.log_tail()
    );
    let i = interruption(&fleet, "i-0asgterminated").expect("an interruption");
    assert_eq!(i.kind, "asg-termination", "{i:?}");
    assert_eq!(i.detail, "Terminated");
    let done = fleet.instance_summary("i-0asgterminated").unwrap().done;
    assert!(
        (done as usize) < planned,
        "stopped before the end: {done} of {planned}"
    );

    let config = fleet.config("finisher", &[fleet.data_url()], 2, 30);
    let mut b = fleet.agent(&config, "i-0finisher", true, &[]);
    assert!(b.wait(LIMIT).success(), "{}", b.log_tail());
    assert_exact(&fleet);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spot_notice_on_sqs_drains_while_the_other_agent_finishes() {
    let moto = Moto::start().expect("start moto");
    let sqs = aws_sdk_sqs::Client::new(&moto.sdk_config().await);
    let dlq = sqs
        .create_queue()
        .queue_name("drill-dlq")
        .send()
        .await
        .unwrap();
    let dlq_arn = sqs
        .get_queue_attributes()
        .queue_url(dlq.queue_url().unwrap())
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes()
        .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
        .clone();
    let queue = sqs
        .create_queue()
        .queue_name("drill-jobs")
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy,
            format!(r#"{{"deadLetterTargetArn":"{dlq_arn}","maxReceiveCount":"20"}}"#),
        )
        .send()
        .await
        .unwrap();
    let queue_url = queue.queue_url().unwrap().to_string();

    let fleet = Fleet::new("drill-sqs");
    fleet.gen(&small_gen());
    let env = moto.aws_env();
    rangefleet_tests::fleet::plan_into(
        &fleet.data_url(),
        &queue_url,
        &fleet.results_url(),
        200,
        &env,
    );
    let config = |name: &str| {
        let path = fleet.userdata(
            name,
            &[fleet.data_url()],
            "concurrency: 2\nlease_seconds: 30\nspot: {poll_seconds: 1}\n",
        );
        // The SQS queue, not the run's SQLite one.
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace(&fleet.queue_url(), &queue_url);
        std::fs::write(&path, text).unwrap();
        path
    };
    let victim_ud = config("victim");
    let other_ud = config("other");
    let victim_mock = ImdsMock::start(&[
        "--userdata",
        victim_ud.to_str().unwrap(),
        "--instance-id",
        "i-0spotvictim",
        "--interrupt-after",
        "1s",
    ]);
    let other_mock = ImdsMock::start(&[
        "--userdata",
        other_ud.to_str().unwrap(),
        "--instance-id",
        "i-0spotother",
    ]);
    let mut victim = fleet.agent_imds(&victim_mock.url, "i-0spotvictim", true, &env);
    let mut other = fleet.agent_imds(&other_mock.url, "i-0spotother", true, &env);
    let (v, o) = (victim.wait(LIMIT), other.wait(Duration::from_secs(120)));
    assert!(v.success(), "{}", victim.log_tail());
    assert!(o.success(), "{}", other.log_tail());
    let i = interruption(&fleet, "i-0spotvictim").expect("an interruption");
    assert_eq!(
        i.kind, "spot-interruption",
        "the victim saw the notice: {i:?}"
    );
    let notice: Value = serde_json::from_str(&i.detail).unwrap();
    assert_eq!(notice["action"], "terminate");
    assert!(interruption(&fleet, "i-0spotother").is_none());
    assert_exact(&fleet);
}
