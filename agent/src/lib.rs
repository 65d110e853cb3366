//! rangefleet: range-read fixed-length records out of partitioned data on EC2 spot fleets.
//!
//! The folder layout is the architecture (see docs/architecture.md). Imports only go
//! downward through these layers:
//!
//! | layer | modules | what it is |
//! |---|---|---|
//! | the command line | [`cli`] | one file per subcommand: its arguments and its handler |
//! | the operator side | [`operator`] | `plan`, `scan`, `reduce`, `status`, `gen`, `demo` |
//! | an instance's control plane | [`instance`] | the composition root, worker, monitor, systemd, tag publishing |
//! | the boot phase | [`boot`] | identity, user-data, config, tags, from IMDS alone |
//! | the seams | [`imds`], [`queue`], [`store`], [`process`], [`aws`] | each I/O seam behind one type or trait |
//! | the contract | [`contract`] | job messages, result documents, summaries, the manifest, ranges, the allow-list |
//! | foundations | [`backoff`], [`time`], [`error`], [`exit`], [`output`], [`logging`] | no imports from the layers above |

pub mod aws;
pub mod backoff;
pub mod boot;
pub mod cli;
pub mod contract;
pub mod error;
pub mod exit;
pub mod imds;
pub mod instance;
pub mod logging;
pub mod operator;
pub mod output;
pub mod process;
pub mod queue;
pub mod store;
pub mod time;
