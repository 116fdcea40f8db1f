//! One small text-protocol query on a logged-in backend connection, read
//! whole: for the router's own statements (health checks), never for
//! client traffic, which is streamed.
//!
//! ```text
//! COM_QUERY --> Start
//! Start   --OK------------------------------> done (no columns)
//! Start   --ERR-----------------------------> Error::BackendRefused (connection still usable)
//! Start   --column count n------------------> Columns(n)
//! Columns --n column definitions------------> [EOF, unless DEPRECATE_EOF] --> Rows
//! Rows    --text row------------------------> Rows
//! Rows    --EOF / OK(0xFE)------------------> done
//! Rows    --ERR-----------------------------> Error::BackendRefused
//! ```
//!
//! Decoding is a pure state machine ([`ResultReader`]) fed one packet
//! payload at a time; [`simple_query`] is the I/O around it. Results are
//! bounded ([`MAX_ROWS`], [`MAX_RESULT_BYTES`]). After any error other than
//! [`Error::BackendRefused`] the connection is in an unknown state and must
//! be dropped.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use causeway_wire::buf::Reader;
use causeway_wire::command::ComQuery;
use causeway_wire::generic::{is_eof, is_err, EOF_HEADER, LOCAL_INFILE_HEADER, OK_HEADER};
use causeway_wire::{CapabilityFlags, CodecError, ErrPacket, OkPacket, StatusFlags};

use crate::error::{Error, Result};
use crate::io::PacketIo;

/// Most rows a [`simple_query`] result may have.
pub const MAX_ROWS: usize = 1000;
/// Most bytes (packet payloads, summed) a [`simple_query`] result may have.
pub const MAX_RESULT_BYTES: usize = 1 << 20;

/// A whole text-protocol result.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryResult {
    /// Column names (the `AS` names), in order; empty for an OK-only result.
    pub columns: Vec<String>,
    /// Column types (`MYSQL_TYPE_*`), in the same order.
    pub types: Vec<u8>,
    /// Rows; SQL NULL is `None`. Text that is not UTF-8 is decoded lossily.
    pub rows: Vec<Vec<Option<String>>>,
}

impl QueryResult {
    /// The value of `column` (ASCII case-insensitive, as MySQL compares
    /// column names) in row `row`; `None` when there is no such row or
    /// column, or the value is NULL.
    pub fn get(&self, row: usize, column: &str) -> Option<&str> {
        let i = self.column(column)?;
        self.rows.get(row)?.get(i)?.as_deref()
    }

    /// The index of `column` (ASCII case-insensitive).
    pub fn column(&self, column: &str) -> Option<usize> {
        self.columns
            .iter()
            .position(|c| c.eq_ignore_ascii_case(column))
    }
}

/// Where a [`ResultReader`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for OK, ERR or the column count.
    Start,
    /// Reading column definitions; this many are still to come.
    Columns(usize),
    /// All definitions read; the EOF that follows them (no DEPRECATE_EOF).
    ColumnsEof,
    /// Reading rows until EOF / OK.
    Rows,
}

/// Decodes a text-protocol result one packet payload at a time (pure).
#[derive(Debug)]
pub struct ResultReader {
    caps: CapabilityFlags,
    phase: Phase,
    bytes: usize,
    max_bytes: usize,
    result: QueryResult,
}

impl ResultReader {
    /// A reader for a connection that negotiated `caps`.
    pub fn new(caps: CapabilityFlags) -> Self {
        Self::up_to(caps, MAX_RESULT_BYTES)
    }

    /// A reader that accepts up to `max_bytes` of payload.
    pub fn up_to(caps: CapabilityFlags, max_bytes: usize) -> Self {
        Self {
            caps,
            phase: Phase::Start,
            bytes: 0,
            max_bytes,
            result: QueryResult::default(),
        }
    }

    /// Feeds the next packet's payload; returns the result once it is
    /// complete.
    pub fn feed(&mut self, payload: &Bytes) -> Result<Option<QueryResult>> {
        self.bytes = self.bytes.saturating_add(payload.len());
        if self.bytes > self.max_bytes {
            return Err(Error::BackendUnsupported(
                "query results over the router's bound",
            ));
        }
        if is_err(payload) {
            let err = ErrPacket::decode(payload).map_err(Error::BackendProtocol)?;
            return Err(Error::BackendRefused(err));
        }
        match self.phase {
            Phase::Start => self.start(payload),
            Phase::Columns(left) => {
                let (name, kind) = column_def(payload).map_err(Error::BackendProtocol)?;
                self.result.columns.push(name);
                self.result.types.push(kind);
                self.phase = match left.saturating_sub(1) {
                    0 if self.caps.contains(CapabilityFlags::DEPRECATE_EOF) => Phase::Rows,
                    0 => Phase::ColumnsEof,
                    n => Phase::Columns(n),
                };
                Ok(None)
            }
            Phase::ColumnsEof => {
                if !is_eof(payload) {
                    return Err(protocol("expected EOF after column definitions"));
                }
                self.phase = Phase::Rows;
                Ok(None)
            }
            Phase::Rows if payload.first() == Some(&EOF_HEADER) => {
                // Rows are bounded far below 16 MiB, so a 0xFE first byte
                // is the terminator, never a row whose first value is huge.
                let status = if self.caps.contains(CapabilityFlags::DEPRECATE_EOF) {
                    OkPacket::decode(payload, self.caps)
                        .map_err(Error::BackendProtocol)?
                        .status
                } else {
                    causeway_wire::generic::eof_status(payload).map_err(Error::BackendProtocol)?
                };
                self.finish(status)
            }
            Phase::Rows => {
                if self.result.rows.len() >= MAX_ROWS {
                    return Err(Error::BackendUnsupported("query results over 1000 rows"));
                }
                let row =
                    text_row(payload, self.result.columns.len()).map_err(Error::BackendProtocol)?;
                self.result.rows.push(row);
                Ok(None)
            }
        }
    }

    fn start(&mut self, payload: &Bytes) -> Result<Option<QueryResult>> {
        match payload.first() {
            Some(&OK_HEADER) => {
                let ok = OkPacket::decode(payload, self.caps).map_err(Error::BackendProtocol)?;
                self.finish(ok.status)
            }
            Some(&LOCAL_INFILE_HEADER) => Err(Error::BackendUnsupported("LOAD DATA LOCAL")),
            _ => {
                let mut r = Reader::new(payload);
                let count = r
                    .lenenc_int("column count")
                    .map_err(Error::BackendProtocol)?;
                // A column needs at least a few bytes: a count above what
                // the byte bound allows is garbage.
                let count = usize::try_from(count)
                    .ok()
                    .filter(|&n| n > 0 && n <= MAX_RESULT_BYTES)
                    .ok_or_else(|| protocol("bad column count"))?;
                self.phase = Phase::Columns(count);
                Ok(None)
            }
        }
    }

    fn finish(&mut self, status: StatusFlags) -> Result<Option<QueryResult>> {
        if status.contains(StatusFlags::MORE_RESULTS_EXISTS) {
            return Err(Error::BackendUnsupported("several result sets"));
        }
        Ok(Some(std::mem::take(&mut self.result)))
    }
}

fn protocol(what: &'static str) -> Error {
    Error::BackendProtocol(CodecError::Protocol(what))
}

/// The name and type of a column definition: catalog, schema, table,
/// org_table, name, org_name (length-encoded strings), the fixed fields'
/// length, character set (2), length (4), type (1), ...
fn column_def(payload: &[u8]) -> Result<(String, u8), CodecError> {
    let mut r = Reader::new(payload);
    for what in ["catalog", "schema", "table", "org_table"] {
        r.lenenc_bytes(what)?;
    }
    let name = String::from_utf8_lossy(r.lenenc_bytes("column name")?).into_owned();
    r.lenenc_bytes("column org_name")?;
    r.lenenc_int("fixed fields length")?;
    r.u16("column character set")?;
    r.u32("column length")?;
    let kind = r.u8("column type")?;
    Ok((name, kind))
}

/// A text row of `columns` values: each a length-encoded string or 0xFB (NULL).
fn text_row(payload: &[u8], columns: usize) -> Result<Vec<Option<String>>, CodecError> {
    let mut r = Reader::new(payload);
    let mut row = Vec::with_capacity(columns.min(payload.len()));
    for _ in 0..columns {
        if r.peek() == Some(0xfb) {
            r.u8("null")?;
            row.push(None);
        } else {
            let value = r.lenenc_bytes("row value")?;
            row.push(Some(String::from_utf8_lossy(value).into_owned()));
        }
    }
    if !r.is_empty() {
        return Err(CodecError::TrailingBytes {
            what: "text row",
            count: r.remaining(),
        });
    }
    Ok(row)
}

/// Runs `sql` as one COM_QUERY on a logged-in connection that negotiated
/// `caps` and reads its whole result, all within `timeout`. An ERR from the
/// server is [`Error::BackendRefused`]; a result over [`MAX_ROWS`] rows or
/// [`MAX_RESULT_BYTES`] bytes is refused with [`Error::BackendUnsupported`].
pub async fn simple_query(
    io: &mut PacketIo,
    caps: CapabilityFlags,
    sql: &str,
    timeout: Duration,
) -> Result<QueryResult> {
    simple_query_up_to(io, caps, sql, timeout, MAX_RESULT_BYTES).await
}

/// [`simple_query`] with a result of up to `max_bytes`.
pub async fn simple_query_up_to(
    io: &mut PacketIo,
    caps: CapabilityFlags,
    sql: &str,
    timeout: Duration,
    max_bytes: usize,
) -> Result<QueryResult> {
    let run = async {
        let mut buf = BytesMut::new();
        ComQuery::new(Bytes::copy_from_slice(sql.as_bytes()))
            .encode(caps, &mut buf)
            .map_err(Error::BackendProtocol)?;
        io.write_packet(0, &buf).await?;
        let mut reader = ResultReader::up_to(caps, max_bytes);
        let mut seq = 1u8;
        loop {
            let packet = io.read_packet(max_bytes).await?;
            if packet.seq != seq {
                return Err(Error::BackendProtocol(CodecError::OutOfSequence {
                    expected: seq,
                    got: packet.seq,
                }));
            }
            seq = seq.wrapping_add(1);
            if let Some(result) = reader.feed(&packet.payload)? {
                return Ok(result);
            }
        }
    };
    tokio::time::timeout(timeout, run)
        .await
        .map_err(|_| Error::backend_timeout("query", timeout))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use causeway_wire::buf::put_lenenc_bytes;
    use causeway_wire::packet::encode_packet;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use crate::error::Side;

    const BASE: CapabilityFlags = CapabilityFlags::PROTOCOL_41.union(CapabilityFlags::TRANSACTIONS);

    fn coldef(name: &str) -> Vec<u8> {
        let mut b = BytesMut::new();
        for s in ["def", "", "", "", name, ""] {
            put_lenenc_bytes(&mut b, s.as_bytes());
        }
        // fixed-length fields: 0x0c, charset, length, type, flags, decimals, filler
        b.extend_from_slice(&[0x0c, 0xff, 0, 0, 0, 0, 0, 0xfd, 0, 0, 0x1f, 0, 0]);
        b.to_vec()
    }

    fn row(values: &[Option<&str>]) -> Vec<u8> {
        let mut b = BytesMut::new();
        for v in values {
            match v {
                Some(s) => put_lenenc_bytes(&mut b, s.as_bytes()),
                None => b.extend_from_slice(&[0xfb]),
            }
        }
        b.to_vec()
    }

    const EOF: &[u8] = &[0xfe, 0, 0, 0x02, 0];
    const OK_EOF: &[u8] = &[0xfe, 0, 0, 0x02, 0, 0, 0];

    /// The server's packets for a two-column result with a NULL.
    fn two_rows(deprecate_eof: bool) -> Vec<Vec<u8>> {
        let mut p = vec![vec![2], coldef("Replica_IO_Running"), coldef("Lag")];
        if !deprecate_eof {
            p.push(EOF.to_vec());
        }
        p.push(row(&[Some("Yes"), Some("3")]));
        p.push(row(&[Some("No"), None]));
        p.push(if deprecate_eof { OK_EOF } else { EOF }.to_vec());
        p
    }

    /// Runs `simple_query` against a fake server that checks the COM_QUERY
    /// and answers with `packets`.
    async fn run(caps: CapabilityFlags, packets: Vec<Vec<u8>>) -> Result<QueryResult> {
        let (ours, mut server) = tokio::io::duplex(1 << 16);
        let mut io = PacketIo::new(Box::new(ours), Side::Backend, usize::MAX);
        let fake = tokio::spawn(async move {
            let mut header = [0u8; 4];
            server.read_exact(&mut header).await.unwrap();
            let mut body = vec![0u8; usize::from(header[0])];
            server.read_exact(&mut body).await.unwrap();
            assert_eq!(header[3], 0);
            assert_eq!(&body[..], b"\x03SHOW X");
            let mut out = BytesMut::new();
            for (i, p) in packets.iter().enumerate() {
                encode_packet(i as u8 + 1, p, &mut out);
            }
            server.write_all(&out).await.unwrap();
            server
        });
        let got = simple_query(&mut io, caps, "SHOW X", Duration::from_secs(5)).await;
        drop(fake.await.unwrap());
        got
    }

    #[tokio::test]
    async fn rows_with_null_with_and_without_deprecate_eof() {
        for deprecate in [false, true] {
            let mut caps = BASE;
            caps.set(CapabilityFlags::DEPRECATE_EOF, deprecate);
            let r = run(caps, two_rows(deprecate)).await.unwrap();
            assert_eq!(r.columns, ["Replica_IO_Running", "Lag"]);
            assert_eq!(
                r.rows,
                vec![
                    vec![Some("Yes".to_string()), Some("3".to_string())],
                    vec![Some("No".to_string()), None],
                ]
            );
            assert_eq!(r.get(0, "replica_io_running"), Some("Yes"));
            assert_eq!(r.get(1, "Lag"), None);
            assert_eq!(r.get(2, "Lag"), None);
            assert_eq!(r.get(0, "Nope"), None);
        }
    }

    #[tokio::test]
    async fn ok_only_and_empty_results() {
        let r = run(BASE, vec![vec![0, 0, 0, 2, 0, 0, 0]]).await.unwrap();
        assert_eq!(r, QueryResult::default());
        // A result set without rows keeps its columns.
        let caps = BASE | CapabilityFlags::DEPRECATE_EOF;
        let r = run(caps, vec![vec![1], coldef("a"), OK_EOF.to_vec()])
            .await
            .unwrap();
        assert_eq!(r.columns, ["a"]);
        assert!(r.rows.is_empty());
    }

    #[tokio::test]
    async fn err_is_backend_refused() {
        let mut err = vec![0xff, 0xcb, 0x04, b'#'];
        err.extend_from_slice(b"42000Access denied; you need the REPLICATION CLIENT privilege");
        match run(BASE, vec![err]).await {
            Err(Error::BackendRefused(e)) => assert_eq!(e.code, 1227),
            other => panic!("{other:?}"),
        }
        // An ERR in the middle of the rows too.
        let caps = BASE | CapabilityFlags::DEPRECATE_EOF;
        let mid = vec![
            vec![1],
            coldef("a"),
            row(&[Some("1")]),
            b"\xff\x15\x04#HY000boom".to_vec(),
        ];
        assert!(matches!(
            run(caps, mid).await,
            Err(Error::BackendRefused(_))
        ));
    }

    #[tokio::test]
    async fn a_silent_server_times_out() {
        let (ours, _server) = tokio::io::duplex(1 << 16);
        let mut io = PacketIo::new(Box::new(ours), Side::Backend, usize::MAX);
        let limit = Duration::from_millis(20);
        match simple_query(&mut io, BASE, "SELECT 1", limit).await {
            Err(Error::BackendIo(e)) => assert_eq!(e.kind(), std::io::ErrorKind::TimedOut),
            other => panic!("{other:?}"),
        }
    }

    fn feed_all(caps: CapabilityFlags, packets: &[Vec<u8>]) -> Result<Option<QueryResult>> {
        let mut reader = ResultReader::new(caps);
        for p in packets {
            if let Some(r) = reader.feed(&Bytes::copy_from_slice(p))? {
                return Ok(Some(r));
            }
        }
        Ok(None)
    }

    #[test]
    fn results_are_bounded() {
        let mut packets = vec![vec![1], coldef("a"), EOF.to_vec()];
        packets.extend(std::iter::repeat_n(row(&[Some("x")]), MAX_ROWS + 1));
        match feed_all(BASE, &packets) {
            Err(Error::BackendUnsupported(what)) => assert!(what.contains("1000 rows")),
            other => panic!("{other:?}"),
        }
        let big = row(&[Some(&"x".repeat(300 * 1024))]);
        let mut packets = vec![vec![1], coldef("a"), EOF.to_vec()];
        packets.extend(std::iter::repeat_n(big, 4));
        match feed_all(BASE, &packets) {
            Err(Error::BackendUnsupported(what)) => assert!(what.contains("bound")),
            other => panic!("{other:?}"),
        }
        // A reader with a larger bound takes the same result.
        let mut r = ResultReader::up_to(BASE, 2 << 20);
        let mut done = None;
        for p in packets.iter().chain([&EOF.to_vec()]) {
            done = r.feed(&Bytes::copy_from_slice(p)).unwrap();
        }
        assert_eq!(done.unwrap().rows.len(), 4);
    }

    #[test]
    fn malformed_results_are_errors_not_panics() {
        let caps = BASE | CapabilityFlags::DEPRECATE_EOF;
        for packets in [
            vec![vec![]],
            vec![vec![0]],
            vec![vec![0xfb, b'f']],
            vec![vec![0xfc, 0xff]],
            vec![vec![1], vec![3, b'd']],
            vec![vec![1], coldef("a"), vec![2, b'x']],
            vec![vec![1], coldef("a"), row(&[Some("1"), Some("2")])],
            // Several result sets (MORE_RESULTS_EXISTS).
            vec![vec![1], coldef("a"), vec![0xfe, 0, 0, 0x0a, 0, 0, 0]],
        ] {
            assert!(feed_all(caps, &packets).is_err(), "{packets:?}");
        }
        // Without DEPRECATE_EOF the definitions must end with an EOF.
        let packets = [vec![1], coldef("a"), row(&[Some("1")])];
        assert!(feed_all(BASE, &packets).is_err());
    }

    #[test]
    fn non_utf8_is_lossy() {
        let packets = [
            vec![1],
            coldef("a"),
            EOF.to_vec(),
            vec![2, 0xff, b'a'],
            EOF.to_vec(),
        ];
        let r = feed_all(BASE, &packets).unwrap().unwrap();
        assert_eq!(r.get(0, "a"), Some("\u{fffd}a"));
    }
}
