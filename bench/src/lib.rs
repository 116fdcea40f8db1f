//! Benchmarks for Causeway. Each prints ratios against a baseline run in the
//! same invocation; none asserts on wall-clock time.

pub mod client;
pub mod procfs;

/// The number in environment variable `key`, or `default` when it is unset.
pub fn env_num(key: &str, default: usize) -> anyhow::Result<usize> {
    use anyhow::Context;
    match std::env::var(key) {
        Ok(v) => v
            .parse()
            .with_context(|| format!("{key}={v}: not a number")),
        Err(_) => Ok(default),
    }
}
