//! Prepared statements across the session's connections: the client sees
//! the router's statement ids; each statement is prepared lazily on the
//! server an EXECUTE is routed to, with the parameter types of the last
//! EXECUTE that bound them supplied to a server that has not seen them.
//!
//! ```text
//! PREPARE --routed like its SQL--> server A (client id = router's)
//! EXECUTE --routed now--> server B: [prepare on B, swallowed] [types added] --> B
//! SEND_LONG_DATA --> server B, and the next EXECUTE follows it there
//! FETCH, RESET --> the server of the last EXECUTE
//! CLOSE --> every server holding it (no reply)
//! ```

use std::collections::HashSet;

use bytes::{BufMut, Bytes, BytesMut};
use causeway_wire::buf::read_lenenc_int;
use causeway_wire::flags::Command;
use causeway_wire::response::{PacketRole, ResponseTracker};
use causeway_wire::{CapabilityFlags, Chunk, ErrPacket};

use super::{router_err, Session};
use crate::classify::Classified;
use crate::error::{Error, Result};

/// `CURSOR_TYPE`/`PARAMETER_COUNT_AVAILABLE` flag of COM_STMT_EXECUTE.
const PARAMETER_COUNT_AVAILABLE: u8 = 0x08;

/// A prepared statement, as the client knows it.
#[derive(Debug)]
pub(super) struct Prepared {
    sql: Bytes,
    class: Classified,
    params: u16,
    /// Backend statement ids by server.
    on: Vec<(String, u32)>,
    /// The parameter-type block of the last EXECUTE that bound types.
    types: Option<Bytes>,
    /// Servers whose statement has seen `types`.
    typed: HashSet<String>,
    /// Where SEND_LONG_DATA went since the last EXECUTE.
    long_data: Option<String>,
    /// Why a SEND_LONG_DATA could not be delivered (no reply is allowed to
    /// it): the next EXECUTE answers with it, as MySQL does with its own.
    long_data_err: Option<ErrPacket>,
    /// Where the last EXECUTE ran (FETCH and RESET go there).
    last_exec: Option<String>,
}

impl Session<'_> {
    pub(super) async fn prepare(&mut self, first: Chunk) -> Result<()> {
        let raw = first.payload.slice(1..);
        let sql = String::from_utf8_lossy(&raw).into_owned();
        let class = self.classify(&sql);
        let Some((i, _)) = self.prepare_target(&sql, &class).await? else {
            return Ok(());
        };
        let id = self.next_stmt;
        let out = self.forward(first, i, Some(id)).await?;
        self.after(i, &out);
        if let Some((backend_id, params)) = out.prepared {
            self.next_stmt = self.next_stmt.wrapping_add(1).max(1);
            self.stmts.insert(
                id,
                Prepared {
                    sql: raw,
                    class,
                    params,
                    on: vec![(self.conns[i].server.clone(), backend_id)],
                    types: None,
                    typed: HashSet::new(),
                    long_data: None,
                    long_data_err: None,
                    last_exec: None,
                },
            );
        }
        Ok(())
    }

    /// EXECUTE, SEND_LONG_DATA, FETCH, RESET, CLOSE of a prepared statement.
    pub(super) async fn statement(&mut self, first: Chunk) -> Result<()> {
        let command = first.payload[0];
        let id = u32::from_le_bytes([
            first.payload[1],
            first.payload[2],
            first.payload[3],
            first.payload[4],
        ]);
        if command == Command::StmtExecute as u8 || command == Command::StmtReset as u8 {
            let failed = self.stmts.get_mut(&id).and_then(|s| {
                let err = s.long_data_err.take()?;
                s.long_data = None;
                Some(err)
            });
            // RESET drops the long data and its error, then runs as usual.
            if let (Some(err), true) = (failed, command == Command::StmtExecute as u8) {
                return self.send_client_err(&err).await;
            }
        }
        if command != Command::StmtSendLongData as u8 {
            return self.statement_of(first, id).await;
        }
        // No reply is allowed: an ERR the router would send is kept for the
        // EXECUTE (the rest of a long chunk is still read and dropped).
        self.silent = true;
        let res = self.statement_of(first, id).await;
        self.silent = false;
        if let Some(err) = self.withheld.take() {
            if let Some(s) = self.stmts.get_mut(&id) {
                s.long_data_err.get_or_insert(err);
            }
        }
        res
    }

    async fn statement_of(&mut self, first: Chunk, id: u32) -> Result<()> {
        let command = first.payload[0];
        let Some(stmt) = self.stmts.get(&id) else {
            if command == Command::StmtClose as u8 || command == Command::StmtSendLongData as u8 {
                return Ok(());
            }
            let err = ErrPacket::new(
                1243,
                *b"HY000",
                format!("Unknown prepared statement handler ({id}) given to the router"),
            );
            return self.send_client_err(&err).await;
        };
        if command == Command::StmtClose as u8 {
            let on = stmt.on.clone();
            self.stmts.remove(&id);
            for (server, bid) in on {
                if let Some(c) = self.conns.iter_mut().find(|c| c.server == server) {
                    let mut p = BytesMut::with_capacity(5);
                    p.put_u8(command);
                    p.put_u32_le(bid);
                    c.io.write_packet(0, &p).await?;
                }
            }
            return Ok(());
        }
        // Where it goes: FETCH and RESET follow the last EXECUTE; EXECUTE
        // follows SEND_LONG_DATA; otherwise routed like its statement.
        let pinned = if command == Command::StmtFetch as u8 || command == Command::StmtReset as u8 {
            stmt.last_exec
                .clone()
                .or_else(|| stmt.on.first().map(|o| o.0.clone()))
        } else {
            stmt.long_data.clone()
        };
        let target = match pinned.and_then(|s| self.conns.iter().position(|c| c.server == s)) {
            Some(i) => Some(i),
            None => {
                let sql = String::from_utf8_lossy(&stmt.sql).into_owned();
                let class = stmt.class.clone();
                self.prepare_target(&sql, &class).await?.map(|(i, _)| i)
            }
        };
        let Some(i) = target else {
            return Ok(());
        };
        let Some(bid) = self.ensure_prepared(id, i).await? else {
            return Ok(());
        };
        let server = self.conns[i].server.clone();
        let first = self.rewrite(first, id, bid, &server);
        let Some(stmt) = self.stmts.get_mut(&id) else {
            return Ok(());
        };
        if command == Command::StmtSendLongData as u8 {
            stmt.long_data = Some(server);
            // No response; forward() still takes every chunk of a long one.
            self.forward(first, i, None).await?;
            return Ok(());
        }
        if command == Command::StmtExecute as u8 {
            stmt.long_data = None;
            stmt.last_exec = Some(server);
        }
        let out = self.forward(first, i, None).await?;
        self.after(i, &out);
        Ok(())
    }

    /// The backend id of client statement `id` on connection `i`, preparing
    /// it there first when needed (the client sees nothing of that).
    async fn ensure_prepared(&mut self, id: u32, i: usize) -> Result<Option<u32>> {
        let server = self.conns[i].server.clone();
        let Some(stmt) = self.stmts.get(&id) else {
            return Ok(None);
        };
        if let Some(&(_, bid)) = stmt.on.iter().find(|o| o.0 == server) {
            return Ok(Some(bid));
        }
        let mut p = BytesMut::with_capacity(stmt.sql.len() + 1);
        p.put_u8(Command::StmtPrepare as u8);
        p.put_slice(&stmt.sql);
        let c = &mut self.conns[i];
        let mut tracker = ResponseTracker::for_command(&p, c.caps);
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
                if let Some(stmt) = self.stmts.get_mut(&id) {
                    stmt.on.push((server, bid));
                }
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
    /// without types on a connection that has not seen them, the types of
    /// the last EXECUTE that sent them.
    fn rewrite(&mut self, first: Chunk, id: u32, bid: u32, server: &str) -> Chunk {
        let mut payload = BytesMut::from(&first.payload[..]);
        payload[1..5].copy_from_slice(&bid.to_le_bytes());
        if payload[0] == Command::StmtExecute as u8 && !first.more {
            if let Some(stmt) = self.stmts.get_mut(&id) {
                let qa = self.caps.contains(CapabilityFlags::QUERY_ATTRIBUTES);
                if let Some(layout) = execute_layout(&payload, stmt.params, qa) {
                    if payload[layout.bound_at] == 1 {
                        stmt.types = Some(Bytes::copy_from_slice(
                            &payload[layout.bound_at + 1..layout.types_end],
                        ));
                        stmt.typed.insert(server.to_string());
                    } else if !stmt.typed.contains(server) {
                        if let Some(types) = &stmt.types {
                            let mut p = BytesMut::with_capacity(payload.len() + types.len());
                            p.put_slice(&payload[..layout.bound_at]);
                            p.put_u8(1);
                            p.put_slice(types);
                            p.put_slice(&payload[layout.bound_at + 1..]);
                            payload = p;
                            stmt.typed.insert(server.to_string());
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
                end += n + usize::try_from(len).ok()?;
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
        // No parameters, truncated packets, a bad flag: left alone.
        assert_eq!(execute_layout(&r, 0, false), None);
        assert_eq!(execute_layout(&p[..11], 2, false), None);
        assert_eq!(execute_layout(&p[..14], 2, false), None);
        let mut bad = p.clone();
        bad[11] = 7;
        assert_eq!(execute_layout(&bad, 2, false), None);
    }
}
