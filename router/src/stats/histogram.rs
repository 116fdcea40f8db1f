//! A small fixed latency histogram: log-linear buckets of microseconds,
//! four per power of two, so a percentile read from it is at most 25 %
//! above the true value (and never outside the smallest and largest values
//! seen). 544 bytes, no allocation, one bucket touched per sample. Pure.
//!
//! ```text
//! µs:      0  1  2  3 | 4  5  6  7 | 8-9 10-11 12-13 14-15 | 16-19 ... | 7·2^32 and above
//! bucket:  0  1  2  3 | 4  5  6  7 | 8   9     10    11    | 12    ... | 135
//! ```

/// Buckets: exact below 4 µs, then four per power of two; values from
/// 7·2^32 µs (8.4 hours) on fall in the last.
pub const BUCKETS: usize = 136;

/// Counts of samples per bucket.
#[derive(Clone, PartialEq, Eq)]
pub struct Histogram {
    counts: [u32; BUCKETS],
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: [0; BUCKETS],
        }
    }
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram")
            .field("samples", &self.samples())
            .finish()
    }
}

/// The bucket of a value in microseconds.
pub fn bucket(us: u64) -> usize {
    if us < 4 {
        return us as usize;
    }
    let e = 63 - us.leading_zeros() as usize; // at least 2
    let m = ((us >> (e - 2)) & 3) as usize;
    (4 * (e - 1) + m).min(BUCKETS - 1)
}

/// The largest value (µs) bucket `b` holds (`u64::MAX` for the last).
pub fn upper_bound(b: usize) -> u64 {
    if b < 4 {
        return b as u64;
    }
    if b >= BUCKETS - 1 {
        return u64::MAX;
    }
    let e = b / 4 + 1;
    let m = (b % 4) as u64;
    ((4 + m + 1) << (e - 2)) - 1
}

impl Histogram {
    /// Counts one value, in microseconds.
    pub fn record(&mut self, us: u64) {
        let c = &mut self.counts[bucket(us)];
        *c = c.saturating_add(1);
    }

    /// Samples counted.
    pub fn samples(&self) -> u64 {
        self.counts.iter().map(|&c| u64::from(c)).sum()
    }

    /// The `q` quantile (0.0 to 1.0) in microseconds: the upper bound of
    /// the bucket holding it, kept within `[min, max]`, the smallest and
    /// largest values seen (exact for a single sample). 0 when empty.
    pub fn quantile(&self, q: f64, min: u64, max: u64) -> u64 {
        let total = self.samples();
        if total == 0 {
            return 0;
        }
        // The rank of the sample wanted, 1-based: ceil(q * total).
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0u64;
        for (b, &c) in self.counts.iter().enumerate() {
            seen += u64::from(c);
            if seen >= rank {
                return upper_bound(b).clamp(min, max.max(min));
            }
        }
        max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_every_value_in_order() {
        assert_eq!(bucket(0), 0);
        assert_eq!(bucket(3), 3);
        assert_eq!(bucket(4), 4);
        assert_eq!(bucket(7), 7);
        assert_eq!(bucket(8), 8);
        assert_eq!(bucket(9), 8);
        assert_eq!(bucket(10), 9);
        assert_eq!(bucket(16), 12);
        assert_eq!(bucket(u64::MAX), BUCKETS - 1);
        // Each bucket starts right after the previous one's upper bound.
        for b in 0..BUCKETS - 1 {
            let hi = upper_bound(b);
            assert_eq!(bucket(hi), b, "upper bound of {b}");
            assert_eq!(bucket(hi + 1), b + 1, "after bucket {b}");
        }
        // Four per power of two: the upper bound is at most 25 % above
        // any value of its bucket.
        for us in [5u64, 100, 1_000, 12_345, 1_000_000, 3_600_000_000] {
            let hi = upper_bound(bucket(us));
            assert!(hi >= us && hi as f64 <= us as f64 * 1.25, "{us}: {hi}");
        }
    }

    #[test]
    fn quantiles_come_from_the_right_bucket() {
        let mut h = Histogram::default();
        assert_eq!(h.quantile(0.5, 0, 0), 0);
        // 1 to 1000 µs, once each.
        for us in 1..=1000 {
            h.record(us);
        }
        assert_eq!(h.samples(), 1000);
        let p50 = h.quantile(0.5, 1, 1000);
        assert!((500..=625).contains(&p50), "{p50}");
        let p99 = h.quantile(0.99, 1, 1000);
        assert!((990..=1000).contains(&p99), "{p99}");
        assert_eq!(h.quantile(1.0, 1, 1000), 1000, "kept within max");
        assert_eq!(h.quantile(0.0, 1, 1000), 1, "the first sample");
    }

    #[test]
    fn a_single_sample_is_exact_and_a_skewed_one_shows_its_tail() {
        let mut h = Histogram::default();
        h.record(12_345);
        assert_eq!(h.quantile(0.5, 12_345, 12_345), 12_345);
        assert_eq!(h.quantile(0.99, 12_345, 12_345), 12_345);
        let mut h = Histogram::default();
        for _ in 0..98 {
            h.record(200);
        }
        h.record(50_000);
        h.record(60_000);
        let p50 = h.quantile(0.5, 200, 60_000);
        assert!((200..=250).contains(&p50), "{p50}");
        let p99 = h.quantile(0.99, 200, 60_000);
        assert!((50_000..=62_500).contains(&p99), "{p99}");
    }

    #[test]
    fn counts_saturate() {
        let mut h = Histogram::default();
        h.counts[10] = u32::MAX;
        h.record(upper_bound(10));
        assert_eq!(h.counts[10], u32::MAX);
    }
}
