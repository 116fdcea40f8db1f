//! Benchmarks for Causeway. Each prints ratios against a baseline run in the
//! same invocation; none asserts on wall-clock time.

pub mod client;
pub mod procfs;
