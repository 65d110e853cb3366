//! The plan manifest, `<results>/_plan.json` (docs/formats.md): what `plan` split and
//! enqueued, and what `reduce` and `status` check results against. Pure: the store
//! I/O is in `operator::plan`.

use serde::{Deserialize, Serialize};

/// Name of the plan manifest under the results prefix.
pub const MANIFEST: &str = "_plan.json";

/// The only manifest version written.
pub const VERSION: u32 = 1;

/// The plan manifest (docs/formats.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Version.
    pub v: u32,
    /// The planned source prefix or object.
    pub source: String,
    /// Processor of every job.
    pub processor: String,
    /// Bytes per record.
    pub record_length: u64,
    /// Records per job (the last job of an object may have fewer).
    pub records_per_job: u64,
    /// Objects planned, with size and ETag at plan time.
    pub objects: Vec<ManifestObject>,
    /// Every job id, in enqueue order.
    pub jobs: Vec<String>,
}

/// One object in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestObject {
    /// Key relative to the source prefix.
    pub key: String,
    /// Bytes.
    pub size: u64,
    /// ETag, when the store has one.
    pub etag: Option<String>,
}

impl Manifest {
    /// The manifest's bytes, as written to the store (pretty JSON).
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("manifest serialises")
    }

    /// Parses a stored manifest.
    pub fn from_slice(body: &[u8]) -> Result<Manifest, serde_json::Error> {
        serde_json::from_slice(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A manifest exactly as `plan` has written it.
    const SAMPLE: &str = r#"{
  "v": 1,
  "source": "s3://bucket/trips/",
  "processor": "taxi-stats",
  "record_length": 80,
  "records_per_job": 10,
  "objects": [
    {
      "key": "color=green/date=1/part-0000.rec",
      "size": 1200,
      "etag": "\"e\""
    },
    {
      "key": "color=yellow/date=1/part-0000.rec",
      "size": 800,
      "etag": null
    }
  ],
  "jobs": [
    "color=green/date=1/part-0000.rec#0+10",
    "color=yellow/date=1/part-0000.rec#0+10",
    "color=green/date=1/part-0000.rec#10+5"
  ]
}"#;

    fn manifest() -> Manifest {
        Manifest {
            v: VERSION,
            source: "s3://bucket/trips/".into(),
            processor: "taxi-stats".into(),
            record_length: 80,
            records_per_job: 10,
            objects: vec![
                ManifestObject {
                    key: "color=green/date=1/part-0000.rec".into(),
                    size: 1200,
                    etag: Some("\"e\"".into()),
                },
                ManifestObject {
                    key: "color=yellow/date=1/part-0000.rec".into(),
                    size: 800,
                    etag: None,
                },
            ],
            jobs: vec![
                "color=green/date=1/part-0000.rec#0+10".into(),
                "color=yellow/date=1/part-0000.rec#0+10".into(),
                "color=green/date=1/part-0000.rec#10+5".into(),
            ],
        }
    }

    #[test]
    fn writes_todays_bytes() {
        assert_eq!(String::from_utf8(manifest().to_bytes()).unwrap(), SAMPLE);
    }

    #[test]
    fn round_trips() {
        let m = manifest();
        assert_eq!(Manifest::from_slice(&m.to_bytes()).unwrap(), m);
    }

    #[test]
    fn reads_a_sample_as_written_today_and_ignores_unknown_fields() {
        assert_eq!(Manifest::from_slice(SAMPLE.as_bytes()).unwrap(), manifest());
        let mut v: serde_json::Value = serde_json::from_str(SAMPLE).unwrap();
        v["planned_at"] = "2016-01-01T00:00:00Z".into();
        assert_eq!(serde_json::from_value::<Manifest>(v).unwrap(), manifest());
        assert!(Manifest::from_slice(b"{\"v\": 1}").is_err());
    }
}
