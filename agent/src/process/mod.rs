//! Processors: pure functions from whole records to a JSON output (DESIGN 5.1).
//!
//! `count` and `taxi-stats` are pure and stream: records go in chunk by chunk, one
//! output comes out, and outputs merge exactly. `exec` runs a command from the config.

pub mod count;
pub mod exec;
pub mod taxi;

use serde_json::Value;

use count::CountStats;
use taxi::TaxiStats;

/// The processors a job may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProcessorKind {
    /// Records, bytes and an order-independent checksum.
    Count,
    /// Exact sums and histograms over taxi trip records.
    TaxiStats,
    /// The command in the config's `processors.exec`.
    Exec,
}

impl std::str::FromStr for ProcessorKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "count" => Ok(ProcessorKind::Count),
            "taxi-stats" => Ok(ProcessorKind::TaxiStats),
            "exec" => Ok(ProcessorKind::Exec),
            other => Err(format!(
                "unknown processor {other:?} (count, taxi-stats, exec)"
            )),
        }
    }
}

impl ProcessorKind {
    /// The name jobs use.
    pub fn name(self) -> &'static str {
        match self {
            ProcessorKind::Count => "count",
            ProcessorKind::TaxiStats => "taxi-stats",
            ProcessorKind::Exec => "exec",
        }
    }
}

/// A streaming accumulator for the pure processors.
// One lives per job in flight, so its 300-odd bytes are cheaper inline than boxed.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accumulator {
    /// `count`.
    Count(CountStats, usize),
    /// `taxi-stats`.
    Taxi(TaxiStats),
}

impl Accumulator {
    /// An empty accumulator for `kind` (`None` for `exec`, which is not streamed here).
    pub fn new(kind: ProcessorKind, record_length: usize) -> Option<Accumulator> {
        match kind {
            ProcessorKind::Count => Some(Accumulator::Count(CountStats::default(), record_length)),
            ProcessorKind::TaxiStats => Some(Accumulator::Taxi(TaxiStats::default())),
            ProcessorKind::Exec => None,
        }
    }

    /// Adds whole records.
    pub fn add(&mut self, records: &[u8]) {
        match self {
            Accumulator::Count(c, len) => c.add_records(records, *len),
            Accumulator::Taxi(t) => t.add_records(records),
        }
    }

    /// The output document.
    pub fn output(&self) -> Value {
        match self {
            Accumulator::Count(c, _) => serde_json::to_value(c),
            Accumulator::Taxi(t) => serde_json::to_value(t),
        }
        .expect("integer structs serialise")
    }
}

/// Merged outputs of many jobs of one processor.
// One lives per partition, so its 300-odd bytes are cheaper inline than boxed.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Merged {
    /// `count`.
    Count(CountStats),
    /// `taxi-stats`.
    Taxi(TaxiStats),
    /// `exec`: outputs listed by job id, not merged.
    Exec(std::collections::BTreeMap<String, Value>),
}

impl Merged {
    /// An empty merge for `kind`.
    pub fn new(kind: ProcessorKind) -> Merged {
        match kind {
            ProcessorKind::Count => Merged::Count(CountStats::default()),
            ProcessorKind::TaxiStats => Merged::Taxi(TaxiStats::default()),
            ProcessorKind::Exec => Merged::Exec(Default::default()),
        }
    }

    /// Adds one job's output.
    pub fn add(&mut self, job_id: &str, output: &Value) -> Result<(), String> {
        match self {
            Merged::Count(c) => c.merge(
                &serde_json::from_value(output.clone())
                    .map_err(|e| format!("{job_id}: not a count output: {e}"))?,
            ),
            Merged::Taxi(t) => t.merge(
                &serde_json::from_value(output.clone())
                    .map_err(|e| format!("{job_id}: not a taxi-stats output: {e}"))?,
            ),
            Merged::Exec(m) => {
                m.insert(job_id.to_string(), output.clone());
            }
        }
        Ok(())
    }

    /// As JSON.
    pub fn to_json(&self) -> Value {
        match self {
            Merged::Count(c) => serde_json::to_value(c),
            Merged::Taxi(t) => serde_json::to_value(t),
            Merged::Exec(m) => serde_json::to_value(m),
        }
        .expect("outputs serialise")
    }
}
