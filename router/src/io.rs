//! One leg of a session (client or backend): a byte stream (TCP or TLS)
//! with MySQL packet framing on top.
//!
//! ```text
//! handshake phase : read_packet / write_packet   exact reads, nothing buffered,
//!                                                 so the stream can switch to TLS
//! command phase   : next_chunk / queue_* / flush  buffered, chunk by chunk
//! compressed      : after start_compression, frames are undone into rbuf
//!                   and wbuf is framed at flush; the packets above keep
//!                   plain sequence ids (see causeway_wire::compress)
//! ```

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use causeway_wire::compress::{Algorithm, CompressedStream};
use causeway_wire::packet::{encode_packet, parse_header, HEADER_LEN, MAX_CHUNK};
use causeway_wire::{Chunk, ChunkDecoder, CodecError, Packet};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use rustls_pki_types::ServerName;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::error::{Error, Result, Side};

/// A stream that reads nothing and swallows writes, standing in while the
/// real one is being wrapped in TLS.
fn placeholder() -> BoxStream {
    Box::new(tokio::io::join(tokio::io::empty(), tokio::io::sink()))
}

/// A byte stream the router can speak MySQL over.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send + Sync {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Sync + ?Sized> Stream for T {}

/// A boxed [`Stream`]: plain TCP, or TLS over it.
pub type BoxStream = Box<dyn Stream>;

/// Write buffer size at which queued chunks are flushed without waiting for
/// the end of the input that is already buffered.
const FLUSH_AT: usize = 64 * 1024;
/// Read buffer growth step.
const READ_AT_LEAST: usize = 16 * 1024;
/// Read size while nothing is buffered on a client leg: a command is
/// usually small, and an idle session should not hold a large buffer.
const IDLE_READ: usize = 1024;
/// Buffers larger than this are let go once empty, so an idle session
/// costs little memory whatever its last result was.
const KEEP_AT_MOST: usize = 8 * 1024;

/// Bytes of partly received packets that all client legs together may
/// hold (`frontend.max_buffered`): a leg whose read buffer would take more
/// fails with [`Error::ClientBuffersFull`].
#[derive(Debug)]
pub struct Budget {
    used: AtomicUsize,
    limit: usize,
}

impl Budget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Budget {
            used: AtomicUsize::new(0),
            limit,
        }
    }

    /// Bytes held now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    fn take(&self, n: usize) -> bool {
        let before = self.used.fetch_add(n, Ordering::Relaxed);
        if before.saturating_add(n) > self.limit {
            self.used.fetch_sub(n, Ordering::Relaxed);
            return false;
        }
        true
    }

    fn give(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::Relaxed);
    }
}

/// The compressed protocol's state on one leg.
#[derive(Debug)]
struct Compressed {
    codec: CompressedStream,
    /// Frames read and not yet undone.
    raw: BytesMut,
    /// Frames to write.
    out: BytesMut,
}

/// A framed leg of a session.
pub struct PacketIo {
    stream: BoxStream,
    side: Side,
    rbuf: BytesMut,
    wbuf: BytesMut,
    chunks: ChunkDecoder,
    /// Bound on each flush and on the shutdown (`None`: unbounded).
    write_timeout: Option<Duration>,
    /// A write timed out: the peer is not reading, so closing skips the
    /// writes (drop closes the socket).
    write_timed_out: bool,
    /// Bound on each read while part of a packet is buffered (`None`:
    /// unbounded); reads between packets are the caller's to bound.
    read_timeout: Option<Duration>,
    /// Where the read buffer's size is counted, and how much of it is.
    budget: Option<(Arc<Budget>, usize)>,
    /// Whether the stream is TLS.
    pub tls: bool,
    /// The compressed protocol, once negotiated.
    compressed: Option<Compressed>,
}

impl std::fmt::Debug for PacketIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PacketIo")
            .field("side", &self.side)
            .field("tls", &self.tls)
            .field("buffered", &self.rbuf.len())
            .field("compression", &self.compression())
            .finish_non_exhaustive()
    }
}

impl PacketIo {
    /// Frames `stream`; logical packets from it may be up to `max_packet` bytes.
    pub fn new(stream: BoxStream, side: Side, max_packet: usize) -> Self {
        Self {
            stream,
            side,
            rbuf: BytesMut::new(),
            wbuf: BytesMut::new(),
            chunks: ChunkDecoder::new(max_packet),
            write_timeout: None,
            write_timed_out: false,
            read_timeout: None,
            budget: None,
            tls: false,
            compressed: None,
        }
    }

    /// Switches to the compressed protocol (after the handshake's final OK,
    /// which is sent uncompressed), refusing frames of more than
    /// `max_packet` uncompressed bytes.
    pub fn start_compression(&mut self, algorithm: Algorithm, max_packet: usize) {
        let max_frame = max_packet.saturating_add(2 * HEADER_LEN);
        self.compressed = Some(Compressed {
            codec: CompressedStream::new(algorithm, max_frame),
            raw: std::mem::take(&mut self.rbuf),
            out: BytesMut::new(),
        });
    }

    /// The compression in force, if any.
    pub fn compression(&self) -> Option<Algorithm> {
        self.compressed.as_ref().map(|c| c.codec.algorithm())
    }

    /// Reads more into `rbuf`, with room for `at_least` more bytes (the
    /// compressed frames' buffer: up to [`READ_AT_LEAST`] when it is full);
    /// returns how much was added (0: the peer closed). Compressed: reads
    /// frames and adds what they hold.
    async fn fill(&mut self, at_least: usize) -> Result<usize> {
        let side = self.side;
        let Some(c) = self.compressed.as_mut() else {
            self.rbuf.reserve(at_least);
            let n = self.stream.read_buf(&mut self.rbuf).await;
            return n.map_err(|e| io_err(side, e));
        };
        // One frame at a time: the next may belong to the next command,
        // whose sequence ids start over only once it is reached.
        loop {
            let before = self.rbuf.len();
            let decoded = c
                .codec
                .decode(&mut c.raw, &mut self.rbuf)
                .map_err(|e| codec_err(side, e))?;
            if self.rbuf.len() > before {
                return Ok(self.rbuf.len() - before);
            }
            if decoded {
                continue;
            }
            // A frame whose header came has its whole room already
            // (`decode` reserved it): its last bytes are read into it, as a
            // packet's are in `next_chunk`.
            if c.raw.capacity() == c.raw.len() {
                c.raw.reserve(at_least.min(READ_AT_LEAST));
            }
            let n = self.stream.read_buf(&mut c.raw).await;
            if n.map_err(|e| io_err(side, e))? == 0 {
                return Ok(0);
            }
        }
    }

    /// Bytes read and not yet handed out (compressed ones included).
    fn buffered(&self) -> usize {
        self.rbuf.len() + self.compressed.as_ref().map_or(0, |c| c.raw.len())
    }

    /// The sequence id a packet read with wire id `wire` is handed out with.
    fn read_id(&mut self, wire: u8) -> u8 {
        match self.compressed.as_mut() {
            Some(c) => c.codec.next_read_id(),
            None => wire,
        }
    }

    /// Bounds the wait for the rest of a packet once part of it came
    /// (MySQL's `net_read_timeout`), and counts the read buffer, when it
    /// grows past what an idle leg keeps, against `budget`.
    pub fn set_read_limits(&mut self, timeout: Duration, budget: Arc<Budget>) {
        self.read_timeout = Some(timeout);
        self.budget = Some((budget, 0));
    }

    /// Counts the read buffer's size against the budget; fails (and lets
    /// the buffer go) when the budget has no room for it.
    fn account(&mut self) -> Result<()> {
        let Some((budget, charged)) = &mut self.budget else {
            return Ok(());
        };
        let raw = self.compressed.as_ref().map_or(0, |c| c.raw.capacity());
        let cap = self.rbuf.capacity() + raw;
        let now = if cap > KEEP_AT_MOST { cap } else { 0 };
        if now > *charged {
            if !budget.take(now - *charged) {
                self.rbuf = BytesMut::new();
                if let Some(c) = self.compressed.as_mut() {
                    c.raw = BytesMut::new();
                }
                budget.give(*charged);
                *charged = 0;
                return Err(Error::ClientBuffersFull(budget.limit));
            }
        } else {
            budget.give(*charged - now);
        }
        *charged = now;
        Ok(())
    }

    /// Bounds every later flush (and so every write) and the shutdown: a
    /// peer that stops reading fails the write with
    /// [`std::io::ErrorKind::TimedOut`] instead of blocking forever.
    pub fn set_write_timeout(&mut self, timeout: Option<Duration>) {
        self.write_timeout = timeout;
    }

    fn io_err(&self, e: std::io::Error) -> Error {
        io_err(self.side, e)
    }

    fn codec_err(&self, e: CodecError) -> Error {
        codec_err(self.side, e)
    }

    /// Server side of the TLS upgrade after an SSLRequest. Only in the
    /// handshake phase, where nothing was read ahead.
    pub async fn accept_tls(&mut self, acceptor: &TlsAcceptor) -> Result<()> {
        let plain = std::mem::replace(&mut self.stream, placeholder());
        let tls = acceptor.accept(plain).await.map_err(Error::ClientTls)?;
        self.stream = Box::new(tls);
        self.tls = true;
        Ok(())
    }

    /// Client side of the TLS upgrade after our SSLRequest.
    pub async fn connect_tls(
        &mut self,
        connector: &TlsConnector,
        name: ServerName<'static>,
    ) -> Result<()> {
        let plain = std::mem::replace(&mut self.stream, placeholder());
        let tls = connector
            .connect(name, plain)
            .await
            .map_err(Error::BackendTls)?;
        self.stream = Box::new(tls);
        self.tls = true;
        Ok(())
    }

    /// Reads one whole (single-chunk) packet of at most `max` bytes. With
    /// nothing buffered it uses exact reads, so nothing is read ahead (the
    /// handshake phase, before a TLS switch); otherwise it continues from
    /// the buffer (a pipelining client during COM_CHANGE_USER).
    pub async fn read_packet(&mut self, max: usize) -> Result<Packet> {
        if !self.rbuf.is_empty() || self.compressed.is_some() {
            return self.read_buffered_packet(max).await;
        }
        let mut header = [0u8; HEADER_LEN];
        self.stream
            .read_exact(&mut header)
            .await
            .map_err(|e| self.io_err(e))?;
        let (len, seq) = parse_header(header);
        if len > max || len >= MAX_CHUNK {
            return Err(self.codec_err(CodecError::TooLarge { len, max }));
        }
        let mut payload = vec![0u8; len];
        self.stream
            .read_exact(&mut payload)
            .await
            .map_err(|e| self.io_err(e))?;
        Ok(Packet::new(seq, payload))
    }

    async fn read_buffered_packet(&mut self, max: usize) -> Result<Packet> {
        loop {
            if let Some(h) = self.rbuf.get(..HEADER_LEN) {
                let (len, seq) = parse_header([h[0], h[1], h[2], h[3]]);
                if len > max || len >= MAX_CHUNK {
                    return Err(self.codec_err(CodecError::TooLarge { len, max }));
                }
                if self.rbuf.len() >= HEADER_LEN + len {
                    self.rbuf.advance(HEADER_LEN);
                    let payload = self.rbuf.split_to(len).freeze();
                    let seq = self.read_id(seq);
                    return Ok(Packet::new(seq, payload));
                }
            }
            if self.fill(READ_AT_LEAST).await? == 0 {
                let buffered = self.buffered();
                return Err(self.codec_err(CodecError::UnexpectedEof { buffered }));
            }
        }
    }

    /// Writes one packet and flushes.
    pub async fn write_packet(&mut self, seq: u8, payload: &[u8]) -> Result<()> {
        self.queue_packet(seq, payload);
        self.flush().await
    }

    /// Command phase: the next chunk, reading as needed; `None` when the
    /// peer closed the connection between packets.
    pub async fn next_chunk(&mut self) -> Result<Option<Chunk>> {
        loop {
            if let Some(mut chunk) = self
                .chunks
                .decode(&mut self.rbuf)
                .map_err(|e| self.codec_err(e))?
            {
                chunk.seq = self.read_id(chunk.seq);
                return Ok(Some(chunk));
            }
            let partial = self.buffered() != 0 || self.chunks.mid_packet();
            let at_least = match (self.side, partial) {
                (Side::Client, false) => IDLE_READ,
                _ => READ_AT_LEAST,
            };
            // A chunk whose header came is given its whole room at once:
            // counted once, and never doubled by growing step by step. Once
            // it has that room, its last bytes are read into it: asking for
            // more would grow the buffer (to twice a 16 MiB chunk) and
            // charge the budget for the growth.
            let room = match self.rbuf.get(..HEADER_LEN) {
                Some(h) => {
                    let (len, _) = parse_header([h[0], h[1], h[2], h[3]]);
                    (HEADER_LEN + len).saturating_sub(self.rbuf.len())
                }
                None => 0,
            };
            let spare = self.rbuf.capacity() - self.rbuf.len();
            let want = if room > 0 && spare >= room {
                room
            } else {
                room.max(at_least)
            };
            self.rbuf.reserve(want);
            self.account()?;
            let n = match self.read_timeout.filter(|_| partial) {
                Some(limit) => tokio::time::timeout(limit, self.fill(want))
                    .await
                    .map_err(|_| Error::ClientReadTimeout("the rest of a packet"))??,
                None => self.fill(want).await?,
            };
            self.account()?;
            if n == 0 {
                if self.buffered() == 0 && !self.chunks.mid_packet() {
                    return Ok(None);
                }
                let buffered = self.buffered();
                return Err(self.codec_err(CodecError::UnexpectedEof { buffered }));
            }
        }
    }

    /// Whether an idle connection is still quiet and open: a backend
    /// connection waiting in a pool must have nothing to say, so anything
    /// readable (a server's ERR 4031 before it closed, the close itself)
    /// means it cannot be lent. Never waits: the read is polled once.
    pub fn quiet(&mut self) -> bool {
        use std::future::Future;
        use std::task::{Context, Poll, Waker};
        if self.buffered() != 0 {
            return false;
        }
        let buf = match self.compressed.as_mut() {
            Some(c) => &mut c.raw,
            None => &mut self.rbuf,
        };
        buf.reserve(64);
        let mut read = std::pin::pin!(self.stream.read_buf(buf));
        let mut cx = Context::from_waker(Waker::noop());
        matches!(read.as_mut().poll(&mut cx), Poll::Pending)
    }

    /// Whether the peer closed the connection, as far as can be told
    /// without waiting: the read is polled once, and what arrives is kept
    /// for the next [`PacketIo::next_chunk`] (a client may send its next
    /// command before the answer to this one).
    pub fn peer_closed(&mut self) -> bool {
        use std::future::Future;
        use std::task::{Context, Poll, Waker};
        let buf = match self.compressed.as_mut() {
            Some(c) => &mut c.raw,
            None => &mut self.rbuf,
        };
        buf.reserve(64);
        let mut read = std::pin::pin!(self.stream.read_buf(buf));
        let mut cx = Context::from_waker(Waker::noop());
        matches!(read.as_mut().poll(&mut cx), Poll::Ready(Ok(0) | Err(_)))
    }

    /// Lets go of buffers that grew for a large packet, once they are
    /// empty (between commands).
    pub fn shrink(&mut self) {
        if self.rbuf.is_empty() && self.rbuf.capacity() > KEEP_AT_MOST {
            self.rbuf = BytesMut::new();
        }
        if self.wbuf.is_empty() && self.wbuf.capacity() > KEEP_AT_MOST {
            self.wbuf = BytesMut::new();
        }
        if let Some(c) = self.compressed.as_mut() {
            if c.raw.is_empty() && c.raw.capacity() > KEEP_AT_MOST {
                c.raw = BytesMut::new();
            }
            if c.out.is_empty() && c.out.capacity() > KEEP_AT_MOST {
                c.out = BytesMut::new();
            }
        }
        // Only gives back (nothing grew since the last read).
        let _ = self.account();
    }

    /// Arms (`Some(0)` at a command start) or disarms sequence checking of
    /// incoming chunks. Compressed, the frames' ids are checked instead (as
    /// MySQL does), and `Some(0)` starts the counters of a new command.
    pub fn expect_sequence(&mut self, next: Option<u8>) {
        match self.compressed.as_mut() {
            Some(c) => {
                if next == Some(0) {
                    c.codec.reset();
                }
                c.codec.check_sequence(next.is_some());
            }
            None => self.chunks.set_sequence(next),
        }
    }

    /// Whether a whole chunk is already buffered (so reading it will not wait).
    pub fn has_buffered_chunk(&self) -> bool {
        match self.rbuf.get(..HEADER_LEN) {
            Some(h) => {
                let (len, _) = parse_header([h[0], h[1], h[2], h[3]]);
                self.rbuf.len() >= HEADER_LEN + len
            }
            None => false,
        }
    }

    /// Queues a chunk for writing, unchanged (compressed: the id is set
    /// when it is flushed).
    pub fn queue_chunk(&mut self, chunk: &Chunk) {
        match self.compressed.as_mut() {
            Some(c) => {
                c.codec.note_write(chunk.seq, self.side == Side::Backend);
                chunk.encode(&mut self.wbuf);
            }
            None => chunk.encode(&mut self.wbuf),
        }
    }

    /// Queues a logical packet starting at `seq`; returns the next sequence id.
    pub fn queue_packet(&mut self, seq: u8, payload: &[u8]) -> u8 {
        let commands = self.side == Side::Backend;
        let next = encode_packet(seq, payload, &mut self.wbuf);
        if let Some(c) = self.compressed.as_mut() {
            // One note per chunk, as encode_packet numbered them.
            let mut id = seq;
            while id != next {
                c.codec.note_write(id, commands);
                id = id.wrapping_add(1);
            }
        }
        next
    }

    /// Whether enough is queued that it should be written now.
    pub fn should_flush(&self) -> bool {
        self.wbuf.len() >= FLUSH_AT
    }

    /// Writes everything queued, within the write timeout if one is set.
    pub async fn flush(&mut self) -> Result<()> {
        let Some(limit) = self.write_timeout else {
            return self.flush_unbounded().await;
        };
        match tokio::time::timeout(limit, self.flush_unbounded()).await {
            Ok(r) => r,
            Err(_) => {
                self.wbuf.clear();
                if let Some(c) = self.compressed.as_mut() {
                    c.out.clear();
                }
                self.write_timed_out = true;
                let msg = format!("write timed out after {limit:?} (peer not reading)");
                Err(self.io_err(std::io::Error::new(std::io::ErrorKind::TimedOut, msg)))
            }
        }
    }

    async fn flush_unbounded(&mut self) -> Result<()> {
        let side = self.side;
        let out = match self.compressed.as_mut() {
            Some(c) => {
                if !self.wbuf.is_empty() {
                    c.codec.encode_packets(&mut self.wbuf, &mut c.out);
                    self.wbuf.clear();
                }
                &mut c.out
            }
            None => &mut self.wbuf,
        };
        while out.has_remaining() {
            let n = self.stream.write(out).await.map_err(|e| io_err(side, e))?;
            if n == 0 {
                let e = std::io::Error::from(std::io::ErrorKind::WriteZero);
                return Err(io_err(side, e));
            }
            out.advance(n);
        }
        self.stream.flush().await.map_err(|e| io_err(side, e))
    }

    /// Closes the write side (TLS close_notify, TCP FIN), ignoring errors;
    /// within the write timeout if one is set.
    pub async fn shutdown(&mut self) {
        if self.write_timed_out {
            return;
        }
        let limit = self.write_timeout;
        let close = async {
            let _ = self.flush_unbounded().await;
            // FIN (and TLS's close_notify) now: closing a socket with unread
            // input sends RST, which can drop the ERR just written.
            let _ = self.stream.shutdown().await;
        };
        let timed_out = match limit {
            Some(limit) => tokio::time::timeout(limit, close).await.is_err(),
            None => {
                close.await;
                false
            }
        };
        if timed_out {
            self.wbuf.clear();
            if let Some(c) = self.compressed.as_mut() {
                c.out.clear();
            }
            self.write_timed_out = true;
        }
    }
}

impl Drop for PacketIo {
    fn drop(&mut self) {
        if let Some((budget, charged)) = &self.budget {
            budget.give(*charged);
        }
    }
}

fn io_err(side: Side, e: std::io::Error) -> Error {
    match side {
        Side::Backend => Error::BackendIo(e),
        _ => Error::ClientIo(e),
    }
}

fn codec_err(side: Side, e: CodecError) -> Error {
    match side {
        Side::Backend => Error::BackendProtocol(e),
        _ => Error::ClientProtocol(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_rest_of_a_packet_must_come_within_the_read_timeout() {
        use tokio::io::AsyncWriteExt;
        let (ours, mut peer) = tokio::io::duplex(1 << 16);
        let mut io = PacketIo::new(Box::new(ours), Side::Client, 1 << 20);
        let budget = Arc::new(Budget::new(1 << 20));
        io.set_read_limits(Duration::from_secs(30), budget);
        // Nothing sent: the wait between packets is not bounded here.
        let idle = tokio::time::timeout(Duration::from_secs(3600), io.next_chunk()).await;
        assert!(idle.is_err(), "{idle:?}");
        // Half a header, then silence: ERR 1159 after net_read_timeout.
        peer.write_all(&[10, 0]).await.unwrap();
        let started = tokio::time::Instant::now();
        let e = io.next_chunk().await.unwrap_err();
        assert!(matches!(e, Error::ClientReadTimeout(_)), "{e:?}");
        assert_eq!(started.elapsed(), Duration::from_secs(30));
    }

    #[tokio::test]
    async fn partly_received_packets_are_bounded_across_legs() {
        use tokio::io::AsyncWriteExt;
        // Room for two announced 1 MiB packets, not three.
        let budget = Arc::new(Budget::new(5 << 19));
        let mut legs = Vec::new();
        let mut failed = 0;
        for _ in 0..4 {
            let (ours, mut peer) = tokio::io::duplex(1 << 20);
            let mut io = PacketIo::new(Box::new(ours), Side::Client, 1 << 24);
            io.set_read_limits(Duration::from_secs(30), budget.clone());
            // The header of a 1 MiB packet and 400 KiB of it.
            let mut head = vec![0x00, 0x00, 0x10, 0x00];
            head.resize(4 + 400 * 1024, b'x');
            peer.write_all(&head).await.unwrap();
            let got = tokio::time::timeout(Duration::from_millis(200), io.next_chunk()).await;
            match got {
                Ok(Err(Error::ClientBuffersFull(_))) => failed += 1,
                Err(_) => {}
                other => panic!("{other:?}"),
            }
            legs.push((io, peer));
        }
        assert_eq!(failed, 2);
        assert!(budget.used() <= 5 << 19, "{}", budget.used());
        drop(legs);
        assert_eq!(budget.used(), 0, "legs give back what they held");
    }

    #[tokio::test]
    async fn the_end_of_a_large_packet_is_read_within_its_room() {
        use tokio::io::AsyncWriteExt;
        // Room for one 1 MiB packet and a little more, not for two.
        let budget = Arc::new(Budget::new((1 << 20) + (64 << 10)));
        let (ours, mut peer) = tokio::io::duplex(2 << 20);
        let mut io = PacketIo::new(Box::new(ours), Side::Client, 1 << 24);
        io.set_read_limits(Duration::from_secs(30), budget.clone());
        // A 1 MiB packet whose last 8 KiB come later: the read that
        // waits for them must not ask for more room than the packet's.
        let mut packet = vec![0x00, 0x00, 0x10, 0x00];
        packet.resize(4 + (1 << 20), b'x');
        let (head, tail) = packet.split_at(packet.len() - 8 * 1024);
        peer.write_all(head).await.unwrap();
        let got = tokio::time::timeout(Duration::from_millis(200), io.next_chunk()).await;
        assert!(got.is_err(), "the packet is not whole yet: {got:?}");
        peer.write_all(tail).await.unwrap();
        let chunk = io.next_chunk().await.unwrap().unwrap();
        assert_eq!(chunk.payload.len(), 1 << 20);
        assert!(budget.used() <= (1 << 20) + 4, "{}", budget.used());
    }

    #[tokio::test]
    async fn the_end_of_a_large_compressed_frame_is_read_within_its_room() {
        use causeway_wire::compress::Algorithm;
        use tokio::io::AsyncWriteExt;
        // Room for a 1 MiB frame, or the packet it carries, and a little
        // more: not for the frame's buffer grown to twice its size.
        let budget = Arc::new(Budget::new((1 << 20) + (512 << 10)));
        let (ours, mut peer) = tokio::io::duplex(2 << 20);
        let mut io = PacketIo::new(Box::new(ours), Side::Client, 1 << 24);
        io.start_compression(Algorithm::Zlib, 1 << 24);
        io.set_read_limits(Duration::from_secs(30), budget.clone());
        // One frame sent as is (uncompressed length 0) holding a 1 MiB
        // packet; its last 512 bytes come later.
        let len = 4 + (1 << 20);
        let mut frame = vec![len as u8, (len >> 8) as u8, (len >> 16) as u8, 0, 0, 0, 0];
        frame.extend_from_slice(&[0x00, 0x00, 0x10, 0x00]);
        frame.resize(7 + len, b'x');
        let (head, tail) = frame.split_at(frame.len() - 512);
        peer.write_all(head).await.unwrap();
        let got = tokio::time::timeout(Duration::from_millis(200), io.next_chunk()).await;
        assert!(got.is_err(), "the frame is not whole yet: {got:?}");
        peer.write_all(tail).await.unwrap();
        let chunk = io.next_chunk().await.unwrap().unwrap();
        assert_eq!(chunk.payload.len(), 1 << 20);
    }

    #[tokio::test]
    async fn a_peer_that_stops_reading_times_the_write_out() {
        // The peer end is kept open but never read.
        let (ours, _peer) = tokio::io::duplex(1024);
        let mut io = PacketIo::new(Box::new(ours), Side::Client, 1 << 20);
        io.set_write_timeout(Some(Duration::from_millis(50)));
        io.queue_packet(0, &vec![0u8; 64 * 1024]);
        let started = std::time::Instant::now();
        let e = io.flush().await.unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(5));
        match e {
            Error::ClientIo(e) => assert_eq!(e.kind(), std::io::ErrorKind::TimedOut),
            other => panic!("{other:?}"),
        }
        // Closing does not wait for the peer again.
        tokio::time::timeout(Duration::from_secs(1), io.shutdown())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn compressed_legs_carry_packets_with_plain_ids() {
        use causeway_wire::compress::Algorithm;
        for algorithm in [Algorithm::Zlib, Algorithm::Zstd(3)] {
            let (a, b) = tokio::io::duplex(1 << 20);
            let mut router = PacketIo::new(Box::new(a), Side::Backend, usize::MAX);
            let mut server = PacketIo::new(Box::new(b), Side::Client, 64 << 20);
            router.start_compression(algorithm, 64 << 20);
            server.start_compression(algorithm, 64 << 20);
            let big: Vec<u8> = (0..(17 << 20)).map(|i: usize| (i % 91) as u8).collect();
            let sender = tokio::spawn(async move {
                router.write_packet(0, b"\x03SELECT 1").await.unwrap();
                let mut got = Vec::new();
                for _ in 0..3 {
                    let c = router.next_chunk().await.unwrap().unwrap();
                    got.push((c.seq, c.payload.len()));
                }
                router.write_packet(0, &big).await.unwrap();
                got
            });
            server.expect_sequence(Some(0));
            let c = server.next_chunk().await.unwrap().unwrap();
            assert_eq!((c.seq, &c.payload[..]), (0, &b"\x03SELECT 1"[..]));
            for seq in 1..=3u8 {
                server.queue_packet(seq, &[seq; 100]);
            }
            server.flush().await.unwrap();
            server.expect_sequence(Some(0));
            let mut total = 0;
            let mut ids = Vec::new();
            while total < 17 << 20 {
                let c = server.next_chunk().await.unwrap().unwrap();
                total += c.payload.len();
                ids.push(c.seq);
            }
            assert_eq!(ids, vec![0, 1]);
            let got = sender.await.unwrap();
            assert_eq!(got, vec![(1, 100), (2, 100), (3, 100)]);
        }
    }

    #[tokio::test]
    async fn shutdown_is_bounded_too() {
        let (ours, _peer) = tokio::io::duplex(1024);
        let mut io = PacketIo::new(Box::new(ours), Side::Backend, 1 << 20);
        io.set_write_timeout(Some(Duration::from_millis(50)));
        io.queue_packet(0, &vec![0u8; 64 * 1024]);
        tokio::time::timeout(Duration::from_secs(5), io.shutdown())
            .await
            .unwrap();
    }
}
