//! Prepared-statement commands and the COM_STMT_PREPARE_OK response.
//!
//! Statement ids are per backend connection; a proxy that multiplexes must
//! remap them. [`set_statement_id`] does it in place, without re-encoding.

use bytes::{BufMut, Bytes, BytesMut};

use super::binary::{put_params, read_params, BinaryParam, ParamType};
use crate::buf::{put_lenenc_int, sub, Reader};
use crate::error::{CodecError, Result};
use crate::flags::{cursor, CapabilityFlags, Command};
use crate::generic::OK_HEADER;

/// Overwrites the statement id of a COM_STMT_EXECUTE / FETCH / CLOSE / RESET /
/// SEND_LONG_DATA payload, or of a COM_STMT_PREPARE_OK, in place.
pub fn set_statement_id(payload: &mut [u8], id: u32) -> Result<()> {
    let Some(&first) = payload.first() else {
        return Err(CodecError::EmptyPacket {
            what: "statement packet",
        });
    };
    let ok = first == OK_HEADER
        || matches!(
            Command::from_u8(first),
            Some(
                Command::StmtExecute
                    | Command::StmtFetch
                    | Command::StmtClose
                    | Command::StmtReset
                    | Command::StmtSendLongData
            )
        );
    if !ok {
        return Err(CodecError::UnexpectedHeader {
            what: "statement packet",
            header: first,
        });
    }
    let Some(slot) = payload.get_mut(1..5) else {
        return Err(CodecError::Truncated {
            what: "statement id",
            needed: 5 - payload.len(),
        });
    };
    slot.copy_from_slice(&id.to_le_bytes());
    Ok(())
}

/// Reads the statement id of a statement command (see [`set_statement_id`]).
pub fn statement_id(payload: &[u8]) -> Result<u32> {
    let mut r = Reader::new(payload);
    r.u8("command")?;
    r.u32("statement id")
}

fn expect_command(r: &mut Reader<'_>, cmd: Command) -> Result<()> {
    let header = r.u8("command")?;
    if header != cmd as u8 {
        return Err(CodecError::UnexpectedHeader {
            what: "command",
            header,
        });
    }
    Ok(())
}

/// COM_STMT_PREPARE: the statement text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComStmtPrepare {
    /// SQL with `?` placeholders.
    pub query: Bytes,
}

impl ComStmtPrepare {
    /// Decodes the packet.
    pub fn decode(payload: &Bytes) -> Result<Self> {
        let mut r = Reader::new(payload);
        expect_command(&mut r, Command::StmtPrepare)?;
        Ok(Self {
            query: sub(payload, r.rest()),
        })
    }

    /// Encodes the packet.
    pub fn encode(&self, dst: &mut BytesMut) {
        dst.put_u8(Command::StmtPrepare as u8);
        dst.put_slice(&self.query);
    }
}

/// COM_STMT_PREPARE_OK, the first packet of a successful prepare response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StmtPrepareOk {
    /// Server-assigned statement id.
    pub statement_id: u32,
    /// Columns in the result set (0 if none).
    pub num_columns: u16,
    /// `?` parameters.
    pub num_params: u16,
    /// Warnings.
    pub warnings: u16,
    /// `CLIENT_OPTIONAL_RESULTSET_METADATA`: whether definitions follow
    /// (`Some(false)` = RESULTSET_METADATA_NONE).
    pub metadata_follows: Option<bool>,
}

impl StmtPrepareOk {
    /// Decodes the packet. Old servers end it before the warning count.
    pub fn decode(payload: &[u8]) -> Result<Self> {
        let mut r = Reader::new(payload);
        let header = r.u8("prepare ok header")?;
        if header != OK_HEADER {
            return Err(CodecError::UnexpectedHeader {
                what: "prepare ok",
                header,
            });
        }
        let statement_id = r.u32("statement id")?;
        let num_columns = r.u16("column count")?;
        let num_params = r.u16("parameter count")?;
        let mut this = Self {
            statement_id,
            num_columns,
            num_params,
            warnings: 0,
            metadata_follows: None,
        };
        if r.is_empty() {
            return Ok(this);
        }
        r.u8("reserved")?;
        if r.is_empty() {
            return Ok(this);
        }
        this.warnings = r.u16("warning count")?;
        if !r.is_empty() {
            this.metadata_follows = Some(r.u8("metadata follows")? != 0);
        }
        Ok(this)
    }

    /// Encodes the packet (always with the warning count).
    pub fn encode(&self, dst: &mut BytesMut) {
        dst.put_u8(OK_HEADER);
        dst.put_u32_le(self.statement_id);
        dst.put_u16_le(self.num_columns);
        dst.put_u16_le(self.num_params);
        dst.put_u8(0);
        dst.put_u16_le(self.warnings);
        if let Some(m) = self.metadata_follows {
            dst.put_u8(u8::from(m));
        }
    }
}

/// COM_STMT_EXECUTE with its parameter block kept raw: the block can only be
/// parsed with the statement's parameter count, see [`ComStmtExecute::params`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComStmtExecute {
    /// Statement id.
    pub statement_id: u32,
    /// Cursor type and `PARAMETER_COUNT_AVAILABLE`, see [`crate::flags::cursor`].
    pub flags: u8,
    /// Always 1.
    pub iteration_count: u32,
    /// Everything after the 10-byte header.
    pub params_raw: Bytes,
}

/// The decoded parameters of a COM_STMT_EXECUTE.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExecuteParams {
    /// Whether the packet (re)bound parameter types.
    pub new_params_bound: bool,
    /// Parameters, then any query attributes beyond the statement's own count.
    pub params: Vec<BinaryParam>,
}

impl ExecuteParams {
    /// The parameter types, to remember for later executes that do not rebind.
    pub fn types(&self) -> Vec<ParamType> {
        self.params.iter().map(|p| p.ty).collect()
    }
}

impl ComStmtExecute {
    /// Decodes the fixed header; the parameter block stays raw.
    pub fn decode(payload: &Bytes) -> Result<Self> {
        let mut r = Reader::new(payload);
        expect_command(&mut r, Command::StmtExecute)?;
        Ok(Self {
            statement_id: r.u32("statement id")?,
            flags: r.u8("execute flags")?,
            iteration_count: r.u32("iteration count")?,
            params_raw: sub(payload, r.rest()),
        })
    }

    /// Whether the client asked for a read-only cursor (rows then come via
    /// COM_STMT_FETCH).
    pub fn opens_cursor(&self) -> bool {
        self.flags & cursor::READ_ONLY != 0
    }

    /// Parses the parameter block. `num_params` comes from the statement's
    /// COM_STMT_PREPARE_OK; `prev_types` are the types from the last execute
    /// that bound them (needed when this one does not rebind).
    pub fn params(
        &self,
        caps: CapabilityFlags,
        num_params: u16,
        prev_types: Option<&[ParamType]>,
    ) -> Result<ExecuteParams> {
        let qa = caps.contains(CapabilityFlags::QUERY_ATTRIBUTES);
        let count_sent = self.flags & cursor::PARAMETER_COUNT_AVAILABLE != 0;
        let mut r = Reader::new(&self.params_raw);
        // Trailing bytes are ignored, as the server ignores them.
        if num_params == 0 && !(qa && count_sent) {
            return Ok(ExecuteParams::default());
        }
        let count = if qa {
            r.lenenc_int("parameter count")?
        } else {
            u64::from(num_params)
        };
        let (bound, params) = read_params(&mut r, &self.params_raw, count, qa, prev_types)?;
        Ok(ExecuteParams {
            new_params_bound: bound,
            params,
        })
    }

    /// Builds an execute packet from parameters. With query attributes the
    /// count is sent and `PARAMETER_COUNT_AVAILABLE` set.
    pub fn new(
        statement_id: u32,
        flags: u8,
        params: &ExecuteParams,
        caps: CapabilityFlags,
    ) -> Result<Self> {
        let qa = caps.contains(CapabilityFlags::QUERY_ATTRIBUTES);
        let mut raw = BytesMut::new();
        let mut flags = flags;
        if qa {
            flags |= cursor::PARAMETER_COUNT_AVAILABLE;
            put_lenenc_int(&mut raw, params.params.len() as u64);
        }
        put_params(&mut raw, &params.params, params.new_params_bound, qa)?;
        Ok(Self {
            statement_id,
            flags,
            iteration_count: 1,
            params_raw: raw.freeze(),
        })
    }

    /// Encodes the packet.
    pub fn encode(&self, dst: &mut BytesMut) {
        dst.put_u8(Command::StmtExecute as u8);
        dst.put_u32_le(self.statement_id);
        dst.put_u8(self.flags);
        dst.put_u32_le(self.iteration_count);
        dst.put_slice(&self.params_raw);
    }
}

/// COM_STMT_SEND_LONG_DATA: a chunk of one parameter's value (no response).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComStmtSendLongData {
    /// Statement id.
    pub statement_id: u32,
    /// Parameter index.
    pub param_id: u16,
    /// The chunk.
    pub data: Bytes,
}

impl ComStmtSendLongData {
    /// Decodes the packet.
    pub fn decode(payload: &Bytes) -> Result<Self> {
        let mut r = Reader::new(payload);
        expect_command(&mut r, Command::StmtSendLongData)?;
        Ok(Self {
            statement_id: r.u32("statement id")?,
            param_id: r.u16("parameter id")?,
            data: sub(payload, r.rest()),
        })
    }

    /// Encodes the packet.
    pub fn encode(&self, dst: &mut BytesMut) {
        dst.put_u8(Command::StmtSendLongData as u8);
        dst.put_u32_le(self.statement_id);
        dst.put_u16_le(self.param_id);
        dst.put_slice(&self.data);
    }
}

/// COM_STMT_FETCH: rows from an open cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ComStmtFetch {
    /// Statement id.
    pub statement_id: u32,
    /// Maximum rows to return.
    pub num_rows: u32,
}

impl ComStmtFetch {
    /// Decodes the packet.
    pub fn decode(payload: &[u8]) -> Result<Self> {
        let mut r = Reader::new(payload);
        expect_command(&mut r, Command::StmtFetch)?;
        let this = Self {
            statement_id: r.u32("statement id")?,
            num_rows: r.u32("row count")?,
        };
        r.finish("com_stmt_fetch")?;
        Ok(this)
    }

    /// Encodes the packet.
    pub fn encode(&self, dst: &mut BytesMut) {
        dst.put_u8(Command::StmtFetch as u8);
        dst.put_u32_le(self.statement_id);
        dst.put_u32_le(self.num_rows);
    }
}

/// Decodes the 5-byte COM_STMT_CLOSE / COM_STMT_RESET: returns the statement id.
pub fn decode_stmt_id_command(payload: &[u8], cmd: Command) -> Result<u32> {
    let mut r = Reader::new(payload);
    expect_command(&mut r, cmd)?;
    let id = r.u32("statement id")?;
    r.finish("statement command")?;
    Ok(id)
}

/// Encodes COM_STMT_CLOSE / COM_STMT_RESET.
pub fn encode_stmt_id_command(cmd: Command, statement_id: u32, dst: &mut BytesMut) {
    dst.put_u8(cmd as u8);
    dst.put_u32_le(statement_id);
}
