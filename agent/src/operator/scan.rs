//! `rangefleet scan`: the same jobs a plan would make, run in this process, merged.
//!
//! No queue and no results: a quick way to compute an answer over a folder, a prefix or
//! one object, and the baseline the fleet's answer must equal.

use std::sync::Arc;

use futures::StreamExt;
use serde_json::Value;

use crate::contract::job::Job;
use crate::operator::plan::{self, PlanOptions};
use crate::process::{Accumulator, ByPartition, ProcessorKind};
use crate::store::{Expect, Store};

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
    /// DESIGN 5.5 without `coverage`.
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
) -> Result<Scanned, String> {
    if opts.processor == ProcessorKind::Exec {
        return Err("scan runs count and taxi-stats; exec runs only in agents".into());
    }
    let objects = source.list().await.map_err(|e| e.to_string())?;
    if objects.is_empty() {
        return Err(format!(
            "no objects under {} (names starting with _ or . are skipped)",
            source.url()
        ));
    }
    let (jobs, _) = plan::make_jobs(source.url(), &objects, opts).map_err(|e| e.to_string())?;
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

async fn run_one(source: &Store, job: &Job, kind: ProcessorKind) -> Result<(Value, u64), String> {
    let key = job
        .source
        .strip_prefix(source.url())
        .ok_or_else(|| format!("{} is not under {}", job.source, source.url()))?;
    let mut acc = Accumulator::new(kind, job.record_length as usize)
        .ok_or_else(|| format!("{} does not stream", kind.name()))?;
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
        .map_err(|e| format!("{}: {e}", job.job_id))?;
    Ok((acc.output(), bytes))
}
