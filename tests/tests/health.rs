//! A dead agent leaves service and says why; a drained agent lets its group go on; a
//! transient fault does neither. Real agent processes booting from `imds-mock`, an
//! auto-scaling group on moto, and a recording proxy in front of moto's Auto Scaling
//! (`AWS_ENDPOINT_URL_AUTO_SCALING`) that answers CompleteLifecycleAction itself (moto
//! does not implement it). Queue and results are local (SQLite, files): only the
//! Auto Scaling calls go to moto.

use std::collections::BTreeMap;
use std::time::Duration;

use rangefleet_tests::asg;
use rangefleet_tests::fleet::{event, Fleet, Gen};
use rangefleet_tests::moto::Moto;
use rangefleet_tests::proxy::{RecordingProxy, COMPLETE_LIFECYCLE_ACTION_OK};
use rangefleet_tests::{rangefleet, ImdsMock};
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(60);
const GROUP: &str = "fleet-asg";

struct World {
    moto: Moto,
    sdk: aws_config::SdkConfig,
    proxy: RecordingProxy,
    instance_id: String,
    fleet: Fleet,
}

async fn world(tag: &str) -> World {
    let moto = Moto::start().expect("start moto");
    let sdk = moto.sdk_config().await;
    let ids = asg::create_group(&sdk, GROUP, 1).await;
    let proxy = RecordingProxy::start(
        &moto.endpoint,
        &[("CompleteLifecycleAction", COMPLETE_LIFECYCLE_ACTION_OK)],
    )
    .await;
    World {
        instance_id: ids[0].clone(),
        moto,
        sdk,
        proxy,
        fleet: Fleet::new(tag),
    }
}

impl World {
    /// moto's credentials and region; Auto Scaling through the recording proxy.
    fn env(&self) -> Vec<(String, String)> {
        let mut env = self.moto.aws_env();
        env.push((
            "AWS_ENDPOINT_URL_AUTO_SCALING".into(),
            self.proxy.url.clone(),
        ));
        env
    }

    fn imds(&self, userdata: &std::path::Path, extra: &[&str]) -> ImdsMock {
        let mut args = vec![
            "--userdata",
            userdata.to_str().unwrap(),
            "--instance-id",
            &self.instance_id,
        ];
        args.extend_from_slice(extra);
        ImdsMock::start(&args)
    }

    fn gen_and_plan(&self, records: u64, per_job: u64) -> usize {
        self.fleet.gen(&Gen {
            colors: "yellow".into(),
            days: "2016-01-01".into(),
            records,
            bad_every: 499,
        });
        self.fleet.plan(&self.fleet.data_url(), per_job, &[]).len()
    }

    fn actions(&self) -> Vec<String> {
        self.proxy.calls().into_iter().map(|c| c.action).collect()
    }
}

fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_config_marks_the_instance_unhealthy_and_the_summary_says_why() {
    let w = world("health-config").await;
    w.gen_and_plan(1_000, 100);
    // concurrency must be 1..=1024: the config does not validate (exit 2).
    let ud = w
        .fleet
        .userdata("bad", &[w.fleet.data_url()], "concurrency: 0\n");
    let mock = w.imds(&ud, &[]);
    let mut agent = w
        .fleet
        .agent_imds(&mock.url, &w.instance_id, false, &w.env());
    let status = agent.wait(LIMIT);
    assert_eq!(status.code(), Some(2), "{}", agent.log_tail());

    // The group has it Unhealthy, asked with the grace period ignored.
    assert_eq!(
        asg::health(&w.sdk, &w.instance_id).await,
        (GROUP.to_string(), "UNHEALTHY".to_string())
    );
    let set = w.proxy.calls_of("SetInstanceHealth");
    assert_eq!(set.len(), 1, "{:?}", w.proxy.calls());
    assert_eq!(
        set[0].params,
        params(&[
            ("InstanceId", &w.instance_id),
            ("HealthStatus", "Unhealthy"),
            ("ShouldRespectGracePeriod", "false"),
        ])
    );
    assert_eq!(
        w.actions(),
        ["DescribeAutoScalingInstances", "SetInstanceHealth"],
        "the group is found from the instance id, then the instance is marked"
    );
    assert!(agent
        .events()
        .iter()
        .any(|e| event(e) == "instance_marked_unhealthy"));

    // The reason is in the summary (the results prefix read from the invalid config).
    let summary = w
        .fleet
        .instance_summary(&w.instance_id)
        .expect("a summary with the failure");
    let failure = summary.failure.as_ref().expect("a failure");
    assert_eq!(failure.kind, "config", "{summary:#?}");
    let reason = failure.reason.as_str();
    assert!(
        reason.contains("concurrency") && reason.contains("expected 1..=1024"),
        "{reason}"
    );
    assert!(
        reason.contains("rangefleet userdata check"),
        "says what to do: {reason}"
    );

    // `status --results` lists it with the reason.
    let results = w.fleet.results_url();
    let out = rangefleet()
        .args([
            "status",
            "--queue",
            &w.fleet.queue_url(),
            "--results",
            &results,
            "--json",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let failed = v["failed_instances"].as_array().expect("failed_instances");
    assert_eq!(failed.len(), 1, "{v:#}");
    assert_eq!(failed[0]["instance_id"], w.instance_id.as_str());
    assert_eq!(failed[0]["kind"], "config");
    assert_eq!(failed[0]["reason"], reason);
    let out = rangefleet()
        .args([
            "status",
            "--queue",
            &w.fleet.queue_url(),
            "--results",
            &results,
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("failed instances: 1"), "{text}");
    assert!(text.contains(&w.instance_id), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_the_group_started_completes_the_lifecycle_action_after_the_summary() {
    let w = world("health-drain").await;
    w.gen_and_plan(20_000, 20);
    let ud = w.fleet.userdata(
        "asg",
        &[w.fleet.data_url()],
        "concurrency: 1\nlease_seconds: 30\nspot: {poll_seconds: 1}\n",
    );
    let mock = w.imds(&ud, &["--asg-terminate-after", "1500ms"]);
    let mut agent = w
        .fleet
        .agent_imds(&mock.url, &w.instance_id, false, &w.env());
    let status = agent.wait(LIMIT);
    assert!(status.success(), "{status}\n{}", agent.log_tail());

    let summary = w.fleet.instance_summary(&w.instance_id).expect("summary");
    assert_eq!(
        summary.interruption.as_ref().unwrap().kind,
        "asg-termination"
    );
    assert!(summary.failure.is_none(), "{summary:#?}");

    let completed = w.proxy.calls_of("CompleteLifecycleAction");
    assert_eq!(completed.len(), 1, "{:?}", w.proxy.calls());
    assert_eq!(
        completed[0].params,
        params(&[
            ("AutoScalingGroupName", GROUP),
            ("LifecycleHookName", "rangefleet-drain"),
            ("InstanceId", &w.instance_id),
            ("LifecycleActionResult", "CONTINUE"),
        ])
    );
    let described = w.proxy.calls_of("DescribeAutoScalingInstances");
    assert_eq!(
        described[0].params.get("InstanceIds.member.1"),
        Some(&w.instance_id)
    );
    assert!(w.proxy.calls_of("SetInstanceHealth").is_empty());
    // After the summary: the completion is logged after agent_stopped's summary write
    // and before the exit.
    let events: Vec<String> = agent
        .events()
        .iter()
        .map(|e| event(e).to_string())
        .collect();
    let done = events
        .iter()
        .position(|e| e == "lifecycle_action_completed")
        .expect("completion logged");
    let stopped = events.iter().position(|e| e == "agent_stopped").unwrap();
    assert!(done < stopped, "{events:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transient_imds_outage_at_boot_marks_nothing() {
    let w = world("health-transient").await;
    w.gen_and_plan(1_000, 100);
    let ud = w
        .fleet
        .userdata("ok", &[w.fleet.data_url()], "concurrency: 2\n");

    // Short: the first token requests are dropped and instance-id answers 503 a few
    // times; boot retries and the agent works.
    let mock = w.imds(
        &ud,
        &[
            "--drop",
            "/latest/api/token*2",
            "--fail",
            "/latest/meta-data/instance-id=503*3",
        ],
    );
    let mut agent = w
        .fleet
        .agent_imds(&mock.url, &w.instance_id, true, &w.env());
    let status = agent.wait(LIMIT);
    assert!(status.success(), "{status}\n{}", agent.log_tail());
    let summary = w.fleet.instance_summary(&w.instance_id).expect("summary");
    assert!(summary.failure.is_none(), "{summary:#?}");
    assert!(summary.done > 0);

    // Long: IMDS never answers within the boot deadline: exit 75 (systemd restarts).
    let dead = w.imds(&ud, &["--drop", "/latest/api/token*100000"]);
    let mut env = w.env();
    env.push(("RANGEFLEET_BOOT_DEADLINE".into(), "2s".into()));
    let mut agent = w.fleet.agent_imds(&dead.url, &w.instance_id, true, &env);
    let status = agent.wait(LIMIT);
    assert_eq!(status.code(), Some(75), "{}", agent.log_tail());

    assert!(
        w.actions().is_empty(),
        "no Auto Scaling call at all: {:?}",
        w.proxy.calls()
    );
    assert_eq!(
        asg::health(&w.sdk, &w.instance_id).await,
        (GROUP.to_string(), "HEALTHY".to_string())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_on_failure_handler_marks_keeps_the_agents_reason_and_completes_the_hook() {
    let w = world("health-onfailure").await;
    w.gen_and_plan(1_000, 100);
    let ud = w.fleet.userdata("ok", &[w.fleet.data_url()], "");
    // The agent's own reason is already there (it gave up first).
    let summaries = w.fleet.out.join("_instances");
    std::fs::create_dir_all(&summaries).unwrap();
    let earlier = serde_json::json!({"v": 1, "instance_id": w.instance_id,
        "failure": {"kind": "config", "reason": "the agent's own reason"}});
    std::fs::write(
        summaries.join(format!("{}.json", w.instance_id)),
        earlier.to_string(),
    )
    .unwrap();
    // The group starts terminating the instance once it is marked.
    let mock = w.imds(&ud, &["--asg-terminate-after", "2s"]);
    let out = rangefleet()
        .args(["health", "mark-unhealthy", "--log-format", "json"])
        .env_remove("AWS_EC2_METADATA_DISABLED")
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", &mock.url)
        .env("MONITOR_SERVICE_RESULT", "start-limit-hit")
        .envs(w.env())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        w.actions(),
        [
            "DescribeAutoScalingInstances",
            "SetInstanceHealth",
            "DescribeAutoScalingInstances",
            "CompleteLifecycleAction"
        ]
    );
    assert_eq!(
        asg::health(&w.sdk, &w.instance_id).await.1,
        "UNHEALTHY".to_string()
    );
    let summary = w.fleet.instance_summary(&w.instance_id).unwrap();
    assert_eq!(summary.failure.unwrap().reason, "the agent's own reason");

    // The group cannot be told (nothing listens there): the power-off fallback runs.
    let marker = w.fleet.out.join("powered-off");
    let script = w.fleet.out.join("power-off.sh");
    std::fs::write(
        &script,
        format!("#!/bin/sh\necho \"$@\" > {}\n", marker.display()),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let port = rangefleet_tests::free_port();
    let out = rangefleet()
        .args(["health", "mark-unhealthy", "--complete-hook-within", "0s"])
        .env_remove("AWS_EC2_METADATA_DISABLED")
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", &mock.url)
        .env("MONITOR_SERVICE_RESULT", "start-limit-hit")
        .envs(w.env())
        .env(
            "AWS_ENDPOINT_URL_AUTO_SCALING",
            format!("http://127.0.0.1:{port}"),
        )
        .env(
            "RANGEFLEET_POWER_OFF_COMMAND",
            format!("{} now", script.display()),
        )
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        std::fs::read_to_string(&marker).unwrap().trim(),
        "now",
        "the power-off command ran"
    );
}
