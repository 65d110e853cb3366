//! How much work an instance takes on at once: a throughput target from the
//! instance's network, and the GETs, parts and jobs in flight that reach it.
//!
//! On EC2 the limit is the network, not the CPU: one S3 connection delivers roughly
//! 85–90 MB/s after 20–50 ms to the first byte, while even a 2-vCPU instance is rated
//! up to 12.5–25 Gbit/s. Sizing by CPUs (the seed's `2 × vCPUs` jobs, one GET each)
//! leaves most of that idle. So the agent:
//!
//! 1. picks a **throughput target**: `max_throughput_gbps` from the config when set,
//!    else the instance type's rated network performance from [`network_gbps`], else
//!    [`DEFAULT_GBPS`] (an unknown type, or no IMDS);
//! 2. turns it into **GETs in flight** ([`gets_for`]): enough connections at
//!    [`PER_GET_BYTES_PER_SECOND`] to carry the target while each also spends
//!    [`FIRST_BYTE`] waiting for its first byte per [`PART_SIZE`] part, plus a quarter
//!    of headroom, between [`MIN_GETS`] and [`MAX_GETS`];
//! 3. leases as many **jobs** as GETs, and splits each job into record-aligned parts of
//!    about [`PART_SIZE`] bytes read in parallel (`instance/fetch.rs`), so a plan's last
//!    jobs still fill the width.
//!
//! An explicit `concurrency` in the config wins over all of this: that many jobs and
//! that many GETs in flight. The `exec` processor is CPU-bound and keeps a CPU limit,
//! [`cpu_slots`] (`2 × vCPUs`) jobs reading and running at once, on top of the network
//! width: the two limits compose.
//!
//! # The network table
//!
//! [`network_gbps`] holds the "Network performance" column of AWS's instance type
//! specifications (<https://docs.aws.amazon.com/ec2/latest/instancetypes/gp.html>,
//! `co.html`, `mo.html`, as of 2025) for current general-purpose, compute- and
//! memory-optimised families. For sizes rated "up to" a figure (burstable bandwidth,
//! usually `4xlarge` and smaller) the table keeps that figure: it is what the instance
//! reaches while its network credits last, and what Mountpoint for S3 targets too. A
//! type not in the table gets [`DEFAULT_GBPS`].

use std::time::Duration;

use serde::Serialize;

use crate::boot::config::Config;
use crate::boot::Identity;
use crate::contract::summary::{Throughput, WindowSummary};
use crate::instance::fetch::WindowStats;

/// The target for an instance type not in the table (or no IMDS): 10 Gbit/s.
pub const DEFAULT_GBPS: f64 = 10.0;

/// What one GET delivers once its first byte has arrived (S3: 85–90 MB/s; the low end).
pub const PER_GET_BYTES_PER_SECOND: f64 = 85e6;

/// Typical time to the first byte of a ranged S3 GET (20–50 ms).
pub const FIRST_BYTE: Duration = Duration::from_millis(30);

/// Target size of one part GET: jobs are read in record-aligned parts of about this
/// many bytes (the AWS CRT uses 8–16 MiB).
pub const PART_SIZE: u64 = 8 << 20;

/// Fewest GETs in flight the computed width goes to.
pub const MIN_GETS: usize = 4;

/// Most GETs in flight the computed width goes to. Each GET in flight holds at most
/// one receive buffer of the HTTP client (a few hundred KiB), so this bounds memory.
pub const MAX_GETS: usize = 128;

/// Headroom over the computed number of GETs: parts end unevenly, and a short part
/// spends a larger share of its life waiting for the first byte.
const HEADROOM: f64 = 1.25;

/// The CPUs this process may use (1 when unknown).
pub fn vcpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Jobs the CPU-bound `exec` processor runs at once: the seed's `2 × vCPUs`.
pub fn cpu_slots(vcpus: usize) -> usize {
    (2 * vcpus).clamp(1, 1024)
}

/// Where the throughput target came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    /// `max_throughput_gbps` in the config.
    Config,
    /// `concurrency` in the config: the width is fixed, the target only reported.
    Concurrency,
    /// The instance type's rated network performance ([`network_gbps`]).
    InstanceType,
    /// [`DEFAULT_GBPS`]: the instance type is not in the table (or there is no IMDS).
    Default,
}

impl Source {
    /// The name in logs and the instance summary.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Config => "config",
            Source::Concurrency => "concurrency",
            Source::InstanceType => "instance-type",
            Source::Default => "default",
        }
    }
}

/// The width an instance works at: what `agent_ready` logs and the summary records.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sizing {
    /// The throughput target, Gbit/s.
    pub throughput_gbps: f64,
    /// Where it came from.
    pub source: Source,
    /// The most part GETs in flight at once (the window's ceiling).
    pub gets_in_flight: usize,
    /// Jobs leased at once.
    pub jobs_in_flight: usize,
    /// `exec` jobs reading or running at once.
    pub cpu_slots: usize,
    /// Target bytes per part GET.
    pub part_size: u64,
}

impl Sizing {
    /// The summary's `throughput`: this sizing and what the window did.
    pub fn summary(&self, window: &WindowStats) -> Throughput {
        Throughput {
            throughput_gbps: self.throughput_gbps,
            source: self.source.as_str().to_string(),
            gets_in_flight: self.gets_in_flight as u64,
            jobs_in_flight: self.jobs_in_flight as u64,
            cpu_slots: self.cpu_slots as u64,
            part_size: self.part_size,
            window: WindowSummary {
                gets: window.gets as u64,
                peak_gets_in_flight: window.peak_gets_in_flight as u64,
                narrowed: window.narrowed,
                throttled: window.throttled,
                splits: window.splits,
            },
        }
    }

    /// The width for `config` on the instance `identity`, with this machine's CPUs.
    pub fn for_instance(config: &Config, identity: &Identity) -> Sizing {
        Sizing::decide(
            config.concurrency,
            config.max_throughput_gbps,
            &identity.instance_type,
            vcpus(),
        )
    }

    /// The width for `config` on an instance of `instance_type` with `vcpus` CPUs.
    pub fn decide(
        concurrency: Option<u32>,
        max_throughput_gbps: Option<f64>,
        instance_type: &str,
        vcpus: usize,
    ) -> Sizing {
        let (gbps, source) = match (max_throughput_gbps, network_gbps(instance_type)) {
            (Some(g), _) => (g, Source::Config),
            (None, Some(g)) => (g, Source::InstanceType),
            (None, None) => (DEFAULT_GBPS, Source::Default),
        };
        let (gets, jobs, source) = match concurrency {
            Some(c) => (c as usize, c as usize, Source::Concurrency),
            None => {
                let gets = gets_for(gbps);
                (gets, gets, source)
            }
        };
        Sizing {
            throughput_gbps: gbps,
            source,
            gets_in_flight: gets.max(1),
            jobs_in_flight: jobs.max(1),
            cpu_slots: cpu_slots(vcpus),
            part_size: PART_SIZE,
        }
    }
}

/// GETs in flight to carry `gbps`: `target / per-GET rate`, times the share of a
/// part's life spent waiting for its first byte, plus a quarter of headroom.
///
/// 25 Gbit/s gives 60, 12.5 gives 30, 10 gives 24.
pub fn gets_for(gbps: f64) -> usize {
    let target = gbps * 1e9 / 8.0;
    let transfer = PART_SIZE as f64 / PER_GET_BYTES_PER_SECOND;
    let per_part = FIRST_BYTE.as_secs_f64() + transfer;
    let gets = target / PER_GET_BYTES_PER_SECOND * (per_part / transfer) * HEADROOM;
    (gets.ceil() as usize).clamp(MIN_GETS, MAX_GETS)
}

/// The rated network performance of `instance_type` (`c5n.large`), Gbit/s; `None`
/// when the family or size is not in the table.
pub fn network_gbps(instance_type: &str) -> Option<f64> {
    let (family, size) = instance_type.split_once('.')?;
    let profile = FAMILIES
        .iter()
        .find(|(families, _)| families.contains(&family))?
        .1;
    // `metal` and the `metal-NNxl` sizes: the family's largest figure.
    let units = if size.starts_with("metal") {
        f64::INFINITY
    } else {
        size_units(size)?
    };
    profile
        .iter()
        .find(|(up_to, _)| units <= *up_to)
        .map(|(_, gbps)| *gbps)
}

/// A size in `large` units (`large` 1, `xlarge` 2, `NNxlarge` 2·NN; smaller sizes
/// count as `large`, a slight overestimate for the few families that rate them lower).
fn size_units(size: &str) -> Option<f64> {
    match size {
        "nano" | "micro" | "small" | "medium" | "large" => Some(1.0),
        "xlarge" => Some(2.0),
        _ => {
            let n: f64 = size.strip_suffix("xlarge")?.parse().ok()?;
            Some(2.0 * n)
        }
    }
}

/// Gbit/s by size: the figure of the first entry whose `large` units reach the size's.
type Profile = [(f64, f64)];

const INF: f64 = f64::INFINITY;

/// `c5`, `m5`, `r5` (and `d`, `a`): up to 10 through `8xlarge`, then 12, 20, 25.
const GEN5: &Profile = &[(16.0, 10.0), (24.0, 12.0), (32.0, 20.0), (INF, 25.0)];
/// `c5n`: up to 25 through `4xlarge`, `9xlarge` 50, `18xlarge` 100.
const C5N: &Profile = &[(8.0, 25.0), (18.0, 50.0), (INF, 100.0)];
/// `m5n`, `r5n` (and `dn`): up to 25 through `8xlarge`, then 50, 75, 100.
const M5N: &Profile = &[(16.0, 25.0), (24.0, 50.0), (32.0, 75.0), (INF, 100.0)];
/// `c6i`, `m6i`, `r6i`, `c6a`, `m6a`, `r6a`, `c7i`, `m7i`, `r7i`, `c7a`, `m7a`, `r7a`
/// (and `d`): up to 12.5 through `8xlarge`, then 18.75, 25, 37.5, 50.
const GEN6I: &Profile = &[
    (16.0, 12.5),
    (24.0, 18.75),
    (32.0, 25.0),
    (48.0, 37.5),
    (INF, 50.0),
];
/// `c6in`, `m6in`, `r6in` (and `dn`): up to 25, 30, 40 (`large`, `xlarge`,
/// `2xlarge`), then 50, 50, 75, 100, 150, 200.
const GEN6IN: &Profile = &[
    (1.0, 25.0),
    (2.0, 30.0),
    (4.0, 40.0),
    (16.0, 50.0),
    (24.0, 75.0),
    (32.0, 100.0),
    (48.0, 150.0),
    (INF, 200.0),
];
/// `c6g`, `m6g`, `r6g` (and `d`, Graviton2): up to 10 through `4xlarge`, then 12,
/// 20, 25.
const GEN6G: &Profile = &[(8.0, 10.0), (16.0, 12.0), (24.0, 20.0), (INF, 25.0)];
/// `c6gn`: up to 25 through `4xlarge`, then 50, 75, 100.
const C6GN: &Profile = &[(8.0, 25.0), (16.0, 50.0), (24.0, 75.0), (INF, 100.0)];
/// `c7g`, `m7g`, `r7g` (and `d`, Graviton3): up to 12.5 through `xlarge`, up to 15
/// through `8xlarge`, then 22.5, 30.
const GEN7G: &Profile = &[(2.0, 12.5), (16.0, 15.0), (24.0, 22.5), (INF, 30.0)];
/// `c7gn`: up to 30 (`large`; `medium`, up to 25, counts as `large`), 40, 50, 50,
/// then 100, 150, 200.
const C7GN: &Profile = &[
    (1.0, 30.0),
    (2.0, 40.0),
    (8.0, 50.0),
    (16.0, 100.0),
    (24.0, 150.0),
    (INF, 200.0),
];
/// `c8g`, `m8g`, `r8g` (Graviton4): up to 12.5 through `xlarge`, up to 15 through
/// `8xlarge`, then 22.5, 30, 40, 50.
const GEN8G: &Profile = &[
    (2.0, 12.5),
    (16.0, 15.0),
    (24.0, 22.5),
    (32.0, 30.0),
    (48.0, 40.0),
    (INF, 50.0),
];
/// `t3`, `t3a`, `t4g` (burstable): up to 5.
const BURST: &Profile = &[(INF, 5.0)];

/// Families and their profile.
const FAMILIES: &[(&[&str], &Profile)] = &[
    (
        &["c5", "c5d", "c5a", "m5", "m5d", "m5a", "r5", "r5d", "r5a"],
        GEN5,
    ),
    (&["c5n"], C5N),
    (&["m5n", "m5dn", "r5n", "r5dn"], M5N),
    (
        &[
            "c6i", "c6id", "m6i", "m6id", "r6i", "r6id", "c6a", "m6a", "r6a", "c7i", "m7i", "r7i",
            "c7a", "m7a", "r7a",
        ],
        GEN6I,
    ),
    (&["c6in", "m6in", "m6idn", "r6in", "r6idn"], GEN6IN),
    (&["c6g", "c6gd", "m6g", "m6gd", "r6g", "r6gd"], GEN6G),
    (&["c6gn"], C6GN),
    (&["c7g", "c7gd", "m7g", "m7gd", "r7g", "r7gd"], GEN7G),
    (&["c7gn"], C7GN),
    (&["c8g", "m8g", "r8g"], GEN8G),
    (&["t3", "t3a", "t4g"], BURST),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_knows_current_two_vcpu_types() {
        assert_eq!(network_gbps("c5n.large"), Some(25.0));
        assert_eq!(network_gbps("m6in.large"), Some(25.0));
        assert_eq!(network_gbps("m6i.large"), Some(12.5));
        assert_eq!(network_gbps("m5.large"), Some(10.0));
        assert_eq!(network_gbps("c7gn.large"), Some(30.0));
        assert_eq!(network_gbps("c5n.18xlarge"), Some(100.0));
        assert_eq!(network_gbps("c5n.metal"), Some(100.0));
        assert_eq!(network_gbps("c5.9xlarge"), Some(12.0));
        assert_eq!(network_gbps("m6i.32xlarge"), Some(50.0));
        assert_eq!(network_gbps("t3.micro"), Some(5.0));
        assert_eq!(network_gbps("c5n.huge"), None);
        assert_eq!(network_gbps("x9z.large"), None);
        assert_eq!(network_gbps("local"), None);
    }

    #[test]
    fn gets_follow_the_target() {
        assert_eq!(gets_for(25.0), 60);
        assert_eq!(gets_for(12.5), 30);
        assert_eq!(gets_for(10.0), 24);
        assert_eq!(gets_for(0.1), MIN_GETS);
        assert_eq!(gets_for(400.0), MAX_GETS);
    }

    #[test]
    fn config_wins_then_the_table_then_the_default() {
        let s = Sizing::decide(None, None, "c5n.large", 2);
        assert_eq!(
            (s.source, s.gets_in_flight, s.jobs_in_flight),
            (Source::InstanceType, 60, 60)
        );
        assert_eq!(s.cpu_slots, 4);
        let s = Sizing::decide(None, Some(5.0), "c5n.large", 2);
        assert_eq!((s.source, s.throughput_gbps), (Source::Config, 5.0));
        let s = Sizing::decide(None, None, "local", 2);
        assert_eq!(
            (s.source, s.throughput_gbps, s.gets_in_flight),
            (Source::Default, 10.0, 24)
        );
        let s = Sizing::decide(Some(4), None, "c5n.large", 2);
        assert_eq!(
            (s.source, s.gets_in_flight, s.jobs_in_flight),
            (Source::Concurrency, 4, 4)
        );
    }
}
