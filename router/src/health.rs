//! What the health monitor knows about each server, and the pure fold
//! [`observe`] that turns one check into it. No I/O, no tokio:
//! [`crate::monitor`] runs the checks and publishes a [`HealthMap`];
//! [`crate::runtime`] (hostgroup membership) and [`crate::metrics`] read it.
//!
//! The status of one server, folded by [`observe`] ("down" is a failed
//! check of [`FailureKind::Down`]):
//! ```text
//!               check ok, not lagging                  check ok, lagging / broken (max_lag set)
//!   Unknown ───────────────────────────> Up <─────────────────────────────────> Shunned{LagOver | ReplicationBroken}
//!      │                                  │  check ok, back under max_lag                │
//!      │ shun_after_errors downs           │ shun_after_errors downs in a row             │ shun_after_errors
//!      │ in a row                          v                                              │ downs in a row
//!      └──────────────────────────> Shunned{Unreachable} <───────────────────────────────┘
//!                                         │ first check ok: Up (or LagOver / ReplicationBroken)
//!
//!   any ──the server refuses the monitor (1045, 1227, ...)──> Unknown, misconfigured = Some(code)
//!         lag forgotten, downs in a row reset: usable as if the monitor were off for it, but
//!         read_only and since when it is writable kept (a refusal must not make a fenced
//!         server a writer again, nor take the writer out of its cluster's election)
//!   misconfigured ──check ok──> as above, misconfigured = None
//!   misconfigured ──downs──> counted from 0, Shunned{Unreachable} at shun_after_errors (code kept)
//! ```
//! Fewer downs in a row than `shun_after_errors` keep the status as it
//! was, except a refused connection ([`CheckError::refused`]): nothing
//! listens on the server's port, so it is shunned at once. A server that was never checked is [`Status::Unknown`] and usable:
//! the router then goes by its configured role. There is no hysteresis
//! around `max_lag`; the check interval is the damping.
//!
//! A server that refuses the monitor's login or queries answered: it is
//! not down, the monitor is misconfigured (its user, password or
//! privileges). Shunning it would take a live server out of service, and
//! every server at once when the monitor has no password (a configuration
//! without a `[monitor]` section), so it stays usable, in the role last
//! seen (its configured one when never seen); the monitor reports the
//! refusal loudly instead.

use std::collections::HashMap;
use std::time::Duration;

use causeway_gtid::GtidSet;

/// Since when a server takes writes, as the monitor saw it: what picks
/// the writer among two writable servers (see [`crate::failover`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
pub enum Writable {
    /// Read-only, or not known.
    #[default]
    No,
    /// Writable at the first check that saw it, with no earlier
    /// read-only reading: when it became writable is not known (the
    /// router started, or the server came up writable).
    Found,
    /// Seen turning writable (`read_only` from ON to OFF) at this instant
    /// of the monitor's clock: a promotion.
    Turned(u64),
}

/// Replication delay of a server, as of its last successful check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lag {
    /// Not known: never checked, or `lag_check` is off.
    #[default]
    Unknown,
    /// `SHOW REPLICA STATUS` has no row: the server replicates from nobody.
    NotReplica,
    /// `Seconds_Behind_Source` (the largest over all channels).
    Seconds(u64),
    /// A replication thread is not running (`Connecting` included), or
    /// `Seconds_Behind_Source` is NULL.
    Broken,
}

/// Why a server is shunned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShunReason {
    /// `shun_after_errors` checks in a row failed.
    Unreachable,
    /// The replica is further behind than its `max_lag` (whole seconds;
    /// `max_s` rounded down).
    LagOver {
        /// Seconds behind its source.
        lag_s: u64,
        /// The server's `max_lag`.
        max_s: u64,
    },
    /// Replication stopped on a server with a `max_lag`.
    ReplicationBroken,
}

impl std::fmt::Display for ShunReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unreachable => f.write_str("unreachable"),
            Self::LagOver { lag_s, max_s } => write!(f, "lag {lag_s}s over max_lag {max_s}s"),
            Self::ReplicationBroken => f.write_str("replication broken"),
        }
    }
}

/// Whether the router may use a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Status {
    /// Never checked (or the monitor is off): usable, by its configured role.
    #[default]
    Unknown,
    /// The last check succeeded and the server is within its `max_lag`.
    Up,
    /// Not to be given new traffic.
    Shunned {
        /// Why.
        reason: ShunReason,
    },
}

impl Status {
    /// The same state, ignoring the numbers in `LagOver` (for logging only
    /// real changes).
    pub fn same_kind(&self, other: &Status) -> bool {
        use std::mem::discriminant;
        match (self, other) {
            (Self::Shunned { reason: a }, Self::Shunned { reason: b }) => {
                discriminant(a) == discriminant(b)
            }
            _ => discriminant(self) == discriminant(other),
        }
    }
}

/// What the monitor knows about one server. Counters are for metrics.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServerHealth {
    /// Whether the server is usable.
    pub status: Status,
    /// `read_only || super_read_only` as of the last successful check;
    /// `None` until known (or with `read_only_check` off).
    pub read_only: Option<bool>,
    /// Replication delay as of the last successful check.
    pub lag: Lag,
    /// Checks in a row the server did not answer ([`FailureKind::Down`]),
    /// since the last one it answered.
    pub consecutive_errors: u32,
    /// The most recent failure, kept after recovery for diagnosis.
    pub last_error: Option<String>,
    /// While the server refuses the monitor ([`FailureKind::Misconfigured`]):
    /// the MySQL error code of the refusal. `None` again once a check
    /// succeeds.
    pub misconfigured: Option<u16>,
    /// Checks done (counter).
    pub checks: u64,
    /// Checks failed (counter).
    pub failures: u64,
    /// Since when it takes writes. Kept while it does not answer, so a
    /// crashed primary that comes back writable is not a new promotion.
    pub writable: Writable,
    /// `@@global.gtid_executed` at its last successful check (empty when
    /// not read).
    pub executed: GtidSet,
    /// While checks fail in a row: when the first of them started (the
    /// monitor's clock).
    pub down_since: Option<u64>,
    /// When a session last reported on it (a refused connection, a
    /// read-only refusal), on the monitor's clock: a check that started
    /// before then does not overwrite what it reported.
    pub reported_at: Option<u64>,
}

impl ServerHealth {
    /// Whether the router may send new traffic to the server (not shunned;
    /// an unknown server is usable).
    pub fn is_usable(&self) -> bool {
        !matches!(self.status, Status::Shunned { .. })
    }
}

/// The outcome of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observation {
    /// The server answered.
    Ok {
        /// `read_only || super_read_only`; `None` when not checked.
        read_only: Option<bool>,
        /// Replication delay ([`Lag::Unknown`] when not checked).
        lag: Lag,
        /// `@@global.gtid_executed`, when read.
        executed: Option<GtidSet>,
    },
    /// Connecting, logging in, a query or reading its answer failed.
    Failed(CheckError),
}

/// Why a check failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckError {
    /// The MySQL error code: the server's own when it answered with an ERR
    /// packet (1045, 1040, ...), else the one a MySQL client reports for a
    /// failure on its side (2003 cannot connect, 2013 lost connection or
    /// timed out, 2026 TLS failed). `None` when the server's answer made no
    /// sense to the monitor.
    pub code: Option<u16>,
    /// What happened, for logs.
    pub message: String,
    /// The server's host refused the TCP connection: no server listens
    /// there (a crash, a stop), so it is shunned without waiting for more
    /// checks.
    pub refused: bool,
    /// When the check started (the monitor's clock).
    pub started: u64,
}

/// What a failed check says about the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The server did not answer or cannot serve: connect refused or timed
    /// out, I/O and TLS errors, a lost connection (2003, 2013, 2026), too
    /// many connections (1040), shutting down (1053), this host blocked
    /// (1129), an answer that makes no sense, and any code not listed in
    /// [`MISCONFIGURED_CODES`]. Counts toward shunning.
    Down,
    /// The server answered and refused the monitor's account (one of
    /// [`MISCONFIGURED_CODES`]): a configuration error, never a reason to
    /// shun.
    Misconfigured,
}

/// Refusals of the monitor's account by a live server: authentication,
/// privileges, the account's state or limits.
pub const MISCONFIGURED_CODES: [u16; 14] = [
    1044, // ER_DBACCESS_DENIED_ERROR
    1045, // ER_ACCESS_DENIED_ERROR: wrong user or password
    1130, // ER_HOST_NOT_PRIVILEGED: no account for the router's host
    1142, // ER_TABLEACCESS_DENIED_ERROR
    1143, // ER_COLUMNACCESS_DENIED_ERROR
    1203, // ER_TOO_MANY_USER_CONNECTIONS: the account's max_user_connections
    1226, // ER_USER_LIMIT_REACHED: the account's MAX_..._PER_HOUR
    1227, // ER_SPECIFIC_ACCESS_DENIED_ERROR: e.g. no REPLICATION CLIENT for SHOW REPLICA STATUS
    1251, // ER_NOT_SUPPORTED_AUTH_MODE: an authentication plugin the router lacks
    1698, // ER_ACCESS_DENIED_NO_PASSWORD_ERROR
    1820, // ER_MUST_CHANGE_PASSWORD
    1862, // ER_MUST_CHANGE_PASSWORD_LOGIN: the password expired
    3118, // ER_ACCOUNT_HAS_BEEN_LOCKED
    3955, // ER_USER_ACCESS_DENIED_FOR_USER_ACCOUNT_BLOCKED_BY_PASSWORD_LOCK
];

impl CheckError {
    /// Whether the server is down or the monitor misconfigured.
    pub fn kind(&self) -> FailureKind {
        match self.code {
            Some(code) if MISCONFIGURED_CODES.contains(&code) => FailureKind::Misconfigured,
            _ => FailureKind::Down,
        }
    }
}

/// When failing checks shun a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShunRule {
    /// After this many in a row (0 counts as 1).
    pub errors: u32,
    /// Or, for a writable server, once it has not answered for this long
    /// (zero: never by time).
    pub after: Duration,
}

/// Folds one check into a server's health. `max_lag` is the server's, when
/// it has one; `now` is the monitor's clock (nanoseconds) when the check
/// ended (see [`Writable::Turned`] and [`ServerHealth::down_since`]).
pub fn observe(
    prev: &ServerHealth,
    obs: &Observation,
    max_lag: Option<Duration>,
    shun: ShunRule,
    now: u64,
) -> ServerHealth {
    let mut next = prev.clone();
    next.checks = next.checks.saturating_add(1);
    match obs {
        Observation::Failed(error) => {
            next.failures = next.failures.saturating_add(1);
            next.last_error = Some(error.message.clone());
            match error.kind() {
                FailureKind::Down => {
                    next.consecutive_errors = next.consecutive_errors.saturating_add(1);
                    let since = *next.down_since.get_or_insert(error.started.min(now));
                    let silent = Duration::from_nanos(now.saturating_sub(since));
                    // By time only a writer: a replica's check may block
                    // for a while in SHOW REPLICA STATUS (STOP REPLICA).
                    let by_time = !shun.after.is_zero()
                        && next.read_only == Some(false)
                        && silent >= shun.after;
                    if error.refused || by_time || next.consecutive_errors >= shun.errors.max(1) {
                        next.status = Status::Shunned {
                            reason: ShunReason::Unreachable,
                        };
                    }
                }
                // The server answered, so it is not down; what its role and
                // lag are the monitor cannot tell: as if it were off.
                FailureKind::Misconfigured => {
                    next.consecutive_errors = 0;
                    next.down_since = None;
                    next.status = Status::Unknown;
                    next.lag = Lag::Unknown;
                    next.misconfigured = error.code;
                }
            }
        }
        Observation::Ok {
            read_only,
            lag,
            executed,
        } => {
            next.consecutive_errors = 0;
            next.down_since = None;
            next.misconfigured = None;
            next.writable = match (*read_only, prev.writable) {
                (Some(false), Writable::No) if prev.read_only == Some(true) => {
                    Writable::Turned(now)
                }
                (Some(false), Writable::No) => Writable::Found,
                (Some(false), kept) => kept,
                (Some(true) | None, _) => Writable::No,
            };
            next.read_only = *read_only;
            next.lag = *lag;
            next.executed = executed.clone().unwrap_or_default();
            next.status = status_when_up(*lag, max_lag);
        }
    }
    next
}

/// The status of a server that answered with `lag`.
fn status_when_up(lag: Lag, max_lag: Option<Duration>) -> Status {
    let Some(max) = max_lag else {
        return Status::Up;
    };
    let reason = match lag {
        Lag::Broken => ShunReason::ReplicationBroken,
        Lag::Seconds(s) if Duration::from_secs(s) > max => ShunReason::LagOver {
            lag_s: s,
            max_s: max.as_secs(),
        },
        // A server that stopped replicating on purpose (promoted) is not
        // behind anything.
        Lag::Seconds(_) | Lag::NotReplica | Lag::Unknown => return Status::Up,
    };
    Status::Shunned { reason }
}

/// Every server's health, by server name.
pub type HealthMap = HashMap<String, ServerHealth>;

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(read_only: bool, lag: Lag) -> Observation {
        Observation::Ok {
            read_only: Some(read_only),
            lag,
            executed: None,
        }
    }

    /// A check the server did not answer (connect refused).
    fn fail(why: &str) -> Observation {
        failed(Some(2003), why)
    }

    fn failed(code: Option<u16>, why: &str) -> Observation {
        Observation::Failed(CheckError {
            code,
            message: why.to_string(),
            refused: false,
            started: 0,
        })
    }

    /// A check the server answered by refusing the monitor with `code`.
    fn refused(code: u16) -> Observation {
        failed(Some(code), &format!("backend refused: {code}"))
    }

    /// Folds `obs` from a never-checked server, returning every state.
    fn run(
        obs: &[Observation],
        max_lag: Option<Duration>,
        shun_after_errors: u32,
    ) -> Vec<ServerHealth> {
        let mut h = ServerHealth::default();
        obs.iter()
            .enumerate()
            .map(|(t, o)| {
                let shun = ShunRule {
                    errors: shun_after_errors,
                    after: Duration::ZERO,
                };
                h = observe(&h, o, max_lag, shun, t as u64);
                h.clone()
            })
            .collect()
    }

    const SHUN_UNREACHABLE: Status = Status::Shunned {
        reason: ShunReason::Unreachable,
    };
    const SHUN_BROKEN: Status = Status::Shunned {
        reason: ShunReason::ReplicationBroken,
    };

    fn secs(s: u64) -> Option<Duration> {
        Some(Duration::from_secs(s))
    }

    #[test]
    fn first_good_check_brings_an_unknown_server_up() {
        let h = run(&[ok(true, Lag::Seconds(0))], secs(5), 3);
        assert_eq!(h[0].status, Status::Up);
        assert_eq!(h[0].read_only, Some(true));
        assert_eq!(h[0].lag, Lag::Seconds(0));
        assert_eq!((h[0].checks, h[0].failures), (1, 0));
        assert!(h[0].is_usable());
        assert!(ServerHealth::default().is_usable());
    }

    #[test]
    fn failures_keep_the_last_known_status_until_the_threshold() {
        let h = run(&[fail("a"), fail("b"), fail("c")], None, 3);
        // Never checked successfully: stays unknown (usable) until shunned.
        assert_eq!(h[0].status, Status::Unknown);
        assert_eq!(h[1].status, Status::Unknown);
        assert_eq!(h[2].status, SHUN_UNREACHABLE);
        assert!(!h[2].is_usable());
        assert_eq!(h[2].consecutive_errors, 3);
        assert_eq!(h[2].last_error.as_deref(), Some("c"));
        assert_eq!((h[2].checks, h[2].failures), (3, 3));

        let h = run(
            &[ok(false, Lag::NotReplica), fail("x"), fail("y"), fail("z")],
            None,
            3,
        );
        assert_eq!(h[1].status, Status::Up);
        assert_eq!(h[2].status, Status::Up);
        // What was last seen is kept while the server does not answer.
        assert_eq!(h[2].read_only, Some(false));
        assert_eq!(h[2].lag, Lag::NotReplica);
        assert_eq!(h[3].status, SHUN_UNREACHABLE);
        assert_eq!(h[3].read_only, Some(false));
    }

    #[test]
    fn one_good_check_recovers_an_unreachable_server() {
        let h = run(
            &[fail("a"), fail("b"), ok(true, Lag::Seconds(1))],
            secs(5),
            2,
        );
        assert_eq!(h[1].status, SHUN_UNREACHABLE);
        assert_eq!(h[2].status, Status::Up);
        assert_eq!(h[2].consecutive_errors, 0);
        // The last error stays for diagnosis; the counters keep counting.
        assert_eq!(h[2].last_error.as_deref(), Some("b"));
        assert_eq!((h[2].checks, h[2].failures), (3, 2));
    }

    #[test]
    fn a_threshold_of_one_shuns_at_once_and_zero_counts_as_one() {
        for n in [0, 1] {
            let h = run(&[fail("a")], None, n);
            assert_eq!(h[0].status, SHUN_UNREACHABLE, "shun_after_errors = {n}");
        }
    }

    #[test]
    fn lag_over_max_shuns_and_back_under_unshuns() {
        let h = run(
            &[
                ok(true, Lag::Seconds(5)),
                ok(true, Lag::Seconds(6)),
                ok(true, Lag::Seconds(60)),
                ok(true, Lag::Seconds(2)),
            ],
            secs(5),
            3,
        );
        // Equal to max_lag is not over it.
        assert_eq!(h[0].status, Status::Up);
        assert_eq!(
            h[1].status,
            Status::Shunned {
                reason: ShunReason::LagOver { lag_s: 6, max_s: 5 }
            }
        );
        assert_eq!(
            h[2].status,
            Status::Shunned {
                reason: ShunReason::LagOver {
                    lag_s: 60,
                    max_s: 5
                }
            }
        );
        assert_eq!(h[3].status, Status::Up);
        assert_eq!(h[3].lag, Lag::Seconds(2));
    }

    #[test]
    fn sub_second_max_lag_compares_exactly() {
        let h = run(
            &[ok(true, Lag::Seconds(0)), ok(true, Lag::Seconds(1))],
            Some(Duration::from_millis(500)),
            3,
        );
        assert_eq!(h[0].status, Status::Up);
        assert_eq!(
            h[1].status,
            Status::Shunned {
                reason: ShunReason::LagOver { lag_s: 1, max_s: 0 }
            }
        );
    }

    #[test]
    fn broken_replication_shuns_only_servers_with_a_max_lag() {
        let h = run(
            &[ok(true, Lag::Broken), ok(true, Lag::Seconds(0))],
            secs(5),
            3,
        );
        assert_eq!(h[0].status, SHUN_BROKEN);
        assert_eq!(h[1].status, Status::Up);
        let h = run(&[ok(true, Lag::Broken)], None, 3);
        assert_eq!(h[0].status, Status::Up);
        assert_eq!(h[0].lag, Lag::Broken);
    }

    #[test]
    fn a_replica_that_stopped_replicating_or_unchecked_lag_stays_up() {
        for lag in [Lag::NotReplica, Lag::Unknown] {
            let h = run(&[ok(false, lag)], secs(1), 3);
            assert_eq!(h[0].status, Status::Up, "{lag:?}");
        }
    }

    #[test]
    fn failures_while_lagging_keep_lag_over_until_unreachable() {
        let lagging = Status::Shunned {
            reason: ShunReason::LagOver { lag_s: 9, max_s: 1 },
        };
        let h = run(
            &[
                ok(true, Lag::Seconds(9)),
                fail("a"),
                fail("b"),
                ok(true, Lag::Seconds(9)),
            ],
            secs(1),
            2,
        );
        assert_eq!(h[1].status, lagging);
        assert_eq!(h[2].status, SHUN_UNREACHABLE);
        // Back from unreachable but still lagging: shunned for the lag.
        assert_eq!(h[3].status, lagging);
    }

    #[test]
    fn flapping_below_the_threshold_never_shuns() {
        let mut obs = Vec::new();
        for _ in 0..10 {
            obs.extend([fail("a"), fail("b"), ok(true, Lag::Seconds(0))]);
        }
        let h = run(&obs, secs(5), 3);
        assert!(h.iter().all(|h| h.is_usable()), "{h:?}");
        let last = h.last().unwrap();
        assert_eq!((last.checks, last.failures), (30, 20));
        assert_eq!(last.consecutive_errors, 0);
    }

    #[test]
    fn flapping_around_the_threshold_shuns_and_recovers_each_time() {
        let mut obs = Vec::new();
        for _ in 0..3 {
            obs.extend([fail("a"), fail("b"), ok(false, Lag::NotReplica)]);
        }
        let h = run(&obs, None, 2);
        let statuses: Vec<_> = h.iter().map(|h| h.status).collect();
        assert_eq!(
            statuses,
            [Status::Unknown, SHUN_UNREACHABLE, Status::Up]
                .into_iter()
                .chain([Status::Up, SHUN_UNREACHABLE, Status::Up])
                .chain([Status::Up, SHUN_UNREACHABLE, Status::Up])
                .collect::<Vec<_>>()
        );
        let mut obs = Vec::new();
        for lag in [1, 9, 1, 9] {
            obs.push(ok(true, Lag::Seconds(lag)));
        }
        let h = run(&obs, secs(5), 2);
        let usable: Vec<_> = h.iter().map(ServerHealth::is_usable).collect();
        assert_eq!(usable, [true, false, true, false]);
    }

    #[test]
    fn read_only_follows_each_good_check() {
        let h = run(
            &[
                ok(true, Lag::NotReplica),
                ok(false, Lag::NotReplica),
                Observation::Ok {
                    read_only: None,
                    lag: Lag::NotReplica,
                    executed: None,
                },
            ],
            None,
            3,
        );
        let ro: Vec<_> = h.iter().map(|h| h.read_only).collect();
        assert_eq!(ro, [Some(true), Some(false), None]);
    }

    // ---- writable since when, and refused connections ----

    #[test]
    fn a_promotion_is_stamped_a_server_found_writable_is_not() {
        // Read-only, then writable at check 1: a promotion, at the
        // monitor's clock of that check.
        let h = run(
            &[ok(true, Lag::NotReplica), ok(false, Lag::NotReplica)],
            None,
            3,
        );
        assert_eq!(h[0].writable, Writable::No);
        assert_eq!(h[1].writable, Writable::Turned(1));
        // Writable from its first check: found so, not promoted.
        let h = run(
            &[ok(false, Lag::NotReplica), ok(false, Lag::NotReplica)],
            None,
            3,
        );
        assert_eq!(h[0].writable, Writable::Found);
        assert_eq!(h[1].writable, Writable::Found, "kept, not re-stamped");
        assert!(Writable::Turned(0) > Writable::Found);
    }

    #[test]
    fn a_writable_server_that_crashes_and_comes_back_writable_keeps_its_stamp() {
        let h = run(
            &[
                ok(true, Lag::NotReplica),
                ok(false, Lag::NotReplica),
                fail("crash"),
                fail("down"),
                fail("down"),
                ok(false, Lag::NotReplica),
            ],
            None,
            2,
        );
        assert_eq!(h[3].status, SHUN_UNREACHABLE);
        assert_eq!(h[3].writable, Writable::Turned(1), "kept while down");
        assert_eq!(h[5].writable, Writable::Turned(1), "not a new promotion");
        // Demoted, then promoted again: a new stamp.
        let h = run(
            &[
                ok(false, Lag::NotReplica),
                ok(true, Lag::NotReplica),
                ok(false, Lag::NotReplica),
            ],
            None,
            2,
        );
        assert_eq!(h[1].writable, Writable::No);
        assert_eq!(h[2].writable, Writable::Turned(2));
    }

    #[test]
    fn a_refused_connection_shuns_at_once() {
        let refused_connect = Observation::Failed(CheckError {
            code: Some(2003),
            message: "connection refused".into(),
            refused: true,
            started: 0,
        });
        let h = run(&[ok(false, Lag::NotReplica), refused_connect], None, 3);
        assert_eq!(h[1].status, SHUN_UNREACHABLE);
        assert_eq!(h[1].consecutive_errors, 1);
        // A timeout is not a refusal: it waits for shun_after_errors.
        let h = run(&[ok(false, Lag::NotReplica), fail("timed out")], None, 3);
        assert_eq!(h[1].status, Status::Up);
    }

    #[test]
    fn a_writer_silent_for_shun_after_is_shunned_whatever_the_count() {
        let ms = |n: u64| n * 1_000_000;
        let timed_out = |started: u64| {
            Observation::Failed(CheckError {
                code: Some(2013),
                message: "timed out".into(),
                refused: false,
                started,
            })
        };
        let shun = ShunRule {
            errors: 10,
            after: Duration::from_secs(1),
        };
        let up = observe(
            &ServerHealth::default(),
            &ok(false, Lag::NotReplica),
            None,
            shun,
            ms(0),
        );
        // A check started at 100 ms failed at 900 ms: silent for 0.8 s.
        let h1 = observe(&up, &timed_out(ms(100)), None, shun, ms(900));
        assert_eq!(h1.status, Status::Up, "suspect, not shunned yet");
        assert_eq!(h1.down_since, Some(ms(100)));
        // The next, started at 1 s, failed at 1.1 s: silent for 1 s.
        let h2 = observe(&h1, &timed_out(ms(1000)), None, shun, ms(1100));
        assert_eq!(h2.status, SHUN_UNREACHABLE);
        assert_eq!(h2.consecutive_errors, 2);
        // One good check forgets it.
        let h3 = observe(&h2, &ok(false, Lag::NotReplica), None, shun, ms(1200));
        assert_eq!((h3.status, h3.down_since), (Status::Up, None));
        // A read-only server: by count only (its checks may block in SHOW
        // REPLICA STATUS while replication is reconfigured).
        let replica = observe(
            &ServerHealth::default(),
            &ok(true, Lag::Seconds(0)),
            None,
            shun,
            ms(0),
        );
        let r1 = observe(&replica, &timed_out(ms(100)), None, shun, ms(900));
        let r2 = observe(&r1, &timed_out(ms(1000)), None, shun, ms(5000));
        assert_eq!(r2.status, Status::Up);
        // Zero: by count only.
        let off = ShunRule {
            errors: 10,
            after: Duration::ZERO,
        };
        let h = observe(&h1, &timed_out(ms(1000)), None, off, ms(60_000));
        assert_eq!(h.status, Status::Up);
    }

    #[test]
    fn the_executed_set_follows_each_good_check_and_stays_while_down() {
        let set = |s: &str| GtidSet::parse(s).unwrap();
        let with = |e: &str| Observation::Ok {
            read_only: Some(false),
            lag: Lag::NotReplica,
            executed: Some(set(e)),
        };
        let a = "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5";
        let b = "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-9";
        let h = run(&[with(a), fail("x"), with(b)], None, 3);
        assert_eq!(h[0].executed, set(a));
        assert_eq!(h[1].executed, set(a));
        assert_eq!(h[2].executed, set(b));
    }

    // ---- a server that refuses the monitor ----

    #[test]
    fn each_failure_is_down_or_misconfigured_by_its_code() {
        let kind = |code| {
            CheckError {
                code,
                message: String::new(),
                refused: false,
                started: 0,
            }
            .kind()
        };
        for code in MISCONFIGURED_CODES {
            assert_eq!(kind(Some(code)), FailureKind::Misconfigured, "{code}");
        }
        // Not answering, not serving, nonsense, and codes nobody listed.
        for code in [
            None,
            Some(2003),
            Some(2013),
            Some(2026),
            Some(1040),
            Some(1053),
            Some(1129),
            Some(1105),
            Some(3169),
            Some(0),
        ] {
            assert_eq!(kind(code), FailureKind::Down, "{code:?}");
        }
    }

    #[test]
    fn a_refusing_server_is_never_shunned_and_stays_unknown() {
        for code in MISCONFIGURED_CODES {
            let h = run(&vec![refused(code); 10], secs(5), 2);
            for h in &h {
                assert_eq!(h.status, Status::Unknown, "{code}");
                assert!(h.is_usable());
                assert_eq!(h.misconfigured, Some(code));
                assert_eq!(h.consecutive_errors, 0);
            }
            let last = h.last().unwrap();
            assert_eq!((last.checks, last.failures), (10, 10));
            assert_eq!(
                last.last_error.as_deref(),
                Some(&*format!("backend refused: {code}"))
            );
        }
    }

    #[test]
    fn down_codes_shun_at_the_threshold() {
        for code in [
            None,
            Some(2003),
            Some(2013),
            Some(2026),
            Some(1040),
            Some(1053),
        ] {
            let h = run(&[failed(code, "x"), failed(code, "y")], None, 2);
            assert_eq!(h[0].status, Status::Unknown, "{code:?}");
            assert_eq!(h[1].status, SHUN_UNREACHABLE, "{code:?}");
            assert_eq!(h[1].misconfigured, None);
        }
    }

    #[test]
    fn a_refusal_forgets_the_lag_and_status_but_keeps_the_role() {
        let lagging = Status::Shunned {
            reason: ShunReason::LagOver { lag_s: 9, max_s: 1 },
        };
        for (before, status) in [
            (vec![ok(false, Lag::NotReplica)], Status::Up),
            (vec![ok(true, Lag::Seconds(9))], lagging),
            (vec![ok(true, Lag::Broken)], SHUN_BROKEN),
            (vec![fail("a"), fail("b")], SHUN_UNREACHABLE),
        ] {
            let mut obs = before.clone();
            obs.push(refused(1045));
            let h = run(&obs, secs(1), 2);
            assert_eq!(h[before.len() - 1].status, status);
            let last = h.last().unwrap();
            assert_eq!(last.status, Status::Unknown, "after {status:?}");
            assert_eq!(last.read_only, h[before.len() - 1].read_only);
            assert_eq!(last.writable, h[before.len() - 1].writable);
            assert_eq!(last.lag, Lag::Unknown);
            assert_eq!(last.consecutive_errors, 0);
            assert_eq!(last.misconfigured, Some(1045));
        }
    }

    #[test]
    fn a_check_that_succeeds_again_ends_the_misconfiguration() {
        let h = run(
            &[
                refused(1045),
                refused(1227),
                ok(true, Lag::Seconds(9)),
                ok(true, Lag::Seconds(0)),
            ],
            secs(5),
            2,
        );
        assert_eq!(h[1].misconfigured, Some(1227), "the latest refusal");
        assert_eq!(h[2].misconfigured, None);
        assert_eq!(
            h[2].status,
            Status::Shunned {
                reason: ShunReason::LagOver { lag_s: 9, max_s: 5 }
            },
            "back to normal checking"
        );
        assert_eq!(h[3].status, Status::Up);
        assert_eq!(h[3].read_only, Some(true));
    }

    #[test]
    fn a_refusing_server_that_goes_down_is_shunned_after_the_threshold() {
        let h = run(
            &[
                refused(1045),
                refused(1045),
                fail("a"),
                fail("b"),
                refused(1045),
            ],
            None,
            2,
        );
        assert_eq!(
            h[2].status,
            Status::Unknown,
            "downs count from the last answer"
        );
        assert_eq!(h[3].status, SHUN_UNREACHABLE);
        assert_eq!(h[3].misconfigured, Some(1045), "nothing was fixed");
        // It answers again (still refusing): not down any more.
        assert_eq!(h[4].status, Status::Unknown);
        assert_eq!(h[4].consecutive_errors, 0);
    }

    #[test]
    fn refusals_between_downs_reset_the_count() {
        let mut obs = Vec::new();
        for _ in 0..5 {
            obs.extend([fail("a"), refused(1045)]);
        }
        let h = run(&obs, None, 2);
        assert!(h.iter().all(ServerHealth::is_usable), "{h:?}");
    }

    #[test]
    fn changes_in_lag_alone_are_not_status_changes() {
        let a = Status::Shunned {
            reason: ShunReason::LagOver { lag_s: 6, max_s: 5 },
        };
        let b = Status::Shunned {
            reason: ShunReason::LagOver { lag_s: 7, max_s: 5 },
        };
        assert!(a.same_kind(&b));
        assert!(!a.same_kind(&SHUN_BROKEN));
        assert!(!Status::Up.same_kind(&Status::Unknown));
        assert_eq!(
            ShunReason::LagOver { lag_s: 7, max_s: 5 }.to_string(),
            "lag 7s over max_lag 5s"
        );
    }
}
