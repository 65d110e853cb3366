//! The metrics endpoint (docs/operations.md#metrics), on the real binary: a drill on a
//! `file://` store and a SQLite queue, scraped while it works. The counters move; once
//! the agent has drained, the last values it served are its instance summary's; and
//! with the default config nothing listens.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use rangefleet::contract::summary::InstanceSummary;
use rangefleet_tests::fleet::{event, AgentProc};
use rangefleet_tests::notify::{LocalPlan, INSTANCE_ID};
use rangefleet_tests::{free_port, rangefleet};

/// How long the whole drill may take (it takes a few seconds).
const LIMIT: Duration = Duration::from_secs(120);

/// `curl -i http://127.0.0.1:PORT/PATH`, as an operator would scrape it: the status
/// line and the body; `None` when nothing answers (curl fails to connect).
fn scrape(port: u16, path: &str) -> Option<(String, String)> {
    let out = std::process::Command::new("curl")
        .args(["-sS", "-i", "--max-time", "10"])
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .output()
        .expect("curl runs (scripts/test installs it)");
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).expect("UTF-8 from the endpoint");
    let (head, body) = text.split_once("\r\n\r\n")?;
    Some((head.lines().next()?.to_string(), body.to_string()))
}

/// The samples of a Prometheus text body: `name{labels}` → value.
fn samples(body: &str) -> BTreeMap<String, f64> {
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (name, value) = l.rsplit_once(' ').expect("`name value`");
            (name.to_string(), value.parse().expect("a number"))
        })
        .collect()
}

fn get(m: &BTreeMap<String, f64>, name: &str) -> f64 {
    *m.get(name)
        .unwrap_or_else(|| panic!("{name} in the metrics: {m:#?}"))
}

/// `rangefleet agent --no-imds --config …` until SIGTERM, JSON logs, default log level.
fn agent(plan: &LocalPlan, log: &Path) -> AgentProc {
    let mut cmd = rangefleet();
    cmd.args(["agent", "--no-imds", "--log-format", "json", "--config"])
        .arg(&plan.config)
        .env("RANGEFLEET_INSTANCE_ID", INSTANCE_ID)
        .env_remove("RUST_LOG")
        .env_remove("NOTIFY_SOCKET");
    AgentProc::spawn(cmd, INSTANCE_ID, log.to_path_buf())
}

/// The TCP ports `pid` listens on (its socket inodes matched against /proc/net/tcp*).
fn listening_ports(pid: i32) -> Vec<u16> {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("list the agent's fds")
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().into_owned();
            Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
        })
        .collect();
    let mut ports = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for row in text.lines().skip(1) {
            let f: Vec<&str> = row.split_whitespace().collect();
            // local_address is HEX_IP:HEX_PORT; st 0A is LISTEN; the inode is field 9.
            if f.len() > 9 && f[3] == "0A" && inodes.iter().any(|i| i == f[9]) {
                let port = f[1].rsplit_once(':').map(|(_, p)| p).unwrap_or("0");
                ports.push(u16::from_str_radix(port, 16).expect("a hex port"));
            }
        }
    }
    ports
}

#[test]
fn the_endpoint_shows_the_counters_moving_and_ends_with_the_summarys_values() {
    let port = free_port();
    // 300 jobs of 400 records, one at a time: long enough to be seen moving.
    let plan = LocalPlan::new(
        "metrics",
        "taxi-stats",
        120_000,
        400,
        1,
        &format!("metrics_listen: 127.0.0.1:{port}\n"),
    );
    let jobs = plan.job_ids.len() as f64;
    assert_eq!(jobs, 300.0);
    let log = plan.dir.0.join("agent.log");
    let mut a = agent(&plan, &log);
    let ready = a.wait_for_event(LIMIT, |e| event(e) == "agent_ready");
    // What the default-config test looks for finds this listener.
    assert_eq!(listening_ports(a.pid()), vec![port], "{}", a.log_tail());

    // Scrape until every job is done, keeping each value of jobs_done seen.
    let started = Instant::now();
    let mut seen_done = Vec::<f64>::new();
    let mut seen_bytes = Vec::<f64>::new();
    let last = loop {
        assert!(
            started.elapsed() < LIMIT,
            "not done in time: {seen_done:?}\n{}",
            a.log_tail()
        );
        let (status, body) = scrape(port, "/metrics").expect("the endpoint answers");
        assert!(status.contains(" 200 "), "{status}");
        let m = samples(&body);
        let done = get(&m, "rangefleet_jobs_done_total");
        if seen_done.last() != Some(&done) {
            seen_done.push(done);
            seen_bytes.push(get(&m, "rangefleet_read_bytes_total"));
        }
        if done == jobs {
            break m;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    eprintln!("jobs_done as scraped: {seen_done:?}");
    let moving: Vec<_> = seen_done
        .iter()
        .filter(|d| **d > 0.0 && **d < jobs)
        .collect();
    assert!(
        moving.len() >= 2,
        "jobs_done seen between 0 and {jobs} at least twice: {seen_done:?}"
    );
    assert!(
        seen_done.windows(2).all(|w| w[0] < w[1]) && seen_bytes.windows(2).all(|w| w[0] < w[1]),
        "counters only grow: {seen_done:?} {seen_bytes:?}"
    );
    // The queue is empty: let the last job's histogram sample land, then the last look.
    std::thread::sleep(Duration::from_millis(1500));
    let (_, body) = scrape(port, "/metrics").expect("the endpoint answers");
    let m = samples(&body);
    assert_eq!(get(&m, "rangefleet_jobs_done_total"), jobs, "{last:#?}");
    // Any other path is not the metrics.
    let (status, _) = scrape(port, "/").expect("the endpoint answers");
    assert!(status.contains(" 404 "), "{status}");

    a.signal(libc::SIGTERM);
    let status = a.wait(LIMIT);
    assert!(status.success(), "{status}\n{}", a.log_tail());
    assert!(
        scrape(port, "/metrics").is_none(),
        "nothing listens after the agent exits"
    );

    let out = plan.dir.0.join("out");
    let summary = InstanceSummary::from_slice(
        &std::fs::read(out.join(format!("_instances/{INSTANCE_ID}.json"))).expect("the summary"),
    )
    .expect("a summary");
    let metrics = summary.metrics.as_ref().expect("the summary has metrics");
    let throughput = summary
        .throughput
        .as_ref()
        .expect("the summary has throughput");
    let pairs = [
        ("rangefleet_jobs_done_total", summary.done as f64),
        ("rangefleet_jobs_redone_total", summary.redone as f64),
        ("rangefleet_jobs_dead_lettered_total", summary.failed as f64),
        ("rangefleet_jobs_released_total", summary.released as f64),
        ("rangefleet_read_bytes_total", summary.bytes_read as f64),
        ("rangefleet_job_errors_total", metrics.job_errors as f64),
        (
            "rangefleet_notices_total{kind=\"spot-interruption\"}",
            metrics.notices.values().sum::<u64>() as f64,
        ),
        (
            "rangefleet_lease_latency_seconds_count",
            metrics.lease_latency.count as f64,
        ),
        (
            "rangefleet_job_duration_seconds_count",
            metrics.job_duration.count as f64,
        ),
        (
            "rangefleet_throughput_target_gbps",
            throughput.throughput_gbps,
        ),
        (
            "rangefleet_get_window_max",
            throughput.gets_in_flight as f64,
        ),
    ];
    for (name, want) in pairs {
        assert_eq!(
            get(&m, name),
            want,
            "{name}: the endpoint's last value vs the summary"
        );
    }
    assert_eq!(summary.done as f64, jobs);
    assert!(summary.bytes_read > 0 && metrics.job_duration.count == summary.done);
    assert!(metrics.lease_latency.count > 0);
    let sum = get(&m, "rangefleet_job_duration_seconds_sum");
    assert!(
        (sum - metrics.job_duration.sum_seconds).abs() <= 1e-9 * sum.max(1.0),
        "{sum} vs {}",
        metrics.job_duration.sum_seconds
    );

    // The build: in the ready line, the summary and the metrics alike.
    let build = summary.agent.as_ref().expect("the summary names the build");
    assert_eq!(build.version, env!("CARGO_PKG_VERSION"));
    assert!(!build.commit.is_empty());
    let fields = &ready["fields"];
    assert_eq!(fields["version"], build.version.as_str(), "{ready}");
    assert_eq!(fields["commit"], build.commit.as_str(), "{ready}");
    let info = format!(
        "rangefleet_build_info{{version=\"{}\",commit=\"{}\"}}",
        build.version, build.commit
    );
    assert_eq!(get(&m, &info), 1.0);

    // At the default level: no line per job, one progress line at the end with the totals.
    let events = a.events();
    assert!(
        !events
            .iter()
            .any(|e| ["job_started", "job_done"].contains(&event(e))),
        "per-job lines are debug"
    );
    let progress: Vec<_> = events.iter().filter(|e| event(e) == "progress").collect();
    let end = progress.last().expect("a progress line");
    assert_eq!(end["level"], "INFO", "{end}");
    assert_eq!(end["fields"]["last"], true, "{end}");
    assert_eq!(end["fields"]["done"], summary.done, "{end}");
    assert_eq!(end["fields"]["bytes_read"], summary.bytes_read, "{end}");
}

#[test]
fn with_the_default_config_nothing_listens() {
    let plan = LocalPlan::new("metrics-off", "taxi-stats", 1_000, 500, 1, "");
    let log = plan.dir.0.join("agent.log");
    let mut a = agent(&plan, &log);
    // A listener is bound before the ready line, so this is when one would be there.
    a.wait_for_event(LIMIT, |e| event(e) == "agent_ready");
    assert_eq!(
        listening_ports(a.pid()),
        Vec::<u16>::new(),
        "{}",
        a.log_tail()
    );
    assert!(
        !a.events().iter().any(|e| event(e) == "metrics_listening"),
        "{}",
        a.log_tail()
    );
    a.signal(libc::SIGTERM);
    assert!(a.wait(LIMIT).success(), "{}", a.log_tail());
}

#[test]
fn an_address_in_use_stops_the_start_with_exit_2() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a port");
    let port = taken.local_addr().unwrap().port();
    let plan = LocalPlan::new(
        "metrics-taken",
        "taxi-stats",
        100,
        100,
        1,
        &format!("metrics_listen: 127.0.0.1:{port}\n"),
    );
    let out = plan.agent().output().expect("run the agent");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("error: metrics_listen 127.0.0.1:{port}: "))
            && stderr.contains("remove metrics_listen"),
        "{stderr}"
    );
}
