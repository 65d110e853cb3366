//! Drill: the results disk is full for 30 s in the middle of a run, then freed. The
//! agent must pause, dead-letter nothing, and finish every job once there is room:
//! reduce is exact and there are no dead letters.
//!
//! The full disk is real: the results folder is a small `tmpfs` mounted in a private
//! mount namespace (`unshare -m`, held by a `sleep`), reached from outside through
//! `/proc/<holder>/root/…`, so nothing is mounted where other processes look. A filler
//! file takes all but a few pages, so the run fills the disk itself after a handful of
//! results. This needs root (or CAP_SYS_ADMIN): without it the drill fails, it never
//! skips.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rangefleet_tests::fleet::{self, event, timestamp, Fleet, Gen};
use rangefleet_tests::rangefleet;
use serde_json::Value;

/// How long the disk stays full once the agent has met it.
const FULL_FOR: Duration = Duration::from_secs(30);
/// Size of the results file system.
const TMPFS_SIZE: &str = "4m";
/// Pages left free by the filler: room for a few results only.
const ROOM_PAGES: u64 = 6;
/// Everything else (the run, and the backoff after the disk is freed, at most 120 s).
const TIMEOUT: Duration = Duration::from_secs(300);

/// A private mount namespace with a tmpfs on `dir`, kept alive by a `sleep`.
struct Tmpfs {
    holder: Child,
    /// `dir` as seen from inside the namespace: `/proc/<holder>/root/<dir>`.
    inside: PathBuf,
}

impl Tmpfs {
    fn mount(dir: &Path) -> Tmpfs {
        std::fs::create_dir_all(dir).expect("create the results folder");
        let script = format!(
            "mount -t tmpfs -o size={TMPFS_SIZE},mode=0755 rangefleet-drill '{}' && echo mounted && exec sleep 3600",
            dir.display()
        );
        let mut holder = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `unshare` for the full-disk drill: {e}"));
        let mut line = String::new();
        BufReader::new(holder.stdout.take().expect("piped stdout"))
            .read_line(&mut line)
            .expect("read the holder's output");
        if line.trim() != "mounted" {
            let _ = holder.kill();
            let out = holder.wait_with_output().expect("reap the holder");
            panic!(
                "the full-disk drill needs a tmpfs in a private mount namespace (run as root \
                 or with CAP_SYS_ADMIN); `unshare --mount … mount -t tmpfs` failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let inside = PathBuf::from(format!("/proc/{}/root", holder.id())).join(
            dir.strip_prefix("/")
                .expect("the results folder is an absolute path"),
        );
        let t = Tmpfs { holder, inside };
        assert!(
            t.free_bytes() < 8 << 20,
            "{} is not the small tmpfs ({} bytes free)",
            t.inside.display(),
            t.free_bytes()
        );
        t
    }

    /// Bytes an unprivileged writer may still use.
    fn free_bytes(&self) -> u64 {
        let c = std::ffi::CString::new(self.inside.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: statvfs is plain old data; all zeroes is a valid value.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: a valid C string and a statvfs to fill.
        let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
        assert_eq!(rc, 0, "statvfs {}", self.inside.display());
        st.f_bavail * st.f_frsize
    }

    /// Fills the file system with real pages (a sparse file would take none), all but
    /// `leave` bytes.
    fn fill(&self, leave: u64) -> PathBuf {
        let filler = self.inside.join(".filler");
        let mut f = std::fs::File::create(&filler).expect("create the filler");
        let mut left = self.free_bytes().saturating_sub(leave);
        let chunk = vec![0xa5u8; 64 << 10];
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            f.write_all(&chunk[..n]).expect("write the filler");
            left -= n as u64;
        }
        f.sync_all().expect("sync the filler");
        filler
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // The namespace, and its tmpfs, go with the last process in it.
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

#[test]
fn a_full_results_disk_pauses_the_agent_and_loses_nothing() {
    let fleet = Fleet::new("disk-full");
    fleet.gen(&Gen {
        colors: "yellow,green".into(),
        days: "2016-01-01..2016-01-02".into(),
        records: 2000,
        bad_every: 50,
    });
    let tmpfs = Tmpfs::mount(&fleet.out);
    let results = fleet::dir_url(&tmpfs.inside);
    fleet::plan_into(&fleet.data_url(), &fleet.queue_url(), &results, 250, &[]);
    let planned = 4 * 2000 / 250;
    assert!(
        tmpfs.inside.join("_plan.json").exists(),
        "the plan is on the tmpfs"
    );
    let filler = tmpfs.fill(ROOM_PAGES * 4096);

    let inputs = serde_json::to_string(&[fleet.data_url()]).unwrap();
    let config = fleet.dir.0.join("agent.yaml");
    std::fs::write(
        &config,
        format!(
            "queue: {}\ninputs: {inputs}\nresults: {results}\nconcurrency: 2\nlease_seconds: 30\n",
            fleet.queue_url()
        ),
    )
    .unwrap();
    let mut agent = fleet.agent(&config, "i-disk-full", true, &[]);

    // The run fills the disk itself after a few results.
    let is_disk_full =
        |ev: &Value| event(ev) == "environment_fault" && ev["fields"]["cause"] == "disk full";
    let first = agent.wait_for_event(TIMEOUT, is_disk_full);
    let full_at = Instant::now();
    assert_eq!(first["level"], "WARN", "{first}");
    // A job that wrote the last free page may log `job_done` just after another's
    // fault: count once the disk has been full for a moment.
    std::thread::sleep(Duration::from_secs(2));
    let done_before = agent.jobs_done();
    assert!(
        done_before < planned,
        "the disk filled before the end of the run ({done_before} of {planned} done)"
    );
    // Full for FULL_FOR: the agent keeps running and condemns nothing.
    while full_at.elapsed() < FULL_FOR {
        assert!(
            agent.try_wait().is_none(),
            "the agent exited while the disk was full; its log:\n{}",
            agent.log_tail()
        );
        assert_eq!(fleet.dead_letters(), vec![], "dead-lettered on a full disk");
        std::thread::sleep(Duration::from_millis(500));
    }
    let faults: Vec<Value> = agent.events().into_iter().filter(is_disk_full).collect();
    assert!(
        faults.len() >= 2,
        "it tried again during the 30 s: {} fault events",
        faults.len()
    );
    assert!(
        timestamp(faults.last().unwrap()) - timestamp(&faults[0]) >= 1.0,
        "it backed off between tries"
    );
    assert_eq!(
        agent.jobs_done(),
        done_before,
        "nothing was written while the disk was full"
    );
    std::fs::remove_file(&filler).expect("free the disk");

    let status = agent.wait(TIMEOUT);
    assert!(
        status.success(),
        "the agent exited with {status}; its log:\n{}",
        agent.log_tail()
    );
    assert_eq!(fleet.dead_letters(), vec![], "no dead letters");
    let stats = fleet.stats();
    assert_eq!((stats.visible, stats.in_flight, stats.dead), (0, 0, 0));

    let out = rangefleet()
        .args(["reduce", "--results", &results, "--json"])
        .output()
        .expect("run rangefleet reduce");
    let reduced: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "reduce printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(out.status.code(), Some(0), "reduce: {reduced}");
    let expected = fleet.expected();
    assert_eq!(reduced["total"], expected["total"]);
    assert_eq!(reduced["partitions"], expected["partitions"]);
    assert_eq!(
        reduced["coverage"]["done"], planned,
        "{}",
        reduced["coverage"]
    );
    assert_eq!(reduced["coverage"]["unexpected"], serde_json::json!([]));
}
