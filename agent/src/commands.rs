//! The operator and agent subcommands: `plan`, `scan`, `reduce`, `agent`.
//! Each returns its documented exit code (DESIGN 5.6).

use std::path::PathBuf;

use clap::Args;

use crate::cli::{progress_bar, BootArgs};
use crate::exit;
use crate::identity::{self, Identity};
use crate::imds::{ImdsClient, ImdsOptions};
use crate::plan::{PlanError, PlanOptions};
use crate::process::ProcessorKind;
use crate::store::Store;

/// `rangefleet plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// What to plan: a file:// or s3:// prefix (a trailing / or not means the same
    /// folder), or one object.
    pub source: String,
    /// The queue: sqlite:///path/queue.db or an SQS queue URL.
    #[arg(long)]
    pub queue: String,
    /// Where results go (file:// or s3:// prefix); the plan manifest is written there.
    #[arg(long)]
    pub results: String,
    /// count or taxi-stats (or exec, when the agents' config enables it).
    #[arg(long)]
    pub processor: ProcessorKind,
    /// Records per job: one ranged GET each.
    #[arg(long, default_value_t = 100_000)]
    pub records_per_job: u64,
    /// Bytes per record.
    #[arg(long, default_value_t = 80)]
    pub record_length: u64,
    /// Leave out objects that are not a whole number of records instead of stopping.
    #[arg(long)]
    pub skip_bad_objects: bool,
    /// Replace an existing plan manifest under --results.
    #[arg(long)]
    pub force: bool,
}

/// `rangefleet scan`.
#[derive(Debug, Args)]
pub struct ScanArgs {
    /// A file:// or s3:// prefix, or one object.
    pub source: String,
    /// count or taxi-stats.
    #[arg(long)]
    pub processor: ProcessorKind,
    /// Records per job (one ranged read each).
    #[arg(long, default_value_t = 100_000)]
    pub records_per_job: u64,
    /// Bytes per record.
    #[arg(long, default_value_t = 80)]
    pub record_length: u64,
    /// Print DESIGN 5.5's JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `rangefleet reduce`.
#[derive(Debug, Args)]
pub struct ReduceArgs {
    /// The results prefix a plan wrote its manifest to.
    #[arg(long)]
    pub results: String,
    /// Print DESIGN 5.5's JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `rangefleet agent`.
#[derive(Debug, Args)]
pub struct AgentArgs {
    #[command(flatten)]
    pub boot: BootArgs,
    /// Read the config from FILE instead of user-data (same formats).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Do not ask IMDS: a local identity, for one machine (needs --config).
    #[arg(long, requires = "config")]
    pub no_imds: bool,
    /// With --no-imds: the instance id to use.
    #[arg(long, env = "RANGEFLEET_INSTANCE_ID")]
    pub instance_id: Option<String>,
    /// Exit once the queue has nothing visible or in flight (batch runs).
    #[arg(long)]
    pub until_empty: bool,
}

/// Opens the store at `url`, or says why not (`what` names it: source, results).
pub(crate) async fn open_store(url: &str, what: &str) -> Option<Store> {
    Store::open(url)
        .await
        .map_err(|e| eprintln!("error: {what} {url}: {e}"))
        .ok()
}

/// Opens the queue at `url`, or says why not.
pub(crate) async fn open_queue(url: &str) -> Option<std::sync::Arc<dyn crate::queue::Queue>> {
    crate::queue::open(url, None)
        .await
        .map_err(|e| eprintln!("error: queue {url}: {e}"))
        .ok()
}

/// `plan`.
pub async fn plan(args: PlanArgs) -> i32 {
    let Some(source) = open_store(&args.source, "source").await else {
        return exit::USAGE;
    };
    let Some(results) = open_store(&args.results, "results").await else {
        return exit::USAGE;
    };
    let Some(queue) = open_queue(&args.queue).await else {
        return exit::USAGE;
    };
    let opts = PlanOptions {
        source: args.source.clone(),
        processor: args.processor,
        record_length: args.record_length,
        records_per_job: args.records_per_job,
        skip_bad_objects: args.skip_bad_objects,
    };
    let bar = progress_bar(0, "jobs enqueued");
    let started = std::time::Instant::now();
    let r = crate::plan::plan(
        &opts,
        &source,
        &results,
        queue.as_ref(),
        args.force,
        &mut |done, total| {
            bar.set_length(total);
            bar.set_position(done);
        },
    )
    .await;
    bar.finish_and_clear();
    match r {
        Ok(m) => {
            let partitions: std::collections::BTreeSet<String> = m
                .jobs
                .iter()
                .map(|j| crate::job::partition_name_of_job(j))
                .collect();
            eprintln!(
                "planned {} jobs over {} objects in {} partitions in {:.2} s; manifest {}{}",
                m.jobs.len(),
                m.objects.len(),
                partitions.len(),
                started.elapsed().as_secs_f64(),
                results.url(),
                crate::plan::MANIFEST
            );
            exit::OK
        }
        Err(PlanError::Io(e)) => {
            eprintln!("error: {e}");
            exit::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e}");
            exit::USAGE
        }
    }
}

/// `scan`.
pub async fn scan(args: ScanArgs) -> i32 {
    let Some(source) = open_store(&args.source, "source").await else {
        return exit::USAGE;
    };
    let opts = PlanOptions {
        source: args.source.clone(),
        processor: args.processor,
        record_length: args.record_length,
        records_per_job: args.records_per_job,
        skip_bad_objects: false,
    };
    let parallel = 2 * crate::cli::vcpus();
    let bar = progress_bar(0, "jobs");
    let r = crate::scan::scan(&source, &opts, parallel, &|done, total| {
        bar.set_length(total);
        bar.set_position(done);
    })
    .await;
    bar.finish_and_clear();
    match r {
        Ok(s) if args.json => {
            crate::cli::print_json(&s.to_json());
            exit::OK
        }
        Ok(s) => {
            // Without a plan there is no coverage to report.
            crate::out!("{}", crate::reduce::partition_table(&s.merged));
            exit::OK
        }
        Err(e) => {
            eprintln!("error: {e}");
            exit::FAILURE
        }
    }
}

/// `reduce`.
pub async fn reduce(args: ReduceArgs) -> i32 {
    let Some(results) = open_store(&args.results, "results").await else {
        return exit::USAGE;
    };
    match crate::reduce::reduce(&results).await {
        Ok(r) => {
            if args.json {
                crate::cli::print_json(&r.to_json());
            } else {
                crate::out!("{}", crate::reduce::table(&r));
            }
            if r.complete() {
                exit::OK
            } else {
                exit::INCOMPLETE
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            exit::FAILURE
        }
    }
}

/// `agent`.
pub async fn agent(args: AgentArgs) -> i32 {
    let file_config = match &args.config {
        None => None,
        Some(path) => {
            let text = match std::fs::read_to_string(path) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("error: failed to read --config {}: {e}", path.display());
                    return exit::USAGE;
                }
            };
            match crate::config::parse_text(&text, &path.display().to_string()) {
                Ok(c) => Some(c),
                Err(e) => {
                    eprintln!("error: {e}");
                    return exit::USAGE;
                }
            }
        }
    };
    let (identity, config, tags, imds) = if args.no_imds {
        let config = file_config.expect("clap requires --config with --no-imds");
        let id = args
            .instance_id
            .clone()
            .unwrap_or_else(|| format!("local-{}", std::process::id()));
        let region = std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into());
        let identity = Identity::local(&id, &region);
        let tags = match crate::tags::effective(&config.tags, &Default::default(), &identity) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("error: invalid tags: {e}");
                return exit::USAGE;
            }
        };
        (identity, config, tags, None)
    } else {
        let client = match ImdsOptions::from_env(args.boot.imds_allow_v1).and_then(ImdsClient::new)
        {
            Ok(c) => c,
            Err(e) => {
                eprintln!("error: {e}");
                return exit::USAGE;
            }
        };
        let deadline = tokio::time::Instant::now() + args.boot.boot_deadline;
        match identity::boot(&client, deadline).await {
            Ok(b) => {
                let config = file_config.unwrap_or(b.config);
                (b.identity, config, b.tags, Some(client))
            }
            Err(e) => {
                tracing::error!(error = %e, "boot failed");
                eprintln!("error: {e}");
                return e.exit_code();
            }
        }
    };
    let agent = crate::agent::Agent {
        identity,
        tags,
        config,
        imds,
        until_empty: args.until_empty,
    };
    match crate::agent::run(agent, crate::systemd::ready).await {
        Ok(_) => {
            crate::systemd::stopping();
            exit::OK
        }
        Err(crate::agent::AgentError::Config(e)) => {
            eprintln!("error: {e}");
            exit::USAGE
        }
        Err(e) => {
            eprintln!("error: {e}");
            exit::FAILURE
        }
    }
}
