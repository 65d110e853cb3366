//! `rangefleet identity` and `rangefleet userdata check`, as an operator runs them.

use std::io::Write;

use rangefleet_tests::{rangefleet, ImdsMock, TempDir};
use serde_json::json;

const CLOUD_CONFIG: &str = "#cloud-config
write_files:
  - path: /etc/rangefleet/agent.yaml
    content: |
      queue: https://sqs.us-east-1.amazonaws.com/123456789012/trips-jobs
      inputs: [\"s3://trips-data/trips/\"]
      results: s3://trips-data/results/run-42/
      tags:
        team: data
        Name: worker-{instance_id}
        slot: \"{availability_zone}/{launch_index}\"
runcmd:
  - [/usr/local/sbin/rangefleet-install]
";

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

#[test]
fn identity_prints_identity_config_and_expanded_tags() {
    let dir = TempDir::new("identity");
    let ud = dir.0.join("user-data.gz");
    std::fs::write(&ud, gzip(CLOUD_CONFIG.as_bytes())).unwrap();
    let mock = ImdsMock::start(&[
        "--userdata",
        ud.to_str().unwrap(),
        "--instance-id",
        "i-0feedface0000001",
        "--instance-type",
        "c6i.xlarge",
        "--region",
        "eu-west-1",
        "--availability-zone",
        "eu-west-1b",
        "--launch-index",
        "3",
        "--tag",
        "team=from-launch-template",
        "--tag",
        "env=prod",
    ]);
    let out = rangefleet()
        .arg("identity")
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", &mock.url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["identity"],
        json!({"instance_id": "i-0feedface0000001", "instance_type": "c6i.xlarge",
               "availability_zone": "eu-west-1b", "region": "eu-west-1", "life_cycle": "spot",
               "launch_index": 3, "ami_id": "ami-0abcdef1234567890"})
    );
    assert_eq!(
        v["config"]["queue"],
        "https://sqs.us-east-1.amazonaws.com/123456789012/trips-jobs"
    );
    assert_eq!(v["config"]["lease_seconds"], 300);
    assert!(
        v["config"]["concurrency"].as_u64().unwrap() >= 2,
        "2 × vCPUs filled in"
    );
    assert_eq!(
        v["tags"],
        json!({"env": "prod", "team": "data", "Name": "worker-i-0feedface0000001", "slot": "eu-west-1b/3"})
    );
}

#[test]
fn userdata_check_prints_the_config_with_templates_unexpanded() {
    let dir = TempDir::new("check-ok");
    let ud = dir.0.join("user-data");
    std::fs::write(&ud, CLOUD_CONFIG).unwrap();
    let out = rangefleet()
        .args(["userdata", "check"])
        .arg(&ud)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["identity"], serde_json::Value::Null);
    assert_eq!(v["config"]["concurrency"], "auto");
    assert_eq!(v["tags"]["Name"], "worker-{instance_id}");
}

/// A reader that went away (`rangefleet userdata check f | head -0`) is no reason to
/// panic: the output is dropped and the exit code is the command's own.
#[test]
fn output_to_a_closed_pipe_is_dropped_quietly() {
    let dir = TempDir::new("check-epipe");
    let ud = dir.0.join("user-data");
    std::fs::write(&ud, CLOUD_CONFIG).unwrap();
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader); // closed before the command starts: its first write gets EPIPE
    let out = rangefleet()
        .args(["userdata", "check"])
        .arg(&ud)
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        err.is_empty(),
        "nothing to say about a reader that left: {err}"
    );
}

#[test]
fn userdata_check_exits_2_and_names_the_problem() {
    let dir = TempDir::new("check-bad");
    for (name, text, needles) in [
        (
            "broken-yaml",
            CLOUD_CONFIG.replace(
                "[\"s3://trips-data/trips/\"]",
                "[\"s3://trips-data/trips/\"",
            ),
            vec!["line 7", "flow sequence"],
        ),
        (
            "misspelt-key",
            CLOUD_CONFIG.replace("results:", "result:"),
            vec!["unknown field `result`", "line 7"],
        ),
    ] {
        let ud = dir.0.join(name);
        std::fs::write(&ud, text).unwrap();
        let out = rangefleet()
            .args(["userdata", "check"])
            .arg(&ud)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{name}");
        let err = String::from_utf8_lossy(&out.stderr);
        for n in needles {
            assert!(err.contains(n), "{name}: {err:?} should mention {n:?}");
        }
        assert!(out.stdout.is_empty(), "{name}: nothing on stdout");
    }
}

#[test]
fn help_lists_the_working_subcommands() {
    let out = rangefleet().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for cmd in ["identity", "userdata", "imds-mock", "Exit codes"] {
        assert!(help.contains(cmd), "--help lacks {cmd}:\n{help}");
    }
}
