//! The fleet end to end on a local moto server (S3, SQS, EC2), with the real binary:
//! a bucket, an SQS queue with a DLQ (redrive, maxReceiveCount 20), four instances
//! launched with RunInstances, one `imds-mock` per instance serving user-data rendered
//! as the Terraform module renders it, `gen` data in S3, `rangefleet plan` to SQS, four
//! agents booting from their IMDS (no --config, no --no-imds) with `--until-empty`,
//! then `rangefleet reduce` from S3.
//!
//! Every drill ends the same way: reduce equals gen's `_expected.json` exactly, with
//! complete coverage (every planned job one result, nothing unexpected). Drills are
//! separate test functions so they run in parallel, each on its own moto.

use std::collections::BTreeMap;
use std::time::Duration;

use rangefleet::contract::summary::InstanceSummary;
use rangefleet::store::Store;
use rangefleet_tests::ec2::{self, run_cli, AgentConfig, AgentOptions, Worker};
use rangefleet_tests::fleet::event;
use rangefleet_tests::moto::Moto;
use rangefleet_tests::proxy::{FaultProxy, Faults};
use rangefleet_tests::TempDir;
use serde_json::Value;

const BUCKET: &str = "trips-data";
/// Bound on one agent's run; a drill takes seconds.
const TIMEOUT: Duration = Duration::from_secs(180);
/// Visibility per lease: a killed agent's jobs come back within seconds.
const LEASE_SECONDS: u64 = 3;

/// One run's world: moto, its bucket and queues, the data, the plan.
struct Run {
    moto: Moto,
    sdk: aws_config::SdkConfig,
    dir: TempDir,
    queue: String,
    dlq: String,
    source: String,
    results: String,
    expected: Value,
    planned: usize,
}

impl Run {
    /// Moto, a bucket, queues, gen data uploaded, and a plan of `processor` jobs of
    /// `per_job` records each.
    async fn new(tag: &str, records: u64, per_job: u64, processor: &str) -> Run {
        let moto = Moto::start().unwrap();
        let sdk = moto.sdk_config().await;
        ec2::create_bucket(&moto, BUCKET).await;
        let (queue, dlq) = ec2::create_queues(&sdk, &format!("{tag}-jobs")).await;
        let dir = TempDir::new(tag);
        let exec = processor == "exec";
        // Every 53rd record bad, except for exec (its script reads every record).
        let records_arg = records.to_string();
        let mut gen_args = vec![
            "--colors",
            "yellow,green",
            "--days",
            "2016-01-01..2016-01-02",
            "--records",
            &records_arg,
        ];
        if !exec {
            gen_args.extend(["--bad-every", "53"]);
        }
        let ec2::Planned {
            data,
            source,
            results,
        } = ec2::gen_upload_plan(
            &moto, BUCKET, &dir.0, &gen_args, &queue, "run-1", processor, per_job,
        )
        .await;
        let expected = rangefleet_tests::fleet::read_json(&data.join("_expected.json"));
        let planned = (2 * 2 * records).div_ceil(per_job) as usize;
        Run {
            moto,
            sdk,
            dir,
            queue,
            dlq,
            source,
            results,
            expected,
            planned,
        }
    }

    /// The agents' config, as the Terraform module would render it.
    fn config(&self, exec: Option<Vec<String>>) -> AgentConfig {
        AgentConfig {
            queue: self.queue.clone(),
            inputs: vec![self.source.clone()],
            results: self.results.clone(),
            concurrency: 2,
            lease_seconds: LEASE_SECONDS,
            tags: BTreeMap::from([
                ("team".to_string(), "data".to_string()),
                ("Name".to_string(), "worker-{instance_id}".to_string()),
            ]),
            poll_seconds: 1,
            exec,
            publish_tags: false,
        }
    }

    /// Launches one instance per entry of `opts` in moto and boots an agent on each.
    async fn start(&self, config: &AgentConfig, opts: &[AgentOptions]) -> Vec<Worker> {
        let ids = ec2::run_instances(&self.sdk, opts.len() as i32, &[("fleet", "trips")]).await;
        let user_data = ec2::render_user_data(&config.to_yaml());
        ids.iter()
            .zip(opts)
            .map(|(id, o)| Worker::start(&self.moto, &self.dir.0, id, &user_data, o))
            .collect()
    }

    /// `rangefleet reduce --json`: exit code and output.
    fn reduce(&self) -> (i32, Value) {
        let (code, out, err) = run_cli(
            &self.moto,
            &["reduce", "--results", &self.results, "--json"],
        );
        let v = serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("reduce (exit {code}) printed no JSON ({e}): {err}"));
        (code, v)
    }

    /// Reduce is complete and equals gen's expected totals, partition by partition.
    fn assert_exact(&self) -> Value {
        let (code, v) = self.reduce();
        let cov = &v["coverage"];
        assert_eq!(code, 0, "coverage incomplete: {cov}");
        assert_eq!(cov["planned"], self.planned, "{cov}");
        assert_eq!(cov["done"], self.planned, "{cov}");
        assert_eq!(cov["missing"], serde_json::json!([]), "{cov}");
        assert_eq!(cov["unexpected"], serde_json::json!([]), "{cov}");
        assert_eq!(v["total"], self.expected["total"], "totals differ");
        assert_eq!(
            v["partitions"], self.expected["partitions"],
            "partitions differ"
        );
        v
    }

    /// `_instances/<id>.json` of each worker, all required.
    async fn summaries(&self, workers: &[&Worker]) -> BTreeMap<String, InstanceSummary> {
        let store = Store::open_with(&self.results, &ec2::s3_settings(&self.moto))
            .await
            .unwrap();
        let mut out = BTreeMap::new();
        for w in workers {
            let key = format!("_instances/{}.json", w.instance_id);
            let body = store
                .get(&key)
                .await
                .unwrap_or_else(|e| panic!("no summary {key}: {e}"));
            let s = InstanceSummary::from_slice(&body).unwrap();
            assert_eq!(s.instance_id, w.instance_id);
            out.insert(w.instance_id.clone(), s);
        }
        out
    }

    /// Queue and DLQ counts from `rangefleet status --json`.
    fn status(&self) -> Value {
        let (code, out, err) = run_cli(&self.moto, &["status", "--queue", &self.queue, "--json"]);
        assert_eq!(code, 0, "status failed: {err}");
        serde_json::from_str::<Value>(&out).unwrap()["queue"].clone()
    }
}

/// A random number of milliseconds in `[lo, hi)` (std's hasher seeds are random).
fn random_ms(lo: u64, hi: u64) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(lo);
    lo + h.finish() % (hi - lo)
}

/// Waits for every worker to exit 0 (blocking, off the async workers).
fn wait_all(workers: &mut [Worker]) {
    tokio::task::block_in_place(|| {
        for w in workers.iter_mut() {
            let status = w.wait(TIMEOUT);
            assert!(
                status.success(),
                "agent {} exited {status}:\n{}",
                w.instance_id,
                w.log_tail()
            );
        }
    });
}

fn sum_done(summaries: &BTreeMap<String, InstanceSummary>) -> u64 {
    summaries.values().map(|s| s.done).sum()
}

/// The base run, with spot interruption notices on two agents at random times: the
/// interrupted ones drain and leave a summary saying so; the others finish the work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_agents_two_spot_notices_exact_and_every_summary_in_s3() {
    // 2 × 2 × 10,000 records, 100 per job: 400 jobs.
    let run = Run::new("spot", 10_000, 100, "taxi-stats").await;
    let notice = |ms: u64| AgentOptions {
        imds_args: vec!["--interrupt-after".into(), format!("{ms}ms")],
        ..Default::default()
    };
    let opts = [
        notice(random_ms(1500, 4000)),
        notice(random_ms(1500, 4000)),
        AgentOptions::default(),
        AgentOptions::default(),
    ];
    let mut workers = run.start(&run.config(None), &opts).await;
    wait_all(&mut workers);
    run.assert_exact();
    let all: Vec<&Worker> = workers.iter().collect();
    let summaries = run.summaries(&all).await;
    for (i, w) in workers.iter().enumerate() {
        let s = &summaries[&w.instance_id];
        if i < 2 {
            let kind = s.interruption.as_ref().map(|i| i.kind.as_str());
            assert_eq!(kind, Some("spot-interruption"), "{s:?}");
            assert!(
                w.events().iter().any(|e| event(e) == "spot_interruption"),
                "{}",
                w.log_tail()
            );
        } else {
            assert!(s.interruption.is_none(), "{s:?}");
        }
        assert_eq!(s.failed, 0, "{s:?}");
    }
    assert_eq!(
        sum_done(&summaries) - summaries.values().map(|s| s.redone).sum::<u64>(),
        run.planned as u64,
        "every job done once across the summaries: {summaries:?}"
    );
    let q = run.status();
    assert_eq!(
        (
            q["visible"].as_u64(),
            q["in_flight"].as_u64(),
            q["dead"].as_u64()
        ),
        (Some(0), Some(0), Some(0))
    );
}

/// SIGKILL of one agent while it holds leases: its jobs come back after one lease
/// (3 s of SQS visibility) and the others do them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkilled_agents_leases_come_back_and_reduce_is_exact() {
    // 2 × 2 × 5,000 records, 50 per job: 400 jobs.
    let run = Run::new("kill", 5_000, 50, "taxi-stats").await;
    let opts = vec![AgentOptions::default(); 4];
    let mut workers = run.start(&run.config(None), &opts).await;
    let mut victim = workers.remove(0);
    let store = Store::open_with(&run.results, &ec2::s3_settings(&run.moto))
        .await
        .unwrap();
    // Freeze the victim mid-job and read its log, which no longer changes: a job it
    // started, did not log done, and has no result yet is leased to it and unfinished.
    // If the freeze caught it between jobs, let it go on and try again.
    let deadline = std::time::Instant::now() + TIMEOUT;
    let held = loop {
        tokio::task::block_in_place(|| {
            victim.wait_for_event(TIMEOUT, |e| event(e) == "job_started");
            victim.freeze();
        });
        let mut held = Vec::new();
        for id in victim.started_not_done() {
            if store
                .head(&rangefleet::contract::job::result_key(&id))
                .await
                .is_err()
            {
                held.push(id);
            }
        }
        if !held.is_empty() {
            victim.kill();
            break held;
        }
        victim.signal(libc::SIGCONT);
        assert!(
            std::time::Instant::now() < deadline,
            "never caught the victim holding an unfinished job"
        );
    };
    wait_all(&mut workers);
    run.assert_exact();
    let survivors: Vec<&Worker> = workers.iter().collect();
    run.summaries(&survivors).await;
    // The jobs it held were done by the survivors once their 3 s leases ran out.
    for id in &held {
        let body = store
            .get(&rangefleet::contract::job::result_key(id))
            .await
            .unwrap();
        let doc: Value = serde_json::from_slice(&body).unwrap();
        let by = doc["instance"]["instance_id"].as_str().unwrap();
        assert_ne!(
            by, victim.instance_id,
            "{id} was finished by the killed agent"
        );
        assert!(doc["attempt"].as_u64().unwrap() >= 2, "{id}: {doc}");
    }
}

/// S3 faults through a proxy in front of moto: 503 SlowDown, bodies cut mid-way,
/// latency on every answer. Retries and body resumption hide all of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_faults_through_a_proxy_are_retried_and_reduce_is_exact() {
    // 2 × 2 × 5,000 records, 100 per job: 200 jobs.
    let run = Run::new("s3faults", 5_000, 100, "taxi-stats").await;
    let proxy = FaultProxy::start(
        &run.moto.endpoint,
        Faults {
            slow_downs: 15,
            cut_gets: 10,
            cut_after: 3_000,
            latency: Duration::from_millis(20),
        },
    )
    .await;
    let s3_via_proxy = AgentOptions {
        env: vec![("AWS_ENDPOINT_URL_S3".into(), proxy.url.clone())],
        ..Default::default()
    };
    let mut workers = run.start(&run.config(None), &vec![s3_via_proxy; 4]).await;
    wait_all(&mut workers);
    run.assert_exact();
    assert_eq!(proxy.slowed(), 15, "every SlowDown was served");
    assert_eq!(proxy.cut(), 10, "every cut was served");
    assert!(proxy.gets() >= run.planned as u64 + 25);
    let all: Vec<&Worker> = workers.iter().collect();
    let summaries = run.summaries(&all).await;
    assert!(summaries.values().all(|s| s.failed == 0), "{summaries:?}");
}

/// IMDS faults at boot (the token PUT fails three times, every answer is slow), and no
/// credential variables at all: the agents take the `worker` role's credentials from
/// their imds-mock, as on EC2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imds_faults_at_boot_and_role_credentials_only_reduce_is_exact() {
    // 2 × 2 × 5,000 records, 100 per job: 200 jobs.
    let run = Run::new("imds", 5_000, 100, "taxi-stats").await;
    let faulty = AgentOptions {
        imds_args: vec![
            "--fail".into(),
            "/latest/api/token=500*3".into(),
            "--latency".into(),
            "300ms".into(),
        ],
        role_credentials_only: true,
        ..Default::default()
    };
    let role_only = AgentOptions {
        role_credentials_only: true,
        ..Default::default()
    };
    let opts = [faulty.clone(), faulty, role_only.clone(), role_only];
    let mut workers = run.start(&run.config(None), &opts).await;
    wait_all(&mut workers);
    run.assert_exact();
    for (i, w) in workers.iter().enumerate() {
        let stats = w.imds.stats().await;
        let creds = stats["GET"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(p, _)| p.starts_with("/latest/meta-data/iam/security-credentials/"))
            .map(|(_, n)| n.as_u64().unwrap())
            .sum::<u64>();
        assert!(
            creds > 0,
            "agent {} never asked IMDS for credentials: {stats}",
            w.instance_id
        );
        if i < 2 {
            assert!(
                stats["PUT"]["/latest/api/token"].as_u64().unwrap() >= 4,
                "three failed token PUTs then one that worked: {stats}"
            );
        }
    }
    let all: Vec<&Worker> = workers.iter().collect();
    let summaries = run.summaries(&all).await;
    assert_eq!(sum_done(&summaries), run.planned as u64, "{summaries:?}");
}

/// Poison jobs sent straight to SQS end in the DLQ with their reasons, bodies unchanged,
/// while every planned job completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_jobs_end_in_the_dlq_with_reasons_while_the_rest_complete() {
    // 2 × 2 × 5,000 records, 100 per job: 200 jobs.
    let run = Run::new("poison", 5_000, 100, "taxi-stats").await;
    let good = serde_json::json!({"v": 1, "job_id": "color=yellow/date=2016-01-01/part-0000.rec#0+10",
        "source": format!("s3://{BUCKET}/trips/color=yellow/date=2016-01-01/part-0000.rec"),
        "record_length": 80, "first_record": 0, "record_count": 10,
        "partition": {"color": "yellow", "date": "2016-01-01"}, "processor": "taxi-stats"});
    let with = |k: &str, v: Value| {
        let mut j = good.clone();
        j[k] = v;
        j.to_string()
    };
    let poison: Vec<(String, &str)> = vec![
        ("{not json".to_string(), "json"),
        (with("v", 2.into()), "version"),
        (with("processor", "sort".into()), "processor"),
        (
            with("source", "s3://other-bucket/trips/x.rec".into()),
            "allowed",
        ),
        (
            with(
                "source",
                format!("s3://{BUCKET}/trips/../secrets/x.rec").into(),
            ),
            "segment",
        ),
        (
            with("source", format!("s3://{BUCKET}/trips/missing.rec").into()),
            "",
        ),
    ];
    let bodies: Vec<String> = poison.iter().map(|(b, _)| b.clone()).collect();
    ec2::send_raw(&run.sdk, &run.queue, &bodies).await;
    let mut workers = run
        .start(&run.config(None), &vec![AgentOptions::default(); 4])
        .await;
    wait_all(&mut workers);
    run.assert_exact();
    let q = run.status();
    assert_eq!(q["dead"], poison.len(), "{q}");
    let dead = ec2::drain_dead_letters(&run.sdk, &run.dlq).await;
    let mut got: Vec<&str> = dead.iter().map(|(b, _)| b.as_str()).collect();
    got.sort();
    let mut want: Vec<&str> = bodies.iter().map(String::as_str).collect();
    want.sort();
    assert_eq!(got, want, "bodies unchanged in the DLQ");
    for (body, hint) in &poison {
        let reason = &dead.iter().find(|(b, _)| b == body).unwrap().1;
        assert!(!reason.is_empty(), "no reason for {body}");
        assert!(
            reason.to_lowercase().contains(hint),
            "reason {reason:?} for {body} does not mention {hint:?}"
        );
    }
    let all: Vec<&Worker> = workers.iter().collect();
    let summaries = run.summaries(&all).await;
    let failed: u64 = summaries.values().map(|s| s.failed).sum();
    assert_eq!(failed, poison.len() as u64, "{summaries:?}");
}

/// Counts the records on stdin (80 bytes each) and checks they are whole.
const EXEC_SCRIPT: &str = r#"
import json, sys
data = sys.stdin.buffer.read()
assert len(data) % 80 == 0, len(data)
print(json.dumps({"records": len(data) // 80, "newlines": data.count(b"\n")}))
"#;

/// The `exec` processor over S3 data: a small Python script per job; reduce lists the
/// outputs by job id, and they add up to every record gen wrote.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_processor_runs_a_python_script_over_s3_data() {
    // 2 × 2 × 2,000 records, 80 per job: 100 jobs.
    let run = Run::new("exec", 2_000, 80, "exec").await;
    let script = run.dir.0.join("count.py");
    std::fs::write(&script, EXEC_SCRIPT).unwrap();
    let config = run.config(Some(vec![
        "/usr/bin/python3".into(),
        script.display().to_string(),
    ]));
    let mut workers = run.start(&config, &vec![AgentOptions::default(); 4]).await;
    wait_all(&mut workers);
    let (code, v) = run.reduce();
    let cov = &v["coverage"];
    assert_eq!(code, 0, "{cov}");
    assert_eq!(cov["done"], run.planned, "{cov}");
    let outputs = v["total"].as_object().expect("exec outputs by job id");
    assert_eq!(outputs.len(), run.planned);
    let records: u64 = outputs
        .values()
        .map(|o| o["records"].as_u64().unwrap())
        .sum();
    let newlines: u64 = outputs
        .values()
        .map(|o| o["newlines"].as_u64().unwrap())
        .sum();
    let gen_records = 2 * 2 * 2_000;
    assert_eq!(records, gen_records);
    assert_eq!(newlines, gen_records);
    assert_eq!(
        run.expected["total"]["records"].as_u64().unwrap()
            + run.expected["total"]["bad_records"].as_u64().unwrap(),
        gen_records
    );
}
