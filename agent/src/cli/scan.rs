//! `rangefleet scan`: compute an answer over a prefix in this process, no queue.

use crate::exit;
use crate::operator::plan::PlanOptions;
use crate::process::ProcessorKind;

use super::open_store;

/// `rangefleet scan`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A file:// or s3:// prefix, or one object; a plain path means a local file or folder.
    #[arg(value_parser = super::location)]
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
    /// Print the merged output as JSON (docs/formats.md) instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `scan`.
pub async fn run(args: Args) -> i32 {
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
    let parallel = 2 * crate::instance::sizing::vcpus();
    let bar = crate::output::progress_bar(0, "jobs");
    let r = crate::operator::scan::scan(&source, &opts, parallel, &|done, total| {
        bar.set_length(total);
        bar.set_position(done);
    })
    .await;
    bar.finish_and_clear();
    match r {
        Ok(s) if args.json => {
            crate::output::print_json(&s.to_json());
            exit::OK
        }
        Ok(s) => {
            // Without a plan there is no coverage to report.
            crate::out!("{}", crate::operator::reduce::partition_table(&s.merged));
            exit::OK
        }
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    }
}
