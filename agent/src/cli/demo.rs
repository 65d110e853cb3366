//! `rangefleet demo`: the whole system on one machine, no AWS.

use std::path::PathBuf;

use crate::exit;
use crate::operator::demo::DemoOptions;

/// `rangefleet demo`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Work here instead of a fresh temporary directory (kept afterwards).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Records per partition (14 partitions).
    #[arg(long, default_value_t = 100_000)]
    pub records: u64,
    /// Records per job (small jobs, so the run lasts long enough to see the drain).
    #[arg(long, default_value_t = 500)]
    pub records_per_job: u64,
    /// Agent processes.
    #[arg(long, default_value_t = 4)]
    pub agents: usize,
}

/// Runs the demo; exit 0 when coverage is complete and the totals are exact.
pub async fn run(args: Args) -> i32 {
    let (dir, temporary) = match &args.dir {
        Some(d) => (d.clone(), false),
        None => (
            std::env::temp_dir().join(format!("rangefleet-demo-{}", std::process::id())),
            true,
        ),
    };
    let opts = DemoOptions {
        records: args.records,
        records_per_job: args.records_per_job,
        agents: args.agents,
    };
    let code = match crate::operator::demo::run(&opts, &dir).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    };
    if temporary && code == exit::OK {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        crate::outln!("(files kept in {})", dir.display());
    }
    code
}
