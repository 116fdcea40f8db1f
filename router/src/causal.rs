//! Where a causal read goes: a pure decision, no I/O, the clock passed in.
//!
//! A read in hostgroup R of a consistent pair (R, W) needs a server whose
//! view (a lower bound of its executed set, from the reader beside it)
//! contains every GTID the read must see: the session's own writes in W
//! (`session` scope), every write the router acknowledged to the session's
//! user (`user`) or to anyone (`router`), plus a token (`token`), or the
//! primary's whole set when the read began (`global`). `eventual` needs
//! nothing.
//!
//! ```text
//!   in a transaction ------------------------------> Pinned (its server)
//!   some healthy replica's view ⊇ needed ----------> Replica (least loaded by weight)
//!   healthy replicas, none caught up, time left,
//!     one expected to catch up before the writer
//!     would answer (or no estimate yet) -----------> Wait (until a delta arrives or the deadline)
//!   otherwise -------------------------------------> Primary (with the reason)
//! ```
//! Waiting pays only when a replica will have the GTIDs sooner than the
//! writer would answer: the caller passes both estimates, measured (see
//! `views::Views::lag` and `read_took`). `max_wait` bounds the wait either
//! way.
//! The primary always qualifies: it returned those GTIDs itself.

use std::time::Duration;

use causeway_gtid::GtidSet;
use serde::Deserialize;

use crate::ids::ServerId;

/// How consistent a read must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Plain read/write split: any healthy replica, lag accepted.
    Eventual,
    /// Read-your-own-writes: the session's writes.
    Session,
    /// Every write acknowledged to the session's user through this router,
    /// on any of its connections (a connection pool's).
    User,
    /// Every write acknowledged through this router, to anyone.
    Router,
    /// The session's writes and a GTID set passed by the client.
    Token,
    /// Everything committed on the primary before the read began.
    Global,
}

/// One replica of the read hostgroup, as the router sees it now.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    /// The server.
    pub id: ServerId,
    /// Passes health checks (not shunned, not lagging past its maximum).
    pub healthy: bool,
    /// Relative share of reads (0: only when nothing else qualifies).
    pub weight: u32,
    /// Statements in flight on it now.
    pub load: u32,
    /// Lower bound of its executed set; `None` when no reader has ever
    /// reported it.
    pub view: Option<&'a GtidSet>,
}

/// What the read must see, and how long it may wait for it.
#[derive(Debug, Clone, Copy)]
pub struct Read<'a> {
    /// Consistency scope.
    pub scope: Scope,
    /// GTIDs the chosen server must have (ignored for `Eventual`).
    pub needed: &'a GtidSet,
    /// The server the session's open transaction runs on, if any.
    pub pinned: Option<ServerId>,
    /// Time already spent waiting for a replica to catch up.
    pub waited: Duration,
    /// Longest wait before falling back to the primary.
    pub max_wait: Duration,
    /// Expected time until the soonest healthy replica holds what the read
    /// needs (`None`: unknown, e.g. nothing measured yet).
    pub catch_up: Option<Duration>,
    /// Expected time the writer takes to answer the read (`None`: unknown).
    pub writer_cost: Option<Duration>,
    /// Rotates ties between equally loaded replicas (e.g. a counter).
    pub tiebreak: u64,
}

/// Why a read went to the primary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// No healthy replica in the hostgroup.
    NoHealthyReplica,
    /// Healthy replicas exist, none had the needed GTIDs in time.
    NotCaughtUp,
    /// No replica is expected to catch up before the writer would have
    /// answered: waiting would only make the read slower.
    SlowCatchUp,
}

/// The decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Stay on the transaction's server.
    Pinned(ServerId),
    /// This replica has everything the read needs.
    Replica(ServerId),
    /// Wait at most this long for a view update, then decide again.
    Wait(Duration),
    /// Send to the primary.
    Primary(Fallback),
}

/// Decides where a read goes.
pub fn decide(read: &Read<'_>, candidates: &[Candidate<'_>]) -> Route {
    if let Some(server) = read.pinned {
        return Route::Pinned(server);
    }
    let healthy = || candidates.iter().filter(|c| c.healthy);
    if healthy().next().is_none() {
        return Route::Primary(Fallback::NoHealthyReplica);
    }
    let qualifies = |c: &&Candidate<'_>| match read.scope {
        Scope::Eventual => true,
        _ if read.needed.is_empty() => true,
        _ => c.view.is_some_and(|v| read.needed.is_subset(v)),
    };
    if let Some(id) = pick(healthy().filter(qualifies), read.tiebreak) {
        return Route::Replica(id);
    }
    let left = read.max_wait.saturating_sub(read.waited);
    if left.is_zero() {
        return Route::Primary(Fallback::NotCaughtUp);
    }
    match (read.catch_up, read.writer_cost) {
        (Some(catch_up), Some(writer)) if catch_up > writer => {
            Route::Primary(Fallback::SlowCatchUp)
        }
        _ => Route::Wait(left),
    }
}

/// Least loaded relative to weight; weight 0 only when alone; ties rotate.
fn pick<'a, 'b: 'a>(
    qualified: impl Iterator<Item = &'a Candidate<'b>>,
    tiebreak: u64,
) -> Option<ServerId> {
    let all: Vec<&Candidate<'_>> = qualified.collect();
    let weighted: Vec<&&Candidate<'_>> = all.iter().filter(|c| c.weight > 0).collect();
    if weighted.is_empty() {
        return all.first().map(|c| c.id);
    }
    // load / weight compared without division: a.load * b.weight < b.load * a.weight.
    let best = weighted
        .iter()
        .map(|c| (u64::from(c.load), u64::from(c.weight)))
        .min_by(|(la, wa), (lb, wb)| (la * wb).cmp(&(lb * wa)))?;
    let ties: Vec<ServerId> = weighted
        .iter()
        .filter(|c| u64::from(c.load) * best.1 == best.0 * u64::from(c.weight))
        .map(|c| c.id)
        .collect();
    ties.get((tiebreak % ties.len() as u64) as usize).copied()
}

#[cfg(test)]
#[path = "causal_tests.rs"]
mod tests;
