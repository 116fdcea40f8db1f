//! Generic response packets: OK (and its 0xFE "EOF" form under
//! `CLIENT_DEPRECATE_EOF`), ERR and the classic EOF.
//!
//! Layouts (4.1 protocol):
//! ```text
//! OK : 0x00|0xFE  lenenc affected_rows  lenenc last_insert_id  u16 status  u16 warnings
//!      SESSION_TRACK: [lenenc info [lenenc session_state if SESSION_STATE_CHANGED]]
//!      otherwise    : info to end of packet
//! ERR: 0xFF  u16 code  ['#' 5-byte sql_state]  message to end of packet
//! EOF: 0xFE  u16 warnings  u16 status            (payload < 9 bytes)
//! ```

use bytes::{BufMut, Bytes, BytesMut};

use crate::buf::{put_lenenc_bytes, put_lenenc_int, sub, Reader};
use crate::error::{CodecError, Result};
use crate::flags::{CapabilityFlags, StatusFlags};
use crate::session_state::{self, SessionStateIter};

/// Header byte of an OK packet.
pub const OK_HEADER: u8 = 0x00;
/// Header byte of an ERR packet.
pub const ERR_HEADER: u8 = 0xff;
/// Header byte of an EOF packet (and of OK packets that replace EOF).
pub const EOF_HEADER: u8 = 0xfe;
/// Header byte of a LOCAL INFILE request.
pub const LOCAL_INFILE_HEADER: u8 = 0xfb;

/// Whether `payload` is an ERR packet.
pub fn is_err(payload: &[u8]) -> bool {
    payload.first() == Some(&ERR_HEADER)
}

/// Whether `payload` is a classic EOF packet (0xFE and shorter than 9 bytes;
/// a longer 0xFE payload is a row whose first value is ≥ 16 MiB).
pub fn is_eof(payload: &[u8]) -> bool {
    payload.first() == Some(&EOF_HEADER) && payload.len() < 9
}

/// Whether `payload` is the OK packet that ends a result set when
/// `CLIENT_DEPRECATE_EOF` is on (0xFE and shorter than 0xFFFFFF bytes).
pub fn is_ok_eof(payload: &[u8]) -> bool {
    payload.first() == Some(&EOF_HEADER) && payload.len() < crate::packet::MAX_CHUNK
}

/// Reads only the status flags of an OK packet (either header), without
/// allocating. Used on the hot path by the response tracker.
pub fn ok_status(payload: &[u8], caps: CapabilityFlags) -> Result<StatusFlags> {
    let mut r = Reader::new(payload);
    r.u8("ok header")?;
    r.lenenc_int("affected rows")?;
    r.lenenc_int("last insert id")?;
    if caps.intersects(CapabilityFlags::PROTOCOL_41 | CapabilityFlags::TRANSACTIONS) {
        Ok(StatusFlags::from_bits_retain(r.u16("status flags")?))
    } else {
        Ok(StatusFlags::empty())
    }
}

/// Reads the status flags of a classic EOF packet.
pub fn eof_status(payload: &[u8]) -> Result<StatusFlags> {
    Ok(EofPacket::decode(payload)?.status)
}

/// An OK packet. Text fields are zero-copy slices of the decoded payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OkPacket {
    /// 0x00, or 0xFE when the OK replaces an EOF (`CLIENT_DEPRECATE_EOF`).
    pub header: u8,
    /// Rows affected (or found, with `CLIENT_FOUND_ROWS`).
    pub affected_rows: u64,
    /// Last `AUTO_INCREMENT` id.
    pub last_insert_id: u64,
    /// Server status flags.
    pub status: StatusFlags,
    /// Warning count.
    pub warnings: u16,
    /// Human-readable info (e.g. "Rows matched: 1  Changed: 1  Warnings: 0").
    pub info: Bytes,
    /// The session-state block (the entries, without its outer length);
    /// empty unless `SESSION_STATE_CHANGED` is set. Iterate with
    /// [`OkPacket::session_state`].
    pub session_state: Bytes,
}

impl Default for OkPacket {
    fn default() -> Self {
        Self {
            header: OK_HEADER,
            affected_rows: 0,
            last_insert_id: 0,
            status: StatusFlags::AUTOCOMMIT,
            warnings: 0,
            info: Bytes::new(),
            session_state: Bytes::new(),
        }
    }
}

impl OkPacket {
    /// Decodes an OK packet (header 0x00 or 0xFE) as sent to a peer with `caps`.
    pub fn decode(payload: &Bytes, caps: CapabilityFlags) -> Result<Self> {
        let mut r = Reader::new(payload);
        let header = r.u8("ok header")?;
        if header != OK_HEADER && header != EOF_HEADER {
            return Err(CodecError::UnexpectedHeader {
                what: "ok packet",
                header,
            });
        }
        let affected_rows = r.lenenc_int("affected rows")?;
        let last_insert_id = r.lenenc_int("last insert id")?;
        let (status, warnings) = if caps.contains(CapabilityFlags::PROTOCOL_41) {
            (r.u16("status flags")?, r.u16("warnings")?)
        } else if caps.contains(CapabilityFlags::TRANSACTIONS) {
            (r.u16("status flags")?, 0)
        } else {
            (0, 0)
        };
        let status = StatusFlags::from_bits_retain(status);
        let mut session_state = Bytes::new();
        let info;
        if caps.contains(CapabilityFlags::SESSION_TRACK) {
            // MySQL omits the info string entirely when it is empty and no
            // session state follows.
            info = if r.is_empty() {
                Bytes::new()
            } else {
                sub(payload, r.lenenc_bytes("ok info")?)
            };
            if status.contains(StatusFlags::SESSION_STATE_CHANGED) && !r.is_empty() {
                session_state = sub(payload, r.lenenc_bytes("session state info")?);
            }
        } else {
            // MySQL writes the message length-encoded here too
            // (`net_store_data`); older peers wrote it to the end of the
            // packet. A length that covers exactly the rest says which.
            let rest = r.rest();
            info = match crate::buf::read_lenenc_int(rest, "ok info length") {
                Ok((len, n)) if usize::try_from(len).ok() == Some(rest.len() - n) => {
                    sub(payload, &rest[n..])
                }
                _ => sub(payload, rest),
            };
        }
        Ok(Self {
            header,
            affected_rows,
            last_insert_id,
            status,
            warnings,
            info,
            session_state,
        })
    }

    /// Encodes this OK packet for a peer with `caps`. Session state is only
    /// written with `CLIENT_SESSION_TRACK`, and only when the status says it
    /// changed.
    pub fn encode(&self, caps: CapabilityFlags, dst: &mut BytesMut) {
        dst.put_u8(self.header);
        put_lenenc_int(dst, self.affected_rows);
        put_lenenc_int(dst, self.last_insert_id);
        if caps.contains(CapabilityFlags::PROTOCOL_41) {
            dst.put_u16_le(self.status.bits());
            dst.put_u16_le(self.warnings);
        } else if caps.contains(CapabilityFlags::TRANSACTIONS) {
            dst.put_u16_le(self.status.bits());
        }
        if caps.contains(CapabilityFlags::SESSION_TRACK) {
            let changed = self.status.contains(StatusFlags::SESSION_STATE_CHANGED);
            if changed || !self.info.is_empty() {
                put_lenenc_bytes(dst, &self.info);
            }
            if changed {
                put_lenenc_bytes(dst, &self.session_state);
            }
        } else if !self.info.is_empty() {
            // As MySQL sends it (`net_store_data`): length-encoded.
            put_lenenc_bytes(dst, &self.info);
        }
    }

    /// Iterates over the session-state entries.
    pub fn session_state(&self) -> SessionStateIter<'_> {
        SessionStateIter::new(&self.session_state)
    }

    /// The GTID set text of the last `SESSION_TRACK_GTIDS` entry, if any
    /// (e.g. `3e11fa47-71ca-11e1-9e33-c80aa9429562:23`).
    pub fn gtids(&self) -> Result<Option<&[u8]>> {
        let mut last = None;
        for entry in self.session_state() {
            if let session_state::SessionStateEntry::Gtids(text) = entry? {
                last = Some(text);
            }
        }
        Ok(last)
    }

    /// A copy of this packet with every GTID entry removed from the session
    /// state, for clients that did not ask for GTID tracking. Clears
    /// `SESSION_STATE_CHANGED` when no other entry remains. Returns `None`
    /// when there was nothing to remove (forward the original bytes).
    pub fn without_gtids(&self) -> Result<Option<Self>> {
        let Some(stripped) = session_state::strip_gtids(&self.session_state)? else {
            return Ok(None);
        };
        let mut ok = self.clone();
        if stripped.is_empty() {
            ok.status.remove(StatusFlags::SESSION_STATE_CHANGED);
        }
        ok.session_state = stripped;
        Ok(Some(ok))
    }
}

/// Proxy helper: given an OK payload from a backend (decoded with the
/// backend connection's `caps`), returns the payload to send a client that did
/// not ask for GTID tracking, or `None` when the packet carries no GTID entry
/// and can be forwarded unchanged (the common case: no copy).
pub fn rewrite_ok_without_gtids(payload: &Bytes, caps: CapabilityFlags) -> Result<Option<Bytes>> {
    if !payload
        .first()
        .is_some_and(|&h| h == OK_HEADER || h == EOF_HEADER)
    {
        return Ok(None);
    }
    let ok = OkPacket::decode(payload, caps)?;
    let Some(stripped) = ok.without_gtids()? else {
        return Ok(None);
    };
    let mut out = BytesMut::with_capacity(payload.len());
    stripped.encode(caps, &mut out);
    Ok(Some(out.freeze()))
}

/// An ERR packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrPacket {
    /// MySQL error code (e.g. 1045).
    pub code: u16,
    /// The five-character SQLSTATE, when the `#` marker was present.
    pub sql_state: Option<[u8; 5]>,
    /// The message.
    pub message: Bytes,
}

impl ErrPacket {
    /// Builds an ERR with an SQL state.
    pub fn new(code: u16, sql_state: [u8; 5], message: impl Into<Bytes>) -> Self {
        Self {
            code,
            sql_state: Some(sql_state),
            message: message.into(),
        }
    }

    /// Decodes an ERR packet. The SQL state is read when the `#` marker is
    /// present (servers omit it before the handshake, e.g. "host blocked").
    pub fn decode(payload: &Bytes) -> Result<Self> {
        let mut r = Reader::new(payload);
        let header = r.u8("err header")?;
        if header != ERR_HEADER {
            return Err(CodecError::UnexpectedHeader {
                what: "err packet",
                header,
            });
        }
        let code = r.u16("error code")?;
        let sql_state = if r.peek() == Some(b'#') {
            r.u8("sql state marker")?;
            Some(r.array("sql state")?)
        } else {
            None
        };
        Ok(Self {
            code,
            sql_state,
            message: sub(payload, r.rest()),
        })
    }

    /// Encodes this ERR. The SQL state is written for 4.1 peers (`HY000` if unset).
    pub fn encode(&self, caps: CapabilityFlags, dst: &mut BytesMut) {
        dst.put_u8(ERR_HEADER);
        dst.put_u16_le(self.code);
        if caps.contains(CapabilityFlags::PROTOCOL_41) {
            dst.put_u8(b'#');
            dst.put_slice(&self.sql_state.unwrap_or(*b"HY000"));
        }
        dst.put_slice(&self.message);
    }
}

/// A classic EOF packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EofPacket {
    /// Warning count.
    pub warnings: u16,
    /// Server status flags.
    pub status: StatusFlags,
}

impl EofPacket {
    /// Decodes an EOF packet (4.1 form: 5 bytes; a bare 0xFE is accepted).
    pub fn decode(payload: &[u8]) -> Result<Self> {
        let mut r = Reader::new(payload);
        let header = r.u8("eof header")?;
        if header != EOF_HEADER || payload.len() >= 9 {
            return Err(CodecError::UnexpectedHeader {
                what: "eof packet",
                header,
            });
        }
        if r.is_empty() {
            return Ok(Self::default());
        }
        Ok(Self {
            warnings: r.u16("eof warnings")?,
            status: StatusFlags::from_bits_retain(r.u16("eof status")?),
        })
    }

    /// Encodes this EOF packet (4.1 form).
    pub fn encode(&self, dst: &mut BytesMut) {
        dst.put_u8(EOF_HEADER);
        dst.put_u16_le(self.warnings);
        dst.put_u16_le(self.status.bits());
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn ok_info_without_session_track_is_length_encoded_as_mysql_sends_it() {
        // MySQL 9.7 to a client without CLIENT_SESSION_TRACK, after a
        // REPLACE: the message keeps its length byte (0x26 = 38).
        let mut p = vec![0x00, 0x03, 0x00, 0x02, 0x00, 0x00, 0x00, 0x26];
        p.extend_from_slice(b"Records: 3  Duplicates: 0  Warnings: 0");
        let p = Bytes::from(p);
        let caps = CapabilityFlags::PROTOCOL_41;
        let ok = OkPacket::decode(&p, caps).unwrap();
        assert_eq!(&ok.info[..], b"Records: 3  Duplicates: 0  Warnings: 0");
        let mut out = BytesMut::new();
        ok.encode(caps, &mut out);
        assert_eq!(out.freeze(), p);
        // Without a message nothing follows the warnings.
        let bare = Bytes::from_static(&[0, 0, 0, 2, 0, 0, 0]);
        let ok = OkPacket::decode(&bare, caps).unwrap();
        let mut out = BytesMut::new();
        ok.encode(caps, &mut out);
        assert_eq!(out.freeze(), bare);
    }
    use super::*;
    use crate::session_state::SessionStateEntry;
    use proptest::prelude::*;

    const CAPS: CapabilityFlags = CapabilityFlags::PROTOCOL_41
        .union(CapabilityFlags::TRANSACTIONS)
        .union(CapabilityFlags::SESSION_TRACK);

    fn enc_ok(ok: &OkPacket, caps: CapabilityFlags) -> Bytes {
        let mut b = BytesMut::new();
        ok.encode(caps, &mut b);
        b.freeze()
    }

    #[test]
    fn plain_ok_without_session_track() {
        // An OK after INSERT: 1 row, insert id 5, autocommit, no warnings.
        let raw = Bytes::from_static(&[0x00, 0x01, 0x05, 0x02, 0x00, 0x00, 0x00]);
        let ok = OkPacket::decode(&raw, CapabilityFlags::PROTOCOL_41).unwrap();
        assert_eq!(ok.affected_rows, 1);
        assert_eq!(ok.last_insert_id, 5);
        assert_eq!(ok.status, StatusFlags::AUTOCOMMIT);
        assert!(ok.info.is_empty());
        assert_eq!(enc_ok(&ok, CapabilityFlags::PROTOCOL_41), raw);
    }

    #[test]
    fn ok_with_info_without_session_track() {
        let mut raw = vec![0x00, 0x00, 0x00, 0x22, 0x00, 0x00, 0x00];
        raw.extend_from_slice(b"Rows matched: 0  Changed: 0  Warnings: 0");
        let raw = Bytes::from(raw);
        let ok = OkPacket::decode(&raw, CapabilityFlags::PROTOCOL_41).unwrap();
        assert_eq!(&ok.info[..], b"Rows matched: 0  Changed: 0  Warnings: 0");
        assert_eq!(
            ok.status,
            StatusFlags::AUTOCOMMIT | StatusFlags::QUERY_NO_INDEX_USED
        );
    }

    /// An OK after a COMMIT with `session_track_gtids=OWN_GTID`, as MySQL
    /// builds it: info omitted-length empty, then the session state block
    /// holding one GTIDS entry (type 3, spec byte 0, lenenc set text).
    fn gtid_ok_bytes(gtid: &str) -> Bytes {
        let mut entry = BytesMut::new();
        entry.put_u8(0);
        put_lenenc_bytes(&mut entry, gtid.as_bytes());
        let mut state = BytesMut::new();
        state.put_u8(3);
        put_lenenc_bytes(&mut state, &entry);
        let mut p = BytesMut::new();
        p.put_slice(&[0x00, 0x00, 0x00]);
        p.put_u16_le((StatusFlags::AUTOCOMMIT | StatusFlags::SESSION_STATE_CHANGED).bits());
        p.put_u16_le(0);
        p.put_u8(0); // empty info
        put_lenenc_bytes(&mut p, &state);
        p.freeze()
    }

    #[test]
    fn ok_with_gtid_session_state() {
        let text = "3e11fa47-71ca-11e1-9e33-c80aa9429562:10-11";
        let raw = gtid_ok_bytes(text);
        let ok = OkPacket::decode(&raw, CAPS).unwrap();
        assert_eq!(ok.gtids().unwrap(), Some(text.as_bytes()));
        let entries: Vec<_> = ok.session_state().collect::<Result<_>>().unwrap();
        assert_eq!(entries, vec![SessionStateEntry::Gtids(text.as_bytes())]);
        assert_eq!(enc_ok(&ok, CAPS), raw);
    }

    #[test]
    fn tagged_gtid_is_returned_verbatim() {
        let text = "3e11fa47-71ca-11e1-9e33-c80aa9429562:tag_1:5";
        let ok = OkPacket::decode(&gtid_ok_bytes(text), CAPS).unwrap();
        assert_eq!(ok.gtids().unwrap(), Some(text.as_bytes()));
    }

    #[test]
    fn stripping_the_only_gtid_clears_session_state_changed() {
        let ok = OkPacket::decode(&gtid_ok_bytes("u:1"), CAPS).unwrap();
        let stripped = ok.without_gtids().unwrap().unwrap();
        assert!(!stripped.status.contains(StatusFlags::SESSION_STATE_CHANGED));
        assert!(stripped.session_state.is_empty());
        // Re-encoded as MySQL would: no info, no session state.
        assert_eq!(
            &enc_ok(&stripped, CAPS)[..],
            &[0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00]
        );
        let plain = OkPacket::decode(&enc_ok(&stripped, CAPS), CAPS).unwrap();
        assert_eq!(plain.without_gtids().unwrap(), None);
    }

    #[test]
    fn rewrite_helper_copies_only_when_needed() {
        let raw = gtid_ok_bytes("u:1");
        let out = rewrite_ok_without_gtids(&raw, CAPS).unwrap().unwrap();
        assert_eq!(&out[..], &[0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00]);
        assert_eq!(rewrite_ok_without_gtids(&out, CAPS).unwrap(), None);
        let err = Bytes::from_static(b"\xff\x01\x00#HY000x");
        assert_eq!(rewrite_ok_without_gtids(&err, CAPS).unwrap(), None);
    }

    #[test]
    fn ok_for_client_without_session_track_drops_state() {
        let ok = OkPacket::decode(&gtid_ok_bytes("u:1"), CAPS).unwrap();
        let out = enc_ok(&ok, CapabilityFlags::PROTOCOL_41);
        assert_eq!(out.len(), 7);
    }

    #[test]
    fn ok_eof_form_and_classification() {
        let raw = Bytes::from_static(&[0xfe, 0x00, 0x00, 0x22, 0x00, 0x01, 0x00]);
        assert!(is_eof(&raw));
        assert!(is_ok_eof(&raw));
        let ok = OkPacket::decode(&raw, CAPS).unwrap();
        assert_eq!(ok.header, EOF_HEADER);
        assert_eq!(ok.warnings, 1);
        assert_eq!(ok_status(&raw, CAPS).unwrap(), ok.status);
        assert!(!is_eof(&[0xfe; 9]));
    }

    #[test]
    fn err_with_and_without_sql_state() {
        let mut raw = vec![0xff, 0x15, 0x04, b'#'];
        raw.extend_from_slice(b"28000Access denied for user 'x'@'localhost'");
        let raw = Bytes::from(raw);
        let err = ErrPacket::decode(&raw).unwrap();
        assert_eq!(err.code, 1045);
        assert_eq!(err.sql_state, Some(*b"28000"));
        assert_eq!(&err.message[..], b"Access denied for user 'x'@'localhost'");
        let mut out = BytesMut::new();
        err.encode(CapabilityFlags::PROTOCOL_41, &mut out);
        assert_eq!(out.freeze(), raw);

        let raw = Bytes::from_static(b"\xff\x69\x04Host 'h' is blocked");
        let err = ErrPacket::decode(&raw).unwrap();
        assert_eq!((err.code, err.sql_state), (1129, None));
        assert!(is_err(&raw));
    }

    #[test]
    fn eof_round_trip_and_errors() {
        let eof = EofPacket {
            warnings: 2,
            status: StatusFlags::MORE_RESULTS_EXISTS | StatusFlags::AUTOCOMMIT,
        };
        let mut b = BytesMut::new();
        eof.encode(&mut b);
        assert_eq!(&b[..], &[0xfe, 2, 0, 0x0a, 0]);
        assert_eq!(EofPacket::decode(&b).unwrap(), eof);
        assert!(EofPacket::decode(&[0xfe, 1]).is_err());
        assert!(EofPacket::decode(&[0x00, 0, 0, 0, 0]).is_err());
        assert!(OkPacket::decode(&Bytes::from_static(&[0x00, 0x01]), CAPS).is_err());
    }

    proptest! {
        #[test]
        fn decoders_never_panic(data in proptest::collection::vec(any::<u8>(), 0..64), caps in any::<u32>()) {
            let b = Bytes::from(data);
            let caps = CapabilityFlags::from_bits_retain(caps);
            if let Ok(ok) = OkPacket::decode(&b, caps) {
                let _ = ok.gtids();
                let _ = ok.without_gtids();
            }
            let _ = ErrPacket::decode(&b);
            let _ = EofPacket::decode(&b);
            let _ = ok_status(&b, caps);
        }

        #[test]
        fn ok_round_trip(
            affected in any::<u64>(), id in any::<u64>(), status in any::<u16>(), warnings in any::<u16>(),
            info in proptest::collection::vec(any::<u8>(), 0..40), track in any::<bool>(),
        ) {
            let caps = if track { CAPS } else { CapabilityFlags::PROTOCOL_41 };
            // Without session tracking there is no session-state block to carry.
            let mut status = StatusFlags::from_bits_retain(status);
            status.remove(StatusFlags::SESSION_STATE_CHANGED);
            let ok = OkPacket {
                header: OK_HEADER, affected_rows: affected, last_insert_id: id,
                status, warnings, info: Bytes::from(info), session_state: Bytes::new(),
            };
            let decoded = OkPacket::decode(&enc_ok(&ok, caps), caps).unwrap();
            prop_assert_eq!(decoded, ok);
        }

        #[test]
        fn err_round_trip(code in any::<u16>(), msg in proptest::collection::vec(any::<u8>(), 0..40)) {
            let err = ErrPacket::new(code, *b"42S02", msg);
            let mut b = BytesMut::new();
            err.encode(CapabilityFlags::PROTOCOL_41, &mut b);
            prop_assert_eq!(ErrPacket::decode(&b.freeze()).unwrap(), err);
        }
    }
}
