//! The crate's one error type.

use thiserror::Error;

use crate::MAX_GNO;

/// Everything that can go wrong in this crate.
///
/// Parsers and decoders report *where* (a byte offset, or a line number for
/// the ProxySQL protocol) and *why*; they never panic and never return a
/// smaller set than the input describes.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
#[allow(missing_docs)] // each variant's doc describes its fields
pub enum Error {
    /// Malformed GTID or GTID-set text. `pos` is the byte offset of the
    /// offending character in the input.
    #[error("invalid gtid text at byte {pos}: {reason}")]
    Text { pos: usize, reason: &'static str },

    /// A transaction number outside `1..=MAX_GNO`.
    #[error("gno {0} out of range 1..={max}", max = MAX_GNO)]
    GnoOutOfRange(u64),

    /// An interval whose start is after its end.
    #[error("invalid interval {start}-{end}: start after end")]
    IntervalReversed { start: u64, end: u64 },

    /// A tag that is not `[a-z_][a-z0-9_]{0,31}` (case-insensitive).
    #[error("invalid tag {0:?}: expected a letter or '_' then up to 31 letters, digits or '_'")]
    InvalidTag(String),

    /// Malformed Causeway stream frame; `pos` is the byte offset from the
    /// start of the frame (its length prefix).
    #[error("malformed causeway frame at byte {pos}: {reason}")]
    Frame { pos: usize, reason: &'static str },

    /// A frame whose declared length exceeds the decoder's limit.
    #[error("causeway frame of {len} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge { len: u64, max: usize },

    /// A frame written in a stream format version this decoder does not speak.
    #[error("unsupported causeway stream version {0}")]
    UnsupportedVersion(u8),

    /// A well-formed message that is not allowed in the stream's current state
    /// (e.g. a delta before the first snapshot).
    #[error("causeway stream protocol violation: {0}")]
    Protocol(&'static str),

    /// A heartbeat whose sequence does not match the deltas received.
    #[error(
        "heartbeat sequence {got} does not match the {expected} deltas received since the snapshot"
    )]
    SequenceMismatch { expected: u64, got: u64 },

    /// Malformed line of ProxySQL's binlog-reader protocol. `line` counts
    /// from 1; `pos` is the byte offset within that line.
    #[error("malformed proxysql reader line {line} at byte {pos}: {reason}")]
    ProxysqlLine {
        line: u64,
        pos: usize,
        reason: &'static str,
    },

    /// A ProxySQL protocol line longer than the decoder's limit.
    #[error("proxysql reader line longer than {max} bytes")]
    LineTooLong { max: usize },
}

/// Shorthand for results in this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
