//! Which GTIDs the server has made visible: pure state, no I/O.
//!
//! A GTID travels through two states here:
//!
//! ```text
//!   binlog GTID event ──> Pending ──[confirmed in @@global.gtid_executed]──> Visible
//! ```
//!
//! The dump thread may send a transaction's GTID before the transaction is
//! visible on the server: MySQL's `ordered_commit` advances the binlog end
//! position after flush/sync, and commits to the engine afterwards.
//! `@@global.gtid_executed` is updated only after the engine commit, so a GTID
//! that is in `gtid_executed` is visible to every later read on that server.
//! The reader therefore announces a GTID only once a query has seen it there:
//! `SELECT WAIT_FOR_EXECUTED_GTID_SET('<pending>', 0.02),
//! GTID_SUBTRACT('<pending>', @@global.gtid_executed)` waits on the server
//! (at most 20 ms) until the pending GTIDs are committed, then returns those
//! that are *not yet* visible; the rest are announced. Only the second
//! column decides: the wait just saves asking again. The query is sized by
//! what is pending, not by the server's whole history.
//!
//! The binlog tells the reader *when* to ask (no polling while the server is
//! idle); `gtid_executed` tells it *what* to announce. The announced view is
//! therefore always a subset of the server's visible set: a lower bound, as
//! the router requires.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use causeway_gtid::{Gtid, GtidSet, Interval, SourceId, Uuid};

/// Visible and pending GTIDs of one server.
#[derive(Debug)]
pub struct Tracker {
    server_uuid: Uuid,
    visible: GtidSet,
    pending: GtidSet,
    /// Arrival time of each pending GTID, oldest first (for the visibility
    /// delay histogram and the view's age).
    arrivals: VecDeque<(Gtid, Instant)>,
}

/// What a confirmation changed.
#[derive(Debug, Default, PartialEq)]
pub struct Confirmed {
    /// GTIDs that became visible: the delta to publish (may be empty).
    pub delta: GtidSet,
    /// Binlog arrival to confirmation, one per GTID seen in the binlog.
    pub delays: Vec<Duration>,
}

/// Why a server's state cannot continue the current view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResetReason {
    /// The server UUID changed (re-clone, another server on the port).
    ServerUuidChanged {
        /// UUID of the old view.
        old: Uuid,
        /// UUID now reported.
        new: Uuid,
    },
    /// `gtid_executed` no longer contains the announced view (RESET BINARY
    /// LOGS AND GTIDS, restore from backup, ...).
    ExecutedShrank,
}

impl std::fmt::Display for ResetReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ResetReason::ServerUuidChanged { old, new } => {
                write!(f, "server uuid changed from {old} to {new}")
            }
            ResetReason::ExecutedShrank => {
                f.write_str("gtid_executed no longer contains the announced view")
            }
        }
    }
}

impl Tracker {
    /// Starts from the server's `gtid_executed`, all of it visible.
    pub fn new(server_uuid: Uuid, executed: GtidSet) -> Tracker {
        Tracker {
            server_uuid,
            visible: executed,
            pending: GtidSet::default(),
            arrivals: VecDeque::new(),
        }
    }

    /// The announced view.
    pub fn visible(&self) -> &GtidSet {
        &self.visible
    }

    /// GTIDs seen in the binlog and not yet confirmed.
    pub fn pending(&self) -> &GtidSet {
        &self.pending
    }

    /// The UUID of the server the view belongs to.
    pub fn server_uuid(&self) -> Uuid {
        self.server_uuid
    }

    /// Arrival time of the oldest unconfirmed GTID.
    pub fn oldest_pending(&self) -> Option<Instant> {
        self.arrivals.front().map(|(_, t)| *t)
    }

    /// A GTID event arrived from the binlog. Returns false if it was already
    /// visible or pending (a duplicate after a reconnect).
    pub fn on_binlog_gtid(&mut self, gtid: Gtid, now: Instant) -> bool {
        if self.visible.contains(&gtid) || self.pending.contains(&gtid) {
            return false;
        }
        self.pending.insert(gtid);
        self.arrivals.push_back((gtid, now));
        true
    }

    /// A confirmation query asked about `asked` (a copy of the pending set
    /// when it was sent) and the server answered that `still_invisible` of
    /// those are not in `gtid_executed` yet. Everything else asked is now
    /// visible.
    pub fn on_confirmed(
        &mut self,
        asked: &GtidSet,
        still_invisible: &GtidSet,
        now: Instant,
    ) -> Confirmed {
        let delta = asked.difference(still_invisible);
        self.accept(delta, now)
    }

    /// The server (re)connected and reported its UUID and `gtid_executed`.
    /// Either everything in it is now visible (returned as a delta), or the
    /// server cannot continue this view and a reset is needed.
    pub fn on_server_state(
        &mut self,
        server_uuid: Uuid,
        executed: &GtidSet,
        now: Instant,
    ) -> Result<Confirmed, ResetReason> {
        if server_uuid != self.server_uuid {
            return Err(ResetReason::ServerUuidChanged {
                old: self.server_uuid,
                new: server_uuid,
            });
        }
        if !self.visible.is_subset(executed) {
            return Err(ResetReason::ExecutedShrank);
        }
        let delta = executed.difference(&self.visible);
        Ok(self.accept(delta, now))
    }

    /// Replaces the view after a reset: the new `gtid_executed` is the new
    /// snapshot; nothing is pending.
    pub fn reset(&mut self, server_uuid: Uuid, executed: GtidSet) {
        *self = Tracker::new(server_uuid, executed);
    }

    fn accept(&mut self, delta: GtidSet, now: Instant) -> Confirmed {
        if delta.is_empty() {
            return Confirmed::default();
        }
        self.visible.union_with(&delta);
        self.pending.subtract(&delta);
        let mut delays = Vec::new();
        self.arrivals.retain(|(gtid, at)| {
            if delta.contains(gtid) {
                delays.push(now.saturating_duration_since(*at));
                false
            } else {
                true
            }
        });
        Confirmed { delta, delays }
    }
}

/// The one-GTID set, for building deltas and queries.
pub fn single(gtid: &Gtid) -> GtidSet {
    let mut s = GtidSet::default();
    s.insert(*gtid);
    s
}

/// A GTID from a binlog event's parts.
pub fn gtid_from_event(
    sid: [u8; 16],
    tag: Option<&str>,
    gno: u64,
) -> Result<Gtid, causeway_gtid::Error> {
    let uuid = Uuid::from_bytes(sid);
    let source = match tag {
        Some(t) => SourceId::tagged(uuid, causeway_gtid::Tag::new(t)?),
        None => SourceId::new(uuid),
    };
    Gtid::new(source, gno)
}

/// A set's intervals per source, for building `COM_BINLOG_DUMP_GTID`.
pub fn intervals(set: &GtidSet) -> impl Iterator<Item = (&SourceId, &[Interval])> + '_ {
    set.iter()
}

#[cfg(test)]
mod tests {
    use super::*;

    const U: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";

    fn set(text: &str) -> GtidSet {
        GtidSet::parse(text).unwrap()
    }

    fn gtid(text: &str) -> Gtid {
        Gtid::parse(text).unwrap()
    }

    fn uuid() -> Uuid {
        U.parse().unwrap()
    }

    #[test]
    fn a_binlog_gtid_is_pending_until_confirmed() {
        let t0 = Instant::now();
        let mut t = Tracker::new(uuid(), set(&format!("{U}:1-5")));
        assert!(t.on_binlog_gtid(gtid(&format!("{U}:6")), t0));
        assert!(!t.visible().contains(&gtid(&format!("{U}:6"))));
        assert_eq!(t.oldest_pending(), Some(t0));

        let asked = t.pending().clone();
        // The server has not committed it yet: nothing becomes visible.
        let c = t.on_confirmed(&asked, &asked, t0);
        assert!(c.delta.is_empty());
        assert_eq!(t.pending(), &asked);

        let later = t0 + Duration::from_micros(300);
        let c = t.on_confirmed(&asked, &GtidSet::default(), later);
        assert_eq!(c.delta, set(&format!("{U}:6")));
        assert_eq!(c.delays, vec![Duration::from_micros(300)]);
        assert_eq!(t.visible(), &set(&format!("{U}:1-6")));
        assert!(t.pending().is_empty());
        assert_eq!(t.oldest_pending(), None);
    }

    #[test]
    fn only_the_confirmed_part_is_announced() {
        let now = Instant::now();
        let mut t = Tracker::new(uuid(), set(&format!("{U}:1-5")));
        for g in 6..=9 {
            t.on_binlog_gtid(gtid(&format!("{U}:{g}")), now);
        }
        let asked = t.pending().clone();
        // 8 arrives while the query is in flight.
        let c = t.on_confirmed(&asked, &set(&format!("{U}:8-9")), now);
        assert_eq!(c.delta, set(&format!("{U}:6-7")));
        assert_eq!(t.pending(), &set(&format!("{U}:8-9")));
        assert_eq!(t.visible(), &set(&format!("{U}:1-7")));
    }

    #[test]
    fn duplicates_after_reconnect_are_ignored() {
        let now = Instant::now();
        let mut t = Tracker::new(uuid(), set(&format!("{U}:1-5")));
        assert!(!t.on_binlog_gtid(gtid(&format!("{U}:3")), now));
        assert!(t.on_binlog_gtid(gtid(&format!("{U}:7")), now));
        assert!(!t.on_binlog_gtid(gtid(&format!("{U}:7")), now));
        assert_eq!(t.pending(), &set(&format!("{U}:7")));
    }

    #[test]
    fn tagged_gtids_are_tracked_like_any_other() {
        let now = Instant::now();
        let mut t = Tracker::new(uuid(), set(&format!("{U}:1-5")));
        let g = gtid_from_event(*uuid().as_bytes(), Some("Batch"), 1).unwrap();
        assert_eq!(g.to_string(), format!("{U}:batch:1"));
        t.on_binlog_gtid(g, now);
        let asked = t.pending().clone();
        let c = t.on_confirmed(&asked, &GtidSet::default(), now);
        assert_eq!(c.delta, set(&format!("{U}:batch:1")));
        assert_eq!(t.visible(), &set(&format!("{U}:1-5:batch:1")));
    }

    #[test]
    fn reconnect_publishes_what_was_missed() {
        let now = Instant::now();
        let mut t = Tracker::new(uuid(), set(&format!("{U}:1-5")));
        t.on_binlog_gtid(gtid(&format!("{U}:6")), now);
        let c = t
            .on_server_state(uuid(), &set(&format!("{U}:1-8")), now)
            .unwrap();
        assert_eq!(c.delta, set(&format!("{U}:6-8")));
        assert!(t.pending().is_empty(), "6 was confirmed by the new state");
    }

    #[test]
    fn resets_are_detected() {
        let now = Instant::now();
        let mut t = Tracker::new(uuid(), set(&format!("{U}:1-5")));
        let other: Uuid = "00000000-0000-0000-0000-000000000001".parse().unwrap();
        assert!(matches!(
            t.on_server_state(other, &set(&format!("{U}:1-5")), now),
            Err(ResetReason::ServerUuidChanged { .. })
        ));
        assert_eq!(
            t.on_server_state(uuid(), &set(&format!("{U}:1-2")), now),
            Err(ResetReason::ExecutedShrank)
        );
        // An empty gtid_executed after RESET BINARY LOGS AND GTIDS.
        assert_eq!(
            t.on_server_state(uuid(), &GtidSet::default(), now),
            Err(ResetReason::ExecutedShrank)
        );
        t.reset(uuid(), GtidSet::default());
        assert!(t.visible().is_empty());
    }
}
