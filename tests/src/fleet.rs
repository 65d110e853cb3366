//! A whole run on one machine, so each end-to-end test stays short: `gen` data into a
//! temporary directory, an agent config, `plan` onto a SQLite queue, agent processes
//! logging JSON lines to files, `reduce --json`, and the queue and the result documents
//! read back.
//!
//! Everything goes through the binary's command line except reading the queue, which
//! uses the library's `SqliteQueue` (the same code the agent runs).

use std::collections::BTreeSet;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rangefleet::contract::summary::InstanceSummary;
use rangefleet::queue::sqlite::SqliteQueue;
use rangefleet::queue::{Queue, QueueStats};
use serde_json::Value;

use crate::{rangefleet, TempDir};

/// How often a wait looks again.
const POLL: Duration = Duration::from_millis(10);

/// What `gen` makes: `colors` × `days` partitions of `records` records, every
/// `bad_every`-th one bad.
#[derive(Debug, Clone)]
pub struct Gen {
    /// `--colors`, comma-separated.
    pub colors: String,
    /// `--days`, `FIRST..LAST`.
    pub days: String,
    /// `--records` per partition.
    pub records: u64,
    /// `--bad-every`.
    pub bad_every: u64,
}

/// One run's directory: `data/` (gen's output), `out/` (results), `q.db` (the queue),
/// and the agents' configs and logs. Removed on drop.
pub struct Fleet {
    /// The temporary directory holding it all.
    pub dir: TempDir,
    /// Where `gen` writes, and what agents are allowed to read.
    pub data: PathBuf,
    /// The results folder.
    pub out: PathBuf,
    /// The SQLite queue's file.
    pub queue_db: PathBuf,
}

impl Fleet {
    /// A fresh run directory; nothing generated or planned yet.
    pub fn new(tag: &str) -> Fleet {
        let dir = TempDir::new(tag);
        Fleet {
            data: dir.0.join("data"),
            out: dir.0.join("out"),
            queue_db: dir.0.join("q.db"),
            dir,
        }
    }

    /// `file:///…/data/`.
    pub fn data_url(&self) -> String {
        dir_url(&self.data)
    }

    /// `file:///…/out/`.
    pub fn results_url(&self) -> String {
        dir_url(&self.out)
    }

    /// `sqlite:///…/q.db`.
    pub fn queue_url(&self) -> String {
        format!("sqlite://{}", self.queue_db.display())
    }

    /// Runs `rangefleet gen` into `data/`.
    pub fn gen(&self, g: &Gen) {
        run_ok(rangefleet().args([
            "gen",
            "--out",
            path_str(&self.data),
            "--colors",
            &g.colors,
            "--days",
            &g.days,
            "--records",
            &g.records.to_string(),
            "--bad-every",
            &g.bad_every.to_string(),
        ]));
    }

    /// gen's `_expected.json`: `{"partitions": {…}, "total": {…}}`.
    pub fn expected(&self) -> Value {
        read_json(&self.data.join("_expected.json"))
    }

    /// Writes an agent config named `name` allowing `inputs`, with this run's queue and
    /// results; returns its path.
    pub fn config(
        &self,
        name: &str,
        inputs: &[String],
        concurrency: usize,
        lease_seconds: u64,
    ) -> PathBuf {
        let inputs = serde_json::to_string(inputs).expect("inputs serialise");
        let yaml = format!(
            "queue: {}\ninputs: {inputs}\nresults: {}\nconcurrency: {concurrency}\nlease_seconds: {lease_seconds}\n",
            self.queue_url(),
            self.results_url()
        );
        let path = self.dir.0.join(format!("{name}.yaml"));
        std::fs::write(&path, yaml).expect("write the agent config");
        path
    }

    /// `rangefleet plan SOURCE` onto this run's queue and results with taxi-stats, with
    /// extra environment `env`; returns the planned job ids (from `_plan.json`).
    pub fn plan(
        &self,
        source: &str,
        records_per_job: u64,
        env: &[(String, String)],
    ) -> Vec<String> {
        plan_into(
            source,
            &self.queue_url(),
            &self.results_url(),
            records_per_job,
            env,
        );
        let manifest = read_json(&self.out.join("_plan.json"));
        manifest["jobs"]
            .as_array()
            .expect("_plan.json has jobs")
            .iter()
            .map(|j| j.as_str().expect("job ids are strings").to_string())
            .collect()
    }

    /// Starts `rangefleet agent --no-imds --config CONFIG --instance-id ID --log-format
    /// json`, plus `--until-empty` when asked, with extra environment `env`; its stderr
    /// goes to `<id>.log` in the run directory.
    pub fn agent(
        &self,
        config: &Path,
        instance_id: &str,
        until_empty: bool,
        env: &[(String, String)],
    ) -> AgentProc {
        let mut cmd = rangefleet();
        cmd.args(["agent", "--no-imds", "--config"])
            .arg(config)
            .args(["--instance-id", instance_id]);
        self.spawn_agent(cmd, instance_id, until_empty, env)
    }

    /// Starts `rangefleet agent` booting from IMDS at `imds_url` (the config comes from
    /// the user-data the mock serves), JSON logs to `<id>.log`.
    pub fn agent_imds(
        &self,
        imds_url: &str,
        instance_id: &str,
        until_empty: bool,
        env: &[(String, String)],
    ) -> AgentProc {
        let mut cmd = rangefleet();
        cmd.arg("agent")
            .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds_url);
        self.spawn_agent(cmd, instance_id, until_empty, env)
    }

    /// A `#cloud-config` user-data file holding this run's agent config with `inputs`
    /// and `extra` YAML lines; returns its path.
    pub fn userdata(&self, name: &str, inputs: &[String], extra: &str) -> PathBuf {
        let config = format!(
            "queue: {}\ninputs: {}\nresults: {}\n{extra}",
            self.queue_url(),
            serde_json::to_string(inputs).expect("inputs serialise"),
            self.results_url()
        );
        let indented: String = config.lines().map(|l| format!("      {l}\n")).collect();
        let text = format!(
            "#cloud-config\nwrite_files:\n  - path: /etc/rangefleet/agent.yaml\n    content: |\n{indented}"
        );
        let path = self.dir.0.join(format!("{name}.user-data"));
        std::fs::write(&path, text).expect("write the user-data");
        path
    }

    fn spawn_agent(
        &self,
        mut cmd: std::process::Command,
        instance_id: &str,
        until_empty: bool,
        env: &[(String, String)],
    ) -> AgentProc {
        // The tests follow each job through its lines, which are debug.
        cmd.args(["--log-format", "json"])
            .env("RUST_LOG", crate::JOB_LINES);
        if until_empty {
            cmd.arg("--until-empty");
        }
        cmd.envs(env.iter().map(|(k, v)| (k, v)));
        AgentProc::spawn(
            cmd,
            instance_id,
            self.dir.0.join(format!("{instance_id}.log")),
        )
    }

    /// `rangefleet reduce --json`: its exit code and output.
    pub fn reduce(&self) -> (i32, Value) {
        let out = rangefleet()
            .args(["reduce", "--results", &self.results_url(), "--json"])
            .output()
            .expect("run rangefleet reduce");
        let code = out.status.code().unwrap_or(-1);
        let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "reduce (exit {code}) printed no JSON ({e}); stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (code, v)
    }

    /// The queue, opened as the agents open it.
    pub fn queue(&self) -> SqliteQueue {
        SqliteQueue::open(&self.queue_db).expect("open the SQLite queue")
    }

    /// Visible, in-flight and dead counts.
    pub fn stats(&self) -> QueueStats {
        let q = self.queue();
        block_on(async move { q.stats().await }).expect("queue stats")
    }

    /// The dead letters: (body, reason, receive count).
    pub fn dead_letters(&self) -> Vec<(String, String, u32)> {
        self.queue().dead_letters().expect("read the dead letters")
    }

    /// The result document of `job_id`, if one was written.
    pub fn result(&self, job_id: &str) -> Option<Value> {
        let path = self.out.join(rangefleet::contract::job::result_key(job_id));
        path.exists().then(|| read_json(&path))
    }

    /// Names of the result documents written so far (not `_plan.json`, not `_instances/`,
    /// not the `<key>#N` staging files a writer killed mid-put leaves behind).
    pub fn result_names(&self) -> Vec<String> {
        let Ok(dir) = std::fs::read_dir(&self.out) else {
            return Vec::new();
        };
        let mut names: Vec<String> = dir
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| !n.starts_with('_') && !n.starts_with('.') && n.ends_with(".json"))
            .collect();
        names.sort();
        names
    }

    /// `_instances/<id>.json`, if the agent wrote one.
    pub fn instance_summary(&self, instance_id: &str) -> Option<InstanceSummary> {
        let path = self
            .out
            .join("_instances")
            .join(format!("{instance_id}.json"));
        path.exists().then(|| {
            let body = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            InstanceSummary::from_slice(&body)
                .unwrap_or_else(|e| panic!("{} is not a summary: {e}", path.display()))
        })
    }
}

/// `rangefleet plan SOURCE --queue QUEUE --results RESULTS --processor taxi-stats`.
pub fn plan_into(
    source: &str,
    queue: &str,
    results: &str,
    records_per_job: u64,
    env: &[(String, String)],
) {
    run_ok(
        rangefleet()
            .args([
                "plan",
                source,
                "--queue",
                queue,
                "--results",
                results,
                "--processor",
                "taxi-stats",
                "--records-per-job",
                &records_per_job.to_string(),
            ])
            .envs(env.iter().map(|(k, v)| (k, v))),
    );
}

/// Takes every message out of a queue, leaving it empty: their bodies, in queue order.
pub fn drain_bodies(queue: &SqliteQueue) -> Vec<String> {
    let q = queue.clone();
    block_on(async move {
        let mut bodies = Vec::new();
        loop {
            let leases = q
                .lease(100, Duration::from_secs(60), Duration::ZERO)
                .await
                .expect("lease");
            if leases.is_empty() {
                return bodies;
            }
            for l in leases {
                q.ack(&l).await.expect("ack");
                bodies.push(l.body);
            }
        }
    })
}

/// Puts `bodies` on a queue as they are.
pub fn enqueue(queue: &SqliteQueue, bodies: Vec<String>) {
    let q = queue.clone();
    block_on(async move { q.enqueue(&bodies).await }).expect("enqueue");
}

/// One running agent process; killed on drop if still running.
pub struct AgentProc {
    /// Its `--instance-id`.
    pub instance_id: String,
    /// Its stderr: JSON lines.
    pub log: PathBuf,
    child: Child,
}

impl AgentProc {
    /// Starts `cmd` (a `rangefleet agent …` command, environment set) with its stderr
    /// going to `log`.
    pub fn spawn(mut cmd: std::process::Command, instance_id: &str, log: PathBuf) -> AgentProc {
        let stderr = std::fs::File::create(&log).expect("create the agent's log");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start rangefleet agent");
        AgentProc {
            instance_id: instance_id.to_string(),
            log,
            child,
        }
    }

    /// SIGKILL, then reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// How many `job_done` events it logged.
    pub fn jobs_done(&self) -> usize {
        self.events()
            .iter()
            .filter(|e| event(e) == "job_done")
            .count()
    }

    /// The process id.
    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).expect("pid fits an i32")
    }

    /// Sends `sig` (a `libc::SIG…`).
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) with our own child's pid and a valid signal number.
        let rc = unsafe { libc::kill(self.pid(), sig) };
        assert_eq!(rc, 0, "kill({}, {sig}) failed", self.pid());
    }

    /// SIGSTOP, then waits until every thread of the process is stopped, so what its
    /// log and the results folder say no longer changes under the reader.
    pub fn freeze(&self) {
        self.signal(libc::SIGSTOP);
        let deadline = Instant::now() + Duration::from_secs(10);
        let tasks = PathBuf::from(format!("/proc/{}/task", self.pid()));
        loop {
            let all_stopped = std::fs::read_dir(&tasks)
                .expect("list the agent's threads")
                .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("stat")).ok())
                .all(|stat| {
                    // "pid (comm) S …": the state follows the last ')'.
                    stat.rsplit_once(')')
                        .and_then(|(_, rest)| rest.split_whitespace().next())
                        .is_some_and(|s| s == "T" || s == "t")
                });
            if all_stopped {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "agent {} did not stop",
                self.instance_id
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// The exit status, if it has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("wait for the agent")
    }

    /// Waits for the agent to exit, at most `timeout` (then it is killed and the test
    /// fails with the end of its log).
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "agent {} did not exit within {timeout:?}; the end of its log:\n{}",
                    self.instance_id,
                    self.log_tail()
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// Its whole stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last 30 lines of its stderr, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = self.stderr();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Every complete JSON line logged so far (a line still being written is left out).
    pub fn events(&self) -> Vec<Value> {
        let text = self.stderr();
        let complete = text.rsplit_once('\n').map_or("", |(done, _)| done);
        complete
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Waits until an event matching `pred` is logged, at most `timeout`; returns it.
    pub fn wait_for_event(&mut self, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(ev) = self.events().into_iter().find(&pred) {
                return ev;
            }
            if let Some(status) = self.try_wait() {
                panic!(
                    "agent {} exited ({status}) before logging what the test waits for; its log:\n{}",
                    self.instance_id,
                    self.log_tail()
                );
            }
            assert!(
                Instant::now() < deadline,
                "agent {} did not log what the test waits for within {timeout:?}; its log:\n{}",
                self.instance_id,
                self.log_tail()
            );
            std::thread::sleep(POLL);
        }
    }

    /// Job ids it logged `job_started` for and no `job_done` after.
    pub fn started_not_done(&self) -> BTreeSet<String> {
        let mut open = BTreeSet::new();
        for ev in self.events() {
            let Some(id) = job_field(&ev, "job_id") else {
                continue;
            };
            match event(&ev) {
                "job_started" => {
                    open.insert(id.to_string());
                }
                "job_done" => {
                    open.remove(id);
                }
                _ => {}
            }
        }
        open
    }
}

impl Drop for AgentProc {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The stable name of an event (its `event` field): tests key on this, never on the
/// wording of the message, which is for people.
pub fn event(ev: &Value) -> &str {
    ev["fields"]["event"].as_str().unwrap_or("")
}

/// A field of the `job` span an event was logged in (`job_id`, `source`, …).
pub fn job_field<'a>(ev: &'a Value, field: &str) -> Option<&'a str> {
    (ev["span"]["name"] == "job")
        .then(|| ev["span"][field].as_str())
        .flatten()
}

/// An event's timestamp (RFC 3339, UTC, as tracing's JSON layer writes it) as seconds
/// since the Unix epoch.
pub fn timestamp(ev: &Value) -> f64 {
    let ts = ev["timestamp"].as_str().expect("events have a timestamp");
    parse_rfc3339(ts).unwrap_or_else(|| panic!("bad timestamp {ts:?}"))
}

/// `YYYY-MM-DDTHH:MM:SS[.fff…]Z` as seconds since the Unix epoch.
pub fn parse_rfc3339(ts: &str) -> Option<f64> {
    let ts = ts.strip_suffix('Z')?;
    let (date, time) = ts.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.splitn(3, ':');
    let (h, min) = (
        t.next()?.parse::<i64>().ok()?,
        t.next()?.parse::<i64>().ok()?,
    );
    let sec: f64 = t.next()?.parse().ok()?;
    // Days from the civil date (Howard Hinnant's algorithm), March-based years.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + h * 3600 + min * 60) as f64 + sec)
}

/// Runs a future to completion on a runtime of its own, on a thread of its own, so it
/// works from plain tests and from inside a tokio test alike.
pub fn block_on<F>(f: F) -> F::Output
where
    F: Future + Send,
    F::Output: Send,
{
    std::thread::scope(|s| {
        s.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime")
                .block_on(f)
        })
        .join()
        .expect("block_on thread")
    })
}

/// Reads a JSON file.
pub fn read_json(path: &Path) -> Value {
    let bytes =
        std::fs::read(path).unwrap_or_else(|e| panic!("failed to read {}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// `file:///abs/dir/`.
pub fn dir_url(dir: &Path) -> String {
    format!("file://{}/", dir.display())
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("temporary paths are UTF-8")
}

/// Runs a command to completion and fails the test, with its output, unless it exits 0.
fn run_ok(cmd: &mut std::process::Command) {
    let out = cmd.output().expect("run rangefleet");
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_parse() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0.0));
        assert_eq!(parse_rfc3339("2000-03-01T00:00:01.5Z"), Some(951_868_801.5));
        assert_eq!(parse_rfc3339("2026-01-01T00:00:00Z"), Some(1_767_225_600.0));
        assert_eq!(parse_rfc3339("2026-01-01 00:00:00"), None);
    }
}
