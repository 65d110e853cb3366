//! A fleet as EC2 runs it, on a local moto server: a bucket, an SQS queue with a DLQ,
//! instances launched with RunInstances (so their ids exist for EC2 calls), one
//! `imds-mock` per instance serving user-data in the shape the Terraform module
//! renders, and agent processes booting from them. Also a small EC2 proxy that answers
//! `RequestLimitExceeded` to the first N calls of an action, as an account's CreateTags
//! bucket does when a fleet boots together.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::path::{Path, PathBuf};

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use aws_sdk_ec2::types::{Filter, ResourceType, Tag, TagSpecification};
use aws_sdk_sqs::types::QueueAttributeName;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use rangefleet::store::{S3Settings, Store};

use crate::fleet::AgentProc;
use crate::moto::Moto;
use crate::proxy;
use crate::{rangefleet, ImdsMock};

/// Creates bucket `name` on moto (an unsigned PUT: moto does not check signatures).
pub async fn create_bucket(moto: &Moto, name: &str) {
    let resp = reqwest::Client::new()
        .put(format!("{}/{name}", moto.endpoint))
        .send()
        .await
        .expect("PUT bucket");
    assert!(
        resp.status().is_success(),
        "create bucket {name}: {}",
        resp.status()
    );
}

/// Creates queue `name` and `name-dlq`, the first with a RedrivePolicy to the second
/// (maxReceiveCount 20, as the Terraform module sets it); returns (queue URL, DLQ URL).
pub async fn create_queues(sdk: &aws_config::SdkConfig, name: &str) -> (String, String) {
    let client = aws_sdk_sqs::Client::new(sdk);
    let dlq = client
        .create_queue()
        .queue_name(format!("{name}-dlq"))
        .send()
        .await
        .expect("create the DLQ")
        .queue_url()
        .expect("DLQ URL")
        .to_string();
    let attrs = client
        .get_queue_attributes()
        .queue_url(&dlq)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("DLQ attributes");
    let arn = attrs.attributes().expect("attributes")[&QueueAttributeName::QueueArn].clone();
    let policy =
        serde_json::json!({"deadLetterTargetArn": arn, "maxReceiveCount": "20"}).to_string();
    let url = client
        .create_queue()
        .queue_name(name)
        .attributes(QueueAttributeName::RedrivePolicy, policy)
        .send()
        .await
        .expect("create the queue")
        .queue_url()
        .expect("queue URL")
        .to_string();
    (url, dlq)
}

/// Every message in a DLQ as (body, `rangefleet.reason`), taken out (deleted).
pub async fn drain_dead_letters(sdk: &aws_config::SdkConfig, dlq: &str) -> Vec<(String, String)> {
    let client = aws_sdk_sqs::Client::new(sdk);
    let mut out = Vec::new();
    loop {
        let r = client
            .receive_message()
            .queue_url(dlq)
            .max_number_of_messages(10)
            .message_attribute_names("All")
            .visibility_timeout(60)
            .send()
            .await
            .expect("receive from the DLQ");
        let msgs = r.messages();
        if msgs.is_empty() {
            out.sort();
            return out;
        }
        for m in msgs {
            let reason = m
                .message_attributes()
                .and_then(|a| a.get(rangefleet::queue::sqs::REASON_ATTRIBUTE))
                .and_then(|v| v.string_value())
                .unwrap_or_default()
                .to_string();
            out.push((m.body().unwrap_or_default().to_string(), reason));
            client
                .delete_message()
                .queue_url(dlq)
                .receipt_handle(m.receipt_handle().unwrap_or_default())
                .send()
                .await
                .expect("delete from the DLQ");
        }
    }
}

/// Sends `bodies` to a queue as they are (poison jobs, say).
pub async fn send_raw(sdk: &aws_config::SdkConfig, queue: &str, bodies: &[String]) {
    let client = aws_sdk_sqs::Client::new(sdk);
    for b in bodies {
        client
            .send_message()
            .queue_url(queue)
            .message_body(b)
            .send()
            .await
            .expect("send a message");
    }
}

/// Any AMI moto knows (an Amazon one), to launch instances from.
pub async fn any_ami(client: &aws_sdk_ec2::Client) -> String {
    client
        .describe_images()
        .owners("amazon")
        .send()
        .await
        .expect("describe images")
        .images()
        .iter()
        .find_map(|i| i.image_id())
        .expect("moto has AMIs")
        .to_string()
}

/// Launches `n` instances in moto tagged `tags` at launch (as the launch template does);
/// returns their ids in launch order.
pub async fn run_instances(
    sdk: &aws_config::SdkConfig,
    n: i32,
    tags: &[(&str, &str)],
) -> Vec<String> {
    let client = aws_sdk_ec2::Client::new(sdk);
    let ami = any_ami(&client).await;
    let mut spec = TagSpecification::builder().resource_type(ResourceType::Instance);
    for (k, v) in tags {
        spec = spec.tags(Tag::builder().key(*k).value(*v).build());
    }
    let out = client
        .run_instances()
        .image_id(ami)
        .instance_type(aws_sdk_ec2::types::InstanceType::M5Large)
        .min_count(n)
        .max_count(n)
        .tag_specifications(spec.build())
        .send()
        .await
        .expect("RunInstances");
    out.instances()
        .iter()
        .map(|i| i.instance_id().expect("instance id").to_string())
        .collect()
}

/// The tags on one instance, from DescribeTags.
pub async fn instance_tags(
    sdk: &aws_config::SdkConfig,
    instance_id: &str,
) -> BTreeMap<String, String> {
    let client = aws_sdk_ec2::Client::new(sdk);
    let out = client
        .describe_tags()
        .filters(
            Filter::builder()
                .name("resource-id")
                .values(instance_id)
                .build(),
        )
        .send()
        .await
        .expect("DescribeTags");
    out.tags()
        .iter()
        .map(|t| {
            (
                t.key().unwrap_or_default().to_string(),
                t.value().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// S3 settings pointing at moto with its test credentials.
pub fn s3_settings(moto: &Moto) -> S3Settings {
    s3_settings_at(&moto.endpoint)
}

/// S3 settings for moto's test credentials at `endpoint` (moto, or a proxy before it).
pub fn s3_settings_at(endpoint: &str) -> S3Settings {
    S3Settings {
        region: Some("us-east-1".into()),
        endpoint: Some(endpoint.to_string()),
        credentials: Some(("testing".into(), "testing".into())),
    }
}

/// Uploads every file under `dir` (recursively, names starting with `_` or `.` left
/// out) to `s3_prefix` (`s3://bucket/prefix/`), keys relative to `dir`.
pub async fn upload_dir(moto: &Moto, dir: &Path, s3_prefix: &str) {
    upload_tree(moto, dir, s3_prefix, false).await
}

/// [`upload_dir`], with hidden names (`_expected.json`) too when `hidden`: for tests
/// that check listings and plans skip them.
pub async fn upload_tree(moto: &Moto, dir: &Path, s3_prefix: &str, hidden: bool) {
    let store = Store::open_with(s3_prefix, &s3_settings(moto))
        .await
        .expect("open the S3 prefix");
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read dir") {
            let p = e.expect("dir entry").path();
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if !hidden && (name.starts_with('_') || name.starts_with('.')) {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let key = p
                .strip_prefix(dir)
                .expect("under dir")
                .to_str()
                .expect("UTF-8 names")
                .to_string();
            let body = std::fs::read(&p).expect("read a data file");
            store.put(&key, body.into()).await.expect("upload to moto");
        }
    }
}

/// Where [`gen_upload_plan`] put things.
#[derive(Debug, Clone)]
pub struct Planned {
    /// The generated data on disk (with its `_expected.json`).
    pub data: PathBuf,
    /// `s3://bucket/trips/`: the uploaded data.
    pub source: String,
    /// `s3://bucket/results/<run>/`: where the plan wrote `_plan.json`.
    pub results: String,
}

/// `rangefleet gen --out <dir>/data <gen_args>`, uploaded to `s3://<bucket>/trips/`,
/// then `rangefleet plan` of `processor` jobs of `per_job` records onto `queue`, with
/// results under `s3://<bucket>/results/<run>/`. The bucket must exist.
#[allow(clippy::too_many_arguments)]
pub async fn gen_upload_plan(
    moto: &Moto,
    bucket: &str,
    dir: &Path,
    gen_args: &[&str],
    queue: &str,
    run: &str,
    processor: &str,
    per_job: u64,
) -> Planned {
    let data = dir.join("data");
    let out = rangefleet()
        .args(["gen", "--out", data.to_str().expect("UTF-8 path")])
        .args(gen_args)
        .output()
        .expect("run rangefleet gen");
    assert!(out.status.success(), "gen failed: {out:?}");
    let source = format!("s3://{bucket}/trips/");
    let results = format!("s3://{bucket}/results/{run}/");
    upload_dir(moto, &data, &source).await;
    let per_job = per_job.to_string();
    let (code, _, err) = run_cli(
        moto,
        &[
            "plan",
            &source,
            "--queue",
            queue,
            "--results",
            &results,
            "--processor",
            processor,
            "--records-per-job",
            &per_job,
        ],
    );
    assert_eq!(code, 0, "plan failed: {err}");
    Planned {
        data,
        source,
        results,
    }
}

/// An agent config (docs/config.md), written as the Terraform module writes it: JSON is YAML,
/// and `yamlencode` quotes every string the same way.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The SQS queue URL.
    pub queue: String,
    /// Allowed source prefixes.
    pub inputs: Vec<String>,
    /// Results prefix.
    pub results: String,
    /// Jobs in flight.
    pub concurrency: u32,
    /// Lease, seconds (= SQS visibility per receive).
    pub lease_seconds: u64,
    /// Tags (templates allowed).
    pub tags: BTreeMap<String, String>,
    /// Notice poll interval, seconds.
    pub poll_seconds: u64,
    /// `processors.exec.argv`, when the exec processor is on.
    pub exec: Option<Vec<String>>,
    /// `publish_tags`.
    pub publish_tags: bool,
}

impl AgentConfig {
    /// The config document.
    pub fn to_yaml(&self) -> String {
        let mut doc = serde_json::json!({
            "queue": self.queue,
            "inputs": self.inputs,
            "results": self.results,
            "concurrency": self.concurrency,
            "lease_seconds": self.lease_seconds,
            "tags": self.tags,
            "spot": {"poll_seconds": self.poll_seconds, "on_rebalance": "stop-leasing",
                     "drain_margin_seconds": 20},
            "publish_tags": self.publish_tags,
        });
        if let Some(argv) = &self.exec {
            doc["processors"] = serde_json::json!({"exec": {"argv": argv, "timeout_seconds": 60}});
        }
        serde_json::to_string_pretty(&doc).expect("config serialises")
    }
}

/// The repository's root (this crate is `tests/`).
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo root")
        .to_path_buf()
}

/// User-data as `terraform/modules/userdata` renders it: the repository's
/// `cloud-init/cloud-config.yaml.tftpl` with the agent config, the unit and the install
/// script indented into its `write_files`, and the install argv as JSON. (The same
/// substitutions `templatefile` makes, done here so the tests need no terraform.)
pub fn render_user_data(agent_yaml: &str) -> String {
    let root = repo_root();
    let read =
        |p: &str| std::fs::read_to_string(root.join(p)).unwrap_or_else(|e| panic!("read {p}: {e}"));
    let indent6 = |s: &str| {
        // Terraform's indent(): every line but the first, trailing newline kept.
        let mut out = String::new();
        for (i, line) in s.split('\n').enumerate() {
            if i > 0 {
                out.push('\n');
                if !line.is_empty() {
                    out.push_str("      ");
                }
            }
            out.push_str(line);
        }
        out
    };
    let argv = serde_json::json!([
        "/usr/local/sbin/rangefleet-install",
        "--url",
        "https://example.invalid/rangefleet",
        "--sha256",
        "0000000000000000000000000000000000000000000000000000000000000000",
        "--dest",
        "/usr/local/bin/rangefleet",
        "--unit-src",
        "/usr/local/share/rangefleet/rangefleet-agent.service"
    ]);
    without_journal_shipping(&read("cloud-init/cloud-config.yaml.tftpl"))
        .replace("${indent(6, agent_config)}", &indent6(agent_yaml))
        .replace(
            "${indent(6, unit)}",
            &indent6(&read("agent/systemd/rangefleet-agent.service")),
        )
        .replace(
            "${indent(6, install_script)}",
            &indent6(&read("cloud-init/install-agent.sh")),
        )
        .replace("${jsonencode(install_argv)}", &argv.to_string())
}

/// The template with its journal-shipping blocks (`%{ if journal_config != null ~}` to
/// `%{ endif ~}`) left out, as the module renders it when `journal_log_group` is unset.
/// Any other template directive is a drift this renderer does not know: it panics.
fn without_journal_shipping(template: &str) -> String {
    let mut out = String::new();
    let mut skipping = false;
    for line in template.split_inclusive('\n') {
        let directive = line.trim_end();
        if directive == "%{ if journal_config != null ~}" {
            skipping = true;
        } else if directive == "%{ endif ~}" {
            assert!(skipping, "an %{{ endif }} without its if in the template");
            skipping = false;
        } else if directive.starts_with("%{") {
            panic!("the template has a directive the test renderer does not know: {directive}");
        } else if !skipping {
            out.push_str(line);
        }
    }
    out
}

/// How one agent process is started.
#[derive(Debug, Clone, Default)]
pub struct AgentOptions {
    /// Extra `imds-mock` arguments (`--interrupt-after 3s`, `--fail …`, `--latency …`).
    pub imds_args: Vec<String>,
    /// Extra environment for the agent.
    pub env: Vec<(String, String)>,
    /// Take credentials from the instance role only: no key variables, an empty HOME.
    pub role_credentials_only: bool,
}

/// One instance: its imds-mock and its agent process (killed on drop). Derefs to the
/// agent's [`AgentProc`] for waiting, signals and its log.
pub struct Worker {
    /// Its metadata service.
    pub imds: ImdsMock,
    agent: AgentProc,
}

impl std::ops::Deref for Worker {
    type Target = AgentProc;
    fn deref(&self) -> &AgentProc {
        &self.agent
    }
}

impl std::ops::DerefMut for Worker {
    fn deref_mut(&mut self) -> &mut AgentProc {
        &mut self.agent
    }
}

impl Worker {
    /// Writes `user_data`, starts an imds-mock for `instance_id` serving it with the
    /// `worker` role, and boots `rangefleet agent --until-empty` from it (no --config,
    /// no --no-imds), with moto's environment.
    pub fn start(
        moto: &Moto,
        dir: &Path,
        instance_id: &str,
        user_data: &str,
        opts: &AgentOptions,
    ) -> Worker {
        let ud = dir.join(format!("{instance_id}.user-data"));
        std::fs::write(&ud, user_data).expect("write user-data");
        let mut args: Vec<&str> = vec![
            "--userdata",
            ud.to_str().expect("UTF-8 path"),
            "--instance-id",
            instance_id,
            "--role",
            "worker",
        ];
        args.extend(opts.imds_args.iter().map(String::as_str));
        let imds = ImdsMock::start(&args);
        let mut cmd = rangefleet();
        cmd.args(["agent", "--until-empty", "--log-format", "json"])
            // The tests follow each job through its lines, which are debug.
            .env("RUST_LOG", crate::JOB_LINES)
            .env_remove("AWS_EC2_METADATA_DISABLED")
            .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", &imds.url)
            .env("RANGEFLEET_BOOT_DEADLINE", "60s");
        for (k, v) in moto.aws_env() {
            if opts.role_credentials_only && k.starts_with("AWS_") && k.contains("KEY") {
                continue;
            }
            cmd.env(k, v);
        }
        if opts.role_credentials_only {
            let home = dir.join(format!("{instance_id}.home"));
            std::fs::create_dir_all(&home).expect("create an empty HOME");
            cmd.env("HOME", &home)
                .env_remove("AWS_CONFIG_FILE")
                .env_remove("AWS_SHARED_CREDENTIALS_FILE")
                .env_remove("AWS_WEB_IDENTITY_TOKEN_FILE")
                .env_remove("AWS_CONTAINER_CREDENTIALS_FULL_URI")
                .env_remove("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
        }
        cmd.envs(opts.env.iter().map(|(k, v)| (k, v)));
        let agent = AgentProc::spawn(cmd, instance_id, dir.join(format!("{instance_id}.log")));
        Worker { imds, agent }
    }
}

/// `rangefleet ARGS…` with moto's environment; (exit code, stdout, stderr).
pub fn run_cli(moto: &Moto, args: &[&str]) -> (i32, String, String) {
    let out = rangefleet()
        .args(args)
        .envs(moto.aws_env())
        .output()
        .expect("run rangefleet");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// An EC2 endpoint in front of moto that answers the first `throttle` calls of `action`
/// with HTTP 503 `RequestLimitExceeded`, as EC2 does when an account's bucket is empty,
/// and passes everything else through. Stopped on drop.
pub struct ThrottleProxy {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// Calls of the action answered `RequestLimitExceeded`.
    pub throttled: Arc<AtomicU64>,
    /// Calls of the action passed through to moto.
    pub passed: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

struct Throttle {
    upstream: String,
    action: String,
    throttle: u64,
    seen: AtomicU64,
    throttled: Arc<AtomicU64>,
    passed: Arc<AtomicU64>,
    client: reqwest::Client,
}

const REQUEST_LIMIT_EXCEEDED: &str =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error>\
<Code>RequestLimitExceeded</Code><Message>Request limit exceeded.</Message></Error></Errors>\
<RequestID>rangefleet-throttle-proxy</RequestID></Response>";

impl ThrottleProxy {
    /// Starts one in the current tokio runtime.
    pub async fn start(upstream: &str, action: &str, throttle: u64) -> ThrottleProxy {
        let throttled = Arc::new(AtomicU64::new(0));
        let passed = Arc::new(AtomicU64::new(0));
        let st = Arc::new(Throttle {
            upstream: upstream.trim_end_matches('/').to_string(),
            action: format!("Action={action}"),
            throttle,
            seen: AtomicU64::new(0),
            throttled: Arc::clone(&throttled),
            passed: Arc::clone(&passed),
            client: proxy::client(),
        });
        let (url, task) = proxy::serve(move |req| throttle_handle(req, Arc::clone(&st))).await;
        ThrottleProxy {
            url,
            throttled,
            passed,
            task,
        }
    }
}

impl Drop for ThrottleProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn throttle_handle(
    req: Request<Incoming>,
    st: Arc<Throttle>,
) -> Result<Response<proxy::Body>, Infallible> {
    let (parts, body) = proxy::read_request(req).await;
    let is_action = std::str::from_utf8(&body)
        .map(|b| b.split('&').any(|p| p == st.action))
        .unwrap_or(false);
    if is_action {
        if st.seen.fetch_add(1, Ordering::SeqCst) < st.throttle {
            st.throttled.fetch_add(1, Ordering::SeqCst);
            return Ok(Response::builder()
                .status(StatusCode::SERVICE_UNAVAILABLE)
                .header("content-type", "text/xml")
                .body(proxy::full(REQUEST_LIMIT_EXCEEDED))
                .expect("response"));
        }
        st.passed.fetch_add(1, Ordering::SeqCst);
    }
    let resp = match proxy::forward(&st.client, &st.upstream, &parts, body).await {
        Ok(r) => r,
        Err(bad_gateway) => return Ok(bad_gateway),
    };
    let mut out = Response::builder().status(resp.status());
    for (k, v) in resp.headers() {
        if !proxy::hop_by_hop(k) {
            out = out.header(k, v);
        }
    }
    let bytes = resp.bytes().await.unwrap_or_default();
    Ok(out.body(proxy::full(bytes)).expect("response"))
}
