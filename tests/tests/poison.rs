//! Poison messages among good jobs: each is dead-lettered at its first receive with a
//! reason that names the problem, every good job is done, reduce is exact, and the
//! agent keeps going to the end and exits 0.

use std::time::Duration;

use rangefleet::store::Store;
use rangefleet_tests::fleet::{self, block_on, Fleet, Gen};
use serde_json::Value;

const TIMEOUT: Duration = Duration::from_secs(60);

#[test]
fn poison_jobs_are_dead_lettered_with_their_reason_and_good_jobs_complete() {
    let fleet = Fleet::new("poison");
    fleet.gen(&Gen {
        colors: "yellow,green".into(),
        days: "2016-01-01..2016-01-01".into(),
        records: 2000,
        bad_every: 50,
    });
    let data = fleet.data_url();

    // An object planned and then rewritten. It sits under `_late/`, which the main plan
    // skips (names starting with `_` are not data) but the allow-list admits.
    let late = fleet.data.join("_late/part-0000.rec");
    std::fs::create_dir_all(late.parent().unwrap()).unwrap();
    std::fs::copy(
        fleet
            .data
            .join("color=yellow/date=2016-01-01/part-0000.rec"),
        &late,
    )
    .unwrap();
    let aux = fleet.dir.0.join("aux.db");
    fleet::plan_into(
        &format!("file://{}", late.display()),
        &format!("sqlite://{}", aux.display()),
        &fleet::dir_url(&fleet.dir.0.join("aux-out")),
        500,
        &[],
    );
    let aux_queue = rangefleet::queue::sqlite::SqliteQueue::open(&aux).unwrap();
    let real = fleet::drain_bodies(&aux_queue);
    assert_eq!(real.len(), 4, "2000 records of the late object, 500 a job");
    let job: Value = serde_json::from_str(&real[0]).unwrap();
    let planned_etag = job["etag"]
        .as_str()
        .expect("the plan records an ETag")
        .to_string();
    rewrite_same_size(&late);
    let now_etag = block_on(async {
        let store = Store::open(&data).await.unwrap();
        store.head("_late/part-0000.rec").await.unwrap().etag
    });
    assert_ne!(
        now_etag.as_deref(),
        Some(planned_etag.as_str()),
        "the rewrite must change the file's ETag (inode, mtime, size)"
    );

    let with = |field: &str, value: Value| -> String {
        let mut j = job.clone();
        j[field] = value;
        j.to_string()
    };
    let data_path = fleet.data.display().to_string();
    let poisons: Vec<(String, &str)> = vec![
        ("{\"v\": 1, \"job_id\": ".to_string(), "not JSON"),
        (
            with("processor", "no-such-processor".into()),
            "unknown processor",
        ),
        (with("v", 2.into()), "newer than"),
        (
            with("source", "file:///etc/passwd".into()),
            "not under an allowed input",
        ),
        (
            with(
                "source",
                format!("file://{data_path}/../../etc/passwd").into(),
            ),
            ". or ..",
        ),
        (
            with("source", "s3://bucket/trips-old/x".into()),
            "not under an allowed input",
        ),
        (
            with("source", "http://169.254.169.254/latest/meta-data/".into()),
            "not under an allowed input",
        ),
        (
            with(
                "source",
                format!("file://{data_path}/color=yellow/date=2016-01-01/part-9999.rec").into(),
            ),
            "no such object",
        ),
        (real[0].clone(), "changed since the plan"),
        (
            with("job_id", "_late/part-0000.rec\u{0}#0+500".into()),
            "NUL",
        ),
        (
            with(
                "job_id",
                format!("_late/{}.rec#0+500", "x".repeat(300)).into(),
            ),
            "result key too long",
        ),
    ];

    // Poison first, so the agent meets it before any good job and must carry on.
    fleet::enqueue(
        &fleet.queue(),
        poisons.iter().map(|(b, _)| b.clone()).collect(),
    );
    let planned = fleet.plan(&data, 500, &[]);
    assert_eq!(planned.len(), 8, "2 partitions × 2000 records, 500 a job");

    let config = fleet.config("agent", &[data.clone(), "s3://bucket/trips/".into()], 2, 30);
    let mut agent = fleet.agent(&config, "i-poison", true, &[]);
    let status = agent.wait(TIMEOUT);
    assert!(
        status.success(),
        "the agent exited with {status}; the end of its log:\n{}",
        agent.log_tail()
    );

    let dead = fleet.dead_letters();
    for (body, want) in &poisons {
        let (_, reason, receives) = dead
            .iter()
            .find(|(b, _, _)| b == body)
            .unwrap_or_else(|| panic!("not dead-lettered: {body}\ndead letters: {dead:#?}"));
        assert!(
            reason.contains(want),
            "the reason for {body} should say {want:?}: {reason}"
        );
        assert_eq!(*receives, 1, "{body}: dead-lettered at its first receive");
    }
    assert_eq!(dead.len(), poisons.len(), "only the poison: {dead:#?}");

    let (code, reduced) = fleet.reduce();
    assert_eq!(code, 0, "reduce: {reduced}");
    let expected = fleet.expected();
    assert_eq!(reduced["total"], expected["total"]);
    assert_eq!(reduced["partitions"], expected["partitions"]);
    let coverage = &reduced["coverage"];
    assert_eq!(coverage["done"], 8, "{coverage}");
    assert_eq!(coverage["missing"], serde_json::json!([]), "{coverage}");
    assert_eq!(coverage["unexpected"], serde_json::json!([]), "{coverage}");

    let summary = fleet
        .instance_summary("i-poison")
        .expect("instance summary");
    assert_eq!(summary.done, 8, "{summary:?}");
    assert_eq!(summary.failed, poisons.len() as u64, "{summary:?}");
    let stats = fleet.stats();
    assert_eq!((stats.visible, stats.in_flight), (0, 0));
}

/// Rewrites `path` in place with different bytes of the same size (its records in
/// reverse order), and moves its mtime on, so nothing but the content and the time
/// differ from what the plan saw.
fn rewrite_same_size(path: &std::path::Path) {
    let before = std::fs::read(path).unwrap();
    let mtime = std::fs::metadata(path).unwrap().modified().unwrap();
    let after: Vec<u8> = before
        .chunks(rangefleet::process::taxi::record::RECORD_LENGTH)
        .rev()
        .flatten()
        .copied()
        .collect();
    assert_eq!(after.len(), before.len());
    assert_ne!(after, before);
    let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    std::io::Write::write_all(&mut &file, &after).unwrap();
    // Same second and same microsecond are possible on a fast machine: be explicit.
    file.set_modified(mtime + Duration::from_secs(10)).unwrap();
}
