//! The errors clients were sent, by kind: the router's own (9001 no usable
//! server, 9006 no writer, 1040 too many connections, 2013 a lost backend,
//! ... each with the kind name its metric uses) and the servers' ERR
//! packets forwarded as they came. Per kind: the code, the SQL state, the
//! last message, how many, first and last time. Bounded: past
//! [`MAX_ERROR_KINDS`] kinds, the one seen least recently makes room.

use std::sync::Mutex;
use std::time::SystemTime;

/// Kinds kept at most.
pub const MAX_ERROR_KINDS: usize = 256;

/// Messages are kept to this many bytes.
pub const MAX_MESSAGE_LEN: usize = 1024;

/// The kind of every ERR forwarded from a server.
pub const BACKEND: &str = "backend";

/// Who made the ERR packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The router.
    Router,
    /// A MySQL server (forwarded as it came).
    Backend,
}

impl Origin {
    /// Its name in the admin interface.
    pub fn label(self) -> &'static str {
        match self {
            Origin::Router => "router",
            Origin::Backend => "backend",
        }
    }
}

/// One ERR packet sent to a client.
#[derive(Debug, Clone, Copy)]
pub struct Sent<'a> {
    /// The MySQL error code.
    pub code: u16,
    /// The SQL state (5 characters).
    pub sql_state: &'a [u8],
    /// The router's name for it (the `kind` label of
    /// `causeway_router_errors`), or [`BACKEND`].
    pub kind: &'static str,
    /// Who made it.
    pub origin: Origin,
    /// Its message.
    pub message: &'a [u8],
}

impl<'a> Sent<'a> {
    /// ERR packet `err`, of `kind` ([`BACKEND`]: a server's, forwarded).
    pub fn of(err: &'a causeway_wire::ErrPacket, kind: &'static str) -> Sent<'a> {
        Sent {
            code: err.code,
            sql_state: err.sql_state.as_ref().map_or(&[][..], |s| &s[..]),
            kind,
            origin: if kind == BACKEND {
                Origin::Backend
            } else {
                Origin::Router
            },
            message: &err.message,
        }
    }
}

/// One row of the error table (the admin interface's `errors`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorRow {
    /// The MySQL error code.
    pub code: u16,
    /// The SQL state of the last one.
    pub sql_state: String,
    /// The router's name for the kind, or `backend`.
    pub kind: &'static str,
    /// Who made it.
    pub origin: Origin,
    /// The last message (at most [`MAX_MESSAGE_LEN`] bytes).
    pub last_message: String,
    /// How many were sent.
    pub count: u64,
    /// When the first was sent (since the start or the last reset).
    pub first_seen: SystemTime,
    /// When the last was sent.
    pub last_seen: SystemTime,
}

/// The error table, shared by every session. Errors are rare next to
/// statements: one lock, a scan of at most [`MAX_ERROR_KINDS`] kinds.
#[derive(Debug, Default)]
pub struct Errors {
    rows: Mutex<Vec<ErrorRow>>,
}

impl Errors {
    /// Counts one ERR sent to a client, at `now`.
    pub fn record(&self, e: &Sent<'_>, now: SystemTime) {
        let mut rows = self.rows.lock().unwrap_or_else(|p| p.into_inner());
        let message =
            super::digests::truncated(&String::from_utf8_lossy(e.message), MAX_MESSAGE_LEN)
                .to_string();
        let state = String::from_utf8_lossy(e.sql_state).into_owned();
        if let Some(r) = rows
            .iter_mut()
            .find(|r| r.code == e.code && r.kind == e.kind)
        {
            r.count += 1;
            r.last_seen = now;
            r.last_message = message;
            r.sql_state = state;
            r.origin = e.origin;
            return;
        }
        let row = ErrorRow {
            code: e.code,
            sql_state: state,
            kind: e.kind,
            origin: e.origin,
            last_message: message,
            count: 1,
            first_seen: now,
            last_seen: now,
        };
        if rows.len() < MAX_ERROR_KINDS {
            rows.push(row);
            return;
        }
        if let Some(oldest) = rows.iter_mut().min_by_key(|r| r.last_seen) {
            *oldest = row;
        }
    }

    /// Every kind, most recent first.
    pub fn snapshot(&self) -> Vec<ErrorRow> {
        let mut rows = self.rows.lock().unwrap_or_else(|p| p.into_inner()).clone();
        rows.sort_by_key(|r| std::cmp::Reverse(r.last_seen));
        rows
    }

    /// Forgets every kind.
    pub fn reset(&self) {
        self.rows.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn sent(code: u16, kind: &'static str, message: &'static str) -> Sent<'static> {
        Sent {
            code,
            sql_state: b"HY000",
            kind,
            origin: if kind == BACKEND {
                Origin::Backend
            } else {
                Origin::Router
            },
            message: message.as_bytes(),
        }
    }

    #[test]
    fn errors_are_counted_by_code_and_kind() {
        let e = Errors::default();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let at = |s: u64| t0 + Duration::from_secs(s);
        e.record(&sent(9001, "no_backend", "first"), at(0));
        e.record(&sent(9001, "no_backend", "second"), at(1));
        e.record(&sent(1062, BACKEND, "Duplicate entry '1'"), at(2));
        e.record(&sent(1040, "max_connections", "Too many"), at(3));
        e.record(&sent(1040, "login_limit", "Too many logins"), at(4));
        let rows = e.snapshot();
        assert_eq!(rows.len(), 4);
        assert_eq!(rows[0].kind, "login_limit", "most recent first");
        let r = rows.iter().find(|r| r.code == 9001).unwrap();
        assert_eq!(r.count, 2);
        assert_eq!(r.last_message, "second");
        assert_eq!((r.first_seen, r.last_seen), (at(0), at(1)));
        assert_eq!(r.origin, Origin::Router);
        let b = rows.iter().find(|r| r.code == 1062).unwrap();
        assert_eq!((b.kind, b.origin.label()), (BACKEND, "backend"));
        assert_eq!(b.sql_state, "HY000");
        e.reset();
        assert!(e.snapshot().is_empty());
    }

    #[test]
    fn the_table_is_bounded_by_evicting_the_least_recent() {
        let e = Errors::default();
        let t0 = SystemTime::UNIX_EPOCH;
        for code in 0..MAX_ERROR_KINDS as u16 {
            e.record(
                &sent(code, BACKEND, "x"),
                t0 + Duration::from_secs(code.into()),
            );
        }
        // Code 0 seen again: now the most recent.
        e.record(&sent(0, BACKEND, "x"), t0 + Duration::from_secs(10_000));
        e.record(
            &sent(60_000, BACKEND, "new"),
            t0 + Duration::from_secs(10_001),
        );
        let rows = e.snapshot();
        assert_eq!(rows.len(), MAX_ERROR_KINDS);
        assert!(rows.iter().any(|r| r.code == 60_000));
        assert!(rows.iter().any(|r| r.code == 0), "seen recently: kept");
        assert!(!rows.iter().any(|r| r.code == 1), "the least recent went");
    }

    #[test]
    fn long_messages_are_cut() {
        let e = Errors::default();
        let long = "é".repeat(MAX_MESSAGE_LEN);
        e.record(
            &Sent {
                message: long.as_bytes(),
                ..sent(1, BACKEND, "")
            },
            SystemTime::now(),
        );
        let m = &e.snapshot()[0].last_message;
        assert_eq!(m.len(), MAX_MESSAGE_LEN);
    }
}
