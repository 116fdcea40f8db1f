//! What each live session is doing, for the admin interface's `sessions`
//! table (the processlist): one [`Activity`] per session, shared with the
//! registry KILL uses, written by the session at the start and the end of
//! each statement (and when it starts or stops waiting), read by
//! [`Activity::row`] when someone looks.
//!
//! ```text
//! Idle ──statement──> Query ──pool full──> WaitingConnection ──> Query
//!   ^                   ├────causal read──> WaitingReplica ──────> Query
//!   │                   ├────no writer────> WaitingWriter ───────> Query
//!   └───────end─────────┘
//! ```

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use bytes::Bytes;

use crate::session::state::PinReason;

/// The statement text is shown up to this many bytes.
pub const MAX_STATEMENT_SHOWN: usize = 1024;

/// What a session is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Between commands.
    Idle,
    /// Running a command (on a server, or in the router).
    Query,
    /// Waiting in a pool's queue for a backend connection.
    WaitingConnection,
    /// A causal read waiting for a replica to catch up.
    WaitingReplica,
    /// Waiting for its cluster to have a writer (a failover).
    WaitingWriter,
}

impl Command {
    const ALL: [Command; 5] = [
        Command::Idle,
        Command::Query,
        Command::WaitingConnection,
        Command::WaitingReplica,
        Command::WaitingWriter,
    ];

    /// Its name in the admin interface.
    pub fn label(self) -> &'static str {
        match self {
            Command::Idle => "idle",
            Command::Query => "query",
            Command::WaitingConnection => "waiting_connection",
            Command::WaitingReplica => "waiting_replica",
            Command::WaitingWriter => "waiting_writer",
        }
    }
}

/// One row of the processlist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    /// The session's id (what `CONNECTION_ID()` and KILL use).
    pub id: u32,
    /// The user it is logged in as.
    pub user: String,
    /// The client's address.
    pub client: SocketAddr,
    /// Its default schema.
    pub schema: Option<String>,
    /// Whether the client's connection is TLS.
    pub tls: bool,
    /// What it is doing.
    pub command: Command,
    /// The statement running now (up to [`MAX_STATEMENT_SHOWN`] bytes).
    pub statement: Option<String>,
    /// Milliseconds in the current command (the statement's time, or
    /// the time idle).
    pub time_ms: u64,
    /// The server the statement runs on; while idle, the server of a
    /// connection the session is pinned to.
    pub server: Option<String>,
    /// Why the session holds its backend connections (`transaction`,
    /// `temp_tables`, ... comma-separated, as the `pinned_sessions`
    /// metric names them), or `None` when it is multiplexed.
    pub pinned: Option<String>,
    /// Statements it ran so far.
    pub statements: u64,
}

/// What changes with each statement, under one lock.
#[derive(Debug)]
struct Now {
    statement: Option<Bytes>,
    since: Instant,
    /// The last server named, kept when not shown (so that the next
    /// statement there takes no reference to its shared name).
    server: Option<Arc<str>>,
    show_server: bool,
    schema: Option<Bytes>,
}

impl Now {
    fn name(&mut self, server: &Arc<str>) {
        if self.server.as_ref().is_none_or(|s| !Arc::ptr_eq(s, server)) {
            self.server = Some(server.clone());
        }
        self.show_server = true;
    }
}

/// What one session is doing now.
#[derive(Debug)]
pub struct Activity {
    /// The client's address.
    pub client: SocketAddr,
    /// Whether the client's connection is TLS.
    pub tls: bool,
    command: AtomicU8,
    /// Pin reasons, one bit per [`PinReason::ALL`] entry.
    pins: AtomicU16,
    statements: AtomicU64,
    now: Mutex<Now>,
}

impl Activity {
    /// A session that just logged in with `schema`.
    pub fn new(client: SocketAddr, tls: bool, schema: Option<Bytes>) -> Activity {
        Activity {
            client,
            tls,
            command: AtomicU8::new(0),
            pins: AtomicU16::new(0),
            statements: AtomicU64::new(0),
            now: Mutex::new(Now {
                statement: None,
                since: Instant::now(),
                server: None,
                show_server: false,
                schema,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Now> {
        self.now.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A statement begins, at `at`: `statement` is its text (the packet's
    /// bytes, not copied).
    pub fn begin(&self, statement: Option<Bytes>, at: Instant) {
        self.set(Command::Query);
        let mut now = self.lock();
        now.statement = statement;
        now.since = at;
        now.show_server = false;
    }

    /// The command runs on `server` now.
    pub fn on_server(&self, server: &Arc<str>) {
        self.lock().name(server);
    }

    /// What the command does now (it waits, or runs again).
    pub fn set(&self, c: Command) {
        self.command.store(c as u8, Ordering::Relaxed);
    }

    /// The statement ended at `at` (counted); `schema` is the session's
    /// schema now, and `pinned_to` the server of a connection the session
    /// stays pinned to.
    pub fn end(&self, at: Instant, schema: Option<&Bytes>, pinned_to: Option<&Arc<str>>) {
        self.set(Command::Idle);
        self.statements.fetch_add(1, Ordering::Relaxed);
        let mut now = self.lock();
        now.statement = None;
        now.since = at;
        match pinned_to {
            Some(s) => now.name(s),
            None => now.show_server = false,
        }
        if now.schema.as_ref() != schema {
            now.schema = schema.cloned();
        }
    }

    /// The session holds connections for `reasons` now.
    pub fn set_pins(&self, reasons: &[PinReason]) {
        let mask = reasons
            .iter()
            .filter_map(|r| PinReason::ALL.iter().position(|a| a == r))
            .fold(0u16, |m, i| m | 1 << i);
        self.pins.store(mask, Ordering::Relaxed);
    }

    /// Its processlist row.
    pub fn row(&self, id: u32, user: &str) -> SessionRow {
        let command = Command::ALL
            .get(usize::from(self.command.load(Ordering::Relaxed)))
            .copied()
            .unwrap_or(Command::Idle);
        let mask = self.pins.load(Ordering::Relaxed);
        let pinned: Vec<&str> = PinReason::ALL
            .iter()
            .enumerate()
            .filter(|(i, _)| mask & (1 << i) != 0)
            .map(|(_, r)| r.label())
            .collect();
        let (statement, since, server, schema) = {
            let now = self.lock();
            (
                now.statement.clone(),
                now.since,
                now.server.clone().filter(|_| now.show_server),
                now.schema.clone(),
            )
        };
        let shown = |b: &[u8]| {
            let cut = &b[..b.len().min(MAX_STATEMENT_SHOWN)];
            // A character cut at the end shows as one replacement mark.
            String::from_utf8_lossy(cut).into_owned()
        };
        SessionRow {
            id,
            user: user.to_string(),
            client: self.client,
            schema: schema.map(|s| String::from_utf8_lossy(&s).into_owned()),
            tls: self.tls,
            command,
            statement: statement.map(|s| shown(&s)),
            time_ms: u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX),
            server: server.map(|s| s.to_string()),
            pinned: (!pinned.is_empty()).then(|| pinned.join(",")),
            statements: self.statements.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_shows_the_statement_while_it_runs_and_idles_after() {
        let a = Activity::new(
            "10.0.0.1:5000".parse().unwrap(),
            true,
            Some(Bytes::from_static(b"shop")),
        );
        let r = a.row(7, "app");
        assert_eq!((r.id, r.user.as_str(), r.tls), (7, "app", true));
        assert_eq!(r.command, Command::Idle);
        assert_eq!(r.schema.as_deref(), Some("shop"));
        assert_eq!((r.statement, r.server, r.pinned), (None, None, None));

        let t0 = Instant::now();
        a.begin(Some(Bytes::from_static(b"SELECT SLEEP(1)")), t0);
        let primary: Arc<str> = "primary".into();
        a.on_server(&primary);
        a.set(Command::WaitingReplica);
        let r = a.row(7, "app");
        assert_eq!(r.command.label(), "waiting_replica");
        assert_eq!(r.statement.as_deref(), Some("SELECT SLEEP(1)"));
        assert_eq!(r.server.as_deref(), Some("primary"));
        a.set_pins(&[PinReason::Transaction, PinReason::TempTables]);
        a.end(Instant::now(), None, Some(&primary));
        let r = a.row(7, "app");
        assert_eq!(r.command, Command::Idle);
        assert_eq!(r.statement, None);
        assert_eq!(r.schema, None);
        assert_eq!(r.server.as_deref(), Some("primary"), "pinned there");
        assert_eq!(r.pinned.as_deref(), Some("transaction,temp_tables"));
        assert_eq!(r.statements, 1);
        a.set_pins(&[]);
        a.end(Instant::now(), None, None);
        let r = a.row(7, "app");
        assert_eq!((r.pinned, r.server, r.statements), (None, None, 2));
    }

    #[test]
    fn long_statements_are_shown_cut() {
        let a = Activity::new("127.0.0.1:1".parse().unwrap(), false, None);
        let text = format!("SELECT '{}'", "é".repeat(2000));
        a.begin(Some(Bytes::from(text)), Instant::now());
        let shown = a.row(1, "u").statement.unwrap();
        assert!(shown.len() <= MAX_STATEMENT_SHOWN + 3, "{}", shown.len());
        assert!(shown.starts_with("SELECT 'é"));
    }
}
