//! `rangefleet demo`: the whole system on one machine, no AWS.
//!
//! Generates 2 colours × 7 days × 100,000 taxi records, plans them onto a SQLite queue,
//! starts one local IMDS per agent (each a different instance), runs four real agent
//! processes over `file://` data, sends one of them a spot interruption notice mid-run,
//! then reduces and checks the answer against the totals the generator knows.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::error::ErrorClass;
use crate::exit;
use crate::imds::mock::{MockOptions, MockServer};
use crate::operator::gen::{self, GenError, GenOptions};
use crate::operator::plan::{PlanError, PlanOptions};
use crate::operator::reduce::ReduceError;
use crate::process::ProcessorKind;
use crate::queue::QueueError;
use crate::store::{Store, StoreError};

/// What the demo runs.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Records per partition (14 partitions).
    pub records: u64,
    /// Records per job.
    pub records_per_job: u64,
    /// Agent processes.
    pub agents: usize,
}

/// Why the demo could not run to its check.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// A local file, directory or process could not be made.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, with the path.
        what: String,
        /// The system's error.
        source: std::io::Error,
    },
    /// `--dir` already holds a demo.
    #[error("{} holds an earlier demo; give an empty --dir", dir.display())]
    Earlier {
        /// The directory.
        dir: PathBuf,
    },
    /// Generating the data failed.
    #[error(transparent)]
    Gen(#[from] GenError),
    /// Opening a store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Opening the queue failed.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// Planning failed.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// Reducing failed.
    #[error(transparent)]
    Reduce(#[from] ReduceError),
}

impl DemoError {
    /// [`ErrorClass::Usage`] for a used `--dir`, [`ErrorClass::Environment`] for local
    /// I/O, the inner error's class otherwise.
    pub fn class(&self) -> ErrorClass {
        match self {
            DemoError::Io { .. } => ErrorClass::Environment,
            DemoError::Earlier { .. } => ErrorClass::Usage,
            DemoError::Gen(_) => ErrorClass::Usage,
            DemoError::Store(e) => e.class(),
            DemoError::Queue(e) => e.class(),
            DemoError::Plan(e) => e.class(),
            DemoError::Reduce(e) => e.class(),
        }
    }

    /// `rangefleet demo`'s exit code: always 1, as it has always been.
    pub fn exit_code(&self) -> i32 {
        exit::FAILURE
    }
}

/// Wraps an I/O error with what was being done.
fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> DemoError {
    let what = what.into();
    move |source| DemoError::Io { what, source }
}

/// Runs the demo in `dir`: Ok(exit code), 0 when coverage is complete and the totals are exact.
pub async fn run(args: &DemoOptions, dir: &Path) -> Result<i32, DemoError> {
    let started = Instant::now();
    let step = |what: &str| crate::outln!("[{:>5.1}s] {what}", started.elapsed().as_secs_f64());
    let data = dir.join("data");
    std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
    if dir.join("queue.db").exists() || dir.join("results").exists() {
        return Err(DemoError::Earlier {
            dir: dir.to_path_buf(),
        });
    }

    let opts = GenOptions {
        out: data.clone(),
        colors: vec!["yellow".into(), "green".into()],
        days: gen::parse_days("2016-01-01..2016-01-07")?,
        records: args.records,
        seed: 2016,
        bad_every: Some(997),
    };
    let summary = gen::generate(&opts, &mut |_| {})?;
    step(&format!(
        "generated {} records ({} bad) in {} partitions under {}",
        summary.records,
        summary.expected.total.bad_records,
        summary.files,
        data.display()
    ));

    let source_url = format!("file://{}/", data.display());
    let results_url = format!("file://{}/results/", dir.display());
    let queue_url = format!("sqlite://{}/queue.db", dir.display());
    let source = Store::open(&source_url).await?;
    let results = Store::open(&results_url).await?;
    let queue = crate::queue::open(&queue_url, None).await?;
    let plan_opts = PlanOptions {
        source: source_url.clone(),
        processor: ProcessorKind::TaxiStats,
        record_length: 80,
        records_per_job: args.records_per_job,
        skip_bad_objects: false,
    };
    let manifest = crate::operator::plan::plan(
        &plan_opts,
        &source,
        &results,
        queue.as_ref(),
        false,
        &mut |_, _| {},
    )
    .await?;
    step(&format!(
        "planned {} jobs onto {queue_url}",
        manifest.jobs.len()
    ));

    // One local IMDS per agent: a different instance each, the config in its user-data.
    let stop_mocks = CancellationToken::new();
    let userdata = format!(
        "#cloud-config\nwrite_files:\n  - path: /etc/rangefleet/agent.yaml\n    content: |\n      \
         queue: {queue_url}\n      inputs: [\"{source_url}\"]\n      results: {results_url}\n      \
         concurrency: 2\n      lease_seconds: 30\n      spot: {{poll_seconds: 1}}\n      \
         tags: {{team: demo, Name: \"worker-{{instance_id}}\"}}\n"
    );
    let victim = args.agents.saturating_sub(1);
    let mut mocks = Vec::new();
    for i in 0..args.agents {
        let m = MockServer::start(
            "127.0.0.1:0".parse().expect("a socket address"),
            MockOptions {
                userdata: Some(userdata.clone().into()),
                instance_id: instance(i),
                availability_zone: ["us-east-1a", "us-east-1b", "us-east-1c"][i % 3].into(),
                launch_index: i as u32,
                ..MockOptions::default()
            },
            stop_mocks.clone(),
        )
        .await
        .map_err(io("starting a local IMDS"))?;
        mocks.push(m);
    }

    let exe = std::env::current_exe().map_err(io("finding this program"))?;
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).map_err(io(format!("creating {}", logs.display())))?;
    let mut children = Vec::new();
    for (i, m) in mocks.iter().enumerate() {
        let log_path = logs.join(format!("agent-{i}.log"));
        let log = std::fs::File::create(&log_path)
            .map_err(io(format!("creating {}", log_path.display())))?;
        let child = tokio::process::Command::new(&exe)
            .args(["agent", "--until-empty", "--log-format", "text"])
            .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", &m.url)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .map_err(io(format!("starting agent {i}")))?;
        children.push(child);
    }
    step(&format!(
        "started {} agents, each with its own instance identity",
        children.len()
    ));

    // Interrupt one agent once the fleet is under way: a spot notice, two minutes ahead.
    let planned = manifest.jobs.len();
    let results_dir = dir.join("results");
    let mut interrupted = false;
    let mut statuses = vec![None; children.len()];
    while statuses.iter().any(Option::is_none) {
        if !interrupted && count_results(&results_dir) * 5 >= planned {
            mocks[victim].interrupt_in(Duration::ZERO);
            interrupted = true;
            step(&format!(
                "spot interruption notice sent to agent {victim} ({})",
                instance(victim)
            ));
        }
        for (i, c) in children.iter_mut().enumerate() {
            if statuses[i].is_none() {
                if let Ok(Some(s)) = c.try_wait() {
                    statuses[i] = Some(s);
                    step(&format!("agent {i} exited ({s})"));
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop_mocks.cancel();

    let reduced = crate::operator::reduce::reduce(&results).await?;
    crate::outln!();
    for s in &reduced.instances {
        crate::outln!(
            // serde_json's Display ignored these widths when the counts were `Value`s;
            // the line stays as it has always printed.
            "  {}  done {}  released {}  redone {}  {}",
            if s.instance_id.is_empty() {
                "?"
            } else {
                &s.instance_id
            },
            s.done,
            s.released,
            s.redone,
            match &s.interruption {
                Some(i) => format!("drained after a {} notice", i.kind),
                None => "ran until the queue was empty".into(),
            }
        );
    }
    crate::outln!();
    crate::out!("{}", crate::operator::reduce::table(&reduced));
    let exact = reduced.merged.total.to_json()
        == serde_json::to_value(&summary.expected.total).unwrap_or_default();
    crate::outln!(
        "totals {} the generator's expected totals; {:.1} s in all",
        if exact { "equal" } else { "DIFFER FROM" },
        started.elapsed().as_secs_f64()
    );
    let all_ok = statuses.iter().all(|s| s.is_some_and(|s| s.success()));
    if !all_ok {
        eprintln!("an agent failed: see {}", logs.display());
    }
    Ok(if reduced.complete() && exact && all_ok && interrupted {
        exit::OK
    } else {
        exit::FAILURE
    })
}

fn instance(i: usize) -> String {
    format!("i-0de30000000000{i:03}")
}

fn count_results(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| !e.file_name().to_string_lossy().starts_with('_'))
                .count()
        })
        .unwrap_or(0)
}
