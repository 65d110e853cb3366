//! Exit codes of the `rangefleet` binary (docs/cli.md).

/// Success.
pub const OK: i32 = 0;
/// Failure at run time.
pub const FAILURE: i32 = 1;
/// Bad usage, or invalid config, user-data or input.
pub const USAGE: i32 = 2;
/// `reduce`: coverage incomplete.
pub const INCOMPLETE: i32 = 3;
/// Boot deadline passed (IMDS or the queue unreachable); systemd restarts the unit.
pub const TEMPFAIL: i32 = 75;
