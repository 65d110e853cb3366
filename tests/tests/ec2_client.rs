//! rangefleet's EC2 calls (`agent/src/aws/ec2.rs`, on aws-sdk-ec2) against moto: what
//! the crate is given (credentials, endpoint, page size, retry settings) and what it
//! makes of the answers.
//!
//! - Credentials: with IAM authentication enforced, moto recomputes every request's
//!   SigV4 signature and answers `AuthFailure` on a mismatch. `status` with an IAM
//!   user's keys lists exactly the tagged fleet across several pages; a wrong secret
//!   fails with `AuthFailure` and is never printed; assumed-role credentials (with a
//!   session token, as on an instance) tag an instance, and a separate SDK client sees
//!   the tag.
//! - Paging and retries: through a proxy that throttles the first DescribeInstances,
//!   every page is read once, the throttled call is retried (the SDK's standard mode),
//!   and nothing is repeated.

use std::process::Command;

use aws_credential_types::Credentials;
use rangefleet::aws::ec2::{Ec2, PAGE_SIZE_ENV};
use rangefleet_tests::ec2::{self, ThrottleProxy};
use rangefleet_tests::moto::{self, Moto};
use rangefleet_tests::{rangefleet, TempDir};
use serde_json::Value;

const REGION: &str = "us-east-1";
/// Fleet instances, one reservation each: moto pages by reservation, so with pages of 5
/// this is two pages.
const FLEET: usize = 7;
const PAGE: i32 = 5;

/// An IAM user allowed the two EC2 calls, and credentials of a role it assumed.
const SETUP: &str = r#"
import json, sys
import boto3
kw = dict(endpoint_url=sys.argv[1], region_name="us-east-1",
          aws_access_key_id="testing", aws_secret_access_key="testing")
iam = boto3.client("iam", **kw)
allow = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
    "Action": ["ec2:DescribeInstances", "ec2:DescribeTags", "ec2:CreateTags",
               "sts:AssumeRole"], "Resource": "*"}]})
iam.create_user(UserName="operator")
iam.put_user_policy(UserName="operator", PolicyName="ec2", PolicyDocument=allow)
key = iam.create_access_key(UserName="operator")["AccessKey"]
trust = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
    "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}]})
iam.create_role(RoleName="agent", AssumeRolePolicyDocument=trust)
iam.put_role_policy(RoleName="agent", PolicyName="ec2", PolicyDocument=allow)
sts = boto3.client("sts", **kw)
role = sts.assume_role(RoleArn="arn:aws:iam::123456789012:role/agent",
                       RoleSessionName="i-test")["Credentials"]
print(json.dumps({"user": [key["AccessKeyId"], key["SecretAccessKey"]],
                  "role": [role["AccessKeyId"], role["SecretAccessKey"], role["SessionToken"]]}))
"#;

/// Launches [`FLEET`] instances tagged `fleet=signed` (one reservation each) and one
/// that is not the fleet's; returns the fleet's ids, sorted.
async fn launch(sdk: &aws_config::SdkConfig) -> Vec<String> {
    let mut ids = Vec::new();
    for _ in 0..FLEET {
        ids.extend(ec2::run_instances(sdk, 1, &[("fleet", "signed")]).await);
    }
    ec2::run_instances(sdk, 1, &[("fleet", "other")]).await;
    ids.sort();
    ids
}

fn creds(v: &Value) -> Credentials {
    let s = |i: usize| v.get(i).and_then(Value::as_str).map(str::to_string);
    Credentials::new(
        s(0).expect("key id"),
        s(1).expect("secret"),
        s(2),
        None,
        "moto",
    )
}

/// `rangefleet status --fleet-tag fleet=signed --json` with these keys and pages of 5.
fn status(moto: &Moto, dir: &TempDir, key: &str, secret: &str) -> (i32, String, String) {
    let db = dir.0.join("queue.db");
    // status refuses a SQLite queue that does not exist: make an empty one.
    rangefleet::queue::sqlite::SqliteQueue::open(&db).expect("create the queue");
    let queue = format!("sqlite://{}", db.display());
    let out = rangefleet()
        .args([
            "status",
            "--queue",
            &queue,
            "--fleet-tag",
            "fleet=signed",
            "--json",
        ])
        .env("AWS_ENDPOINT_URL", &moto.endpoint)
        .env("AWS_REGION", REGION)
        .env("AWS_ACCESS_KEY_ID", key)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .env(PAGE_SIZE_ENV, PAGE.to_string())
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE")
        .output()
        .expect("run rangefleet status");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_pass_moto_signature_checks_and_a_wrong_secret_is_refused() {
    let moto = Moto::start().expect("moto server");
    let sdk = moto.sdk_config().await;
    let fleet = launch(&sdk).await;

    let out = Command::new(moto::venv().join("bin/python"))
        .args(["-c", SETUP, &moto.endpoint])
        .output()
        .expect("run the IAM set-up with the venv's python");
    assert!(
        out.status.success(),
        "IAM set-up failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let keys: Value = serde_json::from_slice(&out.stdout).expect("set-up prints JSON");
    let user = creds(&keys["user"]);
    let role = creds(&keys["role"]);
    assert!(
        role.session_token().is_some(),
        "role credentials carry a token"
    );

    // From here on every request must be signed by a known key, correctly.
    moto.enforce_auth().await;

    let dir = TempDir::new("ec2-signing");
    let (code, stdout, stderr) =
        status(&moto, &dir, user.access_key_id(), user.secret_access_key());
    assert_eq!(code, 0, "status with the user's keys failed: {stderr}");
    let v: Value = serde_json::from_str(&stdout).expect("status --json");
    let mut listed: Vec<String> = v["instances"]
        .as_array()
        .expect("instances")
        .iter()
        .map(|i| i["instance_id"].as_str().unwrap().to_string())
        .collect();
    listed.sort();
    assert_eq!(listed, fleet, "exactly the tagged fleet, over two pages");

    let (code, _, stderr) = status(&moto, &dir, user.access_key_id(), "not-the-secret");
    assert_eq!(code, 1, "a wrong secret must fail: {stderr}");
    assert!(stderr.contains("AuthFailure"), "{stderr}");
    assert!(
        !stderr.contains("not-the-secret"),
        "the secret is never printed: {stderr}"
    );

    // As an agent would, with role credentials and their session token.
    let agent = Ec2::new(&sdk_for(&moto.endpoint, role).await);
    let tags = vec![("Name".to_string(), format!("worker-{}", fleet[0]))];
    agent
        .create_tags(&fleet[0], &tags)
        .await
        .expect("CreateTags");
    let seen = agent
        .describe_instances(&[("fleet".into(), "signed".into())])
        .await
        .expect("DescribeInstances with a session token");
    assert_eq!(seen.len(), FLEET);

    // The witness: aws-sdk-ec2, signing for itself with the user's keys.
    let witness = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .empty_test_environment()
        .credentials_provider(user)
        .region(aws_config::Region::new(REGION))
        .endpoint_url(&moto.endpoint)
        .load()
        .await;
    let on_instance = ec2::instance_tags(&witness, &fleet[0]).await;
    assert_eq!(
        on_instance.get("Name"),
        Some(&format!("worker-{}", fleet[0]))
    );
    assert_eq!(on_instance.get("fleet").map(String::as_str), Some("signed"));

    // Refused outright, not retried: an unknown key.
    let stranger = Ec2::new(
        &sdk_for(
            &moto.endpoint,
            Credentials::new("AKIDUNKNOWN", "x", None, None, "t"),
        )
        .await,
    );
    let err = stranger.create_tags(&fleet[0], &tags).await.unwrap_err();
    assert_eq!(err.code.as_deref(), Some("AuthFailure"), "{err:?}");
    assert_eq!(stranger.attempts(), 1, "an auth failure is not retried");
}

/// An SDK config with `creds` for `endpoint`, and the SDK's standard retries (3
/// attempts, short pauses), nothing from the developer's environment.
async fn sdk_for(endpoint: &str, creds: Credentials) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .empty_test_environment()
        .credentials_provider(creds)
        .region(aws_config::Region::new(REGION))
        .endpoint_url(endpoint)
        .retry_config(rangefleet::aws::standard_retry(
            3,
            std::time::Duration::from_millis(50),
            std::time::Duration::from_millis(500),
        ))
        .load()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_is_read_once_and_a_throttled_page_is_retried() {
    let moto = Moto::start().expect("moto server");
    let sdk = moto.sdk_config().await;
    let fleet = launch(&sdk).await;
    let proxy = ThrottleProxy::start(&moto.endpoint, "DescribeInstances", 1).await;

    let client = Ec2::new(
        &sdk_for(
            &proxy.url,
            Credentials::new("testing", "testing", None, None, "t"),
        )
        .await,
    )
    .with_page_size(PAGE);
    let rows = client
        .describe_instances(&[("fleet".into(), "signed".into())])
        .await
        .expect("DescribeInstances through the throttling proxy");
    let ids: Vec<&str> = rows.iter().map(|r| r.instance_id.as_str()).collect();
    assert_eq!(ids, fleet, "sorted, each once");
    for r in &rows {
        assert_eq!(r.instance_type, "m5.large");
        assert_eq!(r.state, "running");
        assert!(r.availability_zone.starts_with(REGION), "{r:?}");
        assert!(!r.launch_time.is_empty(), "{r:?}");
    }
    use std::sync::atomic::Ordering::SeqCst;
    assert_eq!(
        proxy.throttled.load(SeqCst),
        1,
        "the first call was throttled"
    );
    assert_eq!(
        proxy.passed.load(SeqCst),
        2,
        "two pages of {PAGE}, each read once"
    );
    assert_eq!(client.attempts(), 3, "one retry, two pages");

    // No filter matches: an empty list, one call.
    let none = client
        .describe_instances(&[("fleet".into(), "nobody".into())])
        .await
        .expect("an empty answer");
    assert!(none.is_empty());
    assert_eq!(proxy.passed.load(SeqCst), 3);
}
