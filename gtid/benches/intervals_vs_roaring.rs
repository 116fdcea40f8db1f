//! `cargo bench -p causeway-gtid --bench intervals_vs_roaring`
//!
//! One source's transaction numbers as a sorted `Vec<Interval>` (what
//! `GtidSet` keeps) versus `roaring::RoaringTreemap`, on the workloads a
//! router sees. Memory is printed first; roaring's is its serialized size,
//! a lower bound on its heap use.
#![allow(clippy::print_stdout, missing_docs)]

use std::hint::black_box;

use causeway_gtid::{Gtid, GtidSet, Interval, SourceId, Uuid};
use criterion::{criterion_group, Criterion};
use roaring::RoaringTreemap;

const SRC: SourceId = SourceId::new(Uuid::from_bytes([7; 16]));

/// 10^4 intervals `[10i+1, 10i+5]`: few intervals, many holes between.
fn holey_vec() -> GtidSet {
    let mut s = GtidSet::new();
    for i in 0..10_000u64 {
        s.insert_interval(SRC, Interval::new(10 * i + 1, 10 * i + 5).unwrap());
    }
    s
}

fn holey_roaring() -> RoaringTreemap {
    let mut r = RoaringTreemap::new();
    for i in 0..10_000u64 {
        r.insert_range(10 * i + 1..=10 * i + 5);
    }
    r.optimize();
    r
}

fn memory() {
    let mut v = GtidSet::new();
    v.insert_interval(SRC, Interval::new(1, 100_000_000).unwrap());
    let mut r = RoaringTreemap::new();
    r.insert_range(1..=100_000_000);
    r.optimize();
    println!(
        "10^8 contiguous: intervals {} B, roaring >= {} B",
        v.heap_size(),
        r.serialized_size()
    );
    let mut v = GtidSet::new();
    let mut r = RoaringTreemap::new();
    for i in 0..100_000u64 {
        v.insert(Gtid::new(SRC, 2 * i + 1).unwrap());
        r.insert(2 * i + 1);
    }
    r.optimize();
    v.shrink_to_fit();
    println!(
        "10^5 holes: intervals {} B, roaring >= {} B",
        v.heap_size(),
        r.serialized_size()
    );
    let (v, r) = (holey_vec(), holey_roaring());
    println!(
        "10^4 intervals of 5: intervals {} B, roaring >= {} B",
        v.heap_size(),
        r.serialized_size()
    );
}

fn compare(c: &mut Criterion) {
    let (v, r) = (holey_vec(), holey_roaring());
    let qs: Vec<u64> = (0..4096u64)
        .map(|i| (i * 7919 * 13) % 100_000 + 1)
        .collect();
    let mut i = 0;
    let mut g = c.benchmark_group("contains 10^4 intervals");
    g.bench_function("intervals", |b| {
        b.iter(|| {
            i = (i + 1) & 4095;
            black_box(v.contains_gno(&SRC, black_box(qs[i])))
        })
    });
    g.bench_function("roaring", |b| {
        b.iter(|| {
            i = (i + 1) & 4095;
            black_box(r.contains(black_box(qs[i])))
        })
    });
    g.finish();

    let mut g = c.benchmark_group("append next gno");
    let (mut v2, mut r2) = (v.clone(), r.clone());
    let (mut n1, mut n2) = (100_000u64, 100_000u64);
    g.bench_function("intervals", |b| {
        b.iter(|| {
            n1 += 1;
            black_box(v2.insert(Gtid::new(SRC, n1).unwrap()))
        })
    });
    g.bench_function("roaring", |b| {
        b.iter(|| {
            n2 += 1;
            black_box(r2.insert(n2))
        })
    });
    g.finish();

    let mut g = c.benchmark_group("subset 1 trx of 10^4 intervals");
    let one_v: GtidSet = [Gtid::new(SRC, 50_003).unwrap()].into_iter().collect();
    let mut one_r = RoaringTreemap::new();
    one_r.insert(50_003);
    g.bench_function("intervals", |b| b.iter(|| black_box(one_v.is_subset(&v))));
    g.bench_function("roaring", |b| b.iter(|| black_box(one_r.is_subset(&r))));
    g.finish();

    let mut g = c.benchmark_group("union two 10^4-interval sets");
    let mut w = GtidSet::new();
    let mut rw = RoaringTreemap::new();
    for i in 0..10_000u64 {
        w.insert_interval(SRC, Interval::new(10 * i + 4, 10 * i + 7).unwrap());
        rw.insert_range(10 * i + 4..=10 * i + 7);
    }
    g.bench_function("intervals", |b| b.iter(|| black_box(v.union(&w))));
    g.bench_function("roaring", |b| b.iter(|| black_box(&r | &rw)));
    g.finish();
}

criterion_group!(benches, compare);

fn main() {
    memory();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
