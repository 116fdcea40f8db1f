//! Encoding a text-protocol result set, for a server side that makes its
//! own answers (the router's admin interface):
//!
//! ```text
//! column count --> n column definitions --> [EOF, unless DEPRECATE_EOF]
//!              --> rows (length-encoded strings, 0xFB for NULL)
//!              --> EOF, or an OK with header 0xFE under DEPRECATE_EOF
//! ```

use bytes::{BufMut, BytesMut};

use crate::buf::{put_lenenc_bytes, put_lenenc_int};
use crate::flags::{CapabilityFlags, ColumnType, StatusFlags};
use crate::generic::{EofPacket, OkPacket, EOF_HEADER};

/// utf8mb4_0900_ai_ci, MySQL 8's default collation.
pub const UTF8MB4: u16 = 255;
/// The binary pseudo-collation numbers are sent with.
pub const BINARY: u16 = 63;

/// Column definition flag: the column is numeric.
pub const NUM_FLAG: u16 = 0x8000;
/// Column definition flag: the value is binary.
pub const BINARY_FLAG: u16 = 0x0080;

/// One column of a result set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// The schema shown in its definition.
    pub schema: String,
    /// The table it comes from (empty for an expression).
    pub table: String,
    /// Its name.
    pub name: String,
    /// Its type.
    pub kind: ColumnType,
    /// Its collation (63 for numbers).
    pub charset: u16,
    /// Its display length.
    pub length: u32,
    /// Its flags.
    pub flags: u16,
    /// Digits after the point (0x1f: not fixed).
    pub decimals: u8,
}

impl Column {
    /// A text column.
    pub fn text(name: &str) -> Self {
        Column {
            schema: String::new(),
            table: String::new(),
            name: name.to_string(),
            kind: ColumnType::VAR_STRING,
            charset: UTF8MB4,
            length: 1024,
            flags: 0,
            decimals: 0,
        }
    }

    /// A 64-bit integer column.
    pub fn integer(name: &str) -> Self {
        Column {
            kind: ColumnType::LONGLONG,
            charset: BINARY,
            length: 20,
            flags: NUM_FLAG | BINARY_FLAG,
            ..Column::text(name)
        }
    }

    /// A floating-point column.
    pub fn double(name: &str) -> Self {
        Column {
            kind: ColumnType::DOUBLE,
            charset: BINARY,
            length: 22,
            flags: NUM_FLAG | BINARY_FLAG,
            decimals: 0x1f,
            ..Column::text(name)
        }
    }

    /// Encodes its ColumnDefinition41 packet.
    pub fn encode(&self, dst: &mut BytesMut) {
        put_lenenc_bytes(dst, b"def");
        put_lenenc_bytes(dst, self.schema.as_bytes());
        put_lenenc_bytes(dst, self.table.as_bytes());
        put_lenenc_bytes(dst, self.table.as_bytes());
        put_lenenc_bytes(dst, self.name.as_bytes());
        put_lenenc_bytes(dst, self.name.as_bytes());
        put_lenenc_int(dst, 0x0c);
        dst.put_u16_le(self.charset);
        dst.put_u32_le(self.length);
        dst.put_u8(self.kind.0);
        dst.put_u16_le(self.flags);
        dst.put_u8(self.decimals);
        dst.put_u16_le(0);
    }
}

/// Encodes a text row: each value length-encoded, NULL as 0xFB.
pub fn encode_row<'a>(values: impl IntoIterator<Item = Option<&'a [u8]>>, dst: &mut BytesMut) {
    for v in values {
        match v {
            Some(v) => put_lenenc_bytes(dst, v),
            None => dst.put_u8(0xfb),
        }
    }
}

/// The packet that ends the column definitions (`None` under
/// DEPRECATE_EOF, where none is sent).
pub fn encode_columns_end(caps: CapabilityFlags, status: StatusFlags) -> Option<BytesMut> {
    if caps.contains(CapabilityFlags::DEPRECATE_EOF) {
        return None;
    }
    let mut dst = BytesMut::with_capacity(5);
    EofPacket {
        warnings: 0,
        status,
    }
    .encode(&mut dst);
    Some(dst)
}

/// The packet that ends the rows: EOF, or OK with header 0xFE under
/// DEPRECATE_EOF.
pub fn encode_rows_end(caps: CapabilityFlags, status: StatusFlags, dst: &mut BytesMut) {
    if caps.contains(CapabilityFlags::DEPRECATE_EOF) {
        OkPacket {
            header: EOF_HEADER,
            status,
            ..OkPacket::default()
        }
        .encode(caps, dst);
    } else {
        EofPacket {
            warnings: 0,
            status,
        }
        .encode(dst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buf::Reader;

    #[test]
    fn a_column_definition_reads_back_field_by_field() {
        let mut buf = BytesMut::new();
        let mut c = Column::integer("count");
        c.table = "servers".into();
        c.schema = "main".into();
        c.encode(&mut buf);
        let mut r = Reader::new(&buf);
        assert_eq!(r.lenenc_bytes("catalog").unwrap(), b"def");
        assert_eq!(r.lenenc_bytes("schema").unwrap(), b"main");
        assert_eq!(r.lenenc_bytes("table").unwrap(), b"servers");
        assert_eq!(r.lenenc_bytes("org_table").unwrap(), b"servers");
        assert_eq!(r.lenenc_bytes("name").unwrap(), b"count");
        assert_eq!(r.lenenc_bytes("org_name").unwrap(), b"count");
        assert_eq!(r.lenenc_int("fixed").unwrap(), 0x0c);
        assert_eq!(r.u16("charset").unwrap(), BINARY);
        assert_eq!(r.u32("length").unwrap(), 20);
        assert_eq!(r.u8("type").unwrap(), ColumnType::LONGLONG.0);
        assert_eq!(r.u16("flags").unwrap(), NUM_FLAG | BINARY_FLAG);
        assert_eq!(r.u8("decimals").unwrap(), 0);
        assert_eq!(r.u16("filler").unwrap(), 0);
        assert!(r.is_empty());
    }

    #[test]
    fn rows_carry_nulls_and_long_values() {
        let long = vec![b'x'; 300];
        let mut buf = BytesMut::new();
        encode_row([Some(&b"a"[..]), None, Some(&long[..])], &mut buf);
        let mut r = Reader::new(&buf);
        assert_eq!(r.lenenc_bytes("a").unwrap(), b"a");
        assert_eq!(r.u8("null").unwrap(), 0xfb);
        assert_eq!(r.lenenc_bytes("long").unwrap(), &long[..]);
        assert!(r.is_empty());
    }

    #[test]
    fn the_ends_follow_deprecate_eof() {
        let status = StatusFlags::AUTOCOMMIT;
        let classic = CapabilityFlags::PROTOCOL_41;
        let modern = classic | CapabilityFlags::DEPRECATE_EOF;
        assert_eq!(
            &encode_columns_end(classic, status).unwrap()[..],
            &[0xfe, 0, 0, 2, 0]
        );
        assert!(encode_columns_end(modern, status).is_none());
        let mut end = BytesMut::new();
        encode_rows_end(modern, status, &mut end);
        assert!(crate::generic::is_ok_eof(&end), "{end:?}");
        let mut end = BytesMut::new();
        encode_rows_end(classic, status, &mut end);
        assert_eq!(&end[..], &[0xfe, 0, 0, 2, 0]);
    }
}
