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
#[path = "health_tests.rs"]
mod tests;
