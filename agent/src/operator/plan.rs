//! `rangefleet plan`: split partitioned data into record-aligned jobs, write the plan
//! manifest, enqueue the jobs (docs/formats.md).

use std::collections::BTreeMap;

use crate::contract::job::{self, Job};
use crate::contract::manifest::{Manifest, ManifestObject, MANIFEST};
use crate::contract::range;
use crate::error::ErrorClass;
use crate::process::ProcessorKind;
use crate::queue::{Queue, QueueError};
use crate::store::{ObjectInfo, Store, StoreError};

/// Jobs sent to the queue per call (the SQS implementation batches by ten inside).
const ENQUEUE_BATCH: usize = 500;

/// Why the manifest under a results prefix could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Something is there, but not a manifest.
    #[error("{url}{MANIFEST} is not a plan manifest: {source}")]
    Invalid {
        /// The results prefix.
        url: String,
        /// Why it does not parse.
        source: serde_json::Error,
    },
}

impl ManifestError {
    /// The store's class, or [`ErrorClass::Usage`] for a file that is not a manifest.
    pub fn class(&self) -> ErrorClass {
        match self {
            ManifestError::Store(e) => e.class(),
            ManifestError::Invalid { .. } => ErrorClass::Usage,
        }
    }
}

/// The manifest under `results`, `Ok(None)` when nothing was planned there.
pub async fn read_manifest(results: &Store) -> Result<Option<Manifest>, ManifestError> {
    match results.get(MANIFEST).await {
        Ok(b) => Manifest::from_slice(&b)
            .map(Some)
            .map_err(|source| ManifestError::Invalid {
                url: results.url().to_string(),
                source,
            }),
        Err(StoreError::NotFound(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// What to plan.
#[derive(Debug, Clone)]
pub struct PlanOptions {
    /// Source prefix or object URL.
    pub source: String,
    /// Processor every job runs.
    pub processor: ProcessorKind,
    /// Bytes per record.
    pub record_length: u64,
    /// Records per job.
    pub records_per_job: u64,
    /// Leave out objects that are not whole records instead of stopping.
    pub skip_bad_objects: bool,
}

/// Why planning stopped.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// Bad input: objects that are not whole records, nothing to plan, bad options.
    #[error("{0}")]
    Input(String),
    /// The source or results store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The queue refused a batch of jobs.
    #[error("enqueueing jobs {first}..{end} of {total}: {source}")]
    Enqueue {
        /// First job of the batch (0-based).
        first: u64,
        /// One past its last job.
        end: u64,
        /// Jobs planned.
        total: u64,
        /// The queue's error.
        source: QueueError,
    },
    /// A manifest is already there.
    #[error("{0} already exists: this results prefix has a plan; use a new results prefix, or --force to replace it")]
    Exists(String),
}

impl PlanError {
    /// `Input` and `Exists` are [`ErrorClass::Usage`]; the store's and queue's own
    /// class otherwise.
    pub fn class(&self) -> ErrorClass {
        match self {
            PlanError::Input(_) | PlanError::Exists(_) => ErrorClass::Usage,
            PlanError::Store(e) => e.class(),
            PlanError::Enqueue { source, .. } => source.class(),
        }
    }

    /// `rangefleet plan`'s exit code: 2 for bad input or an existing plan, 1 when the
    /// store or the queue failed.
    pub fn exit_code(&self) -> i32 {
        match self {
            PlanError::Input(_) | PlanError::Exists(_) => crate::exit::USAGE,
            PlanError::Store(_) | PlanError::Enqueue { .. } => crate::exit::FAILURE,
        }
    }
}

/// The jobs for `objects` under `source`, interleaved round-robin across partitions so
/// that a fleet's first reads spread over many S3 prefixes (docs/architecture.md).
pub fn make_jobs(
    source_base: &str,
    objects: &[ObjectInfo],
    opts: &PlanOptions,
) -> Result<(Vec<Job>, Vec<String>), PlanError> {
    if opts.record_length == 0 || opts.records_per_job == 0 {
        return Err(PlanError::Input(
            "record length and records per job must be at least 1".into(),
        ));
    }
    let mut bad = Vec::new();
    let mut by_partition: BTreeMap<String, Vec<Job>> = BTreeMap::new();
    for o in objects {
        if o.size % opts.record_length != 0 {
            bad.push(format!(
                "{} ({} bytes = {} records + {} bytes)",
                o.key,
                o.size,
                o.size / opts.record_length,
                o.size % opts.record_length
            ));
            continue;
        }
        let partition: BTreeMap<String, String> = job::partition_of(&o.key).into_iter().collect();
        let name = job::partition_name(&o.key);
        for r in range::split(o.size, opts.record_length, opts.records_per_job) {
            by_partition.entry(name.clone()).or_default().push(Job {
                v: job::VERSION,
                job_id: Job::id_for(&o.key, r.first_record, r.record_count),
                source: format!("{source_base}{}", o.key),
                record_length: opts.record_length,
                first_record: r.first_record,
                record_count: r.record_count,
                partition: partition.clone(),
                processor: opts.processor.name().to_string(),
                object_size: Some(o.size),
                etag: o.etag.clone(),
                plan_id: None,
            });
        }
    }
    if !bad.is_empty() && !opts.skip_bad_objects {
        return Err(PlanError::Input(format!(
            "{} object(s) are not a whole number of {}-byte records; fix them, or pass \
             --skip-bad-objects to leave them out:\n  {}",
            bad.len(),
            opts.record_length,
            bad.join("\n  ")
        )));
    }
    // Round-robin: the first job of every partition, then the second of each, …
    let mut queues: Vec<std::vec::IntoIter<Job>> =
        by_partition.into_values().map(Vec::into_iter).collect();
    let mut jobs = Vec::new();
    loop {
        let before = jobs.len();
        for q in &mut queues {
            if let Some(j) = q.next() {
                jobs.push(j);
            }
        }
        if jobs.len() == before {
            break;
        }
    }
    Ok((jobs, bad))
}

/// Refuses a plan with a job whose result key the results store would not take
/// (docs/formats.md#result-keys), naming the longest: every such job would fail.
pub fn check_result_keys(jobs: &[Job], results_url: &str) -> Result<(), PlanError> {
    let limits = job::ResultLimits::for_results(results_url);
    let bad: Vec<&Job> = jobs
        .iter()
        .filter(|j| limits.check(&j.job_id).is_err())
        .collect();
    let Some(longest) = bad.iter().max_by_key(|j| j.result_key().len()) else {
        return Ok(());
    };
    let why = limits.check(&longest.job_id).err().unwrap_or_default();
    Err(PlanError::Input(format!(
        "{} job(s) would have a result key longer than {results_url} takes; nothing was \
         enqueued. The longest, for job {:?}: {why}. Use shorter object names or a shorter \
         results prefix",
        bad.len(),
        longest.job_id
    )))
}

/// Lists the source, writes the manifest, enqueues every job. `progress(done, total)`
/// is called as batches go out. Returns the manifest.
pub async fn plan(
    opts: &PlanOptions,
    source: &Store,
    results: &Store,
    queue: &dyn Queue,
    force: bool,
    progress: &mut (dyn FnMut(u64, u64) + Send),
) -> Result<Manifest, PlanError> {
    if !force {
        match results.head(MANIFEST).await {
            Ok(_) => return Err(PlanError::Exists(format!("{}{MANIFEST}", results.url()))),
            Err(StoreError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let objects = source.list().await?;
    if objects.is_empty() {
        return Err(PlanError::Input(format!(
            "no objects under {} (names starting with _ or . are skipped)",
            source.url()
        )));
    }
    let (mut jobs, skipped) = make_jobs(source.url(), &objects, opts)?;
    check_result_keys(&jobs, results.url())?;
    let plan_id = crate::contract::manifest::new_plan_id();
    for j in &mut jobs {
        j.plan_id = Some(plan_id.clone());
    }
    if !skipped.is_empty() {
        tracing::warn!(
            event = "objects_skipped",
            count = skipped.len(),
            "left out objects that are not whole records: {}",
            skipped.join(", ")
        );
    }
    let manifest = Manifest {
        v: crate::contract::manifest::VERSION,
        plan_id: Some(plan_id),
        source: opts.source.clone(),
        prefix: Some(source.url().to_string()),
        processor: opts.processor.name().to_string(),
        record_length: opts.record_length,
        records_per_job: opts.records_per_job,
        objects: objects
            .iter()
            .filter(|o| o.size % opts.record_length == 0)
            .map(|o| ManifestObject {
                key: o.key.clone(),
                size: o.size,
                etag: o.etag.clone(),
            })
            .collect(),
        jobs: jobs.iter().map(|j| j.job_id.clone()).collect(),
    };
    let body = manifest.to_bytes();
    // The manifest goes first: if enqueueing stops half-way, reduce names what is missing.
    let written = if force {
        results.put(MANIFEST, body.into()).await.map(|_| true)
    } else {
        results
            .put_create(MANIFEST, body.into())
            .await
            .map(|o| o == crate::store::PutOutcome::Created)
    };
    match written {
        Ok(true) => {}
        Ok(false) => return Err(PlanError::Exists(format!("{}{MANIFEST}", results.url()))),
        Err(e) => return Err(e.into()),
    }
    let total = jobs.len() as u64;
    let mut done = 0u64;
    for batch in jobs.chunks(ENQUEUE_BATCH) {
        let bodies: Vec<String> = batch
            .iter()
            .map(|j| serde_json::to_string(j).expect("jobs serialise"))
            .collect();
        queue
            .enqueue(&bodies)
            .await
            .map_err(|source| PlanError::Enqueue {
                first: done,
                end: done + bodies.len() as u64,
                total,
                source,
            })?;
        done += bodies.len() as u64;
        progress(done, total);
    }
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(key: &str, size: u64) -> ObjectInfo {
        ObjectInfo {
            key: key.into(),
            size,
            etag: Some("\"e\"".into()),
        }
    }

    fn opts(rpj: u64) -> PlanOptions {
        PlanOptions {
            source: "file:///d/".into(),
            processor: ProcessorKind::TaxiStats,
            record_length: 80,
            records_per_job: rpj,
            skip_bad_objects: false,
        }
    }

    #[test]
    fn jobs_interleave_across_partitions_and_cover_every_record() {
        let objects = [
            obj("color=green/date=1/part-0000.rec", 80 * 25),
            obj("color=yellow/date=1/part-0000.rec", 80 * 10),
        ];
        let (jobs, _) = make_jobs("file:///d/", &objects, &opts(10)).unwrap();
        let ids: Vec<&str> = jobs.iter().map(|j| j.job_id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "color=green/date=1/part-0000.rec#0+10",
                "color=yellow/date=1/part-0000.rec#0+10",
                "color=green/date=1/part-0000.rec#10+10",
                "color=green/date=1/part-0000.rec#20+5",
            ]
        );
        assert_eq!(jobs[0].source, "file:///d/color=green/date=1/part-0000.rec");
        assert_eq!(jobs[0].partition["color"], "green");
        assert_eq!(jobs[3].object_size, Some(2000));
    }

    #[test]
    fn a_plan_whose_result_keys_are_too_long_is_refused_naming_the_longest() {
        let dir = "d=".to_string() + &"x".repeat(100);
        let objects = [
            obj(&format!("{dir}/{}.rec", "a".repeat(140)), 80 * 3),
            obj(&format!("{dir}/{}.rec", "b".repeat(150)), 80 * 3),
            obj("short.rec", 80 * 3),
        ];
        let (jobs, _) = make_jobs("file:///d/", &objects, &opts(10)).unwrap();
        let e = check_result_keys(&jobs, "file:///r/").unwrap_err();
        assert_eq!(e.exit_code(), 2);
        let msg = e.to_string();
        assert!(msg.starts_with("2 job(s)"), "{msg}");
        assert!(msg.contains(&"b".repeat(150)), "names the longest: {msg}");
        assert!(msg.contains("255-byte file name limit"), "{msg}");
        assert!(check_result_keys(&jobs, "s3://bucket/results/").is_ok());
    }

    #[tokio::test]
    async fn a_refused_plan_writes_no_manifest_and_enqueues_nothing() {
        let source = Store::memory();
        let long = format!("d=1/{}.rec", "n".repeat(300));
        source.put(&long, vec![0u8; 160].into()).await.unwrap();
        let dir = std::env::temp_dir().join(format!(
            "rangefleet-plan-long-{}-{:x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let results = Store::open(&format!("file://{}/", dir.display()))
            .await
            .unwrap();
        let queue = crate::queue::fake::FakeQueue::new();
        let e = plan(&opts(1), &source, &results, &queue, false, &mut |_, _| {})
            .await
            .unwrap_err();
        assert_eq!(e.exit_code(), 2, "{e}");
        assert!(e.to_string().contains(&"n".repeat(300)), "{e}");
        assert!(queue.bodies().is_empty(), "nothing enqueued");
        assert!(matches!(
            results.head(MANIFEST).await,
            Err(StoreError::NotFound(_))
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn objects_that_are_not_whole_records_stop_the_plan_unless_skipped() {
        let objects = [obj("a/x.rec", 80 * 3), obj("a/bad.rec", 80 * 3 + 7)];
        let e = make_jobs("file:///d/", &objects, &opts(10))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("a/bad.rec (247 bytes = 3 records + 7 bytes)"),
            "{e}"
        );
        let mut o = opts(10);
        o.skip_bad_objects = true;
        let (jobs, skipped) = make_jobs("file:///d/", &objects, &o).unwrap();
        assert_eq!((jobs.len(), skipped.len()), (1, 1));
    }
}
