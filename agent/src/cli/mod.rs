//! The `rangefleet` command line (docs/cli.md). Each subcommand maps its errors to the
//! documented exit codes; `main.rs` only calls [`main`].

pub mod agent;
pub mod demo;
pub mod docs;
pub mod gen;
pub mod health;
pub mod identity;
pub mod imds_mock;
pub mod journal_shipper;
pub mod plan;
pub mod reduce;
pub mod scan;
pub mod status;
pub mod userdata;

use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::exit;
use crate::logging::{self, LogFormat, LogLevel};
use crate::queue::Queue;
use crate::store::Store;

const ABOUT: &str =
    "Run batch jobs over fixed-length records in partitioned S3 data on EC2 spot fleets.";

const LONG_ABOUT: &str = "\
Run batch jobs over fixed-length records in partitioned S3 data on EC2 spot fleets.

On an instance, `rangefleet agent` learns who it is from the instance metadata service
(IMDSv2) and what to do from its user-data, then leases jobs from a queue, reads each
job's record range with one ranged GET, and writes an idempotent result.

Start here:
  rangefleet userdata check user-data.yaml     validate user-data before you launch
  rangefleet imds-mock --userdata user-data.yaml
                                               a local IMDS to try the agent against
  AWS_EC2_METADATA_SERVICE_ENDPOINT=http://127.0.0.1:PORT rangefleet identity

Exit codes: 0 success; 1 failure at run time; 2 bad usage, or invalid config,
user-data or input; 3 reduce: coverage incomplete; 75 boot deadline passed (IMDS or
the queue unreachable; systemd restarts the unit).";

/// The command line.
#[derive(Debug, Parser)]
#[command(name = "rangefleet", version, about = ABOUT, long_about = LONG_ABOUT)]
pub struct Cli {
    /// How to log: journald under systemd, text lines, or JSON lines (all on stderr
    /// except journald).
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "auto",
        env = "RANGEFLEET_LOG_FORMAT"
    )]
    pub log_format: LogFormat,
    /// How much to log: error, warn, info, debug or trace. RUST_LOG, when set, wins
    /// (it can also name modules: RUST_LOG=rangefleet::instance=debug).
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "info",
        env = "RANGEFLEET_LOG_LEVEL"
    )]
    pub log_level: LogLevel,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Ask IMDS who this instance is, read its config from user-data, print both, exit.
    ///
    /// Prints {"identity", "config", "tags", "config_source"} as JSON: what the agent
    /// would run with, and whether the config came from the on-instance file
    /// (/etc/rangefleet/agent.yaml, --local-config) or from user-data.
    /// Makes no EC2 API call. Point it at a local IMDS with
    /// AWS_EC2_METADATA_SERVICE_ENDPOINT=http://127.0.0.1:PORT.
    #[command(
        after_help = "Exit codes: 0 printed; 2 bad usage, or invalid user-data or config; 75 IMDS not reached before --boot-deadline."
    )]
    Identity(BootArgs),
    /// Work with user-data files before you launch.
    #[command(
        after_help = "Exit codes: 0 valid (the config is printed); 2 invalid (the field and line are named) or unreadable."
    )]
    Userdata {
        #[command(subcommand)]
        command: userdata::Command,
    },
    /// Serve a local instance metadata service for tests, demos and user-data checks.
    ///
    /// Prints its base URL on the first line of stdout, then serves until stopped.
    /// Tokens, IMDSv1 refusal, directory listings, the identity document, role
    /// credentials, and spot, rebalance and auto-scaling notices on a schedule.
    /// GET /_mock/stats returns request counts by method and path.
    #[command(name = "imds-mock")]
    #[command(
        after_help = "Exit codes: 0 stopped by SIGTERM or Ctrl-C; 1 cannot listen; 2 bad usage or an unreadable --userdata."
    )]
    ImdsMock(Box<imds_mock::Args>),
    /// Generate taxi trip test data in Hive layout, with the totals it must produce.
    ///
    /// Writes DIR/color=C/date=D/part-0000.rec (80-byte records, docs/formats.md) for every
    /// colour and day, and DIR/_expected.json: the taxi-stats computed from the values
    /// generated (not by parsing them back). The same seed gives the same bytes.
    #[command(
        after_help = "Exit codes: 0 written; 1 a write failed; 2 bad usage (--days, --records …)."
    )]
    Gen(gen::Args),
    /// Compute an answer over a folder, prefix or object in this process (no queue).
    ///
    /// Splits the data into the jobs `plan` would make and runs them here, 2 × CPUs at
    /// a time, then prints the merged output per partition and in total (docs/formats.md,
    /// without coverage). Objects whose names start with _ or . are skipped.
    #[command(
        after_help = "Exit codes: 0 printed; 1 a read failed, or the data is not what the processor takes; 2 bad usage or a source that cannot be opened."
    )]
    Scan(scan::Args),
    /// Split partitioned data into jobs, write the plan manifest, enqueue the jobs.
    ///
    /// Lists SOURCE, records each object's size and ETag, splits each into record-aligned
    /// jobs (one ranged GET each), interleaves them across partitions, writes
    /// RESULTS/_plan.json (refusing to replace one without --force), and enqueues them.
    /// Stops on objects that are not whole records unless --skip-bad-objects.
    #[command(
        after_help = "Exit codes: 0 planned and enqueued; 1 the queue cannot be opened or created (disk full, read-only, corrupt), or a store or queue failed mid-way (the manifest says what was planned); 2 bad usage, invalid input, or a plan already there (use --force)."
    )]
    Plan(plan::Args),
    /// Run the worker: lease jobs, read, process, write results, ack; drain on notice.
    ///
    /// On an instance it boots from IMDS and user-data (see `identity`). It stops
    /// leasing on a rebalance recommendation (by default), and on a spot interruption,
    /// an auto-scaling termination or SIGTERM it finishes what fits before the deadline,
    /// releases the rest, writes RESULTS/_instances/<instance-id>.json and exits 0.
    #[command(
        after_help = "Exit codes: 0 drained or done (--until-empty); 1 failure at run time, or a queue that cannot be used (disk full, read-only, corrupt; restarted by the unit); 2 invalid config or user-data, or a SQLite queue file that does not exist (not restarted by the unit); 75 IMDS or the queue not reached before the boot deadline (restarted)."
    )]
    Agent(agent::Args),
    /// Merge results with an exact coverage check against the plan.
    ///
    /// Every planned job must have exactly one result. Prints the merged output per
    /// partition and in total, and "planned N, done N, missing M, unexpected U, redone K". Exit 3 when any
    /// planned job has no result.
    #[command(
        after_help = "Exit codes: 0 coverage complete; 1 no plan there, or a read failed; 2 bad usage; 3 coverage incomplete (the output is still printed)."
    )]
    Reduce(reduce::Args),
    /// How a run is going: queue counts, the fleet's instances by tag, the plan's progress.
    ///
    /// Visible, in-flight and dead-lettered messages of --queue; with --fleet NAME, the
    /// fleet's instances (tagged rangefleet:fleet=NAME by the Terraform module; EC2
    /// DescribeInstances, terminated ones left out; --fleet-tag K=V for any other tag);
    /// with --results, planned
    /// jobs against results written (a progress bar on a terminal) and the instances
    /// whose agent gave up, with the reason from their summaries. --json for machines.
    #[command(
        after_help = "Exit codes: 0 printed; 1 a read failed, or the queue cannot be used (corrupt, read-only, access denied); 2 bad usage, a bad URL, or a SQLite queue file that does not exist (never created)."
    )]
    Status(status::Args),
    /// What the agent unit's OnFailure= handler runs: say why, leave the group.
    Health {
        #[command(subcommand)]
        command: health::Command,
    },
    /// The whole system on one machine, no AWS: gen, plan, 4 agents, a spot notice, reduce.
    ///
    /// Works in a fresh temporary directory (removed on success) unless --dir.
    #[command(
        after_help = "Exit codes: 0 coverage complete and the totals exact; 1 anything else."
    )]
    Demo(demo::Args),
    /// The journal-to-CloudWatch Logs shipper this binary carries: install it, print it.
    ///
    /// A Python script (python3 and botocore) and its unit; the Terraform module's
    /// journal_log_group installs and starts it (docs/operations.md).
    #[command(
        name = "journal-shipper",
        after_help = "Exit codes: 0 written or printed; 1 a file could not be written; 2 bad usage."
    )]
    JournalShipper {
        #[command(subcommand)]
        command: journal_shipper::Command,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    ///
    /// Generated from this command line's definitions, so it always matches `--help`.
    /// bash: `rangefleet completions bash > /etc/bash_completion.d/rangefleet`, or
    /// `source <(rangefleet completions bash)` in ~/.bashrc; zsh: write `_rangefleet`
    /// into a folder of $fpath; fish: `~/.config/fish/completions/rangefleet.fish`.
    #[command(after_help = "Exit codes: 0 printed; 1 stdout could not be written; 2 bad usage.")]
    Completions(docs::CompletionsArgs),
    /// Print the man page (roff), or write one page per subcommand into --dir.
    ///
    /// `rangefleet man | man -l -` reads it now; `rangefleet man --dir
    /// /usr/local/share/man/man1` installs rangefleet.1 and rangefleet-<subcommand>.1.
    #[command(
        after_help = "Exit codes: 0 printed or written; 1 stdout or --dir could not be written; 2 bad usage."
    )]
    Man(docs::ManArgs),
}

/// Settings needed before the config can be read (so they cannot be in it).
#[derive(Debug, Clone, Args)]
pub struct BootArgs {
    /// Fall back to IMDSv1 when no IMDSv2 token can be had. Off by default: IMDSv1
    /// lets any SSRF on the instance read its credentials.
    #[arg(long, env = "RANGEFLEET_IMDS_ALLOW_V1")]
    pub imds_allow_v1: bool,
    /// Give up on IMDS after this long and exit 75 (systemd restarts the unit).
    #[arg(long, env = "RANGEFLEET_BOOT_DEADLINE", default_value = "120s", value_parser = crate::time::parse_duration)]
    pub boot_deadline: Duration,
    /// The on-instance config file: read instead of user-data when it exists
    /// (cloud-init writes it; edit it and restart the agent to change the config).
    #[arg(long, env = "RANGEFLEET_LOCAL_CONFIG", default_value = crate::boot::LOCAL_CONFIG)]
    pub local_config: std::path::PathBuf,
}

/// Parses the command line, runs it, returns the exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    logging::init(cli.log_format, cli.log_level);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: failed to start the async runtime: {e}");
            return exit::FAILURE;
        }
    };
    runtime.block_on(run(cli.command))
}

async fn run(command: Command) -> i32 {
    match command {
        Command::Identity(args) => identity::run(args).await,
        Command::Userdata { command } => userdata::run(command),
        Command::ImdsMock(args) => imds_mock::run(*args).await,
        Command::Gen(args) => gen::run(args),
        Command::Scan(args) => scan::run(args).await,
        Command::Plan(args) => plan::run(args).await,
        Command::Agent(args) => agent::run(args).await,
        Command::Reduce(args) => reduce::run(args).await,
        Command::Status(args) => status::run(args).await,
        Command::Demo(args) => demo::run(args).await,
        Command::Health { command } => health::run(command).await,
        Command::JournalShipper { command } => journal_shipper::run(command),
        Command::Completions(args) => docs::completions(args),
        Command::Man(args) => docs::man(args),
    }
}

/// Opens the store at `url`, or says why not (`what` names it: source, results).
pub(crate) async fn open_store(url: &str, what: &str) -> Option<Store> {
    Store::open(url)
        .await
        .map_err(|e| eprintln!("error: {what} {url}: {e}"))
        .ok()
}

/// Opens the queue at `url` for `access`, or says why not and returns the exit code:
/// 2 for a bad URL or a SQLite file that does not exist, 1 for a queue that cannot be
/// used (disk full, read-only, corrupt, access denied).
pub(crate) async fn open_queue(
    url: &str,
    access: crate::queue::Access,
) -> Result<std::sync::Arc<dyn Queue>, i32> {
    crate::queue::open_for(url, None, access)
        .await
        .map_err(|e| {
            eprintln!("error: queue {url}: {e}");
            e.class().exit_code()
        })
}

/// A store location from the command line: URLs as written, and a plain path (no
/// `scheme://`) as the `file://` URL of its absolute form, so `rangefleet scan /tmp/trips`
/// works. A folder (an existing one, or a path ending in `/`) becomes a prefix.
pub(crate) fn location(arg: &str) -> Result<String, String> {
    if arg.contains("://") {
        return Ok(arg.to_string());
    }
    if arg.is_empty() {
        return Err("expected a URL (s3://bucket/prefix/, file:///path/) or a path".into());
    }
    let abs = std::path::absolute(arg)
        .map_err(|e| format!("cannot make {arg:?} absolute: {e}; write file:///absolute/path"))?;
    let folder = arg.ends_with('/') || abs.is_dir();
    let url = if folder {
        url::Url::from_directory_path(&abs)
    } else {
        url::Url::from_file_path(&abs)
    };
    url.map(String::from)
        .map_err(|()| format!("cannot use {arg:?} as a path; write file:///absolute/path"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_paths_become_file_urls_and_urls_stay_as_written() {
        assert_eq!(location("s3://b/p/").unwrap(), "s3://b/p/");
        assert_eq!(location("file:///tmp/x").unwrap(), "file:///tmp/x");
        let dir = std::env::temp_dir();
        let as_url = location(dir.to_str().unwrap()).unwrap();
        assert!(
            as_url.starts_with("file:///") && as_url.ends_with('/'),
            "{as_url}"
        );
        assert_eq!(
            location("/no/such/place/obj.rec").unwrap(),
            "file:///no/such/place/obj.rec"
        );
        assert_eq!(location("/no/such/dir/").unwrap(), "file:///no/such/dir/");
        assert_eq!(location("/a b/c").unwrap(), "file:///a%20b/c");
        let rel = location("relative/x.rec").unwrap();
        assert!(
            rel.starts_with("file:///") && rel.ends_with("/relative/x.rec"),
            "{rel}"
        );
        assert!(location("").is_err());
    }
}
