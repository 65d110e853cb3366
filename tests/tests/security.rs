//! Issue 12, against the real binary (docs/security.md): inputs read only up to their
//! cap, the IMDS session token absent from logs even at trace, and `imds-mock` not
//! starved by held-open connections nor spinning while they are held.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rangefleet_tests::{free_port, rangefleet, rangefleet_bin, ImdsMock, TempDir};

/// Waits for `child` up to `limit`; kills it if it is still running. Returns its exit
/// code (None when killed) and its stdout and stderr.
fn finish(mut child: Child, limit: Duration) -> (Option<i32>, String, String) {
    let start = Instant::now();
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut out = String::new();
    let mut err = String::new();
    if let Some(mut o) = child.stdout.take() {
        let _ = o.read_to_string(&mut out);
    }
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    (code, out, err)
}

fn spawn(cmd: &mut Command) -> Child {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start rangefleet")
}

/// `--config /dev/zero` and the like read 5 GB and more before the 1 MiB cap applied.
#[test]
fn endless_inputs_stop_at_the_cap() {
    let runs: [(&str, Vec<&str>); 3] = [
        (
            "agent --config",
            vec!["agent", "--no-imds", "--config", "/dev/zero"],
        ),
        ("userdata check", vec!["userdata", "check", "/dev/zero"]),
        (
            "imds-mock --userdata",
            vec!["imds-mock", "--userdata", "/dev/zero"],
        ),
    ];
    for (name, args) in runs {
        let started = Instant::now();
        let (code, _, err) = finish(spawn(rangefleet().args(&args)), Duration::from_secs(30));
        assert_eq!(code, Some(2), "{name}: {err}");
        assert!(
            err.contains("larger than the 1048576 bytes"),
            "{name}: {err}"
        );
        // Generous: reading 1 MiB takes milliseconds; the old read never ended.
        assert!(started.elapsed() < Duration::from_secs(20), "{name}");
    }
    // stdin too.
    let mut child = rangefleet()
        .args(["userdata", "check", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        let chunk = vec![b'a'; 1 << 16];
        // Stops with EPIPE once the reader has had enough.
        for _ in 0..1024 {
            if stdin.write_all(&chunk).is_err() {
                break;
            }
        }
    });
    let (code, _, err) = finish(child, Duration::from_secs(30));
    writer.join().unwrap();
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("larger than"), "{err}");
}

/// A depth bomb in user-data is refused within the boot deadline (it ran for minutes).
#[test]
fn a_nesting_bomb_in_user_data_is_refused_at_boot() {
    let dir = TempDir::new("sec-bomb");
    let ud = dir.0.join("user-data");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let depth = 500_000;
    gz.write_all(format!("queue: sqlite:///q.db\ntags: {}", "[".repeat(depth)).as_bytes())
        .unwrap();
    std::fs::write(&ud, gz.finish().unwrap()).unwrap();
    let mock = ImdsMock::start(&["--userdata", ud.to_str().unwrap()]);
    let started = Instant::now();
    let (code, out, err) = finish(
        spawn(
            rangefleet()
                .args(["identity", "--boot-deadline", "10s"])
                .env_remove("AWS_EC2_METADATA_DISABLED")
                .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", &mock.url),
        ),
        Duration::from_secs(60),
    );
    assert_eq!(code, Some(2), "{out}\n{err}");
    assert!(err.contains("nested too deeply"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(30));
}

/// At `RUST_LOG=trace` an SDK printed its request headers, the IMDS session token among
/// them. The agent here boots from `imds-mock`, and its SQS client fetches credentials
/// from the mock through the SDK's own IMDS client (token header and all) before
/// failing against a closed port.
#[test]
fn trace_logs_never_hold_the_imds_token() {
    let dir = TempDir::new("sec-trace");
    let dead = free_port();
    let config = format!(
        "queue: http://127.0.0.1:{dead}/123456789012/jobs\n\
         inputs: [\"s3://bucket/in/\"]\n\
         results: file://{}/results/\n",
        dir.0.display()
    );
    let ud = dir.0.join("user-data");
    std::fs::write(&ud, &config).unwrap();
    let mock = ImdsMock::start(&["--userdata", ud.to_str().unwrap(), "--role", "fleet-worker"]);
    // To files, not pipes: trace output would fill a pipe and stall the agent.
    let (out_path, err_path) = (dir.0.join("stdout"), dir.0.join("stderr"));
    let child = rangefleet()
        .args(["agent", "--until-empty"])
        .env_remove("AWS_EC2_METADATA_DISABLED")
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", &mock.url)
        .env("RUST_LOG", "trace")
        .env("RANGEFLEET_LOG_FORMAT", "text")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    // Until the SDK has fetched credentials from the mock (with the token header), and
    // a little longer for it to log its requests; generous for a loaded machine.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let creds_path = "/latest/meta-data/iam/security-credentials/fleet-worker";
    let started = Instant::now();
    let mut stats = serde_json::Value::Null;
    while started.elapsed() < Duration::from_secs(90) {
        stats = rt.block_on(mock.stats());
        if stats["GET"][creds_path].as_u64().unwrap_or(0) >= 1 {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(2));
    finish(child, Duration::ZERO);
    let all = format!(
        "{}\n{}",
        std::fs::read_to_string(&out_path).unwrap(),
        std::fs::read_to_string(&err_path).unwrap()
    );
    let tail: String = all.lines().rev().take(15).collect::<Vec<_>>().join("\n");
    // The run did what the test needs: trace output, and the SDK asked IMDS for
    // credentials.
    assert!(all.contains("TRACE"), "no trace output:\n{tail}");
    assert!(
        stats["GET"][creds_path].as_u64().unwrap_or(0) >= 1,
        "the SDK never asked IMDS for credentials: {stats}\n{tail}"
    );
    for secret in ["mock-token-", "imds-mock-test-session-token"] {
        assert!(
            !all.contains(secret),
            "{secret} appears in the logs:\n{}",
            all.lines()
                .filter(|l| l.contains(secret))
                .take(5)
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 (1-based), 12 and 13 after the name.
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// Held-open connections starved `imds-mock` (no header-read timeout) and, once it ran
/// out of file descriptors, its accept loop spun a core.
#[test]
fn held_connections_neither_starve_nor_spin_imds_mock() {
    // A low descriptor limit, so a few dozen idle connections exhaust it.
    struct Killed(Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = Killed(
        Command::new("sh")
            .arg("-c")
            .arg("ulimit -n 48 && exec \"$0\" imds-mock")
            .arg(rangefleet_bin())
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let pid = child.0.id();
    let mut line = String::new();
    BufReader::new(child.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line.trim().trim_start_matches("http://").to_string();
    let mut idle: Vec<TcpStream> = (0..80)
        .filter_map(|_| TcpStream::connect(&addr).ok())
        .collect();
    // Half a request head from some of them: held, never finished.
    for s in idle.iter_mut().step_by(2) {
        let _ = s.write_all(b"GET /latest/meta-data/ HTTP/1.1\r\n");
    }
    let before = cpu_ticks(pid);
    std::thread::sleep(Duration::from_secs(3));
    let spent = cpu_ticks(pid) - before;
    // 100 ticks a second: the old loop burnt 50 or more a second out of descriptors;
    // idle is 0.
    assert!(spent < 60, "imds-mock used {spent} ticks of CPU while idle");
    // A normal request is still answered (once the held ones time out).
    let started = Instant::now();
    let mut s = TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(b"PUT /latest/api/token HTTP/1.1\r\nHost: x\r\nX-aws-ec2-metadata-token-ttl-seconds: 60\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut reply = String::new();
    let _ = s.read_to_string(&mut reply);
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply:?}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "answered after {:?}",
        started.elapsed()
    );
    drop(idle);
    drop(child);
}
