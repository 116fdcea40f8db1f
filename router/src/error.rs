//! The router's error type: which side failed (client, backend, internal),
//! whether retrying on another backend connection is safe, and the ERR
//! packet (if any) the client should see.

use causeway_wire::{CodecError, ErrPacket};

/// Which side of a session failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The application's connection.
    Client,
    /// The MySQL server's connection.
    Backend,
    /// The router itself (configuration, key material).
    Internal,
}

/// Everything that ends a session or a handshake.
/// Why a login may not start now (see `frontend::gate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Crowded {
    /// `max_handshakes` logins are in progress.
    All(usize),
    /// `max_handshakes_per_address` logins are in progress from this address.
    Address(usize),
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading from or writing to the client failed.
    #[error("client i/o")]
    ClientIo(#[source] std::io::Error),
    /// The client sent bytes that are not valid MySQL protocol.
    #[error("client protocol")]
    ClientProtocol(#[source] CodecError),
    /// The client's handshake response could not be decoded.
    #[error("bad handshake")]
    BadHandshake(#[source] CodecError),
    /// The client sent a valid packet at a point where it is not allowed.
    #[error("client protocol: {0}")]
    ClientUnexpected(&'static str),
    /// The client asked for zstd at a level outside 1..=22.
    #[error("invalid zstd compression level {0}")]
    BadCompressionLevel(u8),
    /// The client did not finish a step in time.
    #[error("client timed out during {0}")]
    ClientTimeout(&'static str),
    /// The client stopped sending in the middle of a command.
    #[error("client timed out reading {0}")]
    ClientReadTimeout(&'static str),
    /// The client's TLS handshake failed.
    #[error("client tls")]
    ClientTls(#[source] std::io::Error),
    /// Authentication of the client failed.
    #[error("access denied for user {user:?} ({reason})")]
    AccessDenied {
        /// The user name the client gave.
        user: String,
        /// Why (for the log; the client sees MySQL's generic message).
        reason: &'static str,
        /// Whether the client sent a password.
        using_password: bool,
    },
    /// The client cannot use the plugin the user needs.
    #[error("client cannot authenticate with {0}")]
    ClientAuthUnsupported(&'static str),
    /// The client did not switch to TLS though the router requires it.
    #[error("client did not use tls")]
    InsecureTransport,
    /// The client legs together hold `frontend.max_buffered` bytes of
    /// partly received packets already.
    #[error("client packet buffers full ({0} bytes)")]
    ClientBuffersFull(usize),
    /// Too many sessions.
    #[error("too many connections")]
    TooManyConnections,
    /// Too many logins in progress (in all, or from the client's address).
    #[error("too many logins in progress ({0:?})")]
    TooManyLogins(Crowded),
    /// The user has `max_connections` sessions already.
    #[error("user {0:?} has too many sessions")]
    UserLimit(String),
    /// TCP connect to the backend failed or timed out.
    #[error("backend {addr} unreachable")]
    BackendConnect {
        /// host:port.
        addr: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Reading from or writing to the backend failed.
    #[error("backend i/o")]
    BackendIo(#[source] std::io::Error),
    /// The backend sent bytes that are not valid MySQL protocol.
    #[error("backend protocol")]
    BackendProtocol(#[source] CodecError),
    /// The backend's TLS handshake failed.
    #[error("backend tls")]
    BackendTls(#[source] std::io::Error),
    /// The backend answered with an ERR packet (forwarded to the client).
    #[error("backend refused: {} {}", .0.code, String::from_utf8_lossy(&.0.message))]
    BackendRefused(ErrPacket),
    /// The backend lacks something the router needs.
    #[error("backend unsupported: {0}")]
    BackendUnsupported(&'static str),
    /// The router's own setup failed.
    #[error("internal: {0}")]
    Internal(String),
    /// A backend connection that held the session's state (a transaction,
    /// temporary tables, locks, unread user variables) was lost: the
    /// client gets this ERR and its session ends, as with a lost connection.
    #[error("session state lost: {}", String::from_utf8_lossy(&.0.message))]
    SessionLost(ErrPacket),
}

impl Error {
    /// The backend did not answer `what` in time.
    pub fn backend_timeout(what: &str, limit: std::time::Duration) -> Self {
        let msg = format!("{what}: no answer within {limit:?}");
        Self::BackendIo(std::io::Error::new(std::io::ErrorKind::TimedOut, msg))
    }

    /// Which side failed.
    pub fn side(&self) -> Side {
        match self {
            Self::ClientIo(_)
            | Self::ClientProtocol(_)
            | Self::ClientUnexpected(_)
            | Self::BadCompressionLevel(_)
            | Self::BadHandshake(_)
            | Self::ClientTimeout(_)
            | Self::ClientReadTimeout(_)
            | Self::ClientBuffersFull(_)
            | Self::ClientTls(_)
            | Self::AccessDenied { .. }
            | Self::ClientAuthUnsupported(_)
            | Self::InsecureTransport => Side::Client,
            Self::BackendConnect { .. }
            | Self::BackendIo(_)
            | Self::BackendProtocol(_)
            | Self::BackendTls(_)
            | Self::BackendRefused(_)
            | Self::BackendUnsupported(_)
            | Self::SessionLost(_) => Side::Backend,
            Self::TooManyConnections
            | Self::TooManyLogins(_)
            | Self::UserLimit(_)
            | Self::Internal(_) => Side::Internal,
        }
    }

    /// Its name in the error statistics (`crate::stats::errors`), in the
    /// words of the `causeway_router_errors` kinds where one exists.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::ClientIo(_) | Self::ClientTls(_) => "client_io",
            Self::ClientProtocol(_)
            | Self::BadHandshake(_)
            | Self::ClientUnexpected(_)
            | Self::BadCompressionLevel(_) => "client_protocol",
            Self::ClientTimeout(_) | Self::ClientReadTimeout(_) => "client_timeout",
            Self::AccessDenied { .. } | Self::ClientAuthUnsupported(_) => "access_denied",
            Self::InsecureTransport => "insecure_transport",
            Self::ClientBuffersFull(_) => "client_buffers_full",
            Self::TooManyConnections => "max_connections",
            Self::TooManyLogins(_) => "login_limit",
            Self::UserLimit(_) => "user_limit",
            Self::BackendConnect { .. } | Self::BackendTls(_) => "backend_connect",
            Self::BackendIo(_) | Self::BackendProtocol(_) => "backend_lost",
            Self::BackendRefused(_) => "backend_failed",
            Self::BackendUnsupported(_) => "backend_unsupported",
            Self::SessionLost(_) => "session_lost",
            Self::Internal(_) => "internal",
        }
    }

    /// The message with every source, for log lines: `backend i/o: connection reset`.
    pub fn report(&self) -> String {
        let mut out = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(s) = source {
            out.push_str(": ");
            out.push_str(&s.to_string());
            source = s.source();
        }
        out
    }

    /// The backend's host refused the TCP connection: nothing listens on
    /// the server's port.
    pub fn is_refused(&self) -> bool {
        matches!(self, Self::BackendConnect { source, .. }
            if source.kind() == std::io::ErrorKind::ConnectionRefused)
    }

    /// Whether the failed step could be retried on a fresh backend
    /// connection without the client noticing: only when nothing reached a
    /// backend yet.
    pub fn retry_safe(&self) -> bool {
        matches!(self, Self::BackendConnect { .. } | Self::BackendTls(_))
    }

    /// The ERR packet the client should get, when the protocol still allows
    /// one (not after the client's side of the connection broke).
    pub fn client_err(&self, client_host: &str) -> Option<ErrPacket> {
        Some(match self {
            Self::ClientIo(_) | Self::ClientTls(_) => return None,
            Self::ClientProtocol(CodecError::TooLarge { .. }) => ErrPacket::new(
                1153,
                *b"08S01",
                "Got a packet bigger than 'max_allowed_packet' bytes",
            ),
            Self::ClientProtocol(CodecError::Uncompress(_)) => {
                ErrPacket::new(1157, *b"08S01", "Couldn't uncompress communication packet")
            }
            Self::ClientProtocol(CodecError::OutOfSequence { .. }) => {
                ErrPacket::new(1156, *b"08S01", "Got packets out of order")
            }
            Self::ClientProtocol(_) | Self::ClientUnexpected(_) => {
                ErrPacket::new(1047, *b"08S01", "Unknown command or malformed packet")
            }
            // As MySQL 9.7 words it (ER_WRONG_COMPRESSION_LEVEL_CLIENT).
            Self::BadCompressionLevel(_) => ErrPacket::new(
                3923,
                *b"HY000",
                "Invalid zstd compression level for algorithm 'zstd'.",
            ),
            Self::ClientTimeout(_) | Self::BadHandshake(_) => {
                ErrPacket::new(1043, *b"08S01", "Bad handshake")
            }
            Self::ClientBuffersFull(limit) => ErrPacket::new(
                1041,
                *b"HY000",
                format!(
                    "Out of memory: the router holds {limit} bytes of partly received packets \
                     (Causeway frontend.max_buffered); this connection is closed"
                ),
            ),
            Self::ClientReadTimeout(_) => ErrPacket::new(
                1159,
                *b"08S01",
                "Got timeout reading communication packets",
            ),
            Self::AccessDenied {
                user,
                using_password,
                ..
            } => ErrPacket::new(
                1045,
                *b"28000",
                format!(
                    "Access denied for user '{user}'@'{client_host}' (using password: {})",
                    if *using_password { "YES" } else { "NO" }
                ),
            ),
            Self::ClientAuthUnsupported(_) => ErrPacket::new(
                1251,
                *b"08004",
                "Client does not support authentication protocol requested by server; consider upgrading MySQL client",
            ),
            Self::InsecureTransport => ErrPacket::new(
                3159,
                *b"HY000",
                "Connections using insecure transport are prohibited while --require_secure_transport=ON.",
            ),
            Self::TooManyConnections => ErrPacket::new(1040, *b"08004", "Too many connections"),
            Self::TooManyLogins(crowded) => ErrPacket::new(
                1040,
                *b"08004",
                match crowded {
                    Crowded::All(n) => format!(
                        "Too many connections: {n} logins in progress (Causeway max_handshakes)"
                    ),
                    Crowded::Address(n) => format!(
                        "Too many connections: {n} logins in progress from {client_host} \
                         (Causeway max_handshakes_per_address)"
                    ),
                },
            ),
            Self::UserLimit(user) => ErrPacket::new(
                1226,
                *b"42000",
                format!("User '{user}' has exceeded the 'max_connections' resource (Causeway)"),
            ),
            // The address and the OS error are for the log only: the client
            // may not have authenticated yet.
            Self::BackendConnect { .. } => ErrPacket::new(
                2003,
                *b"HY000",
                "Can't connect to MySQL server (backend unavailable)",
            ),
            Self::BackendRefused(err) | Self::SessionLost(err) => err.clone(),
            Self::BackendIo(_) | Self::BackendProtocol(_) => ErrPacket::new(
                2013,
                *b"HY000",
                "Lost connection to MySQL server during query (router backend connection failed)",
            ),
            Self::BackendTls(e) => ErrPacket::new(
                2026,
                *b"HY000",
                format!("SSL connection error between the router and the backend: {e}"),
            ),
            Self::BackendUnsupported(what) => ErrPacket::new(
                1251,
                *b"08004",
                format!("Backend does not support {what}"),
            ),
            Self::Internal(what) => {
                ErrPacket::new(1105, *b"HY000", format!("Router internal error: {what}"))
            }
        })
    }
}

/// Shorthand for results in this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_denied_reads_like_mysql() {
        let e = Error::AccessDenied {
            user: "app".into(),
            reason: "wrong password",
            using_password: true,
        };
        let err = e.client_err("127.0.0.1").unwrap();
        assert_eq!(err.code, 1045);
        assert_eq!(
            &err.message[..],
            b"Access denied for user 'app'@'127.0.0.1' (using password: YES)"
        );
        assert_eq!(e.side(), Side::Client);
        assert!(!e.retry_safe());
    }

    #[test]
    fn a_broken_client_gets_no_packet_and_backend_connect_is_retryable() {
        let io = || std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(Error::ClientIo(io()).client_err("h").is_none());
        let e = Error::BackendConnect {
            addr: "db:3306".into(),
            source: io(),
        };
        assert_eq!(e.side(), Side::Backend);
        assert!(e.retry_safe());
        let err = e.client_err("h").unwrap();
        assert_eq!(err.code, 2003);
        assert_eq!(
            &err.message[..],
            b"Can't connect to MySQL server (backend unavailable)"
        );
        assert!(e.report().contains("db:3306"), "{}", e.report());
    }
}
