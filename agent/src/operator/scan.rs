//! `rangefleet scan`: the same jobs a plan would make, run in this process, merged.
//!
//! No queue and no results: a quick way to compute an answer over a folder, a prefix or
//! one object, and the baseline the fleet's answer must equal.

use std::sync::Arc;

use futures::StreamExt;
use serde_json::Value;

use crate::contract::job::Job;
use crate::error::ErrorClass;
use crate::operator::plan::{self, PlanError, PlanOptions};
use crate::process::{Accumulator, ByPartition, MergeError, ProcessorKind};
use crate::store::{Expect, Store, StoreError};

/// Why a scan stopped.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// `exec` was asked for.
    #[error("scan runs count and taxi-stats; exec runs only in agents")]
    Exec,
    /// Listing the source failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Nothing to scan.
    #[error("no objects under {url} (names starting with _ or . are skipped)")]
    NoObjects {
        /// The source.
        url: String,
    },
    /// The objects do not split into jobs.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// A job whose source is not under the scanned store.
    #[error("{source_url} is not under {url}")]
    NotUnder {
        /// The job's source.
        source_url: String,
        /// The store's base.
        url: String,
    },
    /// A processor that cannot take its input in chunks.
    #[error("{processor} does not stream")]
    NoStream {
        /// Its name.
        processor: &'static str,
    },
    /// Reading a job's records failed.
    #[error("{job_id}: {source}")]
    Read {
        /// The job.
        job_id: String,
        /// The store's error.
        source: StoreError,
    },
    /// An output that does not merge.
    #[error(transparent)]
    Merge(#[from] MergeError),
}

impl ScanError {
    /// [`ErrorClass::Usage`] for what the operator asked (exec, an empty source, data
    /// that does not split), the store's class when it failed, [`ErrorClass::Job`] else.
    pub fn class(&self) -> ErrorClass {
        match self {
            ScanError::Exec | ScanError::NoObjects { .. } => ErrorClass::Usage,
            ScanError::Plan(e) => e.class(),
            ScanError::Store(e) | ScanError::Read { source: e, .. } => e.class(),
            ScanError::NotUnder { .. } | ScanError::NoStream { .. } | ScanError::Merge(_) => {
                ErrorClass::Job
            }
        }
    }

    /// `rangefleet scan`'s exit code: always 1, as it has always been.
    pub fn exit_code(&self) -> i32 {
        crate::exit::FAILURE
    }
}

/// Merged outputs by partition and in total.
#[derive(Debug, Clone)]
pub struct Scanned {
    /// By partition and in total.
    pub merged: ByPartition,
    /// Jobs run.
    pub jobs: u64,
    /// Bytes read.
    pub bytes: u64,
}

impl Scanned {
    /// docs/formats.md without `coverage`.
    pub fn to_json(&self) -> Value {
        Value::Object(self.merged.to_json())
    }
}

/// Scans `source` with `opts`, `parallel` jobs at once; `progress(jobs_done, total)`.
pub async fn scan(
    source: &Store,
    opts: &PlanOptions,
    parallel: usize,
    progress: &(dyn Fn(u64, u64) + Send + Sync),
) -> Result<Scanned, ScanError> {
    if opts.processor == ProcessorKind::Exec {
        return Err(ScanError::Exec);
    }
    let objects = source.list().await?;
    if objects.is_empty() {
        return Err(ScanError::NoObjects {
            url: source.url().to_string(),
        });
    }
    let (jobs, _) = plan::make_jobs(source.url(), &objects, opts)?;
    let total_jobs = jobs.len() as u64;
    let source = Arc::new(source.clone());
    let mut results = futures::stream::iter(jobs.into_iter().map(|job| {
        let source = source.clone();
        let kind = opts.processor;
        async move {
            run_one(&source, &job, kind)
                .await
                .map(|(out, bytes)| (job, out, bytes))
        }
    }))
    .buffer_unordered(parallel.max(1));
    let mut merged = ByPartition::new(opts.processor);
    let mut done = 0u64;
    let mut bytes = 0u64;
    while let Some(r) = results.next().await {
        let (job, output, n) = r?;
        merged.add(&job.job_id, &output)?;
        done += 1;
        bytes += n;
        progress(done, total_jobs);
    }
    Ok(Scanned {
        merged,
        jobs: done,
        bytes,
    })
}

async fn run_one(
    source: &Store,
    job: &Job,
    kind: ProcessorKind,
) -> Result<(Value, u64), ScanError> {
    let key = job
        .source
        .strip_prefix(source.url())
        .ok_or_else(|| ScanError::NotUnder {
            source_url: job.source.clone(),
            url: source.url().to_string(),
        })?;
    let mut acc =
        Accumulator::new(kind, job.record_length as usize).ok_or(ScanError::NoStream {
            processor: kind.name(),
        })?;
    let range = job.range();
    let expect = Expect {
        size: job.object_size,
        etag: None,
    };
    let bytes = source
        .read_records(key, &range, Some(&expect), &mut |chunk: &[u8]| {
            acc.add(chunk)
        })
        .await
        .map_err(|source| ScanError::Read {
            job_id: job.job_id.clone(),
            source,
        })?;
    Ok((acc.output(), bytes))
}
