//! `rangefleet identity`: what the agent would boot with, printed as JSON, with
//! `config_source` saying whether the config came from the on-instance file or user-data.

use crate::exit;
use crate::imds::{ImdsClient, ImdsOptions};

use super::BootArgs;

/// Runs `identity`; returns the exit code.
pub async fn run(args: BootArgs) -> i32 {
    let client = match ImdsOptions::from_env(args.imds_allow_v1).and_then(ImdsClient::new) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::USAGE;
        }
    };
    let deadline = tokio::time::Instant::now() + args.boot_deadline;
    match crate::boot::boot_from(&client, deadline, Some(&args.local_config)).await {
        Ok(b) => {
            let sizing = crate::instance::sizing::Sizing::for_instance(&b.config, &b.identity);
            let mut report = crate::boot::report(
                Some(&b.identity),
                &b.config,
                &b.tags,
                Some(sizing.jobs_in_flight),
            );
            report["config_source"] =
                serde_json::to_value(&b.config_source).expect("sources serialise");
            crate::output::print_json(&report);
            exit::OK
        }
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    }
}
