//! The contract every side shares: job messages, the record ranges they name, the
//! allow-list they are checked against, and the documents written to the results
//! store (docs/formats.md). Pure: no I/O.

pub mod allow;
pub mod job;
pub mod manifest;
pub mod range;
pub mod result;
pub mod summary;
