//! Processors: pure functions from whole records to a JSON output (docs/formats.md).
//!
//! `count` and `taxi-stats` are pure and stream: records go in chunk by chunk, one
//! output comes out, and outputs merge exactly. `exec` runs a command from the config.

pub mod count;
pub mod exec;
pub mod taxi;

use serde_json::Value;

use count::CountStats;
use taxi::TaxiStats;

pub use crate::contract::job::ProcessorKind;

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

/// A job's output that is not its processor's shape.
#[derive(Debug, thiserror::Error)]
#[error("{job_id}: not a {} output: {source}", processor.name())]
pub struct MergeError {
    /// The job whose output it is.
    pub job_id: String,
    /// The processor whose shape it should have.
    pub processor: ProcessorKind,
    /// What does not fit.
    pub source: serde_json::Error,
}

impl MergeError {
    /// Always [`crate::error::ErrorClass::Job`]: that output will never merge.
    pub fn class(&self) -> crate::error::ErrorClass {
        crate::error::ErrorClass::Job
    }
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

    /// One job's output, read as `kind`'s.
    pub fn of(kind: ProcessorKind, job_id: &str, output: &Value) -> Result<Merged, MergeError> {
        use serde::Deserialize;
        let bad = |source| MergeError {
            job_id: job_id.to_string(),
            processor: kind,
            source,
        };
        Ok(match kind {
            ProcessorKind::Count => Merged::Count(CountStats::deserialize(output).map_err(bad)?),
            ProcessorKind::TaxiStats => Merged::Taxi(TaxiStats::deserialize(output).map_err(bad)?),
            ProcessorKind::Exec => Merged::Exec([(job_id.to_string(), output.clone())].into()),
        })
    }

    /// Adds `other` (of the same processor) into this one.
    pub fn merge(&mut self, other: &Merged) {
        match (self, other) {
            (Merged::Count(a), Merged::Count(b)) => a.merge(b),
            (Merged::Taxi(a), Merged::Taxi(b)) => a.merge(b),
            (Merged::Exec(a), Merged::Exec(b)) => {
                a.extend(b.iter().map(|(k, v)| (k.clone(), v.clone())))
            }
            (a, b) => unreachable!("merging {b:?} into a different processor's {a:?}"),
        }
    }

    /// Adds one job's output.
    pub fn add(&mut self, job_id: &str, output: &Value) -> Result<(), MergeError> {
        let one = Merged::of(self.kind(), job_id, output)?;
        self.merge(&one);
        Ok(())
    }

    /// The processor this merges.
    pub fn kind(&self) -> ProcessorKind {
        match self {
            Merged::Count(_) => ProcessorKind::Count,
            Merged::Taxi(_) => ProcessorKind::TaxiStats,
            Merged::Exec(_) => ProcessorKind::Exec,
        }
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

/// Outputs merged by partition (`color=yellow/date=2016-01-01`) and in total: what
/// `scan` and `reduce` both print (docs/formats.md).
#[derive(Debug, Clone)]
pub struct ByPartition {
    /// Per partition, in name order.
    pub partitions: std::collections::BTreeMap<String, Merged>,
    /// Everything.
    pub total: Merged,
}

impl ByPartition {
    /// Nothing merged yet.
    pub fn new(kind: ProcessorKind) -> ByPartition {
        ByPartition {
            partitions: Default::default(),
            total: Merged::new(kind),
        }
    }

    /// Adds one job's output to its partition and to the total, reading it once.
    pub fn add(&mut self, job_id: &str, output: &Value) -> Result<(), MergeError> {
        let kind = self.total.kind();
        let one = Merged::of(kind, job_id, output)?;
        self.partitions
            .entry(crate::contract::job::partition_name_of_job(job_id))
            .or_insert_with(|| Merged::new(kind))
            .merge(&one);
        self.total.merge(&one);
        Ok(())
    }

    /// `{"partitions": {name: output}, "total": output}`.
    pub fn to_json(&self) -> serde_json::Map<String, Value> {
        let partitions: serde_json::Map<String, Value> = self
            .partitions
            .iter()
            .map(|(k, v)| (k.clone(), v.to_json()))
            .collect();
        serde_json::Map::from_iter([
            ("partitions".to_string(), Value::Object(partitions)),
            ("total".to_string(), self.total.to_json()),
        ])
    }
}
