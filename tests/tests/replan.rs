//! Drills: `reduce` counts a result only when it is the result of the manifest's own
//! job (plan identity, source, ETag, range, record count), and names every other one.
//!
//! - `plan --force` over regenerated data with the last plan's results still there:
//!   before any agent runs, reduce counts none of them and exits 3 naming each; after
//!   the agent runs, the stale results in the new jobs' places are replaced, reduce is
//!   exact for the new data, and the old results of jobs the new plan does not have are
//!   named, never counted.
//! - A forged message with a planned `job_id` but another `record_count`: its result is
//!   not counted, and reduce exits non-zero naming it.

use std::collections::BTreeSet;
use std::time::Duration;

use rangefleet_tests::fleet::{self, event, Fleet, Gen};
use rangefleet_tests::rangefleet;
use serde_json::Value;

const TIMEOUT: Duration = Duration::from_secs(120);
const PER_JOB: u64 = 250;

fn gen(fleet: &Fleet, records: u64, bad_every: u64) {
    let _ = std::fs::remove_dir_all(&fleet.data);
    fleet.gen(&Gen {
        colors: "yellow,green".into(),
        days: "2016-01-01..2016-01-01".into(),
        records,
        bad_every,
    });
}

/// Runs one agent until the queue is empty; fails on a non-zero exit.
fn run_agent(fleet: &Fleet, id: &str, concurrency: usize) -> Vec<Value> {
    let config = fleet.config(id, &[fleet.data_url()], concurrency, 30);
    let mut agent = fleet.agent(&config, id, true, &[]);
    let status = agent.wait(TIMEOUT);
    assert!(
        status.success(),
        "agent {id} exited with {status}; its log:\n{}",
        agent.log_tail()
    );
    agent.events()
}

/// The job ids of the unexpected results, with their reasons.
fn unexpected(reduced: &Value) -> Vec<(String, String)> {
    reduced["coverage"]["unexpected"]
        .as_array()
        .unwrap_or_else(|| panic!("coverage.unexpected is a list: {reduced}"))
        .iter()
        .map(|u| {
            (
                u["job_id"].as_str().expect("job_id").to_string(),
                u["reason"].as_str().expect("reason").to_string(),
            )
        })
        .collect()
}

fn result_ids(fleet: &Fleet) -> BTreeSet<String> {
    fleet
        .result_names()
        .iter()
        .map(|n| rangefleet::contract::job::job_id_of_result(n).expect("a result name"))
        .collect()
}

#[test]
fn plan_force_over_regenerated_data_never_counts_stale_results() {
    let fleet = Fleet::new("replan");
    gen(&fleet, 2000, 50);
    let first = fleet.plan(&fleet.data_url(), PER_JOB, &[]);
    assert_eq!(first.len(), 16);
    run_agent(&fleet, "i-first", 2);
    let (code, reduced) = fleet.reduce();
    assert_eq!(code, 0, "the first run is complete: {reduced}");
    let old_total = reduced["total"].clone();
    let old_results = result_ids(&fleet);
    assert_eq!(old_results.len(), 16);

    // New data under the same prefix: fewer records, other bad ones.
    gen(&fleet, 1500, 30);
    let new_expected = fleet.expected();
    assert_ne!(new_expected["total"], old_total, "the data really changed");
    let out = rangefleet()
        .args([
            "plan",
            &fleet.data_url(),
            "--queue",
            &fleet.queue_url(),
            "--results",
            &fleet.results_url(),
            "--processor",
            "taxi-stats",
            "--records-per-job",
            &PER_JOB.to_string(),
            "--force",
        ])
        .output()
        .expect("run rangefleet plan --force");
    assert!(
        out.status.success(),
        "plan --force: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let manifest = fleet::read_json(&fleet.out.join("_plan.json"));
    let second: BTreeSet<String> = manifest["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j.as_str().unwrap().to_string())
        .collect();
    assert_eq!(second.len(), 12);

    // Before any agent runs: every result there is the last plan's; none counts.
    let (code, reduced) = fleet.reduce();
    assert_eq!(
        code, 3,
        "stale results must not complete the plan: {reduced}"
    );
    assert_eq!(reduced["coverage"]["done"], 0, "{}", reduced["coverage"]);
    assert_eq!(reduced["total"]["records"], 0, "{}", reduced["total"]);
    let named = unexpected(&reduced);
    let named_ids: BTreeSet<String> = named.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(named_ids, old_results, "every stale result is named");
    for (id, reason) in &named {
        let want = if second.contains(id) {
            "stale plan"
        } else {
            "not in the plan"
        };
        assert!(reason.starts_with(want), "{id}: {reason}");
    }

    // The agent replaces the stale results in its jobs' places; reduce is exact.
    let events = run_agent(&fleet, "i-second", 2);
    let replaced = events
        .iter()
        .filter(|e| event(e) == "stale_result_replaced")
        .count();
    assert_eq!(
        replaced, 12,
        "each new job replaced the old result in its place"
    );
    assert_eq!(fleet.dead_letters(), vec![]);
    let (code, reduced) = fleet.reduce();
    assert_eq!(code, 0, "{}", reduced["coverage"]);
    assert_eq!(reduced["total"], new_expected["total"]);
    assert_eq!(reduced["partitions"], new_expected["partitions"]);
    assert_eq!(reduced["coverage"]["done"], 12);
    let left: BTreeSet<String> = unexpected(&reduced)
        .into_iter()
        .map(|(id, reason)| {
            assert_eq!(reason, "not in the plan", "{id}");
            id
        })
        .collect();
    let gone: BTreeSet<String> = old_results.difference(&second).cloned().collect();
    assert_eq!(left, gone, "the old results the new plan has no job for");
}

#[test]
fn a_forged_record_count_is_not_counted_and_reduce_names_it() {
    let fleet = Fleet::new("forged");
    gen(&fleet, 2000, 50);
    let planned = fleet.plan(&fleet.data_url(), PER_JOB, &[]);
    assert_eq!(planned.len(), 16);
    let bodies = fleet::drain_bodies(&fleet.queue());
    let mut forged: Value = serde_json::from_str(&bodies[0]).unwrap();
    let forged_id = forged["job_id"].as_str().unwrap().to_string();
    assert!(forged_id.ends_with("#0+250"), "{forged_id}");
    forged["record_count"] = 100.into();
    // The forged message first, then the plan's own: one job at a time, so the forged
    // result is written before the real job finds its place taken.
    let mut all = vec![forged.to_string()];
    all.extend(bodies);
    fleet::enqueue(&fleet.queue(), all);
    run_agent(&fleet, "i-forged", 1);
    assert_eq!(
        fleet.result(&forged_id).unwrap()["job"]["record_count"],
        100,
        "the forged job's result holds the place"
    );

    let (code, reduced) = fleet.reduce();
    assert_ne!(code, 0, "a forged result must not pass: {reduced}");
    assert_eq!(code, 3, "{}", reduced["coverage"]);
    let named = unexpected(&reduced);
    assert_eq!(named.len(), 1, "{named:?}");
    assert_eq!(named[0].0, forged_id);
    assert!(
        named[0]
            .1
            .starts_with("record count mismatch: 100, the plan's is 250"),
        "{}",
        named[0].1
    );
    assert_eq!(reduced["coverage"]["done"], 15);
    assert_eq!(
        reduced["coverage"]["missing"],
        serde_json::json!([forged_id]),
        "the planned job has no result of its own"
    );
}
