//! The answer itself: `scan` over `gen` data with bad records equals gen's expected
//! totals exactly, and the seed baseline (../shared/baselines/seed_pool.py, which
//! implements the record predicate of docs/formats.md independently) agrees on the same files.

use std::path::PathBuf;
use std::process::Command;

use rangefleet_tests::{rangefleet, TempDir};
use serde_json::Value;

fn seed_pool() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/baselines/seed_pool.py");
    assert!(
        p.exists(),
        "{} is missing: the shared/ folder must sit beside the repository",
        p.display()
    );
    p
}

#[test]
fn scan_equals_gen_and_the_seed_baseline() {
    let dir = TempDir::new("seed");
    let data = dir.0.join("data");
    let out = rangefleet()
        .args(["gen", "--out"])
        .arg(&data)
        .args([
            "--days",
            "2016-02-27..2016-03-01",
            "--records",
            "7777",
            "--bad-every",
            "101",
            "--seed",
            "9",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // seed_pool reads every file under the folder: keep only the partitions there.
    let expected: Value =
        serde_json::from_slice(&std::fs::read(data.join("_expected.json")).unwrap()).unwrap();
    std::fs::remove_file(data.join("_expected.json")).unwrap();

    let scan = rangefleet()
        .args([
            "scan",
            &format!("file://{}/", data.display()),
            "--processor",
            "taxi-stats",
            "--records-per-job",
            "1000",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        scan.status.success(),
        "{}",
        String::from_utf8_lossy(&scan.stderr)
    );
    let scan: Value = serde_json::from_slice(&scan.stdout).unwrap();
    assert_eq!(scan["total"], expected["total"], "scan = gen's totals");
    assert_eq!(scan["partitions"], expected["partitions"]);
    assert!(
        scan["total"]["bad_records"].as_u64().unwrap() > 0,
        "the data has bad records"
    );

    let seed = Command::new("python3")
        .arg(seed_pool())
        .arg(&data)
        .args(["--records-per-job", "1000", "--processes", "2"])
        .output()
        .expect("run python3");
    assert!(
        seed.status.success(),
        "{}",
        String::from_utf8_lossy(&seed.stderr)
    );
    let seed: Value = serde_json::from_slice(&seed.stdout).unwrap();
    assert_eq!(seed["total"], expected["total"], "seed_pool = gen's totals");
    assert_eq!(seed["partitions"], expected["partitions"]);
}
