//! The `rangefleet` command line (DESIGN 5.6). Each subcommand maps its errors to the
//! documented exit codes; `main.rs` only calls [`main`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use clap::{Args, Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::exit;
use crate::imds::mock::{DropRule, FailRule, InterruptAction, MockOptions, MockServer};
use crate::imds::{ImdsClient, ImdsOptions};
use crate::logging::{self, LogFormat};

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
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Ask IMDS who this instance is, read its config from user-data, print both, exit.
    ///
    /// Prints {"identity", "config", "tags"} as JSON: what the agent would run with.
    /// Makes no EC2 API call. Point it at a local IMDS with
    /// AWS_EC2_METADATA_SERVICE_ENDPOINT=http://127.0.0.1:PORT.
    Identity(BootArgs),
    /// Work with user-data files before you launch.
    Userdata {
        #[command(subcommand)]
        command: UserdataCommand,
    },
    /// Serve a local instance metadata service for tests, demos and user-data checks.
    ///
    /// Prints its base URL on the first line of stdout, then serves until stopped.
    /// Tokens, IMDSv1 refusal, directory listings, the identity document, role
    /// credentials, and spot, rebalance and auto-scaling notices on a schedule.
    /// GET /_mock/stats returns request counts by method and path.
    #[command(name = "imds-mock")]
    ImdsMock(Box<MockArgs>),
    /// Generate taxi trip test data in Hive layout, with the totals it must produce.
    ///
    /// Writes DIR/color=C/date=D/part-0000.rec (80-byte records, DESIGN 5.1) for every
    /// colour and day, and DIR/_expected.json: the taxi-stats computed from the values
    /// generated (not by parsing them back). The same seed gives the same bytes.
    Gen(GenArgs),
    /// Compute an answer over a folder, prefix or object in this process (no queue).
    ///
    /// Splits the data into the jobs `plan` would make and runs them here, 2 × CPUs at
    /// a time, then prints the merged output per partition and in total (DESIGN 5.5,
    /// without coverage). Objects whose names start with _ or . are skipped.
    Scan(crate::commands::ScanArgs),
    /// Split partitioned data into jobs, write the plan manifest, enqueue the jobs.
    ///
    /// Lists SOURCE, records each object's size and ETag, splits each into record-aligned
    /// jobs (one ranged GET each), interleaves them across partitions, writes
    /// RESULTS/_plan.json (refusing to replace one without --force), and enqueues them.
    /// Stops on objects that are not whole records unless --skip-bad-objects.
    Plan(crate::commands::PlanArgs),
    /// Run the worker: lease jobs, read, process, write results, ack; drain on notice.
    ///
    /// On an instance it boots from IMDS and user-data (see `identity`). It stops
    /// leasing on a rebalance recommendation (by default), and on a spot interruption,
    /// an auto-scaling termination or SIGTERM it finishes what fits before the deadline,
    /// releases the rest, writes RESULTS/_instances/<instance-id>.json and exits 0.
    Agent(crate::commands::AgentArgs),
    /// Merge results with an exact coverage check against the plan.
    ///
    /// Every planned job must have exactly one result. Prints the merged output per
    /// partition and in total, and "planned N, done N, lost M, …". Exit 3 when any
    /// planned job has no result.
    Reduce(crate::commands::ReduceArgs),
    /// How a run is going: queue counts, the fleet's instances by tag, the plan's progress.
    ///
    /// Visible, in-flight and dead-lettered messages of --queue; with --fleet-tag K=V,
    /// the instances carrying that tag (EC2 DescribeInstances); with --results, planned
    /// jobs against results written (a progress bar on a terminal). --json for machines.
    Status(crate::status::StatusArgs),
    /// The whole system on one machine, no AWS: gen, plan, 4 agents, a spot notice, reduce.
    ///
    /// Works in a fresh temporary directory (removed on success) unless --dir.
    Demo(crate::demo::DemoArgs),
}

#[derive(Debug, Args)]
struct GenArgs {
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

#[derive(Debug, Subcommand)]
enum UserdataCommand {
    /// Validate a user-data file and print the config the agent would use.
    ///
    /// Accepts everything the agent does: #cloud-config with a write_files entry for
    /// /etc/rangefleet/agent.yaml, MIME multipart, a bare YAML/JSON/TOML config, each
    /// possibly gzipped and/or base64-encoded. Prints {"identity": null, "config",
    /// "tags"} with defaults filled in; templates stay as written and machine-dependent
    /// defaults read "auto". Exit 2 with the field and line when it is invalid.
    Check {
        /// The user-data file, or - for stdin.
        file: PathBuf,
    },
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
}

#[derive(Debug, Args)]
struct MockArgs {
    /// Address to listen on; port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// File served as user-data (bytes as they are; gzip is fine). None: 404.
    #[arg(long)]
    userdata: Option<PathBuf>,
    /// Instance id (any is accepted).
    #[arg(long, default_value = "i-0123456789abcdef0")]
    instance_id: String,
    /// Instance type.
    #[arg(long, default_value = "m5.large")]
    instance_type: String,
    /// Region.
    #[arg(long, default_value = "us-east-1")]
    region: String,
    /// Availability zone.
    #[arg(long, default_value = "us-east-1a")]
    availability_zone: String,
    /// spot or on-demand.
    #[arg(long, default_value = "spot")]
    life_cycle: String,
    /// ami-launch-index.
    #[arg(long, default_value_t = 0)]
    launch_index: u32,
    /// An instance tag K=V, served under tags/instance (repeatable).
    #[arg(long = "tag", value_parser = parse_tag)]
    tags: Vec<(String, String)>,
    /// Serve test credentials for this IAM role under iam/security-credentials/.
    #[arg(long)]
    role: Option<String>,
    /// Post a spot interruption notice this long after start (e.g. 30s).
    #[arg(long, value_parser = crate::time::parse_duration)]
    interrupt_after: Option<Duration>,
    /// The action the notice announces.
    #[arg(long, value_enum, default_value = "terminate")]
    interrupt_action: InterruptAction,
    /// Post a rebalance recommendation this long after start.
    #[arg(long, value_parser = crate::time::parse_duration)]
    rebalance_after: Option<Duration>,
    /// Move autoscaling/target-lifecycle-state to Terminated this long after start.
    #[arg(long, value_parser = crate::time::parse_duration)]
    asg_terminate_after: Option<Duration>,
    /// Answer requests that carry no token (IMDSv1).
    #[arg(long)]
    allow_v1: bool,
    /// Longest token TTL granted, seconds (short values test token renewal).
    #[arg(long, default_value_t = 21_600)]
    token_ttl_max: u64,
    /// Fail the first N requests for PATH with STATUS: PATH=STATUS*N (repeatable).
    #[arg(long)]
    fail: Vec<FailRule>,
    /// Delay every answer by this long.
    #[arg(long, value_parser = crate::time::parse_duration, default_value = "0s")]
    latency: Duration,
    /// Close the connection without answering the first N requests for PATH: PATH*N.
    #[arg(long)]
    drop: Vec<DropRule>,
}

fn parse_tag(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("expected K=V, got {s:?}"))?;
    Ok((k.to_string(), v.to_string()))
}

/// `print!` for a command's output; see [`write_stdout`].
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::write_stdout(format_args!($($arg)*))
    };
}

/// `println!` for a command's output; see [`write_stdout`].
#[macro_export]
macro_rules! outln {
    () => {
        $crate::cli::write_stdout(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::cli::write_stdout(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// Writes a command's output to stdout. A reader that went away
/// (`rangefleet reduce --json | head`) is not worth a panic: the rest is dropped and
/// the command's exit code stands.
pub fn write_stdout(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout.write_fmt(args).and_then(|()| stdout.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            eprintln!("error: failed to write to stdout: {e}");
        }
        _ => {}
    }
}

/// Prints a command's JSON document, pretty, on stdout (see [`write_stdout`]).
pub fn print_json(doc: &serde_json::Value) {
    crate::outln!(
        "{}",
        serde_json::to_string_pretty(doc).expect("JSON values serialise")
    );
}

/// Parses the command line, runs it, returns the exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    logging::init(cli.log_format);
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
        Command::Identity(args) => identity(args).await,
        Command::Userdata {
            command: UserdataCommand::Check { file },
        } => userdata_check(&file),
        Command::ImdsMock(args) => imds_mock(*args).await,
        Command::Gen(args) => gen(args),
        Command::Scan(args) => crate::commands::scan(args).await,
        Command::Plan(args) => crate::commands::plan(args).await,
        Command::Agent(args) => crate::commands::agent(args).await,
        Command::Reduce(args) => crate::commands::reduce(args).await,
        Command::Status(args) => crate::status::run(args).await,
        Command::Demo(args) => crate::demo::run(args).await,
    }
}

fn gen(args: GenArgs) -> i32 {
    let days = match crate::gen::parse_days(&args.days) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: --days: {e}");
            return exit::USAGE;
        }
    };
    let opts = crate::gen::GenOptions {
        out: args.out.clone(),
        colors: args.colors,
        days,
        records: args.records,
        seed: args.seed,
        bad_every: args.bad_every,
    };
    let total = opts.records * opts.colors.len() as u64 * opts.days.len() as u64;
    let bar = progress_bar(total, "records");
    let started = std::time::Instant::now();
    let result = crate::gen::generate(&opts, &mut |n| bar.set_position(n));
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
                args.out.join(crate::gen::EXPECTED_FILE).display()
            );
            exit::OK
        }
        Err(e) => {
            eprintln!("error: {e}");
            match e {
                crate::gen::GenError::Io { .. } => exit::FAILURE,
                _ => exit::USAGE,
            }
        }
    }
}

/// A progress bar on a terminal (stderr), nothing elsewhere.
pub fn progress_bar(total: u64, unit: &str) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total);
    let style = indicatif::ProgressStyle::with_template(&format!(
        "{{bar:40}} {{pos}}/{{len}} {unit} ({{per_sec}}, {{eta}} left)"
    ))
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    bar.set_style(style);
    bar
}

/// The CPUs this process may use (1 when unknown).
pub(crate) fn vcpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

async fn identity(args: BootArgs) -> i32 {
    let client = match ImdsOptions::from_env(args.imds_allow_v1).and_then(ImdsClient::new) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::USAGE;
        }
    };
    let deadline = tokio::time::Instant::now() + args.boot_deadline;
    match crate::identity::boot(&client, deadline).await {
        Ok(b) => {
            let report =
                crate::identity::report(Some(&b.identity), &b.config, &b.tags, Some(vcpus()));
            crate::cli::print_json(&report);
            exit::OK
        }
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    }
}

fn userdata_check(file: &std::path::Path) -> i32 {
    let raw = if file.as_os_str() == "-" {
        let mut buf = Vec::new();
        match std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf) {
            Ok(_) => buf,
            Err(e) => {
                eprintln!("error: failed to read stdin: {e}");
                return exit::USAGE;
            }
        }
    } else {
        match std::fs::read(file) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("error: failed to read {}: {e}", file.display());
                return exit::USAGE;
            }
        }
    };
    let config = crate::userdata::decode(&raw)
        .map_err(|e| e.to_string())
        .and_then(|doc| crate::config::parse(&doc).map_err(|e| e.to_string()));
    match config {
        Ok(config) => {
            let tags: BTreeMap<String, String> = config.tags.clone();
            let report = crate::identity::report(None, &config, &tags, None);
            crate::cli::print_json(&report);
            exit::OK
        }
        Err(e) => {
            eprintln!("error: {}: {e}", file.display());
            exit::USAGE
        }
    }
}

async fn imds_mock(args: MockArgs) -> i32 {
    let userdata = match &args.userdata {
        None => None,
        Some(p) => match std::fs::read(p) {
            Ok(b) => Some(Bytes::from(b)),
            Err(e) => {
                eprintln!("error: failed to read --userdata {}: {e}", p.display());
                return exit::USAGE;
            }
        },
    };
    let opts = MockOptions {
        userdata,
        instance_id: args.instance_id,
        instance_type: args.instance_type,
        region: args.region,
        availability_zone: args.availability_zone,
        life_cycle: args.life_cycle,
        launch_index: args.launch_index,
        tags: args.tags.into_iter().collect(),
        role: args.role,
        interrupt_after: args.interrupt_after,
        interrupt_action: args.interrupt_action,
        rebalance_after: args.rebalance_after,
        asg_terminate_after: args.asg_terminate_after,
        allow_v1: args.allow_v1,
        token_ttl_max: args.token_ttl_max,
        fail: args.fail,
        drop: args.drop,
        latency: args.latency,
    };
    let shutdown = CancellationToken::new();
    let server = match MockServer::start(args.listen, opts, shutdown.clone()).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: failed to listen on {}: {e}", args.listen);
            return exit::FAILURE;
        }
    };
    crate::outln!("{}", server.url); // flushed: a parent reads the URL from a pipe
    tracing::info!(url = %server.url, "imds-mock serving");
    wait_for_signal().await;
    shutdown.cancel();
    exit::OK
}

/// Ctrl-C or SIGTERM.
pub async fn wait_for_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler installs");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
