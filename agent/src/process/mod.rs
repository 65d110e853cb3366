//! Processors: pure functions from whole records to a JSON output (DESIGN 5.1).
