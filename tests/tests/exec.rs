//! The `exec` processor running real commands (python3 scripts) on generated records.

use std::time::{Duration, Instant};

use rangefleet::operator::gen::generate_in_memory;
use rangefleet::process::exec::{run_exec, ExecFailure, ExecSpec};
use rangefleet::process::taxi::record::RECORD_LENGTH;
use rangefleet_tests::TempDir;
use serde_json::json;

/// Sums over the records on stdin: how many, passengers (byte 40, when a digit) and the
/// fare field's digits as cents; echoes the job's environment back.
const SUM: &str = r#"
import json, os, sys
data = sys.stdin.buffer.read()
n = len(data) // 80
passengers = 0
fare = 0
for i in range(n):
    r = data[i * 80:(i + 1) * 80]
    if 48 <= r[40] <= 57:
        passengers += r[40] - 48
    f = r[59:65].replace(b".", b"")
    if f.isdigit():
        fare += int(f)
print(json.dumps({"records": n, "passengers": passengers, "fare_cents": fare,
                  "job": os.environ.get("RANGEFLEET_JOB_ID"),
                  "partition": json.loads(os.environ.get("RANGEFLEET_PARTITION", "null")),
                  "home": os.environ.get("HOME"),
                  "aws": [k for k in os.environ if k.startswith("AWS_")]}))
"#;

fn script(dir: &TempDir, name: &str, body: &str) -> String {
    let p = dir.0.join(name);
    std::fs::write(&p, body).unwrap();
    p.display().to_string()
}

fn spec(argv: Vec<String>, timeout: Duration, max: u64) -> ExecSpec {
    ExecSpec {
        argv,
        timeout,
        max_output_bytes: max,
    }
}

fn python(path: String) -> Vec<String> {
    vec!["python3".into(), path]
}

#[tokio::test]
async fn a_script_sums_records_like_rust_does() {
    let dir = TempDir::new("exec");
    let (records, _) = generate_in_memory(9, "yellow", "2016-01-01", 3000, Some(50)).unwrap();
    let (mut passengers, mut fare) = (0u64, 0u64);
    for r in records.chunks_exact(RECORD_LENGTH) {
        if r[40].is_ascii_digit() {
            passengers += u64::from(r[40] - b'0');
        }
        let f: Vec<u8> = r[59..65].iter().copied().filter(|&b| b != b'.').collect();
        if !f.is_empty() && f.iter().all(u8::is_ascii_digit) {
            fare += std::str::from_utf8(&f).unwrap().parse::<u64>().unwrap();
        }
    }
    let env = [
        (
            "RANGEFLEET_JOB_ID".to_string(),
            "color=yellow/part-0000.rec#0+3000".to_string(),
        ),
        (
            "RANGEFLEET_PARTITION".to_string(),
            r#"{"color":"yellow"}"#.to_string(),
        ),
    ];
    let out = run_exec(
        &spec(
            python(script(&dir, "sum.py", SUM)),
            Duration::from_secs(30),
            1 << 20,
        ),
        &records,
        &env,
    )
    .await
    .unwrap();
    assert_eq!(
        out,
        json!({"records": 3000, "passengers": passengers, "fare_cents": fare,
               "job": "color=yellow/part-0000.rec#0+3000", "partition": {"color": "yellow"},
               "home": "/tmp", "aws": []})
    );
}

#[tokio::test]
async fn a_failing_script_reports_its_stderr_tail() {
    let dir = TempDir::new("exec");
    let body = "import sys\nsys.stdin.buffer.read()\nsys.stderr.write('x' * 5000 + '\\nbad input at record 17\\n')\nsys.exit(3)\n";
    let e = run_exec(
        &spec(
            python(script(&dir, "fail.py", body)),
            Duration::from_secs(30),
            1024,
        ),
        b"0123456789",
        &[],
    )
    .await
    .unwrap_err();
    assert_eq!(e.failure, ExecFailure::Exit(3));
    assert!(
        e.stderr_tail.ends_with("bad input at record 17\n"),
        "{:?}",
        e.stderr_tail
    );
    assert!(e.stderr_tail.len() <= 2048, "only the tail is kept");
    assert!(
        e.to_string().contains("exited with status 3")
            && e.to_string().contains("bad input at record 17"),
        "{e}"
    );
}

#[tokio::test]
async fn a_sleeping_script_is_killed_at_the_timeout() {
    let dir = TempDir::new("exec");
    // It starts a grandchild that would keep stdout open: the whole group is killed.
    let body = "import subprocess, time\nsubprocess.Popen(['sleep', '60'])\ntime.sleep(60)\n";
    let started = Instant::now();
    let e = run_exec(
        &spec(
            python(script(&dir, "sleep.py", body)),
            Duration::from_secs(1),
            1024,
        ),
        b"",
        &[],
    )
    .await
    .unwrap_err();
    let took = started.elapsed();
    assert_eq!(e.failure, ExecFailure::Timeout(Duration::from_secs(1)));
    assert!(took < Duration::from_secs(4), "returned after {took:?}");
}

#[tokio::test]
async fn two_json_values_or_too_much_output_are_errors() {
    let dir = TempDir::new("exec");
    let two = script(&dir, "two.py", "print('{\"a\": 1}')\nprint('{\"b\": 2}')\n");
    let e = run_exec(&spec(python(two), Duration::from_secs(30), 1024), b"", &[])
        .await
        .unwrap_err();
    assert!(matches!(e.failure, ExecFailure::BadJson(_)), "{e}");

    let big = script(
        &dir,
        "big.py",
        "import sys\nsys.stdout.write('[' + '1,' * 100000 + '1]')\n",
    );
    let e = run_exec(&spec(python(big), Duration::from_secs(30), 1000), b"", &[])
        .await
        .unwrap_err();
    assert_eq!(e.failure, ExecFailure::OutputTooLarge(1000));
    assert!(
        e.to_string().contains("output larger than 1000 bytes"),
        "{e}"
    );
}
