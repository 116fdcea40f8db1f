//! The session's state, known from the server: pure, no I/O.
//!
//! A session borrows backend connections; what it is made of lives here,
//! not in a connection: the transaction, the settings every connection must
//! be given ([`Wanted`]), what lives only on one connection and so keeps
//! that connection with the session ([`Pins`]), where the previous
//! statement ran (for `ROW_COUNT()`, `FOUND_ROWS()`), `LAST_INSERT_ID()`,
//! the client's own tracker settings. [`SessionState::after`] folds each
//! response in, from the server's trackers first and the statement's text
//! second.
//!
//! ```text
//! Txn:   Idle --response with IN_TRANS from S--> Open(S) --response without IN_TRANS from S--> Idle
//!
//! Pins on the connection to one server, each kept until:
//!   transaction      IN_TRANS                        the transaction ends (COMMIT, ROLLBACK, DDL, ...)
//!   locked_tables    tracker state `L`              the tracker drops it (UNLOCK TABLES, ...)
//!   global_lock      FLUSH TABLES WITH READ LOCK,   UNLOCK TABLES / UNLOCK INSTANCE
//!                    LOCK INSTANCE FOR BACKUP
//!   named_locks      GET_LOCK                       RELEASE_ALL_LOCKS, or IS_USED_LOCK shows none held
//!                                                   (asked when the connection would be released)
//!   temp_tables      CREATE TEMPORARY TABLE         each one dropped
//!   prepared         text PREPARE                   each one deallocated
//!   long_data        COM_STMT_SEND_LONG_DATA        that statement's EXECUTE, RESET or CLOSE
//!   cursor           EXECUTE that opened a cursor   its last row fetched, RESET or CLOSE
//!   next_statement   SQL_CALC_FOUND_ROWS            the next statement (it reads FOUND_ROWS())
//!   unknown_state    the state-change tracker fired COM_RESET_CONNECTION / COM_CHANGE_USER
//!                    and nothing explains it (CALL,
//!                    unparsed text, a variable that
//!                    cannot be replayed)
//!   multiplexing_off the user's or a rule's          the end of the session, RESET, CHANGE_USER
//!                    `multiplexing = false`
//! ```
//!
//! User variables do not pin: a statement that assigns them leaves their
//! names here ([`SessionState::uncaptured`]) until the session reads their
//! values back, which it does before the connection leaves it; from then
//! on they are replayed like system variables. `LAST_INSERT_ID()` likewise
//! ([`LastInsertId`]).

use std::collections::BTreeSet;

use bytes::Bytes;
use causeway_wire::StatusFlags;

use super::replay::{ConnState, Wanted};
use super::track::{ClientTrackers, Tracked};
use crate::ids::ServerId;
use crate::sqlscan::{GlobalLock, NamedLocks, TextPrepare};

/// A backend connection's identity, unique for the router's life.
pub type ConnId = u64;

/// The session's transaction, as the status flags report it.
///
/// ```text
/// Idle --IN_TRANS on S--> Open(S) --no IN_TRANS on S--> Idle
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Txn {
    /// No transaction open.
    #[default]
    Idle,
    /// Open on the connection to this server.
    Open(ServerId),
}

/// Why a connection stays with its session (a metrics label each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PinReason {
    /// An open transaction.
    Transaction,
    /// `LOCK TABLES`.
    LockedTables,
    /// `FLUSH TABLES WITH READ LOCK`, `LOCK INSTANCE FOR BACKUP`.
    GlobalLock,
    /// Named locks (`GET_LOCK`).
    NamedLocks,
    /// Temporary tables.
    TempTables,
    /// Text `PREPARE`.
    Prepared,
    /// Long data sent for a prepared statement.
    LongData,
    /// An open cursor.
    Cursor,
    /// `SQL_CALC_FOUND_ROWS`: the next statement reads `FOUND_ROWS()`.
    NextStatement,
    /// Session state the router cannot name or replay.
    UnknownState,
    /// Multiplexing is off for the user or by a rule.
    MultiplexingOff,
}

impl PinReason {
    /// Every reason, for metrics.
    pub const ALL: [PinReason; 11] = [
        Self::Transaction,
        Self::LockedTables,
        Self::GlobalLock,
        Self::NamedLocks,
        Self::TempTables,
        Self::Prepared,
        Self::LongData,
        Self::Cursor,
        Self::NextStatement,
        Self::UnknownState,
        Self::MultiplexingOff,
    ];

    /// The metrics label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Transaction => "transaction",
            Self::LockedTables => "locked_tables",
            Self::GlobalLock => "global_lock",
            Self::NamedLocks => "named_locks",
            Self::TempTables => "temp_tables",
            Self::Prepared => "prepared",
            Self::LongData => "long_data",
            Self::Cursor => "cursor",
            Self::NextStatement => "next_statement",
            Self::UnknownState => "unknown_state",
            Self::MultiplexingOff => "multiplexing_off",
        }
    }
}

/// Named locks held on one connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LockNames {
    /// Literal names taken (lowercase).
    pub names: BTreeSet<Bytes>,
    /// A lock whose name was not a literal was taken.
    pub unknown: bool,
    /// Since the last statement touching locks, the server confirmed these
    /// are still held (no need to ask again).
    pub confirmed: bool,
}

impl LockNames {
    /// None held.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty() && !self.unknown
    }
}

/// What lives only on the session's connection to one server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pins {
    /// The server.
    pub server: ServerId,
    /// `LOCK TABLES` in force (tracker `L`).
    pub locked_tables: bool,
    /// `FLUSH TABLES WITH READ LOCK` / `FOR EXPORT`.
    pub global_tables: bool,
    /// `LOCK INSTANCE FOR BACKUP`.
    pub global_instance: bool,
    /// Named locks.
    pub locks: LockNames,
    /// Temporary tables by name (lowercase).
    pub temp_tables: BTreeSet<String>,
    /// Text prepared statements by name (lowercase), with the user
    /// variables their `EXECUTE` assigns (`None`: unknown, the text was in
    /// a variable).
    pub prepared: std::collections::BTreeMap<String, Option<Vec<Bytes>>>,
    /// Prepared statements (router ids) with long data sent.
    pub long_data: BTreeSet<u32>,
    /// Prepared statements (router ids) with an open cursor.
    pub cursors: BTreeSet<u32>,
    /// Prepared statements (router ids) that read user variables: MySQL
    /// fixes their result types when they are prepared, so they run where
    /// the client prepared them until it closes them.
    pub bound: BTreeSet<u32>,
    /// Why the state is unknown, when it is.
    pub unknown: Option<&'static str>,
    /// `SQL_CALC_FOUND_ROWS` ran here: keep it for the next statement.
    pub next_statement: bool,
    /// Multiplexing is off for this connection (user or rule).
    pub sticky: bool,
}

impl Pins {
    fn new(server: ServerId) -> Pins {
        Pins {
            server,
            locked_tables: false,
            global_tables: false,
            global_instance: false,
            locks: LockNames::default(),
            temp_tables: BTreeSet::new(),
            prepared: std::collections::BTreeMap::new(),
            long_data: BTreeSet::new(),
            cursors: BTreeSet::new(),
            bound: BTreeSet::new(),
            unknown: None,
            next_statement: false,
            sticky: false,
        }
    }

    /// Why the connection stays (not counting the transaction).
    pub fn reasons(&self) -> impl Iterator<Item = PinReason> + '_ {
        [
            (self.locked_tables, PinReason::LockedTables),
            (
                self.global_tables || self.global_instance,
                PinReason::GlobalLock,
            ),
            (!self.locks.is_empty(), PinReason::NamedLocks),
            (!self.temp_tables.is_empty(), PinReason::TempTables),
            (
                !self.prepared.is_empty() || !self.bound.is_empty(),
                PinReason::Prepared,
            ),
            (!self.long_data.is_empty(), PinReason::LongData),
            (!self.cursors.is_empty(), PinReason::Cursor),
            (self.next_statement, PinReason::NextStatement),
            (self.unknown.is_some(), PinReason::UnknownState),
            (self.sticky, PinReason::MultiplexingOff),
        ]
        .into_iter()
        .filter_map(|(on, r)| on.then_some(r))
    }

    /// Nothing pins.
    pub fn is_empty(&self) -> bool {
        self.reasons().next().is_none()
    }

    /// Everything must run here (the server refuses other tables, or the
    /// session's view of the data is frozen here).
    pub fn exclusive(&self) -> bool {
        self.locked_tables || self.global_tables || self.global_instance
    }
}

/// Where `LAST_INSERT_ID()` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LastInsertId {
    /// Its value (0 for a new session).
    Known(u64),
    /// On this connection: a statement there may have changed it; read
    /// back before the connection leaves the session.
    On(ServerId, ConnId),
    /// Lost with a connection that broke before it was read back: a
    /// statement reading it gets an error, never a guess.
    Lost,
}

/// `ROW_COUNT()`, `FOUND_ROWS()` and `LAST_INSERT_ID()` as read back from
/// the connection of the previous statement before it left the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Captured {
    /// `ROW_COUNT()`.
    pub row_count: i64,
    /// `FOUND_ROWS()`.
    pub found_rows: u64,
}

impl Captured {
    /// A new session's, before any statement ran.
    pub const START: Captured = Captured {
        row_count: -1,
        found_rows: 0,
    };
}

impl Last {
    /// A new session's.
    pub fn start() -> Last {
        Last {
            on: None,
            captured: Some(Captured::START),
        }
    }
}

/// Where the previous statement ran, for `ROW_COUNT()` / `FOUND_ROWS()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Last {
    /// The connection it ran on, while that connection still shows its
    /// results (nothing else ran there since).
    pub on: Option<(ServerId, ConnId)>,
    /// Its results, read back when that connection left the session.
    pub captured: Option<Captured>,
}

/// What the statement itself says it does to the session (from its text),
/// for what the trackers do not report or report without names.
#[derive(Debug, Clone, Copy, Default)]
pub struct Effects<'a> {
    /// User variables it assigns, by name.
    pub assigns: &'a [Bytes],
    /// Temporary tables it creates.
    pub creates_temp: &'a [String],
    /// Tables it drops (temporary ones among them).
    pub drops: &'a [String],
    /// Text `PREPARE`, `EXECUTE`, `DEALLOCATE`.
    pub prepare: Option<&'a TextPrepare>,
    /// For a `PREPARE`: the user variables its statement assigns when
    /// executed (`None`: unknown).
    pub prepared_assigns: Option<&'a [Bytes]>,
    /// Named-lock functions.
    pub locks: Option<&'a NamedLocks>,
    /// Global locks.
    pub global_lock: Option<GlobalLock>,
    /// `SQL_CALC_FOUND_ROWS`.
    pub found_rows_calc: bool,
    /// Mentions `LAST_INSERT_ID` (reads or sets it).
    pub last_insert_id: bool,
    /// The router cannot name what it changes: CALL, text it could not
    /// parse, a text `EXECUTE`.
    pub opaque: bool,
    /// It runs several statements (a multi-statement, a CALL): an ERR
    /// may come after some of them changed the session.
    pub several: bool,
    /// A COM_STMT_PREPARE: its state change is the router's to manage.
    pub protocol_prepare: bool,
    /// A rule turned multiplexing off for statements like this one.
    pub sticky: bool,
}

/// A complete response, as the driver saw it.
#[derive(Debug, Clone, Default)]
pub struct Response {
    /// Status flags of its last OK / EOF (`None`: it had none, e.g. an ERR).
    pub status: Option<StatusFlags>,
    /// It ended with an ERR.
    pub err: bool,
    /// Its trackers.
    pub tracked: Tracked,
    /// `last_insert_id` of its last OK packet.
    pub insert_id: u64,
}

/// What the driver must do after a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct After {
    /// The client changed a `session_track_*` setting on the connection:
    /// the router's trackers must be put back before it is used again.
    pub restore_trackers: bool,
}

/// Variables whose value cannot be given to another connection: they act
/// once (`insert_id`), belong to replication, or name the connection.
const ONE_SHOT: &[&[u8]] = &[
    b"insert_id",
    b"rand_seed1",
    b"rand_seed2",
    b"gtid_next",
    b"gtid_next_list",
    b"pseudo_thread_id",
    b"pseudo_replica_mode",
    b"pseudo_slave_mode",
    b"original_commit_timestamp",
    b"original_server_version",
    b"immediate_server_version",
    b"sql_log_bin",
];

/// The session's state.
#[derive(Debug, Clone, Default)]
pub struct SessionState {
    /// The transaction.
    pub txn: Txn,
    /// What every connection must be given.
    pub wanted: Wanted,
    /// The client's own tracker settings.
    pub client: ClientTrackers,
    /// What keeps connections (one entry per server that has any).
    pub pins: Vec<Pins>,
    /// User variables assigned on a connection and not read back yet.
    pub uncaptured: Vec<(ServerId, Bytes)>,
    /// The previous statement.
    pub last: Last,
    /// `LAST_INSERT_ID()`.
    pub last_insert_id: LastInsertId,
}

impl Default for LastInsertId {
    fn default() -> Self {
        LastInsertId::Known(0)
    }
}

impl SessionState {
    /// A new session's state (`wanted` from its login).
    pub fn new(wanted: Wanted) -> SessionState {
        SessionState {
            wanted,
            last: Last::start(),
            ..SessionState::default()
        }
    }

    /// The pins of `server`, if any.
    pub fn pins(&self, server: ServerId) -> Option<&Pins> {
        self.pins.iter().find(|p| p.server == server)
    }

    fn pins_mut(&mut self, server: ServerId) -> &mut Pins {
        let i = match self.pins.iter().position(|p| p.server == server) {
            Some(i) => i,
            None => {
                self.pins.push(Pins::new(server));
                self.pins.len() - 1
            }
        };
        &mut self.pins[i]
    }

    /// Whether the connection to `server` must stay with the session.
    pub fn pinned(&self, server: ServerId) -> bool {
        self.txn == Txn::Open(server) || self.pins(server).is_some_and(|p| !p.is_empty())
    }

    /// Why the connection to `server` stays, transaction included.
    pub fn reasons(&self, server: ServerId) -> Vec<PinReason> {
        let mut out = Vec::new();
        if self.txn == Txn::Open(server) {
            out.push(PinReason::Transaction);
        }
        if let Some(p) = self.pins(server) {
            out.extend(p.reasons());
        }
        out
    }

    /// The server every statement must go to now, if one: an open
    /// transaction's, or one with locked tables.
    pub fn exclusive(&self) -> Option<ServerId> {
        if let Txn::Open(s) = self.txn {
            return Some(s);
        }
        self.pins.iter().find(|p| p.exclusive()).map(|p| p.server)
    }

    /// Folds in the response to a statement that ran on connection `conn`
    /// (to `server`, state `cs`), with the statement's own `effects`.
    pub fn after(
        &mut self,
        server: ServerId,
        conn: ConnId,
        cs: &mut ConnState,
        effects: &Effects<'_>,
        resp: &Response,
    ) -> After {
        let mut after = After::default();
        // The previous statement's one-statement pin ends with this one.
        for p in &mut self.pins {
            p.next_statement = false;
        }
        if let Some(st) = resp.status {
            if st.contains(StatusFlags::IN_TRANS) {
                self.txn = Txn::Open(server);
            } else if self.txn == Txn::Open(server) {
                self.txn = Txn::Idle;
            }
        }
        let t = &resp.tracked;
        let mut unreplayable = None;
        for (name, value) in &t.vars {
            if self.client.set(name, value) {
                if &name[..] == b"session_track_gtids" {
                    // The connection's own value, compared at each sync
                    // (it cannot change inside a transaction: ERR 1766).
                    cs.gtids = super::replay::GtidTrack::parse(value).unwrap_or(cs.gtids);
                } else {
                    after.restore_trackers = true;
                }
                continue;
            }
            if name == "last_insert_id" || name == "identity" {
                self.last_insert_id = parse_u64(value)
                    .map(LastInsertId::Known)
                    .unwrap_or(LastInsertId::On(server, conn));
                continue;
            }
            if ONE_SHOT.iter().any(|n| n == name) {
                unreplayable = Some("a variable that cannot be replayed was set");
                continue;
            }
            self.wanted.vars.set(name, value);
            cs.vars.set(name, value);
        }
        if let Some(schema) = &t.schema {
            // Empty: none (its schema was dropped).
            let schema = (!schema.is_empty()).then(|| schema.clone());
            self.wanted.schema.clone_from(&schema);
            cs.schema = schema;
        }
        if let Some(c) = &t.characteristics {
            let c = (!c.is_empty()).then(|| c.clone());
            // Inside a transaction the tracker describes the current one;
            // nothing is pending for the next (MySQL refuses SET
            // TRANSACTION inside one).
            if self.txn == Txn::Idle {
                self.wanted.characteristics.clone_from(&c);
                cs.characteristics = c;
            } else {
                self.wanted.characteristics = None;
                cs.characteristics = None;
            }
        }
        if let Some(state) = t.txn {
            self.pins_mut(server).locked_tables = state.locked_tables;
        }
        // An ERR: the statement did nothing, unless it was one of several
        // (a multi-statement, a CALL) and the ones before it did something.
        if !resp.err {
            self.statement_effects(server, cs, effects);
        }
        let by_text = !resp.err
            && (!effects.assigns.is_empty()
                || !effects.creates_temp.is_empty()
                || !effects.drops.is_empty()
                || effects.prepare.is_some()
                || effects.protocol_prepare);
        let explained = !t.vars.is_empty()
            || t.schema.is_some()
            || by_text
            || t.characteristics.is_some()
            || after.restore_trackers;
        if let Some(why) = unreplayable {
            self.pins_mut(server).unknown.get_or_insert(why);
        } else if resp.err && effects.several && (effects.opaque || t.state_changed) {
            // A CALL's ERR hides what its statements before the failing
            // one did; a multi-statement's earlier OKs say whether they
            // changed something.
            self.pins_mut(server)
                .unknown
                .get_or_insert("a statement that failed part way changed the session");
        } else if t.state_changed && (effects.opaque || !explained) {
            self.pins_mut(server)
                .unknown
                .get_or_insert("the server reported a session state change the router cannot name");
        }
        if effects.sticky {
            self.pins_mut(server).sticky = true;
        }
        if resp.insert_id != 0 || effects.last_insert_id || effects.opaque {
            self.last_insert_id = LastInsertId::On(server, conn);
        }
        self.last = Last {
            on: Some((server, conn)),
            captured: None,
        };
        self.pins.retain(|p| !p.is_empty());
        after
    }

    fn statement_effects(&mut self, server: ServerId, cs: &mut ConnState, e: &Effects<'_>) {
        for name in e.assigns {
            if !self
                .uncaptured
                .iter()
                .any(|(s, n)| *s == server && n == name)
            {
                self.uncaptured.push((server, name.clone()));
            }
            // The value elsewhere is stale; this connection's is unknown.
            self.wanted.user_vars.remove(name);
            cs.user_vars.insert(name.clone(), None);
        }
        let p = self.pins_mut(server);
        for t in e.creates_temp {
            p.temp_tables.insert(t.to_ascii_lowercase());
        }
        for t in e.drops {
            p.temp_tables.remove(&t.to_ascii_lowercase());
        }
        match e.prepare {
            Some(TextPrepare::Prepare(n)) => {
                p.prepared
                    .insert(n.clone(), e.prepared_assigns.map(<[Bytes]>::to_vec));
            }
            Some(TextPrepare::Deallocate(n)) => {
                p.prepared.remove(n);
            }
            _ => {}
        }
        if let Some(l) = e.locks {
            if l.releases_all {
                p.locks = LockNames::default();
            }
            p.locks.names.extend(l.takes.iter().cloned());
            p.locks.unknown |= l.takes_unknown;
            p.locks.confirmed = false;
        }
        match e.global_lock {
            Some(GlobalLock::TakeTables) => p.global_tables = true,
            Some(GlobalLock::TakeInstance) => p.global_instance = true,
            Some(GlobalLock::ReleaseTables) => p.global_tables = false,
            Some(GlobalLock::ReleaseInstance) => p.global_instance = false,
            None => {}
        }
        if e.found_rows_calc {
            p.next_statement = true;
        }
    }

    /// Whether the statement's results are still readable on `conn`.
    pub fn last_on(&self, conn: ConnId) -> bool {
        self.last.on.is_some_and(|(_, c)| c == conn)
    }

    /// The user variables to read back from `server` before its
    /// connection leaves the session.
    pub fn uncaptured_on(&self, server: ServerId) -> Vec<Bytes> {
        self.uncaptured
            .iter()
            .filter(|(s, _)| *s == server)
            .map(|(_, n)| n.clone())
            .collect()
    }

    /// The server where a statement that reads `names` must run, because
    /// some of them were assigned there and not read back.
    pub fn vars_live_on(&self, names: &[Bytes]) -> Option<ServerId> {
        self.uncaptured
            .iter()
            .find(|(_, n)| names.contains(n))
            .map(|(s, _)| *s)
    }

    /// What was read back from the connection to `server` (`conn`) as it
    /// leaves: user variables as literals (`None`: a value no literal can
    /// give back, kept pinned instead), and the previous statement's
    /// results and `LAST_INSERT_ID()` when they were asked for. Returns
    /// whether the connection may now leave.
    pub fn captured(
        &mut self,
        server: ServerId,
        conn: ConnId,
        cs: &mut ConnState,
        vars: Vec<(Bytes, Option<String>)>,
        results: Option<(Captured, u64)>,
    ) -> bool {
        let mut ok = true;
        for (name, literal) in vars {
            match literal {
                Some(l) => {
                    self.uncaptured
                        .retain(|(s, n)| !(*s == server && *n == name));
                    self.wanted.user_vars.insert(name.clone(), l.clone());
                    cs.user_vars.insert(name, Some(l));
                }
                None => {
                    ok = false;
                    self.pins_mut(server)
                        .unknown
                        .get_or_insert("a user variable whose value cannot be replayed");
                }
            }
        }
        if let Some((c, lid)) = results {
            if self.last_on(conn) {
                // The read-back is a statement too: from now on the values
                // are these, wherever the connection goes.
                self.last = Last {
                    on: None,
                    captured: Some(c),
                };
            }
            if self.last_insert_id == LastInsertId::On(server, conn) {
                self.last_insert_id = LastInsertId::Known(lid);
            }
        }
        ok
    }

    /// The connection to `server` (`conn`) left the session.
    pub fn left(&mut self, server: ServerId, conn: ConnId) {
        if self.last_on(conn) {
            self.last.on = None;
        }
        if self.last_insert_id == LastInsertId::On(server, conn) {
            // Not read back (the connection broke).
            self.last_insert_id = LastInsertId::Lost;
        }
        self.uncaptured.retain(|(s, _)| *s != server);
        self.pins.retain(|p| p.server != server);
        if self.txn == Txn::Open(server) {
            self.txn = Txn::Idle;
        }
    }

    /// Named locks on `server` the server confirmed: those still held.
    pub fn locks_confirmed(&mut self, server: ServerId, held: &[Bytes]) {
        let p = self.pins_mut(server);
        p.locks.names.retain(|n| held.contains(n));
        p.locks.confirmed = true;
        self.pins.retain(|p| !p.is_empty());
    }

    /// A prepared statement (router id `stmt`) sent long data on `server`.
    pub fn long_data(&mut self, server: ServerId, stmt: u32) {
        self.pins_mut(server).long_data.insert(stmt);
    }

    /// A cursor of `stmt` opened (`true`) or closed on `server`.
    pub fn cursor(&mut self, server: ServerId, stmt: u32, open: bool) {
        if open {
            self.pins_mut(server).cursors.insert(stmt);
            return;
        }
        // Every EXECUTE without a cursor comes here: no pins made to be
        // dropped again.
        if let Some(p) = self.pins.iter_mut().find(|p| p.server == server) {
            if p.cursors.remove(&stmt) {
                self.pins.retain(|p| !p.is_empty());
            }
        }
    }

    /// `stmt` was executed, reset or closed: its long data is gone (and
    /// with a reset or close, its cursor).
    pub fn statement_done(&mut self, stmt: u32, cursor_too: bool) {
        for p in &mut self.pins {
            p.long_data.remove(&stmt);
            if cursor_too {
                p.cursors.remove(&stmt);
            }
        }
        self.pins.retain(|p| !p.is_empty());
    }

    /// `stmt`, prepared on `server`, reads user variables: it stays there.
    pub fn bind_statement(&mut self, server: ServerId, stmt: u32) {
        self.pins_mut(server).bound.insert(stmt);
    }

    /// `stmt` was closed.
    pub fn statement_closed(&mut self, stmt: u32) {
        for p in &mut self.pins {
            p.bound.remove(&stmt);
        }
        self.statement_done(stmt, true);
    }

    /// The server holding the open cursor, the long data of `stmt`, or
    /// `stmt` itself when it is bound there.
    pub fn statement_on(&self, stmt: u32) -> Option<ServerId> {
        self.pins
            .iter()
            .find(|p| {
                p.long_data.contains(&stmt) || p.cursors.contains(&stmt) || p.bound.contains(&stmt)
            })
            .map(|p| p.server)
    }

    /// The server with temporary table `name`, or text statement `name`.
    pub fn temp_table_on(&self, name: &str) -> Option<ServerId> {
        self.pins
            .iter()
            .find(|p| p.temp_tables.contains(name))
            .map(|p| p.server)
    }

    /// The server with text prepared statement `name`.
    pub fn prepared_on(&self, name: &str) -> Option<ServerId> {
        self.pins
            .iter()
            .find(|p| p.prepared.contains_key(name))
            .map(|p| p.server)
    }

    /// What `EXECUTE name` assigns: the user variables its statement
    /// assigns (`None`: unknown, the statement was given in a variable).
    pub fn prepared_assigns(&self, name: &str) -> Option<&[Bytes]> {
        self.pins
            .iter()
            .find_map(|p| p.prepared.get(name))
            .and_then(|a| a.as_deref())
    }

    /// The server holding named locks.
    pub fn locks_on(&self) -> Option<ServerId> {
        self.pins
            .iter()
            .find(|p| !p.locks.is_empty())
            .map(|p| p.server)
    }

    /// Whether the session has temporary tables anywhere.
    pub fn has_temp_tables(&self) -> bool {
        self.pins.iter().any(|p| !p.temp_tables.is_empty())
    }

    /// Something the router cannot name now lives on `server` (`why`).
    pub fn pin_unknown(&mut self, server: ServerId, why: &'static str) {
        self.pins_mut(server).unknown.get_or_insert(why);
    }

    /// Multiplexing is off for the whole session: the connection to
    /// `server` stays.
    pub fn stick(&mut self, server: ServerId) {
        self.pins_mut(server).sticky = true;
    }

    /// Moves what the state holds to the ids of a new configuration
    /// (`map` gives a server's new id by its name); whatever lived on a
    /// server the new one does not have is gone with its connection.
    pub fn remap(&mut self, map: &dyn Fn(ServerId) -> Option<ServerId>) {
        self.txn = match self.txn {
            Txn::Open(s) => map(s).map_or(Txn::Idle, Txn::Open),
            Txn::Idle => Txn::Idle,
        };
        self.pins = std::mem::take(&mut self.pins)
            .into_iter()
            .filter_map(|mut p| {
                p.server = map(p.server)?;
                Some(p)
            })
            .collect();
        self.uncaptured = std::mem::take(&mut self.uncaptured)
            .into_iter()
            .filter_map(|(s, n)| Some((map(s)?, n)))
            .collect();
        self.last.on = self.last.on.and_then(|(s, c)| Some((map(s)?, c)));
        if let LastInsertId::On(s, c) = self.last_insert_id {
            self.last_insert_id = map(s).map_or(LastInsertId::Lost, |s| LastInsertId::On(s, c));
        }
    }

    /// COM_RESET_CONNECTION or COM_CHANGE_USER: everything the server
    /// forgets, the session forgets (the schema stays with a reset; the
    /// GTIDs the session wrote are kept by the caller).
    pub fn reset(&mut self) {
        self.txn = Txn::Idle;
        self.wanted.vars.clear();
        self.wanted.characteristics = None;
        self.wanted.user_vars.clear();
        self.client = ClientTrackers::default();
        self.pins.clear();
        self.uncaptured.clear();
        self.last = Last::start();
        self.last_insert_id = LastInsertId::Known(0);
    }
}

fn parse_u64(v: &[u8]) -> Option<u64> {
    std::str::from_utf8(v).ok()?.parse().ok()
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
