//! Range maths for record-aligned reads: pure, no I/O.
//!
//! Ranges are half-open (`start..end`) everywhere inside; the inclusive HTTP form
//! `bytes=a-b` is made in exactly one place, [`RecordRange::http_header`].

use std::ops::Range;

/// Why a record range has no byte range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    /// The record length is zero.
    #[error("record length is 0")]
    ZeroRecordLength,
    /// The range holds no records.
    #[error("record range {first}+{count} is empty")]
    Empty {
        /// First record.
        first: u64,
        /// Record count.
        count: u64,
    },
    /// An offset does not fit in 64 bits.
    #[error("records {first}+{count} of {length} bytes do not fit in a 64-bit byte offset")]
    Overflow {
        /// First record.
        first: u64,
        /// Record count.
        count: u64,
        /// Record length.
        length: u64,
    },
}

/// Records `[first_record, first_record + record_count)` of `record_length` bytes each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RecordRange {
    /// Index of the first record (0-based).
    pub first_record: u64,
    /// How many records.
    pub record_count: u64,
    /// Bytes per record.
    pub record_length: u64,
}

impl RecordRange {
    /// The half-open byte range `first·L .. (first+count)·L`, with checked arithmetic.
    pub fn byte_range(&self) -> Result<Range<u64>, RangeError> {
        if self.record_length == 0 {
            return Err(RangeError::ZeroRecordLength);
        }
        if self.record_count == 0 {
            return Err(RangeError::Empty {
                first: self.first_record,
                count: self.record_count,
            });
        }
        let overflow = || RangeError::Overflow {
            first: self.first_record,
            count: self.record_count,
            length: self.record_length,
        };
        let start = self
            .first_record
            .checked_mul(self.record_length)
            .ok_or_else(overflow)?;
        let end = self
            .first_record
            .checked_add(self.record_count)
            .and_then(|e| e.checked_mul(self.record_length))
            .ok_or_else(overflow)?;
        Ok(start..end)
    }

    /// Bytes in the range (`count · L`, saturating; 0 when the range is invalid).
    pub fn byte_len(&self) -> u64 {
        self.byte_range().map_or(0, |r| r.end - r.start)
    }

    /// The HTTP header value `bytes=a-b` (inclusive end): the only place it is made.
    pub fn http_header(&self) -> Result<String, RangeError> {
        let r = self.byte_range()?;
        // byte_range never returns an empty range, so end - 1 >= start.
        Ok(format!("bytes={}-{}", r.start, r.end - 1))
    }
}

impl std::fmt::Display for RecordRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.byte_range() {
            Ok(r) => write!(
                f,
                "records {}+{} (bytes {}..{})",
                self.first_record, self.record_count, r.start, r.end
            ),
            Err(_) => write!(
                f,
                "records {}+{} of {} bytes",
                self.first_record, self.record_count, self.record_length
            ),
        }
    }
}

/// Splits an object of `object_size` bytes into jobs of at most `records_per_job`
/// whole records each, in order, covering every whole record exactly once. A trailing
/// partial record is left out (the planner refuses such objects before splitting);
/// a zero record length or job size gives no ranges.
pub fn split(object_size: u64, record_length: u64, records_per_job: u64) -> Vec<RecordRange> {
    if record_length == 0 || records_per_job == 0 {
        return Vec::new();
    }
    let records = object_size / record_length;
    let mut out = Vec::with_capacity(records.div_ceil(records_per_job).min(1 << 20) as usize);
    let mut first = 0u64;
    while first < records {
        let count = records_per_job.min(records - first);
        out.push(RecordRange {
            first_record: first,
            record_count: count,
            record_length,
        });
        first += count;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn header_is_inclusive() {
        let r = RecordRange {
            first_record: 2,
            record_count: 3,
            record_length: 80,
        };
        assert_eq!(r.byte_range().unwrap(), 160..400);
        assert_eq!(r.http_header().unwrap(), "bytes=160-399");
        assert_eq!(r.byte_len(), 240);
    }

    #[test]
    fn bad_ranges_are_errors() {
        let zero = RecordRange {
            first_record: 0,
            record_count: 1,
            record_length: 0,
        };
        assert_eq!(zero.byte_range(), Err(RangeError::ZeroRecordLength));
        let empty = RecordRange {
            first_record: 5,
            record_count: 0,
            record_length: 80,
        };
        assert!(matches!(empty.byte_range(), Err(RangeError::Empty { .. })));
        let huge = RecordRange {
            first_record: u64::MAX / 80,
            record_count: 2,
            record_length: 80,
        };
        assert!(matches!(
            huge.byte_range(),
            Err(RangeError::Overflow { .. })
        ));
        assert!(huge.http_header().is_err());
    }

    #[test]
    fn split_examples() {
        assert!(split(0, 80, 10).is_empty());
        assert!(split(800, 0, 10).is_empty());
        assert!(split(800, 80, 0).is_empty());
        let s = split(80 * 25 + 17, 80, 10);
        assert_eq!(
            s.iter()
                .map(|r| (r.first_record, r.record_count))
                .collect::<Vec<_>>(),
            vec![(0, 10), (10, 10), (20, 5)]
        );
    }

    proptest! {
        #[test]
        fn split_covers_every_record_once(
            size in 0u64..10_000_000,
            len in 1u64..200,
            per in 1u64..5_000,
        ) {
            let ranges = split(size, len, per);
            let mut next = 0u64;
            for r in &ranges {
                prop_assert_eq!(r.record_length, len);
                prop_assert_eq!(r.first_record, next, "no gap, no overlap");
                prop_assert!(r.record_count >= 1 && r.record_count <= per);
                let b = r.byte_range().unwrap();
                prop_assert_eq!(b.start, r.first_record * len);
                prop_assert!(b.end <= size, "inside the object");
                next += r.record_count;
            }
            prop_assert_eq!(next, size / len, "every whole record");
        }

        #[test]
        fn byte_ranges_never_overflow(first in any::<u64>(), count in any::<u64>(), len in any::<u64>()) {
            let r = RecordRange { first_record: first, record_count: count, record_length: len };
            // (first + count) < 2^65 and len < 2^64, so the exact end may not fit u128.
            let end = (u128::from(first) + u128::from(count)).checked_mul(u128::from(len));
            match r.byte_range() {
                Ok(b) => {
                    let end = end.unwrap();
                    prop_assert_eq!(u128::from(b.start), u128::from(first) * u128::from(len));
                    prop_assert_eq!(u128::from(b.end), end);
                    prop_assert!(b.start < b.end);
                    let h = r.http_header().unwrap();
                    prop_assert_eq!(h, format!("bytes={}-{}", b.start, b.end - 1));
                }
                Err(RangeError::Overflow { .. }) => {
                    prop_assert!(end.is_none_or(|e| e > u128::from(u64::MAX)));
                }
                Err(_) => prop_assert!(len == 0 || count == 0),
            }
        }
    }
}
