//! Packet framing: the 4-byte header (3-byte little-endian payload length,
//! 1-byte sequence id), splitting of payloads of 16 MiB - 1 bytes and more
//! into chunks, and joining them back.
//!
//! Two decoders share the header logic:
//! - [`PacketCodec`] yields *logical* packets (chunks joined), bounded by a
//!   configurable payload limit. Use it wherever a packet is inspected whole.
//! - [`ChunkDecoder`] yields each wire chunk as it arrives, marking where a
//!   logical packet starts and whether more chunks follow. A proxy forwarding a
//!   large row uses it to stream without holding the whole row.
//!
//! A payload of exactly `n * 0xFFFFFF` bytes is followed by an empty chunk;
//! that is how the receiver knows the packet ended.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::error::{CodecError, Result};

/// Size of the packet header.
pub const HEADER_LEN: usize = 4;
/// The largest payload one chunk carries; a chunk this size means "more follows".
pub const MAX_CHUNK: usize = 0xff_ffff;
/// Default limit for a logical packet's payload (MySQL's own
/// `max_allowed_packet` ceiling is 1 GiB).
pub const DEFAULT_MAX_PAYLOAD: usize = 64 * 1024 * 1024;

/// One logical packet: the sequence id of its first chunk and the joined payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// Sequence id of the first chunk.
    pub seq: u8,
    /// The payload, all chunks joined.
    pub payload: Bytes,
}

impl Packet {
    /// Builds a packet.
    pub fn new(seq: u8, payload: impl Into<Bytes>) -> Self {
        Self {
            seq,
            payload: payload.into(),
        }
    }

    /// How many sequence ids this packet uses on the wire (one per chunk).
    pub fn chunk_count(&self) -> usize {
        self.payload.len() / MAX_CHUNK + 1
    }
}

/// Tracks the expected sequence id of the next packet on one connection.
///
/// The sequence restarts at 0 with every command (the client's command is 0,
/// the server's first response packet 1, ...) and wraps at 255.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sequence(u8);

impl Sequence {
    /// A sequence expecting `next` next.
    pub fn new(next: u8) -> Self {
        Self(next)
    }

    /// The id the next packet must carry.
    pub fn expected(self) -> u8 {
        self.0
    }

    /// Restarts at 0, as at the start of every command.
    pub fn reset(&mut self) {
        self.0 = 0;
    }

    /// Returns the id to use for an outgoing chunk and advances.
    pub fn advance(&mut self) -> u8 {
        let id = self.0;
        self.0 = self.0.wrapping_add(1);
        id
    }

    /// Checks an incoming chunk's id and advances past it.
    pub fn check(&mut self, got: u8) -> Result<()> {
        if got != self.0 {
            return Err(CodecError::OutOfSequence {
                expected: self.0,
                got,
            });
        }
        self.0 = self.0.wrapping_add(1);
        Ok(())
    }
}

/// Appends `payload` as one logical packet starting at sequence id `seq`,
/// splitting it into chunks as needed. Returns the next free sequence id.
pub fn encode_packet(seq: u8, payload: &[u8], dst: &mut BytesMut) -> u8 {
    let mut seq = seq;
    dst.reserve(payload.len() + HEADER_LEN * (payload.len() / MAX_CHUNK + 1));
    let mut rest = payload;
    loop {
        let n = rest.len().min(MAX_CHUNK);
        put_header(dst, n, seq);
        dst.put_slice(&rest[..n]);
        rest = &rest[n..];
        seq = seq.wrapping_add(1);
        if n < MAX_CHUNK {
            return seq;
        }
    }
}

/// Writes one chunk header. `len` must be at most [`MAX_CHUNK`].
pub fn put_header(dst: &mut BytesMut, len: usize, seq: u8) {
    debug_assert!(len <= MAX_CHUNK);
    dst.put_uint_le(len as u64, 3);
    dst.put_u8(seq);
}

/// Parses a chunk header: (payload length, sequence id).
pub fn parse_header(header: [u8; 4]) -> (usize, u8) {
    let len = u32::from_le_bytes([header[0], header[1], header[2], 0]) as usize;
    (len, header[3])
}

fn peek_header(src: &BytesMut) -> Option<(usize, u8)> {
    let h: [u8; 4] = src.get(..HEADER_LEN)?.try_into().ok()?;
    Some(parse_header(h))
}

/// Decoder of logical packets and encoder of packets.
///
/// ```text
/// Idle --chunk < 0xFFFFFF--> yield packet
/// Idle --chunk = 0xFFFFFF--> Joining --...--> chunk < 0xFFFFFF --> yield joined packet
/// ```
/// Sequence ids are checked only when [`PacketCodec::set_sequence`] armed the
/// check (the proxy knows command boundaries; the codec does not).
#[derive(Debug)]
pub struct PacketCodec {
    max_payload: usize,
    joining: Option<(u8, BytesMut)>,
    check_seq: Option<Sequence>,
}

impl Default for PacketCodec {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_PAYLOAD)
    }
}

impl PacketCodec {
    /// A codec refusing logical payloads larger than `max_payload` bytes.
    pub fn new(max_payload: usize) -> Self {
        Self {
            max_payload,
            joining: None,
            check_seq: None,
        }
    }

    /// The configured payload limit.
    pub fn max_payload(&self) -> usize {
        self.max_payload
    }

    /// Changes the payload limit (e.g. after `max_allowed_packet` is known).
    pub fn set_max_payload(&mut self, max: usize) {
        self.max_payload = max;
    }

    /// Arms sequence checking: the next chunk must carry `next`
    /// (call with 0 when a command starts). `None` disables checking.
    pub fn set_sequence(&mut self, next: Option<u8>) {
        self.check_seq = next.map(Sequence::new);
    }

    /// The sequence id the next chunk must carry, when checking is armed.
    pub fn expected_sequence(&self) -> Option<u8> {
        self.check_seq.map(Sequence::expected)
    }

    /// Decodes one logical packet from `src`, or returns `Ok(None)` when more
    /// bytes are needed. Consumes complete chunks from `src` as it goes; a
    /// partially joined packet is kept inside the codec.
    pub fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Packet>> {
        loop {
            let Some((len, seq)) = peek_header(src) else {
                src.reserve(HEADER_LEN);
                return Ok(None);
            };
            let joined = self.joining.as_ref().map_or(0, |(_, b)| b.len());
            let total = joined + len;
            if total > self.max_payload {
                return Err(CodecError::TooLarge {
                    len: total,
                    max: self.max_payload,
                });
            }
            if src.len() < HEADER_LEN + len {
                src.reserve(HEADER_LEN + len - src.len());
                return Ok(None);
            }
            if let Some(s) = self.check_seq.as_mut() {
                s.check(seq)?;
            }
            src.advance(HEADER_LEN);
            let chunk = src.split_to(len);
            let more = len == MAX_CHUNK;
            match (self.joining.take(), more) {
                (None, false) => return Ok(Some(Packet::new(seq, chunk.freeze()))),
                (None, true) => self.joining = Some((seq, chunk)),
                (Some((first, mut buf)), more) => {
                    buf.extend_from_slice(&chunk);
                    if more {
                        self.joining = Some((first, buf));
                    } else {
                        return Ok(Some(Packet::new(first, buf.freeze())));
                    }
                }
            }
        }
    }

    /// Like [`decode`](Self::decode) at end of stream: leftover bytes are an error.
    pub fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Packet>> {
        match self.decode(src)? {
            Some(p) => Ok(Some(p)),
            None if src.is_empty() && self.joining.is_none() => Ok(None),
            None => Err(CodecError::UnexpectedEof {
                buffered: src.len() + self.joining.as_ref().map_or(0, |(_, b)| b.len()),
            }),
        }
    }

    /// Encodes `packet`, splitting it into chunks. When sequence checking is
    /// armed the packet's own id is ignored and the tracked sequence is used
    /// (and advanced), so replies continue the exchange correctly.
    pub fn encode(&mut self, packet: &Packet, dst: &mut BytesMut) -> Result<()> {
        if packet.payload.len() > self.max_payload {
            return Err(CodecError::TooLarge {
                len: packet.payload.len(),
                max: self.max_payload,
            });
        }
        match self.check_seq.as_mut() {
            Some(s) => {
                let next = encode_packet(s.expected(), &packet.payload, dst);
                *s = Sequence::new(next);
            }
            None => {
                encode_packet(packet.seq, &packet.payload, dst);
            }
        }
        Ok(())
    }
}

/// One wire chunk, as yielded by [`ChunkDecoder`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// This chunk's sequence id.
    pub seq: u8,
    /// This chunk's payload (at most [`MAX_CHUNK`] bytes).
    pub payload: Bytes,
    /// Whether this chunk starts a logical packet (false for continuations,
    /// whose bytes must not be interpreted as a packet header byte).
    pub first: bool,
    /// Whether another chunk of the same logical packet follows.
    pub more: bool,
}

impl Chunk {
    /// Re-encodes this chunk (header and payload) unchanged.
    pub fn encode(&self, dst: &mut BytesMut) {
        dst.reserve(HEADER_LEN + self.payload.len());
        put_header(dst, self.payload.len(), self.seq);
        dst.put_slice(&self.payload);
    }
}

/// Decoder yielding raw chunks, for forwarding without joining.
///
/// Buffers at most one chunk (16 MiB) at a time. The logical-packet limit
/// still applies to the sum of a packet's chunks.
#[derive(Debug)]
pub struct ChunkDecoder {
    max_payload: usize,
    in_packet: usize,
    continuing: bool,
    check_seq: Option<Sequence>,
}

impl Default for ChunkDecoder {
    fn default() -> Self {
        Self::new(usize::MAX)
    }
}

impl ChunkDecoder {
    /// A decoder refusing logical packets larger than `max_payload` bytes.
    pub fn new(max_payload: usize) -> Self {
        Self {
            max_payload,
            in_packet: 0,
            continuing: false,
            check_seq: None,
        }
    }

    /// Arms (or with `None` disarms) sequence checking; see [`PacketCodec::set_sequence`].
    pub fn set_sequence(&mut self, next: Option<u8>) {
        self.check_seq = next.map(Sequence::new);
    }

    /// Whether the decoder is between chunks of one logical packet.
    pub fn mid_packet(&self) -> bool {
        self.continuing
    }

    /// Decodes one chunk, or `Ok(None)` when more bytes are needed.
    pub fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Chunk>> {
        let Some((len, seq)) = peek_header(src) else {
            src.reserve(HEADER_LEN);
            return Ok(None);
        };
        let total = self.in_packet.saturating_add(len);
        if total > self.max_payload {
            return Err(CodecError::TooLarge {
                len: total,
                max: self.max_payload,
            });
        }
        if src.len() < HEADER_LEN + len {
            src.reserve(HEADER_LEN + len - src.len());
            return Ok(None);
        }
        if let Some(s) = self.check_seq.as_mut() {
            s.check(seq)?;
        }
        src.advance(HEADER_LEN);
        let payload = src.split_to(len).freeze();
        let first = !self.continuing;
        let more = len == MAX_CHUNK;
        self.continuing = more;
        self.in_packet = if more { total } else { 0 };
        Ok(Some(Chunk {
            seq,
            payload,
            first,
            more,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode_all(codec: &mut PacketCodec, mut src: BytesMut) -> Vec<Packet> {
        let mut out = Vec::new();
        while let Some(p) = codec.decode(&mut src).unwrap() {
            out.push(p);
        }
        assert!(src.is_empty());
        out
    }

    #[test]
    fn decodes_a_com_ping() {
        let mut src = BytesMut::from(&[0x01, 0x00, 0x00, 0x00, 0x0e][..]);
        let p = PacketCodec::default().decode(&mut src).unwrap().unwrap();
        assert_eq!(p, Packet::new(0, vec![0x0e]));
        assert!(src.is_empty());
    }

    #[test]
    fn waits_for_header_and_body() {
        let mut codec = PacketCodec::default();
        let mut src = BytesMut::from(&[0x03, 0x00][..]);
        assert_eq!(codec.decode(&mut src).unwrap(), None);
        src.extend_from_slice(&[0x00, 0x07, b'a', b'b']);
        assert_eq!(codec.decode(&mut src).unwrap(), None);
        src.extend_from_slice(b"c");
        let p = codec.decode(&mut src).unwrap().unwrap();
        assert_eq!((p.seq, &p.payload[..]), (7, &b"abc"[..]));
    }

    #[test]
    fn empty_payload_round_trips() {
        let mut dst = BytesMut::new();
        assert_eq!(encode_packet(3, &[], &mut dst), 4);
        assert_eq!(&dst[..], &[0, 0, 0, 3]);
        let p = PacketCodec::default().decode(&mut dst).unwrap().unwrap();
        assert_eq!(p, Packet::new(3, Bytes::new()));
    }

    #[test]
    fn splits_and_joins_large_payloads() {
        for len in [MAX_CHUNK - 1, MAX_CHUNK, MAX_CHUNK + 1, 2 * MAX_CHUNK] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let mut dst = BytesMut::new();
            let next = encode_packet(254, &payload, &mut dst);
            let chunks = len / MAX_CHUNK + 1;
            assert_eq!(next, 254u8.wrapping_add(chunks as u8), "len {len}");
            assert_eq!(dst.len(), len + HEADER_LEN * chunks);
            // Trailing empty chunk when the payload is a multiple of MAX_CHUNK.
            if len % MAX_CHUNK == 0 {
                assert_eq!(&dst[dst.len() - 4..], &[0, 0, 0, next.wrapping_sub(1)]);
            }
            let mut codec = PacketCodec::new(usize::MAX);
            codec.set_sequence(Some(254));
            let packets = decode_all(&mut codec, dst.clone());
            assert_eq!(packets.len(), 1);
            assert_eq!(packets[0].seq, 254);
            assert!(packets[0].payload[..] == payload[..]);
            assert_eq!(codec.expected_sequence(), Some(next));

            let mut chunks_seen = Vec::new();
            let mut raw = ChunkDecoder::default();
            while let Some(c) = raw.decode(&mut dst).unwrap() {
                chunks_seen.push((c.first, c.more, c.payload.len()));
            }
            assert_eq!(chunks_seen.len(), chunks);
            assert!(chunks_seen[0].0);
            assert!(chunks_seen[1..].iter().all(|c| !c.0));
            assert!(!chunks_seen.last().unwrap().1);
        }
    }

    #[test]
    fn oversize_is_an_error_before_buffering() {
        let mut codec = PacketCodec::new(10);
        // Header announces 11 bytes; only the header has arrived.
        let mut src = BytesMut::from(&[11, 0, 0, 0][..]);
        assert!(matches!(
            codec.decode(&mut src),
            Err(CodecError::TooLarge { len: 11, max: 10 })
        ));
        // Multi-chunk packets are bounded by their joined size.
        let mut codec = PacketCodec::new(MAX_CHUNK + 5);
        let mut src = BytesMut::new();
        encode_packet(0, &vec![0u8; MAX_CHUNK + 6], &mut src);
        assert!(matches!(
            codec.decode(&mut src),
            Err(CodecError::TooLarge { .. })
        ));
        let mut raw = ChunkDecoder::new(MAX_CHUNK + 5);
        let mut src2 = BytesMut::new();
        encode_packet(0, &vec![0u8; MAX_CHUNK + 6], &mut src2);
        assert!(raw.decode(&mut src2).unwrap().is_some());
        assert!(matches!(
            raw.decode(&mut src2),
            Err(CodecError::TooLarge { .. })
        ));
    }

    #[test]
    fn out_of_sequence_is_detected() {
        let mut codec = PacketCodec::default();
        codec.set_sequence(Some(1));
        let mut src = BytesMut::from(&[1, 0, 0, 2, 0][..]);
        assert!(matches!(
            codec.decode(&mut src),
            Err(CodecError::OutOfSequence {
                expected: 1,
                got: 2
            })
        ));
        let mut seq = Sequence::new(255);
        assert_eq!(seq.advance(), 255);
        assert_eq!(seq.expected(), 0);
        seq.check(0).unwrap();
        seq.reset();
        assert_eq!(seq.expected(), 0);
    }

    #[test]
    fn encode_uses_tracked_sequence_when_armed() {
        let mut codec = PacketCodec::default();
        codec.set_sequence(Some(0));
        let mut src = BytesMut::from(&[1, 0, 0, 0, 0x0e][..]);
        codec.decode(&mut src).unwrap().unwrap();
        let mut dst = BytesMut::new();
        codec
            .encode(&Packet::new(99, vec![0u8; 7]), &mut dst)
            .unwrap();
        assert_eq!(&dst[..4], &[7, 0, 0, 1]);
        assert_eq!(codec.expected_sequence(), Some(2));
    }

    #[test]
    fn eof_inside_a_packet_is_an_error() {
        let mut codec = PacketCodec::default();
        let mut src = BytesMut::from(&[5, 0, 0, 0, 1][..]);
        assert!(matches!(
            codec.decode_eof(&mut src),
            Err(CodecError::UnexpectedEof { buffered: 5 })
        ));
        assert_eq!(codec.decode_eof(&mut BytesMut::new()).unwrap(), None);
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..300), max in 0usize..200) {
            let mut codec = PacketCodec::new(max);
            let mut src = BytesMut::from(&data[..]);
            while let Ok(Some(_)) = codec.decode(&mut src) {}
            let mut raw = ChunkDecoder::new(max);
            let mut src = BytesMut::from(&data[..]);
            while let Ok(Some(_)) = raw.decode(&mut src) {}
        }

        #[test]
        fn round_trip_with_arbitrary_split_points(
            payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 1..8),
            split in any::<prop::sample::Index>(),
        ) {
            let mut wire = BytesMut::new();
            let mut seq = 0u8;
            for p in &payloads {
                seq = encode_packet(seq, p, &mut wire);
            }
            let cut = split.index(wire.len() + 1);
            let mut codec = PacketCodec::default();
            codec.set_sequence(Some(0));
            let mut src = BytesMut::from(&wire[..cut]);
            let mut got = Vec::new();
            while let Some(p) = codec.decode(&mut src).unwrap() {
                got.push(p.payload.to_vec());
            }
            src.extend_from_slice(&wire[cut..]);
            while let Some(p) = codec.decode(&mut src).unwrap() {
                got.push(p.payload.to_vec());
            }
            prop_assert_eq!(got, payloads);
        }
    }
}
