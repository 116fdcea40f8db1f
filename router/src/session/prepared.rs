//! Prepared statements across the session's connections: the client sees
//! the router's statement ids; each statement is prepared lazily on
//! whichever connection an EXECUTE runs on (kept in that connection's
//! cache, [`crate::backend::stmts`], bounded, least recently used closed
//! first), with the parameter types the session last bound supplied to a
//! connection that has other ones.
//!
//! ```text
//! PREPARE ──routed like its SQL──> connection A (client id = router's; A's cache has it)
//! EXECUTE ──routed now──> connection B: [prepare on B, swallowed] [types added] ──> B
//!                          a cursor opened: B stays with the session until the last row
//! SEND_LONG_DATA ──> connection B, which stays with the session until the EXECUTE
//! FETCH ──> the cursor's connection (none: ERR 1421 like MySQL)
//! RESET ──> the connection with its long data or cursor (none: answered by the router)
//! CLOSE ──> every held connection that has it (no reply); pooled ones evict it later
//! ```

use bytes::{BufMut, Bytes, BytesMut};
use causeway_wire::buf::read_lenenc_int;
use causeway_wire::flags::Command;
use causeway_wire::response::{PacketRole, ResponseTracker};
use causeway_wire::{CapabilityFlags, Chunk, ErrPacket, StatusFlags};

use super::command::StmtOp;
use super::driver::Session;
use super::plan::router_err;
use crate::classify::Classified;
use crate::error::{Error, Result};

/// Prepared statements one session may hold (MySQL's default
/// `max_prepared_stmt_count`, there for the whole server).
const MAX_SESSION_STATEMENTS: usize = 16_382;

/// `CURSOR_TYPE`/`PARAMETER_COUNT_AVAILABLE` flag of COM_STMT_EXECUTE.
const PARAMETER_COUNT_AVAILABLE: u8 = 0x08;

/// A prepared statement, as the client knows it.
#[derive(Debug)]
pub(crate) struct Prepared {
    /// The text as the client sent it.
    pub(super) sql: Bytes,
    /// Its digest, made once (the statistics count every EXECUTE by it).
    pub(super) digest: Box<str>,
    /// The text, decoded once (routing reads it at every EXECUTE).
    pub(super) text: std::sync::Arc<str>,
    class: std::sync::Arc<Classified>,
    params: u16,
    /// The parameter-type block of the last EXECUTE that bound types.
    types: Option<Bytes>,
    /// Why a SEND_LONG_DATA could not be delivered (no reply is allowed to
    /// it): the next EXECUTE answers with it, as MySQL does with its own.
    long_data_err: Option<ErrPacket>,
}

impl Session<'_> {
    pub(super) async fn prepare(&mut self, first: Chunk) -> Result<()> {
        if self.stmts.len() >= MAX_SESSION_STATEMENTS {
            // What one session may keep in the router is bounded; MySQL's
            // own bound (max_prepared_stmt_count) gives its error.
            let err = ErrPacket::new(
                1461,
                *b"42000",
                format!(
                    "Can't create more than max_prepared_stmt_count statements (current value: \
                     {MAX_SESSION_STATEMENTS})"
                ),
            );
            return self.refuse("prepared_statements", &err).await;
        }
        let raw = first.payload.slice(1..);
        let sql = String::from_utf8_lossy(&raw).into_owned();
        let digest = self.observe_prepare(&sql);
        let class = self.classify(&sql);
        let Some((i, _, _)) = self.connection_for(&sql, &class).await? else {
            return Ok(());
        };
        let names: Vec<Bytes> = class.user_vars().cloned().collect();
        let Some(i) = self.bring(i, &names).await? else {
            return Ok(());
        };
        if !self.sync(i, super::conns::Lid::Untouched).await? {
            return Ok(());
        }
        let id = self.next_stmt;
        let out = self.forward(first, i, Some(id), false).await?;
        let effects = super::state::Effects {
            protocol_prepare: true,
            ..super::state::Effects::default()
        };
        self.after_statement(i, &effects, &out).await?;
        if let Some((backend_id, params)) = out.prepared {
            self.next_stmt = self.next_stmt.wrapping_add(1).max(1);
            if class.user_vars().next().is_some() {
                let server = self.held[i].server;
                self.state.bind_statement(server, id);
            }
            self.stmts.insert(
                id,
                Prepared {
                    sql: raw,
                    digest,
                    text: sql.into(),
                    class: std::sync::Arc::new(class),
                    params,
                    types: None,
                    long_data_err: None,
                },
            );
            self.cached(i, id, backend_id).await?;
        }
        Ok(())
    }

    /// Records statement `id` as `backend_id` on held connection `i`,
    /// closing what the cache evicts.
    async fn cached(&mut self, i: usize, id: u32, backend_id: u32) -> Result<()> {
        let cap = self.cur.rt.config.backend.max_prepared_statements;
        let conn = &mut self.held[i].conn;
        let evicted = conn.stmts.insert((self.id, id), backend_id, cap);
        if evicted.is_empty() {
            return Ok(());
        }
        self.shared
            .metrics
            .statements_evicted
            .inc_by(evicted.len() as u64);
        for bid in evicted {
            let mut p = BytesMut::with_capacity(5);
            p.put_u8(Command::StmtClose as u8);
            p.put_u32_le(bid);
            conn.io.queue_packet(0, &p);
        }
        conn.io.flush().await
    }

    /// EXECUTE, SEND_LONG_DATA, FETCH, RESET, CLOSE of prepared statement
    /// `id` (the router's).
    pub(super) async fn statement(&mut self, first: Chunk, op: StmtOp, id: u32) -> Result<()> {
        if matches!(op, StmtOp::Execute | StmtOp::Reset) {
            let failed = self.stmts.get_mut(&id).and_then(|s| s.long_data_err.take());
            // RESET drops the long data and its error, then runs as usual.
            if let (Some(err), StmtOp::Execute) = (failed, op) {
                self.state.statement_done(id, false);
                return self.send_client_err(&err).await;
            }
        }
        if op == StmtOp::Execute {
            // A read-only refusal of the EXECUTE ran nothing: it runs again
            // where the new writer is (see query()).
            self.read_retried = false;
            loop {
                self.refused_until = None;
                self.read_broke = None;
                self.statement_of(first.clone(), op, id).await?;
                match (self.refused_until.take(), self.read_broke.take()) {
                    (Some(until), _) => {
                        self.wait_for_writer(until).await?;
                    }
                    // A read whose connection broke before it answered
                    // anything: once more, elsewhere.
                    (None, Some(server)) => {
                        self.read_retried = true;
                        self.avoid(server);
                    }
                    _ => return Ok(()),
                }
            }
        }
        if op != StmtOp::SendLongData {
            return self.statement_of(first, op, id).await;
        }
        // No reply is allowed: an ERR the router would send is kept for the
        // EXECUTE (the rest of a long chunk is still read and dropped).
        self.silent = true;
        let res = self.statement_of(first, op, id).await;
        self.silent = false;
        if let Some(err) = self.withheld.take() {
            if let Some(s) = self.stmts.get_mut(&id) {
                s.long_data_err.get_or_insert(err);
            }
        }
        res
    }

    async fn statement_of(&mut self, first: Chunk, op: StmtOp, id: u32) -> Result<()> {
        let Some(stmt) = self.stmts.get(&id) else {
            if matches!(op, StmtOp::Close | StmtOp::SendLongData) {
                return Ok(());
            }
            let err = ErrPacket::new(
                1243,
                *b"HY000",
                format!("Unknown prepared statement handler ({id}) given to the router"),
            );
            return self.send_client_err(&err).await;
        };
        let stmt_opaque = stmt.class.opaque;
        if op == StmtOp::Close {
            self.stmts.remove(&id);
            self.state.statement_closed(id);
            let owner = (self.id, id);
            for h in &mut self.held {
                if let Some(bid) = h.conn.stmts.remove(owner) {
                    let mut p = BytesMut::with_capacity(5);
                    p.put_u8(Command::StmtClose as u8);
                    p.put_u32_le(bid);
                    h.conn.io.write_packet(0, &p).await?;
                }
            }
            return Ok(());
        }
        // Where it goes: where its cursor or long data is; FETCH only there;
        // RESET there, or to a held connection that has it, or answered
        // here; otherwise routed like its statement.
        let on = self.state.statement_on(id).and_then(|s| self.held_index(s));
        let mut read = false;
        let target = match on {
            Some(i) => Some(i),
            None if op == StmtOp::Fetch => {
                let err = ErrPacket::new(
                    1421,
                    *b"HY000",
                    format!("The statement ({id}) has no open cursor."),
                );
                return self.send_client_err(&err).await;
            }
            None if op == StmtOp::Reset => {
                let owner = (self.id, id);
                match self
                    .held
                    .iter_mut()
                    .position(|h| h.conn.stmts.get(owner).is_some())
                {
                    Some(i) => Some(i),
                    None => {
                        self.state.statement_done(id, true);
                        return self.local_ok().await;
                    }
                }
            }
            None => {
                let sql = stmt.text.clone();
                let class = stmt.class.clone();
                self.connection_for(&sql, &class).await?.map(|(i, why, _)| {
                    read = why == crate::route::Why::Read;
                    i
                })
            }
        };
        let Some(i) = target else {
            return Ok(());
        };
        let lid = match self.stmts.get(&id) {
            Some(s) if op == StmtOp::Execute => super::conns::Lid::of(&s.class),
            _ => super::conns::Lid::Untouched,
        };
        let i = if op == StmtOp::Execute {
            let names: Vec<Bytes> = self
                .stmts
                .get(&id)
                .map(|s| s.class.user_vars().cloned().collect())
                .unwrap_or_default();
            let Some(i) = self.bring(i, &names).await? else {
                return Ok(());
            };
            i
        } else {
            i
        };
        // The connection may be fresh from the pool: it gets the session's
        // settings before the statement is prepared there (its schema, its
        // sql_mode decide what the text means).
        if !self.sync(i, lid).await? {
            return Ok(());
        }
        let Some(bid) = self.ensure_prepared(id, i).await? else {
            return Ok(());
        };
        let first = self.rewrite(first, id, bid, i);
        let server = self.held[i].server;
        if op == StmtOp::SendLongData {
            self.state.long_data(server, id);
            // No response; forward() still takes every chunk of a long one.
            self.forward(first, i, None, false).await?;
            return Ok(());
        }
        let whole = !first.more;
        let window = self.failover_window(server);
        let hold = op == StmtOp::Execute
            && whole
            && !stmt_opaque
            && !self.state.pinned(server)
            && self.cur.members.writer.contains(&Some(server))
            && self
                .wait_until
                .is_none_or(|u| std::time::Instant::now() < u)
            && !window.is_zero();
        let out = match self.forward(first, i, None, hold).await {
            Ok(out) => out,
            // As for a text statement: 2013 "outcome unknown", the session
            // goes on unless what it kept was there (a cursor, long data).
            Err(e)
                if op == StmtOp::Execute
                    && e.side() == crate::error::Side::Backend
                    && !matches!(e, Error::SessionLost(_)) =>
            {
                let read = read && op == StmtOp::Execute && whole && !self.read_retried;
                if self.broke(i, e, read, whole).await? {
                    self.read_broke = Some(server);
                }
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        if out.read_only_refused {
            let name = self.cur.rt.servers[server].name.clone();
            self.shared.monitor.saw_read_only(&name);
            self.shared.metrics.read_only_retries.inc();
            let until = *self
                .wait_until
                .get_or_insert_with(|| std::time::Instant::now() + window);
            self.refused_until = Some(until);
            return Ok(());
        }
        if op == StmtOp::Reset {
            self.state.statement_done(id, true);
            return Ok(());
        }
        let status = out.status.unwrap_or_default();
        if op == StmtOp::Execute {
            self.state.statement_done(id, false);
            let stmt = self
                .stmts
                .get(&id)
                .map(|s| (s.class.clone(), s.text.clone()));
            if let Some((class, sql)) = stmt {
                let effects = super::effects::effects(&class, &sql, false);
                self.after_statement(i, &effects, &out).await?;
            }
            let open = status.contains(StatusFlags::CURSOR_EXISTS)
                && !status.contains(StatusFlags::LAST_ROW_SENT);
            self.state.cursor(server, id, open);
        } else if op == StmtOp::Fetch && (out.err || status.contains(StatusFlags::LAST_ROW_SENT)) {
            self.state.cursor(server, id, false);
        }
        Ok(())
    }

    /// The backend id of client statement `id` on held connection `i`,
    /// preparing it there first when needed (the client sees nothing of
    /// that).
    async fn ensure_prepared(&mut self, id: u32, i: usize) -> Result<Option<u32>> {
        let owner = (self.id, id);
        if let Some(e) = self.held[i].conn.stmts.get(owner) {
            return Ok(Some(e.backend_id));
        }
        let Some(stmt) = self.stmts.get(&id) else {
            return Ok(None);
        };
        let mut p = BytesMut::with_capacity(stmt.sql.len() + 1);
        p.put_u8(Command::StmtPrepare as u8);
        p.put_slice(&stmt.sql);
        let c = &mut self.held[i].conn;
        let mut tracker = ResponseTracker::for_command(&p, c.key.caps);
        c.io.write_packet(0, &p).await?;
        let mut bid = None;
        let mut err = None;
        loop {
            let pkt = c.io.read_packet(1 << 24).await?;
            let step = tracker.feed(&pkt.payload).map_err(Error::BackendProtocol)?;
            match step.role {
                PacketRole::PrepareOk(ok) => bid = Some(ok.statement_id),
                PacketRole::Err => err = ErrPacket::decode(&pkt.payload).ok(),
                _ => {}
            }
            if step.done {
                break;
            }
        }
        match (bid, err) {
            (Some(bid), _) => {
                self.cached(i, id, bid).await?;
                Ok(Some(bid))
            }
            (None, err) => {
                let err = err.unwrap_or_else(|| router_err(1105, "Causeway: re-prepare failed"));
                self.refuse("backend_failed", &err).await?;
                Ok(None)
            }
        }
    }

    /// The command with the backend's statement id, and for an EXECUTE
    /// without types on a connection whose statement has other types (or
    /// none), the types the session last bound.
    fn rewrite(&mut self, first: Chunk, id: u32, bid: u32, i: usize) -> Chunk {
        let mut payload = BytesMut::from(&first.payload[..]);
        payload[1..5].copy_from_slice(&bid.to_le_bytes());
        if payload[0] == Command::StmtExecute as u8 && !first.more {
            let owner = (self.id, id);
            let qa = self.caps.contains(CapabilityFlags::QUERY_ATTRIBUTES);
            if let (Some(stmt), Some(entry)) =
                (self.stmts.get_mut(&id), self.held[i].conn.stmts.get(owner))
            {
                if let Some(layout) = execute_layout(&payload, stmt.params, qa) {
                    if payload[layout.bound_at] == 1 {
                        let types =
                            Bytes::copy_from_slice(&payload[layout.bound_at + 1..layout.types_end]);
                        stmt.types = Some(types.clone());
                        entry.types = Some(types);
                    } else if let Some(types) = &stmt.types {
                        if entry.types.as_ref() != Some(types) {
                            let mut p = BytesMut::with_capacity(payload.len() + types.len());
                            p.put_slice(&payload[..layout.bound_at]);
                            p.put_u8(1);
                            p.put_slice(types);
                            p.put_slice(&payload[layout.bound_at + 1..]);
                            payload = p;
                            entry.types = Some(types.clone());
                        }
                    }
                }
            }
        }
        Chunk {
            payload: payload.freeze(),
            ..first
        }
    }
}

/// Where the parameter types sit in a COM_STMT_EXECUTE payload.
#[derive(Debug, PartialEq, Eq)]
struct ExecuteLayout {
    /// Offset of `new_params_bind_flag`.
    bound_at: usize,
    /// End of the types block (equals `bound_at + 1` when the flag is 0).
    types_end: usize,
}

/// Finds the bind flag and the types of a COM_STMT_EXECUTE for a statement
/// with `params` parameters; `None` when there are none or the packet is
/// not what MySQL sends (then it is forwarded unchanged).
fn execute_layout(p: &[u8], params: u16, query_attributes: bool) -> Option<ExecuteLayout> {
    let flags = *p.get(5)?;
    let mut at = 10;
    let mut count = u64::from(params);
    if query_attributes && (params > 0 || flags & PARAMETER_COUNT_AVAILABLE != 0) {
        let (n, len) = read_lenenc_int(p.get(at..)?, "parameter count").ok()?;
        count = n;
        at += len;
    }
    if count == 0 || count > 65_535 {
        return None;
    }
    at += usize::try_from(count.div_ceil(8)).ok()?;
    let bound_at = at;
    let flag = *p.get(bound_at)?;
    let mut end = bound_at + 1;
    if flag == 1 {
        for _ in 0..count {
            end += 2;
            if query_attributes {
                let (len, n) = read_lenenc_int(p.get(end..)?, "parameter name").ok()?;
                // A hostile length must not overflow.
                end = end
                    .checked_add(n)?
                    .checked_add(usize::try_from(len).ok()?)?;
            }
        }
        if end > p.len() {
            return None;
        }
    } else if flag != 0 {
        return None;
    }
    Some(ExecuteLayout {
        bound_at,
        types_end: end,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// A COM_STMT_EXECUTE is client bytes: any of them, for any number
        /// of parameters, is read without a panic, and a layout found lies
        /// within the packet.
        #[test]
        fn execute_layout_takes_any_bytes(
            p in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
            params in proptest::prelude::any::<u16>(),
            attrs in proptest::prelude::any::<bool>(),
        ) {
            if let Some(l) = execute_layout(&p, params, attrs) {
                proptest::prop_assert!(l.bound_at < p.len());
                proptest::prop_assert!(l.types_end <= p.len());
            }
        }
    }

    #[test]
    fn execute_layout_finds_the_types_with_and_without_query_attributes() {
        // id 7, flags 0, iterations 1, 2 params: null bitmap 1 byte, bound 1,
        // types LONG + VAR_STRING, then values.
        let mut p = vec![0x17, 7, 0, 0, 0, 0, 1, 0, 0, 0, 0b00, 1, 3, 0, 253, 0];
        p.extend_from_slice(&[1, 0, 0, 0, 1, b'x']);
        let l = execute_layout(&p, 2, false).unwrap();
        assert_eq!(
            l,
            ExecuteLayout {
                bound_at: 11,
                types_end: 16
            }
        );
        // Same with CLIENT_QUERY_ATTRIBUTES: a count, and a name per type.
        let mut q = vec![
            0x17, 7, 0, 0, 0, 0, 1, 0, 0, 0, 2, 0b00, 1, 3, 0, 0, 253, 0, 1, b'n',
        ];
        q.extend_from_slice(&[1, 0, 0, 0, 1, b'x']);
        let l = execute_layout(&q, 2, true).unwrap();
        assert_eq!(
            l,
            ExecuteLayout {
                bound_at: 12,
                types_end: 20
            }
        );
        // Not bound: the types block is empty.
        let r = vec![0x17, 7, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0];
        assert_eq!(
            execute_layout(&r, 2, false).unwrap(),
            ExecuteLayout {
                bound_at: 11,
                types_end: 12
            }
        );
        // A name length near u64::MAX: no overflow, left alone.
        let mut huge = q.clone();
        huge[15] = 0xfe;
        huge.splice(16..16, [0xff; 8]);
        assert_eq!(execute_layout(&huge, 2, true), None);
        // No parameters, truncated packets, a bad flag: left alone.
        assert_eq!(execute_layout(&r, 0, false), None);
        assert_eq!(execute_layout(&p[..11], 2, false), None);
        assert_eq!(execute_layout(&p[..14], 2, false), None);
        let mut bad = p.clone();
        bad[11] = 7;
        assert_eq!(execute_layout(&bad, 2, false), None);
    }
}
