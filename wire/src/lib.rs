//! MySQL wire protocol codec. Pure: decoding and encoding of bytes, no sockets.
//!
//! Built for a proxy that sits between real clients and MySQL servers,
//! forwards packets one by one and inspects only what it must:
//!
//! | module | what |
//! |---|---|
//! | [`packet`] | framing: logical packets ([`PacketCodec`]) and raw chunks ([`ChunkDecoder`]), 16 MiB splitting, sequence ids |
//! | [`compress`] | the compressed protocol (zlib, zstd): frames under the packet framing, sequence ids per leg |
//! | [`flags`] | capability and status flags, command bytes, charsets, column types, cursor flags |
//! | [`generic`] | OK (incl. the 0xFE form of `DEPRECATE_EOF`), ERR, EOF |
//! | [`session_state`] | session-state entries of OK packets (GTIDs), GTID stripping |
//! | [`handshake`] | Handshake v10, SSLRequest, HandshakeResponse41, auth switch / more data |
//! | [`auth`] | native and caching_sha2 scrambles and verification, RSA password exchange |
//! | [`command`] | client command decoders/encoders, prepared statements, query attributes |
//! | [`response`] | which server packets answer a command, and when the answer is complete |
//! | [`buf`] | length-encoded integers and strings, a bounds-checked reader |
//!
//! With the `tokio` feature, [`PacketCodec`] implements
//! `tokio_util::codec::{Decoder, Encoder}`.
//!
//! Every decoder returns [`CodecError`] on malformed input: none panics, none
//! allocates more than its input's size (lengths read from the wire are
//! checked against the bytes actually present before use).
//!
//! A minimal forwarding loop, without sockets:
//! ```
//! use bytes::BytesMut;
//! use causeway_wire::{CapabilityFlags, PacketCodec, response::ResponseTracker};
//!
//! let caps = CapabilityFlags::PROTOCOL_41 | CapabilityFlags::DEPRECATE_EOF;
//! let command = [0x03, b'S', b'E', b'L', b'E', b'C', b'T', b' ', b'1'];
//! let mut tracker = ResponseTracker::for_command(&command, caps);
//! // Column count 1, one column definition, row "1", OK(0xFE): as MySQL sends them.
//! let mut from_server = BytesMut::from(
//!     &b"\x01\x00\x00\x01\x01\
//!        \x17\x00\x00\x02\x03def\x00\x00\x00\x011\x00\x0c\x3f\x00\x01\x00\x00\x00\x08\x81\x00\x00\x00\x00\
//!        \x02\x00\x00\x03\x011\
//!        \x07\x00\x00\x04\xfe\x00\x00\x02\x00\x00\x00"[..],
//! );
//! let mut codec = PacketCodec::default();
//! let mut forwarded = 0;
//! while let Some(packet) = codec.decode(&mut from_server).unwrap() {
//!     forwarded += 1; // a proxy would write the packet to the client here
//!     if tracker.feed(&packet.payload).unwrap().done {
//!         break;
//!     }
//! }
//! assert_eq!(forwarded, 4);
//! assert!(tracker.is_done());
//! ```

pub mod auth;
pub mod buf;
pub mod command;
pub mod compress;
pub mod error;
pub mod flags;
#[cfg(feature = "tokio")]
mod framed;
pub mod generic;
pub mod handshake;
pub mod packet;
pub mod response;
pub mod resultset;
pub mod session_state;

pub use error::{CodecError, Result};
pub use flags::{CapabilityFlags, ColumnType, Command, StatusFlags};
pub use generic::{EofPacket, ErrPacket, OkPacket};
pub use packet::{Chunk, ChunkDecoder, Packet, PacketCodec, Sequence};
pub use response::{ResponseKind, ResponseTracker};
