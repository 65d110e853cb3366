//! Record alignment across chunk boundaries: the sink only ever sees whole records.

/// Carries a partial record from one chunk to the next, so that whatever sizes the
/// chunks come in, the sink is called with whole records only. Holds at most one record.
#[derive(Debug)]
pub(crate) struct RecordCarry {
    record_length: usize,
    partial: Vec<u8>,
}

impl RecordCarry {
    /// A carry for records of `record_length` (> 0) bytes.
    pub(crate) fn new(record_length: usize) -> RecordCarry {
        RecordCarry {
            record_length,
            partial: Vec::with_capacity(record_length),
        }
    }

    /// Feeds one chunk; calls `sink` with whole records (never an empty slice).
    pub(crate) fn push(&mut self, mut chunk: &[u8], sink: &mut (dyn FnMut(&[u8]) + Send)) {
        let len = self.record_length;
        if !self.partial.is_empty() {
            let need = len - self.partial.len();
            if chunk.len() < need {
                self.partial.extend_from_slice(chunk);
                return;
            }
            self.partial.extend_from_slice(&chunk[..need]);
            sink(&self.partial);
            self.partial.clear();
            chunk = &chunk[need..];
        }
        let whole = chunk.len() - chunk.len() % len;
        if whole > 0 {
            sink(&chunk[..whole]);
        }
        self.partial.extend_from_slice(&chunk[whole..]);
    }

    /// Bytes of a partial record still held (0 at the end of a whole range).
    pub(crate) fn pending(&self) -> usize {
        self.partial.len()
    }
}

/// Feeds `chunk` to `carry`, cut into pieces of at most `piece` bytes when set (tests
/// use this to force chunk boundaries everywhere).
pub(crate) fn push_rechunked(
    carry: &mut RecordCarry,
    chunk: &[u8],
    piece: Option<usize>,
    sink: &mut (dyn FnMut(&[u8]) + Send),
) {
    match piece {
        Some(n) if n > 0 => chunk.chunks(n).for_each(|c| carry.push(c, sink)),
        _ => carry.push(chunk, sink),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_chunking_gives_the_same_records(
            records in 0usize..60,
            len in 1usize..100,
            cuts in proptest::collection::vec(1usize..300, 1..20),
        ) {
            let data: Vec<u8> = (0..records * len).map(|i| (i % 251) as u8).collect();
            let mut carry = RecordCarry::new(len);
            let mut out = Vec::new();
            let mut calls_ok = true;
            let mut sink = |b: &[u8]| {
                calls_ok &= !b.is_empty() && b.len() % len == 0;
                out.extend_from_slice(b);
            };
            let mut rest = &data[..];
            let mut i = 0;
            while !rest.is_empty() {
                let n = cuts[i % cuts.len()].min(rest.len());
                carry.push(&rest[..n], &mut sink);
                rest = &rest[n..];
                i += 1;
            }
            prop_assert!(calls_ok, "the sink saw only whole records");
            prop_assert_eq!(carry.pending(), 0);
            prop_assert_eq!(out, data);
        }
    }
}
