//! `rangefleet plan`: split partitioned data into jobs, write the manifest, enqueue.

use crate::exit;
use crate::operator::plan::PlanOptions;
use crate::process::ProcessorKind;

use super::{open_queue, open_store};

/// `rangefleet plan`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// What to plan: a file:// or s3:// prefix (a trailing / or not means the same
    /// folder), or one object; a plain path means a local file or folder.
    #[arg(value_parser = super::location)]
    pub source: String,
    /// The queue: sqlite:///path/queue.db or an SQS queue URL.
    #[arg(long)]
    pub queue: String,
    /// Where results go (file:// or s3:// prefix, or a local folder); the plan manifest
    /// is written there.
    #[arg(long, value_parser = super::location)]
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

/// `plan`.
pub async fn run(args: Args) -> i32 {
    let Some(source) = open_store(&args.source, "source").await else {
        return exit::USAGE;
    };
    let Some(results) = open_store(&args.results, "results").await else {
        return exit::USAGE;
    };
    // plan makes the queue: a SQLite file is created if needed.
    let queue = match open_queue(&args.queue, crate::queue::Access::Create).await {
        Ok(q) => q,
        Err(code) => return code,
    };
    let opts = PlanOptions {
        source: args.source.clone(),
        processor: args.processor,
        record_length: args.record_length,
        records_per_job: args.records_per_job,
        skip_bad_objects: args.skip_bad_objects,
    };
    let bar = crate::output::progress_bar(0, "jobs enqueued");
    let started = std::time::Instant::now();
    let r = crate::operator::plan::plan(
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
                .map(|j| crate::contract::job::partition_name_of_job(j))
                .collect();
            eprintln!(
                "planned {} jobs over {} objects in {} partitions in {:.2} s; manifest {}{}",
                m.jobs.len(),
                m.objects.len(),
                partitions.len(),
                started.elapsed().as_secs_f64(),
                results.url(),
                crate::contract::manifest::MANIFEST
            );
            exit::OK
        }
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    }
}
