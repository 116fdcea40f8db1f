//! The last minutes of the router's state, one sample per second, in a
//! bounded ring: what the dashboard draws as sparklines, and what the
//! catch-up estimate of [`crate::status`] divides by (each server's recent
//! apply rate). Pure: the sampler task that fills it lives in
//! [`crate::status::sample`].
//!
//! ```text
//! every second: status rows + view sizes + read counters --> Sample --> push
//!               (the oldest dropped past `capacity`: 300 samples, 5 minutes)
//! ```

use std::collections::VecDeque;

/// Samples kept by default: five minutes at one per second.
pub const KEEP: usize = 300;

/// What one server looked like at one sample.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerSample {
    /// The server's name.
    pub name: String,
    /// Transactions its view lacks compared with its writer's (`None`:
    /// not known).
    pub distance: Option<u64>,
    /// Replication lag the monitor saw, in milliseconds (`None`: not a
    /// replica, not known, or replication stopped).
    pub lag_ms: Option<u64>,
    /// How many transactions the router knows it applied (its view and its
    /// last `gtid_executed`; `None`: nothing known): the apply rate is the
    /// growth of this.
    pub applied: Option<u64>,
    /// Backend connections lent to sessions.
    pub in_use: usize,
}

/// Reads counted so far (counters, not rates), by where they went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadTotals {
    /// Causal reads served by a replica.
    pub replica: u64,
    /// Causal reads sent to the primary instead.
    pub primary: u64,
    /// Statements routed, any route.
    pub statements: u64,
}

/// One second of the router.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sample {
    /// Wall clock, milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// Every configured server, in configuration order.
    pub servers: Vec<ServerSample>,
    /// Read counters at that instant.
    pub reads: ReadTotals,
}

impl Sample {
    /// The sample of the server called `name`, if it was configured then.
    pub fn server(&self, name: &str) -> Option<&ServerSample> {
        self.servers.iter().find(|s| s.name == name)
    }
}

/// The newest samples, oldest first, at most `capacity` of them.
#[derive(Debug, Clone)]
pub struct History {
    samples: VecDeque<Sample>,
    capacity: usize,
}

impl Default for History {
    fn default() -> Self {
        History::new(KEEP)
    }
}

impl History {
    /// Empty, keeping at most `capacity` samples (at least one).
    pub fn new(capacity: usize) -> History {
        let capacity = capacity.max(1);
        History {
            samples: VecDeque::with_capacity(capacity),
            capacity,
        }
    }

    /// Adds the newest sample, dropping the oldest when full.
    pub fn push(&mut self, sample: Sample) {
        if self.samples.len() == self.capacity {
            self.samples.pop_front();
        }
        self.samples.push_back(sample);
    }

    /// Every sample, oldest first.
    pub fn samples(&self) -> impl ExactSizeIterator<Item = &Sample> + '_ {
        self.samples.iter()
    }

    /// How many samples are kept.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Whether no sample was taken yet.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// Transactions per second `server` applied over (about) the last
    /// `window_ms` milliseconds of samples: the growth of what the router
    /// knows it applied, from the oldest sample in the window to the
    /// newest. `None` with less than a second between them, or when what it
    /// applied went back (a reset view).
    pub fn apply_rate(&self, server: &str, window_ms: u64) -> Option<f64> {
        let (new_at, new) = self
            .samples
            .iter()
            .rev()
            .find_map(|s| Some((s.at_ms, s.server(server)?.applied?)))?;
        let (old_at, old) = self
            .samples
            .iter()
            .filter(|s| new_at.saturating_sub(s.at_ms) <= window_ms)
            .find_map(|s| Some((s.at_ms, s.server(server)?.applied?)))?;
        let span = new_at.checked_sub(old_at)?;
        if span < 1000 || new < old {
            return None;
        }
        Some((new - old) as f64 * 1000.0 / span as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at_ms: u64, applied: Option<u64>) -> Sample {
        Sample {
            at_ms,
            servers: vec![ServerSample {
                name: "r1".into(),
                applied,
                ..ServerSample::default()
            }],
            reads: ReadTotals::default(),
        }
    }

    #[test]
    fn the_ring_keeps_the_newest_samples() {
        let mut h = History::new(3);
        assert!(h.is_empty());
        for t in 0..5 {
            h.push(sample(t * 1000, Some(t)));
        }
        assert_eq!(h.len(), 3);
        let at: Vec<u64> = h.samples().map(|s| s.at_ms).collect();
        assert_eq!(at, [2000, 3000, 4000]);
        assert_eq!(History::new(0).capacity, 1);
    }

    #[test]
    fn the_apply_rate_is_the_growth_over_the_window() {
        let mut h = History::default();
        assert_eq!(h.apply_rate("r1", 10_000), None, "no samples");
        h.push(sample(0, Some(100)));
        assert_eq!(h.apply_rate("r1", 10_000), None, "one sample");
        h.push(sample(500, Some(150)));
        assert_eq!(h.apply_rate("r1", 10_000), None, "under a second");
        for t in 1..=20 {
            h.push(sample(t * 1000, Some(100 + 50 * t)));
        }
        // The window's oldest sample is 10 s before the newest.
        assert_eq!(h.apply_rate("r1", 10_000), Some(50.0));
        assert_eq!(h.apply_rate("r1", 1_000), Some(50.0));
        assert_eq!(h.apply_rate("nobody", 10_000), None);
        // A stalled server applies nothing.
        for t in 21..=40 {
            h.push(sample(t * 1000, Some(1100)));
        }
        assert_eq!(h.apply_rate("r1", 10_000), Some(0.0));
    }

    #[test]
    fn unknown_or_shrinking_counts_give_no_rate() {
        let mut h = History::default();
        h.push(sample(0, Some(100)));
        h.push(sample(2000, Some(10)));
        assert_eq!(h.apply_rate("r1", 10_000), None, "a reset view");
        let mut h = History::default();
        h.push(sample(0, None));
        h.push(sample(2000, Some(10)));
        assert_eq!(h.apply_rate("r1", 10_000), None, "one known sample");
        // Gaps are skipped: the known samples around them count.
        h.push(sample(3000, None));
        h.push(sample(4000, Some(30)));
        assert_eq!(h.apply_rate("r1", 10_000), Some(10.0));
    }
}
