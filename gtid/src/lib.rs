//! GTID sets: MySQL's textual form, exact interval algebra and the delta
//! encoding streamed from readers to routers. Pure: no I/O, no async.
//!
//! Every routing decision asks "has server S applied everything session C
//! wrote?", i.e. `session_writes.is_subset(&server_view)` or
//! `server_view.contains(&gtid)`, once per read, against views that grow by
//! one transaction at a time.
//!
//! # Modules
//! - [`source`]: [`SourceId`] (server UUID + optional MySQL 8.3+ [`Tag`]),
//!   [`Gtid`].
//! - [`interval`]: [`Interval`], inclusive `start..=end`; half-open
//!   conversion for the binlog.
//! - [`set`]: [`GtidSet`] with union, subtract, intersection, subset,
//!   contains, count.
//! - [`text`]: MySQL's text form, parsed and printed as the server does.
//! - [`delta`]: the reader-to-router stream: [`delta::binary`] (Causeway's
//!   own framing) and [`delta::proxysql`] (ProxySQL's `ST=`/`I1..I4` lines).
//!
//! # Ranges
//! A gno is in `1..=MAX_GNO` with `MAX_GNO = 2^63 - 2`: MySQL's `GNO_END`
//! is `INT64_MAX` and is one past the largest gno, so the half-open end of
//! any interval still fits the binlog's `int64`.
//!
//! # Representation: interval `Vec` vs roaring
//! Per source, a sorted `Vec<Interval>` (16 bytes per interval) searched by
//! binary search, with O(1) paths for appending at the end and for a gno in
//! the last interval. `RoaringTreemap` (roaring 0.12, run-optimized) was
//! measured against it for one source, same run, same machine (2 shared
//! cores, busy; `cargo bench --bench intervals_vs_roaring -- --warm-up-time
//! 1 --measurement-time 2`):
//!
//! | workload                                 | `Vec<Interval>` | `RoaringTreemap`   |
//! |------------------------------------------|-----------------|--------------------|
//! | contains, 10^4 intervals of 5 with holes | 27 ns           | 4 ns               |
//! | append the next gno                      | 18 ns           | 24 ns              |
//! | is-subset, 1 trx vs 10^4 intervals       | 31 ns           | 29 ns              |
//! | union of two 10^4-interval sets          | 33 µs           | 34 µs              |
//! | memory, 10^8 contiguous gnos             | 96 B            | ≥ 21.5 KB          |
//! | memory, 10^5 holes (every other gno)     | 1.6 MB          | ≥ 28 KB            |
//! | memory, 10^4 intervals of 5              | 262 KB          | ≥ 16 KB            |
//!
//! (roaring's memory is its serialized size, a lower bound.) Roaring wins
//! point lookups and memory on sets riddled with holes; intervals win the
//! normal state of a replica — one interval per source growing at its end —
//! by two orders of magnitude in memory, append faster, and are the shape of
//! every interface (MySQL text, binlog, both streams), so nothing is
//! converted. Both meet the lookup target on holey sets; only intervals meet
//! "10^8 transactions in a handful of bytes". Kept: intervals.
//!
//! # Measured (`cargo bench --bench gtid_set -- --warm-up-time 1 --measurement-time 3`)
//! Same machine and conditions as above.
//!
//! | what                                                      | target     | measured              |
//! |-----------------------------------------------------------|------------|-----------------------|
//! | `contains(gtid)`, 10 sources x 10^4 intervals, random gno | ≤ 100 ns   | 42 ns                 |
//! | `is_subset`, 1-trx session set vs that view               |            | 26 ns                 |
//! | `insert` of the next gno of a source                      | ≤ 20 ns    | 14.5 ns               |
//! | parse 1.06 MB of `gtid_executed` text                     | ≥ 200 MB/s | 880 MiB/s (1.15 ms)   |
//! | format the same set                                       |            | 290 MiB/s             |
//! | one-trx delta: binary encode + decode + apply             |            | 136 ns                |
//! | heap, 10^8 contiguous transactions                        | a few B    | 96 B (+24 B inline)   |
//! | heap, 10^5 holes                                          | ≤ 4 MB     | 2.1 MB (1.6 MB shrunk)|
#![cfg_attr(not(test), warn(missing_docs))]

pub mod delta;
pub mod error;
pub mod interval;
pub mod set;
pub mod source;
pub mod text;

pub use error::{Error, Result};
pub use interval::Interval;
pub use set::GtidSet;
pub use source::{Gtid, SourceId, Tag};
pub use uuid::Uuid;

/// Largest valid transaction number, `2^63 - 2` (MySQL's `GNO_END - 1`).
pub const MAX_GNO: u64 = (i64::MAX - 1) as u64;
