//! The agent under a stand-in for systemd's notify socket (docs/architecture.md): `Type=notify`
//! and `WatchdogSec=`. What systemd would see: READY=1 once booted, STATUS= lines and
//! WATCHDOG=1 pings from the loop's turns, STOPPING=1 after the drain; and the pings
//! never pause for longer than the watchdog interval, even while one long job runs.

use std::ffi::OsStr;
use std::process::Stdio;
use std::time::Duration;

use rangefleet_tests::notify::{
    output_within, run_ok_within, with_own_watchdog_pid, LocalPlan, Notification, NotifyListener,
};

/// The watchdog interval the tests give the agent: short, so a missed ping shows.
const WATCHDOG: Duration = Duration::from_secs(2);

/// How long a whole agent run may take before the test gives up on it.
const RUN_LIMIT: Duration = Duration::from_secs(90);

/// The exec processor for one long job: it tells `argv[1]` (a datagram socket) that it
/// started, then takes 4 s, twice the watchdog interval.
const SLOW_JOB: &str = "import json, socket, sys, time
sys.stdin.buffer.read()
socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b'STARTED=1', sys.argv[1])
time.sleep(4)
print(json.dumps({}))";

fn index_of(lines: &[Notification], line: &str) -> Vec<usize> {
    lines
        .iter()
        .enumerate()
        .filter(|(_, n)| n.line == line)
        .map(|(i, _)| i)
        .collect()
}

fn dump(lines: &[Notification]) -> String {
    let t0 = lines.first().map(|n| n.at);
    lines
        .iter()
        .map(|n| {
            format!(
                "{:>8.3}s #{} {}\n",
                t0.map_or(0.0, |t| n.at.duration_since(t).as_secs_f64()),
                n.datagram,
                n.line
            )
        })
        .collect()
}

/// Checks the order READY=1 … STATUS= … WATCHDOG=1 … STOPPING=1 (last), and that every
/// line is one of those; returns the lines from READY=1 to STOPPING=1.
fn assert_lifecycle(lines: &[Notification]) -> &[Notification] {
    let all = dump(lines);
    for n in lines {
        assert!(
            ["READY=1", "STOPPING=1", "WATCHDOG=1"].contains(&n.line.as_str())
                || n.line.starts_with("STATUS="),
            "unexpected notify line {:?}:\n{all}",
            n.line
        );
    }
    let ready = index_of(lines, "READY=1");
    let stopping = index_of(lines, "STOPPING=1");
    assert_eq!(ready.len(), 1, "one READY=1:\n{all}");
    assert_eq!(
        stopping,
        vec![lines.len() - 1],
        "STOPPING=1 once, last:\n{all}"
    );
    let life = &lines[ready[0]..];
    assert!(
        life.iter()
            .any(|n| n.line.starts_with("STATUS=") && n.line.len() > 7),
        "a non-empty STATUS= between READY=1 and STOPPING=1:\n{all}"
    );
    assert!(
        life.iter().any(|n| n.line == "WATCHDOG=1"),
        "a WATCHDOG=1 between READY=1 and STOPPING=1:\n{all}"
    );
    life
}

/// The longest time between READY=1, each WATCHDOG=1 and STOPPING=1: what systemd's
/// watchdog timer would have had to wait.
fn longest_silence(life: &[Notification]) -> Duration {
    let beats: Vec<_> = life
        .iter()
        .filter(|n| matches!(n.line.as_str(), "READY=1" | "WATCHDOG=1" | "STOPPING=1"))
        .map(|n| n.at)
        .collect();
    beats
        .windows(2)
        .map(|w| w[1].duration_since(w[0]))
        .max()
        .unwrap_or_default()
}

#[test]
fn ready_then_status_and_watchdog_then_stopping() {
    let plan = LocalPlan::new("notify-order", "taxi-stats", 400, 100, 2, "");
    let notify = NotifyListener::bind();
    let mut agent = plan.agent();
    agent
        .env("NOTIFY_SOCKET", notify.path())
        .env("WATCHDOG_USEC", WATCHDOG.as_micros().to_string());
    run_ok_within(&mut with_own_watchdog_pid(&agent), RUN_LIMIT);
    // Every datagram was sent before the agent exited; wait only for the listener.
    notify
        .wait_for_line("STOPPING=1", Duration::from_secs(5))
        .expect("STOPPING=1 arrives");
    assert_lifecycle(&notify.lines());
}

#[test]
fn no_watchdog_pings_when_the_watchdog_is_for_another_process() {
    let plan = LocalPlan::new("notify-otherpid", "taxi-stats", 200, 100, 2, "");
    let notify = NotifyListener::bind();
    run_ok_within(
        plan.agent()
            .env("NOTIFY_SOCKET", notify.path())
            .env("WATCHDOG_USEC", WATCHDOG.as_micros().to_string())
            // pid 1 is never the agent: sd_watchdog_enabled(3) says the watchdog is not ours.
            .env("WATCHDOG_PID", "1"),
        RUN_LIMIT,
    );
    notify
        .wait_for_line("STOPPING=1", Duration::from_secs(5))
        .expect("STOPPING=1 arrives");
    let lines = notify.lines();
    assert!(
        index_of(&lines, "WATCHDOG=1").is_empty(),
        "no WATCHDOG=1 for a watchdog that is not ours:\n{}",
        dump(&lines)
    );
    assert_eq!(index_of(&lines, "READY=1").len(), 1, "{}", dump(&lines));
}

/// One slot, one job that takes twice the watchdog interval: the loop has no free slot
/// to lease with, yet its turns must keep pinging.
fn slow_job_plan(tag: &str, started: &NotifyListener) -> LocalPlan {
    let argv = serde_json::to_string(
        &[
            OsStr::new("/usr/bin/python3"),
            OsStr::new("-c"),
            OsStr::new(SLOW_JOB),
            started.path().as_os_str(),
        ]
        .map(|s| s.to_str().expect("UTF-8 paths")),
    )
    .expect("argv is JSON");
    LocalPlan::new(
        tag,
        "exec",
        100,
        100,
        1,
        &format!("processors:\n  exec:\n    argv: {argv}\n"),
    )
}

#[test]
fn watchdog_pings_continue_while_a_long_job_runs() {
    let started = NotifyListener::bind();
    let plan = slow_job_plan("notify-longjob", &started);
    assert_eq!(plan.job_ids.len(), 1, "one job");
    let notify = NotifyListener::bind();
    let mut agent = plan.agent();
    agent
        .env("NOTIFY_SOCKET", notify.path())
        .env("WATCHDOG_USEC", WATCHDOG.as_micros().to_string());
    let stderr = run_ok_within(&mut with_own_watchdog_pid(&agent), RUN_LIMIT);
    let job = started
        .wait_for_line("STARTED=1", Duration::from_secs(5))
        .unwrap_or_else(|| panic!("the job ran:\n{stderr}"));
    notify
        .wait_for_line("STOPPING=1", Duration::from_secs(5))
        .expect("STOPPING=1 arrives");
    let lines = notify.lines();
    let life = assert_lifecycle(&lines);
    let during_job = life
        .iter()
        .filter(|n| n.line == "WATCHDOG=1" && n.at > job.at)
        .count();
    assert!(
        during_job >= 2,
        "pings while the 4 s job ran (watchdog {WATCHDOG:?}):\n{}",
        dump(&lines)
    );
    let silence = longest_silence(life);
    assert!(
        silence < WATCHDOG,
        "systemd would have killed the agent: {silence:?} without a ping (watchdog {WATCHDOG:?}):\n{}",
        dump(&lines)
    );
}

#[test]
fn watchdog_pings_continue_while_sigterm_drains_a_long_job() {
    let started = NotifyListener::bind();
    let plan = slow_job_plan("notify-drain", &started);
    let notify = NotifyListener::bind();
    let mut agent = plan.agent();
    agent
        .env("NOTIFY_SOCKET", notify.path())
        .env("WATCHDOG_USEC", WATCHDOG.as_micros().to_string());
    let child = with_own_watchdog_pid(&agent)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the agent");
    let pid = child.id();
    // The job has begun: systemd stops the unit now.
    let job = started.wait_for_line("STARTED=1", Duration::from_secs(30));
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("run kill");
    let out = output_within(child, RUN_LIMIT);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let job = job.unwrap_or_else(|| panic!("the job started:\n{stderr}"));
    assert!(kill.success(), "SIGTERM delivered");
    assert!(
        out.status.success(),
        "agent exited {}:\n{stderr}",
        out.status
    );
    notify
        .wait_for_line("STOPPING=1", Duration::from_secs(5))
        .expect("STOPPING=1 arrives");
    let lines = notify.lines();
    let life = assert_lifecycle(&lines);
    let stopping = life.last().expect("STOPPING=1").at;
    assert!(
        stopping.duration_since(job.at) >= Duration::from_secs(3),
        "the drain finished the 4 s job before STOPPING=1:\n{}",
        dump(&lines)
    );
    let silence = longest_silence(life);
    assert!(
        silence < WATCHDOG,
        "systemd would have killed the draining agent: {silence:?} without a ping:\n{}",
        dump(&lines)
    );
}

#[test]
fn a_stuck_loop_stops_the_pings() {
    // Another process holds the queue's write lock for 4 s: the agent's next lease blocks
    // in SQLite's busy wait, its loop makes no turn, and the pings stop until it moves.
    let plan = LocalPlan::new("notify-stuck", "taxi-stats", 200, 100, 2, "");
    let notify = NotifyListener::bind();
    let mut agent = plan.agent();
    agent
        .env("NOTIFY_SOCKET", notify.path())
        .env("WATCHDOG_USEC", WATCHDOG.as_micros().to_string());
    // Not --until-empty: the agent idles on the empty queue, leasing every second.
    let args: Vec<_> = agent
        .get_args()
        .filter(|a| *a != "--until-empty")
        .map(|a| a.to_os_string())
        .collect();
    let mut idle = std::process::Command::new(agent.get_program());
    idle.args(&args);
    for (k, v) in agent.get_envs() {
        match v {
            Some(v) => idle.env(k, v),
            None => idle.env_remove(k),
        };
    }
    let mut child = with_own_watchdog_pid(&idle)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the agent");
    notify
        .wait_for_line("READY=1", Duration::from_secs(30))
        .expect("READY=1");
    // Wait for it to finish the two jobs, and to ping while idle after that.
    let done = notify
        .wait_for(RUN_LIMIT, |l| {
            l.starts_with("STATUS=") && l.contains("; 0 running, 2 done")
        })
        .unwrap_or_else(|| panic!("the two jobs never finished:\n{}", dump(&notify.lines())));
    notify
        .wait_for_at(RUN_LIMIT, |n| n.line == "WATCHDOG=1" && n.at > done.at)
        .unwrap_or_else(|| panic!("no ping while idle:\n{}", dump(&notify.lines())));
    let lock = r#"
import sqlite3, sys, time
con = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=10)
con.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(4)
con.execute("ROLLBACK")
"#;
    let held_from = std::time::Instant::now();
    let out = std::process::Command::new("python3")
        .args(["-c", lock])
        .arg(&plan.queue)
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // After the lock: the loop turns again and pings resume (what is asserted below).
    notify.wait_for_at(Duration::from_secs(10), |n| {
        n.line == "WATCHDOG=1" && n.at.duration_since(held_from) > Duration::from_secs(5)
    });
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().expect("wait for the agent");
    assert!(status.success(), "agent exited {status}");
    notify
        .wait_for_line("STOPPING=1", Duration::from_secs(5))
        .expect("STOPPING=1");
    let lines = notify.lines();
    let pings: Vec<std::time::Instant> = lines
        .iter()
        .filter(|n| n.line == "WATCHDOG=1")
        .map(|n| n.at)
        .collect();
    let gap_in_lock = pings
        .windows(2)
        .filter(|w| w[1] > held_from)
        .map(|w| w[1].duration_since(w[0]))
        .max()
        .unwrap_or_default();
    assert!(
        gap_in_lock >= Duration::from_secs(3),
        "the pings stopped while the loop was stuck (longest gap {gap_in_lock:?}):\n{}",
        dump(&lines)
    );
    let after = pings
        .iter()
        .filter(|t| t.duration_since(held_from) > Duration::from_secs(5))
        .count();
    assert!(
        after >= 1,
        "pings resumed once the loop moved:\n{}",
        dump(&lines)
    );
}

/// docs/operations.md#boot-imds-troubleshooting: against an IMDS that does not answer
/// (a closed port), the agent says so within seconds, a WARN `imds_unanswered` and a
/// `STATUS=` line naming the endpoint, instead of nothing until the boot deadline.
#[test]
fn an_unanswering_imds_gets_a_warning_and_a_status_line_within_seconds() {
    use rangefleet_tests::fleet::{event, AgentProc};
    let port = rangefleet_tests::free_port(); // bound and released: nothing listens
    let endpoint = format!("http://127.0.0.1:{port}");
    let notify = NotifyListener::bind();
    let dir = rangefleet_tests::TempDir::new("imds-silent");
    let mut cmd = rangefleet_tests::rangefleet();
    cmd.args(["agent", "--log-format", "json", "--boot-deadline", "60s"])
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", &endpoint)
        .env("NOTIFY_SOCKET", notify.path())
        .env_remove("RUST_LOG");
    let started = std::time::Instant::now();
    let mut agent = AgentProc::spawn(cmd, "imds-silent", dir.0.join("agent.log"));
    // The agent warns after 2 s of failures; 20 s is the generous bound.
    let bound = Duration::from_secs(20);
    let warn = agent.wait_for_event(bound, |e| event(e) == "imds_unanswered");
    let warned_after = started.elapsed();
    assert_eq!(warn["level"], "WARN", "{warn}");
    assert_eq!(warn["fields"]["endpoint"], endpoint.as_str(), "{warn}");
    assert!(warn["fields"]["attempts"].as_u64() >= Some(1), "{warn}");
    let want = format!("STATUS=waiting for the instance metadata service at {endpoint}: ");
    let status = notify
        .wait_for(bound, |l| l.starts_with(&want))
        .unwrap_or_else(|| panic!("{want}… within {bound:?}:\n{}", dump(&notify.lines())));
    assert!(status.line.contains("exit 75 in "), "{}", status.line);
    assert!(warned_after < bound, "warned after {warned_after:?}");
    assert!(
        agent.try_wait().is_none(),
        "still retrying until the deadline:\n{}",
        agent.log_tail()
    );
    agent.kill();
}
