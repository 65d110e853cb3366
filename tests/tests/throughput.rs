//! The agent at its sized width against the network model (tests/src/netmodel.rs) in
//! front of nginx, with the model answering every fifth GET `503 SlowDown`: the GET
//! window narrows (the `get_window_narrowed` event, the summary's count), the throttled
//! parts are retried by the agent, the answer is exact, and no job is dead-lettered.

use std::time::Duration;

use rangefleet_tests::fleet::{drain_bodies, enqueue, event, Fleet, Gen};
use rangefleet_tests::netmodel::{Model, NetModel};
use rangefleet_tests::nginx::Nginx;
use serde_json::Value;

/// 2 colours × 2 days × 100,000 records of 80 bytes: 32 MB.
const RECORDS: u64 = 100_000;
/// 4 jobs a partition of 2 MB each: 16 jobs, one part each.
const PER_JOB: u64 = 25_000;
/// Bound on the run, far above what it takes.
const TIMEOUT: Duration = Duration::from_secs(120);

/// The ETag nginx gives a file (`"<mtime hex>-<size hex>"`).
fn nginx_etag(path: &std::path::Path) -> String {
    let meta = std::fs::metadata(path).expect("the planned file");
    let mtime = meta
        .modified()
        .expect("mtime")
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    format!("\"{mtime:x}-{:x}\"", meta.len())
}

/// Points every queued job at the same file over `http_base` (nginx through the model),
/// with the ETag nginx gives the file, so If-Match holds; and the plan's manifest with
/// them, so reduce checks the results against what the jobs read.
fn jobs_over_http(fleet: &Fleet, http_base: &str) {
    let manifest_path = fleet.out.join("_plan.json");
    let mut manifest: Value =
        serde_json::from_slice(&std::fs::read(&manifest_path).expect("the plan's manifest"))
            .expect("manifest JSON");
    let file_base = fleet.data_url();
    let prefix = manifest["prefix"].as_str().expect("a prefix").to_string();
    let rel_prefix = prefix
        .strip_prefix(&file_base)
        .expect("planned under the data folder")
        .to_string();
    manifest["prefix"] = format!("{http_base}/{rel_prefix}").into();
    for object in manifest["objects"].as_array_mut().expect("objects") {
        let key = object["key"].as_str().expect("a key").to_string();
        object["etag"] = nginx_etag(&fleet.data.join(format!("{rel_prefix}{key}"))).into();
    }
    std::fs::write(&manifest_path, manifest.to_string()).expect("write the manifest");
    let queue = fleet.queue();
    let bodies = drain_bodies(&queue)
        .into_iter()
        .map(|body| {
            let mut job: Value = serde_json::from_str(&body).expect("job JSON");
            let source = job["source"].as_str().expect("a source").to_string();
            let rel = source
                .strip_prefix(&file_base)
                .expect("planned under the data folder");
            job["etag"] = nginx_etag(&fleet.data.join(rel)).into();
            job["source"] = format!("{http_base}/{rel}").into();
            job.to_string()
        })
        .collect();
    enqueue(&queue, bodies);
}

#[test]
fn slow_down_on_a_fifth_of_gets_narrows_the_window_and_the_answer_stays_exact() {
    let fleet = Fleet::new("throughput");
    fleet.gen(&Gen {
        colors: "yellow,green".into(),
        days: "2016-01-01..2016-01-02".into(),
        records: RECORDS,
        bad_every: 41,
    });
    let planned = fleet.plan(&fleet.data_url(), PER_JOB, &[]);
    assert_eq!(planned.len(), 16);

    let nginx = Nginx::start(&fleet.data).expect("nginx");
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    let model = Model {
        first_byte: Duration::from_millis(5),
        per_connection: 50e6,
        instance: 400e6,
        slow_down_every: 5,
        bucket: Duration::from_millis(100),
    };
    let model = rt.block_on(NetModel::start(&nginx.url, model));
    jobs_over_http(&fleet, &model.url);

    // No concurrency, no throughput setting: the agent sizes itself (no IMDS: the
    // 10 Gbit/s default, 24 GETs).
    let config = fleet.dir.0.join("agent.yaml");
    std::fs::write(
        &config,
        format!(
            "queue: {}\ninputs: [\"{}/\"]\nresults: {}\nlease_seconds: 60\n",
            fleet.queue_url(),
            model.url,
            fleet.results_url()
        ),
    )
    .expect("write the config");
    let mut agent = fleet.agent(&config, "i-throttled", true, &[]);
    let status = agent.wait(TIMEOUT);
    assert!(
        status.success(),
        "the agent exited with {status}; its log:\n{}",
        agent.log_tail()
    );

    let events = agent.events();
    let ready = events
        .iter()
        .find(|e| event(e) == "agent_ready")
        .expect("agent_ready");
    assert_eq!(ready["fields"]["source"], "default");
    assert_eq!(ready["fields"]["gets_in_flight"], 24);
    let narrowed: Vec<&Value> = events
        .iter()
        .filter(|e| event(e) == "get_window_narrowed")
        .collect();
    assert!(
        !narrowed.is_empty(),
        "the window never narrowed; the log:\n{}",
        agent.log_tail()
    );
    for e in &narrowed {
        let (gets, previous) = (&e["fields"]["gets"], &e["fields"]["previous"]);
        assert!(
            gets.as_u64() < previous.as_u64(),
            "a narrowing narrows: {e}"
        );
    }
    let slowed = model.stats.slowed.load(std::sync::atomic::Ordering::SeqCst);
    assert!(slowed > 0, "the model throttled no GET");

    let summary = fleet
        .instance_summary("i-throttled")
        .expect("the instance summary");
    let throughput = summary
        .throughput
        .as_ref()
        .expect("the summary's throughput");
    assert_eq!(throughput.source, "default", "{summary:?}");
    assert_eq!(
        throughput.window.throttled, slowed,
        "every 503 reached the agent"
    );
    assert!(throughput.window.narrowed >= 1, "{summary:?}");
    assert_eq!(summary.failed, 0, "{summary:?}");

    assert!(fleet.dead_letters().is_empty(), "no job is dead-lettered");
    let (code, reduced) = fleet.reduce();
    assert_eq!(code, 0, "reduce: {reduced}");
    let expected = fleet.expected();
    assert_eq!(reduced["partitions"], expected["partitions"]);
    assert_eq!(reduced["total"], expected["total"]);
    assert_eq!(reduced["coverage"]["done"], 16);
}
