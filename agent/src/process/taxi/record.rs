//! Taxi trip records, version 1 (docs/formats.md): 80 bytes, ASCII, one CSV line.
//!
//! [`parse`] is the scalar reference implementation of the record predicate: it is
//! written field by field, straight from the table in docs/formats.md, and every faster
//! path (see `process::taxi`) is tested against it. [`SHAPE`] is the same layout as
//! data, for code that checks all positions at once.

/// Length of one record in bytes.
pub const RECORD_LENGTH: usize = 80;

/// The layout of a record, one byte per position: `D` is a digit, `P` the payment
/// type (`1`–`6`), anything else must match exactly. The pickup hour (offsets 11–12)
/// is two `D`s here; its 00–23 range is checked on top.
pub const SHAPE: &[u8; RECORD_LENGTH] =
    b"DDDD-DD-DD DD:DD:DD,DDDD-DD-DD DD:DD:DD,D,DDD.DD,DDD,DDD,P,DDD.DD,DDD.DD,DDD.DD\n";

/// Offsets of the nine `,` separators.
pub const SEPARATORS: [usize; 9] = [19, 39, 41, 48, 52, 56, 58, 65, 72];

/// Offset of the pickup time.
pub const PICKUP_TIME: usize = 0;
/// Offset of the dropoff time.
pub const DROPOFF_TIME: usize = 20;
/// Offset of the pickup hour (two digits).
pub const PICKUP_HOUR: usize = 11;
/// Offset of the passenger count (one digit).
pub const PASSENGERS: usize = 40;
/// Offset of the trip distance (`DDD.DD` miles).
pub const DISTANCE: usize = 42;
/// Offset of the pickup location id (`DDD`).
pub const PICKUP_LOCATION: usize = 49;
/// Offset of the dropoff location id (`DDD`).
pub const DROPOFF_LOCATION: usize = 53;
/// Offset of the payment type (one digit, `1`–`6`).
pub const PAYMENT_TYPE: usize = 57;
/// Offset of the fare (`DDD.DD` dollars).
pub const FARE: usize = 59;
/// Offset of the tip (`DDD.DD` dollars).
pub const TIP: usize = 66;
/// Offset of the total (`DDD.DD` dollars).
pub const TOTAL: usize = 73;

/// The fields of one good record that `taxi-stats` and the generator use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Trip {
    /// Passenger count, 0–9.
    pub passengers: u8,
    /// Trip distance in hundredths of a mile, 0–99,999.
    pub distance_centimiles: u32,
    /// Pickup location id, 0–999.
    pub pickup_location: u16,
    /// Dropoff location id, 0–999.
    pub dropoff_location: u16,
    /// Payment type, 1–6.
    pub payment_type: u8,
    /// Fare in cents, 0–99,999.
    pub fare_cents: u32,
    /// Tip in cents, 0–99,999.
    pub tip_cents: u32,
    /// Total in cents, 0–99,999.
    pub total_cents: u32,
    /// Hour of the pickup time, 0–23.
    pub pickup_hour: u8,
}

/// Parses one record with exactly the docs/formats.md predicate; `None` for any bad
/// record, including one that is not exactly [`RECORD_LENGTH`] bytes long.
///
/// Nothing beyond the predicate is checked: month 13, minute 99 or a dropoff hour of
/// 99 are still good; a pickup hour of 24 is bad.
pub fn parse(record: &[u8]) -> Option<Trip> {
    let r: &[u8; RECORD_LENGTH] = record.try_into().ok()?;
    if r[79] != b'\n' {
        return None;
    }
    if SEPARATORS.iter().any(|&i| r[i] != b',') {
        return None;
    }
    timestamp(r, PICKUP_TIME)?;
    timestamp(r, DROPOFF_TIME)?;
    let pickup_hour = digits(r, PICKUP_HOUR, 2)?;
    if pickup_hour > 23 {
        return None;
    }
    let payment_type = digits(r, PAYMENT_TYPE, 1)?;
    if !(1..=6).contains(&payment_type) {
        return None;
    }
    Some(Trip {
        passengers: digits(r, PASSENGERS, 1)? as u8,
        distance_centimiles: amount(r, DISTANCE)?,
        pickup_location: digits(r, PICKUP_LOCATION, 3)? as u16,
        dropoff_location: digits(r, DROPOFF_LOCATION, 3)? as u16,
        payment_type: payment_type as u8,
        fare_cents: amount(r, FARE)?,
        tip_cents: amount(r, TIP)?,
        total_cents: amount(r, TOTAL)?,
        pickup_hour: pickup_hour as u8,
    })
}

/// Checks `YYYY-MM-DD HH:MM:SS` at `start`: digits and punctuation only, no ranges.
fn timestamp(r: &[u8; RECORD_LENGTH], start: usize) -> Option<()> {
    let punctuation = [(4, b'-'), (7, b'-'), (10, b' '), (13, b':'), (16, b':')];
    if punctuation.iter().any(|&(at, c)| r[start + at] != c) {
        return None;
    }
    for (at, n) in [(0, 4), (5, 2), (8, 2), (11, 2), (14, 2), (17, 2)] {
        digits(r, start + at, n)?;
    }
    Some(())
}

/// The decimal value of `n` digits at `start`, or `None` if any is not `0`–`9`.
fn digits(r: &[u8; RECORD_LENGTH], start: usize, n: usize) -> Option<u32> {
    r[start..start + n].iter().try_fold(0u32, |v, &c| {
        c.is_ascii_digit().then(|| v * 10 + u32::from(c - b'0'))
    })
}

/// `DDD.DD` at `start` in hundredths.
fn amount(r: &[u8; RECORD_LENGTH], start: usize) -> Option<u32> {
    if r[start + 3] != b'.' {
        return None;
    }
    Some(digits(r, start, 3)? * 100 + digits(r, start + 4, 2)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &[u8; RECORD_LENGTH] =
        b"2016-01-01 00:12:22,2016-01-01 00:29:14,1,003.20,161,236,1,012.50,002.00,017.30\n";

    fn with(at: usize, byte: u8) -> [u8; RECORD_LENGTH] {
        let mut r = *EXAMPLE;
        r[at] = byte;
        r
    }

    #[test]
    fn example_parses_to_its_fields() {
        assert_eq!(
            parse(EXAMPLE),
            Some(Trip {
                passengers: 1,
                distance_centimiles: 320,
                pickup_location: 161,
                dropoff_location: 236,
                payment_type: 1,
                fare_cents: 1250,
                tip_cents: 200,
                total_cents: 1730,
                pickup_hour: 0,
            })
        );
    }

    #[test]
    fn shape_matches_the_example_and_the_offsets() {
        for (i, (&s, &e)) in SHAPE.iter().zip(EXAMPLE.iter()).enumerate() {
            match s {
                b'D' | b'P' => assert!(e.is_ascii_digit(), "offset {i}"),
                _ => assert_eq!(s, e, "offset {i}"),
            }
        }
        for i in SEPARATORS {
            assert_eq!(SHAPE[i], b',');
        }
        assert_eq!(SHAPE.iter().filter(|&&c| c == b',').count(), 9);
        assert_eq!(SHAPE[PAYMENT_TYPE], b'P');
        for at in [DISTANCE, FARE, TIP, TOTAL] {
            assert_eq!(&SHAPE[at..at + 6], b"DDD.DD");
        }
    }

    #[test]
    fn wrong_length_is_bad() {
        assert_eq!(parse(&EXAMPLE[..79]), None);
        assert_eq!(parse(&[]), None);
        let mut long = EXAMPLE.to_vec();
        long.push(b'\n');
        assert_eq!(parse(&long), None);
    }

    #[test]
    fn last_byte_must_be_newline() {
        assert_eq!(parse(&with(79, b'\r')), None);
        assert_eq!(parse(&with(79, b',')), None);
    }

    #[test]
    fn every_separator_must_be_a_comma() {
        for i in SEPARATORS {
            assert_eq!(parse(&with(i, b';')), None, "offset {i}");
            assert_eq!(parse(&with(i, b'0')), None, "offset {i}");
        }
    }

    #[test]
    fn time_punctuation_is_exact() {
        for t in [PICKUP_TIME, DROPOFF_TIME] {
            assert_eq!(parse(&with(t + 4, b'/')), None);
            assert_eq!(parse(&with(t + 7, b'/')), None);
            assert_eq!(parse(&with(t + 10, b'T')), None);
            assert_eq!(parse(&with(t + 13, b'.')), None);
            assert_eq!(parse(&with(t + 16, b'.')), None);
        }
    }

    #[test]
    fn every_digit_position_rejects_non_digits() {
        for (i, &s) in SHAPE.iter().enumerate() {
            if s == b'D' || s == b'P' {
                for bad in [b'/', b':', b'a', b' ', 0, 0xff] {
                    assert_eq!(parse(&with(i, bad)), None, "offset {i} byte {bad}");
                }
            }
        }
    }

    #[test]
    fn pickup_hour_is_00_to_23() {
        let mut r = *EXAMPLE;
        r[11..13].copy_from_slice(b"23");
        assert_eq!(parse(&r).map(|t| t.pickup_hour), Some(23));
        r[11..13].copy_from_slice(b"24");
        assert_eq!(parse(&r), None);
        r[11..13].copy_from_slice(b"30");
        assert_eq!(parse(&r), None);
        r[11..13].copy_from_slice(b"19");
        assert_eq!(parse(&r).map(|t| t.pickup_hour), Some(19));
    }

    #[test]
    fn nothing_else_is_range_checked() {
        let mut r = *EXAMPLE;
        r[5..7].copy_from_slice(b"13"); // month 13
        r[14..16].copy_from_slice(b"99"); // minute 99
        r[17..19].copy_from_slice(b"99"); // second 99
        r[31..33].copy_from_slice(b"99"); // dropoff hour 99
        r[PICKUP_LOCATION..PICKUP_LOCATION + 3].copy_from_slice(b"999");
        r[PASSENGERS] = b'0';
        assert!(parse(&r).is_some());
    }

    #[test]
    fn payment_type_is_1_to_6() {
        for c in b'0'..=b'9' {
            let ok = parse(&with(PAYMENT_TYPE, c)).is_some();
            assert_eq!(ok, (b'1'..=b'6').contains(&c), "payment {}", c as char);
        }
    }

    #[test]
    fn decimal_point_must_be_in_place() {
        for at in [DISTANCE, FARE, TIP, TOTAL] {
            assert_eq!(parse(&with(at + 3, b'0')), None);
            let mut r = *EXAMPLE;
            r.swap(at + 2, at + 3);
            assert_eq!(parse(&r), None, "field at {at}");
        }
    }

    #[test]
    fn amounts_are_hundredths() {
        let r =
            b"2016-02-29 23:59:59,2016-03-01 00:10:00,6,999.99,001,265,6,123.45,000.01,999.99\n";
        let t = parse(r).unwrap();
        assert_eq!(t.distance_centimiles, 99_999);
        assert_eq!(t.fare_cents, 12_345);
        assert_eq!(t.tip_cents, 1);
        assert_eq!(t.total_cents, 99_999);
        assert_eq!(t.pickup_hour, 23);
        assert_eq!(t.passengers, 6);
        assert_eq!(t.payment_type, 6);
    }
}
