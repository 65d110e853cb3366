//! `taxi-stats`: sums and histograms over taxi trip records (docs/formats.md).
//!
//! [`TaxiStats::add_records`] is the hot loop of the whole agent. On x86-64 CPUs with
//! AVX2 (detected at run time, never assumed at build time) it checks all 80 bytes of
//! a record at once and sums the numeric fields column by column; elsewhere it falls
//! back to the scalar reference, [`record::parse`]. Both give identical results on
//! every input: see the tests at the bottom and docs/formats.md.

pub mod record;

use serde::{Deserialize, Serialize};

use record::RECORD_LENGTH;

/// The `taxi-stats` output: all integers, so merging is exact, associative and
/// commutative. Serialises to exactly the keys of docs/formats.md, in that order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaxiStats {
    /// Good records.
    pub records: u64,
    /// Bad records: counted, never in the sums.
    pub bad_records: u64,
    /// Sum of passenger counts.
    pub passengers: u64,
    /// Sum of trip distances in hundredths of a mile.
    pub distance_centimiles: u64,
    /// Sum of fares in cents.
    pub fare_cents: u64,
    /// Sum of tips in cents.
    pub tip_cents: u64,
    /// Sum of totals in cents.
    pub total_cents: u64,
    /// Good records by pickup hour, 0–23.
    pub trips_by_pickup_hour: [u64; 24],
    /// Good records by payment type; index 0 is unused.
    pub trips_by_payment_type: [u64; 7],
}

impl TaxiStats {
    /// Adds whole records from `buf`, with the fastest kernel this CPU supports.
    ///
    /// `buf` should hold a whole number of [`RECORD_LENGTH`]-byte records; a trailing
    /// partial record (fewer than 80 bytes left over) counts as one bad record.
    pub fn add_records(&mut self, buf: &[u8]) {
        #[cfg(target_arch = "x86_64")]
        if avx2::available() {
            let whole = buf.len() - buf.len() % RECORD_LENGTH;
            // SAFETY: both preconditions hold: the CPU supports AVX2 (checked at run
            // time just above), and `buf[..whole]` is a whole number of records
            // (`whole` is `buf.len()` rounded down to a multiple of RECORD_LENGTH).
            unsafe { avx2::add_whole_records(self, &buf[..whole]) };
            if whole != buf.len() {
                self.bad_records = self.bad_records.wrapping_add(1);
            }
            return;
        }
        self.add_records_reference(buf);
    }

    /// Adds records with the scalar reference parser, one record at a time; same
    /// results as [`TaxiStats::add_records`], only slower. For tests and benchmarks.
    pub fn add_records_reference(&mut self, buf: &[u8]) {
        // A trailing partial chunk is shorter than 80 bytes, so `parse` refuses it.
        for record in buf.chunks(RECORD_LENGTH) {
            match record::parse(record) {
                Some(trip) => self.add_trip(&trip),
                None => self.bad_records = self.bad_records.wrapping_add(1),
            }
        }
    }

    /// Adds one good record's fields.
    pub fn add_trip(&mut self, trip: &record::Trip) {
        self.records = self.records.wrapping_add(1);
        self.passengers = self.passengers.wrapping_add(trip.passengers.into());
        self.distance_centimiles = self
            .distance_centimiles
            .wrapping_add(trip.distance_centimiles.into());
        self.fare_cents = self.fare_cents.wrapping_add(trip.fare_cents.into());
        self.tip_cents = self.tip_cents.wrapping_add(trip.tip_cents.into());
        self.total_cents = self.total_cents.wrapping_add(trip.total_cents.into());
        let hour = &mut self.trips_by_pickup_hour[usize::from(trip.pickup_hour) % 24];
        *hour = hour.wrapping_add(1);
        let pay = &mut self.trips_by_payment_type[usize::from(trip.payment_type) % 7];
        *pay = pay.wrapping_add(1);
    }

    /// Adds `other` into `self`, field by field.
    pub fn merge(&mut self, other: &TaxiStats) {
        fn add(a: &mut u64, b: u64) {
            *a = a.wrapping_add(b);
        }
        add(&mut self.records, other.records);
        add(&mut self.bad_records, other.bad_records);
        add(&mut self.passengers, other.passengers);
        add(&mut self.distance_centimiles, other.distance_centimiles);
        add(&mut self.fare_cents, other.fare_cents);
        add(&mut self.tip_cents, other.tip_cents);
        add(&mut self.total_cents, other.total_cents);
        for (a, &b) in self
            .trips_by_pickup_hour
            .iter_mut()
            .zip(&other.trips_by_pickup_hour)
        {
            add(a, b);
        }
        for (a, &b) in self
            .trips_by_payment_type
            .iter_mut()
            .zip(&other.trips_by_payment_type)
        {
            add(a, b);
        }
    }
}

/// Which kernel [`TaxiStats::add_records`] uses on this CPU: `"avx2"` or `"scalar"`.
pub fn kernel_name() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    if avx2::available() {
        return "avx2";
    }
    "scalar"
}

/// The AVX2 kernel, public to the crate's tests so they can run it directly.
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2 {
    use std::arch::x86_64::*;
    use std::sync::OnceLock;

    use super::TaxiStats;
    use crate::process::taxi::record::{
        DISTANCE, FARE, PASSENGERS, PAYMENT_TYPE, PICKUP_HOUR, RECORD_LENGTH, SHAPE, TIP, TOTAL,
    };

    /// Whether the CPU has AVX2; detected once.
    pub(crate) fn available() -> bool {
        static AVX2: OnceLock<bool> = OnceLock::new();
        *AVX2.get_or_init(|| is_x86_feature_detected!("avx2"))
    }

    // Each record is read as three 32-byte vectors, at offsets 0, 32 and 48 (the last
    // two overlap by 16 bytes, which costs nothing and keeps every record in its own
    // three loads). For every byte, `byte - TEMPLATE` must be at most `LIMIT`
    // (unsigned): a digit position has template `0` and limit 9, the payment type
    // template `1` and limit 5, every other position its exact byte and limit 0.
    const SECOND: usize = 32;
    const THIRD: usize = 48;

    const TEMPLATE: [u8; RECORD_LENGTH] = {
        let mut t = [0u8; RECORD_LENGTH];
        let mut i = 0;
        while i < RECORD_LENGTH {
            t[i] = match SHAPE[i] {
                b'D' => b'0',
                b'P' => b'1',
                c => c,
            };
            i += 1;
        }
        t
    };

    const LIMIT: [u8; RECORD_LENGTH] = {
        let mut t = [0u8; RECORD_LENGTH];
        let mut i = 0;
        while i < RECORD_LENGTH {
            t[i] = match SHAPE[i] {
                b'D' => 9,
                b'P' => 5,
                _ => 0,
            };
            i += 1;
        }
        t
    };

    /// A summed field: its offset and the weight of each of its digit positions.
    struct Field {
        at: usize,
        weights: &'static [u64],
    }

    const AMOUNT: &[u64] = &[10_000, 1_000, 100, 0, 10, 1];
    /// passengers, distance, fare, tip, total, in that order.
    const FIELDS: [Field; 5] = [
        Field {
            at: PASSENGERS,
            weights: &[1],
        },
        Field {
            at: DISTANCE,
            weights: AMOUNT,
        },
        Field {
            at: FARE,
            weights: AMOUNT,
        },
        Field {
            at: TIP,
            weights: AMOUNT,
        },
        Field {
            at: TOTAL,
            weights: AMOUNT,
        },
    ];

    /// 0xff on the lanes of the vector at `base` whose digits are summed.
    const fn field_mask(base: usize) -> [u8; 32] {
        let mut m = [0u8; 32];
        let mut f = 0;
        while f < FIELDS.len() {
            let field = &FIELDS[f];
            let mut k = 0;
            while k < field.weights.len() {
                let pos = field.at + k;
                // Fields before 48 come from the second vector, the rest from the
                // third, so no position is counted twice.
                let from_third = pos >= THIRD;
                if field.weights[k] != 0 && (from_third == (base == THIRD)) {
                    m[pos - base] = 0xff;
                }
                k += 1;
            }
            f += 1;
        }
        m
    }

    const MASK_SECOND: [u8; 32] = field_mask(SECOND);
    const MASK_THIRD: [u8; 32] = field_mask(THIRD);

    /// Records per block: a lane of the u8 column sums takes at most 9 per record, and
    /// 28 × 9 = 252 fits in a byte.
    const BLOCK: usize = 28;

    /// Adds `buf`, which must hold whole records, to `stats`.
    ///
    /// # Safety
    ///
    /// The caller must make sure that:
    ///
    /// - the CPU supports AVX2 (see [`available`]): the function is compiled with
    ///   `target_feature(enable = "avx2")`, and running it on a CPU without AVX2 is
    ///   undefined behaviour;
    /// - `buf.len()` is a multiple of [`RECORD_LENGTH`] (whole records only): every
    ///   record is read with unchecked loads at offsets up to `RECORD_LENGTH - 1`, so a
    ///   trailing partial record would be read past the end of `buf`. This is only
    ///   checked by a `debug_assert!`.
    #[target_feature(enable = "avx2")]
    pub(crate) unsafe fn add_whole_records(stats: &mut TaxiStats, buf: &[u8]) {
        debug_assert_eq!(buf.len() % RECORD_LENGTH, 0);
        let ld = |a: &[u8]| -> __m256i {
            // Only ever called on the constant tables below, so this check is free.
            assert!(a.len() >= 32);
            // SAFETY: `a` has at least 32 readable bytes (asserted just above), and
            // `loadu` has no alignment requirement.
            unsafe { _mm256_loadu_si256(a.as_ptr().cast()) }
        };
        let t0 = ld(&TEMPLATE[..]);
        let t1 = ld(&TEMPLATE[SECOND..]);
        let t2 = ld(&TEMPLATE[THIRD..]);
        let l0 = ld(&LIMIT[..]);
        let l1 = ld(&LIMIT[SECOND..]);
        let l2 = ld(&LIMIT[THIRD..]);
        let m1 = ld(&MASK_SECOND[..]);
        let m2 = ld(&MASK_THIRD[..]);

        // Column sums of the summed digits, by record offset.
        let mut columns = [0u64; RECORD_LENGTH];
        let mut hours = [0u64; 24];
        let mut payments = [0u64; 8];
        let mut good = 0u64;
        let mut bad = 0u64;

        let mut rest = buf;
        while !rest.is_empty() {
            let (block, tail) = rest.split_at(rest.len().min(BLOCK * RECORD_LENGTH));
            rest = tail;
            let zero = _mm256_setzero_si256();
            let mut acc1 = _mm256_setzero_si256();
            let mut acc2 = _mm256_setzero_si256();
            let mut p = block.as_ptr();
            // SAFETY: `block.len()` bytes from its start is one past its end, which is
            // in bounds of the same allocation.
            let end = unsafe { p.add(block.len()) };
            while p < end {
                // SAFETY: `block` is a whole number of records (the caller's
                // precondition: `buf` is, and blocks are cut at multiples of
                // RECORD_LENGTH), and `p` is at the start of one of them (it starts at
                // the block's start and moves by RECORD_LENGTH while `p < end`), so
                // `p..p + RECORD_LENGTH` is readable. The three 32-byte loads end at
                // offsets 32, 64 and 80 = RECORD_LENGTH; PICKUP_HOUR + 1 and
                // PAYMENT_TYPE are below RECORD_LENGTH. `loadu` needs no alignment.
                let (b0, b1, b2, hour, pay) = unsafe {
                    (
                        _mm256_loadu_si256(p.cast()),
                        _mm256_loadu_si256(p.add(SECOND).cast()),
                        _mm256_loadu_si256(p.add(THIRD).cast()),
                        u32::from(*p.add(PICKUP_HOUR)) * 10 + u32::from(*p.add(PICKUP_HOUR + 1)),
                        *p.add(PAYMENT_TYPE),
                    )
                };
                let d0 = _mm256_sub_epi8(b0, t0);
                let d1 = _mm256_sub_epi8(b1, t1);
                let d2 = _mm256_sub_epi8(b2, t2);
                let over = _mm256_or_si256(
                    _mm256_or_si256(_mm256_subs_epu8(d0, l0), _mm256_subs_epu8(d1, l1)),
                    _mm256_subs_epu8(d2, l2),
                );
                // Wraps to a huge value unless both hour bytes are digits, which the
                // shape check requires anyway.
                let hour = hour.wrapping_sub(u32::from(b'0') * 11);
                // (`testz` would say the same, but LLVM lowers it to a slow reduction.)
                let fits = _mm256_movemask_epi8(_mm256_cmpeq_epi8(over, zero)) == -1;
                if fits && hour < 24 {
                    acc1 = _mm256_add_epi8(acc1, _mm256_and_si256(d1, m1));
                    acc2 = _mm256_add_epi8(acc2, _mm256_and_si256(d2, m2));
                    hours[hour as usize] += 1;
                    // '1'..='6' & 7 is 1..=6.
                    payments[usize::from(pay & 7)] += 1;
                    good += 1;
                } else {
                    bad += 1;
                }
                // SAFETY: `p` is at the start of a whole record of `block`, so `p` plus
                // one record is at most `end`, one past the block's end.
                p = unsafe { p.add(RECORD_LENGTH) };
            }
            let mut s1 = [0u8; 32];
            let mut s2 = [0u8; 32];
            // SAFETY: `s1` and `s2` are 32 writable bytes each, the size of one
            // vector; `storeu` needs no alignment.
            unsafe {
                _mm256_storeu_si256(s1.as_mut_ptr().cast(), acc1);
                _mm256_storeu_si256(s2.as_mut_ptr().cast(), acc2);
            }
            for field in &FIELDS {
                for (k, &w) in field.weights.iter().enumerate() {
                    let pos = field.at + k;
                    if w != 0 {
                        let lane = if pos >= THIRD {
                            s2[pos - THIRD]
                        } else {
                            s1[pos - SECOND]
                        };
                        columns[pos] += u64::from(lane);
                    }
                }
            }
        }

        let sum = |field: &Field| -> u64 {
            field
                .weights
                .iter()
                .enumerate()
                .map(|(k, &w)| w.wrapping_mul(columns[field.at + k]))
                .fold(0u64, u64::wrapping_add)
        };
        let [passengers, distance, fare, tip, total] = &FIELDS;
        let add = |a: &mut u64, b: u64| *a = a.wrapping_add(b);
        add(&mut stats.records, good);
        add(&mut stats.bad_records, bad);
        add(&mut stats.passengers, sum(passengers));
        add(&mut stats.distance_centimiles, sum(distance));
        add(&mut stats.fare_cents, sum(fare));
        add(&mut stats.tip_cents, sum(tip));
        add(&mut stats.total_cents, sum(total));
        for (a, &b) in stats.trips_by_pickup_hour.iter_mut().zip(&hours) {
            add(a, b);
        }
        for (a, &b) in stats.trips_by_payment_type.iter_mut().zip(&payments) {
            add(a, b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const EXAMPLE: &[u8; RECORD_LENGTH] =
        b"2016-01-01 00:12:22,2016-01-01 00:29:14,1,003.20,161,236,1,012.50,002.00,017.30\n";

    /// Runs every kernel this machine has on `buf` and checks they agree with the
    /// reference; returns the reference result.
    fn all_kernels(buf: &[u8]) -> TaxiStats {
        let mut reference = TaxiStats::default();
        reference.add_records_reference(buf);
        let mut fast = TaxiStats::default();
        fast.add_records(buf);
        assert_eq!(fast, reference, "add_records");
        #[cfg(target_arch = "x86_64")]
        if avx2::available() {
            let whole = buf.len() - buf.len() % RECORD_LENGTH;
            let mut direct = TaxiStats::default();
            // SAFETY: AVX2 is available (checked just above) and `buf[..whole]` is
            // whole records (`whole` is rounded down to a multiple of RECORD_LENGTH).
            unsafe { avx2::add_whole_records(&mut direct, &buf[..whole]) };
            direct.bad_records += u64::from(whole != buf.len());
            assert_eq!(direct, reference, "avx2");
        }
        reference
    }

    fn with(at: usize, byte: u8) -> [u8; RECORD_LENGTH] {
        let mut r = *EXAMPLE;
        r[at] = byte;
        r
    }

    fn good_after(r: &[u8]) -> bool {
        let s = all_kernels(r);
        assert_eq!(s.records + s.bad_records, 1);
        s.records == 1
    }

    #[test]
    fn example_record_sums() {
        let s = all_kernels(EXAMPLE);
        let mut hours = [0; 24];
        hours[0] = 1;
        assert_eq!(
            s,
            TaxiStats {
                records: 1,
                bad_records: 0,
                passengers: 1,
                distance_centimiles: 320,
                fare_cents: 1250,
                tip_cents: 200,
                total_cents: 1730,
                trips_by_pickup_hour: hours,
                trips_by_payment_type: [0, 1, 0, 0, 0, 0, 0],
            }
        );
    }

    #[test]
    fn json_has_the_contract_keys_in_order() {
        let json = serde_json::to_string(&TaxiStats::default()).unwrap();
        let zeros = |n| vec!["0"; n].join(",");
        assert_eq!(
            json,
            format!(
                "{{\"records\":0,\"bad_records\":0,\"passengers\":0,\"distance_centimiles\":0,\
                 \"fare_cents\":0,\"tip_cents\":0,\"total_cents\":0,\
                 \"trips_by_pickup_hour\":[{}],\"trips_by_payment_type\":[{}]}}",
                zeros(24),
                zeros(7)
            )
        );
        let back: TaxiStats = serde_json::from_str(&json).unwrap();
        assert_eq!(back, TaxiStats::default());
    }

    #[test]
    fn pickup_hour_23_is_good_and_24_bad() {
        let mut r = *EXAMPLE;
        r[11..13].copy_from_slice(b"23");
        assert!(good_after(&r));
        assert_eq!(all_kernels(&r).trips_by_pickup_hour[23], 1);
        for h in [b"24", b"29", b"30", b"99"] {
            r[11..13].copy_from_slice(h);
            assert!(!good_after(&r));
        }
        // The dropoff hour is only checked for digits.
        let mut r = *EXAMPLE;
        r[31..33].copy_from_slice(b"99");
        assert!(good_after(&r));
    }

    #[test]
    fn payment_types_0_and_7_to_9_are_bad() {
        for c in b'0'..=b'9' {
            assert_eq!(good_after(&with(57, c)), (b'1'..=b'6').contains(&c));
        }
        let s = all_kernels(&with(57, b'6'));
        assert_eq!(s.trips_by_payment_type, [0, 0, 0, 0, 0, 0, 1]);
    }

    #[test]
    fn misplaced_point_separator_or_newline_is_bad() {
        let mut r = *EXAMPLE;
        r.swap(45, 44); // "0032.0"
        assert!(!good_after(&r));
        assert!(!good_after(&with(79, b'\r')));
        assert!(!good_after(&with(19, b';')));
        assert!(!good_after(&with(10, b'T')));
        assert!(!good_after(&with(40, b'a')));
    }

    /// Every byte value at every offset of the example, one record each, then all of
    /// them in one buffer: 20,480 single-byte mutations, exhaustively.
    #[test]
    fn every_single_byte_mutation_agrees_with_the_reference() {
        let mut all = Vec::with_capacity(RECORD_LENGTH * RECORD_LENGTH * 256);
        for at in 0..RECORD_LENGTH {
            for byte in 0..=255u8 {
                let r = with(at, byte);
                all_kernels(&r);
                all.extend_from_slice(&r);
            }
        }
        all_kernels(&all);
    }

    #[test]
    fn largest_values_do_not_overflow_the_column_sums() {
        let r =
            b"2016-02-29 23:59:59,2016-03-01 00:10:00,9,999.99,999,999,6,999.99,999.99,999.99\n";
        let n = 1000;
        let buf = r.repeat(n);
        let s = all_kernels(&buf);
        let n = n as u64;
        assert_eq!(s.records, n);
        assert_eq!(s.passengers, 9 * n);
        assert_eq!(s.distance_centimiles, 99_999 * n);
        assert_eq!(s.fare_cents, 99_999 * n);
        assert_eq!(s.tip_cents, 99_999 * n);
        assert_eq!(s.total_cents, 99_999 * n);
        assert_eq!(s.trips_by_pickup_hour[23], n);
    }

    #[test]
    fn trailing_partial_record_is_one_bad_record() {
        let mut buf = EXAMPLE.repeat(3);
        buf.extend_from_slice(&EXAMPLE[..79]);
        let s = all_kernels(&buf);
        assert_eq!((s.records, s.bad_records), (3, 1));
        let s = all_kernels(&EXAMPLE[..1]);
        assert_eq!((s.records, s.bad_records), (0, 1));
        assert_eq!(all_kernels(&[]), TaxiStats::default());
    }

    #[test]
    fn merge_adds_everything() {
        let mut a = all_kernels(&EXAMPLE.repeat(2));
        let b = all_kernels(&with(57, b'6'));
        a.merge(&b);
        let mut buf = EXAMPLE.repeat(2);
        buf.extend_from_slice(&with(57, b'6'));
        assert_eq!(a, all_kernels(&buf));
    }

    /// A record that satisfies the predicate, with arbitrary digits; `hour_any` lets
    /// the pickup hour run 00–99 so the 23/24 boundary is crossed often.
    fn good_record(digits: &[u8; RECORD_LENGTH], hour: u8, hour_any: bool) -> [u8; RECORD_LENGTH] {
        let mut r = [0u8; RECORD_LENGTH];
        for (i, &s) in record::SHAPE.iter().enumerate() {
            r[i] = match s {
                b'D' => b'0' + digits[i] % 10,
                b'P' => b'1' + digits[i] % 6,
                c => c,
            };
        }
        let hour = if hour_any { hour % 100 } else { hour % 24 };
        r[11] = b'0' + hour / 10;
        r[12] = b'0' + hour % 10;
        r
    }

    /// Bytes worth trying: the neighbours of every class boundary, plus anything.
    fn interesting_byte() -> impl Strategy<Value = u8> {
        prop_oneof![
            prop::sample::select(vec![
                b'/', b'0', b'1', b'2', b'3', b'4', b'5', b'6', b'7', b'8', b'9', b':', b',', b'.',
                b'-', b' ', b'\n', b'\r', b'+', b';', 0, 0x7f, 0x80, 0xb0, 0xff,
            ]),
            any::<u8>(),
        ]
    }

    #[derive(Debug, Clone)]
    enum Kind {
        Good,
        Mutated(Vec<(usize, u8)>),
        Random([u8; RECORD_LENGTH]),
    }

    fn record() -> impl Strategy<Value = [u8; RECORD_LENGTH]> {
        let kind = prop_oneof![
            3 => Just(Kind::Good),
            6 => prop::collection::vec((0..RECORD_LENGTH, interesting_byte()), 1..4)
                .prop_map(Kind::Mutated),
            1 => prop::array::uniform32(any::<u8>()).prop_map(|a| {
                let mut r = [0u8; RECORD_LENGTH];
                for (i, b) in r.iter_mut().enumerate() {
                    *b = a[i % 32].rotate_left(i as u32 / 32);
                }
                Kind::Random(r)
            }),
        ];
        (
            prop::array::uniform32(any::<u8>()),
            prop::array::uniform32(any::<u8>()),
            any::<u8>(),
            any::<bool>(),
            kind,
        )
            .prop_map(|(a, b, hour, hour_any, kind)| {
                let mut digits = [0u8; RECORD_LENGTH];
                for (i, d) in digits.iter_mut().enumerate() {
                    *d = if i < 40 { a[i % 32] } else { b[(i - 40) % 32] };
                }
                let mut r = good_record(&digits, hour, hour_any);
                match kind {
                    Kind::Good => {}
                    Kind::Mutated(changes) => {
                        for (at, byte) in changes {
                            r[at] = byte;
                        }
                    }
                    Kind::Random(random) => r = random,
                }
                r
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Buffers of up to 100 records, most of them good or nearly good, plus an
        /// optional partial tail: about 100,000 records over the run.
        #[test]
        fn fast_path_equals_reference(
            recs in prop::collection::vec(record(), 0..100),
            tail in prop::collection::vec(any::<u8>(), 0..3),
        ) {
            let mut buf: Vec<u8> = recs.concat();
            if !tail.is_empty() {
                buf.extend_from_slice(&tail);
            }
            all_kernels(&buf);
        }

        /// Splitting anywhere on a record boundary and merging changes nothing.
        #[test]
        fn split_and_merge_is_the_same(
            recs in prop::collection::vec(record(), 0..60),
            cut in any::<prop::sample::Index>(),
        ) {
            let buf: Vec<u8> = recs.concat();
            let at = cut.index(recs.len() + 1) * RECORD_LENGTH;
            let mut a = all_kernels(&buf[..at]);
            a.merge(&all_kernels(&buf[at..]));
            prop_assert_eq!(a, all_kernels(&buf));
        }
    }
}
