//! A SQLite queue that is missing, corrupt, on a read-only file system or on a full
//! disk: the agent and `status` name the real cause, exit with the documented code
//! (2 only for a path that names no queue, 1 for a queue that cannot be used, which
//! the unit restarts), `--until-empty` ends, and no command but `plan` creates a file.
//!
//! The read-only and full file systems are mounts in a private mount namespace
//! (`unshare -m`): the tests run as root, so permissions would not stop a write. If
//! the namespace cannot be set up the test fails; it never skips.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use rangefleet_tests::fleet::{Fleet, Gen};
use rangefleet_tests::{rangefleet, rangefleet_bin};

/// Longest any of these commands may take: they must end, not wait for a fix.
const ENDS_WITHIN: Duration = Duration::from_secs(60);

/// Runs `cmd` to the end (killed, and the test failed, after [`ENDS_WITHIN`]).
fn run(cmd: &mut Command) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the command");
    let deadline = Instant::now() + ENDS_WITHIN;
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "{cmd:?} did not end within {ENDS_WITHIN:?}; stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A fleet with a few planned jobs and an agent config for it.
fn planned(tag: &str) -> (Fleet, PathBuf) {
    let fleet = Fleet::new(tag);
    fleet.gen(&Gen {
        colors: "yellow".into(),
        days: "2016-01-01..2016-01-02".into(),
        records: 2_000,
        bad_every: 1_000_000,
    });
    fleet.plan(&fleet.data_url(), 100, &[]);
    let config = fleet.config("agent", &[fleet.data_url()], 2, 30);
    (fleet, config)
}

fn agent_until_empty(config: &Path) -> Command {
    let mut c = rangefleet();
    c.args([
        "agent",
        "--no-imds",
        "--until-empty",
        "--log-format",
        "json",
    ])
    .arg("--config")
    .arg(config);
    c
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// `status` on a mistyped SQLite path, and the agent on a queue file that does not
/// exist: both refuse with exit 2, naming the path, and create nothing.
#[test]
fn a_missing_queue_file_is_refused_and_never_created() {
    let fleet = Fleet::new("queue-missing");
    std::fs::create_dir_all(&fleet.out).unwrap();
    let typo = fleet.dir.0.join("q.bd");
    let url = format!("sqlite://{}", typo.display());
    let before = files_in(&fleet.dir.0);
    for json in [false, true] {
        let mut cmd = rangefleet();
        cmd.args(["status", "--queue", &url]);
        if json {
            cmd.arg("--json");
        }
        let out = run(&mut cmd);
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        assert!(
            stderr(&out).contains(&typo.display().to_string())
                && stderr(&out).contains("does not exist"),
            "{out:?}"
        );
    }
    assert_eq!(files_in(&fleet.dir.0), before, "status created files");
    let config = fleet.dir.0.join("agent.yaml");
    std::fs::write(
        &config,
        format!(
            "queue: {url}\ninputs: [\"{}\"]\nresults: {}\n",
            fleet.data_url(),
            fleet.results_url()
        ),
    )
    .unwrap();
    let before_agent = files_in(&fleet.dir.0);
    let out = run(&mut agent_until_empty(&config));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&typo.display().to_string())
            && stderr(&out).contains("does not exist"),
        "{}",
        stderr(&out)
    );
    assert!(!typo.exists(), "{} was created", typo.display());
    assert_eq!(
        files_in(&fleet.dir.0),
        before_agent,
        "the agent created files"
    );
    assert!(
        files_in(&fleet.out).is_empty(),
        "{:?}",
        files_in(&fleet.out)
    );
}

/// Random bytes where the queue should be: the agent exits 1 (restartable) saying the
/// database is corrupt, and so does `status`; neither blames the role, region or URL.
#[test]
fn a_corrupt_queue_file_exits_1_saying_it_is_corrupt() {
    let (fleet, config) = planned("queue-corrupt");
    let noise: Vec<u8> = (0..64 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&fleet.queue_db, noise).unwrap();
    let out = run(&mut agent_until_empty(&config));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("database is corrupt"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("role, region"), "{}", stderr(&out));
    let out = run(rangefleet().args(["status", "--queue", &fleet.queue_url()]));
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(stderr(&out).contains("database is corrupt"), "{out:?}");
}

/// A queue whose header is sound but whose tables are not: the agent opens it, the
/// first lease fails, and `--until-empty` ends with exit 1 and the cause instead of
/// retrying for ever.
#[test]
fn until_empty_ends_when_the_queue_turns_out_corrupt() {
    let (fleet, config) = planned("queue-corrupt-pages");
    let mut db = std::fs::read(&fleet.queue_db).unwrap();
    let page = 4096;
    assert!(db.len() >= 4 * page, "the queue has its tables' pages");
    for (i, b) in db[page..].iter_mut().enumerate() {
        *b = (i as u32).wrapping_mul(2_654_435_761).to_be_bytes()[1];
    }
    std::fs::write(&fleet.queue_db, db).unwrap();
    let out = run(&mut agent_until_empty(&config));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("database is corrupt"), "{err}");
    assert!(err.contains("\"lease_fault\""), "{err}");
    assert!(!err.contains("role, region"), "{err}");
}

/// Runs `script` (sh) in a private mount namespace; `setup` are the mount commands,
/// checked to have worked before `script` runs (exit 97 otherwise).
fn in_private_mounts(setup: &str, check: &str, script: &str) -> Output {
    let out = run(Command::new("unshare").args([
        "-m",
        "--propagation",
        "private",
        "sh",
        "-c",
        &format!("set -e; {setup}; if {check}; then exit 97; fi; set +e; {script}"),
    ]));
    assert_ne!(
        out.status.code(),
        Some(97),
        "the mounts were set up but writes still work: {out:?}"
    );
    assert!(
        !stderr(&out).contains("unshare:") && !stderr(&out).contains("mount:"),
        "cannot set up a private mount namespace (needs root and unshare -m): {out:?}"
    );
    out
}

fn shell_quote(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', r"'\''"))
}

/// The queue's folder bind-mounted read-only: the agent exits 1 naming the read-only
/// file system (the unit restarts it), `--until-empty` included.
#[test]
fn a_queue_on_a_read_only_file_system_exits_1_naming_it() {
    let (fleet, config) = planned("queue-ro");
    let dir = shell_quote(&fleet.dir.0);
    let bin = shell_quote(&rangefleet_bin());
    let agent = format!(
        "RANGEFLEET_LOCAL_CONFIG=/nonexistent AWS_EC2_METADATA_DISABLED=true {bin} agent \
         --no-imds --until-empty --log-format json --config {}; echo \"agent exit $?\"; \
         {bin} status --queue '{}'; echo \"status exit $?\"",
        shell_quote(&config),
        fleet.queue_url()
    );
    let out = in_private_mounts(
        &format!("mount --bind {dir} {dir}; mount -o remount,bind,ro {dir} {dir}"),
        &format!("touch {dir}/probe 2>/dev/null"),
        &agent,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let err = stderr(&out);
    assert!(stdout.contains("agent exit 1"), "{stdout}\n{err}");
    assert!(err.contains("read-only file system"), "{err}");
    assert!(!err.contains("role, region"), "{err}");
    // status reads; it cannot here either (SQLite needs its -shm file), and says why.
    assert!(stdout.contains("status exit 1"), "{stdout}\n{err}");
}

/// The queue on a full file system: the agent exits 1 naming the full disk (it used to
/// exit 2, which the unit never restarts), and so does `plan` making a new queue there.
#[test]
fn a_queue_on_a_full_disk_exits_1_naming_it() {
    let (fleet, config) = planned("queue-full");
    let full = fleet.dir.0.join("full");
    std::fs::create_dir_all(&full).unwrap();
    let f = shell_quote(&full);
    let db = shell_quote(&fleet.queue_db);
    let bin = shell_quote(&rangefleet_bin());
    let moved = fleet.dir.0.join("full").join("q.db");
    let config_full = fleet.dir.0.join("full.yaml");
    std::fs::write(
        &config_full,
        std::fs::read_to_string(&config).unwrap().replace(
            &fleet.queue_db.display().to_string(),
            &moved.display().to_string(),
        ),
    )
    .unwrap();
    let script = format!(
        "RANGEFLEET_LOCAL_CONFIG=/nonexistent AWS_EC2_METADATA_DISABLED=true {bin} agent \
         --no-imds --until-empty --log-format json --config {}; echo \"agent exit $?\"; \
         {bin} plan '{}' --queue 'sqlite://{}/new.db' --results '{}' --processor count; \
         echo \"plan exit $?\"",
        shell_quote(&config_full),
        fleet.data_url(),
        full.display(),
        rangefleet_tests::fleet::dir_url(&fleet.dir.0.join("out2")),
    );
    let out = in_private_mounts(
        &format!(
            "mount -t tmpfs -o size=256k tmpfs {f}; cp {db} {f}/q.db; \
             dd if=/dev/zero of={f}/fill bs=4k 2>/dev/null || true"
        ),
        &format!("echo x > {f}/probe 2>/dev/null"),
        &script,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let err = stderr(&out);
    assert!(stdout.contains("agent exit 1"), "{stdout}\n{err}");
    assert!(stdout.contains("plan exit 1"), "{stdout}\n{err}");
    assert!(err.matches("disk full").count() >= 2, "{err}");
}

/// Every file under `dir`, recursively, relative to it.
fn tree(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            out.push(p.strip_prefix(root).unwrap().display().to_string());
            if p.is_dir() {
                walk(root, &p, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// The read-only commands (status, reduce, scan, userdata check), on good paths and on
/// mistyped ones, create no file and no folder; only `plan` makes a queue.
#[test]
fn read_only_commands_create_no_file() {
    let (fleet, config) = planned("read-only-cmds");
    let root = &fleet.dir.0;
    let before = tree(root);
    let typo_results = rangefleet_tests::fleet::dir_url(&root.join("typo-out"));
    let typo_queue = format!("sqlite://{}/typo/q.db", root.display());
    let typo_data = rangefleet_tests::fleet::dir_url(&root.join("typo-data"));
    let commands: Vec<(Vec<String>, Option<i32>)> = vec![
        (
            vec!["status".into(), "--queue".into(), fleet.queue_url()],
            Some(0),
        ),
        (
            vec![
                "status".into(),
                "--queue".into(),
                fleet.queue_url(),
                "--results".into(),
                fleet.results_url(),
                "--json".into(),
            ],
            Some(0),
        ),
        (
            vec!["status".into(), "--queue".into(), typo_queue.clone()],
            Some(2),
        ),
        (
            vec![
                "status".into(),
                "--queue".into(),
                fleet.queue_url(),
                "--results".into(),
                typo_results.clone(),
            ],
            Some(1),
        ),
        (
            vec!["reduce".into(), "--results".into(), fleet.results_url()],
            Some(3),
        ),
        (
            vec!["reduce".into(), "--results".into(), typo_results],
            Some(1),
        ),
        (
            vec![
                "scan".into(),
                fleet.data_url(),
                "--processor".into(),
                "count".into(),
            ],
            Some(0),
        ),
        (
            vec![
                "scan".into(),
                typo_data,
                "--processor".into(),
                "count".into(),
            ],
            None,
        ),
        (
            vec![
                "userdata".into(),
                "check".into(),
                config.display().to_string(),
            ],
            Some(0),
        ),
    ];
    for (args, code) in commands {
        let out = run(rangefleet().args(&args));
        if let Some(code) = code {
            assert_eq!(out.status.code(), Some(code), "{args:?}: {out:?}");
        } else {
            assert!(!out.status.success(), "{args:?}: {out:?}");
        }
        assert_eq!(tree(root), before, "{args:?} created or removed files");
    }
}
