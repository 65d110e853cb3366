//! How a run is going, for the operator (`rangefleet status`, docs/cli.md).
//!
//! Three independent views, each asked only when `cli::status` has its flag: the queue's counts
//! (`Queue::stats`, SQS or SQLite), the fleet's instances by tag (EC2
//! DescribeInstances, one `tag:K` filter per `--fleet-tag` and `--fleet`, live states
//! only, every page), and the plan's progress (`_plan.json` against the result documents written). Read-only: it changes
//! nothing anywhere.

use std::collections::BTreeSet;

use serde::Serialize;
#[cfg(test)]
use serde_json::json;

use crate::aws::ec2::Ec2;
use crate::aws::AwsError;
use crate::contract::manifest::MANIFEST;
use crate::error::ErrorClass;
use crate::operator::plan::ManifestError;
use crate::store::{Store, StoreError};

/// The tag the Terraform module puts on every instance of a fleet, with the fleet's
/// name as its value (`terraform/main.tf`); `status --fleet NAME` filters on it.
pub const FLEET_TAG: &str = "rangefleet:fleet";

/// One instance of the fleet, as DescribeInstances reports it.
pub use crate::aws::ec2::Instance as InstanceRow;

/// The plan's progress: jobs planned against result documents written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Progress {
    /// Jobs in `_plan.json`.
    pub planned: u64,
    /// Planned jobs with a result document.
    pub done: u64,
    /// Result documents for jobs the plan does not have.
    pub unexpected: u64,
}

/// Why a view of `status` could not be had.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// EC2 DescribeInstances failed.
    #[error("failed to describe the fleet's instances: {0}")]
    Fleet(#[from] AwsError),
    /// The manifest could not be read.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// Nothing was planned under the results prefix.
    #[error("no {MANIFEST} under {url}: nothing planned there yet")]
    NoPlan {
        /// The results prefix.
        url: String,
    },
    /// Listing the results failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl StatusError {
    /// [`ErrorClass::Usage`] when nothing is planned or the manifest is not one,
    /// [`ErrorClass::Environment`] when EC2 refused, the store's class otherwise.
    pub fn class(&self) -> ErrorClass {
        match self {
            StatusError::Fleet(_) => ErrorClass::Environment,
            StatusError::Manifest(e) => e.class(),
            StatusError::NoPlan { .. } => ErrorClass::Usage,
            StatusError::Store(e) => e.class(),
        }
    }

    /// `rangefleet status`'s exit code: always 1, as it has always been.
    pub fn exit_code(&self) -> i32 {
        crate::exit::FAILURE
    }
}

/// Lists the instances carrying every tag of `tags`, not terminated or shutting down
/// ([`crate::aws::ec2::LIVE_STATES`]), all pages, sorted by id
/// (aws-sdk-ec2, standard retries: 3 attempts per page).
pub async fn fleet_instances(tags: &[(String, String)]) -> Result<Vec<InstanceRow>, StatusError> {
    let retry = crate::aws::standard_retry(
        3,
        std::time::Duration::from_millis(500),
        std::time::Duration::from_secs(5),
    );
    let client = Ec2::from_env(None, retry).await;
    Ok(client.describe_instances(tags).await?)
}

/// An instance whose agent gave up, from the `failure` of its summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailedInstance {
    /// `i-…`.
    pub instance_id: String,
    /// `config`, `crash-loop`, `install`, …
    pub kind: String,
    /// Why, as the agent wrote it.
    pub reason: String,
    /// When (RFC 3339), when the summary says.
    pub at: Option<String>,
}

/// The instances under `results` whose summary (`_instances/<id>.json`) has a
/// `failure`, in instance id order.
pub async fn failed_instances(results: &Store) -> Result<Vec<FailedInstance>, StatusError> {
    let summaries = crate::operator::reduce::instance_summaries(results).await?;
    let mut out: Vec<FailedInstance> = summaries
        .into_iter()
        .filter_map(|s| {
            let f = s.failure?;
            Some(FailedInstance {
                instance_id: s.instance_id,
                kind: f.kind,
                reason: f.reason,
                at: (!f.at.is_empty()).then_some(f.at),
            })
        })
        .collect();
    out.sort_by(|a, b| a.instance_id.cmp(&b.instance_id));
    Ok(out)
}

/// Planned jobs (from `_plan.json`) against result documents under `results`.
pub async fn progress(results: &Store) -> Result<Progress, StatusError> {
    let manifest = match crate::operator::plan::read_manifest(results).await? {
        Some(m) => m,
        None => {
            return Err(StatusError::NoPlan {
                url: results.url().to_string(),
            })
        }
    };
    let planned: BTreeSet<&str> = manifest.jobs.iter().map(String::as_str).collect();
    let mut done = 0;
    let mut unexpected = 0;
    for obj in results.list().await? {
        let Some(id) = crate::contract::job::job_id_of_result(&obj.key) else {
            continue;
        };
        if planned.contains(id.as_str()) {
            done += 1;
        } else {
            unexpected += 1;
        }
    }
    Ok(Progress {
        planned: planned.len() as u64,
        done,
        unexpected,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn failed_instances_are_the_summaries_with_a_failure() {
        let store = Store::memory();
        let docs = [
            ("i-2", json!({"v": 1, "instance_id": "i-2", "done": 10})),
            (
                "i-3",
                json!({"v": 1, "instance_id": "i-3", "failure":
                {"kind": "crash-loop", "reason": "rangefleet-agent.service failed"}}),
            ),
            (
                "i-1",
                json!({"v": 1, "instance_id": "i-1", "failure":
                {"kind": "config", "reason": "invalid config: queue: bad", "at": "2026-01-01T00:00:00Z"}}),
            ),
        ];
        for (id, doc) in docs {
            let key = crate::contract::summary::summary_key(id);
            store
                .put(&key, serde_json::to_vec(&doc).unwrap().into())
                .await
                .unwrap();
        }
        let got = failed_instances(&store).await.unwrap();
        assert_eq!(
            got,
            vec![
                FailedInstance {
                    instance_id: "i-1".into(),
                    kind: "config".into(),
                    reason: "invalid config: queue: bad".into(),
                    at: Some("2026-01-01T00:00:00Z".into()),
                },
                FailedInstance {
                    instance_id: "i-3".into(),
                    kind: "crash-loop".into(),
                    reason: "rangefleet-agent.service failed".into(),
                    at: None,
                },
            ]
        );
    }

    #[tokio::test]
    async fn progress_counts_planned_results_only() {
        let store = Store::memory();
        let manifest = json!({"v": 1, "source": "file:///d/", "processor": "count",
            "record_length": 80, "records_per_job": 10, "objects": [],
            "jobs": ["a.rec#0+10", "a.rec#10+10", "b.rec#0+10"]});
        store
            .put(MANIFEST, serde_json::to_vec(&manifest).unwrap().into())
            .await
            .unwrap();
        for id in ["a.rec#0+10", "z.rec#0+1"] {
            let key = crate::contract::job::result_key(id);
            store.put(&key, b"{}".to_vec().into()).await.unwrap();
        }
        store
            .put("_instances/i-1.json", b"{}".to_vec().into())
            .await
            .unwrap();
        let p = progress(&store).await.unwrap();
        assert!(failed_instances(&store).await.unwrap().is_empty());
        assert_eq!(
            p,
            Progress {
                planned: 3,
                done: 1,
                unexpected: 1
            }
        );
    }
}
