//! `rangefleet gen`: taxi trip test data in Hive layout, with the totals it must produce.

use std::path::PathBuf;

use crate::exit;

/// `rangefleet gen`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Output directory (created if missing).
    #[arg(long)]
    out: PathBuf,
    /// Colours, comma-separated: one color= partition each.
    #[arg(long, default_value = "yellow,green", value_delimiter = ',')]
    colors: Vec<String>,
    /// Days: YYYY-MM-DD or FIRST..LAST (inclusive).
    #[arg(long, default_value = "2016-01-01..2016-01-07")]
    days: String,
    /// Records per partition.
    #[arg(long, default_value_t = 100_000)]
    records: u64,
    /// Seed for the generator.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Make every K-th record of each partition bad (counted, never summed).
    #[arg(long)]
    bad_every: Option<u64>,
}

/// Runs `gen`; returns the exit code.
pub fn run(args: Args) -> i32 {
    let days = match crate::operator::gen::parse_days(&args.days) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: --days: {e}");
            return exit::USAGE;
        }
    };
    let opts = crate::operator::gen::GenOptions {
        out: args.out.clone(),
        colors: args.colors,
        days,
        records: args.records,
        seed: args.seed,
        bad_every: args.bad_every,
    };
    let total = opts.records * opts.colors.len() as u64 * opts.days.len() as u64;
    let bar = crate::output::progress_bar(total, "records");
    let started = std::time::Instant::now();
    let result = crate::operator::gen::generate(&opts, &mut |n| bar.set_position(n));
    bar.finish_and_clear();
    match result {
        Ok(s) => {
            let secs = started.elapsed().as_secs_f64();
            eprintln!(
                "wrote {} records ({} bad) in {} files, {:.1} MB, to {} in {secs:.2} s; expected totals in {}",
                s.records,
                s.expected.total.bad_records,
                s.files,
                s.bytes as f64 / 1e6,
                args.out.display(),
                args.out.join(crate::operator::gen::EXPECTED_FILE).display()
            );
            exit::OK
        }
        Err(e) => {
            eprintln!("error: {e}");
            match e {
                crate::operator::gen::GenError::Io { .. } => exit::FAILURE,
                _ => exit::USAGE,
            }
        }
    }
}
