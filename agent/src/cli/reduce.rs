//! `rangefleet reduce`: merge results with an exact coverage check against the plan.

use crate::exit;

use super::open_store;

/// `rangefleet reduce`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The results prefix a plan wrote its manifest to (a URL, or a local folder).
    #[arg(long, value_parser = super::location)]
    pub results: String,
    /// Print the merged output as JSON (docs/formats.md) instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `reduce`.
pub async fn run(args: Args) -> i32 {
    let Some(results) = open_store(&args.results, "results").await else {
        return exit::USAGE;
    };
    match crate::operator::reduce::reduce(&results).await {
        Ok(r) => {
            if args.json {
                crate::output::print_json(&r.to_json());
            } else {
                crate::out!("{}", crate::operator::reduce::table(&r));
            }
            if r.complete() {
                exit::OK
            } else {
                exit::INCOMPLETE
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    }
}
