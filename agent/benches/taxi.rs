//! Throughput of the processors over ~64 MiB of generated records (bigger than any
//! cache, so memory traffic is part of the number, as it is in a real job).
//!
//! `cargo bench -p rangefleet --bench taxi`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rangefleet::operator::gen::generate_in_memory;
use rangefleet::process::count::CountStats;
use rangefleet::process::taxi::record::RECORD_LENGTH;
use rangefleet::process::taxi::{kernel_name, TaxiStats};

/// 64 MiB of whole records, one bad record in a thousand.
const RECORDS: u64 = (64 << 20) / RECORD_LENGTH as u64;

fn processors(c: &mut Criterion) {
    let (buf, expected) = generate_in_memory(1, "bench", "2016-01-01", RECORDS, Some(1000))
        .expect("valid bench options");
    let mut check = TaxiStats::default();
    check.add_records(&buf);
    assert_eq!(check, expected, "fast path disagrees with the generator");

    let mut g = c.benchmark_group("processors");
    g.throughput(Throughput::Bytes(buf.len() as u64));
    g.sample_size(20);
    g.bench_function(format!("taxi-stats/{}", kernel_name()), |b| {
        b.iter(|| {
            let mut s = TaxiStats::default();
            s.add_records(black_box(&buf));
            s
        })
    });
    g.bench_function("taxi-stats/reference", |b| {
        b.iter(|| {
            let mut s = TaxiStats::default();
            s.add_records_reference(black_box(&buf));
            s
        })
    });
    g.bench_function("count", |b| {
        b.iter(|| {
            let mut s = CountStats::default();
            s.add_records(black_box(&buf), RECORD_LENGTH);
            s
        })
    });
    g.finish();
}

criterion_group!(benches, processors);
criterion_main!(benches);
