//! Shared harness for rangefleet's black-box tests: the real binary, and local servers
//! on 127.0.0.1 with free ports, started by the test and stopped when dropped.

pub mod asg;
pub mod ec2;
pub mod fleet;
pub mod journal;
pub mod moto;
pub mod netmodel;
pub mod nginx;
pub mod notify;
pub mod proxy;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// The `rangefleet` binary under test: `$RANGEFLEET_BIN`, else the one cargo built next
/// to this test executable (`target/<profile>/rangefleet`).
pub fn rangefleet_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("RANGEFLEET_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> → target/<profile>/rangefleet
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let bin = dir.join("rangefleet");
    assert!(
        bin.exists(),
        "{} not found: run `cargo build -p rangefleet` first, or set RANGEFLEET_BIN",
        bin.display()
    );
    bin
}

/// The developer's AWS settings, which no test may inherit: credentials, endpoints,
/// region and the metadata service's address.
pub const DEVELOPER_AWS_ENV: [&str; 9] = [
    "AWS_PROFILE",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_ENDPOINT_URL",
    "AWS_EC2_METADATA_SERVICE_ENDPOINT",
    "AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
];

/// A `Command` for the binary under test, with the AWS settings of the developer's
/// environment removed so tests never reach a real account.
pub fn rangefleet() -> Command {
    let mut c = Command::new(rangefleet_bin());
    for var in DEVELOPER_AWS_ENV {
        c.env_remove(var);
    }
    // Never let a test fall through to the real instance metadata service.
    c.env("AWS_EC2_METADATA_DISABLED", "true");
    // Nor read this machine's /etc/rangefleet/agent.yaml: tests that want an
    // on-instance config file point this at one.
    c.env(
        "RANGEFLEET_LOCAL_CONFIG",
        "/nonexistent/rangefleet/agent.yaml",
    );
    // Nor power anything off.
    c.env("RANGEFLEET_POWER_OFF_COMMAND", "/bin/false");
    c.env("RANGEFLEET_LOG_FORMAT", "text");
    c
}

/// `RUST_LOG` for an agent whose tests read every job's lines (`job_started`,
/// `job_done`, …): they are debug, under the `rangefleet::jobs` target
/// (docs/operations.md#the-journal).
pub const JOB_LINES: &str = "info,rangefleet::jobs=debug";

/// A running `rangefleet imds-mock` process; killed on drop.
pub struct ImdsMock {
    /// Base URL, no trailing slash.
    pub url: String,
    child: Child,
}

impl ImdsMock {
    /// Starts `rangefleet imds-mock ARGS…` on a free port and waits for its URL line.
    pub fn start(args: &[&str]) -> ImdsMock {
        let mut child = rangefleet()
            .arg("imds-mock")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start rangefleet imds-mock");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read imds-mock's URL line");
        let url = line.trim().to_string();
        assert!(
            url.starts_with("http://127.0.0.1:"),
            "unexpected first line {url:?}"
        );
        ImdsMock { url, child }
    }

    /// Request counts by method and path, from `/_mock/stats`.
    pub async fn stats(&self) -> serde_json::Value {
        let body = reqwest::get(format!("{}/_mock/stats", self.url))
            .await
            .expect("GET /_mock/stats")
            .bytes()
            .await
            .expect("stats body");
        serde_json::from_slice(&body).expect("stats are JSON")
    }

    /// How many `method path` requests the mock has seen.
    pub async fn count(&self, method: &str, path: &str) -> u64 {
        self.stats().await[method][path].as_u64().unwrap_or(0)
    }
}

impl Drop for ImdsMock {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free TCP port on 127.0.0.1 (bound then released; fine for tests that bind at once).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// A fresh temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// Creates one under the system temp dir.
    pub fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!(
            "rangefleet-{tag}-{}-{:x}",
            std::process::id(),
            rand_u64()
        ));
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
    );
    h.finish()
}
