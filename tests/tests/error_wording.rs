//! Error messages shown to people say what happened, not the internal class it was
//! sorted into: no `permanent:`, `fault:`, `retryable:` or `not found:` in front of them
//! (the class stays a structured log field, `CLASS` in the journal).

use std::time::Duration;

use rangefleet_tests::notify::{run_ok_within, LocalPlan};
use rangefleet_tests::rangefleet;

const CLASS_WORDS: [&str; 4] = ["permanent:", "fault:", "retryable:", "not found:"];

fn assert_no_class_word(text: &str) {
    for word in CLASS_WORDS {
        assert!(!text.contains(word), "{word:?} in {text:?}");
    }
}

#[test]
fn a_bad_store_url_is_reported_without_a_class_word() {
    let out = rangefleet()
        .args(["scan", "s3:///x/", "--processor", "count"])
        .output()
        .expect("run rangefleet");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("bad S3 URL \"s3:///x/\""), "{stderr}");
    assert_no_class_word(&stderr);
}

#[test]
fn a_dead_letter_reason_says_what_happened_and_the_class_is_a_field() {
    let plan = LocalPlan::new("wording", "taxi-stats", 100, 100, 1, "");
    let object = plan
        .dir
        .0
        .join("data/color=yellow/date=2016-01-01/part-0000.rec");
    std::fs::remove_file(&object).expect("remove the planned object");
    let mut agent = plan.agent();
    agent.args(["--log-format", "json"]);
    let stderr = run_ok_within(&mut agent, Duration::from_secs(60));
    let dead: Vec<serde_json::Value> = stderr
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|v: &serde_json::Value| v["fields"]["event"] == "job_dead_lettered")
        .collect();
    assert_eq!(dead.len(), 1, "{stderr}");
    let reason = dead[0]["fields"]["reason"].as_str().expect("a reason");
    assert!(reason.ends_with(": no such object"), "{reason}");
    assert_no_class_word(reason);
    let spans = dead[0]["spans"].as_array().expect("spans");
    assert!(
        spans.iter().any(|s| s["class"] == "job"),
        "the class is a field of the entry: {}",
        dead[0]
    );
}
