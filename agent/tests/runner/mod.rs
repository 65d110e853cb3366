//! The property tests' runner settings: a fixed seed and 100,000 cases, so CI runs the
//! same inputs every time; `PROPTEST_SEED=<n>` explores others, `PROPTEST_CASES=<n>`
//! changes how many.

use proptest::test_runner::{Config, RngSeed};

/// `cases` cases from `seed` unless the environment says otherwise; failures are not
/// persisted (the seed reproduces them).
pub fn config(seed: u64) -> Config {
    let from_env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse().ok());
    Config {
        cases: from_env("PROPTEST_CASES").map_or(100_000, |n: u64| n as u32),
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(from_env("PROPTEST_SEED").unwrap_or(seed)),
        ..Config::default()
    }
}
