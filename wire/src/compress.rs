//! The compressed protocol: a second framing layer under the packet framing,
//! in force after a handshake that negotiated `COMPRESS` (zlib) or
//! `ZSTD_COMPRESSION_ALGORITHM` (zstd, with the level the client asked for).
//!
//! ```text
//! frame  = int<3> payload length, int<1> compressed sequence id,
//!          int<3> uncompressed length (0: the payload is stored as is),
//!          payload
//! packet bytes (headers included) --compress--> frames; a frame holds any
//! slice of the packet stream: several packets or a part of one
//! ```
//!
//! As MySQL's `net_serv.cc` (`compress_packet`, `my_net_read`) and
//! `mysys/my_compress.cc` do: less than [`MIN_COMPRESS_LENGTH`] bytes, or a
//! compressed form that is not smaller, are stored; a frame carries at most
//! [`MAX_FRAME`] uncompressed bytes.
//!
//! [`CompressedStream`] keeps the sequence ids of one leg the way MySQL's
//! `NET` does (`pkt_nr`, `compress_pkt_nr`), plus the ids the same exchange
//! would have carried uncompressed, so the rest of a proxy can keep
//! forwarding packets with plain sequence ids whatever each leg speaks:
//!
//! ```text
//! reset()                 command start: every counter 0
//! frame read (seq s)      checked against `comp` when armed; comp = pkt = s + 1
//! packet read             its id becomes `plain`, plain += 1 (the peer's inner
//!                         ids are not checked, as MySQL does not check them)
//! packet written (id p)   plain = p + 1
//!                         (towards a server, p = 0 starts a command: reset())
//! packets flushed         the first takes `comp` (MySQL's net_flush syncs
//!                         pkt_nr to compress_pkt_nr), the others pkt, pkt + 1..
//! frames written          each takes `comp`, comp += 1
//! ```
//! A proxy cannot tell the end of a server's turn from a flush for space,
//! so it syncs at every flush; a client that checks ids (mysql_common)
//! accepts there either a continuing id or the id of the frame the packet
//! ended in, which is what the first packet of a flush gets.

use bytes::{Buf, BufMut, BytesMut};
use flate2::{Compress, Decompress, FlushCompress, FlushDecompress, Status};

use crate::error::{CodecError, Result};
use crate::flags::CapabilityFlags;
use crate::packet::{parse_header, HEADER_LEN};

/// Size of a frame header.
pub const FRAME_HEADER_LEN: usize = 7;
/// The most uncompressed bytes one frame carries (the lengths are 3 bytes).
pub const MAX_FRAME: usize = 0xff_ffff;
/// Payloads shorter than this are stored, not compressed (MySQL's
/// `MIN_COMPRESS_LENGTH`).
pub const MIN_COMPRESS_LENGTH: usize = 50;
/// Packets are grouped into frames of up to this many bytes (MySQL's
/// `net_buffer_length` default).
pub const FRAME_GROUP: usize = 16 * 1024;
/// zstd level when the client gives none (MySQL's default).
pub const DEFAULT_ZSTD_LEVEL: u8 = 3;
/// zlib level MySQL compresses with (zlib's default).
const ZLIB_LEVEL: u32 = 6;

/// A compression algorithm with its level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// zlib (`CLIENT_COMPRESS`).
    Zlib,
    /// zstd at a level 1..=22 (`CLIENT_ZSTD_COMPRESSION_ALGORITHM`).
    Zstd(u8),
}

impl Algorithm {
    /// What a server that offered `offered` runs with a client whose
    /// response carried `client` and `zstd_level`; `None`: uncompressed.
    ///
    /// As MySQL: zlib when the client asks for it (also when it sets both
    /// flags), else zstd at the client's level.
    pub fn negotiate(
        offered: CapabilityFlags,
        client: CapabilityFlags,
        zstd_level: Option<u8>,
    ) -> Option<Algorithm> {
        let both = offered & client;
        if both.contains(CapabilityFlags::COMPRESS) {
            Some(Algorithm::Zlib)
        } else if both.contains(CapabilityFlags::ZSTD_COMPRESSION_ALGORITHM) {
            Some(Algorithm::Zstd(zstd_level.unwrap_or(DEFAULT_ZSTD_LEVEL)))
        } else {
            None
        }
    }

    /// The capability flag that asks for this algorithm.
    pub fn flag(self) -> CapabilityFlags {
        match self {
            Algorithm::Zlib => CapabilityFlags::COMPRESS,
            Algorithm::Zstd(_) => CapabilityFlags::ZSTD_COMPRESSION_ALGORITHM,
        }
    }

    /// The name MySQL shows in `Compression_algorithm`.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Zlib => "zlib",
            Algorithm::Zstd(_) => "zstd",
        }
    }
}

/// Whether a packet payload read on an *uncompressed* leg is really a
/// compressed frame (a client compressing without having negotiated it).
/// Read that way, a frame's 7-byte header is a 4-byte packet header and the
/// payload is the uncompressed length (3 bytes) then the frame's body less
/// its last 3 bytes: a zlib or zstd stream, or (length 0) one packet with
/// sequence id 0 that ends 3 bytes past the payload.
pub fn looks_like_frame(payload: &[u8]) -> bool {
    let Some(&[a, b, c]) = payload.get(..3) else {
        return false;
    };
    let declared = usize::from(a) | usize::from(b) << 8 | usize::from(c) << 16;
    let rest = &payload[3..];
    if declared == 0 {
        return match rest.get(..HEADER_LEN) {
            Some(&[x, y, z, seq]) => {
                let (len, _) = parse_header([x, y, z, seq]);
                seq == 0 && len + HEADER_LEN == rest.len() + 3
            }
            _ => false,
        };
    }
    let zlib =
        matches!(rest, [0x78, second, ..] if (0x7800u16 | u16::from(*second)).is_multiple_of(31));
    let zstd = rest.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]);
    zlib || zstd
}

/// The compressing and decompressing state of one leg.
pub struct CompressedStream {
    algorithm: Algorithm,
    zlib_in: Option<Decompress>,
    zlib_out: Option<Compress>,
    zstd_in: Option<zstd::bulk::Decompressor<'static>>,
    zstd_out: Option<zstd::bulk::Compressor<'static>>,
    /// Largest uncompressed frame accepted.
    max_frame: usize,
    /// Frame sequence ids are checked against `comp`.
    check: bool,
    /// The last packet handled was written (not read); `plain` is then the
    /// id after the written one.
    writing: bool,
    comp: u8,
    pkt: u8,
    plain: u8,
}

impl std::fmt::Debug for CompressedStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompressedStream")
            .field("algorithm", &self.algorithm)
            .field("comp", &self.comp)
            .field("pkt", &self.pkt)
            .finish_non_exhaustive()
    }
}

impl CompressedStream {
    /// A stream compressing with `algorithm` and refusing frames of more
    /// than `max_frame` uncompressed bytes (capped at [`MAX_FRAME`]).
    pub fn new(algorithm: Algorithm, max_frame: usize) -> Self {
        Self {
            algorithm,
            zlib_in: None,
            zlib_out: None,
            zstd_in: None,
            zstd_out: None,
            max_frame: max_frame.min(MAX_FRAME),
            check: false,
            writing: false,
            comp: 0,
            pkt: 0,
            plain: 0,
        }
    }

    /// The algorithm in force.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// Command start: every sequence counter back to 0.
    pub fn reset(&mut self) {
        self.writing = false;
        self.comp = 0;
        self.pkt = 0;
        self.plain = 0;
    }

    /// Arms or disarms the check of incoming frame sequence ids.
    pub fn check_sequence(&mut self, on: bool) {
        self.check = on;
    }

    /// The plain sequence id of the next packet read.
    pub fn next_read_id(&mut self) -> u8 {
        self.writing = false;
        let id = self.plain;
        self.plain = self.plain.wrapping_add(1);
        id
    }

    /// Notes a packet the caller numbered `plain` written (its id on the
    /// wire is set when it is flushed, by [`Self::encode_packets`]). On a
    /// leg where the caller sends commands (`commands`), a packet numbered
    /// 0 starts one, and the counters reset, unless it follows a written
    /// 255 (an id that wrapped around, as in a long LOCAL INFILE). On the
    /// other legs commands start at [`Self::reset`].
    pub fn note_write(&mut self, plain: u8, commands: bool) {
        let wrapped = self.writing && self.plain == 0;
        if commands && plain == 0 && !wrapped {
            self.reset();
        }
        self.writing = true;
        self.plain = plain.wrapping_add(1);
    }

    /// Decodes one whole frame from `src`, appending its uncompressed bytes
    /// to `dst`; `Ok(false)` when `src` holds no whole frame yet.
    pub fn decode(&mut self, src: &mut BytesMut, dst: &mut BytesMut) -> Result<bool> {
        let Some(h) = src.get(..FRAME_HEADER_LEN) else {
            return Ok(false);
        };
        let len = usize::from(h[0]) | usize::from(h[1]) << 8 | usize::from(h[2]) << 16;
        let seq = h[3];
        let declared = usize::from(h[4]) | usize::from(h[5]) << 8 | usize::from(h[6]) << 16;
        let limit = self.max_frame;
        if declared > limit || (declared == 0 && len > limit) {
            let len = declared.max(len);
            return Err(CodecError::TooLarge { len, max: limit });
        }
        if src.len() < FRAME_HEADER_LEN + len {
            src.reserve(FRAME_HEADER_LEN + len - src.len());
            return Ok(false);
        }
        if self.check && seq != self.comp {
            return Err(CodecError::OutOfSequence {
                expected: self.comp,
                got: seq,
            });
        }
        self.comp = seq.wrapping_add(1);
        self.pkt = self.comp;
        self.writing = false;
        src.advance(FRAME_HEADER_LEN);
        let payload = src.split_to(len);
        if declared == 0 {
            dst.extend_from_slice(&payload);
            return Ok(true);
        }
        let out = self.uncompress(&payload, declared)?;
        dst.extend_from_slice(&out);
        Ok(true)
    }

    fn uncompress(&mut self, payload: &[u8], declared: usize) -> Result<Vec<u8>> {
        // Never more than the declared length is produced: a frame whose
        // data inflates further is refused, not followed.
        let mut out = Vec::with_capacity(declared);
        match self.algorithm {
            Algorithm::Zlib => {
                let z = self.zlib_in.get_or_insert_with(|| Decompress::new(true));
                z.reset(true);
                let status = z
                    .decompress_vec(payload, &mut out, FlushDecompress::Finish)
                    .map_err(|_| CodecError::Uncompress("corrupt zlib data"))?;
                if status != Status::StreamEnd {
                    return Err(CodecError::Uncompress(
                        "zlib data longer than its declared length or truncated",
                    ));
                }
            }
            Algorithm::Zstd(_) => {
                let z = match &mut self.zstd_in {
                    Some(z) => z,
                    None => self.zstd_in.insert(
                        zstd::bulk::Decompressor::new()
                            .map_err(|_| CodecError::Uncompress("zstd context"))?,
                    ),
                };
                z.decompress_to_buffer(payload, &mut out)
                    .map_err(|_| CodecError::Uncompress("corrupt zstd data or length"))?;
            }
        }
        if out.len() != declared {
            return Err(CodecError::Uncompress(
                "uncompressed length differs from the frame header",
            ));
        }
        Ok(out)
    }

    /// Numbers the whole packets (chunks) in `packets` as MySQL's `NET`
    /// would, then frames them into `dst`: the first takes the id of the
    /// frame it starts (MySQL's `net_flush` sets `pkt_nr` to
    /// `compress_pkt_nr`, and clients such as mysql_common expect that at
    /// a frame boundary between result sets), unless it is too large to end
    /// in that frame; the others follow on.
    ///
    /// Frames group packets up to [`FRAME_GROUP`] bytes, as MySQL's
    /// `net_write_buff` does with its buffer; a larger packet goes in
    /// frames of its own, so no frame is much larger than the largest
    /// packet in it (clients refuse frames over their `max_allowed_packet`).
    pub fn encode_packets(&mut self, packets: &mut [u8], dst: &mut BytesMut) {
        let mut at = 0;
        let mut group = 0;
        while let Some(&[a, b, c, _]) = packets.get(at..at + HEADER_LEN) {
            let (len, _) = parse_header([a, b, c, 0]);
            let id = if at == 0 && HEADER_LEN + len <= MAX_FRAME {
                self.comp
            } else {
                self.pkt
            };
            packets[at + 3] = id;
            self.pkt = id.wrapping_add(1);
            let end = (at + HEADER_LEN + len).min(packets.len());
            if end - group > FRAME_GROUP {
                if at > group {
                    self.encode(&packets[group..at], dst);
                }
                group = at;
                if end - at > FRAME_GROUP {
                    self.encode(&packets[at..end], dst);
                    group = end;
                }
            }
            at = end;
        }
        if group < packets.len() {
            self.encode(&packets[group..], dst);
        }
    }

    /// Frames all of `src` into `dst` (frames of at most [`MAX_FRAME`]
    /// uncompressed bytes).
    pub fn encode(&mut self, src: &[u8], dst: &mut BytesMut) {
        for piece in src.chunks(MAX_FRAME) {
            let compressed = if piece.len() < MIN_COMPRESS_LENGTH {
                None
            } else {
                self.compress(piece)
            };
            let (body, declared) = match &compressed {
                Some(c) => (&c[..], piece.len()),
                None => (piece, 0),
            };
            dst.reserve(FRAME_HEADER_LEN + body.len());
            put_u24(dst, body.len());
            dst.put_u8(self.comp);
            put_u24(dst, declared);
            dst.put_slice(body);
            self.comp = self.comp.wrapping_add(1);
        }
    }

    /// The compressed form of `piece`, if smaller.
    fn compress(&mut self, piece: &[u8]) -> Option<Vec<u8>> {
        let mut out = Vec::with_capacity(piece.len() - 1);
        match self.algorithm {
            Algorithm::Zlib => {
                let z = self.zlib_out.get_or_insert_with(|| {
                    Compress::new(flate2::Compression::new(ZLIB_LEVEL), true)
                });
                z.reset();
                let status = z
                    .compress_vec(piece, &mut out, FlushCompress::Finish)
                    .ok()?;
                (status == Status::StreamEnd).then_some(out)
            }
            Algorithm::Zstd(level) => {
                let z = match &mut self.zstd_out {
                    Some(z) => z,
                    None => self
                        .zstd_out
                        .insert(zstd::bulk::Compressor::new(i32::from(level)).ok()?),
                };
                z.compress_to_buffer(piece, &mut out).ok()?;
                Some(out)
            }
        }
    }
}

fn put_u24(dst: &mut BytesMut, n: usize) {
    let b = (n as u32).to_le_bytes();
    dst.put_slice(&b[..3]);
}

#[cfg(test)]
mod tests;
