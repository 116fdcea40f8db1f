//! Session-state information carried by OK packets (`CLIENT_SESSION_TRACK`).
//!
//! The block is a sequence of entries, each `u8 type, lenenc data`:
//! ```text
//! 0 SYSTEM_VARIABLES          data = lenenc name, lenenc value
//! 1 SCHEMA                    data = lenenc schema
//! 2 STATE_CHANGE              data = one byte, `1` or `0` (not length-encoded)
//! 3 GTIDS                     data = u8 encoding spec (0), lenenc GTID set text
//! 4 TRANSACTION_CHARACTERISTICS data = lenenc SQL text ("START TRANSACTION READ ONLY;")
//! 5 TRANSACTION_STATE         data = lenenc 8-char state ("T_______")
//! ```
//! Unknown types are yielded as [`SessionStateEntry::Unknown`] and skipped
//! safely because every entry carries its own length.

use bytes::{BufMut, Bytes, BytesMut};

use crate::buf::{put_lenenc_bytes, Reader};
use crate::error::Result;

/// Entry type: a tracked system variable changed.
pub const SYSTEM_VARIABLES: u8 = 0;
/// Entry type: the default schema changed.
pub const SCHEMA: u8 = 1;
/// Entry type: some session state changed.
pub const STATE_CHANGE: u8 = 2;
/// Entry type: GTIDs (`session_track_gtids`).
pub const GTIDS: u8 = 3;
/// Entry type: transaction characteristics.
pub const TRANSACTION_CHARACTERISTICS: u8 = 4;
/// Entry type: transaction state.
pub const TRANSACTION_STATE: u8 = 5;

/// One session-state entry, borrowing from the OK packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionStateEntry<'a> {
    /// A tracked system variable and its new value.
    SystemVariable {
        /// Variable name.
        name: &'a [u8],
        /// New value.
        value: &'a [u8],
    },
    /// The new default schema.
    Schema(&'a [u8]),
    /// Whether session state changed (`"1"`).
    StateChange(bool),
    /// GTID set text (encoding spec 0), e.g. `uuid:10-11` or `uuid:tag:5`.
    Gtids(&'a [u8]),
    /// Transaction characteristics as SQL.
    TransactionCharacteristics(&'a [u8]),
    /// Transaction state, 8 characters.
    TransactionState(&'a [u8]),
    /// An entry of a type this crate does not interpret (or a GTID entry
    /// with an unknown encoding spec), with its raw data.
    Unknown {
        /// Entry type byte.
        kind: u8,
        /// Entry data.
        data: &'a [u8],
    },
}

impl SessionStateEntry<'_> {
    /// The entry's type byte.
    pub fn kind(&self) -> u8 {
        match self {
            Self::SystemVariable { .. } => SYSTEM_VARIABLES,
            Self::Schema(_) => SCHEMA,
            Self::StateChange(_) => STATE_CHANGE,
            Self::Gtids(_) => GTIDS,
            Self::TransactionCharacteristics(_) => TRANSACTION_CHARACTERISTICS,
            Self::TransactionState(_) => TRANSACTION_STATE,
            Self::Unknown { kind, .. } => *kind,
        }
    }

    /// Appends this entry (type, lenenc data) to `dst`.
    pub fn encode(&self, dst: &mut BytesMut) {
        let mut data = BytesMut::new();
        match *self {
            Self::SystemVariable { name, value } => {
                put_lenenc_bytes(&mut data, name);
                put_lenenc_bytes(&mut data, value);
            }
            Self::Schema(s) | Self::TransactionCharacteristics(s) | Self::TransactionState(s) => {
                put_lenenc_bytes(&mut data, s)
            }
            // A single byte, not a length-encoded string (the server's
            // `Session_state_change_tracker::store`).
            Self::StateChange(b) => data.put_u8(if b { b'1' } else { b'0' }),
            Self::Gtids(text) => {
                data.put_u8(0);
                put_lenenc_bytes(&mut data, text);
            }
            Self::Unknown { data: raw, .. } => data.put_slice(raw),
        }
        dst.put_u8(self.kind());
        put_lenenc_bytes(dst, &data);
    }

    fn parse(kind: u8, data: &[u8]) -> Result<SessionStateEntry<'_>> {
        let mut r = Reader::new(data);
        Ok(match kind {
            SYSTEM_VARIABLES => SessionStateEntry::SystemVariable {
                name: r.lenenc_bytes("tracked variable name")?,
                value: r.lenenc_bytes("tracked variable value")?,
            },
            SCHEMA => SessionStateEntry::Schema(r.lenenc_bytes("tracked schema")?),
            STATE_CHANGE => SessionStateEntry::StateChange(r.u8("state change")? == b'1'),
            GTIDS => match r.u8("gtid encoding spec")? {
                0 => SessionStateEntry::Gtids(r.lenenc_bytes("tracked gtids")?),
                _ => SessionStateEntry::Unknown { kind, data },
            },
            TRANSACTION_CHARACTERISTICS => SessionStateEntry::TransactionCharacteristics(
                r.lenenc_bytes("transaction characteristics")?,
            ),
            TRANSACTION_STATE => {
                SessionStateEntry::TransactionState(r.lenenc_bytes("transaction state")?)
            }
            _ => SessionStateEntry::Unknown { kind, data },
        })
    }
}

/// Iterator over the entries of a session-state block.
///
/// Yields `Err` once on malformed input and then stops.
#[derive(Debug, Clone)]
pub struct SessionStateIter<'a> {
    r: Reader<'a>,
    failed: bool,
}

impl<'a> SessionStateIter<'a> {
    /// Iterates over `block` (the session-state bytes without their outer length).
    pub fn new(block: &'a [u8]) -> Self {
        Self {
            r: Reader::new(block),
            failed: false,
        }
    }

    fn next_raw(&mut self) -> Result<(u8, &'a [u8])> {
        let kind = self.r.u8("session state type")?;
        let data = self.r.lenenc_bytes("session state entry")?;
        Ok((kind, data))
    }
}

impl<'a> Iterator for SessionStateIter<'a> {
    type Item = Result<SessionStateEntry<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.r.is_empty() {
            return None;
        }
        let item = self
            .next_raw()
            .and_then(|(kind, data)| SessionStateEntry::parse(kind, data));
        self.failed = item.is_err();
        Some(item)
    }
}

/// Removes every GTIDS entry from a session-state block, copying the other
/// entries' bytes unchanged. Returns `None` when there was no GTID entry.
pub fn strip_gtids(block: &[u8]) -> Result<Option<Bytes>> {
    let mut it = SessionStateIter::new(block);
    let mut out = BytesMut::new();
    let mut removed = false;
    while !it.r.is_empty() {
        let before = it.r.remaining();
        let start = block.len() - before;
        let (kind, _) = it.next_raw()?;
        let end = block.len() - it.r.remaining();
        if kind == GTIDS {
            removed = true;
        } else {
            out.put_slice(&block[start..end]);
        }
    }
    Ok(removed.then(|| out.freeze()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn block(entries: &[SessionStateEntry<'_>]) -> BytesMut {
        let mut b = BytesMut::new();
        for e in entries {
            e.encode(&mut b);
        }
        b
    }

    #[test]
    fn every_entry_type_round_trips() {
        let entries = [
            SessionStateEntry::SystemVariable {
                name: b"autocommit",
                value: b"OFF",
            },
            SessionStateEntry::Schema(b"test"),
            SessionStateEntry::StateChange(true),
            SessionStateEntry::Gtids(b"3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5"),
            SessionStateEntry::TransactionCharacteristics(b"START TRANSACTION READ ONLY;"),
            SessionStateEntry::TransactionState(b"T_______"),
            SessionStateEntry::Unknown {
                kind: 42,
                data: b"\x01\x02",
            },
        ];
        let b = block(&entries);
        let got: Vec<_> = SessionStateIter::new(&b).collect::<Result<_>>().unwrap();
        assert_eq!(got, entries);
    }

    #[test]
    fn schema_entry_matches_mysql_bytes() {
        // USE test → type 1, entry length 5, lenenc "test".
        let b = block(&[SessionStateEntry::Schema(b"test")]);
        assert_eq!(&b[..], b"\x01\x05\x04test");
    }

    #[test]
    fn state_change_entry_matches_mysql_bytes() {
        // MySQL 9.7 after `SET @a = 1`: type 2, entry length 1, the byte '1'
        // (read off the sandbox; a length-encoded "1" inside would be 3 bytes).
        let b = block(&[SessionStateEntry::StateChange(true)]);
        assert_eq!(&b[..], b"\x02\x01\x31");
        let got: Vec<_> = SessionStateIter::new(b"\x02\x01\x31\x01\x03\x02db")
            .collect::<Result<_>>()
            .unwrap();
        assert_eq!(
            got,
            [
                SessionStateEntry::StateChange(true),
                SessionStateEntry::Schema(b"db")
            ]
        );
    }

    #[test]
    fn unknown_types_are_skipped_by_length() {
        let mut b = BytesMut::from(&b"\x63\x03abc"[..]);
        SessionStateEntry::Schema(b"db").encode(&mut b);
        let got: Vec<_> = SessionStateIter::new(&b).collect::<Result<_>>().unwrap();
        assert_eq!(got[1], SessionStateEntry::Schema(b"db"));
    }

    #[test]
    fn gtid_with_unknown_spec_is_unknown() {
        let b = b"\x03\x04\x01\x02ab";
        let got: Vec<_> = SessionStateIter::new(b).collect::<Result<_>>().unwrap();
        assert!(matches!(got[0], SessionStateEntry::Unknown { kind: 3, .. }));
    }

    #[test]
    fn truncated_entry_is_one_error_then_stop() {
        let mut it = SessionStateIter::new(b"\x01\x09\x04te");
        assert!(it.next().unwrap().is_err());
        assert!(it.next().is_none());
    }

    #[test]
    fn strip_keeps_other_entries() {
        let b = block(&[
            SessionStateEntry::Schema(b"a"),
            SessionStateEntry::Gtids(b"u:1"),
            SessionStateEntry::TransactionState(b"________"),
        ]);
        let stripped = strip_gtids(&b).unwrap().unwrap();
        let expect = block(&[
            SessionStateEntry::Schema(b"a"),
            SessionStateEntry::TransactionState(b"________"),
        ]);
        assert_eq!(&stripped[..], &expect[..]);
        assert_eq!(strip_gtids(&expect).unwrap(), None);
    }

    proptest! {
        #[test]
        fn random_blocks_never_panic(data in proptest::collection::vec(any::<u8>(), 0..80)) {
            for e in SessionStateIter::new(&data) {
                let _ = e;
            }
            let _ = strip_gtids(&data);
        }
    }
}
