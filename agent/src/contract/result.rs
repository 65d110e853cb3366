//! Result documents: one per job, written create-only to `<results>/<result key>`
//! (docs/formats.md, docs/formats.md) and read back by `reduce`.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::contract::job::Job;
use crate::time::rfc3339;

/// The only result document version written.
pub const VERSION: u32 = 1;

/// One job's result. Fields serialise in this order, as the worker has always written
/// them; unknown fields are ignored on read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultDoc {
    /// Document version ([`VERSION`]).
    pub v: u32,
    /// The job message as run.
    pub job: Job,
    /// The processor's output (`count`, `taxi-stats` or `exec` shape).
    pub output: Value,
    /// Bytes read from the source.
    pub bytes_read: u64,
    /// The instance that ran the job.
    pub instance: ResultInstance,
    /// The queue's receive count for the lease that finished the job.
    pub attempt: u32,
    /// When the job started (RFC 3339, seconds).
    pub started_at: String,
    /// When the job finished (RFC 3339, seconds).
    pub finished_at: String,
}

/// The instance block of a result document.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultInstance {
    /// `i-…`.
    pub instance_id: String,
    /// `us-east-1a`.
    pub availability_zone: String,
    /// The instance's effective tags.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

impl ResultDoc {
    /// A version-1 result of `job`, its times formatted as RFC 3339 seconds.
    pub fn new(
        job: &Job,
        output: Value,
        bytes_read: u64,
        instance: ResultInstance,
        attempt: u32,
        started_at: SystemTime,
        finished_at: SystemTime,
    ) -> ResultDoc {
        ResultDoc {
            v: VERSION,
            job: job.clone(),
            output,
            bytes_read,
            instance,
            attempt,
            started_at: rfc3339(started_at),
            finished_at: rfc3339(finished_at),
        }
    }

    /// The document's bytes, as written to the store (compact JSON).
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("result documents serialise")
    }

    /// Parses a stored result document.
    pub fn from_slice(body: &[u8]) -> Result<ResultDoc, serde_json::Error> {
        serde_json::from_slice(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Duration;

    /// A result exactly as `worker::finish` has written it (preserve_order: key order).
    const SAMPLE: &str = r#"{"v":1,"job":{"v":1,"job_id":"color=yellow/date=2016-01-01/part-0000.rec#0+2","source":"s3://bucket/trips/color=yellow/date=2016-01-01/part-0000.rec","record_length":80,"first_record":0,"record_count":2,"partition":{"color":"yellow","date":"2016-01-01"},"processor":"count","object_size":160,"etag":"\"e1\""},"output":{"records":2,"bytes":160,"checksum":42},"bytes_read":160,"instance":{"instance_id":"i-0abc","availability_zone":"us-east-1a","tags":{"Name":"worker-i-0abc","team":"data"}},"attempt":2,"started_at":"2016-01-01T00:00:00Z","finished_at":"2016-01-01T00:00:03Z"}"#;

    fn job() -> Job {
        Job {
            v: 1,
            job_id: "color=yellow/date=2016-01-01/part-0000.rec#0+2".into(),
            source: "s3://bucket/trips/color=yellow/date=2016-01-01/part-0000.rec".into(),
            record_length: 80,
            first_record: 0,
            record_count: 2,
            partition: [("color", "yellow"), ("date", "2016-01-01")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            processor: "count".into(),
            object_size: Some(160),
            etag: Some("\"e1\"".into()),
            plan_id: None,
        }
    }

    fn doc() -> ResultDoc {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_451_606_400);
        ResultDoc::new(
            &job(),
            json!({"records": 2, "bytes": 160, "checksum": 42}),
            160,
            ResultInstance {
                instance_id: "i-0abc".into(),
                availability_zone: "us-east-1a".into(),
                tags: [("Name", "worker-i-0abc"), ("team", "data")]
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            },
            2,
            t0,
            t0 + Duration::from_secs(3),
        )
    }

    #[test]
    fn writes_todays_bytes() {
        assert_eq!(String::from_utf8(doc().to_bytes()).unwrap(), SAMPLE);
    }

    #[test]
    fn round_trips() {
        let d = doc();
        assert_eq!(ResultDoc::from_slice(&d.to_bytes()).unwrap(), d);
    }

    #[test]
    fn reads_a_sample_as_written_today_and_ignores_unknown_fields() {
        assert_eq!(ResultDoc::from_slice(SAMPLE.as_bytes()).unwrap(), doc());
        let mut v: Value = serde_json::from_str(SAMPLE).unwrap();
        v["future"] = json!({"anything": true});
        v["instance"]["region"] = json!("us-east-1");
        let d: ResultDoc = serde_json::from_value(v).unwrap();
        assert_eq!(d, doc());
    }
}
