//! Instance summaries: what one agent did, written at exit to
//! `<results>/_instances/<instance-id>.json` (docs/formats.md).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Folder of instance summaries under the results prefix.
pub const INSTANCES: &str = "_instances/";

/// The only instance summary version written.
pub const VERSION: u32 = 1;

/// The key of `instance_id`'s summary under the results prefix.
pub fn summary_key(instance_id: &str) -> String {
    format!("{INSTANCES}{instance_id}.json")
}

/// One agent's summary. Fields serialise in this order, as agents have always written
/// them. On read, unknown fields are ignored and missing ones take their default (an
/// empty string, zero, no interruption), so a partial summary still counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct InstanceSummary {
    /// Document version ([`VERSION`]).
    pub v: u32,
    /// `i-…`.
    pub instance_id: String,
    /// `m5.large`.
    pub instance_type: String,
    /// `us-east-1a`.
    pub availability_zone: String,
    /// `spot` or `on-demand`.
    pub life_cycle: String,
    /// The instance's effective tags.
    pub tags: BTreeMap<String, String>,
    /// The notice the agent drained on; `null` when it ran until stopped or empty.
    pub interruption: Option<Interruption>,
    /// When the worker started (RFC 3339, seconds).
    pub started_at: String,
    /// When the worker stopped (RFC 3339, seconds).
    pub finished_at: String,
    /// Results written and acked.
    pub done: u64,
    /// Jobs whose result was already there (a second write refused).
    pub redone: u64,
    /// Jobs dead-lettered.
    pub failed: u64,
    /// Jobs handed back to the queue.
    pub released: u64,
    /// Bytes read by finished jobs.
    pub bytes_read: u64,
    /// How the agent sized its reads and what its GET window did; absent in summaries
    /// written before it was added.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub throughput: Option<Throughput>,
    /// Why the agent gave up, when it did (an invalid config, a crash loop); absent
    /// from the summaries of agents that worked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
    /// The counters of the metrics endpoint that the fields above do not hold, at exit
    /// (docs/operations.md#metrics); absent in summaries written before it was added.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics: Option<MetricsSummary>,
    /// Which build of the agent wrote the summary; absent in summaries written before
    /// it was added.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentBuild>,
}

/// The agent's version and the commit it was built from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AgentBuild {
    /// The crate version (`rangefleet --version`).
    pub version: String,
    /// The commit (12 hex digits), `unknown` for a build outside a git checkout.
    pub commit: String,
}

impl AgentBuild {
    /// This binary's build.
    pub fn current() -> AgentBuild {
        AgentBuild {
            version: VERSION_STR.to_string(),
            commit: COMMIT.to_string(),
        }
    }
}

/// This binary's version.
pub const VERSION_STR: &str = env!("CARGO_PKG_VERSION");
/// The commit this binary was built from (`build.rs`), `unknown` outside a git checkout.
pub const COMMIT: &str = env!("RANGEFLEET_COMMIT");

/// The metrics endpoint's counters that are not fields of the summary already, with the
/// same values the endpoint serves at exit (docs/operations.md#metrics).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MetricsSummary {
    /// Job attempts that ended in an error (`rangefleet_job_errors_total`): retried,
    /// released for a fault of the environment, or dead-lettered.
    pub job_errors: u64,
    /// Notices seen, by kind (`rangefleet_notices_total`): `spot-interruption`,
    /// `rebalance`, `asg-termination`.
    pub notices: BTreeMap<String, u64>,
    /// Lease calls that returned jobs (`rangefleet_lease_latency_seconds`).
    pub lease_latency: Latency,
    /// Jobs from lease to result (`rangefleet_job_duration_seconds`).
    pub job_duration: Latency,
}

// The sums are finite numbers of seconds: equality is total.
impl Eq for MetricsSummary {}

/// A histogram's count and sum.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Latency {
    /// Observations.
    pub count: u64,
    /// Their sum, seconds.
    pub sum_seconds: f64,
}

impl Eq for Latency {}

/// The width an agent chose (`instance/sizing.rs`) and what its GET window did
/// (`instance/fetch.rs`); docs/operations.md explains each field.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Throughput {
    /// The throughput target, Gbit/s.
    pub throughput_gbps: f64,
    /// Where the target came from: `config`, `concurrency`, `instance-type`, `default`.
    pub source: String,
    /// The most part GETs in flight at once (the window's ceiling).
    pub gets_in_flight: u64,
    /// Jobs leased at once.
    pub jobs_in_flight: u64,
    /// `exec` jobs reading or running at once.
    pub cpu_slots: u64,
    /// Target bytes per part GET.
    pub part_size: u64,
    /// What the GET window did.
    pub window: WindowSummary,
}

// The target is a validated, finite number: equality is total.
impl Eq for Throughput {}

/// What the GET window did over an agent's life.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct WindowSummary {
    /// The window at the end (GETs).
    pub gets: u64,
    /// Most GETs in flight at once.
    pub peak_gets_in_flight: u64,
    /// Times the window was halved after a throttled GET.
    pub narrowed: u64,
    /// GETs the store throttled (503 SlowDown, 429).
    pub throttled: u64,
    /// Parts split to fill an idle window (the end of a plan).
    pub splits: u64,
}

/// Why an agent could not work (`rangefleet status --results` lists these).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Failure {
    /// `config` (an invalid config), `crash-loop` (restarted past the unit's start
    /// limit), `install` (the install failed), `unit-failed` (any other way the unit
    /// failed for good).
    pub kind: String,
    /// What went wrong and what to do, for people.
    pub reason: String,
    /// When (RFC 3339).
    pub at: String,
}

/// Why an agent drained.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Interruption {
    /// `spot-interruption`, `asg-termination`, `sigterm`, `rebalance`.
    pub kind: String,
    /// Free text (the notice's payload, the action).
    pub detail: String,
}

impl InstanceSummary {
    /// The summary's bytes, as written to the store (pretty JSON).
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("summaries serialise")
    }

    /// Parses a stored summary.
    pub fn from_slice(body: &[u8]) -> Result<InstanceSummary, serde_json::Error> {
        serde_json::from_slice(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    /// A summary exactly as `worker::summary` has written it (pretty, keys in order).
    const SAMPLE: &str = r#"{
  "v": 1,
  "instance_id": "i-0spotvictim",
  "instance_type": "m5.large",
  "availability_zone": "us-east-1a",
  "life_cycle": "spot",
  "tags": {
    "Name": "worker-i-0spotvictim",
    "team": "data"
  },
  "interruption": {
    "kind": "spot-interruption",
    "detail": "{\"action\":\"terminate\",\"time\":\"2016-01-01T00:02:00Z\"}"
  },
  "started_at": "2016-01-01T00:00:00Z",
  "finished_at": "2016-01-01T00:01:10Z",
  "done": 12,
  "redone": 1,
  "failed": 0,
  "released": 2,
  "bytes_read": 96000000
}"#;

    fn summary() -> InstanceSummary {
        InstanceSummary {
            v: VERSION,
            instance_id: "i-0spotvictim".into(),
            instance_type: "m5.large".into(),
            availability_zone: "us-east-1a".into(),
            life_cycle: "spot".into(),
            tags: [("Name", "worker-i-0spotvictim"), ("team", "data")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            interruption: Some(Interruption {
                kind: "spot-interruption".into(),
                detail: r#"{"action":"terminate","time":"2016-01-01T00:02:00Z"}"#.into(),
            }),
            started_at: "2016-01-01T00:00:00Z".into(),
            finished_at: "2016-01-01T00:01:10Z".into(),
            done: 12,
            redone: 1,
            failed: 0,
            released: 2,
            bytes_read: 96_000_000,
            throughput: None,
            failure: None,
            metrics: None,
            agent: None,
        }
    }

    #[test]
    fn keys_are_under_instances() {
        assert_eq!(summary_key("i-1"), "_instances/i-1.json");
    }

    #[test]
    fn writes_todays_bytes() {
        assert_eq!(String::from_utf8(summary().to_bytes()).unwrap(), SAMPLE);
        let quiet = InstanceSummary {
            interruption: None,
            ..summary()
        };
        let v: Value = serde_json::from_slice(&quiet.to_bytes()).unwrap();
        assert!(v["interruption"].is_null(), "null, not left out: {v}");
        assert!(v.as_object().unwrap().contains_key("interruption"));
    }

    #[test]
    fn round_trips() {
        let s = summary();
        assert_eq!(InstanceSummary::from_slice(&s.to_bytes()).unwrap(), s);
    }

    #[test]
    fn reads_a_sample_as_written_today_and_tolerates_unknown_and_missing_fields() {
        assert_eq!(
            InstanceSummary::from_slice(SAMPLE.as_bytes()).unwrap(),
            summary()
        );
        let mut v: Value = serde_json::from_str(SAMPLE).unwrap();
        v["future"] = json!([1, 2]);
        v["interruption"]["deadline"] = json!("later");
        assert_eq!(
            serde_json::from_value::<InstanceSummary>(v).unwrap(),
            summary()
        );
        let partial =
            InstanceSummary::from_slice(br#"{"instance_id": "i-1", "redone": 3}"#).unwrap();
        assert_eq!((partial.redone, partial.done), (3, 0));
        assert_eq!(partial.interruption, None);
        assert_eq!(
            InstanceSummary::from_slice(b"{}").unwrap(),
            InstanceSummary::default()
        );
    }
}
