//! `count`: records, bytes and an order-free checksum (docs/formats.md).

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64;

/// The `count` output. The checksum is the wrapping sum of the xxh3-64 hashes of the
/// records, so it does not depend on how records are split into jobs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CountStats {
    /// Records seen, including a trailing partial one.
    pub records: u64,
    /// Bytes seen.
    pub bytes: u64,
    /// Wrapping sum of xxh3-64 of each record.
    pub checksum: u64,
}

impl CountStats {
    /// Adds the records of `buf`, cut every `record_length` bytes.
    ///
    /// A trailing partial record (fewer than `record_length` bytes) counts as one
    /// record and is hashed as it is. A `record_length` of 0 means the whole buffer
    /// is one record.
    pub fn add_records(&mut self, buf: &[u8], record_length: usize) {
        if buf.is_empty() {
            return;
        }
        let chunk = if record_length == 0 {
            buf.len()
        } else {
            record_length
        };
        let mut records = 0u64;
        let mut checksum = 0u64;
        for record in buf.chunks(chunk) {
            records += 1;
            checksum = checksum.wrapping_add(xxh3_64(record));
        }
        self.records = self.records.wrapping_add(records);
        self.bytes = self.bytes.wrapping_add(buf.len() as u64);
        self.checksum = self.checksum.wrapping_add(checksum);
    }

    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &CountStats) {
        self.records = self.records.wrapping_add(other.records);
        self.bytes = self.bytes.wrapping_add(other.bytes);
        self.checksum = self.checksum.wrapping_add(other.checksum);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn counts_records_bytes_and_hashes() {
        let buf = b"aaaabbbbcc";
        let mut s = CountStats::default();
        s.add_records(buf, 4);
        let sum = xxh3_64(b"aaaa")
            .wrapping_add(xxh3_64(b"bbbb"))
            .wrapping_add(xxh3_64(b"cc"));
        assert_eq!(
            s,
            CountStats {
                records: 3,
                bytes: 10,
                checksum: sum
            }
        );
    }

    #[test]
    fn empty_buffer_and_zero_length_records() {
        let mut s = CountStats::default();
        s.add_records(b"", 80);
        s.add_records(b"", 0);
        assert_eq!(s, CountStats::default());
        s.add_records(b"abc", 0);
        assert_eq!(
            s,
            CountStats {
                records: 1,
                bytes: 3,
                checksum: xxh3_64(b"abc")
            }
        );
    }

    #[test]
    fn json_keys() {
        let json = serde_json::to_string(&CountStats {
            records: 1,
            bytes: 2,
            checksum: 3,
        })
        .unwrap();
        assert_eq!(json, r#"{"records":1,"bytes":2,"checksum":3}"#);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Any cut on a record boundary, in either merge order, gives the same result.
        #[test]
        fn split_at_record_boundary_and_merge(
            data in prop::collection::vec(any::<u8>(), 0..2000),
            record_length in 1usize..100,
            cut in any::<prop::sample::Index>(),
        ) {
            let mut whole = CountStats::default();
            whole.add_records(&data, record_length);
            let at = (cut.index(data.len() / record_length + 1) * record_length).min(data.len());
            let (a, b) = data.split_at(at);
            let mut left = CountStats::default();
            left.add_records(a, record_length);
            let mut right = CountStats::default();
            right.add_records(b, record_length);
            let mut ab = left.clone();
            ab.merge(&right);
            right.merge(&left);
            prop_assert_eq!(&ab, &whole);
            prop_assert_eq!(&right, &whole);
        }
    }
}
