//! `rangefleet gen`: deterministic Hive-layout test data with known totals.
//!
//! `generate` writes `DIR/color=<c>/date=<d>/part-0000.rec` for every colour × day,
//! and `DIR/_expected.json`: the `taxi-stats` of every partition and the total,
//! accumulated from the values as they were generated (never by reading the bytes
//! back), so a scan of the files can be checked against it. The same options and
//! seed give byte-identical files on every machine: the generator is a SplitMix64
//! defined here, seeded per partition from the seed and the partition's name.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64;

use crate::process::taxi::record::{self, Trip, RECORD_LENGTH};
use crate::process::taxi::TaxiStats;

/// Longest day range `parse_days` accepts (ten years and a bit).
pub const MAX_DAYS: usize = 3660;

/// Name of the expected-totals file written next to the partitions.
pub const EXPECTED_FILE: &str = "_expected.json";

/// Name of the one data file in each partition.
pub const PART_FILE: &str = "part-0000.rec";

/// What to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenOptions {
    /// Output directory; created if missing.
    pub out: PathBuf,
    /// Colours, one `color=` partition each.
    pub colors: Vec<String>,
    /// Days as `YYYY-MM-DD`, already expanded (see [`parse_days`]).
    pub days: Vec<String>,
    /// Records per partition.
    pub records: u64,
    /// Seed; the same seed gives the same bytes.
    pub seed: u64,
    /// Make records K, 2K, 3K, … (1-based) of each partition bad.
    pub bad_every: Option<u64>,
}

/// The `taxi-stats` the generated data must produce, as in `_expected.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Expected {
    /// By partition name, e.g. `color=yellow/date=2016-01-01`.
    pub partitions: BTreeMap<String, TaxiStats>,
    /// All partitions merged.
    pub total: TaxiStats,
}

/// What `generate` wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenSummary {
    /// Data files written.
    pub files: u64,
    /// Records written, good and bad.
    pub records: u64,
    /// Bytes of data written (not counting `_expected.json`).
    pub bytes: u64,
    /// The expected `taxi-stats`, also written to `_expected.json`.
    pub expected: Expected,
}

/// Why `gen` could not run.
#[derive(Debug, thiserror::Error)]
pub enum GenError {
    /// A day is not a real `YYYY-MM-DD` date.
    #[error("invalid day {spec:?}: {reason}")]
    BadDay {
        /// The text given.
        spec: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A day range ends before it starts.
    #[error("day range {0:?} ends before it starts")]
    ReversedRange(String),
    /// A day range is longer than [`MAX_DAYS`].
    #[error("day range {0:?} is longer than {MAX_DAYS} days")]
    TooManyDays(String),
    /// A colour cannot be a partition value.
    #[error("invalid colour {0:?}: use letters, digits, '-' and '_'")]
    BadColor(String),
    /// The same partition was asked for twice.
    #[error("partition {0} is listed twice")]
    Duplicate(String),
    /// No colours or no days.
    #[error("nothing to generate: no {0} given")]
    Empty(&'static str),
    /// `--bad-every 0`.
    #[error("--bad-every must be at least 1")]
    BadEvery,
    /// Writing failed.
    #[error("failed to write {}: {source}", path.display())]
    Io {
        /// The file or directory being written.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
}

/// A calendar date. Field order makes the derived `Ord` chronological.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Date {
    year: u16,
    month: u8,
    day: u8,
}

fn is_leap(year: u16) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: u16, month: u8) -> u8 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

impl Date {
    fn parse(spec: &str) -> Result<Date, GenError> {
        let bad = |reason| GenError::BadDay {
            spec: spec.to_owned(),
            reason,
        };
        let b = spec.as_bytes();
        let shape_ok = b.len() == 10
            && b[4] == b'-'
            && b[7] == b'-'
            && b.iter()
                .enumerate()
                .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
        if !shape_ok {
            return Err(bad("expected YYYY-MM-DD"));
        }
        let num = |r: std::ops::Range<usize>| spec[r].parse::<u16>().unwrap_or(0);
        let (year, month, day) = (num(0..4), num(5..7), num(8..10));
        // 9999-12-31 would need a dropoff time in year 10000.
        if year > 9998 {
            return Err(bad("year must be 0000-9998"));
        }
        if !(1..=12).contains(&month) {
            return Err(bad("month must be 01-12"));
        }
        let (month, day) = (month as u8, day as u8);
        if day == 0 || day > days_in_month(year, month) {
            return Err(bad("no such day in that month"));
        }
        Ok(Date { year, month, day })
    }

    fn next(self) -> Date {
        if self.day < days_in_month(self.year, self.month) {
            Date {
                day: self.day + 1,
                ..self
            }
        } else if self.month < 12 {
            Date {
                month: self.month + 1,
                day: 1,
                ..self
            }
        } else {
            Date {
                year: self.year + 1,
                month: 1,
                day: 1,
            }
        }
    }

    fn iso(self) -> String {
        format!("{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

/// Expands a day spec: `YYYY-MM-DD`, or `A..B` for every day from A to B inclusive.
/// Dates must be real (leap years included); a range may span at most [`MAX_DAYS`].
pub fn parse_days(spec: &str) -> Result<Vec<String>, GenError> {
    let spec = spec.trim();
    let Some((a, b)) = spec.split_once("..") else {
        return Ok(vec![Date::parse(spec)?.iso()]);
    };
    let (first, last) = (Date::parse(a.trim())?, Date::parse(b.trim())?);
    if last < first {
        return Err(GenError::ReversedRange(spec.to_owned()));
    }
    let mut days = Vec::new();
    let mut d = first;
    loop {
        if days.len() == MAX_DAYS {
            return Err(GenError::TooManyDays(spec.to_owned()));
        }
        days.push(d.iso());
        if d == last {
            return Ok(days);
        }
        d = d.next();
    }
}

/// A date and time of day, as written in a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateTime {
    /// Year, 0–9999.
    pub year: u16,
    /// Month, 1–12.
    pub month: u8,
    /// Day of the month.
    pub day: u8,
    /// Hour, 0–23.
    pub hour: u8,
    /// Minute.
    pub minute: u8,
    /// Second.
    pub second: u8,
}

impl DateTime {
    fn at(date: Date, seconds: u32) -> DateTime {
        DateTime {
            year: date.year,
            month: date.month,
            day: date.day,
            hour: (seconds / 3600) as u8,
            minute: (seconds / 60 % 60) as u8,
            second: (seconds % 60) as u8,
        }
    }
}

/// Writes `value` as `width` decimal digits at `at` (keeping the low digits).
fn put(out: &mut [u8; RECORD_LENGTH], at: usize, mut value: u32, width: usize) {
    for i in (at..at + width).rev() {
        out[i] = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

fn put_time(out: &mut [u8; RECORD_LENGTH], at: usize, t: &DateTime) {
    put(out, at, t.year.into(), 4);
    out[at + 4] = b'-';
    put(out, at + 5, t.month.into(), 2);
    out[at + 7] = b'-';
    put(out, at + 8, t.day.into(), 2);
    out[at + 10] = b' ';
    put(out, at + 11, t.hour.into(), 2);
    out[at + 13] = b':';
    put(out, at + 14, t.minute.into(), 2);
    out[at + 16] = b':';
    put(out, at + 17, t.second.into(), 2);
}

fn put_amount(out: &mut [u8; RECORD_LENGTH], at: usize, hundredths: u32) {
    put(out, at, hundredths / 100, 3);
    out[at + 3] = b'.';
    put(out, at + 4, hundredths % 100, 2);
}

/// Formats one record (docs/formats.md). The pickup hour written is `pickup.hour`
/// (`trip.pickup_hour` should match it); numbers too wide for their field keep
/// their low digits.
pub fn format_record(
    pickup: &DateTime,
    dropoff: &DateTime,
    trip: &Trip,
    out: &mut [u8; RECORD_LENGTH],
) {
    put_time(out, record::PICKUP_TIME, pickup);
    put_time(out, record::DROPOFF_TIME, dropoff);
    for i in record::SEPARATORS {
        out[i] = b',';
    }
    put(out, record::PASSENGERS, trip.passengers.into(), 1);
    put_amount(out, record::DISTANCE, trip.distance_centimiles);
    put(out, record::PICKUP_LOCATION, trip.pickup_location.into(), 3);
    put(
        out,
        record::DROPOFF_LOCATION,
        trip.dropoff_location.into(),
        3,
    );
    put(out, record::PAYMENT_TYPE, trip.payment_type.into(), 1);
    put_amount(out, record::FARE, trip.fare_cents);
    put_amount(out, record::TIP, trip.tip_cents);
    put_amount(out, record::TOTAL, trip.total_cents);
    out[RECORD_LENGTH - 1] = b'\n';
}

/// SplitMix64: tiny, fast, and fixed here so data never changes with a crate update.
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (multiply-shift; the bias is far below what matters here).
    fn below(&mut self, n: u32) -> u32 {
        (((self.next() >> 32) * u64::from(n)) >> 32) as u32
    }

    fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        from[self.below(from.len() as u32) as usize]
    }
}

/// Mostly one passenger, as in the real data.
const PASSENGER_WEIGHTS: [u8; 16] = [1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 3, 4, 5, 6];
/// Mostly card (1) and cash (2); no charge, dispute, unknown and voided rarely.
const PAYMENT_WEIGHTS: [u8; 20] = [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 3, 4, 5, 6];
/// Surcharge and tax, in cents, added to every total.
const EXTRAS_CENTS: u32 = 80;

/// Offsets that hold a digit, for corruptions that break one.
const DIGIT_OFFSETS: [usize; 56] = {
    let mut out = [0usize; 56];
    let mut n = 0;
    let mut i = 0;
    while i < RECORD_LENGTH {
        if record::SHAPE[i] == b'D' || record::SHAPE[i] == b'P' {
            out[n] = i;
            n += 1;
        }
        i += 1;
    }
    assert!(n == 56);
    out
};

/// The records of one partition, one at a time, with their expected stats.
#[derive(Debug, Clone)]
pub struct PartitionGen {
    rng: SplitMix64,
    date: Date,
    index: u64,
    bad_every: Option<u64>,
    stats: TaxiStats,
}

impl PartitionGen {
    /// Starts the partition `name` (e.g. `color=yellow/date=2016-01-01`) whose
    /// pickups fall on `day` (`YYYY-MM-DD`).
    pub fn new(
        seed: u64,
        name: &str,
        day: &str,
        bad_every: Option<u64>,
    ) -> Result<PartitionGen, GenError> {
        if bad_every == Some(0) {
            return Err(GenError::BadEvery);
        }
        let mut rng = SplitMix64(seed ^ xxh3_64(name.as_bytes()));
        rng.next();
        Ok(PartitionGen {
            rng,
            date: Date::parse(day)?,
            index: 0,
            bad_every,
            stats: TaxiStats::default(),
        })
    }

    /// The stats of the records made so far.
    pub fn stats(&self) -> &TaxiStats {
        &self.stats
    }

    /// Writes the next record into `out` and counts it.
    pub fn next_record(&mut self, out: &mut [u8; RECORD_LENGTH]) {
        self.index += 1;
        let rng = &mut self.rng;
        let pickup_second = rng.below(86_400);
        let duration = 120 + rng.below(2_400);
        let dropoff_second = pickup_second + duration;
        let pickup = DateTime::at(self.date, pickup_second);
        let dropoff = if dropoff_second < 86_400 {
            DateTime::at(self.date, dropoff_second)
        } else {
            DateTime::at(self.date.next(), dropoff_second - 86_400)
        };
        let mph = 6 + rng.below(15);
        let distance_centimiles = (duration * mph * 100 / 3600).max(10);
        let payment_type = rng.pick(&PAYMENT_WEIGHTS);
        let fare_cents = 250 + distance_centimiles * 5 / 2 + duration / 60 * 35;
        let tip_cents = if payment_type == 1 {
            fare_cents * rng.below(31) / 100
        } else {
            0
        };
        let trip = Trip {
            passengers: rng.pick(&PASSENGER_WEIGHTS),
            distance_centimiles,
            pickup_location: 1 + rng.below(265) as u16,
            dropoff_location: 1 + rng.below(265) as u16,
            payment_type,
            fare_cents,
            tip_cents,
            total_cents: fare_cents + tip_cents + EXTRAS_CENTS,
            pickup_hour: pickup.hour,
        };
        format_record(&pickup, &dropoff, &trip, out);
        match self.bad_every {
            Some(k) if self.index % k == 0 => {
                corrupt(rng, out);
                self.stats.bad_records += 1;
            }
            _ => self.stats.add_trip(&trip),
        }
    }
}

/// Makes a good record bad, in one of several ways; it stays 80 bytes.
fn corrupt(rng: &mut SplitMix64, r: &mut [u8; RECORD_LENGTH]) {
    match rng.below(8) {
        0 => r[rng.pick(&record::SEPARATORS)] = rng.pick(b";|\t ."),
        1 => {
            r[record::PICKUP_HOUR] = b'2';
            r[record::PICKUP_HOUR + 1] = b'4' + rng.below(6) as u8;
        }
        2 => r[record::PAYMENT_TYPE] = rng.pick(b"0789"),
        3 => r[rng.pick(&DIGIT_OFFSETS)] = b'a' + rng.below(26) as u8,
        4 => r[RECORD_LENGTH - 1] = rng.pick(b"\r ,x\0"),
        5 => {
            // The point trades places with a neighbouring digit.
            let at = rng.pick(&[record::DISTANCE, record::FARE, record::TIP, record::TOTAL]);
            let other = if rng.below(2) == 0 { at + 2 } else { at + 4 };
            r.swap(at + 3, other);
        }
        6 => {
            let t = rng.pick(&[record::PICKUP_TIME, record::DROPOFF_TIME]);
            let (at, with) = rng.pick(&[(4, b'/'), (7, b'/'), (10, b'T'), (13, b'.'), (16, b'.')]);
            r[t + at] = with;
        }
        // Just outside the digits, on either side, or not ASCII at all.
        _ => r[rng.pick(&DIGIT_OFFSETS)] = rng.pick(b"/:\xc3\xff"),
    }
}

/// Generates `records` records for one day in memory, with their expected stats;
/// the same records `generate` would write for a partition called `name`.
pub fn generate_in_memory(
    seed: u64,
    name: &str,
    day: &str,
    records: u64,
    bad_every: Option<u64>,
) -> Result<(Vec<u8>, TaxiStats), GenError> {
    let mut g = PartitionGen::new(seed, name, day, bad_every)?;
    let mut buf = vec![0u8; records as usize * RECORD_LENGTH];
    for chunk in buf.chunks_exact_mut(RECORD_LENGTH) {
        let out: &mut [u8; RECORD_LENGTH] = chunk.try_into().expect("exact chunk");
        g.next_record(out);
    }
    Ok((buf, g.stats))
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> GenError + '_ {
    move |source| GenError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Writes `bytes` to `path` by way of a temporary name, so a crash leaves no half file.
fn write_whole(
    path: &Path,
    fill: impl FnOnce(&mut BufWriter<File>) -> io::Result<()>,
) -> Result<(), GenError> {
    let mut tmp_name = path.file_name().unwrap_or_default().to_owned();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(format!(".{}", tmp_name.to_string_lossy()));
    let file = File::create(&tmp).map_err(io_err(&tmp))?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    // No fsync: this is test data, and a crash before the rename leaves only the
    // temporary file behind.
    fill(&mut w)
        .and_then(|()| w.flush())
        .map_err(io_err(&tmp))?;
    drop(w);
    fs::rename(&tmp, path).map_err(io_err(path))
}

fn check_color(c: &str) -> Result<(), GenError> {
    let ok = !c.is_empty()
        && c.len() <= 64
        && c.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(GenError::BadColor(c.to_owned()))
    }
}

/// Writes every colour × day partition and `_expected.json` under `opts.out`.
/// `progress` is called after every batch with the total number of records written
/// so far (suits `ProgressBar::set_position`).
pub fn generate(opts: &GenOptions, progress: &mut dyn FnMut(u64)) -> Result<GenSummary, GenError> {
    if opts.bad_every == Some(0) {
        return Err(GenError::BadEvery);
    }
    if opts.colors.is_empty() {
        return Err(GenError::Empty("colours"));
    }
    if opts.days.is_empty() {
        return Err(GenError::Empty("days"));
    }
    let mut names = Vec::new();
    for c in &opts.colors {
        check_color(c)?;
        for d in &opts.days {
            Date::parse(d)?;
            names.push((format!("color={c}/date={d}"), c, d));
        }
    }
    let mut seen = std::collections::HashSet::new();
    if let Some((dup, _, _)) = names.iter().find(|(n, _, _)| !seen.insert(n)) {
        return Err(GenError::Duplicate(dup.clone()));
    }

    const BATCH: usize = 8192;
    let mut batch = vec![0u8; BATCH * RECORD_LENGTH];
    let mut written = 0u64;
    let mut summary = GenSummary {
        files: 0,
        records: 0,
        bytes: 0,
        expected: Expected::default(),
    };
    for (name, color, day) in &names {
        let dir = opts
            .out
            .join(format!("color={color}"))
            .join(format!("date={day}"));
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let mut g = PartitionGen::new(opts.seed, name, day, opts.bad_every)?;
        write_whole(&dir.join(PART_FILE), |w| {
            let mut left = opts.records;
            while left > 0 {
                let n = left.min(BATCH as u64) as usize;
                let part = &mut batch[..n * RECORD_LENGTH];
                for chunk in part.chunks_exact_mut(RECORD_LENGTH) {
                    g.next_record(chunk.try_into().expect("exact chunk"));
                }
                w.write_all(part)?;
                written += n as u64;
                progress(written);
                left -= n as u64;
            }
            Ok(())
        })?;
        summary.files += 1;
        summary.records += opts.records;
        summary.bytes += opts.records * RECORD_LENGTH as u64;
        summary.expected.total.merge(g.stats());
        summary.expected.partitions.insert(name.clone(), g.stats);
    }
    let json = serde_json::to_vec_pretty(&summary.expected).expect("stats serialise");
    write_whole(&opts.out.join(EXPECTED_FILE), |w| {
        w.write_all(&json)?;
        w.write_all(b"\n")
    })?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            let p =
                std::env::temp_dir().join(format!("rangefleet-gen-{}-{name}", std::process::id()));
            let _ = fs::remove_dir_all(&p);
            TempDir(p)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn opts(out: &Path, seed: u64) -> GenOptions {
        GenOptions {
            out: out.to_owned(),
            colors: vec!["yellow".into(), "green".into()],
            days: parse_days("2016-02-28..2016-03-01").unwrap(),
            records: 2_000,
            seed,
            bad_every: Some(7),
        }
    }

    fn read_all(dir: &Path) -> BTreeMap<String, Vec<u8>> {
        let mut out = BTreeMap::new();
        for c in fs::read_dir(dir).unwrap() {
            let c = c.unwrap().path();
            if !c.is_dir() {
                continue;
            }
            for d in fs::read_dir(&c).unwrap() {
                let d = d.unwrap().path();
                let names: Vec<_> = fs::read_dir(&d)
                    .unwrap()
                    .map(|e| e.unwrap().file_name())
                    .collect();
                assert_eq!(names, [PART_FILE], "only the data file, no temporaries");
                let key = format!(
                    "{}/{}",
                    c.file_name().unwrap().to_string_lossy(),
                    d.file_name().unwrap().to_string_lossy()
                );
                out.insert(key, fs::read(d.join(PART_FILE)).unwrap());
            }
        }
        out
    }

    #[test]
    fn days_single_and_ranges() {
        assert_eq!(parse_days("2016-01-01").unwrap(), ["2016-01-01"]);
        assert_eq!(parse_days("2016-01-01..2016-01-07").unwrap().len(), 7);
        assert_eq!(
            parse_days("2016-02-28..2016-03-01").unwrap(),
            ["2016-02-28", "2016-02-29", "2016-03-01"]
        );
        assert_eq!(
            parse_days("2015-12-31..2016-01-01").unwrap(),
            ["2015-12-31", "2016-01-01"]
        );
        assert_eq!(parse_days("2015-02-28..2015-03-01").unwrap().len(), 2);
        assert_eq!(
            parse_days("2016-01-05..2016-01-05").unwrap(),
            ["2016-01-05"]
        );
        assert_eq!(parse_days("2000-01-01..2000-12-31").unwrap().len(), 366);
        assert_eq!(parse_days("1900-01-01..1900-12-31").unwrap().len(), 365);
        assert!(parse_days("2000-02-29").is_ok());
    }

    #[test]
    fn bad_days_are_refused() {
        for bad in [
            "2015-02-29",
            "1900-02-29",
            "2016-04-31",
            "2016-13-01",
            "2016-00-10",
            "2016-01-00",
            "2016-01-32",
            "2016-1-01",
            "16-01-01",
            "2016/01/01",
            "",
            "..",
            "2016-01-01..",
            "9999-01-01",
            "2016-01-01..2016-01-02..2016-01-03",
            "２０１６-01-01",
        ] {
            assert!(parse_days(bad).is_err(), "{bad:?}");
        }
        assert!(matches!(
            parse_days("2016-01-02..2016-01-01"),
            Err(GenError::ReversedRange(_))
        ));
        assert!(matches!(
            parse_days("2000-01-01..2099-12-31"),
            Err(GenError::TooManyDays(_))
        ));
    }

    #[test]
    fn expected_stats_match_a_scan_of_the_files() {
        let tmp = TempDir::new("scan");
        let mut seen = 0;
        let summary = generate(&opts(&tmp.0, 42), &mut |n| {
            assert!(n > seen);
            seen = n
        })
        .unwrap();
        assert_eq!(summary.files, 6);
        assert_eq!(summary.records, 12_000);
        assert_eq!(seen, 12_000);
        assert_eq!(summary.bytes, 12_000 * 80);

        let files = read_all(&tmp.0);
        assert_eq!(files.len(), 6);
        let mut total = TaxiStats::default();
        for (name, bytes) in &files {
            assert_eq!(bytes.len(), 2_000 * RECORD_LENGTH);
            let mut scanned = TaxiStats::default();
            scanned.add_records(bytes);
            let mut reference = TaxiStats::default();
            reference.add_records_reference(bytes);
            assert_eq!(&scanned, &reference);
            assert_eq!(
                Some(&scanned),
                summary.expected.partitions.get(name),
                "{name}"
            );
            assert_eq!(scanned.bad_records, 2_000 / 7);
            total.merge(&scanned);
        }
        assert_eq!(total, summary.expected.total);

        let written: Expected =
            serde_json::from_slice(&fs::read(tmp.0.join(EXPECTED_FILE)).unwrap()).unwrap();
        assert_eq!(written, summary.expected);
        assert!(written
            .partitions
            .contains_key("color=yellow/date=2016-02-29"));
    }

    #[test]
    fn same_seed_same_bytes_other_seed_other_bytes() {
        let (a, b, c) = (TempDir::new("a"), TempDir::new("b"), TempDir::new("c"));
        generate(&opts(&a.0, 7), &mut |_| {}).unwrap();
        generate(&opts(&b.0, 7), &mut |_| {}).unwrap();
        generate(&opts(&c.0, 8), &mut |_| {}).unwrap();
        let (a, b, c) = (read_all(&a.0), read_all(&b.0), read_all(&c.0));
        assert_eq!(a, b);
        for (name, bytes) in &a {
            assert_ne!(bytes, &c[name], "{name}");
        }
        // Partitions differ from each other too.
        assert_ne!(
            a["color=yellow/date=2016-02-28"],
            a["color=green/date=2016-02-28"]
        );
    }

    #[test]
    fn values_are_realistic() {
        let (buf, stats) = generate_in_memory(1, "p", "2016-12-31", 20_000, None).unwrap();
        assert_eq!(stats.bad_records, 0);
        let mut crossed_year = false;
        for r in buf.chunks_exact(RECORD_LENGTH) {
            let t = record::parse(r).expect("every record is good without --bad-every");
            assert_eq!(&r[..10], b"2016-12-31");
            assert!(r[20..39] > r[0..19] || &r[20..30] == b"2017-01-01");
            crossed_year |= &r[20..30] == b"2017-01-01";
            assert!((1..=6).contains(&t.passengers));
            assert!((1..=265).contains(&t.pickup_location));
            assert!((1..=265).contains(&t.dropoff_location));
            assert!((1..=6).contains(&t.payment_type));
            assert_eq!(t.total_cents, t.fare_cents + t.tip_cents + EXTRAS_CENTS);
            assert!(t.payment_type == 1 || t.tip_cents == 0);
            assert!(t.distance_centimiles >= 10);
        }
        assert!(crossed_year, "some dropoffs fall on the next day");
        assert!(stats.trips_by_pickup_hour.iter().all(|&n| n > 0));
        assert!(stats.trips_by_payment_type[1..].iter().all(|&n| n > 0));
        let mut again = TaxiStats::default();
        again.add_records(&buf);
        assert_eq!(again, stats);
    }

    #[test]
    fn every_corruption_makes_a_bad_record() {
        let (buf, stats) = generate_in_memory(3, "p", "2016-01-01", 20_000, Some(1)).unwrap();
        assert_eq!(stats.bad_records, 20_000);
        assert_eq!(stats.records, 0);
        assert!(buf
            .chunks_exact(RECORD_LENGTH)
            .all(|r| record::parse(r).is_none()));
        let mut scanned = TaxiStats::default();
        scanned.add_records(&buf);
        assert_eq!(scanned, stats);
    }

    #[test]
    fn bad_records_are_every_kth_one_based() {
        let (buf, _) = generate_in_memory(5, "p", "2016-01-01", 30, Some(10)).unwrap();
        let bad: Vec<usize> = buf
            .chunks_exact(RECORD_LENGTH)
            .enumerate()
            .filter(|(_, r)| record::parse(r).is_none())
            .map(|(i, _)| i + 1)
            .collect();
        assert_eq!(bad, [10, 20, 30]);
    }

    #[test]
    fn options_are_checked() {
        let tmp = TempDir::new("opts");
        let base = opts(&tmp.0, 1);
        let with = |f: &dyn Fn(&mut GenOptions)| {
            let mut o = base.clone();
            f(&mut o);
            generate(&o, &mut |_| {})
        };
        assert!(matches!(
            with(&|o| o.bad_every = Some(0)),
            Err(GenError::BadEvery)
        ));
        assert!(matches!(
            with(&|o| o.colors = vec!["a/b".into()]),
            Err(GenError::BadColor(_))
        ));
        assert!(matches!(
            with(&|o| o.colors = vec!["..".into()]),
            Err(GenError::BadColor(_))
        ));
        assert!(matches!(
            with(&|o| o.colors.clear()),
            Err(GenError::Empty(_))
        ));
        assert!(matches!(
            with(&|o| o.days = vec!["2016-02-30".into()]),
            Err(GenError::BadDay { .. })
        ));
        assert!(matches!(
            with(&|o| o.colors = vec!["x".into(), "x".into()]),
            Err(GenError::Duplicate(_))
        ));
        assert!(
            !tmp.0.exists(),
            "nothing written when the options are wrong"
        );
        let zero = with(&|o| o.records = 0).unwrap();
        assert_eq!((zero.files, zero.bytes), (6, 0));
    }

    #[test]
    fn format_record_round_trips() {
        let pickup = DateTime {
            year: 2016,
            month: 1,
            day: 1,
            hour: 0,
            minute: 12,
            second: 22,
        };
        let dropoff = DateTime {
            minute: 29,
            second: 14,
            ..pickup
        };
        let trip = Trip {
            passengers: 1,
            distance_centimiles: 320,
            pickup_location: 161,
            dropoff_location: 236,
            payment_type: 1,
            fare_cents: 1250,
            tip_cents: 200,
            total_cents: 1730,
            pickup_hour: 0,
        };
        let mut r = [0u8; RECORD_LENGTH];
        format_record(&pickup, &dropoff, &trip, &mut r);
        assert_eq!(
            &r,
            b"2016-01-01 00:12:22,2016-01-01 00:29:14,1,003.20,161,236,1,012.50,002.00,017.30\n"
        );
        assert_eq!(record::parse(&r), Some(trip));
    }
}
