//! `exec` drills with the agent binary: big jobs stream to the command (the agent's
//! memory is bounded by a buffer, not by the job), and nothing the command started
//! survives the job when a SIGTERM drain abandons it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rangefleet_tests::fleet::{event, AgentProc, Fleet};
use rangefleet_tests::rangefleet;

/// 512 MiB: each of the two big jobs.
const BIG: u64 = 512 << 20;
/// Record length of the big jobs (divides [`BIG`]).
const RECORD: u64 = 64;

/// The agent config for this fleet with `processors.exec.argv = argv`.
fn exec_config(fleet: &Fleet, argv: &[&str], extra: &str) -> PathBuf {
    let yaml = format!(
        "queue: {}\ninputs: [{}]\nresults: {}\nconcurrency: 2\nlease_seconds: 60\n\
         processors:\n  exec:\n    argv: {}\n    timeout_seconds: 600\n{extra}",
        fleet.queue_url(),
        serde_json::to_string(&fleet.data_url()).unwrap(),
        fleet.results_url(),
        serde_json::to_string(argv).unwrap(),
    );
    let path = fleet.dir.0.join("agent.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

/// `rangefleet plan` of `data/` with the exec processor.
fn plan_exec(fleet: &Fleet, record_length: u64, records_per_job: u64) {
    let out = rangefleet()
        .args(["plan", &fleet.data_url(), "--queue", &fleet.queue_url()])
        .args(["--results", &fleet.results_url(), "--processor", "exec"])
        .args(["--record-length", &record_length.to_string()])
        .args(["--records-per-job", &records_per_job.to_string()])
        .output()
        .expect("run rangefleet plan");
    assert!(
        out.status.success(),
        "plan failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A field of /proc/PID/status, in kB.
fn proc_status_kb(pid: i32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

fn wait_for_jobs_done(agent: &mut AgentProc, n: usize, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while agent.jobs_done() < n {
        if let Some(status) = agent.try_wait() {
            panic!("agent exited ({status}) early:\n{}", agent.log_tail());
        }
        assert!(
            Instant::now() < deadline,
            "{n} jobs not done within {timeout:?}:\n{}",
            agent.log_tail()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Two `exec` jobs of 512 MiB each, run at once: the agent's peak RSS (VmHWM) stays
/// under 64 MiB, and each command still saw every byte of its range.
#[test]
fn two_512_mib_exec_jobs_keep_the_agent_under_64_mib() {
    let fleet = Fleet::new("exec-rss");
    for color in ["a", "b"] {
        let dir = fleet.data.join(format!("color={color}"));
        std::fs::create_dir_all(&dir).unwrap();
        // Sparse: 512 MiB of zeros made at once, costing no disk.
        let f = std::fs::File::create(dir.join("part-0000.rec")).unwrap();
        f.set_len(BIG).unwrap();
    }
    plan_exec(&fleet, RECORD, BIG / RECORD);
    let config = exec_config(&fleet, &["/usr/bin/wc", "-c"], "");
    let mut agent = fleet.agent(&config, "i-exec-rss", false, &[]);
    wait_for_jobs_done(&mut agent, 2, Duration::from_secs(600));
    let peak_kb = proc_status_kb(agent.pid(), "VmHWM");
    agent.signal(libc::SIGTERM);
    assert!(agent.wait(Duration::from_secs(60)).success());
    eprintln!("agent peak RSS (VmHWM) after two 512 MiB exec jobs: {peak_kb} kB");
    for color in ["a", "b"] {
        let job = format!("color={color}/part-0000.rec#0+{}", BIG / RECORD);
        let result = fleet
            .result(&job)
            .unwrap_or_else(|| panic!("no result for {job}"));
        assert_eq!(result["output"], serde_json::json!(BIG), "{result}");
        assert_eq!(result["bytes_read"], serde_json::json!(BIG), "{result}");
    }
    assert!(
        peak_kb < 64 * 1024,
        "the agent peaked at {peak_kb} kB of RSS for two 512 MiB exec jobs (bound: 64 MiB)"
    );
}

/// True while `pid` is a live process (not gone, not a zombie left to a reaper).
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => false,
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
    }
}

/// Live processes whose process group is `pgid`.
fn group_members(pgid: i32) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                // "pid (comm) state ppid pgrp …"
                let fields: Vec<&str> = stat
                    .rsplit_once(')')
                    .map_or(vec![], |(_, rest)| rest.split_whitespace().collect());
                fields.first().is_some_and(|s| *s != "Z" && *s != "X")
                    && fields.get(2).and_then(|g| g.parse::<i32>().ok()) == Some(pgid)
            })
        })
        .collect()
}

fn read_pid(path: &Path, timeout: Duration) -> i32 {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            if let Ok(pid) = text.trim().parse() {
                return pid;
            }
        }
        assert!(Instant::now() < deadline, "{} not written", path.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// An `exec` command that forks a grandchild and waits; the agent is told to stop
/// with SIGTERM and abandons the job: neither the command nor its grandchild, nor
/// anything else in the job's process group, survives the agent.
#[test]
fn a_sigterm_drain_leaves_no_process_of_an_exec_job() {
    let fleet = Fleet::new("exec-group");
    let dir = fleet.data.join("color=a");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("part-0000.rec"), vec![b'x'; 80 * 10]).unwrap();
    plan_exec(&fleet, 80, 10);
    let pids = fleet.dir.0.join("pids");
    std::fs::create_dir_all(&pids).unwrap();
    let script = format!(
        "cat >/dev/null; sleep 300 & echo $! > {p}/grandchild.tmp; mv {p}/grandchild.tmp {p}/grandchild; \
         echo $$ > {p}/child.tmp; mv {p}/child.tmp {p}/child; sleep 300; echo 1",
        p = pids.display()
    );
    // A margin as long as the SIGTERM budget: the drain abandons the job at once.
    let config = exec_config(
        &fleet,
        &["/bin/sh", "-c", &script],
        "spot:\n  drain_margin_seconds: 90\n",
    );
    let mut agent = fleet.agent(&config, "i-exec-group", false, &[]);
    let child = read_pid(&pids.join("child"), Duration::from_secs(60));
    let grandchild = read_pid(&pids.join("grandchild"), Duration::from_secs(60));
    assert!(alive(child) && alive(grandchild), "the job's processes run");
    assert!(
        group_members(child).contains(&grandchild),
        "the grandchild is in the command's process group"
    );
    agent.signal(libc::SIGTERM);
    assert!(agent.wait(Duration::from_secs(60)).success());
    assert!(
        agent.events().iter().any(|e| event(e) == "job_released"),
        "the drain released the job:\n{}",
        agent.log_tail()
    );
    // Killed processes may stay zombies for a moment until reaped.
    let deadline = Instant::now() + Duration::from_secs(10);
    while (alive(child) || alive(grandchild) || !group_members(child).is_empty())
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    let survivors = group_members(child);
    for pid in [child, grandchild] {
        if alive(pid) {
            // SAFETY: kill(2) on a pid this test read from the job's own pid file.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
    assert!(!alive(child), "the command {child} survived the agent");
    assert!(
        !alive(grandchild),
        "the grandchild {grandchild} survived the agent"
    );
    assert!(
        survivors.is_empty(),
        "processes of the job survived: {survivors:?}"
    );
}
