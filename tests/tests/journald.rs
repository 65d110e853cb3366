//! The agent's native journald entries (docs/operations.md, the journal), read
//! off a stand-in journal socket mounted at `/run/systemd/journal/socket` in a private
//! mount namespace: each job's entries carry `JOB_ID` and `PARTITION`, operator events
//! carry their stable `MESSAGE_ID`, no field is prefixed, and without a journal the
//! agent logs to stderr after one warning.

use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::Duration;

use rangefleet::instance::events;
use rangefleet::queue::sqlite::SqliteQueue;
use rangefleet::queue::Queue;
use rangefleet_tests::journal::{in_journal_namespace, valid_field_name, Entry, JournalListener};
use rangefleet_tests::notify::{output_within, run_ok_within, LocalPlan, INSTANCE_ID};
use rangefleet_tests::TempDir;

const RUN_LIMIT: Duration = Duration::from_secs(90);
const PARTITION: &str = "color=yellow/date=2016-01-01";
/// A job message of a version the agent does not know: refused, dead-lettered.
const POISON: &str = r#"{"v": 2}"#;

fn describe(entries: &[Entry]) -> String {
    entries
        .iter()
        .map(|e| {
            let fields: Vec<String> = e
                .fields
                .iter()
                .filter(|(n, _)| !n.starts_with("CODE_") && !n.starts_with("SPAN_"))
                .map(|(n, v)| format!("{n}={}", String::from_utf8_lossy(v)))
                .collect();
            format!("{}\n", fields.join(" "))
        })
        .collect()
}

fn with_message_id<'a>(entries: &'a [Entry], id: &str) -> Vec<&'a Entry> {
    entries
        .iter()
        .filter(|e| e.all("MESSAGE_ID").iter().any(|m| m == id))
        .collect()
}

#[test]
fn entries_carry_job_fields_and_stable_message_ids() {
    let plan = LocalPlan::new("journald-fields", "taxi-stats", 200, 100, 2, "");
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(async {
            SqliteQueue::open(&plan.queue)
                .expect("open the queue")
                .enqueue(&[POISON.to_string()])
                .await
                .expect("enqueue the poison job");
        });
    let journal = JournalListener::bind();
    let mut agent = plan.agent();
    // Each job's routine entries are debug: turned on as docs/operations.md says.
    agent
        .env("RANGEFLEET_LOG_FORMAT", "journald")
        .env("RUST_LOG", rangefleet_tests::JOB_LINES);
    let stderr = run_ok_within(
        &mut in_journal_namespace(journal.run_systemd(), &agent),
        RUN_LIMIT,
    );
    assert!(
        !stderr.contains("journald_unavailable"),
        "the agent reached the stand-in journal:\n{stderr}"
    );
    let entries = journal.sync();
    let all = describe(&entries);
    assert_eq!(
        journal.errors(),
        Vec::<String>::new(),
        "well-formed entries"
    );

    // Every entry: ours, with a message and a priority, and only names journald keeps.
    for e in &entries {
        assert_eq!(
            e.get("SYSLOG_IDENTIFIER").as_deref(),
            Some("rangefleet-agent"),
            "{e:?}"
        );
        assert!(e.get("MESSAGE").is_some_and(|m| !m.is_empty()), "{e:?}");
        assert!(
            e.get("PRIORITY").is_some_and(|p| matches!(
                p.as_str(),
                "0" | "1" | "2" | "3" | "4" | "5" | "6" | "7"
            )),
            "{e:?}"
        );
        for (name, _) in &e.fields {
            assert!(!name.starts_with("F_"), "prefixed field {name}:\n{all}");
            assert!(
                valid_field_name(name),
                "journald would drop field {name:?}:\n{all}"
            );
        }
        assert!(!e.via_memfd, "small entries fit in a datagram");
    }

    // MESSAGE_ID is journald's catalog key: only the agent's stable 128-bit ids.
    let known: BTreeSet<&str> = [
        events::BOOT,
        events::JOB_FAILED,
        events::INTERRUPTION,
        events::REBALANCE,
        events::ASG_TERMINATION,
        events::DRAINED,
    ]
    .into();
    for id in &known {
        assert!(
            id.len() == 32
                && id
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
            "{id} is 32 lowercase hex digits"
        );
    }
    for e in &entries {
        for id in e.all("MESSAGE_ID") {
            assert!(
                known.contains(id.as_str()),
                "MESSAGE_ID={id} is not one of monitor::message_id (a field named message_id?):\n{all}"
            );
        }
    }

    let boot = with_message_id(&entries, events::BOOT);
    assert_eq!(boot.len(), 1, "one boot entry:\n{all}");
    assert_eq!(
        boot[0].get("INSTANCE_ID").as_deref(),
        Some(INSTANCE_ID),
        "{all}"
    );
    assert_eq!(with_message_id(&entries, events::DRAINED).len(), 1, "{all}");
    let failed = with_message_id(&entries, events::JOB_FAILED);
    assert_eq!(
        failed.len(),
        1,
        "one JOB_FAILED, for the poison job:\n{all}"
    );

    // Each planned job's entries come from its span: JOB_ID and PARTITION, unprefixed.
    assert_eq!(plan.job_ids.len(), 2);
    for job in &plan.job_ids {
        let of_job: Vec<&Entry> = entries
            .iter()
            .filter(|e| e.all("JOB_ID").contains(job))
            .collect();
        assert!(!of_job.is_empty(), "entries for {job}:\n{all}");
        for e in of_job {
            assert_eq!(e.all("JOB_ID"), vec![job.clone()], "{all}");
            assert_eq!(e.all("PARTITION"), vec![PARTITION.to_string()], "{all}");
        }
    }
    assert!(
        entries.iter().any(|e| e.get("INSTANCE_ID").is_some()),
        "INSTANCE_ID= somewhere:\n{all}"
    );
}

#[test]
fn without_a_journal_socket_logs_go_to_stderr_after_one_warning() {
    let plan = LocalPlan::new("journald-none", "taxi-stats", 100, 100, 2, "");
    let empty = TempDir::new("journald-empty");
    let mut agent = plan.agent();
    agent.env("RANGEFLEET_LOG_FORMAT", "journald");
    let stderr = run_ok_within(&mut in_journal_namespace(&empty.0, &agent), RUN_LIMIT);
    assert_eq!(
        stderr.matches("journald_unavailable").count(),
        1,
        "one warning:\n{stderr}"
    );
    assert!(
        stderr.contains("agent_ready"),
        "the logs themselves follow on stderr:\n{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// `--log-format auto` uses the journal only when stderr is the stream `JOURNAL_STREAM`
/// names (systemd.exec(5)): a child whose stderr was redirected keeps text.
#[test]
fn auto_uses_the_journal_only_when_stderr_is_the_journal_stream() {
    use std::os::unix::fs::MetadataExt;

    let plan = LocalPlan::new("journald-auto", "taxi-stats", 100, 100, 2, "");
    for matching in [true, false] {
        let journal = JournalListener::bind();
        let log = plan.dir.0.join(format!("stderr-{matching}.log"));
        let file = std::fs::File::create(&log).expect("create the stderr file");
        let meta = file.metadata().expect("stat the stderr file");
        let stream = if matching {
            format!("{}:{}", meta.dev(), meta.ino())
        } else {
            format!("{}:{}", meta.dev(), meta.ino() + 1)
        };
        let mut agent = plan.agent();
        agent
            .env("RANGEFLEET_LOG_FORMAT", "auto")
            .env("JOURNAL_STREAM", &stream);
        let child = in_journal_namespace(journal.run_systemd(), &agent)
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("start unshare");
        let out = output_within(child, RUN_LIMIT);
        let stderr = std::fs::read_to_string(&log).expect("read the stderr file");
        assert!(
            out.status.success(),
            "agent exited {}:\n{stderr}",
            out.status
        );
        let booted = with_message_id(&journal.sync(), events::BOOT).len();
        if matching {
            assert_eq!(
                booted, 1,
                "journald entries with JOURNAL_STREAM={stream}:\n{stderr}"
            );
            assert!(
                !stderr.contains("agent_ready"),
                "not also on stderr:\n{stderr}"
            );
        } else {
            assert_eq!(
                booted, 0,
                "no journald entries with a JOURNAL_STREAM that is not stderr"
            );
            assert!(stderr.contains("agent_ready"), "text on stderr:\n{stderr}");
        }
    }
}
