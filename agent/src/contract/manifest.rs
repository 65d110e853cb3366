//! The plan manifest, `<results>/_plan.json` (docs/formats.md): what `plan` split and
//! enqueued, and what `reduce` and `status` check results against. Pure: the store
//! I/O is in `operator::plan`.

use serde::{Deserialize, Serialize};

use crate::contract::result::ResultDoc;

/// Name of the plan manifest under the results prefix.
pub const MANIFEST: &str = "_plan.json";

/// The only manifest version written.
pub const VERSION: u32 = 1;

/// The plan manifest (docs/formats.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Version.
    pub v: u32,
    /// This plan's identity, new with every `plan` (also `--force` on the same
    /// prefix): every job message and result document carries it. Absent in manifests
    /// written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_id: Option<String>,
    /// The planned source prefix or object.
    pub source: String,
    /// The normalised prefix every job's `source` starts with (`source` as typed may
    /// differ). Absent in manifests written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
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

/// `<key>#<first>+<count>` split into its parts.
fn split_job_id(job_id: &str) -> Option<(&str, u64, u64)> {
    let (key, range) = job_id.rsplit_once('#')?;
    let (first, count) = range.split_once('+')?;
    Some((key, first.parse().ok()?, count.parse().ok()?))
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

/// A new plan identity: 128 random bits in hex.
pub fn new_plan_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// Checks result documents against a manifest, its objects indexed by key.
#[derive(Debug)]
pub struct ResultCheck<'a> {
    manifest: &'a Manifest,
    objects: std::collections::HashMap<&'a str, &'a ManifestObject>,
}

impl ResultCheck<'_> {
    /// Whether `doc`, stored as the result of planned job `job_id`, is a result of
    /// this plan's job: the same job id, plan identity, processor, source, ETag, object
    /// size, record length and range, and as many bytes read as the range holds.
    /// `Err` says what differs first (`stale plan: …`, `record count mismatch: …`).
    pub fn check(&self, job_id: &str, doc: &ResultDoc) -> Result<(), String> {
        let m = self.manifest;
        let j = &doc.job;
        if j.job_id != job_id {
            return Err(format!(
                "job_id mismatch: the document is the result of {:?}",
                j.job_id
            ));
        }
        if let Some(plan) = &m.plan_id {
            if j.plan_id.as_ref() != Some(plan) {
                return Err(format!(
                    "stale plan: the result is of plan {}, the manifest's is {plan}",
                    j.plan_id.as_deref().unwrap_or("(none)")
                ));
            }
        }
        if j.processor != m.processor {
            return Err(format!(
                "processor mismatch: {:?}, the plan's is {:?}",
                j.processor, m.processor
            ));
        }
        let (key, first, count) = split_job_id(job_id)
            .ok_or_else(|| format!("job_id {job_id:?} is not <key>#<first>+<count>"))?;
        let object = self
            .objects
            .get(key)
            .ok_or_else(|| format!("object {key:?} is not among the plan's objects"))?;
        if let Some(prefix) = &m.prefix {
            let want = format!("{prefix}{key}");
            if j.source != want {
                return Err(format!(
                    "source mismatch: {:?}, the plan's is {want:?}",
                    j.source
                ));
            }
        }
        if j.etag != object.etag {
            return Err(format!(
                "etag mismatch: {:?}, the plan's is {:?}",
                j.etag, object.etag
            ));
        }
        if j.object_size != Some(object.size) {
            return Err(format!(
                "object size mismatch: {:?}, the plan's is {}",
                j.object_size, object.size
            ));
        }
        if j.record_length != m.record_length {
            return Err(format!(
                "record length mismatch: {}, the plan's is {}",
                j.record_length, m.record_length
            ));
        }
        if j.first_record != first {
            return Err(format!(
                "range mismatch: first record {}, the plan's is {first}",
                j.first_record
            ));
        }
        if j.record_count != count {
            return Err(format!(
                "record count mismatch: {}, the plan's is {count}",
                j.record_count
            ));
        }
        let bytes = count.saturating_mul(m.record_length);
        if doc.bytes_read != bytes {
            return Err(format!(
                "bytes read mismatch: {}, the range holds {bytes}",
                doc.bytes_read
            ));
        }
        Ok(())
    }
}

impl Manifest {
    /// A checker of result documents against this manifest.
    pub fn result_check(&self) -> ResultCheck<'_> {
        ResultCheck {
            manifest: self,
            objects: self.objects.iter().map(|o| (o.key.as_str(), o)).collect(),
        }
    }

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
  "plan_id": "0123456789abcdef0123456789abcdef",
  "source": "s3://bucket/trips/",
  "prefix": "s3://bucket/trips/",
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
            plan_id: Some("0123456789abcdef0123456789abcdef".into()),
            source: "s3://bucket/trips/".into(),
            prefix: Some("s3://bucket/trips/".into()),
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

    #[test]
    fn reads_a_manifest_written_before_plan_ids() {
        let old = SAMPLE
            .replace("  \"plan_id\": \"0123456789abcdef0123456789abcdef\",\n", "")
            .replace("  \"prefix\": \"s3://bucket/trips/\",\n", "");
        assert!(!old.contains("plan_id") && !old.contains("prefix"));
        let m = Manifest::from_slice(old.as_bytes()).unwrap();
        assert_eq!((m.plan_id, m.prefix), (None, None));
        assert_ne!(new_plan_id(), new_plan_id());
    }
}

#[cfg(test)]
mod check_tests {
    use super::*;
    use crate::contract::job::Job;
    use crate::contract::result::ResultInstance;
    use std::time::SystemTime;

    const PLAN: &str = "0123456789abcdef0123456789abcdef";

    fn manifest() -> Manifest {
        Manifest {
            v: VERSION,
            plan_id: Some(PLAN.into()),
            source: "s3://bucket/trips".into(),
            prefix: Some("s3://bucket/trips/".into()),
            processor: "count".into(),
            record_length: 80,
            records_per_job: 10,
            objects: vec![ManifestObject {
                key: "d=1/a.rec".into(),
                size: 1200,
                etag: Some("\"e\"".into()),
            }],
            jobs: vec!["d=1/a.rec#0+10".into(), "d=1/a.rec#10+5".into()],
        }
    }

    /// The result the plan's job `d=1/a.rec#10+5` gives, changed by `edit`.
    fn doc(edit: impl FnOnce(&mut ResultDoc)) -> ResultDoc {
        let job = Job {
            v: 1,
            job_id: "d=1/a.rec#10+5".into(),
            source: "s3://bucket/trips/d=1/a.rec".into(),
            record_length: 80,
            first_record: 10,
            record_count: 5,
            partition: [("d".to_string(), "1".to_string())].into(),
            processor: "count".into(),
            object_size: Some(1200),
            etag: Some("\"e\"".into()),
            plan_id: Some(PLAN.into()),
        };
        let mut d = ResultDoc::new(
            &job,
            serde_json::json!({"records": 5, "bytes": 400, "checksum": 1}),
            400,
            ResultInstance::default(),
            1,
            SystemTime::UNIX_EPOCH,
            SystemTime::UNIX_EPOCH,
        );
        edit(&mut d);
        d
    }

    fn check(d: &ResultDoc) -> Result<(), String> {
        manifest().result_check().check("d=1/a.rec#10+5", d)
    }

    #[test]
    fn the_plans_own_result_passes() {
        assert_eq!(check(&doc(|_| {})), Ok(()));
    }

    #[test]
    fn every_difference_from_the_planned_job_is_named() {
        type Edit = Box<dyn FnOnce(&mut ResultDoc)>;
        let cases: Vec<(Edit, &str)> = vec![
            (
                Box::new(|d| d.job.plan_id = Some("other".into())),
                "stale plan",
            ),
            (Box::new(|d| d.job.plan_id = None), "stale plan"),
            (
                Box::new(|d| d.job.record_count = 4),
                "record count mismatch",
            ),
            (Box::new(|d| d.job.first_record = 9), "range mismatch"),
            (
                Box::new(|d| d.job.etag = Some("\"old\"".into())),
                "etag mismatch",
            ),
            (Box::new(|d| d.job.etag = None), "etag mismatch"),
            (
                Box::new(|d| d.job.object_size = Some(800)),
                "object size mismatch",
            ),
            (
                Box::new(|d| d.job.source = "s3://bucket/other/d=1/a.rec".into()),
                "source mismatch",
            ),
            (
                Box::new(|d| d.job.record_length = 40),
                "record length mismatch",
            ),
            (
                Box::new(|d| d.job.processor = "taxi-stats".into()),
                "processor mismatch",
            ),
            (
                Box::new(|d| d.job.job_id = "d=1/a.rec#0+10".into()),
                "job_id mismatch",
            ),
            (Box::new(|d| d.bytes_read = 80), "bytes read mismatch"),
        ];
        for (edit, want) in cases {
            let e = check(&doc(edit)).unwrap_err();
            assert!(e.starts_with(want), "{want}: {e}");
        }
    }

    #[test]
    fn a_manifest_without_a_plan_id_checks_the_rest() {
        let mut m = manifest();
        m.plan_id = None;
        m.prefix = None;
        let c = m.result_check();
        assert_eq!(
            c.check("d=1/a.rec#10+5", &doc(|d| d.job.plan_id = None)),
            Ok(())
        );
        assert!(c
            .check("d=1/a.rec#10+5", &doc(|d| d.job.record_count = 4))
            .is_err());
    }
}
