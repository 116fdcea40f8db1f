//! What the router knows about its clusters' writers beyond the monitor:
//! every GTID it acknowledged to a client (per cluster, by writer group
//! name; all of them and per user, see [`crate::acked`]), and the
//! statements waiting for a writer (the failover buffer).
//! [`crate::shared::Shared::follow_monitor`] elects writers from these;
//! sessions add to them, and `user` and `router` reads need them.
//!
//! ```text
//! OK packet with GTIDs ──> acknowledge(cluster, user, set)    (interval sets: a few intervals)
//! read in scope user / router ──> needed(cluster, whose, &mut set)
//! statement finds no writer ──> wait(): a slot (bounded per cluster) ──> woken by every new
//!                               Current, or its window ends (ERR 9006)
//! ```

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use causeway_gtid::GtidSet;
use tokio::sync::watch;

use crate::acked::Acked;

/// Whose acknowledged writes a read needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Whose<'a> {
    /// Those acknowledged to this user (`user` scope).
    User(&'a str),
    /// All of them (`router` scope).
    All,
}

/// Acknowledged GTIDs and waiting statements, per cluster.
#[derive(Debug)]
pub struct Writers {
    acked: Mutex<HashMap<String, Acked>>,
    /// Acknowledged GTIDs a writer lacked when it was taken by policy.
    lost: Mutex<HashMap<String, GtidSet>>,
    /// Servers fenced and not back in service since (by name).
    fenced: Mutex<std::collections::HashSet<String>>,
    waiting: Mutex<HashMap<String, usize>>,
    /// Bumped whenever the configuration in force or membership changes.
    changed: watch::Sender<u64>,
}

impl Default for Writers {
    fn default() -> Self {
        Writers {
            acked: Mutex::default(),
            lost: Mutex::default(),
            fenced: Mutex::default(),
            waiting: Mutex::default(),
            changed: watch::channel(0).0,
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Writers {
    /// The router is about to return `set` to a client logged in as
    /// `user` in an OK packet of a server of `cluster` (its writer group's
    /// name). Returns how many intervals the cluster's whole set has now.
    pub fn acknowledge(&self, cluster: &str, user: &str, set: &GtidSet) -> usize {
        let mut acked = lock(&self.acked);
        let a = match acked.get_mut(cluster) {
            Some(a) => a,
            None => acked.entry(cluster.to_string()).or_default(),
        };
        a.acknowledge(user, set, Instant::now());
        a.all().interval_count()
    }

    /// Adds to `into` what a read of `cluster` must see of the GTIDs
    /// acknowledged so far (`whose`); returns when the last of them was
    /// acknowledged, when known.
    pub fn needed(&self, cluster: &str, whose: Whose<'_>, into: &mut GtidSet) -> Option<Instant> {
        let acked = lock(&self.acked);
        let a = acked.get(cluster)?;
        match whose {
            Whose::User(user) => {
                into.union_with(a.user(user));
                a.last_at(Some(user))
            }
            Whose::All => {
                into.union_with(a.all());
                a.last_at(None)
            }
        }
    }

    /// Keeps `cluster`'s sets a few intervals long: past `max` intervals
    /// (other clients' writes make holes in what this router saw), the
    /// holes are filled with what every usable server of the cluster has
    /// applied (`everywhere`); users' sets likewise past theirs. A new
    /// writer must then hold those too, which it must anyway: they were
    /// committed and replicated.
    pub fn compact(&self, cluster: &str, everywhere: &GtidSet, max: usize) {
        if let Some(a) = lock(&self.acked).get_mut(cluster) {
            a.compact(everywhere, max);
        }
    }

    /// Per cluster: intervals of its whole acknowledged set, and users
    /// with a set of their own (what the sets cost in memory).
    pub fn sizes(&self) -> HashMap<String, (usize, usize)> {
        lock(&self.acked)
            .iter()
            .map(|(c, a)| (c.clone(), (a.all().interval_count(), a.users())))
            .collect()
    }

    /// `cluster`'s new writer, taken by policy, lacked `missing`.
    pub fn lose(&self, cluster: &str, missing: &GtidSet) {
        lock(&self.lost)
            .entry(cluster.to_string())
            .or_default()
            .union_with(missing);
    }

    /// Per cluster, the acknowledged GTIDs its writers lacked when taken by
    /// policy (since the router started).
    pub fn lost(&self) -> HashMap<String, GtidSet> {
        lock(&self.lost).clone()
    }

    /// The servers fenced and not back in service since, updated with
    /// `add` (fenced now) and `back` (elected, or replicating again).
    pub fn fenced(
        &self,
        add: impl IntoIterator<Item = String>,
        back: impl Fn(&str) -> bool,
    ) -> std::collections::HashSet<String> {
        let mut f = lock(&self.fenced);
        f.extend(add);
        f.retain(|s| !back(s));
        f.clone()
    }

    /// Every cluster's acknowledged set.
    pub fn acknowledged(&self) -> HashMap<String, GtidSet> {
        lock(&self.acked)
            .iter()
            .map(|(c, a)| (c.clone(), a.all().clone()))
            .collect()
    }

    /// A statement of `cluster` starts waiting for a writer: a slot, or
    /// `None` when `max` wait already.
    pub fn enter(&self, cluster: &str, max: usize) -> Option<Slot<'_>> {
        let mut waiting = lock(&self.waiting);
        let n = waiting.entry(cluster.to_string()).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(Slot {
            writers: self,
            cluster: cluster.to_string(),
        })
    }

    /// Statements waiting for a writer now, per cluster.
    pub fn waiting(&self) -> HashMap<String, usize> {
        lock(&self.waiting).clone()
    }

    /// A receiver woken by every [`Writers::bump`].
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// The configuration in force or membership changed.
    pub fn bump(&self) {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// A statement waiting for a writer; leaves the count when dropped.
#[derive(Debug)]
pub struct Slot<'a> {
    writers: &'a Writers,
    cluster: String,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        if let Some(n) = lock(&self.writers.waiting).get_mut(&self.cluster) {
            *n = n.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acknowledged_sets_grow_per_cluster() {
        let w = Writers::default();
        let u = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
        let set = |r: &str| GtidSet::parse(&format!("{u}:{r}")).unwrap();
        w.acknowledge("a", "app", &set("1"));
        w.acknowledge("a", "admin", &set("2-3"));
        w.acknowledge("b", "app", &set("7"));
        let acked = w.acknowledged();
        assert_eq!(acked["a"], set("1-3"));
        assert_eq!(acked["b"], set("7"));
        let needed = |c, whose| {
            let mut n = GtidSet::new();
            w.needed(c, whose, &mut n);
            n
        };
        assert_eq!(needed("a", Whose::User("app")), set("1"));
        assert_eq!(needed("a", Whose::User("admin")), set("2-3"));
        assert_eq!(needed("a", Whose::User("nobody")), GtidSet::new());
        assert_eq!(needed("a", Whose::All), set("1-3"));
        assert_eq!(needed("b", Whose::User("admin")), GtidSet::new());
        assert_eq!(needed("none", Whose::All), GtidSet::new());
        assert_eq!(w.sizes()["a"], (1, 2));
    }

    #[test]
    fn holes_are_filled_from_what_every_server_has_past_the_bound() {
        let w = Writers::default();
        let u = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
        let set = |r: &str| GtidSet::parse(&format!("{u}:{r}")).unwrap();
        w.acknowledge("a", "app", &set("1:3:5"));
        w.compact("a", &set("1-9"), 3);
        assert_eq!(w.acknowledged()["a"], set("1:3:5"), "within the bound");
        w.acknowledge("a", "app", &set("7"));
        w.compact("a", &set("1-9"), 3);
        assert_eq!(w.acknowledged()["a"], set("1-9"));
    }

    #[test]
    fn slots_are_bounded_per_cluster_and_given_back_on_drop() {
        let w = Writers::default();
        let a = w.enter("a", 2).unwrap();
        let b = w.enter("a", 2).unwrap();
        assert!(w.enter("a", 2).is_none(), "the third waits no more");
        let other = w.enter("other", 2).unwrap();
        assert_eq!(w.waiting()["a"], 2);
        drop(a);
        assert_eq!(w.waiting()["a"], 1);
        let c = w.enter("a", 2).unwrap();
        drop((b, c, other));
        assert_eq!(w.waiting()["a"], 0);
        assert!(w.enter("a", 0).is_none(), "max 0: nothing waits");
    }
}
