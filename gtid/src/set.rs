//! [`GtidSet`]: exact sets of GTIDs.

use std::fmt;

use crate::error::Result;
use crate::interval::{self, Interval};
use crate::source::{Gtid, SourceId};

/// A set of GTIDs: per [`SourceId`], a canonical list of inclusive
/// [`Interval`]s (sorted, non-overlapping, non-adjacent).
///
/// Intervals are **inclusive** `[start, end]`, as in MySQL's text
/// (`uuid:1-5` = transactions 1..=5). Only the binlog uses half-open
/// `[start, end)`; convert there with [`Interval::to_half_open`].
///
/// Sources are kept in a sorted `Vec` (clusters have a handful), each with a
/// sorted `Vec<Interval>`: lookups are two binary searches, appending the
/// next gno of a source is O(1). A source never has an empty list.
///
/// Text: [`GtidSet::parse`] / [`std::str::FromStr`] read MySQL's form;
/// [`fmt::Display`] writes it exactly as `SELECT @@gtid_executed` does.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct GtidSet {
    sources: Vec<Entry>,
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct Entry {
    id: SourceId,
    intervals: Vec<Interval>,
}

impl GtidSet {
    /// The empty set.
    pub const fn new() -> GtidSet {
        GtidSet {
            sources: Vec::new(),
        }
    }

    /// Parses MySQL's text form; see [`crate::text`] for the grammar.
    pub fn parse(text: &str) -> Result<GtidSet> {
        crate::text::parse_set(text.as_bytes())
    }

    /// Parses MySQL's text form from raw bytes (e.g. an OK packet's session
    /// tracker payload). Non-ASCII bytes are errors.
    pub fn parse_bytes(text: &[u8]) -> Result<GtidSet> {
        crate::text::parse_set(text)
    }

    /// Whether the set holds no transaction.
    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }

    /// Number of transactions (can exceed `u64` across sources).
    pub fn count(&self) -> u128 {
        self.sources
            .iter()
            .map(|e| interval::count(&e.intervals))
            .sum()
    }

    /// Number of sources with at least one transaction.
    pub fn source_count(&self) -> usize {
        self.sources.len()
    }

    /// Number of intervals over all sources.
    pub fn interval_count(&self) -> usize {
        self.sources.iter().map(|e| e.intervals.len()).sum()
    }

    fn find(&self, id: &SourceId) -> std::result::Result<usize, usize> {
        self.sources.binary_search_by(|e| e.id.cmp(id))
    }

    /// The intervals of one source, empty if it has none.
    pub fn intervals(&self, id: &SourceId) -> &[Interval] {
        match self.find(id) {
            Ok(i) => &self.sources[i].intervals,
            Err(_) => &[],
        }
    }

    /// Sources in MySQL's order with their intervals.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&SourceId, &[Interval])> + '_ {
        self.sources.iter().map(|e| (&e.id, e.intervals.as_slice()))
    }

    /// The highest gno of a source, if any.
    pub fn last_gno(&self, id: &SourceId) -> Option<u64> {
        self.intervals(id).last().map(|iv| iv.end())
    }

    /// Whether the set holds `gtid`. Two binary searches.
    pub fn contains(&self, gtid: &Gtid) -> bool {
        self.contains_gno(gtid.source(), gtid.gno())
    }

    /// Whether the set holds `gno` of `id`.
    pub fn contains_gno(&self, id: &SourceId, gno: u64) -> bool {
        interval::contains(self.intervals(id), gno)
    }

    /// The intervals of `id`, created empty if missing. Callers must leave
    /// them non-empty or call [`GtidSet::prune`].
    pub(crate) fn entry_mut(&mut self, id: SourceId) -> &mut Vec<Interval> {
        let i = match self.find(&id) {
            Ok(i) => i,
            Err(i) => {
                // Sources are few and rarely added: grow exactly, so a small
                // set stays small.
                self.sources.reserve_exact(1);
                self.sources.insert(
                    i,
                    Entry {
                        id,
                        intervals: Vec::with_capacity(1),
                    },
                );
                i
            }
        };
        &mut self.sources[i].intervals
    }

    /// Drops sources left without intervals.
    pub(crate) fn prune(&mut self) {
        self.sources.retain(|e| !e.intervals.is_empty());
    }

    /// Appends a source known to sort after every current source.
    /// `intervals` must be canonical and non-empty.
    pub(crate) fn push_source_unchecked(&mut self, id: SourceId, intervals: Vec<Interval>) {
        debug_assert!(self.sources.last().is_none_or(|e| e.id < id));
        debug_assert!(!intervals.is_empty());
        self.sources.push(Entry { id, intervals });
    }

    /// Adds one transaction; returns whether it was new. Appending the next
    /// gno of a source is O(1).
    pub fn insert(&mut self, gtid: Gtid) -> bool {
        let gno = gtid.gno();
        self.insert_interval(*gtid.source(), Interval::new_unchecked(gno, gno))
    }

    /// Adds an interval of one source; returns whether the set changed.
    pub fn insert_interval(&mut self, id: SourceId, iv: Interval) -> bool {
        interval::insert(self.entry_mut(id), iv)
    }

    /// Removes one source and returns its intervals.
    pub fn remove_source(&mut self, id: &SourceId) -> Vec<Interval> {
        match self.find(id) {
            Ok(i) => self.sources.remove(i).intervals,
            Err(_) => Vec::new(),
        }
    }

    /// Removes everything.
    pub fn clear(&mut self) {
        self.sources.clear();
    }

    /// `self ∪= other`. Cheap when `other` is a small delta.
    pub fn union_with(&mut self, other: &GtidSet) {
        for e in &other.sources {
            interval::union_into(self.entry_mut(e.id), &e.intervals);
        }
    }

    /// `self ∪ other`.
    pub fn union(&self, other: &GtidSet) -> GtidSet {
        let mut out = self.clone();
        out.union_with(other);
        out
    }

    /// `self ∖= other`.
    pub fn subtract(&mut self, other: &GtidSet) {
        for e in &mut self.sources {
            let theirs = other.intervals(&e.id);
            if !theirs.is_empty() {
                e.intervals = interval::subtract(&e.intervals, theirs);
            }
        }
        self.prune();
    }

    /// `self ∖ other`: what `self` has that `other` lacks (e.g. the delta
    /// from an old view to a new one: `new.difference(&old)`).
    pub fn difference(&self, other: &GtidSet) -> GtidSet {
        let mut out = self.clone();
        out.subtract(other);
        out
    }

    /// `self ∩ other`.
    pub fn intersection(&self, other: &GtidSet) -> GtidSet {
        let sources = self
            .sources
            .iter()
            .filter_map(|e| {
                let theirs = other.intervals(&e.id);
                let intervals = interval::intersect(&e.intervals, theirs);
                (!intervals.is_empty()).then_some(Entry {
                    id: e.id,
                    intervals,
                })
            })
            .collect();
        GtidSet { sources }
    }

    /// Whether every transaction of `self` is in `other`: "has the server
    /// whose view is `other` applied everything in `self`?".
    pub fn is_subset(&self, other: &GtidSet) -> bool {
        self.sources
            .iter()
            .all(|e| interval::is_subset(&e.intervals, other.intervals(&e.id)))
    }

    /// Whether every transaction of `other` is in `self`.
    pub fn is_superset(&self, other: &GtidSet) -> bool {
        other.is_subset(self)
    }

    /// Bytes this set owns on the heap (allocated capacity, not length).
    pub fn heap_size(&self) -> usize {
        self.sources.capacity() * std::mem::size_of::<Entry>()
            + self
                .sources
                .iter()
                .map(|e| e.intervals.capacity() * std::mem::size_of::<Interval>())
                .sum::<usize>()
    }

    /// Releases spare capacity (e.g. after parsing a large snapshot).
    pub fn shrink_to_fit(&mut self) {
        self.sources.shrink_to_fit();
        for e in &mut self.sources {
            e.intervals.shrink_to_fit();
        }
    }

    /// Formats sources separated by `sep`. [`fmt::Display`] uses MySQL's
    /// `",\n"`; pass `","` for a one-line form.
    pub fn display_with<'a>(&'a self, sep: &'a str) -> impl fmt::Display + 'a {
        crate::text::Formatted { set: self, sep }
    }
}

impl fmt::Debug for GtidSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GtidSet({:?})", self.display_with(",").to_string())
    }
}

impl std::str::FromStr for GtidSet {
    type Err = crate::Error;
    fn from_str(s: &str) -> Result<GtidSet> {
        GtidSet::parse(s)
    }
}

impl FromIterator<Gtid> for GtidSet {
    fn from_iter<I: IntoIterator<Item = Gtid>>(iter: I) -> GtidSet {
        let mut set = GtidSet::new();
        set.extend(iter);
        set
    }
}

impl Extend<Gtid> for GtidSet {
    fn extend<I: IntoIterator<Item = Gtid>>(&mut self, iter: I) {
        for g in iter {
            self.insert(g);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::Tag;
    use uuid::Uuid;

    fn src(n: u8) -> SourceId {
        SourceId::new(Uuid::from_bytes([n; 16]))
    }

    fn g(n: u8, gno: u64) -> Gtid {
        Gtid::new(src(n), gno).unwrap()
    }

    #[test]
    fn insert_contains_count() {
        let mut s = GtidSet::new();
        assert!(s.is_empty());
        assert!(s.insert(g(1, 1)));
        assert!(s.insert(g(1, 2)));
        assert!(!s.insert(g(1, 2)));
        assert!(s.insert(g(2, 10)));
        assert!(s.contains(&g(1, 2)) && s.contains(&g(2, 10)));
        assert!(!s.contains(&g(1, 3)) && !s.contains(&g(3, 1)));
        assert_eq!(s.count(), 3);
        assert_eq!(s.source_count(), 2);
        assert_eq!(s.last_gno(&src(1)), Some(2));
        assert_eq!(s.last_gno(&src(3)), None);
    }

    #[test]
    fn tagged_and_untagged_are_distinct_sources() {
        let u = Uuid::from_bytes([1; 16]);
        let tagged = SourceId::tagged(u, Tag::new("t").unwrap());
        let mut s = GtidSet::new();
        s.insert(Gtid::new(SourceId::new(u), 5).unwrap());
        assert!(!s.contains(&Gtid::new(tagged, 5).unwrap()));
        s.insert(Gtid::new(tagged, 5).unwrap());
        assert_eq!(s.source_count(), 2);
    }

    #[test]
    fn subtract_drops_emptied_sources() {
        let mut a: GtidSet = [g(1, 1), g(1, 2), g(2, 1)].into_iter().collect();
        let b: GtidSet = [g(2, 1)].into_iter().collect();
        a.subtract(&b);
        assert_eq!(a.source_count(), 1);
        assert_eq!(a.intervals(&src(2)), &[]);
        assert_eq!(a.difference(&a), GtidSet::new());
        assert!(a.difference(&a).is_empty());
    }

    #[test]
    fn subset_and_intersection() {
        let a: GtidSet = [g(1, 1), g(1, 2), g(2, 7)].into_iter().collect();
        let b: GtidSet = [g(1, 2), g(2, 7), g(3, 1)].into_iter().collect();
        assert!(!a.is_subset(&b));
        let i = a.intersection(&b);
        assert!(i.is_subset(&a) && i.is_subset(&b));
        assert_eq!(i.count(), 2);
        assert!(GtidSet::new().is_subset(&a));
        assert!(a.union(&b).is_superset(&a));
    }

    #[test]
    fn small_sets_stay_small() {
        let mut s = GtidSet::new();
        s.insert_interval(src(1), Interval::new(1, 100_000_000).unwrap());
        assert!(s.heap_size() <= 128, "{} bytes", s.heap_size());
    }
}
