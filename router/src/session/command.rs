//! A client command, decoded once from its first chunk: the driver
//! dispatches on this, nothing further down looks at the raw bytes again
//! to know what it is; a call to `CONNECTION_ID()` in it is given the
//! session's id first ([`with_session_id`]). Pure.

use bytes::{Bytes, BytesMut};
use causeway_wire::command::ComQuery;
use causeway_wire::flags::Command;
use causeway_wire::{CapabilityFlags, Chunk};

use super::kill::{self, KillTarget};

/// What a prepared-statement command does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StmtOp {
    /// COM_STMT_EXECUTE.
    Execute,
    /// COM_STMT_SEND_LONG_DATA (no reply).
    SendLongData,
    /// COM_STMT_FETCH.
    Fetch,
    /// COM_STMT_RESET.
    Reset,
    /// COM_STMT_CLOSE (no reply).
    Close,
}

/// A client command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cmd {
    /// COM_QUIT.
    Quit,
    /// `KILL [QUERY|CONNECTION] n` as a statement of its own, or
    /// COM_PROCESS_KILL.
    Kill(KillTarget),
    /// A malformed COM_PROCESS_KILL (MySQL answers ERR 1835).
    BadKill,
    /// A statement with a KILL the router cannot translate (it would name
    /// a backend thread by the router's id): refused.
    UntranslatableKill,
    /// COM_QUERY: its text (`more`: over 16 MiB, not read whole yet).
    Query {
        /// The statement text (as much as the first chunk holds).
        sql: Bytes,
    },
    /// COM_STMT_PREPARE.
    Prepare,
    /// A command on a prepared statement (router id).
    Stmt(StmtOp, u32),
    /// COM_CHANGE_USER.
    ChangeUser,
    /// COM_PING.
    Ping,
    /// COM_RESET_CONNECTION.
    ResetConnection,
    /// COM_INIT_DB.
    InitDb,
    /// COM_SET_OPTION: multi-statements on (`Some(true)`) or off; `None`
    /// for an option the router does not know (the server answers it).
    SetOption(Option<bool>),
    /// Anything else (COM_STATISTICS, COM_FIELD_LIST, COM_DEBUG, unknown
    /// bytes...): forwarded where the session is, the server answers.
    Other,
}

/// Decodes the command that starts with chunk `first` (`caps`: the
/// client's capabilities). `None` for an empty packet.
pub fn decode(first: &Chunk, caps: CapabilityFlags) -> Option<Cmd> {
    let payload = &first.payload;
    let &code = payload.first()?;
    let whole = !first.more;
    let id = || {
        payload
            .get(1..5)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    Some(match Command::from_u8(code) {
        Some(Command::Quit) => Cmd::Quit,
        Some(Command::ProcessKill) if whole => {
            match causeway_wire::buf::Reader::new(&payload[1..]).u32("connection id") {
                Ok(id) => Cmd::Kill(KillTarget::Connection(id)),
                Err(_) => Cmd::BadKill,
            }
        }
        Some(Command::Query) => {
            let query = whole
                .then(|| ComQuery::decode(payload, caps).ok())
                .flatten();
            let sql = query.map_or_else(|| payload.slice(1..), |q| q.query);
            match kill::parse(&sql) {
                Some(target) if whole => Cmd::Kill(target),
                _ if kill::mentions_kill(&sql) => Cmd::UntranslatableKill,
                _ => Cmd::Query { sql },
            }
        }
        Some(Command::StmtPrepare) if whole => {
            if kill::mentions_kill(&payload[1..]) {
                Cmd::UntranslatableKill
            } else {
                Cmd::Prepare
            }
        }
        // A statement command too short to name its statement: the server
        // answers it.
        Some(Command::StmtExecute) => id().map_or(Cmd::Other, |i| Cmd::Stmt(StmtOp::Execute, i)),
        Some(Command::StmtSendLongData) => {
            id().map_or(Cmd::Other, |i| Cmd::Stmt(StmtOp::SendLongData, i))
        }
        Some(Command::StmtFetch) => id().map_or(Cmd::Other, |i| Cmd::Stmt(StmtOp::Fetch, i)),
        Some(Command::StmtReset) => id().map_or(Cmd::Other, |i| Cmd::Stmt(StmtOp::Reset, i)),
        Some(Command::StmtClose) => id().map_or(Cmd::Other, |i| Cmd::Stmt(StmtOp::Close, i)),
        Some(Command::ChangeUser) if whole => Cmd::ChangeUser,
        Some(Command::Ping) if whole => Cmd::Ping,
        Some(Command::ResetConnection) if whole => Cmd::ResetConnection,
        Some(Command::InitDb) if whole => Cmd::InitDb,
        Some(Command::SetOption) if whole => Cmd::SetOption(match payload.get(1..3) {
            Some([0, 0]) => Some(true),
            Some([1, 0]) => Some(false),
            _ => None,
        }),
        _ => Cmd::Other,
    })
}

/// A statement (or one to prepare) that calls `CONNECTION_ID()` gets the
/// session's id in its place (see `connid`).
pub fn with_session_id(first: Chunk, cmd: Cmd, id: u32) -> (Chunk, Cmd) {
    let sql_at = match &cmd {
        Cmd::Query { sql } if !first.more => first.payload.len() - sql.len(),
        Cmd::Prepare if !first.more => 1,
        _ => return (first, cmd),
    };
    let Some(sql) = super::connid::rewrite(&first.payload[sql_at..], id) else {
        return (first, cmd);
    };
    if sql_at + sql.len() >= causeway_wire::packet::MAX_CHUNK {
        return (first, cmd);
    }
    let mut payload = BytesMut::with_capacity(sql_at + sql.len());
    payload.extend_from_slice(&first.payload[..sql_at]);
    payload.extend_from_slice(&sql);
    let payload = payload.freeze();
    let cmd = match cmd {
        Cmd::Query { .. } => Cmd::Query {
            sql: payload.slice(sql_at..),
        },
        other => other,
    };
    (Chunk { payload, ..first }, cmd)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(p: &[u8]) -> Chunk {
        Chunk {
            seq: 0,
            payload: Bytes::copy_from_slice(p),
            first: true,
            more: false,
        }
    }

    const CAPS: CapabilityFlags = CapabilityFlags::PROTOCOL_41;

    #[test]
    fn commands_are_decoded_once() {
        assert_eq!(decode(&chunk(&[]), CAPS), None);
        assert_eq!(decode(&chunk(&[0x01]), CAPS), Some(Cmd::Quit));
        assert_eq!(
            decode(&chunk(b"\x03SELECT 1"), CAPS),
            Some(Cmd::Query {
                sql: Bytes::from_static(b"SELECT 1")
            })
        );
        assert_eq!(
            decode(&chunk(b"\x03KILL QUERY 7"), CAPS),
            Some(Cmd::Kill(KillTarget::Query(7)))
        );
        assert_eq!(
            decode(&chunk(b"\x03SELECT 1; KILL 7"), CAPS),
            Some(Cmd::UntranslatableKill)
        );
        assert_eq!(
            decode(&chunk(&[0x0c, 9, 0, 0, 0]), CAPS),
            Some(Cmd::Kill(KillTarget::Connection(9)))
        );
        assert_eq!(decode(&chunk(&[0x0c, 9]), CAPS), Some(Cmd::BadKill));
        assert_eq!(
            decode(&chunk(&[0x17, 4, 0, 0, 0, 0, 1, 0, 0, 0]), CAPS),
            Some(Cmd::Stmt(StmtOp::Execute, 4))
        );
        assert_eq!(decode(&chunk(&[0x19, 4]), CAPS), Some(Cmd::Other));
        assert_eq!(
            decode(&chunk(&[0x1b, 1, 0]), CAPS),
            Some(Cmd::SetOption(Some(false)))
        );
        assert_eq!(
            decode(&chunk(&[0x1b, 7, 0]), CAPS),
            Some(Cmd::SetOption(None))
        );
        assert_eq!(decode(&chunk(&[0x0e]), CAPS), Some(Cmd::Ping));
        assert_eq!(decode(&chunk(&[0x09]), CAPS), Some(Cmd::Other));
        assert_eq!(decode(&chunk(&[0xee, 1, 2]), CAPS), Some(Cmd::Other));
    }

    #[test]
    fn a_query_over_16_mib_is_never_a_kill_of_its_own() {
        let mut c = chunk(b"\x03KILL 5");
        c.more = true;
        assert_eq!(decode(&c, CAPS), Some(Cmd::UntranslatableKill));
        let mut c = chunk(b"\x03INSERT INTO t VALUES ('");
        c.more = true;
        assert!(matches!(decode(&c, CAPS), Some(Cmd::Query { .. })));
    }
}
