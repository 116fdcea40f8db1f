//! Protocol constants: capability flags, server status flags, command bytes,
//! character-set ids, column types and cursor flags.

bitflags::bitflags! {
    /// Client/server capability flags (`CLIENT_*` in `mysql_com.h`).
    ///
    /// Unknown bits are preserved (`from_bits_retain`) so a proxy can pass
    /// through flags it does not understand.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct CapabilityFlags: u32 {
        /// New, more secure passwords (always set by modern peers).
        const LONG_PASSWORD = 1;
        /// Affected rows counts found rows instead of changed rows.
        const FOUND_ROWS = 1 << 1;
        /// All column flags.
        const LONG_FLAG = 1 << 2;
        /// A database name may be given in the handshake response.
        const CONNECT_WITH_DB = 1 << 3;
        /// Disallow `db.table.column`.
        const NO_SCHEMA = 1 << 4;
        /// Compression protocol.
        const COMPRESS = 1 << 5;
        /// ODBC client (no special behaviour any more).
        const ODBC = 1 << 6;
        /// `LOAD DATA LOCAL` may be used.
        const LOCAL_FILES = 1 << 7;
        /// Parser may ignore spaces before `(`.
        const IGNORE_SPACE = 1 << 8;
        /// The 4.1 protocol (required by this crate).
        const PROTOCOL_41 = 1 << 9;
        /// `wait_timeout` vs `interactive_timeout`.
        const INTERACTIVE = 1 << 10;
        /// TLS; the client sends an SSLRequest and switches to TLS.
        const SSL = 1 << 11;
        /// Do not issue SIGPIPE (client-side only).
        const IGNORE_SIGPIPE = 1 << 12;
        /// The peer knows about transactions (status flags in OK).
        const TRANSACTIONS = 1 << 13;
        /// Deprecated (old 4.1 protocol flag).
        const RESERVED = 1 << 14;
        /// 4.1 authentication (`CLIENT_RESERVED2`, a.k.a. SECURE_CONNECTION).
        const SECURE_CONNECTION = 1 << 15;
        /// Multiple statements per COM_QUERY.
        const MULTI_STATEMENTS = 1 << 16;
        /// Multiple result sets per COM_QUERY.
        const MULTI_RESULTS = 1 << 17;
        /// Multiple result sets per COM_STMT_EXECUTE.
        const PS_MULTI_RESULTS = 1 << 18;
        /// Pluggable authentication.
        const PLUGIN_AUTH = 1 << 19;
        /// Connection attributes in the handshake response.
        const CONNECT_ATTRS = 1 << 20;
        /// Length-encoded auth response in the handshake response.
        const PLUGIN_AUTH_LENENC_CLIENT_DATA = 1 << 21;
        /// The client can handle expired passwords.
        const CAN_HANDLE_EXPIRED_PASSWORDS = 1 << 22;
        /// Session-state tracking information in OK packets.
        const SESSION_TRACK = 1 << 23;
        /// OK packets (0xFE header) replace EOF packets.
        const DEPRECATE_EOF = 1 << 24;
        /// Result-set metadata may be omitted.
        const OPTIONAL_RESULTSET_METADATA = 1 << 25;
        /// zstd compression; handshake response carries the level.
        const ZSTD_COMPRESSION_ALGORITHM = 1 << 26;
        /// Query attributes in COM_QUERY / COM_STMT_EXECUTE.
        const QUERY_ATTRIBUTES = 1 << 27;
        /// Multi-factor authentication.
        const MULTI_FACTOR_AUTHENTICATION = 1 << 28;
        /// Reserved for extending the flags.
        const CAPABILITY_EXTENSION = 1 << 29;
        /// Verify the server certificate (client-side only).
        const SSL_VERIFY_SERVER_CERT = 1 << 30;
        /// Don't reset options after a failed connect (client-side only).
        const REMEMBER_OPTIONS = 1 << 31;
    }
}

bitflags::bitflags! {
    /// Server status flags (`SERVER_*` in `mysql_com.h`), carried by OK and EOF.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct StatusFlags: u16 {
        /// A transaction is active.
        const IN_TRANS = 1;
        /// Autocommit is on.
        const AUTOCOMMIT = 1 << 1;
        /// Another result follows this one.
        const MORE_RESULTS_EXISTS = 1 << 3;
        /// The query used no good index.
        const QUERY_NO_GOOD_INDEX_USED = 1 << 4;
        /// The query used no index.
        const QUERY_NO_INDEX_USED = 1 << 5;
        /// A read-only cursor was opened (COM_STMT_EXECUTE/FETCH).
        const CURSOR_EXISTS = 1 << 6;
        /// The cursor is exhausted (COM_STMT_FETCH).
        const LAST_ROW_SENT = 1 << 7;
        /// A database was dropped.
        const DB_DROPPED = 1 << 8;
        /// `NO_BACKSLASH_ESCAPES` sql_mode is on.
        const NO_BACKSLASH_ESCAPES = 1 << 9;
        /// A prepared statement's metadata changed.
        const METADATA_CHANGED = 1 << 10;
        /// The query was slow.
        const QUERY_WAS_SLOW = 1 << 11;
        /// The result set holds OUT parameters.
        const PS_OUT_PARAMS = 1 << 12;
        /// The active transaction is read-only.
        const IN_TRANS_READONLY = 1 << 13;
        /// Session state changed; the OK carries session-state information.
        const SESSION_STATE_CHANGED = 1 << 14;
    }
}

/// Declares [`Command`] with its byte values in one place.
macro_rules! commands {
    ($($(#[$doc:meta])* $name:ident = $value:literal,)*) => {
        /// Command bytes: the first byte of every packet a client sends in the
        /// command phase (`enum_server_command`).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum Command {
            $($(#[$doc])* $name = $value,)*
        }

        impl Command {
            /// The command for a byte, if it is one.
            pub fn from_u8(b: u8) -> Option<Self> {
                match b {
                    $($value => Some(Self::$name),)*
                    _ => None,
                }
            }
        }
    };
}

commands! {
    /// Internal server state; never sent.
    Sleep = 0x00,
    /// Close the connection.
    Quit = 0x01,
    /// Change the default schema.
    InitDb = 0x02,
    /// Run a text query.
    Query = 0x03,
    /// List a table's columns (deprecated).
    FieldList = 0x04,
    /// Create a schema (deprecated).
    CreateDb = 0x05,
    /// Drop a schema (deprecated).
    DropDb = 0x06,
    /// Flush tables/logs (deprecated).
    Refresh = 0x07,
    /// Shut down the server (deprecated).
    Shutdown = 0x08,
    /// Human-readable server statistics.
    Statistics = 0x09,
    /// List threads (deprecated).
    ProcessInfo = 0x0a,
    /// Internal.
    Connect = 0x0b,
    /// Kill a connection (deprecated).
    ProcessKill = 0x0c,
    /// Dump debug info.
    Debug = 0x0d,
    /// Check the server is alive.
    Ping = 0x0e,
    /// Internal.
    Time = 0x0f,
    /// Internal.
    DelayedInsert = 0x10,
    /// Re-authenticate as another user.
    ChangeUser = 0x11,
    /// Binlog stream by file and position.
    BinlogDump = 0x12,
    /// Internal.
    TableDump = 0x13,
    /// Internal.
    ConnectOut = 0x14,
    /// Register as a replica.
    RegisterSlave = 0x15,
    /// Prepare a statement.
    StmtPrepare = 0x16,
    /// Execute a prepared statement.
    StmtExecute = 0x17,
    /// Send a chunk of a parameter's value.
    StmtSendLongData = 0x18,
    /// Deallocate a prepared statement (no response).
    StmtClose = 0x19,
    /// Reset a prepared statement's long data and cursor.
    StmtReset = 0x1a,
    /// Enable/disable multi-statements.
    SetOption = 0x1b,
    /// Fetch rows from an open cursor.
    StmtFetch = 0x1c,
    /// Internal.
    Daemon = 0x1d,
    /// Binlog stream by GTID set.
    BinlogDumpGtid = 0x1e,
    /// Reset the session without re-authenticating.
    ResetConnection = 0x1f,
    /// Clone plugin protocol.
    Clone = 0x20,
    /// Group replication stream subscription.
    SubscribeGroupReplicationStream = 0x21,
    /// Not a real command: end marker.
    End = 0x22,
}

/// Frequently used character-set / collation ids (the handshake carries the
/// low byte; COM_CHANGE_USER carries 2 bytes).
pub mod charset {
    /// `latin1_swedish_ci`.
    pub const LATIN1_SWEDISH_CI: u16 = 8;
    /// `ascii_general_ci`.
    pub const ASCII_GENERAL_CI: u16 = 11;
    /// `utf8mb3_general_ci` (a.k.a. `utf8_general_ci`).
    pub const UTF8MB3_GENERAL_CI: u16 = 33;
    /// `utf8mb4_general_ci`.
    pub const UTF8MB4_GENERAL_CI: u16 = 45;
    /// `utf8mb4_bin`.
    pub const UTF8MB4_BIN: u16 = 46;
    /// `binary`.
    pub const BINARY: u16 = 63;
    /// `utf8mb3_bin`.
    pub const UTF8MB3_BIN: u16 = 83;
    /// `utf8mb4_unicode_ci`.
    pub const UTF8MB4_UNICODE_CI: u16 = 224;
    /// `utf8mb4_0900_ai_ci`, the MySQL 8+ default.
    pub const UTF8MB4_0900_AI_CI: u16 = 255;

    /// The collation name for the ids above.
    pub fn name(id: u16) -> Option<&'static str> {
        Some(match id {
            LATIN1_SWEDISH_CI => "latin1_swedish_ci",
            ASCII_GENERAL_CI => "ascii_general_ci",
            UTF8MB3_GENERAL_CI => "utf8mb3_general_ci",
            UTF8MB4_GENERAL_CI => "utf8mb4_general_ci",
            UTF8MB4_BIN => "utf8mb4_bin",
            BINARY => "binary",
            UTF8MB3_BIN => "utf8mb3_bin",
            UTF8MB4_UNICODE_CI => "utf8mb4_unicode_ci",
            UTF8MB4_0900_AI_CI => "utf8mb4_0900_ai_ci",
            _ => return None,
        })
    }
}

/// A column / parameter type byte (`enum_field_types`). Total over `u8`:
/// unknown values are kept, and only fail when a value must be sized.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ColumnType(pub u8);

#[allow(missing_docs)]
impl ColumnType {
    pub const DECIMAL: Self = Self(0);
    pub const TINY: Self = Self(1);
    pub const SHORT: Self = Self(2);
    pub const LONG: Self = Self(3);
    pub const FLOAT: Self = Self(4);
    pub const DOUBLE: Self = Self(5);
    pub const NULL: Self = Self(6);
    pub const TIMESTAMP: Self = Self(7);
    pub const LONGLONG: Self = Self(8);
    pub const INT24: Self = Self(9);
    pub const DATE: Self = Self(10);
    pub const TIME: Self = Self(11);
    pub const DATETIME: Self = Self(12);
    pub const YEAR: Self = Self(13);
    pub const NEWDATE: Self = Self(14);
    pub const VARCHAR: Self = Self(15);
    pub const BIT: Self = Self(16);
    pub const TIMESTAMP2: Self = Self(17);
    pub const DATETIME2: Self = Self(18);
    pub const TIME2: Self = Self(19);
    pub const TYPED_ARRAY: Self = Self(20);
    pub const VECTOR: Self = Self(242);
    pub const INVALID: Self = Self(243);
    pub const BOOL: Self = Self(244);
    pub const JSON: Self = Self(245);
    pub const NEWDECIMAL: Self = Self(246);
    pub const ENUM: Self = Self(247);
    pub const SET: Self = Self(248);
    pub const TINY_BLOB: Self = Self(249);
    pub const MEDIUM_BLOB: Self = Self(250);
    pub const LONG_BLOB: Self = Self(251);
    pub const BLOB: Self = Self(252);
    pub const VAR_STRING: Self = Self(253);
    pub const STRING: Self = Self(254);
    pub const GEOMETRY: Self = Self(255);
}

/// Flags byte of COM_STMT_EXECUTE (`enum_cursor_type` plus
/// `PARAMETER_COUNT_AVAILABLE`).
pub mod cursor {
    /// No cursor.
    pub const NO_CURSOR: u8 = 0;
    /// Open a read-only cursor; rows are fetched with COM_STMT_FETCH.
    pub const READ_ONLY: u8 = 1;
    /// Cursor for update (not supported by MySQL).
    pub const FOR_UPDATE: u8 = 2;
    /// Scrollable cursor (not supported by MySQL).
    pub const SCROLLABLE: u8 = 4;
    /// The execute packet carries an explicit parameter count (query attributes).
    pub const PARAMETER_COUNT_AVAILABLE: u8 = 8;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_bytes() {
        assert_eq!(Command::from_u8(0x1e), Some(Command::BinlogDumpGtid));
        assert_eq!(Command::from_u8(0x15), Some(Command::RegisterSlave));
        assert_eq!(Command::from_u8(0x03), Some(Command::Query));
        assert_eq!(Command::from_u8(0x23), None);
        for b in 0..=0x22u8 {
            assert_eq!(Command::from_u8(b).map(|c| c as u8), Some(b));
        }
    }

    #[test]
    fn capability_bits_match_mysql_com_h() {
        assert_eq!(CapabilityFlags::PROTOCOL_41.bits(), 512);
        assert_eq!(CapabilityFlags::SECURE_CONNECTION.bits(), 0x8000);
        assert_eq!(CapabilityFlags::DEPRECATE_EOF.bits(), 0x0100_0000);
        assert_eq!(CapabilityFlags::QUERY_ATTRIBUTES.bits(), 0x0800_0000);
        assert_eq!(CapabilityFlags::REMEMBER_OPTIONS.bits(), 0x8000_0000);
        assert_eq!(CapabilityFlags::all().bits(), u32::MAX); // every bit is named
        assert_eq!(StatusFlags::SESSION_STATE_CHANGED.bits(), 0x4000);
        assert_eq!(charset::name(255), Some("utf8mb4_0900_ai_ci"));
    }
}
