//! The IMDSv2 client against a real `rangefleet imds-mock` process on 127.0.0.1.

use std::io::Write;
use std::time::Duration;

use rangefleet::imds::{ImdsClient, ImdsError, ImdsOptions};
use rangefleet_tests::{free_port, rangefleet, ImdsMock, TempDir};
use tokio::time::Instant;

const ID: &str = "/latest/meta-data/instance-id";
const TOKEN: &str = "/latest/api/token";

fn client(url: &str, allow_v1: bool) -> ImdsClient {
    ImdsClient::new(ImdsOptions {
        endpoint: url.to_string(),
        allow_v1,
        request_timeout: Duration::from_secs(2),
    })
    .unwrap()
}

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(20)
}

#[tokio::test]
async fn one_token_serves_fifty_gets() {
    let mock = ImdsMock::start(&["--instance-id", "i-0fifty"]);
    let c = client(&mock.url, false);
    for _ in 0..50 {
        assert_eq!(
            c.get_text(ID, soon()).await.unwrap().as_deref(),
            Some("i-0fifty")
        );
    }
    assert_eq!(mock.count("PUT", TOKEN).await, 1);
    assert_eq!(mock.count("GET", ID).await, 50);
}

#[tokio::test]
async fn token_is_renewed_before_it_expires() {
    // The mock grants 2 s; the client renews at half of a short TTL, so the second GET,
    // 1.2 s later, goes out with a fresh token and is never refused.
    let mock = ImdsMock::start(&["--token-ttl-max", "2"]);
    let c = client(&mock.url, false);
    c.get(ID, soon()).await.unwrap().unwrap();
    // The passing time is what is tested: the 2 s token is past its renewal point.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    c.get(ID, soon()).await.unwrap().unwrap();
    assert_eq!(mock.count("PUT", TOKEN).await, 2, "renewed once");
    assert_eq!(
        mock.count("GET", ID).await,
        2,
        "no GET was refused and retried"
    );
}

#[tokio::test]
async fn a_401_fetches_a_new_token_and_succeeds() {
    let mock = ImdsMock::start(&[
        "--fail",
        &format!("{ID}=401*1"),
        "--instance-id",
        "i-0after401",
    ]);
    let c = client(&mock.url, false);
    assert_eq!(
        c.get_text(ID, soon()).await.unwrap().as_deref(),
        Some("i-0after401")
    );
    assert_eq!(mock.count("PUT", TOKEN).await, 2);
    assert_eq!(mock.count("GET", ID).await, 2);
}

#[tokio::test]
async fn a_404_is_absent_not_an_error() {
    let mock = ImdsMock::start(&[]);
    let c = client(&mock.url, false);
    let r = c
        .get("/latest/meta-data/spot/instance-action", soon())
        .await
        .unwrap();
    assert_eq!(r, None);
    assert_eq!(
        mock.count("GET", "/latest/meta-data/spot/instance-action")
            .await,
        1,
        "not retried"
    );
}

#[tokio::test]
async fn three_500s_then_success() {
    let mock = ImdsMock::start(&[
        "--fail",
        &format!("{ID}=500*3"),
        "--instance-id",
        "i-0patient",
    ]);
    let c = client(&mock.url, false);
    assert_eq!(
        c.get_text(ID, soon()).await.unwrap().as_deref(),
        Some("i-0patient")
    );
    assert_eq!(mock.count("GET", ID).await, 4);
}

#[tokio::test]
async fn a_dropped_connection_is_retried() {
    let mock = ImdsMock::start(&["--drop", &format!("{TOKEN}*2")]);
    let c = client(&mock.url, false);
    assert!(c.get(ID, soon()).await.unwrap().is_some());
    assert_eq!(mock.count("PUT", TOKEN).await, 3);
}

#[tokio::test]
async fn a_deadline_error_names_endpoint_path_attempts_and_time() {
    let port = free_port(); // nothing listens there
    let url = format!("http://127.0.0.1:{port}");
    let c = client(&url, false);
    let started = std::time::Instant::now();
    let e = c
        .get(ID, Instant::now() + Duration::from_millis(1500))
        .await
        .unwrap_err();
    assert!(e.is_deadline(), "{e}");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(3),
        "{took:?}"
    );
    let ImdsError::Deadline { attempts, .. } = &e else {
        unreachable!()
    };
    assert!(*attempts >= 2, "retried: {e}");
    let msg = e.to_string();
    for part in [url.as_str(), ID, "attempts in", "could not connect"] {
        assert!(msg.contains(part), "{msg:?} lacks {part:?}");
    }
}

#[tokio::test]
async fn identity_exits_75_when_imds_never_answers() {
    let url = format!("http://127.0.0.1:{}", free_port());
    let started = std::time::Instant::now();
    let out = rangefleet()
        .args(["identity", "--boot-deadline", "2s"])
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", &url)
        .output()
        .unwrap();
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(75));
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(6),
        "{took:?}"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&url) && err.contains("attempts in"), "{err}");
}

#[tokio::test]
async fn gzipped_userdata_arrives_byte_for_byte() {
    let dir = TempDir::new("imds-gz");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(b"#cloud-config\nwrite_files: []\n").unwrap();
    let bytes = gz.finish().unwrap();
    assert!(
        std::str::from_utf8(&bytes).is_err(),
        "the fixture must not be UTF-8"
    );
    let path = dir.0.join("ud.gz");
    std::fs::write(&path, &bytes).unwrap();
    let mock = ImdsMock::start(&["--userdata", path.to_str().unwrap()]);
    let got = client(&mock.url, false)
        .get("/latest/user-data", soon())
        .await
        .unwrap();
    assert_eq!(got.as_deref(), Some(bytes.as_slice()));
}

#[tokio::test]
async fn imdsv1_only_when_allowed() {
    // The mock refuses every token (as IMDS does to a request through a proxy) but
    // answers tokenless requests: only a client allowed to use v1 gets through.
    let mock = ImdsMock::start(&["--allow-v1", "--fail", &format!("{TOKEN}=403*1000")]);
    let e = client(&mock.url, false).get(ID, soon()).await.unwrap_err();
    assert!(
        matches!(e, ImdsError::TokenRefused { status: 403, .. }),
        "{e}"
    );
    assert!(e.to_string().contains("--imds-allow-v1"));
    assert!(client(&mock.url, true)
        .get(ID, soon())
        .await
        .unwrap()
        .is_some());

    // And a mock without --allow-v1 refuses a tokenless GET, as IMDS with tokens required.
    let strict = ImdsMock::start(&[]);
    let r = reqwest::get(format!("{}{ID}", strict.url)).await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
}

#[tokio::test]
async fn mock_paths_answer_with_and_without_slash_and_list_directories() {
    let mock = ImdsMock::start(&["--tag", "team=data", "--role", "worker"]);
    let c = client(&mock.url, false);
    let az = c
        .get_text("/latest/meta-data/placement/availability-zone/", soon())
        .await
        .unwrap();
    assert_eq!(az.as_deref(), Some("us-east-1a"));
    let listing = c
        .get_text("/latest/meta-data/", soon())
        .await
        .unwrap()
        .unwrap();
    for entry in ["instance-id", "placement/", "tags/", "iam/"] {
        assert!(listing.lines().any(|l| l == entry), "{listing}");
    }
    let roles = c
        .get_text("/latest/meta-data/iam/security-credentials", soon())
        .await
        .unwrap();
    assert_eq!(roles.as_deref(), Some("worker"));
    let tags = c
        .get_text("/latest/meta-data/tags/instance", soon())
        .await
        .unwrap();
    assert_eq!(tags.as_deref(), Some("team"));
}

#[tokio::test]
async fn notices_appear_on_schedule() {
    let mock = ImdsMock::start(&[
        "--interrupt-after",
        "300ms",
        "--interrupt-action",
        "stop",
        "--asg-terminate-after",
        "300ms",
    ]);
    let c = client(&mock.url, false);
    assert_eq!(
        c.get("/latest/meta-data/spot/instance-action", soon())
            .await
            .unwrap(),
        None
    );
    let state = c
        .get_text(
            "/latest/meta-data/autoscaling/target-lifecycle-state",
            soon(),
        )
        .await
        .unwrap();
    assert_eq!(state.as_deref(), Some("InService"));
    // Both change 300 ms after the mock started (the notice's time is taken first):
    // poll for the lifecycle state, not a fixed sleep.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let state = c
            .get_text(
                "/latest/meta-data/autoscaling/target-lifecycle-state",
                soon(),
            )
            .await
            .unwrap();
        if state.as_deref() == Some("Terminated") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still {state:?} after 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let notice = c
        .get("/latest/meta-data/spot/instance-action", soon())
        .await
        .unwrap()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&notice).unwrap();
    assert_eq!(v["action"], "stop");
    assert!(v["time"].as_str().unwrap().ends_with('Z'));
    let state = c
        .get_text(
            "/latest/meta-data/autoscaling/target-lifecycle-state",
            soon(),
        )
        .await
        .unwrap();
    assert_eq!(state.as_deref(), Some("Terminated"));
}
