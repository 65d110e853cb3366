//! Processors: pure functions from whole records to a JSON output (DESIGN 5.1).

pub mod count;
pub mod taxi;
