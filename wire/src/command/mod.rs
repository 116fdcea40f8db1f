//! Decoders and encoders for the packets a client sends in the command phase.
//!
//! [`ClientCommand::decode`] dispatches on the command byte. Payloads are
//! sliced, not copied. COM_STMT_EXECUTE's parameter block needs the
//! statement's parameter count, so it stays raw until
//! [`ComStmtExecute::params`] is called.

mod binary;
mod stmt;

use bytes::{BufMut, Bytes, BytesMut};

pub use binary::{put_value, read_value, BinaryParam, ParamType};
pub use stmt::{
    decode_stmt_id_command, encode_stmt_id_command, set_statement_id, statement_id, ComStmtExecute,
    ComStmtFetch, ComStmtPrepare, ComStmtSendLongData, ExecuteParams, StmtPrepareOk,
};

use crate::buf::{put_lenenc_int, put_nul_str, sub, Reader};
use crate::error::{CodecError, Result};
use crate::flags::{CapabilityFlags, Command};
use crate::handshake::{put_connect_attrs, read_connect_attrs};

/// COM_SET_OPTION value: enable multi-statements.
pub const MULTI_STATEMENTS_ON: u16 = 0;
/// COM_SET_OPTION value: disable multi-statements.
pub const MULTI_STATEMENTS_OFF: u16 = 1;

/// A decoded client command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientCommand {
    /// COM_QUIT.
    Quit,
    /// COM_INIT_DB: the new default schema.
    InitDb(Bytes),
    /// COM_QUERY.
    Query(ComQuery),
    /// COM_FIELD_LIST.
    FieldList(ComFieldList),
    /// COM_STATISTICS.
    Statistics,
    /// COM_PROCESS_KILL: the connection id.
    ProcessKill(u32),
    /// COM_PING.
    Ping,
    /// COM_CHANGE_USER.
    ChangeUser(ComChangeUser),
    /// COM_STMT_PREPARE.
    StmtPrepare(ComStmtPrepare),
    /// COM_STMT_EXECUTE (parameters raw).
    StmtExecute(ComStmtExecute),
    /// COM_STMT_SEND_LONG_DATA.
    StmtSendLongData(ComStmtSendLongData),
    /// COM_STMT_CLOSE: the statement id.
    StmtClose(u32),
    /// COM_STMT_RESET: the statement id.
    StmtReset(u32),
    /// COM_SET_OPTION: [`MULTI_STATEMENTS_ON`] or [`MULTI_STATEMENTS_OFF`].
    SetOption(u16),
    /// COM_STMT_FETCH.
    StmtFetch(ComStmtFetch),
    /// COM_RESET_CONNECTION.
    ResetConnection,
    /// Any other command (replication, deprecated or internal ones), raw.
    Other {
        /// The command byte.
        command: u8,
        /// Everything after it.
        body: Bytes,
    },
}

impl ClientCommand {
    /// Decodes a command packet sent by a client that negotiated `caps`.
    pub fn decode(payload: &Bytes, caps: CapabilityFlags) -> Result<Self> {
        let Some(&first) = payload.first() else {
            return Err(CodecError::EmptyPacket { what: "command" });
        };
        let body = || payload.slice(1..);
        let no_body = |cmd: Self| {
            if payload.len() == 1 {
                Ok(cmd)
            } else {
                Err(CodecError::TrailingBytes {
                    what: "command without arguments",
                    count: payload.len() - 1,
                })
            }
        };
        let fixed_u32 = |what| -> Result<u32> {
            let mut r = Reader::new(&payload[1..]);
            let v = r.u32(what)?;
            r.finish(what)?;
            Ok(v)
        };
        Ok(match Command::from_u8(first) {
            Some(Command::Quit) => no_body(Self::Quit)?,
            Some(Command::InitDb) => Self::InitDb(body()),
            Some(Command::Query) => Self::Query(ComQuery::decode(payload, caps)?),
            Some(Command::FieldList) => Self::FieldList(ComFieldList::decode(payload)?),
            Some(Command::Statistics) => no_body(Self::Statistics)?,
            Some(Command::ProcessKill) => Self::ProcessKill(fixed_u32("connection id")?),
            Some(Command::Ping) => no_body(Self::Ping)?,
            Some(Command::ChangeUser) => Self::ChangeUser(ComChangeUser::decode(payload, caps)?),
            Some(Command::StmtPrepare) => Self::StmtPrepare(ComStmtPrepare::decode(payload)?),
            Some(Command::StmtExecute) => Self::StmtExecute(ComStmtExecute::decode(payload)?),
            Some(Command::StmtSendLongData) => {
                Self::StmtSendLongData(ComStmtSendLongData::decode(payload)?)
            }
            Some(Command::StmtClose) => Self::StmtClose(fixed_u32("statement id")?),
            Some(Command::StmtReset) => Self::StmtReset(fixed_u32("statement id")?),
            Some(Command::SetOption) => {
                let mut r = Reader::new(&payload[1..]);
                let option = r.u16("set option")?;
                r.finish("com_set_option")?;
                Self::SetOption(option)
            }
            Some(Command::StmtFetch) => Self::StmtFetch(ComStmtFetch::decode(payload)?),
            Some(Command::ResetConnection) => no_body(Self::ResetConnection)?,
            _ => Self::Other {
                command: first,
                body: body(),
            },
        })
    }

    /// The command byte.
    pub fn command_byte(&self) -> u8 {
        let cmd = match self {
            Self::Quit => Command::Quit,
            Self::InitDb(_) => Command::InitDb,
            Self::Query(_) => Command::Query,
            Self::FieldList(_) => Command::FieldList,
            Self::Statistics => Command::Statistics,
            Self::ProcessKill(_) => Command::ProcessKill,
            Self::Ping => Command::Ping,
            Self::ChangeUser(_) => Command::ChangeUser,
            Self::StmtPrepare(_) => Command::StmtPrepare,
            Self::StmtExecute(_) => Command::StmtExecute,
            Self::StmtSendLongData(_) => Command::StmtSendLongData,
            Self::StmtClose(_) => Command::StmtClose,
            Self::StmtReset(_) => Command::StmtReset,
            Self::SetOption(_) => Command::SetOption,
            Self::StmtFetch(_) => Command::StmtFetch,
            Self::ResetConnection => Command::ResetConnection,
            Self::Other { command, .. } => return *command,
        };
        cmd as u8
    }

    /// Encodes the command for a server that negotiated `caps`.
    pub fn encode(&self, caps: CapabilityFlags, dst: &mut BytesMut) -> Result<()> {
        match self {
            Self::Query(q) => return q.encode(caps, dst),
            Self::FieldList(f) => f.encode(dst),
            Self::ChangeUser(c) => return c.encode(caps, dst),
            Self::StmtPrepare(p) => p.encode(dst),
            Self::StmtExecute(e) => e.encode(dst),
            Self::StmtSendLongData(d) => d.encode(dst),
            Self::StmtFetch(f) => f.encode(dst),
            Self::StmtClose(id) => encode_stmt_id_command(Command::StmtClose, *id, dst),
            Self::StmtReset(id) => encode_stmt_id_command(Command::StmtReset, *id, dst),
            other => {
                dst.put_u8(other.command_byte());
                match other {
                    Self::InitDb(b) | Self::Other { body: b, .. } => dst.put_slice(b),
                    Self::ProcessKill(id) => dst.put_u32_le(*id),
                    Self::SetOption(o) => dst.put_u16_le(*o),
                    _ => {}
                }
            }
        }
        Ok(())
    }
}

/// COM_QUERY, with query attributes when `CLIENT_QUERY_ATTRIBUTES` is on.
///
/// ```text
/// 0x03  [QA: lenenc count, lenenc set_count (1), parameter block with names]  query
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ComQuery {
    /// Query attributes (named binary values).
    pub attributes: Vec<BinaryParam>,
    /// The SQL text.
    pub query: Bytes,
}

impl ComQuery {
    /// A query without attributes.
    pub fn new(query: impl Into<Bytes>) -> Self {
        Self {
            attributes: Vec::new(),
            query: query.into(),
        }
    }

    /// Decodes the packet.
    pub fn decode(payload: &Bytes, caps: CapabilityFlags) -> Result<Self> {
        let mut r = Reader::new(payload);
        let header = r.u8("command")?;
        if header != Command::Query as u8 {
            return Err(CodecError::UnexpectedHeader {
                what: "com_query",
                header,
            });
        }
        let mut attributes = Vec::new();
        if caps.contains(CapabilityFlags::QUERY_ATTRIBUTES) {
            let count = r.lenenc_int("query attribute count")?;
            let sets = r.lenenc_int("query attribute set count")?;
            if count > 0 && sets != 1 {
                return Err(CodecError::InvalidValue {
                    what: "query attribute set count",
                    value: sets,
                });
            }
            attributes = read_params(&mut r, payload, count)?;
        }
        Ok(Self {
            attributes,
            query: sub(payload, r.rest()),
        })
    }

    /// Encodes the packet. Attributes are dropped for a server without
    /// `CLIENT_QUERY_ATTRIBUTES` (it could not parse them).
    pub fn encode(&self, caps: CapabilityFlags, dst: &mut BytesMut) -> Result<()> {
        dst.put_u8(Command::Query as u8);
        if caps.contains(CapabilityFlags::QUERY_ATTRIBUTES) {
            put_lenenc_int(dst, self.attributes.len() as u64);
            put_lenenc_int(dst, 1);
            binary::put_params(dst, &self.attributes, true, true)?;
        }
        dst.put_slice(&self.query);
        Ok(())
    }
}

fn read_params(r: &mut Reader<'_>, base: &Bytes, count: u64) -> Result<Vec<BinaryParam>> {
    Ok(binary::read_params(r, base, count, true, None)?.1)
}

/// COM_FIELD_LIST (deprecated, still sent by the mysql CLI for completion).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComFieldList {
    /// Table name.
    pub table: Bytes,
    /// Column wildcard.
    pub wildcard: Bytes,
}

impl ComFieldList {
    /// Decodes the packet.
    pub fn decode(payload: &Bytes) -> Result<Self> {
        let mut r = Reader::new(payload);
        r.u8("command")?;
        let table = sub(payload, r.nul_str("field list table")?);
        Ok(Self {
            table,
            wildcard: sub(payload, r.rest()),
        })
    }

    /// Encodes the packet.
    pub fn encode(&self, dst: &mut BytesMut) {
        dst.put_u8(Command::FieldList as u8);
        put_nul_str(dst, &self.table);
        dst.put_slice(&self.wildcard);
    }
}

/// COM_CHANGE_USER.
///
/// ```text
/// 0x11  user NUL  auth (SECURE_CONNECTION: u8 len + data, else NUL-terminated)  schema NUL
///       [u16 charset  [PLUGIN_AUTH: plugin NUL]  [CONNECT_ATTRS: lenenc attrs]]
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ComChangeUser {
    /// User name.
    pub username: Bytes,
    /// Auth response.
    pub auth_response: Bytes,
    /// New default schema (may be empty).
    pub database: Bytes,
    /// Collation id, when sent.
    pub charset: Option<u16>,
    /// Auth plugin, when sent.
    pub auth_plugin_name: Option<Bytes>,
    /// Connection attributes.
    pub connect_attrs: Vec<(Bytes, Bytes)>,
}

impl ComChangeUser {
    /// Decodes the packet sent by a client with `caps`.
    pub fn decode(payload: &Bytes, caps: CapabilityFlags) -> Result<Self> {
        let mut r = Reader::new(payload);
        let header = r.u8("command")?;
        if header != Command::ChangeUser as u8 {
            return Err(CodecError::UnexpectedHeader {
                what: "com_change_user",
                header,
            });
        }
        let username = sub(payload, r.nul_str("user name")?);
        let auth = if caps.contains(CapabilityFlags::SECURE_CONNECTION) {
            let n = r.u8("auth response length")?;
            r.take(usize::from(n), "auth response")?
        } else {
            r.nul_str("auth response")?
        };
        let database = sub(payload, r.nul_str_or_eof());
        let mut this = Self {
            username,
            auth_response: sub(payload, auth),
            database,
            ..Self::default()
        };
        if r.is_empty() {
            return Ok(this);
        }
        this.charset = Some(r.u16("character set")?);
        if caps.contains(CapabilityFlags::PLUGIN_AUTH) && !r.is_empty() {
            this.auth_plugin_name = Some(sub(payload, r.nul_str_or_eof()));
        }
        if caps.contains(CapabilityFlags::CONNECT_ATTRS) && !r.is_empty() {
            this.connect_attrs = read_connect_attrs(&mut r, payload)?;
        }
        Ok(this)
    }

    /// Encodes the packet for a server with `caps`.
    pub fn encode(&self, caps: CapabilityFlags, dst: &mut BytesMut) -> Result<()> {
        dst.put_u8(Command::ChangeUser as u8);
        put_nul_str(dst, &self.username);
        if caps.contains(CapabilityFlags::SECURE_CONNECTION) {
            let n =
                u8::try_from(self.auth_response.len()).map_err(|_| CodecError::InvalidValue {
                    what: "auth response length",
                    value: self.auth_response.len() as u64,
                })?;
            dst.put_u8(n);
            dst.put_slice(&self.auth_response);
        } else {
            put_nul_str(dst, &self.auth_response);
        }
        put_nul_str(dst, &self.database);
        let Some(charset) = self.charset else {
            return Ok(());
        };
        dst.put_u16_le(charset);
        if caps.contains(CapabilityFlags::PLUGIN_AUTH) {
            put_nul_str(dst, self.auth_plugin_name.as_deref().unwrap_or_default());
        }
        if caps.contains(CapabilityFlags::CONNECT_ATTRS) {
            put_connect_attrs(dst, &self.connect_attrs);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
