//! Command responses: which packets belong to the reply to a command, and
//! when the reply is complete. This is what lets a proxy stream result sets
//! packet by packet without buffering them.
//!
//! [`ResponseTracker`] is a small pure state machine fed the server's packets
//! (logical payloads, or the *first* chunk of each logical packet when
//! forwarding raw chunks; continuation chunks must not be fed). It allocates
//! nothing and reads at most a packet's header fields.
//!
//! ```text
//! Start --OK [MORE_RESULTS]--> Start          Start --OK | ERR--> Done
//! Start --0xFB LOCAL INFILE--> Infile --(client sends file)-- OK/ERR --> Start | Done
//! Start --column count n--> Columns(n) --n defs--> [ColumnsEof if !DEPRECATE_EOF] --> Rows
//!          (cursor opened: ColumnsEof carries CURSOR_EXISTS --> Done)
//! Rows --row--> Rows      Rows --ERR--> Done
//! Rows --EOF | OK(0xFE) [MORE_RESULTS]--> Start      Rows --EOF | OK(0xFE)--> Done
//!
//! Prepare: ERR --> Done | PREPARE_OK --> params [EOF] --> columns [EOF] --> Done
//! Fetch:   Rows ... EOF | OK(0xFE) (CURSOR_EXISTS or LAST_ROW_SENT) --> Done
//! ```

use crate::buf::read_lenenc_int;
use crate::command::StmtPrepareOk;
use crate::error::{CodecError, Result};
use crate::flags::{cursor, CapabilityFlags, Command, StatusFlags};
use crate::generic::{
    eof_status, is_eof, is_ok_eof, ok_status, EOF_HEADER, ERR_HEADER, LOCAL_INFILE_HEADER,
    OK_HEADER,
};

/// The shape of the server's reply to a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseKind {
    /// No reply (COM_QUIT, COM_STMT_CLOSE, COM_STMT_SEND_LONG_DATA).
    None,
    /// Exactly one packet: OK, ERR, EOF or a string (COM_PING, COM_INIT_DB,
    /// COM_STATISTICS, COM_SET_OPTION, COM_RESET_CONNECTION, COM_STMT_RESET, ...).
    Single,
    /// Text-protocol results: OK, ERR, LOCAL INFILE or result sets, possibly several.
    Query,
    /// Binary-protocol results of COM_STMT_EXECUTE; `cursor` when a
    /// read-only cursor was requested.
    Execute {
        /// The execute asked for a cursor.
        cursor: bool,
    },
    /// Rows from an open cursor (COM_STMT_FETCH).
    Fetch,
    /// COM_STMT_PREPARE's reply.
    Prepare,
    /// COM_FIELD_LIST: column definitions then EOF.
    FieldList,
    /// An authentication exchange (COM_CHANGE_USER) that ends with OK or ERR;
    /// client packets interleave and are not fed.
    Auth,
    /// An open-ended stream (binlog dump, clone) that ends only with ERR or EOF.
    Stream,
}

impl ResponseKind {
    /// The reply shape for a client command packet.
    pub fn for_command(payload: &[u8]) -> Self {
        let Some(&first) = payload.first() else {
            return Self::Single;
        };
        match Command::from_u8(first) {
            Some(Command::Quit | Command::StmtClose | Command::StmtSendLongData) => Self::None,
            Some(Command::Query | Command::ProcessInfo) => Self::Query,
            Some(Command::StmtExecute) => Self::Execute {
                cursor: payload.get(5).is_some_and(|f| f & cursor::READ_ONLY != 0),
            },
            Some(Command::StmtFetch) => Self::Fetch,
            Some(Command::StmtPrepare) => Self::Prepare,
            Some(Command::FieldList) => Self::FieldList,
            Some(Command::ChangeUser) => Self::Auth,
            Some(Command::BinlogDump | Command::BinlogDumpGtid | Command::Clone) => Self::Stream,
            _ => Self::Single,
        }
    }
}

/// What a fed packet was, within the response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketRole {
    /// An OK packet ending a (sub-)result.
    Ok,
    /// An ERR packet; the response is over.
    Err,
    /// A LOCAL INFILE request; the client now sends the file.
    LocalInfileRequest,
    /// The column count starting a result set.
    ColumnCount(u64),
    /// A column definition.
    ColumnDefinition,
    /// A parameter definition (COM_STMT_PREPARE).
    ParamDefinition,
    /// The EOF closing a block of definitions (without `DEPRECATE_EOF`).
    MetadataEof,
    /// A row (text or binary).
    Row,
    /// The EOF or OK(0xFE) ending a result set's rows.
    ResultSetEnd,
    /// COM_STMT_PREPARE_OK.
    PrepareOk(StmtPrepareOk),
    /// Anything else (a COM_STATISTICS string, an auth or stream packet).
    Other,
}

/// The outcome of feeding one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// What the packet was.
    pub role: PacketRole,
    /// Whether the response is now complete.
    pub done: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Single,
    Start,
    Infile,
    Columns(u64),
    ColumnsEof,
    Rows,
    PrepareStart,
    PrepareParams { left: u16, columns: u16 },
    PrepareParamsEof { columns: u16 },
    PrepareColumns(u16),
    PrepareColumnsEof,
    FieldList,
    Auth,
    Stream,
    Done,
}

/// Tracks one command's response; see the module docs for the states.
#[derive(Debug, Clone)]
pub struct ResponseTracker {
    caps: CapabilityFlags,
    cursor: bool,
    state: State,
    status: Option<StatusFlags>,
}

impl ResponseTracker {
    /// A tracker for a reply of `kind` on a connection that negotiated `caps`.
    pub fn new(kind: ResponseKind, caps: CapabilityFlags) -> Self {
        let (state, cursor) = match kind {
            ResponseKind::None => (State::Done, false),
            ResponseKind::Single => (State::Single, false),
            ResponseKind::Query => (State::Start, false),
            ResponseKind::Execute { cursor } => (State::Start, cursor),
            ResponseKind::Fetch => (State::Rows, false),
            ResponseKind::Prepare => (State::PrepareStart, false),
            ResponseKind::FieldList => (State::FieldList, false),
            ResponseKind::Auth => (State::Auth, false),
            ResponseKind::Stream => (State::Stream, false),
        };
        Self {
            caps,
            cursor,
            state,
            status: None,
        }
    }

    /// A tracker for the reply to the client command `payload`.
    pub fn for_command(payload: &[u8], caps: CapabilityFlags) -> Self {
        Self::new(ResponseKind::for_command(payload), caps)
    }

    /// Whether the response is complete.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Whether the server asked for a LOCAL INFILE and the client's file
    /// (ending with an empty packet) is expected before the next server packet.
    pub fn awaiting_client_data(&self) -> bool {
        self.state == State::Infile
    }

    /// Status flags of the last OK or EOF seen (transaction state, etc.).
    pub fn status(&self) -> Option<StatusFlags> {
        self.status
    }

    fn deprecate_eof(&self) -> bool {
        self.caps.contains(CapabilityFlags::DEPRECATE_EOF)
    }

    fn step(&mut self, role: PacketRole, next: State) -> Result<Step> {
        self.state = next;
        Ok(Step {
            role,
            done: next == State::Done,
        })
    }

    /// After an OK or a result-set end with `status`: another result or done.
    fn after_result(&self, status: StatusFlags) -> State {
        if status.contains(StatusFlags::MORE_RESULTS_EXISTS) {
            State::Start
        } else {
            State::Done
        }
    }

    fn after_columns(&self) -> State {
        if self.deprecate_eof() {
            State::Rows
        } else {
            State::ColumnsEof
        }
    }

    /// The status of a packet that ends rows: EOF, or OK(0xFE) under DEPRECATE_EOF.
    fn terminator_status(&self, payload: &[u8]) -> Result<Option<StatusFlags>> {
        if self.deprecate_eof() {
            if is_ok_eof(payload) {
                return ok_status(payload, self.caps).map(Some);
            }
        } else if is_eof(payload) {
            return eof_status(payload).map(Some);
        }
        Ok(None)
    }

    fn expect_eof(&mut self, payload: &[u8]) -> Result<StatusFlags> {
        if !is_eof(payload) {
            return Err(CodecError::Protocol("expected eof after definitions"));
        }
        let status = eof_status(payload)?;
        self.status = Some(status);
        Ok(status)
    }

    /// Feeds the next server packet of this response.
    pub fn feed(&mut self, payload: &[u8]) -> Result<Step> {
        let Some(&first) = payload.first() else {
            return match self.state {
                // A COM_STATISTICS string may legitimately be empty.
                State::Single => self.step(PacketRole::Other, State::Done),
                _ => Err(CodecError::EmptyPacket {
                    what: "response packet",
                }),
            };
        };
        match self.state {
            State::Done => Err(CodecError::Protocol(
                "packet after the response was complete",
            )),
            State::Single => {
                let role = match first {
                    OK_HEADER => {
                        self.status = ok_status(payload, self.caps).ok();
                        PacketRole::Ok
                    }
                    ERR_HEADER => PacketRole::Err,
                    EOF_HEADER if is_eof(payload) => {
                        self.status = eof_status(payload).ok();
                        PacketRole::ResultSetEnd
                    }
                    EOF_HEADER if self.deprecate_eof() && is_ok_eof(payload) => {
                        self.status = ok_status(payload, self.caps).ok();
                        PacketRole::ResultSetEnd
                    }
                    _ => PacketRole::Other,
                };
                self.step(role, State::Done)
            }
            State::Start => match first {
                OK_HEADER => {
                    let status = ok_status(payload, self.caps)?;
                    self.status = Some(status);
                    let next = self.after_result(status);
                    self.step(PacketRole::Ok, next)
                }
                ERR_HEADER => self.step(PacketRole::Err, State::Done),
                LOCAL_INFILE_HEADER if !self.cursor => {
                    self.step(PacketRole::LocalInfileRequest, State::Infile)
                }
                _ => {
                    let (count, used) = read_lenenc_int(payload, "column count")?;
                    if count == 0 {
                        return Err(CodecError::Protocol("result set with zero columns"));
                    }
                    let mut next = State::Columns(count);
                    if self
                        .caps
                        .contains(CapabilityFlags::OPTIONAL_RESULTSET_METADATA)
                    {
                        // RESULTSET_METADATA_NONE (0): no definitions follow.
                        if payload.get(used) == Some(&0) {
                            next = self.after_columns();
                        }
                    }
                    self.step(PacketRole::ColumnCount(count), next)
                }
            },
            State::Infile => match first {
                OK_HEADER => {
                    let status = ok_status(payload, self.caps)?;
                    self.status = Some(status);
                    let next = self.after_result(status);
                    self.step(PacketRole::Ok, next)
                }
                ERR_HEADER => self.step(PacketRole::Err, State::Done),
                _ => Err(CodecError::Protocol(
                    "expected ok or err after local infile",
                )),
            },
            State::Columns(left) => {
                if first == ERR_HEADER {
                    return self.step(PacketRole::Err, State::Done);
                }
                let next = if left > 1 {
                    State::Columns(left - 1)
                } else {
                    self.after_columns()
                };
                self.step(PacketRole::ColumnDefinition, next)
            }
            State::ColumnsEof => {
                if first == ERR_HEADER {
                    return self.step(PacketRole::Err, State::Done);
                }
                let status = self.expect_eof(payload)?;
                // A cursor was opened: the rows come later, via COM_STMT_FETCH.
                let next = if self.cursor && status.contains(StatusFlags::CURSOR_EXISTS) {
                    self.after_result(status)
                } else {
                    State::Rows
                };
                self.step(PacketRole::MetadataEof, next)
            }
            State::Rows => {
                if first == ERR_HEADER {
                    return self.step(PacketRole::Err, State::Done);
                }
                match self.terminator_status(payload)? {
                    Some(status) => {
                        self.status = Some(status);
                        let next = self.after_result(status);
                        self.step(PacketRole::ResultSetEnd, next)
                    }
                    None => self.step(PacketRole::Row, State::Rows),
                }
            }
            State::PrepareStart => {
                if first == ERR_HEADER {
                    return self.step(PacketRole::Err, State::Done);
                }
                let ok = StmtPrepareOk::decode(payload)?;
                let params = if ok.metadata_follows == Some(false) {
                    0
                } else {
                    ok.num_params
                };
                let columns = if ok.metadata_follows == Some(false) {
                    0
                } else {
                    ok.num_columns
                };
                let next = if params > 0 {
                    State::PrepareParams {
                        left: params,
                        columns,
                    }
                } else {
                    self.prepare_columns(columns)
                };
                self.step(PacketRole::PrepareOk(ok), next)
            }
            State::PrepareParams { left, columns } => {
                let next = if left > 1 {
                    State::PrepareParams {
                        left: left - 1,
                        columns,
                    }
                } else if self.deprecate_eof() {
                    self.prepare_columns(columns)
                } else {
                    State::PrepareParamsEof { columns }
                };
                self.step(PacketRole::ParamDefinition, next)
            }
            State::PrepareParamsEof { columns } => {
                self.expect_eof(payload)?;
                let next = self.prepare_columns(columns);
                self.step(PacketRole::MetadataEof, next)
            }
            State::PrepareColumns(left) => {
                let next = if left > 1 {
                    State::PrepareColumns(left - 1)
                } else if self.deprecate_eof() {
                    State::Done
                } else {
                    State::PrepareColumnsEof
                };
                self.step(PacketRole::ColumnDefinition, next)
            }
            State::PrepareColumnsEof => {
                self.expect_eof(payload)?;
                self.step(PacketRole::MetadataEof, State::Done)
            }
            State::FieldList => {
                if first == ERR_HEADER {
                    return self.step(PacketRole::Err, State::Done);
                }
                match self.terminator_status(payload)? {
                    Some(status) => {
                        self.status = Some(status);
                        self.step(PacketRole::ResultSetEnd, State::Done)
                    }
                    None => self.step(PacketRole::ColumnDefinition, State::FieldList),
                }
            }
            State::Auth => match first {
                OK_HEADER => {
                    self.status = ok_status(payload, self.caps).ok();
                    self.step(PacketRole::Ok, State::Done)
                }
                ERR_HEADER => self.step(PacketRole::Err, State::Done),
                _ => self.step(PacketRole::Other, State::Auth),
            },
            State::Stream => match first {
                ERR_HEADER => self.step(PacketRole::Err, State::Done),
                EOF_HEADER if is_eof(payload) => self.step(PacketRole::ResultSetEnd, State::Done),
                _ => self.step(PacketRole::Other, State::Stream),
            },
        }
    }

    fn prepare_columns(&self, columns: u16) -> State {
        if columns > 0 {
            State::PrepareColumns(columns)
        } else {
            State::Done
        }
    }
}

#[cfg(test)]
mod tests;
