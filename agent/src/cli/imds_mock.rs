//! `rangefleet imds-mock`: a local instance metadata service for tests and demos.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use crate::exit;
use crate::imds::mock::{DropRule, FailRule, InterruptAction, MockOptions, MockServer};

/// `rangefleet imds-mock`.
#[derive(Debug, clap::Args)]
pub struct Args {
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

/// Runs `imds-mock` until SIGTERM or Ctrl-C; returns the exit code.
pub async fn run(args: Args) -> i32 {
    let userdata = match &args.userdata {
        None => None,
        Some(p) => match crate::boot::read_capped(p) {
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
    tracing::info!(event = "imds_mock_serving", url = %server.url, "imds-mock serving");
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
