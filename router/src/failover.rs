//! Which writable server takes a cluster's writes. Pure: the monitor's
//! readings and what the router acknowledged in, an [`Election`] out;
//! [`crate::runtime::Runtime::members`] turns it into membership.
//!
//! ```text
//! writable servers of the cluster (usable, read_only = OFF)
//!   │  qualified: the writer in force (it took the writes), or one that holds every GTID
//!   │             the router acknowledged (its gtid_executed and its reader's view)
//!   ├─ none writable ─────────────────────────> NoWriter      (writes wait: the buffer)
//!   ├─ writable, none qualified ──────────────> CatchingUp    (writes wait; what each lacks)
//!   └─ the qualified one that turned writable last
//!        ├─ one ──────────────────────────────> Writer(s); every other writable server is fenced
//!        └─ found writable together, neither in force (the router started with two) ──> Ambiguous
//! ```
//!
//! A promotion is a server seen turning writable ([`Writable::Turned`])
//! that no longer replicates; one found writable at its first check
//! ([`Writable::Found`]), a crashed primary that comes back writable (it
//! keeps its old stamp), or a replica made writable while it still
//! replicates (counted as found), never wins over a promotion, nor over
//! the writer in force. A server that lacks an acknowledged GTID never
//! becomes the writer, unless the cluster's window ran out and its policy
//! accepts it (`accept_missing`), and then what it lacks is reported.

use std::time::Duration;

use causeway_gtid::GtidSet;
use serde::Deserialize;

use crate::health::Writable;
use crate::ids::ServerId;

/// A writer hostgroup's failover settings (`[hostgroups.failover]`).
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct FailoverConfig {
    /// While the cluster has no usable writer, statements that need it
    /// wait this long for one (then ERR 9006). `0s`: they fail at once.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// At most this many statements wait at once; more fail at once
    /// (ERR 9006).
    pub max_waiting: usize,
    /// What to do when the window ran out and the only writable server
    /// lacks GTIDs the router acknowledged to clients.
    pub missing_acknowledged: MissingAcknowledged,
    /// Set `super_read_only = ON` on a server when it gets fenced, as the
    /// monitor's user (which then needs `SYSTEM_VARIABLES_ADMIN`), so that
    /// clients that bypass the router cannot write there either.
    pub fence_super_read_only: bool,
}

impl Default for FailoverConfig {
    fn default() -> Self {
        FailoverConfig {
            window: Duration::from_secs(10),
            max_waiting: 10_000,
            missing_acknowledged: MissingAcknowledged::Refuse,
            fence_super_read_only: false,
        }
    }
}

/// A new writer lacks acknowledged GTIDs and the window ran out.
#[derive(Debug, Clone, Copy, Deserialize, serde::Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum MissingAcknowledged {
    /// Take no writes until it has them (or another server does).
    #[default]
    Refuse,
    /// Take it as the writer, and report exactly which acknowledged GTIDs
    /// it lacks (log, metric): they were lost.
    Accept,
}

/// A writable, usable server of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Which server.
    pub server: ServerId,
    /// Since when it takes writes.
    pub writable: Writable,
    /// It is the writer in force.
    pub incumbent: bool,
    /// Acknowledged GTIDs it is not known to have.
    pub missing: GtidSet,
    /// What was acknowledged is not all known (a router of a fleet cut
    /// from etcd): only the writer in force qualifies.
    pub blind: bool,
}

/// Who takes the cluster's writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Election {
    /// No server is writable.
    NoWriter,
    /// Writable servers, each lacking acknowledged GTIDs (with what it
    /// lacks): writes wait for one to catch up.
    CatchingUp(Vec<(ServerId, GtidSet)>),
    /// This server takes writes; `fenced` are writable too and get
    /// nothing; `missing` is what the writer lacks of what was
    /// acknowledged (empty unless accepted by policy).
    Writer {
        /// The writer.
        server: ServerId,
        /// Other writable servers: no statement of any kind goes there.
        fenced: Vec<ServerId>,
        /// Acknowledged GTIDs the writer lacks.
        missing: GtidSet,
    },
    /// Several servers were found writable together and none is the
    /// writer in force: which one the application wrote to is unknown.
    Ambiguous(Vec<ServerId>),
}

/// Elects the writer among `candidates` (in configuration order).
/// `accept_missing`: the cluster's window ran out and its policy accepts a
/// writer that lacks acknowledged GTIDs.
pub fn elect(candidates: &[Candidate], accept_missing: bool) -> Election {
    if candidates.is_empty() {
        return Election::NoWriter;
    }
    let qualified: Vec<&Candidate> = candidates
        .iter()
        .filter(|c| c.incumbent || (c.missing.is_empty() && !c.blind) || accept_missing)
        .collect();
    let Some(latest) = qualified.iter().map(|c| c.writable).max() else {
        return Election::CatchingUp(
            candidates
                .iter()
                .map(|c| (c.server, c.missing.clone()))
                .collect(),
        );
    };
    let top: Vec<&Candidate> = qualified
        .into_iter()
        .filter(|c| c.writable == latest)
        .collect();
    let winner = match (&top[..], top.iter().find(|c| c.incumbent)) {
        ([only], _) => *only,
        (_, Some(incumbent)) => *incumbent,
        _ => return Election::Ambiguous(top.iter().map(|c| c.server).collect()),
    };
    Election::Writer {
        server: winner.server,
        fenced: candidates
            .iter()
            .filter(|c| c.server != winner.server)
            .map(|c| c.server)
            .collect(),
        missing: if winner.incumbent {
            GtidSet::new()
        } else {
            winner.missing.clone()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const U: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";

    fn set(ranges: &str) -> GtidSet {
        if ranges.is_empty() {
            return GtidSet::new();
        }
        GtidSet::parse(&format!("{U}:{ranges}")).unwrap()
    }

    fn cand(i: usize, writable: Writable, incumbent: bool, missing: &str) -> Candidate {
        Candidate {
            server: ServerId::new(i),
            writable,
            incumbent,
            missing: set(missing),
            blind: false,
        }
    }

    #[test]
    fn a_router_blind_to_its_fleet_keeps_the_writer_in_force_and_elects_no_other() {
        let mut c = cand(0, Writable::Turned(1), false, "");
        c.blind = true;
        assert_eq!(
            elect(&[c.clone()], false),
            Election::CatchingUp(vec![(ServerId::new(0), set(""))])
        );
        // The policy that accepts a loss after the window accepts this too.
        assert_eq!(elect(&[c.clone()], true), writer(0, &[]));
        c.incumbent = true;
        assert_eq!(elect(&[c], false), writer(0, &[]));
    }

    fn writer(i: usize, fenced: &[usize]) -> Election {
        Election::Writer {
            server: ServerId::new(i),
            fenced: fenced.iter().map(|&f| ServerId::new(f)).collect(),
            missing: GtidSet::new(),
        }
    }

    #[test]
    fn one_writable_server_is_the_writer() {
        assert_eq!(elect(&[], false), Election::NoWriter);
        let c = [cand(0, Writable::Found, false, "")];
        assert_eq!(elect(&c, false), writer(0, &[]));
    }

    #[test]
    fn a_promotion_wins_over_the_server_found_writable() {
        // Planned switchover done in the wrong order, or a crashed primary
        // back writable: the promoted one takes writes, the other is fenced.
        let c = [
            cand(0, Writable::Found, true, ""),
            cand(1, Writable::Turned(7), false, ""),
        ];
        assert_eq!(elect(&c, false), writer(1, &[0]));
        let c = [
            cand(0, Writable::Turned(3), false, ""),
            cand(1, Writable::Turned(9), true, ""),
        ];
        assert_eq!(elect(&c, false), writer(1, &[0]));
    }

    #[test]
    fn a_promoted_server_lacking_acknowledged_gtids_waits_and_is_fenced_meanwhile() {
        // The old writer is still writable and in force: it keeps writes.
        let c = [
            cand(0, Writable::Found, true, "9"),
            cand(1, Writable::Turned(7), false, "8-9"),
        ];
        assert_eq!(elect(&c, false), writer(0, &[1]));
        // Alone: writes wait for it, and what it lacks is said.
        let c = [cand(1, Writable::Turned(7), false, "8-9")];
        assert_eq!(
            elect(&c, false),
            Election::CatchingUp(vec![(ServerId::new(1), set("8-9"))])
        );
        // Once the window ran out and the policy accepts it.
        assert_eq!(
            elect(&c, true),
            Election::Writer {
                server: ServerId::new(1),
                fenced: vec![],
                missing: set("8-9"),
            }
        );
    }

    #[test]
    fn the_writer_in_force_is_qualified_though_its_last_check_is_behind() {
        let c = [cand(0, Writable::Found, true, "100-120")];
        assert_eq!(elect(&c, false), writer(0, &[]));
    }

    #[test]
    fn two_found_writable_with_no_writer_in_force_are_ambiguous() {
        let c = [
            cand(0, Writable::Found, false, ""),
            cand(2, Writable::Found, false, ""),
        ];
        assert_eq!(
            elect(&c, false),
            Election::Ambiguous(vec![ServerId::new(0), ServerId::new(2)])
        );
        // The one in force stays.
        let c = [
            cand(0, Writable::Found, false, ""),
            cand(2, Writable::Found, true, ""),
        ];
        assert_eq!(elect(&c, false), writer(2, &[0]));
    }

    #[test]
    fn a_lacking_candidate_never_wins_over_a_qualified_one() {
        let c = [
            cand(0, Writable::Turned(1), false, ""),
            cand(1, Writable::Turned(5), false, "4"),
        ];
        assert_eq!(elect(&c, false), writer(0, &[1]));
    }
}
