//! Job messages, version 1 (docs/formats.md), and the result key of each (docs/formats.md).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::contract::allow::{AllowList, Location};
use crate::error::ErrorClass;

/// The processors a job may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProcessorKind {
    /// Records, bytes and an order-independent checksum.
    Count,
    /// Exact sums and histograms over taxi trip records.
    TaxiStats,
    /// The command in the config's `processors.exec`.
    Exec,
}

/// A processor name that is not one of [`ProcessorKind`]'s.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown processor {0:?} (count, taxi-stats, exec)")]
pub struct UnknownProcessor(pub String);

impl UnknownProcessor {
    /// Always [`ErrorClass::Job`]: a job (or plan) naming it can never run.
    pub fn class(&self) -> ErrorClass {
        ErrorClass::Job
    }
}

impl std::str::FromStr for ProcessorKind {
    type Err = UnknownProcessor;
    fn from_str(s: &str) -> Result<Self, UnknownProcessor> {
        match s {
            "count" => Ok(ProcessorKind::Count),
            "taxi-stats" => Ok(ProcessorKind::TaxiStats),
            "exec" => Ok(ProcessorKind::Exec),
            other => Err(UnknownProcessor(other.to_string())),
        }
    }
}

impl ProcessorKind {
    /// The name jobs use.
    pub fn name(self) -> &'static str {
        match self {
            ProcessorKind::Count => "count",
            ProcessorKind::TaxiStats => "taxi-stats",
            ProcessorKind::Exec => "exec",
        }
    }
}

/// The only job version this agent reads.
pub const VERSION: u32 = 1;
/// Largest range one job may read: a job is one GET, and its records pass through
/// memory in chunks, but an absurd range is a mistake in the plan.
pub const MAX_JOB_BYTES: u64 = 1 << 32;

/// One job: a record range of one object and the processor to run over it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// Message version.
    pub v: u32,
    /// `<key relative to the planned prefix>#<first>+<count>`.
    pub job_id: String,
    /// The object's full URL.
    pub source: String,
    /// Bytes per record.
    pub record_length: u64,
    /// First record (0-based).
    pub first_record: u64,
    /// Records to read.
    pub record_count: u64,
    /// `k=v` segments of the relative key.
    #[serde(default)]
    pub partition: BTreeMap<String, String>,
    /// `count`, `taxi-stats` or `exec`.
    pub processor: String,
    /// Object size at plan time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_size: Option<u64>,
    /// Object ETag at plan time; when present the read is conditional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// The plan that made the job (its manifest's `plan_id`): `reduce` counts a result
    /// only when it matches the plan it checks against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_id: Option<String>,
}

impl Job {
    /// The job id for records `[first, first + count)` of `key`.
    pub fn id_for(key: &str, first: u64, count: u64) -> String {
        format!("{key}#{first}+{count}")
    }

    /// The partition's name: its `k=v` segments joined by `/` in path order (docs/formats.md).
    pub fn partition_name(&self) -> String {
        partition_name_of_job(&self.job_id)
    }

    /// Where this job's result goes, relative to the results prefix.
    pub fn result_key(&self) -> String {
        result_key(&self.job_id)
    }

    /// The records this job reads.
    pub fn range(&self) -> crate::contract::range::RecordRange {
        crate::contract::range::RecordRange {
            first_record: self.first_record,
            record_count: self.record_count,
            record_length: self.record_length,
        }
    }
}

/// The partition name (docs/formats.md) of a relative key: `color=yellow/date=2016-01-01`.
pub fn partition_name(key: &str) -> String {
    partition_of(key)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("/")
}

/// The partition name of a job id (`<key>#<first>+<count>`).
pub fn partition_name_of_job(job_id: &str) -> String {
    partition_name(job_id.split('#').next().unwrap_or(""))
}

/// `k=v` segments of a relative key's folders, in path order.
pub fn partition_of(key: &str) -> Vec<(String, String)> {
    let mut segs: Vec<&str> = key.split('/').collect();
    segs.pop(); // the object's own name
    segs.into_iter()
        .filter_map(|s| s.split_once('='))
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// `<job id>.json` with every byte outside RFC 3986's unreserved set as `%XX`.
pub fn result_key(job_id: &str) -> String {
    let mut out = String::with_capacity(job_id.len() + 16);
    for b in job_id.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out.push_str(".json");
    out
}

/// The job id a result key was made from; `None` for names that are not results.
pub fn job_id_of_result(key: &str) -> Option<String> {
    let stem = key.strip_suffix(".json")?;
    let b = stem.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = stem.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Longest file name component on the file systems results are written to (ext4, xfs,
/// tmpfs: `NAME_MAX`), in bytes.
pub const MAX_FILE_NAME: usize = 255;
/// Longest S3 object key, in bytes (UTF-8).
pub const MAX_S3_KEY: usize = 1024;

/// What the results store accepts as a result's name: a `file://` store takes one
/// component of at most [`MAX_FILE_NAME`] bytes, an S3 store a key (prefix included) of
/// at most [`MAX_S3_KEY`] bytes. A job whose result cannot be written can never
/// succeed, so `plan` refuses it and the agent dead-letters it at its first receive.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResultLimits {
    /// Longest result key (one file name component), when the store has a limit.
    max_name: Option<usize>,
    /// Longest key including the results prefix, and that prefix's length in bytes.
    max_key: Option<(usize, usize)>,
}

impl ResultLimits {
    /// The limits of the results store at `results_url` (`file:///dir/`,
    /// `s3://bucket/prefix/`); none for other schemes.
    pub fn for_results(results_url: &str) -> ResultLimits {
        if results_url.starts_with("file://") {
            ResultLimits {
                max_name: Some(MAX_FILE_NAME),
                max_key: None,
            }
        } else if let Some(rest) = results_url.strip_prefix("s3://") {
            let prefix = rest.split_once('/').map_or("", |(_, p)| p);
            let prefix = crate::contract::allow::percent_decode(prefix);
            ResultLimits {
                max_name: None,
                max_key: Some((MAX_S3_KEY, prefix.len())),
            }
        } else {
            ResultLimits::default()
        }
    }

    /// Why `job_id`'s result key cannot be written to the store, if it cannot.
    pub fn check(&self, job_id: &str) -> Result<(), String> {
        let key = result_key(job_id);
        if let Some(max) = self.max_name {
            if key.len() > max {
                return Err(format!(
                    "result key too long: {} bytes, more than the {max}-byte file name limit: {key}",
                    key.len()
                ));
            }
        }
        if let Some((max, prefix)) = self.max_key {
            if prefix + key.len() > max {
                return Err(format!(
                    "result key too long: {} bytes with the results prefix, more than the \
                     {max}-byte S3 key limit: {key}",
                    prefix + key.len()
                ));
            }
        }
        Ok(())
    }
}

/// Why a message is not a job this agent will run. Always permanent: dead-letter it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadJob(pub String);

impl BadJob {
    /// Always [`ErrorClass::Job`].
    pub fn class(&self) -> ErrorClass {
        ErrorClass::Job
    }
}

/// Parses and checks a message: version, numbers, processor, the allow-list, and that
/// its result can be written under `limits`. The [`Location`] is the source as the
/// allow-list checked it: the one to read.
pub fn parse(
    body: &str,
    allow: &AllowList,
    processors: &[ProcessorKind],
    limits: &ResultLimits,
) -> Result<(Job, ProcessorKind, Location), BadJob> {
    let value: serde_json::Value =
        serde_json::from_str(body).map_err(|e| BadJob(format!("message is not JSON: {e}")))?;
    match value.get("v").and_then(|v| v.as_u64()) {
        Some(1) => {}
        Some(v) if v > 1 => {
            return Err(BadJob(format!(
                "job version {v} is newer than this agent reads ({VERSION}); upgrade the fleet"
            )))
        }
        _ => return Err(BadJob("message has no job version \"v\": 1".into())),
    }
    let job: Job =
        serde_json::from_value(value).map_err(|e| BadJob(format!("not a version 1 job: {e}")))?;
    if job.job_id.is_empty() || job.job_id.len() > 1024 {
        return Err(BadJob("job_id must be 1 to 1024 bytes".into()));
    }
    if job.job_id.contains('\0') {
        return Err(BadJob("job_id contains a NUL byte".into()));
    }
    limits.check(&job.job_id).map_err(BadJob)?;
    if job.record_length == 0 || job.record_length > 1 << 20 {
        return Err(BadJob(format!(
            "record_length {} is outside 1..=1048576",
            job.record_length
        )));
    }
    if job.record_count == 0 {
        return Err(BadJob("record_count is 0".into()));
    }
    let end = job
        .first_record
        .checked_add(job.record_count)
        .and_then(|n| n.checked_mul(job.record_length));
    match end {
        None => return Err(BadJob("first_record + record_count overflows".into())),
        Some(_) if job.record_count.saturating_mul(job.record_length) > MAX_JOB_BYTES => {
            return Err(BadJob(format!(
                "the range is larger than {MAX_JOB_BYTES} bytes"
            )))
        }
        Some(end) if job.object_size.is_some_and(|s| end > s) => {
            return Err(BadJob(format!(
                "records end at byte {end}, past the planned object size {}",
                job.object_size.unwrap_or(0)
            )))
        }
        Some(_) => {}
    }
    let kind: ProcessorKind = job
        .processor
        .parse()
        .map_err(|e: UnknownProcessor| BadJob(e.to_string()))?;
    if !processors.contains(&kind) {
        return Err(BadJob(format!(
            "processor {:?} is not enabled in this agent's config",
            job.processor
        )));
    }
    let location = allow
        .check(&job.source)
        .map_err(|e| BadJob(e.to_string()))?;
    Ok((job, kind, location))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_keys_escape_once_and_round_trip() {
        let id = "color=yellow/date=2016-01-01/part-0000.rec#0+100000";
        let key = result_key(id);
        assert_eq!(
            key,
            "color%3Dyellow%2Fdate%3D2016-01-01%2Fpart-0000.rec%230%2B100000.json"
        );
        assert_eq!(job_id_of_result(&key).unwrap(), id);
        assert_eq!(result_key("a b%c~"), "a%20b%25c~.json");
        assert_eq!(job_id_of_result("_plan.json").unwrap(), "_plan");
        assert_eq!(job_id_of_result("x.txt"), None);
    }

    fn body(job_id: &str) -> String {
        serde_json::json!({"v": 1, "job_id": job_id, "source": "file:///d/a.rec",
            "record_length": 8, "first_record": 0, "record_count": 1, "processor": "count"})
        .to_string()
    }

    fn parse_with(job_id: &str, results: &str) -> Result<(Job, ProcessorKind), BadJob> {
        let allow = AllowList::new(&["file:///d/".to_string()]).unwrap();
        parse(
            &body(job_id),
            &allow,
            &[ProcessorKind::Count],
            &ResultLimits::for_results(results),
        )
        .map(|(job, kind, _)| (job, kind))
    }

    #[test]
    fn a_nul_in_job_id_is_a_bad_job() {
        let e = parse_with("a.rec\0#0+1", "file:///r/").unwrap_err();
        assert!(e.0.contains("NUL"), "{e}");
        assert_eq!(e.class(), ErrorClass::Job);
    }

    #[test]
    fn a_result_key_over_the_stores_limit_is_a_bad_job() {
        // 245 bytes of name + "#0+1" escaped + ".json": 256 bytes, one over NAME_MAX.
        let long = format!("{}#0+1", "x".repeat(256 - ".json".len() - "%230%2B1".len()));
        assert_eq!(result_key(&long).len(), 256);
        let e = parse_with(&long, "file:///r/").unwrap_err();
        assert!(
            e.0.contains("result key too long") && e.0.contains("255"),
            "{e}"
        );
        let short = format!("{}#0+1", "x".repeat(255 - ".json".len() - "%230%2B1".len()));
        assert!(parse_with(&short, "file:///r/").is_ok());
        // S3: the prefix counts; 1,024 bytes in all.
        let prefix = format!("s3://b/{}/", "p".repeat(1024 - 256));
        let e = parse_with(&long, &prefix).unwrap_err();
        assert!(e.0.contains("1024-byte S3 key limit"), "{e}");
        assert!(parse_with(&short, &prefix).is_ok());
        assert!(parse_with(&long, "memory:///").is_ok());
    }

    #[test]
    fn partitions_come_from_folders_only() {
        assert_eq!(
            partition_of("color=yellow/date=2016-01-01/part=7.rec"),
            vec![
                ("color".into(), "yellow".into()),
                ("date".into(), "2016-01-01".into())
            ]
        );
        assert!(partition_of("part-0000.rec").is_empty());
    }
}
