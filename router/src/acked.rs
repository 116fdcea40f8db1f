//! The GTIDs the router acknowledged to clients in one cluster: all of them
//! (what a `router` read must see, and what a new writer must hold) and per
//! user (what a `user` read must see). Pure: the caller holds the lock and
//! passes what every server has.
//!
//! ```text
//! OK packet with GTIDs, user u ──> acknowledge(u, set): all ∪= set, users[u] ∪= set
//!                                  (before the client gets the OK)
//! read, scope router ──> needs `all`;  scope user ──> needs users[u], else `evicted`
//! users[u] past `user_intervals` ──> its holes filled with `all` between its first and
//!                                    last GTID of each source (never more than `all` has)
//! compact(everywhere) ──> every set past its bound: holes filled with what every server has
//! past `max_users` users ──> the least recently written eighth merges into `evicted`, which a
//!                            user without a set needs (and a returning user's set starts from)
//! ```
//!
//! Why a read is never stale: each set only grows, and holds at least what
//! it must (`users[u]` every GTID acknowledged to `u` since it was last
//! evicted, `evicted` everything acknowledged to the users evicted so far,
//! `all` everything). What the bounds add was committed (acknowledged to
//! someone, or applied by every server), so it only makes a read wait for
//! a GTID it did not need, never wait for one that will not come.
//!
//! Memory: at most `max_users` user sets per cluster, each at most
//! `user_intervals` intervals, or as many as `all` had when it was last
//! coarsened; `all` is compacted by [`Acked::compact`] (a few dozen
//! intervals).

use std::collections::HashMap;
use std::time::Instant;

use causeway_gtid::{GtidSet, Interval};

/// A cluster's whole set is compacted past this many intervals.
pub const ALL_INTERVALS: usize = 64;

/// A user's set is coarsened past this many intervals.
pub const USER_INTERVALS: usize = 16;

/// At most this many users keep a set of their own, per cluster.
pub const MAX_USERS: usize = 10_000;

/// One cluster's acknowledged GTIDs.
#[derive(Debug, Clone)]
pub struct Acked {
    all: GtidSet,
    /// When the last GTID was acknowledged.
    all_at: Option<Instant>,
    users: HashMap<Box<str>, UserSet>,
    /// The sets of users evicted (past `max_users`), merged.
    evicted: GtidSet,
    /// Acknowledgements so far: orders users by their last write.
    tick: u64,
    max_users: usize,
    user_intervals: usize,
}

#[derive(Debug, Clone)]
struct UserSet {
    set: GtidSet,
    /// When the user's last GTID was acknowledged.
    at: Instant,
    /// `tick` of its last acknowledgement.
    last: u64,
}

impl Default for Acked {
    fn default() -> Self {
        Acked::with_bounds(MAX_USERS, USER_INTERVALS)
    }
}

impl Acked {
    /// Empty, keeping at most `max_users` user sets of at most about
    /// `user_intervals` intervals.
    pub fn with_bounds(max_users: usize, user_intervals: usize) -> Acked {
        Acked {
            all: GtidSet::new(),
            all_at: None,
            users: HashMap::new(),
            evicted: GtidSet::new(),
            tick: 0,
            max_users: max_users.max(1),
            user_intervals: user_intervals.max(1),
        }
    }

    /// `set` was returned to `user` in an OK packet at `now`.
    pub fn acknowledge(&mut self, user: &str, set: &GtidSet, now: Instant) {
        self.all.union_with(set);
        self.all_at = Some(now);
        self.tick += 1;
        let tick = self.tick;
        let entry = match self.users.get_mut(user) {
            Some(e) => e,
            None => self.users.entry(user.into()).or_insert_with(|| UserSet {
                set: self.evicted.clone(),
                at: now,
                last: tick,
            }),
        };
        entry.set.union_with(set);
        entry.at = now;
        entry.last = tick;
        if entry.set.interval_count() > self.user_intervals {
            coarsen(&mut entry.set, &self.all);
        }
        if self.users.len() > self.max_users {
            self.evict();
        }
    }

    /// Every GTID acknowledged in the cluster.
    pub fn all(&self) -> &GtidSet {
        &self.all
    }

    /// What a `user` read of `user` must see: every GTID acknowledged to it.
    pub fn user(&self, user: &str) -> &GtidSet {
        self.users.get(user).map_or(&self.evicted, |u| &u.set)
    }

    /// When the last GTID was acknowledged: to `user`, or to anyone
    /// (`None`). Unknown for a user without a set of its own.
    pub fn last_at(&self, user: Option<&str>) -> Option<Instant> {
        match user {
            Some(u) => self.users.get(u).map(|u| u.at),
            None => self.all_at,
        }
    }

    /// Users with a set of their own.
    pub fn users(&self) -> usize {
        self.users.len()
    }

    /// Fills the holes of every set longer than its bound (`all`: `max`
    /// intervals) with `everywhere`, GTIDs every server of the cluster has
    /// applied.
    pub fn compact(&mut self, everywhere: &GtidSet, max: usize) {
        if self.all.interval_count() > max {
            self.all.union_with(everywhere);
        }
        let bound = self.user_intervals;
        for u in self.users.values_mut() {
            if u.set.interval_count() > bound {
                u.set.union_with(everywhere);
            }
        }
        if self.evicted.interval_count() > bound {
            self.evicted.union_with(everywhere);
        }
    }

    /// The least recently written eighth of the users (at least one) merge
    /// into `evicted`.
    fn evict(&mut self) {
        let mut by_age: Vec<(u64, Box<str>)> = self
            .users
            .iter()
            .map(|(name, u)| (u.last, name.clone()))
            .collect();
        by_age.sort_unstable();
        let n = (self.users.len() / 8).max(1);
        for (_, name) in by_age.into_iter().take(n) {
            if let Some(u) = self.users.remove(&name) {
                self.evicted.union_with(&u.set);
            }
        }
        if self.evicted.interval_count() > self.user_intervals {
            coarsen(&mut self.evicted, &self.all);
        }
    }
}

/// Fills the holes of `set` with what `all` has between the first and the
/// last GTID of each of its sources (`set` ⊆ `all`, so it stays within it).
fn coarsen(set: &mut GtidSet, all: &GtidSet) {
    let mut hull = GtidSet::new();
    for (source, ivs) in set.iter() {
        if let (Some(first), Some(last)) = (ivs.first(), ivs.last()) {
            if let Ok(iv) = Interval::new(first.start(), last.end()) {
                hull.insert_interval(*source, iv);
            }
        }
    }
    set.union_with(&hull.intersection(all));
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const U: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";

    fn set(r: &str) -> GtidSet {
        GtidSet::parse(&format!("{U}:{r}")).unwrap()
    }

    #[test]
    fn users_see_their_own_and_the_router_sees_all() {
        let mut a = Acked::default();
        a.acknowledge("app", &set("1"), Instant::now());
        a.acknowledge("admin", &set("2"), Instant::now());
        a.acknowledge("app", &set("3"), Instant::now());
        assert_eq!(a.user("app"), &set("1:3"));
        assert_eq!(a.user("admin"), &set("2"));
        assert_eq!(a.user("nobody"), &GtidSet::new());
        assert_eq!(a.all(), &set("1-3"));
        let later = Instant::now();
        a.acknowledge("admin", &set("4"), later);
        assert_eq!(a.last_at(None), Some(later));
        assert_eq!(a.last_at(Some("admin")), Some(later));
        assert!(a.last_at(Some("app")).is_some_and(|t| t <= later));
        assert_eq!(a.last_at(Some("nobody")), None);
    }

    #[test]
    fn a_long_user_set_is_filled_from_all_within_its_span() {
        let mut a = Acked::with_bounds(10, 2);
        let ack = |a: &mut Acked, user, gno: u64| {
            a.acknowledge(user, &set(&gno.to_string()), Instant::now())
        };
        ack(&mut a, "other", 2);
        ack(&mut a, "other", 4);
        for gno in [1, 3, 5] {
            ack(&mut a, "app", gno);
        }
        // app: 1:3:5 is three intervals, past 2: filled from all (1-5).
        assert_eq!(a.user("app"), &set("1-5"));
        ack(&mut a, "other", 6);
        ack(&mut a, "other", 9);
        // other: 2:4:6 filled (2-6), then 9 (7-8 were never acknowledged).
        assert_eq!(a.user("other"), &set("2-6:9"));
        // Never more than was acknowledged.
        let mut b = Acked::with_bounds(10, 2);
        for gno in [1, 3, 5] {
            ack(&mut b, "app", gno);
        }
        assert_eq!(b.user("app"), &set("1:3:5"));
    }

    #[test]
    fn evicted_users_need_what_they_wrote() {
        let mut a = Acked::with_bounds(2, 16);
        a.acknowledge("a", &set("1"), Instant::now());
        a.acknowledge("b", &set("2"), Instant::now());
        a.acknowledge("c", &set("3"), Instant::now()); // a, the oldest, goes
        assert_eq!(a.users(), 2);
        assert_eq!(a.user("a"), &set("1"), "a needs what it wrote");
        assert_eq!(a.user("never"), &set("1"), "so does any user without a set");
        a.acknowledge("a", &set("4"), Instant::now()); // b goes; a starts from the evicted set
        assert!(set("1:4").is_subset(a.user("a")));
        assert!(set("2").is_subset(a.user("b")));
        assert!(set("3").is_subset(a.user("c")));
    }

    #[test]
    fn compaction_fills_holes_past_the_bounds() {
        let mut a = Acked::with_bounds(10, 2);
        a.acknowledge("a", &set("1"), Instant::now());
        a.acknowledge("b", &set("3"), Instant::now());
        a.acknowledge("b", &set("5"), Instant::now());
        a.compact(&set("1-4"), 3);
        assert_eq!(a.all(), &set("1:3:5"), "all within its bound");
        a.compact(&set("1-4"), 2);
        assert_eq!(a.all(), &set("1-5"));
        assert_eq!(a.user("a"), &set("1"), "within its bound");
    }

    proptest! {
        /// Whatever the order and the bounds: a user's needed set holds
        /// every GTID acknowledged to it, stays within what was
        /// acknowledged (no compaction here), within its bound of
        /// intervals or as many as `all` ever had, and `all` is the union
        /// of everything.
        #[test]
        fn sets_hold_what_they_must_and_stay_bounded(
            acks in prop::collection::vec((0u8..12, 1u64..400), 1..300),
            max_users in 1usize..6,
            user_intervals in 1usize..5,
        ) {
            let mut a = Acked::with_bounds(max_users, user_intervals);
            let mut mine: HashMap<String, GtidSet> = HashMap::new();
            let mut everything = GtidSet::new();
            let mut widest = 0;
            for (user, gno) in acks {
                let name = format!("u{user}");
                let s = set(&gno.to_string());
                a.acknowledge(&name, &s, Instant::now());
                mine.entry(name).or_default().union_with(&s);
                everything.union_with(&s);
                widest = widest.max(everything.interval_count());
            }
            prop_assert_eq!(a.all(), &everything);
            prop_assert!(a.users() <= max_users);
            for (name, own) in &mine {
                let needed = a.user(name);
                prop_assert!(own.is_subset(needed), "{} lost a write", name);
                prop_assert!(needed.is_subset(&everything));
                prop_assert!(
                    needed.interval_count() <= user_intervals.max(widest)
                );
            }
        }
    }
}
