//! Shared set-up for the in-process tests: taxi data in memory, a plan of it on the
//! fake queue, and the fakes an instance is composed of.

#![allow(dead_code)] // each test file uses its own part of this

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use object_store::memory::InMemory;
use object_store::ObjectStore;
use rangefleet::boot::config::{Config, OnRebalance, Processors, SpotConfig};
use rangefleet::contract::job::Job;
use rangefleet::operator::plan::{self, PlanOptions};
use rangefleet::process::taxi::TaxiStats;
use rangefleet::process::ProcessorKind;
use rangefleet::queue::fake::FakeQueue;
use rangefleet::queue::Queue;
use rangefleet::store::faulty::FaultyObjectStore;
use rangefleet::store::{ObjectInfo, Store, StoreCache};

/// The bucket every job reads from.
pub const BASE: &str = "s3://bucket/";
/// The planned prefix.
pub const SOURCE: &str = "s3://bucket/trips/";

/// One partition of taxi data in memory, planned into jobs on a fake queue.
pub struct Data {
    /// The source objects.
    pub objects: Arc<InMemory>,
    /// The jobs, enqueued.
    pub queue: Arc<FakeQueue>,
    /// The jobs as planned.
    pub jobs: Vec<Job>,
    /// What the data must merge to.
    pub expected: TaxiStats,
}

/// `records` taxi records in jobs of `per_job`.
pub async fn data(records: u64, per_job: u64) -> Data {
    let objects = Arc::new(InMemory::new());
    let key = "color=yellow/date=2016-01-01/part-0000.rec";
    let (bytes, expected) = rangefleet::operator::gen::generate_in_memory(
        7,
        "color=yellow/date=2016-01-01",
        "2016-01-01",
        records,
        Some(97),
    )
    .unwrap();
    objects
        .put_opts(
            &format!("trips/{key}").into(),
            bytes.clone().into(),
            Default::default(),
        )
        .await
        .unwrap();
    let opts = PlanOptions {
        source: SOURCE.into(),
        processor: ProcessorKind::TaxiStats,
        record_length: 80,
        records_per_job: per_job,
        skip_bad_objects: false,
    };
    let info = [ObjectInfo {
        key: key.into(),
        size: bytes.len() as u64,
        etag: None,
    }];
    let (jobs, _) = plan::make_jobs(SOURCE, &info, &opts).unwrap();
    let queue = FakeQueue::shared();
    let bodies: Vec<String> = jobs
        .iter()
        .map(|j| serde_json::to_string(j).unwrap())
        .collect();
    queue.enqueue(&bodies).await.unwrap();
    Data {
        objects,
        queue,
        jobs,
        expected,
    }
}

/// A source store over `data` that fails or paces as `faulty` is told; opened through
/// the cache's opener, as the agent opens every store.
pub fn stores(faulty: Arc<FaultyObjectStore>) -> StoreCache {
    StoreCache::with_opener(Arc::new(move |url: String| {
        let faulty = faulty.clone();
        Box::pin(async move {
            assert_eq!(url, BASE, "jobs read only from the planned bucket");
            Ok(Store::from_object_store(faulty, BASE))
        })
    }))
}

/// A config for these tests.
pub fn config(concurrency: u32, lease_seconds: u64) -> Config {
    Config {
        queue: "fake://queue".into(),
        inputs: vec![SOURCE.into()],
        results: "memory://results/".into(),
        concurrency: Some(concurrency),
        max_throughput_gbps: None,
        lease_seconds,
        tags: BTreeMap::from([("Name".to_string(), "worker-{instance_id}".to_string())]),
        spot: SpotConfig {
            poll_seconds: 5,
            on_rebalance: OnRebalance::StopLeasing,
            drain_margin_seconds: 20,
        },
        processors: Processors::default(),
        publish_tags: true,
        lifecycle_hook: "rangefleet-drain".into(),
        metrics_listen: None,
    }
}

/// Every result document under `results`, by job id.
pub async fn results(results: &Store) -> BTreeMap<String, serde_json::Value> {
    let mut out = BTreeMap::new();
    for o in results.list().await.unwrap() {
        if o.key.starts_with("_instances/") {
            continue;
        }
        let doc: serde_json::Value =
            serde_json::from_slice(&results.get(&o.key).await.unwrap()).unwrap();
        out.insert(doc["job"]["job_id"].as_str().unwrap().to_string(), doc);
    }
    out
}

/// Merges the outputs of `docs`.
pub fn merged<'a>(docs: impl IntoIterator<Item = &'a serde_json::Value>) -> TaxiStats {
    let mut total = TaxiStats::default();
    for doc in docs {
        total.merge(&serde_json::from_value(doc["output"].clone()).unwrap());
    }
    total
}

/// A duration of virtual time.
pub fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}
