//! The crate's single error type.

/// Everything that can go wrong while decoding or encoding MySQL protocol data.
///
/// Decoders never panic on malformed input: every truncation, bad marker or
/// impossible length surfaces as one of these variants.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The input ended before a field was complete.
    #[error("truncated packet: {what} needs {needed} more bytes")]
    Truncated {
        /// Which field was being read.
        what: &'static str,
        /// How many more bytes were needed.
        needed: usize,
    },
    /// A NUL-terminated string had no terminator.
    #[error("missing nul terminator in {what}")]
    MissingNul {
        /// Which field was being read.
        what: &'static str,
    },
    /// A length-encoded integer started with a reserved byte (0xfb NULL or 0xff).
    #[error("invalid length-encoded integer prefix 0x{prefix:02x} in {what}")]
    InvalidLenenc {
        /// Which field was being read.
        what: &'static str,
        /// The offending first byte.
        prefix: u8,
    },
    /// A logical packet would exceed the configured payload limit.
    #[error("packet payload of at least {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Payload size seen so far (a lower bound).
        len: usize,
        /// Configured limit.
        max: usize,
    },
    /// A packet arrived with an unexpected sequence id.
    #[error("out-of-sequence packet: expected sequence id {expected}, got {got}")]
    OutOfSequence {
        /// The sequence id that was expected.
        expected: u8,
        /// The sequence id that arrived.
        got: u8,
    },
    /// The stream ended in the middle of a packet.
    #[error("stream ended inside a packet ({buffered} bytes buffered)")]
    UnexpectedEof {
        /// Bytes buffered when the stream ended.
        buffered: usize,
    },
    /// A packet started with a byte that is not valid where it appeared.
    #[error("unexpected header byte 0x{header:02x} for {what}")]
    UnexpectedHeader {
        /// What kind of packet was expected.
        what: &'static str,
        /// The first byte of the payload.
        header: u8,
    },
    /// A field held a value outside its valid range.
    #[error("invalid {what}: {value}")]
    InvalidValue {
        /// Which field.
        what: &'static str,
        /// The offending value.
        value: u64,
    },
    /// A packet was empty where a payload was required.
    #[error("empty packet where {what} was expected")]
    EmptyPacket {
        /// What was expected.
        what: &'static str,
    },
    /// Bytes were left over after a fixed-layout packet.
    #[error("{count} trailing bytes after {what}")]
    TrailingBytes {
        /// Which packet.
        what: &'static str,
        /// How many bytes were left.
        count: usize,
    },
    /// The peer used a protocol feature this crate does not implement.
    #[error("unsupported protocol feature: {0}")]
    Unsupported(&'static str),
    /// A server response did not follow the protocol's state machine.
    #[error("protocol violation: {0}")]
    Protocol(&'static str),
    /// A compressed frame could not be uncompressed (corrupt data, or an
    /// uncompressed length other than its header's).
    #[error("could not uncompress a frame: {0}")]
    Uncompress(&'static str),
    /// RSA key handling or encryption/decryption failed.
    #[error("rsa operation failed")]
    Rsa(#[from] rsa::Error),
    /// A PEM/DER public key could not be parsed.
    #[error("invalid rsa public key")]
    RsaPublicKey(#[from] rsa::pkcs8::spki::Error),
    /// A PEM/DER private key could not be parsed or written.
    #[error("invalid rsa private key")]
    RsaPrivateKey(#[from] rsa::pkcs8::Error),
    /// An I/O error from the transport (only produced by the tokio adapter).
    #[error("i/o error")]
    Io(#[from] std::io::Error),
}

/// Shorthand for results in this crate.
pub type Result<T, E = CodecError> = std::result::Result<T, E>;
