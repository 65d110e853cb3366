//! Taxi trip records, version 1 (DESIGN 5.1): 80 bytes, ASCII, one CSV line.
//! (Owned by the records/processors work: parsing, validation, fast paths.)

/// Length of one record in bytes.
pub const RECORD_LENGTH: usize = 80;
