//! Inclusive gno intervals and the sorted-interval-list algorithms behind
//! [`crate::GtidSet`].
//!
//! A list is *canonical* when its intervals are sorted, non-overlapping and
//! non-adjacent (`a.end + 1 < b.start`); every function here takes and
//! returns canonical lists.

use std::fmt;

use crate::error::{Error, Result};
use crate::source::check_gno;

/// A non-empty range of transaction numbers, **inclusive** on both ends:
/// `start..=end`, exactly as MySQL writes it in text (`uuid:1-5` holds 1
/// through 5).
///
/// The binlog (`Previous_gtids_log_event`, `COM_BINLOG_DUMP_GTID`) uses
/// half-open `[start, end)` instead; convert only at that boundary with
/// [`Interval::to_half_open`] / [`Interval::from_half_open`].
///
/// Invariant: `1 <= start <= end <= MAX_GNO`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Interval {
    start: u64,
    end: u64,
}

impl Interval {
    /// `start..=end`; fails if either is outside `1..=MAX_GNO` or
    /// `start > end`.
    pub fn new(start: u64, end: u64) -> Result<Interval> {
        check_gno(start)?;
        check_gno(end)?;
        if start > end {
            return Err(Error::IntervalReversed { start, end });
        }
        Ok(Interval { start, end })
    }

    /// The one-transaction interval `gno..=gno`.
    pub fn single(gno: u64) -> Result<Interval> {
        Interval::new(gno, gno)
    }

    /// Caller guarantees the invariant.
    pub(crate) const fn new_unchecked(start: u64, end: u64) -> Interval {
        Interval { start, end }
    }

    /// First transaction number in the interval.
    pub const fn start(self) -> u64 {
        self.start
    }

    /// Last transaction number in the interval (inclusive).
    pub const fn end(self) -> u64 {
        self.end
    }

    /// Number of transactions, at least 1.
    pub const fn count(self) -> u64 {
        self.end - self.start + 1
    }

    /// Whether `gno` lies in the interval.
    pub const fn contains(self, gno: u64) -> bool {
        self.start <= gno && gno <= self.end
    }

    /// The binlog's half-open form `(start, end_exclusive)`. Both fit in an
    /// `i64`, as the binlog stores them.
    pub const fn to_half_open(self) -> (u64, u64) {
        (self.start, self.end + 1)
    }

    /// From the binlog's half-open `[start, end_exclusive)`; fails on an
    /// empty or out-of-range interval.
    pub fn from_half_open(start: u64, end_exclusive: u64) -> Result<Interval> {
        if end_exclusive <= start {
            return Err(Error::IntervalReversed {
                start,
                end: end_exclusive.saturating_sub(1),
            });
        }
        Interval::new(start, end_exclusive - 1)
    }
}

impl fmt::Display for Interval {
    /// MySQL's text: `7` or `1-5`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.start == self.end {
            write!(f, "{}", self.start)
        } else {
            write!(f, "{}-{}", self.start, self.end)
        }
    }
}

impl fmt::Debug for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}..={}", self.start, self.end)
    }
}

/// Whether `gno` is in the canonical list `v`. O(1) for a gno in the last
/// interval (a recent write against an up-to-date view), else O(log n).
pub(crate) fn contains(v: &[Interval], gno: u64) -> bool {
    match v.last() {
        Some(last) if last.start <= gno => return gno <= last.end,
        None => return false,
        Some(_) => {}
    }
    let i = v.partition_point(|iv| iv.end < gno);
    i < v.len() && v[i].start <= gno
}

/// Whether all of `iv` is in `v`. O(log n).
pub(crate) fn contains_interval(v: &[Interval], iv: Interval) -> bool {
    let i = v.partition_point(|x| x.end < iv.start);
    i < v.len() && v[i].start <= iv.start && iv.end <= v[i].end
}

/// Adds `iv` to `v`, merging neighbours. Appending at (or just past) the
/// end, the common case for a replica's view, is O(1).
/// Returns whether `v` changed.
pub(crate) fn insert(v: &mut Vec<Interval>, iv: Interval) -> bool {
    if let Some(last) = v.last_mut() {
        if iv.start > last.end + 1 {
            v.push(iv);
            return true;
        }
        if iv.start >= last.start {
            let changed = iv.end > last.end;
            if changed {
                last.end = iv.end;
            }
            return changed;
        }
    } else {
        v.push(iv);
        return true;
    }
    insert_general(v, iv)
}

fn insert_general(v: &mut Vec<Interval>, iv: Interval) -> bool {
    // First interval that touches or follows `iv`, and first that is
    // strictly after it (not even adjacent). `end + 1` cannot overflow:
    // every gno is at most MAX_GNO < u64::MAX.
    let lo = v.partition_point(|x| x.end + 1 < iv.start);
    let hi = v.partition_point(|x| x.start <= iv.end + 1);
    if lo == hi {
        v.insert(lo, iv);
        return true;
    }
    let first = v[lo];
    if hi == lo + 1 && first.start <= iv.start && iv.end <= first.end {
        return false;
    }
    let merged = Interval {
        start: first.start.min(iv.start),
        end: v[hi - 1].end.max(iv.end),
    };
    v[lo] = merged;
    v.drain(lo + 1..hi);
    true
}

/// Pushes `iv` onto `out`, merging with the last interval if they touch.
/// `iv.start` must not be before the last interval's start.
fn push_merge(out: &mut Vec<Interval>, iv: Interval) {
    if let Some(last) = out.last_mut() {
        if iv.start <= last.end + 1 {
            last.end = last.end.max(iv.end);
            return;
        }
    }
    out.push(iv);
}

/// `a ∪ b`. O(|a| + |b|).
pub(crate) fn union(a: &[Interval], b: &[Interval]) -> Vec<Interval> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        if a[i].start <= b[j].start {
            push_merge(&mut out, a[i]);
            i += 1;
        } else {
            push_merge(&mut out, b[j]);
            j += 1;
        }
    }
    for &iv in a[i..].iter().chain(&b[j..]) {
        push_merge(&mut out, iv);
    }
    out
}

/// `a ∪= b`, choosing per-interval insertion when `b` is small (a delta)
/// and a linear merge otherwise.
pub(crate) fn union_into(a: &mut Vec<Interval>, b: &[Interval]) {
    if b.len() <= 8 || b.len().saturating_mul(16) < a.len() {
        for &iv in b {
            insert(a, iv);
        }
    } else {
        *a = union(a, b);
    }
}

/// `a ∖ b`. O(|a| + |b|).
pub(crate) fn subtract(a: &[Interval], b: &[Interval]) -> Vec<Interval> {
    let mut out = Vec::with_capacity(a.len());
    let mut j = 0;
    for &iv in a {
        let mut start = iv.start;
        // Skip the parts of `b` entirely before this interval.
        while j < b.len() && b[j].end < start {
            j += 1;
        }
        let mut k = j;
        while k < b.len() && b[k].start <= iv.end {
            if b[k].start > start {
                out.push(Interval {
                    start,
                    end: b[k].start - 1,
                });
            }
            if b[k].end >= iv.end {
                start = iv.end + 1; // nothing left of `iv`
                break;
            }
            start = b[k].end + 1;
            k += 1;
        }
        if start <= iv.end {
            out.push(Interval { start, end: iv.end });
        }
        j = k;
    }
    out
}

/// `a ∩ b`. O(|a| + |b|).
pub(crate) fn intersect(a: &[Interval], b: &[Interval]) -> Vec<Interval> {
    let mut out = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        let start = a[i].start.max(b[j].start);
        let end = a[i].end.min(b[j].end);
        if start <= end {
            out.push(Interval { start, end });
        }
        if a[i].end < b[j].end {
            i += 1;
        } else {
            j += 1;
        }
    }
    out
}

/// Whether `a ⊆ b`. O(|a| + |b|), or O(|a| log |b|) when `a` is small.
pub(crate) fn is_subset(a: &[Interval], b: &[Interval]) -> bool {
    if a.len() <= 4 {
        return a.iter().all(|&iv| contains_interval(b, iv));
    }
    let mut j = 0;
    for &iv in a {
        while j < b.len() && b[j].end < iv.start {
            j += 1;
        }
        if j == b.len() || b[j].start > iv.start || b[j].end < iv.end {
            return false;
        }
    }
    true
}

/// Total number of transactions in `v`.
pub(crate) fn count(v: &[Interval]) -> u128 {
    v.iter().map(|iv| u128::from(iv.count())).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MAX_GNO;

    fn iv(s: u64, e: u64) -> Interval {
        Interval::new(s, e).unwrap()
    }

    fn list(pairs: &[(u64, u64)]) -> Vec<Interval> {
        pairs.iter().map(|&(s, e)| iv(s, e)).collect()
    }

    #[test]
    fn new_checks_range_and_order() {
        assert_eq!(Interval::new(0, 1), Err(Error::GnoOutOfRange(0)));
        assert_eq!(
            Interval::new(1, MAX_GNO + 1),
            Err(Error::GnoOutOfRange(MAX_GNO + 1))
        );
        assert_eq!(
            Interval::new(5, 3),
            Err(Error::IntervalReversed { start: 5, end: 3 })
        );
        assert_eq!(iv(1, MAX_GNO).count(), MAX_GNO);
    }

    #[test]
    fn half_open_conversion() {
        assert_eq!(iv(1, 5).to_half_open(), (1, 6));
        assert_eq!(Interval::from_half_open(1, 6), Ok(iv(1, 5)));
        assert!(Interval::from_half_open(3, 3).is_err());
        let max = iv(MAX_GNO, MAX_GNO).to_half_open();
        assert_eq!(max.1, i64::MAX as u64, "end fits the binlog's int64");
        assert_eq!(
            Interval::from_half_open(max.0, max.1),
            Ok(iv(MAX_GNO, MAX_GNO))
        );
    }

    #[test]
    fn insert_appends_merges_and_fills_holes() {
        let mut v = Vec::new();
        assert!(insert(&mut v, iv(1, 1)));
        assert!(insert(&mut v, iv(2, 2)));
        assert!(!insert(&mut v, iv(2, 2)));
        assert!(insert(&mut v, iv(4, 4)));
        assert_eq!(v, list(&[(1, 2), (4, 4)]));
        assert!(insert(&mut v, iv(10, 12)));
        assert!(insert(&mut v, iv(7, 7)));
        assert_eq!(v, list(&[(1, 2), (4, 4), (7, 7), (10, 12)]));
        assert!(insert(&mut v, iv(3, 8)));
        assert_eq!(v, list(&[(1, 8), (10, 12)]));
        assert!(!insert(&mut v, iv(5, 6)));
        assert!(insert(&mut v, iv(9, 9)));
        assert_eq!(v, list(&[(1, 12)]));
    }

    #[test]
    fn set_operations() {
        let a = list(&[(1, 5), (10, 20), (30, 30)]);
        let b = list(&[(4, 12), (20, 25), (31, 40)]);
        assert_eq!(union(&a, &b), list(&[(1, 25), (30, 40)]));
        assert_eq!(subtract(&a, &b), list(&[(1, 3), (13, 19), (30, 30)]));
        assert_eq!(subtract(&b, &a), list(&[(6, 9), (21, 25), (31, 40)]));
        assert_eq!(intersect(&a, &b), list(&[(4, 5), (10, 12), (20, 20)]));
        assert!(is_subset(&list(&[(2, 3), (11, 19)]), &a));
        assert!(!is_subset(&list(&[(2, 3), (11, 21)]), &a));
        assert!(is_subset(&[], &a));
        assert!(!is_subset(&a, &[]));
        assert_eq!(count(&a), 5 + 11 + 1);
    }

    #[test]
    fn subtract_splits_one_interval_many_times() {
        let a = list(&[(1, 100)]);
        let b = list(&[(10, 10), (20, 29), (100, 100)]);
        assert_eq!(subtract(&a, &b), list(&[(1, 9), (11, 19), (30, 99)]));
        assert_eq!(subtract(&a, &a), Vec::new());
    }

    #[test]
    fn contains_checks() {
        let a = list(&[(1, 5), (10, 20)]);
        assert!(contains(&a, 1) && contains(&a, 5) && contains(&a, 15));
        assert!(!contains(&a, 6) && !contains(&a, 21) && !contains(&[], 1));
        assert!(contains_interval(&a, iv(10, 20)));
        assert!(!contains_interval(&a, iv(5, 10)));
    }
}
