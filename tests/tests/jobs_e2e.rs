//! Plan → three agent processes on one SQLite queue → reduce, over `gen` data with bad
//! records, while one agent is SIGKILLed holding leases. The jobs it held come back
//! after their lease and are done by the others; reduce is exact and complete.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use rangefleet_tests::fleet::{event, Fleet, Gen};

/// 2 colours × 2 days × 20,000 records, 100 records per job: 800 jobs.
const RECORDS: u64 = 20_000;
const PER_JOB: u64 = 100;
/// Short leases, so the killed agent's jobs come back within seconds.
const LEASE_SECONDS: u64 = 2;
/// Bound on any one wait, far above what a run takes.
const TIMEOUT: Duration = Duration::from_secs(120);

#[test]
fn a_killed_agents_leased_jobs_are_done_by_the_others_and_reduce_is_exact() {
    let fleet = Fleet::new("e2e");
    fleet.gen(&Gen {
        colors: "yellow,green".into(),
        days: "2016-01-01..2016-01-02".into(),
        records: RECORDS,
        bad_every: 37,
    });
    let planned = fleet.plan(&fleet.data_url(), PER_JOB, &[]);
    assert_eq!(planned.len(), 800, "2 × 2 × 20,000 records / 100 per job");
    let config = fleet.config("agent", &[fleet.data_url()], 2, LEASE_SECONDS);

    let mut victim = fleet.agent(&config, "i-victim", true, &[]);
    let mut survivors = [
        fleet.agent(&config, "i-survivor-1", true, &[]),
        fleet.agent(&config, "i-survivor-2", true, &[]),
    ];

    // Freeze the victim mid-job, then read its log and the results folder, which no
    // longer change under us. A job it logged "job started" for, with no "job done" and
    // no result yet, is leased to it and unfinished. If the freeze caught it between
    // jobs, let it run a little and try again.
    let deadline = Instant::now() + TIMEOUT;
    let held: BTreeSet<String> = loop {
        victim.wait_for_event(TIMEOUT, |ev| event(ev) == "job_started");
        victim.freeze();
        let held: BTreeSet<String> = victim
            .started_not_done()
            .into_iter()
            // Killed between writing the result and logging "job done": that job is
            // finished, and its redelivery will be counted as re-done, not re-run.
            .filter(|id| fleet.result(id).is_none())
            .collect();
        if !held.is_empty() {
            victim.signal(libc::SIGKILL);
            break held;
        }
        victim.signal(libc::SIGCONT);
        assert!(
            Instant::now() < deadline,
            "never caught the victim holding an unfinished job"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    let status = victim.wait(TIMEOUT);
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL),
        "the victim died of SIGKILL"
    );

    for agent in &mut survivors {
        let status = agent.wait(TIMEOUT);
        assert!(
            status.success(),
            "agent {} exited with {status}; the end of its log:\n{}",
            agent.instance_id,
            agent.log_tail()
        );
    }

    let (code, reduced) = fleet.reduce();
    assert_eq!(code, 0, "reduce: {reduced}");
    let expected = fleet.expected();
    assert_eq!(reduced["total"], expected["total"], "total");
    let partitions = expected["partitions"].as_object().unwrap();
    assert_eq!(partitions.len(), 4);
    for (name, want) in partitions {
        assert_eq!(&reduced["partitions"][name], want, "partition {name}");
    }
    assert_eq!(
        reduced["partitions"].as_object().unwrap().len(),
        partitions.len(),
        "no partition beyond gen's"
    );
    let coverage = &reduced["coverage"];
    assert_eq!(coverage["planned"], 800, "{coverage}");
    assert_eq!(coverage["done"], 800, "{coverage}");
    assert_eq!(coverage["missing"], serde_json::json!([]), "{coverage}");
    assert_eq!(coverage["unexpected"], serde_json::json!([]), "{coverage}");

    for id in &held {
        let doc = fleet
            .result(id)
            .unwrap_or_else(|| panic!("no result for {id}, which the victim held"));
        assert_eq!(doc["job"]["job_id"], id.as_str());
        let by = doc["instance"]["instance_id"].as_str().unwrap();
        assert!(
            by.starts_with("i-survivor-"),
            "{id} was held by the killed agent but written by {by}"
        );
        let attempt = doc["attempt"].as_u64().unwrap();
        assert!(
            attempt >= 2,
            "{id} was held by the killed agent, yet its result says attempt {attempt}"
        );
    }

    // Nothing left behind: the queue is empty and nothing was dead-lettered.
    let stats = fleet.stats();
    assert_eq!(
        (stats.visible, stats.in_flight, stats.dead),
        (0, 0, 0),
        "queue after the run"
    );
    assert!(fleet.instance_summary("i-victim").is_none());
    let done: u64 = ["i-survivor-1", "i-survivor-2"]
        .iter()
        .map(|id| {
            fleet
                .instance_summary(id)
                .unwrap_or_else(|| panic!("no summary for {id}"))
                .done
        })
        .sum();
    let by_victim = fleet
        .result_names()
        .iter()
        .filter(|n| {
            let doc = rangefleet_tests::fleet::read_json(&fleet.out.join(n));
            doc["instance"]["instance_id"] == "i-victim"
        })
        .count() as u64;
    assert_eq!(
        done + by_victim,
        800,
        "every result written once, by a survivor or by the victim before it died"
    );
}
