//! A local moto server (S3, SQS, EC2) for tests.
//!
//! `scripts/setup-python` installs moto into a venv (`$RANGEFLEET_VENV`, default
//! `~/.cache/rangefleet/venv`); each test starts its own server on a free port of
//! 127.0.0.1 and it is killed when the `Moto` is dropped. A server starts in about
//! half a second, and one per test keeps tests independent under cargo-nextest, which
//! runs each test in its own process (a shared static would never be dropped, leaving
//! servers behind).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// How long a server gets to answer HTTP after it is started.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Ports are picked by binding port 0 then releasing it, so another process may take
/// one first: try a few.
const START_ATTEMPTS: u32 = 3;

/// A running moto server; killed on drop.
pub struct Moto {
    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub endpoint: String,
    /// Where the server's output goes (kept when the test fails, for debugging).
    pub log: PathBuf,
    child: Child,
}

/// The venv `scripts/setup-python` makes: `$RANGEFLEET_VENV`, else `~/.cache/rangefleet/venv`.
pub fn venv() -> PathBuf {
    if let Some(v) = std::env::var_os("RANGEFLEET_VENV").filter(|v| !v.is_empty()) {
        return PathBuf::from(v);
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    PathBuf::from(home).join(".cache/rangefleet/venv")
}

impl Moto {
    /// Starts `moto_server` on a free port of 127.0.0.1 and waits until it answers HTTP.
    pub fn start() -> anyhow::Result<Moto> {
        let bin = venv().join("bin/moto_server");
        if !bin.is_file() {
            bail!(
                "{} not found: run scripts/setup-python (it installs moto into {}), \
                 or set RANGEFLEET_VENV to a venv that has moto[server]",
                bin.display(),
                venv().display()
            );
        }
        let mut last = None;
        for _ in 0..START_ATTEMPTS {
            match Self::start_once(&bin) {
                Ok(m) => return Ok(m),
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("at least one attempt"))
    }

    fn start_once(bin: &std::path::Path) -> anyhow::Result<Moto> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .context("failed to find a free port on 127.0.0.1")?
            .port();
        let log =
            std::env::temp_dir().join(format!("rangefleet-moto-{}-{port}.log", std::process::id()));
        let out = std::fs::File::create(&log)
            .with_context(|| format!("failed to create moto's log {}", log.display()))?;
        let err = out.try_clone()?;
        let child = Command::new(bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("failed to start {}", bin.display()))?;
        // From here on Drop kills the child, whatever fails next.
        let mut moto = Moto {
            endpoint: format!("http://127.0.0.1:{port}"),
            log,
            child,
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let started = Instant::now();
        loop {
            if let Some(status) = moto.child.try_wait()? {
                bail!(
                    "moto_server on port {port} exited with {status} before answering; its log {}:\n{}",
                    moto.log.display(),
                    tail(&moto.log)
                );
            }
            if answers_http(addr) {
                return Ok(moto);
            }
            if started.elapsed() > START_TIMEOUT {
                bail!(
                    "moto_server on port {port} did not answer HTTP within {START_TIMEOUT:?}; its log {}:\n{}",
                    moto.log.display(),
                    tail(&moto.log)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The environment an AWS client (the binary under test, say) needs to reach this server.
    pub fn aws_env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", self.endpoint.as_str()),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// An SDK config for this server: its endpoint, us-east-1, test credentials, and
    /// nothing from the developer's environment.
    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .empty_test_environment()
            .test_credentials()
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url(&self.endpoint)
            .load()
            .await
    }

    /// From now on moto checks every request's signature and refuses unknown keys,
    /// the test credentials included (`POST /moto-api/reset-auth` with 0 requests still
    /// let through; moto's `INITIAL_NO_AUTH_ACTION_COUNT`).
    pub async fn enforce_auth(&self) {
        let r = reqwest::Client::new()
            .post(format!("{}/moto-api/reset-auth", self.endpoint))
            .body("0")
            .send()
            .await
            .expect("POST /moto-api/reset-auth");
        assert!(r.status().is_success(), "reset-auth: {}", r.status());
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !std::thread::panicking() {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

/// True once something on `addr` answers an HTTP request with a status line.
fn answers_http(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = s.set_write_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 5];
    s.read_exact(&mut head).is_ok() && &head == b"HTTP/"
}

/// The last lines of a log, for an error message.
fn tail(path: &std::path::Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}
