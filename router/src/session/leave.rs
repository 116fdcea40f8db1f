//! What happens as a connection leaves the session: what lives only on it
//! is read back first (user variables, `LAST_INSERT_ID()`, `ROW_COUNT()`,
//! `FOUND_ROWS()`, which named locks are still held), then it goes back to
//! its pool (reset first when it carries user variables, which MySQL cannot
//! unset), or it stays, pinned. Also the read-back of user variables a
//! statement needs on another connection.
//!
//! ```text
//! idle multiplex_delay / another session waits ──> release(k):
//!     pinned (not only by locks)? stay
//!     capture: one SELECT of what is needed ──> still pinned? stay
//!     user variables on it? COM_RESET_CONNECTION ──> pool (own id remembered: affinity)
//! session end ──> close_all: pinned ones reset, the session's statements closed, all to the pool
//! ```

use bytes::{BufMut, Bytes, BytesMut};
use causeway_wire::flags::Command;
use causeway_wire::ErrPacket;
use tracing::{debug, warn};

use super::driver::Session;
use super::replay::{string_literal, user_literal, user_var_name, UserValue};
use super::state::{Captured, LastInsertId, PinReason};
use crate::backend::pool::Conn;
use crate::backend::query::simple_query_up_to;
use crate::error::{Error, Result};
use crate::ids::ServerId;

/// The largest user variable value read back (bytes); a larger one keeps
/// its connection with the session.
const VAR_READ_BACK: usize = 256 * 1024;

/// `MYSQL_TYPE_*` of the column types a user variable reads back as.
const TYPE_DOUBLE: u8 = 5;
const TYPE_NULL: u8 = 6;
const TYPE_LONGLONG: u8 = 8;
const TYPE_NEWDECIMAL: u8 = 246;

/// Which held connections [`Session::release_held`] gives back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Release {
    /// The session went idle for `multiplex_delay`: all it may.
    Idle,
    /// It is about to wait for another connection: those nothing pins
    /// (without asking about named locks).
    Unpinned,
    /// After a command: those of servers where another session waits.
    Awaited,
}

impl Session<'_> {
    /// Held connection `k` is closed, its state unknown or broken (`why`).
    /// What lived only there is gone: when that is the session's state (a
    /// transaction, temporary tables, locks, user variables not read back),
    /// the session cannot go on as the client believes it does, and the
    /// error that ends it is returned.
    pub(super) async fn lose(&mut self, k: usize, why: &str) -> Result<()> {
        // Boxed: large and off the per-statement path (see ARCHITECTURE.md,
        // "Future sizes").
        Box::pin(self.lose_unboxed(k, why)).await
    }

    async fn lose_unboxed(&mut self, k: usize, why: &str) -> Result<()> {
        let h = self.held.remove(k);
        let mut lost: Vec<&str> = self
            .state
            .reasons(h.server)
            .into_iter()
            .map(PinReason::label)
            .collect();
        if !self.state.uncaptured_on(h.server).is_empty() {
            lost.push("user_variables");
        }
        self.state.left(h.server, h.conn.id);
        let server = h.conn.server.clone();
        h.conn.quit().await;
        self.publish();
        if lost.is_empty() {
            return Ok(());
        }
        warn!(server = %server, lost = ?lost, why, "a backend connection holding session state was lost; ending the session");
        Err(Error::SessionLost(ErrPacket::new(
            2013,
            *b"HY000",
            format!(
                "Lost connection to MySQL server during query (Causeway: the connection to \
                 server '{server}' that held the session's {} was lost: {why})",
                lost.join(", ")
            ),
        )))
    }

    /// The user variables `names` a statement on `target` uses that were
    /// assigned on another held connection and not read back: read back
    /// now (that connection stays), so the replay gives them to `target`.
    /// False when one could not be (a value no literal gives back): the
    /// statement must then run where they are.
    pub(super) async fn bring_vars(&mut self, target: ServerId, names: &[Bytes]) -> Result<bool> {
        loop {
            let Some(from) = self.state.vars_live_on(names).filter(|&s| s != target) else {
                return Ok(true);
            };
            let Some(k) = self.held_index(from) else {
                return Ok(true);
            };
            match self.capture(k).await {
                Ok(true) => {}
                Ok(false) => return Ok(false),
                Err(e) => {
                    debug!(error = %e.report(), "reading back user variables failed; the connection is closed");
                    self.lose(k, &e.report()).await?;
                }
            }
        }
    }

    /// Gives back the held connections `which` selects; [`Session::release`]
    /// keeps the pinned ones (asking first whether named locks are still
    /// held). Then the pin gauges follow the session.
    pub(super) async fn release_held(&mut self, which: Release) -> Result<()> {
        let mut k = 0;
        while k < self.held.len() {
            let before = self.held.len();
            let server = self.held[k].server;
            let go = match which {
                Release::Idle => true,
                Release::Unpinned => !self.state.pinned(server),
                Release::Awaited => self.cur.pool(server).has_waiters(),
            };
            if go {
                self.release(k).await?;
            }
            if self.held.len() == before {
                k += 1;
            }
        }
        self.count_pins();
        Ok(())
    }

    /// Gives back the unpinned connections held on servers that serve no
    /// group any more (drained or taken offline by an operator, shunned),
    /// so a busy session does not keep one in use there.
    pub(super) async fn leave_out_of_service(&mut self) -> Result<()> {
        let mut k = 0;
        while k < self.held.len() {
            let before = self.held.len();
            let server = self.held[k].server;
            let serving = self.cur.members.members.iter().any(|m| m.contains(&server));
            if !serving && !self.state.pinned(server) {
                self.release(k).await?;
            }
            if self.held.len() == before {
                k += 1;
            }
        }
        self.count_pins();
        Ok(())
    }

    /// Gives held connection `k` back to its pool, after reading back what
    /// lives only on it; keeps it when named locks turn out to be held.
    pub(super) async fn release(&mut self, k: usize) -> Result<()> {
        // Boxed: large and off the per-statement path (see ARCHITECTURE.md,
        // "Future sizes").
        Box::pin(self.release_unboxed(k)).await
    }

    async fn release_unboxed(&mut self, k: usize) -> Result<()> {
        let server = self.held[k].server;
        let id = self.held[k].conn.id;
        if self.state.pinned(server) && !self.only_locks(server) {
            return Ok(());
        }
        match self.capture(k).await {
            Ok(true) => {}
            Ok(false) => return Ok(()),
            Err(e) => {
                debug!(error = %e.report(), "reading back session state failed; the connection is closed");
                return self.lose(k, &e.report()).await;
            }
        }
        if self.state.pinned(server) {
            return Ok(());
        }
        let h = self.held.remove(k);
        self.state.left(server, id);
        self.shared
            .metrics
            .statements_per_borrow
            .observe(h.statements as f64);
        match self.affinity.iter_mut().find(|(s, _)| *s == server) {
            Some(a) => a.1 = id,
            None => self.affinity.push((server, id)),
        }
        let max_idle = self.cur.rt.config.backend.pool_max_idle;
        let mut conn = h.conn;
        if !self.clean(&mut conn).await {
            conn.quit().await;
            self.publish();
            return Ok(());
        }
        if let Some(c) = self.cur.pool(server).give_back(conn, max_idle) {
            c.quit().await;
        }
        self.publish();
        Ok(())
    }

    /// A connection leaving the session must not carry its user
    /// variables: MySQL has no way to unset one (a NULL keeps its type, and
    /// prepared statements fix their result types from it), so a connection
    /// that has any is reset (COM_RESET_CONNECTION) first. False: the reset
    /// failed and the connection must be closed.
    async fn clean(&mut self, conn: &mut Conn) -> bool {
        if conn.state.user_vars.is_empty() {
            return true;
        }
        self.shared.metrics.resets.inc();
        let limit = self.cur.rt.config.backend.connect_timeout;
        conn.reset(limit).await
    }

    /// Whether named locks are all that pins the connection to `server`.
    pub(super) fn only_locks(&self, server: ServerId) -> bool {
        self.state.txn != super::state::Txn::Open(server)
            && self.state.pins(server).is_some_and(|p| {
                let mut rest = p.clone();
                rest.locks = Default::default();
                rest.is_empty() && !p.locks.unknown && !p.locks.confirmed
            })
    }

    /// Reads back from held connection `k` what the session needs when it
    /// leaves: user variables assigned there, `LAST_INSERT_ID()`,
    /// `ROW_COUNT()` and `FOUND_ROWS()` of the previous statement, which
    /// named locks are still held. One query, only when something is
    /// needed. `Ok(false)`: a value could not be read back as a literal
    /// (the connection stays pinned).
    async fn capture(&mut self, k: usize) -> Result<bool> {
        let server = self.held[k].server;
        let id = self.held[k].conn.id;
        let vars = self.state.uncaptured_on(server);
        let results =
            self.state.last_on(id) || self.state.last_insert_id == LastInsertId::On(server, id);
        let locks: Vec<Bytes> = self
            .state
            .pins(server)
            .filter(|p| !p.locks.confirmed && !p.locks.unknown)
            .map(|p| p.locks.names.iter().cloned().collect())
            .unwrap_or_default();
        if vars.is_empty() && !results && locks.is_empty() {
            return Ok(true);
        }
        let mut cols = vec![
            "LAST_INSERT_ID()".to_string(),
            "ROW_COUNT()".into(),
            "FOUND_ROWS()".into(),
        ];
        // A value over VAR_READ_BACK bytes is not read back (the
        // connection stays with the session instead): the read-back is
        // bounded. IF() keeps the variable's type for the column.
        for v in &vars {
            let n = user_var_name(v);
            cols.push(format!(
                "IF(LENGTH(@{n}) > {VAR_READ_BACK}, NULL, @{n}), \
                 IF(LENGTH(@{n}) > {VAR_READ_BACK}, NULL, HEX(@{n})), CHARSET(@{n}), \
                 COLLATION(@{n}), LENGTH(@{n}) > {VAR_READ_BACK}"
            ));
        }
        for l in &locks {
            cols.push(format!(
                "IS_USED_LOCK({}) <=> CONNECTION_ID()",
                string_literal(l)
            ));
        }
        let sql = format!("SELECT {}", cols.join(", "));
        let limit = self.cur.rt.config.backend.connect_timeout;
        let conn = &mut self.held[k].conn;
        let max = (1 << 20) + vars.len() * 3 * VAR_READ_BACK;
        let r = simple_query_up_to(&mut conn.io, conn.key.caps, &sql, limit, max).await?;
        self.shared.metrics.captures.inc();
        let row = r.rows.first().cloned().unwrap_or_default();
        let text = |j: usize| row.get(j).cloned().flatten();
        let num = |j: usize| text(j).and_then(|t| t.parse::<i64>().ok());
        let captured = Captured {
            row_count: num(1).unwrap_or(-1),
            found_rows: num(2).and_then(|v| u64::try_from(v).ok()).unwrap_or(0),
        };
        let lid = text(0).and_then(|t| t.parse::<u64>().ok()).unwrap_or(0);
        let mut literals = Vec::new();
        for (n, v) in vars.iter().enumerate() {
            let at = 3 + n * 5;
            if text(at + 4).as_deref() == Some("1") {
                literals.push((v.clone(), None));
                continue;
            }
            let kind = r.types.get(at).copied().unwrap_or(TYPE_NULL);
            let value = text(at);
            let hex = text(at + 1).unwrap_or_default();
            let charset = text(at + 2).unwrap_or_default();
            let collation = text(at + 3).unwrap_or_default();
            let uv = match (&value, kind) {
                (None, _) => UserValue::TypedNull {
                    kind,
                    charset: &charset,
                    collation: &collation,
                },
                (Some(t), TYPE_LONGLONG) => UserValue::Int(t),
                (Some(t), TYPE_NEWDECIMAL) => UserValue::Decimal(t),
                (Some(t), TYPE_DOUBLE) => UserValue::Double(t),
                (Some(_), _) => UserValue::Str {
                    hex: &hex,
                    charset: &charset,
                    collation: &collation,
                },
            };
            literals.push((v.clone(), user_literal(&uv)));
        }
        let conn = &mut self.held[k].conn;
        let ok = self
            .state
            .captured(server, id, &mut conn.state, literals, Some((captured, lid)));
        if !locks.is_empty() {
            let first = 3 + vars.len() * 5;
            let held: Vec<Bytes> = locks
                .iter()
                .enumerate()
                .filter(|(j, _)| text(first + j).as_deref() == Some("1"))
                .map(|(_, l)| l.clone())
                .collect();
            self.state.locks_confirmed(server, &held);
        }
        Ok(ok)
    }

    /// The end of the session: unpinned connections go back to the pool,
    /// pinned ones are reset first (what lived on them ends, as it would
    /// with the client's own connection), the session's prepared
    /// statements are closed on every connection it holds.
    pub(super) async fn close_all(&mut self) {
        let limit = self.cur.rt.config.backend.connect_timeout;
        let max_idle = self.cur.rt.config.backend.pool_max_idle;
        for mut h in std::mem::take(&mut self.held) {
            let pinned = self.state.pinned(h.server);
            self.state.left(h.server, h.conn.id);
            let known = self.cur.rt.servers.get(h.server.index()).is_some();
            if max_idle == 0 || !known {
                h.conn.quit().await;
                continue;
            }
            let closing = h.conn.stmts.remove_session(self.id);
            for bid in closing {
                let mut p = BytesMut::with_capacity(5);
                p.put_u8(Command::StmtClose as u8);
                p.put_u32_le(bid);
                h.conn.io.queue_packet(0, &p);
            }
            if pinned && !h.conn.reset(limit).await {
                h.conn.quit().await;
                continue;
            }
            if !self.clean(&mut h.conn).await {
                h.conn.quit().await;
                continue;
            }
            if h.conn.io.flush().await.is_err() {
                continue;
            }
            self.shared
                .metrics
                .statements_per_borrow
                .observe(h.statements as f64);
            if let Some(c) = self.cur.pool(h.server).give_back(h.conn, max_idle) {
                c.quit().await;
            }
        }
        self.publish();
    }
}
