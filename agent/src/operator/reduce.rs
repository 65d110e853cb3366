//! `rangefleet reduce`: merge results with an exact coverage check (docs/formats.md).
//!
//! Every planned job must have exactly one result; results are create-only, so a job
//! done twice still has one document, and the second write shows up as "redone" in
//! the instance summaries, never in the sums.

use std::collections::BTreeSet;

use futures::StreamExt;
use serde_json::{json, Value};

use crate::contract::job;
use crate::contract::job::UnknownProcessor;
use crate::contract::manifest::MANIFEST;
use crate::contract::result::ResultDoc;
use crate::contract::summary::{InstanceSummary, INSTANCES};
use crate::error::ErrorClass;
use crate::operator::plan::ManifestError;
use crate::process::{ByPartition, MergeError, Merged, ProcessorKind};
use crate::store::{Store, StoreError};

/// Result documents read at once.
const RESULT_READS_AT_ONCE: usize = 32;

/// The merged outputs and the coverage check.
#[derive(Debug, Clone)]
pub struct Reduced {
    /// By partition and in total.
    pub merged: ByPartition,
    /// Jobs in the plan.
    pub planned: u64,
    /// Planned jobs with a result.
    pub done: u64,
    /// Planned jobs without one.
    pub missing: Vec<String>,
    /// Results not counted: for jobs not in the plan, or not matching the plan's job.
    pub unexpected: Vec<Unexpected>,
    /// Second writes refused by the store, from the instance summaries.
    pub redone: u64,
    /// The instance summaries (`_instances/<id>.json`), in key order.
    pub instances: Vec<InstanceSummary>,
}

/// A result document `reduce` did not count, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Unexpected {
    /// The job id its key decodes to.
    pub job_id: String,
    /// `not in the plan`, `stale plan: …`, `record count mismatch: …`, …
    pub reason: String,
}

impl Reduced {
    /// True when every planned job has a result.
    pub fn complete(&self) -> bool {
        self.missing.is_empty()
    }

    /// docs/formats.md.
    pub fn to_json(&self) -> Value {
        let mut doc = self.merged.to_json();
        doc.insert(
            "coverage".into(),
            json!({
                "planned": self.planned,
                "done": self.done,
                "missing": self.missing,
                "unexpected": self.unexpected,
                "redone": self.redone,
            }),
        );
        Value::Object(doc)
    }
}

/// Why a reduce stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReduceError {
    /// The manifest could not be read.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// Nothing was planned under the results prefix.
    #[error("no {MANIFEST} under {url}: run `rangefleet plan` with this --results first")]
    NoPlan {
        /// The results prefix.
        url: String,
    },
    /// The manifest names a processor this build does not know.
    #[error(transparent)]
    Processor(#[from] UnknownProcessor),
    /// Listing or reading the results failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A result document that is not JSON.
    #[error("result {key} is not JSON: {source}")]
    NotJson {
        /// Its key under the results prefix.
        key: String,
        /// The parser's complaint.
        source: serde_json::Error,
    },
    /// JSON, but not a result document.
    #[error("result {key} is not a result document: {source}")]
    NotResult {
        /// Its key under the results prefix.
        key: String,
        /// What does not fit.
        source: serde_json::Error,
    },
    /// A result whose output does not merge.
    #[error(transparent)]
    Merge(#[from] MergeError),
}

impl ReduceError {
    /// [`ErrorClass::Usage`] when there is no plan or the manifest is not one, the
    /// store's class when it failed, [`ErrorClass::Job`] for a bad result.
    pub fn class(&self) -> ErrorClass {
        match self {
            ReduceError::Manifest(e) => e.class(),
            ReduceError::NoPlan { .. } => ErrorClass::Usage,
            ReduceError::Store(e) => e.class(),
            ReduceError::Processor(_)
            | ReduceError::NotJson { .. }
            | ReduceError::NotResult { .. }
            | ReduceError::Merge(_) => ErrorClass::Job,
        }
    }

    /// `rangefleet reduce`'s exit code: always 1 (an incomplete but readable run is
    /// not an error; it exits 3).
    pub fn exit_code(&self) -> i32 {
        crate::exit::FAILURE
    }
}

/// Reads the manifest, every result and every instance summary under `results`.
pub async fn reduce(results: &Store) -> Result<Reduced, ReduceError> {
    let manifest = match crate::operator::plan::read_manifest(results).await? {
        Some(m) => m,
        None => {
            return Err(ReduceError::NoPlan {
                url: results.url().to_string(),
            })
        }
    };
    let kind: ProcessorKind = manifest.processor.parse()?;
    let planned: BTreeSet<&str> = manifest.jobs.iter().map(String::as_str).collect();
    let check = manifest.result_check();
    let listing = results.list().await?;
    let mut unexpected = Vec::new();
    let mut wanted = Vec::new();
    for obj in &listing {
        let Some(id) = job::job_id_of_result(&obj.key) else {
            continue;
        };
        if planned.contains(id.as_str()) {
            wanted.push((id, obj.key.as_str()));
        } else {
            unexpected.push(Unexpected {
                job_id: id,
                reason: "not in the plan".into(),
            });
        }
    }
    // Many small GETs: a few at once, merged in listing order.
    let mut bodies = futures::stream::iter(wanted)
        .map(|(id, key)| async move {
            let body = results.get(key).await?;
            Ok::<_, StoreError>((id, key, body))
        })
        .buffered(RESULT_READS_AT_ONCE);
    let mut merged = ByPartition::new(kind);
    let mut seen = BTreeSet::new();
    while let Some(r) = bodies.next().await {
        let (id, key, body) = r?;
        let doc = ResultDoc::from_slice(&body).map_err(|source| {
            let key = key.to_string();
            if source.is_data() {
                ReduceError::NotResult { key, source }
            } else {
                ReduceError::NotJson { key, source }
            }
        })?;
        // Only a result of this plan's job counts: a stale plan's, or one whose job
        // differs from the planned one (a forged or altered message), is reported.
        if let Err(reason) = check.check(&id, &doc) {
            unexpected.push(Unexpected { job_id: id, reason });
            continue;
        }
        merged.add(&id, &doc.output)?;
        seen.insert(id);
    }
    let missing: Vec<String> = manifest
        .jobs
        .iter()
        .filter(|j| !seen.contains(j.as_str()))
        .cloned()
        .collect();
    let instances = instance_summaries(results).await?;
    let redone = instances.iter().map(|s| s.redone).sum();
    Ok(Reduced {
        merged,
        planned: manifest.jobs.len() as u64,
        done: seen.len() as u64,
        missing,
        unexpected,
        redone,
        instances,
    })
}

/// Every `_instances/<id>.json` under `results` that reads as a summary.
pub async fn instance_summaries(results: &Store) -> Result<Vec<InstanceSummary>, StoreError> {
    let mut out = Vec::new();
    for obj in results.list_under(INSTANCES).await? {
        let body = results.get(&obj.key).await?;
        if let Ok(s) = InstanceSummary::from_slice(&body) {
            out.push(s);
        }
    }
    Ok(out)
}

/// The people's view: one row per partition, then the coverage line.
pub fn table(r: &Reduced) -> String {
    partition_table(&r.merged) + &coverage_line(r)
}

/// One row per partition and a TOTAL row (what `scan` prints).
pub fn partition_table(m: &ByPartition) -> String {
    let mut out = String::new();
    let rows: Vec<(String, Value)> = m
        .partitions
        .iter()
        .map(|(k, v)| (k.clone(), v.to_json()))
        .chain(std::iter::once(("TOTAL".to_string(), m.total.to_json())))
        .collect();
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(9).max(9);
    match &m.total {
        Merged::Taxi(_) => {
            out.push_str(&format!(
                "{:<width$} {:>12} {:>9} {:>12} {:>14} {:>14}\n",
                "partition", "trips", "bad", "passengers", "miles", "total $"
            ));
            for (k, v) in &rows {
                let n = |f: &str| v[f].as_u64().unwrap_or(0);
                out.push_str(&format!(
                    "{:<width$} {:>12} {:>9} {:>12} {:>14} {:>14}\n",
                    k,
                    n("records"),
                    n("bad_records"),
                    n("passengers"),
                    format!(
                        "{}.{:02}",
                        n("distance_centimiles") / 100,
                        n("distance_centimiles") % 100
                    ),
                    format!("{}.{:02}", n("total_cents") / 100, n("total_cents") % 100),
                ));
            }
        }
        Merged::Count(_) => {
            out.push_str(&format!(
                "{:<width$} {:>12} {:>14} {:>18}\n",
                "partition", "records", "bytes", "checksum"
            ));
            for (k, v) in &rows {
                let n = |f: &str| v[f].as_u64().unwrap_or(0);
                out.push_str(&format!(
                    "{:<width$} {:>12} {:>14} {:>18x}\n",
                    k,
                    n("records"),
                    n("bytes"),
                    n("checksum")
                ));
            }
        }
        Merged::Exec(e) => out.push_str(&format!("{} exec outputs (see --json)\n", e.len())),
    }
    out
}

/// `planned N, done N, missing M, unexpected U, redone K`: the words of the JSON's
/// `coverage` object, so the table and `--json` say the same thing.
pub fn coverage_line(r: &Reduced) -> String {
    let mut s = format!(
        "planned {}, done {}, missing {}, unexpected {}, redone {}",
        r.planned,
        r.done,
        r.missing.len(),
        r.unexpected.len(),
        r.redone
    );
    s.push('\n');
    if !r.missing.is_empty() {
        let shown: Vec<&str> = r.missing.iter().take(10).map(String::as_str).collect();
        s.push_str(&format!(
            "missing: {}{}\n",
            shown.join(", "),
            if r.missing.len() > 10 { ", …" } else { "" }
        ));
    }
    if !r.unexpected.is_empty() {
        let shown: Vec<String> = r
            .unexpected
            .iter()
            .take(10)
            .map(|u| format!("{} ({})", u.job_id, u.reason))
            .collect();
        s.push_str(&format!(
            "unexpected, not counted: {}{}\n",
            shown.join(", "),
            if r.unexpected.len() > 10 { ", …" } else { "" }
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::job::Job;
    use crate::contract::manifest::{Manifest, ManifestObject, VERSION};
    use crate::contract::result::ResultInstance;
    use std::time::SystemTime;

    fn job(first: u64, count: u64, plan: &str) -> Job {
        Job {
            v: 1,
            job_id: Job::id_for("a.rec", first, count),
            source: "memory:///data/a.rec".into(),
            record_length: 8,
            first_record: first,
            record_count: count,
            partition: Default::default(),
            processor: "count".into(),
            object_size: Some(160),
            etag: None,
            plan_id: Some(plan.into()),
        }
    }

    async fn put(results: &Store, key: &str, job: &Job, records: u64) {
        let doc = ResultDoc::new(
            job,
            json!({"records": records, "bytes": records * 8, "checksum": records}),
            job.record_count * 8,
            ResultInstance::default(),
            1,
            SystemTime::UNIX_EPOCH,
            SystemTime::UNIX_EPOCH,
        );
        results.put(key, doc.to_bytes().into()).await.unwrap();
    }

    #[tokio::test]
    async fn results_that_do_not_match_the_plans_job_are_not_counted_and_are_named() {
        let results = Store::memory();
        let manifest = Manifest {
            v: VERSION,
            plan_id: Some("new".into()),
            source: "memory:///data/".into(),
            prefix: Some("memory:///data/".into()),
            processor: "count".into(),
            record_length: 8,
            records_per_job: 10,
            objects: vec![ManifestObject {
                key: "a.rec".into(),
                size: 160,
                etag: None,
            }],
            jobs: vec![
                "a.rec#0+10".into(),
                "a.rec#10+10".into(),
                "a.rec#20+10".into(),
            ],
        };
        results
            .put(MANIFEST, manifest.to_bytes().into())
            .await
            .unwrap();
        let good = job(0, 10, "new");
        put(&results, &good.result_key(), &good, 10).await;
        // A forged message: a planned job id, another record count.
        let mut forged = job(10, 10, "new");
        forged.record_count = 3;
        put(&results, &job::result_key("a.rec#10+10"), &forged, 3).await;
        // A result of the plan before `plan --force`.
        let stale = job(20, 10, "old");
        put(&results, &stale.result_key(), &stale, 10).await;
        // A result of a job the plan does not have at all.
        let other = job(30, 10, "old");
        put(&results, &other.result_key(), &other, 10).await;

        let r = reduce(&results).await.unwrap();
        assert_eq!(r.done, 1);
        assert!(!r.complete());
        assert_eq!(r.missing, vec!["a.rec#10+10", "a.rec#20+10"]);
        assert_eq!(r.merged.total.to_json()["records"], 10, "only the good one");
        let reasons: Vec<(&str, &str)> = r
            .unexpected
            .iter()
            .map(|u| (u.job_id.as_str(), u.reason.split(':').next().unwrap()))
            .collect();
        assert_eq!(
            reasons,
            vec![
                ("a.rec#30+10", "not in the plan"),
                ("a.rec#10+10", "record count mismatch"),
                ("a.rec#20+10", "stale plan"),
            ]
        );
        let line = coverage_line(&r);
        assert!(
            line.contains("a.rec#10+10 (record count mismatch"),
            "{line}"
        );
        assert_eq!(
            r.to_json()["coverage"]["unexpected"][1]["job_id"],
            "a.rec#10+10"
        );
    }
}
