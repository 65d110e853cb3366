//! A stand-in for systemd's notify socket, and a small local plan for the agent to work
//! through while a test watches what it says.
//!
//! [`NotifyListener`] binds a unix datagram socket in a temporary directory; point the
//! agent's `NOTIFY_SOCKET` at [`NotifyListener::path`]. Every datagram is split into its
//! `KEY=value` lines, each kept with the time it arrived.

use std::ffi::OsStr;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::{rangefleet, TempDir};

/// One line of one datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// When the datagram arrived.
    pub at: Instant,
    /// Which datagram it came in (0, 1, …), so lines sent together can be told apart.
    pub datagram: usize,
    /// The line, e.g. `READY=1`.
    pub line: String,
}

#[derive(Default)]
struct Shared {
    lines: Mutex<Vec<Notification>>,
    arrived: Condvar,
    stop: AtomicBool,
}

/// A unix datagram socket that records what is sent to it, until dropped.
pub struct NotifyListener {
    path: PathBuf,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    _dir: TempDir,
}

impl NotifyListener {
    /// Binds `notify` in a fresh temporary directory and starts receiving.
    pub fn bind() -> NotifyListener {
        let dir = TempDir::new("notify");
        let path = dir.0.join("notify");
        let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
        // The receiving thread looks at `stop` this often.
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("set a read timeout");
        let shared = Arc::new(Shared::default());
        let thread = {
            let shared = shared.clone();
            std::thread::spawn(move || receive(socket, &shared))
        };
        NotifyListener {
            path,
            shared,
            thread: Some(thread),
            _dir: dir,
        }
    }

    /// The socket's path: the value for `NOTIFY_SOCKET`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every line received so far, in arrival order.
    pub fn lines(&self) -> Vec<Notification> {
        self.shared.lines.lock().unwrap().clone()
    }

    /// Waits up to `timeout` for a line that `matches`; returns the first such line.
    pub fn wait_for(
        &self,
        timeout: Duration,
        matches: impl Fn(&str) -> bool,
    ) -> Option<Notification> {
        self.wait_for_at(timeout, |n| matches(&n.line))
    }

    /// Waits up to `timeout` for a notification (line and arrival time) that `matches`;
    /// returns the first such one.
    pub fn wait_for_at(
        &self,
        timeout: Duration,
        matches: impl Fn(&Notification) -> bool,
    ) -> Option<Notification> {
        let deadline = Instant::now() + timeout;
        let mut lines = self.shared.lines.lock().unwrap();
        loop {
            if let Some(n) = lines.iter().find(|n| matches(n)) {
                return Some(n.clone());
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            lines = self.shared.arrived.wait_timeout(lines, left).unwrap().0;
        }
    }

    /// Waits up to `timeout` for exactly `line` (e.g. `READY=1`).
    pub fn wait_for_line(&self, line: &str, timeout: Duration) -> Option<Notification> {
        self.wait_for(timeout, |l| l == line)
    }
}

impl Drop for NotifyListener {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn receive(socket: UnixDatagram, shared: &Shared) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut datagram = 0;
    while !shared.stop.load(Ordering::Relaxed) {
        let n = match socket.recv(&mut buf) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(e) => panic!("receiving on the notify socket: {e}"),
        };
        let at = Instant::now();
        let text = String::from_utf8_lossy(&buf[..n]);
        let mut lines = shared.lines.lock().unwrap();
        lines.extend(
            text.lines()
                .filter(|l| !l.is_empty())
                .map(|l| Notification {
                    at,
                    datagram,
                    line: l.to_string(),
                }),
        );
        datagram += 1;
        shared.arrived.notify_all();
    }
}

/// A new `Command` that runs `program prefix… inner-program inner-args…` with the
/// inner command's environment changes and working directory.
pub fn wrap(program: impl AsRef<OsStr>, prefix: &[&OsStr], inner: &Command) -> Command {
    let mut c = Command::new(program);
    c.args(prefix)
        .arg(inner.get_program())
        .args(inner.get_args());
    for (k, v) in inner.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    if let Some(d) = inner.get_current_dir() {
        c.current_dir(d);
    }
    c
}

/// `inner`, run with `WATCHDOG_PID` set to its own pid, as systemd sets it for the
/// main process (a shell that `exec`s keeps its pid).
pub fn with_own_watchdog_pid(inner: &Command) -> Command {
    let script: &OsStr = OsStr::new(r#"WATCHDOG_PID=$$; export WATCHDOG_PID; exec "$@""#);
    wrap(
        "/bin/sh",
        &[OsStr::new("-c"), script, OsStr::new("sh")],
        inner,
    )
}

/// Runs `cmd` (stdout to /dev/null, stderr kept) to its end within `timeout`, asserts
/// it exited 0, and returns its stderr.
pub fn run_ok_within(cmd: &mut Command, timeout: Duration) -> String {
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the agent");
    let out = output_within(child, timeout);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "agent exited {}:\n{stderr}",
        out.status
    );
    stderr
}

/// Waits up to `timeout` for `child` to exit and returns its output; kills it and
/// panics, with what it printed, if it takes longer.
pub fn output_within(child: Child, timeout: Duration) -> Output {
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(timeout) {
        Ok(out) => out.expect("wait for the child"),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            let out = rx.recv().expect("the waiter ends once the child is killed");
            let out = out.expect("wait for the child");
            panic!(
                "pid {pid} still running after {timeout:?}; stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// `gen` data, a `plan` of it on a SQLite queue, and an agent config, in one temp dir.
pub struct LocalPlan {
    /// Holds everything below.
    pub dir: TempDir,
    /// The agent's config file.
    pub config: PathBuf,
    /// The SQLite queue file.
    pub queue: PathBuf,
    /// The planned job ids, from `_plan.json`.
    pub job_ids: Vec<String>,
}

impl LocalPlan {
    /// One partition (`color=yellow/date=2016-01-01`) of `records` records, planned in
    /// jobs of `records_per_job` for `processor`. `extra_config` is appended to the
    /// config (e.g. a `processors:` block); the agent runs `concurrency` jobs at once.
    pub fn new(
        tag: &str,
        processor: &str,
        records: u64,
        records_per_job: u64,
        concurrency: u32,
        extra_config: &str,
    ) -> LocalPlan {
        let dir = TempDir::new(tag);
        let root = dir.0.clone();
        let data = root.join("data");
        let out = root.join("out");
        let queue = root.join("q.db");
        run_ok(rangefleet().args([
            OsStr::new("gen"),
            OsStr::new("--out"),
            data.as_os_str(),
            OsStr::new("--colors"),
            OsStr::new("yellow"),
            OsStr::new("--days"),
            OsStr::new("2016-01-01"),
            OsStr::new("--records"),
            OsStr::new(&records.to_string()),
        ]));
        run_ok(rangefleet().args([
            "plan",
            &format!("file://{}/", data.display()),
            "--queue",
            &format!("sqlite://{}", queue.display()),
            "--results",
            &format!("file://{}/", out.display()),
            "--processor",
            processor,
            "--records-per-job",
            &records_per_job.to_string(),
        ]));
        let manifest: serde_json::Value = serde_json::from_slice(
            &std::fs::read(out.join("_plan.json")).expect("read _plan.json"),
        )
        .expect("_plan.json is JSON");
        let job_ids = manifest["jobs"]
            .as_array()
            .expect("_plan.json has jobs")
            .iter()
            .map(|j| j.as_str().expect("job ids are strings").to_string())
            .collect();
        let config = root.join("agent.yaml");
        std::fs::write(
            &config,
            format!(
                "queue: sqlite://{}\ninputs: [\"file://{}/\"]\nresults: file://{}/\nconcurrency: {concurrency}\n{extra_config}",
                queue.display(),
                data.display(),
                out.display()
            ),
        )
        .expect("write the agent config");
        LocalPlan {
            dir,
            config,
            queue,
            job_ids,
        }
    }

    /// `rangefleet agent --no-imds --config … --until-empty`, instance `i-0123456789abcdef0`.
    pub fn agent(&self) -> Command {
        let mut c = rangefleet();
        c.arg("agent")
            .arg("--no-imds")
            .arg("--config")
            .arg(&self.config)
            .arg("--until-empty")
            .env("RANGEFLEET_INSTANCE_ID", INSTANCE_ID)
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .env_remove("JOURNAL_STREAM");
        c
    }
}

/// The instance id [`LocalPlan::agent`] runs as.
pub const INSTANCE_ID: &str = "i-0123456789abcdef0";

fn run_ok(c: &mut Command) {
    let out = c.output().expect("run rangefleet");
    assert!(
        out.status.success(),
        "{c:?} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}
