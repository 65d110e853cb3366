//! rangefleet: range-read fixed-length records out of partitioned data on EC2 spot fleets.
//!
//! The folder layout is the architecture (see docs/architecture.md):
//! `imds` asks the instance who it is, `userdata` + `config` + `tags` turn its user-data
//! into what to do, `store` reads record ranges, `process` turns records into results,
//! `queue` hands out jobs.

pub mod agent;
pub mod allow;
pub mod backoff;
pub mod cli;
pub mod commands;
pub mod config;
pub mod credentials;
pub mod demo;
pub mod ec2;
pub mod exit;
pub mod gen;
pub mod identity;
pub mod imds;
pub mod job;
pub mod logging;
pub mod monitor;
pub mod plan;
pub mod process;
pub mod publish;
pub mod queue;
pub mod range;
pub mod records;
pub mod reduce;
pub mod scan;
pub mod status;
pub mod store;
pub mod systemd;
pub mod tags;
pub mod time;
pub mod userdata;
pub mod worker;
