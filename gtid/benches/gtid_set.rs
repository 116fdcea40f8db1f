//! `cargo bench -p causeway-gtid --bench gtid_set`
//!
//! Targets (issue 3): contains on 10 sources x 10^4 intervals at most
//! 100 ns; appending the next gno at most 20 ns; parsing a 1 MB
//! `gtid_executed` text at 200 MB/s or more; 10^8 contiguous transactions
//! in a handful of bytes, 10^5 holes in at most 4 MB (printed first).
#![allow(clippy::print_stdout, missing_docs)]

use std::hint::black_box;

use causeway_gtid::delta::binary::{Decoder, Encoder, Hello, Message, VERSION};
use causeway_gtid::{Gtid, GtidSet, Interval, SourceId, Uuid};
use criterion::{criterion_group, Criterion, Throughput};

fn source(k: u8) -> SourceId {
    SourceId::new(Uuid::from_bytes([k.wrapping_mul(37).wrapping_add(1); 16]))
}

/// `sources` sources, each with `intervals` intervals `[10i+1, 10i+5]`.
fn holey(sources: u8, intervals: u64) -> GtidSet {
    let mut s = GtidSet::new();
    for k in 0..sources {
        for i in 0..intervals {
            s.insert_interval(source(k), Interval::new(10 * i + 1, 10 * i + 5).unwrap());
        }
    }
    s
}

/// Deterministic pseudo-random queries over the set's range (~50 % hits).
fn queries(sources: u8, max: u64, n: usize) -> Vec<Gtid> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            Gtid::new(source((x % u64::from(sources)) as u8), 1 + (x >> 8) % max).unwrap()
        })
        .collect()
}

fn memory_report() {
    let mut contiguous = GtidSet::new();
    contiguous.insert_interval(source(0), Interval::new(1, 100_000_000).unwrap());
    let mut holes = GtidSet::new();
    for i in 0..100_000u64 {
        holes.insert(Gtid::new(source(0), 2 * i + 1).unwrap());
    }
    println!(
        "memory: 10^8 contiguous = {} heap bytes (+{} inline); 10^5 holes = {} heap bytes ({} after shrink_to_fit)",
        contiguous.heap_size(),
        std::mem::size_of::<GtidSet>(),
        holes.heap_size(),
        {
            let mut h = holes.clone();
            h.shrink_to_fit();
            h.heap_size()
        }
    );
}

fn contains(c: &mut Criterion) {
    let set = holey(10, 10_000);
    let qs = queries(10, 100_000, 4096);
    let mut i = 0;
    c.bench_function("contains/10x10^4 intervals", |b| {
        b.iter(|| {
            i = (i + 1) & 4095;
            black_box(set.contains(black_box(&qs[i])))
        })
    });
    let session: GtidSet = [Gtid::new(source(3), 50_003).unwrap()]
        .into_iter()
        .collect();
    c.bench_function("is_subset/1-trx session vs 10x10^4 view", |b| {
        b.iter(|| black_box(black_box(&session).is_subset(black_box(&set))))
    });
}

fn append(c: &mut Criterion) {
    let mut set = holey(10, 10);
    let src = source(4);
    let mut next = set.last_gno(&src).unwrap();
    c.bench_function("insert/append next gno", |b| {
        b.iter(|| {
            next += 1;
            black_box(set.insert(Gtid::new(src, black_box(next)).unwrap()))
        })
    });

    // The router's path: decode a one-transaction delta frame, apply it.
    let mut enc = Encoder::new();
    let mut view = holey(10, 10);
    let mut buf = Vec::new();
    enc.encode(
        &Message::Hello(Hello {
            protocol_version: VERSION,
            server_uuid: Uuid::nil(),
            reader_instance: 0,
            epoch: 0,
        }),
        &mut buf,
    );
    enc.encode(&Message::Snapshot(view.clone()), &mut buf);
    let mut dec = Decoder::new();
    let mut rest = &buf[..];
    while let Some((m, n)) = dec.decode(rest).unwrap() {
        rest = &rest[n..];
        drop(m);
    }
    let mut gno = view.last_gno(&src).unwrap();
    let mut frame = Vec::with_capacity(16);
    c.bench_function("delta/encode+decode+apply 1 trx", |b| {
        b.iter(|| {
            gno += 1;
            let delta: GtidSet = [Gtid::new(src, gno).unwrap()].into_iter().collect();
            frame.clear();
            enc.encode(&Message::Delta(delta), &mut frame);
            let (m, _) = dec.decode(&frame).unwrap().unwrap();
            m.apply_to(&mut view);
        })
    });
}

fn text(c: &mut Criterion) {
    // ~1 MB of gtid_executed: 10 sources with enough holes.
    let set = holey(10, 9_000);
    let text = set.to_string();
    let mut g = c.benchmark_group("text");
    g.throughput(Throughput::Bytes(text.len() as u64));
    g.bench_function(format!("parse {} KB", text.len() / 1000), |b| {
        b.iter(|| black_box(GtidSet::parse(black_box(&text)).unwrap()))
    });
    g.bench_function(format!("format {} KB", text.len() / 1000), |b| {
        b.iter(|| black_box(set.to_string()))
    });
    g.finish();
}

criterion_group!(benches, contains, append, text);

fn main() {
    memory_report();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
