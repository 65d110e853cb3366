//! Opt-in per-instance tag publishing (docs/architecture.md) against moto's EC2: each agent tags its
//! own instance once, in the background; with an EC2 endpoint that answers
//! `RequestLimitExceeded` to the first calls, the agents back off, every tag still
//! arrives, and every job is done.

use std::collections::BTreeMap;
use std::time::Duration;

use rangefleet_tests::ec2::{self, run_cli, AgentConfig, AgentOptions, ThrottleProxy, Worker};
use rangefleet_tests::fleet::{event, read_json};
use rangefleet_tests::moto::Moto;
use rangefleet_tests::TempDir;
use serde_json::Value;

const BUCKET: &str = "tags-data";
const TIMEOUT: Duration = Duration::from_secs(180);
/// 2 × 2 × 4,000 records, 100 per job: 160 jobs, a few seconds of work for 3 agents.
const RECORDS: u64 = 4_000;
const PER_JOB: u64 = 100;
const AGENTS: usize = 3;

struct World {
    moto: Moto,
    sdk: aws_config::SdkConfig,
    dir: TempDir,
    config: AgentConfig,
    results: String,
    expected: Value,
}

async fn world(tag: &str) -> World {
    let moto = Moto::start().unwrap();
    let sdk = moto.sdk_config().await;
    ec2::create_bucket(&moto, BUCKET).await;
    let (queue, _dlq) = ec2::create_queues(&sdk, &format!("{tag}-jobs")).await;
    let dir = TempDir::new(tag);
    let records = RECORDS.to_string();
    let gen_args = [
        "--colors",
        "yellow,green",
        "--days",
        "2016-01-01..2016-01-02",
        "--records",
        &records,
    ];
    let ec2::Planned {
        data,
        source,
        results,
    } = ec2::gen_upload_plan(
        &moto,
        BUCKET,
        &dir.0,
        &gen_args,
        &queue,
        tag,
        "taxi-stats",
        PER_JOB,
    )
    .await;
    let config = AgentConfig {
        queue,
        inputs: vec![source],
        results: results.clone(),
        concurrency: 2,
        lease_seconds: 10,
        tags: BTreeMap::from([
            ("team".to_string(), "data".to_string()),
            ("Name".to_string(), "worker-{instance_id}".to_string()),
        ]),
        poll_seconds: 1,
        exec: None,
        publish_tags: true,
    };
    World {
        expected: read_json(&data.join("_expected.json")),
        moto,
        sdk,
        dir,
        config,
        results,
    }
}

impl World {
    async fn start(&self, env: Vec<(String, String)>) -> Vec<Worker> {
        // The launch template sets the plain tags at launch; only Name is per instance.
        let ids = ec2::run_instances(
            &self.sdk,
            AGENTS as i32,
            &[("fleet", "trips"), ("team", "data")],
        )
        .await;
        let user_data = ec2::render_user_data(&self.config.to_yaml());
        let opts = AgentOptions {
            env,
            ..Default::default()
        };
        ids.iter()
            .map(|id| Worker::start(&self.moto, &self.dir.0, id, &user_data, &opts))
            .collect()
    }

    /// Every agent exits 0, having logged that its tags are published; reduce is exact.
    fn finish(&self, workers: &mut [Worker]) {
        tokio::task::block_in_place(|| {
            for w in workers.iter_mut() {
                let status = w.wait(TIMEOUT);
                assert!(status.success(), "{}", w.log_tail());
                assert!(
                    w.events()
                        .iter()
                        .any(|e| event(e) == "instance_tags_published"),
                    "agent {} did not publish its tags:\n{}",
                    w.instance_id,
                    w.log_tail()
                );
            }
        });
        let (code, out, err) = run_cli(
            &self.moto,
            &["reduce", "--results", &self.results, "--json"],
        );
        assert_eq!(code, 0, "reduce: {err}\n{out}");
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["total"], self.expected["total"]);
        assert_eq!(v["coverage"]["missing"], serde_json::json!([]));
    }

    /// Each instance carries its own Name (published) and its launch tags.
    async fn assert_tags(&self, workers: &[Worker]) {
        for w in workers {
            let tags = ec2::instance_tags(&self.sdk, &w.instance_id).await;
            let want: BTreeMap<String, String> = [
                ("Name", format!("worker-{}", w.instance_id)),
                ("team", "data".to_string()),
                ("fleet", "trips".to_string()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
            assert_eq!(tags, want, "tags of {}", w.instance_id);
        }
    }
}

/// The attempts an agent logged with "instance tags published".
fn attempts(w: &Worker) -> u64 {
    w.events()
        .iter()
        .find(|e| event(e) == "instance_tags_published")
        .and_then(|e| e["fields"]["attempts"].as_u64())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_agent_tags_its_own_instance() {
    let w = world("tags").await;
    let mut workers = w
        .start(vec![("RANGEFLEET_PUBLISH_JITTER_MS".into(), "300".into())])
        .await;
    w.finish(&mut workers);
    w.assert_tags(&workers).await;
    assert!(workers.iter().all(|x| attempts(x) == 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_create_tags_backs_off_and_every_tag_arrives() {
    const THROTTLED: u64 = 7;
    let w = world("throttled").await;
    let proxy = ThrottleProxy::start(&w.moto.endpoint, "CreateTags", THROTTLED).await;
    let mut workers = w
        .start(vec![
            ("RANGEFLEET_PUBLISH_JITTER_MS".into(), "100".into()),
            ("AWS_ENDPOINT_URL_EC2".into(), proxy.url.clone()),
        ])
        .await;
    w.finish(&mut workers);
    w.assert_tags(&workers).await;
    use std::sync::atomic::Ordering;
    assert_eq!(proxy.throttled.load(Ordering::SeqCst), THROTTLED);
    assert_eq!(
        proxy.passed.load(Ordering::SeqCst),
        AGENTS as u64,
        "one successful CreateTags per agent"
    );
    let total: u64 = workers.iter().map(attempts).sum();
    assert_eq!(total, THROTTLED + AGENTS as u64, "attempts add up");
}
